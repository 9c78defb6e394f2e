//! Salvaging a journal moved aside as damaged. Its spooled rows may be the only copy left
//! (a rotated file that was deleted since), so they are carried into the new journal with
//! its position, rings, cursors (in-flight marks included) and feedback records, when
//! they decode, so reading resumes where it was rather than from the start. Rows whose
//! fate is unknown are resolved against the server with checkRow, never sent blindly:
//! those the journal had in doubt or in flight, and every row of a journal that lost
//! commits it had made durable (see [`read_aside`]).
//!
//! Beside a moved-aside journal `journal.corrupt-…` lie `<it>.salvage`, which says its
//! rows are still to be carried over and counts the attempts (sled may abort on a damaged
//! log, and a crash loop must not follow), and `<it>.seal`, its seal. The spool is
//! carried over in batches of about 1 MiB (a small board cannot hold a full spool twice),
//! under the old chunks' keys; then one atomic commit writes the meta, the rings and
//! the record of the salvage, `x` + the moved-aside name. A journal at generation 0 that
//! holds chunks is a salvage that died, and the next attempt clears them first; one that
//! holds the record has its salvage done. So after a crash rows are never carried over
//! twice (identical rows in doubt are counted, not merged: a second copy would be sent).

use super::*;
use crate::resync;

mod report;
pub use report::{SalvageFailure, SalvageReport};

const PENDING: &str = ".salvage";
const SEAL: &str = ".seal";
/// Salvage attempts that did not finish before the journal is left to the operator.
pub(super) const MAX_SALVAGE_ATTEMPTS: u32 = 3;
/// Key prefix of the records of salvages made into this journal.
const SALVAGED: u8 = b'x';

fn pending_marker(aside: &Path) -> PathBuf {
    sibling(aside, PENDING)
}

pub(super) fn seal_beside(aside: &Path) -> PathBuf {
    sibling(aside, SEAL)
}

