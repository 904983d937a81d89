//! The stock calls: reservations, releases, restocks, tokens, loads and
//! the epoch fence.

use std::thread;

use seckill_redis_scripts::{AddCall, Call, Mode, ReleaseCall, ReserveBuyer, ReserveCall};

use super::*;
use crate::store::MemoryStock;

#[test]
fn reserve_release_add_match_memory_stock() {
    let redis = open(AckMode::Durable);
    let memory = MemoryStock::new();
    for store in [&*redis as &dyn StockStore, &memory] {
        store.load(1, 2, &[(9, 900)]).unwrap();
        store.load(2, 3, &[(9, 900), (9, 901), (8, 800)]).unwrap();
    }
    let expires = now_ms() + 3_600_000;
    let late = expires + 1;
    type Call = Box<dyn Fn(&dyn StockStore) -> String>;
    let r = |g, rules: ReserveRules, b: Vec<Buyer>| -> Call {
        Box::new(move |s| format!("{:?}", s.reserve(g, &rules, &b)))
    };
    let calls: Vec<Call> = vec![
        r(1, rules(1), buyers(&[(1, 100), (9, 901), (1, 102)])),
        r(1, rules(1), buyers(&[(2, 200), (3, 300), (3, 301)])),
        r(1, rules(1), buyers(&[])),
        Box::new(|s| format!("{:?}", s.release(1, &[(1, 999), (2, 200), (9, 900)]))),
        r(1, rules(1), buyers(&[(4, 400), (2, 201), (5, 500)])),
        Box::new(|s| format!("{:?}", s.add(1, 1))),
        r(1, rules(1), buyers(&[(5, 501), (6, 600), (1, 103)])),
        // Limits, several orders a user.
        r(
            2,
            rules(2),
            buyers(&[(9, 902), (8, 801), (8, 802), (7, 700)]),
        ),
        Box::new(|s| format!("{:?}", s.release(2, &[(9, 901), (9, 901), (8, 800)]))),
        r(
            2,
            rules(3),
            buyers(&[(9, 903), (9, 904), (9, 905), (8, 803)]),
        ),
        Box::new(|s| format!("{:?}", s.add(2, 4))),
        // Tokens.
        Box::new(move |s| {
            let issued = [(1, 11), (2, 22), (3, 33), (6, 66), (7, 77)]
                .map(|(u, t)| s.issue_token(2, u, t, expires));
            format!("{issued:?}")
        }),
        r(2, tokened(1, late), vec![buy(1, 110, 11), buy(2, 220, 99)]),
        r(
            2,
            tokened(1, expires - 1),
            vec![
                buy(1, 111, 11),
                buy(2, 221, 11),
                buy(1, 112, 11),
                buy(3, 330, 33),
                buy(6, 660, 66),
                buy(6, 661, 66),
                buy(7, 770, 77),
            ],
        ),
        Box::new(|s| format!("{:?}", s.release(2, &[(1, 111), (6, 660)]))),
        r(
            2,
            tokened(2, late),
            vec![buy(1, 113, 11), buy(3, 331, 33), buy(6, 662, 66)],
        ),
        r(2, tokened(1, 0), vec![buy(2, 222, 22), buy(7, 771, 0)]),
        r(2, rules(1), vec![buy(2, 223, 0), buy(2, 224, 22)]),
        Box::new(|s| format!("{:?}", s.snapshot(1))),
        Box::new(|s| format!("{:?}", s.snapshot(2))),
    ];
    for (i, call) in calls.iter().enumerate() {
        assert_eq!(call(&*redis), call(&memory), "call {i}");
    }
    // The first batch, spelled out.
    let redis2 = open(AckMode::Durable);
    redis2.load(1, 2, &[(9, 900)]).unwrap();
    let batch = buyers(&[(1, 100), (9, 901), (1, 102), (2, 200), (3, 300)]);
    let got = redis2.reserve(1, &rules(1), &batch);
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
        }
    );
    assert_eq!(
        redis2.snapshot(1).unwrap(),
        Some((0, vec![(1, 100), (2, 200), (9, 900)]))
    );
}

