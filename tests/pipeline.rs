//! End-to-end: real qlship binary, real files, the strict fake QueueMetrics over real
//! sockets. Every test ends by asserting the server holds exactly the file's rows, in
//! order, and that the client never broke the protocol.

mod support;

use std::time::Duration;
use support::fake_qm::{Fault, StoredRow};
use support::*;

const SECS: Duration = Duration::from_secs(20);

#[test]
fn catch_up_of_100k_rows_arrives_exactly_once_in_order() {
    let env = Env::new();
    let (text, expected) = rows(0..100_000);
    env.append(&text);
    assert!(env.drain(&[]).success(), "{}", env.logs());
    env.assert_exact(&expected);
    assert!(
        env.qm.commands("insertAll") >= 200,
        "batches are at most 500 rows"
    );
}

#[test]
fn rows_appended_live_arrive_promptly() {
    let env = Env::new();
    let (first, mut expected) = rows(0..10);
    env.append(&first);
    let child = env.spawn(&[]);
    env.wait_for_rows(10, SECS);
    for k in 1..5u64 {
        let (text, more) = rows(k * 10..k * 10 + 10);
        let started = std::time::Instant::now();
        env.append(&text);
        expected.extend(more);
        env.wait_for_rows(expected.len(), SECS);
        assert!(
            started.elapsed() < Duration::from_secs(4),
            "live row took {:?}",
            started.elapsed()
        );
    }
    stop(child);
    env.assert_exact(&expected);
}

#[test]
fn a_new_empty_file_then_one_short_line_is_shipped() {
    let env = Env::new();
    let child = env.spawn(&[]);
    std::thread::sleep(Duration::from_millis(500));
    env.append("");
    std::thread::sleep(Duration::from_millis(300));
    let (text, expected) = rows(0..1);
    env.append(&text);
    env.wait_for_rows(1, SECS);
    stop(child);
    env.assert_exact(&expected);
}

#[test]
fn rename_rotation_while_running_reads_late_rows_of_the_old_file_first() {
    let env = Env::new();
    let (a, mut expected) = rows(0..100);
    env.append(&a);
    let child = env.spawn(&[]);
    env.wait_for_rows(100, SECS);
    let rotated = env.dir.path().join("queue_log.1");
    std::fs::rename(&env.ql, &rotated).unwrap();
    // Asterisk keeps writing to the renamed file until `logger reload`...
    let (late, more) = rows(100..150);
    append_to(&rotated, late.as_bytes());
    expected.extend(more);
    // ...which starts the new file.
    let (b, more) = rows(150..200);
    env.append(&b);
    expected.extend(more);
    env.wait_for_rows(200, SECS);
    stop(child);
    env.assert_exact(&expected);
}

#[test]
fn copytruncate_while_running_loses_nothing() {
    let env = Env::new();
    let (a, mut expected) = rows(0..100);
    env.append(&a);
    let child = env.spawn(&[]);
    env.wait_for_rows(100, SECS);
    copytruncate(&env.ql, &env.dir.path().join("queue_log.1"));
    let (b, more) = rows(100..130);
    env.append(&b);
    expected.extend(more);
    env.wait_for_rows(130, SECS);
    stop(child);
    env.assert_exact(&expected);
}

#[test]
fn copytruncate_with_a_writer_keeping_its_offset_ships_no_nul_rows() {
    use std::os::unix::fs::FileExt;
    let env = Env::new();
    let (a, mut expected) = rows(0..50);
    env.append(&a);
    let child = env.spawn(&[]);
    env.wait_for_rows(50, SECS);
    let old_len = std::fs::metadata(&env.ql).unwrap().len();
    std::fs::copy(&env.ql, env.dir.path().join("queue_log.1")).unwrap();
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(&env.ql)
        .unwrap();
    f.set_len(0).unwrap();
    let (b, more) = rows(50..60);
    f.write_all_at(b.as_bytes(), old_len).unwrap();
    expected.extend(more);
    env.wait_for_rows(60, SECS);
    stop(child);
    env.assert_exact(&expected);
}

