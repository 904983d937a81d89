//! The [`StockStore`] suite, run against the memory store and against the
//! real Redis (`SECKILL_TEST_REDIS`, default redis://127.0.0.1:6379, each
//! run under a key prefix of its own).

use std::collections::HashMap;
use std::thread;

use seckill_proto::NO_TOKEN;

use super::stock_retries::{
    a_request_id_gets_its_first_order_back_and_only_its_user,
    restocks_in_either_order_add_each_once,
    sale_controls_refuse_whole_batches_and_only_a_newer_version_counts,
    the_same_call_run_twice_sells_once,
};
use crate::config::AckMode;
use crate::store::fixtures::{buy, buyers, rules_at, tokened, LoadNext};
use crate::store::memory::PRUNE_BATCH;
use crate::store::redis::tests::open as open_redis;
use crate::store::redis::tests::open_cluster as open_redis_cluster;
use crate::store::{
    Buyer, GoodsId, MemoryStock, OrderNo, Reservation, ReserveRules, Reserved, StockStore,
    StoreError, TokenRefusal, Unmade, UserId,
};

/// A stock store under test: the trait, and what the suite must reach
/// beyond it.
pub(in crate::store) trait Subject: StockStore {
    /// [`StockStore::issue_token`] at a given time (the tests' clock).
    fn issue_token_at(
        &self,
        goods: GoodsId,
        user: UserId,
        token: u64,
        expires_ms: u64,
        now_ms: u64,
    ) -> Result<(), StoreError>;

    /// The tokens the store keeps for a goods, and their marks of when they
    /// may be forgotten: what pruning shrinks.
    fn tokens_kept(&self, goods: GoodsId) -> (usize, usize);
}

/// Runs each test of the suite against one backend: `$open` makes a fresh,
/// empty store (anything that derefs to it; dropping it cleans up).
macro_rules! suite {
    ($backend:ident, $open:expr) => {
        mod $backend {
            use super::*;

            #[test]
            fn reserve_never_goes_below_zero_and_remembers_holders() {
                super::reserve_never_goes_below_zero_and_remembers_holders(&*$open);
            }

            #[test]
            fn release_is_exact_and_repeatable() {
                super::release_is_exact_and_repeatable(&*$open);
            }

            #[test]
            fn a_user_holds_up_to_the_limit_and_gets_the_first_back() {
                super::a_user_holds_up_to_the_limit_and_gets_the_first_back(&*$open);
            }

            #[test]
            fn the_same_call_run_twice_sells_once() {
                super::the_same_call_run_twice_sells_once(&*$open);
            }

            #[test]
            fn a_request_id_gets_its_first_order_back_and_only_its_user() {
                super::a_request_id_gets_its_first_order_back_and_only_its_user(&*$open);
            }

            #[test]
            fn restocks_in_either_order_add_each_once() {
                super::restocks_in_either_order_add_each_once(&*$open);
            }

            #[test]
            fn add_restocks_and_saturates() {
                super::add_restocks_and_saturates(&*$open);
            }

            #[test]
            fn sale_controls_refuse_whole_batches_and_only_a_newer_version_counts() {
                super::sale_controls_refuse_whole_batches_and_only_a_newer_version_counts(&*$open);
            }

            #[test]
            fn tokens_are_checked_in_the_documented_order() {
                super::tokens_are_checked_in_the_documented_order(&*$open);
            }

            #[test]
            fn tokens_are_forgotten_twice_their_lifetime_after_issue() {
                super::tokens_are_forgotten_twice_their_lifetime_after_issue(&*$open);
            }

            #[test]
            fn sixteen_threads_sell_the_stock_exactly_once() {
                let got = sell_in_threads(
                    &*$open,
                    Crowd {
                        threads: 16,
                        chunk: 50,
                        limit: 1,
                        stock: 1000,
                        users: 2500,
                        tries: 1,
                    },
                );
                assert_eq!(got.len(), 1000, "a user reserved twice");
            }

            #[test]
            fn sixteen_threads_keep_a_limit_of_three() {
                // 350 users could take 1050: the stock runs out first, with
                // users at the limit and retrying. At most two each would
                // sell only 700, so some user reaches the limit however the
                // threads interleave (with 500 users, as once, a fast store
                // could sell every user two and none three); the limit
                // itself is checked for every user.
                let got = sell_in_threads(
                    &*$open,
                    Crowd {
                        threads: 16,
                        chunk: 50,
                        limit: 3,
                        stock: 1000,
                        users: 350,
                        tries: 4,
                    },
                );
                assert!(
                    got.values().any(|&n| n == 3),
                    "nobody reached the limit: {got:?}"
                );
            }

            #[test]
            fn four_threads_never_give_a_user_more_than_the_limit() {
                let got = sell_in_threads(
                    &*$open,
                    Crowd {
                        threads: 4,
                        chunk: 20,
                        limit: 3,
                        stock: 300,
                        users: 150,
                        tries: 4,
                    },
                );
                assert_eq!(got.values().sum::<usize>(), 300);
            }
        }
    };
}

