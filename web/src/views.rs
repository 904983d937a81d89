//! The JSON shapes of goods, orders and drifts. Every 64-bit id is a
//! string, as in `seckill-cli --json`: JavaScript numbers lose digits past
//! 2^53, and order numbers are well past it.

use std::time::{SystemTime, UNIX_EPOCH};

use seckill_client::{Drift, Goods, Order};
use serde::Serialize;

/// A goods as the API shows it.
#[derive(Debug, Serialize)]
pub struct GoodsView {
    /// Its id.
    pub id: String,
    /// Its name.
    pub name: String,
    /// Its price in the currency's smallest unit.
    pub price_cents: u64,
    /// Units put on sale in all.
    pub total: u32,
    /// Units for sale now.
    pub remaining: u32,
    /// Sale opens (Unix ms).
    pub start_ms: u64,
    /// Sale closes (Unix ms).
    pub end_ms: u64,
    /// `upcoming`, `on_sale`, `sold_out`, `ended` or `paused`.
    pub state: &'static str,
    /// Live orders one user may hold.
    pub per_user_limit: u8,
    /// Time to pay after ordering, in ms.
    pub pay_window_ms: u64,
    /// BUY needs a purchase token first.
    pub token_required: bool,
}

impl From<&Goods> for GoodsView {
    fn from(g: &Goods) -> GoodsView {
        GoodsView {
            id: g.id.to_string(),
            name: g.name.clone(),
            price_cents: g.price_cents,
            total: g.total,
            remaining: g.remaining,
            start_ms: g.start_ms,
            end_ms: g.end_ms,
            state: g.state.as_str(),
            per_user_limit: g.rules.per_user_limit,
            pay_window_ms: g.rules.pay_window_ms,
            token_required: g.rules.token_required,
        }
    }
}

/// An order as the API shows it.
#[derive(Debug, Serialize)]
pub struct OrderView {
    /// Its number.
    pub order_no: String,
    /// The goods it holds a unit of.
    pub goods_id: String,
    /// `created` (awaiting payment), `paid` or `cancelled`.
    pub state: &'static str,
    /// When it was made (Unix ms).
    pub created_ms: u64,
    /// Unpaid by then, it is cancelled (Unix ms).
    pub pay_by_ms: u64,
}

impl From<&Order> for OrderView {
    fn from(o: &Order) -> OrderView {
        OrderView {
            order_no: o.order_no.to_string(),
            goods_id: o.goods_id.to_string(),
            state: o.state.as_str(),
            created_ms: o.created_ms,
            pay_by_ms: o.pay_by_ms,
        }
    }
}

/// A goods as RECONCILE found and left it.
#[derive(Debug, Serialize)]
pub struct DriftView {
    /// The goods.
    pub goods_id: String,
    /// Units the stock store had for sale (`null`: no entry at all).
    pub found_remaining: Option<u32>,
    /// Buyers the stock store had recorded.
    pub found_holders: u32,
    /// Units for sale after the repair.
    pub remaining: u32,
    /// Buyers recorded after the repair.
    pub holders: u32,
    /// What it was off by (negative: units held back from sale).
    pub drift: i64,
}

impl From<&Drift> for DriftView {
    fn from(d: &Drift) -> DriftView {
        DriftView {
            goods_id: d.goods_id.to_string(),
            found_remaining: d.found_remaining,
            found_holders: d.found_holders,
            remaining: d.remaining,
            holders: d.holders,
            drift: d.drift(),
        }
    }
}

/// The gateway's clock, Unix ms: pages count down against it.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
