//! Command line and `--config` file, in two stages: raw values (with where they came
//! from), then validated [`Settings`]. wqloaderd's flags and sysconfig keys are accepted
//! as they are (see shared/spec/cli.md).

use crate::rules::Target;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

mod args;
mod raw;
mod usage;
mod validate;

pub use args::parse_args;
pub use raw::parse_config_text;
pub use usage::USAGE;
pub use validate::parse_size;

/// Where `qlship status` looks and the daemon writes when no RUN_DIR is given.
const DEFAULT_RUN_DIR: &str = "/run/qlship";

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
        match args::parse_daemon_args(Vec::new()) {
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

#[cfg(test)]
mod tests;
