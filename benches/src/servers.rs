//! The servers of a run, before and after it: that each one sells the goods
//! the run buys, and what is left of it once they all agree.
//!
//! Several servers sell one goods from the same stores, but each shows what
//! is left from its own sales and a periodic read of the stock store (the
//! server's `--expiry-interval`): right after a run their figures can be
//! off for a moment (through several servers they differ; even one server
//! can note its merged calls' answers out of order), and the verification
//! waits for them to agree and hold still rather than trust the first it
//! asks.

use std::net::SocketAddr;
use std::thread;
use std::time::{Duration, Instant};

use seckill_client::{Client, Goods, GoodsState, Status};

use crate::error::Error;

/// How long a server may take to show a goods added through another.
const SHOW_GOODS: Duration = Duration::from_secs(10);
const POLL: Duration = Duration::from_millis(100);
/// How long the figures must stay the same to be taken as settled: longer
/// than a server's default `--expiry-interval` (1 s), after which it has
/// read the stock store itself. Until then even one server may show a
/// figure a little off: its workers' merged stock calls of a goods run at
/// once, and the answer of the call that ran first in the stock store can
/// be the last one the server notes.
const SETTLED_FOR: Duration = Duration::from_millis(1500);
const TIMEOUT: Duration = Duration::from_secs(30);

fn client(addr: SocketAddr) -> Result<Client, Error> {
    Ok(Client::builder(addr).read_timeout(TIMEOUT).connect()?)
}

/// Waits until every server shows `goods`, which was added through one of
/// them (or another admin address). A server that does not within
/// `SHOW_GOODS` would answer every BUY `unknown_goods`: the run is refused
/// instead, saying why.
pub fn await_goods(addrs: &[SocketAddr], goods: u64) -> Result<(), Error> {
    if addrs.len() < 2 {
        return Ok(());
    }
    for &addr in addrs {
        let mut c = client(addr)?;
        let begun = Instant::now();
        loop {
            match c.get_goods(goods) {
                Ok(_) => break,
                Err(e) if e.status() == Some(Status::UnknownGoods) => {
                    if begun.elapsed() >= SHOW_GOODS {
                        return Err(Error::Setup(format!(
                            "server {addr} does not show goods {goods} {} s after it was \
                             added: every server of --addr must sell it. With servers that \
                             load the goods only when they start, add it first, start them, \
                             and pass --goods",
                            SHOW_GOODS.as_secs()
                        )));
                    }
                    thread::sleep(POLL);
                }
                Err(e) => return Err(e.into()),
            }
        }
    }
    Ok(())
}

/// An existing goods for a flash crowd (`--goods`), if the verification can
/// count on it: on sale, one order per user without a purchase token (the
/// crowd's BUYs), and nothing sold yet (units sold = total − left).
pub fn fresh_goods(addrs: &[SocketAddr], goods: u64) -> Result<Goods, Error> {
    let first = *addrs
        .first()
        .ok_or_else(|| Error::Setup("--addr names no server".into()))?;
    let found = client(first)?.get_goods(goods)?;
    let refuse = |why: String| Err(Error::Setup(format!("--goods {goods}: {why}")));
    if found.state != GoodsState::OnSale {
        return refuse(format!("it is {}, not on sale", found.state.as_str()));
    }
    if found.rules.per_user_limit != 1 || found.rules.token_required {
        return refuse(
            "the crowd buys one unit per user without a purchase token; its rules differ".into(),
        );
    }
    if found.remaining != found.total {
        return refuse(format!(
            "{} of its {} units are sold already, and the verification counts every unit sold",
            found.total - found.remaining,
            found.total
        ));
    }
    Ok(found)
}

/// What [`settled_goods`] found.
pub struct Settled {
    /// The goods, with the smallest figure of what is left.
    pub goods: Goods,
    /// The servers' disagreement, if they never agreed.
    pub problems: Vec<String>,
    /// When the servers were first seen showing that figure: a change made
    /// after it (a unit given back) would have moved it.
    pub since: Instant,
}

/// The goods as the servers show it once they agree on what is left: every
/// server is asked every `POLL` until all give the same figure and have
/// kept it for `SETTLED_FOR` (1.5 s). If they still differ after `patience`, the
/// smallest figure is taken (a server that has not read the stock store
/// since others sold counts fewer sales) and the disagreement is returned
/// as a problem.
pub fn settled_goods(
    addrs: &[SocketAddr],
    goods: u64,
    patience: Duration,
) -> Result<Settled, Error> {
    let mut clients = addrs
        .iter()
        .map(|&addr| client(addr))
        .collect::<Result<Vec<_>, _>>()?;
    let begun = Instant::now();
    // The figures last read, and since when they have been so.
    let mut last: Option<(Vec<u32>, Instant)> = None;
    loop {
        let shown = clients
            .iter_mut()
            .map(|c| c.get_goods(goods))
            .collect::<Result<Vec<_>, _>>()?;
        let left: Vec<u32> = shown.iter().map(|g| g.remaining).collect();
        let agree = left.windows(2).all(|w| w[0] == w[1]);
        let since = match last {
            Some((ref before, since)) if *before == left => since,
            _ => Instant::now(),
        };
        let settled = agree && since.elapsed() >= SETTLED_FOR;
        let Some(smallest) = shown.into_iter().min_by_key(|g| g.remaining) else {
            return Err(Error::Setup("--addr names no server".into()));
        };
        if settled {
            return Ok(Settled {
                goods: smallest,
                problems: Vec::new(),
                since,
            });
        }
        if begun.elapsed() >= patience.max(SETTLED_FOR) {
            let problems = if agree {
                Vec::new()
            } else {
                vec![disagreement(addrs, goods, &left)]
            };
            return Ok(Settled {
                goods: smallest,
                problems,
                since,
            });
        }
        last = Some((left, since));
        thread::sleep(POLL);
    }
}

fn disagreement(addrs: &[SocketAddr], goods: u64, left: &[u32]) -> String {
    let each: Vec<String> = addrs
        .iter()
        .zip(left)
        .map(|(addr, n)| format!("{addr} shows {n}"))
        .collect();
    format!(
        "the servers disagree on what is left of goods {goods}: {}",
        each.join(", ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_disagreement_names_each_server() {
        let addrs: Vec<SocketAddr> = vec![
            "127.0.0.1:1".parse().unwrap(),
            "127.0.0.1:2".parse().unwrap(),
        ];
        assert_eq!(
            disagreement(&addrs, 7, &[3, 5]),
            "the servers disagree on what is left of goods 7: 127.0.0.1:1 shows 3, \
             127.0.0.1:2 shows 5"
        );
    }
}
