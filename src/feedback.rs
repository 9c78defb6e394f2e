//! Feedback actions (protocol 1.6, `checkFb`): what QueueMetrics asks the PBX to do, the
//! AMI transactions it becomes, and `vet`, which applies the safety policy
//! (`ami_policy.rs`) to a whole container. Pure: the AMI framing is `ami_wire.rs`, the
//! TCP side `ami.rs`, the polling loop is in `daemon.rs`.

use crate::protocol::{json_string, Partition, VERSION};
use miniserde::json::Value;
use std::fmt::Write;

/// One container of PBX actions from a `checkFb` answer: run them all, in order, on one
/// AMI connection, and report one result for the container's id.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ActionContainer {
    pub id: String,
    pub host: String,
    pub port: u16,
    /// AMI transactions as QueueMetrics wrote them: `Key: Value` lines.
    pub actions: Vec<String>,
}

/// The outcome of a container, reported in a later `checkFb`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FbResult {
    pub id: String,
    pub ok: bool,
    pub text: String,
}

/// `{commandId: checkFb, …, results: [checkFbResCon…]}`.
pub fn check_fb(p: &Partition, results: &[FbResult]) -> String {
    let mut out = String::from("{\"commandId\":\"checkFb\",\"version\":\"");
    out.push_str(VERSION);
    out.push_str("\",\"token\":");
    json_string(&p.token, &mut out);
    out.push_str(",\"results\":[");
    for (i, r) in results.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        let _ = write!(
            out,
            "{{\"commandId\":\"checkFbResCon\",\"version\":\"{VERSION}\",\"token\":"
        );
        json_string(&p.token, &mut out);
        out.push_str(",\"id\":");
        json_string(&r.id, &mut out);
        out.push_str(",\"resultStatus\":");
        json_string(if r.ok { "OK" } else { "KO" }, &mut out);
        out.push_str(",\"result\":");
        json_string(&r.text, &mut out);
        out.push('}');
    }
    out.push_str("]}");
    out
}

/// The containers in a `checkFb` answer's `actions`. A malformed container is returned
/// as an error with its id when it has one, so that it can be answered KO rather than
/// silently dropped (QueueMetrics would resend it forever).
/// Containers beyond the first MAX_CONTAINERS of one answer are left for a later poll
/// (QueueMetrics offers a container until it has its result).
pub const MAX_CONTAINERS: usize = 32;
/// Larger containers are refused: QueueMetrics' own hold a few short actions.
pub const MAX_ACTIONS_PER_CONTAINER: usize = 32;
pub const MAX_ACTION_BYTES: usize = 8 * 1024;
pub const MAX_CONTAINER_BYTES: usize = 64 * 1024;
pub const MAX_ID_BYTES: usize = 256;

pub fn containers(actions: Option<&Value>) -> Vec<Result<ActionContainer, (String, String)>> {
    let Some(Value::Array(list)) = actions else {
        return Vec::new();
    };
    list.iter().take(MAX_CONTAINERS).map(container).collect()
}

fn text_of(v: Option<&Value>) -> Option<String> {
    match v? {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

fn container(v: &Value) -> Result<ActionContainer, (String, String)> {
    let Value::Object(map) = v else {
        return Err((String::new(), "an action container is not an object".into()));
    };
    let id = text_of(map.get("id")).unwrap_or_default();
    if id.len() > MAX_ID_BYTES {
        // Not journaled: an id is kept for a day, and this one would be a waste of it.
        return Err((String::new(), format!("an id of over {MAX_ID_BYTES} bytes")));
    }
    let bad = |why: &str| Err((id.clone(), why.to_string()));
    if id.is_empty() {
        return bad("an action container has no id");
    }
    let Some(host) = text_of(map.get("host")) else {
        return bad("no host");
    };
    let port = match text_of(map.get("port")).map(|p| p.trim().parse::<u16>()) {
        None => 5038,
        Some(Ok(p)) if p > 0 => p,
        Some(_) => return bad("the port is not a TCP port"),
    };
    let actions = match map.get("actions") {
        Some(Value::Array(a)) => a,
        _ => return bad("no list of actions"),
    };
    if actions.len() > MAX_ACTIONS_PER_CONTAINER {
        return bad(&format!(
            "{} actions, more than {MAX_ACTIONS_PER_CONTAINER} in one container",
            actions.len()
        ));
    }
    let mut out = Vec::with_capacity(actions.len());
    let mut bytes = 0;
    for a in actions {
        match a {
            Value::String(s) if s.len() > MAX_ACTION_BYTES => {
                return bad(&format!("an action of over {MAX_ACTION_BYTES} bytes"))
            }
            Value::String(s) => {
                bytes += s.len();
                out.push(s.clone())
            }
            _ => return bad("an action is not text"),
        }
    }
    if bytes > MAX_CONTAINER_BYTES {
        return bad(&format!(
            "actions of over {MAX_CONTAINER_BYTES} bytes in all"
        ));
    }
    Ok(ActionContainer {
        id,
        host: host.trim().to_string(),
        port,
        actions: out,
    })
}

pub use crate::ami_policy::{Policy, DEFAULT_ACTIONS, DEFAULT_HOSTS};
pub use crate::ami_wire::{
    AmiLimit, Message, MessageReader, MAX_AMI_FIELDS, MAX_AMI_LINE, MAX_AMI_MESSAGE,
};

/// One AMI transaction: its fields in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transaction {
    pub fields: Vec<(String, String)>,
}

impl Transaction {
    pub fn get(&self, key: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(key))
            .map(|(_, v)| v.as_str())
    }

    pub fn action(&self) -> &str {
        self.get("Action").unwrap_or("")
    }

    /// The wire form: `Key: Value` lines with CRLF, a blank line at the end.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        for (k, v) in &self.fields {
            let _ = write!(out, "{k}: {v}\r\n");
        }
        out.push_str("\r\n");
        out
    }

    /// For the log: the transaction with every secret masked.
    pub fn redacted(&self) -> String {
        let fields: Vec<String> = self
            .fields
            .iter()
            .map(|(k, v)| {
                if k.eq_ignore_ascii_case("Secret") || k.eq_ignore_ascii_case("Key") {
                    format!("{k}: ***")
                } else {
                    format!("{k}: {v}")
                }
            })
            .collect();
        fields.join(", ")
    }
}

