//! The open-loop send schedule.
//!
//! With `--rate R` the bench does not wait for replies before sending more:
//! request k of the whole run is due at `start + k / R`, whatever the server
//! did with the ones before it. Each engine thread owns every T-th slot of
//! that schedule (T threads), and a request's latency is measured from its
//! slot, not from when it finally left: a server that stalls cannot lower
//! the load it is offered nor hide the wait from the numbers (no coordinated
//! omission).

use std::time::{Duration, Instant};

/// One thread's share of the global schedule.
#[derive(Debug, Clone)]
pub struct Schedule {
    start: Instant,
    /// Nanoseconds between two of this thread's slots.
    interval_ns: f64,
    /// Nanoseconds from `start` to this thread's first slot.
    offset_ns: f64,
    next: u64,
}

impl Schedule {
    /// Thread `index` of `threads`, for a total rate of `rate` requests/s.
    pub fn new(start: Instant, rate: f64, index: usize, threads: usize) -> Schedule {
        let rate = rate.max(1e-9);
        Schedule {
            start,
            interval_ns: threads.max(1) as f64 * 1e9 / rate,
            offset_ns: index as f64 * 1e9 / rate,
            next: 0,
        }
    }

    /// When this thread's slot `n` is due. Computed from the start each
    /// time, so rounding never accumulates into drift.
    pub fn at(&self, n: u64) -> Instant {
        self.start + Duration::from_nanos((self.offset_ns + n as f64 * self.interval_ns) as u64)
    }

    /// When the next slot not yet taken is due.
    pub fn next_at(&self) -> Instant {
        self.at(self.next)
    }

    /// Takes the next slot if it is due at `now`, returning its instant.
    /// A caller that comes late gets every slot it missed, each with its own
    /// instant.
    pub fn take_due(&mut self, now: Instant) -> Option<Instant> {
        let at = self.next_at();
        if at <= now {
            self.next += 1;
            Some(at)
        } else {
            None
        }
    }

    /// Slots taken so far.
    pub fn taken(&self) -> u64 {
        self.next
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_evenly_spaced_at_the_rate() {
        let start = Instant::now();
        let s = Schedule::new(start, 1000.0, 0, 1);
        assert_eq!(s.at(0), start);
        assert_eq!(s.at(1) - s.at(0), Duration::from_millis(1));
        assert_eq!(s.at(1000) - start, Duration::from_secs(1));
    }

    #[test]
    fn threads_interleave_into_the_global_schedule() {
        let start = Instant::now();
        let threads = 4;
        let mut all: Vec<Instant> = (0..threads)
            .flat_map(|t| {
                let s = Schedule::new(start, 400.0, t, threads);
                (0..100).map(move |n| s.at(n))
            })
            .collect();
        all.sort();
        for (k, at) in all.iter().enumerate() {
            let want = start + Duration::from_nanos(k as u64 * 2_500_000);
            let diff = if *at > want { *at - want } else { want - *at };
            assert!(diff < Duration::from_micros(1), "slot {k}");
        }
    }

    #[test]
    fn a_late_caller_gets_every_missed_slot_with_its_own_time() {
        let start = Instant::now();
        let mut s = Schedule::new(start, 100.0, 0, 1);
        // Nothing is due before its time.
        assert_eq!(s.take_due(start), Some(start));
        assert_eq!(s.take_due(start + Duration::from_millis(5)), None);
        // Come back 100 ms late: the 10 slots missed are all due, each at its
        // scheduled instant, not at the time we finally looked.
        let late = start + Duration::from_millis(105);
        let mut taken = Vec::new();
        while let Some(at) = s.take_due(late) {
            taken.push(at);
        }
        assert_eq!(taken.len(), 10);
        for (i, at) in taken.iter().enumerate() {
            assert_eq!(*at, start + Duration::from_millis(10 * (i as u64 + 1)));
        }
        assert_eq!(s.taken(), 11);
        assert_eq!(s.next_at(), start + Duration::from_millis(110));
    }
}
