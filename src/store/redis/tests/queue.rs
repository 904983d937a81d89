//! The queue of the `queued` ack mode: what the reserve script appends,
//! read, claimed and acked by the order writers.

use std::time::Instant;

use super::*;
use crate::store::redis::Replication;
use crate::store::Loaded;

#[test]
fn queued_orders_carry_their_payment_deadline() {
    let stock = open(AckMode::Queued);
    stock.load_next(1, 5, &[]).unwrap();
    let now = now_ms();
    let rules = ReserveRules {
        pay_by_ms: now + 12_345,
        ..tokened(2, now)
    };
    stock.issue_token(1, 1, 11, now + 60_000).unwrap();
    let r = stock.reserve(1, &rules, &[buy(1, 101, 11), buy(2, 201, 22)]);
    assert_eq!(r.unwrap().decisions, [Reservation::Reserved, INVALID]);
    // An entry from a server that wrote no deadline gets the default.
    let mut xadd = ::redis::cmd("XADD");
    xadd.arg(stock.keys(1).queue)
        .arg("*")
        .arg(&["order_no", "102", "user", "1", "goods", "1"])
        .arg(&["created_ms", "5000"]);
    stock.call("xadd", |con| xadd.query::<String>(con)).unwrap();
    let queued = stock.queued(1).unwrap();
    assert_eq!(
        queued
            .iter()
            .map(|o| (o.order_no, o.created_ms, o.pay_by_ms))
            .collect::<Vec<_>>(),
        [
            (101, now, now + 12_345),
            (102, 5_000, 5_000 + DEFAULT_PAY_WINDOW_MS)
        ]
    );
    let read = stock.read(&[1], "a", 10, Duration::ZERO).unwrap();
    let read: Vec<OrderRecord> = read.into_iter().map(|q| q.order).collect();
    assert_eq!(read, queued);
}

#[test]
fn queued_orders_are_read_then_acked_away() {
    let stock = open(AckMode::Queued);
    stock.load_next(1, 2, &[]).unwrap();
    stock.load_next(2, 1, &[]).unwrap();
    let before = now_ms();
    let r = stock
        .reserve(1, &rules(1), &buyers(&[(10, 110), (11, 111), (12, 112)]))
        .unwrap();
    assert_eq!(r.decisions[2], Reservation::SoldOut);
    stock.reserve(2, &rules(1), &buyers(&[(20, 220)])).unwrap();
    let after = now_ms();

    let mut read = stock
        .read(&[1, 2], "a", 10, Duration::from_millis(100))
        .unwrap();
    read.sort_by_key(|q| q.order.order_no);
    let orders: Vec<_> = read.iter().map(|q| q.order.clone()).collect();
    let order = |order_no, user_id, goods_id| (order_no, user_id, goods_id, OrderState::Created);
    assert_eq!(
        orders
            .iter()
            .map(|o| (o.order_no, o.user_id, o.goods_id, o.state))
            .collect::<Vec<_>>(),
        vec![order(110, 10, 1), order(111, 11, 1), order(220, 20, 2)]
    );
    assert!(orders
        .iter()
        .all(|o| (before..=after).contains(&o.created_ms)));
    // rules() gives the default window from its own clock.
    assert!(orders
        .iter()
        .all(|o| o.pay_by_ms == o.created_ms + DEFAULT_PAY_WINDOW_MS));
    // Read but not acked: still queued, and not read again.
    assert_eq!(stock.queued(1).unwrap(), orders[..2].to_vec());
    let start = Instant::now();
    let none = stock.read(&[1, 2], "a", 10, Duration::from_millis(200));
    assert_eq!(none.unwrap(), vec![]);
    assert!(start.elapsed() >= Duration::from_millis(150));

    let ids = |goods| -> Vec<String> {
        read.iter()
            .filter(|q| q.order.goods_id == goods)
            .map(|q| q.id.clone())
            .collect()
    };
    stock.ack(1, &ids(1)).unwrap();
    stock.ack(2, &ids(2)).unwrap();
    stock.ack(2, &[]).unwrap();
    assert_eq!(stock.queued(1).unwrap(), vec![]);
    assert_eq!(stock.queued(2).unwrap(), vec![]);
    assert_eq!(
        stock.claim_stale(1, "b", Duration::ZERO, 10).unwrap(),
        vec![]
    );
    // The buyers stay: a written order is still held.
    let r = stock.reserve(1, &rules(1), &buyers(&[(10, 999)])).unwrap();
    assert_eq!(r.decisions, vec![Reservation::Held(110)]);
}

