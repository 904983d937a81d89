//! Purchase limits, purchase tokens, cancels and sale controls over TCP.
//!
//! Each scenario is written once and run on the embedded stores (SQLite and
//! stock in memory) and, where stock comes back or a limit is kept, on
//! Redis and MySQL in the `durable` ack mode, through [`Shop`].

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst};
use std::sync::{Barrier, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use seckill_client::{
    Client, GoodsState, NewGoods, Order, OrderState, Pipeline, Reply, Request, SaleAction,
    SaleRules, Status,
};

use crate::harness::{on_sale, sqlite_orders, Backends, Server};

/// Where a test's server keeps goods, stock and orders.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Store {
    /// The default: a SQLite file, and the stock in process memory.
    Embedded,
    /// MySQL and Redis, buyers told "ok" once their order is committed.
    Durable,
}

/// A server and the stores it runs on, which outlive a restart.
struct Shop {
    /// First, so that the server dies before its stores are dropped.
    server: Server,
    stores: Option<Backends>,
    data: PathBuf,
    flags: Vec<String>,
    _dir: tempfile::TempDir,
}

impl Shop {
    fn open(store: Store, extra: &[&str]) -> Shop {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("sale.db");
        let stores = (store == Store::Durable).then(Backends::new);
        let mut flags = stores
            .as_ref()
            .map(|s| s.args("durable"))
            .unwrap_or_default();
        flags.extend(extra.iter().map(|f| f.to_string()));
        Shop {
            server: start(&data, &flags),
            stores,
            data,
            flags,
            _dir: dir,
        }
    }

    /// SIGKILL, then a new server on the same stores: what it shows was
    /// durable when it was answered.
    fn restart(self) -> Shop {
        let Shop {
            server,
            stores,
            data,
            flags,
            _dir,
        } = self;
        server.kill();
        Shop {
            server: start(&data, &flags),
            stores,
            data,
            flags,
            _dir,
        }
    }

    /// Every order row in the order store: (order number, user, goods,
    /// state), read from MySQL or from the SQLite file itself.
    fn order_rows(&self) -> Vec<(u64, u64, u64, u8)> {
        if let Some(stores) = &self.stores {
            return stores.orders();
        }
        sqlite_orders(&self.data)
    }

    /// The order rows of one goods.
    fn orders_of(&self, goods: u64) -> Vec<(u64, u64, u64, u8)> {
        let mut rows = self.order_rows();
        rows.retain(|r| r.2 == goods);
        rows
    }

    /// The goods has exactly `left` units for sale: as GET_GOODS shows
    /// it, and as Redis holds it.
    #[track_caller]
    fn assert_left(&self, goods: u64, left: u32, when: &str) {
        let shown = self.server.client().get_goods(goods).unwrap().remaining;
        assert_eq!(shown, left, "GET_GOODS remaining {when}");
        if let Some(stores) = &self.stores {
            assert_eq!(stores.redis_stock(goods), Some(left), "Redis stock {when}");
        }
    }

    /// After concurrent BUYs: the stock store holds exactly `left` units
    /// and one holder per live order (RECONCILE finds nothing to repair),
    /// and GET_GOODS shows `left`. GET_GOODS is read after the RECONCILE,
    /// which sets it: before, concurrent reports may leave it stale until
    /// the catalog's next refresh (see `a_quiet_sold_out_sale_shows_sold_out`).
    #[track_caller]
    fn assert_stock_store(&self, goods: u64, left: u32, when: &str) {
        let drift = self.server.admin().reconcile(Some(goods)).unwrap();
        assert_eq!(drift.len(), 1);
        assert!(drift[0].is_in_step(), "drift {when}: {:?}", drift[0]);
        assert_eq!(drift[0].remaining, left, "stock store {when}");
        self.assert_left(goods, left, when);
    }
}

