//! The jsonQLoaderApi.do wire format: JSON commands in a form field, JSON answers.
//!
//! Pure encoding and decoding; the HTTP shell lives in `http.rs`. Every non-ASCII
//! character is written as a `\uXXXX` escape, because the servlet container decodes
//! form fields as ISO-8859-1 and raw UTF-8 would arrive as mojibake.

use crate::row::Row;
use miniserde::json::{self, Value};
use std::fmt::{self, Write};

pub const VERSION: &str = "1.0";

/// What a row is sent as, for one target.
#[derive(Clone, Debug)]
pub struct Partition {
    pub token: String,
    /// Seconds added to every row's time for this target.
    pub tz_offset: i64,
}

// The encoders below copy runs of bytes that need no escaping in one go: per-character
// pushes and `write!` were a quarter of the catch-up's CPU time.

/// Bytes a JSON string carries as they are (printable ASCII but `"` and `\`).
fn json_plain(b: u8) -> bool {
    matches!(b, b' '..=b'~') && b != b'"' && b != b'\\'
}

pub fn json_string(s: &str, out: &mut String) {
    out.push('"');
    let bytes = s.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let run = bytes[i..].iter().take_while(|&&b| json_plain(b)).count();
        // A run ends before an ASCII byte or the first byte of a character: a boundary.
        out.push_str(&s[i..i + run]);
        i += run;
        let Some(c) = s[i..].chars().next() else {
            break;
        };
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            _ => {
                let mut units = [0u16; 2];
                // Rare (non-ASCII, control characters): not worth a faster path.
                for u in c.encode_utf16(&mut units) {
                    let _ = write!(out, "\\u{u:04x}");
                }
            }
        }
        i += c.len_utf8();
    }
    out.push('"');
}

/// Appends `n` in decimal.
fn push_int(n: i64, out: &mut String) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    let mut v = n.unsigned_abs();
    loop {
        at -= 1;
        digits[at] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    if n < 0 {
        out.push('-');
    }
    out.push_str(std::str::from_utf8(&digits[at..]).expect("ASCII digits"));
}

fn head(command: &str, p: &Partition, out: &mut String) {
    out.push_str("{\"commandId\":");
    json_string(command, out);
    out.push_str(",\"version\":\"");
    out.push_str(VERSION);
    out.push_str("\",\"token\":");
    json_string(&p.token, out);
}

/// The row fields, without braces: `"timeId":"…",…,"parameters":[…]`.
fn row_fields(row: &Row, p: &Partition, out: &mut String) {
    out.push_str("\"timeId\":\"");
    push_int(row.time.saturating_add(p.tz_offset), out);
    out.push('"');
    for (name, value) in [
        (",\"callId\":", row.call_id()),
        (",\"queue\":", row.queue()),
        (",\"agent\":", row.agent()),
        (",\"verb\":", row.verb()),
    ] {
        out.push_str(name);
        json_string(value, out);
    }
    out.push_str(",\"parameters\":[");
    for (i, param) in row.params().into_iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        json_string(param, out);
    }
    out.push(']');
}

pub fn row_object(row: &Row, p: &Partition) -> String {
    let mut out = String::with_capacity(160);
    out.push('{');
    row_fields(row, p, &mut out);
    out.push('}');
    out
}

pub fn check_hwm(p: &Partition) -> String {
    let mut out = String::new();
    head("checkHWM", p, &mut out);
    out.push('}');
    out
}

pub fn check_row(row: &Row, p: &Partition) -> String {
    let mut out = String::new();
    head("checkRow", p, &mut out);
    out.push(',');
    row_fields(row, p, &mut out);
    out.push('}');
    out
}

/// The heartbeat's time is on the target's clock, like its rows' times.
pub fn check_hb(p: &Partition, now: i64) -> String {
    let mut out = String::new();
    head("checkHb", p, &mut out);
    let _ = write!(out, ",\"timeId\":\"{}\"}}", now.saturating_add(p.tz_offset));
    out
}

/// `COMMANDSTRING=<url-encoded json>`, the whole request body.
pub fn form_body(json: &str) -> String {
    let mut out = String::with_capacity(json.len() * 3 / 2 + 16);
    out.push_str("COMMANDSTRING=");
    url_encode_into(json, &mut out);
    out
}

pub fn url_encode_into(s: &str, out: &mut String) {
    out.reserve(s.len() * 3);
    let unreserved = |b: &u8| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~');
    let bytes = s.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let run = bytes[i..].iter().take_while(|b| unreserved(b)).count();
        if run > 0 {
            // Starts and ends next to ASCII bytes: both ends are character boundaries.
            out.push_str(&s[i..i + run]);
            i += run;
        }
        if let Some(&b) = bytes.get(i) {
            let at = 3 * usize::from(b);
            out.push_str(&PERCENT[at..at + 3]);
            i += 1;
        }
    }
}

