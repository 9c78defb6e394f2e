//! The sled journal: file position, spool of unacknowledged rows, in-flight mark, and
//! the ring of recently acknowledged rows, in one tree so that every change is one
//! atomic `apply_batch`.
//!
//! Keys: `m` meta, `r` acknowledged ring, `s`+seq (u64 BE) spooled rows.
//! sled's `flush()` uses sync_file_range on Linux, which neither persists metadata nor
//! flushes the disk cache, so [`Journal::sync`] follows it with a real fsync of sled's
//! log file. A failed fsync is fatal: the page cache state is unknown after it.

use crate::resync::AckedRing;
use crate::row::{put_varint, Cursor, DecodeError, Row};
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
}

/// Rows of the file that existed when a fresh journal took over a partition, judged
/// against the server's watermark.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Region {
    pub id: FileId,
    pub end: u64,
    pub watermark: i64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Takeover {
    /// Fresh journal: the server's watermark has not been asked yet; nothing is read.
    Pending,
    Done(Option<Region>),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Meta {
    /// Bumped by every commit: a journal that comes back older than the generation it
    /// had at its last fsync (see the seal) has lost durable data and is not trusted.
    pub generation: u64,
    pub pos: Option<FilePos>,
    pub next_seq: u64,
    pub spool_rows: u64,
    pub spool_bytes: u64,
    /// Inclusive spool range of the batch that may be on the server.
    pub inflight: Option<(u64, u64)>,
    /// Wall-clock milliseconds when that batch was sent: its resync waits for a server
    /// that may still be storing it.
    pub inflight_sent_ms: u64,
    pub takeover: Takeover,
    /// Lines of queue_log that were not rows (skipped and logged), ever.
    pub bad_lines: u64,
    /// Rotated files read to the end, newest last (at most [`FINISHED_CAP`]), by identity
    /// and a hash of their first bytes (stable under late appends, changed by inode
    /// reuse): after a restart they are not read again.
    pub finished: Vec<(FileId, u64)>,
    /// Rows the server acknowledged, ever (for status).
    pub acked_total: u64,
    /// Rows acknowledged on UTC day `acked_day` (days since 1970).
    pub acked_today: u64,
    pub acked_day: u64,
}

pub const FINISHED_CAP: usize = 32;

impl Default for Meta {
    fn default() -> Self {
        Meta {
            generation: 0,
            pos: None,
            next_seq: 0,
            spool_rows: 0,
            spool_bytes: 0,
            inflight: None,
            inflight_sent_ms: 0,
            takeover: Takeover::Pending,
            bad_lines: 0,
            finished: Vec::new(),
            acked_total: 0,
            acked_today: 0,
            acked_day: 0,
        }
    }
}

const META_VERSION: u8 = 2;

impl Meta {
    fn encode(&self) -> Vec<u8> {
        let mut o = vec![META_VERSION];
        put_varint(&mut o, self.generation);
        match self.pos {
            None => o.push(0),
            Some(p) => {
                o.push(1);
                for v in [p.id.dev, p.id.ino, p.offset, p.fp_hash] {
                    o.extend_from_slice(&v.to_be_bytes());
                }
                put_varint(&mut o, u64::from(p.fp_len));
                o.push(u8::from(p.skipping));
                o.extend_from_slice(&p.since.to_be_bytes());
                o.push(u8::from(p.live));
            }
        }
        for v in [self.next_seq, self.spool_rows, self.spool_bytes] {
            put_varint(&mut o, v);
        }
        match self.inflight {
            None => o.push(0),
            Some((a, b)) => {
                o.push(1);
                put_varint(&mut o, a);
                put_varint(&mut o, b);
                put_varint(&mut o, self.inflight_sent_ms);
            }
        }
        match self.takeover {
            Takeover::Pending => o.push(0),
            Takeover::Done(None) => o.push(1),
            Takeover::Done(Some(r)) => {
                o.push(2);
                for v in [r.id.dev, r.id.ino, r.end, r.watermark as u64] {
                    o.extend_from_slice(&v.to_be_bytes());
                }
            }
        }
        put_varint(&mut o, self.bad_lines);
        put_varint(&mut o, self.finished.len() as u64);
        for (id, size) in &self.finished {
            for v in [id.dev, id.ino, *size] {
                put_varint(&mut o, v);
            }
        }
        put_varint(&mut o, self.acked_total);
        put_varint(&mut o, self.acked_today);
        put_varint(&mut o, self.acked_day);
        o
    }

    fn decode(bytes: &[u8]) -> Result<Meta, DecodeError> {
        let mut c = Cursor { bytes, at: 0 };
        if c.u8()? != META_VERSION {
            return Err(DecodeError::Truncated);
        }
        let generation = c.varint()?;
        let pos = match c.u8()? {
            0 => None,
            _ => {
                let id = FileId {
                    dev: c.u64()?,
                    ino: c.u64()?,
                };
                let offset = c.u64()?;
                let fp_hash = c.u64()?;
                let fp_len = c.varint()? as u32;
                let skipping = c.u8()? != 0;
                let since = c.u64()? as i64;
                let live = c.u8()? != 0;
                Some(FilePos {
                    id,
                    offset,
                    fp_hash,
                    fp_len,
                    skipping,
                    since,
                    live,
                })
            }
        };
        let next_seq = c.varint()?;
        let spool_rows = c.varint()?;
        let spool_bytes = c.varint()?;
        let (inflight, inflight_sent_ms) = match c.u8()? {
            0 => (None, 0),
            _ => (Some((c.varint()?, c.varint()?)), c.varint()?),
        };
        let takeover = match c.u8()? {
            0 => Takeover::Pending,
            1 => Takeover::Done(None),
            _ => Takeover::Done(Some(Region {
                id: FileId {
                    dev: c.u64()?,
                    ino: c.u64()?,
                },
                end: c.u64()?,
                watermark: c.u64()? as i64,
            })),
        };
        let bad_lines = c.varint()?;
        let n = c.varint()?.min(FINISHED_CAP as u64);
        let mut finished = Vec::new();
        for _ in 0..n {
            let id = FileId {
                dev: c.varint()?,
                ino: c.varint()?,
            };
            finished.push((id, c.varint()?));
        }
        let acked_total = c.varint()?;
        let acked_today = c.varint()?;
        let acked_day = c.varint()?;
        Ok(Meta {
            generation,
            pos,
            next_seq,
            spool_rows,
            spool_bytes,
            inflight,
            inflight_sent_ms,
            takeover,
            bad_lines,
            finished,
            acked_total,
            acked_today,
            acked_day,
        })
    }
}

/// A spooled row.
#[derive(Clone, Debug)]
pub struct Entry {
    pub seq: u64,
    /// Must be checked with checkRow before it is sent (takeover at the watermark).
    pub in_doubt: bool,
    pub row: Row,
    /// Key of the spool chunk holding it.
    chunk: u64,
}

/// The spool is a sequence of chunks, one per read step (up to a few hundred rows), each
/// one sled value: one key per row made sled ~5x slower and its log several times the
/// size of the data. A chunk is keyed by the sequence number of its first row when it
/// was written; each row inside carries its own sequence number, so rows acknowledged
/// out of a chunk's middle (resync) are removed by rewriting the chunk.
const CHUNK_VERSION: u8 = 1;
const FLAG_IN_DOUBT: u8 = 1;

fn spool_key(seq: u64) -> [u8; 9] {
    let mut k = [b's'; 9];
    k[1..].copy_from_slice(&seq.to_be_bytes());
    k
}

fn encode_chunk<'a>(rows: impl Iterator<Item = (u64, bool, &'a Row)>) -> Vec<u8> {
    let mut v = vec![CHUNK_VERSION];
    let mut row_bytes = Vec::with_capacity(160);
    for (seq, in_doubt, row) in rows {
        put_varint(&mut v, seq);
        v.push(if in_doubt { FLAG_IN_DOUBT } else { 0 });
        row_bytes.clear();
        row.encode_into(&mut row_bytes);
        put_varint(&mut v, row_bytes.len() as u64);
        v.extend_from_slice(&row_bytes);
    }
    v
}

