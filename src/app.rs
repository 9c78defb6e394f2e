//! Process-level wiring: arguments, logging, signals, pid file, journal, exit codes.

use crate::config::{self, Command, Settings, USAGE};
use crate::daemon;
use crate::journal::{Journal, JournalError};
use crate::status;
use log::{error, info, LevelFilter};
use std::os::unix::io::AsRawFd;
use std::path::Path;
use std::sync::Arc;

pub const EXIT_OK: i32 = 0;
pub const EXIT_FAILURE: i32 = 1;
pub const EXIT_USAGE: i32 = 2;

pub fn main(args: Vec<String>) -> i32 {
    let command = config::parse_args(args);
    if let Ok(Command::Run(s) | Command::Check(s)) = &command {
        // No thread exists yet, so this may set the environment.
        crate::tls::install(&s.trust);
    }
    let settings = match command {
        Ok(Command::Run(s)) => *s,
        Ok(Command::Status { run_dir, json }) => return show_status(&run_dir, json),
        Ok(Command::Check(s)) => return check(&s),
        Ok(Command::CheckRules { file, queue_log }) => {
            return check_rules(&file, queue_log.as_deref())
        }
        Ok(Command::Help) => {
            println!("{USAGE}");
            return EXIT_OK;
        }
        Ok(Command::Version) => {
            println!("qlship {}", env!("CARGO_PKG_VERSION"));
            return EXIT_OK;
        }
        Err(e) => {
            eprintln!("qlship: {e}");
            return EXIT_USAGE;
        }
    };
    if settings.targets().iter().any(|(t, _)| t.https) && !cfg!(feature = "https") {
        eprintln!(
            "qlship: --https: this build has no TLS support (built without the \"https\" feature)"
        );
        return EXIT_USAGE;
    }
    if let Some(path) = &settings.activity_log {
        if let Err(e) = redirect_stderr(path) {
            eprintln!("qlship: activity log {}: {e}", path.display());
            return EXIT_USAGE;
        }
    }
    let level = if settings.verbose {
        LevelFilter::Debug
    } else {
        LevelFilter::Info
    };
    crate::logging::init(settings.log_style, level, settings.activity_log.is_some());
    run(settings)
}

/// `qlship status`: what the running daemon wrote to its run dir.
fn show_status(run_dir: &Path, json: bool) -> i32 {
    let now = crate::daemon::now_unix();
    let not_running = |reason: String, pid| {
        if json {
            println!("{}", status::not_running_json(&reason, pid));
        } else {
            println!("qlship is not running ({reason})");
        }
        status::EXIT_NOT_RUNNING
    };
    let snapshot = match status::read(run_dir) {
        Ok(s) => s,
        Err(e) => {
            return not_running(format!("no status in {}: {e}", run_dir.display()), None);
        }
    };
    let verdict = status::verdict(&snapshot, now, status::pid_alive(snapshot.pid));
    if verdict == status::EXIT_NOT_RUNNING {
        return not_running(
            format!(
                "its last status in {} is from pid {}, {}s ago",
                run_dir.display(),
                snapshot.pid,
                now.saturating_sub(snapshot.written)
            ),
            Some(snapshot.pid),
        );
    }
    if json {
        println!("{}", status::to_json(&snapshot));
    } else {
        print!("{}", status::render(&snapshot, now));
    }
    verdict
}

/// `qlship check`: QUEUE_LOG can be read (or will appear), then one checkHWM per enabled
/// target, and what each outcome means for a person.
fn check(s: &Settings) -> i32 {
    for warning in crate::warnings::for_settings(s) {
        eprintln!("qlship: warning: {warning}");
    }
    let mut all_ok = true;
    if let Err(problem) = crate::queue_log_path::examine(&s.queue_log) {
        println!("{problem}");
        all_ok = false;
    }
    let targets = s.targets();
    for (t, _) in &targets {
        let prefix = if t.name.is_empty() {
            String::new()
        } else {
            format!("{}: ", t.name)
        };
        if t.disabled {
            println!("{prefix}disabled in the rules file: not contacted");
            continue;
        }
        let client = crate::http::Client::new(t, s);
        let outcome = client.check_hwm();
        let (ok, text) = explain_check(s, t, client.url(), &outcome);
        println!("{prefix}{text}");
        all_ok &= ok;
    }
    if all_ok {
        EXIT_OK
    } else {
        EXIT_FAILURE
    }
}

