//! Reply statuses.

use std::fmt;

/// The first byte of every reply body.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Status {
    Ok = 0x00,
    SoldOut = 0x01,
    /// BUY only: the user already holds as many live orders of this goods as
    /// its `per_user_limit`, or the token already made an order still held;
    /// the reply carries such an order's number, so a retried BUY learns its
    /// order.
    AlreadyBought = 0x02,
    NotStarted = 0x03,
    Ended = 0x04,
    UnknownGoods = 0x05,
    RateLimited = 0x06,
    /// Overloaded or a store is unreachable: nothing was done, retry later.
    Busy = 0x07,
    Unauthorized = 0x08,
    BadRequest = 0x09,
    InternalError = 0x0a,
    UnsupportedVersion = 0x0b,
    /// ORDER_STATUS: the user holds no live order for this goods. PAY, CANCEL:
    /// this user has no order of that number.
    NoOrder = 0x0c,
    /// BUY, TOKEN: the sale of this goods is paused by its admin.
    Paused = 0x0d,
    /// BUY: this goods requires a purchase token and none was given.
    TokenRequired = 0x0e,
    /// BUY: the token was not issued to this user for this goods.
    TokenInvalid = 0x0f,
    /// BUY: the token's lifetime has passed; ask a new one.
    TokenExpired = 0x10,
    /// BUY: the token already bought a unit that is no longer held.
    TokenUsed = 0x11,
    /// PAY: the order is cancelled (by its buyer, or its payment window
    /// passed); its unit went back on sale.
    OrderCancelled = 0x12,
    /// CANCEL: the order is paid and can no longer be cancelled.
    OrderPaid = 0x13,
}

impl Status {
    pub fn from_u8(v: u8) -> Option<Status> {
        use Status::*;
        Some(match v {
            0x00 => Ok,
            0x01 => SoldOut,
            0x02 => AlreadyBought,
            0x03 => NotStarted,
            0x04 => Ended,
            0x05 => UnknownGoods,
            0x06 => RateLimited,
            0x07 => Busy,
            0x08 => Unauthorized,
            0x09 => BadRequest,
            0x0a => InternalError,
            0x0b => UnsupportedVersion,
            0x0c => NoOrder,
            0x0d => Paused,
            0x0e => TokenRequired,
            0x0f => TokenInvalid,
            0x10 => TokenExpired,
            0x11 => TokenUsed,
            0x12 => OrderCancelled,
            0x13 => OrderPaid,
            _ => return None,
        })
    }

    /// The name used in PROTOCOL.md, logs and the CLI's JSON.
    pub fn as_str(self) -> &'static str {
        use Status::*;
        match self {
            Ok => "ok",
            SoldOut => "sold_out",
            AlreadyBought => "already_bought",
            NotStarted => "not_started",
            Ended => "ended",
            UnknownGoods => "unknown_goods",
            RateLimited => "rate_limited",
            Busy => "busy",
            Unauthorized => "unauthorized",
            BadRequest => "bad_request",
            InternalError => "internal_error",
            UnsupportedVersion => "unsupported_version",
            NoOrder => "no_order",
            Paused => "paused",
            TokenRequired => "token_required",
            TokenInvalid => "token_invalid",
            TokenExpired => "token_expired",
            TokenUsed => "token_used",
            OrderCancelled => "order_cancelled",
            OrderPaid => "order_paid",
        }
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
