//! The running agent: a reader task (file → spool) and, per target, an uploader task
//! (spool → server), heartbeats and feedback actions, on one smol executor. Blocking
//! work (file reads, sled, HTTP, AMI) runs on `workers` threads; the tasks only decide
//! and wait. Targets never wait for each other: each has its own cursor in the journal,
//! its own backoff and its own tasks.

mod feedback;
mod read;
mod upload;

use feedback::feedback;
use read::reader;

use crate::backoff::Backoff;
use crate::config::Settings;
use crate::fanout::{self, Lane};
use crate::health::pulse::Pulse;
use crate::http::Client;
use crate::journal::{FilePos, Journal, JournalError, Region};
use crate::rules::{Split, Target};
use crate::status::{self, Snapshot, TargetStatus};
use crate::tail::{fnv, id_of, mtime_ns, Step, Tail};
use log::{debug, error, info, warn};
use smol::channel::{Receiver, Sender};
use smol::Timer;
use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// At most this many rows per insertAll (the protocol's safe range is 100–500).
pub const MAX_BATCH_ROWS: usize = 500;
/// Bodies stay well under Tomcat's 1 MB default.
pub const MAX_BATCH_BYTES: usize = 900 * 1024;
/// A partial batch waits this long after the previous send, so a trickle of rows costs
/// fewer than one fsync (the in-flight mark) per second: exactly one second let the
/// batches' own processing time and the last batch push the rate just over one.
const LINGER: Duration = Duration::from_millis(1100);
/// How often an idle reader looks at the file.
const POLL: Duration = Duration::from_secs(1);
/// The idle poll while inotify watches the queue_log's directory: a safety net only
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

struct Wake {
    tx: Sender<()>,
    rx: Receiver<()>,
}

impl Wake {
    fn new() -> Wake {
        let (tx, rx) = smol::channel::bounded(1);
        Wake { tx, rx }
    }
    fn notify(&self) {
        let _ = self.tx.try_send(());
    }
    /// Sleeps until notified or until `d` has passed.
    async fn wait(&self, d: Duration) {
        smol::future::or(
            async {
                let _ = self.rx.recv().await;
            },
            async {
                Timer::after(d).await;
            },
        )
        .await;
    }
}

/// One enabled target while the daemon runs.
struct Lead {
    /// Index in the rules' target list (0 in single-target mode).
    index: usize,
    /// Journal slot (the spool masks' bit).
    slot: usize,
    target: Target,
    /// Feedback records' scope in the journal.
    fb_scope: String,
    client: Client,
    wake: Wake,
    status: Mutex<TargetStatus>,
    /// Beaten at every turn of the uploader (the systemd watchdog's evidence).
    pulse: Pulse,
}

impl Lead {
    /// How the target is named in the log: its rule name in multi-target mode.
    fn who(&self) -> String {
        if self.target.name.is_empty() {
            "server".into()
        } else {
            format!("target {:?}", self.target.name)
        }
    }

    fn status(&self) -> std::sync::MutexGuard<'_, TargetStatus> {
        self.status.lock().expect("status lock")
    }

    /// Records a success; returns whether the target had been failing.
    fn ok(&self, rows: u64) -> bool {
        let mut st = self.status();
        let was_failing = st.failing_since.take().is_some();
        st.last_success = Some(now_unix());
        st.acked_since_start += rows;
        was_failing
    }

    fn failed(&self, error: &dyn std::fmt::Display) {
        let now = now_unix();
        let mut st = self.status();
        st.failing_since.get_or_insert(now);
        st.last_error = Some(error.to_string());
        st.last_error_at = Some(now);
    }
}

struct Shared {
    settings: Settings,
    journal: Arc<Journal>,
    split: Option<Split>,
    leads: Vec<Arc<Lead>>,
    wake_reader: Wake,
    reader_done: AtomicBool,
    /// inotify reports changes in the queue_log's directory: idle polls can be rare.
    watching: AtomicBool,
    started: i64,
    live: Mutex<Live>,
    reader_pulse: Pulse,
}

