//! What QueueMetrics may make the PBX do, judged header by header: the host, the action,
//! and the arguments that can execute something (an `Originate` application, a dialplan
//! context, a dialplan function or `${…}` expansion in a variable). Pure data and pure
//! checks; `feedback::vet` applies them to a whole container before anything is sent.
//!
//! Why arguments and not only action names: `Originate` with `Application: System` runs
//! a shell command, `Getvar` of `SHELL(id)` runs one and returns its output, `Setvar` of
//! `FILE(/etc/asterisk/extensions.conf)` rewrites the dialplan. All three are actions
//! QueueMetrics legitimately sends with other arguments.

use crate::feedback::Transaction;
use crate::secret::Secret;
use std::fmt;

/// What qlship will do on QueueMetrics' behalf (config keys AMI_HOSTS, AMI_ACTIONS,
/// AMI_APPLICATIONS, AMI_CONTEXTS, AMI_FUNCTIONS, AMI_USER, AMI_SECRET).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Policy {
    pub hosts: Vec<String>,
    pub actions: Vec<String>,
    /// Applications an `Originate` may start (`Application:`).
    pub applications: Vec<String>,
    /// Dialplan contexts an `Originate`, `Redirect` or `Atxfer` may lead into; `None`
    /// (the default) leaves contexts unrestricted.
    pub contexts: Option<Vec<String>>,
    /// Dialplan functions a `Variable`/`Value` header may name (default none).
    pub functions: Vec<String>,
    /// Local AMI credentials: qlship logs in itself and drops QueueMetrics' `Login`.
    pub login: Option<(String, Secret)>,
}

pub const DEFAULT_HOSTS: &[&str] = &["127.0.0.1", "::1", "localhost"];
/// `Command` (any CLI command, `core stop now` included) is deliberately absent.
pub const DEFAULT_ACTIONS: &[&str] = &[
    "Login",
    "Logoff",
    "QueueAdd",
    "QueueRemove",
    "QueuePause",
    "QueueLog",
    "QueuePenalty",
    "Originate",
    "Redirect",
    "Hangup",
    "Atxfer",
    "Setvar",
    "Getvar",
    "Ping",
];
/// What QueueMetrics' listen / whisper / barge buttons originate into.
pub const DEFAULT_APPLICATIONS: &[&str] = &["ChanSpy", "ExtenSpy"];

impl Default for Policy {
    fn default() -> Self {
        let owned = |l: &[&str]| l.iter().map(|s| s.to_string()).collect();
        Policy {
            hosts: owned(DEFAULT_HOSTS),
            actions: owned(DEFAULT_ACTIONS),
            applications: owned(DEFAULT_APPLICATIONS),
            contexts: None,
            functions: Vec::new(),
            login: None,
        }
    }
}

/// A config value that is not valid for the policy, with the key's origin.
#[derive(Debug, PartialEq, Eq)]
pub enum PolicyError {
    UserWithoutSecret(String),
    SecretWithoutUser(String),
}

impl fmt::Display for PolicyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PolicyError::UserWithoutSecret(origin) => write!(
                f,
                "{origin}: AMI_USER needs AMI_SECRET in the --config file (never on the command line)"
            ),
            PolicyError::SecretWithoutUser(origin) => {
                write!(f, "{origin}: AMI_SECRET needs AMI_USER")
            }
        }
    }
}

impl Policy {
    /// From the config keys (comma or space separated lists); `get(key)` gives a key's
    /// value and where it came from. An empty AMI_APPLICATIONS or AMI_FUNCTIONS allows
    /// none; an empty AMI_CONTEXTS is the same as none given (unrestricted).
    pub fn from_keys<'a>(
        get: impl Fn(&str) -> Option<(&'a str, &'a str)>,
    ) -> Result<Policy, PolicyError> {
        let list = |v: &str| -> Vec<String> {
            v.split([',', ' '])
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect()
        };
        let mut policy = Policy::default();
        if let Some((v, _)) = get("AMI_HOSTS") {
            policy.hosts = list(v);
        }
        if let Some((v, _)) = get("AMI_ACTIONS") {
            policy.actions = list(v);
        }
        if let Some((v, _)) = get("AMI_APPLICATIONS") {
            policy.applications = list(v);
        }
        if let Some((v, _)) = get("AMI_CONTEXTS") {
            policy.contexts = Some(list(v)).filter(|l| !l.is_empty());
        }
        if let Some((v, _)) = get("AMI_FUNCTIONS") {
            policy.functions = list(v);
        }
        policy.login = match (get("AMI_USER"), get("AMI_SECRET")) {
            (Some((user, _)), Some((secret, _))) => Some((user.to_string(), Secret::new(secret))),
            (None, None) => None,
            (Some((_, origin)), None) => return Err(PolicyError::UserWithoutSecret(origin.into())),
            (None, Some((_, origin))) => return Err(PolicyError::SecretWithoutUser(origin.into())),
        };
        Ok(policy)
    }
}

