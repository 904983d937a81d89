//! [`StockStore`] on Redis: loads in one MULTI, every other change in one
//! script.

use std::collections::HashMap;

use ::redis::Value;

use super::link::{inconsistent, parse_u64, script_count, to_u32};
use super::queue::create_group;
use super::RedisStock;
use crate::clock::now_ms;
use crate::config::AckMode;
use crate::store::{
    Buyer, GoodsId, Holders, OrderNo, Reservation, ReserveRules, Reserved, StockStore, StoreError,
    TokenRefusal, UserId,
};

/// Holders per HSET when loading a goods.
const HSET_CHUNK: usize = 1000;

/// The holders of a load as buyers-hash fields: each user with their order
/// numbers space-separated, in the order given (the first is the one a
/// user at the limit gets back), a pair given twice counted once.
fn holder_fields(holders: &[(UserId, OrderNo)]) -> Vec<(UserId, String)> {
    let mut at: HashMap<UserId, usize> = HashMap::new();
    let mut fields: Vec<(UserId, Vec<OrderNo>)> = Vec::new();
    for &(user, order_no) in holders {
        let i = *at.entry(user).or_insert_with(|| {
            fields.push((user, Vec::new()));
            fields.len() - 1
        });
        let orders = &mut fields[i].1;
        if !orders.contains(&order_no) {
            orders.push(order_no);
        }
    }
    fields
        .into_iter()
        .map(|(user, orders)| {
            let text: Vec<String> = orders.iter().map(u64::to_string).collect();
            (user, text.join(" "))
        })
        .collect()
}

/// The user and order number pairs of a script call, as arguments.
fn pair_args(inv: &mut ::redis::ScriptInvocation<'_>, pairs: &[(UserId, OrderNo)]) {
    for &(user, order_no) in pairs {
        inv.arg(user).arg(order_no);
    }
}

impl StockStore for RedisStock {
    /// Replaces the stock and the buyers in one MULTI (atomic against the
    /// scripts). The queue is kept: it may hold orders already acknowledged
    /// and not yet written. So in queued mode `remaining` and `holders` must
    /// count the orders still in the queue ([`RedisStock::queued`]), or they
    /// would be sold a second time. The tokens are kept too.
    fn load(
        &self,
        goods: GoodsId,
        remaining: u32,
        holders: &[(UserId, OrderNo)],
    ) -> Result<(), StoreError> {
        let keys = self.keys(goods);
        if self.mode == AckMode::Queued {
            self.call("create queue", |con| create_group(con, &keys.queue))?;
        }
        let mut pipe = ::redis::pipe();
        pipe.atomic().cmd("DEL").arg(&keys.buyers).ignore();
        for chunk in holder_fields(holders).chunks(HSET_CHUNK) {
            let mut hset = ::redis::cmd("HSET");
            hset.arg(&keys.buyers);
            for (user, orders) in chunk {
                hset.arg(user).arg(orders);
            }
            pipe.add_command(hset).ignore();
        }
        pipe.cmd("SET").arg(&keys.stock).arg(remaining).ignore();
        pipe.cmd("INCR").arg(&keys.epoch);
        let (epoch,): (u64,) = self.call_effect("load", |con| pipe.query(con))?;
        self.epochs.lock().insert(goods, epoch);
        self.unloaded.lock().remove(&goods);
        Ok(())
    }

