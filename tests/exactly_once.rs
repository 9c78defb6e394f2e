//! End-to-end cases of issue 15 over real files and sockets, each beside its simulator
//! counterpart in `tests/sim/`: faults combined and repeated, then the server must hold
//! exactly the file's rows, in order.

mod support;

use std::time::Duration;
use support::fake_qm::Fault;
use support::*;

/// Case 1: a server failing 5% of requests, answering KO to 3% and dropping 5% of the
/// connections after storing, while qlship is killed 25 times during a 60k-row catch-up.
/// A resync used to throw every answer away when one request failed, so it never
/// completed and the final drain did not finish.
#[test]
fn a_resync_completes_under_a_lossy_server_while_qlship_is_killed() {
    let env = Env::new();
    let (text, expected) = rows(0..60_000);
    env.append(&text);
    let mix = [
        (Fault::Http500, 50),
        (Fault::Ko, 30),
        (Fault::DropAfterStore, 50),
    ];
    env.qm.fail_randomly(0x1055_5e7e, &mix);
    let mut seed: u64 = 0x9e37_79b9;
    for _ in 0..25 {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        // The stand-in stores before it answers or drops: a short settle is safe here.
        let child = env.spawn(&["--resync-settle", "0.05"]);
        std::thread::sleep(Duration::from_millis(100 + seed % 400));
        kill9(child);
    }
    let before = env.rows().len();
    // The drain runs with the faults still on: resyncs must finish through them.
    assert!(
        env.drain(&["--resync-settle", "0.05"]).success(),
        "{}",
        env.logs()
    );
    let check_rows = env.qm.commands("checkRow");
    eprintln!("{before} rows stored before the final drain; {check_rows} checkRow requests in all");
    assert!(before > 0, "the kills left no time to store anything");
    env.assert_exact(&expected);
}

/// Case 2: a proxy in front of QueueMetrics gives up on insertAll requests (502 Bad
/// Gateway, or a connection closed with no status line) while the application server
/// behind it stores each batch 1.5 s later. Those requests are of unknown fate: their
/// rows are checked only after the settle window, never sent again blindly.
#[test]
fn a_proxy_that_gives_up_while_the_server_stores_later_doubles_nothing() {
    let env = Env::new();
    let late = Duration::from_millis(1500);
    env.qm.fail("insertAll", Fault::GatewayThenStore(late), 3);
    env.qm.fail("insertAll", Fault::DropThenStore(late), 3);
    let (text, expected) = rows(0..20_000);
    env.append(&text);
    assert!(
        env.drain(&["--resync-settle", "3"]).success(),
        "{}",
        env.logs()
    );
    // Whatever the application server still had in hand has landed by now.
    std::thread::sleep(late + Duration::from_millis(500));
    env.assert_exact(&expected);
    let logs = env.logs();
    assert!(
        logs.contains("fate is unknown"),
        "no settle wait was logged:\n{logs}"
    );
}

/// Case 3: a power cut takes back the tail of queue_log that Asterisk never synced,
/// after qlship shipped it. The file comes back shorter (same inode) and Asterisk
/// appends where the lost rows were. Rows read again are resolved with checkRow: the
/// shipped ones are not sent twice, the surviving and new ones arrive once. (Before,
/// the file was read again from the start as new: every surviving row doubled.)
#[test]
fn a_queue_log_that_comes_back_shorter_doubles_nothing() {
    let env = Env::new();
    let (text, mut expected) = rows(0..3_000);
    env.append(&text);
    assert!(env.drain(&[]).success(), "{}", env.logs());
    for round in 0..3u64 {
        // The file loses its last 40%, then Asterisk writes new rows after what is left.
        let len = std::fs::metadata(&env.ql).unwrap().len();
        let keep = text_len_keeping_lines(&env.ql, len * 6 / 10);
        std::fs::OpenOptions::new()
            .write(true)
            .open(&env.ql)
            .unwrap()
            .set_len(keep)
            .unwrap();
        let first = 10_000 * (round + 1);
        let (text, new) = rows(first..first + 700);
        env.append(&text);
        expected.extend(new);
        assert!(env.drain(&[]).success(), "{}", env.logs());
    }
    env.assert_exact(&expected);
    assert!(env.logs().contains("rows in doubt are already stored"));
}

