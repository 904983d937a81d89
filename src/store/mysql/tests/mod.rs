//! What only the MySQL store does, against the real MySQL/MariaDB
//! (`SECKILL_TEST_MYSQL`, default mysql://root@127.0.0.1:3306): each test in
//! a database of its own, dropped when the test ends, failing or not. What
//! every order store does is in `store::conformance::orders`.

use std::sync::Arc;
use std::time::Duration;

use ::mysql::prelude::Queryable;

use super::schema::{table_ddl, SCHEMA};
use super::MysqlStore;
use crate::clock::now_ms;
use crate::store::conformance::orders::{due as due_at, new_goods, order};
use crate::store::testdb::TestDb;
use crate::store::{OrderStore, StoreError, Written};

mod holders;
mod load;
mod schema;
mod sweep;

fn open(db: &TestDb) -> MysqlStore {
    MysqlStore::open(db.url()).unwrap_or_else(|e| panic!("open {}: {e}", db.url()))
}

fn count(db: &TestDb, sql: &str) -> u64 {
    db.conn()
        .query_first(sql)
        .expect("count query")
        .expect("one row")
}

/// A server started before MySQL: the store is made without a
/// connection, and prepared once MySQL answers.
#[test]
fn a_store_made_before_mysql_answers_is_prepared_later() {
    assert!(
        MysqlStore::new("postgres://nope").is_err(),
        "a URL that can never work is refused at once"
    );
    let db = TestDb::new();
    let store = MysqlStore::new(db.url()).expect("no connection needed");
    let down = MysqlStore::new("mysql://root@127.0.0.1:1/seckill").expect("no connection needed");
    assert!(matches!(down.prepare(), Err(StoreError::Unavailable(_))));
    store.prepare().expect("prepare");
    assert_eq!(store.add_goods(&new_goods(1), None).unwrap().total, 1);
}

