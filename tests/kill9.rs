//! SIGKILL at random moments during a catch-up, many times, then a clean drain: the
//! server must end with exactly the file's rows.

mod support;

use std::time::Duration;
use support::*;

#[test]
fn sigkill_at_random_moments_during_a_100k_catch_up_ends_exact() {
    let env = Env::new();
    let (text, expected) = rows(0..100_000);
    env.append(&text);
    let mut seed: u64 = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    eprintln!("seed {seed}");
    for _ in 0..50 {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        // The fake server stores before it answers, so a short settle window is safe here.
        let child = env.spawn(&["--resync-settle", "0.05"]);
        std::thread::sleep(Duration::from_millis(30 + seed % 400));
        kill9(child);
    }
    let before = env.rows().len();
    let resyncs = env.qm.commands("checkRow");
    eprintln!("{before} rows stored before the final drain; {resyncs} checkRow calls");
    // Load-independent proof that the kills hit real work: batches landed, and some were
    // in doubt when qlship died (the exact figures vary with the machine's load).
    assert!(
        before >= 500,
        "the kills left no time to upload a batch: {before} rows"
    );
    assert!(
        resyncs > 0,
        "no batch was ever in doubt: the kills did not hit a request"
    );
    assert!(env.drain(&[]).success(), "{}", env.logs());
    env.assert_exact(&expected);
}
