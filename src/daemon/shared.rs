//! What the daemon's tasks share: the settings and journal, one [`Lead`] per enabled
//! target with its client, status and wake-up, and what the reader reports for
//! `qlship status`.

use super::{now_unix, POLL, WATCHED_POLL};
use crate::config::Settings;
use crate::fanout::Lane;
use crate::health::pulse::Pulse;
use crate::http::Client;
use crate::journal::Journal;
use crate::machine::shares::Load;
use crate::rules::{Split, Target};
use crate::status::TargetStatus;
use smol::channel::{Receiver, Sender};
use smol::Timer;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub(super) struct Wake {
    tx: Sender<()>,
    rx: Receiver<()>,
}

impl Wake {
    pub(super) fn new() -> Wake {
        let (tx, rx) = smol::channel::bounded(1);
        Wake { tx, rx }
    }
    pub(super) fn notify(&self) {
        let _ = self.tx.try_send(());
    }
    /// Forgets a notification not yet waited for.
    pub(super) fn clear(&self) {
        while self.rx.try_recv().is_ok() {}
    }
    /// Sleeps until notified or until `d` has passed; true if notified.
    pub(super) async fn notified_within(&self, d: Duration) -> bool {
        smol::future::or(
            async {
                let _ = self.rx.recv().await;
                true
            },
            async {
                Timer::after(d).await;
                false
            },
        )
        .await
    }
    /// Sleeps until notified or until `d` has passed.
    pub(super) async fn wait(&self, d: Duration) {
        self.notified_within(d).await;
    }
}

/// One enabled target while the daemon runs.
pub(super) struct Lead {
    /// Index in the rules' target list (0 in single-target mode).
    pub(super) index: usize,
    /// Journal slot (the spool masks' bit).
    pub(super) slot: usize,
    pub(super) target: Target,
    /// Feedback records' scope in the journal.
    pub(super) fb_scope: String,
    pub(super) client: Client,
    pub(super) wake: Wake,
    pub(super) status: Mutex<TargetStatus>,
    /// Beaten at every turn of the uploader (the systemd watchdog's evidence).
    pub(super) pulse: Pulse,
    /// Set while the uploader waits with nothing in flight and an in-flight window
    /// still marked: a stop then clears the mark (`daemon::run`), so that the next start
    /// does not wait a settle window for rows never sent.
    pub(super) window_to_release: AtomicBool,
}

impl Lead {
    /// How the target is named in the log: its rule name in multi-target mode.
    pub(super) fn who(&self) -> String {
        if self.target.name.is_empty() {
            "server".into()
        } else {
            format!("target {:?}", self.target.name)
        }
    }

    pub(super) fn status(&self) -> std::sync::MutexGuard<'_, TargetStatus> {
        self.status.lock().expect("status lock")
    }

    /// Records a success; returns whether the target had been failing.
    pub(super) fn ok(&self, rows: u64) -> bool {
        let mut st = self.status();
        let was_failing = st.failing_since.take().is_some();
        st.last_success = Some(now_unix());
        st.acked_since_start += rows;
        was_failing
    }

    pub(super) fn failed(&self, error: &dyn std::fmt::Display) {
        let now = now_unix();
        let mut st = self.status();
        st.failing_since.get_or_insert(now);
        st.last_error = Some(error.to_string());
        st.last_error_at = Some(now);
    }
}

pub(super) struct Shared {
    pub(super) settings: Settings,
    pub(super) journal: Arc<Journal>,
    pub(super) split: Option<Split>,
    pub(super) leads: Vec<Arc<Lead>>,
    pub(super) wake_reader: Wake,
    /// Something `qlship status` shows may have changed: a status task at rest looks.
    pub(super) wake_status: Wake,
    pub(super) reader_done: AtomicBool,
    /// inotify reports changes of the queue_log (see `watch`): idle polls can be rare.
    pub(super) watching: AtomicBool,
    pub(super) started: i64,
    pub(super) live: Mutex<Live>,
    pub(super) reader_pulse: Pulse,
}

/// What the reader reports for `qlship status`.
#[derive(Default)]
pub(super) struct Live {
    pub(super) reader: String,
    pub(super) reading: String,
    pub(super) offset: u64,
    /// Time of the newest row read, for the backlog in seconds.
    pub(super) newest_time: Option<i64>,
}

impl Shared {
    pub(super) fn idle_poll(&self, events_suffice: bool) -> Duration {
        if events_suffice && self.watching.load(Ordering::Relaxed) {
            WATCHED_POLL
        } else {
            POLL
        }
    }

    pub(super) fn live(&self) -> std::sync::MutexGuard<'_, Live> {
        self.live.lock().expect("status lock")
    }

    pub(super) fn set_reader(&self, state: &str) {
        let mut live = self.live();
        if live.reader != state {
            live.reader = state.to_owned();
            self.wake_status.notify();
        }
    }

    /// Rows were spooled (or reading is done): the uploaders have work, and the status
    /// has changed.
    pub(super) fn wake_uploaders(&self) {
        for l in &self.leads {
            l.wake.notify();
        }
        self.wake_status.notify();
    }

    /// Each target's load for `machine::shares` (in the order of `leads`): its backlog
    /// in bytes, estimated from its rows at the spool's mean row size, and whether its
    /// last request failed.
    pub(super) fn loads(&self, meta: &crate::journal::Meta) -> Vec<Load> {
        let row_bytes = meta.spool_bytes / meta.spool_rows.max(1);
        let load = |l: &Arc<Lead>| Load {
            backlog: meta.targets[l.slot].pending_rows.saturating_mul(row_bytes),
            failing: l.status().failing_since.is_some(),
        };
        self.leads.iter().map(load).collect()
    }

    /// The reader's view of each target, from the journal's meta, with whether it is
    /// over its share of the spool (`machine::shares`, in the order of `leads`).
    pub(super) fn lanes(&self, meta: &crate::journal::Meta, over_share: &[bool]) -> Vec<Lane> {
        let lane = |(l, &over_share): (&Arc<Lead>, &bool)| Lane {
            index: l.index,
            slot: l.slot,
            takeover: meta.targets[l.slot].takeover,
            over_share,
        };
        self.leads.iter().zip(over_share).map(lane).collect()
    }
}
