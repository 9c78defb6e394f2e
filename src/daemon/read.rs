//! The reader task: the file, through the tail, into the journal's spool, paced by the
//! spool cap, the read-ahead and each target's share.

use super::*;
use crate::machine::shares::{Notice, Shares};

/// The daemon's log target, as before the daemon was split into files.
const LOG: &str = "qlship::daemon";

enum Progress {
    /// Less than the reserve is free (bytes free): nothing was read.
    DiskFull(u64),
    /// Rows were spooled: how many rows the step read, the time of the newest one, and
    /// per lane the rows not kept for it (its share of the spool being full).
    Rows(usize, Option<i64>, Vec<u64>),
    Switched,
    Idle,
    Missing,
}

enum ReadError {
    Journal(JournalError),
    File(std::io::Error),
}

pub(super) async fn reader(sh: Arc<Shared>) -> Result<(), Fatal> {
    let s = &sh.settings;
    let grace = if s.drain {
        Duration::ZERO
    } else {
        s.rotate_grace
    };
    let chunk = (s.ram_budget / 8).clamp(crate::lines::MAX_LINE + 4096, 256 * 1024);
    let meta = sh.journal.meta();
    let (path, saved, done, region) = (s.queue_log.clone(), meta.pos, meta.finished, meta.region);
    debug!(target: LOG, "reader: resuming at {saved:?}, takeover region {region:?}");
    let mut tail = blocking(move || Tail::resume(&path, saved, &done, grace, chunk, region))
        .await
        .map_err(|e| Fatal::QueueLog(file_error(&sh.settings, &e)))?;
    sh.journal.follow_source(tail.source_file());
    let mut missing_logged = false;
    let mut full_logged = false;
    let mut disk_logged = false;
    let mut file_errors = backoff(s);
    // Which targets are over their share of the spool, with the rows not kept for them.
    let mut shares = Shares::new(s.spool_max, sh.leads.len());
    let _alive = sh.reader_pulse.finish_on_drop();
    loop {
        sh.reader_pulse.beat();
        for note in tail.take_notes() {
            if note.warn {
                warn!(target: LOG, "{}", note.text);
            } else {
                info!(target: LOG, "{}", note.text);
            }
        }
        let meta = sh.journal.meta();
        let (verdict, notices) = shares.decide(&sh.loads(&meta), meta.spool_bytes);
        announce_shares(&sh, &notices, shares.share());
        if verdict.pause {
            sh.set_reader("paused: spool full");
            if !full_logged {
                warn!(target: LOG,
                    "spool full ({} rows, {} bytes >= {}): reading paused until the server catches up",
                    meta.spool_rows, meta.spool_bytes, s.spool_max
                );
                full_logged = true;
            }
            sh.wake_reader.wait(POLL).await;
            continue;
        }
        if full_logged {
            info!(target: LOG, "spool has room again: reading resumed");
            full_logged = false;
        }
        let least_behind = sh
            .leads
            .iter()
            .map(|l| meta.targets[l.slot].pending_rows)
            .min()
            .unwrap_or(0);
        if least_behind >= READ_AHEAD_ROWS && !tail.reading_rotated() {
            sh.set_reader("reading (the uploader is behind; the file is the buffer)");
            sh.wake_reader.wait(POLL).await;
            continue;
        }
        let journal = sh.journal.clone();
        let lanes = sh.lanes(&meta, &verdict.over_share);
        let shared = sh.clone();
        let (t, result) = blocking(move || {
            let split = shared.split.as_ref();
            let r = step_into_journal(&mut tail, &journal, split, &lanes);
            (tail, r)
        })
        .await;
        tail = t;
        {
            let mut live = sh.live();
            live.reading = tail
                .current_file()
                .map_or(String::new(), |p| p.display().to_string());
            live.offset = tail.pos().map_or(0, |p| p.offset);
            if let Ok(Progress::Rows(_, Some(t), _)) = result {
                live.newest_time = Some(live.newest_time.map_or(t, |n| n.max(t)));
            }
        }
        if !matches!(result, Ok(Progress::DiskFull(_))) && disk_logged {
            info!(target: LOG, "disk has room again: reading resumed");
            disk_logged = false;
        }
        match result {
            Ok(Progress::DiskFull(free)) => {
                sh.set_reader("paused: disk nearly full");
                if !disk_logged {
                    warn!(target: LOG,
                        "disk nearly full: {free} bytes free for the journal in {} (keeping {DISK_RESERVE} in reserve); reading paused until there is room",
                        sh.journal.dir().display()
                    );
                    disk_logged = true;
                }
                sh.wake_reader.wait(POLL).await;
            }
            Ok(Progress::Rows(read, _, shed)) => {
                shares.shed(&shed);
                sh.set_reader("reading");
                file_errors.reset();
                sh.wake_uploaders();
                if read < GATHER_BELOW_ROWS && !s.drain && !tail.reading_rotated() {
                    // A trickle on the live file: let the next rows gather (see GATHER).
                    Timer::after(GATHER).await;
                }
            }
            Ok(Progress::Switched) => {}
            Ok(Progress::Idle) => {
                sh.set_reader("reading (idle)");
                missing_logged = false;
                if s.drain && tail.caught_up() {
                    sh.reader_done.store(true, Ordering::SeqCst);
                    sh.wake_uploaders();
                    return Ok(());
                }
                // A rotated file's grace period ends without any event: keep polling.
                sh.wake_reader
                    .wait(sh.idle_poll(!tail.reading_rotated()))
                    .await;
            }
            Ok(Progress::Missing) => {
                sh.set_reader("waiting for the file to appear");
                if !missing_logged {
                    info!(target: LOG, "waiting for {} to appear", s.queue_log.display());
                    missing_logged = true;
                }
                if s.drain {
                    sh.reader_done.store(true, Ordering::SeqCst);
                    sh.wake_uploaders();
                    return Ok(());
                }
                sh.wake_reader.wait(sh.idle_poll(true)).await;
            }
            Err(ReadError::Journal(e)) => return Err(Fatal::Journal(e)),
            Err(ReadError::File(e)) => {
                let d = file_errors.next_delay();
                warn!(target: LOG, "{}; retrying in {d:?}", file_error(s, &e));
                Timer::after(d).await;
            }
        }
    }
}

