//! The reader's world: the real `Tail` (its decisions in `machine::read` and
//! `machine::generations`) over a virtual directory where Asterisk appends, logrotate
//! rotates (rename with the writer still on the old file, `logger reload` now, late or
//! never; copytruncate; gzip with delaycompress; the oldest deleted), the kernel writes
//! back now and then, the clock steps at boot, and qlship is killed, loses power or
//! stays down over rotations.
//!
//! The journal keeps what the reader reports (position, generations left) and the rows
//! read, and loses what was not synced; a sync ships the rows, those in doubt resolved
//! against what the server holds, as the uploader does. The invariant: every row still
//! in a file at the end, or shipped before a cut took it back, is on the server exactly
//! once, in the order it was written to its file.

use crate::dir::{Dir, SimFiles, QUEUE_LOG};
use crate::rng::Rng;
use qlship::journal::{FilePos, Finished, FINISHED_CAP};
use qlship::tail::{Step, Tail};
use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::rc::Rc;
use std::time::Duration;

#[derive(Clone, Debug)]
pub struct Params {
    pub rows: u64,
    /// Per-mille per written row: a rotation.
    pub rotate: u32,
    /// Per-mille of rotations done by copytruncate (else rename and create).
    pub copytruncate: u32,
    /// After a rename, per-mille that `logger reload` runs at once; of the rest, half
    /// reload later, half never (until the next rotation's reload, if any).
    pub reload: u32,
    pub compress: bool,
    /// Generations kept; older ones are deleted.
    pub keep: u64,
    /// Per-mille per step: qlship is killed; of those, per-mille that are power cuts,
    /// and per-mille after which it stays down a while.
    pub crash: u32,
    pub cut: u32,
    pub down: u32,
    /// Per-mille per step that the journal syncs (and the rows read ship).
    pub sync: u32,
    pub grace_ms: u64,
    pub writeback_ms: u64,
    /// Per-mille of boots at which the wall clock steps a year back or forth.
    pub clock_step: u32,
}

impl Params {
    pub fn draw(rng: &mut Rng) -> Params {
        let pick =
            |rng: &mut Rng, options: &[u32]| options[rng.below(options.len() as u64) as usize];
        Params {
            rows: 20 + rng.below(200),
            rotate: pick(rng, &[5, 20, 60, 150]),
            copytruncate: pick(rng, &[0, 300, 1000]),
            reload: pick(rng, &[0, 500, 1000]),
            compress: rng.chance(500),
            keep: 2 + rng.below(5),
            crash: pick(rng, &[0, 5, 20, 60]),
            cut: pick(rng, &[0, 300, 1000]),
            down: pick(rng, &[0, 300, 800]),
            sync: pick(rng, &[100, 400, 1000]),
            grace_ms: pick(rng, &[0, 500, 5_000]).into(),
            writeback_ms: pick(rng, &[500, 5_000, 30_000]).into(),
            clock_step: pick(rng, &[0, 200]),
        }
    }
}

#[derive(Clone, Default)]
struct Journal {
    pos: Option<FilePos>,
    finished: Vec<Finished>,
}

struct World {
    rng: Rng,
    p: Params,
    dir: Rc<RefCell<Dir>>,
    /// The inode Asterisk writes to, and when it reopens QUEUE_LOG (`logger reload`).
    writer: u64,
    reload_at: Option<u64>,
    written: u64,
    /// Row → the inode it was written to.
    written_to: Vec<u64>,
    tail: Option<Tail<SimFiles>>,
    up_at: u64,
    durable: Journal,
    now: Journal,
    /// Rows read and journaled, not yet synced: (row, in doubt).
    pending: Vec<(u64, bool)>,
    server: Vec<u64>,
    on_server: BTreeSet<u64>,
    next_writeback: u64,
    log: Vec<String>,
}

