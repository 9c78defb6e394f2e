//! The packaging in `board/` and the install script, exercised: shellcheck on every shell
//! file, `systemd-analyze verify` on the unit, the procd init script sourced with stub
//! `procd_*`/`config_*` functions, the sysvinit script started, queried, restarted and
//! stopped for real against the stand-in, and scripts/install into a scratch root.
//!
//! shellcheck, systemd-analyze and logrotate must be installed (`.ci/run` installs them):
//! a missing tool fails the test rather than skipping it.

mod support;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};
use support::fake_qm::{FakeConfig, FakeQm};
use support::*;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn run(cmd: &mut Command) -> Output {
    cmd.output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e} (is it installed?)"))
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Every file in the repository that a shell runs, found by its first line.
fn shell_files() -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_str().unwrap();
            if path.is_dir() {
                if !matches!(name, "target" | ".git" | "vendor") {
                    walk(&path, out);
                }
                continue;
            }
            let head = std::fs::read(&path).unwrap_or_default();
            let first = head.split(|b| *b == b'\n').next().unwrap_or_default();
            let first = String::from_utf8_lossy(first);
            if first.starts_with("#!") && (first.contains("sh ") || first.ends_with("sh")) {
                out.push(path);
            }
        }
    }
    let mut out = Vec::new();
    walk(&repo(), &mut out);
    out.sort();
    out
}

#[test]
fn every_shell_file_passes_shellcheck() {
    let files = shell_files();
    for expected in [
        ".ci/run",
        "board/qlship/files/qlship.init",
        "board/sysvinit/qlship",
        "cross/build",
        "cross/build-all",
        "cross/setup",
        "scripts/check-vendor",
        "scripts/install",
        "scripts/test",
    ] {
        assert!(
            files.contains(&repo().join(expected)),
            "{expected} not found among {files:?}"
        );
    }
    let out = run(Command::new("shellcheck").args(&files));
    assert!(out.status.success(), "shellcheck:\n{}", text(&out));
}

#[test]
fn the_systemd_unit_verifies_clean() {
    // verify checks that ExecStart's program exists, so point it at the one just built.
    let dir = tempfile::tempdir().unwrap();
    let unit = std::fs::read_to_string(repo().join("board/systemd/qlship.service")).unwrap();
    let sysconfig = dir.path().join("qlship.sysconfig");
    std::fs::copy(repo().join("board/systemd/qlship.sysconfig"), &sysconfig).unwrap();
    assert!(unit.contains("ExecStart=/usr/local/bin/qlship --config /etc/sysconfig/qlship "));
    let unit = unit
        .replace("/usr/local/bin/qlship", env!("CARGO_BIN_EXE_qlship"))
        .replace("/etc/sysconfig/qlship", sysconfig.to_str().unwrap());
    let path = dir.path().join("qlship.service");
    std::fs::write(&path, unit).unwrap();
    let out = run(Command::new("systemd-analyze").arg("verify").arg(&path));
    assert!(
        out.status.success() && text(&out).trim().is_empty(),
        "systemd-analyze verify:\n{}",
        text(&out)
    );
    // The settings file it ships is one qlship accepts as it is.
    let (code, said) = run_qlship(&[
        "check".into(),
        "--config".into(),
        sysconfig.to_str().unwrap().into(),
        "-p".into(),
        "1".into(),
    ]);
    assert_eq!(code, 1, "{said}");
    assert!(said.contains("cannot connect"), "{said}");
}

/// The unit with ExecStart pointed at the qlship just built (verify and security
/// check that the program exists), in a scratch dir.
fn unit_in(dir: &Path) -> PathBuf {
    let unit = std::fs::read_to_string(repo().join("board/systemd/qlship.service")).unwrap();
    let path = dir.join("qlship.service");
    std::fs::write(
        &path,
        unit.replace("/usr/local/bin/qlship", env!("CARGO_BIN_EXE_qlship")),
    )
    .unwrap();
    path
}

/// The exposure score `systemd-analyze security` gives a unit file.
fn exposure(unit: &Path) -> f64 {
    let out = run(Command::new("systemd-analyze")
        .args(["security", "--offline=true", "--no-pager"])
        .arg(unit));
    let said = text(&out);
    let line = said
        .lines()
        .find(|l| l.contains("Overall exposure level"))
        .unwrap_or_else(|| panic!("no score in:\n{said}"));
    let score = line
        .split(": ")
        .nth(1)
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap();
    score.parse().unwrap_or_else(|_| panic!("{line}"))
}

#[test]
fn the_systemd_unit_is_hardened_to_an_exposure_of_at_most_1_3() {
    let dir = tempfile::tempdir().unwrap();
    let unit = unit_in(dir.path());
    let score = exposure(&unit);
    assert!(score <= 1.3, "exposure {score} > 1.3");
    // The scorer itself tells a weaker unit apart (so the bound above can fail).
    let weaker = std::fs::read_to_string(&unit)
        .unwrap()
        .replace("SystemCallFilter=~@privileged @resources\n", "")
        .replace("PrivateMounts=yes\n", "");
    std::fs::write(&unit, weaker).unwrap();
    assert!(
        exposure(&unit) > 1.3,
        "the weakened unit scores {}",
        exposure(&unit)
    );
}

