//! A queue_log row as QueueMetrics stores it, and its compact spool encoding.

use std::fmt;

/// One queue_log event in the five-parameter form QueueMetrics expects.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Row {
    /// Unix seconds as written by Asterisk (no time-zone offset applied yet).
    pub time: i64,
    pub call_id: String,
    pub queue: String,
    pub agent: String,
    pub verb: String,
    pub params: [String; 5],
}

impl Row {
    /// A stable 64-bit identity of the row's content (FNV-1a), used to count identical
    /// rows during resync. Stable across versions and platforms: it is journaled.
    pub fn identity(&self) -> u64 {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        let mut eat = |bytes: &[u8]| {
            for &b in bytes {
                h ^= u64::from(b);
                h = h.wrapping_mul(0x0100_0000_01b3);
            }
            // 0xFF never occurs in UTF-8, so field boundaries cannot alias.
            h ^= 0xff;
            h = h.wrapping_mul(0x0100_0000_01b3);
        };
        eat(&self.time.to_be_bytes());
        for f in self.fields() {
            eat(f.as_bytes());
        }
        h
    }

    fn fields(&self) -> impl Iterator<Item = &String> {
        [&self.call_id, &self.queue, &self.agent, &self.verb]
            .into_iter()
            .chain(self.params.iter())
    }

    /// Appends the spool encoding: time (8 bytes BE), then nine LEB128-length-prefixed strings.
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.time.to_be_bytes());
        for f in self.fields() {
            put_varint(out, f.len() as u64);
            out.extend_from_slice(f.as_bytes());
        }
    }

    pub fn decode(bytes: &[u8]) -> Result<Row, DecodeError> {
        let mut cur = Cursor { bytes, at: 0 };
        let time = i64::from_be_bytes(cur.take(8)?.try_into().expect("8 bytes"));
        let mut next = || cur.string();
        let call_id = next()?;
        let queue = next()?;
        let agent = next()?;
        let verb = next()?;
        let params = [next()?, next()?, next()?, next()?, next()?];
        if cur.at != bytes.len() {
            return Err(DecodeError::TrailingBytes);
        }
        Ok(Row {
            time,
            call_id,
            queue,
            agent,
            verb,
            params,
        })
    }
}

#[derive(Debug, PartialEq, Eq)]
pub enum DecodeError {
    Truncated,
    NotUtf8,
    TrailingBytes,
    /// A field holds a value no writer produces (e.g. a fingerprint longer than 256
    /// bytes, or reaching before the start of the file).
    OutOfRange(&'static str),
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecodeError::Truncated => write!(f, "spool record is truncated"),
            DecodeError::NotUtf8 => write!(f, "spool record holds invalid UTF-8"),
            DecodeError::TrailingBytes => write!(f, "spool record has trailing bytes"),
            DecodeError::OutOfRange(what) => write!(f, "journal field out of range: {what}"),
        }
    }
}

pub(crate) fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    loop {
        let byte = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

/// A bounds-checked reader over journaled bytes: decoding never panics.
pub(crate) struct Cursor<'a> {
    pub bytes: &'a [u8],
    pub at: usize,
}

impl<'a> Cursor<'a> {
    pub fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        let end = self.at.checked_add(n).ok_or(DecodeError::Truncated)?;
        let s = self.bytes.get(self.at..end).ok_or(DecodeError::Truncated)?;
        self.at = end;
        Ok(s)
    }

    pub fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.take(1)?[0])
    }

    pub fn u64(&mut self) -> Result<u64, DecodeError> {
        Ok(u64::from_be_bytes(
            self.take(8)?.try_into().expect("8 bytes"),
        ))
    }

    pub fn varint(&mut self) -> Result<u64, DecodeError> {
        let mut v: u64 = 0;
        for shift in (0..64).step_by(7) {
            let b = self.u8()?;
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(DecodeError::Truncated)
    }

    pub fn string(&mut self) -> Result<String, DecodeError> {
        let len = usize::try_from(self.varint()?).map_err(|_| DecodeError::Truncated)?;
        let raw = self.take(len)?;
        String::from_utf8(raw.to_vec()).map_err(|_| DecodeError::NotUtf8)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Row {
        Row {
            time: 1_700_000_000,
            call_id: "1700000000.12".into(),
            queue: "q-support".into(),
            agent: "Agent/101".into(),
            verb: "CONNECT".into(),
            params: [
                "12".into(),
                "1700000000.11".into(),
                "3".into(),
                "".into(),
                "é|x".into(),
            ],
        }
    }

    #[test]
    fn spool_encoding_round_trips() {
        let row = sample();
        let mut buf = Vec::new();
        row.encode_into(&mut buf);
        assert_eq!(Row::decode(&buf).unwrap(), row);
    }

    #[test]
    fn truncated_record_is_an_error_not_a_panic() {
        let mut buf = Vec::new();
        sample().encode_into(&mut buf);
        for cut in 0..buf.len() {
            assert!(Row::decode(&buf[..cut]).is_err(), "cut at {cut}");
        }
    }

    #[test]
    fn identity_separates_fields() {
        let a = sample();
        let mut b = sample();
        b.queue = "q-suppor".into();
        b.agent = "tAgent/101".into();
        assert_ne!(a.identity(), b.identity());
        assert_eq!(a.identity(), sample().identity());
    }
}
