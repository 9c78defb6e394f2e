use super::*;
use proptest::prelude::*;
use std::io::Write;
use std::process::{Command, Stdio};

/// Compresses `data` with the system's gzip (the reference this decoder must agree with).
fn system_gzip(args: &[&str], data: &[u8]) -> Vec<u8> {
    let mut child = Command::new("/usr/bin/gzip")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("these tests need /usr/bin/gzip");
    let mut stdin = child.stdin.take().unwrap();
    let input = data.to_vec();
    let writer = std::thread::spawn(move || stdin.write_all(&input).unwrap());
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap();
    assert!(out.status.success());
    out.stdout
}

/// The whole stream, read with buffers of `chunk` bytes.
fn gunzip_by(gz: &[u8], chunk: usize) -> io::Result<Vec<u8>> {
    let mut reader = GzReader::new(gz);
    let (mut out, mut buf) = (Vec::new(), vec![0; chunk]);
    loop {
        match reader.read(&mut buf)? {
            0 => return Ok(out),
            n => out.extend_from_slice(&buf[..n]),
        }
    }
}

fn gunzip(gz: &[u8]) -> io::Result<Vec<u8>> {
    gunzip_by(gz, 64 * 1024)
}

/// The `GzError` behind a failed read, checking it came out as the io kind promised.
fn gz_error(result: io::Result<Vec<u8>>) -> GzError {
    let e = result.expect_err("corrupt input must fail");
    let error = *e.get_ref().unwrap().downcast_ref::<GzError>().unwrap();
    let kind = if error == GzError::Truncated {
        io::ErrorKind::UnexpectedEof
    } else {
        io::ErrorKind::InvalidData
    };
    assert_eq!(e.kind(), kind, "{error}");
    error
}

fn queue_log(bytes: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes + 100);
    let mut i = 0u64;
    while out.len() < bytes {
        let event = ["ENTERQUEUE", "CONNECT", "COMPLETEAGENT"][(i % 3) as usize];
        let line = format!(
            "{}|call-{}|sales|Agent/{}|{event}|{}|||\n",
            1_700_000_000 + i / 3,
            i / 3,
            100 + i % 17,
            i % 40
        );
        out.extend_from_slice(line.as_bytes());
        i += 1;
    }
    out
}

/// Deterministic incompressible bytes (xorshift64).
fn noise(len: usize, mut seed: u64) -> Vec<u8> {
    (0..len)
        .map(|_| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed >> 24) as u8
        })
        .collect()
}

/// A member around a raw DEFLATE stream, with a right CRC-32 and ISIZE for `data`.
fn member(deflate: &[u8], data: &[u8]) -> Vec<u8> {
    let mut crc = flate2::Crc::new();
    crc.update(data);
    let mut gz = vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3];
    gz.extend_from_slice(deflate);
    gz.extend_from_slice(&crc.sum().to_le_bytes());
    gz.extend_from_slice(&(data.len() as u32).to_le_bytes());
    gz
}

/// Writes DEFLATE bit fields, to hand-craft streams that no encoder would make.
#[derive(Default)]
struct Bits {
    bytes: Vec<u8>,
    used: u32,
}

impl Bits {
    /// A field of `n` bits, first bit lowest (block headers, extra bits).
    fn field(&mut self, value: u32, n: u32) -> &mut Bits {
        for i in 0..n {
            if self.used.is_multiple_of(8) {
                self.bytes.push(0);
            }
            *self.bytes.last_mut().unwrap() |= (((value >> i) & 1) as u8) << (self.used % 8);
            self.used += 1;
        }
        self
    }

    /// A Huffman code of `n` bits, sent from its most significant bit.
    fn code(&mut self, code: u32, n: u32) -> &mut Bits {
        (0..n).rev().fold(self, |bits, i| bits.field(code >> i, 1))
    }
}

#[test]
fn agrees_with_system_gzip_at_levels_1_6_9() {
    let mut data = queue_log(300_000);
    data.extend(noise(20_000, 7));
    data.extend(queue_log(100_000));
    for level in ["-1", "-6", "-9"] {
        let gz = system_gzip(&["-c", level], &data);
        assert_eq!(gunzip(&gz).unwrap(), data, "level {level}");
    }
}

#[test]
fn an_empty_file_gzipped_reads_as_nothing() {
    let gz = system_gzip(&["-c"], b"");
    assert_eq!(gunzip(&gz).unwrap(), b"");
}

