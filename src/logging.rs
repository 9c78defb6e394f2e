//! Where log lines go, and how they are marked for whoever reads them.
//!
//! A terminal or qlship's own log file wants a timestamp on every line (simple_logger
//! writes those). A system logger stamps each line itself and wants its priority instead:
//! - journald reads a syslog prefix (`<3>` error … `<7>` debug) at the start of each line
//!   of a stream it owns, and names that stream in `JOURNAL_STREAM` (device:inode);
//! - OpenWrt's procd hands every stdout line to logd as LOG_INFO and every stderr line as
//!   LOG_ERR, and parses no prefix (a `<6>` would show up as text in `logread`): there
//!   the level picks the stream.
//!
//! Without this, every line is an error to both and carries two timestamps.

use log::{Level, LevelFilter, Log, Metadata, Record};
use std::io::Write;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Style {
    /// Journal prefixes when stderr is the stream `JOURNAL_STREAM` names, else timestamps.
    Auto,
    /// `2026-01-01T00:00:00.000Z INFO  [module] text` on stderr.
    Timestamped,
    /// `<6>INFO  [module] text` on stderr.
    Journal,
    /// `INFO  [module] text`: warnings and errors on stderr, the rest on stdout.
    Procd,
}

impl Style {
    /// The values of `--log-style` / LOGSTYLE.
    pub fn parse(text: &str) -> Option<Style> {
        match text.to_ascii_lowercase().as_str() {
            "" | "auto" => Some(Style::Auto),
            "timestamped" | "plain" => Some(Style::Timestamped),
            "journal" => Some(Style::Journal),
            "procd" => Some(Style::Procd),
            _ => None,
        }
    }
}

/// Installs the logger. `to_file`: stderr was pointed at an activity log, which keeps
/// its timestamps whatever the style says.
pub fn init(style: Style, level: LevelFilter, to_file: bool) {
    let style = match style {
        _ if to_file => Style::Timestamped,
        Style::Auto if stderr_is_journal_stream() => Style::Journal,
        Style::Auto => Style::Timestamped,
        other => other,
    };
    if style == Style::Timestamped {
        let _ = simple_logger::SimpleLogger::new()
            .with_level(level)
            .with_module_level("sled", LevelFilter::Warn)
            .with_utc_timestamps()
            .init();
        return;
    }
    if log::set_boxed_logger(Box::new(SystemLogger { style, level })).is_ok() {
        log::set_max_level(level);
    }
}

/// True when systemd connected stderr to the journal: `JOURNAL_STREAM` holds the
/// device and inode of that stream, and a redirection (`2>file`) changes them.
fn stderr_is_journal_stream() -> bool {
    let Ok(named) = std::env::var("JOURNAL_STREAM") else {
        return false;
    };
    // SAFETY: fstat fills the zeroed struct it is given; fd 2 may be closed (then -1).
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    if unsafe { libc::fstat(2, &mut st) } != 0 {
        return false;
    }
    named == format!("{}:{}", st.st_dev, st.st_ino)
}

struct SystemLogger {
    style: Style,
    level: LevelFilter,
}

impl Log for SystemLogger {
    fn enabled(&self, metadata: &Metadata) -> bool {
        // sled reports its own progress at info; only its warnings matter here.
        let limit = if metadata.target().starts_with("sled") {
            self.level.min(LevelFilter::Warn)
        } else {
            self.level
        };
        metadata.level() <= limit
    }

    fn log(&self, record: &Record) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let (to_stderr, line) = render(self.style, record);
        // One write per line, so that lines from several threads never interleave.
        let _ = if to_stderr {
            std::io::stderr().lock().write_all(line.as_bytes())
        } else {
            std::io::stdout().lock().write_all(line.as_bytes())
        };
    }

    fn flush(&self) {
        let _ = std::io::stdout().flush();
    }
}

/// The syslog priority of a level (RFC 5424 severities).
fn priority(level: Level) -> u8 {
    match level {
        Level::Error => 3,
        Level::Warn => 4,
        Level::Info => 6,
        Level::Debug | Level::Trace => 7,
    }
}

/// The line a record becomes, and whether it goes to stderr.
fn render(style: Style, record: &Record) -> (bool, String) {
    let text = format!(
        "{:<5} [{}] {}",
        record.level(),
        record.target(),
        record.args()
    );
    match style {
        Style::Procd => (record.level() <= Level::Warn, format!("{text}\n")),
        _ => {
            // journald takes each line of a message as an entry of its own: every one
            // carries the prefix, or the continuation lines would come out as info.
            let prefix = format!("<{}>", priority(record.level()));
            let mut out = String::with_capacity(text.len() + 8);
            for line in text.lines() {
                out.push_str(&prefix);
                out.push_str(line);
                out.push('\n');
            }
            (true, out)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rendered(style: Style, level: Level, text: &str) -> (bool, String) {
        render(
            style,
            &Record::builder()
                .level(level)
                .target("qlship::daemon")
                .args(format_args!("{text}"))
                .build(),
        )
    }

    #[test]
    fn journal_lines_carry_the_priority_of_their_level_on_every_line() {
        let journal = |level, text| rendered(Style::Journal, level, text);
        assert_eq!(
            journal(Level::Info, "started"),
            (true, "<6>INFO  [qlship::daemon] started\n".into())
        );
        assert_eq!(
            journal(Level::Error, "x").1,
            "<3>ERROR [qlship::daemon] x\n"
        );
        assert_eq!(journal(Level::Warn, "x").1, "<4>WARN  [qlship::daemon] x\n");
        assert_eq!(
            journal(Level::Debug, "x").1,
            "<7>DEBUG [qlship::daemon] x\n"
        );
        assert_eq!(
            journal(Level::Warn, "two\nlines").1,
            "<4>WARN  [qlship::daemon] two\n<4>lines\n"
        );
    }

    #[test]
    fn under_procd_the_level_picks_the_stream_and_no_prefix_is_written() {
        let procd = |level| rendered(Style::Procd, level, "x");
        assert_eq!(
            procd(Level::Error),
            (true, "ERROR [qlship::daemon] x\n".into())
        );
        assert!(procd(Level::Warn).0);
        assert_eq!(
            procd(Level::Info),
            (false, "INFO  [qlship::daemon] x\n".into())
        );
        assert!(!procd(Level::Debug).0);
    }

    #[test]
    fn styles_by_name() {
        assert_eq!(Style::parse("procd"), Some(Style::Procd));
        assert_eq!(Style::parse("Journal"), Some(Style::Journal));
        assert_eq!(Style::parse(""), Some(Style::Auto));
        assert_eq!(Style::parse("plain"), Some(Style::Timestamped));
        assert_eq!(Style::parse("syslog"), None);
    }
}
