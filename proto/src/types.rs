//! The records that commands carry: goods, orders, counters.

use bytes::{BufMut, BytesMut};

use crate::request::MAX_NAME_LEN;
use crate::wire::{put_string, BodyError, Reader};

/// Where a goods is in its sale, as of the moment the reply was made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum GoodsState {
    Upcoming = 0,
    OnSale = 1,
    SoldOut = 2,
    Ended = 3,
    /// Inside its window, but its admin paused the sale.
    Paused = 4,
}

impl GoodsState {
    pub fn as_str(self) -> &'static str {
        match self {
            GoodsState::Upcoming => "upcoming",
            GoodsState::OnSale => "on_sale",
            GoodsState::SoldOut => "sold_out",
            GoodsState::Ended => "ended",
            GoodsState::Paused => "paused",
        }
    }

    fn decode(r: &mut Reader<'_>) -> Result<GoodsState, BodyError> {
        Ok(match r.u8("state")? {
            0 => GoodsState::Upcoming,
            1 => GoodsState::OnSale,
            2 => GoodsState::SoldOut,
            3 => GoodsState::Ended,
            4 => GoodsState::Paused,
            v => {
                return Err(BodyError::BadValue {
                    field: "state",
                    value: v.into(),
                })
            }
        })
    }
}

/// The purchase rules of a goods, set by ADD_GOODS.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SaleRules {
    /// Live orders one user may hold of this goods, 1..=255.
    pub per_user_limit: u8,
    /// How long a buyer has to PAY, in milliseconds from the order; past it
    /// the order is cancelled and its unit goes back on sale. At least 1.
    pub pay_window_ms: u64,
    /// BUY must carry a purchase token from TOKEN.
    pub token_required: bool,
}

/// The payment window when an admin names none: 15 minutes.
pub const DEFAULT_PAY_WINDOW_MS: u64 = 15 * 60 * 1000;

impl Default for SaleRules {
    fn default() -> Self {
        SaleRules {
            per_user_limit: 1,
            pay_window_ms: DEFAULT_PAY_WINDOW_MS,
            token_required: false,
        }
    }
}

/// Encoded rules: limit, window, flags.
const RULES_LEN: usize = 1 + 8 + 1;

impl SaleRules {
    fn encode(&self, dst: &mut BytesMut) {
        dst.put_u8(self.per_user_limit);
        dst.put_u64(self.pay_window_ms);
        dst.put_u8(u8::from(self.token_required));
    }

    fn decode(r: &mut Reader<'_>) -> Result<SaleRules, BodyError> {
        Ok(SaleRules {
            per_user_limit: r.u8("per_user_limit")?,
            pay_window_ms: r.u64("pay_window_ms")?,
            token_required: r.bool("token_required")?,
        })
    }
}

/// A goods as LIST_GOODS and GET_GOODS show it. Times are Unix milliseconds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Goods {
    pub id: u64,
    pub name: String,
    pub price_cents: u64,
    pub total: u32,
    pub remaining: u32,
    pub start_ms: u64,
    pub end_ms: u64,
    pub state: GoodsState,
    pub rules: SaleRules,
}

/// Smallest encoded goods: an empty name.
pub(crate) const GOODS_MIN_LEN: usize = 8 + 2 + 8 + 4 + 4 + 8 + 8 + 1 + RULES_LEN;

impl Goods {
    pub(crate) fn encode(&self, dst: &mut BytesMut) {
        dst.put_u64(self.id);
        put_string(dst, &self.name);
        dst.put_u64(self.price_cents);
        dst.put_u32(self.total);
        dst.put_u32(self.remaining);
        dst.put_u64(self.start_ms);
        dst.put_u64(self.end_ms);
        dst.put_u8(self.state as u8);
        self.rules.encode(dst);
    }

    pub(crate) fn decode(r: &mut Reader<'_>) -> Result<Goods, BodyError> {
        Ok(Goods {
            id: r.u64("goods_id")?,
            name: r.string("name", MAX_NAME_LEN)?,
            price_cents: r.u64("price_cents")?,
            total: r.u32("total")?,
            remaining: r.u32("remaining")?,
            start_ms: r.u64("start_ms")?,
            end_ms: r.u64("end_ms")?,
            state: GoodsState::decode(r)?,
            rules: SaleRules::decode(r)?,
        })
    }
}

