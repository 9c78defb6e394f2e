//! The sled journal: file position, spool of rows not yet acknowledged by every target
//! that wants them, each target's in-flight mark and ring of recently acknowledged rows,
//! in one tree so that every change is one atomic `apply_batch`.
//!
//! Keys: `m` meta, `r` (+ target slot) acknowledged rings, `s`+seq (u64 BE) spool chunks,
//! `f`+… feedback actions. Rows are spooled once: each carries a bit mask of the targets
//! (journal slots, at most 64) that still want it, and a row leaves the spool when the
//! last of them acknowledged it.
//! sled's `flush()` uses sync_file_range on Linux, which neither persists metadata nor
//! flushes the disk cache, so [`Journal::sync`] follows it with a real fsync of sled's
//! log file. A failed fsync is fatal: the page cache state is unknown after it.

use crate::resync::AckedRing;
use crate::row::Row;
use std::fmt;
use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FileId {
    pub dev: u64,
    pub ino: u64,
}

impl fmt::Display for FileId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.dev, self.ino)
    }
}

/// Where reading stopped, and what the file looked like just before that point.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FilePos {
    pub id: FileId,
    pub offset: u64,
    /// Hash and length of the bytes just before `offset` (at most 256).
    pub fp_hash: u64,
    pub fp_len: u32,
    /// Inside an overlong line that is being skipped up to its newline.
    pub skipping: bool,
    /// The file's modification time (ns) when reading it began: rotated files modified
    /// since then may hold generations of it that were never read (see `tail`).
    pub since: i64,
    /// Whether the file was QUEUE_LOG itself (live, may be truncated) when reading began.
    pub live: bool,
    /// Rows starting before this offset are read again after the file shrank or was
    /// rewritten, and are in doubt (0: none). Journaled, so that a crash in the middle
    /// of reading them again does not turn the rest into new rows.
    pub replay_until: u64,
    /// The latest replay pass (counts every time a file is read again; the rows it
    /// reads carry it).
    pub replay_pass: u64,
}

/// The rows of queue_log that existed when the journal was created: an earlier loader
/// may have uploaded them, so each target judges them against its watermark.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Region {
    pub id: FileId,
    pub end: u64,
}

/// What a target's partition held when this journal first reached it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Takeover {
    /// Not asked yet: rows of the region are spooled marked for a takeover check.
    Pending,
    /// The watermark (None: the partition was empty).
    Done(Option<i64>),
}

/// One target's cursor. Its slot index is its bit in the spool's masks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TargetMeta {
    /// The target's partition key (`rules::Target::key`; "" in single-target mode);
    /// None for a free slot.
    pub key: Option<String>,
    /// Inclusive spool range of the batch that may be on the server.
    pub inflight: Option<(u64, u64)>,
    /// Wall-clock milliseconds when that batch was sent. Written, not read: since the
    /// uploader became a state machine a restart waits a whole settle window (the last
    /// run's wall clock proves nothing). Kept because a qlship from before that reads it
    /// to time its resync after a downgrade, and a 0 there would not wait at all.
    pub inflight_sent_ms: u64,
    pub takeover: Takeover,
    /// Spooled rows this target still wants.
    pub pending_rows: u64,
    /// Rows the server acknowledged, ever (for status).
    pub acked_total: u64,
    /// Rows acknowledged on UTC day `acked_day` (days since 1970).
    pub acked_today: u64,
    pub acked_day: u64,
}

