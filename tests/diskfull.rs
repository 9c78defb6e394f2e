//! R21: the journal's filesystem fills up. Reading must pause with a clear log line,
//! nothing may be lost or doubled, and it must resume when space returns. Needs root
//! (it mounts a small tmpfs as the state dir): ignored, and scripts/test runs it as root.

mod support;

use std::process::Command;
use std::time::{Duration, Instant};
use support::*;

struct Mount(std::path::PathBuf);

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

#[test]
#[ignore = "needs root (it mounts a tmpfs); scripts/test runs it as root"]
fn a_full_disk_pauses_reading_and_resumes_when_space_returns() {
    // Ignored tests run only when asked for; asked for without root is a failure.
    assert!(is_root(), "mounting a tmpfs needs root");
    let env = Env::new();
    std::fs::create_dir_all(&env.state).unwrap();
    let ok = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=8m", "tmpfs"])
        .arg(&env.state)
        .status()
        .unwrap();
    assert!(ok.success(), "mount tmpfs failed");
    let _mount = Mount(env.state.clone());

    let (text, mut expected) = rows(0..10);
    env.append(&text);
    assert!(env.drain(&[]).success(), "{}", env.logs());

    // Another process fills the disk, leaving less than the reserve.
    let filler = env.state.join("filler");
    let free = free_bytes(&env.state);
    std::fs::write(&filler, vec![0u8; (free - (1 << 20)) as usize]).unwrap();

    env.qm.stop();
    let child = env.spawn(&[]);
    let (text, more) = rows(10..20_010);
    env.append(&text);
    expected.extend(more);
    let deadline = Instant::now() + Duration::from_secs(20);
    while !env.logs().contains("disk nearly full") {
        assert!(
            Instant::now() < deadline,
            "no disk-full line: {}",
            env.logs()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    env.qm.resume();
    std::thread::sleep(Duration::from_secs(2));
    assert!(env.rows().len() < 20_010, "reading should be paused");
    std::fs::remove_file(&filler).unwrap();
    env.wait_for_rows(20_010, Duration::from_secs(60));
    stop(child);
    env.assert_exact(&expected);
    let logs = env.logs();
    assert!(
        logs.contains("disk has room again: reading resumed"),
        "{logs}"
    );
    assert!(!logs.contains("ERROR"), "{logs}");
}

fn free_bytes(dir: &std::path::Path) -> u64 {
    let out = Command::new("df")
        .args(["-B1", "--output=avail"])
        .arg(dir)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .nth(1)
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}