#[test]
fn reads_a_5_mb_queue_log() {
    let data = queue_log(5 << 20);
    let gz = system_gzip(&["-c"], &data);
    assert_eq!(gunzip(&gz).unwrap(), data);
}

#[test]
fn reads_stored_blocks_of_incompressible_bytes() {
    let data = noise(200_000, 42);
    let gz = system_gzip(&["-c"], &data);
    // The first block's type (bits 1-2 after the 10-byte header) is 0: stored.
    assert_eq!((gz[10] >> 1) & 3, 0, "gzip chose no stored block");
    assert_eq!(gunzip(&gz).unwrap(), data);
}

#[test]
fn concatenated_members_read_as_one_stream() {
    let (a, b) = (queue_log(50_000), noise(5_000, 3));
    let mut gz = system_gzip(&["-c"], &a);
    gz.extend(system_gzip(&["-c", "-9"], &b));
    gz.extend(system_gzip(&["-c"], b""));
    assert_eq!(gunzip(&gz).unwrap(), [a, b].concat());
}

#[test]
fn one_byte_reads_give_the_same_bytes() {
    let mut data = queue_log(40_000);
    data.extend(noise(3_000, 9));
    let gz = system_gzip(&["-c"], &data);
    assert_eq!(gunzip_by(&gz, 1).unwrap(), data);
    assert_eq!(gunzip_by(&gz, 7).unwrap(), data);
}

#[test]
fn skips_the_name_gzip_stores_for_a_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("queue_log.2");
    std::fs::write(&path, queue_log(10_000)).unwrap();
    let out = Command::new("/usr/bin/gzip")
        .arg("-cN")
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(out.stdout[3] & FNAME, FNAME);
    assert_eq!(gunzip(&out.stdout).unwrap(), queue_log(10_000));
}

#[test]
fn skips_extra_name_comment_and_checks_the_header_crc() {
    let data = queue_log(5_000);
    let plain = system_gzip(&["-c", "-n"], &data);
    let mut header = plain[..10].to_vec();
    header[3] = FEXTRA | FNAME | FCOMMENT | FHCRC;
    header.extend_from_slice(&[5, 0, b'Q', b'L', 1, 0, 9]);
    header.extend_from_slice(b"queue_log.2\0a comment\0");
    let mut crc = flate2::Crc::new();
    crc.update(&header);
    let good = [&header[..], &(crc.sum() as u16).to_le_bytes(), &plain[10..]].concat();
    assert_eq!(gunzip(&good).unwrap(), data);

    let bad = [
        &header[..],
        &(crc.sum() as u16 ^ 1).to_le_bytes(),
        &plain[10..],
    ]
    .concat();
    assert_eq!(gz_error(gunzip(&bad)), GzError::CrcMismatch);
    let mut reserved = good.clone();
    reserved[3] |= 0x20;
    assert_eq!(gz_error(gunzip(&reserved)), GzError::BadHeader);
}

#[test]
fn a_wrong_crc_or_length_is_an_error_after_the_data() {
    let data = queue_log(20_000);
    let gz = system_gzip(&["-c"], &data);
    let at = gz.len() - 8;
    for (field, error) in [
        (at, GzError::CrcMismatch),
        (at + 4, GzError::LengthMismatch),
    ] {
        let mut bad = gz.clone();
        bad[field] ^= 0x10;
        let mut reader = GzReader::new(&bad[..]);
        let mut out = Vec::new();
        let e = reader.read_to_end(&mut out).unwrap_err();
        assert_eq!(
            out, data,
            "the bytes before the trailer are still handed out"
        );
        assert_eq!(e.get_ref().unwrap().downcast_ref::<GzError>(), Some(&error));
        // And the reader stays failed rather than resuming somewhere.
        assert_eq!(gz_error(gunzip_by_reader(&mut reader)), error);
    }
}

fn gunzip_by_reader(reader: &mut GzReader<&[u8]>) -> io::Result<Vec<u8>> {
    let mut out = Vec::new();
    reader.read_to_end(&mut out).map(|_| out)
}

#[test]
fn every_truncation_is_an_error() {
    let mut data = queue_log(100_000);
    data.extend(noise(30_000, 5));
    let gz = system_gzip(&["-c"], &data);
    let small = system_gzip(&["-c"], b"1700000000|call-1|sales|Agent/101|CONNECT|1|||\n");
    let big_cuts = (0..50)
        .map(|i| gz.len() * i / 50)
        .chain(gz.len() - 8..gz.len());
    let cuts = big_cuts
        .map(|cut| (&gz, cut))
        .chain((0..small.len()).map(|cut| (&small, cut)));
    for (file, cut) in cuts {
        assert_eq!(
            gz_error(gunzip(&file[..cut])),
            GzError::Truncated,
            "cut at {cut} of {}",
            file.len()
        );
    }
}

