//! What the uploader's state machine and its driver exchange: the actions it asks
//! for, the answers it takes, the events it reports, and its fixed parameters.

use crate::resync::AckedRing;
use crate::row::Row;
use std::time::Duration;

/// Milliseconds on the driver's monotonic clock.
pub type Millis = u64;

/// Replayed rows resolved by one resync (one checkHWM, then a checkRow each).
pub const RESYNC_CHUNK: usize = 64;

/// A spooled row as one target sees it.
pub trait Spooled {
    fn seq(&self) -> u64;
    fn row(&self) -> &Row;
    /// Must be resolved with checkRow before it is sent (its fate is unknown).
    fn in_doubt(&self) -> bool;
    /// Read from the takeover region before this target's watermark was known.
    fn before_takeover(&self) -> bool;
    /// The replay pass that read it again after the file shrank or was rewritten (0:
    /// none; a replayed row is also in doubt).
    fn replay(&self) -> u64;
}

/// What became of a request that did not succeed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fate {
    /// It certainly never reached the server (refused connection, unknown host, failed
    /// TLS handshake).
    NotSent,
    /// The server answered with an error: it is done with the request (KO, 4xx, 500,
    /// a short count). Stored rows are still possible in principle, so a batch is
    /// resolved before rows go again, but at once.
    Refused,
    /// No answer: the connection broke after the request may have been sent, the
    /// request timed out, or a gateway answered 502/503/504 for a server that may still
    /// store it seconds later.
    Unknown,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failure {
    pub fate: Fate,
    /// For the log and the status: the server's own words where it had any.
    pub text: String,
}

/// Fixed parameters of one target's uploader.
#[derive(Clone, Debug)]
pub struct Config {
    pub batch_rows: usize,
    pub batch_bytes: usize,
    /// A partial batch waits this long after the previous send.
    pub linger: Millis,
    /// Sequence numbers past a batch that its in-flight mark also covers: later batches
    /// within them need no mark of their own (0: a mark, and a sync, per batch). Each
    /// costs a checkRow after a crash if a row was spooled under it.
    pub window_rows: u64,
    /// How long an unanswered request may still be stored by the server.
    pub settle: Millis,
    pub backoff_min: Duration,
    pub backoff_max: Duration,
    pub seed: u64,
}

/// What the driver does next.
#[derive(Debug)]
pub enum Action<E> {
    /// checkHWM; answer with [`Input::Watermark`].
    CheckHwm,
    /// The first `max` rows this target still wants; answer with [`Input::Spool`].
    Peek { max: usize },
    /// The rows this target still wants in `from..=to`; [`Input::Spool`].
    Range { from: u64, to: u64 },
    /// Durably record the takeover watermark; [`Input::Done`].
    RecordTakeover(Option<i64>),
    /// Durably (fsynced) mark `from..=to` in flight; [`Input::Done`].
    MarkInflight { from: u64, to: u64 },
    /// insertAll of the rows this target wants in `from..=to`; [`Input::Sent`].
    Send {
        body: String,
        rows: usize,
        from: u64,
        to: u64,
    },
    /// checkRow; [`Input::Count`].
    CheckRow(Row),
    /// This target's ring of recently acknowledged rows; [`Input::Ring`].
    Ring,
    /// `stored` are acknowledged, `to_send` lose their doubt and takeover marks, the
    /// in-flight mark becomes `inflight` (what is left of its window, or none; no fsync
    /// needed: the mark is still durable if this is lost); `found`: `stored` were found
    /// on the server by a resync, not stored by an insertAll just now; [`Input::Done`].
    Settle {
        stored: Vec<E>,
        to_send: Vec<E>,
        found: bool,
        inflight: Option<(u64, u64)>,
    },
    /// Forget the in-flight mark (the request never left); [`Input::Done`].
    ClearInflight,
    /// Sleep until `until` (None: until new rows are spooled), then poll again.
    Wait { until: Option<Millis> },
    /// With `--drain`: everything read is acknowledged.
    Drained,
}

/// The result of the last action.
#[derive(Debug)]
pub enum Input<E> {
    Watermark(Result<Option<i64>, Failure>),
    Spool(Vec<E>),
    Done,
    Sent(Result<(), Failure>),
    Count(Result<u64, Failure>),
    Ring(AckedRing),
}

/// The request a failure belongs to, for the log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Command {
    CheckHwm,
    InsertAll,
    CheckRow,
}

/// What happened, for the log and the status page.
#[derive(Debug, PartialEq, Eq)]
pub enum Event {
    /// checkHWM answered at start; `took_over`: this journal's first contact.
    Reachable {
        watermark: Option<i64>,
        took_over: bool,
    },
    /// A batch was stored.
    Sent {
        rows: usize,
    },
    Failed {
        command: Command,
        failure: Failure,
        /// 0 when nothing waits on this failure (a known target's first checkHWM).
        retry_in: Millis,
    },
    /// An unanswered batch is left alone until the server has settled.
    Settling {
        wait: Millis,
    },
    Resynced {
        in_doubt: usize,
        stored: usize,
        to_send: usize,
        /// checkHWM and checkRow requests it took, failed ones included.
        requests: u64,
    },
    Drained,
}
