//! Orders reserved and never written, or written late (their server died,
//! or its writer stalled, between the deduction and the commit): a retry
//! under the same request id is decided afresh, or gets its order back, and
//! a unit held for such an order goes back on sale.

use super::*;

/// A BUY whose order could not be written is told busy, and its request id
/// is forgotten with it: the retry under the same id is decided afresh (not
/// told for an hour that its order is being written), and a repeat after
/// that gets the order the retry made.
#[test]
fn a_request_id_whose_order_was_never_written_is_free_again() {
    let orders = Arc::new(FlakyOrders::default());
    let sale = durable(Arc::new(MemoryStock::new()), orders.clone());
    let buy = [Buy {
        user: 7,
        token: NO_TOKEN,
        request_id: seckill_proto::RequestId::new(77),
    }];
    let first = written(sale.reserve(1, &buy));
    *orders.failing.lock() = true;
    assert_eq!(sale.commit(vec![first])[0].status(), Status::Busy);
    *orders.failing.lock() = false;
    let again = written(sale.reserve(1, &buy));
    let no = again.order().order_no;
    assert_eq!(sale.commit(vec![again]), [Reply::Bought { order_no: no }]);
    assert_eq!(
        sale.reserve(1, &buy),
        [Decision::Answer(Reply::Bought { order_no: no })]
    );
}

/// A BUY of user 7 under a request id whose first attempt reserved an order
/// two minutes ago that no store has (its server died, or its writer
/// stalled, between the deduction and the commit): the retry is told
/// `pending` and asks for a repair, which is returned with the order the
/// stock store holds for it and what it was reserved under.
struct Stalled {
    buy: [Buy; 1],
    order: OrderRecord,
    epoch: crate::store::Epoch,
    repair: GoodsId,
}

fn stalled(sale: &Sale, stock: &MemoryStock) -> Stalled {
    let id = seckill_proto::RequestId::new(5);
    let made_ms = now_ms() - 120_000;
    let order_no = crate::sale::order_no::made_at_for_tests(made_ms, 9, 1);
    let first = crate::store::Buyer {
        user: 7,
        order_no,
        token: NO_TOKEN,
        request_id: id,
    };
    let rules = crate::store::fixtures::rules_at(1, now_ms());
    let epoch = stock.reserve(1, &rules, &[first]).unwrap().epoch;
    let buy = [Buy {
        user: 7,
        token: NO_TOKEN,
        request_id: id,
    }];
    assert_eq!(status(&sale.reserve(1, &buy)), Status::Pending);
    let repair = sale.repair_requests().try_recv().expect("a repair asked");
    let order = OrderRecord {
        order_no,
        user_id: 7,
        goods_id: 1,
        state: OrderState::Created,
        created_ms: made_ms,
        pay_by_ms: rules.pay_by_ms,
    };
    Stalled {
        buy,
        order,
        epoch,
        repair,
    }
}

/// A request id naming an order its server never wrote (it died between
/// the deduction and the commit): the retry is told to come back and asks
/// for the goods to be reconciled; the reconciliation fences off any late
/// write of that order, takes its phantom holder out and forgets the id, so
/// the next retry is decided afresh.
#[test]
fn an_abandoned_request_id_is_forgotten_by_the_next_reconciliation() {
    let stock = Arc::new(MemoryStock::new());
    let sale = durable(stock.clone(), Arc::new(FlakyOrders::default()));
    let dead = stalled(&sale, &stock);
    sale.repair(dead.repair);
    let again = written(sale.reserve(1, &dead.buy));
    assert_ne!(again.order().order_no, dead.order.order_no);
}

/// … unless the order was written after all, after its id was noted and
/// before the reconciliation took its epoch (its writer had passed the
/// fence and stalled): the id is kept, and the retry gets that order back
/// as its own (`ok`), never a second unit where the limit would allow one.
#[test]
fn a_request_id_whose_order_was_written_late_is_kept() {
    let stock = Arc::new(MemoryStock::new());
    let orders = Arc::new(FlakyOrders::default());
    let sale = durable(stock.clone(), orders.clone());
    let late = stalled(&sale, &stock);
    orders
        .commit_orders(std::slice::from_ref(&late.order), &[late.epoch])
        .unwrap();
    sale.repair(late.repair);
    assert_eq!(
        sale.reserve(1, &late.buy),
        [Decision::Answer(Reply::Bought {
            order_no: late.order.order_no
        })]
    );
}

/// A unit the stock store holds for user 7's order that no store has, made
/// two minutes ago (its server died between the deduction and the commit):
/// the user's BUY, without a request id, is told `pending` and asks for a
/// repair, which takes the phantom holder out; the next BUY buys. An order
/// made a moment ago is still being written: no repair. Nor, within a
/// minute of the last, for another such holder (a clock far behind would
/// make orders being written look old).
#[test]
fn a_unit_held_for_an_order_never_written_goes_back_on_sale() {
    let stock = Arc::new(MemoryStock::new());
    let sale = durable(stock.clone(), Arc::new(FlakyOrders::default()));
    let rules = crate::store::fixtures::rules_at(1, now_ms());
    let phantom = crate::sale::order_no::made_at_for_tests(now_ms() - 120_000, 9, 1);
    let dead = crate::store::fixtures::buy(7, phantom, NO_TOKEN);
    stock.reserve(1, &rules, &[dead]).unwrap();
    let buy = buys(&[7]);
    assert_eq!(status(&sale.reserve(1, &buy)), Status::Pending);
    let repair = sale.repair_requests().try_recv().expect("no repair asked");
    sale.repair(repair);

    let again = written(sale.reserve(1, &buy));
    assert_ne!(again.order().order_no, phantom);
    // Not committed yet: held, and being written.
    assert_eq!(status(&sale.reserve(1, &buy)), Status::Pending);
    assert!(
        sale.repair_requests().try_recv().is_err(),
        "a repair asked for an order being written"
    );

    stock.add(1, 1, 2).unwrap();
    let phantom = crate::sale::order_no::made_at_for_tests(now_ms() - 120_000, 9, 2);
    let dead = crate::store::fixtures::buy(9, phantom, NO_TOKEN);
    stock.reserve(1, &rules, &[dead]).unwrap();
    assert_eq!(status(&sale.reserve(1, &buys(&[9]))), Status::Pending);
    assert!(
        sale.repair_requests().try_recv().is_err(),
        "a second repair within a minute"
    );
}
