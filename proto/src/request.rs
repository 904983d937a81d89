//! Requests: what a client sends.

use std::fmt;

use bytes::{BufMut, BytesMut};

use crate::frame::{self, Frame};
use crate::opcode::Opcode;
use crate::request_id::RequestId;
use crate::types::{NewGoods, SaleAction};
use crate::wire::{put_string, BodyError, Reader};

/// Longest goods name, in bytes of UTF-8.
pub const MAX_NAME_LEN: usize = 200;
/// Longest admin token, in bytes.
pub const MAX_TOKEN_LEN: usize = 256;
/// The `goods_id` of RECONCILE that asks for every goods. Goods ids start at
/// 1, so no goods has it.
pub const ALL_GOODS: u64 = 0;
/// The `token` of a BUY that carries no purchase token. No token is 0.
pub const NO_TOKEN: u64 = 0;
/// Bytes of a BUY body without a client request id: `user_id`, `goods_id`,
/// `token`.
pub const BUY_LEN: usize = 24;
/// Bytes of a BUY body with a client request id: the same and the `u128`.
pub const BUY_WITH_ID_LEN: usize = BUY_LEN + 16;

/// A request, without its id (the id travels beside it).
#[derive(Clone, PartialEq, Eq)]
pub enum Request {
    /// Must be a connection's first request. An empty token asks for no
    /// admin rights.
    Hello {
        version: u16,
        token: String,
    },
    Ping,
    ListGoods,
    GetGoods {
        goods_id: u64,
    },
    /// `token` is a purchase token from TOKEN, or [`NO_TOKEN`] for goods
    /// that require none. `request_id` names this purchase across retries:
    /// every send of one BUY carries the same one, and a server answers a
    /// repeat with the first answer (PROTOCOL.md, section 9). `None` sends
    /// the body of a BUY from before request ids, which every server takes.
    Buy {
        user_id: u64,
        goods_id: u64,
        token: u64,
        request_id: Option<RequestId>,
    },
    OrderStatus {
        user_id: u64,
        goods_id: u64,
    },
    /// Pays an order of this user's: it is kept for good.
    Pay {
        user_id: u64,
        order_no: u64,
    },
    /// Cancels an unpaid order of this user's: its unit goes back on sale.
    Cancel {
        user_id: u64,
        order_no: u64,
    },
    /// Every order of a user, newest first.
    ListOrders {
        user_id: u64,
    },
    /// A short-lived single-use purchase token for one BUY.
    Token {
        user_id: u64,
        goods_id: u64,
    },
    /// Puts a new goods on sale. `request_id` names this addition across
    /// retries, as a BUY's does: a repeat gets the goods the first one made
    /// (PROTOCOL.md, section 9). `None` sends the body of servers that
    /// predate it.
    AddGoods {
        goods: NewGoods,
        request_id: Option<RequestId>,
    },
    Restock {
        goods_id: u64,
        amount: u32,
    },
    Stats,
    /// Recomputes the stock store's entry of one goods, or of every goods
    /// with [`ALL_GOODS`], from the order store, and repairs it.
    Reconcile {
        goods_id: u64,
    },
    /// Pauses, resumes or ends a sale, or moves its window.
    SaleControl {
        goods_id: u64,
        action: SaleAction,
    },
    /// Where a goods' units are in the stock store: its pool, its buckets,
    /// on their way between them, held by orders.
    Stock {
        goods_id: u64,
    },
}

impl Request {
    pub fn opcode(&self) -> Opcode {
        match self {
            Request::Hello { .. } => Opcode::Hello,
            Request::Ping => Opcode::Ping,
            Request::ListGoods => Opcode::ListGoods,
            Request::GetGoods { .. } => Opcode::GetGoods,
            Request::Buy { .. } => Opcode::Buy,
            Request::OrderStatus { .. } => Opcode::OrderStatus,
            Request::Pay { .. } => Opcode::Pay,
            Request::Cancel { .. } => Opcode::Cancel,
            Request::ListOrders { .. } => Opcode::ListOrders,
            Request::Token { .. } => Opcode::Token,
            Request::AddGoods { .. } => Opcode::AddGoods,
            Request::Restock { .. } => Opcode::Restock,
            Request::Stats => Opcode::Stats,
            Request::Reconcile { .. } => Opcode::Reconcile,
            Request::SaleControl { .. } => Opcode::SaleControl,
            Request::Stock { .. } => Opcode::Stock,
        }
    }

