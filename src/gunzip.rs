//! Reads a gzip file (RFC 1952) as the bytes it holds: the gzip framing here, DEFLATE
//! (RFC 1951) in [`inflate`].
//!
//! Why our own: the tail must read a rotated generation that logrotate has already
//! compressed (`queue_log.2.gz`), once, on boards where every KiB of binary counts. So this
//! is the smallest decoder that is still safe on any input: no lookup tables, memory fixed
//! whatever the file, and a [`GzError`] (never a panic or a loop) for any malformed input.
//!
//! Streaming has one consequence for the caller: a corrupted byte that still decodes is
//! only caught by the member's CRC-32 at its end, after the bytes before it were returned.
//! A caller that must not act on such bytes reads the file through once first.

mod inflate;

use inflate::{BitIn, Inflate, Res};
use std::fmt;
use std::io::{self, Read};

/// The compressed input is read in pieces of this size.
const INPUT_BUF: usize = 8 * 1024;
const FHCRC: u8 = 2;
const FEXTRA: u8 = 4;
const FNAME: u8 = 8;
const FCOMMENT: u8 = 16;
/// Flag bits RFC 1952 reserves; a decoder must refuse a member that sets one.
const FRESERVED: u8 = 0xe0;

/// Why a gzip stream could not be read.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum GzError {
    /// The file does not start with a gzip member (magic 1f 8b, method 8).
    NotGzip,
    /// A member sets a flag bit that RFC 1952 reserves.
    BadHeader,
    /// The input ended inside a member (or held no byte at all).
    Truncated,
    /// A block of the reserved type 3.
    BadBlock,
    /// A stored block whose length and its one's complement disagree.
    StoredLength,
    /// Code lengths that do not form a prefix code, a bit pattern that is not a code,
    /// or a length or distance symbol that DEFLATE does not define.
    BadHuffman,
    /// A match reaching back before the start of its member.
    DistanceTooFar,
    /// The CRC-32 of a member's data (or the CRC-16 of its header) is not the stored one.
    CrcMismatch,
    /// A member's length modulo 2^32 is not the stored ISIZE.
    LengthMismatch,
    /// Bytes after a complete member that do not start another member.
    TrailingGarbage,
    /// An earlier read of the compressed input failed mid-stream, so it cannot go on.
    Input,
}

impl fmt::Display for GzError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            GzError::NotGzip => "not a gzip file",
            GzError::BadHeader => "gzip header sets a reserved flag",
            GzError::Truncated => "gzip data ends early (truncated file)",
            GzError::BadBlock => "deflate block of the reserved type 3",
            GzError::StoredLength => "deflate stored block length check failed",
            GzError::BadHuffman => "invalid deflate Huffman code",
            GzError::DistanceTooFar => "deflate match reaches before the data",
            GzError::CrcMismatch => "gzip CRC mismatch (corrupt data)",
            GzError::LengthMismatch => "gzip length mismatch (corrupt data)",
            GzError::TrailingGarbage => "data after the last gzip member",
            GzError::Input => "an earlier read of the gzip input failed",
        })
    }
}

/// The message, as for Display: a derived Debug would add some 300 bytes of binary.
impl fmt::Debug for GzError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl std::error::Error for GzError {}

impl From<GzError> for io::Error {
    /// `Truncated` is `UnexpectedEof`, the rest `InvalidData`; the [`GzError`] itself is
    /// the error's inner value (`get_ref()` then `downcast_ref::<GzError>()`). Out of line:
    /// errors are rare, and inlined at every check they cost binary bytes.
    #[cold]
    #[inline(never)]
    fn from(error: GzError) -> io::Error {
        let kind = match error {
            GzError::Truncated => io::ErrorKind::UnexpectedEof,
            GzError::Input => io::ErrorKind::Other,
            _ => io::ErrorKind::InvalidData,
        };
        io::Error::new(kind, error)
    }
}

/// Whether `head` (the first bytes of a file) starts a gzip member of method deflate.
pub fn is_gzip(head: &[u8]) -> bool {
    head.starts_with(&[0x1f, 0x8b, 8])
}

/// CRC-32 (the reflected 0xEDB88320 polynomial) four bits at a time: 64 bytes of table
/// where the usual byte-wide one is 1 KiB, for two lookups a byte instead of one.
const CRC_NIBBLE: [u32; 16] = {
    let mut table = [0u32; 16];
    let mut i = 0;
    while i < 16 {
        let mut crc = i as u32;
        let mut bit = 0;
        while bit < 4 {
            crc = (crc >> 1) ^ (0xedb8_8320 & (crc & 1).wrapping_neg());
            bit += 1;
        }
        table[i] = crc;
        i += 1;
    }
    table
};

