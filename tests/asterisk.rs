//! Feedback actions against a real Asterisk (22, from Debian unstable, in the chroot
//! that `tests/asterisk/setup` makes): QueueAdd / QueuePause / QueueRemove sent through
//! qlship change Asterisk's queue, Asterisk's own queue_log then carries ADDMEMBER /
//! PAUSE / REMOVEMEMBER, and qlship, following that queue_log, uploads those rows.
//!
//! Runs when `QLSHIP_ASTERISK_ROOT` names the chroot (CI sets it after building it; a
//! failed build fails CI there). Without it the test says SKIPPED: it needs root.

mod support;

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use support::*;

struct Asterisk {
    root: PathBuf,
    conf: String,
    child: Child,
    /// The run's directory, as seen from outside the chroot.
    dir: PathBuf,
}

impl Asterisk {
    fn start(root: &Path, ami_port: u16) -> Asterisk {
        let name = format!("qlship-test-{}", std::process::id());
        let inside = format!("/tmp/{name}");
        let dir = root.join(inside.trim_start_matches('/'));
        let _ = std::fs::remove_dir_all(&dir);
        for sub in ["etc", "log", "run", "lib", "spool"] {
            std::fs::create_dir_all(dir.join(sub)).unwrap();
        }
        let write = |f: &str, text: String| std::fs::write(dir.join("etc").join(f), text).unwrap();
        write(
            "asterisk.conf",
            format!(
                "[directories]\nastetcdir => {inside}/etc\nastlogdir => {inside}/log\n\
                 astrundir => {inside}/run\nastdbdir => {inside}/lib\nastvarlibdir => {inside}/lib\n\
                 astspooldir => {inside}/spool\nastmoddir => /usr/lib/x86_64-linux-gnu/asterisk/modules\n\
                 astdatadir => /usr/share/asterisk\n[options]\nverbose = 0\n"
            ),
        );
        // Only what the test needs: the manager is built in, app_queue holds the queue.
        write(
            "modules.conf",
            "[modules]\nautoload = no\nload => app_queue.so\nload => pbx_config.so\nload => func_strings.so\n"
                .into(),
        );
        write(
            "manager.conf",
            format!(
                "[general]\nenabled = yes\nport = {ami_port}\nbindaddr = 127.0.0.1\n\n\
                 [admin]\nsecret = amp111\nread = all\nwrite = all\n"
            ),
        );
        write(
            "queues.conf",
            "[general]\npersistentmembers = no\nlog_membername_as_agent = yes\n\n[q-support]\nstrategy = ringall\n"
                .into(),
        );
        write(
            "logger.conf",
            "[general]\nqueue_log = yes\n\n[logfiles]\nmessages => error,warning\n".into(),
        );
        write("extensions.conf", "[agents]\n".into());
        let conf = format!("{inside}/etc/asterisk.conf");
        let child = Command::new("chroot")
            .arg(root)
            .args(["/usr/sbin/asterisk", "-f", "-C", &conf])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("stderr")).unwrap())
            .spawn()
            .expect("chroot asterisk");
        let a = Asterisk {
            root: root.into(),
            conf,
            child,
            dir,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect(("127.0.0.1", ami_port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "Asterisk's AMI did not come up on port {ami_port}; stderr:\n{}\nmessages:\n{}",
                std::fs::read_to_string(a.dir.join("stderr")).unwrap_or_default(),
                std::fs::read_to_string(a.dir.join("log/messages")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        a
    }

    fn cli(&self, command: &str) -> String {
        let out = Command::new("chroot")
            .arg(&self.root)
            .args(["/usr/sbin/asterisk", "-C", &self.conf, "-rx", command])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn queue_log(&self) -> PathBuf {
        self.dir.join("log/queue_log")
    }
}

impl Drop for Asterisk {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn wait_until(what: &str, limit: Duration, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !ok() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn queue_actions_change_a_real_asterisk_and_its_queue_log_rows_are_uploaded() {
    let Some(root) = std::env::var_os("QLSHIP_ASTERISK_ROOT") else {
        eprintln!("SKIPPED: QLSHIP_ASTERISK_ROOT is not set (tests/asterisk/setup makes the chroot; needs root)");
        return;
    };
    let root = PathBuf::from(root);
    assert!(
        root.join("usr/sbin/asterisk").exists(),
        "QLSHIP_ASTERISK_ROOT={} holds no Asterisk: run tests/asterisk/setup",
        root.display()
    );
    let port = free_port();
    let ast = Asterisk::start(&root, port);
    let mut env = Env::new();
    env.ql = ast.queue_log();
    let daemon = env.spawn(&["--feedback", "0.2", "--ami-timeout", "5"]);
    let login = "Action: Login\nUsername: admin\nSecret: amp111";

    env.qm.push_actions(
        "P001",
        "add",
        "127.0.0.1",
        port,
        &[
            login,
            "Action: QueueAdd\nQueue: q-support\nInterface: Local/101@agents\nMemberName: Agent/101",
            "Action: QueuePause\nQueue: q-support\nInterface: Local/101@agents\nPaused: true\nReason: lunch",
        ],
    );
    let r = env.wait_fb_reports("add", Duration::from_secs(20))[0].clone();
    assert_eq!(r.status, "OK", "{r:?}\n{}", env.logs());
    let shown = ast.cli("queue show q-support");
    assert!(shown.contains("Agent/101 (Local/101@agents"), "{shown}");
    assert!(shown.contains("paused"), "{shown}");

    env.qm.push_actions(
        "P001",
        "remove",
        "127.0.0.1",
        port,
        &[
            login,
            "Action: QueueRemove\nQueue: q-support\nInterface: Local/101@agents",
        ],
    );
    assert_eq!(
        env.wait_fb_reports("remove", Duration::from_secs(20))[0].status,
        "OK"
    );
    let shown = ast.cli("queue show q-support");
    assert!(!shown.contains("Agent/101"), "{shown}");

    // Asterisk's own rows for what qlship did, uploaded by qlship.
    let verbs = |rows: &[support::fake_qm::StoredRow]| -> Vec<String> {
        rows.iter()
            .filter(|r| r.agent == "Agent/101")
            .map(|r| r.verb.clone())
            .collect()
    };
    wait_until(
        "ADDMEMBER, PAUSE, REMOVEMEMBER uploaded",
        Duration::from_secs(20),
        || verbs(&env.rows()) == ["ADDMEMBER", "PAUSE", "REMOVEMEMBER"],
    );
    let pause = env.rows().into_iter().find(|r| r.verb == "PAUSE").unwrap();
    assert_eq!(pause.queue, "q-support");
    assert_eq!(pause.params[0], "lunch");
    stop(daemon);
    let lines = std::fs::read_to_string(ast.queue_log())
        .unwrap()
        .lines()
        .count();
    assert_eq!(env.rows().len(), lines, "every queue_log row uploaded once");
    assert!(!env.logs().contains("amp111"));
}
