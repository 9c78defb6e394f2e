//! The deterministic simulator (issue 15): the real uploader state machine in a virtual
//! world of crashes, power cuts, lossy servers, gateways that store late and clock
//! steps, explored seed by seed. `QLSHIP_SEED=N` replays one schedule;
//! `QLSHIP_SIM_SCHEDULES` sets how many the sweep runs (default 100,000).

mod journal;
mod rng;
mod server;
mod world;

use rng::Rng;
use world::Params;

fn schedules() -> u64 {
    std::env::var("QLSHIP_SIM_SCHEDULES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000)
}

/// The seed of schedule `i` of the sweep.
fn seed_of(i: u64) -> u64 {
    Rng::new(0x5eed ^ i).next()
}

fn run_seed(seed: u64) -> Result<world::Report, String> {
    let mut rng = Rng::new(seed);
    let p = Params::draw(&mut rng);
    world::run(rng.next(), p.clone()).map_err(|e| format!("seed {seed}: {e}\n  {p:?}"))
}

#[test]
fn every_row_exactly_once_across_seeded_schedules() {
    if let Some(seed) = std::env::var("QLSHIP_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        run_seed(seed).unwrap();
        return;
    }
    let n = schedules();
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get()) as u64;
    let failures: Vec<String> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                s.spawn(move || {
                    let mut failed = Vec::new();
                    let (mut crashes, mut requests) = (0, 0);
                    for i in (t..n).step_by(threads as usize) {
                        match run_seed(seed_of(i)) {
                            Ok(r) => {
                                crashes += r.crashes;
                                requests += r.requests;
                            }
                            Err(e) => failed.push(format!("schedule {i}, {e}")),
                        }
                        if failed.len() >= 3 {
                            break;
                        }
                    }
                    (failed, crashes, requests)
                })
            })
            .collect();
        let mut all = Vec::new();
        let (mut crashes, mut requests) = (0, 0);
        for h in handles {
            let (f, c, r) = h.join().expect("sim thread");
            all.extend(f);
            crashes += c;
            requests += r;
        }
        eprintln!("{n} schedules: {crashes} crashes, {requests} requests");
        all
    });
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