/// Case 3 again: `sed -i` (a new file with the old rows, one deleted) while qlship is
/// stopped, then new rows.
#[test]
fn a_queue_log_rewritten_by_sed_i_doubles_nothing() {
    let env = Env::new();
    let (text, mut expected) = rows(0..2_000);
    env.append(&text);
    assert!(env.drain(&[]).success(), "{}", env.logs());
    let edited: String = text.lines().skip(1).map(|l| format!("{l}\n")).collect();
    let tmp = env.ql.with_extension("sed");
    std::fs::write(&tmp, edited).unwrap();
    std::fs::rename(&tmp, &env.ql).unwrap();
    let (text, new) = rows(5_000..5_500);
    env.append(&text);
    expected.extend(new);
    assert!(env.drain(&[]).success(), "{}", env.logs());
    env.assert_exact(&expected);
}

/// The length of the longest run of whole lines of `path` not longer than `max`.
fn text_len_keeping_lines(path: &std::path::Path, max: u64) -> u64 {
    let bytes = std::fs::read(path).unwrap();
    let cut = &bytes[..max as usize];
    cut.iter()
        .rposition(|&b| b == b'\n')
        .map_or(0, |i| i as u64 + 1)
}

/// Case 8: the journal is found damaged while the server is down and its spool holds
/// the only copy of a rotated file's rows (the file was deleted since). Moved aside, its
/// rows used to be dropped; now they are salvaged, checked with the server where their
/// fate is unknown, and every row arrives exactly once.
#[test]
fn a_damaged_journals_spooled_rows_of_a_deleted_file_are_salvaged() {
    // What the daemon records when a journal record fails to decode while running: the
    // next start moves the journal aside.
    let logs = salvaged_after(|env| qlship::journal::mark_suspect(&env.state));
    assert!(logs.contains("reading resumes where it was"), "{logs}");
}

/// Case 8 again, with a journal older than its seal (sled came back from a cut with
/// commits it had made durable missing): every salvaged row, and every row read from
/// its position on, is in doubt, and still each row arrives exactly once.
#[test]
fn a_salvaged_journal_that_lost_durable_commits_doubles_nothing() {
    let logs = salvaged_after(|env| {
        // The seal claims a later generation than the journal holds.
        let seal = env.state.join("journal.seal");
        let bytes = std::fs::read(&seal).unwrap();
        let g = u64::from_be_bytes(bytes[..8].try_into().unwrap()) + 5;
        let check = qlship::tail::fnv(&g.to_be_bytes()) ^ 0x716c_7368_6970;
        let mut forged = g.to_be_bytes().to_vec();
        forged.extend_from_slice(&check.to_be_bytes());
        std::fs::write(&seal, forged).unwrap();
    });
    assert!(logs.contains("had reached"), "{logs}");
    assert!(logs.contains("lost commits it made durable"), "{logs}");
}

/// Ships 300 rows, has the next 100 stored with their answer lost, spools 300 more
/// from a file that is then rotated and deleted, and 100 from the new file, all while
/// the server is down; stops qlship, `damage`s the journal, and drains with the server
/// back. Returns the logs.
fn salvaged_after(damage: impl Fn(&Env)) -> String {
    let env = Env::new();
    let (a, mut expected) = rows(0..300);
    env.append(&a);
    // A long settle: the batch of unknown fate below stays unresolved in the spool.
    let child = env.spawn(&["--resync-settle", "30"]);
    env.wait_for_rows(300, Duration::from_secs(30));
    // The next batch is stored but its answer lost: spooled, in flight, yet on the
    // server. Salvaged, it must be found there, not sent again.
    env.qm.fail("insertAll", Fault::DropAfterStore, 1);
    let (b, more) = rows(300..400);
    env.append(&b);
    expected.extend(more);
    env.wait_for_rows(400, Duration::from_secs(30));
    env.qm.stop();
    let (b, more) = rows(400..600);
    env.append(&b);
    expected.extend(more);
    std::thread::sleep(Duration::from_millis(1500));
    let rotated = env.dir.path().join("queue_log.1");
    std::fs::rename(&env.ql, &rotated).unwrap();
    let (c, more) = rows(600..700);
    env.append(&c);
    expected.extend(more);
    // Past --rotate-grace the rotated file is read to its end and spooled (waited for,
    // not slept: the file is deleted next, and a busy machine is slow).
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !env.logs().contains("finished rotated file") {
        assert!(std::time::Instant::now() < deadline, "{}", env.logs());
        std::thread::sleep(Duration::from_millis(50));
    }
    stop(child);
    std::fs::remove_file(&rotated).unwrap();
    damage(&env);
    env.qm.resume();
    assert!(env.drain(&[]).success(), "{}", env.logs());
    env.assert_exact(&expected);
    let logs = env.logs();
    assert!(logs.contains("moved aside"), "{logs}");
    assert!(logs.contains("salvaged "), "{logs}");
    logs
}
