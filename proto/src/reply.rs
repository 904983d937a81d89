//! Replies: what the server sends back.

use std::fmt;

use bytes::{BufMut, BytesMut};

use crate::frame::{self, Frame};
use crate::hello::ServerInfo;
use crate::opcode::{Opcode, REPLY_BIT};
use crate::status::Status;
use crate::types::{
    Drift, Goods, Order, Stat, StockParts, DRIFT_LEN, GOODS_MIN_LEN, ORDER_LEN, STAT_MIN_LEN,
};
use crate::wire::{put_string, BodyError, Reader};

/// Longest error message a decoder accepts.
const MAX_MESSAGE_LEN: usize = u16::MAX as usize;

/// A reply, without its id. Every variant but [`Reply::Error`] and
/// [`Reply::AlreadyBought`] has status `ok`. `Debug` hides a purchase
/// token, as [`crate::Request`]'s does.
#[derive(Clone, PartialEq, Eq)]
pub enum Reply {
    /// HELLO: the version the connection speaks from now on, whether the
    /// token granted admin rights, and, from version 2 on, what the server
    /// says about itself (`None` in a version 1 reply).
    Hello {
        version: u16,
        admin: bool,
        server: Option<ServerInfo>,
    },
    Pong,
    GoodsList(Vec<Goods>),
    Goods(Goods),
    Bought {
        order_no: u64,
    },
    /// BUY by a user who already holds as many live orders as the goods
    /// allows, or with a token that already made an order still held: here
    /// is such an order.
    AlreadyBought {
        order_no: u64,
    },
    Order(Order),
    /// PAY: the order, now paid.
    Paid(Order),
    /// CANCEL: the order, now cancelled.
    Cancelled(Order),
    /// LIST_ORDERS: the user's orders, newest first.
    Orders(Vec<Order>),
    /// TOKEN: a purchase token, good for one BUY until `expires_ms`.
    Token {
        token: u64,
        expires_ms: u64,
    },
    GoodsAdded(Goods),
    Restocked(Goods),
    Stats(Vec<Stat>),
    /// RECONCILE: each goods as it was found and as it was left.
    Reconciled(Vec<Drift>),
    /// SALE_CONTROL: the goods after the change.
    SaleChanged(Goods),
    /// STOCK: where the goods' units are in the stock store.
    Stock(StockParts),
    /// Any status but `ok`, with a message for people. (`already_bought` in
    /// a reply to BUY carries an order number instead: that is
    /// [`Reply::AlreadyBought`].)
    Error {
        status: Status,
        message: String,
    },
}

/// Hand-written so that a purchase token, a bearer capability, never
/// reaches a log line.
impl fmt::Debug for Reply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let tuple = |f: &mut fmt::Formatter<'_>, name: &str, field: &dyn fmt::Debug| {
            f.debug_tuple(name).field(field).finish()
        };
        match self {
            Reply::Hello {
                version,
                admin,
                server,
            } => f
                .debug_struct("Hello")
                .field("version", version)
                .field("admin", admin)
                .field("server", server)
                .finish(),
            Reply::Pong => f.write_str("Pong"),
            Reply::GoodsList(goods) => tuple(f, "GoodsList", goods),
            Reply::Goods(goods) => tuple(f, "Goods", goods),
            Reply::Bought { order_no } => f
                .debug_struct("Bought")
                .field("order_no", order_no)
                .finish(),
            Reply::AlreadyBought { order_no } => f
                .debug_struct("AlreadyBought")
                .field("order_no", order_no)
                .finish(),
            Reply::Order(order) => tuple(f, "Order", order),
            Reply::Paid(order) => tuple(f, "Paid", order),
            Reply::Cancelled(order) => tuple(f, "Cancelled", order),
            Reply::Orders(orders) => tuple(f, "Orders", orders),
            Reply::Token { expires_ms, .. } => f
                .debug_struct("Token")
                .field("token", &"<redacted>")
                .field("expires_ms", expires_ms)
                .finish(),
            Reply::GoodsAdded(goods) => tuple(f, "GoodsAdded", goods),
            Reply::Restocked(goods) => tuple(f, "Restocked", goods),
            Reply::Stats(stats) => tuple(f, "Stats", stats),
            Reply::Reconciled(drifts) => tuple(f, "Reconciled", drifts),
            Reply::SaleChanged(goods) => tuple(f, "SaleChanged", goods),
            Reply::Stock(parts) => tuple(f, "Stock", parts),
            Reply::Error { status, message } => f
                .debug_struct("Error")
                .field("status", status)
                .field("message", message)
                .finish(),
        }
    }
}

impl Reply {
    pub fn error(status: Status, message: impl Into<String>) -> Reply {
        Reply::Error {
            status,
            message: message.into(),
        }
    }

