//! Exponential backoff with full jitter, capped, with a floor so it never spins.

use std::time::Duration;

#[derive(Debug)]
pub struct Backoff {
    min: Duration,
    max: Duration,
    failures: u32,
    rng: u64,
}

impl Backoff {
    pub fn new(min: Duration, max: Duration, seed: u64) -> Self {
        Self {
            min,
            max: max.max(min),
            failures: 0,
            rng: seed | 1,
        }
    }

    pub fn reset(&mut self) {
        self.failures = 0;
    }

    /// The delay before the next try: uniform in [min, min(max, min·2^failures)].
    pub fn next_delay(&mut self) -> Duration {
        let ceiling = self
            .min
            .saturating_mul(1u32 << self.failures.min(20))
            .min(self.max);
        self.failures = self.failures.saturating_add(1);
        let span = ceiling.saturating_sub(self.min).as_millis() as u64;
        let jitter = if span == 0 {
            0
        } else {
            self.next_random() % (span + 1)
        };
        self.min + Duration::from_millis(jitter)
    }

    fn next_random(&mut self) -> u64 {
        // xorshift64*: plenty for spreading retries of many boxes apart.
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        self.rng.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_within_bounds_and_resets() {
        let min = Duration::from_secs(1);
        let max = Duration::from_secs(60);
        let mut b = Backoff::new(min, max, 42);
        let mut ceiling = min;
        for _ in 0..30 {
            let d = b.next_delay();
            assert!(d >= min && d <= ceiling.min(max), "{d:?}");
            ceiling = ceiling.saturating_mul(2);
        }
        b.reset();
        assert_eq!(b.next_delay(), min);
    }

    #[test]
    fn is_jittered() {
        let mut b = Backoff::new(Duration::from_secs(1), Duration::from_secs(60), 7);
        for _ in 0..8 {
            b.next_delay();
        }
        let samples: std::collections::HashSet<_> = (0..20).map(|_| b.next_delay()).collect();
        assert!(samples.len() > 10);
    }
}
