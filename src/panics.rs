//! Panics caught where a thread must outlive a bug in one piece of its work.
//!
//! A panic ends only the thread it happens on, and the process runs on
//! without it. For the threads that serve requests, that would leave their
//! clients waiting for replies for ever (`dispatch::unless_panicked`
//! answers instead). For the background threads it would drop their duty
//! without a sound: unpaid orders never expired, queued orders never
//! written to the order store, a node lease never renewed (numbers stop
//! when it runs out) nor released at a stop. So each turn of their loops
//! runs through [`survive`]: a panic is logged and the next turn comes as
//! after a store error. The stores stay the truth, and what a panic may
//! have left half-done is settled as after a fault: a sweep that panicked
//! has every goods reconciled (orders cancelled, units maybe not back); a
//! drain's write leaves its entries pending, to be claimed and written
//! again; a renewal that panicked is one that failed (numbers stop when
//! the grant runs out).

use std::any::Any;
use std::panic::{catch_unwind, AssertUnwindSafe};

/// Runs `work`, turning a panic into `None`, logged as `what` panicked and
/// `then` (what becomes of it).
pub fn caught<T>(what: &str, then: &str, work: impl FnOnce() -> T) -> Option<T> {
    // Unwind safety: what a panic leaves half-done is in the stores, which
    // settle it as for a crash; the thread's own state is rebuilt from them
    // or is a counter.
    catch_unwind(AssertUnwindSafe(work))
        .map_err(|panic| log::error!("{what} panicked ({}); {then}", message(&*panic)))
        .ok()
}

/// One turn of a background thread's loop: `None` if it panicked (logged),
/// and the thread goes on to its next turn.
pub fn survive<T>(what: &str, work: impl FnOnce() -> T) -> Option<T> {
    caught(what, "tried again at the next turn", work)
}

/// What a panic carried, if it was a message.
fn message(panic: &(dyn Any + Send)) -> &str {
    panic
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| panic.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("a panic")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panic_is_none_and_the_thread_goes_on() {
        assert_eq!(survive("a sum", || 2 + 2), Some(4));
        let word = String::from("a bug");
        assert_eq!(survive("a turn", || -> u8 { panic!("{word}") }), None);
        assert_eq!(survive("a turn", || -> u8 { panic!("a bug") }), None);
        assert_eq!(survive("again", || "alive"), Some("alive"));
    }
}
