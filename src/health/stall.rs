//! The stall detector: rows are waiting for a target, the target answers, and yet
//! nothing has been acknowledged for `--stall-after`. A target that is down is already
//! reported as down; this catches the quiet failures a health check that only asks "is
//! the process up, does the server answer" misses (an uploader wedged on a request, a
//! server that answers every check but never stores, a loop that resends forever).
//!
//! Pure: fed with the time and the target's figures at each status turn.

/// What changed at this observation (for the one log line each way).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// Stalled from this time (the start of the quiet period).
    Began(i64),
    Ended,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct StallWatch {
    /// Since when rows have been waiting without any being acknowledged.
    quiet_since: Option<i64>,
    acked_total: u64,
    /// Rows were waiting at the last observation.
    waiting: bool,
    stalled: bool,
}

impl StallWatch {
    /// `last_answer`: when the target last answered any request. Returns the change, if
    /// any; [`StallWatch::stalled_since`] says the current state.
    pub fn observe(
        &mut self,
        now: i64,
        after_secs: i64,
        acked_total: u64,
        backlog_rows: u64,
        last_answer: Option<i64>,
    ) -> Option<Change> {
        if !self.waiting || acked_total != self.acked_total || self.quiet_since.is_none() {
            // Progress, nothing was waiting, or the first look: the quiet period starts
            // now at the earliest.
            self.quiet_since = Some(now);
            self.acked_total = acked_total;
        }
        self.waiting = backlog_rows > 0;
        let since = self.quiet_since.unwrap_or(now);
        // Answered at least once while the rows waited: the server is there, so the
        // waiting is not (only) an outage. Once true it stays true until progress
        // resets the period, so the state cannot flap with each request's fate.
        let answers = last_answer.is_some_and(|a| a >= since);
        let stalled = backlog_rows > 0 && now - since >= after_secs && answers;
        let change = match (self.stalled, stalled) {
            (false, true) => Some(Change::Began(since)),
            (true, false) => Some(Change::Ended),
            _ => None,
        };
        self.stalled = stalled;
        change
    }

    pub fn stalled_since(&self) -> Option<i64> {
        self.quiet_since.filter(|_| self.stalled)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const N: i64 = 600;

    #[test]
    fn rows_waiting_and_nothing_acknowledged_while_the_server_answers_is_a_stall() {
        let mut w = StallWatch::default();
        assert_eq!(w.observe(1000, N, 50, 10, Some(1000)), None);
        assert_eq!(w.observe(1300, N, 50, 400, Some(1295)), None);
        assert_eq!(w.observe(1599, N, 50, 900, Some(1590)), None, "not yet N");
        assert_eq!(
            w.observe(1600, N, 50, 900, Some(1590)),
            Some(Change::Began(1000))
        );
        assert_eq!(w.stalled_since(), Some(1000));
        assert_eq!(w.observe(1700, N, 50, 1000, Some(1690)), None);
        // One acknowledgement ends it and restarts the clock.
        assert_eq!(w.observe(1705, N, 51, 999, Some(1705)), Some(Change::Ended));
        assert_eq!(w.stalled_since(), None);
        assert_eq!(w.observe(2200, N, 51, 999, Some(2200)), None);
        assert_eq!(
            w.observe(2305, N, 51, 999, Some(2300)),
            Some(Change::Began(1705))
        );
    }

    #[test]
    fn a_server_that_never_answered_while_rows_waited_is_down_not_stalled() {
        let mut w = StallWatch::default();
        w.observe(1000, N, 0, 10, Some(990));
        assert_eq!(w.observe(2000, N, 0, 500, Some(990)), None);
        assert_eq!(w.observe(2000, N, 0, 500, None), None);
        // It answers again but still stores nothing: that is a stall, counted from the
        // start of the quiet period.
        assert_eq!(
            w.observe(2010, N, 0, 500, Some(2005)),
            Some(Change::Began(1000))
        );
        // Until something is acknowledged, whatever the next requests meet.
        assert_eq!(w.observe(2700, N, 0, 500, Some(2005)), None);
        assert_eq!(w.stalled_since(), Some(1000));
        assert_eq!(w.observe(2705, N, 1, 499, Some(2005)), Some(Change::Ended));
    }

    #[test]
    fn an_empty_backlog_or_steady_acknowledgements_never_stall() {
        let mut w = StallWatch::default();
        for i in 0..100 {
            // Idle box: nothing waiting.
            assert_eq!(w.observe(1000 + i * 60, N, 7, 0, Some(1000 + i * 60)), None);
        }
        let mut w = StallWatch::default();
        for i in 0..100 {
            // Busy box: always a backlog, but it moves.
            assert_eq!(
                w.observe(1000 + i * 60, N, i as u64, 300, Some(1000 + i * 60)),
                None
            );
        }
        // A backlog that just appeared after an idle spell starts its clock then.
        let mut w = StallWatch::default();
        w.observe(1000, N, 7, 0, Some(1000));
        w.observe(5000, N, 7, 3, Some(5000));
        assert_eq!(w.observe(5599, N, 7, 3, Some(5599)), None);
        assert_eq!(
            w.observe(5600, N, 7, 3, Some(5600)),
            Some(Change::Began(5000))
        );
    }
}
