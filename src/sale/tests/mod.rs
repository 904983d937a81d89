//! The sale's rules against stores that fail on demand.

mod doubles;
mod queued;
mod unwritten;

use std::sync::Arc;

use parking_lot::Mutex;

use seckill_proto::{NewGoods, OrderState, Reply, SaleAction, SaleRules, Status, NO_TOKEN};

use self::doubles::{FlakyOrders, FlakyStock, TestQueue};
use super::{now_ms, Buy, Decision, PendingOrder, Queues, Sale};
use crate::metrics::Metrics;

use crate::store::fixtures::created;
use crate::store::{GoodsId, MemoryStock, OrderRecord, OrderStore, StockStore, UserId};

/// A durable-mode sale on these stores, node id 1.
fn durable(stock: Arc<dyn StockStore>, orders: Arc<dyn OrderStore>) -> Sale {
    Sale::open(stock, orders, Queues::None, 1, Arc::new(Metrics::default())).unwrap()
}

/// An embedded order store in a directory of its own, kept as long as the
/// directory is.
fn sqlite_orders() -> (tempfile::TempDir, Arc<crate::store::SqliteStore>) {
    let dir = tempfile::tempdir().unwrap();
    let orders = Arc::new(crate::store::SqliteStore::open(&dir.path().join("t.db")).unwrap());
    (dir, orders)
}

/// The goods an ADD_GOODS reply says was added.
fn added(reply: Reply) -> seckill_proto::Goods {
    match reply {
        Reply::GoodsAdded(goods) => goods,
        other => panic!("ADD_GOODS failed: {other:?}"),
    }
}

fn buys(users: &[UserId]) -> Vec<Buy> {
    users
        .iter()
        .map(|&user| Buy {
            user,
            token: NO_TOKEN,
            request_id: None,
        })
        .collect()
}

/// The order store has the goods and its total: ADD_GOODS and RESTOCK
/// succeeded even when the stock store failed after them (a `busy`
/// would have the admin do them twice), and the stock catches up before
/// the next sale.
#[test]
fn admin_changes_stand_when_the_stock_store_fails_after_them() {
    let (_dir, orders) = sqlite_orders();
    let stock = Arc::new(FlakyStock::default());
    let sale = durable(stock.clone(), orders);
    *stock.failing.lock() = true;
    let new = NewGoods {
        name: "lamp".into(),
        price_cents: 100,
        stock: 1,
        start_ms: 0,
        end_ms: u64::MAX,
        rules: SaleRules::default(),
        buckets: 1,
    };
    let goods = added(sale.add_goods(&new, None));
    assert!(matches!(sale.restock(goods.id, 1), Reply::Restocked(g) if g.total == 2));
    // While the stock store is down, nothing sells.
    assert_eq!(status(&sale.reserve(goods.id, &buys(&[1]))), Status::Busy);
    // Once it is back, a BUY asks for the goods to be repaired (off the
    // BUY path) and is told to come back; once repaired, the goods sells
    // exactly its new total.
    *stock.failing.lock() = false;
    assert_eq!(status(&sale.reserve(goods.id, &buys(&[1]))), Status::Busy);
    let asked = sale
        .repair_requests()
        .try_recv()
        .expect("a repair was asked");
    assert_eq!(asked, goods.id);
    // A repair that fails backs off (100 ms at first): the BUYs meanwhile
    // ask for none, where each used to send a request the admin worker
    // then dropped as not due.
    *stock.failing.lock() = true;
    let failed_at = std::time::Instant::now();
    sale.repair(asked);
    *stock.failing.lock() = false;
    assert_eq!(status(&sale.reserve(goods.id, &buys(&[1]))), Status::Busy);
    // (Unless this thread was held up past the 100 ms.)
    let asked_meanwhile = sale.repair_requests().try_recv().is_ok();
    assert!(!asked_meanwhile || failed_at.elapsed().as_millis() >= 100);
    std::thread::sleep(std::time::Duration::from_millis(150));
    assert_eq!(status(&sale.reserve(goods.id, &buys(&[1]))), Status::Busy);
    let asked = sale
        .repair_requests()
        .try_recv()
        .expect("a repair asked once the backoff ran out");
    sale.repair(asked);
    let sold = sale.reserve(goods.id, &buys(&[1, 2, 3]));
    assert!(matches!(sold[0], Decision::Write(_)), "{sold:?}");
    assert!(matches!(sold[1], Decision::Write(_)), "{sold:?}");
    assert_eq!(status(&sold[2..]), Status::SoldOut);
}

fn written(decisions: Vec<Decision>) -> PendingOrder {
    match <[Decision; 1]>::try_from(decisions) {
        Ok([Decision::Write(order)]) => order,
        other => panic!("expected one write, got {other:?}"),
    }
}

