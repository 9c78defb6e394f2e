//! The heartbeat task: `checkHb` to each target on its own clock.

use super::{blocking, now_unix, Lead, Shared};
use log::{debug, warn};
use smol::Timer;
use std::sync::Arc;

/// The daemon's log target, as before the daemon was split into files.
const LOG: &str = "qlship::daemon";

/// `checkHb` every `--heartbeat` to one target, whatever its rows and the other targets
/// do; a failure is logged and the next one comes at the next interval.
pub(super) async fn heartbeat(sh: Arc<Shared>, lead: Arc<Lead>) {
    let every = sh.settings.heartbeat;
    if every.is_zero() {
        return std::future::pending().await;
    }
    loop {
        Timer::after(every).await;
        let client = lead.client.clone();
        let now = now_unix();
        let sent = blocking(move || client.check_hb(now)).await;
        sh.wake_status.notify(); // its time, or the request counters
        match sent {
            Ok(()) => {
                lead.status().last_heartbeat = Some(now);
                debug!(target: LOG, "{}: heartbeat sent", lead.who());
            }
            Err(e) => warn!(
                target: LOG,
                "{}: heartbeat failed: {e}; next in {}s",
                lead.who(),
                every.as_secs()
            ),
        }
    }
}
