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
//! Two servers must never share a node id, so the id is leased from the
//! order store (see `crate::lease`), and the lease also fences the numbers:
//! each grant says up to which millisecond this server may stamp numbers
//! (the limit the order store recorded for the id before the grant was
//! made), and a server that takes an id over starts above the limit its
//! last holder recorded. So even a holder that was paused past its lease,
//! whose id another server took, cannot make a number the new holder makes:
//! the new holder's stamps are all above every stamp the old one may use.
//! Without a grant (not leased yet, or the lease was lost) no number is
//! made, and BUYs are answered `busy`.
//!
//! Numbers keep increasing across restarts and node ids as long as the
//! clock does (a new holder starts above the recorded limit); the store's
//! unique key on the number is the backstop.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use crate::clock::now_ms;
use crate::store::OrderNo;

/// 2024-01-01T00:00:00Z in Unix milliseconds.
const EPOCH_MS: u64 = 1_704_067_200_000;
const SEQ_BITS: u32 = 12;
const NODE_BITS: u32 = 10;
const SEQ_MASK: u64 = (1 << SEQ_BITS) - 1;
/// Milliseconds a number can carry: 42 bits, about 139 years.
const MAX_STAMP_MS: u64 = (1 << (64 - SEQ_BITS - NODE_BITS)) - 1;
pub const MAX_NODE_ID: u16 = (1 << NODE_BITS) - 1;
/// No grant: no number may be made.
const NO_GRANT: u64 = 0;

/// The order-number generator of a sale, shared (cheap to clone) between
/// the workers that take numbers and the node lease that grants them.
#[derive(Clone)]
pub struct OrderNumbers(Arc<Numbers>);

struct Numbers {
    /// The grant: the largest number this server may make, so its node id
    /// and its last millisecond at once (one atomic word, so that a worker
    /// never sees one without the other); [`NO_GRANT`] when there is none.
    grant: AtomicU64,
    /// `ms << SEQ_BITS | seq` of the last number handed out, or the floor a
    /// grant set. More than 4096 numbers in one millisecond borrow from the
    /// next one, which keeps the generator lock-free and the numbers
    /// increasing.
    last: AtomicU64,
    /// When the grant runs out by this process's monotonic clock, in
    /// nanoseconds since `base` ([`NO_DEADLINE`]: only at its limit). The
    /// limit is a timestamp: a wall clock stepped back would let numbers be
    /// made under it long after the lease ended (unique still, since a
    /// successor starts above the limit, but from a server that no longer
    /// holds the id).
    deadline_ns: AtomicU64,
    base: Instant,
}

/// No monotonic deadline: a grant good until its limit.
const NO_DEADLINE: u64 = u64::MAX;

/// When a number was made, in Unix milliseconds (to the millisecond, or a
/// few later when a millisecond's numbers ran out).
/// An order number as a server of `node` would have made it at `unix_ms`
/// (for tests of what happens to old orders).
#[cfg(test)]
pub fn made_at_for_tests(unix_ms: u64, node: u16, seq: u64) -> u64 {
    stamp_of(unix_ms) << (SEQ_BITS + NODE_BITS) | u64::from(node) << SEQ_BITS | (seq & SEQ_MASK)
}

pub fn made_at_ms(order_no: u64) -> u64 {
    (order_no >> (SEQ_BITS + NODE_BITS)) + EPOCH_MS
}

/// The millisecond part of a number, since [`EPOCH_MS`], from Unix ms.
fn stamp_of(unix_ms: u64) -> u64 {
    unix_ms.saturating_sub(EPOCH_MS).min(MAX_STAMP_MS)
}

/// The largest number of `node` stamped at `until_ms` at the latest.
fn grant_of(node: u16, until_ms: u64) -> u64 {
    let node = u64::from(node.min(MAX_NODE_ID));
    stamp_of(until_ms) << (SEQ_BITS + NODE_BITS) | node << SEQ_BITS | SEQ_MASK
}

impl OrderNumbers {
    /// A generator with no grant: it makes no number until
    /// [`grant`](Self::grant).
    pub fn ungranted() -> Self {
        OrderNumbers(Arc::new(Numbers {
            grant: AtomicU64::new(NO_GRANT),
            last: AtomicU64::new(0),
            deadline_ns: AtomicU64::new(NO_DEADLINE),
            base: Instant::now(),
        }))
    }