/// ADD_GOODS: a goods to put on sale. Times are Unix milliseconds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewGoods {
    pub name: String,
    pub price_cents: u64,
    pub stock: u32,
    pub start_ms: u64,
    pub end_ms: u64,
    pub rules: SaleRules,
    /// The buckets the goods' stock is split over in the server's stock
    /// store (1..=64; 1, the default, is no split): for a goods whose BUYs
    /// one Redis node cannot take. Not part of the NewGoods record (5.3),
    /// which has no room for it: ADD_GOODS carries it after the record
    /// (5.1), and only when it is not 1.
    pub buckets: u16,
}

impl NewGoods {
    pub(crate) fn encode(&self, dst: &mut BytesMut) {
        put_string(dst, &self.name);
        dst.put_u64(self.price_cents);
        dst.put_u32(self.stock);
        dst.put_u64(self.start_ms);
        dst.put_u64(self.end_ms);
        self.rules.encode(dst);
    }

    pub(crate) fn decode(r: &mut Reader<'_>) -> Result<NewGoods, BodyError> {
        Ok(NewGoods {
            name: r.string("name", MAX_NAME_LEN)?,
            price_cents: r.u64("price_cents")?,
            stock: r.u32("stock")?,
            start_ms: r.u64("start_ms")?,
            end_ms: r.u64("end_ms")?,
            rules: SaleRules::decode(r)?,
            buckets: 1,
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum OrderState {
    Created = 0,
    Paid = 1,
    Cancelled = 2,
}

impl OrderState {
    pub fn as_str(self) -> &'static str {
        match self {
            OrderState::Created => "created",
            OrderState::Paid => "paid",
            OrderState::Cancelled => "cancelled",
        }
    }

    pub fn from_u8(v: u8) -> Option<OrderState> {
        match v {
            0 => Some(OrderState::Created),
            1 => Some(OrderState::Paid),
            2 => Some(OrderState::Cancelled),
            _ => None,
        }
    }
}

/// An order as ORDER_STATUS, PAY, CANCEL and LIST_ORDERS show it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Order {
    pub order_no: u64,
    pub user_id: u64,
    pub goods_id: u64,
    pub state: OrderState,
    pub created_ms: u64,
    /// The end of its payment window: unpaid then, it is cancelled.
    pub pay_by_ms: u64,
}

/// Every order record is this long: it has no string.
pub(crate) const ORDER_LEN: usize = 8 + 8 + 8 + 1 + 8 + 8;

impl Order {
    pub(crate) fn encode(&self, dst: &mut BytesMut) {
        dst.put_u64(self.order_no);
        dst.put_u64(self.user_id);
        dst.put_u64(self.goods_id);
        dst.put_u8(self.state as u8);
        dst.put_u64(self.created_ms);
        dst.put_u64(self.pay_by_ms);
    }

    pub(crate) fn decode(r: &mut Reader<'_>) -> Result<Order, BodyError> {
        Ok(Order {
            order_no: r.u64("order_no")?,
            user_id: r.u64("user_id")?,
            goods_id: r.u64("goods_id")?,
            state: {
                let v = r.u8("order_state")?;
                OrderState::from_u8(v).ok_or(BodyError::BadValue {
                    field: "order_state",
                    value: v.into(),
                })?
            },
            created_ms: r.u64("created_ms")?,
            pay_by_ms: r.u64("pay_by_ms")?,
        })
    }
}

/// What SALE_CONTROL does to a goods' sale.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SaleAction {
    /// BUY and TOKEN are refused with `paused` until a resume.
    Pause,
    Resume,
    /// Ends the sale now: its window's end becomes the current time.
    End,
    /// Moves the sale window to `[start_ms, end_ms)`.
    Window {
        start_ms: u64,
        end_ms: u64,
    },
}

impl SaleAction {
    pub fn as_str(self) -> &'static str {
        match self {
            SaleAction::Pause => "pause",
            SaleAction::Resume => "resume",
            SaleAction::End => "end",
            SaleAction::Window { .. } => "window",
        }
    }

