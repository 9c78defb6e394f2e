//! One simulated schedule: a queue_log that grows, the real uploader state machine
//! ([`qlship::machine::upload`]) driven against the virtual journal and server, a
//! process that crashes at any step (power-cut semantics for the journal), wall-clock
//! steps at boot, and a virtual clock that jumps to the next thing that happens.
//! Then faults stop and everything must drain within a bound, exactly once, in order.

use crate::journal::{Journal, SpoolRow, State};
use crate::rng::Rng;
use crate::server::{Faults, Server};
use qlship::machine::upload::{Action, Config, Input, Spooled, Uploader};
use qlship::protocol::Partition;
use qlship::row::Row;
use std::time::Duration;

mod check;
mod queue_log;

#[derive(Clone, Debug)]
pub struct SimEntry {
    pub seq: u64,
    pub row: SpoolRow,
}

impl Spooled for SimEntry {
    fn seq(&self) -> u64 {
        self.seq
    }
    fn row(&self) -> &Row {
        &self.row.row
    }
    fn in_doubt(&self) -> bool {
        self.row.doubt
    }
    fn before_takeover(&self) -> bool {
        self.row.takeover
    }
    fn replay(&self) -> u64 {
        self.row.replay
    }
}

/// A schedule's shape, drawn from its seed (swarm testing: each seed its own mix).
#[derive(Clone, Debug)]
pub struct Params {
    pub rows: usize,
    pub batch_rows: usize,
    /// Per-mille chance of a crash after each action of the process.
    pub crash: u32,
    pub faults: Faults,
    /// Per-mille chance that a row repeats the previous one exactly (same second).
    pub repeat: u32,
    /// Per-mille chance of a wall-clock step at each boot (a year back or a day on).
    pub clock_step: u32,
    /// Rows an earlier loader stored before this journal existed (a takeover).
    pub preloaded: Option<usize>,
    pub settle: u64,
    pub timeout: u64,
    /// Faults and crashes go on until everything is drained, which must then happen
    /// while they do (a resync that only completes once faults stop is a livelock).
    pub drain_under_faults: bool,
    /// The whole file is there at start: a catch-up, in full batches.
    pub catch_up: bool,
    /// Per-mille of crashes that are power cuts: the queue_log loses what was not
    /// written back (Asterisk never syncs it).
    pub cut: u32,
    /// Per-mille chance, per row written, that the file is rewritten with one earlier
    /// row deleted (`sed -i`, an editor).
    pub rewrite: u32,
    /// The kernel writes dirty queue_log pages back after this long (ms).
    pub writeback: u64,
}

impl Params {
    pub fn draw(rng: &mut Rng) -> Params {
        let f = |rng: &mut Rng, max: u64| rng.below(max + 1) as u32;
        let lossy = rng.chance(700);
        let faults = if lossy {
            Faults {
                ko: f(rng, 40),
                error_500: f(rng, 40),
                gateway: f(rng, 60),
                drop_before: f(rng, 40),
                drop_after: f(rng, 60),
                refused: f(rng, 40),
                slow: f(rng, 30),
                late_max: 1_500,
            }
        } else {
            Faults {
                late_max: 1_500,
                ..Faults::default()
            }
        };
        Params {
            rows: 20 + rng.below(200) as usize,
            batch_rows: 1 + rng.below(24) as usize,
            crash: if rng.chance(800) { f(rng, 60) } else { 0 },
            faults,
            repeat: if rng.chance(500) { f(rng, 300) } else { 0 },
            clock_step: if rng.chance(300) { f(rng, 500) } else { 0 },
            preloaded: rng.chance(200).then(|| rng.below(60) as usize),
            settle: 2_000,
            timeout: 1_000,
            drain_under_faults: false,
            catch_up: false,
            cut: if rng.chance(500) { f(rng, 1000) } else { 0 },
            rewrite: if rng.chance(200) { f(rng, 20) } else { 0 },
            writeback: 5_000 + rng.below(25_000),
        }
    }
}

pub struct Report {
    pub crashes: u64,
    pub requests: u64,
}

const BASE_TIME: i64 = 1_764_000_000;
const YEAR_MS: i64 = 365 * 86_400_000;
/// An uploader waiting for rows looks again after this long at the latest.
pub const IDLE: u64 = 30_000;