/// The store's connections end a transaction left idle (a server stopped
/// in the middle of a batch would hold its goods' row lock until it woke)
/// on MariaDB, where the session setting exists; elsewhere, it is not set,
/// and the connections work all the same.
#[test]
fn the_stores_connections_end_an_idle_transaction_on_mariadb() {
    let db = TestDb::new();
    let store = open(&db);
    let (version, idle): (String, Option<u64>) = store
        .link
        .call("session", super::calls::Call::IDEMPOTENT, |conn| {
            let version: String = conn.query_first("SELECT VERSION()")?.unwrap_or_default();
            let idle: Option<u64> = conn
                .query_first("SELECT @@session.idle_transaction_timeout")
                .unwrap_or(None);
            Ok((version, idle))
        })
        .unwrap();
    if version.contains("MariaDB") {
        assert_eq!(idle, Some(30), "{version}");
    } else {
        assert_eq!(idle, None, "{version}");
    }
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

/// A goods whose count of live orders is below its live orders (an older
/// server undercounted it): a cancel and an expiry sweep stop the count at
/// 0, rather than fail on an unsigned subtraction (MySQL's 1690) for good.
#[test]
fn an_undercounted_goods_still_cancels_and_expires() {
    let db = TestDb::new();
    let store = open(&db);
    let g = store.add_goods(&new_goods(5), None).unwrap().id;
    let due = |no, user| crate::store::OrderRecord {
        pay_by_ms: 10,
        ..order(no, user, g)
    };
    let written = store
        .commit_orders(&[order(1, 1, g), due(2, 2), due(3, 3)], &[])
        .unwrap();
    assert_eq!(written, [Written::Stored; 3]);
    db.conn()
        .exec_drop("UPDATE goods SET live_orders = 0 WHERE id = ?", (g,))
        .unwrap();
    let cancelled = store.cancel(1, 1).unwrap().expect("order 1");
    assert!(cancelled.cancelled_now);
    let expired = store.expire_due(1_000, 10).unwrap();
    assert_eq!(expired.len(), 2);
    let live = count(
        &db,
        &format!("SELECT live_orders FROM goods WHERE id = {g}"),
    );
    assert_eq!(live, 0);
}

/// A data error (here: an unknown goods, refused by the foreign key) fails
/// the batch, never vanishes as a warning as it would with `INSERT IGNORE`.
#[test]
fn a_data_error_fails_the_batch_as_inconsistent() {
    let db = TestDb::new();
    let store = open(&db);
    let g = store.add_goods(&new_goods(10), None).unwrap();
    let result = store.insert_orders(&[order(300, 9, g.id), order(400, 1, g.id + 1)]);
    assert!(
        matches!(result, Err(StoreError::Inconsistent(_))),
        "{result:?}"
    );
    assert_eq!(count(&db, "SELECT COUNT(*) FROM orders"), 0);
    assert_eq!(
        store.insert_orders(&[order(300, 9, g.id)]).unwrap(),
        [Written::Stored]
    );
}

/// The numbers of the orders one sweep at `now_ms` cancels, at most `max`.
fn order_nos_swept(store: &MysqlStore, now_ms: u64, max: usize) -> Vec<u64> {
    let swept = store.expire_due(now_ms, max).unwrap();
    swept.iter().map(|o| o.order_no).collect()
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
    let g = store.add_goods(&new_goods(10), None).unwrap();
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
    assert_eq!(store.restock(g.id, 1).unwrap().raised().total, 11);
    assert!(!store.link.outage.is_down());
}

/// Order batches run at READ COMMITTED, and a batch's locking read of a
/// user's slots locks those rows and no gap and no row past them: so
/// another goods' order for a neighbouring user of the purchase-limit key
/// (which leads with the user) goes in at once, and the next user's order
/// of another goods can be cancelled at once. At REPEATABLE READ, the
/// session's level, the same read locks the gap up to the next user's
/// entry, and the same insert waits out its lock (1 s here): the control
/// that shows the test can tell.
#[test]
fn an_order_batch_locks_no_gap_past_a_users_slots() {
    use super::calls::{Call, Failure};
    use crate::store::batch::Table;

    let db = TestDb::new();
    let store = open(&db);
    let g1 = store.add_goods(&new_goods(10), None).unwrap().id;
    let g2 = store.add_goods(&new_goods(10), None).unwrap().id;
    store
        .insert_orders(&[order(1, 100, g1), order(2, 130, g2)])
        .unwrap();
    assert!(
        store.link.read_committed().unwrap(),
        "no statement-based binary log here"
    );
    let mut other = db.conn();
    other
        .query_drop("SET SESSION innodb_lock_wait_timeout = 1")
        .unwrap();
    let mut beside = |sql: String| other.query_drop(sql).map_err(|e| e.to_string());
    let insert_105 = |order_no: u64| {
        format!(
            "INSERT INTO orders (order_no, user_id, goods_id, state, live_slot, created_ms, pay_by_ms)
             VALUES ({order_no}, 105, {g2}, 0, 1, 1, 1)"
        )
    };
    // The statement of a cancel, of user 130's order of goods 2.
    let cancel_130 = "UPDATE orders SET state = 2, live_slot = NULL WHERE order_no = 2".to_string();
    let mut read_slots_then = |how: Call, statements: &[String]| {
        store.link.call("t", how, |conn| {
            assert_eq!(store.rows(conn).live_slots(g1, 100)?, vec![(1, 1)]);
            let done: Result<Vec<()>, String> =
                statements.iter().map(|sql| beside(sql.clone())).collect();
            Ok::<_, Failure>(done)
        })
    };
    let control = read_slots_then(Call::SETTLE, &[insert_105(3)]).unwrap();
    assert!(
        control.as_ref().is_err_and(|e| e.contains("1205")),
        "at REPEATABLE READ the insert should wait out its lock: {control:?}"
    );
    let batch = read_slots_then(Call::ORDERS, &[insert_105(3), cancel_130]).unwrap();
    assert_eq!(
        batch,
        Ok(vec![(), ()]),
        "a batch's slot read held up another goods"
    );
}

/// A batch whose goods is full waits for a transaction still giving a unit
/// back (a cancel), at READ COMMITTED too, rather than refusing its orders
/// on the goods' last committed row.
#[test]
fn a_full_goods_fence_waits_for_a_cancel_in_flight() {
    let db = TestDb::new();
    let store = Arc::new(open(&db));
    let g = store.add_goods(&new_goods(1), None).unwrap().id;
    let e = store.next_epoch(g, 0).unwrap();
    assert_eq!(
        store.commit_orders(&[order(1, 1, g)], &[e]).unwrap(),
        [Written::Stored]
    );
    let mut cancel = db.conn();
    cancel.query_drop("START TRANSACTION").unwrap();
    cancel
        .exec_drop(
            "UPDATE orders SET state = 2, live_slot = NULL WHERE order_no = 1",
            (),
        )
        .unwrap();
    cancel
        .exec_drop(
            "UPDATE goods SET live_orders = live_orders - 1 WHERE id = ?",
            (g,),
        )
        .unwrap();
    let batch = {
        let store = store.clone();
        std::thread::spawn(move || store.commit_orders(&[order(2, 2, g)], &[e]))
    };
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        !batch.is_finished(),
        "the fence did not wait for the cancel"
    );
    cancel.query_drop("COMMIT").unwrap();
    assert_eq!(batch.join().unwrap().unwrap(), [Written::Stored]);
}

/// A goods' live orders are counted from `orders_by_goods` alone, without
/// reading their rows: the recount holds up the goods' order writes for as
/// long as the count takes.
#[test]
fn the_live_count_reads_the_goods_index_alone() {
    let db = TestDb::new();
    let store = open(&db);
    let g = store.add_goods(&new_goods(10), None).unwrap().id;
    store
        .insert_orders(&[order(1, 10, g), order(2, 20, g)])
        .unwrap();
    let sql = super::schema::live_count_sql(store.layout.get());
    let plan: ::mysql::Row = db
        .conn()
        .exec_first(format!("EXPLAIN {sql}"), (g,))
        .unwrap()
        .unwrap();
    let extra: Option<String> = plan.get("Extra").unwrap();
    assert!(
        extra.as_deref().unwrap_or("").contains("Using index"),
        "the rows are read: {plan:?}"
    );
}

/// MySQL's clock, which each server's is compared with at start: Unix
/// milliseconds whatever the session's time zone, within a moment of this
/// process's on one machine.
#[test]
fn the_order_stores_clock_is_the_databases_in_unix_ms() {
    let db = TestDb::new();
    let store = open(&db);
    let before = crate::clock::now_ms();
    let theirs = store.clock_ms().unwrap().expect("MySQL has a clock");
    let after = crate::clock::now_ms();
    assert!(
        before.saturating_sub(1_000) <= theirs && theirs <= after + 1_000,
        "{before} <= {theirs} <= {after}"
    );
}
