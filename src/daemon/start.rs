//! Startup, before any task runs: binding each enabled target to its journal slot (or
//! refusing to strand a backlog), pinning the file a new journal starts at, and the
//! start lines an operator reads.

use super::{now_unix, Fatal, Lead, Live, Shared, Wake};
use crate::config::Settings;
use crate::health::pulse::Pulse;
use crate::http::Client;
use crate::journal::{FilePos, Journal, Region};
use crate::machine::bind::Binding;
use crate::rules::Target;
use crate::status::TargetStatus;
use crate::tail::{fnv, id_of, mtime_ns};
use log::{info, warn};
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};

/// The daemon's log target, as before the daemon was split into files.
const LOG: &str = "qlship::daemon";

/// The state the tasks share, once the journal has bound the enabled targets.
pub(super) fn start(settings: Settings, journal: Arc<Journal>) -> Result<Shared, Fatal> {
    let targets = settings.targets();
    let enabled: Vec<(usize, &Target, &String)> = targets
        .iter()
        .enumerate()
        .filter(|(_, (t, _))| !t.disabled)
        .map(|(i, (t, k))| (i, t, k))
        .collect();
    let keys: Vec<String> = enabled.iter().map(|(_, _, k)| (*k).clone()).collect();
    let binding = crate::machine::bind::decide(&journal.journaled(), &keys, settings.drop_backlog);
    if let Binding::Refuse { stranded } = binding {
        return Err(Fatal::Stranded(stranded));
    }
    let (slots, dropped) = journal.bind(&keys)?;
    for (key, rows) in dropped {
        let key = if key.is_empty() {
            "the single target".to_string()
        } else {
            key
        };
        warn!(
            target: LOG,
            "{key} is no longer configured (or is disabled): its {rows} unacknowledged rows were dropped from the spool"
        );
    }
    pin_queue_log(&settings, &journal)?;
    let meta = journal.meta();
    let leads: Vec<Arc<Lead>> = enabled
        .iter()
        .zip(&slots)
        .map(|((index, t, key), &slot)| {
            let client = Client::new(t, &settings);
            Arc::new(Lead {
                index: *index,
                slot,
                target: (*t).clone(),
                fb_scope: crate::journal::fb_scope(key),
                status: Mutex::new(TargetStatus {
                    name: t.name.clone(),
                    url: client.url().to_owned(),
                    token: t.token.clone(),
                    ..Default::default()
                }),
                pulse: Pulse::new(format!("uploader for {} token {:?}", client.url(), t.token)),
                client,
                wake: Wake::new(),
                window_to_release: Default::default(),
            })
        })
        .collect();
    log_start(&settings, &journal, &leads, meta.spool_rows);
    let split = settings.split.as_ref().map(|(_, s)| s.clone());
    Ok(Shared {
        journal,
        split,
        leads,
        settings,
        wake_reader: Wake::new(),
        wake_status: Wake::new(),
        reader_done: AtomicBool::new(false),
        watching: AtomicBool::new(false),
        started: now_unix(),
        live: Mutex::new(Live {
            reader: "starting".into(),
            ..Default::default()
        }),
        reader_pulse: Pulse::new("reader"),
    })
}

/// A journal with no position yet pins the file QUEUE_LOG names now: if it is rotated
/// before the first read, it is still found and read, and so is every generation newer
/// than those beside it now. A new journal also records the
/// region an earlier loader may have uploaded: the file as it is now.
fn pin_queue_log(settings: &Settings, journal: &Journal) -> Result<(), Fatal> {
    let fresh = journal.meta().generation <= 1;
    if journal.meta().pos.is_none() {
        let (start, region) = match std::fs::metadata(&settings.queue_log) {
            Ok(m) => (
                Some(FilePos {
                    id: id_of(&m),
                    offset: 0,
                    fp_hash: fnv(&[]),
                    fp_len: 0,
                    skipping: false,
                    since: mtime_ns(&m),
                    live: true,
                    replay_until: 0,
                    replay_pass: 0,
                    // Never 0 (a journal from before heads were kept), even when empty.
                    head: crate::tail::head_on_disk(&settings.queue_log),
                }),
                Some(Region {
                    id: id_of(&m),
                    end: m.len(),
                }),
            ),
            Err(_) => (None, None),
        };
        // The generations rotated away before now are history: recorded as read, so
        // that after a restart only newer ones are (see `tail::history`).
        let history = crate::tail::history_on_disk(&settings.queue_log)
            .map_err(|e| Fatal::QueueLog(super::read::file_error(settings, &e)))?;
        // Only a new journal records them: one that has read (its position journaled as
        // none after it finished a rotated file while QUEUE_LOG was missing) keeps its
        // record of how far each generation was read.
        if fresh {
            journal.begin(start, region)?;
            if !history.is_empty() {
                journal.set_pos(start, &history)?;
                journal.sync()?;
            }
        } else if start.is_some() {
            journal.set_pos(start, &[])?;
            journal.sync()?;
        }
    }
    Ok(())
}

/// The start lines: where rows come from and go, and how much is already spooled.
fn log_start(settings: &Settings, journal: &Journal, leads: &[Arc<Lead>], spooled: u64) {
    let beat = if settings.heartbeat.is_zero() {
        "off".to_string()
    } else {
        format!("{}s", settings.heartbeat.as_secs())
    };
    match &settings.split {
        None => info!(
            target: LOG,
            "qlship {} starting: {} -> {} as {}, token {:?}, heartbeat {beat}, journal {} ({} rows spooled){}",
            env!("CARGO_PKG_VERSION"),
            settings.queue_log.display(),
            leads[0].client.url(),
            settings.user,
            settings.token,
            journal.dir().display(),
            spooled,
            if settings.drain { ", draining" } else { "" },
        ),
        Some((file, split)) => {
            info!(
                target: LOG,
                "qlship {} starting: {} split by {} to {} targets ({} disabled), heartbeat {beat}, journal {} ({} rows spooled){}",
                env!("CARGO_PKG_VERSION"),
                settings.queue_log.display(),
                file.display(),
                leads.len(),
                split.targets.len() - leads.len(),
                journal.dir().display(),
                spooled,
                if settings.drain { ", draining" } else { "" },
            );
            for l in leads {
                info!(
                    target: LOG,
                    "target {:?}: {} token {:?} as {}, time-zone offset {}s{}",
                    l.target.name,
                    l.client.url(),
                    l.target.token,
                    l.target.user,
                    l.target.tz_offset,
                    if l.target.noactions { ", no feedback actions" } else { "" }
                );
            }
        }
    }
}