impl TargetMeta {
    fn new(key: Option<String>) -> TargetMeta {
        TargetMeta {
            key,
            inflight: None,
            inflight_sent_ms: 0,
            takeover: Takeover::Pending,
            pending_rows: 0,
            acked_total: 0,
            acked_today: 0,
            acked_day: 0,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Meta {
    /// Bumped by every commit: a journal that comes back older than the generation it
    /// had at its last fsync (see the seal) has lost durable data and is not trusted.
    pub generation: u64,
    pub pos: Option<FilePos>,
    pub next_seq: u64,
    pub spool_rows: u64,
    pub spool_bytes: u64,
    /// Set once, when the journal is created.
    pub region: Option<Region>,
    /// Lines of queue_log that were not rows (skipped and logged), ever.
    pub bad_lines: u64,
    /// Rows no enabled target wanted (no rule matched, or a disabled target's), ever.
    pub unrouted: u64,
    /// Rotated files read to the end, newest last (at most [`FINISHED_CAP`]), by identity
    /// and a hash of their first bytes (stable under late appends, changed by inode
    /// reuse): after a restart they are not read again.
    pub finished: Vec<(FileId, u64)>,
    /// Indexed by slot.
    pub targets: Vec<TargetMeta>,
}

pub const FINISHED_CAP: usize = 32;

/// Targets no longer configured, with the rows they still wanted.
pub type Dropped = Vec<(String, u64)>;

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
    chunk: u64,
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

#[derive(Debug)]
pub enum JournalError {
    /// Another process holds the journal.
    Locked(PathBuf),
    /// The state directory cannot be created or written.
    Dir(PathBuf, io::Error),
    Sled(sled::Error),
    /// A record that does not decode: the journal is damaged.
    Corrupt(String),
    /// fsync failed: fatal, never retried.
    Fsync(io::Error),
}

impl fmt::Display for JournalError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            JournalError::Locked(p) => write!(
                f,
                "journal {} is in use by another qlship (one daemon per --state-dir)",
                p.display()
            ),
            JournalError::Dir(p, e) => write!(
                f,
                "state dir {}: {e} (it must be writable by the user qlship runs as)",
                p.display()
            ),
            JournalError::Sled(e) if self.is_disk_full() => write!(
                f,
                "journal: disk full ({e}); free space on the state dir's filesystem, qlship resumes from its last durable state"
            ),
            JournalError::Sled(e) => write!(f, "journal: {e}"),
            JournalError::Corrupt(what) => write!(f, "journal is damaged: {what}"),
            JournalError::Fsync(e) => write!(f, "journal fsync failed: {e}"),
        }
    }
}

impl From<sled::Error> for JournalError {
    fn from(e: sled::Error) -> Self {
        JournalError::Sled(e)
    }
}

impl JournalError {
    /// Disk full despite the reserve: fatal, because sled stays failed after a write
    /// error; the restart resumes from the last durable state.
    pub fn is_disk_full(&self) -> bool {
        match self {
            JournalError::Sled(sled::Error::Io(e)) | JournalError::Fsync(e) => {
                e.raw_os_error() == Some(libc::ENOSPC)
            }
            _ => false,
        }
    }
}

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
    /// By slot: no row before this sequence number is wanted by the target (an
    /// in-memory shortcut for `peek` past other targets' backlog).
    hints: Vec<u64>,
}

