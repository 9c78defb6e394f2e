//! The sled journal: file position, spool of rows not yet acknowledged by every target
//! that wants them, each target's in-flight mark and ring of recently acknowledged rows,
//! in one tree so that every change is one atomic `apply_batch` (the rings' bases aside:
//! each is written before the batch that names it, see `rings`).
//!
//! Keys: `m` meta, `R`+slot+n the entries of a target's ring of acknowledged rows since
//! its base (bases: a tree of their own, named by the meta; `r` (+ slot) in journals
//! from before it; see `rings`), `s`+seq (u64 BE) spool chunks,
//! `f`+… feedback actions, `x`+name journals salvaged into this one. Rows are spooled
//! once: each carries a bit mask of the targets (journal slots, at most 64) that still
//! want it, and a row leaves the spool when the last of them acknowledged it.
//! sled (the vendored copy) writes its log to the page cache only, and its `flush()`
//! is an fsync of the log: [`Journal::sync`] is the only point where commits reach the
//! disk, so that a commit costs no write to flash of its own (`vendor/README.md`). A
//! failed fsync is fatal: the page cache state is unknown after it.
//!
//! Here: the store, its one commit path, the reading position and durability. Beside
//! it: `meta` (the meta record and its codec), `spool` (appending, reading and settling
//! rows), `targets` (slots and the targets bound to them), `chunk` (the spool's
//! encoding), `rings` (the rings on disk), `open` (opening, the seal, moving a damaged
//! journal aside), `salvage`
//! (carrying a moved-aside journal's rows over), `feedback` (feedback actions' records)
//! and `error`.

use crate::resync::AckedRing;
use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// A change to one target's ring of acknowledged rows.
struct RingEdit {
    slot: usize,
    /// (time, identity, replay pass, a replayed row found already stored)
    add: Vec<(i64, u64, u64, bool)>,
    /// The slot was freed: its ring goes.
    reset: bool,
}

struct State {
    meta: Meta,
    /// By slot.
    rings: Vec<AckedRing>,
    /// By slot: what of its ring is on disk in deltas (see `rings`).
    ring_deltas: Vec<rings::Deltas>,
    /// By slot: no row before this sequence number is wanted by the target (an
    /// in-memory shortcut for `peek` past other targets' backlog).
    hints: Vec<u64>,
    /// The generation the last sync made durable (see [`Journal::has_unsynced`]).
    synced_generation: u64,
}

pub struct Journal {
    db: sled::Db,
    /// The rings' bases (see `rings`): apart from the main tree, whose leaf with the
    /// meta sled rewrites every few commits.
    bases: sled::Tree,
    dir: PathBuf,
    seal: Seal,
    state: Mutex<State>,
    /// The queue_log file being read, made durable before every sync (see
    /// [`Journal::follow_source`]).
    source: Mutex<Option<Source>>,
}

/// The file being read, and its size and modification time when an fdatasync of it
/// last succeeded.
struct Source {
    file: File,
    synced: Option<(u64, i64, i64)>,
}

impl Source {
    /// Makes the file durable, unless nothing was written to it since the last time:
    /// same size, same modification time (every write sets it; it is read before the
    /// fdatasync, so a write racing with it only makes the next sync do it again). A
    /// catch-up of a file that no longer grows, or retries while the server is down,
    /// then cost one fsync a batch instead of two.
    /// Whether it called fdatasync.
    fn sync(&mut self) -> io::Result<bool> {
        use std::os::unix::fs::MetadataExt;
        let m = self.file.metadata()?;
        let stamp = (m.size(), m.mtime(), m.mtime_nsec());
        if self.synced == Some(stamp) {
            return Ok(false);
        }
        self.file.sync_data()?;
        crate::health::meter::count_fsync();
        self.synced = Some(stamp);
        Ok(true)
    }
}