/// Why one transaction of a container is refused. The container is then not run at all.
#[derive(Debug, PartialEq, Eq)]
pub enum Refusal {
    /// An `Originate` starting an application not in AMI_APPLICATIONS.
    Application { application: String },
    /// A destination context not in AMI_CONTEXTS (`header` says where it was named).
    Context {
        action: String,
        header: String,
        context: String,
    },
    /// A dialplan function not in AMI_FUNCTIONS, named in a variable header.
    Function {
        action: String,
        header: String,
        function: String,
    },
    /// A `${…}` or `$[…]` expansion that is not an allowed function.
    Expansion { action: String, header: String },
    /// A header that can execute something, on an action that does not take it.
    Header { action: String, header: String },
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::Application { application } => write!(
                f,
                "Originate of application {application} is not allowed by AMI_APPLICATIONS"
            ),
            Refusal::Context {
                action,
                header,
                context,
            } => write!(
                f,
                "{action} into context {context} ({header}) is not allowed by AMI_CONTEXTS"
            ),
            Refusal::Function {
                action,
                header,
                function,
            } => write!(
                f,
                "{action} {header} calls the dialplan function {function}, not allowed by AMI_FUNCTIONS"
            ),
            Refusal::Expansion { action, header } => write!(
                f,
                "{action} {header} holds a ${{…}} or $[…] expansion, which Asterisk may evaluate"
            ),
            Refusal::Header { action, header } => write!(
                f,
                "{action} does not take a {header} header, which could run something"
            ),
        }
    }
}

/// Headers that can make Asterisk execute something, and the actions that take them.
/// On any other action they are refused (Asterisk ignores headers an action does not
/// read, but a refused one costs nothing and closes the door on a future reader).
const EXECUTING_HEADERS: &[(&str, &[&str])] = &[
    ("Application", &["Originate"]),
    ("Data", &["Originate"]),
    ("Variable", &["Originate", "Setvar", "Getvar"]),
    // MixMonitor runs its `Command` in a shell when the recording ends.
    ("Command", &["Command"]),
];

/// Headers whose text Asterisk may evaluate as a variable name or dialplan expression.
const EVALUATED_HEADERS: &[&str] = &["Variable", "Value"];

/// Checks one transaction's arguments (its action name is checked by `feedback::vet`).
pub fn check(t: &Transaction, policy: &Policy) -> Result<(), Refusal> {
    let action = t.action();
    let is = |name: &str| action.eq_ignore_ascii_case(name);
    for (key, value) in &t.fields {
        let refuse_header = || Refusal::Header {
            action: action.to_string(),
            header: key.clone(),
        };
        if let Some((_, takers)) = EXECUTING_HEADERS
            .iter()
            .find(|(h, _)| h.eq_ignore_ascii_case(key))
        {
            if !takers.iter().any(|a| is(a)) {
                return Err(refuse_header());
            }
        }
        let evaluated = EVALUATED_HEADERS
            .iter()
            .any(|h| h.eq_ignore_ascii_case(key))
            && (is("Setvar") || is("Getvar") || is("Originate"));
        if evaluated {
            check_expression(value, &policy.functions).map_err(|found| match found {
                Found::Function(function) => Refusal::Function {
                    action: action.to_string(),
                    header: key.clone(),
                    function,
                },
                Found::Expansion => Refusal::Expansion {
                    action: action.to_string(),
                    header: key.clone(),
                },
            })?;
        }
        if key.eq_ignore_ascii_case("Data") && has_expansion(value) {
            // An application's argument: ChanSpy options use parentheses, so only
            // expansions are refused here.
            return Err(Refusal::Expansion {
                action: action.to_string(),
                header: key.clone(),
            });
        }
        if key.eq_ignore_ascii_case("Application")
            && !policy
                .applications
                .iter()
                .any(|a| a.eq_ignore_ascii_case(value.trim()))
        {
            return Err(Refusal::Application {
                application: value.clone(),
            });
        }
        if let Some(allowed) = &policy.contexts {
            let destination = destination_context(action, key, value);
            if let Some(context) = destination {
                if !allowed.iter().any(|c| c.eq_ignore_ascii_case(context)) {
                    return Err(Refusal::Context {
                        action: action.to_string(),
                        header: key.clone(),
                        context: context.to_string(),
                    });
                }
            }
        }
    }
    Ok(())
}

