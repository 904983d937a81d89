//! Against the real MySQL/MariaDB (`SECKILL_TEST_MYSQL`, default
//! mysql://root@127.0.0.1:3306): each test in a database of its own,
//! dropped when the test ends, failing or not.

use std::collections::BTreeSet;
use std::sync::Arc;

use ::mysql::prelude::Queryable;
use seckill_proto::{NewGoods, OrderState, SaleRules};

use super::table_ddl;
use super::*;
use crate::store::testdb::TestDb;

fn open(db: &TestDb) -> MysqlStore {
    MysqlStore::open(db.url()).unwrap_or_else(|e| panic!("open {}: {e}", db.url()))
}

fn new_goods(stock: u32) -> NewGoods {
    NewGoods {
        name: "Phone X".into(),
        price_cents: 1999,
        stock,
        start_ms: 1_000,
        end_ms: 2_000,
        rules: SaleRules::default(),
    }
}

fn order(order_no: u64, user_id: u64, goods_id: u64) -> OrderRecord {
    OrderRecord {
        order_no,
        user_id,
        goods_id,
        state: OrderState::Created,
        created_ms: 1_500,
        pay_by_ms: u64::MAX,
    }
}

fn count(db: &TestDb, sql: &str) -> u64 {
    db.conn()
        .query_first(sql)
        .expect("count query")
        .expect("one row")
}

#[test]
fn the_schema_sql_yields_its_create_tables() {
    let ddl = table_ddl(SCHEMA);
    assert_eq!(ddl.len(), 2, "{ddl:#?}");
    assert!(ddl[0].starts_with("CREATE TABLE IF NOT EXISTS goods"));
    assert!(ddl[1].starts_with("CREATE TABLE IF NOT EXISTS orders"));
}

#[test]
fn open_creates_the_database_and_tables_and_can_be_repeated() {
    let db = TestDb::new();
    let store = open(&db);
    let tables = count(
        &db,
        &format!(
            "SELECT COUNT(*) FROM information_schema.tables
             WHERE table_schema = '{}' AND table_name IN ('goods', 'orders')",
            db.name()
        ),
    );
    assert_eq!(tables, 2);
    let one_live = count(
        &db,
        &format!(
            "SELECT COUNT(*) FROM information_schema.statistics
             WHERE table_schema = '{}' AND table_name = 'orders'
             AND index_name = 'orders_one_live' AND non_unique = 0",
            db.name()
        ),
    );
    assert_eq!(one_live, 3, "a unique key on three columns");
    let g = store.add_goods(&new_goods(5)).unwrap();
    drop(store);
    // Again on the existing database: nothing is recreated or lost.
    let store = open(&db);
    assert_eq!(store.goods().unwrap(), vec![g]);
}

#[test]
fn open_fails_as_unavailable_when_nothing_listens() {
    // Port 1 (tcpmux) is closed on any test machine.
    match MysqlStore::open("mysql://root@127.0.0.1:1/seckill") {
        Err(StoreError::Unavailable(_)) => {}
        Err(e) => panic!("expected Unavailable, got {e}"),
        Ok(_) => panic!("opened a store on port 1"),
    }
}

#[test]
fn goods_are_added_listed_and_restocked() {
    let db = TestDb::new();
    let store = open(&db);
    assert_eq!(store.goods().unwrap(), vec![]);
    let a = store.add_goods(&new_goods(5)).unwrap();
    assert_eq!(
        (
            a.name.as_str(),
            a.price_cents,
            a.total,
            a.start_ms,
            a.end_ms
        ),
        ("Phone X", 1999, 5, 1_000, 2_000)
    );
    let b = store
        .add_goods(&NewGoods {
            name: "手机 🚀".into(),
            ..new_goods(1)
        })
        .unwrap();
    assert_eq!(b.name, "手机 🚀", "utf8mb4 end to end");
    assert!(b.id > a.id);
    assert_eq!(store.goods().unwrap(), vec![a.clone(), b.clone()]);

    assert_eq!(store.restock(a.id, 3).unwrap().total, 8);
    assert_eq!(store.restock(a.id, 0).unwrap().total, 8);
    assert_eq!(store.restock(b.id, u32::MAX).unwrap().total, u32::MAX);
    assert_eq!(store.goods().unwrap()[0].total, 8);
    assert!(matches!(
        store.restock(b.id + 100, 1),
        Err(StoreError::UnknownGoods(id)) if id == b.id + 100
    ));
}