    /// Appends this request as one frame with request id `id`.
    pub fn encode(&self, id: u64, dst: &mut BytesMut) {
        frame::write(dst, self.opcode() as u8, id, |b| match self {
            Request::Hello { version, token } => {
                b.put_u16(*version);
                put_string(b, token);
            }
            Request::Ping | Request::ListGoods | Request::Stats => {}
            Request::GetGoods { goods_id }
            | Request::Reconcile { goods_id }
            | Request::Stock { goods_id } => b.put_u64(*goods_id),
            Request::Buy {
                user_id,
                goods_id,
                token,
                request_id,
            } => {
                b.put_u64(*user_id);
                b.put_u64(*goods_id);
                b.put_u64(*token);
                // Absent, it is left out rather than written as 0: the
                // 24-byte body is what servers without request ids take.
                if let Some(id) = request_id {
                    b.put_u128(id.get());
                }
            }
            Request::OrderStatus { user_id, goods_id } | Request::Token { user_id, goods_id } => {
                b.put_u64(*user_id);
                b.put_u64(*goods_id);
            }
            Request::Pay { user_id, order_no } | Request::Cancel { user_id, order_no } => {
                b.put_u64(*user_id);
                b.put_u64(*order_no);
            }
            Request::ListOrders { user_id } => b.put_u64(*user_id),
            Request::SaleControl { goods_id, action } => {
                b.put_u64(*goods_id);
                action.encode(b);
            }
            Request::AddGoods { goods, request_id } => {
                goods.encode(b);
                // As for BUY: absent, it is left out, not written as 0.
                if let Some(id) = request_id {
                    b.put_u128(id.get());
                }
                // Likewise the buckets, absent when 1.
                if goods.buckets != 1 {
                    b.put_u16(goods.buckets);
                }
            }
            Request::Restock { goods_id, amount } => {
                b.put_u64(*goods_id);
                b.put_u32(*amount);
            }
        });
    }

    /// Reads a request from a whole frame. An error leaves the connection
    /// usable: the caller answers `bad_request` with the frame's id.
    pub fn decode(frame: &Frame<'_>) -> Result<Request, BodyError> {
        let op = Opcode::from_u8(frame.opcode).ok_or(BodyError::UnknownOpcode(frame.opcode))?;
        let mut r = Reader::new(frame.body);
        let request = match op {
            Opcode::Hello => Request::Hello {
                version: r.u16("version")?,
                token: r.string("token", MAX_TOKEN_LEN)?,
            },
            Opcode::Ping => Request::Ping,
            Opcode::ListGoods => Request::ListGoods,
            Opcode::GetGoods => Request::GetGoods {
                goods_id: r.u64("goods_id")?,
            },
            Opcode::Buy => Request::Buy {
                user_id: r.u64("user_id")?,
                goods_id: r.u64("goods_id")?,
                token: r.u64("token")?,
                request_id: client_request_id(&mut r)?,
            },
            Opcode::Pay => Request::Pay {
                user_id: r.u64("user_id")?,
                order_no: r.u64("order_no")?,
            },
            Opcode::Cancel => Request::Cancel {
                user_id: r.u64("user_id")?,
                order_no: r.u64("order_no")?,
            },
            Opcode::ListOrders => Request::ListOrders {
                user_id: r.u64("user_id")?,
            },
            Opcode::Token => Request::Token {
                user_id: r.u64("user_id")?,
                goods_id: r.u64("goods_id")?,
            },
            Opcode::SaleControl => Request::SaleControl {
                goods_id: r.u64("goods_id")?,
                action: SaleAction::decode(&mut r)?,
            },
            Opcode::OrderStatus => Request::OrderStatus {
                user_id: r.u64("user_id")?,
                goods_id: r.u64("goods_id")?,
            },
            Opcode::AddGoods => {
                let mut goods = NewGoods::decode(&mut r)?;
                // After the record: nothing, the buckets (2 bytes), the
                // request id (16), or both (18), told apart by the length.
                let request_id = match r.remaining() {
                    2 => None,
                    _ => client_request_id(&mut r)?,
                };
                if r.remaining() == 2 {
                    goods.buckets = r.u16("buckets")?;
                    if goods.buckets == 0 {
                        return Err(BodyError::BadValue {
                            field: "buckets",
                            value: 0,
                        });
                    }
                }
                Request::AddGoods { goods, request_id }
            }
            Opcode::Restock => Request::Restock {
                goods_id: r.u64("goods_id")?,
                amount: r.u32("amount")?,
            },
            Opcode::Stats => Request::Stats,
            Opcode::Reconcile => Request::Reconcile {
                goods_id: r.u64("goods_id")?,
            },
            Opcode::Stock => Request::Stock {
                goods_id: r.u64("goods_id")?,
            },
            Opcode::Error => return Err(BodyError::UnknownOpcode(frame.opcode)),
        };
        r.finish()?;
        Ok(request)
    }
}