pub fn run(seed: u64, p: Params) -> Result<(), String> {
    let dir = Rc::new(RefCell::new(Dir::default()));
    let writer = {
        let mut d = dir.borrow_mut();
        let wall = d.wall_ns();
        let ino = d.create(Vec::new(), false, wall);
        d.names.insert(String::new(), ino);
        ino
    };
    let mut w = World {
        rng: Rng::new(seed),
        p,
        dir,
        writer,
        reload_at: None,
        written: 0,
        written_to: Vec::new(),
        tail: None,
        up_at: 0,
        durable: Journal::default(),
        now: Journal::default(),
        pending: Vec::new(),
        server: Vec::new(),
        on_server: BTreeSet::new(),
        next_writeback: 0,
        log: Vec::new(),
    };
    let traced = std::env::var_os("QLSHIP_SIM_TRACE").is_some();
    let result = w.schedule();
    if traced || result.is_err() && std::env::var_os("QLSHIP_SEED").is_some() {
        eprintln!("{}", w.log.join("\n"));
    }
    result
}

impl World {
    fn trace(&mut self, what: String) {
        if self.log.len() < 5_000 {
            let now = self.dir.borrow().now_ms;
            self.log.push(format!("{now:>8} {what}"));
        }
    }

    fn schedule(&mut self) -> Result<(), String> {
        // qlship starts with the queue_log: generations from before are history.
        self.boot()?;
        for _ in 0..20_000 {
            if self.written >= self.p.rows {
                break;
            }
            self.dir.borrow_mut().now_ms += self.rng.below(400);
            self.world_moves();
            if self.tail.is_some() {
                self.reader_step()?;
                if self.rng.chance(self.p.crash) {
                    self.crash();
                }
            } else if self.dir.borrow().now_ms >= self.up_at {
                self.boot()?;
            }
        }
        // Faults stop: the writer reopens QUEUE_LOG, qlship comes up and catches up.
        self.writer = self.dir.borrow().at("").unwrap_or(self.writer);
        self.reload_at = None;
        if self.tail.is_none() {
            self.boot()?;
        }
        let mut quiet = 0;
        for _ in 0..2_000 {
            self.dir.borrow_mut().now_ms += 1_000;
            quiet = if self.reader_step()? { 0 } else { quiet + 1 };
            self.sync();
            if quiet == 3 {
                break;
            }
        }
        self.check()
    }

    /// Asterisk writes, the kernel writes back, logrotate runs.
    fn world_moves(&mut self) {
        let now = self.dir.borrow().now_ms;
        if now >= self.next_writeback {
            for f in self.dir.borrow_mut().files.values_mut() {
                f.synced = f.text.len();
            }
            self.next_writeback = now + self.p.writeback_ms;
        }
        if self.reload_at.is_some_and(|at| at <= now) {
            self.reload_at = None;
            if let Some(ino) = self.dir.borrow().at("") {
                self.writer = ino;
            }
        }
        for _ in 0..self.rng.below(4) {
            if self.written >= self.p.rows {
                return;
            }
            self.write_row();
            if self.rng.chance(self.p.rotate) {
                self.rotate();
            }
        }
    }

    fn write_row(&mut self) {
        let seq = self.written;
        self.written += 1;
        self.written_to.push(self.writer);
        let mut d = self.dir.borrow_mut();
        let wall = d.wall_ns();
        let line = format!("{}|r{seq}|q|NONE|ENTERQUEUE|||\n", wall / 1_000_000_000);
        let f = d.files.get_mut(&self.writer).expect("writer's file");
        f.text.extend_from_slice(line.as_bytes());
        f.mtime_ns = wall;
    }