    /// This reply as a peer of protocol `version` may be sent it: an error
    /// status newer than that version becomes the one it refines
    /// ([`Status::for_version`]), message kept.
    pub fn for_version(self, version: u16) -> Reply {
        match self {
            Reply::Error { status, message } => Reply::Error {
                status: status.for_version(version),
                message,
            },
            other => other,
        }
    }

    pub fn status(&self) -> Status {
        match self {
            Reply::Error { status, .. } => *status,
            Reply::AlreadyBought { .. } => Status::AlreadyBought,
            _ => Status::Ok,
        }
    }

    /// The opcode this reply answers; `None` for errors, which answer any.
    fn answers(&self) -> Option<Opcode> {
        Some(match self {
            Reply::Hello { .. } => Opcode::Hello,
            Reply::Pong => Opcode::Ping,
            Reply::GoodsList(_) => Opcode::ListGoods,
            Reply::Goods(_) => Opcode::GetGoods,
            Reply::Bought { .. } | Reply::AlreadyBought { .. } => Opcode::Buy,
            Reply::Order(_) => Opcode::OrderStatus,
            Reply::Paid(_) => Opcode::Pay,
            Reply::Cancelled(_) => Opcode::Cancel,
            Reply::Orders(_) => Opcode::ListOrders,
            Reply::Token { .. } => Opcode::Token,
            Reply::SaleChanged(_) => Opcode::SaleControl,
            Reply::GoodsAdded(_) => Opcode::AddGoods,
            Reply::Restocked(_) => Opcode::Restock,
            Reply::Stats(_) => Opcode::Stats,
            Reply::Reconciled(_) => Opcode::Reconcile,
            Reply::Stock(_) => Opcode::Stock,
            Reply::Error { .. } => return None,
        })
    }

    /// Appends this reply as the answer to request `id` of opcode `to`.
    /// `to` is the raw request opcode, so that an unknown opcode can be
    /// answered too.
    pub fn encode(&self, to: u8, id: u64, dst: &mut BytesMut) {
        debug_assert!(
            self.answers().is_none_or(|op| op as u8 == to),
            "{self:?} does not answer opcode {to:#04x}"
        );
        if let Reply::Error { status, .. } = self {
            // `ok`, and `already_bought` to BUY, have bodies of their own: such
            // an error would be read back by the peer as a different reply,
            // not refused.
            let to_buy = to | REPLY_BIT == Opcode::Buy as u8 | REPLY_BIT;
            debug_assert!(
                *status != Status::Ok && !(*status == Status::AlreadyBought && to_buy),
                "{self:?} cannot be sent as an error to opcode {to:#04x}"
            );
        }
        frame::write(dst, to | REPLY_BIT, id, |b| {
            b.put_u8(self.status() as u8);
            match self {
                Reply::Hello {
                    version,
                    admin,
                    server,
                } => {
                    b.put_u16(*version);
                    b.put_u8(u8::from(*admin));
                    if let Some(info) = server {
                        info.encode(b);
                    }
                }
                Reply::Pong => {}
                Reply::GoodsList(list) => {
                    b.put_u32(list.len() as u32);
                    list.iter().for_each(|g| g.encode(b));
                }
                Reply::Goods(g)
                | Reply::GoodsAdded(g)
                | Reply::Restocked(g)
                | Reply::SaleChanged(g) => g.encode(b),
                Reply::Bought { order_no } | Reply::AlreadyBought { order_no } => {
                    b.put_u64(*order_no)
                }
                Reply::Order(order) | Reply::Paid(order) | Reply::Cancelled(order) => {
                    order.encode(b)
                }
                Reply::Orders(orders) => {
                    b.put_u32(orders.len() as u32);
                    orders.iter().for_each(|o| o.encode(b));
                }
                Reply::Token { token, expires_ms } => {
                    b.put_u64(*token);
                    b.put_u64(*expires_ms);
                }
                Reply::Stats(stats) => {
                    b.put_u32(stats.len() as u32);
                    stats.iter().for_each(|s| s.encode(b));
                }
                Reply::Reconciled(drifts) => {
                    b.put_u32(drifts.len() as u32);
                    drifts.iter().for_each(|d| d.encode(b));
                }
                Reply::Stock(parts) => parts.encode(b),
                Reply::Error { message, .. } => put_string(b, message),
            }
        });
    }

