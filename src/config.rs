//! Command line and `--config` file, in two stages: raw values (with where they came
//! from), then validated [`Settings`]. wqloaderd's flags and sysconfig keys are accepted
//! as they are (see shared/spec/cli.md).

use crate::rules::Target;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

/// Which server certificates an HTTPS connection accepts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Trust {
    /// The machine's CA bundle (rustls-native-certs: SSL_CERT_FILE, /etc/ssl/...).
    SystemStore,
    /// Only CAs from this PEM file (`--cacert FILE`).
    CaFile(PathBuf),
    /// `--cacert insecure`: no check at all; warned about at every start.
    Insecure,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Settings {
    pub host: String,
    pub port: u16,
    pub context: String,
    pub user: String,
    pub password: crate::secret::Secret,
    pub https: bool,
    pub trust: Trust,
    pub queue_log: PathBuf,
    pub token: String,
    /// None: standard error.
    pub activity_log: Option<PathBuf>,
    pub pid_file: Option<PathBuf>,
    pub state_dir: PathBuf,
    pub run_dir: PathBuf,
    pub ram_budget: usize,
    pub spool_max: u64,
    pub drain: bool,
    /// Drop the spooled rows of targets no longer configured instead of refusing to
    /// start (issue 15, case 7).
    pub drop_backlog: bool,
    pub heartbeat: Duration,
    pub feedback: Duration,
    /// What feedback actions may do on the local Asterisk.
    pub ami: crate::feedback::Policy,
    /// Deadline for connecting to AMI and for each of its answers.
    pub ami_timeout: Duration,
    pub http_timeout: Duration,
    pub backoff_min: Duration,
    pub backoff_max: Duration,
    pub rotate_grace: Duration,
    /// How long after an unanswered request its resync waits (a slow server may still
    /// store it). Default: twice the HTTP timeout.
    pub resync_settle: Duration,
    /// How often each target's summary line is logged.
    pub summary_every: Duration,
    /// Rows waiting, none acknowledged this long while the target answers: stalled.
    pub stall_after: Duration,
    pub verbose: bool,
    /// How log lines are marked for a system logger (`--log-style`, src/logging.rs).
    pub log_style: crate::logging::Style,
    /// A `--config` file that holds QMPASS (checked for its permissions at start).
    pub password_file: Option<PathBuf>,
    /// `--rules FILE` (config key RULES): multi-target mode, with the file it came from.
    pub split: Option<(PathBuf, crate::rules::Split)>,
}

impl Settings {
    /// The endpoint of the single-target flags, without credentials (safe to log).
    pub fn url(&self) -> String {
        self.single_target().url()
    }

    /// The target the single-target flags and keys describe (also the defaults a Perl
    /// rule leaves out).
    pub fn single_target(&self) -> Target {
        Target {
            name: String::new(),
            https: self.https,
            host: self.host.clone(),
            port: self.port,
            context: self.context.clone(),
            user: self.user.clone(),
            password: self.password.clone(),
            token: self.token.clone(),
            tz_offset: 0,
            disabled: false,
            noactions: false,
            foreign_uri: None,
        }
    }

    /// The single target of a command line with no flags: what a Perl rule's missing
    /// keys default to in `qlship check-rules`.
    pub fn default_target() -> Target {
        match parse_daemon_args(Vec::new()) {
            Ok(Command::Run(s)) => s.single_target(),
            _ => Target::default(),
        }
    }

    /// Every target, with the key the journal knows it by ("" for the single target, so
    /// a journal keeps its cursor across upgrades).
    pub fn targets(&self) -> Vec<(Target, String)> {
        match &self.split {
            None => vec![(self.single_target(), String::new())],
            Some((_, split)) => split.targets.iter().map(|t| (t.clone(), t.key())).collect(),
        }
    }
}