#[test]
fn delete_and_recreate_while_running() {
    let env = Env::new();
    let (a, mut expected) = rows(0..40);
    env.append(&a);
    let child = env.spawn(&[]);
    env.wait_for_rows(40, SECS);
    std::fs::remove_file(&env.ql).unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let (b, more) = rows(40..80);
    env.append(&b);
    expected.extend(more);
    env.wait_for_rows(80, SECS);
    stop(child);
    env.assert_exact(&expected);
}

#[test]
fn two_rename_rotations_while_stopped_are_both_read() {
    let env = Env::new();
    let (a, mut expected) = rows(0..30);
    env.append(&a);
    assert!(env.drain(&[]).success());
    let (b, more) = rows(30..60);
    env.append(&b);
    expected.extend(more);
    std::fs::rename(&env.ql, env.dir.path().join("queue_log.2")).unwrap();
    std::thread::sleep(Duration::from_millis(20));
    let (c, more) = rows(60..90);
    env.append(&c);
    expected.extend(more);
    std::fs::rename(&env.ql, env.dir.path().join("queue_log.1")).unwrap();
    std::thread::sleep(Duration::from_millis(20));
    let (d, more) = rows(90..120);
    env.append(&d);
    expected.extend(more);
    assert!(env.drain(&[]).success());
    env.assert_exact(&expected);
}

#[test]
fn copytruncate_while_stopped_with_longer_new_content() {
    let env = Env::new();
    let (a, mut expected) = rows(0..20);
    env.append(&a);
    assert!(env.drain(&[]).success());
    let (b, more) = rows(20..30);
    env.append(&b);
    expected.extend(more);
    copytruncate(&env.ql, &env.dir.path().join("queue_log.1"));
    let (c, more) = rows(30..100);
    env.append(&c);
    expected.extend(more);
    assert!(env.drain(&[]).success());
    env.assert_exact(&expected);
}

#[test]
fn delete_and_recreate_while_stopped_reads_the_new_file_from_the_start() {
    let env = Env::new();
    let (a, mut expected) = rows(0..50);
    env.append(&a);
    assert!(env.drain(&[]).success());
    std::fs::remove_file(&env.ql).unwrap();
    let (b, more) = rows(50..150);
    env.append(&b);
    expected.extend(more);
    assert!(env.drain(&[]).success());
    env.assert_exact(&expected);
}

#[test]
fn partial_last_line_is_held_across_a_restart() {
    let env = Env::new();
    let (a, mut expected) = rows(0..5);
    env.append(&a);
    let (line, row) = support::row(5);
    let (head, tail) = line.split_at(12);
    env.append(head);
    assert!(env.drain(&[]).success());
    assert_eq!(env.rows().len(), 5, "a partial line must not be shipped");
    env.append(tail);
    expected.push(row);
    assert!(env.drain(&[]).success());
    env.assert_exact(&expected);
}

#[test]
fn crlf_latin1_nul_bom_and_overlong_lines() {
    let env = Env::new();
    let mut bytes = Vec::new();
    bytes.extend_from_slice(b"\xEF\xBB\xBF1700000000|c1|q|Agent/1|ENTERQUEUE||555|1\r\n");
    bytes.extend_from_slice(b"1700000001|c2|q|Jos\xe9|CONNECT|1|c2|1\n");
    bytes.extend_from_slice("1700000002|c3|q|Zoë|PAUSE|😀 ünïcode\n".as_bytes());
    bytes.extend_from_slice(b"not a row\n");
    bytes.extend_from_slice(b"17000000x3|c|q|a|V\n");
    bytes.extend(std::iter::repeat_n(b'x', 1 << 20));
    bytes.push(b'\n');
    bytes.extend_from_slice(b"1700000004|c4|q|a|V|a\x00b|x|y|z|w|extra|pipes\n");
    append_to(&env.ql, &bytes);
    assert!(env.drain(&[]).success());
    let r = |t: &str, c: &str, a: &str, v: &str, p: [&str; 5]| StoredRow {
        time_id: t.into(),
        call_id: c.into(),
        queue: "q".into(),
        agent: a.into(),
        verb: v.into(),
        params: p.iter().map(|s| s.to_string()).collect(),
    };
    env.assert_exact(&[
        r(
            "1700000000",
            "c1",
            "Agent/1",
            "ENTERQUEUE",
            ["", "555", "1", "", ""],
        ),
        r(
            "1700000001",
            "c2",
            "José",
            "CONNECT",
            ["1", "c2", "1", "", ""],
        ),
        r(
            "1700000002",
            "c3",
            "Zoë",
            "PAUSE",
            ["😀 ünïcode", "", "", "", ""],
        ),
        r(
            "1700000004",
            "c4",
            "a",
            "V",
            ["a\0b", "x", "y", "z", "w|extra|pipes"],
        ),
    ]);
    let logs = env.logs();
    assert!(logs.contains("skipped, not a queue_log row"), "{logs}");
    assert!(logs.contains("line longer than 65536 bytes"), "{logs}");
}

