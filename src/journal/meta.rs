//! The journal's meta record (positions, counters, one cursor per target) and its
//! encodings: version 3 as written now, with the replay fields appended; version 2 (one
//! target, before the split) still read.

use crate::machine::generations::Finished;
use crate::row::{put_varint, Cursor, DecodeError};
use std::fmt;

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
    /// Hash of the file's first line ([`crate::machine::generations::head_of`]): finds
    /// it again once compressed, copied or rewritten (0: not known, an older journal).
    pub head: u64,
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
    /// Rows spooled with a sequence number below this are in doubt for this target: an
    /// earlier run may have sent rows under these numbers in batches covered by an
    /// in-flight window (see `Journal::settle`) whose spooling a power cut took back,
    /// and the rows read again now get the same numbers. Raised at every open to the
    /// end of the in-flight mark found; never lowered (a second cut before the reader
    /// is past it must find it again).
    pub reread_doubt_below: u64,
    pub takeover: Takeover,
    /// Spooled rows this target still wants.
    pub pending_rows: u64,
    /// Rows the server acknowledged, ever (for status).
    pub acked_total: u64,
    /// Rows acknowledged on UTC day `acked_day` (days since 1970).
    pub acked_today: u64,
    pub acked_day: u64,
    /// Which base of this slot's ring of acknowledged rows is current, in the tree of
    /// bases (`rings`); 0: none there, the base (if any) is the main tree's `r` record
    /// of journals from before that tree.
    pub ring_base: u64,
}

