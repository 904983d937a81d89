//! What every [`OrderStore`] does, checked against each backend: one set of
//! test functions, generic over a [`Backend`] that opens stores on a fresh
//! database, and instantiated per backend at the bottom (the tests are
//! `store::conformance::orders::{sqlite,mysql}::*`).
//!
//! MySQL runs against the real server (`SECKILL_TEST_MYSQL`, see
//! `store::testdb`), each test in a database of its own; SQLite in a file of
//! a temporary directory. What only one backend does (MySQL's schema file,
//! its pool after a broken link, its locking reads) is tested with it.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;

use ::mysql::prelude::Queryable;
use seckill_proto::{NewGoods, OrderState, SaleRules};
use tempfile::TempDir;

use crate::store::testdb::TestDb;
use crate::store::{
    GoodsId, MysqlStore, OrderNo, OrderRecord, OrderStore, SaleChange, SqliteStore, StoreError,
    UserId, Written,
};

/// A database for one test, and the stores a backend opens on it.
trait Backend {
    type Store: OrderStore + 'static;

    /// Whether writers of different rows run at once (MySQL's row locks),
    /// rather than one write transaction at a time (SQLite's one writer).
    const ROW_LOCKS: bool;

    /// A fresh, empty database, removed when this is dropped.
    fn new() -> Self;

    /// A store on the database; another one is another server on the same
    /// data.
    fn open(&self) -> Self::Store;

    /// Every row of the orders table as (order number, state), read
    /// around the store.
    fn rows(&self) -> Vec<(OrderNo, u8)>;

    /// Makes `id` the next goods id; `false` if the database cannot issue
    /// such an id (SQLite's ids end at `i64::MAX`).
    fn next_goods_id(&self, id: GoodsId) -> bool;
}

struct Sqlite {
    dir: TempDir,
}

impl Sqlite {
    fn path(&self) -> PathBuf {
        self.dir.path().join("orders.db")
    }
}

impl Backend for Sqlite {
    type Store = SqliteStore;
    const ROW_LOCKS: bool = false;

    fn new() -> Self {
        Sqlite {
            dir: tempfile::tempdir().expect("a temporary directory"),
        }
    }

    fn open(&self) -> SqliteStore {
        SqliteStore::open(&self.path()).unwrap_or_else(|e| panic!("open {:?}: {e}", self.path()))
    }

    fn rows(&self) -> Vec<(OrderNo, u8)> {
        let conn = rusqlite::Connection::open(self.path()).expect("open the file");
        let mut stmt = conn
            .prepare("SELECT order_no, state FROM orders")
            .expect("a query");
        let rows = stmt
            .query_map([], |r| Ok((r.get::<_, i64>(0)? as u64, r.get(1)?)))
            .expect("rows");
        rows.collect::<rusqlite::Result<_>>().expect("rows")
    }

    fn next_goods_id(&self, _: GoodsId) -> bool {
        false
    }
}

struct Mysql {
    db: TestDb,
}

impl Backend for Mysql {
    type Store = MysqlStore;
    const ROW_LOCKS: bool = true;

    fn new() -> Self {
        Mysql { db: TestDb::new() }
    }

    fn open(&self) -> MysqlStore {
        MysqlStore::open(self.db.url()).unwrap_or_else(|e| panic!("open {}: {e}", self.db.url()))
    }

    fn rows(&self) -> Vec<(OrderNo, u8)> {
        let mut conn = self.db.conn();
        conn.query("SELECT order_no, state FROM orders")
            .expect("rows")
    }

    fn next_goods_id(&self, id: GoodsId) -> bool {
        let mut conn = self.db.conn();
        let sql = format!("ALTER TABLE goods AUTO_INCREMENT = {id}");
        conn.query_drop(sql).expect("set the next goods id");
        true
    }
}

/// A goods on sale from 1000 to 2000 ms, one order per user.
pub(crate) fn new_goods(stock: u32) -> NewGoods {
    NewGoods {
        name: "Phone X".into(),
        price_cents: 1999,
        stock,
        start_ms: 1_000,
        end_ms: 2_000,
        rules: SaleRules::default(),
    }
}