/// The dialplan context a header of `action` sends a call into, if it names one:
/// `Context`/`ExtraContext` of Originate, Redirect and Atxfer, and the `@context` of an
/// Originate's `Local/…` channel (a Local channel runs that context's dialplan).
fn destination_context<'a>(action: &str, key: &str, value: &'a str) -> Option<&'a str> {
    let routes_calls = ["Originate", "Redirect", "Atxfer"]
        .iter()
        .any(|a| a.eq_ignore_ascii_case(action));
    if !routes_calls {
        return None;
    }
    if key.eq_ignore_ascii_case("Context") || key.eq_ignore_ascii_case("ExtraContext") {
        return Some(value.trim());
    }
    if key.eq_ignore_ascii_case("Channel") && action.eq_ignore_ascii_case("Originate") {
        let (tech, rest) = value.trim().split_once('/')?;
        if tech.eq_ignore_ascii_case("Local") {
            let (_, context) = rest.split_once('@')?;
            // `Local/101@agents/n`: options after the context.
            return Some(context.split('/').next().unwrap_or(context));
        }
    }
    None
}

/// What `check_expression` found that is not allowed.
#[derive(Debug, PartialEq, Eq)]
enum Found {
    Function(String),
    Expansion,
}

/// A variable name or value must call no dialplan function outside `allowed` (a name
/// followed by `(`, spaces allowed between: Asterisk reads `SHELL (id)` too) and hold
/// no `${…}`/`$[…]` expansion other than of an allowed function. Names compare
/// case-insensitively, as Asterisk's function lookup does.
fn check_expression(text: &str, allowed: &[String]) -> Result<(), Found> {
    let bytes = text.as_bytes();
    let ident = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    let skip_spaces = |mut i: usize| {
        while i < bytes.len() && bytes[i].is_ascii_whitespace() {
            i += 1;
        }
        i
    };
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'$' {
            let open = skip_spaces(i + 1);
            match bytes.get(open) {
                Some(b'[') => return Err(Found::Expansion),
                Some(b'{') => {
                    // Only `${NAME(` — an allowed function, checked below — may pass.
                    let start = skip_spaces(open + 1);
                    let mut end = start;
                    while end < bytes.len() && ident(bytes[end]) {
                        end += 1;
                    }
                    if end == start || bytes.get(skip_spaces(end)) != Some(&b'(') {
                        return Err(Found::Expansion);
                    }
                }
                _ => {}
            }
        }
        if ident(bytes[i]) && (i == 0 || !ident(bytes[i - 1])) {
            let mut end = i;
            while end < bytes.len() && ident(bytes[end]) {
                end += 1;
            }
            if bytes.get(skip_spaces(end)) == Some(&b'(') {
                let name = &text[i..end];
                if !allowed.iter().any(|f| f.eq_ignore_ascii_case(name)) {
                    return Err(Found::Function(name.to_string()));
                }
            }
            i = end;
            continue;
        }
        i += 1;
    }
    Ok(())
}

