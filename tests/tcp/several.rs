//! Several servers on one Redis and one MySQL: no oversell, no lost order,
//! whatever each of them does (reconciles, dies, restarts).

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use seckill_client::{Client, Purchase};

use crate::harness::{cluster_lock, on_sale, while_busy, Backends, Server};

/// One of several servers on one store pair; each leases a node id of its
/// own from the order store.
pub(crate) fn start(dir: &tempfile::TempDir, stores: &Backends, ack: &str, n: u16) -> Server {
    let args = stores.args(ack);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    Server::start(&dir.path().join(format!("unused-{n}.db")), &args)
}

/// A buyer thread: users from `next_user` one after another, each BUY
/// retried (busy, a server killed under it) until it has an answer, through
/// whichever of `addrs` answers. Records every order a client was told it
/// holds. Stops at the first `sold_out`, or when `stop` is set.
fn buyer(
    addrs: Arc<Mutex<Vec<std::net::SocketAddr>>>,
    first: usize,
    goods: u64,
    next_user: Arc<AtomicU64>,
    told: Arc<Mutex<HashMap<u64, u64>>>,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let mut at = first;
        let connect = |at: usize| {
            let addrs = addrs.lock().unwrap();
            let addr = addrs[at % addrs.len()];
            Client::builder(addr)
                .read_timeout(Duration::from_secs(10))
                .connect()
                .ok()
        };
        let mut client = connect(at);
        'users: while !stop.load(Ordering::Relaxed) {
            let user = next_user.fetch_add(1, Ordering::Relaxed);
            loop {
                if stop.load(Ordering::Relaxed) {
                    return;
                }
                let Some(c) = client.as_mut() else {
                    at += 1;
                    std::thread::sleep(Duration::from_millis(20));
                    client = connect(at);
                    continue;
                };
                match c.buy(user, goods) {
                    Ok(Purchase::Ordered(no)) | Ok(Purchase::AlreadyBought(no)) => {
                        let before = told.lock().unwrap().insert(user, no);
                        assert!(
                            before.is_none_or(|b| b == no),
                            "user {user} told two orders: {before:?} and {no}"
                        );
                        continue 'users;
                    }
                    Ok(Purchase::SoldOut) => return,
                    Ok(other) => panic!("user {user}: unexpected {other:?}"),
                    Err(e) if e.is_busy() => std::thread::sleep(Duration::from_millis(2)),
                    // A server killed under us, or a reply in doubt: the same
                    // BUY again, through the next server.
                    Err(_) => {
                        at += 1;
                        client = connect(at);
                    }
                }
            }
        }
    })
}

/// A crowd buying one goods through several servers: the servers it uses
/// (a restarted one is swapped in), the next user, and the order each user
/// was told it holds.
pub(crate) struct Crowd {
    pub addrs: Arc<Mutex<Vec<std::net::SocketAddr>>>,
    goods: u64,
    next_user: Arc<AtomicU64>,
    pub told: Arc<Mutex<HashMap<u64, u64>>>,
}

