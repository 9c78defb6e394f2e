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
mod tests {
    use super::*;
    use miniserde::json;

    fn policy() -> Policy {
        Policy::default()
    }

    fn c(host: &str, actions: &[&str]) -> ActionContainer {
        ActionContainer {
            id: "77".into(),
            host: host.into(),
            port: 5038,
            actions: actions.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn check_fb_encodes_results_in_the_documented_shape() {
        let p = Partition {
            token: "P1".into(),
            tz_offset: 0,
        };
        assert_eq!(
            check_fb(&p, &[]),
            r#"{"commandId":"checkFb","version":"1.0","token":"P1","results":[]}"#
        );
        let r = [
            FbResult {
                id: "5".into(),
                ok: true,
                text: "QueueAdd: Added".into(),
            },
            FbResult {
                id: "6".into(),
                ok: false,
                text: "KO: \"x\"".into(),
            },
        ];
        assert_eq!(
            check_fb(&p, &r),
            r#"{"commandId":"checkFb","version":"1.0","token":"P1","results":[{"commandId":"checkFbResCon","version":"1.0","token":"P1","id":"5","resultStatus":"OK","result":"QueueAdd: Added"},{"commandId":"checkFbResCon","version":"1.0","token":"P1","id":"6","resultStatus":"KO","result":"KO: \"x\""}]}"#
        );
    }

    #[test]
    fn containers_are_read_with_numbers_or_strings_and_bad_ones_keep_their_id() {
        let v: Value = json::from_str(
            r#"[{"id":12,"host":"127.0.0.1","port":"5038","actions":["Action: Ping"]},
                {"id":"13","host":"localhost","actions":["Action: Ping"]},
                {"id":"14","host":"localhost","port":99999,"actions":[]},
                {"host":"localhost","actions":[]},
                {"id":"15","host":"localhost","actions":[7]}]"#,
        )
        .unwrap();
        let got = containers(Some(&v));
        assert_eq!(got.len(), 5);
        assert_eq!(got[0].as_ref().unwrap().id, "12");
        assert_eq!(got[0].as_ref().unwrap().port, 5038);
        assert_eq!(got[1].as_ref().unwrap().port, 5038);
        assert_eq!(
            got[2],
            Err(("14".into(), "the port is not a TCP port".into()))
        );
        assert_eq!(
            got[3],
            Err(("".into(), "an action container has no id".into()))
        );
        assert_eq!(got[4], Err(("15".into(), "an action is not text".into())));
        assert!(containers(None).is_empty());
    }

    #[test]
    fn containers_are_bounded_in_count_actions_and_size() {
        let one = |id: usize, actions: &str| {
            format!(r#"{{"id":"{id}","host":"localhost","actions":[{actions}]}}"#)
        };
        let ping = "\"Action: Ping\"";
        let many: Vec<String> = (0..MAX_CONTAINERS + 5).map(|i| one(i, ping)).collect();
        let v: Value = json::from_str(&format!("[{}]", many.join(","))).unwrap();
        assert_eq!(containers(Some(&v)).len(), MAX_CONTAINERS);

        let pings = vec![ping; MAX_ACTIONS_PER_CONTAINER];
        let at = |n: usize| -> Value {
            json::from_str(&format!("[{}]", one(1, &pings[..n].join(",")))).unwrap()
        };
        assert!(containers(Some(&at(MAX_ACTIONS_PER_CONTAINER)))[0].is_ok());
        let over: Value = json::from_str(&format!(
            "[{}]",
            one(1, &format!("{},{ping}", pings.join(",")))
        ))
        .unwrap();
        assert_eq!(
            containers(Some(&over))[0],
            Err((
                "1".into(),
                "33 actions, more than 32 in one container".into()
            ))
        );

        let long = format!("\"Action: Ping\\nX: {}\"", "a".repeat(MAX_ACTION_BYTES));
        let v: Value = json::from_str(&format!("[{}]", one(2, &long))).unwrap();
        assert_eq!(
            containers(Some(&v))[0],
            Err(("2".into(), "an action of over 8192 bytes".into()))
        );
        let big = format!(
            "\"Action: Ping\\nX: {}\"",
            "a".repeat(MAX_ACTION_BYTES - 20)
        );
        let v: Value = json::from_str(&format!("[{}]", one(3, &vec![big; 9].join(",")))).unwrap();
        assert_eq!(
            containers(Some(&v))[0],
            Err(("3".into(), "actions of over 65536 bytes in all".into()))
        );
        let v: Value = json::from_str(&format!(
            r#"[{{"id":"{}","host":"localhost","actions":[]}}]"#,
            "9".repeat(MAX_ID_BYTES + 1)
        ))
        .unwrap();
        assert_eq!(
            containers(Some(&v))[0],
            Err(("".into(), "an id of over 256 bytes".into()))
        );
    }

    #[test]
    fn control_characters_in_a_value_are_refused() {
        assert_eq!(
            parse_transaction("Action: QueueAdd\nQueue: q\rApplication: System"),
            Err("Queue: a control character in the value".into())
        );
        assert!(parse_transaction("Action: QueueAdd\nQueue: q\tx").is_ok());
    }

    #[test]
    fn a_foreign_host_is_refused_with_the_reason() {
        let e = vet(&c("10.0.0.9", &["Action: Ping"]), &policy()).unwrap_err();
        assert_eq!(
            e,
            "host 10.0.0.9 is not in AMI_HOSTS (127.0.0.1,::1,localhost): qlship only talks to the local Asterisk"
        );
    }

    #[test]
    fn a_container_with_one_refused_action_is_refused_whole() {
        let e = vet(
            &c(
                "127.0.0.1",
                &[
                    "Action: QueueAdd\nQueue: q1\nInterface: SIP/1",
                    "Action: Command\nCommand: core stop now",
                ],
            ),
            &policy(),
        )
        .unwrap_err();
        assert_eq!(e, "action Command is not in AMI_ACTIONS");
        let e = vet(&c("127.0.0.1", &["Queue: q1"]), &policy()).unwrap_err();
        assert_eq!(e, "action 1 has no Action: line");
        let e = vet(&c("127.0.0.1", &["Action QueueAdd"]), &policy()).unwrap_err();
        assert_eq!(
            e,
            "action 1: \"Action QueueAdd\" is not a 'Key: Value' line"
        );
    }

    #[test]
    fn action_ids_are_added_and_local_login_replaces_the_servers() {
        let v = vet(
            &c(
                "LOCALHOST",
                &[
                    "Action: Login\r\nUsername: qm\r\nSecret: remote\r\n",
                    "action: queueadd\nQueue: q1\nInterface: SIP/1",
                    "Action: QueuePause\nActionID: mine\nInterface: SIP/1\nPaused: true",
                ],
            ),
            &Policy {
                login: Some(("local".into(), "s3cret".into())),
                ..policy()
            },
        )
        .unwrap();
        let wire: Vec<String> = v.transactions.iter().map(Transaction::encode).collect();
        assert_eq!(
            wire,
            [
                "Action: Login\r\nUsername: local\r\nSecret: s3cret\r\nActionID: qlship-77-1\r\n\r\n",
                "action: queueadd\r\nQueue: q1\r\nInterface: SIP/1\r\nActionID: qlship-77-2\r\n\r\n",
                "Action: QueuePause\r\nActionID: mine\r\nInterface: SIP/1\r\nPaused: true\r\n\r\n",
            ]
        );
        assert_eq!(
            v.transactions[0].redacted(),
            "Action: Login, Username: local, Secret: ***, ActionID: qlship-77-1"
        );
        // Without local credentials the server's Login goes through as it is.
        let v = vet(
            &c("::1", &["Action: Login\nUsername: qm\nSecret: remote"]),
            &policy(),
        )
        .unwrap();
        assert_eq!(v.transactions[0].get("Secret"), Some("remote"));
    }

    #[test]
    fn responses_are_judged_by_their_status_and_carry_asterisks_message() {
        let t = parse_transaction("Action: QueueAdd").unwrap();
        let m = |s: &str, msg: &str| Message {
            fields: vec![
                ("Response".into(), s.into()),
                ("Message".into(), msg.into()),
            ],
        };
        assert_eq!(
            judge(&t, &m("Success", "Added interface to queue")),
            Ok("QueueAdd: Added interface to queue".into())
        );
        assert_eq!(
            judge(&t, &m("Error", "Unable to add interface: Already there")),
            Err("QueueAdd: Unable to add interface: Already there".into())
        );
        assert_eq!(judge(&t, &m("Success", "")), Ok("QueueAdd: Success".into()));
    }
}
