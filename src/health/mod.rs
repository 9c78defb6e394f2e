//! Health over time, at the box and across a fleet, all from the status snapshot the
//! daemon already takes every few seconds:
//! - `--run-dir/status.html` ([`page`], [`graph`]): state, figures and 28-hour graphs
//!   from the [`history`] ring, which `--run-dir/history.bin` carries across restarts;
//! - `--run-dir/qlship.prom` ([`prom`]) for node_exporter's textfile collector, with
//!   the request and flash-wear counters of [`meter`];
//! - the [`stall`] detector (`--stall-after`): `qlship status` exits 1, one log line,
//!   `qlship_stalled` 1;
//! - systemd's notifications ([`notify`]) and a watchdog that only pets while the
//!   pipeline moves ([`pulse`]).
//!
//! [`Reporter`] is the daemon's one handle on all of it.

pub mod graph;
pub mod history;
pub mod meter;
pub mod notify;
pub mod page;
pub mod prom;
pub mod pulse;
pub mod stall;

use crate::config::Settings;
use crate::status::{self, Snapshot, TargetStatus};
use history::{History, Sample};
use log::{info, warn};
use stall::{Change, StallWatch};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;

pub const PAGE_FILE: &str = "status.html";
pub const PROM_FILE: &str = "qlship.prom";
pub const HISTORY_FILE: &str = "history.bin";

pub fn now_unix() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// A target's identity across restarts (its history and stall state follow it).
pub fn target_key(t: &TargetStatus) -> String {
    format!("{}\n{}\n{}", t.name, t.url, t.token)
}

/// Per-target state the reporter keeps between snapshots.
#[derive(Default)]
struct Tracked {
    key: String,
    stall: StallWatch,
    up_since: Option<i64>,
}

pub struct Reporter {
    run_dir: PathBuf,
    stall_after: i64,
    history: History,
    history_dirty: bool,
    tracked: Vec<Tracked>,
    status_line: String,
    /// The last snapshot, for the page left behind when qlship stops.
    last: Option<Snapshot>,
}

impl Reporter {
    /// Picks up the history an earlier run left in the run dir.
    pub fn new(s: &Settings) -> Reporter {
        let history = std::fs::read(s.run_dir.join(HISTORY_FILE))
            .ok()
            .and_then(|b| History::decode(&b))
            .unwrap_or_default();
        Reporter {
            run_dir: s.run_dir.clone(),
            stall_after: s.stall_after.as_secs().max(1) as i64,
            history,
            history_dirty: false,
            tracked: Vec::new(),
            status_line: String::new(),
            last: None,
        }
    }

    /// Takes in a fresh snapshot: adds the process counters and each target's stall
    /// state to it, records the history, logs a stall beginning or ending, and tells
    /// systemd the one-line status when it changed.
    pub fn observe(&mut self, snap: &mut Snapshot) {
        let now = snap.written;
        snap.rows_read = meter::ROWS_READ.load(Ordering::Relaxed);
        let keys: Vec<String> = snap.targets.iter().map(target_key).collect();
        self.tracked.retain(|t| keys.contains(&t.key));
        for (t, key) in snap.targets.iter_mut().zip(&keys) {
            let tracked = match self.tracked.iter().position(|x| &x.key == key) {
                Some(i) => &mut self.tracked[i],
                None => {
                    self.tracked.push(Tracked {
                        key: key.clone(),
                        ..Default::default()
                    });
                    self.tracked.last_mut().expect("just pushed")
                }
            };
            let change = tracked.stall.observe(
                now,
                self.stall_after,
                t.acked_total,
                t.backlog_rows,
                t.last_answer,
            );
            t.stalled_since = tracked.stall.stalled_since();
            let who = if t.name.is_empty() {
                "server".to_string()
            } else {
                format!("target {:?}", t.name)
            };
            match change {
                Some(Change::Began(since)) => warn!(
                    "{who}: stalled: {} rows waiting and none acknowledged for {}s although the server answers (--stall-after {}s); last error: {}",
                    t.backlog_rows,
                    now - since,
                    self.stall_after,
                    t.last_error.as_deref().unwrap_or("none")
                ),
                Some(Change::Ended) => info!("{who}: no longer stalled"),
                None => {}
            }
            let up = t.failing_since.is_none() && t.last_success.is_some();
            tracked.up_since = match (up, tracked.up_since) {
                (false, _) => None,
                (true, None) => t.last_success,
                (true, kept) => kept,
            };
        }
        let samples: Vec<Sample> = snap
            .targets
            .iter()
            .zip(&keys)
            .map(|(t, key)| Sample {
                key,
                backlog_rows: t.backlog_rows,
                lag_secs: t.backlog_secs,
                acked_total: t.acked_total,
            })
            .collect();
        self.history_dirty |= self.history.observe(now, &samples);
        let line = notify::status_line(&one_line(snap));
        if line != self.status_line {
            notify::send(&line);
            self.status_line = line;
        }
        self.last = Some(snap.clone());
    }