suite!(memory, Box::new(MemoryStock::new()));
suite!(redis, open_redis(AckMode::Durable));
suite!(redis_cluster, open_redis_cluster(AckMode::Durable));

/// The suite's clock: the tests that need time pass it in.
pub(super) const NOW: u64 = 1_000_000;

pub(super) fn rules(per_user_limit: u8) -> ReserveRules {
    rules_at(per_user_limit, NOW)
}

const INVALID: Reservation = Reservation::Token(TokenRefusal::Invalid);
const EXPIRED: Reservation = Reservation::Token(TokenRefusal::Expired);
const USED: Reservation = Reservation::Token(TokenRefusal::Used);

fn reserve_never_goes_below_zero_and_remembers_holders(stock: &impl Subject) {
    stock.load_next(1, 2, &[(9, 900)]).unwrap();
    let batch = buyers(&[(1, 100), (9, 901), (1, 102), (2, 200), (3, 300)]);
    let got = stock.reserve(1, &rules(1), &batch);
    assert_eq!(
        got.unwrap(),
        Reserved {
            decisions: vec![
                Reservation::Reserved,
                Reservation::Held(900),
                Reservation::Held(100),
                Reservation::Reserved,
                Reservation::SoldOut,
            ],
            remaining: 0,
            epoch: 1,
        }
    );
    assert_eq!(
        stock.snapshot(1).unwrap(),
        Some((0, vec![(1, 100), (2, 200), (9, 900)]))
    );
}

fn release_is_exact_and_repeatable(stock: &impl Subject) {
    stock.load_next(1, 1, &[]).unwrap();
    stock.reserve(1, &rules(1), &buyers(&[(1, 100)])).unwrap();
    // A release with the wrong order number or user returns nothing.
    assert_eq!(stock.release(1, &[(1, 999), (2, 100)]).unwrap(), 0);
    assert_eq!(stock.release(1, &[(1, 100)]).unwrap(), 1);
    assert_eq!(stock.release(1, &[(1, 100)]).unwrap(), 1);
    assert_eq!(stock.release(1, &[]).unwrap(), 1);
    // Repeated within one call too.
    stock.reserve(1, &rules(1), &buyers(&[(1, 101)])).unwrap();
    assert_eq!(stock.release(1, &[(1, 101), (1, 101)]).unwrap(), 1);
    assert_eq!(stock.snapshot(1).unwrap(), Some((1, vec![])));
    let r = stock.reserve(1, &rules(1), &buyers(&[(2, 200)])).unwrap();
    assert_eq!(r.decisions, vec![Reservation::Reserved]);
}

