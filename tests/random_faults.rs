//! Random sequences of appends, rename rotations, copytruncates, SIGKILLs, restarts,
//! server outages and server faults (reliability catalogue R28). Whatever happens, the
//! server must end with exactly the file's rows, in order. The seed is printed; set
//! QLSHIP_SEED to replay one.

mod support;

use std::time::Duration;
use support::fake_qm::Fault;
use support::*;

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn scenario(seed: u64, steps: usize) {
    eprintln!("seed {seed}");
    let mut rng = Rng(seed | 1);
    let env = Env::new();
    // Start from an established journal: a journal that has never read QUEUE_LOG starts
    // wherever it first finds it (a file created and rotated within the one-second poll
    // before that would not be read; see the README).
    let (text, mut expected) = rows(0..50);
    env.append(&text);
    let mut next_row = 50u64;
    let mut rotations = 0;
    let mut child = Some(env.spawn(&["-v"]));
    env.wait_for_rows(50, Duration::from_secs(20));
    let mut server_up = true;
    for step in 0..steps {
        match rng.below(12) {
            0..=4 => {
                let n = 1 + rng.below(800);
                let (text, rows) = rows(next_row..next_row + n);
                next_row += n;
                env.append(&text);
                expected.extend(rows);
            }
            5 => {
                // Named as logrotate's dateext names them (greater is newer), as the
                // copies below: one scheme per directory, as on a real box.
                std::thread::sleep(Duration::from_millis(20));
                rotations += 1;
                if env.ql.exists() {
                    let to = env.dir.path().join(format!("queue_log-{rotations}"));
                    eprintln!("step {step}: rename rotation");
                    std::fs::rename(&env.ql, to).unwrap();
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            6 => {
                std::thread::sleep(Duration::from_millis(20));
                rotations += 1;
                if env.ql.exists() {
                    let to = env.dir.path().join(format!("queue_log-{rotations}"));
                    eprintln!("step {step}: copytruncate");
                    copytruncate(&env.ql, &to);
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            7 => {
                if let Some(c) = child.take() {
                    eprintln!("step {step}: kill -9");
                    kill9(c);
                }
                child = Some(env.spawn(&["-v"]));
            }
            8 => {
                if server_up {
                    eprintln!("step {step}: server down");
                    env.qm.stop();
                } else {
                    eprintln!("step {step}: server up");
                    env.qm.resume();
                }
                server_up = !server_up;
            }
            9 => {
                let fault = [
                    Fault::DropAfterStore,
                    Fault::Http500,
                    Fault::Ko,
                    Fault::DropBeforeStore,
                ][rng.below(4) as usize];
                eprintln!("step {step}: fault {fault:?}");
                env.qm.fail("insertAll", fault, 1);
            }
            _ => std::thread::sleep(Duration::from_millis(50 + rng.below(600))),
        }
    }
    if !server_up {
        env.qm.resume();
    }
    env.qm.clear_faults();
    // Let the rotated files go quiet, stop, and drain what is left.
    std::thread::sleep(Duration::from_millis(700));
    if let Some(c) = child.take() {
        stop(c);
    }
    assert!(env.drain(&[]).success(), "seed {seed}: {}", env.logs());
    env.assert_exact(&expected);
}

fn seeds() -> Vec<u64> {
    if let Ok(s) = std::env::var("QLSHIP_SEED") {
        return vec![s.parse().expect("QLSHIP_SEED is a number")];
    }
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    (0..4u64)
        .map(|i| t.wrapping_add(i.wrapping_mul(0x9e37_79b9_7f4a_7c15)))
        .collect()
}

#[test]
fn random_rotations_crashes_and_faults_end_exact() {
    for seed in seeds() {
        scenario(seed, 60);
    }
}