impl Journal {
    /// The file the reader reads from now on. Asterisk never fsyncs queue_log, so a
    /// power cut can take back bytes qlship already read, spooled and shipped; the file
    /// would then come back shorter than the journaled position and its surviving rows
    /// be read again. Every sync first makes this file durable (fdatasync works on
    /// qlship's read-only descriptor), so a durable position never lies beyond what the
    /// file durably holds. It costs no extra flash writes to speak of: the kernel writes
    /// those pages back within 30 s anyway; it only moves them earlier.
    pub fn follow_source(&self, file: Option<File>) {
        *self.source.lock().expect("source lock") = file.map(|file| Source { file, synced: None });
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn meta(&self) -> Meta {
        self.state.lock().expect("journal lock").meta.clone()
    }

    pub fn ring(&self, slot: usize) -> AckedRing {
        let st = self.state.lock().expect("journal lock");
        st.rings.get(slot).cloned().unwrap_or_default()
    }

    /// Applies `change` to a copy of the meta (it may add operations to the batch and
    /// return ring edits), writes the new meta, the edited rings and those operations in
    /// one atomic batch, and only then makes them current. The lock serialises every
    /// change, so sequence numbers never collide and a chunk's read-modify-write is never
    /// interleaved with another's.
    fn commit(
        &self,
        change: impl FnOnce(&mut Meta, &mut sled::Batch) -> Result<Vec<RingEdit>, JournalError>,
    ) -> Result<(), JournalError> {
        let mut st = self.state.lock().expect("journal lock");
        let mut meta = st.meta.clone();
        let mut ops = sled::Batch::default();
        let edits = change(&mut meta, &mut ops)?;
        let mut rings = Vec::with_capacity(edits.len());
        let mut ring_deltas = st.ring_deltas.clone();
        let mut superseded = Vec::new();
        for edit in edits {
            if ring_deltas.len() <= edit.slot {
                ring_deltas.resize(edit.slot + 1, rings::Deltas::default());
            }
            let deltas = &mut ring_deltas[edit.slot];
            let mut ring = if edit.reset {
                AckedRing::default()
            } else {
                st.rings.get(edit.slot).cloned().unwrap_or_default()
            };
            let mut added = AckedRing::default();
            for (time, identity, replay, found_again) in edit.add {
                added.add_as(time, identity, replay, found_again);
            }
            ring.append(&added);
            ring.prune();
            // The base on disk now: a freed slot's new TargetMeta names none.
            let mut base = st.meta.targets.get(edit.slot).map_or(0, |t| t.ring_base);
            let gone = if edit.reset {
                rings::remove(&mut ops, edit.slot, &mut base, deltas)
            } else {
                rings::store(
                    &self.bases,
                    &mut ops,
                    edit.slot,
                    &mut base,
                    deltas,
                    &ring,
                    &added,
                )?
            };
            superseded.extend(gone);
            if let Some(t) = meta.targets.get_mut(edit.slot) {
                t.ring_base = base;
            }
            rings.push((edit.slot, ring));
        }
        meta.generation += 1;
        ops.insert(&b"m"[..], meta.encode());
        self.db.apply_batch(ops)?;
        let n = meta.targets.len();
        if n > st.rings.len() {
            st.rings.resize_with(n, AckedRing::default);
            st.hints.resize(n, 0);
        }
        for (slot, ring) in rings {
            st.rings[slot] = ring;
        }
        st.ring_deltas = ring_deltas;
        st.meta = meta;
        // After the batch, in sled's log order: a crash that keeps a removal keeps the
        // commit that stopped naming the base. Not fatal: a base left over is removed
        // at the next open.
        if let Err(e) = rings::drop_superseded(&self.bases, &superseded) {
            log::debug!("removing a superseded ring base failed: {e}");
        }
        Ok(())
    }

    /// Records where a new journal starts reading and the region an earlier loader may
    /// have uploaded.
    pub fn begin(&self, pos: Option<FilePos>, region: Option<Region>) -> Result<(), JournalError> {
        self.commit(|m, _| {
            m.pos = pos;
            m.region = region;
            Ok(Vec::new())
        })?;
        self.sync()
    }

    /// Moves reading to `pos`, remembering the rotated files finished on the way.
    pub fn set_pos(&self, pos: Option<FilePos>, finished: &[Finished]) -> Result<(), JournalError> {
        self.commit(|m, _| {
            m.pos = pos;
            for f in finished {
                m.finished
                    .retain(|old| (old.head, old.id) != (f.head, f.id));
                m.finished.push(*f);
            }
            let excess = m.finished.len().saturating_sub(FINISHED_CAP);
            m.finished.drain(..excess);
            Ok(Vec::new())
        })
    }

    /// Makes everything written so far durable: the queue_log being read, then the journal.
    pub fn sync(&self) -> Result<(), JournalError> {
        self.sync_source();
        // Read before the flush: a commit racing with it may not be durable, and a seal
        // ahead of the disk would condemn a healthy journal after a crash.
        let generation = self.state.lock().expect("journal lock").meta.generation;
        // The vendored sled's flush ends with an fsync of its log (skipped when nothing
        // was written since the last one).
        self.db.flush().map_err(|e| match e {
            sled::Error::Io(io) => JournalError::Fsync(io),
            other => JournalError::Sled(other),
        })?;
        crate::health::meter::count_fsync();
        let mut st = self.state.lock().expect("journal lock");
        st.synced_generation = st.synced_generation.max(generation);
        drop(st);
        // Not fatal: a missing seal only weakens the rollback check.
        let _ = self.seal.write(generation);
        Ok(())
    }

    /// Makes the queue_log being read durable (see [`Journal::follow_source`]), unless
    /// nothing was written to it since the last time. Before every sync, and before
    /// every batch that leaves under an in-flight window without a sync of its own:
    /// rows shipped are then always durable in the file, as when every batch synced.
    pub fn sync_source(&self) {
        if let Some(source) = self.source.lock().expect("source lock").as_mut() {
            // Not fatal: the file is Asterisk's, and an error here only leaves the old
            // risk (a replay after a power cut, resolved with checkRow) in place.
            if let Err(e) = source.sync() {
                log::debug!("fdatasync of queue_log failed: {e}");
            }
        }
    }

    /// Whether commits were made since the last sync: they are in the page cache only,
    /// and a power cut may take them back (see the uploader's `SYNC_WHEN_IDLE`).
    pub fn has_unsynced(&self) -> bool {
        let st = self.state.lock().expect("journal lock");
        st.meta.generation > st.synced_generation
    }

    /// Bytes free for an unprivileged writer on the journal's filesystem.
    pub fn free_bytes(&self) -> io::Result<u64> {
        use std::os::unix::ffi::OsStrExt;
        let path = std::ffi::CString::new(self.dir.as_os_str().as_bytes())
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        // SAFETY: statvfs writes into the zeroed struct we own; the path is NUL-terminated.
        let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
        if unsafe { libc::statvfs(path.as_ptr(), &mut st) } != 0 {
            return Err(io::Error::last_os_error());
        }
        // The field types are narrower on some 32-bit targets.
        #[allow(clippy::useless_conversion)]
        let (blocks, size) = (u64::from(st.f_bavail), u64::from(st.f_frsize));
        Ok(blocks.saturating_mul(size))
    }
}

pub fn sync_dir(dir: &Path) -> io::Result<()> {
    crate::health::meter::count_fsync();
    File::open(dir)?.sync_all()
}

pub fn unix_now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

mod chunk;
mod error;
mod feedback;
mod meta;
mod open;
mod rings;
mod salvage;
mod spool;
mod targets;

pub use crate::machine::generations::Finished;
pub use error::JournalError;
pub use meta::{FileId, FilePos, Meta, Region, Takeover, TargetMeta, FINISHED_CAP};
pub use spool::{bit, Entry, Spooled};
pub use targets::Dropped;

use open::Seal;
pub use open::{mark_suspect, OpenReport};
pub use salvage::{SalvageFailure, SalvageReport};

use chunk::*;

pub use feedback::{fb_scope, FB_INTERRUPTED, FB_REMEMBER_MS};

#[cfg(test)]
mod tests;