/// Says loudly when a target's backlog fills its share of the spool (rows read from
/// then on are not kept for it) and when it has room again (`machine::shares`).
fn announce_shares(sh: &Shared, notices: &[Notice], share: u64) {
    for notice in notices {
        match *notice {
            Notice::Full { target, .. } => error!(target: LOG,
                "{}: its backlog fills its share of the spool ({share} bytes of --spool-max {}): rows read from now on are NOT kept for it and will be missing on its server; the other targets go on",
                sh.leads[target].who(),
                sh.settings.spool_max
            ),
            Notice::Room { target, not_kept } => warn!(target: LOG,
                "{}: back under its share of the spool: rows are kept for it again; {not_kept} rows read meanwhile were not and are missing on its server",
                sh.leads[target].who()
            ),
        }
    }
}

fn step_into_journal(
    tail: &mut Tail,
    journal: &Journal,
    split: Option<&Split>,
    lanes: &[Lane],
) -> Result<Progress, ReadError> {
    let free = journal.free_bytes().unwrap_or(u64::MAX);
    if free < DISK_RESERVE {
        return Ok(Progress::DiskFull(free));
    }
    let step = tail.step().map_err(ReadError::File)?;
    match step {
        Step::Read(mut read) => {
            for bad in &read.bad_lines {
                warn!(target: LOG,
                    "{} at byte {}: skipped, not a queue_log row: {}",
                    bad.file.display(),
                    bad.offset,
                    bad.reason
                );
            }
            let newest = read.rows.iter().map(|(r, _)| r.time).max();
            let read_rows = read.rows.len();
            crate::health::meter::count_rows_read(read_rows);
            let plan = fanout::plan(split, lanes, std::mem::take(&mut read.rows));
            if plan.already_stored > 0 {
                debug!(target: LOG, "{} rows below the watermark skipped", plan.already_stored);
            }
            journal
                .append(
                    &plan.rows,
                    read.pos,
                    read.bad_lines.len() as u64,
                    plan.unrouted,
                )
                .map_err(ReadError::Journal)?;
            let kept = plan.rows.iter().filter(|r| r.want != 0).count();
            debug!(target: LOG, "spooled {kept} rows, now at {:?}", read.pos);
            tail.commit(read);
            Ok(Progress::Rows(read_rows, newest, plan.shed))
        }
        Step::Switched(pos) => {
            debug!(target: LOG, "reading {:?} at {pos:?}", tail.current_file());
            let finished = tail.take_finished();
            journal.follow_source(tail.source_file());
            // Rows of the file left behind must be durable before we stop tracking it.
            journal
                .set_pos(pos, &finished)
                .map_err(ReadError::Journal)?;
            journal.sync().map_err(ReadError::Journal)?;
            Ok(Progress::Switched)
        }
        Step::Idle => Ok(Progress::Idle),
        Step::Missing => Ok(Progress::Missing),
    }
}

pub(super) fn file_error(s: &Settings, e: &std::io::Error) -> String {
    if e.kind() != std::io::ErrorKind::PermissionDenied {
        return format!("cannot read {}: {e}", s.queue_log.display());
    }
    // SAFETY: geteuid has no preconditions.
    let uid = unsafe { libc::geteuid() };
    let user = name_of(Path::new("/etc/passwd"), uid).unwrap_or_else(|| format!("uid {uid}"));
    let group = std::fs::metadata(&s.queue_log)
        .ok()
        .map(|m| {
            use std::os::unix::fs::MetadataExt;
            let gid = m.gid();
            name_of(Path::new("/etc/group"), gid).unwrap_or_else(|| format!("gid {gid}"))
        })
        .unwrap_or_else(|| "the file's group (usually asterisk)".into());
    format!(
        "cannot read {}: permission denied; qlship runs as user {user}, which must be able to read it: add it to group {group} (e.g. usermod -a -G {group} {user}) and make the file group-readable",
        s.queue_log.display()
    )
}

/// The name for a numeric id in a passwd- or group-style file.
fn name_of(file: &Path, id: u32) -> Option<String> {
    let text = std::fs::read_to_string(file).ok()?;
    text.lines().find_map(|line| {
        let mut f = line.split(':');
        let name = f.next()?;
        let id_field = f.nth(1)?;
        (id_field.parse::<u32>().ok()? == id).then(|| name.to_owned())
    })
}