    /// A generator of node `node` for good, leased from nobody: for tests
    /// and for whoever knows that `node` is theirs alone.
    pub fn fixed(node: u16) -> Self {
        let numbers = OrderNumbers::ungranted();
        numbers.grant(node, 0, u64::MAX);
        numbers
    }

    /// From now on, numbers of `node`, stamped above `floor_ms` (the limit
    /// an earlier holder of the id recorded) and up to `until_ms` (the limit
    /// the order store recorded for this holder), both Unix milliseconds.
    pub fn grant(&self, node: u16, floor_ms: u64, until_ms: u64) {
        self.grant_with(node, floor_ms, until_ms, NO_DEADLINE);
    }

    /// [`grant`](Self::grant), also ending at `deadline` by the monotonic
    /// clock (when the lease ends, timed from when it was asked for),
    /// whatever the wall clock says.
    pub fn grant_until(&self, node: u16, floor_ms: u64, until_ms: u64, deadline: Instant) {
        let ns = deadline.saturating_duration_since(self.0.base).as_nanos();
        self.grant_with(
            node,
            floor_ms,
            until_ms,
            u64::try_from(ns).unwrap_or(NO_DEADLINE - 1),
        );
    }

    fn grant_with(&self, node: u16, floor_ms: u64, until_ms: u64, deadline_ns: u64) {
        // The floor and the deadline first: a worker that sees the new
        // grant sees them too (the RMW on `last` reads its latest value;
        // the grant's Release orders the deadline before it).
        let floor = stamp_of(floor_ms) << SEQ_BITS | SEQ_MASK;
        self.0.last.fetch_max(floor, Ordering::AcqRel);
        self.0.deadline_ns.store(deadline_ns, Ordering::Relaxed);
        self.0
            .grant
            .store(grant_of(node, until_ms), Ordering::Release);
    }

    /// No more numbers until the next grant (the lease was lost).
    pub fn revoke(&self) {
        self.0.grant.store(NO_GRANT, Ordering::Release);
    }

    /// The node id granted, if any.
    pub fn node(&self) -> Option<u16> {
        let grant = self.0.grant.load(Ordering::Acquire);
        // The mask keeps it within 10 bits.
        (grant != NO_GRANT).then_some(((grant >> SEQ_BITS) & u64::from(MAX_NODE_ID)) as u16)
    }

    /// The millisecond (Unix) of the last number made, or of the floor of
    /// the last grant: no number of this generator is stamped later.
    pub fn last_ms(&self) -> u64 {
        (self.0.last.load(Ordering::Acquire) >> SEQ_BITS) + EPOCH_MS
    }

    /// The next number, or `None` without a grant or once the grant's last
    /// millisecond has passed (the lease was not renewed in time).
    pub fn next(&self) -> Option<OrderNo> {
        let grant = self.0.grant.load(Ordering::Acquire);
        if grant == NO_GRANT {
            return None;
        }
        let deadline_ns = self.0.deadline_ns.load(Ordering::Relaxed);
        if deadline_ns != NO_DEADLINE && self.0.base.elapsed().as_nanos() >= u128::from(deadline_ns)
        {
            return None;
        }
        let node = (grant >> SEQ_BITS) & u64::from(MAX_NODE_ID);
        let max_stamp = (grant >> (SEQ_BITS + NODE_BITS)) << SEQ_BITS | SEQ_MASK;
        let now = stamp_of(now_ms()) << SEQ_BITS;
        let prev = self
            .0
            .last
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |last| {
                let stamp = now.max(last + 1);
                (stamp <= max_stamp).then_some(stamp)
            })
            .ok()?;
        let stamp = now.max(prev + 1);
        let ms = stamp >> SEQ_BITS;
        let seq = stamp & SEQ_MASK;
        Some(ms << (SEQ_BITS + NODE_BITS) | node << SEQ_BITS | seq)
    }

    /// `n` numbers, or none at all.
    pub fn take(&self, n: usize) -> Option<Vec<OrderNo>> {
        (0..n).map(|_| self.next()).collect()
    }
}

