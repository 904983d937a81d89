//! Order numbers: unique, increasing, made without asking a store.
//!
//! A number is known before its order is written (the client is told it as
//! soon as the write commits), so it cannot come from the database. The
//! layout is the Snowflake one:
//!
//! ```text
//!  63      22 21     12 11       0
//!  +---------+---------+----------+
//!  | ms since| node id | sequence |
//!  | 2024-01 | 10 bits | 12 bits  |
//!  +---------+---------+----------+
//! ```
//!
//! Numbers keep increasing across restarts as long as the clock does; the
//! store's unique key on the number is the backstop.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::clock::now_ms;

/// 2024-01-01T00:00:00Z in Unix milliseconds.
const EPOCH_MS: u64 = 1_704_067_200_000;
const SEQ_BITS: u32 = 12;
const NODE_BITS: u32 = 10;
pub const MAX_NODE_ID: u16 = (1 << NODE_BITS) - 1;

pub struct OrderNumbers {
    node: u64,
    /// `ms << SEQ_BITS | seq` of the last number handed out. More than 4096
    /// numbers in one millisecond borrow from the next one, which keeps the
    /// generator lock-free and the numbers increasing.
    last: AtomicU64,
}

/// When a number was made, in Unix milliseconds (to the millisecond, or a
/// few later when a millisecond's numbers ran out).
pub fn made_at_ms(order_no: u64) -> u64 {
    (order_no >> (SEQ_BITS + NODE_BITS)) + EPOCH_MS
}

impl OrderNumbers {
    pub fn new(node: u16) -> Self {
        assert!(node <= MAX_NODE_ID, "node id is checked by the config");
        OrderNumbers {
            node: u64::from(node),
            last: AtomicU64::new(0),
        }
    }

    pub fn next(&self) -> u64 {
        let now = now_ms().saturating_sub(EPOCH_MS) << SEQ_BITS;
        let prev = self
            .last
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |last| {
                Some(now.max(last + 1))
            })
            .unwrap_or_else(|last| last);
        let stamp = now.max(prev + 1);
        let ms = stamp >> SEQ_BITS;
        let seq = stamp & ((1 << SEQ_BITS) - 1);
        ms << (SEQ_BITS + NODE_BITS) | self.node << SEQ_BITS | seq
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_increase_and_carry_the_node() {
        let gen = OrderNumbers::new(5);
        let mut prev = 0;
        for _ in 0..20_000 {
            let n = gen.next();
            assert!(n > prev);
            assert_eq!((n >> SEQ_BITS) & u64::from(MAX_NODE_ID), 5);
            prev = n;
        }
    }

    #[test]
    fn a_number_tells_when_it_was_made() {
        let before = now_ms();
        let made = made_at_ms(OrderNumbers::new(1023).next());
        assert!(made >= before && made < before + 1000, "{made} vs {before}");
    }
}