    /// logrotate: shift the numbered generations (deleting the oldest, compressing the
    /// second with delaycompress), then rename or copy-and-truncate QUEUE_LOG.
    fn rotate(&mut self) {
        let copy = self.rng.chance(self.p.copytruncate);
        let reload = if self.rng.chance(self.p.reload) {
            Some(0)
        } else if self.rng.chance(500) {
            Some(self.rng.below(20_000))
        } else {
            None
        };
        let mut d = self.dir.borrow_mut();
        let wall = d.wall_ns();
        for n in (1..=self.p.keep).rev() {
            for gz in ["", ".gz"] {
                let from = format!(".{n}{gz}");
                if let Some(ino) = d.names.remove(&from) {
                    if n < self.p.keep {
                        d.names.insert(format!(".{}{gz}", n + 1), ino);
                    }
                }
            }
        }
        if self.p.compress {
            if let Some(ino) = d.names.remove(".2") {
                let (text, mtime) = {
                    let f = &d.files[&ino];
                    (f.text.clone(), f.mtime_ns)
                };
                let gz = d.create(text, true, mtime);
                d.names.insert(".2.gz".into(), gz);
            }
        }
        let Some(live) = d.at("") else { return };
        if copy {
            let text = d.files[&live].text.clone();
            let ino = d.create(text, false, wall);
            d.names.insert(".1".into(), ino);
            let f = d.files.get_mut(&live).expect("live");
            f.text.clear();
            f.synced = 0;
            drop(d);
            self.trace(format!("copytruncate: ino {ino} is the copy of {live}"));
            return;
        }
        d.names.remove("");
        d.names.insert(".1".into(), live);
        let fresh = d.create(Vec::new(), false, wall);
        d.names.insert(String::new(), fresh);
        let now = d.now_ms;
        drop(d);
        match reload {
            Some(0) => self.writer = fresh,
            Some(later) => self.reload_at = Some(now + later),
            None => self.reload_at = None,
        }
        self.trace(format!(
            "rename rotation ({live} to .1, {fresh} new), reload {reload:?}"
        ));
    }

    /// Some steps of the reader; false when it had nothing to do.
    fn reader_step(&mut self) -> Result<bool, String> {
        let Some(tail) = self.tail.as_mut() else {
            return Ok(false);
        };
        let mut busy = false;
        let mut traces = Vec::new();
        for _ in 0..1 + self.rng.below(4) {
            let step = tail.step().map_err(|e| format!("step: {e}"))?;
            busy |= !matches!(step, Step::Idle | Step::Missing);
            match step {
                Step::Read(read) => {
                    for (row, origin) in &read.rows {
                        let seq = row.call_id()[1..]
                            .parse::<u64>()
                            .map_err(|e| e.to_string())?;
                        self.pending.push((seq, origin.replay > 0));
                    }
                    self.now.pos = Some(read.pos);
                    let seqs = self.pending.len() - read.rows.len()..self.pending.len();
                    let (first, last) = (self.pending.get(seqs.start), self.pending.last());
                    let what = format!(
                        "read {first:?}..{last:?} of ino {} to {}",
                        read.pos.id.ino, read.pos.offset
                    );
                    tail.commit(read);
                    traces.push(what);
                }
                Step::Switched(pos) => {
                    self.now.pos = pos;
                    traces.push(format!(
                        "switched to {:?}",
                        pos.map(|p| (p.id.ino, p.offset))
                    ));
                    for f in tail.take_finished() {
                        self.now
                            .finished
                            .retain(|old| (old.head, old.id) != (f.head, f.id));
                        self.now.finished.push(f);
                    }
                    let excess = self.now.finished.len().saturating_sub(FINISHED_CAP);
                    self.now.finished.drain(..excess);
                }
                Step::Idle | Step::Missing => break,
            }
        }
        for note in tail.take_notes() {
            traces.push(format!("note: {}", note.text));
        }
        for t in traces {
            self.trace(t);
        }
        if self.rng.chance(self.p.sync) {
            self.sync();
        }
        Ok(busy)
    }

    /// The journal syncs (the file being read first, `Journal::follow_source`), and the
    /// rows read ship; the uploader resolves those in doubt against the server.
    fn sync(&mut self) {
        if let Some(ino) = self.now.pos.map(|p| p.id.ino) {
            if let Some(f) = self.dir.borrow_mut().files.get_mut(&ino) {
                f.synced = f.text.len();
            }
        }
        self.durable = self.now.clone();
        for (seq, in_doubt) in std::mem::take(&mut self.pending) {
            if self.on_server.contains(&seq) {
                if !in_doubt {
                    self.server.push(seq);
                }
                continue;
            }
            self.on_server.insert(seq);
            self.server.push(seq);
        }
    }