fn start(data: &std::path::Path, flags: &[String]) -> Server {
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    Server::start(data, &flags)
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// A goods on sale now under these rules.
fn goods_with(name: &str, stock: u32, rules: SaleRules) -> NewGoods {
    NewGoods {
        rules,
        ..on_sale(name, stock)
    }
}

fn limit(per_user_limit: u8) -> SaleRules {
    SaleRules {
        per_user_limit,
        ..SaleRules::default()
    }
}

fn tokened() -> SaleRules {
    SaleRules {
        token_required: true,
        ..SaleRules::default()
    }
}

/// BUY as it went over the wire (no typed mapping): `token` 0 is none.
fn buy(client: &mut Client, user_id: u64, goods_id: u64, token: u64) -> Reply {
    client
        .request(&Request::Buy {
            user_id,
            goods_id,
            token,
            request_id: None,
        })
        .expect("BUY")
}

fn pay(client: &mut Client, user_id: u64, order_no: u64) -> Reply {
    client.request(&Request::Pay { user_id, order_no }).unwrap()
}

fn cancel(client: &mut Client, user_id: u64, order_no: u64) -> Reply {
    client
        .request(&Request::Cancel { user_id, order_no })
        .unwrap()
}

fn token(client: &mut Client, user_id: u64, goods_id: u64) -> Reply {
    client
        .request(&Request::Token { user_id, goods_id })
        .unwrap()
}

/// The order number of a BUY answered `ok`.
#[track_caller]
fn ordered(reply: Reply) -> u64 {
    match reply {
        Reply::Bought { order_no } => order_no,
        other => panic!("BUY answered {other:?}, not ok"),
    }
}

#[track_caller]
fn status_of<T: std::fmt::Debug>(result: seckill_client::Result<T>) -> Status {
    match result {
        Ok(value) => panic!("expected an error status, got {value:?}"),
        Err(e) => e
            .status()
            .unwrap_or_else(|| panic!("not a server error: {e}")),
    }
}

/// A CANCEL answered `ok` with this order, now cancelled.
#[track_caller]
fn assert_cancelled(reply: &Reply, user: u64, order_no: u64) {
    match reply {
        Reply::Cancelled(Order {
            order_no: no,
            user_id,
            state: OrderState::Cancelled,
            ..
        }) if *no == order_no && *user_id == user => {}
        other => panic!("CANCEL of order {order_no} answered {other:?}"),
    }
}

/// Buys one unit for each user, pipelined, retrying the BUYs answered
/// `busy` (nothing was done then); every other answer must be `ok`.
fn buy_each(client: &mut Client, goods: u64, users: &[u64]) -> HashMap<u64, u64> {
    let mut orders = HashMap::new();
    let mut left = users.to_vec();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !left.is_empty() {
        assert!(Instant::now() < deadline, "BUYs still busy: {left:?}");
        let mut p = Pipeline::new();
        left.iter().for_each(|&u| {
            p.buy(u, goods);
        });
        let replies = client.execute(&p).expect("BUYs");
        let mut busy = Vec::new();
        for (&user, reply) in left.iter().zip(replies) {
            match reply {
                Reply::Bought { order_no } => {
                    orders.insert(user, order_no);
                }
                // Retried this often while the goods is busy, a user may
                // also meet the BUY rate: retried the same way.
                r if r.status().is_retryable() => busy.push(user),
                other => panic!("user {user}: BUY answered {other:?}"),
            }
        }
        if !busy.is_empty() {
            thread::sleep(Duration::from_millis(20));
        }
        left = busy;
    }
    orders
}

// 1. Cancels.

/// Stock 1. A cancelled order's unit comes back exactly once, however many
/// CANCELs arrive at once (pipelined on one connection, and on two
/// connections at the same moment); each is answered `ok`. The sold-out
/// flag clears, the buyer may buy again, and a second CANCEL after the unit
/// is sold again returns nothing. PAY of a cancelled order, CANCEL of a
/// paid one and either on another user's order are refused and change
/// nothing.
fn cancel_returns_its_unit_exactly_once(store: Store) {
    const ROUNDS: u64 = 8;
    let shop = Shop::open(store, &[]);
    let goods = shop
        .server
        .admin()
        .add_goods(on_sale("bike", 1))
        .unwrap()
        .id;
    let (a, b, c) = (1, 2, 3);
    let mut client = shop.server.client();
    let a1 = ordered(buy(&mut client, a, goods, 0));
    assert_eq!(buy(&mut client, b, goods, 0).status(), Status::SoldOut);
    shop.assert_left(goods, 0, "after the sale");

    // Twice on one connection, pipelined.
    let mut twice = Pipeline::new();
    twice.cancel(a, a1).cancel(a, a1);
    let replies = client.execute(&twice).unwrap();
    assert_eq!(replies.len(), 2);
    replies.iter().for_each(|r| assert_cancelled(r, a, a1));
    shop.assert_left(goods, 1, "after a CANCEL sent twice");

    // Twice on each of two connections at the same moment, a few times
    // over: each time one buyer's unit, back once. B, turned away before,
    // buys first.
    for round in 0..ROUNDS {
        let buyer = b + 100 * round;
        let order = ordered(buy(&mut client, buyer, goods, 0));
        // The sold-out flag was cleared by the cancel, and is set again.
        assert_eq!(buy(&mut client, c, goods, 0).status(), Status::SoldOut);
        let barrier = Barrier::new(2);
        let replies: Vec<Reply> = thread::scope(|s| {
            let threads: Vec<_> = (0..2)
                .map(|_| {
                    let mut client = shop.server.client();
                    let barrier = &barrier;
                    s.spawn(move || {
                        let mut p = Pipeline::new();
                        p.cancel(buyer, order).cancel(buyer, order);
                        barrier.wait();
                        client.execute(&p).expect("CANCELs")
                    })
                })
                .collect();
            threads
                .into_iter()
                .flat_map(|t| t.join().unwrap())
                .collect()
        });
        assert_eq!(replies.len(), 4);
        replies
            .iter()
            .for_each(|r| assert_cancelled(r, buyer, order));
        shop.assert_left(goods, 1, &format!("after 4 CANCELs at once, round {round}"));
    }

    // The first buyer may buy again: a new order.
    let a2 = ordered(buy(&mut client, a, goods, 0));
    assert_ne!(a2, a1);
    assert_eq!(buy(&mut client, c, goods, 0).status(), Status::SoldOut);
    // A late CANCEL of the old order is still `ok` and returns nothing.
    assert_cancelled(&cancel(&mut client, a, a1), a, a1);
    shop.assert_left(goods, 0, "after a late CANCEL of a cancelled order");

    assert_eq!(pay(&mut client, a, a1).status(), Status::OrderCancelled);
    match pay(&mut client, a, a2) {
        Reply::Paid(o) => assert_eq!((o.order_no, o.state), (a2, OrderState::Paid)),
        other => panic!("PAY answered {other:?}"),
    }
    assert_eq!(cancel(&mut client, a, a2).status(), Status::OrderPaid);
    shop.assert_left(goods, 0, "after a CANCEL of a paid order");
    assert_eq!(buy(&mut client, c, goods, 0).status(), Status::SoldOut);

    // Another user's order number, or one nobody has, is no order.
    assert_eq!(pay(&mut client, b, a2).status(), Status::NoOrder);
    assert_eq!(cancel(&mut client, b, a2).status(), Status::NoOrder);
    assert_eq!(cancel(&mut client, c, a1).status(), Status::NoOrder);
    assert_eq!(pay(&mut client, c, a1).status(), Status::NoOrder);
    assert_eq!(cancel(&mut client, a, 12_345).status(), Status::NoOrder);
    shop.assert_left(goods, 0, "after refused PAYs and CANCELs");

    // A's orders, newest first: the paid one, then the cancelled one.
    let listed: Vec<_> = client
        .list_orders(a)
        .unwrap()
        .iter()
        .map(|o| (o.order_no, o.state))
        .collect();
    assert_eq!(
        listed,
        [(a2, OrderState::Paid), (a1, OrderState::Cancelled)]
    );
    // The order store agrees: one live order, the paid one.
    let rows = shop.orders_of(goods);
    assert_eq!(rows.len() as u64, 2 + ROUNDS, "{rows:?}");
    let live: Vec<_> = rows.iter().filter(|r| r.3 != 2).collect();
    assert_eq!(live, [&(a2, a, goods, 1)]);
}

#[test]
fn cancel_returns_its_unit_exactly_once_embedded() {
    cancel_returns_its_unit_exactly_once(Store::Embedded);
}

#[test]
fn cancel_returns_its_unit_exactly_once_durable() {
    cancel_returns_its_unit_exactly_once(Store::Durable);
}

// 2. Purchase limits.

/// A limit of 3 under concurrency: 40 users send 10 BUYs each, from 8
/// connections at once, each user's BUYs spread over them. Every user ends
/// with exactly 3 live orders, the ones they were told "ok"; every other
/// BUY is `already_bought` with one of them (`busy`, which does nothing,
/// is retried). The default limit of 1 answers a second BUY with the same
/// order.
fn purchase_limit_holds_under_concurrency(store: Store) {
    const USERS: u64 = 40;
    const TRIES: u64 = 10;
    const THREADS: u64 = 8;
    const LIMIT: u8 = 3;
    const STOCK: u32 = 1000;
    let shop = Shop::open(store, &["--buy-rate", "0"]);
    let mut admin = shop.server.admin();
    let goods = admin
        .add_goods(goods_with("pen", STOCK, limit(LIMIT)))
        .unwrap()
        .id;

    // BUY `try` of `user` goes out on connection (user + try) % THREADS,
    // tries in order, so every user is on several connections at once.
    let oks: Mutex<HashMap<u64, Vec<u64>>> = Mutex::default();
    let already: Mutex<HashMap<u64, Vec<u64>>> = Mutex::default();
    let busy = AtomicU64::new(0);
    let barrier = Barrier::new(THREADS as usize);
    thread::scope(|s| {
        for t in 0..THREADS {
            let mut client = shop.server.client();
            let (oks, already, busy, barrier) = (&oks, &already, &busy, &barrier);
            s.spawn(move || {
                let mut jobs: Vec<u64> = (0..TRIES)
                    .flat_map(|try_| (1..=USERS).map(move |u| (try_, u)))
                    .filter(|&(try_, u)| (u + try_) % THREADS == t)
                    .map(|(_, u)| u)
                    .collect();
                barrier.wait();
                while !jobs.is_empty() {
                    let chunk: Vec<u64> = jobs.drain(..jobs.len().min(5)).collect();
                    let mut p = Pipeline::new();
                    chunk.iter().for_each(|&u| {
                        p.buy(u, goods);
                    });
                    for (&user, reply) in chunk.iter().zip(client.execute(&p).unwrap()) {
                        match reply {
                            Reply::Bought { order_no } => {
                                oks.lock().unwrap().entry(user).or_default().push(order_no)
                            }
                            Reply::AlreadyBought { order_no } => already
                                .lock()
                                .unwrap()
                                .entry(user)
                                .or_default()
                                .push(order_no),
                            r if matches!(r.status(), Status::Busy | Status::Pending) => {
                                busy.fetch_add(1, SeqCst);
                                jobs.push(user);
                            }
                            other => panic!("user {user}: BUY answered {other:?}"),
                        }
                    }
                }
            });
        }
    });
    let oks = oks.into_inner().unwrap();
    let already = already.into_inner().unwrap();
    let answered: usize = oks.values().chain(already.values()).map(Vec::len).sum();
    assert_eq!(answered as u64, USERS * TRIES, "every BUY answered once");
    assert_eq!(oks.values().map(Vec::len).sum::<usize>(), 120, "ok replies");

    let mut client = shop.server.client();
    for user in 1..=USERS {
        let told: HashSet<u64> = oks[&user].iter().copied().collect();
        assert_eq!(told.len(), usize::from(LIMIT), "user {user} told ok");
        let listed = client.list_orders(user).unwrap();
        assert!(listed
            .iter()
            .all(|o| o.goods_id == goods && o.state == OrderState::Created));
        let held: HashSet<u64> = listed.iter().map(|o| o.order_no).collect();
        assert_eq!(
            held, told,
            "user {user}: LIST_ORDERS shows the orders told ok"
        );
        for no in already.get(&user).into_iter().flatten() {
            assert!(held.contains(no), "user {user}: already_bought {no}");
        }
    }
    shop.assert_stock_store(goods, STOCK - 120, "after the limited sale");
    let rows = shop.orders_of(goods);
    assert_eq!(rows.len(), 120);
    let mut per_user: HashMap<u64, usize> = HashMap::new();
    for &(_, user, _, state) in &rows {
        assert_eq!(state, 0, "a live order");
        *per_user.entry(user).or_default() += 1;
    }
    assert!(
        per_user.values().all(|&n| n == usize::from(LIMIT)),
        "{per_user:?}"
    );
    eprintln!(
        "{store:?}: {} BUYs answered busy and retried",
        busy.load(SeqCst)
    );

    // The default limit of 1: many BUYs of one user at once make one order,
    // and every other answer names it.
    let single = admin.add_goods(on_sale("cup", 10)).unwrap().id;
    let barrier = Barrier::new(4);
    let replies: Vec<Reply> = thread::scope(|s| {
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let mut client = shop.server.client();
                let barrier = &barrier;
                s.spawn(move || {
                    let mut p = Pipeline::new();
                    p.buy(7, single).buy(7, single);
                    barrier.wait();
                    client.execute(&p).unwrap()
                })
            })
            .collect();
        let replies: Vec<Reply> = threads
            .into_iter()
            .flat_map(|t| t.join().unwrap())
            .collect();
        replies
    });
    let made: Vec<u64> = replies
        .iter()
        .filter_map(|r| match r {
            Reply::Bought { order_no } => Some(*order_no),
            _ => None,
        })
        .collect();
    assert_eq!(made.len(), 1, "{replies:?}");
    for r in &replies {
        match r {
            Reply::Bought { .. } => {}
            Reply::AlreadyBought { order_no } => assert_eq!(*order_no, made[0]),
            r if matches!(r.status(), Status::Busy | Status::Pending) => {}
            other => panic!("BUY answered {other:?}"),
        }
    }
    assert_eq!(
        buy(&mut client, 7, single, 0),
        Reply::AlreadyBought { order_no: made[0] }
    );
    shop.assert_left(single, 9, "after one user's BUYs at limit 1");
}