#[derive(Debug, PartialEq)]
pub enum Command {
    Run(Box<Settings>),
    /// `qlship check …`: contact the target once and explain the outcome.
    Check(Box<Settings>),
    /// `qlship check-rules FILE [QUEUE_LOG]`: the parsed rules, and what each target
    /// would receive from QUEUE_LOG.
    CheckRules {
        file: PathBuf,
        queue_log: Option<PathBuf>,
    },
    /// `qlship status [--run-dir DIR] [--config FILE] [--json]`.
    Status {
        run_dir: PathBuf,
        json: bool,
    },
    Help,
    Version,
}

/// A usage or configuration error: one line naming the flag, key or file.
#[derive(Debug, PartialEq, Eq)]
pub struct ConfigError(pub String);

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

fn err<T>(msg: impl Into<String>) -> Result<T, ConfigError> {
    Err(ConfigError(msg.into()))
}

pub const USAGE: &str = "\
usage: qlship [-h HOST] [-p PORT] [-c CONTEXT] [-u USER] [-w PASSWORD] [OPTIONS]
              QUEUE_LOG [TOKEN [ACTIVITY_LOG]]
       qlship check [same flags and config as the daemon]
       qlship check-rules RULES_FILE [QUEUE_LOG]
       qlship status [--run-dir DIR | --config FILE] [--json]
