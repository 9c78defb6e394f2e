//! Uniloader's splitter file: a JSON array of clients
//! `{clientname, uri, login, pass, token, matcher: [..], match, removematch, disabled,
//! noactions}` (qlship also reads `timezoneOffset`). A disabled client is listed and
//! otherwise ignored, whatever its address names. A small parser of our own, because
//! errors must name the line and key, which miniserde does not report (`json_value`).

use super::json_value::{read, Value};
use super::{apply_uri, How, Matcher, ParseError, Rule, Split, Target};

/// Uniloader files are JSON: the first thing in them opens an array or object whose
/// first key is a quoted string followed by `:` (Perl writes `=>`).
pub(super) fn looks_like_json(text: &str) -> bool {
    let t = text.trim_start_matches(|c: char| c.is_whitespace() || c == '[' || c == '{');
    let opened = text.trim_start().starts_with(['[', '{']);
    if !opened {
        return false;
    }
    let Some(rest) = t.strip_prefix('"') else {
        // `[]` or `{}`: empty either way; let JSON report it.
        return t.trim_start().starts_with([']', '}']) || t.is_empty();
    };
    rest.split_once('"')
        .is_some_and(|(_, after)| after.trim_start().starts_with(':'))
}

const KEYS: [&str; 11] = [
    "clientname",
    "uri",
    "login",
    "pass",
    "token",
    "matcher",
    "match",
    "removematch",
    "disabled",
    "noactions",
    "timezoneOffset",
];

pub(super) fn parse(text: &str, defaults: &Target) -> Result<Split, ParseError> {
    let clients = match read(text)? {
        Value::Arr(items) => items,
        // A single client without the array is forgiven.
        obj @ Value::Obj(_) => vec![(obj, 1)],
        other => {
            return Err(ParseError::at(
                1,
                format!("expected an array of clients, found {}", other.kind()),
            ))
        }
    };
    let mut split = Split::default();
    for (client, line) in clients {
        let Value::Obj(fields) = client else {
            return Err(ParseError::at(
                line,
                format!("expected a client object, found {}", client.kind()),
            ));
        };
        client_rule(&mut split, &fields, line, defaults)?;
    }
    Ok(split)
}