#[test]
fn a_big_batch_is_stored_in_chunks_and_a_retry_doubles_nothing() {
    let db = TestDb::new();
    let store = open(&db);
    let g = store.add_goods(&new_goods(2500)).unwrap();
    let batch: Vec<_> = (0..2500).map(|i| order(10_000 + i, i, g.id)).collect();
    let stored = vec![Written::Stored; batch.len()];
    assert_eq!(store.insert_orders(&batch).unwrap(), stored);
    // A retried batch (its commit's reply was lost) is no error.
    assert_eq!(store.insert_orders(&batch).unwrap(), stored);
    assert_eq!(count(&db, "SELECT COUNT(*) FROM orders"), 2500);
    // Half new, half already stored, across a chunk boundary.
    let more: Vec<_> = (1500..3500).map(|i| order(10_000 + i, i, g.id)).collect();
    assert_eq!(
        store.insert_orders(&more).unwrap(),
        vec![Written::Stored; 2000]
    );
    assert_eq!(count(&db, "SELECT COUNT(*) FROM orders"), 3500);
    assert_eq!(store.insert_orders(&[]).unwrap(), vec![]);
}

#[test]
fn a_second_live_order_is_refused_by_the_database_and_only_it() {
    let db = TestDb::new();
    let store = open(&db);
    let g = store.add_goods(&new_goods(10)).unwrap();
    store.insert_orders(&[order(100, 7, g.id)]).unwrap();
    let written = store
        .insert_orders(&[
            order(200, 1, g.id),
            order(201, 7, g.id),
            order(202, 2, g.id),
        ])
        .unwrap();
    assert_eq!(
        written,
        [Written::Stored, Written::Duplicate(100), Written::Stored]
    );
    assert_eq!(store.find_order(7, g.id).unwrap().unwrap().order_no, 100);
    assert_eq!(store.find_order(2, g.id).unwrap().unwrap().order_no, 202);
    assert_eq!(count(&db, "SELECT COUNT(*) FROM orders"), 3);
}

#[test]
fn a_reused_order_number_is_inconsistent_and_writes_nothing() {
    let db = TestDb::new();
    let store = open(&db);
    let g = store.add_goods(&new_goods(10)).unwrap();
    store.insert_orders(&[order(100, 7, g.id)]).unwrap();
    // 100 belongs to user 7; user 8 holds nothing.
    let result = store.insert_orders(&[order(300, 9, g.id), order(100, 8, g.id)]);
    assert!(
        matches!(result, Err(StoreError::Inconsistent(_))),
        "{result:?}"
    );
    assert_eq!(store.find_order(9, g.id).unwrap(), None, "rolled back");
    // A data error (here: an unknown goods) fails the batch, never
    // vanishes as a warning.
    let result = store.insert_orders(&[order(400, 1, g.id + 1)]);
    assert!(
        matches!(result, Err(StoreError::Inconsistent(_))),
        "{result:?}"
    );
    assert_eq!(count(&db, "SELECT COUNT(*) FROM orders"), 1);
    // The store is still usable after both.
    assert_eq!(
        store.insert_orders(&[order(500, 9, g.id)]).unwrap(),
        [Written::Stored]
    );
}

