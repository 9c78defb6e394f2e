//! The spool: rows read and not yet acknowledged by every target that wants them, one
//! copy each with a mask of the slots still wanting it, and each target's in-flight mark
//! over it. Appending, reading a target's rows in file order and settling a batch.

use super::*;
use crate::resync;
use crate::row::Row;

/// A bit per journal slot.
pub fn bit(slot: usize) -> u64 {
    1u64 << slot
}

/// A spooled row.
#[derive(Clone, Debug)]
pub struct Entry {
    pub seq: u64,
    /// Targets that have not acknowledged it yet.
    pub want: u64,
    /// Targets that must check it with checkRow before sending (fate unknown, or at the
    /// watermark of a takeover).
    pub doubt: u64,
    /// Targets that must judge it against their watermark first (read from the region
    /// before the target's takeover).
    pub takeover: u64,
    /// The replay pass that read it again after the file shrank or was rewritten (0:
    /// none). It may be the very row acknowledged before: only acknowledgements of the
    /// same pass explain identical copies away (`resync::decide`).
    pub replay: u64,
    pub row: Row,
    /// Key of the spool chunk holding it.
    pub(super) chunk: u64,
}

impl Entry {
    pub fn in_doubt(&self, slot: usize) -> bool {
        self.doubt & bit(slot) != 0
    }
    pub fn before_takeover(&self, slot: usize) -> bool {
        self.takeover & bit(slot) != 0
    }
    pub fn replayed(&self) -> bool {
        self.replay != 0
    }
}

/// A row to spool and who wants it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Spooled {
    pub row: Row,
    pub want: u64,
    pub doubt: u64,
    pub takeover: u64,
    pub replay: u64,
}

impl Journal {
    /// Spools rows read from the file together with the position after them, the number
    /// of lines skipped on the way and of rows no target wanted, as one chunk.
    pub fn append(
        &self,
        rows: &[Spooled],
        pos: FilePos,
        bad_lines: u64,
        unrouted: u64,
    ) -> Result<(), JournalError> {
        self.commit(|m, ops| {
            m.bad_lines += bad_lines;
            m.unrouted += unrouted;
            let rows: Vec<&Spooled> = rows.iter().filter(|r| r.want != 0).collect();
            if !rows.is_empty() {
                let first = m.next_seq;
                let value = encode_chunk(
                    rows.iter()
                        .zip(first..)
                        .map(|(r, seq)| (seq, [r.want, r.doubt, r.takeover, r.replay], &r.row)),
                );
                for r in &rows {
                    let mut want = r.want;
                    while want != 0 {
                        let slot = want.trailing_zeros() as usize;
                        if let Some(t) = m.targets.get_mut(slot) {
                            t.pending_rows += 1;
                        }
                        want &= want - 1;
                    }
                }
                m.spool_bytes += (value.len() + 9) as u64;
                ops.insert(&spool_key(first)[..], value);
                m.next_seq += rows.len() as u64;
                m.spool_rows += rows.len() as u64;
            }
            m.pos = Some(pos);
            Ok(Vec::new())
        })
    }

    /// The first `max` rows `slot` still wants, in file order.
    pub fn peek(&self, slot: usize, max: usize) -> Result<Vec<Entry>, JournalError> {
        let (hint, end) = {
            let st = self.state.lock().expect("journal lock");
            (st.hints.get(slot).copied().unwrap_or(0), st.meta.next_seq)
        };
        let mut out = self.wanted(slot, hint, u64::MAX, max)?;
        // No row before the first one found (or before `end`, if none) is wanted by
        // this target: the next scan starts there. Rows only ever lose wanting targets,
        // and new rows get sequence numbers from `end` on.
        let new_hint = out.first().map_or(end, |e| e.seq);
        if let Some(h) = self.state.lock().expect("journal lock").hints.get_mut(slot) {
            *h = (*h).max(new_hint);
        }
        out.truncate(max);
        Ok(out)
    }

    /// The rows `slot` still wants with sequence numbers in `from..=to`.
    pub fn range(&self, slot: usize, from: u64, to: u64) -> Result<Vec<Entry>, JournalError> {
        self.wanted(slot, from, to, usize::MAX)
    }