options:
  --config FILE        KEY=VALUE file (wqloaderd's sysconfig keys work); flags win over it
  --state-dir DIR      sled journal directory (default /var/lib/qlship)
  --run-dir DIR        live status directory (default /run/qlship)
  --ram-budget SIZE    working-memory bound, K/M suffixes (default 1M)
  --spool-max SIZE     journal spool cap before reading pauses (default 64M)
  --rules FILE         split rows to several QueueMetrics by wqloader's Perl rules or
                       Uniloader's splitter JSON (multi-target mode)
  --drain              upload to the end of QUEUE_LOG, wait for acknowledgement, exit 0
  --drop-backlog       drop the unsent rows of targets the rules no longer name (or
                       name differently, or disable); without it qlship refuses to start
  --heartbeat SECS     checkHb interval, 0 disables (default 900)
  --feedback SECS      checkFb interval, 0 disables (default 0)
  --ami-hosts LIST     AMI hosts feedback actions may reach (default 127.0.0.1,::1,localhost)
  --ami-actions LIST   AMI actions they may run (default: queue, call and variable actions;
                       never Command)
  --ami-applications LIST  applications an Originate may start (default ChanSpy,ExtenSpy)
  --ami-contexts LIST  dialplan contexts Originate/Redirect/Atxfer may lead into
                       (default: any)
  --ami-functions LIST dialplan functions a Variable/Value header may name (default none)
  --ami-user USER      log in to AMI as USER (secret: AMI_SECRET in the --config file) and
                       drop QueueMetrics' own Login
  --ami-timeout SECS   AMI connect and answer deadline (default 10)
  --https              talk HTTPS to QueueMetrics (certificates checked against the system store)
  --cacert FILE        trust the CA certificates in this PEM file instead (Pi images often lack a bundle);
                       `insecure` checks no certificate at all (warned about at every start)
  --http-timeout SECS  connect+answer timeout per request (default 30)
  --backoff-min SECS   first retry delay after an error (default 1)
  --backoff-max SECS   longest retry delay (default 60)
  --rotate-grace SECS  keep reading a rotated file until quiet this long (default 5)
  --resync-settle SECS wait after an unanswered request before checking it (default 2x timeout)
  --summary-every SECS log a summary line per target this often (default 3600)
  --stall-after SECS   rows waiting and none acknowledged this long while the server answers:
                       stalled (status exits 1, a log line, qlship_stalled) (default 600)
  --pid-file FILE      write the process id here
  -v, --verbose        debug logging
  --log-style STYLE    auto (journald priorities when stderr is the journal, else
                       timestamps), timestamped, journal, or procd (OpenWrt: warnings
                       and errors on stderr, the rest on stdout, no timestamps)
  --version, --help";

/// Raw values by name, each with where it came from (for error messages).
#[derive(Default)]
struct Raw {
    values: Vec<(&'static str, String, String)>,
}

impl Raw {
    fn set(&mut self, key: &'static str, value: String, origin: String) {
        self.values.retain(|(k, _, _)| *k != key);
        self.values.push((key, value, origin));
    }
    fn get(&self, key: &str) -> Option<(&str, &str)> {
        self.values
            .iter()
            .find(|(k, _, _)| *k == key)
            .map(|(_, v, o)| (v.as_str(), o.as_str()))
    }
}

/// Flag → canonical key (the config file's spelling).
const VALUE_FLAGS: &[(&str, &str)] = &[
    ("-h", "HTTPHOST"),
    ("-p", "HTTPPORT"),
    ("-c", "HTTPCONTEXT"),
    ("-u", "QMUSER"),
    ("-w", "QMPASS"),
    ("--state-dir", "STATE_DIR"),
    ("--run-dir", "RUN_DIR"),
    ("--ram-budget", "RAM_BUDGET"),
    ("--spool-max", "SPOOL_MAX"),
    ("--heartbeat", "HEARTBEAT"),
    ("--feedback", "FEEDBACK"),
    ("--ami-hosts", "AMI_HOSTS"),
    ("--ami-actions", "AMI_ACTIONS"),
    ("--ami-applications", "AMI_APPLICATIONS"),
    ("--ami-contexts", "AMI_CONTEXTS"),
    ("--ami-functions", "AMI_FUNCTIONS"),
    ("--ami-user", "AMI_USER"),
    ("--ami-timeout", "AMI_TIMEOUT"),
    ("--http-timeout", "HTTP_TIMEOUT"),
    ("--backoff-min", "BACKOFF_MIN"),
    ("--backoff-max", "BACKOFF_MAX"),
    ("--rotate-grace", "ROTATE_GRACE"),
    ("--resync-settle", "RESYNC_SETTLE"),
    ("--summary-every", "SUMMARY_EVERY"),
    ("--stall-after", "STALL_AFTER"),
    ("--log-style", "LOGSTYLE"),
    ("--pid-file", "PIDFILE"),
    ("--cacert", "CACERT"),
    ("--rules", "RULES"),
];

const FILE_KEYS: &[&str] = &[
    "HTTPHOST",
    "HTTPPORT",
    "HTTPCONTEXT",
    "QMUSER",
    "QMPASS",
    "PARTITION",
    "QUEUELOG",
    "LOGFILE",
    "PIDFILE",
    "LOCKFILE",
    "STATE_DIR",
    "RUN_DIR",
    "RAM_BUDGET",
    "SPOOL_MAX",
    "HEARTBEAT",
    "FEEDBACK",
    "HTTPS",
    "CACERT",
    "HTTP_TIMEOUT",
    "BACKOFF_MIN",
    "BACKOFF_MAX",
    "ROTATE_GRACE",
    "RESYNC_SETTLE",
    "SUMMARY_EVERY",
    "STALL_AFTER",
    "LOGLEVEL",
    "LOGSTYLE",
    "AMI_HOSTS",
    "AMI_ACTIONS",
    "AMI_APPLICATIONS",
    "AMI_CONTEXTS",
    "AMI_FUNCTIONS",
    "AMI_USER",
    "AMI_SECRET",
    "AMI_TIMEOUT",
    "RULES",
];

pub fn parse_args<I: IntoIterator<Item = String>>(args: I) -> Result<Command, ConfigError> {
    let mut args: Vec<String> = args.into_iter().collect();
    match args.first().map(String::as_str) {
        Some("status") => return parse_status(&args[1..]),
        Some("check-rules") => {
            return match &args[1..] {
                [file] => Ok(Command::CheckRules {
                    file: PathBuf::from(file),
                    queue_log: None,
                }),
                [file, ql] => Ok(Command::CheckRules {
                    file: PathBuf::from(file),
                    queue_log: Some(PathBuf::from(ql)),
                }),
                _ => err("usage: qlship check-rules RULES_FILE [QUEUE_LOG]"),
            }
        }
        Some("check") => {
            args.remove(0);
            return match parse_daemon_args(args)? {
                Command::Run(s) => Ok(Command::Check(s)),
                other => Ok(other),
            };
        }
        _ => {}
    }
    parse_daemon_args(args)
}

fn parse_status(args: &[String]) -> Result<Command, ConfigError> {
    let mut run_dir = None;
    let mut json = false;
    let mut config_file = None;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--json" => json = true,
            "--run-dir" => run_dir = Some(it.next().ok_or_else(|| ConfigError("--run-dir needs a value (see --help)".into()))?.clone()),
            "--config" => config_file = Some(it.next().ok_or_else(|| ConfigError("--config needs a value (see --help)".into()))?.clone()),
            "--help" => return Ok(Command::Help),
            other => return err(format!("qlship status: unknown argument {other} (takes --run-dir DIR, --config FILE, --json)")),
        }
    }
    if run_dir.is_none() {
        if let Some(path) = config_file {
            let text = std::fs::read_to_string(&path)
                .or_else(|e| err(format!("--config {path}: cannot read: {e}")))?;
            run_dir = parse_config_text(&text, &path)?
                .into_iter()
                .find(|(k, _, _)| *k == "RUN_DIR")
                .map(|(_, v, _)| v);
        }
    }
    let run_dir = run_dir.unwrap_or_else(|| DEFAULT_RUN_DIR.into());
    if run_dir.trim().is_empty() {
        return err("qlship status: an empty --run-dir is not allowed");
    }
    Ok(Command::Status {
        run_dir: PathBuf::from(run_dir),
        json,
    })
}