/// `%00%01…%FF`: every byte's escape, three characters each.
const PERCENT: &str = {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    const TABLE: [u8; 768] = {
        let mut t = [0u8; 768];
        let mut b = 0;
        while b < 256 {
            t[3 * b] = b'%';
            t[3 * b + 1] = HEX[b >> 4];
            t[3 * b + 2] = HEX[b & 0xf];
            b += 1;
        }
        t
    };
    match std::str::from_utf8(&TABLE) {
        Ok(s) => s,
        Err(_) => panic!("ASCII"),
    }
};

/// An insertAll request body built row by row, so that its exact size is known before
/// a row is added: a batch never exceeds its byte budget (except a lone oversized row,
/// which is sent alone rather than wedging the pipeline).
pub struct InsertAllBody {
    body: String,
    rows: usize,
    /// Reused for every row: one row's JSON, then its URL encoding.
    json: String,
    encoded: String,
}

/// URL-encoded `]}` that closes every insertAll body.
const CLOSING: &str = "%5D%7D";

impl InsertAllBody {
    pub fn new(p: &Partition) -> Self {
        let mut json = String::new();
        head("insertAll", p, &mut json);
        json.push_str(",\"rows\":[");
        Self {
            body: form_body(&json),
            rows: 0,
            json: String::with_capacity(256),
            encoded: String::with_capacity(512),
        }
    }

    /// Adds the row if the body stays within `max_bytes` (or if it is the first row).
    pub fn try_push(&mut self, row: &Row, p: &Partition, max_bytes: usize) -> bool {
        self.json.clear();
        self.json.push('{');
        row_fields(row, p, &mut self.json);
        self.json.push('}');
        self.encoded.clear();
        if self.rows > 0 {
            self.encoded.push_str("%2C");
        }
        url_encode_into(&self.json, &mut self.encoded);
        if self.rows > 0 && self.body.len() + self.encoded.len() + CLOSING.len() > max_bytes {
            return false;
        }
        self.body.push_str(&self.encoded);
        self.rows += 1;
        true
    }

    pub fn rows(&self) -> usize {
        self.rows
    }

    pub fn finish(mut self) -> String {
        self.body.push_str(CLOSING);
        self.body
    }
}

/// A decoded answer from jsonQLoaderApi.do.
#[derive(Debug, PartialEq, Eq)]
pub struct Answer {
    /// `Ok(())` for `"OK"`, `Err(text)` for `"KO: text"` (or anything else).
    pub status: Result<(), String>,
    pub result: Option<String>,
    /// `checkFb`: the action containers handed back (empty for other commands).
    pub actions: Vec<Result<crate::feedback::ActionContainer, (String, String)>>,
}

#[derive(Debug, PartialEq, Eq)]
pub enum AnswerError {
    NotJson(String),
    NoStatus,
}

impl fmt::Display for AnswerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AnswerError::NotJson(start) => write!(f, "answer is not JSON: {start:?}"),
            AnswerError::NoStatus => write!(f, "answer has no resultStatus"),
        }
    }
}

pub fn parse_answer(body: &[u8]) -> Result<Answer, AnswerError> {
    // The server may label its answer ISO-8859-1; what matters is ASCII JSON.
    let text = crate::parse::decode(body);
    let value: Value = json::from_str(text.trim())
        .map_err(|_| AnswerError::NotJson(text.chars().take(80).collect()))?;
    let Value::Object(map) = value else {
        return Err(AnswerError::NotJson(text.chars().take(80).collect()));
    };
    let status = match map.get("resultStatus") {
        Some(Value::String(s)) if s == "OK" => Ok(()),
        Some(Value::String(s)) => Err(s.trim_start_matches("KO:").trim().to_owned()),
        _ => return Err(AnswerError::NoStatus),
    };
    let result = match map.get("result") {
        Some(Value::String(s)) => Some(s.clone()),
        Some(Value::Number(n)) => Some(n.to_string()),
        _ => None,
    };
    let actions = crate::feedback::containers(map.get("actions"));
    Ok(Answer {
        status,
        result,
        actions,
    })
}

