//! End-to-end cases 4, 5 and 6 of issue 15 over real files and sockets: rotations while
//! stopped (with a generation left only as `.gz`, and mtimes that lie), a rotated file
//! that keeps growing because `logger reload` never ran, and grace periods that must not
//! hold back newer generations. Each ends with every row of every generation on the
//! server exactly once, in file order per file.

mod support;

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};
use support::fake_qm::StoredRow;
use support::*;

/// The rows one generation of queue_log held (one file's content, in file order).
struct Generation {
    name: &'static str,
    rows: Vec<StoredRow>,
}

impl Generation {
    /// Writes rows `range` to `file` (the writer's open handle) and keeps them as this
    /// generation's.
    fn write(&mut self, file: &mut File, range: std::ops::Range<u64>) {
        use std::io::Write;
        let (text, rows) = rows(range);
        file.write_all(text.as_bytes()).unwrap();
        self.rows.extend(rows);
    }
}

fn generation(name: &'static str) -> Generation {
    Generation {
        name,
        rows: Vec::new(),
    }
}

/// Asterisk's own handle on queue_log: opened once (O_APPEND) and kept, so that after a
/// rename it goes on writing to the renamed file, as Asterisk does until `logger reload`.
fn writer(path: &Path) -> File {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap()
}

/// Waits until the server holds at least `n` rows or `limit` passed (no panic: the
/// caller's check then says what is missing), then a little longer so that a duplicate
/// would have time to show.
fn wait_for_count(env: &Env, n: usize, limit: Duration) {
    let deadline = Instant::now() + limit;
    while env.rows().len() < n && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(500));
}

/// Asserts the server holds every row of every generation exactly once, nothing else,
/// each generation's rows in file order, and that no request broke the protocol. On
/// failure it says, per generation, how many rows are missing or doubled.
fn assert_generations_exact(env: &Env, generations: &[Generation]) {
    let got = env.rows();
    let mut where_from: HashMap<&StoredRow, (usize, usize)> = HashMap::new();
    for (g, generation) in generations.iter().enumerate() {
        for (i, row) in generation.rows.iter().enumerate() {
            let earlier = where_from.insert(row, (g, i));
            assert!(earlier.is_none(), "the test wrote one row twice: {row:?}");
        }
    }
    let mut seen: Vec<Vec<u32>> = generations.iter().map(|g| vec![0; g.rows.len()]).collect();
    let mut order: Vec<Vec<usize>> = vec![Vec::new(); generations.len()];
    let mut foreign = Vec::new();
    for row in &got {
        match where_from.get(row) {
            Some(&(g, i)) => {
                if seen[g][i] == 0 {
                    order[g].push(i);
                }
                seen[g][i] += 1;
            }
            None => foreign.push(row),
        }
    }
    let mut problems = Vec::new();
    for (g, generation) in generations.iter().enumerate() {
        let missing: Vec<usize> = (0..seen[g].len()).filter(|&i| seen[g][i] == 0).collect();
        let doubled = seen[g].iter().filter(|&&c| c > 1).count();
        if !missing.is_empty() || doubled > 0 {
            problems.push(format!(
                "{}: {} of {} rows missing (first indices {:?}), {doubled} stored more than once",
                generation.name,
                missing.len(),
                generation.rows.len(),
                &missing[..missing.len().min(5)]
            ));
        }
        if let Some(w) = order[g].windows(2).position(|w| w[0] > w[1]) {
            problems.push(format!(
                "{}: out of file order: row {} stored before row {}",
                generation.name,
                order[g][w],
                order[g][w + 1]
            ));
        }
    }
    if !foreign.is_empty() {
        problems.push(format!(
            "{} rows no generation held (first {:?})",
            foreign.len(),
            foreign[0]
        ));
    }
    assert!(
        problems.is_empty(),
        "server holds {} rows, expected {}:\n  {}\nlogs:\n{}",
        got.len(),
        generations.iter().map(|g| g.rows.len()).sum::<usize>(),
        problems.join("\n  "),
        env.logs()
    );
    assert_eq!(
        env.qm.violations(),
        Vec::<String>::new(),
        "protocol violations"
    );
}

/// Every line qlship logged in every run of this test (`Env::logs` keeps only the last
/// 40 lines of each).
fn full_logs(env: &Env) -> String {
    let mut names: Vec<PathBuf> = std::fs::read_dir(env.dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            let name = p.file_name().unwrap().to_string_lossy();
            name.starts_with("qlship-") && name.ends_with(".log")
        })
        .collect();
    names.sort();
    names
        .iter()
        .map(|p| std::fs::read_to_string(p).unwrap_or_default())
        .collect()
}

