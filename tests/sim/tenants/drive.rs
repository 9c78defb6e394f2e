//! Each tenant's real uploader (`machine::upload::Uploader`) driven against its slot of
//! the journal and its partition's server, as `world.rs` drives the single target.

use super::World;
use crate::journal::Op;
use crate::world::{describe, due, trace, wrap, SimEntry};
use qlship::machine::upload::{Action, Event, Input};
use qlship::row::Row;

impl World {
    /// Runs tenant `t`'s uploader until it waits for an answer, a timer or rows.
    pub(super) fn upload(&mut self, t: usize) {
        let reader_done = self.calm()
            && self.file.len() == self.p.rows
            && self.journal.now.pos == self.file.len();
        loop {
            let now = self.now;
            let Some(p) = self.proc.as_mut() else {
                return;
            };
            let boot = p.boot;
            let Some(u) = p.tenants[t].as_mut() else {
                return;
            };
            if reader_done {
                u.core.set_reader_done();
            }
            let woken = std::mem::take(&mut u.woken);
            let since_boot = now - boot;
            if let Some((done_at, _)) = &u.busy {
                if now < *done_at {
                    return;
                }
                let (_, input) = u.busy.take().expect("busy");
                u.core.handle(since_boot, input);
                note_events(u);
                continue;
            }
            if let Some(waiting) = u.waiting {
                if !due(waiting, now, woken) {
                    return;
                }
                u.waiting = None;
            }
            if u.drained {
                return;
            }
            let action = u.core.poll(since_boot);
            note_events(u);
            trace(now, &format!("tenant {t}: {}", describe(&action)));
            let slot = &self.journal.now.slots[t].st;
            let input = match action {
                Action::Wait { until } => {
                    u.waiting = Some((until.map(|until| until + boot), now));
                    return;
                }
                Action::Drained => {
                    u.drained = true;
                    return;
                }
                Action::Peek { max } => {
                    let rows = slot.spool.iter().take(max);
                    Input::Spool(wrap(rows.map(|(&s, r)| (s, r.clone())).collect()))
                }
                Action::Range { from, to } => {
                    let rows = slot.spool.range(from..=to);
                    Input::Spool(wrap(rows.map(|(&s, r)| (s, r.clone())).collect()))
                }
                Action::Ring => Input::Ring(slot.ring.clone()),
                Action::RecordTakeover(w) => self.journaled(t, Op::Takeover(w)),
                Action::MarkInflight { from, to } => {
                    self.journaled(t, Op::Inflight(Some((from, to))))
                }
                Action::ClearInflight => self.journaled(t, Op::Inflight(None)),
                Action::Settle {
                    stored,
                    to_send,
                    found,
                    inflight,
                } => {
                    let seqs = |v: Vec<SimEntry>| v.into_iter().map(|e| e.seq).collect();
                    let (stored, to_send) = (seqs(stored), seqs(to_send));
                    let settle = Op::Settle {
                        stored,
                        to_send,
                        found,
                        inflight,
                    };
                    self.journaled(t, settle)
                }
                Action::CheckHwm | Action::CheckRow(_) | Action::Send { .. } => {
                    self.report.requests += 1;
                    let (after, input) = self.request(t, action);
                    // The process may die with the request on the wire.
                    if !self.calm() && self.rng.chance(self.p.crash) {
                        self.crash();
                        return;
                    }
                    let u = self.tenant(t);
                    u.busy = Some((now + after, input));
                    return;
                }
            };
            self.tenant(t).core.handle(since_boot, input);
            if self.maybe_crash() {
                return;
            }
        }
    }

    fn tenant(&mut self, t: usize) -> &mut super::Tenant {
        let p = self.proc.as_mut().expect("up");
        p.tenants[t].as_mut().expect("enabled")
    }

    fn journaled(&mut self, t: usize, op: Op) -> Input<SimEntry> {
        self.journal.op(t, op);
        Input::Done
    }

    fn request(&mut self, t: usize, action: Action<SimEntry>) -> (u64, Input<SimEntry>) {
        let now = self.now;
        let slot = &self.journal.now.slots[t];
        let key = slot.key.expect("bound");
        let batch: Vec<(Row, usize)> = match &action {
            &Action::Send { from, to, .. } => {
                // Whatever a power cut leaves of the journal, it must say these may
                // have been sent.
                assert!(
                    self.journal.marked_in_any_crash(t, from, to),
                    "tenant {t}: {from}..={to} sent without a durable mark covering it"
                );
                let rows = slot.st.spool.range(from..=to);
                rows.map(|(_, r)| (r.row.clone(), r.line)).collect()
            }
            _ => Vec::new(),
        };
        let (rng, timeout) = (&mut self.rng, self.p.timeout);
        let server = self.servers.get_mut(&key).expect("a server per partition");
        server.serve(rng, now, action, batch, timeout)
    }
}

/// A target answers or fails (what `daemon::upload` records in its status).
fn note_events(u: &mut super::Tenant) {
    for event in u.core.take_events() {
        match event {
            Event::Reachable { .. } | Event::Sent { .. } => u.failing = false,
            Event::Failed { .. } => u.failing = true,
            _ => {}
        }
    }
}
