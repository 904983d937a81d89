//! The expiry sweep on MySQL: which goods it reads, what it takes, and the
//! unpaid marks it reads them by.

use super::*;

/// A goods table made before the unpaid marks gets the column from its
/// orders: the latest deadline of a goods' created orders (paid and
/// cancelled ones not counted), 0 for a goods with none.
#[test]
fn open_marks_the_unpaid_orders_of_an_older_goods_table() {
    let db = TestDb::new();
    let store = open(&db);
    let g = store.add_goods(&new_goods(5), None).unwrap().id;
    let h = store.add_goods(&new_goods(5), None).unwrap().id;
    let orders = [
        due_at(1, 1, g, 500),
        due_at(2, 2, g, 700),
        due_at(3, 3, g, 900),
        due_at(4, 4, h, 800),
    ];
    store.insert_orders(&orders).unwrap();
    assert!(store.pay(3, 3, 100).unwrap().is_some());
    assert!(store.cancel(4, 4).unwrap().unwrap().cancelled_now);
    drop(store);
    db.conn()
        .query_drop("ALTER TABLE goods DROP INDEX goods_unpaid, DROP COLUMN unpaid_until_ms")
        .expect("drop the column");
    let _store = open(&db);
    let mark = |goods| {
        count(
            &db,
            &format!("SELECT unpaid_until_ms FROM goods WHERE id = {goods}"),
        )
    };
    assert_eq!(mark(g), 700);
    assert_eq!(mark(h), 0);
}

/// The expiry sweep reads each goods' range of created orders past their
/// window (through `orders_by_goods`) and stops at `max`: paid orders,
/// orders still in their window and other states are left.
#[test]
fn the_sweep_takes_due_orders_of_every_goods_up_to_max() {
    let db = TestDb::new();
    let store = open(&db);
    let mut due = Vec::new();
    for n in 0..3u64 {
        let g = store.add_goods(&new_goods(10), None).unwrap().id;
        let e = store.next_epoch(g, 0).unwrap();
        let orders = [
            due_at(10 * n + 1, 1, g, 100),
            due_at(10 * n + 2, 2, g, 150),
            due_at(10 * n + 3, 3, g, 150),
            due_at(10 * n + 4, 4, g, 900),
        ];
        store.commit_orders(&orders, &[e; 4]).unwrap();
        // Paid before its window closed: never due.
        assert!(store.pay(3, 10 * n + 3, 120).unwrap().is_some());
        due.extend([10 * n + 1, 10 * n + 2]);
    }
    let mut expired: Vec<u64> = Vec::new();
    for _ in 0..3 {
        let swept = store.expire_due(500, 4).unwrap();
        assert!(swept.len() <= 4);
        expired.extend(swept.iter().map(|o| o.order_no));
    }
    expired.sort_unstable();
    assert_eq!(expired, due);
    assert!(store.expire_due(500, 4).unwrap().is_empty());
    assert_eq!(
        store.expire_due(1000, 10).unwrap().len(),
        3,
        "the last ones"
    );
}

/// The sweep reads the goods whose unpaid mark is recent: an order written
/// after a complete sweep is swept, even one whose window had closed before
/// it was written (a queued order written late, after an outage); a created
/// order with no mark (put in by hand) waits for the next full sweep.
#[test]
fn the_sweep_finds_orders_written_after_it_even_late_ones() {
    let db = TestDb::new();
    let store = open(&db);
    let g = store.add_goods(&new_goods(10), None).unwrap().id;
    assert!(store.expire_due(now_ms(), 10).unwrap().is_empty());
    // Due an hour before it is written: the sweep's floor is past that.
    let hour_ago = now_ms() - 3_600_000;
    store.insert_orders(&[due_at(1, 1, g, hour_ago)]).unwrap();
    let swept = order_nos_swept(&store, now_ms(), 10);
    assert_eq!(swept, [1], "the late order is swept");

    // Another goods, never written to by a batch.
    let h = store.add_goods(&new_goods(10), None).unwrap().id;
    db.conn()
        .exec_drop(
            "INSERT INTO orders (order_no, user_id, goods_id, created_ms, pay_by_ms)
             VALUES (2, 2, ?, 1, 2)",
            (h,),
        )
        .unwrap();
    assert!(
        store.expire_due(now_ms(), 10).unwrap().is_empty(),
        "a goods whose mark is old is not read"
    );
    store.sweep.lock().full_next();
    let swept = order_nos_swept(&store, now_ms(), 10);
    assert_eq!(swept, [2], "the full sweep reads every goods");
}

/// A sweep that stops at its maximum in a goods' backlog of due orders
/// begins the next after that goods: the goods after it are not kept
/// waiting until the backlog is gone.
#[test]
fn a_backlog_of_due_orders_does_not_hold_up_the_other_goods() {
    let db = TestDb::new();
    let store = open(&db);
    let a = store.add_goods(&new_goods(20), None).unwrap().id;
    let b = store.add_goods(&new_goods(20), None).unwrap().id;
    let backlog: Vec<_> = (1..=10).map(|n| due_at(n, n, a, 100)).collect();
    store.insert_orders(&backlog).unwrap();
    store.insert_orders(&[due_at(99, 99, b, 100)]).unwrap();
    let goods_of = |swept: Vec<crate::store::OrderRecord>| -> Vec<u64> {
        swept.iter().map(|o| o.goods_id).collect()
    };
    assert_eq!(goods_of(store.expire_due(1_000, 3).unwrap()), [a, a, a]);
    let second = goods_of(store.expire_due(1_000, 3).unwrap());
    assert!(second.contains(&b), "{second:?}");
}