fn status(decisions: &[Decision]) -> Status {
    match decisions {
        [Decision::Answer(reply)] => reply.status(),
        other => panic!("expected an answer, got {other:?}"),
    }
}

/// A token is spent only by a BUY that makes an order: one whose write
/// failed is told busy, and its retry with the same token buys.
#[test]
fn a_token_whose_order_was_never_written_buys_on_the_retry() {
    let orders = Arc::new(FlakyOrders::with_tokens());
    let sale = durable(Arc::new(MemoryStock::new()), orders.clone());
    let Reply::Token { token, .. } = sale.issue_token(7, 1) else {
        panic!("no token")
    };
    let with_token = [Buy {
        user: 7,
        token,
        request_id: None,
    }];
    let first = written(sale.reserve(1, &with_token));
    *orders.failing.lock() = true;
    assert_eq!(sale.commit(vec![first])[0].status(), Status::Busy);
    *orders.failing.lock() = false;
    let again = written(sale.reserve(1, &with_token));
    let order_no = again.order().order_no;
    assert_eq!(sale.commit(vec![again]), [Reply::Bought { order_no }]);
}

/// A retry while the first order is being written is not given its
/// number: the write may fail, and then the number never existed.
#[test]
fn a_retry_before_the_commit_is_told_to_come_back() {
    let orders = Arc::new(FlakyOrders::default());
    let sale = durable(Arc::new(MemoryStock::new()), orders.clone());

    let first = written(sale.reserve(1, &buys(&[7])));
    let first_no = first.order().order_no;
    assert_eq!(status(&sale.reserve(1, &buys(&[7]))), Status::Pending);
    *orders.failing.lock() = true;
    assert_eq!(sale.commit(vec![first])[0].status(), Status::Busy);

    // The unit came back; the user buys again, under a new number.
    *orders.failing.lock() = false;
    let second = written(sale.reserve(1, &buys(&[7])));
    let second_no = second.order().order_no;
    assert_ne!(second_no, first_no);
    assert_eq!(
        sale.commit(vec![second]),
        [Reply::Bought {
            order_no: second_no
        }]
    );
    // Committed: now a retry gets the number, and nobody else a unit.
    let again = sale.reserve(1, &buys(&[7, 8]));
    assert_eq!(
        again,
        [
            Decision::Answer(Reply::AlreadyBought {
                order_no: second_no
            }),
            Decision::Answer(Reply::error(Status::SoldOut, "sold out")),
        ]
    );
}

fn lamp(stock: u32) -> NewGoods {
    NewGoods {
        name: "lamp".into(),
        price_cents: 100,
        stock,
        start_ms: 0,
        end_ms: u64::MAX,
        rules: SaleRules::default(),
        buckets: 1,
    }
}

/// Past the most goods a sale holds (LIST_GOODS must fit one reply),
/// ADD_GOODS is refused and makes nothing; a repeat of an ADD_GOODS that
/// made a goods is still answered with it.
#[test]
fn add_goods_stops_at_the_most_goods() {
    let (_dir, orders) = sqlite_orders();
    let mut sale = durable(Arc::new(MemoryStock::new()), orders.clone());
    sale.set_max_goods(2);
    let id = seckill_proto::RequestId::new(7).unwrap();
    let first = added(sale.add_goods(&lamp(1), Some(id)));
    added(sale.add_goods(&lamp(1), None));
    match sale.add_goods(&lamp(1), None) {
        Reply::Error { status, .. } => assert_eq!(status, Status::BadRequest),
        other => panic!("a third goods: {other:?}"),
    }
    assert_eq!(orders.goods().unwrap().len(), 2);
    assert_eq!(added(sale.add_goods(&lamp(1), Some(id))).id, first.id);
}

/// A cancel whose unit could not be returned (the stock store failed)
/// leaves the goods sold out in the catalog, so no BUY reaches a worker
/// to repair it: the periodic refresh reconciles it, and the unit sells.
#[test]
fn a_unit_whose_return_failed_comes_back_at_the_next_refresh() {
    let (_dir, orders) = sqlite_orders();
    let stock = Arc::new(FlakyStock::default());
    let sale = durable(stock.clone(), orders);
    let goods = added(sale.add_goods(&lamp(1), None));
    let order = written(sale.reserve(goods.id, &buys(&[7])));
    let order_no = order.order().order_no;
    sale.commit(vec![order]);
    let entry = sale.catalog().get(goods.id).unwrap();
    assert!(entry.quick_buy_answer(8, NO_TOKEN, now_ms()).is_some());

    *stock.failing.lock() = true;
    assert!(matches!(sale.cancel(7, order_no), Reply::Cancelled(_)));
    // Still sold out here: the unit is held in the stock store.
    let quick = entry.quick_buy_answer(8, NO_TOKEN, now_ms());
    assert_eq!(quick.map(|r| r.status()), Some(Status::SoldOut));

    *stock.failing.lock() = false;
    sale.refresh_stock();
    assert_eq!(entry.quick_buy_answer(8, NO_TOKEN, now_ms()), None);
    assert!(matches!(
        sale.reserve(goods.id, &buys(&[8]))[0],
        Decision::Write(_)
    ));
}