/// What the reader reports for `qlship status`.
#[derive(Default)]
struct Live {
    reader: String,
    reading: String,
    offset: u64,
    /// Time of the newest row read, for the backlog in seconds.
    newest_time: Option<i64>,
}

impl Shared {
    fn idle_poll(&self, events_suffice: bool) -> Duration {
        if events_suffice && self.watching.load(Ordering::Relaxed) {
            WATCHED_POLL
        } else {
            POLL
        }
    }

    fn live(&self) -> std::sync::MutexGuard<'_, Live> {
        self.live.lock().expect("status lock")
    }

    fn set_reader(&self, state: &str) {
        let mut live = self.live();
        if live.reader != state {
            live.reader = state.to_owned();
        }
    }

    fn wake_uploaders(&self) {
        for l in &self.leads {
            l.wake.notify();
        }
    }

    /// The reader's view of each target, from the journal's meta.
    /// With several targets each has an equal share of `--spool-max`; one that is failing
    /// and whose backlog fills its share (its server down for days) stops getting rows,
    /// so that the spool never fills and pauses reading for the others. A target that
    /// answers is never cut short, however far behind (a catch-up, a burst): then the
    /// spool fills and reading pauses, and the file is the buffer.
    fn lanes(&self, meta: &crate::journal::Meta) -> Vec<Lane> {
        let share = self.settings.spool_max / self.leads.len().max(1) as u64;
        let row_bytes = meta.spool_bytes / meta.spool_rows.max(1);
        self.leads
            .iter()
            .map(|l| {
                let backlog = meta.targets[l.slot].pending_rows.saturating_mul(row_bytes);
                let failing = l.status().failing_since.is_some();
                Lane {
                    index: l.index,
                    slot: l.slot,
                    takeover: meta.targets[l.slot].takeover,
                    over_share: self.leads.len() > 1 && failing && backlog >= share,
                }
            })
            .collect()
    }
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
    let targets = settings.targets();
    let enabled: Vec<(usize, &Target, &String)> = targets
        .iter()
        .enumerate()
        .filter(|(_, (t, _))| !t.disabled)
        .map(|(i, (t, k))| (i, t, k))
        .collect();
    let keys: Vec<String> = enabled.iter().map(|(_, _, k)| (*k).clone()).collect();
    let stranded = journal.stranded(&keys);
    if !stranded.is_empty() && !settings.drop_backlog {
        return Err(Fatal::Stranded(stranded));
    }
    let (slots, dropped) = journal.bind(&keys)?;
    for (key, rows) in dropped {
        let key = if key.is_empty() {
            "the single target".to_string()
        } else {
            key
        };
        warn!("{key} is no longer configured (or is disabled): its {rows} unacknowledged rows were dropped from the spool");
    }
    let fresh = journal.meta().generation <= 1;
    if journal.meta().pos.is_none() {
        // Pin the file QUEUE_LOG names now: if it is rotated before the first read, it
        // is still found and read. A new journal also records the region an earlier
        // loader may have uploaded: the file as it is now.
        let (start, region) = match std::fs::metadata(&settings.queue_log) {
            Ok(m) => (
                Some(FilePos {
                    id: id_of(&m),
                    offset: 0,
                    fp_hash: fnv(&[]),
                    fp_len: 0,
                    skipping: false,
                    since: mtime_ns(&m),
                    live: true,
                    replay_until: 0,
                    replay_pass: 0,
                }),
                Some(Region {
                    id: id_of(&m),
                    end: m.len(),
                }),
            ),
            Err(_) => (None, None),
        };
        if fresh {
            journal.begin(start, region)?;
        } else if start.is_some() {
            journal.set_pos(start, &[])?;
            journal.sync()?;
        }
    }
    let meta = journal.meta();
    let leads: Vec<Arc<Lead>> = enabled
        .iter()
        .zip(&slots)
        .map(|((index, t, key), &slot)| {
            let client = Client::new(t, &settings);
            Arc::new(Lead {
                index: *index,
                slot,
                target: (*t).clone(),
                fb_scope: crate::journal::fb_scope(key),
                status: Mutex::new(TargetStatus {
                    name: t.name.clone(),
                    url: client.url().to_owned(),
                    token: t.token.clone(),
                    ..Default::default()
                }),
                pulse: Pulse::new(format!("uploader for {} token {:?}", client.url(), t.token)),
                client,
                wake: Wake::new(),
            })
        })
        .collect();
    let beat = if settings.heartbeat.is_zero() {
        "off".to_string()
    } else {
        format!("{}s", settings.heartbeat.as_secs())
    };
    match &settings.split {
        None => info!(
            "qlship {} starting: {} -> {} as {}, token {:?}, heartbeat {beat}, journal {} ({} rows spooled){}",
            env!("CARGO_PKG_VERSION"),
            settings.queue_log.display(),
            leads[0].client.url(),
            settings.user,
            settings.token,
            journal.dir().display(),
            meta.spool_rows,
            if settings.drain { ", draining" } else { "" },
        ),
        Some((file, split)) => {
            info!(
                "qlship {} starting: {} split by {} to {} targets ({} disabled), heartbeat {beat}, journal {} ({} rows spooled){}",
                env!("CARGO_PKG_VERSION"),
                settings.queue_log.display(),
                file.display(),
                leads.len(),
                split.targets.len() - leads.len(),
                journal.dir().display(),
                meta.spool_rows,
                if settings.drain { ", draining" } else { "" },
            );
            for l in &leads {
                info!(
                    "target {:?}: {} token {:?} as {}, time-zone offset {}s{}",
                    l.target.name,
                    l.client.url(),
                    l.target.token,
                    l.target.user,
                    l.target.tz_offset,
                    if l.target.noactions { ", no feedback actions" } else { "" }
                );
            }
        }
    }
    let split = settings.split.as_ref().map(|(_, s)| s.clone());
    let shared = Arc::new(Shared {
        journal,
        split,
        leads,
        settings,
        wake_reader: Wake::new(),
        reader_done: AtomicBool::new(false),
        watching: AtomicBool::new(false),
        started: now_unix(),
        live: Mutex::new(Live {
            reader: "starting".into(),
            ..Default::default()
        }),
        reader_pulse: Pulse::new("reader"),
    });
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
    ex.spawn(watch_directory(shared.clone())).detach();
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

