//! A goods split over buckets, on one Redis and on the cluster: it sells
//! exactly its stock whatever bucket the units started in, keeps each
//! user's limit, and a move between its parts cut short is completed once
//! or undone by a load.

use std::collections::HashMap;
use std::time::Duration;

use seckill_redis_scripts::{bucket_of, Part, SendCall};

use super::stock::Monitor;
use super::{buyers, open, open_cluster, rules, TestStock};
use crate::config::AckMode;
use crate::store::fixtures::LoadNext;
use crate::store::{GoodsId, Loaded, OrderQueue, Reservation, StockStore, StoreError};

/// Users 1..=users buy in batches, each batch from the same users in turn,
/// until every one of them is refused: returns each user's orders. After
/// every batch the parts account for every unit; `sold_out` is answered
/// only once no unit is left anywhere.
fn sell_out(
    stock: &TestStock,
    goods: GoodsId,
    total: u32,
    users: &[u64],
    limit: u8,
) -> HashMap<u64, Vec<u64>> {
    let mut orders: HashMap<u64, Vec<u64>> = HashMap::new();
    let mut next_order = goods * 1_000_000;
    let mut quiet_rounds = 0;
    let mut rounds = 0;
    while quiet_rounds < 3 {
        rounds += 1;
        assert!(rounds < 10_000, "no end to the sale");
        let mut progress = false;
        for chunk in users.chunks(25) {
            let batch: Vec<(u64, u64)> = chunk
                .iter()
                .map(|&user| {
                    next_order += 1;
                    (user, next_order)
                })
                .collect();
            let r = stock
                .reserve(goods, &rules(limit), &buyers(&batch))
                .unwrap();
            for (&(user, order_no), d) in batch.iter().zip(&r.decisions) {
                match d {
                    Reservation::Reserved => {
                        orders.entry(user).or_default().push(order_no);
                        progress = true;
                    }
                    Reservation::Held(_) | Reservation::Busy => {}
                    Reservation::SoldOut => {
                        let parts = stock.parts(goods).unwrap().unwrap();
                        assert!(
                            parts.pool == 0
                                && parts.in_flight <= 0
                                && parts.buckets.iter().all(|&b| b == 0),
                            "sold out with units left: {parts:?}"
                        );
                    }
                    other => panic!("user {user}: {other:?}"),
                }
            }
            let parts = stock.parts(goods).unwrap().unwrap();
            assert_eq!(parts.accounted(), i64::from(total), "{parts:?}");
        }
        quiet_rounds = if progress { 0 } else { quiet_rounds + 1 };
    }
    orders
}

fn exactly_the_stock(stock: &TestStock) {
    let goods = 31;
    stock.split(goods, 4);
    stock.load_next(goods, 150, &[]).unwrap();
    let parts = stock.parts(goods).unwrap().unwrap();
    assert_eq!(parts.buckets.len(), 4);
    assert!(parts.pool > 0, "{parts:?}");
    let users: Vec<u64> = (1..=100).collect();
    let orders = sell_out(stock, goods, 150, &users, 2);
    let sold: usize = orders.values().map(Vec::len).sum();
    assert_eq!(sold, 150, "exactly the stock");
    assert!(
        orders.values().all(|o| o.len() <= 2),
        "a user over the limit"
    );
    let parts = stock.parts(goods).unwrap().unwrap();
    assert_eq!((parts.pool, parts.in_flight, parts.holders), (0, 0, 150));
    assert_eq!(stock.remaining(goods).unwrap(), Some(0));
    let (left, holders) = stock.snapshot(goods).unwrap().unwrap();
    assert_eq!((left, holders.len()), (0, 150));
    // Each user's orders, read from their bucket alone.
    for &user in &users {
        let mut bought = orders.get(&user).cloned().unwrap_or_default();
        bought.sort_unstable();
        assert_eq!(stock.held(goods, user).unwrap(), bought, "user {user}");
    }
}

#[test]
fn a_split_goods_sells_exactly_its_stock_on_one_redis() {
    exactly_the_stock(&open(AckMode::Durable));
}

#[test]
fn a_split_goods_sells_exactly_its_stock_on_the_cluster() {
    exactly_the_stock(&open_cluster(AckMode::Durable));
}

