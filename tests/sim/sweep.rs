//! A seeded sweep over both cores: schedule `i` of `n` runs on thread `i % threads`;
//! each thread stops after its third failure.

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
