//! PAY racing the expiry of unpaid orders, over TCP, on every store.
//!
//! 10,000 orders each get one PAY timed to land within a few milliseconds of
//! the end of their payment window, while the server sweeps expired orders
//! every 2 ms: for every order the PAY and the sweep race for its row. Every
//! order must end paid or cancelled, never both and never still created; a
//! PAY answered `ok` must be paid in the store; and exactly the cancelled
//! orders' units must be back in stock.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use seckill_client::{Client, Pipeline, SaleRules};
use seckill_proto::{Reply, Request, Status};

use crate::harness::{on_sale, sqlite_orders, Backends, Got, Raw, Server};

const ORDERS: u64 = 10_000;
/// Long enough to buy every unit and read every deadline before the first
/// deadline comes, even in a debug build on a loaded machine (8 s was
/// overrun once). The PAY threads connect shortly before their first PAY,
/// so their connections' 10 s read timeout does not bound it.
const PAY_WINDOW_MS: u64 = 20_000;
/// How long before its first PAY a payer connects.
const CONNECT_AHEAD_MS: u64 = 2_000;
/// PAYs land this far either side of their order's deadline.
const SPREAD_MS: i64 = 20;
const THREADS: u64 = 8;

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// The final state of each order (by number) as the order store holds it.
type States = HashMap<u64, u8>;

fn race(server: &Server, states: impl Fn() -> States, redis_stock: impl Fn(u64) -> Option<u32>) {
    let mut goods = on_sale("ticket", ORDERS as u32);
    goods.rules = SaleRules {
        pay_window_ms: PAY_WINDOW_MS,
        ..SaleRules::default()
    };
    let goods = server.admin().add_goods(goods).unwrap().id;

    // Every unit sold, one per user, in pipelines.
    let mut orders: Vec<(u64, u64)> = Vec::new(); // (user, order number)
    let mut client = server.client();
    for chunk in (1..=ORDERS).collect::<Vec<_>>().chunks(1000) {
        let mut buys = Pipeline::new();
        chunk.iter().for_each(|&user| {
            buys.buy(user, goods);
        });
        for (&user, reply) in chunk.iter().zip(client.execute(&buys).unwrap()) {
            match reply {
                Reply::Bought { order_no } => orders.push((user, order_no)),
                other => panic!("BUY of user {user}: {other:?}"),
            }
        }
    }
    // Each order's deadline, as the server set it.
    let mut deadlines = HashMap::new();
    for chunk in orders.chunks(1000) {
        let mut lists = Pipeline::new();
        chunk.iter().for_each(|&(user, _)| {
            lists.list_orders(user);
        });
        for reply in client.execute(&lists).unwrap() {
            let Reply::Orders(list) = reply else {
                panic!("LIST_ORDERS: {reply:?}");
            };
            for o in list {
                deadlines.insert(o.order_no, o.pay_by_ms);
            }
        }
    }
    let first = deadlines.values().min().copied().unwrap();
    assert!(
        now_ms() + (SPREAD_MS as u64) < first,
        "setting up took past the first deadline: raise PAY_WINDOW_MS"
    );

    // One PAY per order at its deadline ± SPREAD_MS, from several
    // connections at once; replies read as they come.
    let mut plan: Vec<(u64, u64, u64)> = orders
        .iter()
        .map(|&(user, order_no)| {
            // A fixed spread, different for neighbouring orders.
            let offset =
                (user.wrapping_mul(0x9E37_79B9) % (2 * SPREAD_MS as u64 + 1)) as i64 - SPREAD_MS;
            let at = deadlines[&order_no].saturating_add_signed(offset);
            (at, user, order_no)
        })
        .collect();
    plan.sort_unstable();
    let slices: Vec<Vec<(u64, u64, u64)>> = (0..THREADS)
        .map(|t| {
            plan.iter()
                .copied()
                .skip(t as usize)
                .step_by(THREADS as usize)
                .collect()
        })
        .collect();
    let payers: Vec<_> = slices
        .into_iter()
        .map(|slice| {
            let addr = server.addr;
            std::thread::spawn(move || pay_on_time(addr, &slice))
        })
        .collect();
    let mut paid_ok: HashMap<u64, Status> = HashMap::new();
    for p in payers {
        paid_ok.extend(p.join().unwrap());
    }
    assert_eq!(paid_ok.len(), ORDERS as usize);

    // Let the last windows pass and the sweep finish: every order stored
    // and settled (a fixed pause after the last deadline was not always
    // enough on a loaded machine), then a catalog refresh or two.
    let last = deadlines.values().max().copied().unwrap();
    let give_up = last + 60_000;
    let settled = |states: &States| {
        orders
            .iter()
            .all(|(_, n)| states.get(n).is_some_and(|&s| s != 0))
    };
    let states = loop {
        let states = states();
        if settled(&states) || now_ms() > give_up {
            break states;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    std::thread::sleep(Duration::from_millis(1_200));

    let mut paid = 0u64;
    let mut cancelled = 0u64;
    let mut busy = 0u64;
    for &(_, order_no) in &orders {
        let state = states.get(&order_no).copied();
        match (paid_ok[&order_no], state) {
            (Status::Ok, Some(1)) => paid += 1,
            (Status::OrderCancelled, Some(2)) => cancelled += 1,
            // `busy` promises that nothing was done (a store too slow for
            // the moment, on a loaded machine): the expiry then cancelled
            // the order, which a PAY that did nothing must leave cancelled.
            (Status::Busy, Some(2)) => {
                busy += 1;
                cancelled += 1;
            }
            (answer, state) => panic!("order {order_no}: PAY answered {answer}, stored {state:?}"),
        }
    }
    eprintln!("{paid} paid, {cancelled} cancelled ({busy} of them after a busy PAY)");
    assert_eq!(paid + cancelled, ORDERS);
    // Both outcomes happened: the PAYs straddled the deadlines.
    assert!(
        paid > 0 && cancelled > 0,
        "{paid} paid, {cancelled} cancelled"
    );
    // Exactly the cancelled units are back, once each. A sweep commits its
    // cancellations first and returns their units after: wait for them,
    // then a while more (above) for any unit returned twice.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let left = server.client().get_goods(goods).unwrap().remaining;
        let stock = redis_stock(goods);
        let back = u64::from(left) >= cancelled && stock.is_none_or(|s| u64::from(s) >= cancelled);
        if back || std::time::Instant::now() >= deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_millis(1_200));
    let left = server.client().get_goods(goods).unwrap().remaining;
    assert_eq!(u64::from(left), cancelled, "units back on sale");
    if let Some(stock) = redis_stock(goods) {
        assert_eq!(u64::from(stock), cancelled, "units back in Redis");
    }
    let expired = server.stat("orders_expired");
    assert_eq!(expired, cancelled, "each cancelled order expired once");
}

/// Sends each PAY of `slice` at its time, reading replies on another
/// thread; returns each order's answer.
fn pay_on_time(addr: SocketAddr, slice: &[(u64, u64, u64)]) -> HashMap<u64, Status> {
    let first = slice.first().map_or(0, |&(at, ..)| at);
    if let Some(wait) = first.checked_sub(now_ms() + CONNECT_AHEAD_MS) {
        std::thread::sleep(Duration::from_millis(wait));
    }
    let mut raw = Raw::greeted(addr);
    let mut reader = Raw::from_stream(raw.stream.try_clone().unwrap());
    let expected = slice.len();
    let replies = std::thread::spawn(move || {
        let mut got = HashMap::new();
        while got.len() < expected {
            match reader.next() {
                Got::Frame { id, reply, .. } => {
                    let status = match reply {
                        Reply::Paid(o) => {
                            assert_eq!(o.order_no, id);
                            Status::Ok
                        }
                        other => other.status(),
                    };
                    got.insert(id, status);
                }
                Got::Closed => panic!("the server closed a payer's connection"),
            }
        }
        got
    });
    for &(at, user_id, order_no) in slice {
        if let Some(wait) = at.checked_sub(now_ms()) {
            std::thread::sleep(Duration::from_millis(wait));
        }
        // The request id is the order number, to match the reply.
        raw.request(order_no, &Request::Pay { user_id, order_no });
    }
    replies.join().unwrap()
}

/// Every order's state in the embedded store's SQLite file.
fn sqlite_states(data: &Path) -> States {
    sqlite_orders(data)
        .into_iter()
        .map(|(order_no, .., state)| (order_no, state))
        .collect()
}

const SWEEP: [&str; 4] = ["--expiry-interval", "2ms", "--buy-rate", "0"];

#[test]
fn pay_races_expiry_ten_thousand_times_embedded() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("seckill.db");
    let server = Server::start(&data, &SWEEP);
    race(&server, || sqlite_states(&data), |_| None);
}

