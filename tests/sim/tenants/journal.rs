//! The journal of several targets: one slot per target, each the single-target model's
//! [`State`] changed by its [`Op`]s (`crate::journal`), and the reader's position, all in
//! one log. A reader's commit appends to every slot at once, as the real spool's row
//! masks do; a crash keeps the synced state plus a prefix of the later commits.

use crate::journal::{apply, opened, Op, SpoolRow, State};

/// The partition a slot is bound to: the tenant and the version of its target's
/// settings (each edit makes a new partition key, with a server of its own).
pub type Key = (usize, usize);

#[derive(Clone, Debug, Default)]
pub struct Slot {
    pub key: Option<Key>,
    pub st: State,
}

#[derive(Clone, Debug)]
pub struct Disk {
    /// Lines of the queue_log read so far.
    pub pos: usize,
    pub slots: Vec<Slot>,
}

#[derive(Debug)]
enum Commit {
    Read {
        pos: usize,
        rows: Vec<Vec<SpoolRow>>,
    },
    Slot(usize, Op),
}

pub struct Journal {
    synced: Disk,
    unsynced: Vec<Commit>,
    pub now: Disk,
}

impl Journal {
    pub fn new(keys: Vec<Option<Key>>) -> Self {
        let slots = keys
            .into_iter()
            .map(|key| Slot {
                key,
                st: State::default(),
            })
            .collect();
        let disk = Disk { pos: 0, slots };
        Journal {
            synced: disk.clone(),
            unsynced: Vec::new(),
            now: disk,
        }
    }

    fn commit(&mut self, c: Commit) {
        commit_to(&mut self.now, &c);
        self.unsynced.push(c);
    }

    pub fn sync(&mut self) {
        self.synced = self.now.clone();
        self.unsynced.clear();
    }

    pub fn unsynced(&self) -> usize {
        self.unsynced.len()
    }

    /// The process died: `kept` of the unsynced commits reached the disk.
    pub fn crash(&mut self, kept: usize) {
        let mut disk = self.synced.clone();
        for c in self.unsynced.iter().take(kept) {
            commit_to(&mut disk, c);
        }
        self.synced = disk.clone();
        self.now = disk;
        self.unsynced.clear();
    }

    /// The reader read up to `pos`: `rows[slot]` are spooled for each slot. Every row
    /// read takes a sequence number, kept or not: here its line (this world's file has
    /// no bad lines and is never read again from the start). A row spooled under a
    /// number below its slot's bound is in doubt.
    pub fn read(&mut self, pos: usize, mut rows: Vec<Vec<SpoolRow>>) {
        for (slot, rows) in self.now.slots.iter().zip(&mut rows) {
            for r in rows {
                r.doubt |= (r.line as u64) < slot.st.reread_doubt_below;
            }
        }
        self.commit(Commit::Read { pos, rows });
    }

    /// Opening the journal at a start (see `crate::journal::Journal::open`).
    pub fn open(&mut self) {
        for slot in 0..self.now.slots.len() {
            if let Some(op) = opened(&self.now.slots[slot].st) {
                self.commit(Commit::Slot(slot, op));
            }
        }
    }

    /// Whether every state a crash could leave now marks `from..=to` in flight for
    /// `slot` (see `crate::journal::Journal::marked_in_any_crash`).
    pub fn marked_in_any_crash(&self, slot: usize, from: u64, to: u64) -> bool {
        let covers = |m: Option<(u64, u64)>| m.is_some_and(|(a, b)| a <= from && to <= b);
        covers(self.synced.slots[slot].st.inflight)
            && self.unsynced.iter().all(|c| match c {
                Commit::Slot(s, Op::Inflight(m) | Op::Settle { inflight: m, .. }) if *s == slot => {
                    covers(*m)
                }
                _ => true,
            })
    }

    /// A target's own operation; in-flight marks and takeovers are synced at once.
    pub fn op(&mut self, slot: usize, op: Op) {
        let sync = matches!(op, Op::Takeover(_) | Op::Inflight(Some(_)));
        self.commit(Commit::Slot(slot, op));
        if sync {
            self.sync();
        }
    }

    /// `Journal::bind` once `machine::bind` said to start: each slot whose key is not
    /// `keys[slot]` is freed (its spool dropped) and bound afresh; synced.
    pub fn bind(&mut self, keys: &[Option<Key>]) {
        // A slot bound afresh takes the highest bound of rows read again in doubt (as
        // `Journal::bind` does: an edited target may be the same server).
        let slots = &self.now.slots;
        let below = slots.iter().map(|s| s.st.reread_doubt_below).max();
        for (slot, key) in self.now.slots.iter_mut().zip(keys) {
            if slot.key != *key {
                *slot = Slot {
                    key: *key,
                    st: State {
                        reread_doubt_below: below.unwrap_or(0),
                        ..State::default()
                    },
                };
            }
        }
        self.sync();
    }
}

fn commit_to(disk: &mut Disk, c: &Commit) {
    match c {
        Commit::Read { pos, rows } => {
            disk.pos = *pos;
            for (slot, rows) in disk.slots.iter_mut().zip(rows) {
                let append = Op::Append {
                    rows: rows.iter().map(|r| (r.line as u64, r.clone())).collect(),
                    next_seq: *pos as u64,
                    pos: 0,
                    fp: None,
                    replay_until: 0,
                    replay_pass: 0,
                };
                apply(&mut slot.st, &append);
            }
        }
        Commit::Slot(slot, op) => apply(&mut disk.slots[*slot].st, op),
    }
}
