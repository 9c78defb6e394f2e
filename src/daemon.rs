//! The running agent: a reader task (file → spool) and, per target, an uploader task
//! (spool → server), heartbeats and feedback actions, on one smol executor. Blocking
//! work (file reads, sled, HTTP, AMI) runs on `workers` threads; the tasks only decide
//! and wait. Targets never wait for each other: each has its own cursor in the journal,
//! its own backoff and its own tasks.
//!
//! This file holds the limits, [`Fatal`] and [`run`], which spawns the tasks; `start`
//! binds the targets to the journal before that, `shared` holds what the tasks share
//! and their wake-ups, and each task has its own file (`read`, `upload`, `heartbeat`,
//! `feedback`, `report` for the status file).

mod feedback;
mod heartbeat;
mod read;
mod report;
mod shared;
mod start;
mod upload;
mod watch;

use feedback::feedback;
use heartbeat::heartbeat;
use read::reader;
use report::report_status;
use shared::{Lead, Live, Shared, Wake};
use start::start;

use crate::backoff::Backoff;
use crate::config::Settings;
use crate::fanout::{self, Lane};
use crate::journal::{Journal, JournalError};
use crate::rules::Split;
use crate::status;
use crate::tail::{Step, Tail};
use log::{debug, error, info, warn};
use smol::channel::Receiver;
use smol::Timer;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// At most this many rows per insertAll (the protocol's safe range is 100–500).
pub const MAX_BATCH_ROWS: usize = 500;
/// Bodies stay well under Tomcat's 1 MB default.
pub const MAX_BATCH_BYTES: usize = 900 * 1024;
/// Sequence numbers past a batch that its in-flight mark also covers (see
/// `machine::upload::Config::window_rows`). A trickle of 5 rows a second, a batch about
/// every [`LINGER`], then syncs the journal about every sixth batch instead of at every
/// one (the queue_log is still fdatasynced before each). A catch-up's full batches are
/// longer than the window and mark each their own. The price: after a crash, the rows
/// spooled under a window's numbers are checked with checkRow before they go, up to
/// this many more per target than the batch in flight (an uploader idle for 2 s, or
/// stopped while waiting, gives its window up: a restart after either costs none).
pub const INFLIGHT_WINDOW_ROWS: u64 = 32;
/// A partial batch waits this long after the previous send, so a trickle of rows costs
/// fewer than one fsync per second: each batch fdatasyncs the queue_log, and about one
/// in six also syncs the journal for its in-flight window (1.1 s measured 1.07 fsyncs/s
/// at 5 rows/s; the p99 from a row's append to its acknowledgement stays under 2 s).
const LINGER: Duration = Duration::from_millis(1300);
/// After a read step on the live queue_log that found fewer than [`GATHER_BELOW_ROWS`]
/// rows (a trickle; a catch-up reads whole chunks), the reader waits this long before
/// the next: the rows Asterisk appends meanwhile go into the journal in one commit,
/// not one commit per inotify wake-up (about one per row). Each commit is a sled log
/// record and meta rewrite, CPU and bytes that reach the card at the next fsync. The
/// uploader's [`LINGER`] bounds the wait a row already has, so this adds at most half
/// a second to it (p99 append-to-acknowledged stays under 2 s).
const GATHER: Duration = Duration::from_millis(500);
const GATHER_BELOW_ROWS: usize = 64;
/// How often an idle reader looks at the file.
const POLL: Duration = Duration::from_secs(1);
/// The idle poll while inotify watches the queue_log and its directory: a safety net only
/// (an idle box should not wake every second; issue 6 asks for fewer than 2 a second).
const WATCHED_POLL: Duration = Duration::from_secs(30);
/// While the live QUEUE_LOG is read, the file is the buffer: the reader keeps only this
/// many rows spooled ahead of the most advanced uploader (sled's memory grows with the
/// spool). A target that is down does not hold the others back: its backlog grows up
/// to the spool cap. A rotated file, which may be deleted, is spooled up to the cap.
pub const READ_AHEAD_ROWS: u64 = 4 * MAX_BATCH_ROWS as u64;
/// An idle uploader sleeps until the reader wakes it; this is only a safety net.
const IDLE: Duration = Duration::from_secs(30);
/// Reading pauses while less than this is free on the journal's filesystem. sled fails
/// for good after a write error (ENOSPC included), so it must never get there; the
/// reserve leaves room for the uploader's in-flight marks and acknowledgements, which
/// free the spool.
pub const DISK_RESERVE: u64 = 2 << 20;

