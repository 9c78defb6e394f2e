//! What the running daemon is doing, for a person or a monitoring check.
//!
//! The daemon writes a [`Snapshot`] as JSON to `--run-dir/status.json` every few seconds
//! (write to a fresh temporary file, then rename: a reader never sees half a file; the
//! run dir is tmpfs, so this costs no flash). `qlship status` reads it; the journal itself is
//! locked by the daemon. Pure apart from [`write`] and [`read`]: rendering and the exit
//! code are decided here from the snapshot and the current time.

use miniserde::{json, Deserialize, Serialize};
use std::path::{Path, PathBuf};

pub const FILE_NAME: &str = "status.json";
/// A snapshot older than this means the daemon is gone (or hung).
pub const STALE_AFTER_SECS: i64 = 30;
/// A target failing for longer than this is reported "down" rather than "backing off".
pub const DOWN_AFTER_SECS: i64 = 60;

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Default)]
pub struct Snapshot {
    pub version: String,
    pub pid: u32,
    pub started: i64,
    pub written: i64,
    pub queue_log: String,
    /// The file being read (QUEUE_LOG or a rotated file) and the offset in it.
    pub reading: String,
    pub offset: u64,
    /// `reading`, `waiting for the file`, `paused: spool full`, `paused: disk nearly full`.
    pub reader: String,
    pub spool_rows: u64,
    pub spool_bytes: u64,
    pub spool_max: u64,
    pub skipped_lines: u64,
    /// Rows no enabled target wanted (multi-target mode: no rule matched, or a
    /// disabled target's).
    pub unrouted_rows: u64,
    /// Rows read from queue_log files since start (every row, wanted or not).
    pub rows_read: u64,
    pub targets: Vec<TargetStatus>,
}

/// Requests to one target with one command and outcome, since start.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Default)]
pub struct RequestCount {
    /// `insertAll`, `checkRow`, …
    pub command: String,
    /// `ok`, `ko`, `http_status`, `bad_answer`, `connect_error`, `tls_error`,
    /// `transport_error`.
    pub outcome: String,
    pub count: u64,
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Default)]
pub struct TargetStatus {
    /// The rule or client name ("" in single-target mode).
    pub name: String,
    /// The endpoint without credentials.
    pub url: String,
    pub token: String,
    /// When the current run of failures began; None while the target is up.
    pub failing_since: Option<i64>,
    pub last_success: Option<i64>,
    /// The last error, with the server's text (never a password).
    pub last_error: Option<String>,
    pub last_error_at: Option<i64>,
    pub acked_total: u64,
    /// Acknowledged since 00:00 UTC (kept across restarts).
    pub acked_today: u64,
    pub acked_since_start: u64,
    pub backlog_rows: u64,
    /// queue_log time between the oldest row not yet acknowledged and the newest read.
    pub backlog_secs: i64,
    pub watermark: Option<i64>,
    pub last_heartbeat: Option<i64>,
    /// Last `checkFb` the server answered OK (feedback actions on).
    pub last_feedback: Option<i64>,
    /// Feedback containers run (or refused) since start.
    pub feedback_done: u64,
    /// Of those: answered OK, failed on the PBX, refused by qlship's policy; and
    /// containers found interrupted by a stop (reported, never run again).
    pub feedback_ok: u64,
    pub feedback_failed: u64,
    pub feedback_refused: u64,
    pub feedback_interrupted: u64,
    /// When the target last answered any request, whatever it said.
    pub last_answer: Option<i64>,
    /// Since when rows have waited without any acknowledged while the target answers,
    /// once that has lasted `--stall-after` (see `health::stall`).
    pub stalled_since: Option<i64>,
    /// Resyncs of batches whose fate was unknown, since start.
    pub resyncs: u64,
    pub requests: Vec<RequestCount>,
}

impl TargetStatus {
    /// Counts a feedback container that ran on the PBX, by its result (`feedback_done`
    /// counts it too, with the refused ones).
    pub fn feedback_ran(&mut self, ok: bool) {
        if ok {
            self.feedback_ok += 1;
        } else {
            self.feedback_failed += 1;
        }
    }

    pub fn state(&self, now: i64) -> String {
        match self.failing_since {
            None if self.last_success.is_none() && self.last_error.is_none() => "starting".into(),
            None => "up".into(),
            Some(t) if now.saturating_sub(t) >= DOWN_AFTER_SECS => {
                format!("down since {}", clock(t))
            }
            Some(_) => "backing off".into(),
        }
    }
}

