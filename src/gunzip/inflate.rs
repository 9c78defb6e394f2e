//! DEFLATE (RFC 1951), one output byte at a time, for [`super::GzReader`].
//!
//! Sized for binary bytes, not speed: Huffman codes are decoded one bit at a time from the
//! number of codes of each length (a canonical code needs nothing more), so there are no
//! lookup tables, and the RFC's length and distance tables are a formula. The state is the
//! 32 KiB window and two 608-byte code tables. Every step consumes input, so no input
//! makes it loop, and every table index is bounded by construction.

use super::GzError;
use std::io::{self, Read};

/// Decoding stops at the first fault; a failed read of the input is kept in `BitIn`.
pub(super) type Res<T> = Result<T, GzError>;

/// How far back a match may reach (RFC 1951 2.), so the history to keep.
const WINDOW: usize = 32 * 1024;
/// The order in which a dynamic block sends the lengths of the code-length code (3.2.7).
const CODE_LENGTH_ORDER: [usize; 19] = [
    16, 17, 18, 0, 8, 7, 9, 6, 10, 5, 11, 4, 12, 3, 13, 2, 14, 1, 15,
];

/// The compressed input, by bytes or by bits (DEFLATE packs fields from each byte's least
/// significant bit up).
pub(super) struct BitIn<R> {
    inner: R,
    buf: Box<[u8]>,
    pos: usize,
    end: usize,
    /// Bits taken from the input but not used yet, the next one lowest; fewer than 8
    /// between calls, so they are always the rest of the last byte read.
    bits: u32,
    nbits: u32,
    /// The inner reader's error, for `GzReader::read` to hand out as it came.
    pub(super) read_error: Option<io::Error>,
}

impl<R: Read> BitIn<R> {
    pub(super) fn new(inner: R, buf_len: usize) -> BitIn<R> {
        let buf = vec![0; buf_len].into_boxed_slice();
        BitIn {
            inner,
            buf,
            pos: 0,
            end: 0,
            bits: 0,
            nbits: 0,
            read_error: None,
        }
    }

    /// The next byte, or none at the end of the input.
    pub(super) fn try_byte(&mut self) -> Res<Option<u8>> {
        if self.pos == self.end {
            let got = loop {
                match self.inner.read(&mut self.buf) {
                    Ok(got) => break got.min(self.buf.len()),
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => {
                        self.read_error = Some(e);
                        return Err(GzError::Input);
                    }
                }
            };
            (self.pos, self.end) = (0, got);
            if got == 0 {
                return Ok(None);
            }
        }
        self.pos += 1;
        Ok(Some(self.buf[self.pos - 1]))
    }

    pub(super) fn byte(&mut self) -> Res<u8> {
        self.try_byte()?.ok_or(GzError::Truncated)
    }

    /// A little-endian field of `n` (≤ 4) bytes, starting at the next whole byte (stored
    /// blocks and the gzip trailer do): the rest of a partly read byte is dropped.
    pub(super) fn le(&mut self, n: u32) -> Res<u32> {
        (self.bits, self.nbits) = (0, 0);
        let mut value = 0;
        for i in 0..n {
            value |= (self.byte()? as u32) << (8 * i);
        }
        Ok(value)
    }

    /// The next `n` (≤ 16) bits, the first one lowest.
    fn bits(&mut self, n: u32) -> Res<u32> {
        while self.nbits < n {
            self.bits |= (self.byte()? as u32) << self.nbits;
            self.nbits += 8;
        }
        let value = self.bits & ((1 << n) - 1);
        (self.bits, self.nbits) = (self.bits >> n, self.nbits - n);
        Ok(value)
    }
}

/// A canonical Huffman code (3.2.2): the code lengths alone fix the codes, so the count of
/// codes of each length and the symbols in code order are all that decoding needs.
struct Huffman {
    count: [u16; 16],
    symbol: [u16; 288],
}