fn decode_chunk(chunk: u64, value: &[u8]) -> Result<Vec<Entry>, JournalError> {
    let bad = |e: DecodeError| JournalError::Corrupt(format!("spool chunk {chunk}: {e}"));
    let mut c = Cursor {
        bytes: value,
        at: 0,
    };
    if c.u8().map_err(bad)? != CHUNK_VERSION {
        return Err(JournalError::Corrupt(format!(
            "spool chunk {chunk}: unknown version"
        )));
    }
    let mut out = Vec::new();
    while c.at < value.len() {
        let seq = c.varint().map_err(bad)?;
        let in_doubt = c.u8().map_err(bad)? & FLAG_IN_DOUBT != 0;
        let len = c.varint().map_err(bad)? as usize;
        let row = Row::decode(c.take(len).map_err(bad)?).map_err(bad)?;
        out.push(Entry {
            seq,
            in_doubt,
            row,
            chunk,
        });
    }
    Ok(out)
}

fn chunk_key_of(key: &[u8]) -> Result<u64, JournalError> {
    key.get(1..9)
        .and_then(|k| k.try_into().ok())
        .map(u64::from_be_bytes)
        .ok_or_else(|| JournalError::Corrupt("spool key".into()))
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

struct State {
    meta: Meta,
    ring: AckedRing,
}

pub struct Journal {
    db: sled::Db,
    dir: PathBuf,
    log_file: File,
    seal: Seal,
    state: Mutex<State>,
}

/// `journal.seal` beside the journal: the generation the journal had at its last
/// successful fsync. Written after the fsync without one of its own: if the write is
/// lost in a power cut the seal is merely older, which never raises a false alarm.
struct Seal {
    path: PathBuf,
}

impl Seal {
    fn read(&self) -> Option<u64> {
        let b = std::fs::read(&self.path).ok()?;
        let g = u64::from_be_bytes(b.get(0..8)?.try_into().ok()?);
        let check = u64::from_be_bytes(b.get(8..16)?.try_into().ok()?);
        (check == seal_check(g)).then_some(g)
    }

    fn write(&self, generation: u64) -> io::Result<()> {
        let mut b = [0u8; 16];
        b[..8].copy_from_slice(&generation.to_be_bytes());
        b[8..].copy_from_slice(&seal_check(generation).to_be_bytes());
        std::fs::write(&self.path, b)
    }
}

fn seal_check(g: u64) -> u64 {
    crate::tail::fnv(&g.to_be_bytes()) ^ 0x716c_7368_6970
}

/// `journal.suspect` exists while the journal is being opened, counting the opens that
/// did not finish, or says the journal was found damaged at run time. After
/// [`MAX_FAILED_OPENS`] unfinished opens in a row (sled may panic or abort on a damaged
/// log), or once damaged, the journal is moved aside instead of crash-looping.
/// High enough that power cuts during the few milliseconds of an open (which are
/// harmless) practically never add up to it; a sled that aborts on every open of a
/// damaged log reaches it after a few respawns.
const MAX_FAILED_OPENS: u32 = 5;
const DAMAGED: &str = "damaged";

fn suspect_marker(state_dir: &Path) -> PathBuf {
    state_dir.join("journal.suspect")
}

/// Records that the journal is damaged, so the next start moves it aside.
pub fn mark_suspect(state_dir: &Path) {
    let _ = std::fs::write(suspect_marker(state_dir), format!("{DAMAGED}\n"));
}

/// What opening found, for the startup log.
#[derive(Debug, Default)]
pub struct OpenReport {
    /// A damaged journal moved aside to this path.
    pub moved_aside: Option<PathBuf>,
    /// Why it was moved aside, for the log.
    pub why: String,
    pub fresh: bool,
}

impl Journal {
    /// Opens (or creates) the journal in `state_dir/journal`. A journal that does not open
    /// or whose records do not decode is moved aside, kept for inspection, and a fresh one
    /// is created: the takeover resync then finds where the server stands.
    pub fn open(state_dir: &Path, cache_bytes: u64) -> Result<(Journal, OpenReport), JournalError> {
        create_private_dir(state_dir).map_err(|e| JournalError::Dir(state_dir.to_owned(), e))?;
        let dir = state_dir.join("journal");
        let marker = suspect_marker(state_dir);
        let mut report = OpenReport::default();
        // A kill or power cut during one open is normal; sled crashing on every open is not.
        let failed_opens = match std::fs::read_to_string(&marker) {
            Ok(t) if t.trim() == DAMAGED => MAX_FAILED_OPENS,
            Ok(t) => t.trim().parse().unwrap_or(0),
            Err(_) => 0,
        };
        if failed_opens >= MAX_FAILED_OPENS && dir.exists() {
            report.moved_aside = Some(move_aside(state_dir, &dir)?);
            report.why = format!("{failed_opens} opens in a row did not finish, or it was found damaged while running");
        }
        let attempts = if report.moved_aside.is_some() {
            1
        } else {
            failed_opens + 1
        };
        std::fs::write(&marker, format!("{attempts}\n"))
            .map_err(|e| JournalError::Dir(state_dir.to_owned(), e))?;
        let seal = Seal {
            path: state_dir.join("journal.seal"),
        };
        let opened = match Self::open_waiting_for_lock(&dir, cache_bytes, &seal) {
            Err(JournalError::Corrupt(why)) if report.moved_aside.is_none() => {
                report.moved_aside = Some(move_aside(state_dir, &dir)?);
                report.why = why;
                Self::open_waiting_for_lock(&dir, cache_bytes, &seal)
            }
            other => other,
        };
        let _ = std::fs::remove_file(&marker);
        // The removal must outlive a power cut: otherwise every cut soon after a start
        // brings the marker back, the count climbs, and a healthy journal is condemned
        // (tests/powercut.rs caught it).
        let _ = sync_dir(state_dir);
        let journal = opened?;
        report.fresh = journal.meta().generation == 0;
        Ok((journal, report))
    }

    fn open_waiting_for_lock(
        dir: &Path,
        cache_bytes: u64,
        seal: &Seal,
    ) -> Result<Journal, JournalError> {
        // sled lets go of its lock a moment after the previous owner closed it (its
        // threads wind down): a respawned daemon waits for it rather than failing.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(3);
        loop {
            // Where panics unwind (debug builds, OpenWrt's SDK), a sled that panics on a
            // damaged log is recognised at once; with panic=abort the marker counts.
            let attempt = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                Self::open_dir(dir, cache_bytes, seal)
            }))
            .unwrap_or_else(|_| {
                Err(JournalError::Corrupt(
                    "sled panicked while opening it".into(),
                ))
            });
            match attempt {
                Err(JournalError::Locked(_)) if std::time::Instant::now() < deadline => {
                    std::thread::sleep(std::time::Duration::from_millis(50));
                }
                other => return other,
            }
        }
    }

    fn open_dir(dir: &Path, cache_bytes: u64, seal: &Seal) -> Result<Journal, JournalError> {
        let db = sled::Config::new()
            .path(dir)
            .cache_capacity(cache_bytes)
            // We flush (and fsync) exactly when durability is needed; sled's own timer
            // would wake the process twice a second and write to flash while idle.
            .flush_every_ms(None)
            .open()
            .map_err(|e| match e {
                sled::Error::Io(ref io) if io.kind() == io::ErrorKind::WouldBlock => {
                    JournalError::Locked(dir.to_owned())
                }
                sled::Error::Io(ref io) if io.to_string().contains("lock") => {
                    JournalError::Locked(dir.to_owned())
                }
                sled::Error::Io(ref io)
                    if matches!(
                        io.kind(),
                        io::ErrorKind::InvalidData | io::ErrorKind::UnexpectedEof
                    ) =>
                {
                    JournalError::Corrupt(format!("sled: {e}"))
                }
                sled::Error::Corruption { .. }
                | sled::Error::Unsupported(_)
                | sled::Error::ReportableBug(_) => JournalError::Corrupt(format!("sled: {e}")),
                other => JournalError::Sled(other),
            })?;
        let meta = match db.get(b"m")? {
            None => Meta::default(),
            Some(v) => Meta::decode(&v).map_err(|e| JournalError::Corrupt(format!("meta: {e}")))?,
        };
        let ring = match db.get(b"r")? {
            None => AckedRing::default(),
            Some(v) => {
                AckedRing::decode(&v).map_err(|e| JournalError::Corrupt(format!("ring: {e}")))?
            }
        };
        if let Some(sealed) = seal.read() {
            if meta.generation < sealed {
                return Err(JournalError::Corrupt(format!(
                    "it came back at generation {} but had reached {sealed} when last made durable",
                    meta.generation
                )));
            }
        }
        let log_file =
            File::open(dir.join("db")).map_err(|e| JournalError::Dir(dir.to_owned(), e))?;
        sync_dir(dir).map_err(JournalError::Fsync)?;
        Ok(Journal {
            db,
            dir: dir.to_owned(),
            log_file,
            seal: Seal {
                path: seal.path.clone(),
            },
            state: Mutex::new(State { meta, ring }),
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn meta(&self) -> Meta {
        self.state.lock().expect("journal lock").meta.clone()
    }

    pub fn ring(&self) -> AckedRing {
        self.state.lock().expect("journal lock").ring.clone()
    }

    /// Applies `change` to a copy of the meta (it may add operations to the batch), writes
    /// the new meta with those operations in one atomic batch, and only then makes it the
    /// current meta. The lock serialises every change, so sequence numbers never collide.
    fn commit(
        &self,
        change: impl FnOnce(&mut Meta, &mut AckedRing, &mut sled::Batch) -> Result<bool, JournalError>,
    ) -> Result<(), JournalError> {
        let mut st = self.state.lock().expect("journal lock");
        let mut meta = st.meta.clone();
        let mut ring = st.ring.clone();
        let mut ops = sled::Batch::default();
        let ring_changed = change(&mut meta, &mut ring, &mut ops)?;
        meta.generation += 1;
        ops.insert(&b"m"[..], meta.encode());
        if ring_changed {
            ring.prune();
            ops.insert(&b"r"[..], ring.encode());
        }
        self.db.apply_batch(ops)?;
        st.meta = meta;
        st.ring = ring;
        Ok(())
    }

    /// Spools rows read from the file together with the position after them and the
    /// number of lines skipped on the way, as one chunk.
    pub fn append(
        &self,
        rows: &[(Row, bool)],
        pos: FilePos,
        bad_lines: u64,
    ) -> Result<(), JournalError> {
        self.commit(|m, _, ops| {
            m.bad_lines += bad_lines;
            if !rows.is_empty() {
                let first = m.next_seq;
                let value = encode_chunk(
                    rows.iter()
                        .zip(first..)
                        .map(|((row, d), seq)| (seq, *d, row)),
                );
                m.spool_bytes += (value.len() + 9) as u64;
                ops.insert(&spool_key(first)[..], value);
                m.next_seq += rows.len() as u64;
                m.spool_rows += rows.len() as u64;
            }
            m.pos = Some(pos);
            Ok(false)
        })
    }

    /// Moves reading to `pos`, remembering the rotated files finished on the way.
    pub fn set_pos(
        &self,
        pos: Option<FilePos>,
        finished: &[(FileId, u64)],
    ) -> Result<(), JournalError> {
        self.commit(|m, _, _| {
            m.pos = pos;
            m.finished.extend_from_slice(finished);
            let excess = m.finished.len().saturating_sub(FINISHED_CAP);
            m.finished.drain(..excess);
            Ok(false)
        })
    }

    pub fn set_takeover(&self, t: Takeover) -> Result<(), JournalError> {
        self.commit(|m, _, _| {
            m.takeover = t;
            Ok(false)
        })
    }

    /// The first `max` spooled rows, in file order.
    pub fn peek(&self, max: usize) -> Result<Vec<Entry>, JournalError> {
        let mut out = Vec::new();
        for kv in self.db.scan_prefix(b"s") {
            let (k, v) = kv?;
            out.extend(decode_chunk(chunk_key_of(&k)?, &v)?);
            if out.len() >= max {
                out.truncate(max);
                break;
            }
        }
        Ok(out)
    }

    /// The spooled rows with sequence numbers in `from..=to`.
    pub fn range(&self, from: u64, to: u64) -> Result<Vec<Entry>, JournalError> {
        let mut out = Vec::new();
        // Chunks start at or before their rows: begin with the last one keyed <= from.
        let start = match self.db.range(spool_key(0)..=spool_key(from)).next_back() {
            Some(kv) => chunk_key_of(&kv?.0)?,
            None => from,
        };
        for kv in self.db.range(spool_key(start)..=spool_key(to)) {
            let (k, v) = kv?;
            let rows = decode_chunk(chunk_key_of(&k)?, &v)?;
            out.extend(rows.into_iter().filter(|e| e.seq >= from && e.seq <= to));
        }
        Ok(out)
    }

    /// Durably records that `from..=to` is about to be sent: after a crash, those rows are
    /// checked with checkRow instead of being sent blindly a second time.
    pub fn mark_inflight(&self, from: u64, to: u64) -> Result<(), JournalError> {
        let now = unix_now_ms();
        self.commit(|m, _, _| {
            m.inflight = Some((from, to));
            m.inflight_sent_ms = now;
            Ok(false)
        })?;
        self.sync()
    }

    /// Forgets the in-flight mark when the request certainly never reached the server.
    pub fn clear_inflight(&self) -> Result<(), JournalError> {
        self.commit(|m, _, _| {
            m.inflight = None;
            Ok(false)
        })
    }

    /// Drops `stored` (acknowledged by the server) from the spool, remembering them in the
    /// ring; clears the in-doubt flag of `to_send`; clears the in-flight mark.
    pub fn settle(&self, stored: &[&Entry], to_send: &[&Entry]) -> Result<(), JournalError> {
        let mut chunks: Vec<u64> = stored.iter().chain(to_send).map(|e| e.chunk).collect();
        chunks.sort_unstable();
        chunks.dedup();
        let drop: std::collections::HashSet<u64> = stored.iter().map(|e| e.seq).collect();
        let clear: std::collections::HashSet<u64> = to_send.iter().map(|e| e.seq).collect();
        self.commit(|m, ring, ops| {
            for chunk in chunks {
                let key = spool_key(chunk);
                let Some(old) = self.db.get(key)? else {
                    continue;
                };
                let rows = decode_chunk(chunk, &old)?;
                let before = rows.len();
                let kept: Vec<Entry> = rows
                    .into_iter()
                    .filter(|e| !drop.contains(&e.seq))
                    .collect();
                m.spool_rows = m.spool_rows.saturating_sub((before - kept.len()) as u64);
                m.spool_bytes = m.spool_bytes.saturating_sub((old.len() + 9) as u64);
                if kept.is_empty() {
                    ops.remove(&key[..]);
                } else {
                    let value = encode_chunk(
                        kept.iter()
                            .map(|e| (e.seq, e.in_doubt && !clear.contains(&e.seq), &e.row)),
                    );
                    m.spool_bytes += (value.len() + 9) as u64;
                    ops.insert(&key[..], value);
                }
            }
            for e in stored {
                ring.add(e.row.time, e.row.identity());
            }
            m.acked_total += stored.len() as u64;
            let today = unix_now() / 86_400;
            if m.acked_day != today {
                m.acked_day = today;
                m.acked_today = 0;
            }
            m.acked_today += stored.len() as u64;
            m.inflight = None;
            Ok(!stored.is_empty())
        })
    }

    /// Makes everything written so far durable. sled's flush alone is not a full fsync.
    pub fn sync(&self) -> Result<(), JournalError> {
        // Read before the flush: a commit racing with it may not be durable, and a seal
        // ahead of the disk would condemn a healthy journal after a crash.
        let generation = self.meta().generation;
        self.db.flush().map_err(|e| match e {
            sled::Error::Io(io) => JournalError::Fsync(io),
            other => JournalError::Sled(other),
        })?;
        self.log_file.sync_all().map_err(JournalError::Fsync)?;
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

// ---------------------------------------------------------------- feedback actions

/// Feedback containers are remembered under `f` + id: the mark that a container was
/// started is durable before its first byte goes to Asterisk, so a container never runs
/// twice, whatever crashes; its result is kept until a `checkFb` carrying it was
/// accepted, then the id alone is kept for [`FB_REMEMBER_MS`] against resends.
const FB_RUNNING: u8 = 1;
const FB_DONE: u8 = 2;
const FB_REPORTED: u8 = 3;
pub const FB_REMEMBER_MS: u64 = 24 * 3600 * 1000;
/// What a container that was running when qlship died is reported as.
pub const FB_INTERRUPTED: &str =
    "interrupted: qlship stopped while running it; not run again, check the PBX";

fn fb_key(id: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(id.len() + 1);
    k.push(b'f');
    k.extend_from_slice(id.as_bytes());
    k
}

fn fb_value(state: u8, at_ms: u64, ok: bool, text: &str) -> Vec<u8> {
    let mut v = Vec::with_capacity(10 + text.len());
    v.push(state);
    v.extend_from_slice(&at_ms.to_be_bytes());
    v.push(u8::from(ok));
    v.extend_from_slice(text.as_bytes());
    v
}

struct FbRecord {
    id: String,
    state: u8,
    at_ms: u64,
    ok: bool,
    text: String,
}

impl Journal {
    fn fb_records(&self) -> Result<Vec<FbRecord>, JournalError> {
        let mut out = Vec::new();
        for kv in self.db.scan_prefix(b"f") {
            let (k, v) = kv?;
            if v.len() < 10 {
                continue;
            }
            out.push(FbRecord {
                id: String::from_utf8_lossy(&k[1..]).into_owned(),
                state: v[0],
                at_ms: u64::from_be_bytes(v[1..9].try_into().expect("8 bytes")),
                ok: v[9] == 1,
                text: String::from_utf8_lossy(&v[10..]).into_owned(),
            });
        }
        Ok(out)
    }

    fn fb_put(&self, records: &[(String, Vec<u8>)], remove: &[String]) -> Result<(), JournalError> {
        self.commit(|_, _, ops| {
            for (id, value) in records {
                ops.insert(fb_key(id), value.clone());
            }
            for id in remove {
                ops.remove(fb_key(id));
            }
            Ok(false)
        })?;
        self.sync()
    }

    /// Whether this container id was ever started (and not yet forgotten).
    pub fn fb_seen(&self, id: &str) -> Result<bool, JournalError> {
        Ok(self.db.contains_key(fb_key(id))?)
    }

    /// Durably marks `id` as started. Returns false, writing nothing, if it was seen.
    pub fn fb_begin(&self, id: &str) -> Result<bool, JournalError> {
        if self.fb_seen(id)? {
            return Ok(false);
        }
        self.fb_put(
            &[(
                id.to_string(),
                fb_value(FB_RUNNING, unix_now_ms(), false, ""),
            )],
            &[],
        )?;
        Ok(true)
    }

    /// Durably records the result of a started container, to be reported.
    pub fn fb_finish(&self, id: &str, ok: bool, text: &str) -> Result<(), JournalError> {
        self.fb_put(
            &[(id.to_string(), fb_value(FB_DONE, unix_now_ms(), ok, text))],
            &[],
        )
    }

    /// Containers that were running when the previous qlship died become results
    /// saying so: they are never run a second time. Call before the first poll.
    pub fn fb_recover(&self) -> Result<Vec<String>, JournalError> {
        let now = unix_now_ms();
        let interrupted: Vec<(String, Vec<u8>)> = self
            .fb_records()?
            .into_iter()
            .filter(|r| r.state == FB_RUNNING)
            .map(|r| (r.id, fb_value(FB_DONE, now, false, FB_INTERRUPTED)))
            .collect();
        if !interrupted.is_empty() {
            self.fb_put(&interrupted, &[])?;
        }
        Ok(interrupted.into_iter().map(|(id, _)| id).collect())
    }

    /// Results not yet accepted by the server, oldest first.
    pub fn fb_unreported(&self) -> Result<Vec<crate::feedback::FbResult>, JournalError> {
        let mut done: Vec<FbRecord> = self
            .fb_records()?
            .into_iter()
            .filter(|r| r.state == FB_DONE)
            .collect();
        done.sort_by_key(|r| r.at_ms);
        Ok(done
            .into_iter()
            .map(|r| crate::feedback::FbResult {
                id: r.id,
                ok: r.ok,
                text: r.text,
            })
            .collect())
    }

    /// The server accepted a `checkFb` carrying these results: keep only their ids, and
    /// forget ids reported more than [`FB_REMEMBER_MS`] ago.
    pub fn fb_reported(&self, ids: &[String]) -> Result<(), JournalError> {
        let now = unix_now_ms();
        let records = self.fb_records()?;
        let expired: Vec<String> = records
            .iter()
            .filter(|r| r.state == FB_REPORTED && now.saturating_sub(r.at_ms) > FB_REMEMBER_MS)
            .map(|r| r.id.clone())
            .collect();
        let reported: Vec<(String, Vec<u8>)> = ids
            .iter()
            .map(|id| (id.clone(), fb_value(FB_REPORTED, now, true, "")))
            .collect();
        if reported.is_empty() && expired.is_empty() {
            return Ok(());
        }
        self.fb_put(&reported, &expired)
    }
}

fn create_private_dir(dir: &Path) -> io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    if !dir.is_dir() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)?;
        // The new directory entry must survive a power cut too.
        match dir.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => sync_dir(parent)?,
            _ => sync_dir(Path::new("."))?,
        }
    }
    // Fail now, with the path in the message, rather than deep inside sled.
    let probe = dir.join(".qlship-write-test");
    File::create(&probe)?;
    std::fs::remove_file(&probe)
}

pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

pub fn unix_now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn move_aside(state_dir: &Path, dir: &Path) -> Result<PathBuf, JournalError> {
    let aside = state_dir.join(format!("journal.corrupt-{}", unix_now()));
    std::fs::rename(dir, &aside).map_err(|e| JournalError::Dir(dir.to_owned(), e))?;
    let _ = std::fs::remove_file(state_dir.join("journal.seal"));
    Ok(aside)
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(i: i64) -> Row {
        Row {
            time: 1000 + i,
            call_id: format!("c{i}"),
            queue: "q".into(),
            agent: "a".into(),
            verb: "V".into(),
            params: Default::default(),
        }
    }

    fn pos(offset: u64) -> FilePos {
        FilePos {
            id: FileId { dev: 1, ino: 2 },
            offset,
            fp_hash: 3,
            fp_len: 4,
            skipping: false,
            since: 1_700_000_000_000_000_000,
            live: true,
        }
    }

    #[test]
    fn meta_round_trips() {
        let m = Meta {
            generation: 42,
            pos: Some(pos(77)),
            next_seq: 5,
            spool_rows: 3,
            spool_bytes: 300,
            inflight: Some((2, 4)),
            inflight_sent_ms: 1_700_000_000_123,
            takeover: Takeover::Done(Some(Region {
                id: FileId { dev: 9, ino: 8 },
                end: 1234,
                watermark: 1_700_000_000,
            })),
            bad_lines: 3,
            finished: vec![(FileId { dev: 1, ino: 99 }, 12345)],
            acked_total: 77,
            acked_today: 7,
            acked_day: 20_000,
        };
        assert_eq!(Meta::decode(&m.encode()).unwrap(), m);
        assert_eq!(
            Meta::decode(&Meta::default().encode()).unwrap(),
            Meta::default()
        );
    }

    #[test]
    fn spool_append_settle_and_reopen() {
        let dir = tempfile::tempdir().unwrap();
        {
            let (j, report) = Journal::open(dir.path(), 1 << 20).unwrap();
            assert!(report.fresh);
            j.append(
                &[(row(1), false), (row(2), true), (row(3), false)],
                pos(30),
                0,
            )
            .unwrap();
            let all = j.peek(10).unwrap();
            assert_eq!(all.len(), 3);
            assert!(all[1].in_doubt);
            j.mark_inflight(0, 1).unwrap();
            let batch = j.range(0, 1).unwrap();
            j.settle(&[&batch[0]], &[&batch[1]]).unwrap();
            j.sync().unwrap();
        }
        let (j, report) = Journal::open(dir.path(), 1 << 20).unwrap();
        assert!(!report.fresh);
        let m = j.meta();
        assert_eq!(m.pos, Some(pos(30)));
        assert_eq!(m.spool_rows, 2);
        assert_eq!(m.inflight, None);
        let left = j.peek(10).unwrap();
        assert_eq!(left.iter().map(|e| e.seq).collect::<Vec<_>>(), vec![1, 2]);
        assert!(!left[0].in_doubt);
        assert_eq!(j.ring().count(row(1).identity()), 1);
        let on_disk: u64 =
            j.db.scan_prefix(b"s")
                .map(|kv| kv.unwrap().1.len() as u64 + 9)
                .sum();
        assert_eq!(m.spool_bytes, on_disk);
    }

    #[test]
    fn a_second_opener_is_told_the_journal_is_locked() {
        let dir = tempfile::tempdir().unwrap();
        let (_j, _) = Journal::open(dir.path(), 1 << 20).unwrap();
        match Journal::open(dir.path(), 1 << 20) {
            Err(JournalError::Locked(_)) => {}
            other => panic!("{:?}", other.map(|_| ())),
        }
    }

    #[test]
    fn a_damaged_journal_is_moved_aside() {
        let dir = tempfile::tempdir().unwrap();
        {
            let (j, _) = Journal::open(dir.path(), 1 << 20).unwrap();
            j.append(&[(row(1), false)], pos(10), 0).unwrap();
            j.db.insert(b"m", &b"\x09garbage"[..]).unwrap();
            j.sync().unwrap();
        }
        let (j, report) = Journal::open(dir.path(), 1 << 20).unwrap();
        assert!(report.fresh);
        assert!(report.moved_aside.as_ref().unwrap().exists());
        assert_eq!(j.meta(), Meta::default());
    }

    #[test]
    fn a_journal_older_than_its_seal_is_moved_aside() {
        let dir = tempfile::tempdir().unwrap();
        {
            let (j, _) = Journal::open(dir.path(), 1 << 20).unwrap();
            j.append(&[(row(1), false)], pos(10), 0).unwrap();
            j.sync().unwrap();
            // As if later commits had been made durable and then lost.
            j.seal.write(j.meta().generation + 5).unwrap();
        }
        let (j, report) = Journal::open(dir.path(), 1 << 20).unwrap();
        assert!(report.moved_aside.is_some());
        assert!(report.fresh);
        assert_eq!(j.meta(), Meta::default());
    }

    #[test]
    fn a_journal_marked_suspect_is_moved_aside_once() {
        let dir = tempfile::tempdir().unwrap();
        {
            let (j, _) = Journal::open(dir.path(), 1 << 20).unwrap();
            j.append(&[(row(1), false)], pos(10), 0).unwrap();
            j.sync().unwrap();
        }
        mark_suspect(dir.path());
        let (j, report) = Journal::open(dir.path(), 1 << 20).unwrap();
        assert!(report.moved_aside.is_some());
        j.append(&[(row(2), false)], pos(20), 0).unwrap();
        j.sync().unwrap();
        drop(j);
        let (j, report) = Journal::open(dir.path(), 1 << 20).unwrap();
        assert!(report.moved_aside.is_none());
        assert_eq!(j.meta().pos, Some(pos(20)));
    }

    #[test]
    fn one_interrupted_open_is_not_damage_but_many_in_a_row_are() {
        let dir = tempfile::tempdir().unwrap();
        {
            let (j, _) = Journal::open(dir.path(), 1 << 20).unwrap();
            j.append(&[(row(1), false)], pos(10), 0).unwrap();
            j.sync().unwrap();
        }
        let marker = suspect_marker(dir.path());
        std::fs::write(&marker, "1\n").unwrap();
        let (j, report) = Journal::open(dir.path(), 1 << 20).unwrap();
        assert!(report.moved_aside.is_none());
        assert_eq!(j.meta().pos, Some(pos(10)));
        assert!(!marker.exists());
        drop(j);
        std::fs::write(&marker, format!("{MAX_FAILED_OPENS}\n")).unwrap();
        let (_j, report) = Journal::open(dir.path(), 1 << 20).unwrap();
        assert!(report.moved_aside.is_some());
    }
}
