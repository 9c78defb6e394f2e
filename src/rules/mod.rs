//! Multi-tenant split: which QueueMetrics targets a row goes to. Pure: the two file
//! formats integrators already have (wqloader's Perl rule list, Uniloader's splitter
//! JSON) are parsed as data into one [`Split`], and [`Split::route`] decides per row.
//!
//! Semantics (issue 3): rules are tried in file order and the first match wins; within a
//! rule the queue is tested before the agent. Rows whose queue and agent are both `NONE`
//! go to every enabled target. A rule whose target is disabled still consumes its rows
//! (they are dropped, never leaked to a later catch-all rule of another tenant).

mod json;
mod json_value;
mod perl;

pub use perl::KEYS as PERL_KEYS;

use crate::row::Row;
use std::fmt;
use std::io::Read;
use std::path::Path;

/// Targets are bits of a u64 in the spool.
pub const MAX_TARGETS: usize = 64;
/// Every row is tried against the rules in order: a file of more is a mistake (or an
/// attack on the box's CPU), not a configuration. Disabled entries count too.
pub const MAX_RULES: usize = 1024;
/// A time-zone offset beyond a week is a typo (or an attempt at overflowing the time
/// arithmetic); real ones are within ±14 h.
pub const MAX_TZ_OFFSET_SECS: i64 = 7 * 86_400;
/// Real rules files are a few KiB; nothing larger is read.
pub const MAX_RULES_FILE_BYTES: u64 = 1 << 20;

/// One QueueMetrics instance and partition.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Target {
    /// What the integrator called it (ruleName, clientname); for logs and status.
    pub name: String,
    pub https: bool,
    pub host: String,
    pub port: u16,
    pub context: String,
    pub user: String,
    pub password: crate::secret::Secret,
    pub token: String,
    /// Seconds added to every row's time for this target.
    pub tz_offset: i64,
    pub disabled: bool,
    /// Feedback actions are never polled for this target.
    pub noactions: bool,
    /// The address as written when it is not http(s) (Uniloader's `file:` and `mysql:`
    /// back-ends): only a disabled target may have one, it is shown and never contacted.
    pub foreign_uri: Option<String>,
}

impl Target {
    /// The endpoint, without credentials (safe to log).
    pub fn url(&self) -> String {
        if let Some(uri) = &self.foreign_uri {
            return uri.clone();
        }
        let scheme = if self.https { "https" } else { "http" };
        let ctx = self.context.trim_matches('/');
        if ctx.is_empty() {
            format!("{scheme}://{}:{}/jsonQLoaderApi.do", self.host, self.port)
        } else {
            format!(
                "{scheme}://{}:{}/{ctx}/jsonQLoaderApi.do",
                self.host, self.port
            )
        }
    }

    /// What the journal knows the target by: the partition it writes to. Renaming a
    /// rule keeps its cursor; pointing it at another server or token starts afresh.
    pub fn key(&self) -> String {
        format!("{} {}", self.url(), self.token)
    }
}

/// How a token is compared with a queue or agent name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum How {
    Prefix,
    Suffix,
    /// wqloader with both `…Starts` and `…Ends` set: either end.
    PrefixOrSuffix,
    /// Uniloader's `any`: anywhere in the name.
    Anywhere,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Matcher {
    pub how: How,
    pub tokens: Vec<String>,
}

impl Matcher {
    /// The name with the first matching token removed, if any token matches.
    fn apply(&self, name: &str) -> Option<String> {
        self.tokens.iter().find_map(|t| match self.how {
            How::Prefix => name.strip_prefix(t.as_str()).map(str::to_owned),
            How::Suffix => name.strip_suffix(t.as_str()).map(str::to_owned),
            How::PrefixOrSuffix => name
                .strip_prefix(t.as_str())
                .or_else(|| name.strip_suffix(t.as_str()))
                .map(str::to_owned),
            How::Anywhere => name.find(t.as_str()).map(|at| {
                let mut s = name.to_owned();
                s.replace_range(at..at + t.len(), "");
                s
            }),
        })
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rule {
    /// ruleName or clientname, for messages.
    pub name: String,
    /// Index into [`Split::targets`].
    pub target: usize,
    pub queue: Option<Matcher>,
    pub agent: Option<Matcher>,
    /// Remove the matched token before upload (Uniloader's `removematch`).
    pub strip: bool,
    /// Where the rule starts in its file.
    pub line: usize,
}

/// A parsed rules file: targets (deduplicated by partition) and rules in order.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Split {
    pub targets: Vec<Target>,
    pub rules: Vec<Rule>,
}

/// Where one row goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Route {
    /// Queue and agent are both `NONE`: every enabled target.
    Everyone,
    /// The target of the first matching rule, with the row as it is to be uploaded
    /// when the rule strips the token.
    To(usize, Option<Box<Row>>),
    /// The first matching rule's target is disabled: dropped.
    Disabled(usize),
    /// No rule matched: dropped and counted.
    Nowhere,
}

