//! Split mode in the simulator (issue 15, case 7): one queue_log shipped to two or three
//! QueueMetrics targets, each its own virtual server and its own real uploader state
//! machine, rows routed by the real rules (`rules::Split`, `fanout::plan`; some rows
//! for everyone), one journal with a share of the spool per target decided by the real
//! `machine::shares`. A tenant's server can be down for long stretches; the process
//! crashes (power-cut semantics for the journal); at restarts the operator edits a
//! target (a new host, a disabled rule), sometimes while it has a backlog, and the real
//! `machine::bind` says whether qlship starts, refuses, or drops with `--drop-backlog`.
//!
//! What must hold (`tenants/check.rs` and the checks on the way):
//! - every row kept for a partition is on its server exactly once, in file order,
//!   unless the operator dropped it with `--drop-backlog` (counted);
//! - rows not kept for a partition are exactly those the reader announced as not kept,
//!   only for a tenant that fails and holds a full share, never one that answers;
//! - reading waits only for a tenant that answers and is a full share behind: a dead
//!   tenant never pauses the others;
//! - a refused start names every target with a backlog and drops nothing;
//! - once faults stop, everything kept drains within a bound.

use crate::rng::Rng;
use crate::server::{Faults, Server};
use crate::world::{trace, wakes_at, SimEntry};
use journal::{Journal, Key};
use qlship::machine::shares::Shares;
use qlship::machine::upload::{Input, Uploader};
use qlship::row::Row;
use qlship::rules::{How, Matcher, Rule, Split, Target};
use std::collections::{BTreeMap, BTreeSet, HashMap};

mod check;
mod drive;
mod journal;
mod operator;
mod read;

#[derive(Clone, Debug)]
pub struct Params {
    pub tenants: usize,
    pub rows: usize,
    pub batch_rows: usize,
    /// Per-mille chance of a crash after each action of the process.
    pub crash: u32,
    /// Every server's faults while it is up.
    pub faults: Faults,
    /// Per-mille of rows for everyone (queue and agent `NONE`).
    pub everyone: u32,
    /// A tenant whose server is down (refuses or drops every request) from..until, ms.
    pub dead: Option<(usize, u64, u64)>,
    /// Each target's share of `--spool-max`, in rows of the mean size.
    pub share_rows: u64,
    /// Per-mille chance, at each restart before faults stop, that the operator edits a
    /// target (a new host, or its rule disabled or enabled again).
    pub edit: u32,
    /// Per-mille chance that the operator answers a refusal with `--drop-backlog`
    /// (else the target is put back as it was).
    pub drop: u32,
    pub settle: u64,
    pub timeout: u64,
}

impl Params {
    pub fn draw(rng: &mut Rng) -> Params {
        let f = |rng: &mut Rng, max: u64| rng.below(max + 1) as u32;
        let faults = Faults {
            ko: f(rng, 30),
            error_500: f(rng, 30),
            gateway: f(rng, 40),
            drop_before: f(rng, 30),
            drop_after: f(rng, 40),
            refused: f(rng, 30),
            slow: f(rng, 20),
            late_max: 1_500,
        };
        let tenants = 2 + rng.below(2) as usize;
        let dead = rng.chance(700).then(|| {
            let from = rng.below(40_000);
            (
                rng.below(tenants as u64) as usize,
                from,
                from + rng.below(CALM),
            )
        });
        Params {
            tenants,
            rows: 60 + rng.below(240) as usize,
            batch_rows: 1 + rng.below(24) as usize,
            crash: if rng.chance(700) { f(rng, 40) } else { 0 },
            faults: if rng.chance(700) {
                faults
            } else {
                Faults::default()
            },
            everyone: f(rng, 300),
            dead,
            share_rows: 10 + rng.below(60),
            edit: if rng.chance(500) { f(rng, 400) } else { 0 },
            drop: f(rng, 1000),
            settle: 2_000,
            timeout: 1_000,
        }
    }
}

#[derive(Default)]
pub struct Report {
    pub crashes: u64,
    pub requests: u64,
    pub refusals: u64,
    /// Backlogs dropped with `--drop-backlog`.
    pub drops: u64,
    /// Rows not kept for a tenant over its share.
    pub not_kept: u64,
    pub pauses: u64,
    /// The reader had read the whole file before faults stopped.
    pub read_before_calm: bool,
}

const BASE_TIME: i64 = 1_764_000_000;
/// Faults, deaths and edits stop here; then everything must drain.
pub const CALM: u64 = 90_000;
/// The mean bytes of a spooled row (each row's size is drawn around it).
const ROW_BYTES: u64 = 100;

