//! Asterisk Manager Interface framing, pure: the byte stream from Asterisk split into
//! messages (`Key: Value` lines, a blank line after each, a bare banner line first),
//! within fixed bounds whatever the peer sends. The TCP side is `ami.rs`; what is sent
//! is `feedback::Transaction`.

/// One message from Asterisk: a response or an event.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Message {
    pub fields: Vec<(String, String)>,
}

impl Message {
    pub fn get(&self, key: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(key))
            .map(|(_, v)| v.as_str())
    }
}

/// Bounds on what Asterisk (or whatever answers on the AMI port) can make qlship hold.
pub const MAX_AMI_LINE: usize = 8 * 1024;
pub const MAX_AMI_MESSAGE: usize = 64 * 1024;
pub const MAX_AMI_FIELDS: usize = 128;

/// An AMI message over one of the bounds: the connection is given up.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AmiLimit {
    Line,
    Message,
    Fields,
}

impl std::fmt::Display for AmiLimit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AmiLimit::Line => write!(f, "AMI sent a line over {MAX_AMI_LINE} bytes"),
            AmiLimit::Message => write!(f, "AMI sent a message over {MAX_AMI_MESSAGE} bytes"),
            AmiLimit::Fields => write!(f, "AMI sent a message of over {MAX_AMI_FIELDS} lines"),
        }
    }
}

/// Splits AMI's byte stream into messages. The banner (`Asterisk Call Manager/x.y`) is a
/// single line with no blank line after it, so a block whose first line has no colon
/// before the slash is taken as the banner and returned as a message with key `Banner`.
/// Holds at most one line and one message: anything larger is an [`AmiLimit`] error.
#[derive(Default)]
pub struct MessageReader {
    /// Bytes of the line not yet ended by a newline (kept as bytes: a chunk may end
    /// inside a UTF-8 character).
    pending: Vec<u8>,
    current: Message,
    /// Bytes of the lines in `current`.
    current_bytes: usize,
}

impl MessageReader {
    /// Feeds bytes; returns the messages they complete, or the bound they broke (the
    /// reader is then spent: the caller drops the connection).
    pub fn feed(&mut self, bytes: &[u8]) -> Result<Vec<Message>, AmiLimit> {
        let mut out = Vec::new();
        let mut rest = bytes;
        while let Some(i) = rest.iter().position(|b| *b == b'\n') {
            if self.pending.len() + i > MAX_AMI_LINE {
                return Err(AmiLimit::Line);
            }
            self.pending.extend_from_slice(&rest[..i]);
            rest = &rest[i + 1..];
            let line = std::mem::take(&mut self.pending);
            let line = String::from_utf8_lossy(&line);
            self.line(line.trim_end_matches('\r'), &mut out)?;
        }
        if self.pending.len() + rest.len() > MAX_AMI_LINE {
            return Err(AmiLimit::Line);
        }
        self.pending.extend_from_slice(rest);
        Ok(out)
    }

    /// Bytes held between calls (for the bounds' tests).
    pub fn held(&self) -> usize {
        self.pending.len() + self.current_bytes
    }

    fn line(&mut self, line: &str, out: &mut Vec<Message>) -> Result<(), AmiLimit> {
        if line.is_empty() {
            if !self.current.fields.is_empty() {
                out.push(std::mem::take(&mut self.current));
                self.current_bytes = 0;
            }
            return Ok(());
        }
        if self.current.fields.len() >= MAX_AMI_FIELDS {
            return Err(AmiLimit::Fields);
        }
        self.current_bytes += line.len();
        if self.current_bytes > MAX_AMI_MESSAGE {
            return Err(AmiLimit::Message);
        }
        match line.split_once(':') {
            Some((k, v)) if !k.contains('/') && !k.contains(' ') => self
                .current
                .fields
                .push((k.to_string(), v.trim().to_string())),
            _ if self.current.fields.is_empty() => {
                self.current_bytes = 0;
                out.push(Message {
                    fields: vec![("Banner".into(), line.to_string())],
                })
            }
            // A continuation line (e.g. `Command` output): keep it with the message.
            _ => self
                .current
                .fields
                .push(("Output".into(), line.to_string())),
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reader_refuses_long_lines_big_messages_and_many_fields() {
        let mut r = MessageReader::default();
        assert_eq!(r.feed(&vec![b'a'; MAX_AMI_LINE]), Ok(vec![]));
        assert_eq!(r.feed(b"a"), Err(AmiLimit::Line));
        let mut r = MessageReader::default();
        // At most MAX_AMI_LINE bytes before the LF, a CR included.
        let line = format!("K: {}\r\n", "v".repeat(MAX_AMI_LINE - 4));
        assert_eq!(r.feed(line.as_bytes()), Ok(vec![]));
        let longer = format!("K: {}\r", "v".repeat(MAX_AMI_LINE - 3));
        assert_eq!(r.feed(&longer.as_bytes()[..MAX_AMI_LINE]), Ok(vec![]));
        assert_eq!(
            r.feed(b"\r\n"),
            Err(AmiLimit::Line),
            "CR counts in the line"
        );
        let mut r = MessageReader::default();
        let mut got = Ok(vec![]);
        for _ in 0..(MAX_AMI_MESSAGE / (MAX_AMI_LINE - 3)) + 1 {
            got = r.feed(format!("K: {}\n", "v".repeat(MAX_AMI_LINE - 4)).as_bytes());
            assert!(r.held() <= MAX_AMI_MESSAGE + MAX_AMI_LINE);
        }
        assert_eq!(got, Err(AmiLimit::Message));
        let mut r = MessageReader::default();
        assert_eq!(
            r.feed("K: v\n".repeat(MAX_AMI_FIELDS).as_bytes()),
            Ok(vec![])
        );
        assert_eq!(r.feed(b"K: v\n"), Err(AmiLimit::Fields));
        // A chunk that ends inside a UTF-8 character loses nothing.
        let mut r = MessageReader::default();
        let text = "Message: caf\u{e9}\r\n\r\n".as_bytes();
        let mut got = r.feed(&text[..13]).unwrap();
        got.extend(r.feed(&text[13..]).unwrap());
        assert_eq!(got[0].get("Message"), Some("caf\u{e9}"));
    }

    #[test]
    fn the_reader_splits_banner_events_and_responses_across_any_chunking() {
        let stream = b"Asterisk Call Manager/9.0.0\r\nEvent: FullyBooted\r\nStatus: up\r\n\r\nResponse: Success\r\nActionID: a1\r\nMessage: Authentication accepted\r\n\r\n";
        for split in 1..stream.len() {
            let mut r = MessageReader::default();
            let mut got = r.feed(&stream[..split]).unwrap();
            got.extend(r.feed(&stream[split..]).unwrap());
            assert_eq!(got.len(), 3, "split at {split}");
            assert_eq!(got[0].get("Banner"), Some("Asterisk Call Manager/9.0.0"));
            assert_eq!(got[1].get("Event"), Some("FullyBooted"));
            assert_eq!(got[2].get("actionid"), Some("a1"));
        }
    }
}