fn client_rule(
    split: &mut Split,
    fields: &[(String, Value, usize)],
    line: usize,
    defaults: &Target,
) -> Result<(), ParseError> {
    for (k, _, l) in fields {
        if !KEYS.contains(&k.as_str()) {
            return Err(ParseError::key(
                *l,
                k,
                format!("unknown key (known: {})", KEYS.join(", ")),
            ));
        }
    }
    let get = |k: &str| {
        fields
            .iter()
            .find(|(key, _, _)| key == k)
            .map(|(_, v, l)| (v, *l))
    };
    let string = |k: &str| -> Result<Option<String>, ParseError> {
        match get(k) {
            None | Some((Value::Null, _)) => Ok(None),
            Some((Value::Str(s), _)) => Ok(Some(s.clone())),
            Some((v, l)) => Err(ParseError::key(
                l,
                k,
                format!("expected a string, found {}", v.kind()),
            )),
        }
    };
    let boolean = |k: &str| -> Result<bool, ParseError> {
        match get(k) {
            None | Some((Value::Null, _)) => Ok(false),
            Some((Value::Bool(b), _)) => Ok(*b),
            Some((Value::Str(s), _)) if s == "true" || s == "false" => Ok(s == "true"),
            Some((v, l)) => Err(ParseError::key(
                l,
                k,
                format!("expected true or false, found {}", v.kind()),
            )),
        }
    };
    let name = string("clientname")?
        .filter(|n| !n.is_empty())
        .ok_or_else(|| ParseError::key(line, "clientname", "missing"))?;
    let mut t = Target {
        name: name.clone(),
        ..defaults.clone()
    };
    // A disabled entry is listed and otherwise ignored: its address may name any of
    // Uniloader's back-ends or be left out, and its matcher may be empty or left out,
    // as in the closing entry of Loway's own template (`"uri": "file:…", "matcher":
    // [""], "disabled": true`). Only a malformed file (syntax, types, unknown keys)
    // stops qlship.
    t.disabled = boolean("disabled")?;
    let uri = match string("uri")? {
        Some(uri) => uri,
        None if t.disabled => String::new(),
        None => return Err(ParseError::key(line, "uri", "missing")),
    };
    let uri_line = get("uri").map_or(line, |(_, l)| l);
    if let Err(e) = apply_uri(&mut t, &uri) {
        if !t.disabled {
            let why = other_backend(&uri).unwrap_or(e);
            return Err(ParseError::key(uri_line, "uri", why));
        }
        t.foreign_uri = Some(shown_uri(&uri));
    }
    if let Some(v) = string("login")? {
        t.user = v;
    }
    if let Some(v) = string("pass")? {
        t.password = v.into();
    }
    t.token = string("token")?.unwrap_or_default();
    t.noactions = boolean("noactions")?;
    match get("timezoneOffset") {
        None | Some((Value::Null, _)) => {}
        Some((Value::Num(n), _))
            if n.fract() == 0.0 && n.abs() <= super::MAX_TZ_OFFSET_SECS as f64 =>
        {
            t.tz_offset = *n as i64
        }
        Some((Value::Num(_), l)) => {
            return Err(ParseError::key(
                l,
                "timezoneOffset",
                format!("not whole seconds within ±{}", super::MAX_TZ_OFFSET_SECS),
            ))
        }
        Some((v, l)) => {
            return Err(ParseError::key(
                l,
                "timezoneOffset",
                format!("expected whole seconds, found {}", v.kind()),
            ))
        }
    }
    let how = match get("match") {
        None => How::Prefix,
        Some((Value::Str(m), l)) => match m.as_str() {
            "prefix" => How::Prefix,
            "suffix" => How::Suffix,
            "any" => How::Anywhere,
            other => {
                return Err(ParseError::key(
                    l,
                    "match",
                    format!("{other:?} is not prefix, suffix or any"),
                ))
            }
        },
        Some((v, l)) => {
            return Err(ParseError::key(
                l,
                "match",
                format!("expected a string, found {}", v.kind()),
            ))
        }
    };
    let tokens = match get("matcher") {
        None if t.disabled => Vec::new(),
        None => return Err(ParseError::key(line, "matcher", "missing")),
        Some((Value::Str(s), _)) => vec![s.clone()],
        Some((Value::Arr(items), l)) => items
            .iter()
            .map(|(v, il)| match v {
                Value::Str(s) => Ok(s.clone()),
                v => Err(ParseError::key(
                    *il,
                    "matcher",
                    format!("expected strings, found {}", v.kind()),
                )),
            })
            .collect::<Result<Vec<_>, _>>()
            .map(|v| v.into_iter().filter(|s| !s.is_empty()).collect::<Vec<_>>())
            .and_then(|v| {
                if v.is_empty() && !t.disabled {
                    Err(ParseError::key(
                        l,
                        "matcher",
                        "no tokens: it would match nothing",
                    ))
                } else {
                    Ok(v)
                }
            })?,
        Some((v, l)) => {
            return Err(ParseError::key(
                l,
                "matcher",
                format!("expected an array of strings, found {}", v.kind()),
            ))
        }
    };
    let strip = boolean("removematch")?;
    let target = if t.disabled {
        // Never merged with an enabled entry for the same partition (whose user,
        // password and flags it need not repeat): it only drops the rows it matches.
        split.targets.push(t);
        split.targets.len() - 1
    } else {
        split
            .intern(t, &name, line)
            .map_err(|e| ParseError::at(line, e))?
    };
    if tokens.is_empty() {
        // Only a disabled entry gets here: it is listed, and takes no rows.
        return Ok(());
    }
    let m = Matcher { how, tokens };
    split.push_rule(Rule {
        name,
        target,
        queue: Some(m.clone()),
        agent: Some(m),
        strip,
        line,
    })?;
    Ok(())
}

/// What to say about an enabled entry that names one of Uniloader's other back-ends,
/// instead of "not an http:// address".
fn other_backend(uri: &str) -> Option<String> {
    let scheme = uri.split_once(':').map(|(s, _)| s.to_ascii_lowercase());
    match scheme.as_deref() {
        // The address is not repeated: a MySQL address may hold a password.
        Some("mysql") => Some(
            "a mysql: address is Uniloader's MySQL back-end, which qlship does not have: \
             qlship uploads through QueueMetrics' HTTP loader API; give the QueueMetrics \
             address instead (e.g. http://10.0.0.5:8080/queuemetrics, with a login holding \
             key WQLOADER), or set \"disabled\": true"
                .into(),
        ),
        Some("file") => Some(format!(
            "{uri:?} is Uniloader's file back-end (rows copied to a local file), which qlship \
             does not have: `qlship check-rules RULES_FILE QUEUE_LOG` shows how many rows each \
             target would receive; or set \"disabled\": true"
        )),
        _ => None,
    }
}

/// A disabled entry's address as `check-rules` shows it: without whatever precedes an
/// `@` (a MySQL address may carry `user:password@`).
fn shown_uri(uri: &str) -> String {
    match (uri.split_once(':'), uri.rsplit_once('@')) {
        _ if uri.is_empty() => "(no uri)".into(),
        (Some((scheme, _)), Some((_, host))) => format!("{scheme}:…@{host}"),
        _ => uri.to_owned(),
    }
}

#[cfg(test)]
mod tests;