impl Crowd {
    pub(crate) fn new(servers: &[Server], goods: u64) -> Crowd {
        Crowd {
            addrs: Arc::new(Mutex::new(servers.iter().map(|s| s.addr).collect())),
            goods,
            next_user: Arc::new(AtomicU64::new(1)),
            told: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    /// `threads` [`buyer`]s, until sold out or `stop`.
    pub(crate) fn buyers(
        &self,
        threads: usize,
        stop: &Arc<AtomicBool>,
    ) -> Vec<std::thread::JoinHandle<()>> {
        (0..threads)
            .map(|t| {
                buyer(
                    self.addrs.clone(),
                    t,
                    self.goods,
                    self.next_user.clone(),
                    self.told.clone(),
                    stop.clone(),
                )
            })
            .collect()
    }

    /// Server `i` dies (kill -9) mid-sale and comes back, from `restart`,
    /// on another port, which the crowd uses from then on.
    pub(crate) fn kill_and_restart(
        &self,
        servers: &mut Vec<Server>,
        i: usize,
        restart: impl FnOnce() -> Server,
    ) {
        servers.remove(i).kill();
        std::thread::sleep(Duration::from_millis(300));
        servers.insert(i, restart());
        self.addrs.lock().unwrap()[i] = servers[i].addr;
    }

    /// Waits until `orders` buyers have been told they hold an order.
    pub(crate) fn wait_told(&self, orders: usize) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while self.told.lock().unwrap().len() < orders {
            assert!(Instant::now() < deadline, "sale made no progress");
            std::thread::sleep(Duration::from_millis(2));
        }
    }
}

/// Three servers on one Redis and MySQL; a crowd through all three while
/// RECONCILE goes to server 0 every 100 ms and server 1 is killed -9 and
/// restarted mid-sale: exactly the stock sold, every acknowledged order in
/// MySQL once, nobody twice, and Redis holds total − orders.
fn three_servers_reconciling_and_crashing(ack: &str, stores: Backends) {
    const STOCK: u32 = 6000;
    let dir = tempfile::tempdir().unwrap();
    let mut servers: Vec<Server> = (1..=3).map(|n| start(&dir, &stores, ack, n)).collect();
    let goods = servers[0]
        .admin()
        .add_goods(on_sale("console", STOCK))
        .unwrap()
        .id;
    wait_known(&servers, goods);
    let crowd = Crowd::new(&servers, goods);
    let stop = Arc::new(AtomicBool::new(false));
    let buyers = crowd.buyers(12, &stop);
    // RECONCILE every 100 ms on server 0 while the crowd buys.
    let reconciling = Arc::new(AtomicBool::new(true));
    let reconciler = {
        let (addr, reconciling) = (servers[0].addr, reconciling.clone());
        std::thread::spawn(move || {
            let mut admin = Client::builder(addr)
                .token(crate::harness::TOKEN)
                .read_timeout(Duration::from_secs(30))
                .connect()
                .expect("admin");
            let mut runs = 0;
            while reconciling.load(Ordering::Relaxed) {
                // `busy` (its gate taken) is fine; anything else is not.
                match admin.reconcile(Some(goods)) {
                    Ok(_) => runs += 1,
                    Err(e) if e.is_busy() => {}
                    Err(e) => panic!("reconcile: {e}"),
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            runs
        })
    };
    crowd.wait_told(STOCK as usize / 3);
    crowd.kill_and_restart(&mut servers, 1, || start(&dir, &stores, ack, 2));
    for b in buyers {
        b.join().unwrap();
    }
    reconciling.store(false, Ordering::Relaxed);
    let runs = reconciler.join().unwrap();
    eprintln!("{ack}: {runs} reconciliations during the sale");
    assert!(runs >= 1, "no reconciliation ran during the sale");

    sell_the_rest_and_check(&servers, &stores, &crowd, STOCK);
}

/// RECONCILE of one goods, sent again while it is `busy`: another server
/// may be reconciling it (a restarted one does at start), and its count
/// stands; busy means nothing was done.
fn reconcile_when_free(server: &Server, goods: u64) -> Vec<seckill_client::Drift> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match server.admin().reconcile(Some(goods)) {
            Err(e) if e.is_busy() && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(100))
            }
            other => return other.unwrap(),
        }
    }
}

/// After a sale through `servers` that something went wrong in: a
/// reconciliation (units held by orders that died with a server come
/// back), the last units sold, and then exactly `stock` orders in MySQL,
/// every acknowledged one once, nobody twice, every unit sold to someone
/// told so, Redis at 0 and in step.
pub(crate) fn sell_the_rest_and_check(
    servers: &[Server],
    stores: &Backends,
    crowd: &Crowd,
    stock: u32,
) {
    let goods = crowd.goods;
    reconcile_when_free(&servers[2 % servers.len()], goods);
    let last = crowd.buyers(6, &Arc::new(AtomicBool::new(false)));
    for b in last {
        b.join().unwrap();
    }
    stores.wait_written(goods, stock as usize);
    let rows = stores.orders();
    let live: Vec<_> = rows.iter().filter(|r| r.3 != 2).collect();
    assert_eq!(live.len(), stock as usize, "orders for {stock} units");
    let numbers: HashSet<u64> = rows.iter().map(|r| r.0).collect();
    assert_eq!(numbers.len(), rows.len(), "an order stored twice");
    let users: HashSet<u64> = live.iter().map(|r| r.1).collect();
    assert_eq!(users.len(), live.len(), "a user holds two orders");
    let stored: HashMap<u64, u64> = live.iter().map(|r| (r.1, r.0)).collect();
    let told = crowd.told.lock().unwrap().clone();
    for (user, no) in &told {
        assert_eq!(
            stored.get(user),
            Some(no),
            "acknowledged order {no} of user {user}"
        );
    }
    assert_eq!(
        told.len(),
        stock as usize,
        "every unit was sold to someone told so"
    );
    assert_eq!(stores.redis_stock(goods), Some(0));
    let drift = reconcile_when_free(&servers[1 % servers.len()], goods);
    assert!(drift[0].is_in_step(), "{drift:?}");
    assert_eq!(drift[0].holders, stock);
}