#[test]
fn the_systemd_unit_works_on_systemd_before_240() {
    let unit = std::fs::read_to_string(repo().join("board/systemd/qlship.service")).unwrap();
    let commands: Vec<&str> = unit.lines().filter(|l| l.starts_with("Exec")).collect();
    // ${STATE_DIRECTORY} and ${RUNTIME_DIRECTORY} are empty before systemd 240 (FreePBX
    // 16 has 219, EL8 239): qlship would get `--state-dir ""`. $MAINPID is older (and
    // ExecReload only).
    for line in &commands {
        let rest = line.replace("$MAINPID", "");
        assert!(!rest.contains('$'), "an expansion in {line:?}");
    }
    assert!(commands[0].contains(" --state-dir /var/lib/qlship --run-dir /run/qlship "));
    // And what qlship does with the empty path older systemd gave it: exit 2.
    for flag in ["--state-dir", "--run-dir"] {
        let dir = tempfile::tempdir().unwrap();
        let said = dir.path().join("stderr");
        let mut daemon = Command::new(env!("CARGO_BIN_EXE_qlship"))
            .args([flag, "", "-p", "1", "ql"])
            .current_dir(dir.path())
            .stderr(std::fs::File::create(&said).unwrap())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        let status = loop {
            if let Some(status) = daemon.try_wait().unwrap() {
                break status;
            }
            if Instant::now() > deadline {
                let _ = daemon.kill();
                panic!("qlship {flag} \"\" is still running");
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let said = std::fs::read_to_string(said).unwrap();
        assert_eq!(status.code(), Some(2), "{said}");
        assert_eq!(
            said,
            format!("qlship: {flag}: an empty path is not allowed\n")
        );
    }
    // A config error stops the unit instead of restarting it every 5 s.
    assert!(unit.contains("\nRestartPreventExitStatus=2\n"));
    assert!(unit.contains("\nUnsetEnvironment=QMPASS AMI_SECRET\n"));
    // qlship speaks sd_notify (src/health/notify.rs): systemd knows when it is up, and
    // restarts it when the pipeline stops moving.
    assert!(unit.contains("\nType=notify\nWatchdogSec=60\n"));
}

/// Runs `qlship --drain` over a few rows with stdout and stderr in files; returns both.
fn drain_logging(env: &Env, extra: &[&str], journal_stream: bool) -> (String, String) {
    let (rows_text, _) = rows(0..3);
    env.append(&rows_text);
    let out = env.dir.path().join("stdout");
    let err = env.dir.path().join("stderr");
    let err_file = std::fs::File::create(&err).unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_qlship"));
    let mut args = vec!["--drain"];
    args.extend_from_slice(extra);
    cmd.args(env.args(&args))
        .stdout(std::fs::File::create(&out).unwrap())
        .env_remove("JOURNAL_STREAM");
    if journal_stream {
        use std::os::unix::fs::MetadataExt;
        let meta = err_file.metadata().unwrap();
        cmd.env("JOURNAL_STREAM", format!("{}:{}", meta.dev(), meta.ino()));
    }
    let status = cmd.stderr(err_file).status().unwrap();
    let read = |p: &Path| std::fs::read_to_string(p).unwrap();
    assert!(status.success(), "{}{}", read(&out), read(&err));
    (read(&out), read(&err))
}

#[test]
fn logs_carry_priorities_and_no_timestamp_for_journald_and_procd() {
    let is_timestamped = |l: &str| l.starts_with("20") && l.as_bytes().get(4) == Some(&b'-');
    // stderr is the stream systemd named: a priority on every line, no own timestamp.
    let (out, err) = drain_logging(&Env::new(), &[], true);
    assert_eq!(out, "");
    assert!(err.contains("<6>INFO  [qlship"), "{err}");
    for line in err.lines() {
        assert!(
            line.starts_with('<') && !line.contains("Z INFO"),
            "{line:?}"
        );
    }
    // Another stream (a redirection under systemd): timestamps as on a terminal.
    let (_, err) = drain_logging(&Env::new(), &[], false);
    assert!(err.lines().all(is_timestamped), "{err}");
    // procd: info on stdout (logd's LOG_INFO), nothing on stderr (LOG_ERR) when all is
    // well, and no prefix logd would show as text.
    let (out, err) = drain_logging(&Env::new(), &["--log-style", "procd"], false);
    assert_eq!(err, "");
    assert!(
        out.lines()
            .all(|l| l.starts_with("INFO  [qlship") || l.starts_with("DEBUG")),
        "{out}"
    );
    assert!(out.contains("INFO  [qlship"), "{out}");
}

/// Stand-ins for OpenWrt's /lib/functions.sh, procd.sh and logger: UCI values come from
/// variables (`CONFIG_<section>_<option>`), every procd call is recorded, `df` says
/// what `FAKE_DF_FREE` (KiB) says when set, and `FAKE_MOUNTPOINT` is the block-mount
/// mount point that holds every path.
const PROCD_STUBS: &str = r#"
config_load() { [ "$1" = qlship ] || exit 90; . "$UCI_VARS"; }
config_get() {
	eval "__v=\${CONFIG_${2}_${3}:-}"
	[ -n "$__v" ] || __v=${4-}
	eval "$1=\$__v"
}
config_get_bool() {
	config_get __b "$2" "$3" "$4"
	case "$__b" in 1 | on | true | yes | enabled) __b=1 ;; *) __b=0 ;; esac
	eval "$1=\$__b"
}
__log() { echo "$*" >>"$PROCD_LOG"; }
procd_open_instance() { __log open; }
procd_set_param() {
	__name=$1
	shift
	for __a in "$@"; do __log "$__name	$__a"; done
}
procd_close_instance() { __log close; }
procd_add_reload_trigger() { __log "trigger	$*"; }
procd_add_restart_mount_trigger() { __log "mount_trigger	$*"; }
procd_add_jail() { __log "jail	$*"; }
procd_add_jail_mount() { for __a in "$@"; do __log "ro	$__a"; done; }
procd_add_jail_mount_rw() { for __a in "$@"; do __log "rw	$__a"; done; }
procd_get_mountpoints() { [ -z "${FAKE_MOUNTPOINT:-}" ] || echo "$FAKE_MOUNTPOINT"; }
logger() { shift 4; __log "logger	$*"; }
if [ -n "${FAKE_DF_FREE:-}" ]; then
	df() { printf 'Filesystem 1024-blocks Used Available Capacity Mounted on\noverlay 9999 1 %s 1%% /overlay\n' "$FAKE_DF_FREE"; }