/// `qlship check-rules FILE [QUEUE_LOG]`: the targets and rules as qlship understood
/// them (passwords masked), and how many rows of QUEUE_LOG each target would receive.
fn check_rules(file: &std::path::Path, queue_log: Option<&std::path::Path>) -> i32 {
    let defaults = Settings::default_target();
    let split = match crate::rules::load(file, &defaults) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("qlship: {e}");
            return EXIT_USAGE;
        }
    };
    print!("{}", crate::rules::describe(&split));
    let Some(ql) = queue_log else {
        return EXIT_OK;
    };
    // Streamed: a queue_log can be larger than a small box's RAM.
    use std::io::BufRead;
    let mut input = match std::fs::File::open(ql) {
        Ok(f) => std::io::BufReader::new(f),
        Err(e) => {
            eprintln!("qlship: {}: {e}", ql.display());
            return EXIT_USAGE;
        }
    };
    let mut tally = crate::rules::Tally::new(&split);
    let mut line = Vec::new();
    loop {
        line.clear();
        match input.read_until(b'\n', &mut line) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) => {
                eprintln!("qlship: {}: {e}", ql.display());
                return EXIT_FAILURE;
            }
        }
        let row = line.strip_suffix(b"\n").unwrap_or(&line);
        if row.is_empty() {
            continue;
        }
        match crate::parse::parse_line(row) {
            Ok(row) => tally.add(&split, &row),
            Err(_) => tally.bad_lines += 1,
        }
    }
    print!("{}", tally.render(&split));
    EXIT_OK
}

/// Plain words for a checkHWM outcome. Never mentions the password.
pub fn explain_check(
    s: &Settings,
    t: &crate::rules::Target,
    url: &str,
    outcome: &Result<Option<i64>, crate::http::HttpError>,
) -> (bool, String) {
    use crate::http::HttpError;
    let token = if t.token.is_empty() {
        "(empty)".to_string()
    } else {
        format!("{:?}", t.token)
    };
    match outcome {
        Ok(Some(w)) => (true, format!("OK: {url} answered; partition {token} has rows up to {w}")),
        Ok(None) => (true, format!("OK: {url} answered; partition {token} is empty")),
        Err(HttpError::Connect(e)) => (
            false,
            format!(
                "cannot connect to {}:{}: {e} (is QueueMetrics running there, and are -h and -p right?)",
                t.host, t.port
            ),
        ),
        Err(HttpError::Status(401, _)) => (
            false,
            format!(
                "{url} answered HTTP 401: user {:?} or its password is wrong, or the user lacks the WQLOADER key",
                t.user
            ),
        ),
        Err(HttpError::Status(404, _)) => (
            false,
            format!(
                "{url} answered HTTP 404: the context {:?} (-c) is wrong, or this is not a QueueMetrics server",
                t.context
            ),
        ),
        Err(HttpError::Ko(text)) if text.contains("Empty partition") => (
            false,
            format!(
                "{url} answered KO: {text} (single-server QueueMetrics installations use an empty token: pass - as TOKEN)"
            ),
        ),
        Err(HttpError::Ko(text)) => (false, format!("{url} answered KO: {text}")),
        Err(HttpError::Tls(e)) => (
            false,
            format!(
                "TLS failure talking to {url}: {e} ({})",
                if matches!(s.trust, crate::config::Trust::CaFile(_)) {
                    "is the --cacert file the CA that signed the server's certificate?"
                } else {
                    "if the server's certificate comes from a private CA, or this machine has no CA bundle, pass the CA with --cacert FILE"
                }
            ),
        ),
        Err(e) => (false, format!("{url}: {e}")),
    }
}

/// A config file holding the QueueMetrics password must not be readable by every user.
fn warn_if_password_file_is_public(settings: &Settings) {
    use std::os::unix::fs::PermissionsExt;
    let files = [
        (settings.password_file.as_ref(), "QMPASS"),
        (
            settings.split.as_ref().map(|(p, _)| p),
            "the targets' passwords",
        ),
    ];
    for (path, what) in files {
        let Some(path) = path else {
            continue;
        };
        if let Ok(meta) = std::fs::metadata(path) {
            if meta.permissions().mode() & 0o004 != 0 {
                log::warn!(
                    "{} holds {what} and is readable by every user: chmod 600 {} (owner root or the qlship user)",
                    path.display(),
                    path.display()
                );
            }
        }
    }
}