fn a_user_holds_up_to_the_limit_and_gets_the_first_back(stock: &impl Subject) {
    stock.load_next(1, 10, &[(1, 100), (1, 100)]).unwrap();
    let batch = buyers(&[(1, 101), (1, 102), (1, 103), (2, 200)]);
    let r = stock.reserve(1, &rules(3), &batch).unwrap();
    assert_eq!(
        r.decisions,
        [
            Reservation::Reserved,
            Reservation::Reserved,
            Reservation::Held(100),
            Reservation::Reserved,
        ]
    );
    assert_eq!(r.remaining, 7);
    let held = vec![(1, 100), (1, 101), (1, 102), (2, 200)];
    assert_eq!(stock.snapshot(1).unwrap(), Some((7, held)));
    // One user's, sorted; none for a user or a goods the store does not
    // know.
    assert_eq!(stock.held(1, 1).unwrap(), [100, 101, 102]);
    assert_eq!(stock.held(1, 2).unwrap(), [200]);
    assert_eq!(stock.held(1, 3).unwrap(), [] as [OrderNo; 0]);
    assert_eq!(stock.held(2, 1).unwrap(), [] as [OrderNo; 0]);
    // Releasing one of several frees one place: the others stay.
    assert_eq!(stock.release(1, &[(1, 101)]).unwrap(), 8);
    assert_eq!(stock.release(1, &[(1, 101)]).unwrap(), 8);
    let r = stock.reserve(1, &rules(3), &buyers(&[(1, 104), (1, 105)]));
    assert_eq!(
        r.unwrap().decisions,
        [Reservation::Reserved, Reservation::Held(100)]
    );
    // The first goes: the next oldest is the one given back.
    assert_eq!(stock.release(1, &[(1, 100)]).unwrap(), 8);
    assert_eq!(stock.release(1, &[(1, 100)]).unwrap(), 8);
    let r = stock.reserve(1, &rules(2), &buyers(&[(1, 106)]));
    assert_eq!(r.unwrap().decisions, [Reservation::Held(102)]);
    let held = vec![(1, 102), (1, 104), (2, 200)];
    assert_eq!(stock.snapshot(1).unwrap(), Some((8, held)));
    // A limit of 0 (which the proto forbids) is taken as 1.
    let r = stock.reserve(1, &rules(0), &buyers(&[(3, 300), (3, 301)]));
    assert_eq!(
        r.unwrap().decisions,
        [Reservation::Reserved, Reservation::Held(300)]
    );
}

fn add_restocks_and_saturates(stock: &impl Subject) {
    stock.load_next(1, 0, &[]).unwrap();
    let r = stock.reserve(1, &rules(1), &buyers(&[(1, 100)])).unwrap();
    assert_eq!(r.decisions, vec![Reservation::SoldOut]);
    assert_eq!(stock.add(1, 2, 2).unwrap(), 2);
    // The same restock again (a script sent twice): nothing more.
    assert_eq!(stock.add(1, 2, 2).unwrap(), 2);
    let r = stock.reserve(1, &rules(1), &buyers(&[(1, 100)])).unwrap();
    assert_eq!(r.decisions, vec![Reservation::Reserved]);
    assert_eq!(r.remaining, 1);
    // To the largest total: what is left is that total less the one sold
    // (never past u32::MAX; the scripts saturate besides).
    assert_eq!(stock.add(1, u32::MAX, u32::MAX).unwrap(), u32::MAX - 1);
    assert_eq!(
        stock.snapshot(1).unwrap(),
        Some((u32::MAX - 1, vec![(1, 100)]))
    );
}