fi
"#;

/// The shipped UCI file with `changes` applied, as shell assignments. UCI quotes its
/// values the way the shell does, so `option name VALUE` becomes `CONFIG_main_name=VALUE`.
fn uci_vars(changes: &[(&str, &str)]) -> String {
    let uci = std::fs::read_to_string(repo().join("board/qlship/files/qlship.config")).unwrap();
    let mut section = String::new();
    let mut out = String::new();
    let mut seen = Vec::new();
    for line in uci.lines().map(str::trim) {
        if let Some(rest) = line.strip_prefix("config ") {
            section = rest
                .split_whitespace()
                .nth(1)
                .unwrap()
                .trim_matches('\'')
                .into();
        } else if let Some(rest) = line.strip_prefix("option ") {
            let (name, value) = rest.split_once(' ').unwrap();
            let value = match changes.iter().find(|(k, _)| *k == name) {
                Some((_, v)) => format!("'{}'", v.replace('\'', r"'\''")),
                None => value.trim().to_string(),
            };
            seen.push(name.to_string());
            out.push_str(&format!("CONFIG_{section}_{name}={value}\n"));
        }
    }
    for (k, v) in changes {
        if !seen.iter().any(|s| s == k) {
            out.push_str(&format!(
                "CONFIG_{section}_{k}='{}'\n",
                v.replace('\'', r"'\''")
            ));
        }
    }
    out
}

/// The procd init script in a scratch dir, its paths, user and group moved there.
struct Procd {
    dir: tempfile::TempDir,
    conf: PathBuf,
    state: PathBuf,
    user: String,
    group: String,
}

impl Procd {
    fn new() -> Procd {
        let dir = tempfile::tempdir().unwrap();
        let conf = dir.path().join("var/etc/qlship.conf");
        let state = dir.path().join("flash/qlship");
        let id = |flag: &str| {
            let out = run(Command::new("id").arg(flag));
            String::from_utf8(out.stdout).unwrap().trim().to_string()
        };
        let (user, group) = (id("-un"), id("-gn"));
        let init = std::fs::read_to_string(repo().join("board/qlship/files/qlship.init")).unwrap();
        assert!(init.starts_with("#!/bin/sh /etc/rc.common\n"));
        for line in [
            "\nUSE_PROCD=1\n",
            "\nCONF_FILE=/var/etc/qlship.conf\n",
            "\nQLSHIP_USER=qlship\n",
            "\nQLSHIP_GROUP=asterisk\n",
            "\nPROC_MOUNTS=/proc/mounts\n",
        ] {
            assert!(init.contains(line), "{line:?}");
        }
        let init = init
            .replace("/var/etc/qlship.conf", conf.to_str().unwrap())
            .replace("QLSHIP_USER=qlship", &format!("QLSHIP_USER={user}"))
            .replace("QLSHIP_GROUP=asterisk", &format!("QLSHIP_GROUP={group}"))
            .replace(
                "=/proc/mounts",
                &format!("={}/mounts", dir.path().display()),
            );
        std::fs::write(dir.path().join("qlship.init"), init).unwrap();
        std::fs::write(dir.path().join("stubs.sh"), PROCD_STUBS).unwrap();
        std::fs::write(
            dir.path().join("mounts"),
            "overlayfs:/overlay / overlay rw 0 0\n",
        )
        .unwrap();
        Procd {
            dir,
            conf,
            state,
            user,
            group,
        }
    }

    /// Runs `calls` after sourcing the script, with UCI `changes` (the state dir is the
    /// scratch one unless changed) and stub settings `env`; returns what procd was told.
    fn run(&self, changes: &[(&str, &str)], env: &[(&str, &str)], calls: &str) -> String {
        let d = self.dir.path();
        let mut all = vec![("state_dir", self.state.to_str().unwrap())];
        all.extend_from_slice(changes);
        std::fs::write(d.join("uci.sh"), uci_vars(&all)).unwrap();
        let _ = std::fs::remove_file(d.join("procd.log"));
        let out = run(Command::new("sh")
            .current_dir(d)
            .env("UCI_VARS", d.join("uci.sh"))
            .env("PROCD_LOG", d.join("procd.log"))
            .envs(env.iter().copied())
            .arg("-euc")
            .arg(format!(". ./stubs.sh; . ./qlship.init; {calls}")));
        assert!(out.status.success(), "{}", text(&out));
        std::fs::read_to_string(d.join("procd.log")).unwrap_or_default()
    }

