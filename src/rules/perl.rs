//! wqloader's cluster rules: a Perl list of hashes, read as data and never executed.
//!
//! Accepted: an optional `my @NAME =` / `our $NAME =` / `@NAME =` head, the list in
//! `( … )` or `[ … ]` (or bare hashes), hashes of `key => value` or `key, value` pairs,
//! keys bare or quoted, values single-quoted, double-quoted (escapes, no interpolation),
//! numbers or bare words, `#` comments, trailing commas, a closing `;` and `1;`.

use super::{apply_uri, How, Matcher, ParseError, Rule, Split, Target};

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Open(char),
    Close(char),
    Comma,
    Arrow,
    Semi,
    Assign,
    Str(String),
    Word(String),
    Var(String),
}

struct Lexer<'a> {
    s: &'a [u8],
    at: usize,
    line: usize,
}

impl Lexer<'_> {
    fn next(&mut self) -> Result<Option<(Tok, usize)>, ParseError> {
        loop {
            match self.s.get(self.at) {
                None => return Ok(None),
                Some(b'\n') => {
                    self.line += 1;
                    self.at += 1;
                }
                Some(c) if c.is_ascii_whitespace() => self.at += 1,
                Some(b'#') => {
                    while self.s.get(self.at).is_some_and(|&c| c != b'\n') {
                        self.at += 1;
                    }
                }
                Some(_) => break,
            }
        }
        let line = self.line;
        let c = self.s[self.at];
        self.at += 1;
        let tok = match c {
            b'(' | b'[' | b'{' => Tok::Open(c as char),
            b')' | b']' | b'}' => Tok::Close(c as char),
            b',' => Tok::Comma,
            b';' => Tok::Semi,
            b'=' if self.s.get(self.at) == Some(&b'>') => {
                self.at += 1;
                Tok::Arrow
            }
            b'=' => Tok::Assign,
            b'\'' | b'"' => Tok::Str(self.string(c, line)?),
            b'@' | b'$' | b'%' => Tok::Var(self.word()),
            c if c.is_ascii_alphanumeric() || c == b'_' || c == b'-' || c == b'+' || c == b'.' => {
                self.at -= 1;
                Tok::Word(self.word())
            }
            c => {
                return Err(ParseError::at(
                    line,
                    format!("unexpected {:?}: this is not a list of rules", c as char),
                ))
            }
        };
        Ok(Some((tok, line)))
    }

    fn word(&mut self) -> String {
        let start = self.at;
        while self.s.get(self.at).is_some_and(|&c| {
            c.is_ascii_alphanumeric() || matches!(c, b'_' | b'-' | b'+' | b'.' | b':')
        }) {
            self.at += 1;
        }
        String::from_utf8_lossy(&self.s[start..self.at]).into_owned()
    }

    fn string(&mut self, quote: u8, line: usize) -> Result<String, ParseError> {
        let mut out = Vec::new();
        loop {
            let Some(&c) = self.s.get(self.at) else {
                return Err(ParseError::at(line, "string never closed"));
            };
            self.at += 1;
            match c {
                b'\n' => {
                    self.line += 1;
                    out.push(c);
                }
                c if c == quote => break,
                b'\\' => {
                    let Some(&e) = self.s.get(self.at) else {
                        return Err(ParseError::at(line, "string never closed"));
                    };
                    self.at += 1;
                    if quote == b'\'' {
                        // Perl: only \\ and \' are escapes in single quotes.
                        if e != b'\\' && e != b'\'' {
                            out.push(b'\\');
                        }
                        out.push(e);
                    } else {
                        out.push(match e {
                            b'n' => b'\n',
                            b't' => b'\t',
                            b'r' => b'\r',
                            b'0' => 0,
                            other => other,
                        });
                    }
                }
                b'$' | b'@'
                    if quote == b'"'
                        && self.s.get(self.at).is_some_and(|&n| {
                            n.is_ascii_alphanumeric() || n == b'_' || n == b'{'
                        }) =>
                {
                    return Err(ParseError::at(
                        self.line,
                        format!(
                            "{:?} inside double quotes would be a Perl variable: write the value in single quotes",
                            c as char
                        ),
                    ));
                }
                c => out.push(c),
            }
        }
        String::from_utf8(out).map_err(|_| ParseError::at(line, "string is not UTF-8"))
    }
}

fn lex(text: &str) -> Result<Vec<(Tok, usize)>, ParseError> {
    let mut lx = Lexer {
        s: text.as_bytes(),
        at: 0,
        line: 1,
    };
    let mut out = Vec::new();
    while let Some(t) = lx.next()? {
        out.push(t);
    }
    Ok(out)
}

/// The keys of one rule hash, each with its line.
type Hash = Vec<(String, String, usize)>;