impl Huffman {
    /// Builds the code from each symbol's code length (0: unused). An incomplete code is
    /// accepted (DEFLATE sends one for a single distance) and its unused patterns fail in
    /// `decode`; an over-subscribed one would make `decode` ambiguous, so it is refused.
    /// Every length is at most 15 (3-bit fields, or code-length symbols 0..=15); the
    /// `& 15` below only spares the binary a bounds check.
    fn build(&mut self, lengths: &[u8]) -> Result<(), GzError> {
        self.count = [0; 16];
        for &len in lengths {
            self.count[len as usize & 15] += 1;
        }
        let mut unused_codes: i32 = 1;
        for len in 1..16 {
            unused_codes = 2 * unused_codes - self.count[len] as i32;
            if unused_codes < 0 {
                return Err(GzError::BadHuffman);
            }
        }
        // Where each length's symbols start in `symbol`: shorter codes first, and within
        // a length in the symbols' order.
        let mut next = [0u16; 16];
        for len in 1..15 {
            next[len + 1] = next[len] + self.count[len];
        }
        for (symbol, &len) in lengths.iter().enumerate().filter(|(_, &len)| len != 0) {
            self.symbol[next[len as usize & 15] as usize] = symbol as u16;
            next[len as usize & 15] += 1;
        }
        Ok(())
    }

    /// Reads one code bit by bit (codes are sent from their most significant bit). The
    /// codes of length `len` are the `count[len]` consecutive values from `first`.
    fn decode<R: Read>(&self, input: &mut BitIn<R>) -> Res<u16> {
        let (mut code, mut first, mut index) = (0i32, 0i32, 0i32);
        for len in 1..16 {
            code |= input.bits(1)? as i32;
            let count = self.count[len] as i32;
            if code - first < count {
                return Ok(self.symbol[(index + code - first) as usize]);
            }
            index += count;
            first = (first + count) << 1;
            code <<= 1;
        }
        Err(GzError::BadHuffman)
    }
}

/// Base value and extra-bit count of a length (`step_log2` 2, `offset` 3) or distance
/// (1, 1) code (3.2.5): past the first codes, each group of 2^`step_log2` codes takes
/// one more extra bit than the group before, which is all the RFC's two tables say.
fn base_and_extra(code: u32, step_log2: u32, offset: u32) -> (u32, u32) {
    let step = 1 << step_log2;
    if code < step {
        return (code + offset, 0);
    }
    let extra = (code >> step_log2) - 1;
    (((step + (code & (step - 1))) << extra) + offset, extra)
}

#[derive(Clone, Copy)]
enum Block {
    Header,
    /// A stored block with this many bytes left to copy.
    Stored(u32),
    /// A fixed or dynamic block, its codes in `literal` and `distance`.
    Codes,
    /// After the final block.
    End,
}

/// One DEFLATE stream's decoder (a gzip member's data); `start` readies it for the next.
pub(super) struct Inflate {
    block: Block,
    last_block: bool,
    literal: Huffman,
    distance: Huffman,
    /// The last 32 KiB produced, written at `written % WINDOW`.
    window: Box<[u8; WINDOW]>,
    written: usize,
    /// Bytes produced by this stream: a match may not reach before its start.
    pub(super) len: u64,
    /// The part of a match not produced yet: its length left, its distance.
    copy_left: u32,
    copy_distance: usize,
}

impl Inflate {
    pub(super) fn new() -> Inflate {
        let code = || Huffman {
            count: [0; 16],
            symbol: [0; 288],
        };
        Inflate {
            block: Block::Header,
            last_block: false,
            literal: code(),
            distance: code(),
            window: Box::new([0; WINDOW]),
            written: 0,
            len: 0,
            copy_left: 0,
            copy_distance: 0,
        }
    }

    pub(super) fn start(&mut self) {
        (self.block, self.last_block, self.len, self.copy_left) = (Block::Header, false, 0, 0);
    }

    /// The stream's next byte, or none after its final block.
    pub(super) fn next<R: Read>(&mut self, input: &mut BitIn<R>) -> Res<Option<u8>> {
        loop {
            let byte = if self.copy_left > 0 {
                self.copy_left -= 1;
                self.window[self.written.wrapping_sub(self.copy_distance) % WINDOW]
            } else {
                match self.block {
                    Block::Header => {
                        self.block_header(input)?;
                        continue;
                    }
                    Block::Stored(0) => {
                        self.end_block();
                        continue;
                    }
                    Block::Stored(left) => {
                        self.block = Block::Stored(left - 1);
                        input.byte()?
                    }
                    Block::Codes => match self.code(input)? {
                        Some(byte) => byte,
                        None => continue,
                    },
                    Block::End => return Ok(None),
                }
            };
            self.window[self.written % WINDOW] = byte;
            self.written = self.written.wrapping_add(1);
            self.len += 1;
            return Ok(Some(byte));
        }
    }