    fn rendered(&self) -> String {
        std::fs::read_to_string(&self.conf).unwrap()
    }

    fn spool_max(&self) -> String {
        let rendered = self.rendered();
        let line = rendered
            .lines()
            .find(|l| l.starts_with("SPOOL_MAX="))
            .unwrap_or_else(|| panic!("no SPOOL_MAX in {rendered}"));
        line["SPOOL_MAX=".len()..].trim_matches('\'').to_string()
    }
}

#[test]
fn procd_init_renders_the_config_and_keeps_secrets_off_the_command_line() {
    let procd = Procd::new();
    let qm = FakeQm::start(FakeConfig {
        pass: "p@ss w'rd \"#1".into(),
        ..Default::default()
    });
    let port = qm.port().to_string();
    let ql_dir = procd.dir.path().join("log/asterisk");
    std::fs::create_dir_all(&ql_dir).unwrap();
    let ql = ql_dir.join("queue_log");
    std::fs::write(&ql, "").unwrap();
    let run_dir = procd.dir.path().join("run/qlship");
    let log_file = procd.dir.path().join("log/qlship.log");
    let said = procd.run(
        &[
            ("enabled", "1"),
            ("port", &port),
            ("password", "p@ss w'rd \"#1"),
            ("token", "P001"),
            ("queue_log", ql.to_str().unwrap()),
            ("run_dir", run_dir.to_str().unwrap()),
            ("heartbeat", "0"),
            ("log_level", "debug"),
            ("log_file", log_file.to_str().unwrap()),
            ("ami_user", "qlship"),
            ("ami_secret", "s3cr3t"),
            ("ami_contexts", "from-queue"),
        ],
        &[("FAKE_DF_FREE", "100000000")],
        "start_service; service_triggers",
    );
    let (instance, jail) = said.split_once("jail\t").unwrap();
    let expected = format!(
        "open\ncommand\t/usr/bin/qlship\ncommand\t--config\ncommand\t{}\n\
         command\t--log-style\ncommand\tprocd\nuser\t{}\ngroup\t{}\nno_new_privs\t1\n\
         respawn\t60\nrespawn\t30\nrespawn\t0\nstdout\t1\nstderr\t1\n\
         file\t/etc/config/qlship\nterm_timeout\t30\n",
        procd.conf.display(),
        procd.user,
        procd.group
    );
    assert_eq!(instance, expected);
    assert!(!said.contains("p@ss") && !said.contains("s3cr3t"));
    // The jail: the config and the queue_log's directory read-only, and nothing else of
    // qlship's writable but its state and run dirs.
    let mounts = |kind: &str| -> Vec<String> {
        jail.lines()
            .filter_map(|l| l.strip_prefix(kind))
            .map(String::from)
            .collect()
    };
    assert!(jail.starts_with("qlship log procfs\n"), "{jail}");
    let ro = mounts("ro\t");
    assert!(ro.contains(&procd.conf.display().to_string()), "{ro:?}");
    assert!(ro.contains(&ql_dir.display().to_string()), "{ro:?}");
    assert!(
        ro.iter()
            .all(|p| !p.starts_with(procd.state.to_str().unwrap())),
        "{ro:?}"
    );
    assert_eq!(
        mounts("rw\t"),
        [
            procd.state.display().to_string(),
            run_dir.display().to_string(),
            log_file.display().to_string()
        ]
    );
    assert!(log_file.exists(), "the log file is made for qlship");
    assert!(jail.ends_with("close\ntrigger\tqlship\n"), "{jail}");

    let expected = format!(
        "# Written by /etc/init.d/qlship from /etc/config/qlship; edit that instead.\n\
         HTTPHOST='127.0.0.1'\nHTTPPORT='{port}'\nHTTPCONTEXT='queuemetrics'\n\
         QMUSER='webqloader'\nQMPASS='p@ss w'rd \"#1'\nPARTITION='P001'\nHTTPS='0'\n\
         QUEUELOG='{}'\nSTATE_DIR='{}'\nRUN_DIR='{}'\n\
         RAM_BUDGET='1M'\nHEARTBEAT='0'\nFEEDBACK='0'\nLOGFILE='{}'\nLOGLEVEL='debug'\n\
         AMI_USER='qlship'\nAMI_SECRET='s3cr3t'\nAMI_CONTEXTS='from-queue'\n\
         SPOOL_MAX='65536K'\n",
        ql.display(),
        procd.state.display(),
        run_dir.display(),
        log_file.display()
    );
    assert_eq!(procd.rendered(), expected);
    for (path, want) in [
        (&procd.conf, 0o600),
        (&procd.state, 0o700),
        (&run_dir, 0o700),
    ] {
        let mode = std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, want, "{} mode {mode:o}", path.display());
    }

    // qlship itself accepts the rendered file, password and all, and the flag.
    let (code, said) = run_qlship(&[
        "check".into(),
        "--config".into(),
        procd.conf.display().to_string(),
        "--log-style".into(),
        "procd".into(),
    ]);
    assert_eq!(code, 0, "{said}");
}