/// Issue 6: at the smallest RAM budget (128K: 32 KiB insertAll bodies) a batch stays
/// within its byte budget, and a row whose body alone is over it (60 KB of data, more
/// once escaped) still goes, alone, with the rows around it.
#[test]
fn a_row_larger_than_the_batch_budget_goes_alone_at_the_smallest_ram_budget() {
    const BUDGET: usize = 32 * 1024; // --ram-budget 128K / 4
    let env = Env::new();
    let (before, mut expected) = rows(0..400);
    env.append(&before);
    let data: String = (0..60_000)
        .map(|i| match i % 10 {
            0 => ' ',
            3 => '&',
            6 => '"',
            _ => (b'a' + (i % 26) as u8) as char,
        })
        .collect();
    env.append(&format!(
        "1700000500|big.1|q-sales|Agent/101|INFO|{data}|x\n"
    ));
    expected.push(StoredRow {
        time_id: "1700000500".into(),
        call_id: "big.1".into(),
        queue: "q-sales".into(),
        agent: "Agent/101".into(),
        verb: "INFO".into(),
        params: [data.as_str(), "x", "", "", ""].map(String::from).to_vec(),
    });
    let (after, more) = rows(400..800);
    env.append(&after);
    expected.extend(more);
    assert!(
        env.drain(&["--ram-budget", "128K"]).success(),
        "{}",
        env.logs()
    );
    env.assert_exact(&expected);
    let sent = env.qm.insert_alls();
    let over: Vec<_> = sent.iter().filter(|(_, bytes)| *bytes > BUDGET).collect();
    assert_eq!(
        over.len(),
        1,
        "one body over the budget, the big row's: {over:?}"
    );
    assert_eq!(over[0].0, 1, "the oversized row went alone: {over:?}");
    assert!(over[0].1 > 60_000, "{over:?}");
    assert!(
        sent.iter().any(|(rows, _)| *rows > 50),
        "ordinary rows still travel in batches: {sent:?}"
    );
}

#[test]
fn server_down_then_back() {
    let env = Env::new();
    env.qm.stop();
    let (a, expected) = rows(0..2000);
    env.append(&a);
    let child = env.spawn(&[]);
    std::thread::sleep(Duration::from_secs(2));
    assert!(env.rows().is_empty());
    env.qm.resume();
    env.wait_for_rows(2000, SECS);
    stop(child);
    env.assert_exact(&expected);
}

#[test]
fn server_down_while_the_file_is_rotated_and_deleted() {
    let env = Env::new();
    let (a, mut expected) = rows(0..300);
    env.append(&a);
    let child = env.spawn(&[]);
    env.wait_for_rows(300, SECS);
    env.qm.stop();
    let (b, more) = rows(300..600);
    env.append(&b);
    expected.extend(more);
    std::thread::sleep(Duration::from_millis(1500));
    let rotated = env.dir.path().join("queue_log.1");
    std::fs::rename(&env.ql, &rotated).unwrap();
    let (c, more) = rows(600..700);
    env.append(&c);
    expected.extend(more);
    std::thread::sleep(Duration::from_millis(2000));
    std::fs::remove_file(&rotated).unwrap();
    env.qm.resume();
    env.wait_for_rows(700, SECS);
    stop(child);
    env.assert_exact(&expected);
}

fn with_fault(command: &str, fault: Fault, times: u32) {
    with_fault_args(command, fault, times, &[]);
}

fn with_fault_args(command: &str, fault: Fault, times: u32, args: &[&str]) {
    let env = Env::new();
    env.qm.fail(command, fault, times);
    let (a, expected) = rows(0..1500);
    env.append(&a);
    assert!(env.drain(args).success(), "{}", env.logs());
    env.assert_exact(&expected);
}

