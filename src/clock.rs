//! Wall-clock time in Unix milliseconds: the unit of sale windows, order
//! times and order numbers everywhere in the server.

use std::time::{SystemTime, UNIX_EPOCH};

/// Now, in milliseconds since the Unix epoch (0 if the clock is set before
/// it, which only a broken clock is).
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