    pub(crate) fn encode(&self, dst: &mut BytesMut) {
        match *self {
            SaleAction::Pause => dst.put_u8(1),
            SaleAction::Resume => dst.put_u8(2),
            SaleAction::End => dst.put_u8(3),
            SaleAction::Window { start_ms, end_ms } => {
                dst.put_u8(4);
                dst.put_u64(start_ms);
                dst.put_u64(end_ms);
            }
        }
    }

    pub(crate) fn decode(r: &mut Reader<'_>) -> Result<SaleAction, BodyError> {
        Ok(match r.u8("action")? {
            1 => SaleAction::Pause,
            2 => SaleAction::Resume,
            3 => SaleAction::End,
            4 => SaleAction::Window {
                start_ms: r.u64("start_ms")?,
                end_ms: r.u64("end_ms")?,
            },
            v => {
                return Err(BodyError::BadValue {
                    field: "action",
                    value: v.into(),
                })
            }
        })
    }
}

/// One named counter of STATS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stat {
    pub name: String,
    pub value: u64,
}

/// Smallest encoded stat: an empty name.
pub(crate) const STAT_MIN_LEN: usize = 2 + 8;

/// Longest stat name a decoder accepts.
pub(crate) const MAX_STAT_NAME: usize = 64;

impl Stat {
    pub(crate) fn encode(&self, dst: &mut BytesMut) {
        put_string(dst, &self.name);
        dst.put_u64(self.value);
    }

    pub(crate) fn decode(r: &mut Reader<'_>) -> Result<Stat, BodyError> {
        Ok(Stat {
            name: r.string("stat_name", MAX_STAT_NAME)?,
            value: r.u64("stat_value")?,
        })
    }
}

/// STOCK: where a goods' units are in the server's stock store, for the
/// conservation check of a goods split over buckets (ADD_GOODS `buckets`):
/// every unit of `total` is in the pool, on its way between two parts, in
/// a bucket, or held by an order (reserved or sold), so
/// `pool + in_flight + Σ buckets + holders = total`. A goods of one bucket
/// has pool 0, nothing in flight and its units in `buckets[0]`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct StockParts {
    pub goods_id: u64,
    /// The goods' total, as the order store has it.
    pub total: u32,
    pub pool: u32,
    /// Units sent from one part to another and not received yet. Read part
    /// by part while units move, it may be negative for a moment, which the
    /// sum makes good.
    pub in_flight: i64,
    /// Orders holding a unit: reserved and not yet written, or sold.
    pub holders: u64,
    /// Units left in each bucket, bucket 0 first.
    pub buckets: Vec<u32>,
}

impl StockParts {
    /// Every unit the parts account for.
    pub fn accounted(&self) -> i64 {
        let buckets: i64 = self.buckets.iter().map(|&b| i64::from(b)).sum();
        i64::from(self.pool)
            .saturating_add(self.in_flight)
            .saturating_add(buckets)
            .saturating_add(i64::try_from(self.holders).unwrap_or(i64::MAX))
    }

    /// Whether the parts account for exactly the goods' total.
    pub fn balanced(&self) -> bool {
        self.accounted() == i64::from(self.total)
    }

    pub(crate) fn encode(&self, dst: &mut BytesMut) {
        dst.put_u64(self.goods_id);
        dst.put_u32(self.total);
        dst.put_u32(self.pool);
        dst.put_i64(self.in_flight);
        dst.put_u64(self.holders);
        dst.put_u32(self.buckets.len() as u32);
        self.buckets.iter().for_each(|&b| dst.put_u32(b));
    }

