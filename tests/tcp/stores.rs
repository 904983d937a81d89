//! The production stores: stock in Redis, goods and orders in MySQL, in
//! both ack modes. Each test has its own database and key prefix.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use seckill_client::Purchase;

use crate::crash::buy_until_gone;
use crate::harness::{on_sale, while_busy, Backends, Server};

fn start(dir: &tempfile::TempDir, stores: &Backends, ack: &str) -> Server {
    let args = stores.args(ack);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    Server::start(&dir.path().join("unused.db"), &args)
}

/// 64 threads, 20,000 users, stock 1000: exactly 1000 orders in MySQL, each
/// one a client was told "ok", nobody twice, and Redis has 0 left.
fn flash_crowd(ack: &str) {
    const STOCK: u32 = 1000;
    const USERS: u64 = 20_000;
    let dir = tempfile::tempdir().unwrap();
    let stores = Backends::new();
    let server = start(&dir, &stores, ack);
    let goods = server
        .admin()
        .add_goods(on_sale("console", STOCK))
        .unwrap()
        .id;
    assert_eq!(
        stores.redis_stock(goods),
        Some(STOCK),
        "stock preloaded into Redis"
    );

    let next_user = Arc::new(AtomicU64::new(1));
    let told = Arc::new(Mutex::new(HashMap::new()));
    for t in buy_until_gone(&server, goods, 64, &next_user, &told) {
        t.join().unwrap();
    }
    let told = told.lock().unwrap().clone();
    assert_eq!(told.len(), STOCK as usize, "ok replies");
    assert!(
        next_user.load(std::sync::atomic::Ordering::Relaxed) <= USERS,
        "sold out within {USERS} users"
    );
    stores.wait_written(goods, STOCK as usize);
    let rows = stores.orders();
    let stored: HashMap<u64, u64> = rows.iter().map(|&(no, user, _, _)| (user, no)).collect();
    assert_eq!(stored.len(), rows.len(), "a user holds two orders");
    assert_eq!(stored, told, "MySQL holds exactly the orders told ok");
    assert_eq!(stores.redis_stock(goods), Some(0));
    assert_eq!(server.client().get_goods(goods).unwrap().remaining, 0);
}

#[test]
fn flash_crowd_durable() {
    flash_crowd("durable");
}

#[test]
fn flash_crowd_queued() {
    flash_crowd("queued");
}

/// SIGKILL mid-sale, five times in one sale, restarting each time: every
/// order told "ok" is in MySQL exactly once, RECONCILE finds nothing to
/// repair after the restart's own reconciliation, Redis has total − orders
/// left, and the sale ends at exactly its stock.
fn sigkill_mid_sale(ack: &str) {
    const STOCK: u32 = 4000;
    let dir = tempfile::tempdir().unwrap();
    let stores = Backends::new();
    let mut server = start(&dir, &stores, ack);
    let goods = server
        .admin()
        .add_goods(on_sale("camera", STOCK))
        .unwrap()
        .id;
    let next_user = Arc::new(AtomicU64::new(1));
    let told = Arc::new(Mutex::new(HashMap::new()));

    for round in 1..=5usize {
        let threads = buy_until_gone(&server, goods, 16, &next_user, &told);
        let deadline = Instant::now() + Duration::from_secs(30);
        while told.lock().unwrap().len() < 400 * round {
            assert!(Instant::now() < deadline, "sale made no progress");
            std::thread::sleep(Duration::from_millis(1));
        }
        server.kill();
        for t in threads {
            t.join().unwrap();
        }

        server = start(&dir, &stores, ack);
        let told_now = told.lock().unwrap().clone();
        // Queued orders left by the killed server are written by this one.
        let deadline = Instant::now() + Duration::from_secs(60);
        let rows = loop {
            // The queue first: the drain deletes an entry only after its
            // order is committed, so rows read after an empty queue hold
            // every queued order (read before, they could miss the last
            // batch written in between).
            let drained = stores.queue_len(goods) == 0;
            let rows = stores.orders();
            let stored: HashSet<u64> = rows.iter().map(|r| r.0).collect();
            if drained && told_now.values().all(|no| stored.contains(no)) {
                break rows;
            }
            assert!(
                Instant::now() < deadline,
                "acknowledged orders missing from MySQL"
            );
            std::thread::sleep(Duration::from_millis(50));
        };
        let mut numbers: Vec<u64> = rows.iter().map(|r| r.0).collect();
        numbers.sort_unstable();
        numbers.dedup();
        assert_eq!(numbers.len(), rows.len(), "an order stored twice");
        let users: HashSet<u64> = rows.iter().map(|r| r.1).collect();
        assert_eq!(users.len(), rows.len(), "a user holds two orders");
        for (user, no) in &told_now {
            assert!(
                rows.contains(&(*no, *user, goods, 0)),
                "order {no} of user {user}"
            );
        }

        let drifts = server.admin().reconcile(Some(goods)).unwrap();
        assert_eq!(drifts.len(), 1);
        assert!(
            drifts[0].is_in_step(),
            "drift after restart: {:?}",
            drifts[0]
        );
        let expected = STOCK - rows.len() as u32;
        assert_eq!(drifts[0].remaining, expected);
        assert_eq!(stores.redis_stock(goods), Some(expected), "round {round}");
        assert_eq!(
            server.client().get_goods(goods).unwrap().remaining,
            expected
        );
    }

    for t in buy_until_gone(&server, goods, 16, &next_user, &told) {
        t.join().unwrap();
    }
    stores.wait_written(goods, STOCK as usize);
    assert_eq!(stores.redis_stock(goods), Some(0));
}

