//! A queue_log row as QueueMetrics stores it, and its compact spool encoding.

use std::fmt;

/// The nine text fields of a row, in queue_log order: call id, queue, agent, verb and
/// the five parameters.
pub const FIELDS: usize = 9;
const CALL_ID: usize = 0;
const QUEUE: usize = 1;
const AGENT: usize = 2;
const VERB: usize = 3;
const PARAMS: usize = 4;

/// One queue_log event in the five-parameter form QueueMetrics expects.
///
/// The nine text fields live back to back in one string, each known by where it ends:
/// one allocation a row instead of nine. Rows are made by the reader, decoded from the
/// spool by every uploader and dropped at a rate of 100k+ a second in a catch-up, and
/// with nine `String`s each a third of that CPU went to the allocator and the futex
/// waits on its lock between the reader, uploader and journal threads.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Row {
    /// Unix seconds as written by Asterisk (no time-zone offset applied yet).
    pub time: i64,
    text: String,
    /// Where each field ends in `text`.
    ends: [u32; FIELDS],
}

impl Row {
    pub fn new(
        time: i64,
        call_id: &str,
        queue: &str,
        agent: &str,
        verb: &str,
        params: [&str; 5],
    ) -> Row {
        let [p1, p2, p3, p4, p5] = params;
        Row::from_fields(time, [call_id, queue, agent, verb, p1, p2, p3, p4, p5])
    }

    /// A row of the nine fields in queue_log order.
    pub fn from_fields(time: i64, fields: [&str; FIELDS]) -> Row {
        let mut text = String::with_capacity(fields.iter().map(|f| f.len()).sum());
        let mut ends = [0u32; FIELDS];
        for (end, f) in ends.iter_mut().zip(fields) {
            text.push_str(f);
            *end = text_len(&text);
        }
        Row { time, text, ends }
    }

    /// Field `i` (0..[`FIELDS`]) in queue_log order.
    pub fn field(&self, i: usize) -> &str {
        let start = if i == 0 { 0 } else { self.ends[i - 1] as usize };
        &self.text[start..self.ends[i] as usize]
    }

    pub fn call_id(&self) -> &str {
        self.field(CALL_ID)
    }
    pub fn queue(&self) -> &str {
        self.field(QUEUE)
    }
    pub fn agent(&self) -> &str {
        self.field(AGENT)
    }
    pub fn verb(&self) -> &str {
        self.field(VERB)
    }
    /// Parameter `i` (0..5: data1..data5).
    pub fn param(&self, i: usize) -> &str {
        self.field(PARAMS + i)
    }
    pub fn params(&self) -> [&str; 5] {
        std::array::from_fn(|i| self.param(i))
    }

    /// The nine fields in queue_log order.
    pub fn fields(&self) -> impl Iterator<Item = &str> {
        (0..FIELDS).map(|i| self.field(i))
    }

    pub fn set_queue(&mut self, queue: &str) {
        self.set_field(QUEUE, queue);
    }
    pub fn set_agent(&mut self, agent: &str) {
        self.set_field(AGENT, agent);
    }
    pub fn set_param(&mut self, i: usize, value: &str) {
        self.set_field(PARAMS + i, value);
    }

    fn set_field(&mut self, i: usize, value: &str) {
        let mut fields: [&str; FIELDS] = std::array::from_fn(|f| self.field(f));
        fields[i] = value;
        *self = Row::from_fields(self.time, fields);
    }

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
        // The fields take at most what is left of the record, less a length byte each.
        let mut text = String::with_capacity(bytes.len().saturating_sub(8 + FIELDS));
        let mut ends = [0u32; FIELDS];
        for end in &mut ends {
            let len = usize::try_from(cur.varint()?).map_err(|_| DecodeError::Truncated)?;
            let raw = cur.take(len)?;
            text.push_str(std::str::from_utf8(raw).map_err(|_| DecodeError::NotUtf8)?);
            *end = u32::try_from(text.len()).map_err(|_| DecodeError::OutOfRange("row length"))?;
        }
        if cur.at != bytes.len() {
            return Err(DecodeError::TrailingBytes);
        }
        Ok(Row { time, text, ends })
    }
}

/// A row made here is a parsed line (the reader skips lines over 64 KiB) or a test's:
/// far below 4 GiB.
fn text_len(text: &str) -> u32 {
    u32::try_from(text.len()).expect("a row's text is under 4 GiB")
}

impl fmt::Debug for Row {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Row")
            .field("time", &self.time)
            .field("call_id", &self.call_id())
            .field("queue", &self.queue())
            .field("agent", &self.agent())
            .field("verb", &self.verb())
            .field("params", &self.params())
            .finish()
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
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Row {
        Row::new(
            1_700_000_000,
            "1700000000.12",
            "q-support",
            "Agent/101",
            "CONNECT",
            ["12", "1700000000.11", "3", "", "é|x"],
        )
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
        b.set_queue("q-suppor");
        b.set_agent("tAgent/101");
        assert_ne!(a.identity(), b.identity());
        assert_eq!(a.identity(), sample().identity());
    }
}
