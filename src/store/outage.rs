//! Logging a store outage once, not once per request.
//!
//! During a flash sale a dead store fails thousands of requests a second;
//! logging each would bury the one line an operator needs. A store keeps an
//! [`Outage`] per backend and reports every call's result to it: the first
//! failure is logged as the start of an outage, the first success after it
//! as the recovery, and everything in between only counts.

use std::fmt::Display;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

pub struct Outage {
    what: &'static str,
    down: AtomicBool,
    failures: AtomicU64,
}

impl Outage {
    pub const fn new(what: &'static str) -> Self {
        Outage {
            what,
            down: AtomicBool::new(false),
            failures: AtomicU64::new(0),
        }
    }

    /// Records a failed call; logs only if the store was up until now.
    pub fn failed(&self, error: &dyn Display) {
        self.failures.fetch_add(1, Ordering::Relaxed);
        if !self.down.swap(true, Ordering::AcqRel) {
            log::error!("{} unavailable: {error}", self.what);
        }
    }

    /// Records a successful call; logs only if the store was down.
    pub fn ok(&self) {
        if self.down.load(Ordering::Acquire) && self.down.swap(false, Ordering::AcqRel) {
            let failed = self.failures.swap(0, Ordering::Relaxed);
            log::info!("{} is back after {failed} failed calls", self.what);
        }
    }

    /// Passes a result through, recording it.
    #[cfg(test)]
    pub fn track<T, E: Display>(&self, result: Result<T, E>) -> Result<T, E> {
        match &result {
            Ok(_) => self.ok(),
            Err(e) => self.failed(e),
        }
        result
    }

    #[cfg(test)]
    pub fn is_down(&self) -> bool {
        self.down.load(Ordering::Acquire)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_outage_is_entered_and_left_once() {
        let o = Outage::new("test store");
        assert!(!o.is_down());
        assert!(o.track::<(), _>(Err("refused")).is_err());
        assert!(o.track::<(), _>(Err("refused")).is_err());
        assert!(o.is_down());
        assert_eq!(o.failures.load(Ordering::Relaxed), 2);
        assert_eq!(o.track::<_, &str>(Ok(1)), Ok(1));
        assert!(!o.is_down());
        assert_eq!(o.failures.load(Ordering::Relaxed), 0);
    }
}
