//! A virtual journal with the real one's semantics for one target, and a disk under it
//! that loses whatever was not synced when the process dies: sled writes its log in
//! order, so what survives is the synced state plus some prefix of the later commits.

use crate::rng::Rng;
use qlship::resync::{self, AckedRing};
use qlship::row::Row;
use std::cell::Cell;
use std::collections::BTreeMap;

thread_local! {
    /// Per-mille chance that a boot finds the journal damaged and salvages it (set by
    /// `case8_salvage`; thread-local so that the world's parameters, and with them the
    /// sweep's schedules and the mutation figures measured on it, stay as they are).
    pub static DAMAGE: Cell<u32> = const { Cell::new(0) };
}

#[derive(Clone, Debug)]
pub struct SpoolRow {
    pub row: Row,
    /// Index of the row in the source file (for the checker, not the core).
    pub line: usize,
    pub doubt: bool,
    pub takeover: bool,
    /// The replay pass that read it again (0: none).
    pub replay: u64,
}

#[derive(Clone, Debug, Default)]
pub struct State {
    /// Rows of the queue_log read so far.
    pub pos: usize,
    /// The fingerprint: the source line of the row just before `pos`.
    pub fp: Option<usize>,
    /// Rows before this index are read again, in doubt (`FilePos::replay_until`).
    pub replay_until: usize,
    /// The latest replay pass (`FilePos::replay_pass`).
    pub replay_pass: u64,
    pub next_seq: u64,
    pub spool: BTreeMap<u64, SpoolRow>,
    pub inflight: Option<(u64, u64)>,
    /// Rows spooled under a lower number are in doubt (`TargetMeta::reread_doubt_below`).
    pub reread_doubt_below: u64,
    /// None until the takeover is recorded.
    pub takeover: Option<Option<i64>>,
    pub ring: AckedRing,
}

/// One commit (`tests/sim/tenants/journal.rs` logs them per target).
#[derive(Clone, Debug)]
pub enum Op {
    /// Rows spooled under their sequence numbers; the next row read takes `next_seq`.
    Append {
        rows: Vec<(u64, SpoolRow)>,
        next_seq: u64,
        pos: usize,
        fp: Option<usize>,
        replay_until: usize,
        replay_pass: u64,
    },
    Takeover(Option<i64>),
    Inflight(Option<(u64, u64)>),
    Settle {
        stored: Vec<u64>,
        to_send: Vec<u64>,
        found: bool,
        inflight: Option<(u64, u64)>,
    },
    /// What `Journal::open` does with an in-flight mark: spooled rows it covers are in
    /// doubt (`Journal::doubt_what_may_have_left`), and so are rows spooled later under
    /// the numbers it covers (the bound is raised in memory and carried by the next
    /// commit, every real commit writing the whole meta).
    Opened {
        reread_doubt_below: u64,
    },
}

pub struct Journal {
    synced: State,
    /// The state made durable by the sync before the last one: what a journal that
    /// lost commits it had made durable comes back as (the seal catches it).
    older: State,
    /// Commits since the last sync, oldest first.
    unsynced: Vec<Op>,
    pub now: State,
}

impl Journal {
    pub fn new(initial: State) -> Self {
        Journal {
            older: initial.clone(),
            synced: initial.clone(),
            unsynced: Vec::new(),
            now: initial,
        }
    }

    fn commit(&mut self, op: Op) {
        apply(&mut self.now, &op);
        self.unsynced.push(op);
    }

    pub fn sync(&mut self) {
        self.older = std::mem::replace(&mut self.synced, self.now.clone());
        self.unsynced.clear();
    }

    /// The process died: `kept` of the unsynced commits reached the disk.
    pub fn crash(&mut self, kept: usize) {
        let mut state = self.synced.clone();
        for op in self.unsynced.iter().take(kept) {
            apply(&mut state, op);
        }
        self.synced = state.clone();
        self.now = state;
        self.unsynced.clear();
    }

    /// At boot: with the chance [`DAMAGE`] gives, the journal is found damaged, moved
    /// aside and salvaged into a new one as `src/journal/salvage.rs` does. A journal at
    /// its seal comes back as it was (position, takeover, in-flight mark, ring, each
    /// row's marks). Half the time it had also lost its last durable commits (the seal
    /// tells): then it comes back as of the sync before, every spooled row in doubt
    /// without its takeover mark, in its own pass, and the rows read from the position
    /// on in doubt too, in the pass of the rows just before it (`StalePasses`).
    /// Returns whether it happened.
    pub fn boot(&mut self, rng: &mut Rng) -> bool {
        let damage = DAMAGE.with(Cell::get);
        if damage == 0 || !rng.chance(damage) {
            return false;
        }
        if rng.chance(500) {
            let mut st = self.older.clone();
            for r in st.spool.values_mut() {
                r.doubt = true;
                r.takeover = false;
            }
            st.replay_pass = salvaged_pass(&st);
            st.replay_until = usize::MAX;
            // As `journal::salvage` does: a mark the first start waits a settle window
            // on, for a batch the lost commits may have sent.
            if st.inflight.is_none() {
                let first = st.spool.keys().next().copied().unwrap_or(st.next_seq);
                st.inflight = Some((first, first));
            }
            self.synced = st.clone();
            self.now = st;
            self.unsynced.clear();
        }
        true
    }

