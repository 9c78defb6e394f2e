//! Splitting raw queue_log bytes into lines, with a hard cap on line length.
//!
//! Pure: the tailer hands in a chunk read at a file offset and gets back the complete
//! lines it holds and how many bytes it may consume. A last line without a newline is
//! never returned unless the caller says the file is final (rotated and quiet).

/// Longest line accepted, newline excluded. Anything longer is skipped and reported.
pub const MAX_LINE: usize = 64 * 1024;

#[derive(Debug, PartialEq, Eq)]
pub enum Piece<'a> {
    /// A complete line (without `\n`), starting at the given file offset.
    Line { at: u64, bytes: &'a [u8] },
    /// A line longer than [`MAX_LINE`] starting at this offset: skipped.
    Overlong { at: u64 },
}

#[derive(Debug, PartialEq, Eq)]
pub struct Split<'a> {
    pub pieces: Vec<Piece<'a>>,
    /// Bytes of the chunk that are done with; the rest must be read again later.
    pub consumed: usize,
    /// True when the chunk ended inside an overlong line that is still being skipped.
    pub skipping: bool,
}

/// Splits `chunk`, read at file offset `base`. `skipping` carries an overlong line over
/// from the previous chunk; `is_final` releases a last line that has no newline. At most
/// `max_pieces` pieces are returned (the rest of the chunk is left unconsumed), so the
/// rows parsed from one chunk stay within the memory budget.
pub fn split(
    chunk: &[u8],
    base: u64,
    skipping: bool,
    is_final: bool,
    max_pieces: usize,
) -> Split<'_> {
    let mut pieces = Vec::new();
    let mut i = 0;
    if skipping {
        match memchr(b'\n', &chunk[i..]) {
            Some(j) => i += j + 1,
            None => {
                return Split {
                    pieces,
                    consumed: chunk.len(),
                    skipping: !is_final,
                };
            }
        }
    }
    loop {
        if pieces.len() >= max_pieces.max(1) {
            return Split {
                pieces,
                consumed: i,
                skipping: false,
            };
        }
        // NUL runs come from copytruncate with a writer that kept its offset (a sparse
        // file): they are holes, not data, and must not glue themselves to the next row.
        while i < chunk.len() && chunk[i] == 0 {
            i += 1;
        }
        let rest = &chunk[i..];
        let at = base + i as u64;
        match memchr(b'\n', rest) {
            Some(j) => {
                let line = &rest[..j];
                if line.len() > MAX_LINE {
                    pieces.push(Piece::Overlong { at });
                } else if !is_blank(line) {
                    pieces.push(Piece::Line { at, bytes: line });
                }
                i += j + 1;
            }
            None => {
                if rest.len() > MAX_LINE {
                    pieces.push(Piece::Overlong { at });
                    return Split {
                        pieces,
                        consumed: chunk.len(),
                        skipping: !is_final,
                    };
                }
                if is_final && !is_blank(rest) {
                    pieces.push(Piece::Line { at, bytes: rest });
                    i = chunk.len();
                }
                return Split {
                    pieces,
                    consumed: i,
                    skipping: false,
                };
            }
        }
    }
}

fn is_blank(line: &[u8]) -> bool {
    line.iter().all(|&b| b == b'\r' || b == 0)
}

fn memchr(needle: u8, hay: &[u8]) -> Option<usize> {
    hay.iter().position(|&b| b == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines<'a>(s: &Split<'a>) -> Vec<&'a [u8]> {
        s.pieces
            .iter()
            .filter_map(|p| match p {
                Piece::Line { bytes, .. } => Some(*bytes),
                Piece::Overlong { .. } => None,
            })
            .collect()
    }

    #[test]
    fn holds_a_partial_last_line() {
        let s = split(b"a\nb\nabc", 100, false, false, usize::MAX);
        assert_eq!(lines(&s), vec![&b"a"[..], b"b"]);
        assert_eq!(s.consumed, 4);
        assert!(!s.skipping);
        assert_eq!(
            s.pieces[1],
            Piece::Line {
                at: 102,
                bytes: b"b"
            }
        );
    }

    #[test]
    fn releases_a_partial_last_line_of_a_final_file() {
        let s = split(b"a\nabc", 0, false, true, usize::MAX);
        assert_eq!(lines(&s), vec![&b"a"[..], b"abc"]);
        assert_eq!(s.consumed, 5);
    }

    #[test]
    fn skips_nul_holes_and_blank_lines() {
        let s = split(b"\0\0\0\0row\n\r\n\nrow2\n", 0, false, false, usize::MAX);
        assert_eq!(lines(&s), vec![&b"row"[..], b"row2"]);
        assert_eq!(s.consumed, 16);
        let only_holes = split(&[0u8; 10], 0, false, false, usize::MAX);
        assert_eq!(only_holes.consumed, 10);
    }

    #[test]
    fn overlong_line_is_reported_and_skipped_across_chunks() {
        let mut chunk = vec![b'x'; MAX_LINE + 10];
        let s = split(&chunk, 7, false, false, usize::MAX);
        assert_eq!(s.pieces, vec![Piece::Overlong { at: 7 }]);
        assert!(s.skipping);
        assert_eq!(s.consumed, chunk.len());
        chunk.truncate(5);
        chunk.extend_from_slice(b"\nnext\n");
        let s = split(&chunk, 0, true, false, usize::MAX);
        assert_eq!(lines(&s), vec![&b"next"[..]]);
        assert!(!s.skipping);
    }

    #[test]
    fn overlong_line_complete_in_one_chunk() {
        let mut chunk = b"a\n".to_vec();
        chunk.extend(std::iter::repeat_n(b'y', MAX_LINE + 1));
        chunk.extend_from_slice(b"\nb\n");
        let s = split(&chunk, 0, false, false, usize::MAX);
        assert_eq!(s.pieces.len(), 3);
        assert_eq!(s.pieces[1], Piece::Overlong { at: 2 });
        assert_eq!(lines(&s), vec![&b"a"[..], b"b"]);
    }

    #[test]
    fn stops_after_max_pieces() {
        let s = split(b"a\nb\nc\nd", 0, false, false, 2);
        assert_eq!(lines(&s), vec![&b"a"[..], b"b"]);
        assert_eq!(s.consumed, 4);
        let s = split(&b"a\nb\nc\nd"[4..], 4, false, false, 2);
        assert_eq!(lines(&s), vec![&b"c"[..]]);
        assert_eq!(s.consumed, 2);
    }

    #[test]
    fn a_line_of_exactly_max_length_is_kept() {
        let mut chunk = vec![b'z'; MAX_LINE];
        chunk.push(b'\n');
        let s = split(&chunk, 0, false, false, usize::MAX);
        assert_eq!(lines(&s).len(), 1);
    }
}
