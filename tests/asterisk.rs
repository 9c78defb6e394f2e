//! Feedback actions against a real Asterisk (22, from Debian unstable, in the chroot
//! that `tests/asterisk/setup` makes): QueueAdd / QueuePause / QueueRemove sent through
//! qlship change Asterisk's queue, Asterisk's own queue_log then carries ADDMEMBER /
//! PAUSE / REMOVEMEMBER, and qlship, following that queue_log, uploads those rows.
//!
//! And the policy holds against the real thing: an `Originate` of `System` and a
//! `Getvar` of `SHELL()` are refused before Asterisk, and the same containers with
//! System / SHELL allowed do run (so the probe would see it). The test Asterisk runs
//! with `live_dangerously = yes`, as Asterisks before 12 do: its own guard (which
//! blocks SHELL() from AMI, not Originate of System) is not what is tested.
//!
//! Runs when `QLSHIP_ASTERISK_ROOT` names the chroot (CI sets it after building it; a
//! failed build fails CI there). Without it the tests are ignored (scripts/test runs them
//! when the variable is set).

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
    /// The same, as seen from inside.
    inside: String,
}

impl Asterisk {
    fn start(root: &Path, ami_port: u16) -> Asterisk {
        // The port too: the tests of this file run in parallel, in one process.
        let name = format!("qlship-test-{}-{ami_port}", std::process::id());
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
                 astdatadir => /usr/share/asterisk\n[options]\nverbose = 0\n\
                 ; As older Asterisks (before 12) behave: dialplan functions such as\n\
                 ; SHELL() may be called from AMI. qlship must not rely on this guard.\n\
                 live_dangerously = yes\n"
            ),
        );
        // Only what the test needs: the manager is built in, app_queue holds the queue.
        write(
            "modules.conf",
            "[modules]\nautoload = no\nload => app_queue.so\nload => pbx_config.so\nload => func_strings.so\nload => app_system.so\nload => func_shell.so\n"
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
        // `s@agents` answers, so that an Originate into it starts its application.
        write(
            "extensions.conf",
            "[agents]\nexten => s,1,Answer()\n same => n,Wait(3)\n same => n,Hangup()\n".into(),
        );
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
            inside,
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

/// The chroot. The tests are ignored unless asked for; asked for without the chroot
/// is a failure.
fn asterisk_root() -> PathBuf {
    let root = PathBuf::from(std::env::var_os("QLSHIP_ASTERISK_ROOT").expect(
        "QLSHIP_ASTERISK_ROOT is not set: tests/asterisk/setup makes the chroot (as root)",
    ));
    assert!(
        root.join("usr/sbin/asterisk").exists(),
        "QLSHIP_ASTERISK_ROOT={} holds no Asterisk: run tests/asterisk/setup",
        root.display()
    );
    root
}

#[test]
#[ignore = "needs QLSHIP_ASTERISK_ROOT (tests/asterisk/setup makes the chroot, as root; CI sets it)"]
fn originate_of_system_and_getvar_of_shell_are_refused_and_nothing_runs_on_the_pbx() {
    let root = asterisk_root();
    let port = free_port();
    let ast = Asterisk::start(&root, port);
    let env = Env::new();
    let login = "Action: Login\nUsername: admin\nSecret: amp111";
    let inside = &ast.inside;
    let marker = ast.dir.join("pwned");
    let originate = format!(
        "Action: Originate\nChannel: Local/s@agents\nApplication: System\nData: touch {inside}/pwned\nTimeout: 5000"
    );
    env.qm
        .push_actions("P001", "sys", "127.0.0.1", port, &[login, &originate]);
    let daemon = env.spawn(&["--feedback", "0.2", "--ami-timeout", "8"]);
    let r = env.wait_fb_reports("sys", Duration::from_secs(20))[0].clone();
    stop(daemon);
    assert_eq!(
        (r.status.as_str(), r.result.as_str()),
        (
            "KO",
            "refused: Originate of application System is not allowed by AMI_APPLICATIONS"
        )
    );
    std::thread::sleep(Duration::from_secs(2));
    assert!(!marker.exists(), "System ran on the PBX");

    // The control: with System allowed, the very same container does run.
    env.qm.push_actions(
        "P001",
        "sys-allowed",
        "127.0.0.1",
        port,
        &[login, &originate],
    );
    let daemon = env.spawn(&[
        "--feedback",
        "0.2",
        "--ami-timeout",
        "8",
        "--ami-applications",
        "ChanSpy,System",
    ]);
    let r = env.wait_fb_reports("sys-allowed", Duration::from_secs(30))[0].clone();
    stop(daemon);
    assert_eq!(r.status, "OK", "{r:?}\n{}", env.logs());
    wait_until("System to touch its file", Duration::from_secs(10), || {
        marker.exists()
    });

    // The same for a dialplan function read through Getvar, refused whatever spelling.
    let shell_marker = ast.dir.join("pwned-by-getvar");
    let getvar = format!("Action: Getvar\nVariable: Shell (touch {inside}/pwned-by-getvar)");
    env.qm
        .push_actions("P001", "shell", "127.0.0.1", port, &[login, &getvar]);
    let daemon = env.spawn(&["--feedback", "0.2", "--ami-timeout", "8"]);
    let r = env.wait_fb_reports("shell", Duration::from_secs(20))[0].clone();
    stop(daemon);
    assert_eq!(
        (r.status.as_str(), r.result.as_str()),
        (
            "KO",
            "refused: Getvar Variable calls the dialplan function Shell, not allowed by AMI_FUNCTIONS"
        )
    );
    std::thread::sleep(Duration::from_secs(1));
    assert!(!shell_marker.exists(), "SHELL() ran on the PBX");
    let getvar = format!("Action: Getvar\nVariable: SHELL(touch {inside}/pwned-by-getvar)");
    env.qm.push_actions(
        "P001",
        "shell-allowed",
        "127.0.0.1",
        port,
        &[login, &getvar],
    );
    let daemon = env.spawn(&[
        "--feedback",
        "0.2",
        "--ami-timeout",
        "8",
        "--ami-functions",
        "SHELL",
    ]);
    let r = env.wait_fb_reports("shell-allowed", Duration::from_secs(20))[0].clone();
    stop(daemon);
    assert_eq!(r.status, "OK", "{r:?}\n{}", env.logs());
    wait_until("SHELL() to touch its file", Duration::from_secs(10), || {
        shell_marker.exists()
    });
}

#[test]
#[ignore = "needs QLSHIP_ASTERISK_ROOT (tests/asterisk/setup makes the chroot, as root; CI sets it)"]
fn queue_actions_change_a_real_asterisk_and_its_queue_log_rows_are_uploaded() {
    let root = asterisk_root();
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