    fn end_block(&mut self) {
        self.block = if self.last_block {
            Block::End
        } else {
            Block::Header
        };
    }

    fn block_header<R: Read>(&mut self, input: &mut BitIn<R>) -> Res<()> {
        self.last_block = input.bits(1)? == 1;
        self.block = match input.bits(2)? {
            0 => {
                let len = input.le(2)?;
                if input.le(2)? != !len & 0xffff {
                    return Err(GzError::StoredLength);
                }
                Block::Stored(len)
            }
            1 => {
                let mut lengths = [8u8; 288];
                lengths[144..256].fill(9);
                lengths[256..280].fill(7);
                self.literal.build(&lengths)?;
                self.distance.build(&[5; 30])?; // 5-bit patterns 30 and 31 stay unused
                Block::Codes
            }
            2 => {
                self.dynamic_codes(input)?;
                Block::Codes
            }
            _ => return Err(GzError::BadBlock),
        };
        Ok(())
    }

    /// Reads a dynamic block's code lengths (3.2.7), themselves sent in a Huffman code.
    fn dynamic_codes<R: Read>(&mut self, input: &mut BitIn<R>) -> Res<()> {
        let literals = input.bits(5)? as usize + 257;
        let distances = input.bits(5)? as usize + 1;
        let code_lengths = input.bits(4)? as usize + 4;
        if literals > 286 || distances > 30 {
            return Err(GzError::BadHuffman);
        }
        let mut lengths = [0u8; 286 + 30];
        for &symbol in &CODE_LENGTH_ORDER[..code_lengths] {
            lengths[symbol] = input.bits(3)? as u8;
        }
        self.literal.build(&lengths[..19])?; // lent to the code-length code
        lengths[..19].fill(0);
        let total = literals + distances;
        let mut i = 0;
        while i < total {
            let symbol = self.literal.decode(input)?;
            let (len, repeat) = match symbol {
                0..=15 => (symbol as u8, 1),
                16 if i > 0 => (lengths[i - 1], 3 + input.bits(2)?),
                17 => (0, 3 + input.bits(3)?),
                18 => (0, 11 + input.bits(7)?),
                _ => return Err(GzError::BadHuffman),
            };
            let end = i + repeat as usize;
            if end > total {
                return Err(GzError::BadHuffman);
            }
            lengths[i..end].fill(len);
            i = end;
        }
        if lengths[256] == 0 {
            return Err(GzError::BadHuffman); // a block that could never end
        }
        self.literal.build(&lengths[..literals])?;
        self.distance.build(&lengths[literals..total])?;
        Ok(())
    }

    /// Decodes one literal/length code: a literal, or none (a match begins, or the block ends).
    fn code<R: Read>(&mut self, input: &mut BitIn<R>) -> Res<Option<u8>> {
        let symbol = self.literal.decode(input)? as u32;
        let (len, extra) = match symbol {
            0..256 => return Ok(Some(symbol as u8)),
            256 => {
                self.end_block();
                return Ok(None);
            }
            285 => (258, 0),
            257..285 => base_and_extra(symbol - 257, 2, 3),
            _ => return Err(GzError::BadHuffman), // 286, 287: fixed codes that mean nothing
        };
        let len = len + input.bits(extra)?;
        // At most 30 distance codes are ever built (29 is the last DEFLATE defines).
        let (distance, extra) = base_and_extra(self.distance.decode(input)? as u32, 1, 1);
        let distance = distance + input.bits(extra)?;
        if distance as u64 > self.len {
            return Err(GzError::DistanceTooFar);
        }
        (self.copy_left, self.copy_distance) = (len, distance as usize);
        Ok(None)
    }
}