/// Reconciliation reads the holders while another connection may still
/// be committing orders: the read waits for that transaction rather than
/// miss its orders.
#[test]
fn live_holders_wait_for_orders_still_being_committed() {
    let db = TestDb::new();
    let store = std::sync::Arc::new(open(&db));
    let g = store.add_goods(&new_goods(10)).unwrap();
    let mut writer = db.conn();
    writer.query_drop("START TRANSACTION").unwrap();
    writer
        .exec_drop(
            "INSERT INTO orders (order_no, user_id, goods_id, state, live_slot, created_ms, pay_by_ms)
             VALUES (?, ?, ?, 0, 1, 1, 1)",
            (77u64, 7u64, g.id),
        )
        .unwrap();
    let reader = {
        let store = store.clone();
        std::thread::spawn(move || store.live_holders(g.id))
    };
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        !reader.is_finished(),
        "the read did not wait for the commit"
    );
    writer.query_drop("COMMIT").unwrap();
    assert_eq!(reader.join().unwrap().unwrap(), vec![(7, 77)]);
}

#[test]
fn live_holders_and_find_order_skip_cancelled_orders() {
    let db = TestDb::new();
    let store = open(&db);
    let g = store.add_goods(&new_goods(10)).unwrap();
    let other = store.add_goods(&new_goods(10)).unwrap();
    let cancelled = OrderRecord {
        state: OrderState::Cancelled,
        ..order(100, 1, g.id)
    };
    let paid = OrderRecord {
        state: OrderState::Paid,
        created_ms: 1_234,
        pay_by_ms: u64::MAX,
        ..order(101, 2, g.id)
    };
    let written = store
        .insert_orders(&[cancelled, paid.clone(), order(102, 3, other.id)])
        .unwrap();
    assert_eq!(written, [Written::Stored; 3]);
    assert_eq!(store.live_holders(g.id).unwrap(), vec![(2, 101)]);
    assert_eq!(store.find_order(2, g.id).unwrap(), Some(paid));
    assert_eq!(store.find_order(1, g.id).unwrap(), None);
    assert_eq!(store.find_order(3, g.id).unwrap(), None);
    // After a cancel the user may buy again: the cancelled order holds
    // no slot of the unique key.
    assert_eq!(
        store.insert_orders(&[order(103, 1, g.id)]).unwrap(),
        [Written::Stored]
    );
    let mut holders = store.live_holders(g.id).unwrap();
    holders.sort_unstable();
    assert_eq!(holders, vec![(1, 103), (2, 101)]);
    assert_eq!(store.live_holders(other.id + 1).unwrap(), vec![]);
}

/// Kills the store's connections from the side, as a MySQL restart or
/// `wait_timeout` would.
fn kill_store_connections(db: &TestDb) -> usize {
    let mut admin = db.conn();
    let ids: Vec<u64> = admin
        .query(format!(
            "SELECT id FROM information_schema.processlist
             WHERE db = '{}' AND id <> CONNECTION_ID()",
            db.name()
        ))
        .unwrap();
    for id in &ids {
        admin.query_drop(format!("KILL CONNECTION {id}")).unwrap();
    }
    ids.len()
}

#[test]
fn a_dead_connection_is_replaced() {
    let db = TestDb::new();
    let store = open(&db);
    let g = store.add_goods(&new_goods(10)).unwrap();
    store.insert_orders(&[order(100, 1, g.id)]).unwrap();
    assert!(kill_store_connections(&db) > 0);
    // Idempotent calls are tried again on a new connection.
    assert_eq!(store.find_order(1, g.id).unwrap().unwrap().order_no, 100);
    assert_eq!(
        store.insert_orders(&[order(101, 2, g.id)]).unwrap(),
        [Written::Stored]
    );
    assert!(!store.link.outage.is_down());
    // A restock is not: its link broke once it had begun, so it may or
    // may not have been applied (here it was not). The one after works.
    assert!(kill_store_connections(&db) > 0);
    match store.restock(g.id, 1) {
        Err(StoreError::Indeterminate(_)) => assert!(store.link.outage.is_down()),
        other => panic!("a restock on a killed connection: {other:?}"),
    }
    assert_eq!(store.restock(g.id, 1).unwrap().total, 11);
    assert!(!store.link.outage.is_down());
}