    /// The run dir's files for this snapshot, to be written off the executor.
    pub fn files(&mut self, snap: &Snapshot) -> Files {
        let mut items = vec![
            (status::FILE_NAME, status::to_json(snap).into_bytes()),
            (PAGE_FILE, self.page(snap, false).into_bytes()),
            (PROM_FILE, self.prom(snap).into_bytes()),
        ];
        if std::mem::take(&mut self.history_dirty) {
            items.push((HISTORY_FILE, self.history.encode()));
        }
        Files {
            run_dir: self.run_dir.clone(),
            items,
        }
    }

    fn page(&self, snap: &Snapshot, stopped: bool) -> String {
        let targets: Vec<page::PageTarget> = snap
            .targets
            .iter()
            .map(|t| {
                let key = target_key(t);
                page::PageTarget {
                    status: t,
                    series: self.history.series(&key),
                    up_since: self
                        .tracked
                        .iter()
                        .find(|x| x.key == key)
                        .and_then(|x| x.up_since),
                }
            })
            .collect();
        page::render(snap, &targets, snap.written, stopped)
    }

    fn prom(&self, snap: &Snapshot) -> String {
        prom::render(
            snap,
            &prom::Process {
                io: meter::proc_io(),
                fsyncs: meter::FSYNCS.load(Ordering::Relaxed),
            },
        )
    }
}

/// When qlship stops (the status task is dropped with the executor): the page stays,
/// saying so, with the history saved for the next start; the metrics file goes, so
/// that node_exporter reports no stale `qlship_up 1` (alert on its absence).
impl Drop for Reporter {
    fn drop(&mut self) {
        let Some(mut last) = self.last.take() else {
            return;
        };
        last.written = now_unix();
        let _ = publish(&self.run_dir, HISTORY_FILE, &self.history.encode());
        let _ = publish(&self.run_dir, PAGE_FILE, self.page(&last, true).as_bytes());
        let _ = std::fs::remove_file(self.run_dir.join(PROM_FILE));
        notify::send("STOPPING=1");
    }
}

/// Replaces a run-dir file atomically, never through a planted symlink, readable by
/// every user whatever the umask: the web server and node_exporter run as other users,
/// and a umask such as the systemd unit's 0077 would leave the files 0600. None of
/// them holds a secret (URLs are without credentials, errors without passwords).
fn publish(run_dir: &Path, name: &str, bytes: &[u8]) -> std::io::Result<()> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    crate::atomic_file::write_atomically(run_dir, name, bytes, crate::atomic_file::PUBLIC)?;
    let placed = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(run_dir.join(name))?;
    placed.set_permissions(std::fs::Permissions::from_mode(crate::atomic_file::PUBLIC))
}

/// Rendered files for the run dir.
pub struct Files {
    run_dir: PathBuf,
    items: Vec<(&'static str, Vec<u8>)>,
}

impl Files {
    /// Each file is replaced atomically (temporary file, then rename).
    pub fn write(&self) -> std::io::Result<()> {
        std::fs::create_dir_all(&self.run_dir)?;
        for (name, bytes) in &self.items {
            publish(&self.run_dir, name, bytes)?;
        }
        Ok(())
    }
}

/// The status in one line, for `systemctl status`.
fn one_line(s: &Snapshot) -> String {
    let up = s
        .targets
        .iter()
        .filter(|t| t.failing_since.is_none() && t.last_success.is_some())
        .count();
    let stalled = s
        .targets
        .iter()
        .filter(|t| t.stalled_since.is_some())
        .count();
    let backlog: u64 = s.targets.iter().map(|t| t.backlog_rows).sum();
    let acked: u64 = s.targets.iter().map(|t| t.acked_since_start).sum();
    let mut line = format!(
        "{up} of {} targets up; backlog {backlog} rows; {acked} rows acknowledged since start; reader {}",
        s.targets.len(),
        s.reader
    );
    if stalled > 0 {
        line.push_str(&format!("; {stalled} stalled"));
    }
    line
}
