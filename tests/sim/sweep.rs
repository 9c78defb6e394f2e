//! A seeded sweep over both cores: schedule `i` of `n` runs on thread `i % threads`;
//! each thread stops after its third failure. `QLSHIP_SEED=N` replays one seed alone.

/// A number from the environment (unset or not a number: None).
pub fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

/// The seed `QLSHIP_SEED` names run alone, or else the sweep ([`failures`]).
pub fn failures_or_replay(
    n: u64,
    seed_of: fn(u64) -> u64,
    run: fn(u64) -> Result<(), String>,
) -> Vec<String> {
    match env_u64("QLSHIP_SEED") {
        Some(seed) => run(seed).err().into_iter().collect(),
        None => failures(n, seed_of, run),
    }
}

/// The failures (each naming its schedule) of `run` over schedules `0..n`, with the
/// seed of each from `seed_of`.
pub fn failures(
    n: u64,
    seed_of: fn(u64) -> u64,
    run: fn(u64) -> Result<(), String>,
) -> Vec<String> {
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get()) as u64;
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                s.spawn(move || {
                    let mut failed = Vec::new();
                    for i in (t..n).step_by(threads as usize) {
                        if let Err(e) = run(seed_of(i)) {
                            failed.push(format!("schedule {i}, {e}"));
                            if failed.len() >= 3 {
                                break;
                            }
                        }
                    }
                    failed
                })
            })
            .collect();
        let joined = handles.into_iter().map(|h| h.join().expect("sim thread"));
        joined.flatten().collect()
    })
}