fn sibling(env: &Env, suffix: &str) -> PathBuf {
    env.dir.path().join(format!("queue_log{suffix}"))
}

/// logrotate's `create`: a new, empty queue_log where the old one was renamed away.
fn create_empty(path: &Path) {
    File::create(path).unwrap();
}

/// logrotate's `compress` of a delayed generation: gzip writes `NAME.gz` (a new inode,
/// with the original's mtime) and removes NAME.
fn gzip(path: &Path) {
    let status = std::process::Command::new("gzip")
        .arg(path)
        .status()
        .expect("gzip must be installed to run this test");
    assert!(status.success(), "gzip {}: {status}", path.display());
}

/// Sets a file's modification time, as a clock that is wrong would have left it.
fn set_mtime(path: &Path, unix_secs: u64) {
    let when = SystemTime::UNIX_EPOCH + Duration::from_secs(unix_secs);
    File::options()
        .write(true)
        .open(path)
        .unwrap()
        .set_modified(when)
        .unwrap();
}

/// How qlship is stopped before the rotations.
enum StopBy {
    Sigterm,
    Kill9,
}

/// Case 4: qlship ships the first third of day 1 and is stopped; Asterisk writes the
/// rest of day 1; then two nights of logrotate with `compress` + `delaycompress` pass
/// while qlship is stopped: day 1's file (the one qlship was reading, its end unread)
/// ends up as `queue_log.2.gz` (a new inode), day 2 as `queue_log.1`, and a fresh
/// queue_log holds day 3. With `no_rtc`, the mtimes lie the other way round (a Pi
/// without an RTC): the oldest generation is dated in the future, the newest in 1970.
fn stopped_over_two_rotations_with_delaycompress(stop_by: StopBy, no_rtc: bool) {
    let env = Env::new();
    let mut day1 = generation("day 1 (queue_log.2.gz)");
    let mut day2 = generation("day 2 (queue_log.1)");
    let mut day3 = generation("day 3 (queue_log)");
    let mut asterisk = writer(&env.ql);
    day1.write(&mut asterisk, 0..1000);
    let child = env.spawn(&[]);
    wait_for_count(&env, 1000, Duration::from_secs(20));
    assert_eq!(
        env.rows().len(),
        1000,
        "the first run shipped day 1's start"
    );
    match stop_by {
        StopBy::Sigterm => stop_within(child, Duration::from_secs(5)),
        StopBy::Kill9 => kill9(child),
    }
    day1.write(&mut asterisk, 1000..3000);
    // Night 1: queue_log -> queue_log.1 (compression delayed), a new queue_log.
    std::fs::rename(&env.ql, sibling(&env, ".1")).unwrap();
    create_empty(&env.ql);
    drop(asterisk); // logger reload
    let mut asterisk = writer(&env.ql);
    day2.write(&mut asterisk, 3000..6000);
    // Night 2: .1 -> .2, queue_log -> .1, a new queue_log, then the delayed compression
    // of .2.
    std::fs::rename(sibling(&env, ".1"), sibling(&env, ".2")).unwrap();
    std::fs::rename(&env.ql, sibling(&env, ".1")).unwrap();
    create_empty(&env.ql);
    drop(asterisk);
    gzip(&sibling(&env, ".2"));
    assert!(!sibling(&env, ".2").exists() && sibling(&env, ".2.gz").exists());
    let mut asterisk = writer(&env.ql);
    day3.write(&mut asterisk, 6000..9000);
    if no_rtc {
        set_mtime(&sibling(&env, ".2.gz"), 2_082_758_400); // 2036-01-01
        set_mtime(&sibling(&env, ".1"), 31_536_000); // 1971-01-01
        set_mtime(&env.ql, 86_400); // 1970-01-02
    }
    let status = env.drain(&[]);
    assert!(status.success(), "{status}: {}", env.logs());
    assert_generations_exact(&env, &[day1, day2, day3]);
}

#[test]
fn stopped_over_two_rotations_with_delaycompress_reads_every_generation() {
    stopped_over_two_rotations_with_delaycompress(StopBy::Sigterm, false);
}

/// Case 4 on a Pi without an RTC, killed rather than stopped: generations are ordered
/// by content and identity, not by mtimes.
#[test]
fn stopped_over_two_rotations_without_an_rtc_orders_generations_by_content() {
    stopped_over_two_rotations_with_delaycompress(StopBy::Kill9, true);
}

