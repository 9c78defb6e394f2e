//! Opening the journal: the lock, the seal and the open marker that tell a healthy
//! journal from one a power cut rolled back or that crashes sled, and moving a damaged one
//! aside instead of crash-looping.

use super::*;

/// `journal.seal` beside the journal: the generation the journal had at its last
/// successful fsync. Written after the fsync without one of its own: if the write is
/// lost in a power cut the seal is merely older, which never raises a false alarm.
pub(super) struct Seal {
    pub(super) path: PathBuf,
}

impl Seal {
    pub(super) fn read(&self) -> Option<u64> {
        let b = std::fs::read(&self.path).ok()?;
        let g = u64::from_be_bytes(b.get(0..8)?.try_into().ok()?);
        let check = u64::from_be_bytes(b.get(8..16)?.try_into().ok()?);
        (check == seal_check(g)).then_some(g)
    }

    pub(super) fn write(&self, generation: u64) -> io::Result<()> {
        let mut b = [0u8; 16];
        b[..8].copy_from_slice(&generation.to_be_bytes());
        b[8..].copy_from_slice(&seal_check(generation).to_be_bytes());
        // Overwritten in place, never truncated: a truncation drops the file's page and
        // the write then dirties a fresh one, a 4 KiB page written per sync (and ext4
        // starts writing a file truncated to zero and rewritten at once). In place, the
        // page stays dirty in the page cache and reaches the disk once per writeback.
        use std::os::unix::fs::FileExt;
        let file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .open(&self.path)?;
        file.write_all_at(&b, 0)
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
pub(super) const MAX_FAILED_OPENS: u32 = 5;
const DAMAGED: &str = "damaged";

pub(super) fn suspect_marker(state_dir: &Path) -> PathBuf {
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
    /// Journals moved aside (now or by a start that did not finish) whose rows were
    /// carried into this one, or could not be.
    pub salvaged: Vec<SalvageReport>,
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
        // After the suspect marker is gone: a sled that crashes on the moved-aside
        // journal must not condemn the new one. Attempts are counted on their own.
        report.salvaged = journal.salvage_pending(state_dir);
        report.fresh = journal.meta().generation == 0;
        journal.doubt_what_may_have_left()?;
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
        let mut rings = Vec::new();
        let mut ring_deltas = Vec::new();
        for slot in 0..meta.targets.len() {
            let base = meta.targets[slot].ring_base;
            let (ring, deltas) = rings::load(&db, slot, base).map_err(|e| match e {
                rings::LoadError::Sled(e) => JournalError::Sled(e),
                rings::LoadError::Undecodable(e) => {
                    JournalError::Corrupt(format!("ring {slot}: {e}"))
                }
            })?;
            rings.push(ring);
            ring_deltas.push(deltas);
        }
        let hints = vec![0; meta.targets.len()];
        if let Some(sealed) = seal.read() {
            if meta.generation < sealed {
                return Err(JournalError::Corrupt(format!(
                    "it came back at generation {} but had reached {sealed} when last made durable",
                    meta.generation
                )));
            }
        }
        let bases = db.open_tree(rings::BASES)?;
        let named: Vec<u64> = meta.targets.iter().map(|t| t.ring_base).collect();
        let stale = rings::drop_unnamed(&bases, &named)?;
        if stale > 0 {
            log::debug!("removed {stale} ring bases no commit names (left by a crash)");
        }
        sync_dir(dir).map_err(JournalError::Fsync)?;
        Ok(Journal {
            db,
            bases,
            dir: dir.to_owned(),
            seal: Seal {
                path: seal.path.clone(),
            },
            state: Mutex::new(State {
                // What was opened counts as synced.
                synced_generation: meta.generation,
                meta,
                rings,
                ring_deltas,
                hints,
            }),
            source: Mutex::new(None),
        })
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

/// Moves the damaged journal aside, marked for salvage (see `salvage`), with its seal.
fn move_aside(state_dir: &Path, dir: &Path) -> Result<PathBuf, JournalError> {
    let stamp = unix_now();
    // A clock without an RTC, or two moves in a second, must not reuse a name.
    let aside = (0u32..)
        .map(|n| match n {
            0 => state_dir.join(format!("journal.corrupt-{stamp}")),
            n => state_dir.join(format!("journal.corrupt-{stamp}-{n}")),
        })
        .find(|p| !p.exists() && !salvage::seal_beside(p).exists())
        .expect("a free name");
    let fail = |e| JournalError::Dir(dir.to_owned(), e);
    // The marker first: a journal found moved aside without it is never salvaged.
    salvage::mark_pending(&aside).map_err(fail)?;
    // The seal goes with it: it tells whether the journal lost commits it had made
    // durable, and the new journal starts its own.
    match std::fs::rename(state_dir.join("journal.seal"), salvage::seal_beside(&aside)) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(fail(e)),
        _ => {}
    }
    std::fs::rename(dir, &aside).map_err(fail)?;
    sync_dir(state_dir).map_err(JournalError::Fsync)?;
    Ok(aside)
}
