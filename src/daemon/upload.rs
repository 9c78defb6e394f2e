//! Drives one target's uploader state machine ([`crate::machine::upload`]) with the
//! journal and HTTP: each action it asks for is done here, on a worker thread where it
//! blocks, and its result handed back. Nothing is decided here.

use super::{
    blocking, seed, Fatal, Lead, Shared, IDLE, INFLIGHT_WINDOW_ROWS, LINGER, MAX_BATCH_BYTES,
    MAX_BATCH_ROWS,
};
use crate::journal::{Entry, Takeover};
use crate::machine::upload::{Action, Command, Config, Event, Input, Millis, Spooled, Uploader};
use crate::row::Row;
use log::{debug, info, warn};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// An uploader with nothing to do for this long while the journal holds commits no sync
/// covered (acknowledgements, most often: a batch's are made durable by the next
/// batch's in-flight mark) syncs them. Commits reach the disk only at syncs
/// (`vendor/README.md`), so without this the last batch before a pause kept its
/// in-flight mark on the disk, and every power cut in the pause cost a resync of it
/// (a checkRow per row: 205 requests, 3 s under the power-cut VM's emulation, which
/// then never got further between cuts). A steady trickle never waits this long (its
/// rows wake the uploader every `GATHER`), so it costs a sync per pause, not per batch.
const SYNC_WHEN_IDLE: Duration = Duration::from_secs(2);

/// A spooled row as one target sees it.
pub(super) struct SlotEntry {
    slot: usize,
    entry: Entry,
}

impl Spooled for SlotEntry {
    fn seq(&self) -> u64 {
        self.entry.seq
    }
    fn row(&self) -> &Row {
        &self.entry.row
    }
    fn in_doubt(&self) -> bool {
        self.entry.in_doubt(self.slot)
    }
    fn before_takeover(&self) -> bool {
        self.entry.before_takeover(self.slot)
    }
    fn replay(&self) -> u64 {
        self.entry.replay
    }
}

fn wrap(slot: usize, entries: Vec<Entry>) -> Vec<SlotEntry> {
    entries
        .into_iter()
        .map(|entry| SlotEntry { slot, entry })
        .collect()
}

pub(super) async fn uploader(sh: Arc<Shared>, lead: Arc<Lead>) -> Result<(), Fatal> {
    let s = &sh.settings;
    let slot = lead.slot;
    let tm = sh.journal.meta().targets[slot].clone();
    let takeover = match tm.takeover {
        Takeover::Pending => None,
        Takeover::Done(w) => Some(w),
    };
    let cfg = Config {
        batch_rows: MAX_BATCH_ROWS,
        batch_bytes: (s.ram_budget / 4).clamp(16 * 1024, MAX_BATCH_BYTES),
        linger: LINGER.as_millis() as Millis,
        window_rows: INFLIGHT_WINDOW_ROWS,
        settle: s.resync_settle.as_millis() as Millis,
        backoff_min: s.backoff_min,
        backoff_max: s.backoff_max,
        seed: seed(),
    };
    // Monotonic: a wall clock stepping at boot changes no wait.
    let clock = Instant::now();
    let now = || clock.elapsed().as_millis() as Millis;
    let partition = lead.client.partition.clone();
    let mut core = Uploader::new(cfg, partition, takeover, tm.inflight, now());
    let _alive = lead.pulse.finish_on_drop();
    loop {
        lead.pulse.beat();
        if sh.reader_done.load(Ordering::SeqCst) {
            core.set_reader_done();
        }
        let input = match core.poll(now()) {
            Action::Wait { until } => {
                let d = until.map_or(IDLE, |t| Duration::from_millis(t.saturating_sub(now())));
                // Cleared below before anything else is done: a stop can only find
                // it set at one of these awaits.
                lead.window_to_release
                    .store(core.holds_window(), Ordering::SeqCst);
                let unsynced = || sh.journal.has_unsynced() || core.holds_window();
                let sync_first = d > SYNC_WHEN_IDLE && unsynced();
                if !sync_first {
                    lead.wake.wait(d).await;
                } else if !lead.wake.notified_within(SYNC_WHEN_IDLE).await && unsynced() {
                    // Idle: the mark over the rest of an in-flight window goes in the
                    // same sync, so that the next start does not wait a settle window.
                    lead.window_to_release.store(false, Ordering::SeqCst);
                    let release = core.release_window();
                    let j = sh.journal.clone();
                    blocking(move || {
                        if release {
                            j.clear_inflight(slot)?;
                        }
                        j.sync()
                    })
                    .await?;
                }
                lead.window_to_release.store(false, Ordering::SeqCst);
                report(&sh, &lead, core.take_events());
                continue;
            }
            Action::Drained => {
                report(&sh, &lead, core.take_events());
                return Ok(());
            }
            Action::CheckHwm => {
                let client = lead.client.clone();
                let answer = blocking(move || client.check_hwm()).await;
                if let Ok(w) = &answer {
                    lead.status().watermark = *w;
                }
                Input::Watermark(answer.map_err(|e| e.failure()))
            }
            Action::Peek { max } => {
                let j = sh.journal.clone();
                Input::Spool(wrap(slot, blocking(move || j.peek(slot, max)).await?))
            }
            Action::Range { from, to } => {
                let j = sh.journal.clone();
                Input::Spool(wrap(slot, blocking(move || j.range(slot, from, to)).await?))
            }
            Action::RecordTakeover(w) => {
                let j = sh.journal.clone();
                blocking(move || {
                    j.set_takeover(slot, Takeover::Done(w))?;
                    j.sync()
                })
                .await?;
                Input::Done
            }
            Action::MarkInflight { from, to } => {
                let j = sh.journal.clone();
                blocking(move || j.mark_inflight(slot, from, to)).await?;
                Input::Done
            }
            Action::Send { body, rows, .. } => {
                let client = lead.client.clone();
                let j = sh.journal.clone();
                let answer = blocking(move || {
                    // A batch inside an in-flight window has no sync of its own: its
                    // rows must still be durable in the queue_log before they leave, or
                    // a power cut could take them back and let a durable position run
                    // ahead of the file (a replay pass, and twins told apart less
                    // well). Skipped when the mark's sync just did it.
                    j.sync_source();
                    client.insert_all(body, rows)
                })
                .await;
                Input::Sent(answer.map_err(|e| e.failure()))
            }
            Action::CheckRow(row) => {
                let client = lead.client.clone();
                let answer = blocking(move || client.check_row(&row)).await;
                Input::Count(answer.map_err(|e| e.failure()))
            }
            Action::Ring => Input::Ring(sh.journal.ring(slot)),
            Action::Settle {
                stored,
                to_send,
                found,
                inflight,
            } => {
                let j = sh.journal.clone();
                // A resync's answers (rows found stored, rows to send) are synced at once:
                // resyncs are rare, each costs a checkRow per row, and unsynced they would
                // be asked again after every power cut until a batch's mark synced them.
                let resolved = found || !to_send.is_empty();
                blocking(move || {
                    let stored: Vec<&Entry> = stored.iter().map(|e: &SlotEntry| &e.entry).collect();
                    let to_send: Vec<&Entry> =
                        to_send.iter().map(|e: &SlotEntry| &e.entry).collect();
                    j.settle(slot, &stored, &to_send, found, inflight)?;
                    if resolved {
                        j.sync()?;
                    }
                    Ok::<(), crate::journal::JournalError>(())
                })
                .await?;
                sh.wake_reader.notify();
                Input::Done
            }
            Action::ClearInflight => {
                let j = sh.journal.clone();
                blocking(move || j.clear_inflight(slot)).await?;
                Input::Done
            }
        };
        core.handle(now(), input);
        report(&sh, &lead, core.take_events());
    }
}