/// Every buyer in one bucket: the units the other buckets started with
/// come back through the pool, and all of them are sold there.
#[test]
fn units_follow_the_buyers_to_their_bucket() {
    let stock = open(AckMode::Durable);
    let goods = 34;
    stock.split(goods, 4);
    stock.load_next(goods, 80, &[]).unwrap();
    let start = stock.parts(goods).unwrap().unwrap();
    assert!(start.buckets[1..].iter().all(|&b| b > 0), "{start:?}");
    let users: Vec<u64> = (1..10_000)
        .filter(|&u| bucket_of(u, 4) == 0)
        .take(100)
        .collect();
    let orders = sell_out(&stock, goods, 80, &users, 1);
    assert_eq!(orders.values().map(Vec::len).sum::<usize>(), 80);
    let end = stock.parts(goods).unwrap().unwrap();
    assert_eq!(&end.buckets[..], &[0, 0, 0, 0]);
}

/// Queued mode: each bucket queues its own orders; one read gets them all,
/// and acks find each one's queue.
#[test]
fn a_split_goods_queues_every_order_once() {
    let stock = open_cluster(AckMode::Queued);
    let goods = 32;
    stock.split(goods, 3);
    stock.load_next(goods, 40, &[]).unwrap();
    let users: Vec<u64> = (1..=60).collect();
    let orders = sell_out(&stock, goods, 40, &users, 1);
    assert_eq!(orders.values().map(Vec::len).sum::<usize>(), 40);
    assert_eq!(stock.queued(goods).unwrap().len(), 40);
    let mut read = Vec::new();
    while read.len() < 40 {
        let batch = stock
            .read(&[goods], "a", 100, Duration::from_millis(50))
            .unwrap();
        assert!(!batch.is_empty(), "read {} of 40", read.len());
        read.extend(batch);
    }
    let ids: Vec<String> = read.iter().map(|q| q.id.clone()).collect();
    stock.ack(goods, &ids).unwrap();
    assert!(stock.queued(goods).unwrap().is_empty());
}

/// A SEND whose RECEIVE never ran (its server killed between the two): the
/// units are in flight, counted; `settle` completes the move once, however
/// often it runs; a load under a new epoch counts afresh instead.
#[test]
fn a_move_cut_short_is_completed_once_or_undone_by_a_load() {
    let stock = open(AckMode::Durable);
    let goods = 33;
    stock.split(goods, 2);
    let epoch = stock.load_next(goods, 10, &[]).unwrap();
    let send_only = |want: u32| send_only(&stock, goods, epoch, want);
    let before = stock.parts(goods).unwrap().unwrap();
    assert_eq!((before.pool, &before.buckets[..]), (6, &[2, 2][..]));
    assert_eq!(send_only(3), [3, 3, 3]);
    let cut = stock.parts(goods).unwrap().unwrap();
    assert_eq!((cut.pool, cut.in_flight, cut.accounted()), (3, 3, 10));
    for _ in 0..2 {
        assert!(!stock.settle(goods).unwrap(), "units are left");
        let settled = stock.parts(goods).unwrap().unwrap();
        assert_eq!(
            (settled.pool, settled.in_flight, &settled.buckets[..]),
            (3, 0, &[5, 2][..]),
            "completed once"
        );
    }
    send_only(2);
    assert_eq!(stock.parts(goods).unwrap().unwrap().in_flight, 2);
    stock.load_next(goods, 10, &[]).unwrap();
    let reloaded = stock.parts(goods).unwrap().unwrap();
    assert_eq!((reloaded.in_flight, reloaded.accounted()), (0, 10));
}

/// SEND alone, from the pool to bucket 0, of up to `want` units: its
/// RECEIVE never runs, as when its server is killed between the two.
fn send_only(stock: &TestStock, goods: GoodsId, epoch: u64, want: u32) -> Vec<i64> {
    let keys = stock.part_keys(goods, Part::Pool);
    let call = SendCall {
        epoch,
        want,
        dest: Part::Bucket(0),
    };
    let inv = stock.scripts.send(&keys, &call);
    stock
        .call("send", |con| inv.invoke::<Vec<i64>>(con))
        .unwrap()
}

