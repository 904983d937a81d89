//! The SQLite store in a file of a temporary directory.

use seckill_proto::SaleRules;

use super::*;

#[test]
fn orders_round_trip_and_batches_are_idempotent() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("t.db")).unwrap();
    let g = store
        .add_goods(&NewGoods {
            name: "phone".into(),
            price_cents: 100,
            stock: 5,
            start_ms: 0,
            end_ms: 10,
            rules: SaleRules::default(),
        })
        .unwrap();
    let batch: Vec<_> = (0..1200).map(|i| order(1000 + i, i, g.id, NEVER)).collect();
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
        .insert_orders(&[order(5000, 5000, g.id, NEVER), order(5001, 7, g.id, NEVER)])
        .unwrap();
    assert_eq!(written, [Written::Stored, Written::Duplicate(1007)]);
    assert_eq!(
        store.find_order(5000, g.id).unwrap().unwrap().order_no,
        5000
    );
    assert_eq!(store.find_order(7, g.id).unwrap().unwrap().order_no, 1007);
    assert_eq!(store.restock(g.id, 3).unwrap().total, 8);
    assert!(matches!(
        store.restock(99, 1),
        Err(StoreError::UnknownGoods(99))
    ));
}

fn store_with_goods(limit: u8) -> (tempfile::TempDir, SqliteStore, GoodsId) {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("t.db")).unwrap();
    let g = store
        .add_goods(&NewGoods {
            name: "phone".into(),
            price_cents: 100,
            stock: 100,
            start_ms: 0,
            end_ms: u64::MAX,
            rules: SaleRules {
                per_user_limit: limit,
                pay_window_ms: 1000,
                token_required: false,
            },
        })
        .unwrap();
    (dir, store, g.id)
}

/// A payment deadline that never comes.
const NEVER: u64 = u64::MAX;

fn order(order_no: u64, user_id: u64, goods_id: u64, pay_by_ms: u64) -> OrderRecord {
    OrderRecord {
        order_no,
        user_id,
        goods_id,
        state: OrderState::Created,
        created_ms: order_no,
        pay_by_ms,
    }
}

#[test]
fn pay_and_cancel_settle_an_order_once() {
    let (_dir, store, g) = store_with_goods(1);
    store
        .insert_orders(&[order(1, 10, g, 100), order(2, 20, g, 100)])
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
    assert_eq!(
        (kept.order.state, kept.cancelled_now),
        (OrderState::Paid, false)
    );

    let cancelled = store.cancel(20, 2).unwrap().unwrap();
    assert_eq!(
        (cancelled.order.state, cancelled.cancelled_now),
        (OrderState::Cancelled, true)
    );
    // Only the first cancel cancelled it; a PAY after it cannot revive it.
    assert!(!store.cancel(20, 2).unwrap().unwrap().cancelled_now);
    let late = store.pay(20, 2, 50).unwrap().unwrap();
    assert_eq!(
        (late.order.state, late.cancelled_now),
        (OrderState::Cancelled, false)
    );
    // The cancelled order holds no slot: its user may buy again.
    assert_eq!(store.live_holders(g).unwrap(), vec![(10, 1)]);
    assert_eq!(
        store.insert_orders(&[order(3, 20, g, 100)]).unwrap(),
        [Written::Stored]
    );
    let listed: Vec<_> = store.orders_of(20, 10).unwrap();
    assert_eq!(
        listed
            .iter()
            .map(|o| (o.order_no, o.state))
            .collect::<Vec<_>>(),
        [(3, OrderState::Created), (2, OrderState::Cancelled)]
    );
}

#[test]
fn expiry_cancels_what_is_due_once_and_a_late_pay_cancels_too() {
    let (_dir, store, g) = store_with_goods(1);
    store
        .insert_orders(&[
            order(1, 1, g, 100),
            order(2, 2, g, 200),
            order(3, 3, g, 100),
        ])
        .unwrap();
    store.pay(3, 3, 99).unwrap();
    let expired = store.expire_due(150, 10).unwrap();
    assert_eq!(
        expired.iter().map(|o| o.order_no).collect::<Vec<_>>(),
        [1],
        "only the unpaid order past its window"
    );
    assert!(store.expire_due(150, 10).unwrap().is_empty(), "once");
    // PAY at or past the end of the window cancels instead.
    let late = store.pay(2, 2, 200).unwrap().unwrap();
    assert_eq!(
        (late.order.state, late.cancelled_now),
        (OrderState::Cancelled, true)
    );
    assert!(store.expire_due(1000, 10).unwrap().is_empty());
}

#[test]
fn a_purchase_limit_gives_each_order_a_slot_and_refuses_past_it() {
    let (_dir, store, g) = store_with_goods(3);
    let batch: Vec<_> = (1..=4).map(|n| order(n, 7, g, 100)).collect();
    assert_eq!(
        store.insert_orders(&batch).unwrap(),
        [
            Written::Stored,
            Written::Stored,
            Written::Stored,
            Written::Duplicate(1)
        ]
    );
    // A retried batch is stored, not refused; a cancel frees a slot.
    assert_eq!(
        store.insert_orders(&batch[..3]).unwrap(),
        [Written::Stored; 3]
    );
    store.cancel(7, 2).unwrap();
    assert_eq!(
        store.insert_orders(&[order(5, 7, g, 100)]).unwrap(),
        [Written::Stored]
    );
    let mut live = store.live_holders(g).unwrap();
    live.sort_unstable();
    assert_eq!(live, [(7, 1), (7, 3), (7, 5)]);
}

/// A queued order refused as a second live order is written as
/// cancelled (it needs no slot, even with the user at the limit); its
/// entry read again later finds it stored, not a free slot.
#[test]
fn a_refused_order_written_as_cancelled_stays_cancelled() {
    for limit in [1, 2] {
        let (_dir, store, g) = store_with_goods(limit);
        let held: Vec<_> = (1..=u64::from(limit))
            .map(|n| order(n, 7, g, 100))
            .collect();
        store.insert_orders(&held).unwrap();
        let refused = order(80, 7, g, 100);
        assert_eq!(
            store.insert_orders(std::slice::from_ref(&refused)).unwrap(),
            [Written::Duplicate(1)]
        );
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
        assert!(store.live_holders(g).unwrap().iter().all(|&(_, n)| n != 80));
        assert_eq!(store.stored(&[80, 81]).unwrap(), [80]);
    }
}

#[test]
fn sale_controls_are_saved() {
    let (_dir, store, g) = store_with_goods(1);
    let saved = store.save_sale(g, true, 5, 6).unwrap();
    assert!(saved.paused);
    assert_eq!((saved.start_ms, saved.end_ms), (5, 6));
    assert_eq!(store.goods().unwrap()[0], saved);
    assert!(matches!(
        store.save_sale(g + 1, false, 1, 2),
        Err(StoreError::UnknownGoods(_))
    ));
}
