//! The second stage: raw values to typed [`Settings`], with defaults, ranges and the
//! origin of a bad value in its error.

use super::raw::Raw;
use super::{err, ConfigError, Settings, Trust, DEFAULT_RUN_DIR};
use std::path::PathBuf;
use std::time::Duration;

pub(super) fn settings_from(raw: &Raw) -> Result<Settings, ConfigError> {
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