/// Sixteen threads sell `stock` units to `users` buyers, each thread
/// trying every user `tries` times in an order of its own, so that the
/// same user races in many threads. Checks that the stock sold exactly,
/// that no user got more than `limit`, and that every other answer was
/// one of the user's own orders or sold out. Returns the units each
/// user got.
fn sell_in_sixteen_threads(
    limit: u8,
    stock_units: u32,
    users: u64,
    tries: u64,
) -> HashMap<UserId, usize> {
    let stock = open(AckMode::Durable);
    stock.load(7, stock_units, &[]).unwrap();
    let results: Vec<Vec<(Buyer, Reservation)>> = thread::scope(|s| {
        let workers: Vec<_> = (0..16u64)
            .map(|t| {
                let stock = &stock;
                s.spawn(move || {
                    let batch: Vec<Buyer> = (0..users * tries)
                        .map(|i| buy((i * 7 + t * 131) % users, (t << 32) | i, NO_TOKEN))
                        .collect();
                    let mut got = Vec::new();
                    for chunk in batch.chunks(50) {
                        let r = stock.reserve(7, &rules(limit), chunk).unwrap();
                        got.extend(chunk.iter().copied().zip(r.decisions));
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
    assert_eq!(reserved.len(), stock_units as usize);
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
        "a user got more than {limit}"
    );
    for (b, d) in results.iter().flatten() {
        let own = orders.get(&b.user).map_or(&[][..], Vec::as_slice);
        match *d {
            Reservation::Reserved => {}
            Reservation::Held(o) => assert!(own.contains(&o), "{b:?} got {o}"),
            // Sold out while the user could still buy more.
            Reservation::SoldOut => assert!(own.len() < usize::from(limit)),
            Reservation::Token(t) => panic!("{b:?}: token {t:?} without token rules"),
        }
    }
    got
}

#[test]
fn sixteen_threads_sell_the_stock_exactly_once() {
    let got = sell_in_sixteen_threads(1, 1000, 2500, 1);
    assert_eq!(got.len(), 1000, "a user reserved twice");
}

#[test]
fn sixteen_threads_keep_a_limit_of_three() {
    // 500 users could take 1500: the stock runs out first, with users
    // at the limit and retrying (how many depends on the threads'
    // interleaving; the limit itself is checked for every user above).
    let got = sell_in_sixteen_threads(3, 1000, 500, 4);
    assert!(
        got.values().any(|&n| n == 3),
        "nobody reached the limit: {got:?}"
    );
}

#[test]
fn order_numbers_keep_all_64_bits() {
    let stock = open(AckMode::Queued);
    let two53 = 1u64 << 53;
    let pairs = [
        (u64::MAX, u64::MAX),
        (two53 + 1, two53 + 1),
        (two53, u64::MAX - 1),
    ];
    stock.load(3, 10, &[]).unwrap();
    let r = stock.reserve(3, &rules(1), &buyers(&pairs)).unwrap();
    assert_eq!(r.decisions, vec![Reservation::Reserved; 3]);
    // Asking again with other numbers gives back the exact ones held.
    let again = [(u64::MAX, 1), (two53 + 1, 2), (two53, 3)];
    let r = stock.reserve(3, &rules(1), &buyers(&again)).unwrap();
    assert_eq!(
        r.decisions,
        pairs
            .iter()
            .map(|&(_, o)| Reservation::Held(o))
            .collect::<Vec<_>>()
    );
    let mut sorted = pairs.to_vec();
    sorted.sort_unstable();
    assert_eq!(stock.snapshot(3).unwrap(), Some((7, sorted)));
    // 2^53 and 2^53 + 1 are the same double: only the exact pair goes.
    assert_eq!(stock.release(3, &[(two53 + 1, two53)]).unwrap(), 7);
    assert_eq!(stock.release(3, &[(u64::MAX, u64::MAX - 1)]).unwrap(), 7);
    let queued = stock.queued(3).unwrap();
    let got: Vec<_> = queued.iter().map(|o| (o.user_id, o.order_no)).collect();
    assert_eq!(got, pairs.to_vec());
    assert_eq!(stock.release(3, &[(two53 + 1, two53 + 1)]).unwrap(), 8);
    // A holder loaded with big numbers comes back exact too, and so
    // does the first of several.
    let loaded = [(u64::MAX - 5, two53 + 1), (u64::MAX - 5, two53)];
    stock.load(3, 0, &loaded).unwrap();
    let r = stock.reserve(3, &rules(2), &buyers(&[(u64::MAX - 5, 0)]));
    assert_eq!(r.unwrap().decisions, vec![Reservation::Held(two53 + 1)]);
    assert_eq!(stock.release(3, &[(u64::MAX - 5, two53)]).unwrap(), 1);
    assert_eq!(
        stock.snapshot(3).unwrap(),
        Some((1, vec![(u64::MAX - 5, two53 + 1)]))
    );
    // Tokens too: 2^53 + 1 is not 2^53, nor is one user another.
    let expires = now_ms() + 60_000;
    stock.issue_token(3, two53 + 1, two53 + 1, expires).unwrap();
    stock.issue_token(3, u64::MAX, u64::MAX, expires).unwrap();
    stock.add(3, 5).unwrap();
    let r = stock.reserve(
        3,
        &tokened(1, now_ms()),
        &[
            buy(two53 + 1, 1, two53),
            buy(two53, 2, two53 + 1),
            buy(u64::MAX - 1, 3, u64::MAX),
            buy(u64::MAX, u64::MAX, u64::MAX),
            buy(u64::MAX, 4, u64::MAX),
        ],
    );
    assert_eq!(
        r.unwrap().decisions,
        [
            INVALID,
            INVALID,
            INVALID,
            Reservation::Reserved,
            Reservation::Held(u64::MAX)
        ]
    );
}

#[test]
fn release_is_exact_and_repeatable() {
    let stock = open(AckMode::Durable);
    stock.load(1, 1, &[]).unwrap();
    stock.reserve(1, &rules(1), &buyers(&[(1, 100)])).unwrap();
    assert_eq!(stock.release(1, &[(1, 999), (2, 100)]).unwrap(), 0);
    assert_eq!(stock.release(1, &[(1, 100)]).unwrap(), 1);
    assert_eq!(stock.release(1, &[(1, 100)]).unwrap(), 1);
    assert_eq!(stock.release(1, &[]).unwrap(), 1);
    assert_eq!(stock.snapshot(1).unwrap(), Some((1, vec![])));
    let r = stock.reserve(1, &rules(1), &buyers(&[(2, 200)])).unwrap();
    assert_eq!(r.decisions, vec![Reservation::Reserved]);
}

#[test]
fn add_restocks_and_saturates() {
    let stock = open(AckMode::Durable);
    stock.load(1, 0, &[]).unwrap();
    let r = stock.reserve(1, &rules(1), &buyers(&[(1, 100)])).unwrap();
    assert_eq!(r.decisions, vec![Reservation::SoldOut]);
    assert_eq!(stock.add(1, 2).unwrap(), 2);
    let r = stock.reserve(1, &rules(1), &buyers(&[(1, 100)])).unwrap();
    assert_eq!(r.decisions, vec![Reservation::Reserved]);
    assert_eq!(r.remaining, 1);
    assert_eq!(stock.add(1, u32::MAX).unwrap(), u32::MAX);
    assert_eq!(stock.snapshot(1).unwrap(), Some((u32::MAX, vec![(1, 100)])));
}

#[test]
fn release_gives_back_exactly_the_order_named() {
    let stock = open(AckMode::Durable);
    stock.load(1, 5, &[]).unwrap();
    let batch = buyers(&[(1, 101), (1, 102), (1, 103), (1, 104)]);
    let r = stock.reserve(1, &rules(3), &batch).unwrap();
    assert_eq!(
        r.decisions,
        [
            Reservation::Reserved,
            Reservation::Reserved,
            Reservation::Reserved,
            Reservation::Held(101),
        ]
    );
    let field = |stock: &TestStock| -> Option<String> {
        let mut hget = ::redis::cmd("HGET");
        hget.arg(stock.keys(1).buyers).arg(1);
        stock.call("hget", |con| hget.query(con)).unwrap()
    };
    assert_eq!(field(&stock).as_deref(), Some("101 102 103"));
    // The middle one, twice in one call and once more: one unit.
    assert_eq!(stock.release(1, &[(1, 102), (1, 102)]).unwrap(), 3);
    assert_eq!(stock.release(1, &[(1, 102), (2, 101)]).unwrap(), 3);
    assert_eq!(field(&stock).as_deref(), Some("101 103"));
    // A number that is a part of a held one is not held.
    assert_eq!(
        stock
            .release(1, &[(1, 10), (1, 1), (1, 3), (1, 0)])
            .unwrap(),
        3
    );
    // Room again under the limit: the new order goes last.
    let r = stock.reserve(1, &rules(3), &buyers(&[(1, 105), (1, 106)]));
    assert_eq!(
        r.unwrap().decisions,
        [Reservation::Reserved, Reservation::Held(101)]
    );
    assert_eq!(field(&stock).as_deref(), Some("101 103 105"));
    assert_eq!(
        stock.release(1, &[(1, 101), (1, 103), (1, 105)]).unwrap(),
        5
    );
    assert_eq!(field(&stock), None, "an empty list stays behind");
    assert_eq!(stock.release(1, &[(1, 101)]).unwrap(), 5);
    assert_eq!(stock.snapshot(1).unwrap(), Some((5, vec![])));
}

#[test]
fn tokens_are_checked_in_the_documented_order() {
    const NOW: u64 = 1_000_000;
    let stock = open(AckMode::Durable);
    // Tokens are not fenced: they can be issued before the first load.
    let expires = NOW + 1_000;
    for (user, token) in [(1, 11), (2, 22), (3, 33), (4, 44)] {
        stock.issue_token_at(1, user, token, expires, NOW).unwrap();
    }
    stock.load(1, 2, &[]).unwrap();
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
    let mut hget = ::redis::cmd("HGET");
    hget.arg(stock.keys(1).tokens).arg(11);
    let entry: Option<String> = stock.call("hget", |con| hget.query(con)).unwrap();
    assert_eq!(entry, Some(format!("1 {expires} 100")));
    // A retry with the same token gets the order back, even expired;
    // the new order number in it changes nothing.
    assert_eq!(r(&[buy(1, 101, 11)], expires + 5), [Reservation::Held(100)]);
    // Sold out does not spend the token: a restock sells to it.
    assert_eq!(
        r(&[buy(2, 200, 22), buy(3, 300, 33)], NOW),
        [Reservation::Reserved, Reservation::SoldOut]
    );
    stock.add(1, 1).unwrap();
    assert_eq!(r(&[buy(3, 301, 33)], NOW), [Reservation::Reserved]);
    // Released (cancelled), the order is gone and the token is used.
    assert_eq!(stock.release(1, &[(1, 100)]).unwrap(), 1);
    assert_eq!(r(&[buy(1, 102, 11)], NOW), [USED]);
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
    stock.load(1, 5, &[(2, 200)]).unwrap();
    assert_eq!(
        r(&[buy(5, 500, 44), buy(4, 402, 44), buy(1, 103, 11)], NOW),
        [INVALID, Reservation::Reserved, USED]
    );
}

#[test]
fn tokens_are_forgotten_twice_their_lifetime_after_issue() {
    const NOW: u64 = 1_000_000;
    let stock = open(AckMode::Durable);
    stock.load(1, 10, &[]).unwrap();
    // Lives 1 s from NOW: expired from NOW + 1 s, forgotten from NOW + 2 s.
    stock.issue_token_at(1, 1, 11, NOW + 1_000, NOW).unwrap();
    let r = |token, now_ms| {
        stock
            .reserve(1, &tokened(1, now_ms), &[buy(1, 100, token)])
            .unwrap()
            .decisions[0]
    };
    // The keys expire when their last token may be forgotten: here
    // 2 s after the issue, on the caller's clock.
    let keys = stock.keys(1);
    for key in [&keys.tokens, &keys.token_expiry] {
        let ttl: i64 = stock
            .call("pttl", |con| ::redis::cmd("PTTL").arg(key).query(con))
            .unwrap();
        assert!((1_900..=2_000).contains(&ttl), "{key}: {ttl} ms");
    }
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
    let many = PRUNE_BATCH as u64 + 5;
    for token in 1_000..1_000 + many {
        stock.issue_token_at(1, 3, token, NOW, NOW - 1).unwrap();
    }
    let left = |stock: &TestStock| -> (u64, u64) {
        let keys = stock.keys(1);
        let mut pipe = ::redis::pipe();
        pipe.cmd("HLEN")
            .arg(&keys.tokens)
            .cmd("ZCARD")
            .arg(&keys.token_expiry);
        stock.call("count tokens", |con| pipe.query(con)).unwrap()
    };
    assert_eq!(left(&stock), (2 + many, 2 + many));
    stock
        .issue_token_at(1, 3, 1, NOW + 10_000, NOW + 1)
        .unwrap();
    // 22, 23 and 1, plus the 5 not yet pruned.
    assert_eq!(left(&stock), (8, 8));
    stock
        .issue_token_at(1, 3, 2, NOW + 10_000, NOW + 1)
        .unwrap();
    assert_eq!(left(&stock), (4, 4));
    // A token issued already past its expiry goes at the next issue.
    stock.issue_token_at(1, 4, 44, NOW, NOW + 5).unwrap();
    assert_eq!(r(44, NOW + 5), INVALID, "44 is user 4's");
    assert_eq!(left(&stock), (5, 5));
    stock
        .issue_token_at(1, 4, 45, NOW + 10_000, NOW + 5)
        .unwrap();
    assert_eq!(left(&stock), (5, 5));
}

/// Runs a call with EVAL, as any client may send it from the shared
/// crate's typed calls (the bench does the same), not through the store.
fn eval<C: Call>(stock: &TestStock, goods: GoodsId, call: &C) -> Value {
    let keys = stock.keys(goods);
    let mut cmd = ::redis::cmd("EVAL");
    cmd.arg(C::SCRIPT).arg(C::KEYS.len());
    for &key in C::KEYS {
        cmd.arg(keys.get(key));
    }
    call.write_args(&mut |arg| {
        cmd.arg(arg);
    });
    stock.call("eval", |con| cmd.query(con)).unwrap()
}

/// A script that reaches Redis after the goods was loaded again (it was
/// sent before the load and Redis ran it late) does nothing. A late
/// release is not fenced; it names an order the load did not bring back
/// (a release is only for orders that are not live), so it finds
/// nothing to do.
#[test]
fn a_script_from_before_a_load_does_nothing() {
    let stock = open(AckMode::Queued);
    stock.load(1, 5, &[(8, 800)]).unwrap();
    let stale = stock.epoch(1).unwrap();
    stock.load(1, 3, &[(9, 900)]).unwrap();
    assert_eq!(stock.epoch(1).unwrap(), stale + 1);
    let reserve = |epoch: u64, user: u64, order_no: u64| {
        let buyers = [ReserveBuyer {
            user,
            order_no,
            token: NO_TOKEN,
        }];
        let call = ReserveCall {
            mode: Mode::Queued,
            goods: 1,
            now_ms: 1,
            epoch,
            per_user_limit: 1,
            token_required: false,
            pay_by_ms: 2,
            buyers: &buyers,
        };
        eval(&stock, 1, &call)
    };
    let release = ReleaseCall {
        orders: &[(8, 800)],
    };
    let add = AddCall {
        amount: 10,
        epoch: stale,
    };
    assert_eq!(
        (
            reserve(stale, 7, 700),
            eval(&stock, 1, &release),
            eval(&stock, 1, &add)
        ),
        (Value::Nil, Value::Int(3), Value::Nil)
    );
    // The reloaded goods is as the load left it, queue included.
    assert_eq!(stock.snapshot(1).unwrap(), Some((3, vec![(9, 900)])));
    assert!(stock.queued(1).unwrap().is_empty());
    // Run by itself (as the bench does) under the current epoch, the
    // script acts, and answers in the layout its comment gives.
    let current = stock.epoch(1).unwrap();
    let direct = reserve(current, 6, 600);
    assert_eq!(direct, Value::Array(vec![Value::Int(2), Value::Int(1)]));
    let queued = stock.queued(1).unwrap();
    assert_eq!(
        queued
            .iter()
            .map(|o| (o.user_id, o.order_no, o.created_ms, o.pay_by_ms))
            .collect::<Vec<_>>(),
        [(6, 600, 1, 2)]
    );
    // The store's own calls carry the current epoch and act.
    assert_eq!(
        stock
            .reserve(1, &rules(1), &buyers(&[(7, 700)]))
            .unwrap()
            .decisions,
        [Reservation::Reserved]
    );
    // A store that never loaded the goods does not act on it either:
    // it reloads it first.
    let url = std::env::var("SECKILL_TEST_REDIS")
        .unwrap_or_else(|_| "redis://127.0.0.1:6379".to_string());
    let other = RedisStock::open(&url, &stock.prefix, AckMode::Queued).unwrap();
    assert!(matches!(
        other.reserve(1, &rules(1), &buyers(&[(8, 800)])),
        Err(StoreError::NotLoaded(1))
    ));
}

#[test]
fn a_lost_goods_is_not_loaded_and_nothing_is_taken() {
    let stock = open(AckMode::Queued);
    stock.load(5, 3, &[(1, 100)]).unwrap();
    stock.forget(5).unwrap();
    assert_eq!(stock.keys_of(5), 0);
    let not_loaded = |e: StoreError| matches!(e, StoreError::NotLoaded(5));
    assert!(not_loaded(
        stock
            .reserve(5, &rules(1), &buyers(&[(2, 200)]))
            .unwrap_err()
    ));
    assert!(not_loaded(stock.release(5, &[(1, 100)]).unwrap_err()));
    assert!(not_loaded(stock.add(5, 10).unwrap_err()));
    assert_eq!(stock.snapshot(5).unwrap(), None);
    assert_eq!(stock.keys_of(5), 0, "a call on a lost goods wrote");

    // Only the counter lost: the buyers stay as they were.
    stock.load(5, 3, &[(1, 100)]).unwrap();
    let keys = stock.keys(5);
    let mut del = ::redis::cmd("DEL");
    del.arg(&keys.stock);
    stock.call("del", |con| del.query::<()>(con)).unwrap();
    assert!(not_loaded(
        stock
            .reserve(5, &rules(1), &buyers(&[(2, 200)]))
            .unwrap_err()
    ));
    assert!(not_loaded(stock.release(5, &[(1, 100)]).unwrap_err()));
    let mut hgetall = ::redis::cmd("HGETALL");
    hgetall.arg(&keys.buyers);
    let held: HashMap<String, String> = stock.call("hgetall", |con| hgetall.query(con)).unwrap();
    assert_eq!(held, HashMap::from([("1".to_string(), "100".to_string())]));
    assert!(stock.queued(5).unwrap().is_empty());
    // Loading it again sells again.
    stock.load(5, 1, &[(1, 100)]).unwrap();
    let r = stock.reserve(5, &rules(1), &buyers(&[(2, 200)])).unwrap();
    assert_eq!(r.decisions, vec![Reservation::Reserved]);
}

#[test]
fn load_replaces_a_hundred_thousand_holders() {
    let stock = open(AckMode::Queued);
    let holders: Vec<(UserId, OrderNo)> = (0..100_000u64).map(|u| (u, u64::MAX - u)).collect();
    stock.load(1, 7, &holders).unwrap();
    assert_eq!(stock.snapshot(1).unwrap(), Some((7, holders.clone())));
    let r = stock
        .reserve(1, &rules(1), &buyers(&[(99_999, 1), (100_000, 2)]))
        .unwrap();
    assert_eq!(
        r.decisions,
        vec![Reservation::Held(u64::MAX - 99_999), Reservation::Reserved]
    );
    assert_eq!(r.remaining, 6);
    // A second load replaces everything, the reservation included.
    stock.load(1, 1, &holders[..1]).unwrap();
    assert_eq!(stock.snapshot(1).unwrap(), Some((1, holders[..1].to_vec())));
    // The queue is not the load's to drop.
    assert_eq!(stock.queued(1).unwrap().len(), 1);
}
