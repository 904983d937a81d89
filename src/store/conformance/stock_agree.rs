//! The two stock stores side by side: Redis and the memory store give the
//! same answer to every call of one long sequence, so that the memory store
//! (the embedded default, and the model the suite in `stock` is written
//! against) and the Lua scripts cannot drift apart.

use std::ops::Deref;

use seckill_proto::NO_TOKEN;

use crate::clock::now_ms;
use crate::config::AckMode;
use crate::store::fixtures::{buy, buyers, rules_at, tokened, LoadNext};
use crate::store::redis::tests::open as open_redis;
use crate::store::{Buyer, MemoryStock, ReserveRules, StockStore};

/// `n` BUYs by users 1..=n/2, each user twice in a row, each BUY with a
/// request id of its own but every fifth with the id of the BUY before it
/// (a retry where that was the same user's, else another user's id).
fn crowd(n: u64) -> Vec<Buyer> {
    (0..n)
        .map(|i| {
            let rid = if i % 5 == 4 { i - 1 } else { i };
            Buyer {
                request_id: seckill_proto::RequestId::new(u128::from(rid) + 1),
                ..buy(i / 2 + 1, 10_000 + i, NO_TOKEN)
            }
        })
        .collect()
}

/// The two backends give the same answer to every call of one long
/// sequence (reservations, releases, restocks, limits, tokens, snapshots),
/// on the real clock.
#[test]
fn reserve_release_add_match_memory_stock() {
    let redis = open_redis(AckMode::Durable);
    let memory = MemoryStock::new();
    for store in [redis.deref() as &dyn StockStore, &memory] {
        store.load_next(1, 2, &[(9, 900)]).unwrap();
        store
            .load_next(2, 3, &[(9, 900), (9, 901), (8, 800)])
            .unwrap();
    }
    let rules = |per_user_limit| rules_at(per_user_limit, now_ms());
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
        Box::new(|s| format!("{:?}", s.add(1, 1, 11))),
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
        Box::new(|s| format!("{:?}", s.add(2, 4, 20 + 4))),
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
        // One call of more buyers than a command of the script reads or
        // writes at once (`crowd`), 1,000 units, a limit of 2; then the same
        // call again.
        Box::new(|s| format!("{:?}", s.load_next(3, 1000, &[(1, 1)]))),
        r(3, rules(2), crowd(1400)),
        r(3, rules(2), crowd(1400)),
        Box::new(|s| format!("{:?}", s.snapshot(3))),
    ];
    for (i, call) in calls.iter().enumerate() {
        assert_eq!(call(redis.deref()), call(&memory), "call {i}");
    }
}
