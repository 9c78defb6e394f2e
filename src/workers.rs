//! Threads for blocking work (file reads, sled, HTTP, AMI) that cost nothing when idle.
//!
//! smol's own pool (the `blocking` crate) keeps its idle threads waking every 500 ms,
//! for ever: two of them alone were 5 of an idle qlship's 12 wake-ups a second. Here the
//! first [`KEEP`] threads sleep until there is work; extra threads, started whenever
//! every thread is busy (so a stuck AMI or a slow server never holds up the journal),
//! leave after [`LINGER`] without work.

use std::collections::VecDeque;
use std::sync::{Condvar, Mutex};
use std::time::Duration;

type Job = Box<dyn FnOnce() + Send + 'static>;

/// Threads that stay, asleep, when there is nothing to do.
const KEEP: usize = 2;
/// How long an extra thread waits for work before leaving (short in unit tests, so
/// that one can watch a burst's threads leave).
const LINGER: Duration = if cfg!(test) {
    Duration::from_millis(300)
} else {
    Duration::from_secs(10)
};

#[derive(Default)]
struct State {
    queue: VecDeque<Job>,
    /// Threads waiting for work.
    idle: usize,
    threads: usize,
}

struct Pool {
    state: Mutex<State>,
    work: Condvar,
}

static POOL: Pool = Pool {
    state: Mutex::new(State {
        queue: VecDeque::new(),
        idle: 0,
        threads: 0,
    }),
    work: Condvar::new(),
};

/// Runs `f` on a worker thread and waits for its result without blocking the executor.
pub async fn run<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = smol::channel::bounded(1);
    submit(Box::new(move || {
        let _ = tx.try_send(f());
    }));
    rx.recv().await.expect("a worker thread died running a job")
}

fn submit(job: Job) {
    let mut st = POOL.state.lock().expect("worker pool lock");
    st.queue.push_back(job);
    // Enough sleepers for every queued job: wake one. Otherwise a new thread, so that
    // no job waits behind a long one.
    if st.idle >= st.queue.len() {
        POOL.work.notify_one();
        return;
    }
    st.threads += 1;
    drop(st);
    let spawned = std::thread::Builder::new()
        .name("qlship-worker".into())
        .spawn(worker);
    if spawned.is_err() {
        // Out of threads: the job waits for a busy one to finish instead.
        POOL.state.lock().expect("worker pool lock").threads -= 1;
    }
}

fn worker() {
    let mut st = POOL.state.lock().expect("worker pool lock");
    loop {
        if let Some(job) = st.queue.pop_front() {
            drop(st);
            job();
            st = POOL.state.lock().expect("worker pool lock");
            continue;
        }
        st.idle += 1;
        if st.threads > KEEP {
            let (guard, waited) = POOL
                .work
                .wait_timeout(st, LINGER)
                .expect("worker pool lock");
            st = guard;
            st.idle -= 1;
            // Only while there are still more than KEEP: the extra threads of a burst
            // all time out together, and each leaving on its own first count took the
            // pool down to no thread at all, so every job of an idle daemon (the status
            // file every 20 s) started a thread and the thread left again.
            if waited.timed_out() && st.queue.is_empty() && st.threads > KEEP {
                st.threads -= 1;
                return;
            }
        } else {
            st = POOL.work.wait(st).expect("worker pool lock");
            st.idle -= 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_long_job_does_not_hold_up_the_next_one() {
        let started = std::time::Instant::now();
        let (slow, fast) = smol::future::block_on(async {
            let slow = run(|| {
                std::thread::sleep(Duration::from_millis(500));
                1
            });
            let fast = async {
                smol::Timer::after(Duration::from_millis(20)).await;
                let t = std::time::Instant::now();
                run(|| 2).await;
                t.elapsed()
            };
            smol::future::zip(slow, fast).await
        });
        assert_eq!(slow, 1);
        assert!(fast < Duration::from_millis(200), "waited {fast:?}");
        assert!(started.elapsed() >= Duration::from_millis(500));
    }

    #[test]
    fn after_a_burst_the_kept_threads_stay() {
        // Four jobs at once: four threads, of which all but KEEP leave after LINGER.
        let job = || run(|| std::thread::sleep(Duration::from_millis(100)));
        smol::future::block_on(smol::future::zip(
            smol::future::zip(job(), job()),
            smol::future::zip(job(), job()),
        ));
        assert!(POOL.state.lock().unwrap().threads >= 4);
        std::thread::sleep(LINGER * 4);
        let st = POOL.state.lock().unwrap();
        // Other tests may be running jobs in the same pool meanwhile: never fewer.
        assert!(st.threads >= KEEP, "{} threads left", st.threads);
    }

    #[test]
    fn many_jobs_all_complete() {
        let sum: u64 = smol::future::block_on(async {
            let mut total = 0;
            for chunk in (0..200u64).collect::<Vec<_>>().chunks(20) {
                let jobs = chunk.iter().map(|&i| run(move || i));
                for j in jobs {
                    total += j.await;
                }
            }
            total
        });
        assert_eq!(sum, (0..200).sum());
    }
}
