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
    /// BUY, version 2 on: the first BUY of this client request id is still
    /// being committed; nothing was done by this one, send it again
    /// shortly. A version 1 connection gets `busy` instead (the status is
    /// new, and version 1 clients refuse statuses they do not know).
    Pending = 0x14,
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
            0x14 => Pending,
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
            Pending => "pending",
        }
    }
}

impl Status {
    /// Whether a request answered so did nothing and may be sent again as
    /// it is, after a pause: `busy`, `rate_limited`, `pending`.
    pub fn is_retryable(self) -> bool {
        matches!(self, Status::Busy | Status::RateLimited | Status::Pending)
    }

    /// This status as a peer of protocol `version` may be sent it: a status
    /// newer than the version becomes the older one it refines (`pending`
    /// is a kind of `busy`), so that an older client never gets a status it
    /// would refuse.
    pub fn for_version(self, version: u16) -> Status {
        match self {
            Status::Pending if version < 2 => Status::Busy,
            other => other,
        }
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Reply;

    /// `pending` is new in version 2: a version 1 peer, which would refuse
    /// the unknown status, is sent `busy` (what it always got), message
    /// kept; every other status goes as it is.
    #[test]
    fn pending_goes_to_version_1_as_busy() {
        assert_eq!(Status::Pending.for_version(1), Status::Busy);
        assert_eq!(Status::Pending.for_version(2), Status::Pending);
        assert_eq!(Status::SoldOut.for_version(1), Status::SoldOut);
        assert_eq!(
            Reply::error(Status::Pending, "being written").for_version(1),
            Reply::error(Status::Busy, "being written")
        );
        assert_eq!(
            Reply::Bought { order_no: 5 }.for_version(1),
            Reply::Bought { order_no: 5 }
        );
        assert!(Status::Pending.is_retryable() && Status::RateLimited.is_retryable());
        assert!(!Status::InternalError.is_retryable());
    }
}
