//! What only the Redis stock store does: numbers that Lua must keep as
//! strings, the buyers hash and the tokens as laid out, the epoch fence, a
//! goods Redis lost, big loads. What every stock store does is in the
//! conformance suite (`store/conformance/stock.rs`), run against Redis too.

use seckill_redis_scripts::{AddCall, Call, Mode, ReleaseCall, ReserveBuyer, ReserveCall};

use super::*;
use crate::store::Loaded;

#[test]
fn order_numbers_keep_all_64_bits() {
    let stock = open(AckMode::Queued);
    let two53 = 1u64 << 53;
    let pairs = [
        (u64::MAX, u64::MAX),
        (two53 + 1, two53 + 1),
        (two53, u64::MAX - 1),
    ];
    stock.load_next(3, 10, &[]).unwrap();
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
    stock.load_next(3, 0, &loaded).unwrap();
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
    stock.add(3, 5, 15).unwrap();
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
fn release_gives_back_exactly_the_order_named() {
    let stock = open(AckMode::Durable);
    stock.load_next(1, 5, &[]).unwrap();
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

/// The token rules themselves are in the conformance suite; here, what
/// only Redis does: tokens are not fenced by the epoch, so they can be
/// issued before the first load, and a token's entry records its user,
/// expiry and then the order it bought.
#[test]
fn tokens_are_issued_before_a_load_and_record_their_order() {
    const NOW: u64 = 1_000_000;
    let stock = open(AckMode::Durable);
    let expires = NOW + 1_000;
    stock.issue_token_at(1, 1, 11, expires, NOW).unwrap();
    stock.load_next(1, 2, &[]).unwrap();
    let entry = |stock: &TestStock| -> Option<String> {
        let mut hget = ::redis::cmd("HGET");
        hget.arg(stock.keys(1).tokens).arg(11);
        stock.call("hget", |con| hget.query(con)).unwrap()
    };
    assert_eq!(entry(&stock), Some(format!("1 {expires}")));
    let r = stock.reserve(1, &tokened(1, NOW), &[buy(1, 100, 11)]);
    assert_eq!(r.unwrap().decisions, [Reservation::Reserved]);
    assert_eq!(entry(&stock), Some(format!("1 {expires} 100")));
}

/// An entry damaged by hand (a token's with no expiry, a request id's with
/// no order) refuses its own buyer only: the others of the merged call of
/// that goods are decided as without it, and what they took is written.
/// (Each used to fail the whole call, so every BUY of the goods that came
/// with it, for as long as its buyer kept trying.)
#[test]
fn a_damaged_entry_refuses_its_own_buyer_only() {
    const NOW: u64 = 1_000_000;
    let stock = open(AckMode::Queued);
    stock.issue_token_at(1, 1, 11, NOW + 1_000, NOW).unwrap();
    stock.issue_token_at(1, 3, 33, NOW + 1_000, NOW).unwrap();
    stock.load_next(1, 5, &[]).unwrap();
    let keys = stock.keys(1);
    let hset = |key: &str, field: &str, value: &str| {
        stock
            .call("hset", |con| {
                ::redis::cmd("HSET")
                    .arg(key)
                    .arg(field)
                    .arg(value)
                    .query::<()>(con)
            })
            .unwrap()
    };
    hset(&keys.tokens, "22", "2");
    hset(&keys.req, &format!("{:032x}", 0xbad_u128), "3");
    let entry = |token: u64| -> Option<String> {
        let mut hget = ::redis::cmd("HGET");
        hget.arg(&keys.tokens).arg(token);
        stock.call("hget", |con| hget.query(con)).unwrap()
    };
    let damaged_id = crate::store::Buyer {
        request_id: seckill_proto::RequestId::new(0xbad),
        ..buy(3, 300, 33)
    };
    let batch = [buy(1, 100, 11), buy(2, 200, 22), damaged_id];
    let r = stock.reserve(1, &tokened(1, NOW), &batch).unwrap();
    assert_eq!(
        r.decisions,
        [
            Reservation::Reserved,
            Reservation::Token(TokenRefusal::Invalid),
            Reservation::RequestIdTaken
        ]
    );
    assert_eq!(r.remaining, 4);
    assert_eq!(entry(11), Some(format!("1 {} 100", NOW + 1_000)));
    assert_eq!(entry(33), Some(format!("3 {}", NOW + 1_000)), "spent");
    assert_eq!(stock.snapshot(1).unwrap(), Some((4, vec![(1, 100)])));
    assert_eq!(stock.queued(1).unwrap().len(), 1);
}

/// A call that fails half-way leaves everything as it was: the decisions
/// are written at the end, so a buyer decided before the failure neither
/// took a unit nor was queued (a unit taken and its order lost would leave
/// the sale short). Here the failure is a request id's lifetime that is no
/// number, met only once a buyer with an id reserves, the second of the
/// call; the server never sends one.
#[test]
fn a_call_that_fails_half_way_writes_nothing() {
    let stock = open(AckMode::Queued);
    let epoch = stock.load_next(1, 5, &[]).unwrap();
    let batch = [
        ReserveBuyer {
            user: 1,
            order_no: 100,
            token: NO_TOKEN,
            request_id: None,
        },
        ReserveBuyer {
            user: 2,
            order_no: 200,
            token: NO_TOKEN,
            request_id: Some(0xabc),
        },
    ];
    // ARGV[8]: how long a request id is remembered.
    let call = queued_reserve(epoch, &batch);
    let r = eval_replacing(&stock, 1, &call, Some((8, "not a number")));
    assert!(r.is_err(), "{r:?}");
    assert_eq!(stock.snapshot(1).unwrap(), Some((5, vec![])));
    assert!(stock.queued(1).unwrap().is_empty());
    let r = stock.reserve(1, &rules(1), &buyers(&[(1, 101)]));
    assert_eq!(r.unwrap().decisions, [Reservation::Reserved]);
}

/// The keys of the tokens expire when their last token may be forgotten,
/// on the caller's clock: a sale's tokens do not outlive it when no more
/// are issued to prune them.
#[test]
fn token_keys_expire_when_their_last_token_may_be_forgotten() {
    const NOW: u64 = 1_000_000;
    let stock = open(AckMode::Durable);
    stock.load_next(1, 10, &[]).unwrap();
    // Lives 1 s from NOW: expired from NOW + 1 s, forgotten from NOW + 2 s.
    stock.issue_token_at(1, 1, 11, NOW + 1_000, NOW).unwrap();
    let keys = stock.keys(1);
    for key in [&keys.tokens, &keys.token_expiry] {
        let ttl: i64 = stock
            .call("pttl", |con| ::redis::cmd("PTTL").arg(key).query(con))
            .unwrap();
        assert!((1_900..=2_000).contains(&ttl), "{key}: {ttl} ms");
    }
}

/// Runs a call with EVAL, as any client may send it from the shared
/// crate's typed calls (the bench does the same), not through the store.
fn eval<C: Call>(stock: &TestStock, goods: GoodsId, call: &C) -> Value {
    eval_replacing(stock, goods, call, None).unwrap()
}

/// [`eval`] with argument `ARGV[n]` replaced, where `Some((n, arg))`.
fn eval_replacing<C: Call>(
    stock: &TestStock,
    goods: GoodsId,
    call: &C,
    replace: Option<(usize, &str)>,
) -> Result<Value, StoreError> {
    let keys = stock.keys(goods);
    let mut cmd = ::redis::cmd("EVAL");
    cmd.arg(C::SCRIPT).arg(C::KEYS.len());
    for &key in C::KEYS {
        cmd.arg(keys.get(key));
    }
    let mut n = 0;
    call.write_args(&mut |arg| {
        n += 1;
        match replace {
            Some((at, with)) if at == n => cmd.arg(with),
            _ => cmd.arg(arg),
        };
    });
    stock.call("eval", |con| cmd.query(con))
}

/// A queued-mode RESERVE of goods 1 under `epoch` at time 1, limit 1.
fn queued_reserve(epoch: u64, buyers: &[ReserveBuyer]) -> ReserveCall<'_> {
    ReserveCall {
        mode: Mode::Queued,
        goods: 1,
        now_ms: 1,
        epoch,
        per_user_limit: 1,
        token_required: false,
        pay_by_ms: 2,
        request_id_ttl_ms: 1_000,
        buyers,
    }
}

/// A script that reaches Redis after the goods was loaded again (it was
/// sent before the load and Redis ran it late, or another server loaded
/// it) does nothing, and says which epoch the goods has now. A late
/// release is not fenced; it names an order the load did not bring back (a
/// release is only for orders that are not live), so it finds nothing to
/// do.
#[test]
fn a_script_from_before_a_load_does_nothing() {
    let stock = open(AckMode::Queued);
    let stale = stock.load_next(1, 5, &[(8, 800)]).unwrap();
    let current = stock.load_next(1, 3, &[(9, 900)]).unwrap();
    assert_eq!(current, stale + 1);
    assert_eq!(stock.epoch(1).unwrap(), Some(current));
    let reserve = |epoch: u64, user: u64, order_no: u64| {
        let buyers = [ReserveBuyer {
            user,
            order_no,
            token: NO_TOKEN,
            request_id: None,
        }];
        eval(&stock, 1, &queued_reserve(epoch, &buyers))
    };
    let release = ReleaseCall {
        orders: &[(8, 800)],
    };
    let add = AddCall {
        amount: 10,
        epoch: stale,
        total: 15,
    };
    let stale_reply = Value::Array(vec![
        Value::BulkString(b"stale".to_vec()),
        Value::BulkString(current.to_string().into_bytes()),
    ]);
    assert_eq!(
        (
            reserve(stale, 7, 700),
            eval(&stock, 1, &release),
            eval(&stock, 1, &add)
        ),
        (stale_reply.clone(), Value::Int(3), stale_reply)
    );
    // The reloaded goods is as the load left it, queue included.
    assert_eq!(stock.snapshot(1).unwrap(), Some((3, vec![(9, 900)])));
    assert!(stock.queued(1).unwrap().is_empty());
    // Run by itself (as the bench does) under the current epoch, the
    // script acts, and answers in the layout its comment gives.
    let direct = reserve(current, 6, 600);
    assert_eq!(
        direct,
        Value::Array(vec![Value::Int(2), Value::BulkString(b"1".to_vec())])
    );
    let queued = stock.queued(1).unwrap();
    assert_eq!(
        queued
            .iter()
            .map(|o| (o.user_id, o.order_no, o.created_ms, o.pay_by_ms))
            .collect::<Vec<_>>(),
        [(6, 600, 1, 2)]
    );
    // The store's own calls carry the current epoch and act.
    let mine = stock.reserve(1, &rules(1), &buyers(&[(7, 700)])).unwrap();
    assert_eq!(mine.decisions, [Reservation::Reserved]);
    assert_eq!(mine.epoch, current);
    // Another store (another server) that last knew the goods under an
    // older epoch learns the new one from the refused script, and acts
    // under it: the epoch fences reservations, not servers.
    let url = std::env::var("SECKILL_TEST_REDIS")
        .unwrap_or_else(|_| "redis://127.0.0.1:6379".to_string());
    let other = RedisStock::open(&url, &stock.prefix, AckMode::Queued).unwrap();
    other.learn_epoch(1, stale);
    let theirs = other.reserve(1, &rules(1), &buyers(&[(8, 800)])).unwrap();
    assert_eq!(theirs.decisions, [Reservation::Reserved]);
    assert_eq!(theirs.epoch, current);
    // A load under an epoch no higher than the goods' stands aside.
    assert_eq!(
        stock.load(1, 99, &[], current, 99).unwrap(),
        Loaded::Superseded(current)
    );
    assert_eq!(stock.remaining(1).unwrap(), Some(0));
}

#[test]
fn a_lost_goods_is_not_loaded_and_nothing_is_taken() {
    let stock = open(AckMode::Queued);
    stock.load_next(5, 3, &[(1, 100)]).unwrap();
    stock.forget(5).unwrap();
    assert_eq!(stock.keys_of(5), 0);
    let not_loaded = |e: StoreError| matches!(e, StoreError::NotLoaded(5));
    assert!(not_loaded(
        stock
            .reserve(5, &rules(1), &buyers(&[(2, 200)]))
            .unwrap_err()
    ));
    assert!(not_loaded(stock.release(5, &[(1, 100)]).unwrap_err()));
    assert!(not_loaded(stock.add(5, 10, 13).unwrap_err()));
    assert_eq!(stock.snapshot(5).unwrap(), None);
    assert_eq!(stock.keys_of(5), 0, "a call on a lost goods wrote");

    // Only the counter lost: the buyers stay as they were.
    stock.load_next(5, 3, &[(1, 100)]).unwrap();
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
    stock.load_next(5, 1, &[(1, 100)]).unwrap();
    let r = stock.reserve(5, &rules(1), &buyers(&[(2, 200)])).unwrap();
    assert_eq!(r.decisions, vec![Reservation::Reserved]);
}

#[test]
fn load_replaces_a_hundred_thousand_holders() {
    let stock = open(AckMode::Queued);
    let holders: Vec<(UserId, OrderNo)> = (0..100_000u64).map(|u| (u, u64::MAX - u)).collect();
    stock.load_next(1, 7, &holders).unwrap();
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
    stock.load_next(1, 1, &holders[..1]).unwrap();
    assert_eq!(stock.snapshot(1).unwrap(), Some((1, holders[..1].to_vec())));
    // The queue is not the load's to drop.
    assert_eq!(stock.queued(1).unwrap().len(), 1);
}

/// While a reconciliation (of any server) counts, the goods is frozen:
/// reservations and restocks are refused as `busy` and change nothing; its
/// load ends the freeze, and a load that was not begun, or was superseded
/// by a later freeze, stands aside.
#[test]
fn a_frozen_goods_refuses_every_fenced_call_until_its_load() {
    let stock = open(AckMode::Durable);
    let first = stock.load_next(1, 5, &[]).unwrap();
    assert_eq!(stock.begin_load(1, first + 1).unwrap(), Loaded::Now);
    let reserved = stock.reserve(1, &rules(1), &buyers(&[(7, 700)]));
    assert!(
        matches!(reserved, Err(StoreError::Unavailable(_))),
        "{reserved:?}"
    );
    let added = stock.add(1, 3, 8);
    assert!(
        matches!(added, Err(StoreError::Unavailable(_))),
        "{added:?}"
    );
    assert_eq!(stock.remaining(1).unwrap(), Some(5));
    // A later reconciliation freezes it over the first one, whose load then
    // stands aside, as does a freeze that is not later (the same one run
    // again is no other: `a_freeze_run_twice_is_one_freeze`).
    assert_eq!(stock.begin_load(1, first + 2).unwrap(), Loaded::Now);
    assert_eq!(
        stock.begin_load(1, first + 1).unwrap(),
        Loaded::Superseded(first + 2)
    );
    assert_eq!(
        stock.load(1, 1, &[], first + 1, 5).unwrap(),
        Loaded::Superseded(first + 2)
    );
    assert_eq!(
        stock.load(1, 4, &[(8, 800)], first + 2, 5).unwrap(),
        Loaded::Now
    );
    assert_eq!(stock.epoch(1).unwrap(), Some(first + 2));
    let sold = stock.reserve(1, &rules(1), &buyers(&[(7, 700)])).unwrap();
    assert_eq!((sold.remaining, sold.epoch), (3, first + 2));
    // A load nobody froze for does nothing.
    assert_eq!(
        stock.load(1, 9, &[], first + 3, 9).unwrap(),
        Loaded::Superseded(first + 2)
    );
    assert_eq!(stock.remaining(1).unwrap(), Some(3));
}

/// A restock's ADD sent under an epoch another server's reconciliation has
/// since replaced is sent again under the new one; if that reconciliation
/// counted the restock already (its load names the total it counted from),
/// the ADD adds nothing, and the units are not sold twice.
#[test]
fn a_late_add_for_a_restock_the_reconciliation_counted_adds_nothing() {
    let stock = open(AckMode::Durable);
    let first = stock.load_next(1, 10, &[]).unwrap();
    let url = std::env::var("SECKILL_TEST_REDIS")
        .unwrap_or_else(|_| "redis://127.0.0.1:6379".to_string());
    let other = RedisStock::open(&url, &stock.prefix, AckMode::Durable).unwrap();
    // The order store's total went from 10 to 15; the other server's
    // reconciliation counted from 15.
    assert_eq!(other.begin_load(1, first + 1).unwrap(), Loaded::Now);
    assert_eq!(other.load(1, 15, &[], first + 1, 15).unwrap(), Loaded::Now);
    // This server's ADD of that restock, still under the first epoch.
    assert_eq!(stock.add(1, 5, 15).unwrap(), 15);
    assert_eq!(stock.remaining(1).unwrap(), Some(15));
    // A later restock adds.
    assert_eq!(stock.add(1, 5, 20).unwrap(), 20);
}

/// A freeze run twice (its reply lost with a dropped connection, the call
/// resent) is the same freeze: its reconciliation goes on to its load,
/// rather than take itself for another server's and leave the goods frozen.
/// An older epoch's freeze, or one of the epoch already loaded, is stale.
#[test]
fn a_freeze_run_twice_is_one_freeze() {
    let stock = open(AckMode::Durable);
    let loaded = stock.load_next(1, 5, &[]).unwrap();
    assert_eq!(
        stock.begin_load(1, loaded).unwrap(),
        Loaded::Superseded(loaded)
    );
    let next = loaded + 1;
    assert_eq!(stock.begin_load(1, next).unwrap(), Loaded::Now);
    assert_eq!(stock.begin_load(1, next).unwrap(), Loaded::Now);
    assert!(matches!(
        stock.begin_load(1, loaded).unwrap(),
        Loaded::Superseded(_)
    ));
    assert_eq!(stock.load(1, 5, &[], next, 5).unwrap(), Loaded::Now);
    assert_eq!(stock.epoch(1).unwrap(), Some(next));
}

/// While a reconciliation has a goods frozen, a release does nothing (the
/// count may have that order as live, and the load would put its holder
/// back and take its unit again); it is left to the next reconciliation.
#[test]
fn nothing_is_released_while_a_goods_is_frozen() {
    let stock = open(AckMode::Durable);
    let epoch = stock.load_next(1, 4, &[(7, 700)]).unwrap();
    assert_eq!(stock.begin_load(1, epoch + 1).unwrap(), Loaded::Now);
    let released = stock.release(1, &[(7, 700)]);
    assert!(
        matches!(released, Err(StoreError::Unavailable(_))),
        "{released:?}"
    );
    assert_eq!(stock.snapshot(1).unwrap(), Some((4, vec![(7, 700)])));
    assert_eq!(stock.load(1, 5, &[], epoch + 1, 5).unwrap(), Loaded::Now);
    assert_eq!(
        stock.release(1, &[(7, 700)]).unwrap(),
        5,
        "nothing left to release"
    );
}

/// A load's staged buyers carry an expiry (a reconciler that dies before
/// its load leaves nothing behind for long); the buyers it puts in place
/// carry none.
#[test]
fn loaded_buyers_never_expire() {
    let stock = open(AckMode::Durable);
    stock.load_next(1, 3, &[(7, 700), (8, 800)]).unwrap();
    let key = stock.keys(1).buyers;
    let ttl: i64 = stock
        .call("ttl", |con| ::redis::cmd("PTTL").arg(&key).query(con))
        .unwrap();
    assert_eq!(ttl, -1, "the buyers hash expires in {ttl} ms");
    assert_eq!(
        stock.snapshot(1).unwrap(),
        Some((3, vec![(7, 700), (8, 800)]))
    );
}