/// A fixed node id ([`OrderNumbers::fixed`]).
impl From<u16> for OrderNumbers {
    fn from(node: u16) -> Self {
        OrderNumbers::fixed(node)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node_of(n: u64) -> u64 {
        (n >> SEQ_BITS) & u64::from(MAX_NODE_ID)
    }

    #[test]
    fn numbers_increase_and_carry_the_node() {
        let gen = OrderNumbers::fixed(5);
        let mut prev = 0;
        for _ in 0..20_000 {
            let n = gen.next().expect("a fixed node never runs out");
            assert!(n > prev);
            assert_eq!(node_of(n), 5);
            prev = n;
        }
    }

    #[test]
    fn a_number_tells_when_it_was_made() {
        let before = now_ms();
        let made = made_at_ms(OrderNumbers::fixed(1023).next().unwrap());
        assert!(made >= before && made < before + 1000, "{made} vs {before}");
    }

    /// A grant also ends at its monotonic deadline, however far its wall
    /// clock limit is (a clock stepped back keeps the limit ahead), and a
    /// renewal's later deadline takes over.
    #[test]
    fn a_grant_ends_at_its_monotonic_deadline_whatever_the_wall_clock() {
        let gen = OrderNumbers::ungranted();
        let far = now_ms() + 3_600_000;
        gen.grant_until(
            4,
            0,
            far,
            Instant::now() + std::time::Duration::from_millis(50),
        );
        std::thread::sleep(std::time::Duration::from_millis(60));
        assert_eq!(gen.next(), None);
        gen.grant_until(
            4,
            0,
            far,
            Instant::now() + std::time::Duration::from_secs(60),
        );
        assert!(gen.next().is_some());
        // Already past.
        gen.grant_until(
            4,
            0,
            far,
            Instant::now() - std::time::Duration::from_millis(1),
        );
        assert_eq!(gen.next(), None);
    }

    #[test]
    fn no_grant_no_number() {
        let gen = OrderNumbers::ungranted();
        assert_eq!((gen.next(), gen.node()), (None, None));
        assert_eq!(gen.take(3), None);
        gen.grant(7, 0, now_ms() + 60_000);
        assert_eq!(gen.node(), Some(7));
        assert_eq!(gen.take(3).map(|v| v.len()), Some(3));
        gen.revoke();
        assert_eq!((gen.next(), gen.node()), (None, None));
    }

    /// Numbers stop at the grant's last millisecond: a lease not renewed
    /// in time makes none.
    #[test]
    fn numbers_stop_at_the_granted_limit() {
        let gen = OrderNumbers::ungranted();
        let now = now_ms();
        gen.grant(3, 0, now - 10);
        assert_eq!(gen.next(), None, "the limit is in the past");
        let full = OrderNumbers::ungranted();
        full.grant(3, now + 5_000, now + 5_000);
        assert_eq!(full.next(), None, "the floor is the limit: no room");
        // One millisecond's worth at most: 4096 numbers.
        gen.grant(3, now + 4_999, now + 5_000);
        let numbers = gen.take(4096).expect("one millisecond of numbers");
        assert!(numbers.iter().all(|&n| made_at_ms(n) == now + 5_000));
        assert_eq!(gen.next(), None);
    }

    /// A server that takes a node id over starts above the limit the last
    /// holder recorded, whatever its own clock says: the two never make
    /// the same number, even if the old holder goes on to its limit.
    #[test]
    fn a_new_holder_starts_above_the_old_limit() {
        let now = now_ms();
        let old = OrderNumbers::ungranted();
        // The old holder's clock runs 10 s ahead of the new one's.
        let old_limit = now + 10_000;
        old.grant(9, 0, old_limit);
        let new = OrderNumbers::ungranted();
        new.grant(9, old_limit, now + 60_000);
        let mine = new.next().unwrap();
        assert_eq!(made_at_ms(mine), old_limit + 1, "borrowed from the future");
        let theirs = old.take(100).unwrap();
        assert!(theirs.iter().all(|&n| n < mine), "{theirs:?} vs {mine}");
    }

    /// A new grant under another node id keeps the numbers increasing.
    #[test]
    fn a_new_node_id_goes_on_increasing() {
        let gen = OrderNumbers::ungranted();
        gen.grant(1, 0, now_ms() + 60_000);
        let a = gen.next().unwrap();
        gen.revoke();
        gen.grant(2, 0, now_ms() + 60_000);
        let b = gen.next().unwrap();
        assert!(b > a);
        assert_eq!((node_of(a), node_of(b)), (1, 2));
        assert!(gen.last_ms() >= made_at_ms(b));
    }
}
