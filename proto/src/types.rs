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
}

impl GoodsState {
    pub fn as_str(self) -> &'static str {
        match self {
            GoodsState::Upcoming => "upcoming",
            GoodsState::OnSale => "on_sale",
            GoodsState::SoldOut => "sold_out",
            GoodsState::Ended => "ended",
        }
    }

    fn decode(r: &mut Reader<'_>) -> Result<GoodsState, BodyError> {
        Ok(match r.u8("state")? {
            0 => GoodsState::Upcoming,
            1 => GoodsState::OnSale,
            2 => GoodsState::SoldOut,
            3 => GoodsState::Ended,
            v => {
                return Err(BodyError::BadValue {
                    field: "state",
                    value: v.into(),
                })
            }
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
}

/// Smallest encoded goods: an empty name.
pub(crate) const GOODS_MIN_LEN: usize = 8 + 2 + 8 + 4 + 4 + 8 + 8 + 1;

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
}

impl NewGoods {
    pub(crate) fn encode(&self, dst: &mut BytesMut) {
        put_string(dst, &self.name);
        dst.put_u64(self.price_cents);
        dst.put_u32(self.stock);
        dst.put_u64(self.start_ms);
        dst.put_u64(self.end_ms);
    }

    pub(crate) fn decode(r: &mut Reader<'_>) -> Result<NewGoods, BodyError> {
        Ok(NewGoods {
            name: r.string("name", MAX_NAME_LEN)?,
            price_cents: r.u64("price_cents")?,
            stock: r.u32("stock")?,
            start_ms: r.u64("start_ms")?,
            end_ms: r.u64("end_ms")?,
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

/// An order as ORDER_STATUS shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Order {
    pub order_no: u64,
    pub user_id: u64,
    pub goods_id: u64,
    pub state: OrderState,
    pub created_ms: u64,
}

impl Order {
    pub(crate) fn encode(&self, dst: &mut BytesMut) {
        dst.put_u64(self.order_no);
        dst.put_u64(self.user_id);
        dst.put_u64(self.goods_id);
        dst.put_u8(self.state as u8);
        dst.put_u64(self.created_ms);
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