struct Proc {
    boot: u64,
    core: Uploader<SimEntry>,
    /// A request on the wire: when its answer arrives, and the answer.
    busy: Option<(u64, Input<SimEntry>)>,
    /// Asleep until then (None: until rows arrive or IDLE passes).
    waiting: Option<(Option<u64>, u64)>,
    drained: bool,
}

struct World {
    p: Params,
    rng: Rng,
    now: u64,
    /// Every row ever written to the queue_log, in order (its history).
    file: Vec<Row>,
    /// The queue_log as it is now: lines of `file` (a power cut or a rewrite removes
    /// some).
    disk: Vec<usize>,
    /// How many lines of `disk` are durable.
    durable: usize,
    next_writeback: u64,
    cuts: u64,
    next_write: u64,
    /// Wall clock minus the virtual clock, ms (steps at boot).
    wall_offset: i64,
    journal: Journal,
    server: Server,
    proc: Option<Proc>,
    restart_at: u64,
    /// Faults and crashes stop here; then everything must drain.
    calm_at: u64,
    crashes: u64,
    requests: u64,
    woken: bool,
    /// Rows at the head of the file that an earlier loader may have stored.
    region: usize,
}

pub fn run(seed: u64, p: Params) -> Result<Report, String> {
    let mut rng = Rng::new(seed);
    let mut w = World {
        server: Server::new(p.faults.clone()),
        journal: Journal::new(State::default()),
        p,
        rng: Rng::new(rng.next()),
        now: 0,
        file: Vec::new(),
        disk: Vec::new(),
        durable: 0,
        next_writeback: 0,
        cuts: 0,
        next_write: 0,
        wall_offset: 0,
        proc: None,
        restart_at: 0,
        calm_at: 0,
        crashes: 0,
        requests: 0,
        woken: false,
        region: 0,
    };
    w.prepare_takeover();
    // Rows arrive over about a minute; faults last until a while after the last one.
    w.calm_at = if w.p.drain_under_faults {
        3_600_000
    } else {
        90_000
    };
    // Faults stop at calm_at; the slowest legitimate path after that is a backoff at
    // its cap, a settle window and every row in batches of one: minutes, not ten.
    let bound = w.calm_at + 600_000;
    loop {
        if w.calm() {
            w.server.faults = Faults::default();
        }
        w.server.tick(w.now);
        if let Some(v) = w.server.violation.take() {
            return Err(format!("at {} ms: {v}", w.now));
        }
        w.write_rows();
        w.write_back();
        if w.proc.is_none() && w.now >= w.restart_at {
            w.boot();
        }
        if w.proc.is_some() {
            w.read();
            w.upload()?;
        }
        if w.proc.as_ref().is_some_and(|p| p.drained) {
            if w.p.drain_under_faults && w.calm() {
                return Err(format!(
                    "drained only once the faults stopped ({} ms, {} requests, {} stored)",
                    w.now,
                    w.requests,
                    w.server.stored.len()
                ));
            }
            return w.check().map(|()| Report {
                crashes: w.crashes,
                requests: w.requests,
            });
        }
        let next = w.next_event();
        if next > bound {
            return Err(format!(
                "not drained {} s after faults stopped: {} of {} rows stored, {} spooled, reader at {}, journal in flight {:?}",
                (bound - w.calm_at) / 1000,
                w.server.stored.len(),
                w.file.len(),
                w.journal.now.spool.len(),
                w.journal.now.pos,
                w.journal.now.inflight
            ));
        }
        w.now = next;
    }
}

impl World {
    fn calm(&self) -> bool {
        self.now >= self.calm_at
    }

    fn boot(&mut self) {
        if self.rng.chance(self.p.clock_step) {
            // A Pi without an RTC boots a year in the past; NTP may fix it later.
            self.wall_offset += if self.rng.chance(500) {
                -YEAR_MS
            } else {
                86_400_000
            };
        }
        let seed = self.rng.next();
        if self.journal.boot(&mut self.rng) {
            trace(self.now, "journal damaged: moved aside and salvaged");
        }
        self.journal.open();
        let core = uploader(self.p.batch_rows, self.p.settle, seed, &self.journal.now);
        self.proc = Some(Proc {
            boot: self.now,
            core,
            busy: None,
            waiting: None,
            drained: false,
        });
    }