#[test]
fn ids_above_i64_max_round_trip() {
    let db = TestDb::new();
    let store = open(&db);
    let big = i64::MAX as u64 + 10;
    db.conn()
        .query_drop(format!("ALTER TABLE goods AUTO_INCREMENT = {big}"))
        .unwrap();
    let g = store
        .add_goods(&NewGoods {
            price_cents: u64::MAX,
            start_ms: u64::MAX - 1,
            end_ms: u64::MAX,
            rules: SaleRules::default(),
            ..new_goods(1)
        })
        .unwrap();
    assert_eq!(g.id, big);
    assert_eq!(
        (g.price_cents, g.start_ms, g.end_ms),
        (u64::MAX, u64::MAX - 1, u64::MAX)
    );
    assert_eq!(store.restock(g.id, 1).unwrap().total, 2);
    assert_eq!(store.goods().unwrap()[0].id, big);
    let o = OrderRecord {
        created_ms: u64::MAX,
        pay_by_ms: u64::MAX,
        ..order(u64::MAX, u64::MAX - 1, g.id)
    };
    assert_eq!(
        store.insert_orders(std::slice::from_ref(&o)).unwrap(),
        [Written::Stored]
    );
    assert_eq!(
        store.insert_orders(std::slice::from_ref(&o)).unwrap(),
        [Written::Stored]
    );
    assert_eq!(
        store
            .insert_orders(&[order(u64::MAX - 5, u64::MAX - 1, g.id)])
            .unwrap(),
        [Written::Duplicate(u64::MAX)]
    );
    assert_eq!(
        store.live_holders(g.id).unwrap(),
        vec![(u64::MAX - 1, u64::MAX)]
    );
    assert_eq!(store.find_order(u64::MAX - 1, g.id).unwrap(), Some(o));
}

// PAY, CANCEL and the expiry, racing.

fn goods(store: &MysqlStore, limit: u8) -> GoodsId {
    store
        .add_goods(&NewGoods {
            name: "lamp".into(),
            price_cents: 100,
            stock: 10_000,
            start_ms: 0,
            end_ms: u64::MAX,
            rules: SaleRules {
                per_user_limit: limit,
                pay_window_ms: 1000,
                token_required: false,
            },
        })
        .unwrap()
        .id
}

/// An order due at `pay_by_ms`.
fn due(order_no: u64, user_id: u64, goods_id: u64, pay_by_ms: u64) -> OrderRecord {
    OrderRecord {
        pay_by_ms,
        ..order(order_no, user_id, goods_id)
    }
}

#[test]
fn pay_cancel_and_expiry_settle_each_order_once() {
    let db = TestDb::new();
    let store = open(&db);
    let g = goods(&store, 1);
    store
        .insert_orders(&[due(1, 1, g, 100), due(2, 2, g, 100), due(3, 3, g, 200)])
        .unwrap();
    assert_eq!(store.pay(9, 1, 50).unwrap(), None, "someone else's order");
    let paid = store.pay(1, 1, 50).unwrap().unwrap();
    assert_eq!(
        (paid.order.state, paid.cancelled_now),
        (OrderState::Paid, false)
    );
    assert_eq!(
        store.pay(1, 1, 500).unwrap().unwrap().order.state,
        OrderState::Paid
    );
    assert_eq!(
        store.cancel(1, 1).unwrap().unwrap().order.state,
        OrderState::Paid
    );
    let cancelled = store.cancel(2, 2).unwrap().unwrap();
    assert!(cancelled.cancelled_now);
    assert!(!store.cancel(2, 2).unwrap().unwrap().cancelled_now, "once");
    // Past its window, a PAY cancels; the sweep finds nothing left.
    let late = store.pay(3, 3, 200).unwrap().unwrap();
    assert_eq!(
        (late.order.state, late.cancelled_now),
        (OrderState::Cancelled, true)
    );
    assert!(store.expire_due(1000, 10).unwrap().is_empty());
    assert_eq!(store.live_holders(g).unwrap(), vec![(1, 1)]);
    // A cancelled order frees its user's slot; the list is newest first.
    store.insert_orders(&[due(4, 2, g, 100)]).unwrap();
    let listed: Vec<_> = store
        .orders_of(2, 10)
        .unwrap()
        .into_iter()
        .map(|o| (o.order_no, o.state))
        .collect();
    assert_eq!(
        listed,
        [(4, OrderState::Created), (2, OrderState::Cancelled)]
    );
    let saved = store.save_sale(g, true, 5, 6).unwrap();
    assert!(saved.paused && saved.start_ms == 5 && saved.end_ms == 6);
}

