//! The queued ack mode, and stores another server shares: orders
//! acknowledged and not yet written, as the order store, the queue and the
//! stock store each show them.

use super::*;

/// An order written, then cancelled, whose queue entry is not yet
/// acknowledged: reconciliation counts it from the order store
/// (cancelled), not from the queue, so its unit stays on sale.
#[test]
fn a_cancelled_order_still_queued_holds_no_unit() {
    let (_dir, orders) = sqlite_orders();
    let goods = orders.add_goods(&lamp(2), None).unwrap().id;
    let record = |order_no, user_id| created(order_no, user_id, goods);
    let (cancelled, queued_only) = (record(70, 7), record(80, 8));
    orders
        .insert_orders(std::slice::from_ref(&cancelled))
        .unwrap();
    orders.cancel(7, 70).unwrap();
    let queue = Arc::new(TestQueue(Mutex::new(vec![cancelled, queued_only])));
    let sale = Sale::open(
        Arc::new(MemoryStock::new()),
        orders,
        Queues::Acked(queue),
        1,
        Arc::new(Metrics::default()),
    )
    .unwrap();
    let Reply::Reconciled(drifts) = sale.reconcile_reply(Some(goods)) else {
        panic!("RECONCILE failed");
    };
    // Only the order that is in the queue alone holds a unit.
    assert_eq!((drifts[0].holders, drifts[0].remaining), (1, 1));
}

/// A durable sale on a stock store whose queue holds what a server with
/// `--ack queued` left: its reconciliations count those orders as held, as
/// the queued mode's do. A reload without them would put their units back
/// on sale, and the durable orders that took them would fill the total
/// before the queued ones (which the order store does not refuse past it)
/// were written: oversold.
#[test]
fn a_durable_sale_counts_what_a_queued_server_left() {
    let (_dir, orders) = sqlite_orders();
    let goods = orders.add_goods(&lamp(3), None).unwrap().id;
    let left = vec![created(80, 8, goods), created(90, 9, goods)];
    let queue = Arc::new(TestQueue(Mutex::new(left)));
    let sale = Sale::open(
        Arc::new(MemoryStock::new()),
        orders,
        Queues::Leftover(queue),
        1,
        Arc::new(Metrics::default()),
    )
    .unwrap();
    assert!(
        sale.queue().is_none(),
        "nothing is queued in the durable mode"
    );
    let Reply::Reconciled(drifts) = sale.reconcile_reply(Some(goods)) else {
        panic!("RECONCILE failed");
    };
    assert_eq!((drifts[0].holders, drifts[0].remaining), (2, 1));
}

/// Queued mode: a PAY or CANCEL of an order no store has written and this
/// server does not know (another server acknowledged it, then died before
/// its drain wrote it) is told to come back while some queue still holds
/// entries as old as the order, not that there is no such order; with the
/// queues drained, it has none.
#[test]
fn an_order_another_server_queued_is_not_denied() {
    let (_dir, orders) = sqlite_orders();
    let goods = orders.add_goods(&lamp(2), None).unwrap().id;
    let made_ms = now_ms();
    let order_no = crate::sale::order_no::made_at_for_tests(made_ms, 9, 1);
    let elsewhere = OrderRecord {
        created_ms: made_ms,
        ..created(order_no, 7, goods)
    };
    let queue = Arc::new(TestQueue(Mutex::new(Vec::new())));
    let sale = Sale::open(
        Arc::new(MemoryStock::new()),
        orders,
        Queues::Acked(queue.clone()),
        1,
        Arc::new(Metrics::default()),
    )
    .unwrap();
    assert_eq!(sale.pay(7, order_no).status(), Status::NoOrder);
    // Queued since this server started, by another; the queues are read
    // again a second after the last reading.
    queue.0.lock().push(elsewhere);
    std::thread::sleep(std::time::Duration::from_millis(1_100));
    assert_eq!(sale.pay(7, order_no).status(), Status::Busy);
    assert_eq!(sale.cancel(7, order_no).status(), Status::Busy);
    // A made-up number from the future, or from over an hour ago, is none.
    let future = crate::sale::order_no::made_at_for_tests(made_ms + 60_000, 9, 1);
    assert_eq!(sale.pay(7, future).status(), Status::NoOrder);
    let old = crate::sale::order_no::made_at_for_tests(made_ms - 3_700_000, 9, 1);
    assert_eq!(sale.pay(7, old).status(), Status::NoOrder);
    // Its queue drained (the order written, or never acknowledged).
    queue.0.lock().clear();
    std::thread::sleep(std::time::Duration::from_millis(1_100));
    assert_eq!(sale.pay(7, order_no).status(), Status::NoOrder);
}

