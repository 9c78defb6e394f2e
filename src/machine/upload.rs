//! One target's uploader as a pure state machine: batching, the in-flight mark, the
//! settle window, resync and backoff.
//!
//! The driver (`daemon::upload`, or the simulator in `tests/sim/`) asks [`Uploader::poll`]
//! what to do, does it (a journal operation, an HTTP request, a sleep), and hands the
//! result back with [`Uploader::handle`]. Nothing in here reads a clock, touches a file
//! or a socket: time comes in as `now`, milliseconds on the driver's monotonic clock, so
//! a wall clock that steps a year back at boot changes no decision made here.
//!
//! The rules that keep a row exactly once:
//! - A batch is durably marked in flight before its first byte leaves
//!   ([`Action::MarkInflight`]); after a crash the mark says which rows may be stored.
//!   The mark covers a window of [`Config::window_rows`] sequence numbers past the
//!   batch, and the batches that fit in it go without a mark (and its sync) of their
//!   own: every commit keeps a mark over the rest of the window ([`Action::Settle`]),
//!   and rows spooled again under its numbers after a power cut are in doubt (the
//!   journal's `reread_doubt_below`).
//! - A request whose fate is unknown ([`Fate::Unknown`]: no answer, a gateway's
//!   502/503/504) may still be stored by a slow server: it is not looked at before the
//!   settle window has passed since it was sent, counted again in full after a restart
//!   (the wall clock of the previous run proves nothing).
//! - Rows of unknown fate are resolved with checkHWM and checkRow, never sent blindly.
//!   A resync keeps every answer it got: a failed request is retried alone, so a lossy
//!   server slows a resync down but cannot stop it.
//! - Backoff counts consecutive failures and resets when the server makes progress (a
//!   batch stored, a checkRow answered).

use crate::backoff::Backoff;
use crate::protocol::{InsertAllBody, Partition};
use resync::Resync;

mod exchange;
mod resync;

pub use exchange::*;

/// Which answer the outstanding action waits for.
#[derive(Debug)]
enum Awaiting {
    StartHwm,
    TakeoverRecorded(Option<i64>),
    Peek,
    Range,
    Marked {
        body: String,
        rows: usize,
        until: u64,
    },
    Sent {
        sent_at: Millis,
    },
    ResyncHwm,
    ResyncRow,
    Ring,
    Settled {
        resync: bool,
    },
    Cleared,
}

pub struct Uploader<E> {
    cfg: Config,
    partition: Partition,
    backoff: Backoff,
    /// `None` until this journal's first checkHWM for the target is recorded.
    takeover: Option<Option<i64>>,
    /// checkHWM was tried once at start.
    started: bool,
    /// The batch in flight (or, after a restart, the range the journal marked).
    inflight: Option<(u64, u64)>,
    /// The end of the window a durable mark of this run covers: batches ending at or
    /// before it go without a mark.
    window: Option<u64>,
    /// `inflight` is the mark a previous run left (see `decide`).
    marked_before_start: bool,
    settle_until: Option<Millis>,
    settling_told: bool,
    retry_at: Option<Millis>,
    /// The next action, decided by the last answer, with the answer it will wait for
    /// when that carries data of its own.
    queued: Option<(Action<E>, Option<Awaiting>)>,
    awaiting: Option<Awaiting>,
    resync: Option<Resync<E>>,
    batch: Vec<E>,
    last_send: Option<Millis>,
    reader_done: bool,
    drained: bool,
    events: Vec<Event>,
}

impl<E: Spooled> Uploader<E> {
    /// `takeover` and `inflight` as the journal holds them; `now` the driver's clock at
    /// start. An in-flight batch left by the previous run waits out a whole settle
    /// window from now.
    pub fn new(
        cfg: Config,
        partition: Partition,
        takeover: Option<Option<i64>>,
        inflight: Option<(u64, u64)>,
        now: Millis,
    ) -> Self {
        let backoff = Backoff::new(cfg.backoff_min, cfg.backoff_max, cfg.seed);
        let settle_until = inflight.map(|_| now.saturating_add(cfg.settle));
        Uploader {
            cfg,
            partition,
            backoff,
            takeover,
            started: false,
            inflight,
            window: None,
            marked_before_start: inflight.is_some(),
            settle_until,
            settling_told: false,
            retry_at: None,
            queued: None,
            awaiting: None,
            resync: None,
            batch: Vec::new(),
            last_send: None,
            reader_done: false,
            drained: false,
            events: Vec::new(),
        }
    }

    /// The reader has finished (`--drain`): an empty spool now means done.
    pub fn set_reader_done(&mut self) {
        self.reader_done = true;
    }

    /// Nothing is in flight, and the journal's mark covers the rest of a window (see
    /// [`Uploader::release_window`]).
    pub fn holds_window(&self) -> bool {
        self.window.is_some() && self.inflight.is_none() && self.resync.is_none()
    }

