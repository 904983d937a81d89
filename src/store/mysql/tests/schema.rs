//! The schema: the tables made from `schema.sql`, what the store reads of
//! an existing table (its columns, indexes and defaults), and older tables
//! brought up to date at start.

use super::*;

#[test]
fn the_schema_sql_yields_its_create_tables() {
    let ddl = table_ddl(SCHEMA);
    assert_eq!(ddl.len(), 5, "{ddl:#?}");
    assert!(ddl[0].starts_with("CREATE TABLE IF NOT EXISTS goods"));
    assert!(ddl[1].starts_with("CREATE TABLE IF NOT EXISTS orders"));
    assert!(ddl[2].starts_with("CREATE TABLE IF NOT EXISTS nodes"));
    assert!(ddl[3].starts_with("CREATE TABLE IF NOT EXISTS goods_requests"));
    assert!(ddl[4].starts_with("CREATE TABLE IF NOT EXISTS buy_requests"));
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
    let g = store.add_goods(&new_goods(5), None).unwrap();
    drop(store);
    // Again on the existing database: nothing is recreated or lost.
    let store = open(&db);
    assert_eq!(store.goods().unwrap(), vec![g]);
}

/// Chunks of created orders leave `state` and `live_slot` to the table's
/// defaults where the table has schema.sql's, and name them where it does
/// not: the purchase limit holds either way.
#[test]
fn created_orders_rest_on_the_defaults_only_where_the_table_has_them() {
    let db = TestDb::new();
    let store = open(&db);
    assert_eq!(store.live_defaults.get(), Some(&true));
    let g = store.add_goods(&new_goods(5), None).unwrap().id;
    assert_eq!(
        store.commit_orders(&[order(1, 1, g)], &[]).unwrap(),
        [Written::Stored]
    );
    let slot = |no: u64| {
        count(
            &db,
            &format!("SELECT COALESCE(live_slot, 99) FROM orders WHERE order_no = {no}"),
        )
    };
    assert_eq!(slot(1), 1);
    assert_eq!(
        store.commit_orders(&[order(2, 1, g)], &[]).unwrap(),
        [Written::Duplicate(1)]
    );
    // A table altered by hand: its defaults are not relied on.
    db.conn()
        .query_drop("ALTER TABLE orders ALTER live_slot SET DEFAULT NULL")
        .unwrap();
    let altered = open(&db);
    assert_eq!(altered.live_defaults.get(), Some(&false));
    assert_eq!(
        altered.commit_orders(&[order(3, 2, g)], &[]).unwrap(),
        [Written::Stored]
    );
    assert_eq!(slot(3), 1);
    assert_eq!(
        altered.commit_orders(&[order(4, 2, g)], &[]).unwrap(),
        [Written::Duplicate(3)]
    );
}

/// A goods table made before goods kept their live orders gets the column
/// counted from its orders, so the cap holds from the first batch after.
#[test]
fn open_counts_the_live_orders_of_an_older_goods_table() {
    let db = TestDb::new();
    let store = open(&db);
    let g = store.add_goods(&new_goods(3), None).unwrap().id;
    let e = store.next_epoch(g, 0).unwrap();
    let orders = [order(1, 1, g), order(2, 2, g), order(3, 3, g)];
    store.commit_orders(&orders, &[e, e, e]).unwrap();
    assert!(store.cancel(3, 3).unwrap().unwrap().cancelled_now);
    drop(store);
    db.conn()
        .query_drop("ALTER TABLE goods DROP COLUMN live_orders")
        .expect("drop the column");
    let store = open(&db);
    let live = format!("SELECT live_orders FROM goods WHERE id = {g}");
    assert_eq!(count(&db, &live), 2);
    assert_eq!(
        store
            .commit_orders(&[order(4, 4, g), order(5, 5, g)], &[e, e])
            .unwrap(),
        [Written::SoldOut; 2]
    );
    assert_eq!(
        store.commit_orders(&[order(4, 4, g)], &[e]).unwrap(),
        [Written::Stored]
    );
}