#[test]
fn procd_init_ships_disabled_and_then_only_renders_the_config() {
    let procd = Procd::new();
    let uci = std::fs::read_to_string(repo().join("board/qlship/files/qlship.config")).unwrap();
    assert!(uci.contains("\n\toption enabled '0'\n"));
    let said = procd.run(&[], &[], "start_service");
    assert!(!said.contains("open"), "{said}");
    assert!(
        said.starts_with("logger\tdisabled: set the server"),
        "{said}"
    );
    assert!(procd.rendered().contains("\nQMPASS='qloader'\n"));
    assert!(
        !procd.state.exists(),
        "a disabled qlship creates no journal dir"
    );
}

/// What start_service does first: the config rendered for the UCI state dir.
const RENDER: &str = "config_load qlship; render_config \"$CONFIG_main_state_dir\"";

#[test]
fn procd_init_keeps_the_spool_cap_within_the_free_flash() {
    let procd = Procd::new();
    // A router's overlay with 4,000 KiB free: a quarter of it, not 64M, and the log
    // says why.
    let said = procd.run(&[], &[("FAKE_DF_FREE", "4000")], RENDER);
    assert_eq!(procd.spool_max(), "1000K");
    assert!(
        said.contains("logger\tspool_max 64M does not fit the free space under"),
        "{said}"
    );
    // A smaller configured cap is kept; so is one that fits.
    procd.run(
        &[("spool_max", "512K")],
        &[("FAKE_DF_FREE", "4000")],
        RENDER,
    );
    assert_eq!(procd.spool_max(), "512K");
    procd.run(
        &[("spool_max", "2M")],
        &[("FAKE_DF_FREE", "100000")],
        RENDER,
    );
    assert_eq!(procd.spool_max(), "2048K");
    // The journal already on flash counts as room it may keep: 4 MiB of journal and
    // nothing free leaves a cap of about 1 MiB, not none.
    std::fs::create_dir_all(&procd.state).unwrap();
    std::fs::write(procd.state.join("db"), vec![1u8; 4 << 20]).unwrap();
    procd.run(&[], &[("FAKE_DF_FREE", "0")], RENDER);
    let kib: u64 = procd.spool_max().trim_end_matches('K').parse().unwrap();
    assert!((1024..1100).contains(&kib), "{kib}K");
    // And with this machine's real df: within a quarter of what is free.
    procd.run(&[("state_dir", "/tmp/qlship-not-there/x")], &[], RENDER);
    let kib: u64 = procd.spool_max().trim_end_matches('K').parse().unwrap();
    let out = run(Command::new("df").args(["-Pk", "/tmp"]));
    let free: u64 = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .nth(1)
        .unwrap()
        .split_whitespace()
        .nth(3)
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        kib <= (free / 4).max(64) && kib <= 65536,
        "{kib}K of {free}K free"
    );
}

#[test]
fn procd_init_waits_for_a_journal_on_usb_to_be_mounted() {
    let procd = Procd::new();
    let usb = [("FAKE_MOUNTPOINT", "/mnt/usb")];
    let said = procd.run(&[("enabled", "1")], &usb, "start_service; service_triggers");
    assert!(!said.contains("open"), "{said}");
    assert!(
        said.contains("logger\t/mnt/usb is not mounted yet"),
        "{said}"
    );
    assert!(
        said.ends_with("trigger\tqlship\nmount_trigger\t/mnt/usb\n"),
        "{said}"
    );
    assert!(
        !procd.state.exists(),
        "no journal under the empty mount point"
    );
    // Once mounted, it starts.
    std::fs::write(
        procd.dir.path().join("mounts"),
        "/dev/sda1 /mnt/usb ext4 rw 0 0\n",
    )
    .unwrap();
    let said = procd.run(&[("enabled", "1")], &usb, "start_service");
    assert!(said.starts_with("open\n"), "{said}");
    // A CA and rules file: a reload restarts qlship when they change.
    let ca = procd.dir.path().join("ca.pem");
    std::fs::write(&ca, "x").unwrap();
    let said = procd.run(
        &[("enabled", "1"), ("cacert", ca.to_str().unwrap())],
        &[],
        "start_service",
    );
    assert!(
        said.contains(&format!(
            "file\t/etc/config/qlship\nfile\t{}\n",
            ca.display()
        )),
        "{said}"
    );
    assert!(said.contains(&format!("ro\t{}\n", ca.display())), "{said}");
}

/// The sysvinit script with every path moved into a scratch dir.
struct SysV {
    env: Env,
    config: PathBuf,
    pid_file: PathBuf,
}

impl SysV {
    fn new() -> SysV {
        let env = Env::new();
        let config = env.dir.path().join("sysconfig-qlship");
        std::fs::write(
            &config,
            format!(
                "HTTPHOST=127.0.0.1\nHTTPPORT={}\nQMUSER=webqloader\nQMPASS=qloader\n\
                 PARTITION=P001\nQUEUELOG={}\nHEARTBEAT=0\nBACKOFF_MIN=0.05\nBACKOFF_MAX=0.4\n",
                env.qm.port(),
                env.ql.display()
            ),
        )
        .unwrap();
        let pid_file = env.dir.path().join("var-run-qlship.pid");
        SysV {
            env,
            config,
            pid_file,
        }
    }

    fn run(&self, action: &str) -> (i32, String) {
        self.run_with(action, &[])
    }