pub struct Journal {
    db: sled::Db,
    dir: PathBuf,
    log_file: File,
    seal: Seal,
    state: Mutex<State>,
    /// The queue_log file being read, made durable before every sync (see
    /// [`Journal::follow_source`]).
    source: Mutex<Option<File>>,
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
        *self.source.lock().expect("source lock") = file;
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
        for edit in edits {
            let mut ring = if edit.reset {
                AckedRing::default()
            } else {
                st.rings.get(edit.slot).cloned().unwrap_or_default()
            };
            for (time, identity, replay, found_again) in edit.add {
                ring.add_as(time, identity, replay, found_again);
            }
            ring.prune();
            if edit.reset {
                ops.remove(ring_key(edit.slot));
            } else {
                ops.insert(ring_key(edit.slot), ring.encode());
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
        st.meta = meta;
        Ok(())
    }

    /// Targets with rows still to upload whose keys are not among `keys`: binding would
    /// drop their rows.
    pub fn stranded(&self, keys: &[String]) -> Vec<(String, u64)> {
        let meta = self.meta();
        let gone = meta.targets.iter().filter_map(|t| {
            let key = t.key.as_ref()?;
            (!keys.contains(key) && t.pending_rows > 0).then(|| (key.clone(), t.pending_rows))
        });
        gone.collect()
    }

    /// Matches the configured targets (by partition key) with journal slots: a known key
    /// keeps its slot and cursor, a new one gets a free slot (its takeover pending), and
    /// a slot whose key is no longer configured is freed and its bit cleared from every
    /// spooled row. Returns the slot of each key, and each dropped key with the number
    /// of rows it still wanted.
    pub fn bind(&self, keys: &[String]) -> Result<(Vec<usize>, Dropped), JournalError> {
        let meta = self.meta();
        let gone: Vec<usize> = meta
            .targets
            .iter()
            .enumerate()
            .filter(|(_, t)| t.key.as_ref().is_some_and(|k| !keys.contains(k)))
            .map(|(i, _)| i)
            .collect();
        let gone_mask = gone.iter().fold(0u64, |m, &i| m | bit(i));
        let mut dropped = Vec::new();
        let mut slots = Vec::new();
        self.commit(|m, ops| {
            let mut edits = Vec::new();
            if gone_mask != 0 {
                for kv in self.db.scan_prefix(b"s") {
                    let (k, v) = kv?;
                    let chunk = chunk_key_of(&k)?;
                    let rows = scan_chunk(chunk, &v)?;
                    if rows.iter().all(|e| e.want & gone_mask == 0) {
                        continue;
                    }
                    let keep = !gone_mask;
                    rewrite_chunk(m, ops, chunk, &v, &rows, |e| {
                        [e.want & keep, e.doubt & keep, e.takeover & keep, e.replay]
                    });
                }
                for &i in &gone {
                    let t = &mut m.targets[i];
                    dropped.push((t.key.clone().unwrap_or_default(), t.pending_rows));
                    *t = TargetMeta::new(None);
                    edits.push(RingEdit {
                        slot: i,
                        add: Vec::new(),
                        reset: true,
                    });
                }
            }
            for key in keys {
                let slot = match m.targets.iter().position(|t| t.key.as_ref() == Some(key)) {
                    Some(i) => i,
                    None => match m.targets.iter().position(|t| t.key.is_none()) {
                        Some(free) => {
                            m.targets[free] = TargetMeta::new(Some(key.clone()));
                            free
                        }
                        None if m.targets.len() < crate::rules::MAX_TARGETS => {
                            m.targets.push(TargetMeta::new(Some(key.clone())));
                            m.targets.len() - 1
                        }
                        None => {
                            return Err(JournalError::Corrupt(format!(
                                "more than {} targets",
                                crate::rules::MAX_TARGETS
                            )))
                        }
                    },
                };
                slots.push(slot);
            }
            Ok(edits)
        })?;
        if gone_mask != 0 {
            self.sync()?;
        }
        Ok((slots, dropped))
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

    /// Moves reading to `pos`, remembering the rotated files finished on the way.
    pub fn set_pos(
        &self,
        pos: Option<FilePos>,
        finished: &[(FileId, u64)],
    ) -> Result<(), JournalError> {
        self.commit(|m, _| {
            m.pos = pos;
            m.finished.extend_from_slice(finished);
            let excess = m.finished.len().saturating_sub(FINISHED_CAP);
            m.finished.drain(..excess);
            Ok(Vec::new())
        })
    }

    pub fn set_takeover(&self, slot: usize, t: Takeover) -> Result<(), JournalError> {
        self.commit(|m, _| {
            m.targets[slot].takeover = t;
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
                        let found_again = found && e.replay != 0 && e.in_doubt(slot);
                        (e.row.time, e.row.identity(), e.replay, found_again)
                    })
                    .collect(),
                reset: false,
            }])
        })
    }

    /// Makes everything written so far durable. sled's flush alone is not a full fsync.
    pub fn sync(&self) -> Result<(), JournalError> {
        if let Some(source) = self.source.lock().expect("source lock").as_ref() {
            // Not fatal: the file is Asterisk's, and an error here only leaves the old
            // risk (a replay after a power cut, resolved with checkRow) in place.
            if let Err(e) = source.sync_data() {
                log::debug!("fdatasync of queue_log failed: {e}");
            }
        }
        // Read before the flush: a commit racing with it may not be durable, and a seal
        // ahead of the disk would condemn a healthy journal after a crash.
        let generation = self.meta().generation;
        self.db.flush().map_err(|e| match e {
            sled::Error::Io(io) => JournalError::Fsync(io),
            other => JournalError::Sled(other),
        })?;
        self.log_file.sync_all().map_err(JournalError::Fsync)?;
        crate::health::meter::count_fsync();
        // Not fatal: a missing seal only weakens the rollback check.
        let _ = self.seal.write(generation);
        Ok(())
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
mod feedback;
mod meta;
mod open;
mod salvage;

use open::Seal;
pub use open::{mark_suspect, OpenReport};
pub use salvage::SalvageReport;

use chunk::*;

pub use feedback::{fb_scope, FB_INTERRUPTED, FB_REMEMBER_MS};

#[cfg(test)]
mod tests;