#[test]
fn fault_http_500_on_insert() {
    with_fault("insertAll", Fault::Http500, 3);
}

#[test]
fn fault_ko_on_insert() {
    with_fault("insertAll", Fault::Ko, 3);
}

#[test]
fn fault_server_stores_after_the_client_timed_out() {
    // Timeout is 1 s: the server stores each of these batches 1.5 s after receiving it,
    // when the client has already given up on the answer.
    with_fault_args(
        "insertAll",
        Fault::Delay(Duration::from_millis(1500)),
        2,
        &["--resync-settle", "2"],
    );
}

#[test]
fn fault_hang() {
    with_fault("insertAll", Fault::Hang, 2);
}

#[test]
fn fault_connection_dropped_after_the_batch_was_stored() {
    with_fault("insertAll", Fault::DropAfterStore, 3);
}

#[test]
fn fault_connection_dropped_before_storing() {
    with_fault("insertAll", Fault::DropBeforeStore, 3);
}

#[test]
fn fault_during_resync_itself() {
    let env = Env::new();
    env.qm.fail("insertAll", Fault::DropAfterStore, 2);
    env.qm.fail("checkRow", Fault::Http500, 5);
    env.qm.fail("checkHWM", Fault::Ko, 2);
    let (a, expected) = rows(0..1200);
    env.append(&a);
    assert!(env.drain(&[]).success(), "{}", env.logs());
    env.assert_exact(&expected);
}

#[test]
fn identical_rows_in_the_same_second_are_two_rows_even_across_a_lost_answer() {
    let env = Env::new();
    // 1200 identical lines: batches of 500 split them, and one batch's answer is lost.
    let line = "1700000000|NONE|NONE|NONE|QUEUESTART|\n";
    env.append(&line.repeat(1200));
    env.qm.fail("insertAll", Fault::DropAfterStore, 1);
    assert!(env.drain(&[]).success(), "{}", env.logs());
    let one = StoredRow {
        time_id: "1700000000".into(),
        call_id: "NONE".into(),
        queue: "NONE".into(),
        agent: "NONE".into(),
        verb: "QUEUESTART".into(),
        params: vec![String::new(); 5],
    };
    env.assert_exact(&vec![one; 1200]);
}

#[test]
fn takeover_of_a_partition_filled_by_an_earlier_loader() {
    let env = Env::new();
    let (text, expected) = rows(0..1000);
    env.append(&text);
    // The old loader stored the first 601 rows, stopping in the middle of a second
    // (rows 600..604 share one timestamp).
    env.qm.preload(&env.token, expected[..601].to_vec());
    assert!(env.drain(&[]).success(), "{}", env.logs());
    env.assert_exact(&expected);
    assert!(env.qm.commands("checkRow") >= 1);
}

#[test]
fn takeover_with_an_empty_partition_sends_everything() {
    let env = Env::with_token("");
    let (text, expected) = rows(0..100);
    env.append(&text);
    assert!(env.drain(&[]).success());
    env.assert_exact(&expected);
}

#[test]
fn clock_going_backwards_in_the_file_loses_nothing() {
    let env = Env::new();
    let (a, mut expected) = rows(1000..1100);
    env.append(&a);
    assert!(env.drain(&[]).success());
    // A Pi without RTC reboots in the past: later rows carry earlier times.
    let (b, more) = rows(0..100);
    env.append(&b);
    expected.extend(more);
    env.qm.fail("insertAll", Fault::DropAfterStore, 1);
    assert!(env.drain(&[]).success(), "{}", env.logs());
    env.assert_exact(&expected);
}

#[test]
fn sigterm_mid_flow_stops_within_two_seconds_and_resumes_exactly() {
    let env = Env::new();
    let (a, expected) = rows(0..30_000);
    env.append(&a);
    env.qm
        .fail("insertAll", Fault::Delay(Duration::from_millis(300)), 1000);
    let child = env.spawn(&[]);
    std::thread::sleep(Duration::from_millis(1500));
    stop(child);
    env.qm.clear_faults();
    // The server stores 300 ms after receiving; a wide settle window keeps the resync
    // after that even on a loaded machine.
    assert!(
        env.drain(&["--resync-settle", "2"]).success(),
        "{}",
        env.logs()
    );
    env.assert_exact(&expected);
}