    fn wanted(
        &self,
        slot: usize,
        from: u64,
        to: u64,
        max: usize,
    ) -> Result<Vec<Entry>, JournalError> {
        let mut out = Vec::new();
        // Chunks start at or before their rows: begin with the last one keyed <= from.
        let start = match self.db.range(spool_key(0)..=spool_key(from)).next_back() {
            Some(kv) => chunk_key_of(&kv?.0)?,
            None => from,
        };
        for kv in self.db.range(spool_key(start)..=spool_key(to)) {
            let (k, v) = kv?;
            let chunk = chunk_key_of(&k)?;
            for e in scan_chunk(chunk, &v)? {
                if out.len() >= max {
                    return Ok(out);
                }
                if e.seq >= from && e.seq <= to && e.want & bit(slot) != 0 {
                    out.push(e.decode(chunk, &v)?);
                }
            }
        }
        Ok(out)
    }

    /// Durably records that `from..=to` is about to be sent to `slot`: after a crash,
    /// those rows are checked with checkRow instead of being sent blindly a second time.
    pub fn mark_inflight(&self, slot: usize, from: u64, to: u64) -> Result<(), JournalError> {
        let now = unix_now_ms();
        self.commit(|m, _| {
            m.targets[slot].inflight = Some((from, to));
            m.targets[slot].inflight_sent_ms = now;
            Ok(Vec::new())
        })?;
        self.sync()
    }

    /// Forgets the in-flight mark when the request certainly never reached the server.
    pub fn clear_inflight(&self, slot: usize) -> Result<(), JournalError> {
        self.commit(|m, _| {
            m.targets[slot].inflight = None;
            Ok(Vec::new())
        })
    }

    /// For target `slot`: `stored` were acknowledged by the server (they stop wanting
    /// it, and leave the spool when nobody else does; the ring remembers them with
    /// `times`, the times the server stored); `to_send` lose their doubt and takeover
    /// marks. Clears the in-flight mark.
    /// `found`: `stored` were found on the server by a resync (not stored just now).
    pub fn settle(
        &self,
        slot: usize,
        stored: &[&Entry],
        to_send: &[&Entry],
        found: bool,
    ) -> Result<(), JournalError> {
        let mut chunks: Vec<u64> = stored.iter().chain(to_send).map(|e| e.chunk).collect();
        chunks.sort_unstable();
        chunks.dedup();
        let done: std::collections::HashSet<u64> = stored.iter().map(|e| e.seq).collect();
        let clear: std::collections::HashSet<u64> = to_send.iter().map(|e| e.seq).collect();
        let b = bit(slot);
        self.commit(|m, ops| {
            for chunk in chunks {
                let Some(old) = self.db.get(spool_key(chunk))? else {
                    continue;
                };
                let rows = scan_chunk(chunk, &old)?;
                rewrite_chunk(m, ops, chunk, &old, &rows, |e| {
                    let acked = done.contains(&e.seq);
                    let keep = if acked { !b } else { u64::MAX };
                    let settled = if acked || clear.contains(&e.seq) {
                        !b
                    } else {
                        u64::MAX
                    };
                    // A row to send keeps its replay pass: acknowledged, it goes into
                    // the ring as a row of that pass (see `resync::decide`).
                    [
                        e.want & keep,
                        e.doubt & settled,
                        e.takeover & settled,
                        e.replay,
                    ]
                });
            }
            let t = &mut m.targets[slot];
            t.pending_rows = t.pending_rows.saturating_sub(stored.len() as u64);
            t.acked_total += stored.len() as u64;
            let today = unix_now() / 86_400;
            if t.acked_day != today {
                t.acked_day = today;
                t.acked_today = 0;
            }
            t.acked_today += stored.len() as u64;
            t.inflight = None;
            if stored.is_empty() {
                return Ok(Vec::new());
            }
            Ok(vec![RingEdit {
                slot,
                add: stored
                    .iter()
                    .map(|e| {
                        // Still in doubt: the replayed row was never sent by this
                        // pass, so the copy found is not one of its own.
                        let found_again =
                            found && resync::found_is_not_own(e.replay) && e.in_doubt(slot);
                        (e.row.time, e.row.identity(), e.replay, found_again)
                    })
                    .collect(),
                reset: false,
            }])
        })
    }
}
