//! What each scenario sends.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Instant;

use crate::engine::{Next, Op, Workload};
use crate::users::{Rng, UserPicker};

/// N BUY attempts of one goods by U users ([`UserPicker`]). Attempt `n`
/// proposes order number `n + 1` (used by the redis-direct baseline only).
#[derive(Debug)]
pub struct FlashCrowd {
    goods: u64,
    picker: UserPicker,
    attempts: u64,
    next: AtomicU64,
}

impl FlashCrowd {
    pub fn new(goods: u64, picker: UserPicker, attempts: u64) -> FlashCrowd {
        FlashCrowd {
            goods,
            picker,
            attempts,
            next: AtomicU64::new(0),
        }
    }
}

impl Workload for FlashCrowd {
    fn next(&self, _rng: &mut Rng) -> Option<Op> {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        (n < self.attempts).then(|| Op::Buy {
            user: self.picker.user(n),
            goods: self.goods,
            order_no: n + 1,
        })
    }
}

/// BUYs of one goods, each by a user never seen before: every one can
/// succeed, as long as the stock lasts.
#[derive(Debug)]
pub struct Sustained {
    goods: u64,
    first_user: u64,
    next: AtomicU64,
}

impl Sustained {
    pub fn new(goods: u64, first_user: u64) -> Sustained {
        Sustained {
            goods,
            first_user,
            next: AtomicU64::new(0),
        }
    }
}

impl Workload for Sustained {
    fn next(&self, _rng: &mut Rng) -> Option<Op> {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        Some(Op::Buy {
            user: self.first_user + n,
            goods: self.goods,
            order_no: n + 1,
        })
    }
}

/// A front page's reads: LIST_GOODS with probability `list_share`, else
/// GET_GOODS of a goods picked at random.
#[derive(Debug)]
pub struct Browse {
    goods: Vec<u64>,
    list_share: f64,
}

impl Browse {
    pub fn new(goods: Vec<u64>, list_share: f64) -> Browse {
        Browse {
            goods,
            list_share: list_share.clamp(0.0, 1.0),
        }
    }
}

impl Workload for Browse {
    fn next(&self, rng: &mut Rng) -> Option<Op> {
        if self.goods.is_empty() || rng.unit() < self.list_share {
            return Some(Op::ListGoods);
        }
        let goods = self.goods[rng.below(self.goods.len() as u64) as usize];
        Some(Op::GetGoods { goods })
    }
}

/// One BUY of one goods by each of a list of users, in a seeded shuffle of
/// the list.
#[derive(Debug)]
pub struct Buyers {
    goods: u64,
    users: Vec<u64>,
    next: AtomicU64,
}

impl Buyers {
    pub fn new(goods: u64, mut users: Vec<u64>, seed: u64) -> Buyers {
        let mut rng = Rng::new(seed);
        for i in (1..users.len()).rev() {
            let j = rng.below(i as u64 + 1) as usize;
            users.swap(i, j);
        }
        Buyers {
            goods,
            users,
            next: AtomicU64::new(0),
        }
    }
}

impl Workload for Buyers {
    fn next(&self, _rng: &mut Rng) -> Option<Op> {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let &user = self.users.get(usize::try_from(n).ok()?)?;
        Some(Op::Buy {
            user,
            goods: self.goods,
            order_no: n + 1,
        })
    }
}

/// Requests with instants of their own (a PAY at the time its buyer
/// chose), each sent once due, in the order of their instants. Their
/// latency counts from that instant. Closed loop only: the open loop's
/// schedule would send them at its own times.
#[derive(Debug)]
pub struct Timed {
    /// Sorted by instant.
    ops: Vec<(Instant, Op)>,
    next: AtomicUsize,
}

impl Timed {
    pub fn new(mut ops: Vec<(Instant, Op)>) -> Timed {
        ops.sort_by_key(|&(at, _)| at);
        Timed {
            ops,
            next: AtomicUsize::new(0),
        }
    }

    pub fn len(&self) -> usize {
        self.ops.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }
}

impl Workload for Timed {
    /// The next request, due or not.
    fn next(&self, _rng: &mut Rng) -> Option<Op> {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        self.ops.get(n).map(|&(_, op)| op)
    }

    fn next_at(&self, _rng: &mut Rng, now: Instant) -> Next {
        // Taken only once due: the threads race for it with a CAS.
        let mut n = self.next.load(Ordering::Acquire);
        loop {
            let Some(&(at, op)) = self.ops.get(n) else {
                return Next::Done;
            };
            if at > now {
                return Next::Wait(at);
            }
            match self
                .next
                .compare_exchange(n, n + 1, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => return Next::Send { op, due: Some(at) },
                Err(taken) => n = taken,
            }
        }
    }
}

/// An ordinary shopper's mix on one goods: GET_GOODS, LIST_GOODS and BUY,
/// each BUY by a user never seen before (so none is refused as a repeat or
/// rate limited).
#[derive(Debug)]
pub struct Shopper {
    goods: u64,
    first_user: u64,
    next_user: AtomicU64,
}

impl Shopper {
    /// Shares of GET_GOODS and LIST_GOODS, in percent; the rest are BUYs.
    const GET_PCT: u64 = 45;
    const LIST_PCT: u64 = 10;

    pub fn new(goods: u64, first_user: u64) -> Shopper {
        Shopper {
            goods,
            first_user,
            next_user: AtomicU64::new(0),
        }
    }
}