#[test]
fn a_stale_order_is_claimed_by_another_consumer() {
    let stock = open(AckMode::Queued);
    stock.load_next(1, 5, &[]).unwrap();
    stock
        .reserve(1, &rules(1), &buyers(&[(1, 101), (2, 102)]))
        .unwrap();
    let read = stock.read(&[1], "a", 1, Duration::ZERO).unwrap();
    assert_eq!(read.len(), 1);
    // "a" dies holding it. Too fresh for a long idle limit:
    let claimed = stock.claim_stale(1, "b", Duration::from_secs(3600), 10);
    assert_eq!(claimed.unwrap(), vec![]);
    let claimed = stock.claim_stale(1, "b", Duration::ZERO, 10).unwrap();
    assert_eq!(claimed, read);
    // The other one was never read: it is new, not stale.
    let rest = stock.read(&[1], "b", 10, Duration::ZERO).unwrap();
    assert_eq!(rest.len(), 1);
    assert_eq!(rest[0].order.order_no, 102);
    // A load keeps the queue and the group, pending entries and all.
    stock.load_next(1, 3, &[(1, 101), (2, 102)]).unwrap();
    assert_eq!(stock.queued(1).unwrap().len(), 2);
    let claimed = stock.claim_stale(1, "c", Duration::ZERO, 1).unwrap();
    assert_eq!(claimed.len(), 1);
    let ids: Vec<String> = read.iter().chain(&rest).map(|q| q.id.clone()).collect();
    stock.ack(1, &ids).unwrap();
    assert_eq!(stock.queued(1).unwrap(), vec![]);
    assert_eq!(
        stock.claim_stale(1, "c", Duration::ZERO, 10).unwrap(),
        vec![]
    );
}

#[test]
fn a_queue_that_lost_its_group_gets_it_back() {
    let stock = open(AckMode::Queued);
    stock.load_next(1, 5, &[]).unwrap();
    stock.forget(1).unwrap();
    assert_eq!(stock.read(&[1], "a", 10, Duration::ZERO).unwrap(), vec![]);
    assert_eq!(
        stock.claim_stale(9, "a", Duration::ZERO, 10).unwrap(),
        vec![]
    );
    stock.load_next(1, 5, &[]).unwrap();
    stock.reserve(1, &rules(1), &buyers(&[(1, 101)])).unwrap();
    let read = stock.read(&[1], "a", 10, Duration::ZERO).unwrap();
    assert_eq!(read.len(), 1);
}

#[test]
fn durable_mode_queues_nothing() {
    let stock = open(AckMode::Durable);
    stock.load_next(1, 5, &[]).unwrap();
    stock.reserve(1, &rules(1), &buyers(&[(1, 101)])).unwrap();
    assert_eq!(stock.keys_of(1), 2);
    assert_eq!(stock.queued(1).unwrap(), vec![]);
}