/// `qlship status` exit codes, usable as a Nagios/monit check.
pub const EXIT_ALL_UP: i32 = 0;
pub const EXIT_FAILING: i32 = 1;
pub const EXIT_NOT_RUNNING: i32 = 3;

/// Whether the snapshot describes a live daemon, and the exit code it calls for.
pub fn verdict(s: &Snapshot, now: i64, pid_alive: bool) -> i32 {
    if !pid_alive || now.saturating_sub(s.written) > STALE_AFTER_SECS {
        EXIT_NOT_RUNNING
    } else if s
        .targets
        .iter()
        .any(|t| t.failing_since.is_some() || t.stalled_since.is_some())
    {
        EXIT_FAILING
    } else {
        EXIT_ALL_UP
    }
}

pub fn to_json(s: &Snapshot) -> String {
    json::to_string(s)
}

/// What `status --json` prints when no daemon runs: scripts get JSON either way (and
/// exit status 3). `last_pid` is the pid of a stale status file, if there is one.
#[derive(Serialize)]
struct NotRunning<'a> {
    running: bool,
    reason: &'a str,
    last_pid: Option<u32>,
}

pub fn not_running_json(reason: &str, last_pid: Option<u32>) -> String {
    json::to_string(&NotRunning {
        running: false,
        reason,
        last_pid,
    })
}

pub fn from_json(text: &str) -> Result<Snapshot, String> {
    json::from_str(text).map_err(|_| "status file is not a qlship status".to_string())
}

/// The human-readable report.
pub fn render(s: &Snapshot, now: i64) -> String {
    let mut out = format!(
        "qlship {} (pid {}), up {}, status written {} ago\n",
        s.version,
        s.pid,
        duration(now.saturating_sub(s.started)),
        duration(now.saturating_sub(s.written))
    );
    out.push_str(&format!(
        "reader: {}; {} at byte {}\n",
        s.reader, s.reading, s.offset
    ));
    out.push_str(&format!(
        "spool: {} rows, {} of {} bytes; {} lines skipped (not rows)\n",
        s.spool_rows, s.spool_bytes, s.spool_max, s.skipped_lines
    ));
    if s.targets.iter().any(|t| !t.name.is_empty()) {
        out.push_str(&format!(
            "split: {} rows matched no rule or a disabled target (not uploaded)\n",
            s.unrouted_rows
        ));
    }
    for t in &s.targets {
        let name = if t.name.is_empty() {
            String::new()
        } else {
            format!("{:?} ", t.name)
        };
        out.push_str(&format!(
            "target {name}{} token {:?}: {}\n",
            t.url,
            t.token,
            t.state(now)
        ));
        out.push_str(&format!(
            "  acknowledged: {} today (UTC), {} since start, {} in total; backlog {} rows ({} of queue_log time)\n",
            t.acked_today,
            t.acked_since_start,
            t.acked_total,
            t.backlog_rows,
            duration(t.backlog_secs)
        ));
        out.push_str(&format!(
            "  last success: {}; watermark: {}; last heartbeat: {}; last feedback poll: {} ({} actions since start)\n",
            ago(t.last_success, now),
            t.watermark.map_or("unknown".into(), |w| w.to_string()),
            ago(t.last_heartbeat, now),
            ago(t.last_feedback, now),
            t.feedback_done
        ));
        if let Some(since) = t.stalled_since {
            out.push_str(&format!(
                "  STALLED: {} rows waiting, none acknowledged for {} although the server answers\n",
                t.backlog_rows,
                duration(now - since)
            ));
        }
        if let Some(e) = &t.last_error {
            out.push_str(&format!(
                "  last error ({}): {e}\n",
                ago(t.last_error_at, now)
            ));
        }
    }
    out
}

fn ago(t: Option<i64>, now: i64) -> String {
    t.map_or("never".into(), |t| {
        format!("{} ago", duration(now.saturating_sub(t)))
    })
}

fn duration(secs: i64) -> String {
    duration_as(secs, ["s", "m", "h", "d"])
}

/// A span of seconds the way a person reads it, with the units' spellings given
/// (seconds, minutes, hours, days): `status` prints "3h05m", the page "3 h 05 min".
pub fn duration_as(secs: i64, [sec, min, hour, day]: [&str; 4]) -> String {
    let s = secs.max(0);
    match s {
        0..=119 => format!("{s}{sec}"),
        120..=7199 => format!("{}{min}", s / 60),
        7200..=172_799 => format!("{}{hour}{:02}{min}", s / 3600, s % 3600 / 60),
        _ => format!(
            "{}{day}{:02}{}",
            s / 86400,
            s % 86400 / 3600,
            hour.trim_end()
        ),
    }
}