/// `Basic base64(user:password)`, sent preemptively: QueueMetrics never challenges.
pub fn basic_auth(user: &str, password: &str) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let input = format!("{user}:{password}");
    let mut out = String::from("Basic ");
    for chunk in input.as_bytes().chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row() -> Row {
        Row::new(100, "c\"1", "q", "José", "V", ["😀", "a\\b", "", "", "x|y"])
    }

    fn part(tz: i64) -> Partition {
        Partition {
            token: "P001".into(),
            tz_offset: tz,
        }
    }

    #[test]
    fn row_json_is_ascii_with_escapes_and_five_parameters() {
        let j = row_object(&row(), &part(3600));
        assert!(j.is_ascii());
        assert_eq!(
            j,
            r#"{"timeId":"3700","callId":"c\"1","queue":"q","agent":"Jos\u00e9","verb":"V","parameters":["\ud83d\ude00","a\\b","","","x|y"]}"#
        );
        let back: Value = json::from_str(&j).unwrap();
        let Value::Object(m) = back else { panic!() };
        assert!(matches!(m.get("agent"), Some(Value::String(a)) if a == "José"));
    }

    #[test]
    fn commands_have_the_documented_fields() {
        assert_eq!(
            check_hwm(&part(0)),
            r#"{"commandId":"checkHWM","version":"1.0","token":"P001"}"#
        );
        assert!(check_row(&row(), &part(0)).starts_with(
            r#"{"commandId":"checkRow","version":"1.0","token":"P001","timeId":"100","#
        ));
        assert_eq!(
            check_hb(&part(0), 5),
            r#"{"commandId":"checkHb","version":"1.0","token":"P001","timeId":"5"}"#
        );
        assert_eq!(
            check_hb(&part(-3600), 5000),
            r#"{"commandId":"checkHb","version":"1.0","token":"P001","timeId":"1400"}"#
        );
    }

    #[test]
    fn form_body_url_encodes_everything_but_unreserved() {
        assert_eq!(
            form_body(r#"{"a":"b c+&="}"#),
            "COMMANDSTRING=%7B%22a%22%3A%22b%20c%2B%26%3D%22%7D"
        );
    }

    #[test]
    fn insert_all_body_respects_its_byte_budget() {
        let p = part(0);
        let mut body = InsertAllBody::new(&p);
        let limit = 2000;
        let mut n = 0;
        while body.try_push(&row(), &p, limit) {
            n += 1;
            assert!(n < 1000);
        }
        assert!(n >= 2);
        let s = body.finish();
        assert!(s.len() <= limit, "{} > {limit}", s.len());
        // The body decodes to a JSON command holding exactly n rows.
        let json_text = url_decode(s.strip_prefix("COMMANDSTRING=").unwrap());
        let Value::Object(m) = json::from_str::<Value>(&json_text).unwrap() else {
            panic!()
        };
        let Some(Value::Array(rows)) = m.get("rows") else {
            panic!()
        };
        assert_eq!(rows.len(), n);
    }

    #[test]
    fn a_row_larger_than_the_budget_still_goes_alone() {
        let p = part(0);
        let mut big = row();
        big.set_param(4, &"x".repeat(5000));
        let mut body = InsertAllBody::new(&p);
        assert!(body.try_push(&big, &p, 1000));
        assert!(!body.try_push(&row(), &p, 1000));
        assert_eq!(body.rows(), 1);
    }

    fn url_decode(s: &str) -> String {
        let b = s.as_bytes();
        let mut out = Vec::new();
        let mut i = 0;
        while i < b.len() {
            if b[i] == b'%' {
                out.push(u8::from_str_radix(&s[i + 1..i + 3], 16).unwrap());
                i += 3;
            } else {
                out.push(b[i]);
                i += 1;
            }
        }
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn answers_are_decoded() {
        let a = parse_answer(
            br#"{"commandId":"checkHWM","resultStatus":"OK","result":"1700","name":"x"}"#,
        )
        .unwrap();
        assert_eq!(
            a,
            Answer {
                status: Ok(()),
                result: Some("1700".into()),
                actions: Vec::new(),
            }
        );
        let a = parse_answer(br#"{"resultStatus":"OK","result":null}"#).unwrap();
        assert_eq!(a.result, None);
        let a = parse_answer(br#"{"resultStatus":"KO: Empty partition found for token: P001"}"#)
            .unwrap();
        assert_eq!(
            a.status,
            Err("Empty partition found for token: P001".into())
        );
        assert!(matches!(
            parse_answer(b"<html>"),
            Err(AnswerError::NotJson(_))
        ));
        assert_eq!(parse_answer(b"{}"), Err(AnswerError::NoStatus));
    }

    #[test]
    fn basic_auth_matches_rfc_examples() {
        assert_eq!(
            basic_auth("Aladdin", "open sesame"),
            "Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ=="
        );
        assert_eq!(
            basic_auth("webqloader", "qloader"),
            "Basic d2VicWxvYWRlcjpxbG9hZGVy"
        );
        assert_eq!(basic_auth("a", ""), "Basic YTo=");
    }
}