/// Says in the log and the status what the state machine did.
fn report(sh: &Shared, lead: &Lead, events: Vec<Event>) {
    let who = lead.who();
    for event in events {
        match event {
            Event::Reachable {
                watermark,
                took_over,
            } => {
                lead.ok(0);
                let token = &lead.target.token;
                match (watermark, took_over) {
                    (Some(w), true) => info!(
                        "{who}: new journal: taking over partition {token:?} at watermark {w}; older rows are already stored"
                    ),
                    (Some(w), false) => {
                        info!("{who} reachable; partition {token:?} watermark {w}")
                    }
                    (None, _) => info!("{who} reachable; partition {token:?} is empty"),
                }
            }
            Event::Sent { rows } => {
                if lead.ok(rows as u64) {
                    info!("{who} is accepting rows again");
                }
                debug!("{who}: sent {rows} rows");
            }
            Event::Failed {
                command,
                failure,
                retry_in,
            } => {
                lead.failed(&failure.text);
                let d = Duration::from_millis(retry_in);
                let text = &failure.text;
                match command {
                    Command::InsertAll => warn!(
                        "{who}: upload failed ({:?}): {text}; resync and retry in {d:?}",
                        failure.fate
                    ),
                    Command::CheckHwm if retry_in == 0 => {
                        warn!("{who}: checkHWM failed: {text}; will retry with the uploads")
                    }
                    Command::CheckHwm if sh.journal.meta().targets[lead.slot].takeover
                        == Takeover::Pending =>
                    {
                        warn!("{who}: checkHWM failed: {text}; a partition not taken over yet needs it before any upload; retry in {d:?}")
                    }
                    Command::CheckHwm | Command::CheckRow => warn!(
                        "{who}: resync: {command:?} failed: {text}; the answers so far are kept, retry in {d:?}"
                    ),
                }
            }
            Event::Settling { wait } => info!(
                "{who}: the last batch's fate is unknown; waiting {:?} for the server to settle before resync",
                Duration::from_millis(wait)
            ),
            Event::Resynced {
                in_doubt,
                stored,
                to_send,
                requests,
            } => {
                lead.status().resyncs += 1;
                info!(
                    "{who}: resync: {stored} of {in_doubt} rows in doubt are already stored, {to_send} will be sent ({requests} requests)"
                )
            }
            Event::Drained => info!("{who}: drain complete: everything read is acknowledged"),
        }
    }
}