/// One target's uploader while the process runs.
struct Tenant {
    core: Uploader<SimEntry>,
    /// A request on the wire: when its answer arrives, and the answer.
    busy: Option<(u64, Input<SimEntry>)>,
    /// Asleep until then (None: until rows arrive or IDLE passes).
    waiting: Option<(Option<u64>, u64)>,
    drained: bool,
    /// Its last request failed (`daemon::upload` keeps this in the target's status).
    failing: bool,
    woken: bool,
}

struct Proc {
    boot: u64,
    shares: Shares,
    /// Per tenant, None while its target is disabled.
    tenants: Vec<Option<Tenant>>,
    /// The enabled tenants, in the order the shares and the lanes know them.
    enabled: Vec<usize>,
    /// Per enabled tenant: rows not kept since it went over its share (what the
    /// announcement that it is back under must say).
    shed_since: Vec<u64>,
    paused: bool,
}

/// How the operator has configured a tenant's target.
#[derive(Clone, Copy, Debug)]
struct Conf {
    version: usize,
    disabled: bool,
}

pub struct World {
    p: Params,
    rng: Rng,
    now: u64,
    /// Every row written to the queue_log, in order, and its size in the spool.
    file: Vec<Row>,
    bytes: Vec<u64>,
    next_write: u64,
    journal: Journal,
    /// One server per partition: a tenant's target as of one edit.
    servers: BTreeMap<Key, Server>,
    config: Vec<Conf>,
    /// The operator said `--drop-backlog` for the next start.
    drop_backlog: bool,
    proc: Option<Proc>,
    restart_at: u64,
    /// Per line read (durably, as far as the journal knows): each partition it was
    /// routed to, and whether it was kept for it.
    reads: BTreeMap<usize, Vec<(Key, bool)>>,
    /// Per partition, every line ever kept for it, reads a crash took back included:
    /// a row sent under an in-flight window may be read again after a power cut, and
    /// routed elsewhere then if the operator edited its target meanwhile.
    ever_kept: HashMap<Key, BTreeSet<usize>>,
    /// Lines dropped from a partition's backlog with the operator's `--drop-backlog`.
    dropped: HashMap<Key, Vec<usize>>,
    report: Report,
}

pub fn run(seed: u64, p: Params) -> Result<Report, String> {
    let config = vec![
        Conf {
            version: 0,
            disabled: false
        };
        p.tenants
    ];
    let keys = (0..p.tenants).map(|t| Some((t, 0))).collect();
    let mut w = World {
        rng: Rng::new(seed),
        now: 0,
        file: Vec::new(),
        bytes: Vec::new(),
        next_write: 0,
        journal: Journal::new(keys),
        servers: BTreeMap::new(),
        config,
        drop_backlog: false,
        proc: None,
        restart_at: 0,
        reads: BTreeMap::new(),
        ever_kept: HashMap::new(),
        dropped: HashMap::new(),
        report: Report::default(),
        p,
    };
    for t in 0..w.p.tenants {
        w.server_for((t, 0));
    }
    let bound = CALM + 600_000;
    loop {
        w.set_faults();
        for s in w.servers.values_mut() {
            s.tick(w.now);
            if let Some(v) = s.violation.take() {
                return Err(format!("at {} ms: {v}", w.now));
            }
        }
        w.write_rows();
        if w.proc.is_none() && w.now >= w.restart_at {
            w.boot()?;
        }
        if w.proc.is_some() {
            w.read()?;
        }
        if !w.calm() && w.file.len() == w.p.rows && w.journal.now.pos == w.p.rows {
            w.report.read_before_calm = true;
        }
        for t in 0..w.p.tenants {
            w.upload(t);
        }
        if w.all_drained() {
            w.check()?;
            return Ok(w.report);
        }
        let next = w.next_event();
        if next > bound {
            return Err(format!(
                "not drained {} s after faults stopped: reader at {} of {}, backlogs {:?}",
                (bound - CALM) / 1000,
                w.journal.now.pos,
                w.file.len(),
                w.journal
                    .now
                    .slots
                    .iter()
                    .map(|s| s.st.spool.len())
                    .collect::<Vec<_>>()
            ));
        }
        w.now = next;
    }
}

impl World {
    fn calm(&self) -> bool {
        self.now >= CALM
    }

    fn target(&self, (tenant, version): Key) -> Target {
        Target {
            name: format!("tenant {tenant}"),
            host: format!("qm{tenant}-v{version}"),
            port: 8080,
            token: format!("t{tenant}"),
            disabled: self.config[tenant].disabled,
            ..Target::default()
        }
    }