#[test]
fn purchase_limit_holds_under_concurrency_embedded() {
    purchase_limit_holds_under_concurrency(Store::Embedded);
}

#[test]
fn purchase_limit_holds_under_concurrency_durable() {
    purchase_limit_holds_under_concurrency(Store::Durable);
}

// 3. Purchase tokens.

/// Goods that require a token: each refusal has its own status, in the
/// order PROTOCOL.md section 9 gives; a retried BUY with its token finds
/// its order; a token of a cancelled order is used; a refused BUY takes no
/// unit.
fn purchase_tokens(store: Store) {
    let shop = Shop::open(store, &[]);
    let mut admin = shop.server.admin();
    // Far enough ahead for the set-up below on a loaded machine.
    let opens_at = now_ms() + 10_000;
    let goods = admin
        .add_goods(NewGoods {
            start_ms: opens_at,
            ..goods_with("gpu", 5, tokened())
        })
        .unwrap()
        .id;
    let other = admin.add_goods(goods_with("cpu", 5, tokened())).unwrap().id;
    let plain = admin.add_goods(on_sale("ram", 5)).unwrap().id;
    let (a, b) = (1, 2);
    let mut client = shop.server.client();
    let mut seen = Vec::new();
    let mut expect = |reply: Reply, status: Status| {
        assert_eq!(reply.status(), status, "{reply:?}");
        seen.push(status);
    };

    expect(token(&mut client, a, goods), Status::NotStarted);
    thread::sleep(Duration::from_millis(
        (opens_at + 20).saturating_sub(now_ms()),
    ));
    expect(buy(&mut client, a, goods, 0), Status::TokenRequired);
    expect(
        buy(&mut client, a, goods, 0x5eed_1e55_c0ff_ee01),
        Status::TokenInvalid,
    );

    let before = now_ms();
    let Reply::Token {
        token: ta,
        expires_ms,
    } = token(&mut client, a, goods)
    else {
        panic!("TOKEN refused");
    };
    assert_ne!(ta, 0);
    let lifetime = expires_ms.saturating_sub(before);
    assert!((29_000..=31_000).contains(&lifetime), "lives {lifetime} ms");
    // Not B's, and not for another goods.
    assert_eq!(
        buy(&mut client, b, goods, ta).status(),
        Status::TokenInvalid
    );
    let Reply::Token { token: t_other, .. } = token(&mut client, a, other) else {
        panic!("TOKEN refused");
    };
    assert_eq!(
        buy(&mut client, a, goods, t_other).status(),
        Status::TokenInvalid
    );
    shop.assert_left(goods, 5, "after refused tokens");

    let a1 = ordered(buy(&mut client, a, goods, ta));
    expect(buy(&mut client, a, goods, ta), Status::AlreadyBought);
    assert_eq!(
        buy(&mut client, a, goods, ta),
        Reply::AlreadyBought { order_no: a1 }
    );
    assert_cancelled(&cancel(&mut client, a, a1), a, a1);
    expect(buy(&mut client, a, goods, ta), Status::TokenUsed);
    shop.assert_left(goods, 5, "after a used token");
    // A new token buys again.
    let Reply::Token { token: ta2, .. } = token(&mut client, a, goods) else {
        panic!("TOKEN refused");
    };
    assert_ne!(ordered(buy(&mut client, a, goods, ta2)), a1);

    expect(token(&mut client, a, plain), Status::BadRequest);
    expect(token(&mut client, a, 999_999), Status::UnknownGoods);
    // Goods that need no token ignore one.
    ordered(buy(&mut client, a, plain, 42));
    shop.assert_left(goods, 4, "after the token sales");

    // A short-lived token, past its time.
    let short = Shop::open(store, &["--token-ttl", "5s"]);
    let goods = short
        .server
        .admin()
        .add_goods(goods_with("ssd", 5, tokened()))
        .unwrap()
        .id;
    let mut client = short.server.client();
    let before = now_ms();
    let Reply::Token {
        token: t,
        expires_ms,
    } = token(&mut client, a, goods)
    else {
        panic!("TOKEN refused");
    };
    let after = now_ms();
    assert!(
        (before + 5_000..=after + 5_000).contains(&expires_ms),
        "expires {} ms after the request",
        expires_ms - before
    );
    // Past its life (5 s), well before it is forgotten (twice that, when
    // the token keys also expire in Redis): expired, not invalid.
    thread::sleep(Duration::from_millis(
        (expires_ms + 300).saturating_sub(now_ms()),
    ));
    expect(buy(&mut client, a, goods, t), Status::TokenExpired);
    short.assert_left(goods, 5, "after an expired token");
    let Reply::Token { token: fresh, .. } = token(&mut client, a, goods) else {
        panic!("TOKEN refused");
    };
    ordered(buy(&mut client, a, goods, fresh));

    let distinct: HashSet<Status> = seen.iter().copied().collect();
    assert_eq!(distinct.len(), seen.len(), "{seen:?}");
}

