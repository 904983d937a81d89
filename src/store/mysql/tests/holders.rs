//! The read of a goods' live holders, beside the transactions that write
//! and settle its orders.

use super::*;

/// Reconciliation reads the holders while another connection may still
/// be committing orders: the read waits for that transaction rather than
/// miss its orders.
#[test]
fn live_holders_wait_for_orders_still_being_committed() {
    let db = TestDb::new();
    let store = Arc::new(open(&db));
    let g = store.add_goods(&new_goods(10), None).unwrap();
    let mut writer = db.conn();
    writer.query_drop("START TRANSACTION").unwrap();
    writer
        .exec_drop(
            "INSERT INTO orders (order_no, user_id, goods_id, state, live_slot, created_ms, pay_by_ms)
             VALUES (?, ?, ?, 0, 1, 1, 1)",
            (77u64, 7u64, g.id),
        )
        .unwrap();
    let reader = holders_meanwhile(&store, g.id);
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        !reader.is_finished(),
        "the read did not wait for the commit"
    );
    writer.query_drop("COMMIT").unwrap();
    assert_eq!(reader.join().unwrap().unwrap(), vec![(7, 77)]);
}

/// The holders' read locks no order: a PAY in flight (its order's row
/// locked, its state about to change) neither holds it up nor deadlocks
/// with it. (A read that locked each order's entry in `orders_by_goods
/// (goods_id, state, pay_by_ms)`, then its row, took them in the opposite
/// order to the PAY, which then moves the entry: one of the two failed.)
#[test]
fn live_holders_and_a_pay_in_flight_do_not_deadlock() {
    let db = TestDb::new();
    let store = Arc::new(open(&db));
    let g = store.add_goods(&new_goods(10), None).unwrap().id;
    let e = store.next_epoch(g, 0).unwrap();
    let orders = [order(1, 1, g), order(2, 2, g), order(3, 3, g)];
    store.commit_orders(&orders, &[e; 3]).unwrap();
    let mut pay = db.conn();
    pay.query_drop("START TRANSACTION").unwrap();
    pay.query_drop("SELECT order_no FROM orders WHERE order_no = 2 FOR UPDATE")
        .unwrap();
    let reader = holders_meanwhile(&store, g);
    std::thread::sleep(Duration::from_millis(500));
    pay.query_drop("UPDATE orders SET state = 1 WHERE order_no = 2")
        .expect("the PAY is no deadlock victim");
    pay.query_drop("COMMIT").unwrap();
    let mut holders = reader.join().unwrap().expect("the read is none either");
    holders.sort_unstable();
    assert_eq!(holders, [(1, 1), (2, 2), (3, 3)]);
}

/// The holders' read waits for a batch still writing the goods' orders,
/// wherever its rows fall in the goods' index: here the later payment
/// deadline first. (A read that locked the index waited for the first row
/// holding the gap of the second, which then waited for the read.)
#[test]
fn live_holders_wait_for_a_batch_writing_out_of_deadline_order() {
    let db = TestDb::new();
    let store = Arc::new(open(&db));
    let g = store.add_goods(&new_goods(10), None).unwrap().id;
    let insert = |conn: &mut ::mysql::Conn, order_no: u64, pay_by_ms: u64| {
        conn.exec_drop(
            "INSERT INTO orders (order_no, user_id, goods_id, created_ms, pay_by_ms)
             VALUES (?, ?, ?, 1, ?)",
            (order_no, order_no, g, pay_by_ms),
        )
    };
    let mut batch = db.conn();
    batch
        .query_drop("SET TRANSACTION ISOLATION LEVEL READ COMMITTED")
        .unwrap();
    batch.query_drop("START TRANSACTION").unwrap();
    batch
        .exec_drop(
            "UPDATE goods SET live_orders = live_orders + 2 WHERE id = ?",
            (g,),
        )
        .unwrap();
    insert(&mut batch, 1, 1_005).unwrap();
    let reader = holders_meanwhile(&store, g);
    std::thread::sleep(Duration::from_millis(500));
    assert!(!reader.is_finished(), "the read did not wait for the batch");
    insert(&mut batch, 2, 1_003).expect("the batch is no deadlock victim");
    batch.query_drop("COMMIT").unwrap();
    let mut holders = reader.join().unwrap().expect("the read is none either");
    holders.sort_unstable();
    assert_eq!(holders, [(1, 1), (2, 2)]);
}

/// The live holders of `goods`, read on a thread of their own while the
/// test holds locks.
fn holders_meanwhile(
    store: &Arc<MysqlStore>,
    goods: u64,
) -> std::thread::JoinHandle<Result<Vec<(u64, u64)>, StoreError>> {
    let store = store.clone();
    std::thread::spawn(move || store.live_holders(goods))
}
