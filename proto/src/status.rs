//! Reply statuses.

use std::fmt;

/// The first byte of every reply body.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Status {
    Ok = 0x00,
    SoldOut = 0x01,
    /// BUY only: the user already holds an order for this goods; the reply
    /// carries its order number, so a retried BUY learns its order.
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
    /// ORDER_STATUS: the user holds no order for this goods.
    NoOrder = 0x0c,
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
        }
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