/// A created order, never due.
pub(crate) fn order(order_no: OrderNo, user_id: UserId, goods_id: GoodsId) -> OrderRecord {
    OrderRecord {
        order_no,
        user_id,
        goods_id,
        state: OrderState::Created,
        created_ms: 1_500,
        pay_by_ms: u64::MAX,
    }
}

/// A created order due at `pay_by_ms`, created at its number (so a higher
/// number is a newer order).
fn due(order_no: OrderNo, user_id: UserId, goods_id: GoodsId, pay_by_ms: u64) -> OrderRecord {
    OrderRecord {
        created_ms: order_no,
        pay_by_ms,
        ..order(order_no, user_id, goods_id)
    }
}

/// A payment deadline that never comes.
const NEVER: u64 = u64::MAX;

/// A goods on sale for ever, `limit` orders per user, paid within 1 s.
fn goods(store: &impl OrderStore, limit: u8) -> GoodsId {
    let rules = SaleRules {
        per_user_limit: limit,
        pay_window_ms: 1000,
        token_required: false,
    };
    let goods = NewGoods {
        name: "lamp".into(),
        price_cents: 100,
        stock: 10_000,
        start_ms: 0,
        end_ms: u64::MAX,
        rules,
    };
    store.add_goods(&goods).unwrap().id
}

fn goods_are_added_listed_and_restocked<B: Backend>() {
    let db = B::new();
    let store = db.open();
    assert_eq!(store.goods().unwrap(), vec![]);
    let a = store.add_goods(&new_goods(5)).unwrap();
    let fields = (
        a.name.as_str(),
        a.price_cents,
        a.total,
        a.start_ms,
        a.end_ms,
    );
    assert_eq!(fields, ("Phone X", 1999, 5, 1_000, 2_000));
    let b = store
        .add_goods(&NewGoods {
            name: "手机 🚀".into(),
            ..new_goods(1)
        })
        .unwrap();
    assert_eq!(b.name, "手机 🚀", "UTF-8 end to end");
    assert!(b.id > a.id);
    assert_eq!(store.goods().unwrap(), vec![a.clone(), b.clone()]);

    assert_eq!(store.restock(a.id, 3).unwrap().total, 8);
    assert_eq!(store.restock(a.id, 0).unwrap().total, 8);
    assert_eq!(store.goods().unwrap()[0].total, 8);
    assert!(matches!(
        store.restock(b.id + 100, 1),
        Err(StoreError::UnknownGoods(id)) if id == b.id + 100
    ));
}

fn a_big_batch_is_stored_in_chunks_and_a_retry_doubles_nothing<B: Backend>() {
    let db = B::new();
    let store = db.open();
    let g = store.add_goods(&new_goods(2500)).unwrap();
    let batch: Vec<_> = (0..2500).map(|i| order(10_000 + i, i, g.id)).collect();
    let stored = vec![Written::Stored; batch.len()];
    assert_eq!(store.insert_orders(&batch).unwrap(), stored);
    // A retried batch (its commit's reply was lost) is no error.
    assert_eq!(store.insert_orders(&batch).unwrap(), stored);
    assert_eq!(db.rows().len(), 2500);
    // Half new, half already stored, across a chunk boundary.
    let more: Vec<_> = (1500..3500).map(|i| order(10_000 + i, i, g.id)).collect();
    let written = store.insert_orders(&more).unwrap();
    assert_eq!(written, vec![Written::Stored; 2000]);
    assert_eq!(db.rows().len(), 3500);
    assert_eq!(store.insert_orders(&[]).unwrap(), vec![]);
}