fn race_on_stores(ack: &str) {
    let dir = tempfile::tempdir().unwrap();
    let stores = Backends::new();
    let mut args = stores.args(ack);
    args.extend(SWEEP.map(String::from));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let server = Server::start(&dir.path().join("unused.db"), &args);
    race(
        &server,
        || {
            stores
                .orders()
                .into_iter()
                .map(|(order_no, _, _, state)| (order_no, state))
                .collect()
        },
        |goods| stores.redis_stock(goods),
    );
}

#[test]
fn pay_races_expiry_ten_thousand_times_on_redis_and_mysql() {
    race_on_stores("durable");
}

#[test]
fn pay_races_expiry_ten_thousand_times_in_the_queued_mode() {
    race_on_stores("queued");
}

/// A client that is not told the server's clock: the deadline it reads
/// back is the order's creation plus the window.
#[test]
fn an_order_shows_its_payment_deadline() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("seckill.db"), &[]);
    let mut goods = on_sale("lamp", 1);
    goods.rules.pay_window_ms = 60_000;
    let goods = server.admin().add_goods(goods).unwrap().id;
    let mut client: Client = server.client();
    let before = now_ms();
    let order_no = client.buy(7, goods).unwrap().order_no().unwrap();
    let order = client.order_status(7, goods).unwrap().unwrap();
    assert_eq!(order.order_no, order_no);
    assert_eq!(order.pay_by_ms - order.created_ms, 60_000);
    assert!(order.created_ms >= before.saturating_sub(5) && order.created_ms <= now_ms());
}