// ---------------------------------------------------------------- heartbeat

/// `checkHb` every `--heartbeat` to one target, whatever its rows and the other targets
/// do; a failure is logged and the next one comes at the next interval.
async fn heartbeat(sh: Arc<Shared>, lead: Arc<Lead>) {
    let every = sh.settings.heartbeat;
    if every.is_zero() {
        return std::future::pending().await;
    }
    loop {
        Timer::after(every).await;
        let client = lead.client.clone();
        let now = now_unix();
        match blocking(move || client.check_hb(now)).await {
            Ok(()) => {
                lead.status().last_heartbeat = Some(now);
                debug!("{}: heartbeat sent", lead.who());
            }
            Err(e) => warn!(
                "{}: heartbeat failed: {e}; next in {}s",
                lead.who(),
                every.as_secs()
            ),
        }
    }
}

// ---------------------------------------------------------------- directory watch

/// Wakes the reader whenever something changes in the queue_log's directory (appends,
/// renames, creations, deletions), so that an idle qlship need not poll every second.
/// Without inotify (or without the directory yet) the reader simply keeps polling.
async fn watch_directory(sh: Arc<Shared>) {
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::io::FromRawFd;
    let dir = match sh.settings.queue_log.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_owned(),
        _ => std::path::PathBuf::from("."),
    };
    let Ok(path) = std::ffi::CString::new(dir.as_os_str().as_bytes()) else {
        return std::future::pending().await;
    };
    // SAFETY: plain syscalls; the fd is owned by the File below from here on.
    let fd = unsafe { libc::inotify_init1(libc::IN_NONBLOCK | libc::IN_CLOEXEC) };
    if fd < 0 {
        debug!(
            "inotify unavailable: polling {} every second",
            dir.display()
        );
        return std::future::pending().await;
    }
    let file = unsafe { std::fs::File::from_raw_fd(fd) };
    let mask = libc::IN_MODIFY
        | libc::IN_CLOSE_WRITE
        | libc::IN_CREATE
        | libc::IN_DELETE
        | libc::IN_MOVED_FROM
        | libc::IN_MOVED_TO
        | libc::IN_ATTRIB
        | libc::IN_DELETE_SELF
        | libc::IN_MOVE_SELF;
    if unsafe { libc::inotify_add_watch(fd, path.as_ptr(), mask) } < 0 {
        debug!("cannot watch {}: polling every second", dir.display());
        return std::future::pending().await;
    }
    let Ok(mut events) = smol::Async::new(file) else {
        return std::future::pending().await;
    };
    sh.watching.store(true, Ordering::Relaxed);
    let mut buf = [0u8; 4096];
    loop {
        use smol::io::AsyncReadExt;
        match events.read(&mut buf).await {
            Ok(n) if n > 0 && !watch_removed(&buf[..n]) => sh.wake_reader.notify(),
            _ => {
                sh.wake_reader.notify();
                // The directory went away or the queue overflowed: back to polling.
                sh.watching.store(false, Ordering::Relaxed);
                return std::future::pending().await;
            }
        }
    }
}