fn orders_round_trip_and_batches_are_idempotent<B: Backend>() {
    let db = B::new();
    let store = db.open();
    let g = store.add_goods(&new_goods(5)).unwrap();
    let batch: Vec<_> = (0..1200).map(|i| due(1000 + i, i, g.id, NEVER)).collect();
    let stored = vec![Written::Stored; batch.len()];
    assert_eq!(store.insert_orders(&batch).unwrap(), stored);
    // The same batch again is a no-op, not an error.
    assert_eq!(store.insert_orders(&batch).unwrap(), stored);
    assert_eq!(store.live_holders(g.id).unwrap().len(), 1200);
    let found = store.find_order(7, g.id).unwrap().unwrap();
    assert_eq!(found.order_no, 1007);
    assert_eq!(store.find_order(7, g.id + 1).unwrap(), None);
    // A second live order for a user is refused by the database itself,
    // and only that row: the rest of the batch is written.
    let written = store
        .insert_orders(&[due(5000, 5000, g.id, NEVER), due(5001, 7, g.id, NEVER)])
        .unwrap();
    assert_eq!(written, [Written::Stored, Written::Duplicate(1007)]);
    let found = store.find_order(5000, g.id).unwrap().unwrap();
    assert_eq!(found.order_no, 5000);
    assert_eq!(store.find_order(7, g.id).unwrap().unwrap().order_no, 1007);
    assert_eq!(store.restock(g.id, 3).unwrap().total, 8);
    assert!(matches!(
        store.restock(g.id + 99, 1),
        Err(StoreError::UnknownGoods(id)) if id == g.id + 99
    ));
}

fn a_second_live_order_is_refused_by_the_database_and_only_it<B: Backend>() {
    let db = B::new();
    let store = db.open();
    let g = store.add_goods(&new_goods(10)).unwrap();
    store.insert_orders(&[order(100, 7, g.id)]).unwrap();
    let batch = [
        order(200, 1, g.id),
        order(201, 7, g.id),
        order(202, 2, g.id),
    ];
    let written = store.insert_orders(&batch).unwrap();
    let want = [Written::Stored, Written::Duplicate(100), Written::Stored];
    assert_eq!(written, want);
    assert_eq!(store.find_order(7, g.id).unwrap().unwrap().order_no, 100);
    assert_eq!(store.find_order(2, g.id).unwrap().unwrap().order_no, 202);
    assert_eq!(db.rows().len(), 3);
}

fn a_reused_order_number_is_inconsistent_and_writes_nothing<B: Backend>() {
    let db = B::new();
    let store = db.open();
    let g = store.add_goods(&new_goods(10)).unwrap();
    store.insert_orders(&[order(100, 7, g.id)]).unwrap();
    // 100 belongs to user 7; user 8 holds nothing.
    let result = store.insert_orders(&[order(300, 9, g.id), order(100, 8, g.id)]);
    let reused = matches!(&result, Err(StoreError::Inconsistent(m)) if m.contains("100"));
    assert!(reused, "{result:?}");
    assert_eq!(store.find_order(9, g.id).unwrap(), None, "rolled back");
    // An order of an unknown goods fails the batch (how it is named is
    // the backend's: MySQL's foreign key, SQLite's look-up of the limit).
    let result = store.insert_orders(&[order(400, 1, g.id + 1)]);
    let refused = matches!(
        result,
        Err(StoreError::Inconsistent(_) | StoreError::UnknownGoods(_))
    );
    assert!(refused, "{result:?}");
    assert_eq!(db.rows().len(), 1);
    // The store is still usable after both.
    let written = store.insert_orders(&[order(500, 9, g.id)]).unwrap();
    assert_eq!(written, [Written::Stored]);
}

fn live_holders_and_find_order_skip_cancelled_orders<B: Backend>() {
    let db = B::new();
    let store = db.open();
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
    let written = store.insert_orders(&[order(103, 1, g.id)]).unwrap();
    assert_eq!(written, [Written::Stored]);
    let mut holders = store.live_holders(g.id).unwrap();
    holders.sort_unstable();
    assert_eq!(holders, vec![(1, 103), (2, 101)]);
    assert_eq!(store.live_holders(other.id + 1).unwrap(), vec![]);
}