    /// Called while idle (after a `Wait`): if [`Uploader::holds_window`], the window
    /// goes, and the driver clears the journal's mark (`Journal::clear_inflight`)
    /// before the sync that makes it durable. Every batch sent under it was
    /// acknowledged in a commit before; without this, every start after a pause (a
    /// clean stop included) waited a whole settle window for rows never sent.
    pub fn release_window(&mut self) -> bool {
        self.holds_window() && self.window.take().is_some()
    }

    pub fn take_events(&mut self) -> Vec<Event> {
        std::mem::take(&mut self.events)
    }

    /// The next thing to do. After an action other than `Wait` and `Drained`, the
    /// driver must call [`Uploader::handle`] with its result before polling again.
    pub fn poll(&mut self, now: Millis) -> Action<E> {
        assert!(self.awaiting.is_none(), "poll before the last answer");
        if self.drained {
            return Action::Drained;
        }
        if let Some(t) = self.retry_at {
            if now < t {
                return Action::Wait { until: Some(t) };
            }
            self.retry_at = None;
        }
        let (action, awaits) = match self.queued.take() {
            Some(queued) => queued,
            None => (self.decide(now), None),
        };
        self.awaiting = awaits.or(match &action {
            Action::CheckHwm if self.resync.is_some() => Some(Awaiting::ResyncHwm),
            Action::CheckHwm => Some(Awaiting::StartHwm),
            Action::Peek { .. } => Some(Awaiting::Peek),
            Action::Range { .. } => Some(Awaiting::Range),
            Action::CheckRow(_) => Some(Awaiting::ResyncRow),
            Action::Ring => Some(Awaiting::Ring),
            Action::ClearInflight => Some(Awaiting::Cleared),
            _ => None,
        });
        action
    }

    fn decide(&mut self, now: Millis) -> Action<E> {
        if self.takeover.is_none() || !self.started {
            return Action::CheckHwm;
        }
        if let Some(r) = &self.resync {
            return match r.live {
                None => Action::CheckHwm,
                Some(_) => match r.to_ask.iter().find(|&&i| !r.asked(i)) {
                    Some(&i) => Action::CheckRow(r.entries[i].row().clone()),
                    None => Action::Ring,
                },
            };
        }
        if let Some((from, to)) = self.inflight {
            if let Some(until) = self.settle_until {
                if now < until {
                    if !self.settling_told {
                        self.settling_told = true;
                        self.events.push(Event::Settling { wait: until - now });
                    }
                    return Action::Wait { until: Some(until) };
                }
            }
            self.settle_until = None;
            self.settling_told = false;
            if std::mem::take(&mut self.marked_before_start) {
                // The journal marked the rows it covers in doubt when it opened
                // (`Journal::doubt_what_may_have_left`): they are resolved as they come.
                return Action::ClearInflight;
            }
            return Action::Range { from, to };
        }
        Action::Peek {
            max: self.cfg.batch_rows,
        }
    }

    /// The result of the action last polled.
    pub fn handle(&mut self, now: Millis, input: Input<E>) {
        let awaiting = self.awaiting.take().expect("an answer to nothing");
        match (awaiting, input) {
            (Awaiting::StartHwm, Input::Watermark(answer)) => self.started(now, answer),
            (Awaiting::TakeoverRecorded(w), Input::Done) => self.takeover = Some(w),
            (Awaiting::Peek, Input::Spool(entries)) => self.peeked(now, entries),
            (Awaiting::Range, Input::Spool(entries)) => self.begin_resync(entries),
            (Awaiting::Marked { body, rows, until }, Input::Done) => {
                self.window = Some(until);
                self.send(now, body, rows);
            }
            (Awaiting::Sent { sent_at }, Input::Sent(answer)) => self.sent(now, sent_at, answer),
            (Awaiting::ResyncHwm, Input::Watermark(answer)) => self.resync_hwm(now, answer),
            (Awaiting::ResyncRow, Input::Count(answer)) => self.resync_row(now, answer),
            (Awaiting::Ring, Input::Ring(ring)) => self.decide_resync(&ring),
            (Awaiting::Settled { resync }, Input::Done) => {
                self.inflight = None;
                self.settle_until = None;
                if resync {
                    self.resync = None;
                    self.window = None;
                }
            }
            (Awaiting::Cleared, Input::Done) => {
                self.inflight = None;
                self.window = None;
            }
            (awaiting, _) => panic!("the driver answered something else than {awaiting:?}"),
        }
    }

    fn send(&mut self, now: Millis, body: String, rows: usize) {
        let (from, to) = (self.batch[0].seq(), self.batch[rows - 1].seq());
        self.inflight = Some((from, to));
        self.queue(
            Action::Send {
                body,
                rows,
                from,
                to,
            },
            Some(Awaiting::Sent { sent_at: now }),
        );
    }

    fn queue(&mut self, action: Action<E>, awaits: Option<Awaiting>) {
        self.queued = Some((action, awaits));
    }