#[test]
fn a_purchase_limit_gives_each_order_its_own_slot() {
    let db = TestDb::new();
    let store = open(&db);
    let g = goods(&store, 2);
    let batch = [due(1, 7, g, 9), due(2, 7, g, 9), due(3, 7, g, 9)];
    assert_eq!(
        store.insert_orders(&batch).unwrap(),
        [Written::Stored, Written::Stored, Written::Duplicate(1)]
    );
    assert_eq!(
        store.insert_orders(&batch[..2]).unwrap(),
        [Written::Stored; 2]
    );
    store.cancel(7, 1).unwrap();
    assert_eq!(store.insert_orders(&batch[2..]).unwrap(), [Written::Stored]);
    let mut live = store.live_holders(g).unwrap();
    live.sort_unstable();
    assert_eq!(live, [(7, 2), (7, 3)]);
}

/// 2000 orders all due, paid by one thread while two "servers" (stores
/// with pools of their own) sweep: every order ends paid or cancelled,
/// each cancelled one is returned by exactly one sweep, and a PAY told
/// "paid" is paid.
#[test]
fn pays_racing_two_expiry_sweeps_settle_each_order_once() {
    const ORDERS: u64 = 2000;
    let db = TestDb::new();
    let store = Arc::new(open(&db));
    let g = goods(&store, 1);
    let batch: Vec<_> = (1..=ORDERS).map(|n| due(n, n, g, 1000)).collect();
    store.insert_orders(&batch).unwrap();

    let sweeper = |store: Arc<MysqlStore>| {
        std::thread::spawn(move || {
            let mut mine = Vec::new();
            loop {
                let got = store.expire_due(1000, 50).unwrap();
                if got.is_empty() {
                    return mine;
                }
                mine.extend(got.into_iter().map(|o| o.order_no));
            }
        })
    };
    let other = Arc::new(open(&db));
    let sweeps = [sweeper(store.clone()), sweeper(other)];
    // Pays as of a moment the window is still open (the PAY's clock
    // read before the deadline; the sweeps' after it).
    let payer = {
        let store = store.clone();
        std::thread::spawn(move || {
            (1..=ORDERS)
                .rev()
                .filter(|&n| {
                    let s = store.pay(n, n, 999).unwrap().unwrap();
                    assert!(!s.cancelled_now);
                    s.order.state == OrderState::Paid
                })
                .collect::<BTreeSet<u64>>()
        })
    };
    let paid = payer.join().unwrap();
    let swept: Vec<Vec<u64>> = sweeps.into_iter().map(|t| t.join().unwrap()).collect();
    let mut cancelled = BTreeSet::new();
    for n in swept.iter().flatten() {
        assert!(cancelled.insert(*n), "order {n} expired twice");
    }
    assert!(
        paid.is_disjoint(&cancelled),
        "an order both paid and cancelled"
    );
    assert_eq!(paid.len() + cancelled.len(), ORDERS as usize);
    let states: Vec<(u64, u8)> = db
        .conn()
        .query("SELECT order_no, state FROM orders ORDER BY order_no")
        .unwrap();
    for (n, state) in states {
        let want = if paid.contains(&n) { 1 } else { 2 };
        assert_eq!(state, want, "order {n}");
    }
    // The race was real: both sides won some.
    assert!(
        !paid.is_empty() && !cancelled.is_empty(),
        "{} paid",
        paid.len()
    );
}