pub(super) fn parse(text: &str, defaults: &Target) -> Result<Split, ParseError> {
    let toks = lex(text)?;
    let mut i = 0;
    let last_line = toks.last().map_or(1, |t| t.1);
    let peek = |i: usize| toks.get(i).map(|t| &t.0);
    // Optional `my @RULES =` head.
    if matches!(peek(i), Some(Tok::Word(w)) if w == "my" || w == "our") {
        i += 1;
    }
    if matches!(peek(i), Some(Tok::Var(_))) {
        i += 1;
        if peek(i) != Some(&Tok::Assign) {
            return Err(ParseError::at(
                toks.get(i).map_or(last_line, |t| t.1),
                "expected = after the variable name",
            ));
        }
        i += 1;
    }
    let close = match peek(i) {
        Some(Tok::Open('(')) => {
            i += 1;
            Some(Tok::Close(')'))
        }
        Some(Tok::Open('[')) => {
            i += 1;
            Some(Tok::Close(']'))
        }
        _ => None,
    };
    let mut hashes: Vec<(Hash, usize)> = Vec::new();
    loop {
        match toks.get(i) {
            Some((Tok::Comma, _)) => i += 1,
            Some((Tok::Open('{'), line)) => {
                let (h, next) = hash(&toks, i + 1, *line)?;
                hashes.push((h, *line));
                i = next;
            }
            Some((t, _)) if Some(t) == close.as_ref() => {
                i += 1;
                break;
            }
            None if close.is_none() => break,
            None => {
                return Err(ParseError::at(
                    last_line,
                    "the list of rules is never closed",
                ))
            }
            Some((t, line)) => {
                return Err(ParseError::at(
                    *line,
                    format!("expected a {{ … }} rule, found {}", show(t)),
                ))
            }
        }
    }
    // A closing `;`, and the `1;` a file loaded with `do`/`require` ends with.
    while let Some((t, line)) = toks.get(i) {
        match t {
            Tok::Semi => {}
            Tok::Word(w) if w == "1" => {}
            t => {
                return Err(ParseError::at(
                    *line,
                    format!("unexpected {} after the list of rules", show(t)),
                ))
            }
        }
        i += 1;
    }
    let mut split = Split::default();
    for (h, line) in hashes {
        rule(&mut split, &h, line, defaults)?;
    }
    Ok(split)
}

fn show(t: &Tok) -> String {
    match t {
        Tok::Open(c) | Tok::Close(c) => format!("{c:?}"),
        Tok::Comma => "','".into(),
        Tok::Arrow => "'=>'".into(),
        Tok::Semi => "';'".into(),
        Tok::Assign => "'='".into(),
        Tok::Str(s) => format!("the string {s:?}"),
        Tok::Word(w) => format!("{w:?}"),
        Tok::Var(v) => format!("the variable {v:?}"),
    }
}

/// `key => value, …` up to the closing brace; returns the pairs and the index after it.
fn hash(
    toks: &[(Tok, usize)],
    mut i: usize,
    open_line: usize,
) -> Result<(Hash, usize), ParseError> {
    let mut out: Hash = Vec::new();
    loop {
        let Some((t, line)) = toks.get(i) else {
            return Err(ParseError::at(open_line, "rule never closed with }"));
        };
        let key = match t {
            Tok::Close('}') => return Ok((out, i + 1)),
            Tok::Comma => {
                i += 1;
                continue;
            }
            Tok::Word(w) => w.clone(),
            Tok::Str(s) => s.clone(),
            t => {
                return Err(ParseError::at(
                    *line,
                    format!("expected a key, found {}", show(t)),
                ))
            }
        };
        match toks.get(i + 1) {
            Some((Tok::Arrow | Tok::Comma, _)) => {}
            _ => return Err(ParseError::key(*line, &key, "expected => after the key")),
        }
        let value = match toks.get(i + 2) {
            Some((Tok::Str(s), _)) => s.clone(),
            Some((Tok::Word(w), _)) if w == "undef" => String::new(),
            Some((Tok::Word(w), _)) => w.clone(),
            Some((t, l)) => {
                return Err(ParseError::key(
                    *l,
                    &key,
                    format!("expected a value, found {}", show(t)),
                ))
            }
            None => return Err(ParseError::at(open_line, "rule never closed with }")),
        };
        if out.iter().any(|(k, _, _)| *k == key) {
            return Err(ParseError::key(*line, &key, "given twice in one rule"));
        }
        out.push((key, value, *line));
        i += 3;
    }
}