/// A move cut short is completed by a SEND of no more units, which writes
/// the ledger's total back: the RECEIVE that follows adds that total to
/// the destination, and with `--redis-wait` the WAIT after the SEND then
/// covers the sends it counts (perhaps another server's, whose own WAIT
/// timed out), so the destination never sells units a failover of the
/// source could give back to it. Seen by MONITOR.
#[test]
fn a_move_completed_from_the_ledger_writes_its_total_back() {
    let stock = open(AckMode::Durable);
    let goods = 37;
    stock.split(goods, 2);
    let epoch = stock.load_next(goods, 10, &[]).unwrap();
    assert_eq!(send_only(&stock, goods, epoch, 3), [3, 3, 3]);
    let ledger = stock.part_keys(goods, Part::Pool).ledger;
    let field = Part::sent_field(Part::Bucket(0));
    let written_back = format!("\"HSET\" \"{ledger}\" \"{field}\" \"3\"");
    let mut monitor = Monitor::start();
    assert!(!stock.settle(goods).unwrap(), "units are left");
    let ran = monitor.through(&stock, "settled");
    assert!(
        ran.iter().any(|l| l.contains(&written_back)),
        "no {written_back} in:\n{ran:#?}"
    );
    let settled = stock.parts(goods).unwrap().unwrap();
    assert_eq!((settled.in_flight, &settled.buckets[..]), (0, &[5, 2][..]));
}

