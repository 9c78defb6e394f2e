//! A virtual journal with the real one's semantics for one target, and a disk under it
//! that loses whatever was not synced when the process dies: sled writes its log in
//! order, so what survives is the synced state plus some prefix of the later commits.

use qlship::resync::AckedRing;
use qlship::row::Row;
use std::collections::BTreeMap;

#[derive(Clone, Debug)]
pub struct SpoolRow {
    pub row: Row,
    /// Index of the row in the source file (for the checker, not the core).
    pub line: usize,
    pub doubt: bool,
    pub takeover: bool,
    pub replayed: bool,
}

#[derive(Clone, Debug, Default)]
pub struct State {
    /// Rows of the source file read so far.
    pub pos: usize,
    pub next_seq: u64,
    pub spool: BTreeMap<u64, SpoolRow>,
    pub inflight: Option<(u64, u64)>,
    /// None until the takeover is recorded.
    pub takeover: Option<Option<i64>>,
    pub ring: AckedRing,
}

#[derive(Clone, Debug)]
enum Op {
    Append { rows: Vec<SpoolRow>, pos: usize },
    Takeover(Option<i64>),
    Inflight(Option<(u64, u64)>),
    Settle { stored: Vec<u64>, to_send: Vec<u64> },
}

pub struct Journal {
    synced: State,
    /// Commits since the last sync, oldest first.
    unsynced: Vec<Op>,
    pub now: State,
}

impl Journal {
    pub fn new(initial: State) -> Self {
        Journal {
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
        self.synced = self.now.clone();
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

    pub fn unsynced(&self) -> usize {
        self.unsynced.len()
    }

    pub fn append(&mut self, rows: Vec<SpoolRow>, pos: usize) {
        self.commit(Op::Append { rows, pos });
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

    pub fn settle(&mut self, stored: Vec<u64>, to_send: Vec<u64>) {
        self.commit(Op::Settle { stored, to_send });
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

fn apply(st: &mut State, op: &Op) {
    match op {
        Op::Append { rows, pos } => {
            for r in rows {
                st.spool.insert(st.next_seq, r.clone());
                st.next_seq += 1;
            }
            st.pos = *pos;
        }
        Op::Takeover(w) => st.takeover = Some(*w),
        Op::Inflight(i) => st.inflight = *i,
        Op::Settle { stored, to_send } => {
            for seq in stored {
                if let Some(r) = st.spool.remove(seq) {
                    st.ring.add(r.row.time, r.row.identity());
                }
            }
            st.ring.prune();
            for seq in to_send {
                if let Some(r) = st.spool.get_mut(seq) {
                    r.doubt = false;
                    r.takeover = false;
                    r.replayed = false;
                }
            }
            st.inflight = None;
        }
    }
}