/// The optional last field of BUY and ADD_GOODS: there when its 16 bytes are. Fewer bytes are
/// no id, and `finish` refuses them as trailing; an id of 0 is refused, so
/// that a BUY without an id has one encoding, the short one.
fn client_request_id(r: &mut Reader<'_>) -> Result<Option<RequestId>, BodyError> {
    const FIELD: &str = "client_request_id";
    if r.remaining() < BUY_WITH_ID_LEN - BUY_LEN {
        return Ok(None);
    }
    match RequestId::new(r.u128(FIELD)?) {
        Some(id) => Ok(Some(id)),
        None => Err(BodyError::BadValue {
            field: FIELD,
            value: 0,
        }),
    }
}

/// Hand-written so that the admin token never reaches a log line.
impl fmt::Debug for Request {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Request::Hello { version, token } => f
                .debug_struct("Hello")
                .field("version", version)
                .field("token", &if token.is_empty() { "" } else { "<redacted>" })
                .finish(),
            Request::Ping => f.write_str("Ping"),
            Request::ListGoods => f.write_str("ListGoods"),
            Request::GetGoods { goods_id } => f
                .debug_struct("GetGoods")
                .field("goods_id", goods_id)
                .finish(),
            // A purchase token is a bearer capability: never logged either.
            // The request id is no secret: it only replays its own answer.
            Request::Buy {
                user_id,
                goods_id,
                token,
                request_id,
            } => f
                .debug_struct("Buy")
                .field("user_id", user_id)
                .field("goods_id", goods_id)
                .field("token", &if *token == NO_TOKEN { "" } else { "<redacted>" })
                .field("request_id", request_id)
                .finish(),
            Request::Pay { user_id, order_no } => f
                .debug_struct("Pay")
                .field("user_id", user_id)
                .field("order_no", order_no)
                .finish(),
            Request::Cancel { user_id, order_no } => f
                .debug_struct("Cancel")
                .field("user_id", user_id)
                .field("order_no", order_no)
                .finish(),
            Request::ListOrders { user_id } => f
                .debug_struct("ListOrders")
                .field("user_id", user_id)
                .finish(),
            Request::Token { user_id, goods_id } => f
                .debug_struct("Token")
                .field("user_id", user_id)
                .field("goods_id", goods_id)
                .finish(),
            Request::SaleControl { goods_id, action } => f
                .debug_struct("SaleControl")
                .field("goods_id", goods_id)
                .field("action", action)
                .finish(),
            Request::OrderStatus { user_id, goods_id } => f
                .debug_struct("OrderStatus")
                .field("user_id", user_id)
                .field("goods_id", goods_id)
                .finish(),
            Request::AddGoods { goods, request_id } => f
                .debug_struct("AddGoods")
                .field("goods", goods)
                .field("request_id", request_id)
                .finish(),
            Request::Restock { goods_id, amount } => f
                .debug_struct("Restock")
                .field("goods_id", goods_id)
                .field("amount", amount)
                .finish(),
            Request::Stats => f.write_str("Stats"),
            Request::Reconcile { goods_id } => f
                .debug_struct("Reconcile")
                .field("goods_id", goods_id)
                .finish(),
            Request::Stock { goods_id } => {
                f.debug_struct("Stock").field("goods_id", goods_id).finish()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_the_token() {
        let hello = Request::Hello {
            version: 1,
            token: "s3cret".into(),
        };
        assert!(!format!("{hello:?}").contains("s3cret"));
    }

    #[test]
    fn debug_never_shows_a_purchase_token() {
        let buy = |token| Request::Buy {
            user_id: 7,
            goods_id: 1,
            token,
            request_id: None,
        };
        let shown = format!("{:?}", buy(123_456_789));
        assert!(!shown.contains("123456789"), "{shown}");
        assert!(shown.contains("<redacted>"));
        // No token is not a secret, and says so.
        assert!(!format!("{:?}", buy(NO_TOKEN)).contains("<redacted>"));
    }
}