    pub(crate) fn decode(r: &mut Reader<'_>) -> Result<StockParts, BodyError> {
        let goods_id = r.u64("goods_id")?;
        let total = r.u32("total")?;
        let pool = r.u32("pool")?;
        // Two's complement, as every signed field.
        let in_flight = r.u64("in_flight")? as i64;
        let holders = r.u64("holders")?;
        let n = r.count("bucket_count", 4)?;
        let mut buckets = Vec::with_capacity(n);
        for _ in 0..n {
            buckets.push(r.u32("bucket_units")?);
        }
        Ok(StockParts {
            goods_id,
            total,
            pool,
            in_flight,
            holders,
            buckets,
        })
    }
}

/// One goods as RECONCILE found it in the stock store and left it there.
///
/// `found_*` is what the stock store held before the repair; `remaining` and
/// `holders` what it holds after, recomputed from the order store (plus the
/// orders queued but not yet written).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Drift {
    pub goods_id: u64,
    /// Units the stock store had for sale; `None` when it held no stock for
    /// this goods at all (a lost or never loaded entry).
    pub found_remaining: Option<u32>,
    /// Buyers the stock store had recorded as holding a unit.
    pub found_holders: u32,
    /// Units for sale after the repair.
    pub remaining: u32,
    /// Buyers recorded after the repair: one per live or queued order.
    pub holders: u32,
}

/// Every drift record is this long: it has no string.
pub(crate) const DRIFT_LEN: usize = 8 + 1 + 4 + 4 + 4 + 4;

impl Drift {
    /// Units the stock store was off by: what it had for sale minus what it
    /// should have had (a missing entry counts as 0). Negative means units
    /// were held back from sale, as a crash between the stock deduction and
    /// the order commit leaves them; positive means it would have sold units
    /// that were already sold.
    pub fn drift(&self) -> i64 {
        i64::from(self.found_remaining.unwrap_or(0)) - i64::from(self.remaining)
    }

    /// Whether the stock store already agreed with the order store, so that
    /// the repair changed nothing.
    pub fn is_in_step(&self) -> bool {
        self.found_remaining == Some(self.remaining) && self.found_holders == self.holders
    }

    pub(crate) fn encode(&self, dst: &mut BytesMut) {
        dst.put_u64(self.goods_id);
        dst.put_u8(u8::from(self.found_remaining.is_some()));
        dst.put_u32(self.found_remaining.unwrap_or(0));
        dst.put_u32(self.found_holders);
        dst.put_u32(self.remaining);
        dst.put_u32(self.holders);
    }

    pub(crate) fn decode(r: &mut Reader<'_>) -> Result<Drift, BodyError> {
        let goods_id = r.u64("goods_id")?;
        let loaded = r.bool("found_loaded")?;
        let found_remaining = match (loaded, r.u32("found_remaining")?) {
            (true, n) => Some(n),
            (false, 0) => None,
            // Only one encoding per value: a count beside "not loaded" would
            // be a second way to say the same thing, or a lie.
            (false, n) => {
                return Err(BodyError::BadValue {
                    field: "found_remaining",
                    value: n.into(),
                })
            }
        };
        Ok(Drift {
            goods_id,
            found_remaining,
            found_holders: r.u32("found_holders")?,
            remaining: r.u32("remaining")?,
            holders: r.u32("holders")?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drift(found_remaining: Option<u32>, remaining: u32) -> Drift {
        Drift {
            goods_id: 1,
            found_remaining,
            found_holders: 0,
            remaining,
            holders: 0,
        }
    }

    #[test]
    fn drift_is_found_minus_repaired_and_a_missing_entry_counts_as_zero() {
        assert_eq!(drift(Some(41), 42).drift(), -1);
        assert_eq!(drift(Some(45), 42).drift(), 3);
        assert_eq!(drift(None, 7).drift(), -7);
        assert_eq!(drift(Some(u32::MAX), 0).drift(), i64::from(u32::MAX));
        assert_eq!(drift(Some(0), u32::MAX).drift(), -i64::from(u32::MAX));
        assert!(drift(Some(5), 5).is_in_step());
        // A missing entry is repaired even when its goods has nothing left.
        assert_eq!(drift(None, 0).drift(), 0);
        assert!(!drift(None, 0).is_in_step());
    }
}
