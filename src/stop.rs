//! How every thread role is told to stop.
//!
//! Roles that wait on something else than a channel (the acceptor and the
//! reactors on `poll`, the queue drain on Redis, the expiry sweep on a
//! timer) look at a [`Stop`] each turn; whoever triggers it also wakes the
//! ones that sleep in `poll`. Roles fed by a channel (the workers, the admin
//! worker, the order writer) stop when every sender has gone and the channel
//! is empty, so they finish the work already handed to them. The server
//! stops them in dependency order; see [`crate::Server::join`].

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// A stop signal shared by the threads of one stage.
#[derive(Clone, Default)]
pub struct Stop(Arc<AtomicBool>);

impl Stop {
    pub fn new() -> Stop {
        Stop::default()
    }

    /// Asks the threads that share this signal to finish. They see it at
    /// their next turn; wake the ones that may be asleep.
    pub fn trigger(&self) {
        self.0.store(true, Ordering::Release);
    }

    pub fn is_triggered(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }
}
