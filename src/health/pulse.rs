//! Is the pipeline alive? Each pipeline task (the reader, each uploader) owns a
//! [`Pulse`] and beats it at every turn of its loop (the uploader also at every row a
//! resync asks about). Every wait in those loops is bounded (idle waits of at most 30 s,
//! backoff, the resync settle time, requests with `--http-timeout`), so a task that has
//! not beaten for longer than [`quiet_limit`] is stuck: a worker thread hung on a dead
//! NFS mount, a deadlock, a request without its timeout. A task that finished (the
//! reader after `--drain`) is done, not dead.
//!
//! [`watchdog`] tells systemd `WATCHDOG=1` only while every pulse is alive, so systemd
//! restarts a qlship that is running but no longer working. A stuck executor sends
//! nothing at all, which systemd treats the same way.

use crate::atomic64::AtomicU64;
use crate::config::Settings;
use log::{info, warn};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

#[derive(Debug)]
struct Inner {
    name: String,
    /// Milliseconds since [`anchor`] at the last beat.
    last_ms: AtomicU64,
    finished: AtomicBool,
}

#[derive(Debug, Clone)]
pub struct Pulse(Arc<Inner>);

fn anchor() -> Instant {
    static ANCHOR: OnceLock<Instant> = OnceLock::new();
    *ANCHOR.get_or_init(Instant::now)
}

fn now_ms() -> u64 {
    anchor().elapsed().as_millis() as u64
}

/// Marks its pulse finished when dropped: a task holds it for its whole life.
pub struct Finish(Pulse);

impl Drop for Finish {
    fn drop(&mut self) {
        self.0 .0.finished.store(true, Ordering::Relaxed);
    }
}

impl Pulse {
    /// A pulse that has just beaten.
    pub fn new(name: impl Into<String>) -> Pulse {
        Pulse(Arc::new(Inner {
            name: name.into(),
            last_ms: AtomicU64::new(now_ms()),
            finished: AtomicBool::new(false),
        }))
    }

    pub fn beat(&self) {
        self.0.last_ms.store(now_ms(), Ordering::Relaxed);
    }

    /// A guard the task keeps until it returns; the pulse is then finished.
    pub fn finish_on_drop(&self) -> Finish {
        Finish(self.clone())
    }

    pub fn name(&self) -> &str {
        &self.0.name
    }

    /// How long since the last beat at `now_ms`; None once finished.
    fn quiet_at(&self, now_ms: u64) -> Option<Duration> {
        if self.0.finished.load(Ordering::Relaxed) {
            return None;
        }
        Some(Duration::from_millis(
            now_ms.saturating_sub(self.0.last_ms.load(Ordering::Relaxed)),
        ))
    }
}

/// The first pulse quiet for longer than `limit`, and for how long.
pub fn stuck(pulses: &[Pulse], limit: Duration) -> Option<(&Pulse, Duration)> {
    stuck_at(pulses, limit, now_ms())
}

fn stuck_at(pulses: &[Pulse], limit: Duration, now_ms: u64) -> Option<(&Pulse, Duration)> {
    pulses.iter().find_map(|p| {
        p.quiet_at(now_ms)
            .filter(|&q| q > limit)
            .map(|quiet| (p, quiet))
    })
}

/// The longest a healthy pipeline task goes between beats, with a margin: its idle
/// wait (30 s) or the longest backoff, the settle time before a resync, and three
/// requests (a batch, then a resync's checkHWM and first checkRow).
pub fn quiet_limit(s: &Settings) -> Duration {
    Duration::from_secs(30).max(s.backoff_max)
        + s.resync_settle
        + 3 * s.http_timeout
        + Duration::from_secs(30)
}

/// Sends `WATCHDOG=1` every half `$WATCHDOG_USEC` while no pulse is stuck; logs once
/// when it stops (and when it resumes). Without a systemd watchdog it does nothing.
pub async fn watchdog(pulses: Vec<Pulse>, limit: Duration) {
    let Some(every) = super::notify::watchdog_every() else {
        return std::future::pending().await;
    };
    let mut silent = false;
    loop {
        let (pet, say) = turn(stuck(&pulses, limit), limit, &mut silent);
        if pet {
            super::notify::send("WATCHDOG=1");
        }
        match say {
            Some(Say::Stopped(line)) => warn!("{line}"),
            Some(Say::Resumed(line)) => info!("{line}"),
            None => {}
        }
        smol::Timer::after(every).await;
    }
}