/// Ids and times are u64 on the wire and use all 64 bits.
fn ids_above_i64_max_round_trip<B: Backend>() {
    let db = B::new();
    let store = db.open();
    let big = i64::MAX as u64 + 10;
    let big_ids = db.next_goods_id(big);
    let g = store
        .add_goods(&NewGoods {
            price_cents: u64::MAX,
            start_ms: u64::MAX - 1,
            end_ms: u64::MAX,
            rules: SaleRules::default(),
            ..new_goods(1)
        })
        .unwrap();
    if big_ids {
        assert_eq!(g.id, big);
    }
    let times = (g.price_cents, g.start_ms, g.end_ms);
    assert_eq!(times, (u64::MAX, u64::MAX - 1, u64::MAX));
    assert_eq!(store.restock(g.id, 1).unwrap().total, 2);
    assert_eq!(store.goods().unwrap()[0].id, g.id);
    let o = OrderRecord {
        created_ms: u64::MAX,
        pay_by_ms: u64::MAX,
        ..order(u64::MAX, u64::MAX - 1, g.id)
    };
    let once = std::slice::from_ref(&o);
    assert_eq!(store.insert_orders(once).unwrap(), [Written::Stored]);
    assert_eq!(store.insert_orders(once).unwrap(), [Written::Stored]);
    let second = [order(u64::MAX - 5, u64::MAX - 1, g.id)];
    let written = store.insert_orders(&second).unwrap();
    assert_eq!(written, [Written::Duplicate(u64::MAX)]);
    let holders = store.live_holders(g.id).unwrap();
    assert_eq!(holders, vec![(u64::MAX - 1, u64::MAX)]);
    assert_eq!(store.find_order(u64::MAX - 1, g.id).unwrap(), Some(o));
}

fn sale_controls_are_saved<B: Backend>() {
    let db = B::new();
    let store = db.open();
    let g = goods(&store, 1);
    let windowed = store
        .save_sale(
            g,
            SaleChange::Window {
                start_ms: 5,
                end_ms: 60,
            },
        )
        .unwrap();
    assert_eq!(
        (windowed.start_ms, windowed.end_ms, windowed.paused),
        (5, 60, false)
    );
    // A pause leaves the window as it is, whoever set it; each control
    // raises the version.
    let saved = store.save_sale(g, SaleChange::Pause).unwrap();
    assert!(saved.paused);
    assert_eq!((saved.start_ms, saved.end_ms), (5, 60));
    assert!(saved.sale_version > windowed.sale_version);
    assert_eq!(store.goods().unwrap()[0], saved);
    // An end moves the window's ends no later than its clock.
    let ended = store.save_sale(g, SaleChange::End { now_ms: 6 }).unwrap();
    assert_eq!((ended.start_ms, ended.end_ms, ended.paused), (5, 6, true));
    let resumed = store.save_sale(g, SaleChange::Resume).unwrap();
    assert_eq!(
        (resumed.start_ms, resumed.end_ms, resumed.paused),
        (5, 6, false)
    );
    assert!(matches!(
        store.save_sale(g + 1, SaleChange::Resume),
        Err(StoreError::UnknownGoods(_))
    ));
}

// PAY, CANCEL and the expiry.