/// The keys a rule may set; any other is refused with this list in the message.
pub const KEYS: [&str; 14] = [
    "ruleName",
    "queueStarts",
    "queueEnds",
    "queueToken",
    "agentStarts",
    "agentEnds",
    "agentToken",
    "targetHost",
    "targetPort",
    "targetCtx",
    "targetUser",
    "targetPass",
    "targetToken",
    "timezoneOffset",
];

fn flag(key: &str, value: &str, line: usize) -> Result<bool, ParseError> {
    match value.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "" | "0" | "false" | "no" | "off" => Ok(false),
        _ => Err(ParseError::key(
            line,
            key,
            format!("{value:?} is not 1 or 0"),
        )),
    }
}

fn rule(split: &mut Split, h: &Hash, line: usize, defaults: &Target) -> Result<(), ParseError> {
    for (k, _, l) in h {
        if !KEYS.contains(&k.as_str()) {
            return Err(ParseError::key(
                *l,
                k,
                format!("unknown key (known: {})", KEYS.join(", ")),
            ));
        }
    }
    let get = |k: &str| {
        h.iter()
            .find(|(key, _, _)| key == k)
            .map(|(_, v, l)| (v.as_str(), *l))
    };
    let name = get("ruleName").map_or(format!("rule at line {line}"), |(v, _)| v.to_owned());
    let side = |starts: &str, ends: &str, token: &str| -> Result<Option<Matcher>, ParseError> {
        let s = get(starts)
            .map(|(v, l)| flag(starts, v, l))
            .transpose()?
            .unwrap_or(false);
        let e = get(ends)
            .map(|(v, l)| flag(ends, v, l))
            .transpose()?
            .unwrap_or(false);
        let tok = get(token).filter(|(v, _)| !v.is_empty());
        match (tok, s, e) {
            (None, false, false) => Ok(None),
            (None, _, _) => Err(ParseError::key(
                get(starts).or(get(ends)).map_or(line, |(_, l)| l),
                token,
                format!("{starts}/{ends} is set but {token} is empty"),
            )),
            (Some((_, l)), false, false) => Err(ParseError::key(
                l,
                token,
                format!("set, but neither {starts} nor {ends} says where it must match"),
            )),
            (Some((t, _)), s, e) => Ok(Some(Matcher {
                how: match (s, e) {
                    (true, true) => How::PrefixOrSuffix,
                    (true, false) => How::Prefix,
                    _ => How::Suffix,
                },
                tokens: vec![t.to_owned()],
            })),
        }
    };
    let queue = side("queueStarts", "queueEnds", "queueToken")?;
    let agent = side("agentStarts", "agentEnds", "agentToken")?;
    if queue.is_none() && agent.is_none() {
        return Err(ParseError::at(
            line,
            format!(
                "rule {name:?} has neither a queueToken nor an agentToken: it would match nothing"
            ),
        ));
    }
    let mut t = Target {
        name: name.clone(),
        disabled: false,
        noactions: false,
        ..defaults.clone()
    };
    match get("targetHost") {
        None => return Err(ParseError::key(line, "targetHost", "missing")),
        Some((v, l)) if v.contains("://") => {
            apply_uri(&mut t, v).map_err(|e| ParseError::key(l, "targetHost", e))?
        }
        Some(("", l)) => return Err(ParseError::key(l, "targetHost", "empty")),
        Some((v, _)) => t.host = v.to_owned(),
    }
    if let Some((v, l)) = get("targetPort") {
        t.port = v.parse::<u16>().ok().filter(|&p| p > 0).ok_or_else(|| {
            ParseError::key(l, "targetPort", format!("{v:?} is not a port number"))
        })?;
    }
    if let Some((v, _)) = get("targetCtx") {
        t.context = v.trim_matches('/').to_owned();
    }
    if let Some((v, _)) = get("targetUser") {
        t.user = v.to_owned();
    }
    if let Some((v, _)) = get("targetPass") {
        t.password = v.into();
    }
    if let Some((v, _)) = get("targetToken") {
        t.token = v.to_owned();
    }
    if let Some((v, l)) = get("timezoneOffset") {
        t.tz_offset = v
            .replace('_', "")
            .parse()
            .ok()
            .filter(|s: &i64| (-super::MAX_TZ_OFFSET_SECS..=super::MAX_TZ_OFFSET_SECS).contains(s))
            .ok_or_else(|| {
                ParseError::key(
                    l,
                    "timezoneOffset",
                    format!(
                        "{v:?} is not a number of seconds within ±{}",
                        super::MAX_TZ_OFFSET_SECS
                    ),
                )
            })?;
    }
    let target = split
        .intern(t, &name, line)
        .map_err(|e| ParseError::at(line, e))?;
    split.push_rule(Rule {
        name,
        target,
        queue,
        agent,
        strip: false,
        line,
    })?;
    Ok(())
}

#[cfg(test)]
mod tests;