impl TargetMeta {
    pub(super) fn new(key: Option<String>) -> TargetMeta {
        TargetMeta {
            key,
            inflight: None,
            inflight_sent_ms: 0,
            reread_doubt_below: 0,
            takeover: Takeover::Pending,
            pending_rows: 0,
            acked_total: 0,
            acked_today: 0,
            acked_day: 0,
            ring_base: 0,
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
    /// Generations read and left, newest last (at most [`FINISHED_CAP`]), by a hash of
    /// their first line, how far each was read and the fingerprint there: after a
    /// restart they are not read again, and one that grew since is read on from there.
    pub finished: Vec<Finished>,
    /// Indexed by slot.
    pub targets: Vec<TargetMeta>,
}

pub const FINISHED_CAP: usize = 32;

/// 3: targets and masks. 2 (one target, no masks) is still read.
const META_VERSION: u8 = 3;

pub(super) fn put_pos(o: &mut Vec<u8>, pos: &Option<FilePos>) {
    match pos {
        None => o.push(0),
        Some(p) => {
            o.push(1);
            for v in [p.id.dev, p.id.ino, p.offset, p.fp_hash] {
                o.extend_from_slice(&v.to_be_bytes());
            }
            put_varint(o, u64::from(p.fp_len));
            o.push(u8::from(p.skipping));
            o.extend_from_slice(&p.since.to_be_bytes());
            o.push(u8::from(p.live));
        }
    }
}

fn get_pos(c: &mut Cursor<'_>) -> Result<Option<FilePos>, DecodeError> {
    Ok(match c.u8()? {
        0 => None,
        _ => {
            let id = FileId {
                dev: c.u64()?,
                ino: c.u64()?,
            };
            let pos = FilePos {
                id,
                offset: c.u64()?,
                fp_hash: c.u64()?,
                fp_len: u32::try_from(c.varint()?).unwrap_or(u32::MAX),
                skipping: c.u8()? != 0,
                since: c.u64()? as i64,
                live: c.u8()? != 0,
                replay_until: 0,
                replay_pass: 0,
                head: 0,
            };
            // Never trusted: the reader subtracts the fingerprint's length from the
            // offset and reads that many bytes.
            if pos.fp_len > 256 || u64::from(pos.fp_len) > pos.offset {
                return Err(DecodeError::OutOfRange("fingerprint length"));
            }
            Some(pos)
        }
    })
}

/// Identity and head; their lengths and fingerprints follow at the end of the record
/// (added later).
fn put_finished(o: &mut Vec<u8>, finished: &[Finished]) {
    put_varint(o, finished.len() as u64);
    for f in finished {
        for v in [f.id.dev, f.id.ino, f.head] {
            put_varint(o, v);
        }
    }
}

fn get_finished(c: &mut Cursor<'_>) -> Result<Vec<Finished>, DecodeError> {
    let n = c.varint()?.min(FINISHED_CAP as u64);
    let mut finished = Vec::new();
    for _ in 0..n {
        let id = FileId {
            dev: c.varint()?,
            ino: c.varint()?,
        };
        finished.push(Finished {
            id,
            head: c.varint()?,
            // Read to their end: a journal without lengths never reads them on.
            len: u64::MAX,
            fp: 0,
        });
    }
    Ok(finished)
}

impl Meta {
    pub(super) fn encode(&self) -> Vec<u8> {
        let mut o = vec![META_VERSION];
        put_varint(&mut o, self.generation);
        put_pos(&mut o, &self.pos);
        for v in [self.next_seq, self.spool_rows, self.spool_bytes] {
            put_varint(&mut o, v);
        }
        match self.region {
            None => o.push(0),
            Some(r) => {
                o.push(1);
                for v in [r.id.dev, r.id.ino, r.end] {
                    o.extend_from_slice(&v.to_be_bytes());
                }
            }
        }
        put_varint(&mut o, self.bad_lines);
        put_varint(&mut o, self.unrouted);
        put_finished(&mut o, &self.finished);
        put_varint(&mut o, self.targets.len() as u64);
        for t in &self.targets {
            match &t.key {
                None => o.push(0),
                Some(k) => {
                    o.push(1);
                    put_varint(&mut o, k.len() as u64);
                    o.extend_from_slice(k.as_bytes());
                }
            }
            match t.inflight {
                None => o.push(0),
                Some((a, b)) => {
                    o.push(1);
                    put_varint(&mut o, a);
                    put_varint(&mut o, b);
                    put_varint(&mut o, t.inflight_sent_ms);
                }
            }
            match t.takeover {
                Takeover::Pending => o.push(0),
                Takeover::Done(None) => o.push(1),
                Takeover::Done(Some(w)) => {
                    o.push(2);
                    o.extend_from_slice(&w.to_be_bytes());
                }
            }
            for v in [t.pending_rows, t.acked_total, t.acked_today, t.acked_day] {
                put_varint(&mut o, v);
            }
        }
        // Appended after version 3's fields: a version-3 journal without it reads as 0,
        // and an older qlship ignores it.
        put_varint(&mut o, self.pos.map_or(0, |p| p.replay_until));
        put_varint(&mut o, self.pos.map_or(0, |p| p.replay_pass));
        // Appended later still: the head of the file being read, and how far each
        // finished generation was read and the fingerprint there.
        put_varint(&mut o, self.pos.map_or(0, |p| p.head));
        for f in &self.finished {
            put_varint(&mut o, f.len);
            put_varint(&mut o, f.fp);
        }
        // Appended later still: each slot's ring base. A qlship from before it drops it
        // when it rewrites the meta, and writes its bases as `r` again, which a later one
        // then reads (0: the `r` record), so a downgrade never leaves a stale base named.
        for t in &self.targets {
            put_varint(&mut o, t.ring_base);
        }
        // And later: each target's bound of rows read again in doubt.
        for t in &self.targets {
            put_varint(&mut o, t.reread_doubt_below);
        }
        o
    }

    pub(super) fn decode(bytes: &[u8]) -> Result<Meta, DecodeError> {
        let mut c = Cursor { bytes, at: 0 };
        match c.u8()? {
            2 => return Self::decode_v2(c),
            META_VERSION => {}
            _ => return Err(DecodeError::Truncated),
        }
        let generation = c.varint()?;
        let pos = get_pos(&mut c)?;
        let next_seq = c.varint()?;
        let spool_rows = c.varint()?;
        let spool_bytes = c.varint()?;
        let region = match c.u8()? {
            0 => None,
            _ => Some(Region {
                id: FileId {
                    dev: c.u64()?,
                    ino: c.u64()?,
                },
                end: c.u64()?,
            }),
        };
        let bad_lines = c.varint()?;
        let unrouted = c.varint()?;
        let finished = get_finished(&mut c)?;
        let n = c.varint()?.min(crate::rules::MAX_TARGETS as u64 * 2);
        let mut targets = Vec::new();
        for _ in 0..n {
            let key = match c.u8()? {
                0 => None,
                _ => {
                    let len = c.varint()? as usize;
                    Some(String::from_utf8_lossy(c.take(len)?).into_owned())
                }
            };
            let mut t = TargetMeta::new(key);
            if c.u8()? != 0 {
                t.inflight = Some((c.varint()?, c.varint()?));
                t.inflight_sent_ms = c.varint()?;
            }
            t.takeover = match c.u8()? {
                0 => Takeover::Pending,
                1 => Takeover::Done(None),
                _ => Takeover::Done(Some(c.u64()? as i64)),
            };
            t.pending_rows = c.varint()?;
            t.acked_total = c.varint()?;
            t.acked_today = c.varint()?;
            t.acked_day = c.varint()?;
            targets.push(t);
        }
        let mut pos = pos;
        let mut finished = finished;
        if c.at < bytes.len() {
            let replay_until = c.varint()?;
            let replay_pass = c.varint()?;
            if let Some(p) = pos.as_mut() {
                p.replay_until = replay_until;
                p.replay_pass = replay_pass;
            }
        }
        if c.at < bytes.len() {
            let head = c.varint()?;
            if let Some(p) = pos.as_mut() {
                p.head = head;
            }
            for f in &mut finished {
                f.len = c.varint()?;
                f.fp = c.varint()?;
            }
        }
        if c.at < bytes.len() {
            for t in &mut targets {
                t.ring_base = c.varint()?;
            }
        }
        if c.at < bytes.len() {
            for t in &mut targets {
                t.reread_doubt_below = c.varint()?;
            }
        }
        Ok(Meta {
            generation,
            pos,
            next_seq,
            spool_rows,
            spool_bytes,
            region,
            bad_lines,
            unrouted,
            finished,
            targets,
        })
    }

    /// A journal written before targets existed: its one target is the single-target
    /// mode's (key ""), and every spooled row is that target's.
    pub(super) fn decode_v2(mut c: Cursor<'_>) -> Result<Meta, DecodeError> {
        let generation = c.varint()?;
        let pos = get_pos(&mut c)?;
        let next_seq = c.varint()?;
        let spool_rows = c.varint()?;
        let spool_bytes = c.varint()?;
        let mut t = TargetMeta::new(Some(String::new()));
        if c.u8()? != 0 {
            t.inflight = Some((c.varint()?, c.varint()?));
            t.inflight_sent_ms = c.varint()?;
        }
        let region = match c.u8()? {
            0 => {
                // The takeover never happened: the region is the pinned file, whole.
                t.takeover = Takeover::Pending;
                pos.map(|p| Region {
                    id: p.id,
                    end: u64::MAX,
                })
            }
            1 => {
                t.takeover = Takeover::Done(None);
                None
            }
            _ => {
                let id = FileId {
                    dev: c.u64()?,
                    ino: c.u64()?,
                };
                let end = c.u64()?;
                t.takeover = Takeover::Done(Some(c.u64()? as i64));
                Some(Region { id, end })
            }
        };
        let bad_lines = c.varint()?;
        let finished = get_finished(&mut c)?;
        t.acked_total = c.varint()?;
        t.acked_today = c.varint()?;
        t.acked_day = c.varint()?;
        t.pending_rows = spool_rows;
        Ok(Meta {
            generation,
            pos,
            next_seq,
            spool_rows,
            spool_bytes,
            region,
            bad_lines,
            unrouted: 0,
            finished,
            targets: vec![t],
        })
    }
}