    fn reserve(
        &self,
        goods: GoodsId,
        rules: &ReserveRules,
        buyers: &[Buyer],
    ) -> Result<Reserved, StoreError> {
        let keys = self.keys(goods);
        let mode = match self.mode {
            AckMode::Durable => "durable",
            AckMode::Queued => "queued",
        };
        let epoch = self.not_loaded(goods, self.epoch(goods))?;
        let mut inv = self.reserve.prepare_invoke();
        inv.key(&keys.stock)
            .key(&keys.buyers)
            .key(&keys.queue)
            .key(&keys.epoch)
            .key(&keys.tokens)
            .arg(mode)
            .arg(goods)
            .arg(rules.now_ms)
            .arg(epoch)
            .arg(rules.per_user_limit)
            .arg(if rules.token_required { "1" } else { "0" })
            .arg(rules.pay_by_ms);
        for b in buyers {
            inv.arg(b.user).arg(b.order_no).arg(b.token);
        }
        let reply = self.call_effect("reserve", |con| inv.invoke::<Value>(con));
        let what = format!("reserve of goods {goods}");
        let items = match self.not_loaded(goods, reply)? {
            Value::Nil => return self.not_loaded(goods, Err(StoreError::NotLoaded(goods))),
            Value::Array(items) if items.len() == buyers.len() + 1 => items,
            other => return Err(inconsistent(format!("{what}: unexpected reply {other:?}"))),
        };
        let mut items = items.into_iter();
        let remaining = match items.next() {
            Some(Value::Int(n)) => to_u32(&what, n)?,
            other => return Err(inconsistent(format!("{what}: bad remaining {other:?}"))),
        };
        let decisions = items
            .map(|item| match item {
                Value::Int(1) => Ok(Reservation::Reserved),
                Value::Int(0) => Ok(Reservation::SoldOut),
                Value::Int(-1) => Ok(Reservation::Token(TokenRefusal::Invalid)),
                Value::Int(-2) => Ok(Reservation::Token(TokenRefusal::Expired)),
                Value::Int(-3) => Ok(Reservation::Token(TokenRefusal::Used)),
                Value::BulkString(held) => {
                    let held = String::from_utf8_lossy(&held);
                    parse_u64(&what, &held).map(Reservation::Held)
                }
                other => Err(inconsistent(format!("{what}: bad decision {other:?}"))),
            })
            .collect::<Result<_, _>>()?;
        Ok(Reserved {
            decisions,
            remaining,
        })
    }

    fn release(&self, goods: GoodsId, buyers: &[(UserId, OrderNo)]) -> Result<u32, StoreError> {
        let keys = self.keys(goods);
        let mut inv = self.release.prepare_invoke();
        inv.key(&keys.stock).key(&keys.buyers);
        pair_args(&mut inv, buyers);
        let reply = self.call_effect("release", |con| inv.invoke::<Value>(con));
        let result = reply.and_then(|v| script_count(goods, "release", v));
        self.not_loaded(goods, result)
    }

    /// Works whether or not the goods is loaded: tokens are not fenced by
    /// the epoch, since issuing one changes no stock.
    fn issue_token(
        &self,
        goods: GoodsId,
        user: UserId,
        token: u64,
        expires_ms: u64,
    ) -> Result<(), StoreError> {
        self.issue_token_at(goods, user, token, expires_ms, now_ms())
    }

    fn add(&self, goods: GoodsId, amount: u32) -> Result<u32, StoreError> {
        let keys = self.keys(goods);
        let epoch = self.not_loaded(goods, self.epoch(goods))?;
        let mut inv = self.add.prepare_invoke();
        inv.key(&keys.stock).key(&keys.epoch).arg(amount).arg(epoch);
        let reply = self.call_effect("add", |con| inv.invoke::<Value>(con));
        let result = reply.and_then(|v| script_count(goods, "add", v));
        self.not_loaded(goods, result)
    }

    fn remaining(&self, goods: GoodsId) -> Result<Option<u32>, StoreError> {
        let key = self.keys(goods).stock;
        let left: Option<i64> =
            self.call("remaining", |con| ::redis::cmd("GET").arg(&key).query(con))?;
        left.map(|n| to_u32(&format!("stock of goods {goods}"), n))
            .transpose()
    }

    /// A goods' units left and holders (one pair per held order, sorted),
    /// read atomically; `None` if it is not loaded.
    fn snapshot(&self, goods: GoodsId) -> Result<Option<(u32, Holders)>, StoreError> {
        let keys = self.keys(goods);
        let mut pipe = ::redis::pipe();
        pipe.atomic()
            .cmd("GET")
            .arg(&keys.stock)
            .cmd("HGETALL")
            .arg(&keys.buyers);
        let (stock, buyers) = self.call("snapshot", |con| {
            pipe.query::<(Option<i64>, HashMap<String, String>)>(con)
        })?;
        let Some(stock) = stock else {
            return Ok(None);
        };
        let what = format!("snapshot of goods {goods}");
        let mut holders = Vec::with_capacity(buyers.len());
        for (user, orders) in &buyers {
            let user = parse_u64(&what, user)?;
            // split(' '), not split_whitespace: an empty or doubly spaced
            // list is not one the scripts write, and must not pass.
            for order_no in orders.split(' ') {
                holders.push((user, parse_u64(&what, order_no)?));
            }
        }
        holders.sort_unstable();
        Ok(Some((to_u32(&what, stock)?, holders)))
    }
}