/// `${` or `$[`, with or without spaces after the dollar.
fn has_expansion(text: &str) -> bool {
    text.match_indices('$').any(|(i, _)| {
        matches!(
            text[i + 1..].trim_start().as_bytes().first(),
            Some(b'{' | b'[')
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::feedback::parse_transaction;

    fn judge(text: &str, policy: &Policy) -> Result<(), String> {
        check(&parse_transaction(text).unwrap(), policy).map_err(|r| r.to_string())
    }

    fn default_judge(text: &str) -> Result<(), String> {
        judge(text, &Policy::default())
    }

    #[test]
    fn what_queuemetrics_sends_passes() {
        for ok in [
            "Action: QueueAdd\nQueue: q1\nInterface: SIP/101\nMemberName: Agent/101\nPenalty: 1",
            "Action: QueuePause\nInterface: SIP/101\nPaused: true\nReason: lunch (back at 2)",
            "Action: QueueRemove\nQueue: q1\nInterface: SIP/101",
            "Action: Originate\nChannel: SIP/200\nApplication: ChanSpy\nData: SIP/101,qw\nAsync: true",
            "Action: Originate\nChannel: SIP/200\nApplication: chanspy\nData: SIP/101,qBe(123)",
            "Action: Originate\nChannel: Local/200@from-internal\nContext: agents\nExten: 101\nPriority: 1\nVariable: AGENT=101,__QM_USER=robert",
            "Action: Redirect\nChannel: SIP/101-0001\nContext: from-internal\nExten: 300\nPriority: 1",
            "Action: Setvar\nVariable: QM_PAUSE\nValue: lunch",
            "Action: Getvar\nChannel: SIP/101-0001\nVariable: CALLERID_NUM",
        ] {
            assert_eq!(default_judge(ok), Ok(()), "{ok}");
        }
    }

    #[test]
    fn originate_of_an_application_not_listed_is_refused() {
        assert_eq!(
            default_judge("Action: Originate\nChannel: Local/1@x\nApplication: System\nData: touch /tmp/pwned"),
            Err("Originate of application System is not allowed by AMI_APPLICATIONS".into())
        );
        // Every Application header counts: Asterisk might read either.
        assert!(default_judge(
            "Action: Originate\nChannel: SIP/1\nApplication: ChanSpy\napplication: System"
        )
        .is_err());
        let with_system = Policy {
            applications: vec!["System".into()],
            ..Policy::default()
        };
        assert_eq!(
            judge(
                "Action: Originate\nChannel: SIP/1\nApplication: system\nData: true",
                &with_system
            ),
            Ok(())
        );
    }

    #[test]
    fn dialplan_functions_are_refused_in_any_case_and_spacing() {
        for (text, function) in [
            ("Action: Getvar\nVariable: SHELL(id)", "SHELL"),
            ("Action: Getvar\nVariable: shell (id)", "shell"),
            ("Action: Getvar\nVariable: ${SHELL(id)}", "SHELL"),
            ("Action: Setvar\nVariable: FILE(/etc/asterisk/extensions.conf)\nValue: x", "FILE"),
            ("Action: Setvar\nVariable: X\nValue: ${ Shell ( id ) }", "Shell"),
            ("Action: Originate\nChannel: SIP/1\nApplication: ChanSpy\nVariable: A=1,B=${SHELL(id)}", "SHELL"),
            ("Action: Originate\nChannel: Local/1@agents\nExten: 1\nContext: agents\nVariable: FILE(/tmp/x)=y", "FILE"),
            // An allowed function does not hide a refused one inside it.
            ("Action: Getvar\nVariable: ${CALLERID(${SHELL(id)})}", "SHELL"),
        ] {
            let callerid = Policy {
                functions: vec!["CALLERID".into()],
                ..Policy::default()
            };
            let err = judge(text, &callerid).unwrap_err();
            assert!(
                err.contains(&format!("calls the dialplan function {function},")),
                "{text}: {err}"
            );
        }
    }

    #[test]
    fn expansions_are_refused_unless_of_an_allowed_function() {
        for text in [
            "Action: Setvar\nVariable: X\nValue: ${OTHER}",
            "Action: Setvar\nVariable: X\nValue: $ {OTHER}",
            "Action: Setvar\nVariable: X\nValue: $[1+1]",
            "Action: Originate\nChannel: SIP/1\nApplication: ChanSpy\nData: ${SHELL(id)}",
            "Action: Originate\nChannel: SIP/1\nApplication: ChanSpy\nData: $[1]",
        ] {
            let err = default_judge(text).unwrap_err();
            assert!(err.contains("expansion"), "{text}: {err}");
        }
        let callerid = Policy {
            functions: vec!["CALLERID".into()],
            ..Policy::default()
        };
        assert_eq!(
            judge(
                "Action: Getvar\nChannel: SIP/1-1\nVariable: CALLERID(num)",
                &callerid
            ),
            Ok(())
        );
        assert_eq!(
            judge(
                "Action: Setvar\nVariable: X\nValue: ${callerid(num)}",
                &callerid
            ),
            Ok(())
        );
        assert!(judge("Action: Getvar\nVariable: SHELL(id)", &callerid).is_err());
    }

    #[test]
    fn executing_headers_on_actions_that_do_not_take_them_are_refused() {
        assert_eq!(
            default_judge("Action: QueueAdd\nQueue: q\nInterface: SIP/1\nApplication: System"),
            Err("QueueAdd does not take a Application header, which could run something".into())
        );
        assert!(default_judge(
            "Action: Redirect\nChannel: SIP/1-1\nContext: a\nExten: 1\nPriority: 1\nVariable: X=1"
        )
        .is_err());
        assert!(default_judge("Action: Hangup\nChannel: SIP/1-1\ndata: x").is_err());
        assert!(default_judge("Action: QueuePause\nInterface: SIP/1\nCommand: rm -rf /").is_err());
        // Unknown headers that execute nothing pass: Asterisk ignores them.
        assert_eq!(
            default_judge(
                "Action: QueueAdd\nQueue: q\nInterface: SIP/1\nStateInterface: SIP/1\nX-Note: hi"
            ),
            Ok(())
        );
    }

    #[test]
    fn contexts_are_restricted_only_when_listed() {
        let agents = Policy {
            contexts: Some(vec!["agents".into(), "queuemetrics".into()]),
            ..Policy::default()
        };
        let redirect =
            "Action: Redirect\nChannel: SIP/1-1\nContext: from-internal\nExten: 1\nPriority: 1";
        assert_eq!(default_judge(redirect), Ok(()));
        assert_eq!(
            judge(redirect, &agents),
            Err(
                "Redirect into context from-internal (Context) is not allowed by AMI_CONTEXTS"
                    .into()
            )
        );
        assert_eq!(
            judge("Action: Redirect\nChannel: SIP/1-1\nContext: Agents\nExten: 1\nPriority: 1\nExtraChannel: SIP/2-1\nExtraContext: queuemetrics", &agents),
            Ok(())
        );
        assert!(judge(
            "Action: Redirect\nChannel: SIP/1-1\nContext: agents\nExtraContext: from-internal",
            &agents
        )
        .is_err());
        assert!(judge(
            "Action: Atxfer\nChannel: SIP/1-1\nExten: 9\nContext: default",
            &agents
        )
        .is_err());
        assert!(judge(
            "Action: Originate\nChannel: SIP/1\nContext: default\nExten: 1\nPriority: 1",
            &agents
        )
        .is_err());
        assert_eq!(
            judge("Action: Originate\nChannel: Local/200@from-internal/n\nApplication: ChanSpy\nData: SIP/1", &agents),
            Err("Originate into context from-internal (Channel) is not allowed by AMI_CONTEXTS".into())
        );
        assert_eq!(
            judge(
                "Action: Originate\nChannel: Local/200@agents/n\nApplication: ChanSpy\nData: SIP/1",
                &agents
            ),
            Ok(())
        );
        // QueueAdd's Local interface is a member, not a destination it dials now.
        assert_eq!(
            judge(
                "Action: QueueAdd\nQueue: q\nInterface: Local/1@elsewhere",
                &agents
            ),
            Ok(())
        );
    }

    #[test]
    fn config_keys_build_the_policy() {
        let keys = [
            ("AMI_APPLICATIONS", "ChanSpy, ExtenSpy,Dial"),
            ("AMI_CONTEXTS", "agents"),
            ("AMI_FUNCTIONS", "CALLERID"),
            ("AMI_USER", "qlship"),
            ("AMI_SECRET", "s3cret"),
        ];
        let p = Policy::from_keys(|k| {
            keys.iter()
                .find(|(key, _)| *key == k)
                .map(|(_, v)| (*v, "test"))
        })
        .unwrap();
        assert_eq!(p.applications, ["ChanSpy", "ExtenSpy", "Dial"]);
        assert_eq!(p.contexts, Some(vec!["agents".to_string()]));
        assert_eq!(p.functions, ["CALLERID"]);
        assert_eq!(p.hosts, DEFAULT_HOSTS);
        assert!(!format!("{p:?}").contains("s3cret"), "{p:?}");
        let empty = Policy::from_keys(|k| match k {
            "AMI_APPLICATIONS" | "AMI_CONTEXTS" => Some(("", "f:1")),
            _ => None,
        })
        .unwrap();
        assert!(empty.applications.is_empty());
        assert_eq!(empty.contexts, None);
        assert_eq!(
            Policy::from_keys(|k| (k == "AMI_USER").then_some(("u", "f:3 AMI_USER")))
                .unwrap_err()
                .to_string(),
            "f:3 AMI_USER: AMI_USER needs AMI_SECRET in the --config file (never on the command line)"
        );
    }
}