/// Whether a batch of inotify events says the watch itself is gone (the directory was
/// deleted or moved): nothing more will come through it.
fn watch_removed(mut events: &[u8]) -> bool {
    // struct inotify_event { int wd; uint32_t mask, cookie, len; char name[len]; }
    while events.len() >= 16 {
        let field = |i: usize| u32::from_ne_bytes(events[i..i + 4].try_into().expect("4 bytes"));
        if field(4) & (libc::IN_IGNORED | libc::IN_DELETE_SELF | libc::IN_MOVE_SELF) != 0 {
            return true;
        }
        let next = 16 + field(12) as usize;
        events = events.get(next..).unwrap_or_default();
    }
    false
}

// ---------------------------------------------------------------- status

/// How often the status file is rewritten (tmpfs: no flash wear).
const STATUS_EVERY: Duration = Duration::from_secs(5);
/// An unchanged status is rewritten this often, well inside `status::STALE_AFTER_SECS`.
const STATUS_REFRESH: Duration = Duration::from_secs(20);

/// Writes the status file every few seconds; on SIGUSR1 also logs it.
async fn report_status(sh: Arc<Shared>, usr1: Receiver<()>) {
    let mut warned = false;
    let mut summary_at = Instant::now();
    let mut acked_at_summary: Vec<u64> = vec![0; sh.leads.len()];
    let mut last: Option<Snapshot> = None;
    let mut last_write = Instant::now();
    let mut health = crate::health::Reporter::new(&sh.settings);
    loop {
        let mut snap = snapshot(&sh).await;
        health.observe(&mut snap);
        if summary_at.elapsed() >= sh.settings.summary_every {
            for (t, at_summary) in snap.targets.iter().zip(acked_at_summary.iter_mut()) {
                info!(
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
        if last.as_ref() == Some(&same) && last_write.elapsed() < STATUS_REFRESH {
            wait_or_usr1(&sh, &usr1).await;
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
                    "--run-dir {}: cannot write the status file: {e} (qlship status will not work)",
                    sh.settings.run_dir.display()
                );
                warned = true;
            }
            Err(_) => {}
        }
        wait_or_usr1(&sh, &usr1).await;
    }
}

/// Sleeps STATUS_EVERY; on SIGUSR1 meanwhile, logs the status first.
async fn wait_or_usr1(sh: &Arc<Shared>, usr1: &Receiver<()>) {
    let asked = smol::future::or(async { usr1.recv().await.is_ok() }, async {
        Timer::after(STATUS_EVERY).await;
        false
    })
    .await;
    if asked {
        info!(
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

/// Logs a fatal error in the one-line form an operator reads.
pub fn report_fatal(e: &Fatal) {
    error!("{e}");
}
