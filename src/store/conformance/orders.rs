//! What every [`OrderStore`] does, checked against each backend: one set of
//! test functions, generic over a [`Backend`] (`backend.rs`) that opens
//! stores on a fresh database, and instantiated per backend at the bottom
//! (the tests are `store::conformance::orders::{sqlite,mysql}::*`). What
//! only one backend does (MySQL's schema file, its pool after a broken
//! link, its locking reads) is tested with it.

use seckill_proto::{NewGoods, OrderState, RequestId, SaleRules};

use super::backend::{Backend, Mysql, Sqlite};
use crate::store::{
    GoodsId, OrderNo, OrderRecord, OrderStore, Restocked, SaleChange, StoreError, UserId, Written,
};

/// A goods on sale from 1000 to 2000 ms, one order per user.
pub(crate) fn new_goods(stock: u32) -> NewGoods {
    NewGoods {
        name: "Phone X".into(),
        price_cents: 1999,
        stock,
        start_ms: 1_000,
        end_ms: 2_000,
        rules: SaleRules::default(),
        buckets: 1,
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
pub(crate) fn due(
    order_no: OrderNo,
    user_id: UserId,
    goods_id: GoodsId,
    pay_by_ms: u64,
) -> OrderRecord {
    OrderRecord {
        created_ms: order_no,
        pay_by_ms,
        ..order(order_no, user_id, goods_id)
    }
}

/// A payment deadline that never comes.
const NEVER: u64 = u64::MAX;

/// A goods on sale for ever, `limit` orders per user, paid within 1 s.
pub(super) fn goods(store: &impl OrderStore, limit: u8) -> GoodsId {
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
        buckets: 1,
    };
    store.add_goods(&goods, None).unwrap().id
}

fn goods_are_added_listed_and_restocked<B: Backend>() {
    let db = B::new();
    let store = db.open();
    assert_eq!(store.goods().unwrap(), vec![]);
    let a = store.add_goods(&new_goods(5), None).unwrap();
    let fields = (
        a.name.as_str(),
        a.price_cents,
        a.total,
        a.start_ms,
        a.end_ms,
    );
    assert_eq!(fields, ("Phone X", 1999, 5, 1_000, 2_000));
    let b = store
        .add_goods(
            &NewGoods {
                name: "手机 🚀".into(),
                ..new_goods(1)
            },
            None,
        )
        .unwrap();
    assert_eq!(b.name, "手机 🚀", "UTF-8 end to end");
    assert!(b.id > a.id);
    assert_eq!(store.goods().unwrap(), vec![a.clone(), b.clone()]);

    assert_eq!(store.restock(a.id, 3).unwrap().raised().total, 8);
    assert_eq!(store.restock(a.id, 0).unwrap().raised().total, 8);
    assert_eq!(store.goods().unwrap()[0].total, 8);
    // Never past u32::MAX: refused, not capped, whatever the caller
    // believed the total to be.
    assert_eq!(
        store.restock(a.id, u32::MAX).unwrap(),
        Restocked::Refused { total: 8 }
    );
    assert_eq!(
        store.restock(a.id, u32::MAX - 8).unwrap().raised().total,
        u32::MAX
    );
    assert_eq!(
        store.restock(a.id, 1).unwrap(),
        Restocked::Refused { total: u32::MAX }
    );
    assert_eq!(store.goods().unwrap()[0].total, u32::MAX);
    assert!(matches!(
        store.restock(b.id + 100, 1),
        Err(StoreError::UnknownGoods(id)) if id == b.id + 100
    ));
}

fn a_big_batch_is_stored_in_chunks_and_a_retry_doubles_nothing<B: Backend>() {
    let db = B::new();
    let store = db.open();
    let g = store.add_goods(&new_goods(2500), None).unwrap();
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
    let g = store.add_goods(&new_goods(5), None).unwrap();
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
    assert_eq!(store.restock(g.id, 3).unwrap().raised().total, 8);
    assert!(matches!(
        store.restock(g.id + 99, 1),
        Err(StoreError::UnknownGoods(id)) if id == g.id + 99
    ));
}

fn a_second_live_order_is_refused_by_the_database_and_only_it<B: Backend>() {
    let db = B::new();
    let store = db.open();
    let g = store.add_goods(&new_goods(10), None).unwrap();
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
    let g = store.add_goods(&new_goods(10), None).unwrap();
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
    let g = store.add_goods(&new_goods(10), None).unwrap();
    let other = store.add_goods(&new_goods(10), None).unwrap();
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
        .add_goods(
            &NewGoods {
                price_cents: u64::MAX,
                start_ms: u64::MAX - 1,
                end_ms: u64::MAX,
                rules: SaleRules::default(),
                ..new_goods(1)
            },
            None,
        )
        .unwrap();
    if big_ids {
        assert_eq!(g.id, big);
    }
    let times = (g.price_cents, g.start_ms, g.end_ms);
    assert_eq!(times, (u64::MAX, u64::MAX - 1, u64::MAX));
    assert_eq!(store.restock(g.id, 1).unwrap().raised().total, 2);
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
    // Ends beyond i64::MAX (a window "forever", as the web console makes
    // it) are moved to the clock too.
    let far = store
        .save_sale(
            g,
            SaleChange::Window {
                start_ms: u64::MAX - 1,
                end_ms: u64::MAX,
            },
        )
        .unwrap();
    assert_eq!((far.start_ms, far.end_ms), (u64::MAX - 1, u64::MAX));
    let ended = store.save_sale(g, SaleChange::End { now_ms: 7 }).unwrap();
    assert_eq!((ended.start_ms, ended.end_ms), (7, 7));
}

/// An order payable until u64::MAX (a payment window "forever" saturates
/// there) is never due; one due is.
fn only_due_orders_expire_whatever_their_deadline<B: Backend>() {
    let db = B::new();
    let store = db.open();
    let g = goods(&store, 5);
    let payable_until = |no, user, pay_by_ms| OrderRecord {
        pay_by_ms,
        ..order(no, user, g)
    };
    let orders = [
        payable_until(1, 1, u64::MAX),
        payable_until(2, 2, 1 << 63),
        payable_until(3, 3, 500),
    ];
    store.commit_orders(&orders, &[]).unwrap();
    let expired: Vec<OrderNo> = store
        .expire_due(1_000, 10)
        .unwrap()
        .iter()
        .map(|o| o.order_no)
        .collect();
    assert_eq!(expired, [3]);
}

/// More request ids in one batch than one statement can carry (MySQL takes
/// at most 65,535 placeholders, five a row): all kept.
fn a_big_batch_keeps_every_request_id<B: Backend>() {
    let backend = B::new();
    let store = backend.open();
    let g = store.add_goods(&new_goods(20_000), None).unwrap().id;
    let orders: Vec<OrderRecord> = (0..13_200).map(|i| order(100_000 + i, i, g)).collect();
    let ids: Vec<Option<RequestId>> = (0..13_200)
        .map(|i: u64| RequestId::new(1 + u128::from(i)))
        .collect();
    let written = store.commit_requested_orders(&orders, &[], &ids).unwrap();
    assert!(written.iter().all(|w| *w == Written::Stored));
    assert_eq!(backend.kept_rows(), 13_200);
}

per_backend!(
    a_big_batch_keeps_every_request_id,
    only_due_orders_expire_whatever_their_deadline,
    goods_are_added_listed_and_restocked,
    a_big_batch_is_stored_in_chunks_and_a_retry_doubles_nothing,
    orders_round_trip_and_batches_are_idempotent,
    a_second_live_order_is_refused_by_the_database_and_only_it,
    a_reused_order_number_is_inconsistent_and_writes_nothing,
    live_holders_and_find_order_skip_cancelled_orders,
    ids_above_i64_max_round_trip,
    sale_controls_are_saved,
);

/// The tests of batches again on MySQL, every chunk inserted.
mod mysql_inserted {
    macro_rules! inserted {
        ($($test:ident),* $(,)?) => {
            $(#[test]
            fn $test() {
                super::$test::<super::Mysql<false>>()
            })*
        };
    }

    inserted!(
        a_big_batch_keeps_every_request_id,
        a_big_batch_is_stored_in_chunks_and_a_retry_doubles_nothing,
        orders_round_trip_and_batches_are_idempotent,
        a_second_live_order_is_refused_by_the_database_and_only_it,
        a_reused_order_number_is_inconsistent_and_writes_nothing,
    );
}
