//! Fetches what verification compares: each acknowledged order through
//! ORDER_STATUS, users' orders through LIST_ORDERS, and the goods' orders
//! in MySQL.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::SocketAddr;
use std::thread;
use std::time::{Duration, Instant};

use seckill_client::{Client, Order, OrderState, Pipeline, Reply, Status};

use crate::error::Error;
use crate::verify::{self, Ledger};

/// Connections that share the ORDER_STATUS checks.
const CHECKERS: usize = 4;
/// ORDER_STATUS requests per pipeline.
const BATCH: usize = 4096;
/// How often a `busy` ORDER_STATUS is tried again.
const BUSY_RETRIES: usize = 5;
/// A count of orders in MySQL that has not moved for this long has settled.
const SETTLE: Duration = Duration::from_secs(3);
const POLL: Duration = Duration::from_millis(100);

/// Asks ORDER_STATUS for every holder of the ledger at the server that told
/// them of their order (see [`Ledger::told_by`]), pipelined over a few
/// connections per server. Returns how many were checked and the problems
/// found.
pub fn order_status(
    addrs: &[SocketAddr],
    goods: u64,
    ledger: &Ledger,
) -> Result<(u64, Vec<String>), Error> {
    let mut by_server: BTreeMap<usize, Vec<(u64, u64)>> = BTreeMap::new();
    for (&user, &order_no) in &ledger.holders {
        let server = ledger.told_by.get(&user).copied().unwrap_or(0);
        by_server.entry(server).or_default().push((user, order_no));
    }
    let mut parts = Vec::new();
    for (server, pairs) in &by_server {
        let addr = *addrs.get(*server).ok_or_else(|| {
            Error::Setup(format!(
                "an order was told by server {server}, not in --addr"
            ))
        })?;
        let part = pairs.len().div_ceil(CHECKERS);
        parts.extend(pairs.chunks(part).map(|chunk| (addr, chunk)));
    }
    let results: Vec<_> = thread::scope(|s| {
        let handles: Vec<_> = parts
            .iter()
            .map(|&(addr, chunk)| s.spawn(move || check_part(addr, goods, chunk)))
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
            .collect()
    });
    let mut checked = 0;
    let mut problems = Vec::new();
    for result in results {
        let (n, p) = result?;
        checked += n;
        problems.extend(p);
    }
    Ok((checked, problems))
}

fn check_part(
    addr: SocketAddr,
    goods: u64,
    pairs: &[(u64, u64)],
) -> Result<(u64, Vec<String>), Error> {
    let mut client = checker(addr)?;
    let answers = ask_all(&mut client, pairs.to_vec(), |p, (user, _)| {
        p.order_status(user, goods);
    })?;
    let mut problems = Vec::new();
    for ((user, order_no), reply) in &answers {
        problems.extend(verify::check_order_reply(goods, *user, *order_no, reply));
    }
    Ok((answers.len() as u64, problems))
}

/// A connection for the checks.
fn checker(addr: SocketAddr) -> Result<Client, Error> {
    Ok(Client::builder(addr)
        .read_timeout(Duration::from_secs(30))
        .connect()?)
}

/// One request per item (`ask` adds it to a pipeline), [`BATCH`] to a
/// pipeline, each item given back with its reply. Those answered `busy` or
/// `pending` are asked again after a pause, up to [`BUSY_RETRIES`] times;
/// the last answer is given back as it came.
fn ask_all<T: Copy>(
    client: &mut Client,
    items: Vec<T>,
    ask: impl Fn(&mut Pipeline, T),
) -> Result<Vec<(T, Reply)>, Error> {
    let mut answers = Vec::with_capacity(items.len());
    let mut todo = items;
    for round in 0..=BUSY_RETRIES {
        let mut busy = Vec::new();
        for batch in todo.chunks(BATCH) {
            let mut pipeline = Pipeline::new();
            for &item in batch {
                ask(&mut pipeline, item);
            }
            for (&item, reply) in batch.iter().zip(client.execute(&pipeline)?) {
                if matches!(reply.status(), Status::Busy | Status::Pending) && round < BUSY_RETRIES
                {
                    busy.push(item);
                } else {
                    answers.push((item, reply));
                }
            }
        }
        if busy.is_empty() {
            break;
        }
        todo = busy;
        thread::sleep(POLL * (round as u32 + 1));
    }
    Ok(answers)
}

/// Of the users of `lost` BUYs (sent, never answered) never told `ok`,
/// those who hold a live order of `goods` now: orders those BUYs made. Each
/// is asked ORDER_STATUS at every server one of their lost BUYs went to and
/// at the one that told them `already_bought`, if any: in the `queued` ack
/// mode only the server that made an order shows it until the order store
/// has it. A user counts once, if any of them shows a live order. `None`
/// if some could not be asked (a server gone, still `busy`, an error other
/// than having no order): the checks then keep a margin.
pub fn lost_orders(
    addrs: &[SocketAddr],
    goods: u64,
    ledger: &Ledger,
    lost: &[crate::engine::LostBuy],
) -> Option<u64> {
    let mut by_server: BTreeMap<usize, BTreeSet<u64>> = BTreeMap::new();
    for buy in lost {
        if ledger.told_ok.contains(&buy.user) {
            continue;
        }
        by_server.entry(buy.server).or_default().insert(buy.user);
        if let Some(&told) = ledger.told_by.get(&buy.user) {
            by_server.entry(told).or_default().insert(buy.user);
        }
    }
    let mut holding: BTreeSet<u64> = BTreeSet::new();
    for (server, users) in by_server {
        let addr = *addrs.get(server)?;
        holding.extend(live_holders(addr, goods, users.into_iter().collect())?);
    }
    Some(holding.len() as u64)
}