/// Queued mode: an order another server acknowledged, which the order store
/// does not have yet and this server never saw, is the user's all the same
/// through ORDER_STATUS and LIST_ORDERS here: the stock store holds it, and
/// its goods' queue has entries. Once the order store has it, its answer
/// stands: cancelled (by a server that died before it gave the unit back),
/// no order. In the durable mode a holder the order store lacks was never
/// acknowledged, and is no order.
#[test]
fn an_order_another_server_queued_is_shown() {
    for queued in [true, false] {
        let on = Shared::new(3, queued);
        let (sale, goods) = (&on.sale, on.goods);
        assert_eq!(sale.order_status(7, goods).status(), Status::NoOrder);
        let record = on.reserved_elsewhere(7);
        let order_no = record.order_no;
        on.queue.0.lock().push(record.clone());
        let listed = |sale: &Sale| match sale.list_orders(7) {
            Reply::Orders(orders) => orders,
            other => panic!("LIST_ORDERS answered {other:?}"),
        };
        if !queued {
            assert_eq!(sale.order_status(7, goods).status(), Status::NoOrder);
            assert!(listed(sale).is_empty());
            continue;
        }
        let status = sale.order_status(7, goods);
        let Reply::Order(order) = status else {
            panic!("ORDER_STATUS answered {status:?}")
        };
        assert_eq!(
            (order.order_no, order.user_id, order.goods_id, order.state),
            (order_no, 7, goods, OrderState::Created)
        );
        assert_eq!(listed(sale), vec![order]);
        assert_eq!(sale.order_status(8, goods).status(), Status::NoOrder);
        // Written, then cancelled by a server that died before it gave the
        // unit back: the stock store still holds it, the order store says.
        on.orders
            .insert_orders(std::slice::from_ref(&record))
            .unwrap();
        on.orders.cancel(7, order_no).unwrap();
        on.queue.0.lock().clear();
        assert!(sale.repair_requests().try_recv().is_err());
        assert_eq!(sale.order_status(7, goods).status(), Status::NoOrder);
        let Some(listed) = listed(sale).first().map(|o| o.state) else {
            panic!("no order listed")
        };
        assert_eq!(listed, OrderState::Cancelled);
        // The unit it still held is given back by the repair this asked for.
        assert_eq!(on.stock.remaining(goods).unwrap(), Some(2));
        assert_eq!(sale.repair_requests().try_recv(), Ok(goods));
        sale.repair(goods);
        assert_eq!(on.stock.remaining(goods).unwrap(), Some(3));
    }
}

/// A unit held in the stock store for an order the order store has as
/// cancelled (the server that cancelled it died before it gave the unit
/// back), in the durable mode: the buyer's BUY gives the unit back and is
/// told to come back, not that they already bought; the retry buys afresh.
/// The queued mode does not ask the order store on the BUY path (it sells
/// while that store is down): there the unit waits for a reconciliation.
#[test]
fn a_cancelled_order_still_holding_its_unit_gives_it_back_at_the_next_buy() {
    for queued in [false, true] {
        let on = Shared::new(1, queued);
        let (sale, goods) = (&on.sale, on.goods);
        // Another server's order of the one unit, written, then cancelled
        // in the order store only.
        let record = on.reserved_elsewhere(7);
        let order_no = record.order_no;
        on.orders.insert_orders(&[record]).unwrap();
        on.orders.cancel(7, order_no).unwrap();
        assert_eq!(on.stock.remaining(goods).unwrap(), Some(0));
        if queued {
            assert_eq!(
                sale.reserve(goods, &buys(&[7])),
                [Decision::Answer(Reply::AlreadyBought { order_no })]
            );
            assert_eq!(on.stock.remaining(goods).unwrap(), Some(0));
            continue;
        }
        assert_eq!(status(&sale.reserve(goods, &buys(&[7]))), Status::Busy);
        assert_eq!(on.stock.remaining(goods).unwrap(), Some(1));
        let again = sale.reserve(goods, &buys(&[7]));
        assert_ne!(written(again).order().order_no, order_no);
    }
}