#[test]
fn flipped_bits_fail_or_change_nothing() {
    let data = queue_log(20_000);
    let gz = system_gzip(&["-c", "-n"], &data);
    let mut failed = 0;
    for at in 0..gz.len() {
        let mut bad = gz.clone();
        bad[at] ^= 1 << (at % 8);
        // A corrupt stream still expands at most ~1000-fold; cap it anyway.
        let mut out = Vec::new();
        match GzReader::new(&bad[..]).take(1 << 26).read_to_end(&mut out) {
            Ok(_) => assert_eq!(out, data, "flip at {at} went unnoticed"),
            Err(_) => failed += 1,
        }
    }
    // Only MTIME, XFL, OS and the final byte's padding may be flipped unnoticed.
    assert!(
        failed + 8 >= gz.len(),
        "{failed} of {} flips failed",
        gz.len()
    );
}

#[test]
fn not_gzip_and_trailing_garbage_are_named() {
    assert_eq!(gz_error(gunzip(b"1700000000|call-1|q\n")), GzError::NotGzip);
    assert_eq!(gz_error(gunzip(b"")), GzError::Truncated);
    let mut gz = system_gzip(&["-c"], b"row\n");
    gz.extend_from_slice(b"\0\0\0\0");
    let mut out = Vec::new();
    let e = GzReader::new(&gz[..]).read_to_end(&mut out).unwrap_err();
    assert_eq!(out, b"row\n");
    assert_eq!(
        e.get_ref().unwrap().downcast_ref(),
        Some(&GzError::TrailingGarbage)
    );
    assert!(is_gzip(&gz) && !is_gzip(b"\x1f\x8b") && !is_gzip(b"\x1f\x8b\x07"));
}

#[test]
fn a_match_copies_overlapping_bytes_from_the_window() {
    // Fixed codes: literal 'a' (0x30 + 0x61, 8 bits), length 258 (symbol 285: 11000101),
    // distance 1 (code 0), twice, then end of block (0000000).
    let mut bits = Bits::default();
    bits.field(1, 1).field(1, 2).code(0x30 + b'a' as u32, 8);
    bits.code(0b1100_0101, 8)
        .code(0, 5)
        .code(0b1100_0101, 8)
        .code(0, 5)
        .code(0, 7);
    let data = vec![b'a'; 1 + 2 * 258];
    assert_eq!(gunzip(&member(&bits.bytes, &data)).unwrap(), data);
}

#[test]
fn a_match_before_the_member_start_is_refused() {
    // Literal 'x', then length 3 (symbol 257: 0000001) at distance 2 (code 1): one byte short.
    let mut bits = Bits::default();
    bits.field(1, 1)
        .field(1, 2)
        .code(0x30 + b'x' as u32, 8)
        .code(1, 7)
        .code(1, 5)
        .code(0, 7);
    assert_eq!(
        gz_error(gunzip(&member(&bits.bytes, b"xxxx"))),
        GzError::DistanceTooFar
    );
    // Across members too: the second member's window starts empty.
    let mut bits = Bits::default();
    bits.field(1, 1)
        .field(1, 2)
        .code(1, 7)
        .code(0, 5)
        .code(0, 7);
    let two = [member(&[0x4b, 0x04, 0], b"a"), member(&bits.bytes, b"aaa")].concat();
    assert_eq!(gz_error(gunzip(&two)), GzError::DistanceTooFar);
}