/// Of `users`, those who hold a live order of `goods` at `addr`, through
/// ORDER_STATUS; `None` if some could not be asked.
fn live_holders(addr: SocketAddr, goods: u64, users: Vec<u64>) -> Option<Vec<u64>> {
    let mut client = checker(addr).ok()?;
    let answers = ask_all(&mut client, users, |p, user| {
        p.order_status(user, goods);
    })
    .ok()?;
    let mut holding = Vec::new();
    for (user, reply) in answers {
        match reply {
            Reply::Order(o) if o.goods_id == goods && o.state != OrderState::Cancelled => {
                holding.push(user)
            }
            Reply::Order(_) => {}
            r if r.status() == Status::NoOrder => {}
            _ => return None,
        }
    }
    Some(holding)
}

/// The orders of `goods` each of `users` holds, in any state, through
/// LIST_ORDERS pipelined over a few connections. A user with none is
/// present with an empty list.
pub fn list_orders(
    addr: SocketAddr,
    goods: u64,
    users: &[u64],
) -> Result<HashMap<u64, Vec<Order>>, Error> {
    if users.is_empty() {
        return Ok(HashMap::new());
    }
    let part = users.len().div_ceil(CHECKERS);
    let results: Vec<_> = thread::scope(|s| {
        let handles: Vec<_> = users
            .chunks(part)
            .map(|chunk| s.spawn(move || list_part(addr, goods, chunk)))
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
            .collect()
    });
    let mut all = HashMap::with_capacity(users.len());
    for result in results {
        all.extend(result?);
    }
    Ok(all)
}

fn list_part(addr: SocketAddr, goods: u64, users: &[u64]) -> Result<Vec<(u64, Vec<Order>)>, Error> {
    let mut client = checker(addr)?;
    let answers = ask_all(&mut client, users.to_vec(), |p, user| {
        p.list_orders(user);
    })?;
    let mut found = Vec::with_capacity(answers.len());
    for (user, reply) in answers {
        match reply {
            Reply::Orders(orders) => found.push((
                user,
                orders.into_iter().filter(|o| o.goods_id == goods).collect(),
            )),
            other => {
                return Err(Error::Setup(format!(
                    "LIST_ORDERS of user {user} answered {}",
                    other.status()
                )))
            }
        }
    }
    Ok(found)
}

/// A connection to the server's MySQL database named by `url` (the
/// server's default database when the URL names none).
fn mysql_conn(url: &str) -> Result<mysql::Conn, Error> {
    let opts =
        mysql::Opts::from_url(url).map_err(|e| Error::Setup(format!("bad --mysql url: {e}")))?;
    let db = opts.get_db_name().unwrap_or("seckill").to_string();
    let opts = mysql::OptsBuilder::from_opts(opts).db_name(Some(db));
    Ok(mysql::Conn::new(opts)?)
}

/// One row of the `orders` table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OrderRow {
    pub order_no: u64,
    pub user_id: u64,
    /// 0 created, 1 paid, 2 cancelled.
    pub state: u8,
    /// `live_slot` is set: the order holds one of its user's slots.
    pub live: bool,
}

/// Every order of a goods in MySQL, in any state.
pub fn mysql_orders(url: &str, goods: u64) -> Result<Vec<OrderRow>, Error> {
    use mysql::prelude::Queryable;

    let mut conn = mysql_conn(url)?;
    let rows: Vec<(u64, u64, u8, Option<u8>)> = conn.exec(
        "SELECT order_no, user_id, state, live_slot FROM orders WHERE goods_id = ?",
        (goods,),
    )?;
    Ok(rows
        .into_iter()
        .map(|(order_no, user_id, state, slot)| OrderRow {
            order_no,
            user_id,
            state,
            live: slot.is_some(),
        })
        .collect())
}

/// The live orders of a goods in MySQL, as (user, order number).
#[derive(Debug, Clone)]
pub struct StoreRows {
    pub rows: Vec<(u64, u64)>,
    /// How long until the count matched or settled.
    pub waited: Duration,
}

/// Reads the goods' live orders from the server's MySQL database, first
/// waiting (up to `deadline`) until there are `expected` of them or their
/// count stops moving: in the `queued` ack mode orders reach MySQL after
/// their replies.
pub fn mysql_live_orders(
    url: &str,
    goods: u64,
    expected: u64,
    deadline: Duration,
) -> Result<StoreRows, Error> {
    use mysql::prelude::Queryable;

    let mut conn = mysql_conn(url)?;
    let begun = Instant::now();
    let mut last = None;
    let mut steady_since = begun;
    loop {
        let count: u64 = conn
            .exec_first(
                "SELECT COUNT(*) FROM orders WHERE goods_id = ? AND live_slot IS NOT NULL",
                (goods,),
            )?
            .unwrap_or(0);
        let now = Instant::now();
        if last != Some(count) {
            last = Some(count);
            steady_since = now;
        }
        if count >= expected || now - steady_since >= SETTLE || now - begun >= deadline {
            break;
        }
        thread::sleep(POLL);
    }
    let waited = begun.elapsed();
    let rows = conn.exec(
        "SELECT user_id, order_no FROM orders WHERE goods_id = ? AND live_slot IS NOT NULL",
        (goods,),
    )?;
    Ok(StoreRows { rows, waited })
}
