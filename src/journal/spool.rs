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

impl Spooled {
    /// A row read that no target keeps: it takes its sequence number, and nothing is
    /// spooled.
    pub fn not_kept() -> Spooled {
        Spooled {
            row: Row::from_fields(0, [""; crate::row::FIELDS]),
            want: 0,
            doubt: 0,
            takeover: 0,
            replay: 0,
        }
    }
}

impl Journal {
    /// Spools rows read from the file together with the position after them, the number
    /// of lines skipped on the way and of rows no target wanted, as one chunk. Every
    /// row in `rows` takes the next sequence number, kept by a target or not: read
    /// again from the same position after a power cut, a row gets the number it had
    /// (what an in-flight window covers, see `TargetMeta::reread_doubt_below`), even
    /// if routing, shedding or the takeover decide differently then.
    pub fn append(
        &self,
        rows: &[Spooled],
        pos: FilePos,
        bad_lines: u64,
        unrouted: u64,
    ) -> Result<(), JournalError> {
        let rows_read = rows.len() as u64;
        self.commit(|m, ops| {
            m.bad_lines += bad_lines;
            m.unrouted += unrouted;
            let first = m.next_seq;
            let rows: Vec<(u64, &Spooled)> =
                (first..).zip(rows).filter(|(_, r)| r.want != 0).collect();
            m.next_seq += rows_read;
            if let Some(&(chunk_seq, _)) = rows.first() {
                let targets = &m.targets;
                let value = encode_chunk(rows.iter().map(|&(seq, r)| {
                    let doubt = r.doubt | reread_doubt(targets, r.want, seq);
                    (seq, [r.want, doubt, r.takeover, r.replay], &r.row)
                }));
                for (_, r) in &rows {
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
                ops.insert(&spool_key(chunk_seq)[..], value);
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

    /// The spool chunks that may hold rows numbered `from..=to`: chunks start at or
    /// before their rows, so from the last one keyed at or before `from`.
    fn chunks_covering(&self, from: u64, to: u64) -> Result<sled::Iter, JournalError> {
        let start = match self.db.range(spool_key(0)..=spool_key(from)).next_back() {
            Some(kv) => chunk_key_of(&kv?.0)?,
            None => from,
        };
        Ok(self.db.range(spool_key(start)..=spool_key(to)))
    }

    fn wanted(
        &self,
        slot: usize,
        from: u64,
        to: u64,
        max: usize,
    ) -> Result<Vec<Entry>, JournalError> {
        let mut out = Vec::new();
        for kv in self.chunks_covering(from, to)? {
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

    /// Durably records that rows of `from..=to` may be sent to `slot` (a batch, and the
    /// window after it that later batches go in without a mark of their own, see
    /// [`Journal::settle`]): after a crash, those spooled are checked with checkRow
    /// instead of being sent blindly a second time, and so are those read again under
    /// these numbers (`TargetMeta::reread_doubt_below`).
    pub fn mark_inflight(&self, slot: usize, from: u64, to: u64) -> Result<(), JournalError> {
        let now = unix_now_ms();
        self.commit(|m, _| {
            m.targets[slot].inflight = Some((from, to));
            m.targets[slot].inflight_sent_ms = now;
            Ok(Vec::new())
        })?;
        self.sync()
    }

    /// At a start, after any salvage: the previous run may have sent rows under every
    /// number each target's in-flight mark covers (a batch, or any batch of the window
    /// after it). Rows spooled under them are marked in doubt, so that the uploader
    /// resolves them as it resolves any rows in doubt, a run of alike rows at a time, in
    /// file order, after the rows before them are stored (a window can hold rows of
    /// several replay passes, which one resync of the whole range would mix). Rows a
    /// power cut took back from the spool are read again under the same numbers: the
    /// target's `reread_doubt_below` is raised past the mark for them. One commit;
    /// idempotent, so a crash before it is durable finds the same marks next time.
    pub fn doubt_what_may_have_left(&self) -> Result<(), JournalError> {
        let marks: Vec<(usize, (u64, u64))> = {
            let st = self.state.lock().expect("journal lock");
            let targets = st.meta.targets.iter().enumerate();
            targets
                .filter_map(|(slot, t)| Some((slot, t.inflight?)))
                .collect()
        };
        if marks.is_empty() {
            return Ok(());
        }
        let doubt = |e: &RawEntry| {
            let covered = marks
                .iter()
                .filter(|(_, (a, b))| (*a..=*b).contains(&e.seq));
            covered.fold(0, |d, (slot, _)| d | bit(*slot)) & e.want
        };
        self.commit(|m, ops| {
            for &(slot, (_, until)) in &marks {
                let t = &mut m.targets[slot];
                t.reread_doubt_below = t.reread_doubt_below.max(until.saturating_add(1));
            }
            // Each mark's own range (an old mark of a target that keeps failing must not
            // make every start scan the whole spool); a chunk under two marks once.
            let mut seen = std::collections::HashSet::new();
            for &(_, (from, until)) in &marks {
                for kv in self.chunks_covering(from, until)? {
                    let (k, old) = kv?;
                    let chunk = chunk_key_of(&k)?;
                    if !seen.insert(chunk) {
                        continue;
                    }
                    // One that does not decode is left for the running daemon to find
                    // (it then marks the journal suspect, and the next start salvages
                    // it); failing the open here would fail every start the same way.
                    let Ok(rows) = scan_chunk(chunk, &old) else {
                        continue;
                    };
                    if rows.iter().all(|e| doubt(e) & !e.doubt == 0) {
                        continue;
                    }
                    rewrite_chunk(m, ops, chunk, &old, &rows, |e| {
                        [e.want, e.doubt | doubt(e), e.takeover, e.replay]
                    });
                }
            }
            Ok(Vec::new())
        })
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
    /// The in-flight mark becomes `inflight`: what is left of the window the last mark
    /// made durable. Every commit until the next sync keeps a mark covering each batch
    /// sent under that window, so whichever prefix of them a power cut leaves still
    /// covers every row that left.
    pub fn settle(
        &self,
        slot: usize,
        stored: &[&Entry],
        to_send: &[&Entry],
        found: bool,
        inflight: Option<(u64, u64)>,
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
            t.inflight = inflight;
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

/// The targets among `want` for which a row spooled under `seq` is in doubt because an
/// earlier run may have sent a row under that number (`TargetMeta::reread_doubt_below`).
fn reread_doubt(targets: &[TargetMeta], want: u64, seq: u64) -> u64 {
    let mut doubt = 0;
    let mut rest = want;
    while rest != 0 {
        let slot = rest.trailing_zeros() as usize;
        if targets
            .get(slot)
            .is_some_and(|t| seq < t.reread_doubt_below)
        {
            doubt |= bit(slot);
        }
        rest &= rest - 1;
    }
    doubt
}
