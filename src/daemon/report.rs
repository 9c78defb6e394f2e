//! The status task: the status file under `--run-dir` every few seconds, the periodic
//! summary lines, and the status in the log on SIGUSR1.

use super::{blocking, now_unix, Shared};
use crate::status::{self, Snapshot};
use log::{info, warn};
use smol::channel::Receiver;
use smol::Timer;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The daemon's log target, as before the daemon was split into files.
const LOG: &str = "qlship::daemon";

/// How often the status file is rewritten (tmpfs: no flash wear).
const STATUS_EVERY: Duration = Duration::from_secs(5);
/// An unchanged status is rewritten this often, well inside `status::STALE_AFTER_SECS`.
const STATUS_REFRESH: Duration = Duration::from_secs(20);

/// Writes the status file every few seconds; on SIGUSR1 also logs it.
pub(super) async fn report_status(sh: Arc<Shared>, usr1: Receiver<()>) {
    let mut warned = false;
    let mut summary_at = Instant::now();
    let mut acked_at_summary: Vec<u64> = vec![0; sh.leads.len()];
    let mut last: Option<Snapshot> = None;
    let mut last_write = Instant::now();
    let mut health = crate::health::Reporter::new(&sh.settings);
    loop {
        // A change from here on is either in this snapshot or wakes the next wait.
        sh.wake_status.clear();
        let mut snap = snapshot(&sh).await;
        health.observe(&mut snap);
        if summary_at.elapsed() >= sh.settings.summary_every {
            for (t, at_summary) in snap.targets.iter().zip(acked_at_summary.iter_mut()) {
                info!(
                    target: LOG,
                    "summary: target {}{} token {:?}: {}; {} rows acknowledged in the last {}s; backlog {} rows ({}s of queue_log time)",
                    if t.name.is_empty() { String::new() } else { format!("{:?} ", t.name) },
                    t.url,
                    t.token,
                    t.state(snap.written),
                    t.acked_since_start - *at_summary,
                    summary_at.elapsed().as_secs(),
                    t.backlog_rows,
                    t.backlog_secs
                );
                *at_summary = t.acked_since_start;
            }
            summary_at = Instant::now();
        }
        // Unchanged, it is only rewritten to show the daemon is alive: an idle box then
        // wakes a worker and touches the run dir every STATUS_REFRESH, not every 5 s.
        let same = Snapshot {
            written: 0,
            ..snap.clone()
        };
        let unchanged = last.as_ref() == Some(&same);
        // At rest and unchanged, nothing moves until a task says so (`wake_status`):
        // sleep until then or until the refresh or summary is due, not 5 s at a time.
        let refresh_due = last_write.elapsed() >= STATUS_REFRESH;
        let rest_until = (unchanged && at_rest(&snap)).then(|| {
            // The next refresh: 20 s after this one when it is due now.
            let refresh = if refresh_due {
                Instant::now()
            } else {
                last_write
            } + STATUS_REFRESH;
            refresh.min(summary_at + sh.settings.summary_every)
        });
        if unchanged && !refresh_due {
            wait_or_usr1(&sh, &usr1, rest_until).await;
            continue;
        }
        last = Some(same);
        last_write = Instant::now();
        let files = health.files(&snap);
        let written = blocking(move || files.write()).await;
        match written {
            Ok(()) => warned = false,
            Err(e) if !warned => {
                warn!(
                    target: LOG,
                    "--run-dir {}: cannot write the status file: {e} (qlship status will not work)",
                    sh.settings.run_dir.display()
                );
                warned = true;
            }
            Err(_) => {}
        }
        wait_or_usr1(&sh, &usr1, rest_until).await;
    }
}

/// Whether nothing is moving: the reader idle on the live queue_log, nothing spooled,
/// every target caught up and answering. Then only the tasks that change what the
/// status shows wake the status task (rows read, the reader's state, a heartbeat, a
/// feedback poll, a rotation). Any other state keeps the 5 s looks: a backlog, a
/// failing or stalled target, a rotated file being finished.
fn at_rest(snap: &Snapshot) -> bool {
    // read.rs's state while it waits for the file to grow.
    snap.reader == "reading (idle)"
        && snap.reading == snap.queue_log
        && snap.spool_rows == 0
        && snap
            .targets
            .iter()
            .all(|t| t.backlog_rows == 0 && t.failing_since.is_none() && t.stalled_since.is_none())
}

/// Sleeps STATUS_EVERY, or at rest until `rest_until` or a task's wake-up; on SIGUSR1
/// meanwhile, logs the status first.
async fn wait_or_usr1(sh: &Arc<Shared>, usr1: &Receiver<()>, rest_until: Option<Instant>) {
    let asked = smol::future::or(async { usr1.recv().await.is_ok() }, async {
        match rest_until {
            Some(at) => {
                sh.wake_status
                    .wait(at.saturating_duration_since(Instant::now()))
                    .await
            }
            None => {
                Timer::after(STATUS_EVERY).await;
            }
        }
        false
    })
    .await;
    if asked {
        info!(
            target: LOG,
            "status:\n{}",
            status::render(&snapshot(sh).await, now_unix()).trim_end()
        );
    }
}

async fn snapshot(sh: &Arc<Shared>) -> Snapshot {
    let meta = sh.journal.meta();
    let mut targets = Vec::with_capacity(sh.leads.len());
    let newest = sh.live().newest_time;
    for lead in &sh.leads {
        let tm = &meta.targets[lead.slot];
        let oldest = if tm.pending_rows == 0 {
            None
        } else {
            let (j, slot) = (sh.journal.clone(), lead.slot);
            blocking(move || j.peek(slot, 1))
                .await
                .ok()
                .and_then(|e| e.first().map(|e| e.row.time))
        };
        let mut t = lead.status().clone();
        lead.client.meter().fill(&mut t);
        t.acked_total = tm.acked_total;
        t.acked_today = if tm.acked_day == (now_unix() / 86_400) as u64 {
            tm.acked_today
        } else {
            0
        };
        t.backlog_rows = tm.pending_rows;
        t.backlog_secs = match (oldest, newest) {
            (Some(o), Some(n)) => (n - o).max(0),
            _ => 0,
        };
        targets.push(t);
    }
    let live = sh.live();
    Snapshot {
        version: env!("CARGO_PKG_VERSION").into(),
        pid: std::process::id(),
        started: sh.started,
        written: now_unix(),
        queue_log: sh.settings.queue_log.display().to_string(),
        reading: live.reading.clone(),
        offset: live.offset,
        reader: live.reader.clone(),
        spool_rows: meta.spool_rows,
        spool_bytes: meta.spool_bytes,
        spool_max: sh.settings.spool_max,
        skipped_lines: meta.bad_lines,
        unrouted_rows: meta.unrouted,
        // Filled in by health::Reporter::observe.
        rows_read: 0,
        targets,
    }
}