fn tokens_are_checked_in_the_documented_order(stock: &impl Subject) {
    stock.load_next(1, 2, &[]).unwrap();
    let expires = NOW + 1_000;
    for (user, token) in [(1, 11), (2, 22), (3, 33), (4, 44)] {
        stock.issue_token_at(1, user, token, expires, NOW).unwrap();
    }
    let r = |buyers: &[Buyer], now_ms| {
        stock
            .reserve(1, &tokened(1, now_ms), buyers)
            .unwrap()
            .decisions
    };
    // Unknown, another user's, none at all.
    assert_eq!(
        r(
            &[buy(1, 100, 99), buy(1, 100, 22), buy(1, 100, NO_TOKEN)],
            NOW
        ),
        [INVALID; 3]
    );
    // Expired at its expiry, not before.
    assert_eq!(r(&[buy(1, 100, 11)], expires), [EXPIRED]);
    assert_eq!(r(&[buy(1, 100, 11)], expires - 1), [Reservation::Reserved]);
    // A retry with the same token gets the order back, even expired;
    // a new order number in it changes nothing.
    assert_eq!(r(&[buy(1, 101, 11)], expires + 5), [Reservation::Held(100)]);
    // Sold out does not spend the token: a restock sells to it.
    assert_eq!(
        r(&[buy(2, 200, 22), buy(3, 300, 33)], NOW),
        [Reservation::Reserved, Reservation::SoldOut]
    );
    stock.add(1, 1, 3).unwrap();
    assert_eq!(r(&[buy(3, 301, 33)], NOW), [Reservation::Reserved]);
    // Released (cancelled), the order is gone and the token is used.
    assert_eq!(stock.release(1, &[(1, 100)]).unwrap(), 1);
    assert_eq!(r(&[buy(1, 102, 11)], NOW), [USED]);
    // Unless that order was never made (its write failed): forgotten, the
    // token buys again; forgetting another order, or another user's,
    // leaves it as it is.
    let unmade = |user, order_no| Unmade {
        user,
        order_no,
        request_id: None,
        token: 33,
    };
    stock
        .forget_unmade(1, &[unmade(3, 999), unmade(4, 301)])
        .unwrap();
    assert_eq!(stock.release(1, &[(3, 301)]).unwrap(), 2);
    assert_eq!(r(&[buy(3, 302, 33)], NOW), [USED]);
    stock.forget_unmade(1, &[unmade(3, 301)]).unwrap();
    // Its expiry stands.
    assert_eq!(r(&[buy(3, 302, 33)], expires), [EXPIRED]);
    assert_eq!(r(&[buy(3, 302, 33)], NOW), [Reservation::Reserved]);
    // The limit comes before the token: a holder with a bad one gets
    // their order back.
    assert_eq!(r(&[buy(2, 201, 99)], NOW), [Reservation::Held(200)]);
    // A repeated issue does not make a used token new again.
    stock.issue_token_at(1, 1, 11, expires, NOW).unwrap();
    assert_eq!(r(&[buy(1, 102, 11)], NOW), [USED]);
    // Token 0 is never valid, even if issued.
    stock.issue_token_at(1, 4, NO_TOKEN, expires, NOW).unwrap();
    assert_eq!(r(&[buy(4, 400, NO_TOKEN)], NOW), [INVALID]);
    // Without token_required, tokens are not looked at.
    let free = stock.reserve(1, &rules(1), &[buy(4, 401, 99)]).unwrap();
    assert_eq!(free.decisions, [Reservation::Reserved]);
    // A load keeps the tokens: 44 is still good, 11 still used.
    stock.load_next(1, 5, &[(2, 200)]).unwrap();
    assert_eq!(
        r(&[buy(5, 500, 44), buy(4, 402, 44), buy(1, 103, 11)], NOW),
        [INVALID, Reservation::Reserved, USED]
    );
}

fn tokens_are_forgotten_twice_their_lifetime_after_issue(stock: &impl Subject) {
    stock.load_next(1, 10, &[]).unwrap();
    // Lives 1 s from NOW: expired from NOW + 1 s, forgotten from NOW + 2 s.
    stock.issue_token_at(1, 1, 11, NOW + 1_000, NOW).unwrap();
    let r = |token, now_ms| {
        stock
            .reserve(1, &tokened(1, now_ms), &[buy(1, 100, token)])
            .unwrap()
            .decisions[0]
    };
    // Pruning happens on issue, only of what is due.
    stock
        .issue_token_at(1, 2, 22, NOW + 10_000, NOW + 1_999)
        .unwrap();
    assert_eq!(r(11, NOW + 1_999), EXPIRED);
    stock
        .issue_token_at(1, 2, 23, NOW + 10_000, NOW + 2_000)
        .unwrap();
    assert_eq!(r(11, NOW + 2_000), INVALID);
    // At most PRUNE_BATCH per issue. Each of these lives 1 ms, so is
    // forgotten from NOW + 1.
    let many = PRUNE_BATCH + 5;
    for token in 1_000..1_000 + many as u64 {
        stock.issue_token_at(1, 3, token, NOW, NOW - 1).unwrap();
    }
    assert_eq!(stock.tokens_kept(1), (2 + many, 2 + many));
    stock
        .issue_token_at(1, 3, 1, NOW + 10_000, NOW + 1)
        .unwrap();
    // 22, 23 and 1, plus the 5 not yet pruned.
    assert_eq!(stock.tokens_kept(1), (8, 8));
    stock
        .issue_token_at(1, 3, 2, NOW + 10_000, NOW + 1)
        .unwrap();
    assert_eq!(stock.tokens_kept(1), (4, 4));
    // A token issued already past its expiry goes at the next issue.
    stock.issue_token_at(1, 4, 44, NOW, NOW + 5).unwrap();
    assert_eq!(r(44, NOW + 5), INVALID, "44 is user 4's");
    assert_eq!(stock.tokens_kept(1), (5, 5));
    stock
        .issue_token_at(1, 4, 45, NOW + 10_000, NOW + 5)
        .unwrap();
    assert_eq!(stock.tokens_kept(1), (5, 5));
}