#[test]
fn sigkill_mid_sale_durable() {
    sigkill_mid_sale("durable");
}

#[test]
fn sigkill_mid_sale_queued() {
    sigkill_mid_sale("queued");
}

/// The same BUY twice, and again on a new connection, gets the same order.
#[test]
fn a_retried_buy_returns_the_same_order() {
    for ack in ["durable", "queued"] {
        let dir = tempfile::tempdir().unwrap();
        let stores = Backends::new();
        let server = start(&dir, &stores, ack);
        let goods = server.admin().add_goods(on_sale("watch", 5)).unwrap().id;
        let mut client = server.client();
        let Purchase::Ordered(no) = client.buy(7, goods).unwrap() else {
            panic!("{ack}: first BUY not ok");
        };
        assert_eq!(client.buy(7, goods).unwrap(), Purchase::AlreadyBought(no));
        // Known at once, written or (queued mode) not yet.
        let order = client
            .order_status(7, goods)
            .unwrap()
            .expect("order status");
        assert_eq!(order.order_no, no);
        let mut again = server.client();
        assert_eq!(again.buy(7, goods).unwrap(), Purchase::AlreadyBought(no));
        stores.wait_written(goods, 1);
        // A new server process, whose cache starts empty, still knows it.
        drop(again);
        drop(client);
        server.kill();
        let server = start(&dir, &stores, ack);
        assert_eq!(
            server.client().buy(7, goods).unwrap(),
            Purchase::AlreadyBought(no),
            "{ack}"
        );
        assert_eq!(stores.redis_stock(goods), Some(4));
    }
}

