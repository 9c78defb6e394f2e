//! Parsing one queue_log line into a [`Row`].
//!
//! `time|callid|queue|agent|verb|data1|..|data5`; older Asterisk wrote one `data` field
//! with pipes inside, which splits the same way. Never panics; never drops a byte of a
//! row: a line that is not UTF-8 is decoded as Latin-1, which maps every byte.

use crate::row::Row;
use std::borrow::Cow;
use std::fmt;

#[derive(Debug, PartialEq, Eq)]
pub enum LineError {
    TooFewFields(usize),
    BadTime(String),
}

impl fmt::Display for LineError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LineError::TooFewFields(n) => {
                write!(
                    f,
                    "{n} field(s), a row needs at least 5 (time|callid|queue|agent|verb)"
                )
            }
            LineError::BadTime(t) => write!(f, "time field {t:?} is not a Unix timestamp"),
        }
    }
}

pub fn parse_line(raw: &[u8]) -> Result<Row, LineError> {
    let mut raw = raw;
    while let [rest @ .., b'\r'] = raw {
        raw = rest;
    }
    if let Some(rest) = raw.strip_prefix(b"\xEF\xBB\xBF") {
        raw = rest;
    }
    let text = decode(raw);
    let mut fields = text.splitn(10, '|');
    let mut head: [&str; 5] = [""; 5];
    for (i, slot) in head.iter_mut().enumerate() {
        *slot = fields.next().ok_or(LineError::TooFewFields(i))?;
    }
    let time = parse_time(head[0]).ok_or_else(|| LineError::BadTime(clip(head[0])))?;
    let mut next = || fields.next().unwrap_or_default();
    // splitn(10) leaves every further pipe inside the fifth parameter.
    let [_, call_id, queue, agent, verb] = head;
    Ok(Row::from_fields(
        time,
        [
            call_id,
            queue,
            agent,
            verb,
            next(),
            next(),
            next(),
            next(),
            next(),
        ],
    ))
}

fn parse_time(t: &str) -> Option<i64> {
    if t.is_empty() || t.len() > 18 || !t.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    t.parse().ok()
}

fn clip(s: &str) -> String {
    s.chars().take(40).collect()
}

/// UTF-8 when valid, else Latin-1 (each byte is the code point of the same value).
/// Borrowed in the usual UTF-8 case: a parsed row allocates only its one text.
pub fn decode(raw: &[u8]) -> Cow<'_, str> {
    match std::str::from_utf8(raw) {
        Ok(s) => Cow::Borrowed(s),
        Err(_) => Cow::Owned(raw.iter().map(|&b| char::from(b)).collect()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &[u8]) -> Row {
        parse_line(s).unwrap()
    }

    #[test]
    fn five_data_fields() {
        let r = p(b"1700000000|1700000000.5|q1|Agent/1|CONNECT|12|1699999988.1|3\r");
        assert_eq!(r.time, 1_700_000_000);
        assert_eq!(r.call_id(), "1700000000.5");
        assert_eq!(r.queue(), "q1");
        assert_eq!(r.agent(), "Agent/1");
        assert_eq!(r.verb(), "CONNECT");
        assert_eq!(r.params(), ["12", "1699999988.1", "3", "", ""]);
    }

    #[test]
    fn no_data_and_trailing_pipe() {
        let r = p(b"1|NONE|NONE|NONE|QUEUESTART|");
        assert_eq!(r.params(), ["", "", "", "", ""]);
        let r = p(b"1|NONE|NONE|NONE|QUEUESTART");
        assert_eq!(r.params(), ["", "", "", "", ""]);
    }

    #[test]
    fn extra_fields_stay_in_the_fifth_parameter() {
        let r = p(b"1|c|q|a|V|1|2|3|4|5|6|7");
        assert_eq!(r.params(), ["1", "2", "3", "4", "5|6|7"]);
    }

    #[test]
    fn latin1_line_is_decoded_losslessly() {
        let r = p(b"1|c|q|Jos\xe9|V|caf\xe9");
        assert_eq!(r.agent(), "José");
        assert_eq!(r.param(0), "café");
        let r = p("1|c|q|José|V|😀".as_bytes());
        assert_eq!(r.agent(), "José");
        assert_eq!(r.param(0), "😀");
    }

    #[test]
    fn bom_and_crlf_are_stripped() {
        let r = p(b"\xEF\xBB\xBF5|c|q|a|V|x\r\r");
        assert_eq!(r.time, 5);
        assert_eq!(r.param(0), "x");
    }

    #[test]
    fn rejects_what_is_not_a_row() {
        assert_eq!(parse_line(b"1|c|q|a"), Err(LineError::TooFewFields(4)));
        assert_eq!(parse_line(b""), Err(LineError::TooFewFields(1)));
        assert!(matches!(
            parse_line(b"12a|c|q|a|V"),
            Err(LineError::BadTime(_))
        ));
        assert!(matches!(
            parse_line(b"-1|c|q|a|V"),
            Err(LineError::BadTime(_))
        ));
        assert!(matches!(
            parse_line(b"|c|q|a|V"),
            Err(LineError::BadTime(_))
        ));
    }

    #[test]
    fn never_panics_on_arbitrary_bytes() {
        let mut seed: u32 = 12345;
        for len in 0..300 {
            let bytes: Vec<u8> = (0..len)
                .map(|_| {
                    seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12345);
                    let b = (seed >> 16) as u8;
                    if b.is_multiple_of(5) {
                        b'|'
                    } else {
                        b
                    }
                })
                .collect();
            let _ = parse_line(&bytes);
        }
    }
}