impl Split {
    pub fn route(&self, row: &Row) -> Route {
        if row.queue() == "NONE" && row.agent() == "NONE" {
            return Route::Everyone;
        }
        for rule in &self.rules {
            let hit = rule
                .queue
                .as_ref()
                .and_then(|m| m.apply(row.queue()))
                .map(|q| (q, true))
                .or_else(|| {
                    rule.agent
                        .as_ref()
                        .and_then(|m| m.apply(row.agent()))
                        .map(|a| (a, false))
                });
            let Some((rest, on_queue)) = hit else {
                continue;
            };
            if self.targets[rule.target].disabled {
                return Route::Disabled(rule.target);
            }
            let stripped = rule.strip.then(|| {
                let mut r = row.clone();
                if on_queue {
                    r.set_queue(&rest);
                } else {
                    r.set_agent(&rest);
                }
                Box::new(r)
            });
            return Route::To(rule.target, stripped);
        }
        Route::Nowhere
    }

    pub fn enabled(&self) -> impl Iterator<Item = (usize, &Target)> {
        self.targets.iter().enumerate().filter(|(_, t)| !t.disabled)
    }

    /// Appends a rule, within [`MAX_RULES`].
    fn push_rule(&mut self, rule: Rule) -> Result<(), ParseError> {
        if self.rules.len() >= MAX_RULES {
            return Err(ParseError::at(
                rule.line,
                format!("more than {MAX_RULES} rules"),
            ));
        }
        self.rules.push(rule);
        Ok(())
    }

    /// Adds `t` for `rule`, or finds the target already writing to the same partition;
    /// two rules for one partition must agree on everything about it.
    fn intern(&mut self, t: Target, rule: &str, line: usize) -> Result<usize, String> {
        // Disabled targets are never shared (they are not contacted): see json.rs.
        if let Some(i) = self
            .targets
            .iter()
            .position(|o| !o.disabled && o.key() == t.key())
        {
            let o = &self.targets[i];
            let differs = [
                (o.user != t.user, "user"),
                (o.password != t.password, "password"),
                (o.tz_offset != t.tz_offset, "time-zone offset"),
                (o.noactions != t.noactions, "noactions"),
            ];
            if let Some((_, what)) = differs.iter().find(|(d, _)| *d) {
                return Err(format!(
                    "rule {rule:?} (line {line}) sends to the same partition as {:?} ({} token {:?}) but with a different {what}",
                    o.name,
                    o.url(),
                    o.token
                ));
            }
            return Ok(i);
        }
        if self.targets.len() >= MAX_RULES {
            return Err(format!(
                "rule {rule:?} (line {line}): more than {MAX_RULES} targets"
            ));
        }
        if self.targets.iter().filter(|o| !o.disabled).count() >= MAX_TARGETS && !t.disabled {
            return Err(format!(
                "rule {rule:?} (line {line}): more than {MAX_TARGETS} enabled targets"
            ));
        }
        self.targets.push(t);
        Ok(self.targets.len() - 1)
    }
}

/// A rules file that cannot be used, with where and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RulesError {
    pub file: String,
    pub line: usize,
    /// The key at fault, when there is one.
    pub key: Option<String>,
    pub what: String,
}

impl fmt::Display for RulesError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.key {
            Some(k) => write!(f, "{}:{}: {k}: {}", self.file, self.line, self.what),
            None => write!(f, "{}:{}: {}", self.file, self.line, self.what),
        }
    }
}

/// A parse error before the file name is known.
#[derive(Debug, PartialEq, Eq)]
pub struct ParseError {
    pub line: usize,
    pub key: Option<String>,
    pub what: String,
}

impl ParseError {
    fn at(line: usize, what: impl Into<String>) -> ParseError {
        ParseError {
            line,
            key: None,
            what: what.into(),
        }
    }
    fn key(line: usize, key: &str, what: impl Into<String>) -> ParseError {
        ParseError {
            line,
            key: Some(key.to_owned()),
            what: what.into(),
        }
    }
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.key {
            Some(k) => write!(f, "line {}: {k}: {}", self.line, self.what),
            None => write!(f, "line {}: {}", self.line, self.what),
        }
    }
}

/// Reads a rules file in either format: Uniloader's JSON when it starts (after blanks)
/// with `[` or `{`, else wqloader's Perl list.
pub fn load(path: &Path, defaults: &Target) -> Result<Split, RulesError> {
    let file = path.display().to_string();
    let cannot = |what: String| RulesError {
        file: file.clone(),
        line: 0,
        key: None,
        what,
    };
    let mut text = Vec::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(MAX_RULES_FILE_BYTES + 1).read_to_end(&mut text))
        .map_err(|e| cannot(format!("cannot read: {e}")))?;
    if text.len() as u64 > MAX_RULES_FILE_BYTES {
        return Err(cannot(format!(
            "larger than {} KiB: not a rules file",
            MAX_RULES_FILE_BYTES >> 10
        )));
    }
    let text = String::from_utf8(text).map_err(|e| RulesError {
        file: file.clone(),
        line: 1 + e.as_bytes()[..e.utf8_error().valid_up_to()]
            .iter()
            .filter(|&&b| b == b'\n')
            .count(),
        key: None,
        what: "not UTF-8".into(),
    })?;
    parse(&text, defaults).map_err(|b| RulesError {
        file,
        line: b.line,
        key: b.key,
        what: b.what,
    })
}