#[test]
fn a_broken_entry_is_skipped_not_fatal() {
    let stock = open(AckMode::Queued);
    stock.load_next(1, 5, &[]).unwrap();
    let mut xadd = ::redis::cmd("XADD");
    xadd.arg(stock.keys(1).queue)
        .arg("*")
        .arg("order_no")
        .arg("x");
    stock.call("xadd", |con| xadd.query::<String>(con)).unwrap();
    stock.reserve(1, &rules(1), &buyers(&[(1, 101)])).unwrap();
    let read = stock.read(&[1], "a", 10, Duration::ZERO).unwrap();
    assert_eq!(read.len(), 1);
    assert_eq!(read[0].order.order_no, 101);
    // Left out of the count too, as the drain never writes it: a
    // reconciliation of the goods goes through.
    let queued = stock.queued(1).unwrap();
    assert_eq!(queued.len(), 1);
    assert_eq!(queued[0].order_no, 101);
}

/// A reconciliation's freeze stops every server's scripts before it counts
/// the queue: a BUY sent meanwhile queues nothing (it is answered `busy`),
/// so no acknowledged order can slip in between the count and the load.
#[test]
fn nothing_is_queued_while_a_goods_is_frozen() {
    let stock = open(AckMode::Queued);
    let epoch = stock.load_next(1, 5, &[]).unwrap();
    stock.reserve(1, &rules(1), &buyers(&[(1, 100)])).unwrap();
    assert_eq!(stock.begin_load(1, epoch + 1).unwrap(), Loaded::Now);
    let refused = stock.reserve(1, &rules(1), &buyers(&[(2, 200)]));
    assert!(
        matches!(refused, Err(StoreError::Unavailable(_))),
        "{refused:?}"
    );
    let queued: Vec<u64> = stock
        .queued(1)
        .unwrap()
        .iter()
        .map(|o| o.order_no)
        .collect();
    assert_eq!(queued, [100]);
    assert_eq!(
        stock.load(1, 4, &[(1, 100)], epoch + 1, 5).unwrap(),
        Loaded::Now
    );
    stock.reserve(1, &rules(1), &buyers(&[(2, 200)])).unwrap();
    let queued: Vec<u64> = stock
        .queued(1)
        .unwrap()
        .iter()
        .map(|o| o.order_no)
        .collect();
    assert_eq!(queued, [100, 200]);
}

/// With `--redis-wait`, queued orders read before the replicas have them
/// are not handed to the writer (a failover could lose their deduction
/// while the order store keeps the order): the read fails, the entries stay
/// pending, and a claim hands them over once they are replicated. The test
/// Redis has no replica, so a read waiting for one never gets its orders.
#[test]
fn queued_orders_are_not_read_before_the_replicas_have_them() {
    let stock = open(AckMode::Queued);
    stock.load_next(1, 5, &[]).unwrap();
    stock
        .reserve(1, &rules(1), &buyers(&[(1, 101), (2, 102)]))
        .unwrap();
    let url = std::env::var("SECKILL_TEST_REDIS")
        .unwrap_or_else(|_| "redis://127.0.0.1:6379".to_string());
    let waiting = RedisStock::open(&url, &stock.prefix, AckMode::Queued)
        .unwrap()
        .with_replication(Replication {
            replicas: 1,
            timeout: Duration::from_millis(20),
        });
    let read = waiting.read(&[1], "a", 10, Duration::ZERO);
    assert!(
        matches!(&read, Err(StoreError::Unavailable(m)) if m.contains("0 of 1 replicas")),
        "{read:?}"
    );
    let claimed = waiting.claim_stale(1, "b", Duration::ZERO, 10);
    assert!(matches!(claimed, Err(StoreError::Unavailable(_))));
    // Nothing lost: still queued, and claimed by a store that waits for no
    // replica.
    assert_eq!(stock.queued(1).unwrap().len(), 2);
    let claimed = stock.claim_stale(1, "c", Duration::ZERO, 10).unwrap();
    let mut numbers: Vec<u64> = claimed.iter().map(|q| q.order.order_no).collect();
    numbers.sort_unstable();
    assert_eq!(numbers, [101, 102]);
    // An empty read waits for nothing.
    assert_eq!(waiting.read(&[1], "a", 10, Duration::ZERO).unwrap(), vec![]);
}