const DEFAULT_RUN_DIR: &str = "/run/qlship";

fn parse_daemon_args(args: Vec<String>) -> Result<Command, ConfigError> {
    let mut cli = Raw::default();
    let mut config_file: Option<String> = None;
    let mut positionals = Vec::new();
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        let (name, inline) = match arg.split_once('=') {
            Some((n, v)) if n.starts_with("--") => (n.to_owned(), Some(v.to_owned())),
            _ => (arg.clone(), None),
        };
        let mut value = |flag: &str| -> Result<String, ConfigError> {
            match inline.clone().or_else(|| args.next()) {
                Some(v) => Ok(v),
                None => err(format!("{flag} needs a value (see --help)")),
            }
        };
        match name.as_str() {
            "--help" => return Ok(Command::Help),
            "--version" | "-V" => return Ok(Command::Version),
            "--drain" => cli.set("DRAIN", "1".into(), name.clone()),
            "--drop-backlog" => cli.set("DROP_BACKLOG", "1".into(), name.clone()),
            "--https" => cli.set("HTTPS", "1".into(), name.clone()),
            "-v" | "--verbose" => cli.set("LOGLEVEL", "debug".into(), name.clone()),
            "--config" => config_file = Some(value("--config")?),
            flag if flag.starts_with('-') && flag.len() > 1 => {
                let Some(&(_, key)) = VALUE_FLAGS.iter().find(|(f, _)| *f == flag) else {
                    return err(format!("unknown option {flag} (see --help)"));
                };
                let v = value(flag)?;
                cli.set(key, v, flag.to_owned());
            }
            _ => positionals.push(arg),
        }
    }
    if positionals.len() > 3 {
        return err(format!(
            "too many arguments: {:?} (expected QUEUE_LOG [TOKEN [ACTIVITY_LOG]])",
            positionals[3]
        ));
    }
    for (key, value) in ["QUEUELOG", "PARTITION", "LOGFILE"].iter().zip(positionals) {
        cli.set(key, value, format!("argument {}", key.to_lowercase()));
    }

    let mut merged = Raw::default();
    let mut password_file = None;
    if let Some(path) = config_file {
        let text = std::fs::read_to_string(&path)
            .or_else(|e| err(format!("--config {path}: cannot read: {e}")))?;
        for (key, value, line) in parse_config_text(&text, &path)? {
            if key == "QMPASS" {
                password_file = Some(PathBuf::from(&path));
            }
            merged.set(key, value, format!("{path}:{line} {key}"));
        }
    }
    for (k, v, o) in cli.values {
        merged.set(k, v, o);
    }
    settings_from(&merged).map(|mut s| {
        s.password_file = password_file;
        Command::Run(Box::new(s))
    })
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