    /// The rules as configured now: queues `t<N>-…` go to tenant N.
    fn split(&self) -> Split {
        let targets = (0..self.p.tenants)
            .map(|t| self.target((t, self.config[t].version)))
            .collect();
        let rule = |t: usize| Rule {
            name: format!("tenant {t}"),
            target: t,
            queue: Some(Matcher {
                how: How::Prefix,
                tokens: vec![format!("t{t}-")],
            }),
            agent: None,
            strip: false,
            line: 1 + t,
        };
        let rules = (0..self.p.tenants).map(rule).collect();
        Split { targets, rules }
    }

    /// The partition key of a tenant's target as configured now.
    fn configured(&self, t: usize) -> Option<Key> {
        (!self.config[t].disabled).then_some((t, self.config[t].version))
    }

    fn key_name(&self, key: Key) -> String {
        self.target(key).key()
    }

    /// A partition's server; a new one counts the rows already written as its source.
    fn server_for(&mut self, key: Key) -> &mut Server {
        if !self.servers.contains_key(&key) {
            let mut s = Server::new(self.p.faults.clone());
            for row in &self.file {
                if routed_to(row, key.0) {
                    *s.source_counts.entry(row.identity()).or_default() += 1;
                }
            }
            self.servers.insert(key, s);
        }
        self.servers.get_mut(&key).expect("just made")
    }

    fn set_faults(&mut self) {
        let (calm, now, dead) = (self.calm(), self.now, self.p.dead);
        for (&(tenant, _), s) in self.servers.iter_mut() {
            s.faults = if calm {
                Faults::default()
            } else if dead
                .is_some_and(|(t, from, until)| t == tenant && (from..until).contains(&now))
            {
                Faults {
                    refused: 500,
                    drop_before: 500,
                    late_max: 1_500,
                    ..Faults::default()
                }
            } else {
                self.p.faults.clone()
            };
        }
    }

    fn write_rows(&mut self) {
        while self.file.len() < self.p.rows && self.next_write <= self.now {
            let line = self.file.len();
            let (queue, agent) = if self.rng.chance(self.p.everyone) {
                ("NONE".to_string(), "NONE".to_string())
            } else if self.rng.chance(50) {
                ("zzz-nobody".to_string(), "Agent/9".to_string())
            } else {
                let t = self.rng.below(self.p.tenants as u64);
                (format!("t{t}-sales"), format!("Agent/10{t}"))
            };
            let row = Row::new(
                BASE_TIME + (self.now / 1000) as i64,
                &format!("call-{line}"),
                &queue,
                &agent,
                "CONNECT",
                [""; 5],
            );
            for (&(tenant, _), s) in self.servers.iter_mut() {
                if routed_to(&row, tenant) {
                    *s.source_counts.entry(row.identity()).or_default() += 1;
                }
            }
            self.file.push(row);
            self.bytes.push(ROW_BYTES / 2 + self.rng.below(ROW_BYTES));
            self.next_write = self.now
                + if self.rng.chance(100) {
                    self.rng.below(5_000)
                } else {
                    self.rng.below(300)
                };
        }
    }

    /// The process dies here; the journal keeps what was synced and a prefix of the rest.
    fn crash(&mut self) {
        self.report.crashes += 1;
        trace(self.now, "crash");
        let kept = self.rng.below(self.journal.unsynced() as u64 + 1) as usize;
        self.journal.crash(kept);
        // Lines read after what the journal kept are read again at the restart.
        self.reads.split_off(&self.journal.now.pos);
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

    fn all_drained(&self) -> bool {
        let Some(p) = &self.proc else {
            return false;
        };
        self.file.len() == self.p.rows
            && self.journal.now.pos == self.file.len()
            && p.tenants.iter().flatten().all(|t| t.drained)
    }

    fn next_event(&self) -> u64 {
        let mut next = u64::MAX;
        if self.file.len() < self.p.rows {
            next = next.min(self.next_write);
        }
        for s in self.servers.values() {
            if let Some(at) = s.next_late() {
                next = next.min(at);
            }
        }
        match &self.proc {
            None => next = next.min(self.restart_at),
            Some(p) => {
                if self.journal.now.pos < self.file.len() && !p.paused {
                    next = next.min(self.now + 1);
                }
                for t in p.tenants.iter().flatten() {
                    next = next.min(wakes_at(&t.busy, t.waiting));
                }
            }
        }
        if !self.calm() {
            next = next.min(CALM);
        }
        next.max(self.now + 1)
    }
}

/// Whether the rules send `row` to `tenant` when its target is enabled (the source
/// its servers count copies against).
fn routed_to(row: &Row, tenant: usize) -> bool {
    let everyone = row.queue() == "NONE" && row.agent() == "NONE";
    everyone || row.queue().starts_with(&format!("t{tenant}-"))
}