/// A sold-out goods whose restock's outcome was lost (the COMMIT's reply):
/// its BUYs are not told `sold_out` by the reactor's flag, which knows
/// nothing of the units the restock may have made, but go to a worker,
/// which answers `busy` until the goods is reconciled.
#[test]
fn a_restock_in_doubt_turns_buys_busy_not_sold_out() {
    let orders = Arc::new(FlakyOrders::default());
    let sale = durable(Arc::new(MemoryStock::new()), orders.clone());
    let order = written(sale.reserve(1, &buys(&[7])));
    sale.commit(vec![order]);
    let entry = sale.catalog().get(1).unwrap();
    let quick = entry.quick_buy_answer(8, NO_TOKEN, now_ms());
    assert_eq!(quick.map(|r| r.status()), Some(Status::SoldOut));

    *orders.failing.lock() = true;
    assert_eq!(sale.restock(1, 5).status(), Status::InternalError);
    assert_eq!(entry.quick_buy_answer(8, NO_TOKEN, now_ms()), None);
    assert_eq!(status(&sale.reserve(1, &buys(&[8]))), Status::Busy);
}

/// An expiry sweep that panics does not end the expiry thread: it sweeps
/// again at its next tick, and every goods is marked for reconciliation
/// (the sweep may have cancelled orders whose units did not come back),
/// once for a run of sweeps that panic.
#[test]
fn a_sweep_that_panics_does_not_end_the_expiry_thread() {
    use clap::Parser;
    let orders = Arc::new(FlakyOrders::default());
    let sale = Arc::new(durable(Arc::new(MemoryStock::new()), orders.clone()));
    let marks = sale.catalog().get(1).unwrap().gate.unsure_marks();
    let config = crate::config::Config::parse_from(["seckill-server", "--expiry-interval", "10ms"]);
    let stop = crate::stop::Stop::new();
    let thread = crate::expiry::Expiry::new(&config, sale.clone(), stop.clone())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while *orders.sweeps.lock() < 3 && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    stop.trigger();
    thread.join().expect("the thread lived on");
    assert!(*orders.sweeps.lock() >= 3, "swept again after a panic");
    // Once for the run of panics, not once a sweep.
    assert_eq!(
        sale.catalog().get(1).unwrap().gate.unsure_marks(),
        marks + 1
    );
}

/// A sale control the order store has but the stock store never got (its
/// server died in between, or was told busy though the write went through)
/// is passed on by the next server to see it there: the stock store then
/// refuses every server's BUYs, even one whose catalog has not seen it.
#[test]
fn a_control_that_missed_the_stock_store_is_passed_on_by_a_refresh() {
    let (_dir, orders) = sqlite_orders();
    let stock = Arc::new(MemoryStock::new());
    let a = durable(stock.clone(), orders.clone());
    let goods = added(a.add_goods(&lamp(5), None));
    let b = durable(stock.clone(), orders.clone());
    orders
        .save_sale(goods.id, crate::store::SaleChange::Pause)
        .unwrap();
    b.refresh_stock();
    // A's catalog still shows the sale open: the stock store decides.
    assert_eq!(status(&a.reserve(goods.id, &buys(&[1]))), Status::Paused);
}

/// The same for a goods this server has not seen before (added and paused
/// through another), and a pass that fails is tried again at the next
/// refresh.
#[test]
fn a_control_of_goods_new_here_is_passed_on_and_retried() {
    let (_dir, orders) = sqlite_orders();
    let stock = Arc::new(FlakyStock::default());
    let b = durable(stock.clone(), orders.clone());
    let a = durable(stock.clone(), orders.clone());
    let goods = added(a.add_goods(&lamp(5), None));
    orders
        .save_sale(goods.id, crate::store::SaleChange::Pause)
        .unwrap();
    // B's first look fails to pass it on; its next one does.
    *stock.failing.lock() = true;
    b.refresh_stock();
    *stock.failing.lock() = false;
    b.refresh_stock();
    assert_eq!(status(&a.reserve(goods.id, &buys(&[2]))), Status::Paused);
}