fn settings_from(raw: &Raw) -> Result<Settings, ConfigError> {
    let text = |key: &str, default: &str| raw.get(key).map_or(default, |(v, _)| v).to_owned();
    // An empty path is refused rather than taken as the working directory: it is what an
    // unexpanded `${STATE_DIRECTORY}` (systemd before 240) or an empty shell variable gives.
    let path = |key: &str, default: &str| -> Result<PathBuf, ConfigError> {
        match raw.get(key) {
            Some((v, origin)) if v.trim().is_empty() => {
                err(format!("{origin}: an empty path is not allowed"))
            }
            _ => Ok(PathBuf::from(text(key, default))),
        }
    };
    let optional_path = |key: &str| {
        raw.get(key)
            .map(|(v, _)| v)
            .filter(|v| !v.is_empty() && *v != "-")
            .map(PathBuf::from)
    };
    let number = |key: &str, default: u64| -> Result<u64, ConfigError> {
        match raw.get(key) {
            None => Ok(default),
            Some((v, origin)) => v
                .parse()
                .or_else(|_| err(format!("{origin}: {v:?} is not a whole number"))),
        }
    };
    let seconds = |key: &str, default: f64| -> Result<Duration, ConfigError> {
        match raw.get(key) {
            None => Ok(Duration::from_secs_f64(default)),
            Some((v, origin)) => match v.parse::<f64>() {
                Ok(s) if s.is_finite() && (0.0..=1e9).contains(&s) => {
                    Ok(Duration::from_secs_f64(s))
                }
                _ => err(format!("{origin}: {v:?} is not a number of seconds")),
            },
        }
    };
    let size = |key: &str, default: u64| -> Result<u64, ConfigError> {
        match raw.get(key) {
            None => Ok(default),
            Some((v, origin)) => parse_size(v).ok_or_else(|| {
                ConfigError(format!("{origin}: {v:?} is not a size (e.g. 512K, 4M)"))
            }),
        }
    };
    let flag = |key: &str| -> Result<bool, ConfigError> {
        match raw.get(key) {
            None => Ok(false),
            Some((v, origin)) => match v.to_ascii_lowercase().as_str() {
                "1" | "yes" | "true" | "on" => Ok(true),
                "0" | "no" | "false" | "off" | "" => Ok(false),
                _ => err(format!("{origin}: {v:?} is not yes/no")),
            },
        }
    };

    let port = number("HTTPPORT", 8080)?;
    let port = u16::try_from(port).ok().filter(|p| *p > 0).ok_or_else(|| {
        let origin = raw.get("HTTPPORT").map_or("HTTPPORT", |(_, o)| o);
        ConfigError(format!("{origin}: port {port} is out of range 1-65535"))
    })?;
    let ram_budget = size("RAM_BUDGET", 1 << 20)?;
    if ram_budget < 128 * 1024 {
        let origin = raw.get("RAM_BUDGET").map_or("RAM_BUDGET", |(_, o)| o);
        return err(format!("{origin}: the RAM budget must be at least 128K"));
    }
    let token = text("PARTITION", "");
    let token = if token == "-" { String::new() } else { token };
    let level = text("LOGLEVEL", "info").to_ascii_lowercase();
    let trust = match raw.get("CACERT") {
        None => Trust::SystemStore,
        Some((v, _)) if v.eq_ignore_ascii_case("insecure") => Trust::Insecure,
        Some((v, origin)) => {
            if let Err(e) = std::fs::File::open(v) {
                return err(format!("{origin}: cannot read the CA file {v}: {e}"));
            }
            Trust::CaFile(PathBuf::from(v))
        }
    };
    let log_style = match raw.get("LOGSTYLE") {
        None => crate::logging::Style::Auto,
        Some((v, origin)) => crate::logging::Style::parse(v).ok_or_else(|| {
            ConfigError(format!(
                "{origin}: {v:?} is not a log style (auto, timestamped, journal, procd)"
            ))
        })?,
    };
    let http_timeout = seconds("HTTP_TIMEOUT", 30.0)?.max(Duration::from_secs(1));
    let resync_settle = seconds("RESYNC_SETTLE", http_timeout.as_secs_f64() * 2.0)?;
    let mut s = Settings {
        host: text("HTTPHOST", "127.0.0.1"),
        port,
        context: text("HTTPCONTEXT", "queuemetrics"),
        user: text("QMUSER", "webqloader"),
        password: text("QMPASS", "qloader").into(),
        https: flag("HTTPS")?,
        trust,
        queue_log: path("QUEUELOG", "/var/log/asterisk/queue_log")?,
        token,
        activity_log: optional_path("LOGFILE"),
        pid_file: optional_path("PIDFILE"),
        state_dir: path("STATE_DIR", "/var/lib/qlship")?,
        run_dir: path("RUN_DIR", DEFAULT_RUN_DIR)?,
        ram_budget: usize::try_from(ram_budget).unwrap_or(usize::MAX),
        spool_max: size("SPOOL_MAX", 64 << 20)?,
        drain: flag("DRAIN")?,
        drop_backlog: flag("DROP_BACKLOG")?,
        heartbeat: seconds("HEARTBEAT", 900.0)?,
        feedback: seconds("FEEDBACK", 0.0)?,
        ami: crate::ami_policy::Policy::from_keys(|k| raw.get(k))
            .map_err(|e| ConfigError(e.to_string()))?,
        ami_timeout: seconds("AMI_TIMEOUT", 10.0)?.max(Duration::from_millis(100)),
        http_timeout,
        resync_settle,
        backoff_min: seconds("BACKOFF_MIN", 1.0)?.max(Duration::from_millis(10)),
        backoff_max: seconds("BACKOFF_MAX", 60.0)?,
        rotate_grace: seconds("ROTATE_GRACE", 5.0)?,
        summary_every: seconds("SUMMARY_EVERY", 3600.0)?.max(Duration::from_secs(1)),
        stall_after: seconds("STALL_AFTER", 600.0)?.max(Duration::from_secs(1)),
        verbose: level == "debug" || level == "trace",
        log_style,
        password_file: None,
        split: None,
    };
    if let Some((file, origin)) = raw.get("RULES").filter(|(v, _)| !v.is_empty()) {
        let path = PathBuf::from(file);
        let split = crate::rules::load(&path, &s.single_target())
            .map_err(|e| ConfigError(format!("{origin}: {e}")))?;
        s.split = Some((path, split));
    }
    Ok(s)
}

/// `512`, `64K`, `4M`, `1G` (binary multiples).
pub fn parse_size(v: &str) -> Option<u64> {
    let v = v.trim();
    let (digits, mult) = match v.char_indices().last()? {
        (i, 'k' | 'K') => (&v[..i], 1u64 << 10),
        (i, 'm' | 'M') => (&v[..i], 1 << 20),
        (i, 'g' | 'G') => (&v[..i], 1 << 30),
        _ => (v, 1),
    };
    digits.parse::<u64>().ok()?.checked_mul(mult)
}

#[cfg(test)]
mod tests;
