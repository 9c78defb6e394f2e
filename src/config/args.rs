//! The command line: which subcommand, then the daemon's flags and positionals merged over
//! the `--config` file (flags win) into raw values for the second stage (validate.rs).

use super::raw::{parse_config_text, Raw};
use super::usage::VALUE_FLAGS;
use super::validate::settings_from;
use super::{err, Command, ConfigError, DEFAULT_RUN_DIR};
use std::path::PathBuf;

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

pub(super) fn parse_daemon_args(args: Vec<String>) -> Result<Command, ConfigError> {
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