/// `threads` threads racing for `stock` units of one goods: each tries
/// every one of `users` users `tries` times, in an order of its own,
/// `chunk` buyers a call, under a limit of `limit` orders a user.
struct Crowd {
    threads: u64,
    chunk: usize,
    limit: u8,
    stock: u32,
    users: u64,
    tries: u64,
}

/// Runs a [`Crowd`] so that the same user races in many threads. Checks that
/// the stock sold exactly, that no user got more than the limit, that the
/// store holds exactly the orders reserved, and that every other answer was
/// one of the user's own orders or sold out. Returns the units each user
/// got.
fn sell_in_threads(stock: &impl Subject, crowd: Crowd) -> HashMap<UserId, usize> {
    let Crowd {
        threads,
        chunk,
        limit,
        users,
        tries,
        ..
    } = crowd;
    stock.load_next(7, crowd.stock, &[]).unwrap();
    let results: Vec<Vec<(Buyer, Reservation)>> = thread::scope(|s| {
        let workers: Vec<_> = (0..threads)
            .map(|t| {
                s.spawn(move || {
                    let batch: Vec<Buyer> = (0..users * tries)
                        .map(|i| buy((i * 7 + t * 131) % users, (t << 32) | i, NO_TOKEN))
                        .collect();
                    let mut got = Vec::new();
                    for part in batch.chunks(chunk) {
                        let r = stock.reserve(7, &rules(limit), part).unwrap();
                        got.extend(part.iter().copied().zip(r.decisions));
                    }
                    got
                })
            })
            .collect();
        workers.into_iter().map(|w| w.join().unwrap()).collect()
    });
    let reserved: Vec<(UserId, OrderNo)> = results
        .iter()
        .flatten()
        .filter(|(_, d)| *d == Reservation::Reserved)
        .map(|(b, _)| (b.user, b.order_no))
        .collect();
    assert_eq!(reserved.len(), crowd.stock as usize);
    let mut expected = reserved.clone();
    expected.sort_unstable();
    assert_eq!(stock.snapshot(7).unwrap(), Some((0, expected)));
    let mut orders: HashMap<UserId, Vec<OrderNo>> = HashMap::new();
    for &(u, o) in &reserved {
        orders.entry(u).or_default().push(o);
    }
    let got: HashMap<UserId, usize> = orders.iter().map(|(&u, o)| (u, o.len())).collect();
    assert!(
        got.values().all(|&n| n <= usize::from(limit)),
        "a user got more than {limit}: {got:?}"
    );
    for (b, d) in results.iter().flatten() {
        let own = orders.get(&b.user).map_or(&[][..], Vec::as_slice);
        match *d {
            Reservation::Reserved => {}
            Reservation::Held(o) => assert!(own.contains(&o), "{b:?} got {o}"),
            // Sold out while the user could still buy more.
            Reservation::SoldOut => assert!(own.len() < usize::from(limit)),
            Reservation::Token(t) => panic!("{b:?}: token {t:?} without token rules"),
            Reservation::Closed(c) => panic!("{b:?}: {c:?} without sale controls"),
            Reservation::Replayed(_) | Reservation::RequestIdTaken => {
                panic!("{b:?}: {d:?} without request ids")
            }
            Reservation::Busy | Reservation::InDoubt => panic!("{b:?}: {d:?} with one bucket"),
        }
    }
    got
}