/// Case 5: logrotate renames queue_log to queue_log.1 and creates an empty queue_log,
/// but its postrotate never runs `logger reload`. Asterisk keeps its handle and appends
/// to queue_log.1 in bursts, with pauses three times `--rotate-grace`. Every burst must
/// arrive, and the log must say which file is still growing and what is missing.
#[test]
fn a_rotated_file_that_keeps_growing_is_followed() {
    let env = Env::new();
    let mut rotated = generation("queue_log.1 (never reloaded)");
    let mut asterisk = writer(&env.ql);
    rotated.write(&mut asterisk, 0..200);
    let child = env.spawn(&["--rotate-grace", "1"]);
    wait_for_count(&env, 200, Duration::from_secs(20));
    std::fs::rename(&env.ql, sibling(&env, ".1")).unwrap();
    create_empty(&env.ql);
    for burst in 0..4u64 {
        if burst > 0 {
            std::thread::sleep(Duration::from_secs(3));
        }
        let first = 200 + burst * 100;
        rotated.write(&mut asterisk, first..first + 100);
    }
    wait_for_count(&env, 600, Duration::from_secs(20));
    stop_within(child, Duration::from_secs(5));
    assert_generations_exact(&env, &[rotated]);
    let logs = full_logs(&env);
    assert!(
        logs.lines().any(|l| l.contains("WARN")
            && l.contains("queue_log.1")
            && l.contains("logger reload")),
        "no warning names queue_log.1 and the missing `logger reload`:\n{logs}"
    );
}

/// Case 6: a live queue_log goes through a rename rotation (Asterisk still writing to
/// the old file for a while), then a copytruncate, then, while the server is down, a
/// rotation whose rotated file is deleted three seconds later. `--rotate-grace` is long
/// (30 s): a reader that waits out the grace of one rotated file before taking newer
/// generations never sees the deleted file's rows.
#[test]
fn grace_periods_never_hold_newer_generations() {
    let env = Env::new();
    let mut a = generation("A: renamed, then written on");
    let mut b_before = generation("B before copytruncate (its copy)");
    let mut b_after = generation("B after copytruncate (rotated, then deleted)");
    let mut c = generation("C: the newest queue_log");
    let mut asterisk = writer(&env.ql);
    a.write(&mut asterisk, 0..300);
    let child = env.spawn(&["--rotate-grace", "30"]);
    wait_for_count(&env, 300, Duration::from_secs(20));

    // Rename rotation; Asterisk keeps writing to the old file for a while.
    std::fs::rename(&env.ql, sibling(&env, ".1")).unwrap();
    create_empty(&env.ql);
    a.write(&mut asterisk, 300..400);
    std::thread::sleep(Duration::from_secs(1));
    a.write(&mut asterisk, 400..450);
    drop(asterisk); // logger reload
    let mut asterisk = writer(&env.ql);
    b_before.write(&mut asterisk, 450..650);
    std::thread::sleep(Duration::from_millis(1500));

    // copytruncate: .1 -> .2, queue_log copied to .1 and truncated; Asterisk appends on.
    std::fs::rename(sibling(&env, ".1"), sibling(&env, ".2")).unwrap();
    copytruncate(&env.ql, &sibling(&env, ".1"));
    b_after.write(&mut asterisk, 650..700);
    std::thread::sleep(Duration::from_secs(1));
    b_after.write(&mut asterisk, 700..750);
    std::thread::sleep(Duration::from_secs(1));

    // The server goes down; then a rename rotation whose rotated file is deleted soon.
    env.qm.stop();
    b_after.write(&mut asterisk, 750..900);
    std::thread::sleep(Duration::from_secs(1));
    std::fs::rename(sibling(&env, ".2"), sibling(&env, ".3")).unwrap();
    std::fs::rename(sibling(&env, ".1"), sibling(&env, ".2")).unwrap();
    std::fs::rename(&env.ql, sibling(&env, ".1")).unwrap();
    create_empty(&env.ql);
    b_after.write(&mut asterisk, 900..920);
    drop(asterisk); // logger reload
    let mut asterisk = writer(&env.ql);
    c.write(&mut asterisk, 920..1000);
    std::thread::sleep(Duration::from_secs(3));
    std::fs::remove_file(sibling(&env, ".1")).unwrap();
    std::thread::sleep(Duration::from_millis(500));
    env.qm.resume();

    wait_for_count(&env, 1000, Duration::from_secs(30));
    stop_within(child, Duration::from_secs(5));
    assert_generations_exact(&env, &[a, b_before, b_after, c]);
}