/// Why the daemon stopped on its own.
#[derive(Debug)]
pub enum Fatal {
    Journal(JournalError),
    QueueLog(String),
    /// Targets the rules no longer name still have rows to upload: starting would drop
    /// them (exit 2; `--drop-backlog` says to).
    Stranded(Vec<(String, u64)>),
}

impl std::fmt::Display for Fatal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Fatal::Journal(e) => write!(f, "{e}"),
            Fatal::QueueLog(e) => write!(f, "{e}"),
            Fatal::Stranded(targets) => {
                for (key, rows) in targets {
                    let who = if key.is_empty() {
                        "the single target".to_string()
                    } else {
                        format!("target {key}")
                    };
                    writeln!(
                        f,
                        "{who} is no longer configured (its URL, context or token changed, its rule is disabled or gone) but still has {rows} rows to upload;"
                    )?;
                }
                write!(
                    f,
                    "not starting: put the old target back in the rules to deliver them, or start once with --drop-backlog (DROP_BACKLOG=1) to drop them"
                )
            }
        }
    }
}

impl From<JournalError> for Fatal {
    fn from(e: JournalError) -> Self {
        Fatal::Journal(e)
    }
}

/// Logs a fatal error in the one-line form an operator reads.
pub fn report_fatal(e: &Fatal) {
    error!("{e}");
}

pub fn now_unix() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// Runs until `stop` fires (Ok) or, with `--drain`, until everything is acknowledged.
pub fn run(
    settings: Settings,
    journal: Arc<Journal>,
    stop: Receiver<()>,
    usr1: Receiver<()>,
) -> Result<(), Fatal> {
    let shared = Arc::new(start(settings, journal)?);
    let ex = smol::LocalExecutor::new();
    let (done_tx, done_rx) = smol::channel::unbounded::<Result<(), Fatal>>();
    let mut workers = 0;
    let mut spawn_worker =
        |f: std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), Fatal>>>>| {
            let tx = done_tx.clone();
            workers += 1;
            ex.spawn(async move {
                let _ = tx.send(f.await).await;
            })
            .detach();
        };
    spawn_worker(Box::pin(reader(shared.clone())));
    for l in &shared.leads {
        spawn_worker(Box::pin(upload::uploader(shared.clone(), l.clone())));
    }
    for l in &shared.leads {
        ex.spawn(heartbeat(shared.clone(), l.clone())).detach();
        ex.spawn(feedback(shared.clone(), l.clone())).detach();
    }
    ex.spawn(watch::watch_queue_log(shared.clone())).detach();
    ex.spawn(report_status(shared.clone(), usr1)).detach();
    let pulses = shared.leads.iter().map(|l| l.pulse.clone());
    let pulses = pulses.chain([shared.reader_pulse.clone()]).collect();
    let quiet = crate::health::pulse::quiet_limit(&shared.settings);
    ex.spawn(crate::health::pulse::watchdog(pulses, quiet))
        .detach();
    let work = async {
        for _ in 0..workers {
            match done_rx.recv().await {
                Ok(Err(e)) => return Err(e),
                Ok(Ok(())) => {}
                Err(_) => break,
            }
        }
        Ok(())
    };
    let stopped = async {
        let _ = stop.recv().await;
        info!("stopping on signal");
        Ok(())
    };
    // futures-lite's block_on parks the thread; async-io's (smol::block_on) would make
    // smol's reactor thread poll every few milliseconds while we idle.
    let result = smol::future::block_on(ex.run(smol::future::or(stopped, work)));
    drop(ex);
    // An uploader stopped while waiting with an in-flight window and nothing in flight:
    // every batch sent under it was acknowledged, so the mark goes (the caller's final
    // sync makes it durable); otherwise the next start would wait a settle window and
    // check rows never sent.
    for l in &shared.leads {
        if l.window_to_release.load(Ordering::SeqCst) {
            if let Err(e) = shared.journal.clear_inflight(l.slot) {
                log::warn!("{}: the in-flight mark stays: {e}", l.who());
            }
        }
    }
    // A stopped daemon leaves no status behind: `qlship status` then says so at once.
    let _ = std::fs::remove_file(status::path_in(&shared.settings.run_dir));
    result
}

fn seed() -> u64 {
    let t = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    t.as_nanos() as u64 ^ (u64::from(std::process::id()) << 32)
}

fn backoff(s: &Settings) -> Backoff {
    Backoff::new(s.backoff_min, s.backoff_max, seed())
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    crate::workers::run(f).await
}