    /// `action` with more of the script's variables set (they win over the defaults).
    fn run_with(&self, action: &str, vars: &[(&str, &str)]) -> (i32, String) {
        let d = self.env.dir.path();
        let user = String::from_utf8(run(Command::new("id").arg("-un")).stdout).unwrap();
        let out = run(Command::new(repo().join("board/sysvinit/qlship"))
            .arg(action)
            .env("QLSHIP_BIN", env!("CARGO_BIN_EXE_qlship"))
            .env("QLSHIP_WANTED", d.join("qlship.wanted"))
            .env("QLSHIP_CONFIG", &self.config)
            .env("QLSHIP_PIDFILE", &self.pid_file)
            .env("QLSHIP_STATE_DIR", &self.env.state)
            .env("QLSHIP_RUN_DIR", d.join("run"))
            .env("QLSHIP_STDERR", d.join("qlship.log"))
            .env("QLSHIP_USER", user.trim())
            .envs(vars.iter().copied()));
        (out.status.code().unwrap_or(-1), text(&out))
    }

    fn pid(&self) -> u32 {
        std::fs::read_to_string(&self.pid_file)
            .unwrap()
            .trim()
            .parse()
            .unwrap()
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.env.dir.path().join("qlship.log")).unwrap_or_default()
    }
}

fn alive(pid: u32) -> bool {
    // A zombie is gone for our purposes: the script's children are reaped by init.
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !stat
            .rsplit(')')
            .next()
            .unwrap()
            .trim_start()
            .starts_with('Z'),
        Err(_) => false,
    }
}