/// Parses one transaction as QueueMetrics wrote it (LF or CRLF lines).
pub fn parse_transaction(text: &str) -> Result<Transaction, String> {
    let mut fields = Vec::new();
    for line in text.split('\n').map(|l| l.trim_end_matches('\r')) {
        if line.trim().is_empty() {
            continue;
        }
        let Some((k, v)) = line.split_once(':') else {
            return Err(format!("{line:?} is not a 'Key: Value' line"));
        };
        let k = k.trim();
        if v.chars().any(|c| c.is_control() && c != '\t') {
            // A lone CR is no line break to qlship but could be one to a reader.
            return Err(format!("{k}: a control character in the value"));
        }
        if fields.len() >= MAX_AMI_FIELDS {
            return Err(format!("more than {MAX_AMI_FIELDS} lines"));
        }
        if k.is_empty()
            || !k
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(format!("{k:?} is not an AMI header name"));
        }
        fields.push((k.to_string(), v.trim().to_string()));
    }
    if fields.is_empty() {
        return Err("an empty action".into());
    }
    Ok(Transaction { fields })
}

/// A container qlship has agreed to run: where, and exactly what it will send.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Vetted {
    pub id: String,
    pub host: String,
    pub port: u16,
    pub transactions: Vec<Transaction>,
}

/// Applies the policy: the host and every action must be allowed, or nothing runs.
/// Adds an `ActionID` where QueueMetrics gave none, and with local credentials replaces
/// QueueMetrics' `Login` by qlship's own.
pub fn vet(c: &ActionContainer, policy: &Policy) -> Result<Vetted, String> {
    if !policy.hosts.iter().any(|h| h.eq_ignore_ascii_case(&c.host)) {
        return Err(format!(
            "host {} is not in AMI_HOSTS ({}): qlship only talks to the local Asterisk",
            c.host,
            policy.hosts.join(",")
        ));
    }
    let mut transactions = Vec::new();
    for (n, text) in c.actions.iter().enumerate() {
        let t = parse_transaction(text).map_err(|e| format!("action {}: {e}", n + 1))?;
        let action = t.action();
        if action.is_empty() {
            return Err(format!("action {} has no Action: line", n + 1));
        }
        if !policy
            .actions
            .iter()
            .any(|a| a.eq_ignore_ascii_case(action))
        {
            return Err(format!("action {action} is not in AMI_ACTIONS"));
        }
        crate::ami_policy::check(&t, policy).map_err(|r| r.to_string())?;
        if policy.login.is_some() && action.eq_ignore_ascii_case("Login") {
            continue;
        }
        transactions.push(t);
    }
    if let Some((user, secret)) = &policy.login {
        transactions.insert(
            0,
            Transaction {
                fields: vec![
                    ("Action".into(), "Login".into()),
                    ("Username".into(), user.clone()),
                    ("Secret".into(), secret.expose().to_string()),
                ],
            },
        );
    }
    for (n, t) in transactions.iter_mut().enumerate() {
        if t.get("ActionID").is_none() {
            t.fields
                .push(("ActionID".into(), format!("qlship-{}-{}", c.id, n + 1)));
        }
    }
    Ok(Vetted {
        id: c.id.clone(),
        host: c.host.clone(),
        port: c.port,
        transactions,
    })
}

/// What one transaction's response says: `Ok(message)` or `Err(message)`.
pub fn judge(t: &Transaction, response: &Message) -> Result<String, String> {
    let status = response.get("Response").unwrap_or("");
    let message = response.get("Message").unwrap_or("").to_string();
    let text = if message.is_empty() {
        format!("{}: {status}", t.action())
    } else {
        format!("{}: {message}", t.action())
    };
    if status.eq_ignore_ascii_case("Success")
        || status.eq_ignore_ascii_case("Goodbye")
        || status.eq_ignore_ascii_case("Follows")
    {
        Ok(text)
    } else {
        Err(text)
    }
}

#[cfg(test)]
mod tests;