    /// Reads a reply from a whole frame. Returns the opcode it answers.
    pub fn decode(frame: &Frame<'_>) -> Result<(Opcode, Reply), BodyError> {
        if frame.opcode & REPLY_BIT == 0 {
            return Err(BodyError::UnknownOpcode(frame.opcode));
        }
        let op = Opcode::from_u8(frame.opcode & !REPLY_BIT)
            .ok_or(BodyError::UnknownOpcode(frame.opcode))?;
        let mut r = Reader::new(frame.body);
        let raw = r.u8("status")?;
        let status = Status::from_u8(raw).ok_or(BodyError::BadValue {
            field: "status",
            value: raw.into(),
        })?;
        let reply = match (status, op) {
            (Status::Ok, Opcode::Hello) => {
                let version = r.u16("version")?;
                let admin = r.bool("admin")?;
                // The body's length tells the two forms apart: a version 1
                // reply ends after `admin`. Any other length is refused by
                // `finish` or by a truncated field.
                let server = if r.remaining() == 0 {
                    None
                } else {
                    Some(ServerInfo::decode(&mut r)?)
                };
                Reply::Hello {
                    version,
                    admin,
                    server,
                }
            }
            (Status::Ok, Opcode::Ping) => Reply::Pong,
            (Status::Ok, Opcode::ListGoods) => {
                let n = r.count("goods_count", GOODS_MIN_LEN)?;
                let mut list = Vec::with_capacity(n);
                for _ in 0..n {
                    list.push(Goods::decode(&mut r)?);
                }
                Reply::GoodsList(list)
            }
            (Status::Ok, Opcode::GetGoods) => Reply::Goods(Goods::decode(&mut r)?),
            (Status::Ok, Opcode::Buy) => Reply::Bought {
                order_no: r.u64("order_no")?,
            },
            (Status::AlreadyBought, Opcode::Buy) => Reply::AlreadyBought {
                order_no: r.u64("order_no")?,
            },
            (Status::Ok, Opcode::OrderStatus) => Reply::Order(Order::decode(&mut r)?),
            (Status::Ok, Opcode::Pay) => Reply::Paid(Order::decode(&mut r)?),
            (Status::Ok, Opcode::Cancel) => Reply::Cancelled(Order::decode(&mut r)?),
            (Status::Ok, Opcode::ListOrders) => {
                let n = r.count("order_count", ORDER_LEN)?;
                let mut orders = Vec::with_capacity(n);
                for _ in 0..n {
                    orders.push(Order::decode(&mut r)?);
                }
                Reply::Orders(orders)
            }
            (Status::Ok, Opcode::Token) => Reply::Token {
                token: r.u64("token")?,
                expires_ms: r.u64("expires_ms")?,
            },
            (Status::Ok, Opcode::SaleControl) => Reply::SaleChanged(Goods::decode(&mut r)?),
            (Status::Ok, Opcode::AddGoods) => Reply::GoodsAdded(Goods::decode(&mut r)?),
            (Status::Ok, Opcode::Restock) => Reply::Restocked(Goods::decode(&mut r)?),
            (Status::Ok, Opcode::Stats) => {
                let n = r.count("stat_count", STAT_MIN_LEN)?;
                let mut stats = Vec::with_capacity(n);
                for _ in 0..n {
                    stats.push(Stat::decode(&mut r)?);
                }
                Reply::Stats(stats)
            }
            (Status::Ok, Opcode::Reconcile) => {
                let n = r.count("drift_count", DRIFT_LEN)?;
                let mut drifts = Vec::with_capacity(n);
                for _ in 0..n {
                    drifts.push(Drift::decode(&mut r)?);
                }
                Reply::Reconciled(drifts)
            }
            (Status::Ok, Opcode::Stock) => Reply::Stock(StockParts::decode(&mut r)?),
            (Status::Ok, Opcode::Error) => {
                return Err(BodyError::BadValue {
                    field: "status",
                    value: 0,
                })
            }
            (status, _) => Reply::Error {
                status,
                message: r.string("message", MAX_MESSAGE_LEN)?,
            },
        };
        r.finish()?;
        Ok((op, reply))
    }
}

#[cfg(all(test, debug_assertions))]
mod tests {
    use super::*;

    #[test]
    #[should_panic(expected = "cannot be sent as an error")]
    fn an_error_with_status_ok_is_refused() {
        Reply::error(Status::Ok, "fine").encode(Opcode::Ping as u8, 1, &mut BytesMut::new());
    }

    #[test]
    #[should_panic(expected = "cannot be sent as an error")]
    fn already_bought_as_an_error_to_buy_is_refused() {
        Reply::error(Status::AlreadyBought, "twice").encode(
            Opcode::Buy as u8,
            1,
            &mut BytesMut::new(),
        );
    }
}

#[cfg(test)]
mod debug_tests {
    use super::*;

    #[test]
    fn debug_never_shows_a_purchase_token() {
        let token = Reply::Token {
            token: 123_456_789,
            expires_ms: 42,
        };
        let shown = format!("{token:?}");
        assert!(!shown.contains("123456789"), "{shown}");
        assert_eq!(shown, r#"Token { token: "<redacted>", expires_ms: 42 }"#);
        // The others as derived.
        assert_eq!(
            format!("{:?}", Reply::Bought { order_no: 5 }),
            "Bought { order_no: 5 }"
        );
        assert_eq!(format!("{:?}", Reply::Pong), "Pong");
    }
}
