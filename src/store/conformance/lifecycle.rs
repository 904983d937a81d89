//! What every [`OrderStore`] does after "ok", checked against SQLite and
//! MySQL with the backends of `conformance::backend` (the tests are
//! `store::conformance::lifecycle::{sqlite,mysql}::*`): PAY, CANCEL and the
//! expiry settle each order once, purchase limits hold a slot per live
//! order, and epochs fence off the orders of a reconciled goods.

use std::collections::BTreeSet;
use std::sync::Arc;

use seckill_proto::OrderState;

use super::backend::{Backend, Mysql, Sqlite};
use super::orders::{due, goods, order};
use crate::store::{Epoch, GoodsId, OrderRecord, OrderStore, SaleChange, StoreError, Written};

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

/// The order store never holds more live orders of a goods than its total,
/// whatever the stock store sold: a fenced batch that would go over is not
/// written (sold out) unless an earlier try wrote it; a cancellation, by
/// the buyer or by the expiry, frees a unit for the next; a restock raises
/// the cap; two stores on one database share it.
fn live_orders_never_exceed_the_total<B: Backend>() {
    let db = B::new();
    let (a, b) = (db.open(), db.open());
    let g = a.add_goods(&super::orders::new_goods(2), None).unwrap().id;
    let e = a.next_epoch(g, 0).unwrap();
    let two = [order(1, 1, g), order(2, 2, g)];
    assert_eq!(
        a.commit_orders(&two, &[e, e]).unwrap(),
        [Written::Stored; 2]
    );
    // A unit the stock store should not have had (it lost a deduction).
    assert_eq!(commit_one(&b, order(3, 3, g), e), Written::SoldOut);
    // A retry of the first batch is stored, not refused, and counts nothing.
    assert_eq!(
        a.commit_orders(&two, &[e, e]).unwrap(),
        [Written::Stored; 2]
    );
    assert!(a.cancel(1, 1).unwrap().unwrap().cancelled_now);
    assert_eq!(
        b.commit_orders(&[order(3, 3, g), order(4, 4, g)], &[e, e])
            .unwrap(),
        [Written::SoldOut; 2],
        "two orders for one unit"
    );
    assert_eq!(commit_one(&b, order(3, 3, g), e), Written::Stored);
    a.restock(g, 1).unwrap();
    assert_eq!(commit_one(&a, order(4, 4, g), e), Written::Stored);
    assert_eq!(commit_one(&a, order(5, 5, g), e), Written::SoldOut);
    let cancelled = OrderState::Cancelled as u8;
    let live = db
        .rows()
        .into_iter()
        .filter(|&(_, state)| state != cancelled);
    assert_eq!(live.count(), 3);
}

/// A count of live orders left wrong (too low, then too high) is set to the
/// live orders held, and caps the goods' orders at its total again.
fn a_drifted_live_count_is_recounted<B: Backend>() {
    let db = B::new();
    let store = db.open();
    let (g, e) = three_units(&store);
    let two = [order(1, 1, g), order(2, 2, g)];
    assert_eq!(
        store.commit_orders(&two, &[e, e]).unwrap(),
        [Written::Stored; 2]
    );
    assert_eq!(store.recount_live(g).unwrap(), None);
    db.set_live_count(g, 0);
    assert_eq!(store.recount_live(g).unwrap(), Some((0, 2)));
    assert_eq!(store.recount_live(g).unwrap(), None);
    // A paid order is live too.
    assert!(store.pay(2, 2, 2_000).unwrap().is_some());
    db.set_live_count(g, 0);
    assert_eq!(store.recount_live(g).unwrap(), Some((0, 2)));
    assert_eq!(commit_one(&store, order(3, 3, g), e), Written::Stored);
    assert_eq!(commit_one(&store, order(4, 4, g), e), Written::SoldOut);
    db.set_live_count(g, 5);
    assert!(store.cancel(1, 1).unwrap().unwrap().cancelled_now);
    assert_eq!(store.recount_live(g).unwrap(), Some((4, 2)));
    assert_eq!(commit_one(&store, order(4, 4, g), e), Written::Stored);
    assert_eq!(store.recount_live(g + 1).unwrap(), None, "no such goods");
}

/// A new goods of three units, and its first epoch.
fn three_units(store: &impl OrderStore) -> (GoodsId, Epoch) {
    let g = store
        .add_goods(&super::orders::new_goods(3), None)
        .unwrap()
        .id;
    (g, store.next_epoch(g, 0).unwrap())
}

/// What became of one order committed on its own under `epoch`.
fn commit_one(store: &impl OrderStore, o: OrderRecord, epoch: Epoch) -> Written {
    let written = store.commit_orders(&[o], &[epoch]).unwrap();
    assert_eq!(written.len(), 1, "{written:?}");
    written[0]
}

/// A chunk of a batch that met a unique key (here a second order of a
/// user) is placed row by row, and the orders of it that went in count as
/// live: the cap then refuses the order past the total. (Counted as stored
/// by an earlier try instead, they would leave room for more live orders
/// than units.)
fn a_chunk_that_met_a_duplicate_counts_its_orders_as_live<B: Backend>() {
    let db = B::new();
    let store = db.open();
    let (g, e) = three_units(&store);
    let batch = [order(1, 1, g), order(2, 2, g), order(3, 1, g)];
    assert_eq!(
        store.commit_orders(&batch, &[e, e, e]).unwrap(),
        [Written::Stored, Written::Stored, Written::Duplicate(1)]
    );
    assert_eq!(commit_one(&store, order(4, 4, g), e), Written::Stored);
    assert_eq!(
        commit_one(&store, order(5, 5, g), e),
        Written::SoldOut,
        "a fourth live order of a goods of 3 units"
    );
    assert!(store.cancel(2, 2).unwrap().unwrap().cancelled_now);
    assert_eq!(commit_one(&store, order(5, 5, g), e), Written::Stored);
    assert_eq!(commit_one(&store, order(6, 6, g), e), Written::SoldOut);
}

per_backend!(
    a_chunk_that_met_a_duplicate_counts_its_orders_as_live,
    a_drifted_live_count_is_recounted,
    live_orders_never_exceed_the_total,
    pay_cancel_and_expiry_settle_each_order_once,
    pay_and_cancel_settle_an_order_once,
    expiry_cancels_what_is_due_once_and_a_late_pay_cancels_too,
    pays_racing_two_expiry_sweeps_settle_each_order_once,
    a_purchase_limit_gives_each_order_its_own_slot,
    a_refused_order_written_as_cancelled_stays_cancelled,
    epochs_rise_and_fence_off_orders_of_older_ones,
);