    fn fail(&mut self, now: Millis, command: Command, failure: Failure) -> Millis {
        let delay = self.backoff.next_delay().as_millis() as Millis;
        self.retry_at = Some(now.saturating_add(delay));
        self.events.push(Event::Failed {
            command,
            failure,
            retry_in: delay,
        });
        delay
    }

    fn started(&mut self, now: Millis, answer: Result<Option<i64>, Failure>) {
        match answer {
            Ok(watermark) => {
                self.started = true;
                let took_over = self.takeover.is_none();
                self.events.push(Event::Reachable {
                    watermark,
                    took_over,
                });
                if took_over {
                    self.queue(
                        Action::RecordTakeover(watermark),
                        Some(Awaiting::TakeoverRecorded(watermark)),
                    );
                }
            }
            // A target taken over before needs nothing from this answer: uploads go on
            // (they resync on their own errors).
            Err(failure) if self.takeover.is_some() => {
                self.started = true;
                self.events.push(Event::Failed {
                    command: Command::CheckHwm,
                    failure,
                    retry_in: 0,
                });
            }
            // A partition not taken over yet needs its watermark before any upload.
            Err(failure) => {
                self.fail(now, Command::CheckHwm, failure);
            }
        }
    }

    fn peeked(&mut self, now: Millis, mut entries: Vec<E>) {
        if entries.is_empty() {
            if self.reader_done {
                self.drained = true;
                self.events.push(Event::Drained);
            } else {
                self.queue(Action::Wait { until: None }, None);
            }
            return;
        }
        // Only the leading run of rows alike goes: rows in doubt are resolved before the
        // rows after them are sent, and rows before them are stored before they are
        // resolved. A file read again after a power cut puts its replayed rows after
        // the ones still spooled from before: those must be on the server when the
        // replayed copies of the same lines are counted there, or both would go.
        // A resync never mixes replay passes either (see `resync::decide`).
        let kind = |e: &E| (e.in_doubt() || e.before_takeover(), e.replay());
        let (doubtful, replay) = kind(&entries[0]);
        let peeked = entries.len();
        let run = entries
            .iter()
            .take_while(|e| kind(e) == (doubtful, replay))
            .count();
        entries.truncate(run);
        if doubtful {
            // Rows read again after a power cut can be a whole file's worth, each one a
            // checkRow: resolved a chunk at a time, each settled as it is done, so that
            // repeated cuts (each losing the answers in memory) still make progress.
            if replay != 0 {
                entries.truncate(RESYNC_CHUNK);
            }
            self.begin_resync(entries);
            return;
        }
        let mut body = InsertAllBody::new(&self.partition);
        let n = entries
            .iter()
            .take_while(|e| body.try_push(e.row(), &self.partition, self.cfg.batch_bytes))
            .count();
        // Partial: the spool had nothing more to give (rows alike ending the run do not
        // make a batch wait for more).
        let partial = n < self.cfg.batch_rows && n == peeked;
        if partial && !self.reader_done {
            if let Some(until) = self.last_send.map(|t| t.saturating_add(self.cfg.linger)) {
                if now < until {
                    self.queue(Action::Wait { until: Some(until) }, None);
                    return;
                }
            }
        }
        entries.truncate(n);
        let (from, to) = (entries[0].seq(), entries[n - 1].seq());
        self.batch = entries;
        if self.window.is_some_and(|until| to <= until) {
            // A durable mark already covers it, and every commit since kept one.
            self.send(now, body.finish(), n);
            return;
        }
        let until = to.saturating_add(self.cfg.window_rows);
        let marked = Awaiting::Marked {
            body: body.finish(),
            rows: n,
            until,
        };
        self.queue(Action::MarkInflight { from, to: until }, Some(marked));
    }

    fn sent(&mut self, now: Millis, sent_at: Millis, answer: Result<(), Failure>) {
        self.last_send = Some(sent_at);
        let batch = std::mem::take(&mut self.batch);
        match answer {
            Ok(()) => {
                self.backoff.reset();
                self.events.push(Event::Sent { rows: batch.len() });
                let to = batch.last().map_or(0, |e| e.seq());
                // The rest of the window stays marked for the batches to come.
                self.window = self.window.filter(|&until| until > to);
                let settle = Action::Settle {
                    stored: batch,
                    to_send: Vec::new(),
                    found: false,
                    inflight: self.window.map(|until| (to + 1, until)),
                };
                self.queue(settle, Some(Awaiting::Settled { resync: false }));
            }
            Err(failure) => {
                let fate = failure.fate;
                self.fail(now, Command::InsertAll, failure);
                match fate {
                    Fate::NotSent => self.queue(Action::ClearInflight, None),
                    Fate::Unknown => {
                        self.settle_until = Some(sent_at.saturating_add(self.cfg.settle));
                        self.settling_told = false;
                    }
                    Fate::Refused => {}
                }
            }
        }
    }
}