    pub fn unsynced(&self) -> usize {
        self.unsynced.len()
    }

    /// Opening the journal at a start: the end of an in-flight mark found raises the
    /// bound of rows read again in doubt, as `journal::open` does.
    pub fn open(&mut self) {
        if let Some(op) = opened(&self.now) {
            self.commit(op);
        }
    }

    /// Every row read takes a sequence number; those no target keeps (None) are not
    /// spooled. A row spooled under a number below the bound is in doubt.
    pub fn append(&mut self, rows: Vec<Option<SpoolRow>>, pos: usize, fp: Option<usize>) {
        let (replay_until, replay_pass) = (self.now.replay_until, self.now.replay_pass);
        let first = self.now.next_seq;
        let next_seq = first + rows.len() as u64;
        let below = self.now.reread_doubt_below;
        let rows = (first..)
            .zip(rows)
            .filter_map(|(seq, r)| {
                r.map(|mut r| {
                    r.doubt |= seq < below;
                    (seq, r)
                })
            })
            .collect();
        self.commit(Op::Append {
            rows,
            next_seq,
            pos,
            fp,
            replay_until,
            replay_pass,
        });
    }

    /// The position moves back to the start of a file read again up to `replay_until`.
    pub fn rewind(&mut self, replay_until: usize, replay_pass: u64) {
        self.commit(Op::Append {
            rows: Vec::new(),
            next_seq: self.now.next_seq,
            pos: 0,
            fp: None,
            replay_until,
            replay_pass,
        });
    }

    pub fn set_takeover(&mut self, w: Option<i64>) {
        self.commit(Op::Takeover(w));
        self.sync();
    }

    pub fn mark_inflight(&mut self, from: u64, to: u64) {
        self.commit(Op::Inflight(Some((from, to))));
        self.sync();
    }

    pub fn clear_inflight(&mut self) {
        self.commit(Op::Inflight(None));
    }

    pub fn settle(
        &mut self,
        stored: Vec<u64>,
        to_send: Vec<u64>,
        found: bool,
        inflight: Option<(u64, u64)>,
    ) {
        self.commit(Op::Settle {
            stored,
            to_send,
            found,
            inflight,
        });
    }

    /// Whether every state a crash could leave now (the synced one and each prefix of
    /// the commits since) marks `from..=to` in flight: what must hold when a batch
    /// leaves, or a cut could make it look unsent.
    pub fn marked_in_any_crash(&self, from: u64, to: u64) -> bool {
        let covers = |m: Option<(u64, u64)>| m.is_some_and(|(a, b)| a <= from && to <= b);
        covers(self.synced.inflight)
            && self.unsynced.iter().all(|op| match op {
                Op::Inflight(m) | Op::Settle { inflight: m, .. } => covers(*m),
                _ => true,
            })
    }

    pub fn peek(&self, max: usize) -> Vec<(u64, SpoolRow)> {
        let rows = self.now.spool.iter().take(max);
        rows.map(|(&s, r)| (s, r.clone())).collect()
    }

    pub fn range(&self, from: u64, to: u64) -> Vec<(u64, SpoolRow)> {
        let rows = self.now.spool.range(from..=to);
        rows.map(|(&s, r)| (s, r.clone())).collect()
    }
}

/// What opening a journal in state `st` commits, if anything.
pub fn opened(st: &State) -> Option<Op> {
    let (_, until) = st.inflight?;
    Some(Op::Opened {
        reread_doubt_below: st.reread_doubt_below.max(until.saturating_add(1)),
    })
}

/// The pass the reader goes on in from a stale journal's position: the real decision
/// `journal::salvage` takes.
fn salvaged_pass(st: &State) -> u64 {
    let spooled = st.spool.values().map(|r| r.replay);
    resync::stale_position_pass(st.pos < st.replay_until, st.replay_pass, spooled)
}

pub fn apply(st: &mut State, op: &Op) {
    match op {
        Op::Append {
            rows,
            next_seq,
            pos,
            fp,
            replay_until,
            replay_pass,
        } => {
            for (seq, r) in rows {
                st.spool.insert(*seq, r.clone());
            }
            st.next_seq = *next_seq;
            st.pos = *pos;
            st.fp = *fp;
            st.replay_until = *replay_until;
            st.replay_pass = *replay_pass;
        }
        Op::Takeover(w) => st.takeover = Some(*w),
        Op::Inflight(i) => st.inflight = *i,
        Op::Opened { reread_doubt_below } => {
            if let Some((from, until)) = st.inflight {
                for (_, r) in st.spool.range_mut(from..=until) {
                    r.doubt = true;
                }
            }
            st.reread_doubt_below = *reread_doubt_below;
        }
        Op::Settle {
            stored,
            to_send,
            found,
            inflight,
        } => {
            for seq in stored {
                if let Some(r) = st.spool.remove(seq) {
                    let found_again = *found && resync::found_is_not_own(r.replay) && r.doubt;
                    st.ring
                        .add_as(r.row.time, r.row.identity(), r.replay, found_again);
                }
            }
            st.ring.prune();
            for seq in to_send {
                if let Some(r) = st.spool.get_mut(seq) {
                    r.doubt = false;
                    r.takeover = false;
                }
            }
            st.inflight = *inflight;
        }
    }
}