    /// The process dies here; the disk keeps the synced journal and a prefix of the rest.
    fn crash(&mut self) {
        self.crashes += 1;
        if self.rng.chance(self.p.cut) {
            self.cuts += 1;
            trace(
                self.now,
                &format!(
                    "power cut: queue_log {} -> {} rows",
                    self.disk.len(),
                    self.durable
                ),
            );
            self.disk.truncate(self.durable);
        } else {
            trace(self.now, "crash");
        }
        let kept = self.rng.below(self.journal.unsynced() as u64 + 1) as usize;
        self.journal.crash(kept);
        self.proc = None;
        self.restart_at = self.now + 1 + self.rng.below(3_000);
    }

    fn maybe_crash(&mut self) -> bool {
        if !self.calm() && self.rng.chance(self.p.crash) {
            self.crash();
            return true;
        }
        false
    }

    fn upload(&mut self) -> Result<(), String> {
        let written = self.file.len() == self.p.rows + self.region;
        if (self.calm() || self.p.drain_under_faults) && written && self.caught_up() {
            if let Some(p) = self.proc.as_mut() {
                p.core.set_reader_done();
            }
        }
        loop {
            let now = self.now;
            let woken = std::mem::take(&mut self.woken);
            let Some(p) = self.proc.as_mut() else {
                return Ok(());
            };
            let t = now - p.boot;
            if let Some((done_at, _)) = &p.busy {
                if now < *done_at {
                    return Ok(());
                }
                let (_, input) = p.busy.take().expect("busy");
                p.core.handle(t, input);
                continue;
            }
            if let Some(waiting) = p.waiting {
                if !due(waiting, now, woken) {
                    return Ok(());
                }
                p.waiting = None;
            }
            if p.drained {
                return Ok(());
            }
            let action = p.core.poll(t);
            trace(now, &describe(&action));
            let boot = p.boot;
            let input = match action {
                Action::Wait { until } => {
                    p.waiting = Some((until.map(|u| u + boot), now));
                    // The idle sync (`daemon::upload`, SYNC_WHEN_IDLE) at some idle
                    // waits (no draw from the world's generator: seeds replay as
                    // before); an idle uploader's window goes in it.
                    if until.is_none() && t.is_multiple_of(3) {
                        if p.core.release_window() {
                            trace(now, "idle: the window's mark goes");
                            self.journal.clear_inflight();
                        }
                        // `Journal::sync` fdatasyncs the queue_log first (`sync_source`).
                        self.durable = self.disk.len();
                        self.journal.sync();
                    }
                    return Ok(());
                }
                Action::Drained => {
                    p.drained = true;
                    return Ok(());
                }
                Action::Peek { max } => {
                    let rows = wrap(self.journal.peek(max));
                    let show = rows.iter().map(|e| (e.row.line, e.row.doubt, e.row.replay));
                    trace(
                        now,
                        &format!(
                            "  peeked (line, doubt, replayed) {:?}",
                            show.collect::<Vec<_>>()
                        ),
                    );
                    Input::Spool(rows)
                }
                Action::Range { from, to } => Input::Spool(wrap(self.journal.range(from, to))),
                Action::Ring => Input::Ring(self.journal.now.ring.clone()),
                Action::RecordTakeover(w) => {
                    self.sync_source();
                    self.journal.set_takeover(w);
                    Input::Done
                }
                Action::MarkInflight { from, to } => {
                    self.sync_source();
                    self.journal.mark_inflight(from, to);
                    Input::Done
                }
                Action::ClearInflight => {
                    self.journal.clear_inflight();
                    Input::Done
                }
                Action::Settle {
                    stored,
                    to_send,
                    found,
                    inflight,
                } => {
                    let seqs = |v: Vec<SimEntry>| v.into_iter().map(|e| e.seq).collect();
                    self.journal
                        .settle(seqs(stored), seqs(to_send), found, inflight);
                    Input::Done
                }
                Action::CheckHwm | Action::CheckRow(_) | Action::Send { .. } => {
                    self.requests += 1;
                    let (after, input) = self.request(action);
                    // The process may die with the request on the wire.
                    if !self.calm() && self.rng.chance(self.p.crash) {
                        self.now += self.rng.below(after);
                        self.crash();
                        self.now = now;
                        return Ok(());
                    }
                    let p = self.proc.as_mut().expect("up");
                    p.busy = Some((now + after, input));
                    return Ok(());
                }
            };
            let p = self.proc.as_mut().expect("up");
            p.core.handle(t, input);
            if self.maybe_crash() {
                return Ok(());
            }
        }
    }