/// A log line of the watchdog's.
#[derive(Debug, PartialEq)]
enum Say {
    Stopped(String),
    Resumed(String),
}

/// One watchdog turn: whether to pet systemd, and what to log when that changes.
fn turn(
    stuck: Option<(&Pulse, Duration)>,
    limit: Duration,
    silent: &mut bool,
) -> (bool, Option<Say>) {
    match stuck {
        None => {
            let say = std::mem::take(silent).then(|| {
                Say::Resumed(
                    "watchdog: the pipeline is moving again; telling systemd we are alive".into(),
                )
            });
            (true, say)
        }
        Some((p, quiet)) if !*silent => {
            *silent = true;
            (
                false,
                Some(Say::Stopped(format!(
                    "watchdog: the {} has made no progress for {}s (limit {}s): no longer telling systemd we are alive, it will restart qlship",
                    p.name(),
                    quiet.as_secs(),
                    limit.as_secs()
                ))),
            )
        }
        Some(_) => (false, None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(name: &str, ms: u64) -> Pulse {
        let p = Pulse::new(name);
        p.0.last_ms.store(ms, Ordering::Relaxed);
        p
    }

    #[test]
    fn a_task_quiet_beyond_the_limit_is_stuck() {
        let limit = Duration::from_secs(100);
        let pulses = vec![at("reader", 50_000), at("uploader", 10_000)];
        assert!(stuck_at(&pulses, limit, 110_000).is_none(), "exactly 100 s");
        let (p, quiet) = stuck_at(&pulses, limit, 110_001).unwrap();
        assert_eq!(p.name(), "uploader");
        assert_eq!(quiet, Duration::from_millis(100_001));
        // It beats: both are within the limit again.
        pulses[1].0.last_ms.store(100_000, Ordering::Relaxed);
        assert!(stuck_at(&pulses, limit, 110_001).is_none());
    }

    #[test]
    fn pets_only_while_nothing_is_stuck_and_says_so_once_each_way() {
        let limit = Duration::from_secs(240);
        let p = at("uploader for X", 0);
        let mut silent = false;
        assert_eq!(turn(None, limit, &mut silent), (true, None));
        let (pet, say) = turn(Some((&p, Duration::from_secs(300))), limit, &mut silent);
        assert!(!pet);
        assert_eq!(
            say,
            Some(Say::Stopped("watchdog: the uploader for X has made no progress for 300s (limit 240s): no longer telling systemd we are alive, it will restart qlship".into()))
        );
        assert_eq!(
            turn(Some((&p, Duration::from_secs(330))), limit, &mut silent),
            (false, None)
        );
        let (pet, say) = turn(None, limit, &mut silent);
        assert!(pet);
        assert!(matches!(say, Some(Say::Resumed(_))));
        assert_eq!(turn(None, limit, &mut silent), (true, None));
    }

    #[test]
    fn a_finished_task_is_never_stuck() {
        let p = at("reader", 0);
        let limit = Duration::from_secs(1);
        assert!(stuck_at(std::slice::from_ref(&p), limit, 5_000).is_some());
        drop(p.finish_on_drop());
        assert!(stuck_at(std::slice::from_ref(&p), limit, 5_000_000).is_none());
    }

    #[test]
    fn the_limit_covers_every_bounded_wait_of_the_loops() {
        let mut s = crate::config::parse_args(["/tmp/queue_log".to_string()]).unwrap();
        let crate::config::Command::Run(ref mut s) = s else {
            panic!()
        };
        // Defaults: backoff 60 s, settle 60 s, timeout 30 s.
        assert_eq!(quiet_limit(s), Duration::from_secs(60 + 60 + 90 + 30));
        s.backoff_max = Duration::from_secs(1);
        s.resync_settle = Duration::from_secs(2);
        s.http_timeout = Duration::from_secs(1);
        assert_eq!(quiet_limit(s), Duration::from_secs(30 + 2 + 3 + 30));
    }
}