fn sibling(aside: &Path, suffix: &str) -> PathBuf {
    let mut name = aside.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

/// Called before a journal is moved to `aside`: its rows are to be salvaged.
pub(super) fn mark_pending(aside: &Path) -> io::Result<()> {
    std::fs::write(pending_marker(aside), "0\n")
}

/// The moved-aside journals whose rows are still to be carried over, newest name first.
fn pending(state_dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(state_dir) else {
        return Vec::new();
    };
    let mut found: Vec<PathBuf> = entries
        .filter_map(|e| {
            let name = e.ok()?.file_name().into_string().ok()?;
            let aside = name.strip_suffix(PENDING)?;
            aside
                .starts_with("journal.corrupt-")
                .then(|| state_dir.join(aside))
        })
        .collect();
    found.sort();
    found.reverse();
    found
}

fn salvaged_key(aside: &Path) -> Vec<u8> {
    let mut k = vec![SALVAGED];
    k.extend_from_slice(aside.file_name().unwrap_or_default().as_encoded_bytes());
    k
}

/// What was read from a moved-aside journal besides its spool, which is carried over
/// chunk by chunk from the still open `db`.
struct Aside {
    db: sled::Db,
    /// Older than its seal: it lost commits it had made durable.
    stale: bool,
    meta: Meta,
    /// Raw, decoded once to check them, by slot.
    rings: Vec<Option<(Vec<u8>, AckedRing)>>,
    /// Feedback and salvage records, copied as they are.
    records: Vec<(Vec<u8>, Vec<u8>)>,
    lost: Vec<String>,
}

/// The spool as carried over.
#[derive(Default)]
struct Carried {
    rows: u64,
    bytes: u64,
    next_seq: u64,
    /// The first row carried over.
    first_seq: Option<u64>,
    /// Rows wanted, by slot.
    per_slot: Vec<u64>,
    lost_chunks: u64,
    lost_rows: u64,
}

/// Chunks are carried over in batches of about this many bytes: a spool of
/// `--spool-max` (64 MiB by default) held in memory at once, twice over, would not fit
/// the small boards qlship runs on.
/// (Tiny in the unit tests, so that they carry over in several batches.)
const CARRY_BATCH_BYTES: usize = if cfg!(test) { 64 } else { 1 << 20 };

impl Journal {
    /// Carries the rows of journals moved aside and not yet salvaged into this one.
    pub(super) fn salvage_pending(&self, state_dir: &Path) -> Vec<SalvageReport> {
        let mut reports = Vec::new();
        for aside in pending(state_dir) {
            let marker = pending_marker(&aside);
            let mut report = SalvageReport {
                aside: aside.clone(),
                ..SalvageReport::default()
            };
            if let Err(e) = self.salvage_one(&aside, &marker, &mut report) {
                // A failed write of the new journal: tried again at the next start.
                // Chunks carried so far go, or they would be read without their meta.
                let _ = self.clear_spool();
                report.failed = Some(SalvageFailure::Write(e));
                reports.push(report);
                continue;
            }
            // Only now that the new journal durably holds the rows (or nothing could
            // be carried over) does the marker go.
            let _ = std::fs::remove_file(&marker);
            let _ = std::fs::remove_file(seal_beside(&aside));
            let _ = sync_dir(state_dir);
            reports.push(report);
        }
        reports
    }

    fn salvage_one(
        &self,
        aside: &Path,
        marker: &Path,
        report: &mut SalvageReport,
    ) -> Result<(), JournalError> {
        let key = salvaged_key(aside);
        if self.db.get(&key)?.is_some() {
            report.earlier = true;
            return Ok(());
        }
        if !aside.is_dir() {
            report.failed = Some(SalvageFailure::Gone);
            return Ok(());
        }
        if self.meta().generation != 0 {
            // Sequence numbers and slots would collide with the new journal's own.
            report.failed = Some(SalvageFailure::InUse);
            return Ok(());
        }
        // Chunks an attempt that died carried over before its meta was written.
        self.clear_spool()?;
        let attempts: u32 = std::fs::read_to_string(marker)
            .ok()
            .and_then(|t| t.trim().parse().ok())
            .unwrap_or(0);
        if attempts >= MAX_SALVAGE_ATTEMPTS {
            report.failed = Some(SalvageFailure::AttemptsSpent(attempts));
            return Ok(());
        }
        // Counted before sled touches it, so that a sled aborting on it is given up on.
        let counted = File::create(marker).and_then(|mut f| {
            use std::io::Write;
            writeln!(f, "{}", attempts + 1)?;
            f.sync_all()
        });
        if let Err(e) = counted {
            report.failed = Some(SalvageFailure::CannotCount(marker.to_owned(), e));
            return Ok(());
        }
        let sealed = Seal {
            path: seal_beside(aside),
        }
        .read();
        let read = std::panic::catch_unwind(|| read_aside(aside, sealed))
            .unwrap_or(Err(SalvageFailure::SledPanicked));
        let old = match read {
            Ok(old) => old,
            Err(why) => {
                report.failed = Some(why);
                return Ok(());
            }
        };
        let Some(pos) = old.meta.pos else {
            // It never read anything: the new journal starts as any new one does (the
            // daemon sets up its start and takeover region only in a journal never
            // written to, and reading from 0 without them would send rows again).
            if old.db.scan_prefix(b"s").next().is_some() {
                report.failed = Some(SalvageFailure::NoPosition);
            }
            return Ok(());
        };
        // The pass to go on in needs every row's first: one more scan, only when needed.
        let carry = || {
            let replays = old.stale.then(|| replay_passes(&old.db));
            let in_replay = pos.offset < pos.replay_until;
            let spooled = replays.into_iter().flatten();
            let pass = resync::stale_position_pass(in_replay, pos.replay_pass, spooled);
            self.carry_spool(&old).map(|c| (c, pass))
        };
        let (carried, stale_pass) =
            match std::panic::catch_unwind(std::panic::AssertUnwindSafe(carry)) {
                Ok(carried) => carried?,
                Err(_) => {
                    self.clear_spool()?;
                    report.failed = Some(SalvageFailure::SledPanicked);
                    return Ok(());
                }
            };
        report.stale = old.stale;
        report.lost = old.lost;
        if carried.lost_chunks > 0 {
            report.lost.push(format!(
                "{} spool chunks (of up to a few hundred rows each)",
                carried.lost_chunks
            ));
        }
        if carried.lost_rows > 0 {
            report
                .lost
                .push(format!("{} spooled rows", carried.lost_rows));
        }
        report.position_kept = true;
        let stale = old.stale;
        // The rings as bases numbered 1, written before the commit that names them (see
        // `rings`). The new journal has none yet (its generation is 0), and whatever a
        // salvage that died left there is named by no commit.
        let mut ring_bases = vec![0; old.meta.targets.len()];
        for (slot, ring) in old.rings.iter().enumerate() {
            if let Some((raw, _)) = ring {
                rings::write_base(&self.bases, slot, 1, raw)?;
                ring_bases[slot] = 1;
            }
        }
        self.commit(|m, ops| {
            let mut targets = old.meta.targets.clone();
            for (slot, t) in targets.iter_mut().enumerate() {
                t.pending_rows = carried.per_slot.get(slot).copied().unwrap_or(0);
                t.ring_base = ring_bases[slot];
            }
            m.spool_rows = carried.rows;
            m.spool_bytes = carried.bytes;
            m.next_seq = carried.next_seq.max(old.meta.next_seq);
            let mut pos = pos;
            if stale {
                // Rows the lost commits had read beyond it may have been shipped.
                pos.replay_until = u64::MAX;
                pos.replay_pass = stale_pass;
                // And sent in a batch whose in-flight mark went with them: every target
                // gets a mark, so that its first start waits out a settle window before
                // it asks the server about anything (a late gateway may still store
                // that batch). The mark is of the first row: settled, it resolves that
                // one row, in doubt anyway, and in file order (a later row resolved
                // first was stored before the rows ahead of it).
                let first = carried.first_seq.unwrap_or(m.next_seq);
                for t in targets.iter_mut().filter(|t| t.inflight.is_none()) {
                    t.inflight = Some((first, first));
                }
            }
            m.pos = Some(pos);
            m.region = old.meta.region;
            m.finished = old.meta.finished.clone();
            m.bad_lines = old.meta.bad_lines;
            m.unrouted = old.meta.unrouted;
            m.targets = targets;
            for (k, v) in &old.records {
                ops.insert(k.clone(), v.clone());
            }
            ops.insert(key.clone(), &b"1"[..]);
            Ok(Vec::new())
        })?;
        {
            let mut st = self.state.lock().expect("journal lock");
            for (slot, ring) in old.rings.iter().enumerate() {
                if let (Some((_, ring)), Some(r)) = (ring, st.rings.get_mut(slot)) {
                    *r = ring.clone();
                }
            }
        }
        self.sync()?;
        report.rows = old
            .meta
            .targets
            .iter()
            .zip(carried.per_slot.iter().chain(std::iter::repeat(&0)))
            .filter_map(|(t, n)| Some((t.key.clone()?, *n)))
            .collect();
        Ok(())
    }

    /// Copies the old journal's spool chunks into this one under the same keys, each
    /// row decoded to check it (a row that fails later would condemn the new journal
    /// too) and with its marks as [`read_aside`] says. Only a record sled cannot read
    /// (or a panic) is an error: a chunk or row that does not decode is counted as lost.
    /// Written in batches, without the meta: until the final commit a journal at
    /// generation 0 with chunks is a salvage that died, and the next one clears them.
    fn carry_spool(&self, old: &Aside) -> Result<Carried, JournalError> {
        let mut c = Carried {
            per_slot: vec![0; old.meta.targets.len()],
            ..Carried::default()
        };
        let mut batch = sled::Batch::default();
        let mut batch_bytes = 0;
        for kv in old.db.scan_prefix(b"s") {
            let Ok((k, v)) = kv else {
                // sled cannot go on past a record it cannot read.
                c.lost_chunks += 1;
                break;
            };
            let Ok(chunk) = chunk_key_of(&k) else {
                c.lost_chunks += 1;
                continue;
            };
            let Ok(rows) = scan_chunk(chunk, &v) else {
                c.lost_chunks += 1;
                continue;
            };
            let mut value = vec![CHUNK_VERSION];
            let mut kept = 0;
            for e in rows.iter().filter(|e| e.want != 0) {
                if e.decode(chunk, &v).is_err() {
                    c.lost_rows += 1;
                    continue;
                }
                let masks = if old.stale {
                    [e.want, e.want, 0, e.replay]
                } else {
                    [e.want, e.doubt, e.takeover, e.replay]
                };
                put_chunk_row(&mut value, e.seq, masks, &v[e.row.clone()]);
                kept += 1;
                c.next_seq = c.next_seq.max(e.seq + 1);
                c.first_seq = Some(c.first_seq.map_or(e.seq, |f| f.min(e.seq)));
                let mut want = e.want;
                while want != 0 {
                    let slot = want.trailing_zeros() as usize;
                    if let Some(n) = c.per_slot.get_mut(slot) {
                        *n += 1;
                    }
                    want &= want - 1;
                }
            }
            if kept == 0 {
                continue;
            }
            c.rows += kept;
            c.bytes += (value.len() + 9) as u64;
            batch_bytes += value.len();
            batch.insert(&spool_key(chunk)[..], value);
            if batch_bytes >= CARRY_BATCH_BYTES {
                self.db.apply_batch(std::mem::take(&mut batch))?;
                batch_bytes = 0;
            }
        }
        self.db.apply_batch(batch)?;
        Ok(c)
    }

    /// Removes every spool chunk: only ever called on a journal at generation 0, where
    /// chunks are those of a salvage that did not finish.
    fn clear_spool(&self) -> Result<(), JournalError> {
        let mut batch = sled::Batch::default();
        for kv in self.db.scan_prefix(b"s") {
            batch.remove(kv?.0);
        }
        self.db.apply_batch(batch)?;
        Ok(())
    }
}

/// The replay pass of every spooled row of `db`, as far as its chunks scan.
fn replay_passes(db: &sled::Db) -> impl Iterator<Item = u64> + '_ {
    db.scan_prefix(b"s")
        .map_while(Result::ok)
        .flat_map(|(k, v)| {
            let rows = chunk_key_of(&k).and_then(|chunk| scan_chunk(chunk, &v));
            rows.unwrap_or_default().into_iter().map(|e| e.replay)
        })
}

