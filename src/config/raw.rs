//! The first stage: text to raw values, each remembering where it came from (a flag, an
//! argument, or `FILE:LINE KEY`) so the second stage's errors can name it.

use super::usage::FILE_KEYS;
use super::{err, ConfigError};

/// Raw values by name, each with where it came from (for error messages).
#[derive(Default)]
pub(super) struct Raw {
    pub(super) values: Vec<(&'static str, String, String)>,
}

impl Raw {
    pub(super) fn set(&mut self, key: &'static str, value: String, origin: String) {
        self.values.retain(|(k, _, _)| *k != key);
        self.values.push((key, value, origin));
    }
    pub(super) fn get(&self, key: &str) -> Option<(&str, &str)> {
        self.values
            .iter()
            .find(|(k, _, _)| *k == key)
            .map(|(_, v, o)| (v.as_str(), o.as_str()))
    }
}

/// Parses shell-style `KEY=VALUE` lines; returns (key, value, line number).
pub fn parse_config_text(
    text: &str,
    file: &str,
) -> Result<Vec<(&'static str, String, usize)>, ConfigError> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let n = i + 1;
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let line = line.strip_prefix("export ").unwrap_or(line);
        let Some((key, value)) = line.split_once('=') else {
            return err(format!("{file}:{n}: expected KEY=VALUE, found {line:?}"));
        };
        let key = key.trim();
        let Some(&known) = FILE_KEYS.iter().find(|k| **k == key) else {
            return err(format!("{file}:{n}: unknown key {key}"));
        };
        out.push((known, unquote(value.trim()), n));
    }
    Ok(out)
}

fn unquote(v: &str) -> String {
    for q in ['"', '\''] {
        if v.len() >= 2 && v.starts_with(q) && v.ends_with(q) {
            return v[1..v.len() - 1].to_owned();
        }
    }
    // An unquoted value ends at a shell comment.
    match v.find(" #") {
        Some(i) => v[..i].trim_end().to_owned(),
        None => v.to_owned(),
    }
}
