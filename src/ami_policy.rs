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
mod tests;
