//! systemd's notification protocol without libsystemd: one datagram per message to the
//! unix socket named by `$NOTIFY_SOCKET` (a path, or `@name` for an abstract socket).
//! `READY=1` once the journal is open (`Type=notify`), `STATUS=…` when the status
//! changes (what `systemctl status` shows), `WATCHDOG=1` from [`super::pulse`] while the
//! pipeline is alive, `STOPPING=1` on a clean stop. Without `$NOTIFY_SOCKET` (sysvinit,
//! procd, a shell) every call does nothing.

use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::sync::OnceLock;
use std::time::Duration;

pub struct Notifier {
    socket: UnixDatagram,
    to: SocketAddr,
}

static NOTIFIER: OnceLock<Option<Notifier>> = OnceLock::new();

fn notifier() -> Option<&'static Notifier> {
    NOTIFIER
        .get_or_init(|| {
            let name = std::env::var_os("NOTIFY_SOCKET")?;
            let socket = UnixDatagram::unbound().ok()?;
            let to = address(name.as_encoded_bytes())?;
            Some(Notifier { socket, to })
        })
        .as_ref()
}

/// The socket address `$NOTIFY_SOCKET` names: a path, or `@` for Linux's abstract
/// namespace.
fn address(name: &[u8]) -> Option<SocketAddr> {
    match name {
        [] => None,
        [b'@', abstract_name @ ..] => {
            use std::os::linux::net::SocketAddrExt;
            SocketAddr::from_abstract_name(abstract_name).ok()
        }
        [b'/', ..] => {
            use std::os::unix::ffi::OsStrExt;
            SocketAddr::from_pathname(std::ffi::OsStr::from_bytes(name)).ok()
        }
        _ => None,
    }
}

/// Sends one message (newline-separated `KEY=VALUE` lines); failures are ignored: the
/// service manager may be gone, and qlship's work does not depend on it.
pub fn send(message: &str) {
    if let Some(n) = notifier() {
        let _ = n.socket.send_to_addr(message.as_bytes(), &n.to);
    }
}

/// Whether a service manager listens at all.
pub fn enabled() -> bool {
    notifier().is_some()
}

/// How often systemd wants `WATCHDOG=1`: half of `$WATCHDOG_USEC`, as sd_notify(3)
/// advises. None when no watchdog is set, or it is meant for another process
/// (`$WATCHDOG_PID`).
pub fn watchdog_every() -> Option<Duration> {
    let pid = std::env::var("WATCHDOG_PID").ok();
    watchdog_interval(
        std::env::var("WATCHDOG_USEC").ok().as_deref(),
        pid.as_deref(),
        std::process::id(),
    )
}

fn watchdog_interval(usec: Option<&str>, pid: Option<&str>, me: u32) -> Option<Duration> {
    if pid.is_some_and(|p| p.trim().parse::<u32>().ok() != Some(me)) {
        return None;
    }
    let usec: u64 = usec?.trim().parse().ok().filter(|&u| u > 0)?;
    Some(Duration::from_micros(usec / 2))
}

/// A `STATUS=` value on one line (systemd shows one line).
pub fn status_line(text: &str) -> String {
    let one: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(200)
        .collect();
    format!("STATUS={one}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_paths_and_abstract_names() {
        let a = address(b"@qlship-test").unwrap();
        use std::os::linux::net::SocketAddrExt;
        assert_eq!(a.as_abstract_name(), Some(&b"qlship-test"[..]));
        let p = address(b"/run/systemd/notify").unwrap();
        assert_eq!(
            p.as_pathname(),
            Some(std::path::Path::new("/run/systemd/notify"))
        );
        assert!(address(b"").is_none());
        assert!(address(b"relative/path").is_none());
    }

    #[test]
    fn the_watchdog_interval_is_half_of_systemds_and_ours_only() {
        assert_eq!(
            watchdog_interval(Some("30000000"), None, 7),
            Some(Duration::from_secs(15))
        );
        assert_eq!(
            watchdog_interval(Some("30000000"), Some("7"), 7),
            Some(Duration::from_secs(15))
        );
        assert_eq!(watchdog_interval(Some("30000000"), Some("8"), 7), None);
        assert_eq!(watchdog_interval(None, None, 7), None);
        assert_eq!(watchdog_interval(Some("0"), None, 7), None);
        assert_eq!(watchdog_interval(Some("soon"), None, 7), None);
    }

    #[test]
    fn status_is_one_line() {
        assert_eq!(status_line("a\nb\tc"), "STATUS=a b c");
        assert_eq!(status_line(&"x".repeat(500)).len(), 7 + 200);
    }
}