    fn request(&mut self, action: Action<SimEntry>) -> (u64, Input<SimEntry>) {
        let batch: Vec<(Row, usize)> = match &action {
            &Action::Send { from, to, .. } => {
                // `daemon::upload` fdatasyncs the queue_log before every insertAll.
                self.sync_source();
                // Whatever a power cut leaves of the journal, it must say these may
                // have been sent.
                assert!(
                    self.journal.marked_in_any_crash(from, to),
                    "{from}..={to} sent without a durable mark covering it"
                );
                let rows = self.journal.range(from, to).into_iter();
                rows.map(|(_, r)| (r.row, r.line)).collect()
            }
            _ => Vec::new(),
        };
        let (now, timeout) = (self.now, self.p.timeout);
        self.server
            .serve(&mut self.rng, now, action, batch, timeout)
    }

    fn next_event(&self) -> u64 {
        let mut next = u64::MAX;
        if self.file.len() < self.p.rows + self.region {
            next = next.min(self.next_write);
        }
        next = next.min(self.next_writeback);
        if let Some(at) = self.server.next_late() {
            next = next.min(at);
        }
        match &self.proc {
            None => next = next.min(self.restart_at),
            Some(p) => {
                if !self.caught_up() && self.journal.now.spool.len() < 400 {
                    next = next.min(self.now + 1);
                }
                next = next.min(wakes_at(&p.busy, p.waiting));
            }
        }
        if !self.calm() {
            next = next.min(self.calm_at);
        }
        next.max(self.now + 1)
    }
}

/// A new uploader for a target whose journal holds `st`, as the simulated worlds start
/// one at each boot: small batches, a short linger, backoff from 100 ms to 5 s.
pub fn uploader(batch_rows: usize, settle: u64, seed: u64, st: &State) -> Uploader<SimEntry> {
    let cfg = Config {
        batch_rows,
        batch_bytes: 64 * 1024,
        linger: 300,
        // Per boot: a mark per batch, or windows smaller and larger than a batch.
        window_rows: [0, 2, 7, 32][(seed % 4) as usize],
        settle,
        backoff_min: Duration::from_millis(100),
        backoff_max: Duration::from_millis(5_000),
        seed,
    };
    let partition = Partition {
        token: String::new(),
        tz_offset: 0,
    };
    Uploader::new(cfg, partition, st.takeover, st.inflight, 0)
}

/// Whether an uploader asleep since `since` until `until` (None: until rows arrive,
/// `woken`, or IDLE passes) is due at `now`.
pub fn due((until, since): (Option<u64>, u64), now: u64, woken: bool) -> bool {
    match until {
        Some(until) => now >= until,
        None => woken || now >= since + IDLE,
    }
}

/// When an uploader has something to do next: its request's answer arrives, or its
/// sleep ends (at the latest IDLE after it began).
pub fn wakes_at<I>(busy: &Option<(u64, I)>, waiting: Option<(Option<u64>, u64)>) -> u64 {
    let answer = busy.as_ref().map_or(u64::MAX, |(at, _)| *at);
    let sleep = match waiting {
        Some((Some(until), _)) => until,
        Some((None, since)) => since + IDLE,
        None => u64::MAX,
    };
    answer.min(sleep)
}

pub fn wrap(rows: Vec<(u64, SpoolRow)>) -> Vec<SimEntry> {
    rows.into_iter()
        .map(|(seq, row)| SimEntry { seq, row })
        .collect()
}

/// One line per action for `QLSHIP_SIM_TRACE`.
pub fn describe(a: &Action<SimEntry>) -> String {
    match a {
        Action::Send { rows, .. } => format!("insertAll of {rows} rows"),
        Action::Settle {
            stored, to_send, ..
        } => {
            let lines = |v: &[SimEntry]| v.iter().map(|e| e.row.line).collect::<Vec<_>>();
            format!(
                "settle: lines {:?} stored, {:?} to send",
                lines(stored),
                lines(to_send)
            )
        }
        Action::CheckRow(r) => format!("checkRow {} {}", r.time, r.call_id()),
        other => format!("{other:?}"),
    }
}

pub fn trace(now: u64, what: &str) {
    if std::env::var_os("QLSHIP_SIM_TRACE").is_some() {
        eprintln!("{now} ms: {what}");
    }
}