/// A goods table made by a server before the epoch fence gets its columns
/// at open, and its goods then take epochs.
#[test]
fn open_adds_the_epoch_columns_to_an_older_goods_table() {
    let db = TestDb::new();
    drop(open(&db));
    let mut conn = db.conn();
    conn.query_drop(
        "ALTER TABLE goods DROP COLUMN epoch, DROP COLUMN orders_written, DROP COLUMN sale_version",
    )
    .expect("drop the columns");
    let columns = format!(
        "SELECT COUNT(*) FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = '{}'
         AND TABLE_NAME = 'goods' AND COLUMN_NAME IN ('epoch', 'orders_written', 'sale_version')",
        db.name()
    );
    assert_eq!(count(&db, &columns), 0);
    let store = open(&db);
    assert_eq!(count(&db, &columns), 3);
    let g = store.add_goods(&new_goods(5), None).unwrap().id;
    assert_eq!(store.next_epoch(g, 0).unwrap(), 1);
    // Opening again finds them and adds nothing.
    drop(open(&db));
    assert_eq!(count(&db, &columns), 3);
}

/// A new table is read by goods and by due time through `orders_by_goods`;
/// tables made before keep their indexes and are read through them, and
/// the store works on them as before: the one whose purchase-limit key led
/// with the goods (no `orders_by_goods`), and the one with
/// `orders_by_goods (goods_id)` beside `orders_due (state, pay_by_ms)`.
#[test]
fn orders_tables_of_older_layouts_work_as_they_are() {
    use crate::store::mysql::schema::{DueIndex, GoodsIndex, Layout};

    let goods_first = [
        "ALTER TABLE orders DROP INDEX orders_one_live,
         ADD UNIQUE KEY orders_one_live (goods_id, user_id, live_slot),
         ADD KEY orders_by_user (user_id, created_ms),
         ADD KEY orders_due (state, pay_by_ms)",
        "ALTER TABLE orders DROP INDEX orders_by_goods",
    ];
    let by_goods_and_due = ["ALTER TABLE orders DROP INDEX orders_by_goods,
         ADD KEY orders_by_goods (goods_id), ADD KEY orders_due (state, pay_by_ms)"];
    let layouts: [(&[&str], _); 3] = [
        (&[], (GoodsIndex::ByGoods, DueIndex::ByGoods)),
        (&goods_first, (GoodsIndex::OneLive, DueIndex::Due)),
        (&by_goods_and_due, (GoodsIndex::ByGoods, DueIndex::Due)),
    ];
    for (alter, (goods, due)) in layouts {
        let db = TestDb::new();
        let store = open(&db);
        let g = store.add_goods(&new_goods(10), None).unwrap().id;
        let h = store.add_goods(&new_goods(10), None).unwrap().id;
        drop(store);
        let mut conn = db.conn();
        for sql in alter {
            conn.query_drop(sql).expect("the older keys");
        }
        let store = open(&db);
        assert_eq!(store.layout.get(), Some(&Layout { goods, due }));
        let e = store.next_epoch(g, 0).unwrap();
        let orders = [order(1, 1, g), order(2, 2, g), order(3, 1, g)];
        assert_eq!(
            store.commit_orders(&orders, &[e, e, e]).unwrap(),
            [Written::Stored, Written::Stored, Written::Duplicate(1)]
        );
        let mut holders = store.live_holders(g).unwrap();
        holders.sort_unstable();
        assert_eq!(holders, vec![(1, 1), (2, 2)], "{due:?}");
        assert_eq!(store.find_order(2, g).unwrap().unwrap().order_no, 2);
        assert_eq!(store.orders_of(1, 10).unwrap().len(), 1);
        let e = store.next_epoch(h, 0).unwrap();
        let orders = [due_at(4, 1, h, 100), due_at(5, 2, h, 300)];
        assert_eq!(
            store.commit_orders(&orders, &[e, e]).unwrap(),
            [Written::Stored, Written::Stored]
        );
        let expired = order_nos_swept(&store, 200, 10);
        assert_eq!(expired, [4], "{due:?}");
    }
}

/// A second start finds every added column (the schema check reads them
/// with `SHOW COLUMNS`): none is added again, and no fill of one runs again
/// over what the sale has since written. A fill run again would set
/// `unpaid_until_ms` back from the orders (none here: 0).
#[test]
fn a_second_start_runs_no_column_fill_again() {
    use ::mysql::prelude::Queryable;
    let db = TestDb::new();
    let store = open(&db);
    let goods = store.add_goods(&new_goods(5), None).unwrap().id;
    db.conn()
        .exec_drop(
            format!(
                "UPDATE `{}`.goods SET unpaid_until_ms = 12345, live_orders = 0 WHERE id = ?",
                db.name()
            ),
            (goods,),
        )
        .unwrap();
    drop(store);
    drop(open(&db));
    let mark: u64 = count(
        &db,
        &format!(
            "SELECT unpaid_until_ms FROM `{}`.goods WHERE id = {goods}",
            db.name()
        ),
    );
    assert_eq!(mark, 12345, "a column's fill ran again at the second start");
}