fn pay_cancel_and_expiry_settle_each_order_once<B: Backend>() {
    let db = B::new();
    let store = db.open();
    let g = goods(&store, 1);
    store
        .insert_orders(&[due(1, 1, g, 100), due(2, 2, g, 100), due(3, 3, g, 200)])
        .unwrap();
    assert_eq!(store.pay(9, 1, 50).unwrap(), None, "someone else's order");
    let paid = store.pay(1, 1, 50).unwrap().unwrap();
    let outcome = (paid.order.state, paid.cancelled_now);
    assert_eq!(outcome, (OrderState::Paid, false));
    let again = store.pay(1, 1, 500).unwrap().unwrap();
    assert_eq!(again.order.state, OrderState::Paid);
    let kept = store.cancel(1, 1).unwrap().unwrap();
    assert_eq!(kept.order.state, OrderState::Paid);
    let cancelled = store.cancel(2, 2).unwrap().unwrap();
    assert!(cancelled.cancelled_now);
    assert!(!store.cancel(2, 2).unwrap().unwrap().cancelled_now, "once");
    // Past its window, a PAY cancels; the sweep finds nothing left.
    let late = store.pay(3, 3, 200).unwrap().unwrap();
    let outcome = (late.order.state, late.cancelled_now);
    assert_eq!(outcome, (OrderState::Cancelled, true));
    assert!(store.expire_due(1000, 10).unwrap().is_empty());
    assert_eq!(store.live_holders(g).unwrap(), vec![(1, 1)]);
    // A cancelled order frees its user's slot; the list is newest first.
    store.insert_orders(&[due(4, 2, g, 100)]).unwrap();
    let listed: Vec<_> = store.orders_of(2, 10).unwrap();
    let listed: Vec<_> = listed.iter().map(|o| (o.order_no, o.state)).collect();
    assert_eq!(
        listed,
        [(4, OrderState::Created), (2, OrderState::Cancelled)]
    );
    store
        .save_sale(
            g,
            SaleChange::Window {
                start_ms: 5,
                end_ms: 6,
            },
        )
        .unwrap();
    let saved = store.save_sale(g, SaleChange::Pause).unwrap();
    assert!(saved.paused && saved.start_ms == 5 && saved.end_ms == 6);
}

fn pay_and_cancel_settle_an_order_once<B: Backend>() {
    let db = B::new();
    let store = db.open();
    let g = goods(&store, 1);
    store
        .insert_orders(&[due(1, 10, g, 100), due(2, 20, g, 100)])
        .unwrap();
    // Someone else's order, or no order: nothing.
    assert_eq!(store.pay(99, 1, 50).unwrap(), None);
    assert_eq!(store.cancel(10, 3).unwrap(), None);

    let paid = store.pay(10, 1, 50).unwrap().unwrap();
    assert_eq!(paid.order.state, OrderState::Paid);
    assert!(!paid.cancelled_now);
    // Paid again: the same, and a paid order is not cancelled.
    assert_eq!(store.pay(10, 1, 60).unwrap().unwrap().order, paid.order);
    let kept = store.cancel(10, 1).unwrap().unwrap();
    let outcome = (kept.order.state, kept.cancelled_now);
    assert_eq!(outcome, (OrderState::Paid, false));

    let cancelled = store.cancel(20, 2).unwrap().unwrap();
    let outcome = (cancelled.order.state, cancelled.cancelled_now);
    assert_eq!(outcome, (OrderState::Cancelled, true));
    // Only the first cancel cancelled it; a PAY after it cannot revive it.
    assert!(!store.cancel(20, 2).unwrap().unwrap().cancelled_now);
    let late = store.pay(20, 2, 50).unwrap().unwrap();
    let outcome = (late.order.state, late.cancelled_now);
    assert_eq!(outcome, (OrderState::Cancelled, false));
    // The cancelled order holds no slot: its user may buy again.
    assert_eq!(store.live_holders(g).unwrap(), vec![(10, 1)]);
    let written = store.insert_orders(&[due(3, 20, g, 100)]).unwrap();
    assert_eq!(written, [Written::Stored]);
    let listed = store.orders_of(20, 10).unwrap();
    let listed: Vec<_> = listed.iter().map(|o| (o.order_no, o.state)).collect();
    assert_eq!(
        listed,
        [(3, OrderState::Created), (2, OrderState::Cancelled)]
    );
}

fn expiry_cancels_what_is_due_once_and_a_late_pay_cancels_too<B: Backend>() {
    let db = B::new();
    let store = db.open();
    let g = goods(&store, 1);
    store
        .insert_orders(&[due(1, 1, g, 100), due(2, 2, g, 200), due(3, 3, g, 100)])
        .unwrap();
    store.pay(3, 3, 99).unwrap();
    let expired = store.expire_due(150, 10).unwrap();
    let expired: Vec<_> = expired.iter().map(|o| o.order_no).collect();
    assert_eq!(expired, [1], "only the unpaid order past its window");
    assert!(store.expire_due(150, 10).unwrap().is_empty(), "once");
    // PAY at or past the end of the window cancels instead.
    let late = store.pay(2, 2, 200).unwrap().unwrap();
    let outcome = (late.order.state, late.cancelled_now);
    assert_eq!(outcome, (OrderState::Cancelled, true));
    assert!(store.expire_due(1000, 10).unwrap().is_empty());
}