#[test]
fn sighup_reopens_the_activity_log() {
    let env = Env::new();
    let log = env.dir.path().join("activity.log");
    let mut args = env.args(&[]);
    args.push(log.to_str().unwrap().into());
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_qlship"))
        .args(&args)
        .spawn()
        .unwrap();
    let (a, expected) = rows(0..10);
    env.append(&a);
    env.wait_for_rows(10, SECS);
    std::fs::rename(&log, env.dir.path().join("activity.log.1")).unwrap();
    signal(&child, libc::SIGHUP);
    std::thread::sleep(Duration::from_millis(300));
    stop(child);
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("activity log reopened"), "{text}");
    assert!(text.contains("stopped; journal is consistent"), "{text}");
    env.assert_exact(&expected);
}

/// Damages the journal between two runs; qlship must neither crash-loop nor double rows.
fn with_damaged_journal(damage: impl Fn(&std::path::Path)) {
    let env = Env::new();
    let (a, mut expected) = rows(0..1000);
    env.append(&a);
    assert!(env.drain(&[]).success(), "{}", env.logs());
    damage(&env.state.join("journal"));
    let (b, more) = rows(1000..1100);
    env.append(&b);
    expected.extend(more);
    let status = env.drain(&[]);
    assert!(status.success(), "{status}: {}", env.logs());
    env.assert_exact(&expected);
}

fn rewrite(path: &std::path::Path, f: impl Fn(&mut Vec<u8>)) {
    let mut bytes = std::fs::read(path).unwrap();
    f(&mut bytes);
    std::fs::write(path, bytes).unwrap();
}

#[test]
fn journal_with_flipped_bytes_is_survived() {
    for at in [0.0, 0.1, 0.5, 0.9, 0.999] {
        with_damaged_journal(|dir| {
            rewrite(&dir.join("db"), |b| {
                let start = ((b.len() as f64) * at) as usize;
                for x in b.iter_mut().skip(start).take(64) {
                    *x ^= 0x5a;
                }
            })
        });
    }
}

#[test]
fn journal_truncated_is_survived() {
    for keep in [0.0, 0.5, 0.95] {
        with_damaged_journal(|dir| {
            rewrite(&dir.join("db"), |b| {
                b.truncate((b.len() as f64 * keep) as usize)
            })
        });
    }
}

#[test]
fn journal_with_garbage_conf_is_survived() {
    with_damaged_journal(|dir| std::fs::write(dir.join("conf"), b"\xff\xfe garbage").unwrap());
}

/// The server is down, so the reader stops a few batches into the live file (the file
/// is the buffer); then the file is rotated away while most of it is still unread.
fn behind_when_rotated(rotate: impl Fn(&Env)) {
    let env = Env::new();
    let (a, mut expected) = rows(0..10);
    env.append(&a);
    assert!(env.drain(&[]).success());
    env.qm.stop();
    let (b, more) = rows(10..6000);
    env.append(&b);
    expected.extend(more);
    let child = env.spawn(&[]);
    std::thread::sleep(Duration::from_millis(1500));
    rotate(&env);
    let (c, more) = rows(6000..6100);
    env.append(&c);
    expected.extend(more);
    std::thread::sleep(Duration::from_millis(1500));
    // Only what was spooled (or is still on disk) survives a crash now.
    kill9(child);
    let child = env.spawn(&[]);
    env.qm.resume();
    env.wait_for_rows(6100, SECS);
    stop(child);
    env.assert_exact(&expected);
}

#[test]
fn rename_rotation_while_behind_the_writer() {
    behind_when_rotated(|env| {
        std::fs::rename(&env.ql, env.dir.path().join("queue_log.1")).unwrap()
    });
}

#[test]
fn copytruncate_while_behind_the_writer() {
    behind_when_rotated(|env| {
        copytruncate(&env.ql, &env.dir.path().join("queue_log.1"));
    });
}

#[test]
fn delete_while_behind_the_writer_spools_the_rest_of_the_open_file() {
    behind_when_rotated(|env| std::fs::remove_file(&env.ql).unwrap());
}