/// The same unit, when nobody's BUY comes to give it back: the goods looks
/// sold out, so the reactors answer every BUY from the flag and none
/// reaches a worker. The refresh reconciles it once it has looked so for
/// a minute with units in no live order, and the unit is on sale again;
/// not before (an order may still be on its way to the order store).
#[test]
fn a_unit_stranded_by_a_dead_canceller_is_back_on_sale_within_a_minute() {
    for queued in [false, true] {
        let on = Shared::new(1, queued);
        let (sale, goods) = (&on.sale, on.goods);
        let record = on.reserved_elsewhere(7);
        on.orders
            .insert_orders(std::slice::from_ref(&record))
            .unwrap();
        on.orders.cancel(7, record.order_no).unwrap();
        let t0 = now_ms();
        sale.refresh_stock_at(t0);
        let entry = sale.catalog().get(goods).unwrap();
        assert!(entry.view.is_sold_out(), "queued {queued}");
        sale.refresh_stock_at(t0 + 59_000);
        assert!(!entry.gate.is_unsure(), "queued {queued}: too soon");
        sale.refresh_stock_at(t0 + 60_000);
        assert!(entry.gate.is_unsure(), "queued {queued}");
        sale.refresh_stock_at(t0 + 60_001);
        assert_eq!(
            on.stock.remaining(goods).unwrap(),
            Some(1),
            "queued {queued}"
        );
        assert!(!entry.view.is_sold_out(), "queued {queued}");
    }
}

/// The minute of a stranded unit is counted over readings one after
/// another: a stock store that could not be read meanwhile starts it again
/// (one short reading before the outage and one after are not a minute).
#[test]
fn a_stranded_minute_is_not_counted_across_an_outage() {
    let (_dir, orders) = sqlite_orders();
    let goods = orders.add_goods(&lamp(1), None).unwrap().id;
    let stock = Arc::new(FlakyStock::default());
    let sale = durable(stock.clone(), orders.clone());
    let now = now_ms();
    let order_no = crate::sale::order_no::made_at_for_tests(now, 9, 1);
    let rules = crate::store::fixtures::rules_at(1, now);
    let buyers = crate::store::fixtures::buyers(&[(7, order_no)]);
    stock.reserve(goods, &rules, &buyers).unwrap();
    let record = created(order_no, 7, goods);
    orders.insert_orders(std::slice::from_ref(&record)).unwrap();
    orders.cancel(7, order_no).unwrap();
    sale.refresh_stock_at(now);
    *stock.failing.lock() = true;
    sale.refresh_stock_at(now + 30_000);
    *stock.failing.lock() = false;
    sale.refresh_stock_at(now + 61_000);
    let entry = sale.catalog().get(goods).unwrap();
    assert!(!entry.gate.is_unsure(), "counted across the outage");
    sale.refresh_stock_at(now + 121_000);
    assert!(entry.gate.is_unsure(), "a minute of readings after it");
}

/// The queued mode's last orders of a goods written by the drain between
/// the catalog's reading of the live orders and the look at the queue: not
/// taken for units in no live order (the live orders are read again).
#[test]
fn a_queue_drained_between_the_two_readings_is_no_stranded_unit() {
    /// A queue whose look at its backlog is where the drain writes what it
    /// holds.
    struct DrainedOnLook {
        left: Mutex<Vec<OrderRecord>>,
        orders: Arc<crate::store::SqliteStore>,
    }
    impl crate::store::OrderQueue for DrainedOnLook {
        fn read(
            &self,
            _: &[GoodsId],
            _: &str,
            _: usize,
            _: std::time::Duration,
        ) -> Result<Vec<crate::store::QueuedOrder>, crate::store::StoreError> {
            Ok(Vec::new())
        }
        fn claim_stale(
            &self,
            _: GoodsId,
            _: &str,
            _: std::time::Duration,
            _: usize,
        ) -> Result<Vec<crate::store::QueuedOrder>, crate::store::StoreError> {
            Ok(Vec::new())
        }
        fn ack(&self, _: GoodsId, _: &[String]) -> Result<(), crate::store::StoreError> {
            Ok(())
        }
        fn queued(&self, _: GoodsId) -> Result<Vec<OrderRecord>, crate::store::StoreError> {
            Ok(self.left.lock().clone())
        }
        fn backlog(&self, _: GoodsId) -> Result<crate::store::Backlog, crate::store::StoreError> {
            let left = std::mem::take(&mut *self.left.lock());
            self.orders.insert_orders(&left)?;
            Ok(crate::store::Backlog::default())
        }
    }
    let (_dir, orders) = sqlite_orders();
    let goods = orders.add_goods(&lamp(1), None).unwrap().id;
    let stock = Arc::new(MemoryStock::new());
    let queue = Arc::new(DrainedOnLook {
        left: Mutex::new(Vec::new()),
        orders: orders.clone(),
    });
    let sale = Sale::open(
        stock.clone(),
        orders,
        Queues::Acked(queue.clone()),
        1,
        Arc::new(Metrics::default()),
    )
    .unwrap();
    let now = now_ms();
    let order_no = crate::sale::order_no::made_at_for_tests(now, 9, 1);
    let rules = crate::store::fixtures::rules_at(1, now);
    let buyers = crate::store::fixtures::buyers(&[(7, order_no)]);
    stock.reserve(goods, &rules, &buyers).unwrap();
    queue.left.lock().push(created(order_no, 7, goods));
    sale.refresh_stock_at(now);
    sale.refresh_stock_at(now + 60_000);
    let entry = sale.catalog().get(goods).unwrap();
    assert!(!entry.gate.is_unsure(), "reconciled for units all sold");
}

