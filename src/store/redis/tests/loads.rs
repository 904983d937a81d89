//! The epoch fence of the Redis stock store: scripts sent before a load do
//! nothing after it, a freeze holds every fenced call until its load, a
//! goods Redis lost is not loaded by a late script, loads of many holders,
//! restocks a reconciliation counted.

use seckill_redis_scripts::{AddCall, ReleaseCall, ReserveBuyer};

use super::stock::{eval, queued_reserve};
use super::*;
use crate::store::Loaded;

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
    // A load under an older epoch stands aside; one under the goods' own
    // epoch is that load sent again (the order store issues each epoch
    // once): done already, and it changes nothing.
    assert_eq!(
        stock.load(1, 99, &[], stale, 99).unwrap(),
        Loaded::Superseded(current)
    );
    assert_eq!(stock.load(1, 99, &[], current, 99).unwrap(), Loaded::Now);
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
/// A load sent twice is one load too.
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
    // The load sent again (its reply lost, the client resending it) is the
    // same load: done, not another server's, and nothing loaded twice.
    let sold = stock.reserve(1, &rules(1), &buyers(&[(7, 700)])).unwrap();
    assert_eq!(sold.decisions, [Reservation::Reserved]);
    assert_eq!(stock.load(1, 5, &[], next, 5).unwrap(), Loaded::Now);
    assert_eq!(stock.remaining(1).unwrap(), Some(4));
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

/// A goods whose epoch went back below a load this store made (a failover
/// to a replica that lacked the load): its units are the older load's,
/// some of them counted to others since, so nothing is sold from it under
/// the older epoch: it is "not loaded", for the sale to reload.
#[test]
fn a_goods_back_at_an_older_epoch_is_not_sold_from() {
    let stock = open(AckMode::Queued);
    let current = stock.load_next(1, 5, &[]).unwrap();
    // This store (or another server's, which it learnt of) loaded the goods
    // under a later epoch, which Redis lost.
    stock.learn_epoch(1, current + 3);
    let lost = stock.reserve(1, &rules(1), &buyers(&[(7, 700)]));
    assert!(matches!(lost, Err(StoreError::NotLoaded(1))), "{lost:?}");
    assert_eq!(stock.remaining(1).unwrap(), Some(5), "nothing taken");
    // A reload under a new epoch (the order store's next, above every one
    // it issued) sells again.
    let next = current + 4;
    assert_eq!(stock.begin_load(1, next).unwrap(), Loaded::Now);
    assert_eq!(stock.load(1, 5, &[], next, 5).unwrap(), Loaded::Now);
    let sold = stock.reserve(1, &rules(1), &buyers(&[(7, 700)])).unwrap();
    assert_eq!(sold.decisions, [Reservation::Reserved]);
}