/// Reads what decodes of the journal at `aside` but its spool, whose seal says it
/// reached generation `sealed` when last made durable.
///
/// A journal at or past its seal holds a state qlship made durable: a row whose fate is
/// unknown is in doubt already, or inside the in-flight mark (kept), so every row keeps
/// its marks. Marking the others in doubt too would do harm: a row known absent, judged
/// against a ring whose twins were found again rather than sent, is taken for stored
/// and lost (the simulator found it, `case8_salvage`).
///
/// A journal older than its seal lost commits: rows may have been sent, and their
/// in-flight mark lost. Each is in doubt for every target still wanting it, without its
/// takeover mark (checkRow decides, not a watermark the lost uploads may have raised),
/// in the pass it was read in (see [`resync::stale_position_pass`]).
fn read_aside(aside: &Path, sealed: Option<u64>) -> Result<Aside, SalvageFailure> {
    let db = sled::Config::new()
        .path(aside)
        .cache_capacity(1 << 20)
        .flush_every_ms(None)
        .open()
        .map_err(SalvageFailure::SledRefuses)?;
    let meta = match db.get(b"m") {
        Ok(Some(v)) => Meta::decode(&v).map_err(SalvageFailure::MetaUndecodable)?,
        Ok(None) => Meta::default(),
        Err(e) => return Err(SalvageFailure::MetaUnreadable(e)),
    };
    let stale = sealed.is_some_and(|g| meta.generation < g);
    let mut lost = Vec::new();
    let mut rings = Vec::new();
    for slot in 0..meta.targets.len() {
        // The base and its deltas, carried over as one base.
        rings.push(match rings::load(&db, slot, meta.targets[slot].ring_base) {
            Ok((ring, _)) if ring.is_empty() => None,
            Ok((ring, _)) => Some((ring.encode(), ring)),
            Err(e) => {
                lost.push(format!(
                    "the ring of acknowledged rows of slot {slot} ({e})"
                ));
                None
            }
        });
    }
    let mut records = Vec::new();
    for prefix in [&b"f"[..], &[SALVAGED][..]] {
        for (k, v) in db.scan_prefix(prefix).flatten() {
            records.push((k.to_vec(), v.to_vec()));
        }
    }
    Ok(Aside {
        db,
        stale,
        meta,
        rings,
        records,
        lost,
    })
}

#[cfg(test)]
mod tests;