/// Redis loses deductions (as a failover to a replica that lacked them
/// can) and puts units back on sale that were sold: the durable mode's
/// order writer refuses every order past the goods' total in its MySQL
/// transaction, the buyers are told `sold_out`, never "ok", and a
/// reconciliation sets Redis right.
#[test]
fn units_redis_lost_are_never_sold_twice_durable() {
    let dir = tempfile::tempdir().unwrap();
    let stores = Backends::new();
    let server = start(&dir, &stores, "durable");
    let goods = server.admin().add_goods(on_sale("vase", 5)).unwrap().id;
    let mut client = server.client();
    for user in 1..=5 {
        assert!(
            matches!(client.buy(user, goods).unwrap(), Purchase::Ordered(_)),
            "user {user}"
        );
    }
    // Three deductions lost: Redis has three units again, and three of its
    // holders are gone.
    let key = |k: &str| format!("{}{{g{goods}}}:{k}", stores.prefix);
    let mut redis = stores.redis();
    redis::cmd("SET")
        .arg(key("stock"))
        .arg(3)
        .query::<()>(&mut *redis)
        .unwrap();
    redis::cmd("HDEL")
        .arg(key("buyers"))
        .arg(&[1u64, 2, 3][..])
        .query::<()>(&mut *redis)
        .unwrap();
    drop(redis);
    // The catalog's refresh (every 500 ms) reads the three units, and BUYs
    // go to Redis again rather than being refused by the sold-out flag.
    let deadline = Instant::now() + Duration::from_secs(10);
    while server.client().get_goods(goods).unwrap().remaining == 0 {
        assert!(
            Instant::now() < deadline,
            "the server never saw Redis's units"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let mut told = Vec::new();
    for user in 6..=12 {
        told.push((user, while_busy(|| client.buy(user, goods))));
    }
    for (user, answer) in &told {
        assert!(
            matches!(answer, Ok(Purchase::SoldOut)),
            "user {user} after Redis lost units: {answer:?}"
        );
    }
    let live = stores.orders().iter().filter(|o| o.3 != 2).count();
    assert_eq!(live, 5, "orders past the stock");
    server.wait_for_log(
        "sold more units than the goods has",
        Duration::from_secs(10),
    );
    let drift = server.admin().reconcile(Some(goods)).unwrap();
    assert_eq!((drift[0].remaining, drift[0].holders), (0, 5), "{drift:?}");
    assert_eq!(stores.redis_stock(goods), Some(0));
}

/// The queued mode's twin: Redis loses a buyer's deduction and holder after
/// the drain wrote the order to MySQL (a failover to a replica that lacked
/// them). The buyer's second BUY takes the unit Redis counted back, and
/// MySQL refuses that order as their second: it is written as cancelled,
/// and its unit must not go back on sale, which would sell the goods'
/// last unit a second time (MySQL does not refuse queued orders past the
/// total: their buyers were told "ok" already). The goods is reconciled
/// instead.
#[test]
fn units_redis_lost_are_never_sold_twice_queued() {
    let dir = tempfile::tempdir().unwrap();
    let stores = Backends::new();
    let server = start(&dir, &stores, "queued");
    let goods = server.admin().add_goods(on_sale("vase", 5)).unwrap().id;
    // A second server, which will not have seen user 1's first order.
    let dir_b = tempfile::tempdir().unwrap();
    let other = start(&dir_b, &stores, "queued");
    let mut client = server.client();
    for user in 1..=5 {
        assert!(
            matches!(client.buy(user, goods).unwrap(), Purchase::Ordered(_)),
            "user {user}"
        );
    }
    stores.wait_written(goods, 5);
    // User 1's deduction and holder lost.
    let key = |k: &str| format!("{}{{g{goods}}}:{k}", stores.prefix);
    let mut redis = stores.redis();
    redis::cmd("SET")
        .arg(key("stock"))
        .arg(1)
        .query::<()>(&mut *redis)
        .unwrap();
    redis::cmd("HDEL")
        .arg(key("buyers"))
        .arg(1u64)
        .query::<()>(&mut *redis)
        .unwrap();
    drop(redis);
    let deadline = Instant::now() + Duration::from_secs(10);
    while other.client().get_goods(goods).unwrap().remaining == 0 {
        assert!(
            Instant::now() < deadline,
            "the server never saw Redis's unit"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let second = match other.client().buy(1, goods).unwrap() {
        Purchase::Ordered(n) => n,
        other => panic!("user 1's second BUY was not queued: {other:?}"),
    };
    // The drain writes it as cancelled.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !stores.orders().iter().any(|o| o.0 == second && o.3 == 2) {
        assert!(
            Instant::now() < deadline,
            "order {second} never written as cancelled: {:?}",
            stores.orders()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // Past the catalogs' refresh (500 ms), both servers sell from what
    // Redis says.
    std::thread::sleep(Duration::from_millis(1200));
    for user in 6..=9 {
        let via = if user % 2 == 0 { &server } else { &other };
        let answer = while_busy(|| via.client().buy(user, goods));
        assert!(
            matches!(answer, Ok(Purchase::SoldOut)),
            "user {user} after the refused order: {answer:?}"
        );
    }
    assert_eq!(stores.redis_stock(goods), Some(0));
    let live = stores.orders().iter().filter(|o| o.3 != 2).count();
    assert_eq!(live, 5, "orders past the stock: {:?}", stores.orders());
    let drift = server.admin().reconcile(Some(goods)).unwrap();
    assert_eq!((drift[0].remaining, drift[0].holders), (0, 5), "{drift:?}");
}

/// A queued server says at start where its Redis may lose orders it tells
/// "ok" (as Redis's own settings show them; this machine's Redis has
/// `appendonly no`), and a durable server, which does not rest on them,
/// says nothing of them.
#[test]
fn a_queued_server_names_what_redis_does_not_persist() {
    let stores = Backends::new();
    let settings: HashMap<String, String> = redis::cmd("CONFIG")
        .arg("GET")
        .arg("append*")
        .query(&mut *stores.redis())
        .unwrap();
    let expected = match (
        settings["appendonly"].as_str(),
        settings["appendfsync"].as_str(),
    ) {
        ("no", _) => Some("appendonly is no"),
        (_, "always") => None,
        _ => Some("not always"),
    };
    for ack in ["durable", "queued"] {
        let dir = tempfile::tempdir().unwrap();
        let server = start(&dir, &stores, ack);
        // Ready: start-up, and with it the check, is over.
        server.admin().add_goods(on_sale("lamp", 1)).unwrap();
        match (ack, expected) {
            ("queued", Some(risk)) => {
                let log = server.wait_for_log(risk, Duration::from_secs(10));
                assert!(log.contains("queued mode: redis redis:"), "{log}");
            }
            _ => assert!(
                !server.log().contains("queued mode:"),
                "{ack}: {}",
                server.log()
            ),
        }
    }
}

/// A sale switched from `--ack queued` to `durable` while orders told "ok"
/// were still queued in Redis (MySQL holding up their writes, the queued
/// server killed -9): the durable server keeps their units held, writes
/// them, and tells their buyers they have them. Before, its start-up
/// reconciliation counted MySQL's orders only, so those units went back on
/// sale and the orders were never written.
#[test]
fn a_durable_server_writes_what_a_queued_one_left() {
    use mysql::prelude::Queryable;
    const STOCK: u32 = 10;
    const BOUGHT: u64 = 4;
    let dir = tempfile::tempdir().unwrap();
    let stores = Backends::new();
    let queued = start(&dir, &stores, "queued");
    let goods = queued.admin().add_goods(on_sale("kite", STOCK)).unwrap().id;
    // The queue drain's writes wait on the goods' row, held here.
    let mut holder = stores.mysql();
    holder.query_drop("START TRANSACTION").unwrap();
    holder
        .exec_drop(
            format!(
                "SELECT id FROM `{}`.goods WHERE id = ? FOR UPDATE",
                stores.db
            ),
            (goods,),
        )
        .unwrap();
    let mut client = queued.client();
    let told: HashMap<u64, u64> = (1..=BOUGHT)
        .map(|user| match client.buy(user, goods).unwrap() {
            Purchase::Ordered(no) => (user, no),
            other => panic!("user {user}: {other:?}"),
        })
        .collect();
    drop(client);
    queued.kill();
    holder.query_drop("ROLLBACK").unwrap();
    drop(holder);
    assert_eq!(stores.orders().len(), 0, "written before the switch");

    let durable = start(&dir, &stores, "durable");
    stores.wait_written(goods, BOUGHT as usize);
    let mut client = durable.client();
    for (user, no) in &told {
        assert_eq!(
            client.buy(*user, goods).unwrap(),
            Purchase::AlreadyBought(*no),
            "user {user}"
        );
    }
    // Exactly the units the queued orders did not take are left.
    let mut sold = 0;
    for user in 100..100 + u64::from(STOCK) {
        match while_busy(|| client.buy(user, goods)).unwrap() {
            Purchase::Ordered(_) => sold += 1,
            Purchase::SoldOut => {}
            other => panic!("user {user}: {other:?}"),
        }
    }
    assert_eq!(sold, u64::from(STOCK) - BOUGHT);
    assert_eq!(stores.queue_len(goods), 0);
    stores.wait_written(goods, STOCK as usize);
}

/// A unit held in Redis for an order MySQL has as cancelled (the server
/// that cancelled it died before it gave the unit back), on a sold-out
/// goods: no BUY reaches a worker (the reactors answer "sold out" from the
/// flag), so nothing but the refresh's look at stranded units puts it back
/// on sale: within a minute and a little, a new buyer gets it.
#[test]
fn a_unit_stranded_by_a_dead_canceller_is_sold_again() {
    use mysql::prelude::Queryable;
    let dir = tempfile::tempdir().unwrap();
    let stores = Backends::new();
    let server = start(&dir, &stores, "durable");
    let goods = server.admin().add_goods(on_sale("drum", 1)).unwrap().id;
    let mut client = server.client();
    let Purchase::Ordered(no) = client.buy(1, goods).unwrap() else {
        panic!("the one unit not sold");
    };
    assert_eq!(client.buy(2, goods).unwrap(), Purchase::SoldOut);
    // The cancel as its server commits it, and nothing after.
    let db = &stores.db;
    let mut mysql = stores.mysql();
    mysql
        .exec_drop(
            format!("UPDATE `{db}`.orders SET state = 2, live_slot = NULL WHERE order_no = ?"),
            (no,),
        )
        .unwrap();
    mysql
        .exec_drop(
            format!("UPDATE `{db}`.goods SET live_orders = live_orders - 1 WHERE id = ?"),
            (goods,),
        )
        .unwrap();
    assert_eq!(stores.redis_stock(goods), Some(0));
    let deadline = Instant::now() + Duration::from_secs(90);
    let bought = loop {
        // Busy while it is reconciled.
        match while_busy(|| client.buy(2, goods)).unwrap() {
            Purchase::Ordered(no) => break no,
            Purchase::SoldOut => {}
            other => panic!("{other:?}"),
        }
        assert!(
            Instant::now() < deadline,
            "the stranded unit never came back"
        );
        std::thread::sleep(Duration::from_millis(500));
    };
    assert_ne!(bought, no);
    server.wait_for_log("units in no live order", Duration::from_secs(1));
}