/// One byte into a running CRC-32 kept inverted (start at `!0`, finish with `!`).
fn crc_byte(crc: u32, byte: u8) -> u32 {
    let crc = crc ^ byte as u32;
    let crc = (crc >> 4) ^ CRC_NIBBLE[(crc & 15) as usize];
    (crc >> 4) ^ CRC_NIBBLE[(crc & 15) as usize]
}

#[derive(Clone, Copy)]
enum Step {
    Header,
    Data,
    Trailer,
    Done,
    Failed(GzError),
}

/// A gzip file read as the bytes it holds; concatenated members read as one stream. Its
/// memory is fixed (about 41 KiB, most of it the 32 KiB window), whatever the file.
pub struct GzReader<R> {
    input: BitIn<R>,
    inflate: Inflate,
    step: Step,
    members: u32,
    /// The member's data CRC-32 so far, kept inverted (`crc_byte`).
    crc: u32,
}

impl<R: Read> GzReader<R> {
    pub fn new(inner: R) -> GzReader<R> {
        GzReader {
            input: BitIn::new(inner, INPUT_BUF),
            inflate: Inflate::new(),
            step: Step::Header,
            members: 0,
            crc: !0,
        }
    }

    fn header_byte(&mut self, crc: &mut u32) -> Res<u8> {
        let byte = self.input.byte()?;
        *crc = crc_byte(*crc, byte);
        Ok(byte)
    }

    /// Reads a member's header (RFC 1952 2.3); false at a clean end after a member.
    fn header(&mut self) -> Res<bool> {
        let mut crc = !0;
        let id1 = match self.input.try_byte()? {
            Some(byte) => byte,
            None if self.members > 0 => return Ok(false),
            None => return Err(GzError::Truncated),
        };
        crc = crc_byte(crc, id1);
        let magic = [
            id1,
            self.header_byte(&mut crc)?,
            self.header_byte(&mut crc)?,
        ];
        if !is_gzip(&magic) {
            let first = self.members == 0;
            return Err(if first {
                GzError::NotGzip
            } else {
                GzError::TrailingGarbage
            });
        }
        let flags = self.header_byte(&mut crc)?;
        if flags & FRESERVED != 0 {
            return Err(GzError::BadHeader);
        }
        for _ in 0..6 {
            self.header_byte(&mut crc)?; // MTIME, XFL, OS: nothing to act on
        }
        if flags & FEXTRA != 0 {
            let low = self.header_byte(&mut crc)? as u32;
            for _ in 0..low | (self.header_byte(&mut crc)? as u32) << 8 {
                self.header_byte(&mut crc)?;
            }
        }
        for flag in [FNAME, FCOMMENT] {
            // Zero-terminated; skipped as it comes, so a long one costs no memory.
            while flags & flag != 0 && self.header_byte(&mut crc)? != 0 {}
        }
        if flags & FHCRC != 0 && self.input.le(2)? != !crc & 0xffff {
            return Err(GzError::CrcMismatch);
        }
        self.members += 1;
        self.crc = !0;
        self.inflate.start();
        Ok(true)
    }

    fn trailer(&mut self) -> Res<()> {
        if self.input.le(4)? != !self.crc {
            return Err(GzError::CrcMismatch);
        }
        if self.input.le(4)? != self.inflate.len as u32 {
            return Err(GzError::LengthMismatch);
        }
        Ok(())
    }

    /// Fills `out` as far as the stream goes, counting into `filled` so that the bytes
    /// produced before an error are still handed out.
    fn fill(&mut self, out: &mut [u8], filled: &mut usize) -> Res<()> {
        while *filled < out.len() {
            match self.step {
                Step::Header => {
                    self.step = if self.header()? {
                        Step::Data
                    } else {
                        Step::Done
                    }
                }
                Step::Data => match self.inflate.next(&mut self.input)? {
                    Some(byte) => {
                        self.crc = crc_byte(self.crc, byte);
                        out[*filled] = byte;
                        *filled += 1;
                    }
                    None => self.step = Step::Trailer,
                },
                Step::Trailer => {
                    self.trailer()?;
                    self.step = Step::Header;
                }
                Step::Done | Step::Failed(_) => break,
            }
        }
        Ok(())
    }
}

impl<R: Read> Read for GzReader<R> {
    /// Bytes produced before an error are returned first; the error comes with the next
    /// call, and with every call after it (the decoder cannot resume mid-stream). A failed
    /// read of the input is handed out once as it came, as `GzError::Input` after that.
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if let Step::Failed(error) = self.step {
            return Err(self.input.read_error.take().unwrap_or_else(|| error.into()));
        }
        let mut filled = 0;
        match self.fill(out, &mut filled) {
            Ok(()) => return Ok(filled),
            Err(error) => self.step = Step::Failed(error),
        }
        if filled > 0 {
            Ok(filled)
        } else {
            self.read(out)
        }
    }
}

#[cfg(test)]
mod tests;
