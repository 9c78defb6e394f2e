//! Shared test harness: a strict fake QueueMetrics, a temp queue_log and state dir, and
//! the real qlship binary run against them over real sockets.
#![allow(dead_code)]

pub mod fake_ami;
pub mod fake_qm;

use fake_qm::{FakeConfig, FakeQm, StoredRow};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

pub const T0: u64 = 1_700_000_000;

pub struct Env {
    pub dir: tempfile::TempDir,
    pub ql: PathBuf,
    pub state: PathBuf,
    pub qm: FakeQm,
    pub token: String,
    runs: AtomicUsize,
}

impl Env {
    pub fn new() -> Env {
        Self::with_token("P001")
    }

    pub fn with_token(token: &str) -> Env {
        Self::with_server(token, FakeConfig::default())
    }

    pub fn with_server(token: &str, cfg: FakeConfig) -> Env {
        let dir = tempfile::tempdir().unwrap();
        Env {
            ql: dir.path().join("queue_log"),
            state: dir.path().join("state"),
            dir,
            qm: FakeQm::start(cfg),
            token: token.into(),
            runs: AtomicUsize::new(0),
        }
    }

    pub fn args(&self, extra: &[&str]) -> Vec<String> {
        let mut a: Vec<String> = [
            "-h",
            "127.0.0.1",
            "-p",
            &self.qm.port().to_string(),
            "--state-dir",
            self.state.to_str().unwrap(),
            "--run-dir",
            self.dir.path().join("run").to_str().unwrap(),
            "--backoff-min",
            "0.05",
            "--backoff-max",
            "0.4",
            "--http-timeout",
            "1",
            "--rotate-grace",
            "0.5",
            "--resync-settle",
            "0.6",
            "--heartbeat",
            "0",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        a.extend(extra.iter().map(|s| s.to_string()));
        a.push(self.ql.to_str().unwrap().into());
        a.push(self.token.clone());
        a
    }

    fn log_path(&self, n: usize) -> PathBuf {
        self.dir.path().join(format!("qlship-{n}.log"))
    }

    pub fn spawn(&self, extra: &[&str]) -> Daemon {
        self.spawn_program(&[env!("CARGO_BIN_EXE_qlship")], extra)
    }

    /// Like `spawn`, with another qlship binary, possibly behind an emulator:
    /// `program` is the command line before qlship's own arguments.
    pub fn spawn_program(&self, program: &[&str], extra: &[&str]) -> Daemon {
        let n = self.runs.fetch_add(1, Ordering::SeqCst);
        let log = std::fs::File::create(self.log_path(n)).unwrap();
        Daemon(Some(
            Command::new(program[0])
                .args(&program[1..])
                .args(self.args(extra))
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .unwrap(),
        ))
    }

    /// Runs `qlship --drain` to completion (panics after `limit`).
    pub fn drain(&self, extra: &[&str]) -> ExitStatus {
        self.drain_program(&[env!("CARGO_BIN_EXE_qlship")], extra)
    }

    /// Like `drain`, with another qlship binary (see `spawn_program`).
    pub fn drain_program(&self, program: &[&str], extra: &[&str]) -> ExitStatus {
        let mut args = vec!["--drain"];
        args.extend_from_slice(extra);
        let mut daemon = self.spawn_program(program, &args);
        let child = daemon.child();
        let deadline = Instant::now() + Duration::from_secs(180);
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return status;
            }
            if Instant::now() > deadline {
                panic!("qlship --drain did not finish; logs:\n{}", self.logs());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn logs(&self) -> String {
        let mut out = String::new();
        for n in 0..self.runs.load(Ordering::SeqCst) {
            let text = std::fs::read_to_string(self.log_path(n)).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            let keep = if std::env::var_os("QLSHIP_FULL_LOGS").is_some() {
                usize::MAX
            } else {
                40
            };
            let tail = &lines[lines.len().saturating_sub(keep)..];
            out.push_str(&format!(
                "--- run {n} ({} lines, last 40)\n{}\n",
                lines.len(),
                tail.join("\n")
            ));
        }
        out
    }

    pub fn append(&self, text: &str) {
        append_to(&self.ql, text.as_bytes());
    }

    pub fn rows(&self) -> Vec<StoredRow> {
        self.qm.rows(&self.token)
    }

    /// Waits until the server holds at least `n` rows, then a little longer so that a
    /// duplicate would have time to show.
    pub fn wait_for_rows(&self, n: usize, limit: Duration) -> Vec<StoredRow> {
        let deadline = Instant::now() + limit;
        while self.rows().len() < n {
            if Instant::now() > deadline {
                panic!(
                    "server has {} of {n} rows after {limit:?}; logs:\n{}",
                    self.rows().len(),
                    self.logs()
                );
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        std::thread::sleep(Duration::from_millis(300));
        self.rows()
    }

    /// Waits until the server has a feedback result for `id`; returns every report of it.
    pub fn wait_fb_reports(&self, id: &str, limit: Duration) -> Vec<fake_qm::FbReport> {
        let deadline = Instant::now() + limit;
        loop {
            let got: Vec<fake_qm::FbReport> = self
                .qm
                .fb_results()
                .into_iter()
                .filter(|r| r.id == id)
                .collect();
            if !got.is_empty() {
                return got;
            }
            assert!(
                Instant::now() < deadline,
                "no result for feedback action {id}; logs:\n{}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Asserts the server holds exactly `expected`, in order, and saw no protocol violation.
    pub fn assert_exact(&self, expected: &[StoredRow]) {
        assert_exact(&self.rows(), expected, &self.logs());
        assert_eq!(
            self.qm.violations(),
            Vec::<String>::new(),
            "protocol violations"
        );
    }
}

/// Runs qlship to completion: its exit code and everything it printed.
pub fn run_qlship(args: &[String]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_qlship"))
        .args(args)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text)
}

/// logrotate's copytruncate: copy the file to `to`, then truncate it in place.
pub fn copytruncate(path: &Path, to: &Path) {
    std::fs::copy(path, to).unwrap();
    std::fs::OpenOptions::new()
        .write(true)
        .open(path)
        .unwrap()
        .set_len(0)
        .unwrap();
}

pub fn append_to(path: &Path, bytes: &[u8]) {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap();
    f.write_all(bytes).unwrap();
}

pub fn assert_exact(got: &[StoredRow], expected: &[StoredRow], logs: &str) {
    if got == expected {
        return;
    }
    if let Some(dir) = std::env::var_os("QLSHIP_DUMP") {
        let show = |rows: &[StoredRow]| {
            rows.iter()
                .map(|r| format!("{:?}\n", r))
                .collect::<String>()
        };
        let _ = std::fs::write(std::path::Path::new(&dir).join("got.txt"), show(got));
        let _ = std::fs::write(
            std::path::Path::new(&dir).join("expected.txt"),
            show(expected),
        );
    }
    let mut want: std::collections::HashMap<&StoredRow, Vec<usize>> =
        std::collections::HashMap::new();
    for (i, r) in expected.iter().enumerate() {
        want.entry(r).or_default().push(i);
    }
    let mut extra = Vec::new();
    for r in got {
        match want.get_mut(r) {
            Some(v) if !v.is_empty() => {
                v.remove(0);
            }
            _ => extra.push(r.clone()),
        }
    }
    let mut missing: Vec<usize> = want.into_values().flatten().collect();
    missing.sort_unstable();
    let first_diff = got.iter().zip(expected).position(|(x, y)| x != y);
    panic!(
        "server rows differ: got {} expected {}; {} missing (first indices {:?}), {} extra/doubled (first {:?}); first order difference at {first_diff:?}\nlogs:\n{logs}",
        got.len(),
        expected.len(),
        missing.len(),
        &missing[..missing.len().min(10)],
        extra.len(),
        extra.first(),
    );
}

/// A realistic row: calls entering, connecting, completing, agents pausing.
pub fn row(i: u64) -> (String, StoredRow) {
    let t = T0 + i / 4;
    let call = format!("{}.{}", T0 + i / 12, i / 3);
    let (queue, agent, verb, params): (&str, &str, &str, Vec<String>) = match i % 6 {
        0 => (
            "q-sales",
            "NONE",
            "ENTERQUEUE",
            vec!["".into(), format!("555{i:04}"), "1".into()],
        ),
        1 => (
            "q-sales",
            "Agent/101",
            "CONNECT",
            vec!["4".into(), format!("{call}x"), "3".into()],
        ),
        2 => (
            "q-sales",
            "Agent/101",
            "COMPLETEAGENT",
            vec!["4".into(), format!("{}", 30 + i % 50), "1".into()],
        ),
        3 => ("NONE", "Agent/102", "PAUSE", vec!["lunch".into()]),
        4 => (
            "q-support",
            "Agent/103",
            "RINGNOANSWER",
            vec!["15000".into()],
        ),
        _ => (
            "q-support",
            "NONE",
            "ABANDON",
            vec!["1".into(), "1".into(), format!("{}", i % 90)],
        ),
    };
    let call = if queue == "NONE" {
        "NONE".to_string()
    } else {
        call
    };
    let line = format!("{t}|{call}|{queue}|{agent}|{verb}|{}\n", params.join("|"));
    let mut p = params;
    p.resize(5, String::new());
    (
        line,
        StoredRow {
            time_id: t.to_string(),
            call_id: call,
            queue: queue.into(),
            agent: agent.into(),
            verb: verb.into(),
            params: p,
        },
    )
}

/// Lines and expected rows for `range`.
pub fn rows(range: std::ops::Range<u64>) -> (String, Vec<StoredRow>) {
    let mut text = String::new();
    let mut expected = Vec::new();
    for i in range {
        let (l, r) = row(i);
        text.push_str(&l);
        expected.push(r);
    }
    (text, expected)
}

/// A qlship process that is killed if the test ends (or panics) without stopping it,
/// so that a failing test leaves no daemon behind.
pub struct Daemon(Option<Child>);

impl Daemon {
    pub fn id(&self) -> u32 {
        self.0.as_ref().expect("running").id()
    }

    pub fn child(&mut self) -> &mut Child {
        self.0.as_mut().expect("running")
    }

    fn take(mut self) -> Child {
        self.0.take().expect("running")
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

pub trait Pid {
    fn pid(&self) -> u32;
}

impl Pid for Child {
    fn pid(&self) -> u32 {
        self.id()
    }
}

impl Pid for Daemon {
    fn pid(&self) -> u32 {
        self.id()
    }
}

pub fn signal(child: &impl Pid, sig: i32) {
    // SAFETY: plain kill(2) on a child we spawned.
    unsafe {
        libc::kill(child.pid() as i32, sig);
    }
}

/// SIGTERM, and the process must be gone within two seconds with exit status 0.
pub fn stop(child: impl Into<Child>) {
    stop_within(child, Duration::from_secs(2))
}

/// SIGTERM, and the process must be gone within `limit` with exit status 0.
pub fn stop_within(child: impl Into<Child>, limit: Duration) {
    let mut child: Child = child.into();
    signal(&child, libc::SIGTERM);
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            assert!(status.success(), "exit status after SIGTERM: {status}");
            return;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("qlship did not stop within {limit:?} of SIGTERM");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

impl From<Daemon> for Child {
    fn from(d: Daemon) -> Child {
        d.take()
    }
}

pub fn kill9(child: impl Into<Child>) {
    let mut child: Child = child.into();
    let _ = child.kill();
    let _ = child.wait();
}

/// A throwaway CA (PEM, for --cacert) and a server identity for 127.0.0.1 signed by it.
pub fn pki() -> (String, std::sync::Arc<rustls::ServerConfig>) {
    use rcgen::{BasicConstraints, Certificate, CertificateParams, DnType, IsCa, SanType};
    let mut ca_params = CertificateParams::default();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "qlship test CA");
    let ca = Certificate::from_params(ca_params).unwrap();
    let mut params = CertificateParams::new(vec!["localhost".to_string()]);
    params
        .subject_alt_names
        .push(SanType::IpAddress("127.0.0.1".parse().unwrap()));
    let cert = Certificate::from_params(params).unwrap();
    let config = rustls::ServerConfig::builder()
        .with_safe_defaults()
        .with_no_client_auth()
        .with_single_cert(
            vec![rustls::Certificate(
                cert.serialize_der_with_signer(&ca).unwrap(),
            )],
            rustls::PrivateKey(cert.serialize_private_key_der()),
        )
        .unwrap();
    (ca.serialize_pem().unwrap(), std::sync::Arc::new(config))
}

/// An HTTPS stand-in (token P001) and the PEM file of the CA that signed its certificate.
pub fn tls_env() -> (Env, std::path::PathBuf) {
    let (ca_pem, server) = pki();
    let env = Env::with_server(
        "P001",
        fake_qm::FakeConfig {
            tls: Some(server),
            ..Default::default()
        },
    );
    let ca = env.dir.path().join("ca.pem");
    std::fs::write(&ca, ca_pem).unwrap();
    (env, ca)
}