/// `HH:MM:SS UTC` of a Unix time.
fn clock(t: i64) -> String {
    let d = t.rem_euclid(86400);
    format!("{:02}:{:02}:{:02} UTC", d / 3600, d % 3600 / 60, d % 60)
}

pub fn path_in(run_dir: &Path) -> PathBuf {
    run_dir.join(FILE_NAME)
}

/// Writes the snapshot atomically, never through a planted symlink (see
/// `atomic_file`). No fsync: tmpfs. It holds no secret: any local user may read it.
pub fn write(run_dir: &Path, s: &Snapshot) -> std::io::Result<()> {
    std::fs::create_dir_all(run_dir)?;
    crate::atomic_file::write_atomically(
        run_dir,
        FILE_NAME,
        to_json(s).as_bytes(),
        crate::atomic_file::PUBLIC,
    )
}

pub fn read(run_dir: &Path) -> Result<Snapshot, String> {
    let path = path_in(run_dir);
    let text = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    from_json(&text)
}

pub fn pid_alive(pid: u32) -> bool {
    // SAFETY: kill with signal 0 only checks that the process exists.
    pid > 0 && unsafe { libc::kill(pid as i32, 0) } == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snapshot() -> Snapshot {
        Snapshot {
            version: "0.1.0".into(),
            pid: 42,
            started: 1000,
            written: 2000,
            queue_log: "/var/log/asterisk/queue_log".into(),
            reading: "/var/log/asterisk/queue_log".into(),
            offset: 1234,
            reader: "reading".into(),
            spool_rows: 10,
            spool_bytes: 2000,
            spool_max: 64 << 20,
            skipped_lines: 1,
            unrouted_rows: 0,
            rows_read: 0,
            targets: vec![TargetStatus {
                url: "http://qm:8080/queuemetrics/jsonQLoaderApi.do".into(),
                token: "P001".into(),
                last_success: Some(1990),
                acked_total: 500,
                acked_since_start: 100,
                backlog_rows: 10,
                backlog_secs: 3,
                watermark: Some(1_700_000_000),
                ..Default::default()
            }],
        }
    }

    #[test]
    fn round_trips_through_json() {
        let s = snapshot();
        assert_eq!(from_json(&to_json(&s)).unwrap(), s);
        assert!(from_json("{\"x\":1}").is_err());
    }

    #[test]
    fn a_status_file_with_absurd_times_is_judged_not_rendered_into_a_panic() {
        let mut s = snapshot();
        s.written = i64::MIN;
        s.started = i64::MIN;
        s.targets[0].failing_since = Some(i64::MIN);
        assert_eq!(verdict(&s, i64::MAX, true), EXIT_NOT_RUNNING);
        assert!(render(&s, i64::MAX).contains("down since"));
    }

    #[test]
    fn verdicts() {
        let mut s = snapshot();
        assert_eq!(verdict(&s, 2005, true), EXIT_ALL_UP);
        assert_eq!(verdict(&s, 2005, false), EXIT_NOT_RUNNING);
        assert_eq!(
            verdict(&s, 2000 + STALE_AFTER_SECS + 1, true),
            EXIT_NOT_RUNNING
        );
        s.targets[0].stalled_since = Some(1000);
        assert_eq!(verdict(&s, 2005, true), EXIT_FAILING, "stalled though up");
        assert!(render(&s, 2005).contains("STALLED: 10 rows waiting, none acknowledged for 16m"));
        s.targets[0].stalled_since = None;
        s.targets[0].failing_since = Some(1995);
        assert_eq!(verdict(&s, 2005, true), EXIT_FAILING);
    }

    #[test]
    fn states_and_rendering() {
        let mut s = snapshot();
        assert_eq!(s.targets[0].state(2000), "up");
        s.targets[0].failing_since = Some(1990);
        s.targets[0].last_error = Some("HTTP 500: Internal Server Error".into());
        s.targets[0].last_error_at = Some(1999);
        assert_eq!(s.targets[0].state(2000), "backing off");
        assert_eq!(
            s.targets[0].state(1990 + DOWN_AFTER_SECS),
            "down since 00:33:10 UTC"
        );
        let text = render(&s, 2000);
        assert!(
            text.contains(
                "target http://qm:8080/queuemetrics/jsonQLoaderApi.do token \"P001\": backing off"
            ),
            "{text}"
        );
        assert!(text.contains("last error (1s ago): HTTP 500"), "{text}");
        assert!(
            text.contains("backlog 10 rows (3s of queue_log time)"),
            "{text}"
        );
    }
}