fn run(settings: Settings) -> i32 {
    match crate::queue_log_path::examine(&settings.queue_log) {
        Err(problem) if problem.stops_the_daemon() => {
            error!("{problem}");
            return EXIT_USAGE;
        }
        _ => {}
    }
    warn_if_password_file_is_public(&settings);
    for warning in crate::warnings::for_settings(&settings) {
        log::warn!("{warning}");
    }
    let (stop_tx, stop_rx) = smol::channel::bounded(1);
    let (usr1_tx, usr1_rx) = smol::channel::bounded(1);
    if let Err(e) = watch_signals(stop_tx, usr1_tx, settings.activity_log.clone()) {
        error!("cannot install signal handlers: {e}");
        return EXIT_FAILURE;
    }
    // sled's real footprint runs well above its cache_capacity: give it a quarter.
    let cache = (settings.ram_budget / 4) as u64;
    let (journal, report) = match Journal::open(&settings.state_dir, cache) {
        Ok(j) => j,
        Err(e @ JournalError::Dir(..)) => {
            error!("--state-dir: {e}");
            return EXIT_USAGE;
        }
        Err(e) => {
            error!("{e}");
            return EXIT_FAILURE;
        }
    };
    if let Some(aside) = &report.moved_aside {
        error!(
            "the journal was damaged ({}) and has been moved aside to {} (kept for inspection); starting a new one with the rows it still spooled, and resyncing from the server",
            report.why,
            aside.display()
        );
    }
    for salvage in &report.salvaged {
        salvage.log();
    }
    let journal = Arc::new(journal);
    if let Some(pid_file) = &settings.pid_file {
        let dir = pid_file
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let name = pid_file.file_name().unwrap_or_default().to_string_lossy();
        let pid = format!("{}\n", std::process::id());
        let public = crate::atomic_file::PUBLIC;
        if let Err(e) = crate::atomic_file::write_atomically(dir, &name, pid.as_bytes(), public) {
            error!("PIDFILE {}: {e}", pid_file.display());
            return EXIT_USAGE;
        }
    }
    // systemd (Type=notify): started once the journal is open.
    crate::health::notify::send("READY=1\nSTATUS=journal open, starting the pipeline");
    let result = daemon::run(settings.clone(), journal.clone(), stop_rx, usr1_rx);
    let synced = journal.sync();
    if let Some(pid_file) = &settings.pid_file {
        let _ = std::fs::remove_file(pid_file);
    }
    match (result, synced) {
        (Err(e @ daemon::Fatal::Stranded(_)), _) => {
            daemon::report_fatal(&e);
            EXIT_USAGE
        }
        (Err(e), _) => {
            daemon::report_fatal(&e);
            if let daemon::Fatal::Journal(JournalError::Corrupt(_)) = e {
                // The next start moves it aside and resyncs instead of failing again.
                crate::journal::mark_suspect(&settings.state_dir);
            }
            EXIT_FAILURE
        }
        (Ok(()), Err(e)) => {
            error!("{e}");
            EXIT_FAILURE
        }
        (Ok(()), Ok(())) => {
            info!("stopped; journal is consistent");
            EXIT_OK
        }
    }
}

fn watch_signals(
    stop: smol::channel::Sender<()>,
    usr1: smol::channel::Sender<()>,
    activity_log: Option<std::path::PathBuf>,
) -> std::io::Result<()> {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM, SIGUSR1};
    let mut signals = signal_hook::iterator::Signals::new([SIGTERM, SIGINT, SIGHUP, SIGUSR1])?;
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            for sig in signals.forever() {
                if sig == SIGHUP {
                    if let Some(path) = &activity_log {
                        match redirect_stderr(path) {
                            Ok(()) => info!("activity log reopened"),
                            Err(e) => error!("cannot reopen activity log {}: {e}", path.display()),
                        }
                    }
                } else if sig == SIGUSR1 {
                    let _ = usr1.try_send(());
                } else {
                    let _ = stop.try_send(());
                }
            }
        })?;
    Ok(())
}

/// Points standard error (where the logger writes) at the activity log, appending.
fn redirect_stderr(path: &Path) -> std::io::Result<()> {
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?;
    // SAFETY: dup2 on two valid descriptors; fd 2 is atomically replaced.
    if unsafe { libc::dup2(file.as_raw_fd(), 2) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}