/// A sale control the stock store could not be told is answered `busy`,
/// not `ok` (other servers may go on selling until their catalogs have
/// it), though it is saved and in force here; sent again once the stock
/// store is back, it is `ok`, and every server's BUYs are refused.
#[test]
fn a_control_the_stock_store_missed_is_answered_busy() {
    let (_dir, orders) = sqlite_orders();
    let stock = Arc::new(FlakyStock::default());
    let a = durable(stock.clone(), orders.clone());
    let goods = added(a.add_goods(&lamp(5), None));
    let b = durable(stock.clone(), orders.clone());
    stock.failing_goods.lock().push(goods.id);
    let reply = a.control(goods.id, SaleAction::Pause);
    assert_eq!(reply.status(), Status::Busy, "{reply:?}");
    let saved = orders.find_goods(goods.id).unwrap().unwrap();
    assert!(saved.paused, "saved in the order store all the same");
    let entry = a.catalog().get(goods.id).unwrap();
    let quick = entry.quick_buy_answer(3, NO_TOKEN, now_ms());
    assert_eq!(quick.map(|r| r.status()), Some(Status::Paused));

    stock.failing_goods.lock().clear();
    let reply = a.control(goods.id, SaleAction::Pause);
    assert!(matches!(reply, Reply::SaleChanged(_)), "{reply:?}");
    // B's catalog has not seen the pause: the stock store refuses.
    assert_eq!(status(&b.reserve(goods.id, &buys(&[4]))), Status::Paused);
}

/// At start, a goods that cannot be reconciled (its shard down) is left in
/// doubt, its BUYs busy until a repair gets through, and the others sell:
/// the start does not fail, to be tried again with every goods frozen
/// again.
#[test]
fn a_goods_that_cannot_be_reconciled_at_start_waits_alone() {
    let (_dir, orders) = sqlite_orders();
    let new = |name: &str| NewGoods {
        name: name.into(),
        price_cents: 100,
        stock: 5,
        start_ms: 0,
        end_ms: u64::MAX,
        rules: SaleRules::default(),
        buckets: 1,
    };
    let lamp = orders.add_goods(&new("lamp"), None).unwrap().id;
    let vase = orders.add_goods(&new("vase"), None).unwrap().id;
    let stock = Arc::new(FlakyStock::default());
    stock.failing_goods.lock().push(vase);
    let sale = durable(stock.clone(), orders.clone());
    assert!(matches!(
        &sale.reserve(lamp, &buys(&[1]))[..],
        [Decision::Write(_)]
    ));
    assert_eq!(status(&sale.reserve(vase, &buys(&[1]))), Status::Busy);
    // Its shard back, the repair asked for at start loads it.
    stock.failing_goods.lock().clear();
    let asked = sale
        .repair_requests()
        .try_recv()
        .expect("a repair asked for");
    assert_eq!(asked, vase);
    sale.repair(vase);
    assert!(matches!(
        &sale.reserve(vase, &buys(&[1]))[..],
        [Decision::Write(_)]
    ));
    // With every goods failing, the start fails (the stores are down).
    *stock.failing.lock() = true;
    let opened = Sale::open(
        stock.clone(),
        orders,
        Queues::None,
        1,
        Arc::new(Metrics::default()),
    );
    assert!(opened.is_err());
}

/// A reconciliation also sets right the order store's count of a goods'
/// live orders, left wrong here by hand (as an older server might).
#[test]
fn a_reconciliation_recounts_the_order_stores_live_orders() {
    let (dir, orders) = sqlite_orders();
    let sale = durable(Arc::new(MemoryStock::new()), orders.clone());
    let goods = added(sale.add_goods(&lamp(5), None));
    orders
        .insert_orders(&[created(1, 1, goods.id), created(2, 2, goods.id)])
        .unwrap();
    let file = rusqlite::Connection::open(dir.path().join("t.db")).unwrap();
    let live_orders = || -> i64 {
        file.query_row("SELECT live_orders FROM goods", [], |r| r.get(0))
            .unwrap()
    };
    assert_eq!(live_orders(), 2);
    file.execute("UPDATE goods SET live_orders = 7", [])
        .unwrap();
    sale.reconcile(Some(goods.id)).unwrap();
    assert_eq!(live_orders(), 2);
}

/// A recount that fails leaves the reconciliation done: the stock is
/// loaded, and the count is only the order store's own cap.
#[test]
fn a_failed_recount_fails_no_reconciliation() {
    let orders = Arc::new(FlakyOrders::default());
    let sale = durable(Arc::new(MemoryStock::new()), orders.clone());
    *orders.recount_failing.lock() = true;
    let drifts = sale.reconcile(Some(1)).unwrap();
    assert_eq!(drifts.len(), 1);
}