/// 2000 orders all due, paid by one thread while two "servers" (stores of
/// their own on one database) sweep: every order ends paid or cancelled,
/// each cancelled one is returned by exactly one sweep, and a PAY told
/// "paid" is paid.
fn pays_racing_two_expiry_sweeps_settle_each_order_once<B: Backend>() {
    const ORDERS: u64 = 2000;
    let db = B::new();
    let store = Arc::new(db.open());
    let g = goods(&*store, 1);
    let batch: Vec<_> = (1..=ORDERS).map(|n| due(n, n, g, 1000)).collect();
    store.insert_orders(&batch).unwrap();

    let sweeper = |store: Arc<B::Store>| {
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
    let sweeps = [sweeper(store.clone()), sweeper(Arc::new(db.open()))];
    // Pays as of a moment the window is still open (the PAY's clock read
    // before the deadline; the sweeps' after it).
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
    let disjoint = paid.is_disjoint(&cancelled);
    assert!(disjoint, "an order both paid and cancelled");
    assert_eq!(paid.len() + cancelled.len(), ORDERS as usize);
    for (n, state) in db.rows() {
        let want = if paid.contains(&n) { 1 } else { 2 };
        assert_eq!(state, want, "order {n}");
    }
    // The race was real: both sides won some. With one writer at a time,
    // the two sweeps' 40 transactions may all come before the first PAY.
    let both = !paid.is_empty() && !cancelled.is_empty();
    assert!(both || !B::ROW_LOCKS, "{} paid", paid.len());
}

/// A purchase limit above 1: each live order takes a slot of its own, the
/// order past the limit is a duplicate of the first held, a retried batch
/// is stored, and a cancel frees a slot.
fn a_purchase_limit_gives_each_order_its_own_slot<B: Backend>() {
    let db = B::new();
    let store = db.open();
    let two = goods(&store, 2);
    let batch = [due(1, 7, two, 9), due(2, 7, two, 9), due(3, 7, two, 9)];
    let written = store.insert_orders(&batch).unwrap();
    let want = [Written::Stored, Written::Stored, Written::Duplicate(1)];
    assert_eq!(written, want);
    let written = store.insert_orders(&batch[..2]).unwrap();
    assert_eq!(written, [Written::Stored; 2]);
    store.cancel(7, 1).unwrap();
    assert_eq!(store.insert_orders(&batch[2..]).unwrap(), [Written::Stored]);
    let mut live = store.live_holders(two).unwrap();
    live.sort_unstable();
    assert_eq!(live, [(7, 2), (7, 3)]);

    let three = goods(&store, 3);
    let batch: Vec<_> = (11..=14).map(|n| due(n, 7, three, 100)).collect();
    let written = store.insert_orders(&batch).unwrap();
    let want = [
        Written::Stored,
        Written::Stored,
        Written::Stored,
        Written::Duplicate(11),
    ];
    assert_eq!(written, want);
    let written = store.insert_orders(&batch[..3]).unwrap();
    assert_eq!(written, [Written::Stored; 3]);
    store.cancel(7, 12).unwrap();
    let written = store.insert_orders(&[due(15, 7, three, 100)]).unwrap();
    assert_eq!(written, [Written::Stored]);
    let mut live = store.live_holders(three).unwrap();
    live.sort_unstable();
    assert_eq!(live, [(7, 11), (7, 13), (7, 15)]);
}

/// A queued order refused as a second live order is written as cancelled
/// (it needs no slot, even with the user at the limit); its entry read
/// again later finds it stored, not a free slot.
fn a_refused_order_written_as_cancelled_stays_cancelled<B: Backend>() {
    for limit in [1, 2] {
        let db = B::new();
        let store = db.open();
        let g = goods(&store, limit);
        let held: Vec<_> = (1..=u64::from(limit)).map(|n| due(n, 7, g, 100)).collect();
        store.insert_orders(&held).unwrap();
        let refused = due(80, 7, g, 100);
        let written = store.insert_orders(std::slice::from_ref(&refused)).unwrap();
        assert_eq!(written, [Written::Duplicate(1)]);
        let tombstone = OrderRecord {
            state: OrderState::Cancelled,
            ..refused.clone()
        };
        assert_eq!(
            store.insert_orders(&[tombstone]).unwrap(),
            [Written::Stored]
        );
        store.cancel(7, 1).unwrap();
        assert_eq!(store.insert_orders(&[refused]).unwrap(), [Written::Stored]);
        let holders = store.live_holders(g).unwrap();
        assert!(holders.iter().all(|&(_, n)| n != 80));
        assert_eq!(store.stored(&[80, 81]).unwrap(), [80]);
    }
}

/// Epochs only rise, above any the caller names, and an order is written
/// only under its goods' current epoch: one reserved before a newer epoch
/// was taken is fenced off (a reconciliation counted without it), unless
/// an earlier try of its batch wrote it first. Two stores on one database
/// (two servers) see one sequence.
fn epochs_rise_and_fence_off_orders_of_older_ones<B: Backend>() {
    let db = B::new();
    let (a, b) = (db.open(), db.open());
    let g = goods(&a, 1);
    let first = a.next_epoch(g, 0).unwrap();
    let second = b.next_epoch(g, 0).unwrap();
    assert!(second > first, "{first} then {second}");
    let third = a.next_epoch(g, 1_000).unwrap();
    assert!(third > 1_000, "{third}");
    let batch = [order(1, 1, g), order(2, 2, g), order(3, 3, g)];
    assert_eq!(
        b.commit_orders(&batch, &[third, second, third]).unwrap(),
        [Written::Stored, Written::Fenced, Written::Stored]
    );
    let holders: BTreeSet<_> = a.live_holders(g).unwrap().into_iter().collect();
    assert_eq!(holders, BTreeSet::from([(1, 1), (3, 3)]));
    // A retry of the batch after another epoch was taken: what it wrote is
    // stored, what it did not write stays out.
    a.next_epoch(g, 0).unwrap();
    assert_eq!(
        b.commit_orders(&batch, &[third, second, third]).unwrap(),
        [Written::Stored, Written::Fenced, Written::Stored]
    );
    assert_eq!(db.rows().len(), 2);
    // Unfenced writes (the queued mode's) do not look at epochs.
    assert_eq!(
        a.insert_orders(&[order(4, 4, g)]).unwrap(),
        [Written::Stored]
    );
    assert!(matches!(
        a.next_epoch(g + 1_000, 0),
        Err(StoreError::UnknownGoods(_))
    ));
}

/// Each test above, once per backend.
macro_rules! per_backend {
    ($($test:ident),* $(,)?) => {
        mod sqlite {
            $(#[test]
            fn $test() {
                super::$test::<super::Sqlite>()
            })*
        }

        mod mysql {
            $(#[test]
            fn $test() {
                super::$test::<super::Mysql>()
            })*
        }
    };
}

per_backend!(
    goods_are_added_listed_and_restocked,
    a_big_batch_is_stored_in_chunks_and_a_retry_doubles_nothing,
    orders_round_trip_and_batches_are_idempotent,
    a_second_live_order_is_refused_by_the_database_and_only_it,
    a_reused_order_number_is_inconsistent_and_writes_nothing,
    live_holders_and_find_order_skip_cancelled_orders,
    ids_above_i64_max_round_trip,
    sale_controls_are_saved,
    pay_cancel_and_expiry_settle_each_order_once,
    pay_and_cancel_settle_an_order_once,
    expiry_cancels_what_is_due_once_and_a_late_pay_cancels_too,
    pays_racing_two_expiry_sweeps_settle_each_order_once,
    a_purchase_limit_gives_each_order_its_own_slot,
    a_refused_order_written_as_cancelled_stays_cancelled,
    epochs_rise_and_fence_off_orders_of_older_ones,
);
