//! A small JSON reader for the rules files: values with the line each starts on, so
//! that every error names its line and key (miniserde reports neither). Objects keep
//! their keys in file order and refuse a key given twice; nesting is capped.

use super::ParseError;

#[derive(Debug, Clone, PartialEq)]
pub(super) enum Value {
    Null,
    Bool(bool),
    Num(f64),
    Str(String),
    Arr(Vec<(Value, usize)>),
    /// Keys in file order with the line each starts on.
    Obj(Vec<(String, Value, usize)>),
}

impl Value {
    pub(super) fn kind(&self) -> &'static str {
        match self {
            Value::Null => "null",
            Value::Bool(_) => "a boolean",
            Value::Num(_) => "a number",
            Value::Str(_) => "a string",
            Value::Arr(_) => "an array",
            Value::Obj(_) => "an object",
        }
    }
}

struct Parser<'a> {
    s: &'a [u8],
    at: usize,
    line: usize,
}

impl Parser<'_> {
    fn blank(&mut self) {
        while let Some(&c) = self.s.get(self.at) {
            match c {
                b'\n' => self.line += 1,
                b' ' | b'\t' | b'\r' => {}
                _ => return,
            }
            self.at += 1;
        }
    }

    fn err(&self, what: impl Into<String>) -> ParseError {
        ParseError::at(self.line, what)
    }

    fn expect(&mut self, c: u8) -> Result<(), ParseError> {
        self.blank();
        if self.s.get(self.at) == Some(&c) {
            self.at += 1;
            Ok(())
        } else {
            Err(self.err(format!("expected {:?}", c as char)))
        }
    }

    fn value(&mut self, depth: usize) -> Result<(Value, usize), ParseError> {
        if depth > 32 {
            return Err(self.err("nested too deeply"));
        }
        self.blank();
        let line = self.line;
        let v =
            match self.s.get(self.at) {
                None => return Err(self.err("unexpected end of file")),
                Some(b'{') => {
                    self.at += 1;
                    let mut fields = Vec::new();
                    self.blank();
                    if self.s.get(self.at) == Some(&b'}') {
                        self.at += 1;
                    } else {
                        loop {
                            self.blank();
                            let key_line = self.line;
                            if self.s.get(self.at) != Some(&b'"') {
                                return Err(self.err("expected a quoted key"));
                            }
                            let key = self.string()?;
                            self.expect(b':')?;
                            let (v, _) = self.value(depth + 1)?;
                            if fields
                                .iter()
                                .any(|(k, _, _): &(String, Value, usize)| *k == key)
                            {
                                return Err(ParseError::key(key_line, &key, "given twice"));
                            }
                            fields.push((key, v, key_line));
                            self.blank();
                            match self.s.get(self.at) {
                                Some(b',') => self.at += 1,
                                Some(b'}') => {
                                    self.at += 1;
                                    break;
                                }
                                _ => return Err(self.err("expected , or } after a value")),
                            }
                        }
                    }
                    Value::Obj(fields)
                }
                Some(b'[') => {
                    self.at += 1;
                    let mut items = Vec::new();
                    self.blank();
                    if self.s.get(self.at) == Some(&b']') {
                        self.at += 1;
                    } else {
                        loop {
                            items.push(self.value(depth + 1)?);
                            self.blank();
                            match self.s.get(self.at) {
                                Some(b',') => self.at += 1,
                                Some(b']') => {
                                    self.at += 1;
                                    break;
                                }
                                _ => return Err(self.err("expected , or ] after a value")),
                            }
                        }
                    }
                    Value::Arr(items)
                }
                Some(b'"') => Value::Str(self.string()?),
                Some(_) => {
                    let start = self.at;
                    while self.s.get(self.at).is_some_and(|c| {
                        c.is_ascii_alphanumeric() || matches!(c, b'-' | b'+' | b'.')
                    }) {
                        self.at += 1;
                    }
                    let word = std::str::from_utf8(&self.s[start..self.at]).unwrap_or("");
                    match word {
                        "true" => Value::Bool(true),
                        "false" => Value::Bool(false),
                        "null" => Value::Null,
                        w => match w.parse::<f64>() {
                            Ok(n) if !w.is_empty() => Value::Num(n),
                            _ => {
                                return Err(self.err(format!(
                                    "unexpected {:?}: not JSON",
                                    if w.is_empty() {
                                        (self.s[self.at] as char).to_string()
                                    } else {
                                        w.to_owned()
                                    }
                                )))
                            }
                        },
                    }
                }
            };
        Ok((v, line))
    }

    fn string(&mut self) -> Result<String, ParseError> {
        let line = self.line;
        self.at += 1;
        let mut out = String::new();
        let mut run = self.at;
        loop {
            let Some(&c) = self.s.get(self.at) else {
                return Err(ParseError::at(line, "string never closed"));
            };
            match c {
                b'"' | b'\\' => {
                    out.push_str(
                        std::str::from_utf8(&self.s[run..self.at])
                            .map_err(|_| self.err("string is not UTF-8"))?,
                    );
                    self.at += 1;
                    if c == b'"' {
                        return Ok(out);
                    }
                    let e = *self
                        .s
                        .get(self.at)
                        .ok_or_else(|| self.err("string never closed"))?;
                    self.at += 1;
                    match e {
                        b'"' => out.push('"'),
                        b'\\' => out.push('\\'),
                        b'/' => out.push('/'),
                        b'b' => out.push('\u{8}'),
                        b'f' => out.push('\u{c}'),
                        b'n' => out.push('\n'),
                        b'r' => out.push('\r'),
                        b't' => out.push('\t'),
                        b'u' => out.push(self.unicode()?),
                        _ => return Err(self.err(format!("bad escape \\{}", e as char))),
                    }
                    run = self.at;
                }
                b'\n' => return Err(ParseError::at(line, "string never closed on its line")),
                _ => self.at += 1,
            }
        }
    }

    fn hex4(&mut self) -> Result<u32, ParseError> {
        let h = self
            .s
            .get(self.at..self.at + 4)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u32::from_str_radix(h, 16).ok())
            .ok_or_else(|| self.err("bad \\u escape"))?;
        self.at += 4;
        Ok(h)
    }

    fn unicode(&mut self) -> Result<char, ParseError> {
        let hi = self.hex4()?;
        let code =
            if (0xD800..0xDC00).contains(&hi) && self.s.get(self.at..self.at + 2) == Some(b"\\u") {
                self.at += 2;
                let lo = self.hex4()?;
                0x10000 + ((hi - 0xD800) << 10) + (lo.wrapping_sub(0xDC00) & 0x3FF)
            } else {
                hi
            };
        char::from_u32(code).ok_or_else(|| self.err("bad \\u escape"))
    }
}

/// The one JSON value `text` holds, with nothing but blanks after it.
pub(super) fn read(text: &str) -> Result<Value, ParseError> {
    let mut p = Parser {
        s: text.as_bytes(),
        at: 0,
        line: 1,
    };
    let (v, _) = p.value(0)?;
    p.blank();
    if p.at < p.s.len() {
        return Err(p.err("unexpected text after the JSON value"));
    }
    Ok(v)
}