#[test]
fn malformed_blocks_are_named() {
    let mut reserved = Bits::default();
    reserved.field(1, 1).field(3, 2);
    assert_eq!(
        gz_error(gunzip(&member(&reserved.bytes, b""))),
        GzError::BadBlock
    );

    let stored = [1, 3, 0, 0xfc, 0xfe, b'a', b'b', b'c'];
    assert_eq!(
        gz_error(gunzip(&member(&stored, b"abc"))),
        GzError::StoredLength
    );
    let stored = [1, 3, 0, 0xfc, 0xff, b'a', b'b', b'c'];
    assert_eq!(gunzip(&member(&stored, b"abc")).unwrap(), b"abc");

    // A dynamic block declaring 287 literal/length codes (RFC 1951 allows 286).
    let mut too_many = Bits::default();
    too_many
        .field(1, 1)
        .field(2, 2)
        .field(30, 5)
        .field(0, 5)
        .field(0, 4);
    assert_eq!(
        gz_error(gunzip(&member(&too_many.bytes, b""))),
        GzError::BadHuffman
    );

    // A code-length code with three codes of length 1 (for lengths 0, 7 and 8), which is
    // over-subscribed. Read as if it were not, the block would be a valid empty one: its
    // literal/length code gives symbols 129..=256 length 7 (bit 1) and the rest none.
    let mut over = Bits::default();
    over.field(1, 1)
        .field(2, 2)
        .field(1, 5)
        .field(0, 5)
        .field(2, 4);
    over.field(0, 9).field(1, 3).field(1, 3).field(1, 3);
    (0..259).fold(&mut over, |bits, i| {
        bits.code((129..=256).contains(&i) as u32, 1)
    });
    over.code(0b111_1111, 7);
    assert_eq!(
        gz_error(gunzip(&member(&over.bytes, b""))),
        GzError::BadHuffman
    );

    // Fixed distance codes 30 and 31 exist as bit patterns but mean nothing.
    let mut far = Bits::default();
    far.field(1, 1)
        .field(1, 2)
        .code(0x30, 8)
        .code(1, 7)
        .code(30, 5);
    assert_eq!(
        gz_error(gunzip(&member(&far.bytes, b""))),
        GzError::BadHuffman
    );
    // So do fixed literal/length codes 286 and 287.
    let mut long = Bits::default();
    long.field(1, 1)
        .field(1, 2)
        .code(0x30, 8)
        .code(0b1100_0110, 8);
    assert_eq!(
        gz_error(gunzip(&member(&long.bytes, b""))),
        GzError::BadHuffman
    );
}

/// Hands out `data` a few bytes at a time, with an `Interrupted` before each piece, and a
/// hard error where `fail_at` is reached.
struct Flaky<'a> {
    data: &'a [u8],
    interrupt: bool,
    fail_at: usize,
}

impl Read for Flaky<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.interrupt = !self.interrupt;
        if self.interrupt {
            return Err(io::ErrorKind::Interrupted.into());
        }
        if self.fail_at == 0 {
            return Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                "disk says no",
            ));
        }
        let n = buf.len().min(self.data.len()).min(self.fail_at).min(5);
        buf[..n].copy_from_slice(&self.data[..n]);
        self.data = &self.data[n..];
        self.fail_at -= n;
        Ok(n)
    }
}

#[test]
fn the_inner_readers_errors_come_through_and_interrupts_are_retried() {
    let data = queue_log(30_000);
    let gz = system_gzip(&["-c"], &data);
    let whole = Flaky {
        data: &gz,
        interrupt: false,
        fail_at: usize::MAX,
    };
    let mut out = Vec::new();
    GzReader::new(whole).read_to_end(&mut out).unwrap();
    assert_eq!(out, data);

    let cut = Flaky {
        data: &gz,
        interrupt: false,
        fail_at: gz.len() / 2,
    };
    let mut reader = GzReader::new(cut);
    let mut out = Vec::new();
    let e = reader.read_to_end(&mut out).unwrap_err();
    assert_eq!(
        (e.kind(), e.to_string()),
        (io::ErrorKind::PermissionDenied, "disk says no".into())
    );
    assert!(!out.is_empty() && data.starts_with(&out));
    // It cannot resume mid-symbol, so it stays failed.
    let e = reader.read(&mut [0; 64]).unwrap_err();
    assert_eq!(e.get_ref().unwrap().downcast_ref(), Some(&GzError::Input));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn round_trips_any_data_at_any_level(
        pieces in proptest::collection::vec((any::<bool>(), 0usize..20_000, any::<u64>()), 0..6),
        level in 0u32..=9,
        chunk in 1usize..5_000,
    ) {
        let data: Vec<u8> = pieces
            .iter()
            .flat_map(|&(text, len, seed)| {
                if text { queue_log(len)[..len].to_vec() } else { noise(len, seed | 1) }
            })
            .collect();
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(level));
        encoder.write_all(&data).unwrap();
        let gz = encoder.finish().unwrap();
        prop_assert_eq!(gunzip_by(&gz, chunk).unwrap(), data);
    }

    #[test]
    fn arbitrary_deflate_bytes_never_panic(body in proptest::collection::vec(any::<u8>(), 0..2_000)) {
        let mut gz = vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3];
        gz.extend_from_slice(&body);
        let mut out = Vec::new();
        let _ = GzReader::new(&gz[..]).take(1 << 22).read_to_end(&mut out);
    }
}