/// A reconciler killed after it froze one bucket of a split goods, before
/// its load: calls on the parts it left alone go on succeeding, and the
/// frozen one is still found not loaded once it has stayed frozen past the
/// grace (so that the goods is reconciled and its units sold again),
/// rather than `busy` for as long as the others keep selling.
#[test]
fn a_part_left_frozen_is_found_not_loaded_while_the_others_sell() {
    let stock = open(AckMode::Durable);
    let goods = 38;
    stock.split(goods, 2);
    let epoch = stock.load_next(goods, 100, &[]).unwrap();
    let frozen = stock.part_keys(goods, Part::Bucket(0)).epoch;
    let freeze = format!("{}:loading", epoch + 1);
    stock
        .call("freeze", |con| {
            ::redis::cmd("SET")
                .arg(&frozen)
                .arg(&freeze)
                .query::<()>(con)
        })
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    loop {
        stock
            .move_units(goods, Part::Bucket(1), Part::Pool, 0)
            .expect("a part left alone");
        match stock.move_units(goods, Part::Bucket(0), Part::Pool, 0) {
            Err(StoreError::NotLoaded(_)) => break,
            Err(StoreError::Unavailable(_)) => {}
            other => panic!("the frozen part: {other:?}"),
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the frozen part was still busy after 15 s"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A reconciler killed between its loads: every bucket loaded under the new
/// epoch, the pool still frozen with the ledger of the epoch before, which
/// names a move cut short. The new count includes those units already, so
/// nothing may add them again: `settle` leaves the ledgers of two epochs
/// alone, and the goods is not sold out.
#[test]
fn a_ledger_of_the_epoch_before_is_never_received() {
    let stock = open(AckMode::Durable);
    let goods = 35;
    stock.split(goods, 2);
    let first = stock.load_next(goods, 10, &[]).unwrap();
    let keys = stock.part_keys(goods, Part::Pool);
    let call = SendCall {
        epoch: first,
        want: 3,
        dest: Part::Bucket(0),
    };
    let inv = stock.scripts.send(&keys, &call);
    let sent: Vec<i64> = stock.call("send", |con| inv.invoke(con)).unwrap();
    assert_eq!(sent, [3, 3, 3]);
    let second = first + 1;
    assert_eq!(stock.begin_load(goods, second).unwrap(), Loaded::Now);
    for b in 0..2 {
        let keys = stock.part_keys(goods, Part::Bucket(b));
        stock.load_part(goods, &keys, 4, &[], second, 10).unwrap();
    }
    assert!(!stock.settle(goods).unwrap(), "units are left");
    let bucket0 = stock.part_keys(goods, Part::Bucket(0)).stock;
    let left: i64 = stock
        .call("get", |con| ::redis::cmd("GET").arg(&bucket0).query(con))
        .unwrap();
    assert_eq!(left, 4, "the epoch before's move was received again");
}

/// A reservation void by a reconciliation that came between two buckets'
/// calls is answered `busy`, and its request id is forgotten at once and
/// its token's mark taken off (only while they still name that order): its
/// order can never be written, and a retry must be decided afresh, not told
/// for a minute that it is pending, nor that its token was used.
#[test]
fn a_void_reservations_request_id_is_forgotten() {
    let stock = open(AckMode::Durable);
    let goods = 36;
    stock.split(goods, 2);
    stock.load_next(goods, 10, &[]).unwrap();
    let now = crate::clock::now_ms();
    stock
        .issue_token_at(goods, 7, 77, now + 60_000, now)
        .unwrap();
    let id = seckill_proto::RequestId::new(0x5eed);
    let buyer = crate::store::Buyer {
        request_id: id,
        ..crate::store::fixtures::buy(7, 700, 77)
    };
    let tokened = crate::store::fixtures::tokened(1, now);
    let r = stock.reserve(goods, &tokened, &[buyer]).unwrap();
    assert_eq!(r.decisions, [Reservation::Reserved]);
    let bucket = bucket_of(7, 2);
    let keys = stock.part_keys(goods, Part::Bucket(bucket));
    let recorded = || -> Option<String> {
        let mut hget = ::redis::cmd("HGET");
        hget.arg(&keys.req).arg(format!("{:032x}", 0x5eed_u128));
        stock.call("hget", |con| hget.query(con)).unwrap()
    };
    let token = || -> Option<String> {
        let mut hget = ::redis::cmd("HGET");
        hget.arg(&keys.tokens).arg(77);
        stock.call("hget", |con| hget.query(con)).unwrap()
    };
    let issued = format!("7 {}", now + 60_000);
    assert_eq!(recorded(), Some("7 700".into()));
    assert_eq!(token(), Some(format!("{issued} 700")));
    // Another order's id and token are not touched.
    let other = crate::store::Buyer {
        order_no: 701,
        ..buyer
    };
    stock.forget_void(goods, &[&other]);
    assert_eq!(recorded(), Some("7 700".into()));
    assert_eq!(token(), Some(format!("{issued} 700")));
    stock.forget_void(goods, &[&buyer]);
    assert_eq!(recorded(), None);
    assert_eq!(token(), Some(issued));
}

/// A bucket Redis lost (its node restarted empty) in a call that another
/// bucket decided: its buyers are "in doubt", which has the sale reconcile
/// the goods, not "busy", which would leave the bucket lost until a
/// reconciliation came for another reason.
#[test]
fn a_lost_bucket_after_a_decided_one_is_in_doubt() {
    let stock = open(AckMode::Durable);
    let goods = 37;
    stock.split(goods, 2);
    stock.load_next(goods, 10, &[]).unwrap();
    let in_bucket = |b| (1..1000).find(|&u| bucket_of(u, 2) == b).unwrap();
    let (first, second) = (in_bucket(0), in_bucket(1));
    let lost = stock.part_keys(goods, Part::Bucket(1));
    let mut del = ::redis::cmd("DEL");
    del.arg(&lost.all()[..]);
    stock.call("del", |con| del.query::<()>(con)).unwrap();
    let r = stock
        .reserve(goods, &rules(1), &buyers(&[(first, 100), (second, 200)]))
        .unwrap();
    assert_eq!(r.decisions, [Reservation::Reserved, Reservation::InDoubt]);
}

/// A dry bucket whose refill finds the pool lost: its buyers are in doubt
/// (the sale reconciles the goods), not `busy` with nothing to reload it.
#[test]
fn a_refill_from_a_lost_pool_is_in_doubt() {
    let stock = open(AckMode::Durable);
    let goods = 38;
    stock.split(goods, 2);
    stock.load_next(goods, 10, &[]).unwrap();
    let user = (1..1000).find(|&u| bucket_of(u, 2) == 0).unwrap();
    let bucket = stock.part_keys(goods, Part::Bucket(0));
    let mut dry = ::redis::cmd("SET");
    dry.arg(&bucket.stock).arg(0);
    stock.call("set", |con| dry.query::<()>(con)).unwrap();
    let pool = stock.part_keys(goods, Part::Pool);
    let mut del = ::redis::cmd("DEL");
    del.arg(&pool.all()[..]);
    stock.call("del", |con| del.query::<()>(con)).unwrap();
    let r = stock
        .reserve(goods, &rules(1), &buyers(&[(user, 100)]))
        .unwrap();
    assert_eq!(r.decisions, [Reservation::InDoubt]);
}