#[test]
fn purchase_tokens_embedded() {
    purchase_tokens(Store::Embedded);
}

#[test]
fn purchase_tokens_durable() {
    purchase_tokens(Store::Durable);
}

// 4. Sale controls.

/// Floods BUYs of new users from 4 connections, pauses the sale once some
/// sold, and checks that no BUY sent after the pause was answered sells.
/// Returns the orders made, (user, order number).
fn pause_mid_flood(shop: &Shop, goods: u64) -> Vec<(u64, u64)> {
    let next_user = AtomicU64::new(1_000_000);
    let paused = AtomicBool::new(false);
    let sold: Mutex<Vec<(u64, u64)>> = Mutex::default();
    thread::scope(|s| {
        for _ in 0..4 {
            let mut client = shop.server.client();
            let (next_user, paused, sold) = (&next_user, &paused, &sold);
            s.spawn(move || {
                let mut rounds_after = 0;
                while rounds_after < 3 {
                    // Read before sending: if set, every BUY of this batch
                    // leaves after the pause was answered.
                    let after = paused.load(SeqCst);
                    let users: Vec<u64> = (0..32).map(|_| next_user.fetch_add(1, SeqCst)).collect();
                    let mut p = Pipeline::new();
                    users.iter().for_each(|&u| {
                        p.buy(u, goods);
                    });
                    for (&user, reply) in users.iter().zip(client.execute(&p).unwrap()) {
                        match reply {
                            Reply::Bought { order_no } => {
                                assert!(!after, "user {user} bought after the pause answer");
                                sold.lock().unwrap().push((user, order_no));
                            }
                            r if r.status() == Status::Paused => {}
                            other => panic!("user {user}: BUY answered {other:?}"),
                        }
                    }
                    rounds_after += u32::from(after);
                }
            });
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while sold.lock().unwrap().len() < 200 {
            assert!(Instant::now() < deadline, "the flood sold nothing");
            thread::sleep(Duration::from_millis(5));
        }
        let g = shop
            .server
            .admin()
            .sale_control(goods, SaleAction::Pause)
            .unwrap();
        assert_eq!(g.state, GoodsState::Paused);
        paused.store(true, SeqCst);
    });
    sold.into_inner().unwrap()
}

/// 100 BUYs of new users from 4 connections at once; their statuses.
fn hundred_buys_at_once(server: &Server, goods: u64, first_user: u64) -> Vec<Status> {
    let barrier = Barrier::new(4);
    thread::scope(|s| {
        let threads: Vec<_> = (0..4u64)
            .map(|t| {
                let mut client = server.client();
                let barrier = &barrier;
                s.spawn(move || {
                    let mut p = Pipeline::new();
                    (0..25).for_each(|i| {
                        p.buy(first_user + t * 25 + i, goods);
                    });
                    barrier.wait();
                    client.execute(&p).unwrap()
                })
            })
            .collect();
        threads
            .into_iter()
            .flat_map(|t| t.join().unwrap())
            .map(|r| r.status())
            .collect()
    })
}

/// Pause, resume, end and window, by an admin only: each takes effect at
/// once for BUY, TOKEN and GET_GOODS, a pause stops sales with the answer
/// (even mid-flood), a bad window changes nothing, a restock clears the
/// sold-out flag, and every change survives a SIGKILL and restart.
fn sale_controls(store: Store) {
    const FLOOD_STOCK: u32 = 100_000;
    let shop = Shop::open(store, &[]);
    let mut admin = shop.server.admin();
    let goods = admin.add_goods(on_sale("drone", FLOOD_STOCK)).unwrap().id;
    let tokens = admin
        .add_goods(goods_with("pass", 10, tokened()))
        .unwrap()
        .id;
    let scarce = admin.add_goods(on_sale("lens", 1)).unwrap().id;
    let later = admin
        .add_goods(NewGoods {
            start_ms: now_ms() + 3_600_000,
            end_ms: now_ms() + 7_200_000,
            ..on_sale("kite", 3)
        })
        .unwrap()
        .id;
    let mut client = shop.server.client();

    // Only an admin.
    assert_eq!(
        status_of(client.sale_control(goods, SaleAction::Pause)),
        Status::Unauthorized
    );
    assert_eq!(
        status_of(client.sale_control(goods, SaleAction::End)),
        Status::Unauthorized
    );
    assert_eq!(client.get_goods(goods).unwrap().state, GoodsState::OnSale);
    assert_eq!(
        status_of(admin.sale_control(999_999, SaleAction::Pause)),
        Status::UnknownGoods
    );

    // A pause in the middle of a flood: nothing sent after its answer sells,
    // and the stock store holds exactly what was not sold.
    let sold = pause_mid_flood(&shop, goods);
    let left = FLOOD_STOCK - sold.len() as u32;
    shop.assert_stock_store(goods, left, "after the paused flood");
    assert_eq!(shop.orders_of(goods).len(), sold.len());

    let statuses = hundred_buys_at_once(&shop.server, goods, 1);
    assert!(
        statuses.iter().all(|&s| s == Status::Paused),
        "{statuses:?}"
    );
    assert_eq!(client.get_goods(goods).unwrap().state, GoodsState::Paused);
    // Orders go on: one bought before the pause is paid during it.
    let (user, order_no) = sold[0];
    assert_eq!(pay(&mut client, user, order_no).status(), Status::Ok);
    // Pausing again changes nothing.
    assert_eq!(
        admin.sale_control(goods, SaleAction::Pause).unwrap().state,
        GoodsState::Paused
    );

    // TOKEN is paused too.
    admin.sale_control(tokens, SaleAction::Pause).unwrap();
    assert_eq!(token(&mut client, 1, tokens).status(), Status::Paused);
    assert_eq!(buy(&mut client, 1, tokens, 7).status(), Status::Paused);
    assert_eq!(client.get_goods(tokens).unwrap().state, GoodsState::Paused);

    let resumed = admin.sale_control(goods, SaleAction::Resume).unwrap();
    assert_eq!(resumed.state, GoodsState::OnSale);
    ordered(buy(&mut client, 1, goods, 0));
    assert_eq!(
        admin.sale_control(goods, SaleAction::Resume).unwrap().state,
        GoodsState::OnSale
    );

    // A window in the future: not started, for BUY and GET_GOODS.
    let (start_ms, end_ms) = (now_ms() + 3_600_000, now_ms() + 7_200_000);
    let moved = admin
        .sale_control(goods, SaleAction::Window { start_ms, end_ms })
        .unwrap();
    assert_eq!(
        (moved.start_ms, moved.end_ms, moved.state),
        (start_ms, end_ms, GoodsState::Upcoming)
    );
    assert_eq!(buy(&mut client, 2, goods, 0).status(), Status::NotStarted);
    // A window that ends at or before it starts is refused, and changes
    // nothing.
    for (s, e) in [(start_ms, start_ms), (end_ms, start_ms)] {
        let bad = SaleAction::Window {
            start_ms: s,
            end_ms: e,
        };
        assert_eq!(
            status_of(admin.sale_control(goods, bad)),
            Status::BadRequest
        );
    }
    let g = client.get_goods(goods).unwrap();
    assert_eq!((g.start_ms, g.end_ms), (start_ms, end_ms));
    // Open again.
    let open = SaleAction::Window {
        start_ms: now_ms() - 1000,
        end_ms: now_ms() + 3_600_000,
    };
    assert_eq!(
        admin.sale_control(goods, open).unwrap().state,
        GoodsState::OnSale
    );
    ordered(buy(&mut client, 2, goods, 0));

    // A restock of a sold-out goods during its sale puts it on sale at once.
    ordered(buy(&mut client, 1, scarce, 0));
    assert_eq!(buy(&mut client, 2, scarce, 0).status(), Status::SoldOut);
    assert_eq!(client.get_goods(scarce).unwrap().state, GoodsState::SoldOut);
    let restocked = admin.restock(scarce, 1).unwrap();
    assert_eq!(
        (restocked.total, restocked.remaining, restocked.state),
        (2, 1, GoodsState::OnSale)
    );
    ordered(buy(&mut client, 2, scarce, 0));
    assert_eq!(buy(&mut client, 3, scarce, 0).status(), Status::SoldOut);

    // End: over at once.
    let before = now_ms();
    let ended = admin.sale_control(goods, SaleAction::End).unwrap();
    assert_eq!(ended.state, GoodsState::Ended);
    assert!((before..=now_ms()).contains(&ended.end_ms), "{ended:?}");
    assert_eq!(buy(&mut client, 3, goods, 0).status(), Status::Ended);
    assert_eq!(client.get_goods(goods).unwrap().state, GoodsState::Ended);
    // An upcoming sale that is ended never opens.
    let never = admin.sale_control(later, SaleAction::End).unwrap();
    assert_eq!(never.state, GoodsState::Ended);
    assert!(never.start_ms <= never.end_ms, "{never:?}");
    // End and window keep a pause: ended, then reopened, still paused.
    assert_eq!(
        admin.sale_control(tokens, SaleAction::End).unwrap().state,
        GoodsState::Ended
    );
    assert_eq!(token(&mut client, 1, tokens).status(), Status::Ended);
    let reopened = admin.sale_control(tokens, open).unwrap();
    assert_eq!(reopened.state, GoodsState::Paused);
    assert_eq!(token(&mut client, 1, tokens).status(), Status::Paused);

    // Everything holds after a SIGKILL and a restart.
    let before_restart: Vec<_> = [goods, tokens, scarce, later]
        .iter()
        .map(|&g| client.get_goods(g).unwrap())
        .collect();
    drop((client, admin));
    let shop = shop.restart();
    let mut client = shop.server.client();
    for g in &before_restart {
        let now = client.get_goods(g.id).unwrap();
        assert_eq!(
            (
                now.start_ms,
                now.end_ms,
                now.state,
                now.total,
                now.remaining
            ),
            (g.start_ms, g.end_ms, g.state, g.total, g.remaining),
            "goods {} after a restart",
            g.id
        );
    }
    assert_eq!(buy(&mut client, 4, goods, 0).status(), Status::Ended);
    assert_eq!(token(&mut client, 1, tokens).status(), Status::Paused);
    assert_eq!(buy(&mut client, 4, later, 0).status(), Status::Ended);
    let resumed = shop
        .server
        .admin()
        .sale_control(tokens, SaleAction::Resume)
        .unwrap();
    assert_eq!(resumed.state, GoodsState::OnSale);
    let Reply::Token { token: t, .. } = token(&mut client, 1, tokens) else {
        panic!("TOKEN refused after the resume");
    };
    ordered(buy(&mut client, 1, tokens, t));
}

#[test]
fn sale_controls_embedded() {
    sale_controls(Store::Embedded);
}

#[test]
fn sale_controls_durable() {
    sale_controls(Store::Durable);
}

// 5. Payment windows.

/// Two servers on one Redis and MySQL, both sweeping expired orders every
/// 20 ms (A's sweep slowed to `a_sweeps`): A sells 300 units with a
/// payment window of 1.5 s, 100 are paid at once, and the other 200 expire.
struct TwoSweepers {
    /// The servers first: they die before their stores are dropped.
    a: Server,
    b: Server,
    stores: Backends,
    goods: u64,
    paid: HashMap<u64, u64>,
    unpaid: HashMap<u64, u64>,
    _dir: tempfile::TempDir,
}

impl TwoSweepers {
    fn run(a_sweeps: &str) -> TwoSweepers {
        const STOCK: u32 = 300;
        const PAID: u64 = 100;
        let dir = tempfile::tempdir().unwrap();
        let stores = Backends::new();
        let flags = |node: &str, every: &str| {
            let mut flags = stores.args("durable");
            flags.extend(["--expiry-interval", every, "--node-id", node].map(String::from));
            flags
        };
        let a = start(&dir.path().join("a.db"), &flags("1", a_sweeps));
        // Long enough for the payers to buy and pay on a loaded machine.
        let rules = SaleRules {
            pay_window_ms: 5_000,
            ..SaleRules::default()
        };
        let goods = a
            .admin()
            .add_goods(goods_with("concert", STOCK, rules))
            .unwrap()
            .id;
        // B loads the goods at its start (a reload, which A's next BUY may
        // answer `busy`: `buy_each` retries).
        let b = start(&dir.path().join("b.db"), &flags("2", "20ms"));

        let mut client = a.client();
        // The paid ones first, paid at once, well within their window.
        let payers: Vec<u64> = (1..=PAID).collect();
        let paid = buy_each(&mut client, goods, &payers);
        let mut p = Pipeline::new();
        payers.iter().for_each(|u| {
            p.pay(*u, paid[u]);
        });
        for (u, reply) in payers.iter().zip(client.execute(&p).unwrap()) {
            assert!(
                matches!(reply, Reply::Paid(_)),
                "user {u}: PAY answered {reply:?}"
            );
        }
        let idlers: Vec<u64> = (PAID + 1..=u64::from(STOCK)).collect();
        let unpaid = buy_each(&mut client, goods, &idlers);
        let bought = Instant::now();
        assert_eq!(stores.redis_stock(goods), Some(0));

        let deadline = Instant::now() + Duration::from_secs(30);
        while stores.orders().iter().filter(|r| r.3 == 2).count() < unpaid.len() {
            assert!(Instant::now() < deadline, "orders not expired in 30 s");
            thread::sleep(Duration::from_millis(50));
        }
        eprintln!(
            "expired {} ms after the last BUY",
            bought.elapsed().as_millis()
        );
        // A sweep commits the cancellations first and returns their units
        // after: wait for the units, then give a sweep that might return a
        // unit twice the time to do so.
        let want = unpaid.len() as u32;
        while stores.redis_stock(goods).unwrap_or(0) < want {
            assert!(Instant::now() < deadline, "units not returned in 30 s");
            thread::sleep(Duration::from_millis(50));
        }
        thread::sleep(Duration::from_millis(200));
        TwoSweepers {
            a,
            b,
            stores,
            goods,
            paid,
            unpaid,
            _dir: dir,
        }
    }
}

/// Each unpaid order is cancelled once and its unit returned once, though
/// two servers sweep; the paid ones stay.
#[test]
fn two_servers_sweep_each_expired_order_once() {
    let run = TwoSweepers::run("20ms");
    let (goods, unpaid) = (run.goods, run.unpaid.len());
    let rows = run.stores.orders();
    assert_eq!(rows.len(), run.paid.len() + unpaid);
    for (user, order) in &run.paid {
        assert!(rows.contains(&(*order, *user, goods, 1)), "paid, {user}");
    }
    for (user, order) in &run.unpaid {
        assert!(rows.contains(&(*order, *user, goods, 2)), "expired, {user}");
    }
    assert_eq!(run.stores.redis_stock(goods), Some(unpaid as u32));
    let (by_a, by_b) = (run.a.stat("orders_expired"), run.b.stat("orders_expired"));
    eprintln!("server A expired {by_a}, server B {by_b}");
    assert_eq!(by_a + by_b, unpaid as u64);
    // The returned units sell again, through B, once its catalog has read
    // them back (it refreshes every 500 ms; A sold out meanwhile).
    let mut b = run.b.client();
    let deadline = Instant::now() + Duration::from_secs(10);
    while b.get_goods(goods).unwrap().remaining != unpaid as u32 {
        assert!(
            Instant::now() < deadline,
            "B never showed the returned units"
        );
        thread::sleep(Duration::from_millis(50));
    }
    let again = buy_each(&mut b, goods, &[10_000]);
    assert!(again.contains_key(&10_000));
    assert_eq!(run.stores.redis_stock(goods), Some(unpaid as u32 - 1));
}

/// A sold every unit and B's sweep returned 200 of them (A's sweep is
/// slowed to 1 h, so B surely does): A shows them and sells them again,
/// once its catalog refreshes from the stock store (every 500 ms).
#[test]
fn units_another_server_returned_sell_again() {
    let run = TwoSweepers::run("1h");
    let (goods, unpaid) = (run.goods, run.unpaid.len() as u32);
    assert_eq!(run.stores.redis_stock(goods), Some(unpaid));
    assert_eq!(run.b.stat("orders_expired"), u64::from(unpaid));
    let mut client = run.a.client();
    let deadline = Instant::now() + Duration::from_secs(10);
    let shown = loop {
        let shown = client.get_goods(goods).unwrap();
        if shown.remaining == unpaid || Instant::now() >= deadline {
            break shown;
        }
        thread::sleep(Duration::from_millis(50));
    };
    let reply = buy(&mut client, 10_000, goods, 0);
    assert!(
        shown.remaining == unpaid && matches!(reply, Reply::Bought { .. }),
        "A shows {} left ({:?}) and answers a BUY {reply:?}, while Redis holds {:?}",
        shown.remaining,
        shown.state,
        run.stores.redis_stock(goods)
    );
}

// 6. What GET_GOODS shows.

/// Stock 300 and 400 BUYs of distinct users pipelined from 4 connections,
/// 50 times over: once every BUY is answered (300 ok), GET_GOODS shows
/// remaining 0 and `sold_out` (at once, or after the catalog's refresh).
fn a_quiet_sold_out_sale_shows_sold_out(store: Store) {
    let shop = Shop::open(store, &[]);
    let mut admin = shop.server.admin();
    let mut client = shop.server.client();
    let mut wrong = Vec::new();
    for round in 0..50u64 {
        let goods = admin.add_goods(on_sale("tent", 300)).unwrap().id;
        let sold = AtomicU64::new(0);
        thread::scope(|s| {
            for t in 0..4u64 {
                let mut client = shop.server.client();
                let sold = &sold;
                s.spawn(move || {
                    let mut p = Pipeline::new();
                    (1..=100).for_each(|i| {
                        p.buy(round * 1000 + t * 100 + i, goods);
                    });
                    for reply in client.execute(&p).unwrap() {
                        match reply {
                            Reply::Bought { .. } => {
                                sold.fetch_add(1, SeqCst);
                            }
                            r if r.status() == Status::SoldOut => {}
                            other => panic!("BUY answered {other:?}"),
                        }
                    }
                });
            }
        });
        assert_eq!(sold.load(SeqCst), 300, "round {round}");
        // Workers' reports can reach the catalog out of order; the
        // periodic refresh from the stock store (500 ms) sets it right.
        let deadline = Instant::now() + Duration::from_secs(5);
        let shown = loop {
            let shown = client.get_goods(goods).unwrap();
            if (shown.remaining, shown.state) == (0, GoodsState::SoldOut)
                || Instant::now() >= deadline
            {
                break shown;
            }
            thread::sleep(Duration::from_millis(50));
        };
        if (shown.remaining, shown.state) != (0, GoodsState::SoldOut) {
            wrong.push(format!(
                "round {round}: {} left, {:?} 5 s after the last BUY",
                shown.remaining, shown.state
            ));
        }
        if let Some(stores) = &shop.stores {
            assert_eq!(stores.redis_stock(goods), Some(0));
        }
    }
    assert!(wrong.is_empty(), "{store:?}: {wrong:#?}");
}

#[test]
fn a_quiet_sold_out_sale_shows_sold_out_embedded() {
    a_quiet_sold_out_sale_shows_sold_out(Store::Embedded);
}

#[test]
fn a_quiet_sold_out_sale_shows_sold_out_durable() {
    a_quiet_sold_out_sale_shows_sold_out(Store::Durable);
}

// 7. After a crash.

/// Paid and cancelled orders were acknowledged: after SIGKILL and a
/// restart they are as they were told, units left = total − live orders,
/// a repeated PAY or CANCEL changes nothing, and a cancelled buyer buys
/// again.
fn settled_orders_survive_a_kill(store: Store) {
    let shop = Shop::open(store, &[]);
    let goods = shop
        .server
        .admin()
        .add_goods(on_sale("desk", 10))
        .unwrap()
        .id;
    let mut client = shop.server.client();
    let users: Vec<u64> = (1..=10).collect();
    let orders = buy_each(&mut client, goods, &users);
    for user in 1..=5 {
        let reply = pay(&mut client, user, orders[&user]);
        assert!(matches!(reply, Reply::Paid(_)), "{reply:?}");
    }
    for user in 6..=7 {
        assert_cancelled(
            &cancel(&mut client, user, orders[&user]),
            user,
            orders[&user],
        );
    }
    shop.assert_left(goods, 2, "before the kill");

    let shop = shop.restart();
    let rows = shop.orders_of(goods);
    for user in 1..=10u64 {
        let want = match user {
            1..=5 => 1,
            6..=7 => 2,
            _ => 0,
        };
        assert!(
            rows.contains(&(orders[&user], user, goods, want)),
            "user {user}: {rows:?}"
        );
    }
    shop.assert_left(goods, 2, "after the restart");
    let mut client = shop.server.client();
    assert!(matches!(pay(&mut client, 1, orders[&1]), Reply::Paid(_)));
    assert_cancelled(&cancel(&mut client, 6, orders[&6]), 6, orders[&6]);
    shop.assert_left(goods, 2, "after a repeated PAY and CANCEL");
    let again = ordered(buy(&mut client, 6, goods, 0));
    assert_ne!(again, orders[&6]);
    shop.assert_left(goods, 1, "after the cancelled buyer bought again");
}

#[test]
fn settled_orders_survive_a_kill_embedded() {
    settled_orders_survive_a_kill(Store::Embedded);
}

#[test]
fn settled_orders_survive_a_kill_durable() {
    settled_orders_survive_a_kill(Store::Durable);
}