/// Parses rules text; `defaults` fills what a Perl rule leaves out (port, context, …).
pub fn parse(text: &str, defaults: &Target) -> Result<Split, ParseError> {
    let split = if json::looks_like_json(text) {
        json::parse(text, defaults)?
    } else {
        perl::parse(text, defaults)?
    };
    if split.rules.is_empty() {
        return Err(ParseError::at(1, "no rules in the file"));
    }
    Ok(split)
}

/// Splits `http(s)://host[:port][/context]` (a trailing `/jsonQLoaderApi.do` is
/// tolerated) into the target's endpoint fields.
fn apply_uri(t: &mut Target, uri: &str) -> Result<(), String> {
    let (https, rest) = if let Some(r) = uri.strip_prefix("https://") {
        (true, r)
    } else if let Some(r) = uri.strip_prefix("http://") {
        (false, r)
    } else {
        return Err(format!("{uri:?} is not an http:// or https:// address"));
    };
    let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
    if authority.contains('@') {
        return Err("credentials do not belong in the address: use login and pass".into());
    }
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(']') || authority.starts_with('[') => {
            let port = p
                .parse::<u16>()
                .ok()
                .filter(|&p| p > 0)
                .ok_or_else(|| format!("port {p:?} in {uri:?} is not a port number"))?;
            (h, port)
        }
        _ => (authority, if https { 443 } else { 80 }),
    };
    if host.is_empty() {
        return Err(format!("{uri:?} has no host"));
    }
    let path = path.trim_end_matches('/');
    let context = path.strip_suffix("jsonQLoaderApi.do").unwrap_or(path);
    t.https = https;
    t.host = host.to_owned();
    t.port = port;
    t.context = context.trim_matches('/').to_owned();
    Ok(())
}

/// Masks a password for display: its length is not revealed either.
pub fn mask(password: &str) -> &'static str {
    if password.is_empty() {
        "(none)"
    } else {
        "********"
    }
}

/// What `qlship check-rules` prints about the file.
pub fn describe(split: &Split) -> String {
    let mut out = String::new();
    for (i, t) in split.targets.iter().enumerate() {
        out.push_str(&format!(
            "target {} {:?}: {} token {:?}, user {:?}, password {}, time-zone offset {}s{}{}\n",
            i + 1,
            t.name,
            t.url(),
            t.token,
            t.user,
            mask(t.password.expose()),
            t.tz_offset,
            if t.disabled { ", DISABLED" } else { "" },
            if t.noactions {
                ", no feedback actions"
            } else {
                ""
            },
        ));
    }
    for r in &split.rules {
        let side = |m: &Option<Matcher>, what: &str| {
            m.as_ref().map(|m| {
                let how = match m.how {
                    How::Prefix => "starts with",
                    How::Suffix => "ends with",
                    How::PrefixOrSuffix => "starts or ends with",
                    How::Anywhere => "contains",
                };
                format!("{what} {how} {:?}", m.tokens)
            })
        };
        let conds: Vec<String> = [side(&r.queue, "queue"), side(&r.agent, "agent")]
            .into_iter()
            .flatten()
            .collect();
        out.push_str(&format!(
            "rule {:?} (line {}): {} -> target {}{}\n",
            r.name,
            r.line,
            conds.join(", else "),
            r.target + 1,
            if r.strip { " (match removed)" } else { "" }
        ));
    }
    out
}

/// Per-target row counts for `check-rules FILE QUEUE_LOG`.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Tally {
    pub per_target: Vec<u64>,
    pub everyone: u64,
    pub disabled: u64,
    pub nowhere: u64,
    pub bad_lines: u64,
}

impl Tally {
    pub fn new(split: &Split) -> Tally {
        Tally {
            per_target: vec![0; split.targets.len()],
            ..Tally::default()
        }
    }

    pub fn add(&mut self, split: &Split, row: &Row) {
        match split.route(row) {
            Route::Everyone => {
                self.everyone += 1;
                for (i, _) in split.enabled() {
                    self.per_target[i] += 1;
                }
            }
            Route::To(i, _) => self.per_target[i] += 1,
            Route::Disabled(_) => self.disabled += 1,
            Route::Nowhere => self.nowhere += 1,
        }
    }

    pub fn render(&self, split: &Split) -> String {
        let mut out = String::new();
        for (i, t) in split.targets.iter().enumerate() {
            out.push_str(&format!(
                "target {} {:?} would receive {} rows{}\n",
                i + 1,
                t.name,
                self.per_target[i],
                if t.disabled { " (disabled)" } else { "" }
            ));
        }
        out.push_str(&format!(
            "{} rows with queue and agent NONE go to every enabled target; {} rows match a disabled target; {} rows match no rule; {} lines are not rows\n",
            self.everyone, self.disabled, self.nowhere, self.bad_lines
        ));
        out
    }
}

#[cfg(test)]
mod tests;