#[test]
fn three_servers_reconciling_and_crashing_durable() {
    three_servers_reconciling_and_crashing("durable", Backends::new());
}

#[test]
fn three_servers_reconciling_and_crashing_queued() {
    three_servers_reconciling_and_crashing("queued", Backends::new());
}

/// The same on the local Redis Cluster: the goods' keys on one shard, the
/// queue read there on its own.
#[test]
fn three_servers_reconciling_and_crashing_on_a_redis_cluster_durable() {
    let _cluster = cluster_lock();
    three_servers_reconciling_and_crashing("durable", Backends::on_cluster());
}

#[test]
fn three_servers_reconciling_and_crashing_on_a_redis_cluster_queued() {
    let _cluster = cluster_lock();
    three_servers_reconciling_and_crashing("queued", Backends::on_cluster());
}

/// Waits until every server knows the goods (the catalogs follow the order
/// store within a refresh).
pub(crate) fn wait_known(servers: &[Server], goods: u64) {
    let deadline = Instant::now() + Duration::from_secs(30);
    for s in servers {
        while s.client().get_goods(goods).is_err() {
            assert!(
                Instant::now() < deadline,
                "goods {goods} unknown to {}",
                s.addr
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// A BUY, retried while the server answers `busy` or `rate_limited`
/// (`while_busy`): the first other answer.
fn buy(server: &Server, user: u64, goods: u64) -> Purchase {
    while_busy(|| server.client().buy(user, goods)).unwrap_or_else(|e| panic!("user {user}: {e}"))
}

/// Buys until the answer is no longer `Paused` or `within` passes; returns
/// the last answer.
fn buy_while_paused(server: &Server, user: u64, goods: u64, within: Duration) -> Purchase {
    let deadline = Instant::now() + within;
    loop {
        match server.client().buy(user, goods) {
            Ok(Purchase::Paused) if Instant::now() < deadline => {}
            Ok(p) => return p,
            Err(e) if Instant::now() >= deadline => panic!("user {user}: {e}"),
            Err(_) => {}
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// One set of sale rules for every server: a goods added through one is
/// sold by all; a pause or an end sent to one refuses BUYs on the others
/// from the very next request (the stock store enforces them); a resume
/// sent to another reopens the sale everywhere.
fn sale_controls_hold_on_every_server(ack: &str) {
    use seckill_proto::SaleAction;
    let dir = tempfile::tempdir().unwrap();
    let stores = Backends::new();
    let servers: Vec<Server> = (1..=3).map(|n| start(&dir, &stores, ack, n)).collect();
    let goods = servers[0]
        .admin()
        .add_goods(on_sale("kettle", 100))
        .unwrap()
        .id;
    wait_known(&servers, goods);
    let mut user = 0;
    let mut next_user = || {
        user += 1;
        user
    };
    for s in &servers {
        let p = buy(s, next_user(), goods);
        assert!(matches!(p, Purchase::Ordered(_)), "{}: {p:?}", s.addr);
    }
    servers[0]
        .admin()
        .sale_control(goods, SaleAction::Pause)
        .unwrap();
    for s in &servers[1..] {
        assert_eq!(buy(s, next_user(), goods), Purchase::Paused, "{}", s.addr);
    }
    servers[1]
        .admin()
        .sale_control(goods, SaleAction::Resume)
        .unwrap();
    for s in [&servers[2], &servers[0]] {
        // The stock store reopens at once; a server's own quick answers
        // follow within its catalog refresh.
        let user = next_user();
        let p = buy_while_paused(s, user, goods, Duration::from_secs(10));
        assert!(matches!(p, Purchase::Ordered(_)), "{}: {p:?}", s.addr);
    }
    servers[2]
        .admin()
        .sale_control(goods, SaleAction::End)
        .unwrap();
    for s in &servers[..2] {
        assert_eq!(buy(s, next_user(), goods), Purchase::Ended, "{}", s.addr);
    }
    // Every server shows the same state within a refresh (500 ms; 10 s
    // for a loaded machine).
    let deadline = Instant::now() + Duration::from_secs(10);
    for s in &servers {
        while s.client().get_goods(goods).unwrap().state != seckill_proto::GoodsState::Ended {
            assert!(
                Instant::now() < deadline,
                "{} still shows it on sale",
                s.addr
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

#[test]
fn sale_controls_hold_on_every_server_durable() {
    sale_controls_hold_on_every_server("durable");
}

#[test]
fn sale_controls_hold_on_every_server_queued() {
    sale_controls_hold_on_every_server("queued");
}

/// A buyer whose order was cancelled through one server may buy again
/// through another, whose cache of holders follows within a refresh (it
/// learns from the stock store that a holder let go).
fn a_cancel_through_one_server_frees_the_buyer_on_another(ack: &str) {
    let dir = tempfile::tempdir().unwrap();
    let stores = Backends::new();
    let servers: Vec<Server> = (1..=2).map(|n| start(&dir, &stores, ack, n)).collect();
    let goods = servers[0]
        .admin()
        .add_goods(on_sale("radio", 5))
        .unwrap()
        .id;
    wait_known(&servers, goods);
    let Purchase::Ordered(first) = buy(&servers[0], 7, goods) else {
        panic!("{ack}: the first BUY did not order");
    };
    // Through the other server: the same order, which that server now
    // knows (and answers from its cache).
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match servers[1].client().buy(7, goods) {
            Ok(Purchase::AlreadyBought(no)) => {
                assert_eq!(no, first, "{ack}");
                break;
            }
            // Queued: written behind the reply; durable: being committed
            // (retried often enough to meet the user's BUY rate too).
            Err(e) if e.is_retryable() && Instant::now() < deadline => {}
            other => panic!("{ack}: {other:?}"),
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    stores.wait_written(goods, 1);
    servers[0].client().cancel(7, first).unwrap();
    // Within a few refreshes (500 ms each); asked slowly enough to stay
    // under the per-user BUY rate.
    let deadline = Instant::now() + Duration::from_secs(30);
    let again = loop {
        match buy(&servers[1], 7, goods) {
            Purchase::AlreadyBought(no) if no == first && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(200));
            }
            other => break other,
        }
    };
    assert!(
        matches!(again, Purchase::Ordered(no) if no != first),
        "{ack}: {again:?}"
    );
}

#[test]
fn a_cancel_through_one_server_frees_the_buyer_on_another_durable() {
    a_cancel_through_one_server_frees_the_buyer_on_another("durable");
}

#[test]
fn a_cancel_through_one_server_frees_the_buyer_on_another_queued() {
    a_cancel_through_one_server_frees_the_buyer_on_another("queued");
}

/// Queued mode: an order one server acknowledged and the order store does
/// not have yet (here its write is held up by a lock on the goods' row) is
/// the buyer's through another server too, by ORDER_STATUS and
/// LIST_ORDERS, before and after it is written.
#[test]
fn an_order_queued_through_one_server_is_shown_by_another() {
    use mysql::prelude::Queryable;
    let dir = tempfile::tempdir().unwrap();
    let stores = Backends::new();
    let servers: Vec<Server> = (1..=2).map(|n| start(&dir, &stores, "queued", n)).collect();
    let goods = servers[0]
        .admin()
        .add_goods(on_sale("lamp", 10))
        .unwrap()
        .id;
    wait_known(&servers, goods);
    let mut lock = stores.mysql();
    let mut held = lock.start_transaction(mysql::TxOpts::default()).unwrap();
    let _: Vec<u64> = held
        .exec(
            format!(
                "SELECT id FROM `{}`.goods WHERE id = ? FOR UPDATE",
                stores.db
            ),
            (goods,),
        )
        .unwrap();
    let Purchase::Ordered(order_no) = servers[0].client().buy(7, goods).unwrap() else {
        panic!("the BUY made no order");
    };
    let shown = |server: &Server| {
        let mut client = server.client();
        let status = client.order_status(7, goods).unwrap().map(|o| o.order_no);
        let listed: Vec<u64> = client
            .list_orders(7)
            .unwrap()
            .iter()
            .map(|o| o.order_no)
            .collect();
        (status, listed)
    };
    // Unwritten: the order store has no row yet.
    assert!(stores.orders().iter().all(|r| r.0 != order_no));
    assert_eq!(shown(&servers[1]), (Some(order_no), vec![order_no]));
    assert_eq!(servers[1].client().order_status(8, goods).unwrap(), None);
    held.rollback().unwrap();
    stores.wait_written(goods, 1);
    assert_eq!(shown(&servers[1]), (Some(order_no), vec![order_no]));
}

/// The same request id through two servers, and again through a restarted
/// one, gets one order: the first answer every time, with a purchase limit
/// of 3 (where a retry without the id would buy a second unit).
fn a_request_id_gets_one_order_through_any_server(ack: &str) {
    use seckill_proto::{RequestId, SaleRules};
    let dir = tempfile::tempdir().unwrap();
    let stores = Backends::new();
    let mut servers: Vec<Server> = (1..=2).map(|n| start(&dir, &stores, ack, n)).collect();
    let mut goods = on_sale("lamp", 10);
    goods.rules = SaleRules {
        per_user_limit: 3,
        ..SaleRules::default()
    };
    let goods = servers[0].admin().add_goods(goods).unwrap().id;
    wait_known(&servers, goods);
    let id = RequestId::new(0x5eed_0000_0000_0000_0000_0000_0000_0001).unwrap();
    let buy_with_id = |server: &Server| {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            match server.client().buy_with_request_id(7, goods, id) {
                Ok(p) => return p,
                // The first attempt's order still being written, or the
                // server still loading after its restart (retried often
                // enough to meet the user's BUY rate too).
                Err(e) if e.is_retryable() && Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20))
                }
                Err(e) => panic!("{ack}: {e}"),
            }
        }
    };
    let Purchase::Ordered(first) = buy_with_id(&servers[0]) else {
        panic!("{ack}: the first BUY made no order");
    };
    assert_eq!(buy_with_id(&servers[1]), Purchase::Ordered(first), "{ack}");
    stores.wait_written(goods, 1);
    let killed = servers.remove(0);
    killed.kill();
    servers.insert(0, start(&dir, &stores, ack, 1));
    assert_eq!(buy_with_id(&servers[0]), Purchase::Ordered(first), "{ack}");
    // One unit taken, one order stored.
    assert_eq!(stores.redis_stock(goods), Some(9), "{ack}");
    let rows = stores.orders();
    assert_eq!(
        rows.iter().filter(|r| r.1 == 7).count(),
        1,
        "{ack}: {rows:?}"
    );
    // Another user's BUY under that id is refused; without an id, the
    // same user buys a second unit (the limit is 3).
    let taken = servers[1].client().buy_with_request_id(8, goods, id);
    assert!(
        matches!(&taken, Err(e) if e.kind() == seckill_client::ErrorKind::Server(seckill_proto::Status::BadRequest)),
        "{ack}: {taken:?}"
    );
    assert!(matches!(buy(&servers[1], 7, goods), Purchase::Ordered(n) if n != first));
}

#[test]
fn a_request_id_gets_one_order_through_any_server_durable() {
    a_request_id_gets_one_order_through_any_server("durable");
}

#[test]
fn a_request_id_gets_one_order_through_any_server_queued() {
    a_request_id_gets_one_order_through_any_server("queued");
}

/// A repeat marked as one gets its first answer from every server, also one
/// whose cache says the goods is sold out: the last unit went to this very
/// purchase through another server. (Unmarked, that server may answer from
/// its cache, as PROTOCOL.md allows for first sends.)
fn a_marked_repeat_is_answered_from_the_stores_not_a_cache(ack: &str) {
    use seckill_proto::RequestId;
    let dir = tempfile::tempdir().unwrap();
    let stores = Backends::new();
    let servers: Vec<Server> = (1..=2).map(|n| start(&dir, &stores, ack, n)).collect();
    let goods = servers[0].admin().add_goods(on_sale("last", 1)).unwrap().id;
    wait_known(&servers, goods);
    let id = RequestId::new(0x0ddba11).unwrap();
    let Purchase::Ordered(first) = servers[0]
        .client()
        .buy_with_request_id(7, goods, id)
        .unwrap()
    else {
        panic!("{ack}: the last unit was not sold");
    };
    stores.wait_written(goods, 1);
    let deadline = Instant::now() + Duration::from_secs(30);
    while servers[1].client().get_goods(goods).unwrap().state != seckill_proto::GoodsState::SoldOut
    {
        assert!(
            Instant::now() < deadline,
            "{ack}: the other server never saw it sold out"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let again = servers[1]
        .client()
        .buy_with_request_id(7, goods, id.repeat())
        .unwrap();
    assert_eq!(again, Purchase::Ordered(first), "{ack}");
    // Another user is still told sold out, from the cache.
    assert_eq!(buy(&servers[1], 8, goods), Purchase::SoldOut, "{ack}");
}

#[test]
fn a_marked_repeat_is_answered_from_the_stores_not_a_cache_durable() {
    a_marked_repeat_is_answered_from_the_stores_not_a_cache("durable");
}

#[test]
fn a_marked_repeat_is_answered_from_the_stores_not_a_cache_queued() {
    a_marked_repeat_is_answered_from_the_stores_not_a_cache("queued");
}