impl Workload for Shopper {
    fn next(&self, rng: &mut Rng) -> Option<Op> {
        let roll = rng.below(100);
        Some(if roll < Self::GET_PCT {
            Op::GetGoods { goods: self.goods }
        } else if roll < Self::GET_PCT + Self::LIST_PCT {
            Op::ListGoods
        } else {
            let n = self.next_user.fetch_add(1, Ordering::Relaxed);
            Op::Buy {
                user: self.first_user + n,
                goods: self.goods,
                order_no: n + 1,
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    #[test]
    fn a_flash_crowd_makes_exactly_its_attempts() {
        let w = FlashCrowd::new(5, UserPicker::new(10, 1, 1), 25);
        let mut rng = Rng::new(0);
        let ops: Vec<Op> = std::iter::from_fn(|| w.next(&mut rng)).collect();
        assert_eq!(ops.len(), 25);
        assert!(w.next(&mut rng).is_none());
        let users: HashSet<u64> = ops
            .iter()
            .map(|op| match op {
                Op::Buy { user, goods: 5, .. } => *user,
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(users.len(), 10);
        let orders: HashSet<u64> = ops
            .iter()
            .map(|op| match op {
                Op::Buy { order_no, .. } => *order_no,
                _ => 0,
            })
            .collect();
        assert_eq!(orders.len(), 25, "proposed order numbers are unique");
    }

    #[test]
    fn sustained_users_are_all_new() {
        let w = Sustained::new(2, 100);
        let mut rng = Rng::new(0);
        let users: HashSet<u64> = (0..1000)
            .map(|_| match w.next(&mut rng) {
                Some(Op::Buy { user, .. }) => user,
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(users.len(), 1000);
        assert!(users.contains(&100) && users.contains(&1099));
    }

    #[test]
    fn buyers_each_buy_once_in_a_seeded_order() {
        let users: Vec<u64> = (100..150).collect();
        let w = Buyers::new(3, users.clone(), 9);
        let mut rng = Rng::new(0);
        let bought: Vec<u64> = std::iter::from_fn(|| w.next(&mut rng))
            .map(|op| match op {
                Op::Buy { user, goods: 3, .. } => user,
                other => panic!("{other:?}"),
            })
            .collect();
        assert_ne!(bought, users, "shuffled");
        let mut sorted = bought.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, users);
        let again = Buyers::new(3, users, 9);
        let same: Vec<Option<Op>> = (0..50).map(|_| again.next(&mut rng)).collect();
        assert!(same.iter().zip(&bought).all(|(op, &u)| matches!(
            op,
            Some(Op::Buy { user, .. }) if *user == u
        )));
    }

    #[test]
    fn timed_requests_go_only_once_due_and_in_order() {
        use std::time::Duration;

        let t0 = Instant::now();
        let ms = |n| t0 + Duration::from_millis(n);
        let pay = |order_no| Op::Pay { user: 1, order_no };
        let w = Timed::new(vec![(ms(20), pay(2)), (ms(0), pay(1)), (ms(20), pay(3))]);
        let mut rng = Rng::new(0);
        assert_eq!(
            w.next_at(&mut rng, ms(5)),
            Next::Send {
                op: pay(1),
                due: Some(ms(0))
            }
        );
        assert_eq!(w.next_at(&mut rng, ms(5)), Next::Wait(ms(20)));
        let due: Vec<Next> = (0..2).map(|_| w.next_at(&mut rng, ms(30))).collect();
        assert!(due.iter().all(
            |n| matches!(n, Next::Send { op: Op::Pay { .. }, due: Some(at) } if *at == ms(20))
        ));
        assert_eq!(w.next_at(&mut rng, ms(30)), Next::Done);
    }

    #[test]
    fn browse_mixes_lists_and_gets() {
        let w = Browse::new(vec![3, 4], 0.25);
        let mut rng = Rng::new(7);
        let ops: Vec<Op> = (0..4000).filter_map(|_| w.next(&mut rng)).collect();
        let lists = ops.iter().filter(|op| **op == Op::ListGoods).count();
        assert!((800..1200).contains(&lists), "{lists} lists of 4000");
        assert!(ops.contains(&Op::GetGoods { goods: 3 }));
        assert!(ops.contains(&Op::GetGoods { goods: 4 }));
    }

    #[test]
    fn a_shopper_mixes_reads_and_buys_by_new_users() {
        let w = Shopper::new(8, 500);
        let mut rng = Rng::new(3);
        let ops: Vec<Op> = (0..4000).filter_map(|_| w.next(&mut rng)).collect();
        let count = |f: fn(&Op) -> bool| ops.iter().filter(|op| f(op)).count();
        let gets = count(|op| *op == Op::GetGoods { goods: 8 });
        let lists = count(|op| *op == Op::ListGoods);
        assert!((1600..2000).contains(&gets), "{gets} gets of 4000");
        assert!((300..500).contains(&lists), "{lists} lists of 4000");
        let buyers: Vec<u64> = ops
            .iter()
            .filter_map(|op| match op {
                Op::Buy { user, goods: 8, .. } => Some(*user),
                _ => None,
            })
            .collect();
        assert_eq!(buyers.len(), 4000 - gets - lists);
        assert_eq!(buyers, (500..500 + buyers.len() as u64).collect::<Vec<_>>());
    }
}