/// A sale on stores another server shares (SQLite, the stock in memory),
/// in the queued mode (with a queue the test fills) or the durable one,
/// with one goods.
struct Shared {
    orders: Arc<crate::store::SqliteStore>,
    stock: Arc<MemoryStock>,
    queue: Arc<TestQueue>,
    goods: GoodsId,
    sale: Sale,
    _dir: tempfile::TempDir,
}

impl Shared {
    fn new(units: u32, queued: bool) -> Shared {
        let (dir, orders) = sqlite_orders();
        let goods = orders.add_goods(&lamp(units), None).unwrap().id;
        let stock = Arc::new(MemoryStock::new());
        let queue = Arc::new(TestQueue(Mutex::new(Vec::new())));
        let sale = Sale::open(
            stock.clone(),
            orders.clone(),
            match queued {
                true => Queues::Acked(queue.clone()),
                false => Queues::None,
            },
            1,
            Arc::new(Metrics::default()),
        )
        .unwrap();
        Shared {
            orders,
            stock,
            queue,
            goods,
            sale,
            _dir: dir,
        }
    }

    /// Another server's RESERVE of a unit for `user` on the shared stock
    /// store: the order it is for (of node 9), made now.
    fn reserved_elsewhere(&self, user: UserId) -> OrderRecord {
        let now = now_ms();
        let order_no = crate::sale::order_no::made_at_for_tests(now, 9, 1);
        let rules = crate::store::fixtures::rules_at(1, now);
        let buyers = crate::store::fixtures::buyers(&[(user, order_no)]);
        self.stock.reserve(self.goods, &rules, &buyers).unwrap();
        OrderRecord {
            created_ms: now,
            ..created(order_no, user, self.goods)
        }
    }
}

/// A queued order written long after its BUY (the order store was down)
/// gets its whole payment window from the write: its PAY was `busy` until
/// then, and its deadline may have passed meanwhile. One written at once
/// keeps the deadline its buyer may have read.
#[test]
fn an_order_written_late_gets_its_payment_window_from_the_write() {
    let shared = Shared::new(5, true);
    let now = now_ms();
    const WINDOW: u64 = 15 * 60_000;
    let bought_at = |user, ago| OrderRecord {
        created_ms: now - ago,
        pay_by_ms: now - ago + WINDOW,
        ..created(1000 + user, user, shared.goods)
    };
    let late = bought_at(1, 20 * 60_000);
    let fresh = bought_at(2, 0);
    shared.sale.write_queued(&[late, fresh.clone()]).unwrap();
    let pay_by = |user| {
        shared
            .orders
            .find_order(user, shared.goods)
            .unwrap()
            .unwrap()
            .pay_by_ms
    };
    let late_by = pay_by(1);
    assert!(
        (now + WINDOW..=now_ms() + WINDOW).contains(&late_by),
        "{late_by} is not a window from the write"
    );
    assert_eq!(pay_by(2), fresh.pay_by_ms);
    // Not due at the next sweep.
    assert_eq!(shared.orders.expire_due(now_ms(), 10).unwrap(), vec![]);
}

/// LIST_ORDERS in the queued mode asks the stock store for the user's
/// orders of each goods whose queue has entries, and, once it could not
/// say (each ask may wait up to `--redis-wait-timeout` for the replicas),
/// asks it no more for the other goods of that list.
#[test]
fn a_list_stops_asking_the_stock_store_once_it_cannot_say() {
    let (_dir, orders) = sqlite_orders();
    let goods: Vec<GoodsId> = (0..3)
        .map(|_| orders.add_goods(&lamp(5), None).unwrap().id)
        .collect();
    let stock = Arc::new(FlakyStock::default());
    let queue = Arc::new(TestQueue(Mutex::new(
        goods.iter().map(|&g| created(100 + g, 8, g)).collect(),
    )));
    let sale = Sale::open(
        stock.clone(),
        orders,
        Queues::Acked(queue),
        1,
        Arc::new(Metrics::default()),
    )
    .unwrap();
    let asked = || stock.held_asked.load(std::sync::atomic::Ordering::Relaxed);
    assert!(matches!(sale.list_orders(7), Reply::Orders(_)));
    assert_eq!(asked(), 3, "one ask a goods with queued orders");
    *stock.failing_goods.lock() = goods;
    assert!(matches!(sale.list_orders(7), Reply::Orders(_)));
    assert_eq!(asked(), 4, "asked again after the first could not say");
}