    fn crash(&mut self) {
        self.tail = None;
        self.pending.clear();
        self.now = self.durable.clone();
        let cut = self.rng.chance(self.p.cut);
        if cut {
            let mut lost = Vec::new();
            let mut d = self.dir.borrow_mut();
            for (ino, f) in d.files.iter_mut() {
                if f.text.len() > f.synced {
                    lost.push((*ino, f.text.len(), f.synced));
                }
                f.text.truncate(f.synced);
            }
            drop(d);
            self.trace(format!("power cut: (ino, len, kept) {lost:?}"));
        }
        let down = if self.rng.chance(self.p.down) {
            self.rng.below(60_000)
        } else {
            0
        };
        let now = self.dir.borrow().now_ms;
        self.up_at = now + down;
        self.trace(format!("crash (power cut: {cut}), down {down} ms"));
    }

    fn boot(&mut self) -> Result<(), String> {
        if self.rng.chance(self.p.clock_step) {
            let year = 365 * 86_400 * 1_000_000_000i64;
            self.dir.borrow_mut().wall_offset_ns += if self.rng.chance(500) { -year } else { year };
        }
        let mut files = SimFiles(self.dir.clone());
        if self.durable.pos.is_none() {
            self.pin(&mut files)?;
        }
        let grace = Duration::from_millis(self.p.grace_ms);
        let j = self.durable.clone();
        let tail = Tail::resume_in(
            files,
            Path::new(QUEUE_LOG),
            j.pos,
            &j.finished,
            grace,
            4096,
            None,
        )
        .map_err(|e| format!("resume: {e}"))?;
        self.tail = Some(tail);
        self.trace(format!("boot at {:?}", j.pos.map(|p| (p.id.ino, p.offset))));
        Ok(())
    }

    /// A new journal pins QUEUE_LOG at its start and records the generations beside it
    /// as history (`daemon::start`), durably.
    fn pin(&mut self, files: &mut SimFiles) -> Result<(), String> {
        let history =
            qlship::tail::history(files, Path::new(QUEUE_LOG)).map_err(|e| e.to_string())?;
        let d = self.dir.borrow();
        let Some(ino) = d.at("") else {
            return Ok(());
        };
        self.durable = Journal {
            pos: Some(FilePos {
                id: qlship::journal::FileId { dev: 1, ino },
                offset: 0,
                fp_hash: qlship::tail::fnv(&[]),
                fp_len: 0,
                skipping: false,
                since: d.files[&ino].mtime_ns,
                live: true,
                replay_until: 0,
                replay_pass: 0,
                head: qlship::machine::generations::head_of(&d.files[&ino].text).0,
            }),
            finished: history,
        };
        self.now = self.durable.clone();
        Ok(())
    }

    fn check(&self) -> Result<(), String> {
        let mut count: BTreeMap<u64, u32> = BTreeMap::new();
        for &seq in &self.server {
            *count.entry(seq).or_default() += 1;
        }
        if let Some((seq, n)) = count.iter().find(|(_, &n)| n > 1) {
            return Err(format!("row {seq} stored {n} times"));
        }
        let d = self.dir.borrow();
        for &ino in d.names.values() {
            let text = String::from_utf8_lossy(&d.files[&ino].text).into_owned();
            for line in text.lines() {
                let Some(seq) = line
                    .split('|')
                    .nth(1)
                    .and_then(|c| c[1..].parse::<u64>().ok())
                else {
                    continue;
                };
                if !count.contains_key(&seq) {
                    let name: Vec<_> = d.names.iter().filter(|(_, &i)| i == ino).collect();
                    return Err(format!("row {seq} (in {name:?}) never stored"));
                }
            }
        }
        let mut last: BTreeMap<u64, u64> = BTreeMap::new();
        for &seq in &self.server {
            let file = self.written_to[seq as usize];
            if let Some(&before) = last.get(&file) {
                if before > seq {
                    return Err(format!(
                        "row {seq} stored after row {before} of the same file"
                    ));
                }
            }
            last.insert(file, seq);
        }
        Ok(())
    }
}