fn wait_gone(pid: u32) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while alive(pid) {
        assert!(Instant::now() < deadline, "pid {pid} still alive");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn the_sysvinit_script_starts_reports_restarts_and_stops_qlship() {
    let sv = SysV::new();
    let (all, expected) = rows(0..900);
    let lines: Vec<&str> = all.split_inclusive('\n').collect();
    sv.env.append(&lines[..300].concat());

    assert_eq!(sv.run("status").0, 3, "stopped before start");
    let (code, said) = sv.run("start");
    assert_eq!(code, 0, "{said}\n{}", sv.log());
    let first = sv.pid();
    assert!(
        said.starts_with(&format!(
            "Starting qlship (config {}): OK (pid {first})",
            sv.config.display()
        )),
        "{said}"
    );
    let exe = std::fs::read_link(format!("/proc/{first}/exe")).unwrap();
    assert_eq!(exe, PathBuf::from(env!("CARGO_BIN_EXE_qlship")));
    sv.env.wait_for_rows(300, Duration::from_secs(20));

    let (code, said) = sv.run("start");
    assert_eq!(
        (code, said),
        (0, format!("qlship is already running (pid {first})\n"))
    );

    // status: the script's line, then qlship's own report (written every 5 s).
    std::thread::sleep(Duration::from_millis(500));
    let (code, said) = sv.run("status");
    assert_eq!(code, 0, "{said}");
    assert!(
        said.starts_with(&format!("qlship (pid {first}) is running\n")),
        "{said}"
    );

    let (code, said) = sv.run("restart");
    assert_eq!(code, 0, "{said}\n{}", sv.log());
    wait_gone(first);
    let second = sv.pid();
    assert_ne!(first, second);
    assert!(alive(second));
    sv.env.append(&lines[300..].concat());
    sv.env.wait_for_rows(900, Duration::from_secs(20));

    let (code, said) = sv.run("stop");
    assert_eq!(
        (code, said),
        (0, format!("Stopping qlship (pid {second}): OK\n"))
    );
    wait_gone(second);
    assert!(!sv.pid_file.exists(), "pid file left behind");
    assert_eq!(sv.run("status"), (3, "qlship is stopped\n".into()));
    assert_eq!(sv.run("stop"), (0, "qlship is not running\n".into()));
    sv.env.assert_exact(&expected);
    assert!(
        sv.log().contains("stopped; journal is consistent"),
        "{}",
        sv.log()
    );
}

#[test]
fn the_sysvinit_script_reports_a_bad_config_instead_of_claiming_success() {
    let sv = SysV::new();
    std::fs::write(&sv.config, "HTTPPORT=eighty\n").unwrap();
    let (code, said) = sv.run("start");
    assert_eq!(code, 1, "{said}");
    assert!(said.contains("FAILED; last lines of"), "{said}");
    assert!(said.contains("HTTPPORT"), "{said}");
    assert!(!sv.pid_file.exists(), "a failed start leaves no pid file");
    assert_eq!(sv.run("status"), (3, "qlship is stopped\n".into()));
}

#[test]
fn the_sysvinit_script_never_signals_a_pid_that_is_not_qlship() {
    let sv = SysV::new();
    // A stale pid file after a crash, its pid reused by another program.
    let mut other = Command::new("sleep").arg("60").spawn().unwrap();
    std::fs::write(&sv.pid_file, format!("{}\n", other.id())).unwrap();
    assert_eq!(
        sv.run("status"),
        (1, "qlship is dead but its pid file exists\n".into())
    );
    assert_eq!(sv.run("reload").0, 1);
    assert_eq!(sv.run("stop"), (0, "qlship is not running\n".into()));
    assert!(
        other.try_wait().unwrap().is_none(),
        "the other program was signalled"
    );
    // start is not fooled either: it starts qlship.
    std::fs::write(&sv.pid_file, format!("{}\n", other.id())).unwrap();
    let (code, said) = sv.run("start");
    assert_eq!(code, 0, "{said}\n{}", sv.log());
    assert_ne!(sv.pid(), other.id());
    let qlship = sv.pid();

    // revive (cron, once a minute) restarts a qlship that died while meant to run...
    // SAFETY: kill(2) on the qlship this test started.
    unsafe { libc::kill(qlship as i32, libc::SIGKILL) };
    wait_gone(qlship);
    let (code, said) = sv.run("revive");
    assert_eq!(code, 0, "{said}\n{}", sv.log());
    assert!(said.contains("Starting qlship"), "{said}");
    let revived = sv.pid();
    assert!(alive(revived) && revived != qlship);
    // ...and leaves one that was stopped on purpose alone.
    sv.run("stop");
    wait_gone(revived);
    assert_eq!(sv.run("revive"), (0, String::new()));
    assert!(!sv.pid_file.exists());
    assert!(other.try_wait().unwrap().is_none());
    let _ = other.kill();
    let _ = other.wait();
}

#[test]
fn the_sysvinit_script_takes_a_slow_start_for_a_start() {
    let sv = SysV::new();
    // A qlship that takes 3 s to open its journal (a big one after a power cut).
    let slow = sv.env.dir.path().join("slow-qlship");
    std::fs::write(
        &slow,
        format!(
            "#!/bin/sh\nsleep 3\nexec {} \"$@\"\n",
            env!("CARGO_BIN_EXE_qlship")
        ),
    )
    .unwrap();
    std::fs::set_permissions(&slow, std::fs::Permissions::from_mode(0o755)).unwrap();
    let vars = [
        ("QLSHIP_BIN", slow.to_str().unwrap()),
        ("QLSHIP_EXE", env!("CARGO_BIN_EXE_qlship")),
        ("QLSHIP_START_WAIT", "1"),
    ];
    let (code, said) = sv.run_with("start", &vars);
    assert_eq!(code, 0, "{said}\n{}", sv.log());
    assert!(
        said.contains("still opening its journal after 1s"),
        "{said}"
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    while sv.run_with("status", &vars).0 != 0 {
        assert!(Instant::now() < deadline, "never came up: {}", sv.log());
        std::thread::sleep(Duration::from_millis(100));
    }
    let pid = sv.pid();
    let (code, said) = sv.run_with("stop", &vars);
    assert_eq!(
        (code, said),
        (0, format!("Stopping qlship (pid {pid}): OK\n"))
    );
    wait_gone(pid);
}

#[test]
fn the_sysvinit_companions_are_valid() {
    // logrotate's own parser, in debug mode (changes nothing).
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("qlship");
    std::fs::copy(repo().join("board/sysvinit/qlship.logrotate"), &conf).unwrap();
    let out = run(Command::new("logrotate")
        .arg("-d")
        .arg("-s")
        .arg(dir.path().join("state"))
        .arg(&conf));
    assert!(out.status.success(), "{}", text(&out));
    assert!(!text(&out).contains("error"), "{}", text(&out));
    // The cron line: five time fields, a user, and the revive action.
    let cron = std::fs::read_to_string(repo().join("board/sysvinit/qlship.cron")).unwrap();
    let lines: Vec<&str> = cron.lines().filter(|l| !l.starts_with('#')).collect();
    assert_eq!(
        lines,
        ["* * * * * root [ -x /etc/init.d/qlship ] && /etc/init.d/qlship revive >/dev/null 2>&1"]
    );
}

#[test]
fn install_script_places_files_and_uninstall_keeps_settings_unless_purged() {
    let root = tempfile::tempdir().unwrap();
    let r = root.path();
    let install = |args: &[&str]| {
        let out = run(Command::new(repo().join("scripts/install"))
            .args(["--root", r.to_str().unwrap()])
            .args(args));
        (out.status.code().unwrap_or(-1), text(&out))
    };
    let bin = env!("CARGO_BIN_EXE_qlship");
    // An old wqloaderd box: its settings are carried over, but not its pid and log
    // file, which the hardened service could not write (and would restart over).
    std::fs::create_dir_all(r.join("etc/sysconfig")).unwrap();
    std::fs::write(
        r.join("etc/sysconfig/wqloaderd"),
        "HTTPHOST=qm.example\nPIDFILE=/var/run/wqloaderd.pid\n  export LOGFILE=/var/log/wq.log\n",
    )
    .unwrap();

    let (code, said) = install(&["--binary", bin, "--init", "systemd"]);
    assert_eq!(code, 0, "{said}");
    let mode = |p: &str| std::fs::metadata(r.join(p)).unwrap().permissions().mode() & 0o7777;
    assert_eq!(mode("usr/local/bin/qlship"), 0o755);
    assert_eq!(mode("etc/systemd/system/qlship.service"), 0o644);
    assert_eq!(mode("etc/sysconfig/qlship"), 0o640);
    let settings = std::fs::read_to_string(r.join("etc/sysconfig/qlship")).unwrap();
    assert_eq!(
        settings,
        "HTTPHOST=qm.example\n\
         # not for the qlship service (the init system has the pid and the log): PIDFILE=/var/run/wqloaderd.pid\n\
         # not for the qlship service (the init system has the pid and the log):   export LOGFILE=/var/log/wq.log\n"
    );
    assert_eq!(
        std::fs::read(r.join("etc/systemd/system/qlship.service")).unwrap(),
        std::fs::read(repo().join("board/systemd/qlship.service")).unwrap()
    );
    // Enabled in the image (real settings), the user and the settings' group left to
    // first boot: run both steps here as that boot would, inside the scratch root.
    let wants = r.join("etc/systemd/system/multi-user.target.wants/qlship.service");
    assert_eq!(
        std::fs::read_link(&wants).unwrap(),
        PathBuf::from("/etc/systemd/system/qlship.service")
    );
    let out = run(Command::new("systemd-sysusers")
        .arg(format!("--root={}", r.display()))
        .arg(r.join("usr/lib/sysusers.d/qlship.conf")));
    assert!(out.status.success(), "{}", text(&out));
    let group = std::fs::read_to_string(r.join("etc/group")).unwrap();
    assert!(
        group
            .lines()
            .any(|l| l.starts_with("asterisk:") && l.ends_with(":qlship")),
        "{group}"
    );
    let gid: u32 = group
        .lines()
        .find_map(|l| l.strip_prefix("qlship:x:"))
        .unwrap()
        .trim_end_matches(':')
        .parse()
        .unwrap();
    let out = run(Command::new("systemd-tmpfiles")
        .arg(format!("--root={}", r.display()))
        .arg("--create")
        .arg(r.join("usr/lib/tmpfiles.d/qlship.conf")));
    assert!(out.status.success(), "{}", text(&out));
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(r.join("etc/sysconfig/qlship")).unwrap();
    assert_eq!(
        (meta.uid(), meta.gid(), meta.mode() & 0o777),
        (0, gid, 0o640)
    );

    let (code, said) = install(&["--binary", bin, "--init", "sysvinit"]);
    assert_eq!(code, 0, "{said}");
    assert_eq!(mode("etc/init.d/qlship"), 0o755);
    assert_eq!(mode("etc/cron.d/qlship"), 0o644);
    assert_eq!(mode("etc/logrotate.d/qlship"), 0o644);

    let (code, said) = install(&["--binary", "/nonexistent/qlship"]);
    assert_eq!(code, 1);
    assert!(
        said.contains("no qlship binary at /nonexistent/qlship"),
        "{said}"
    );

    let (code, said) = install(&["--uninstall"]);
    assert_eq!(code, 0, "{said}");
    for gone in [
        "usr/local/bin/qlship",
        "etc/systemd/system/qlship.service",
        "etc/init.d/qlship",
        "etc/cron.d/qlship",
        "usr/lib/sysusers.d/qlship.conf",
    ] {
        assert!(!r.join(gone).exists(), "{gone} left behind");
    }
    assert!(
        std::fs::symlink_metadata(&wants).is_err(),
        "the enablement left behind"
    );
    assert!(r.join("etc/sysconfig/qlship").exists(), "settings kept");
    std::fs::create_dir_all(r.join("var/log/qlship")).unwrap();
    std::fs::write(r.join("var/log/qlship.log.1"), "old").unwrap();
    std::fs::write(r.join("var/log/qlship/qlship.log"), "log").unwrap();
    let (code, said) = install(&["--uninstall", "--purge"]);
    assert_eq!(code, 0, "{said}");
    assert!(!r.join("etc/sysconfig/qlship").exists());
    assert!(!r.join("var/log/qlship.log.1").exists());
    assert!(!r.join("var/log/qlship").exists());
}

#[test]
fn install_script_does_not_enable_placeholder_settings() {
    let root = tempfile::tempdir().unwrap();
    let r = root.path();
    let out = run(Command::new(repo().join("scripts/install"))
        .args(["--root", r.to_str().unwrap(), "--init", "systemd"])
        .args(["--binary", env!("CARGO_BIN_EXE_qlship")]));
    let said = text(&out);
    assert!(out.status.success(), "{said}");
    assert!(
        said.contains("not enabled: /etc/sysconfig/qlship holds placeholders"),
        "{said}"
    );
    assert!(
        said.contains("then: systemctl enable --now qlship"),
        "{said}"
    );
    assert!(r.join("etc/systemd/system/qlship.service").exists());
    assert!(!r
        .join("etc/systemd/system/multi-user.target.wants")
        .exists());
}

#[test]
fn install_script_refuses_the_systemd_unit_on_systemd_before_240() {
    // FreePBX 16 (SNG7) has systemd 219: the unit's directives need 240.
    let dir = tempfile::tempdir().unwrap();
    let systemctl = dir.path().join("systemctl");
    std::fs::write(
        &systemctl,
        "#!/bin/sh\necho 'systemd 219'\necho '+PAM +AUDIT'\n",
    )
    .unwrap();
    std::fs::set_permissions(&systemctl, std::fs::Permissions::from_mode(0o755)).unwrap();
    let path = format!(
        "{}:{}",
        dir.path().display(),
        std::env::var("PATH").unwrap()
    );
    let out = run(Command::new(repo().join("scripts/install"))
        .args([
            "--init",
            "systemd",
            "--binary",
            env!("CARGO_BIN_EXE_qlship"),
        ])
        .env("PATH", path));
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert_eq!(
        text(&out),
        "scripts/install: --init systemd needs systemd 240 or later (this one: 219); use --init sysvinit\n"
    );
}
