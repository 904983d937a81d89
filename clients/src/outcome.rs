//! What each typed method makes of its reply: the one place that says which
//! statuses are sale outcomes and which are errors, shared by the blocking
//! [`Client`](crate::Client) and, with the `tokio` feature, the async
//! [`aio::Client`](crate::aio::Client), so the two can never disagree.

use seckill_proto::{Drift, Goods, Order, Reply, Stat, Status, StockParts};

use crate::client::{Cancellation, Payment, Purchase, PurchaseToken};
use crate::error::{Error, Result};

/// PING's answer.
pub(crate) fn pong(reply: Reply) -> Result<()> {
    match reply {
        Reply::Pong => Ok(()),
        other => Err(unexpected(other, "PING")),
    }
}

/// LIST_GOODS's answer.
pub(crate) fn goods_list(reply: Reply) -> Result<Vec<Goods>> {
    match reply {
        Reply::GoodsList(list) => Ok(list),
        other => Err(unexpected(other, "LIST_GOODS")),
    }
}

/// GET_GOODS's answer; `unknown_goods` is an error.
pub(crate) fn goods(reply: Reply) -> Result<Goods> {
    match reply {
        Reply::Goods(goods) => Ok(goods),
        other => Err(unexpected(other, "GET_GOODS")),
    }
}

/// BUY's answer: the sale's answers are a [`Purchase`], the rest errors.
pub(crate) fn purchase(reply: Reply) -> Result<Purchase> {
    match reply {
        Reply::Bought { order_no } => Ok(Purchase::Ordered(order_no)),
        Reply::AlreadyBought { order_no } => Ok(Purchase::AlreadyBought(order_no)),
        Reply::Error { status, message } => match status {
            Status::SoldOut => Ok(Purchase::SoldOut),
            Status::NotStarted => Ok(Purchase::NotStarted),
            Status::Ended => Ok(Purchase::Ended),
            Status::Paused => Ok(Purchase::Paused),
            _ => Err(Error::server(status, message)),
        },
        other => Err(unexpected(other, "BUY")),
    }
}

/// TOKEN's answer.
pub(crate) fn purchase_token(reply: Reply) -> Result<PurchaseToken> {
    match reply {
        Reply::Token { token, expires_ms } => Ok(PurchaseToken { token, expires_ms }),
        other => Err(unexpected(other, "TOKEN")),
    }
}

/// PAY's answer: a cancelled order is a [`Payment`], not an error.
pub(crate) fn payment(reply: Reply) -> Result<Payment> {
    match reply {
        Reply::Paid(order) => Ok(Payment::Paid(order)),
        Reply::Error {
            status: Status::OrderCancelled,
            ..
        } => Ok(Payment::OrderCancelled),
        other => Err(unexpected(other, "PAY")),
    }
}

/// CANCEL's answer: a paid order is a [`Cancellation`], not an error.
pub(crate) fn cancellation(reply: Reply) -> Result<Cancellation> {
    match reply {
        Reply::Cancelled(order) => Ok(Cancellation::Cancelled(order)),
        Reply::Error {
            status: Status::OrderPaid,
            ..
        } => Ok(Cancellation::OrderPaid),
        other => Err(unexpected(other, "CANCEL")),
    }
}

/// LIST_ORDERS's answer.
pub(crate) fn orders(reply: Reply) -> Result<Vec<Order>> {
    match reply {
        Reply::Orders(orders) => Ok(orders),
        other => Err(unexpected(other, "LIST_ORDERS")),
    }
}

/// ORDER_STATUS's answer: no order is `None`, not an error.
pub(crate) fn order_status(reply: Reply) -> Result<Option<Order>> {
    match reply {
        Reply::Order(order) => Ok(Some(order)),
        Reply::Error {
            status: Status::NoOrder,
            ..
        } => Ok(None),
        other => Err(unexpected(other, "ORDER_STATUS")),
    }
}

/// ADD_GOODS's answer.
pub(crate) fn goods_added(reply: Reply) -> Result<Goods> {
    match reply {
        Reply::GoodsAdded(goods) => Ok(goods),
        other => Err(unexpected(other, "ADD_GOODS")),
    }
}

/// RESTOCK's answer.
pub(crate) fn restocked(reply: Reply) -> Result<Goods> {
    match reply {
        Reply::Restocked(goods) => Ok(goods),
        other => Err(unexpected(other, "RESTOCK")),
    }
}

/// SALE_CONTROL's answer.
pub(crate) fn sale_changed(reply: Reply) -> Result<Goods> {
    match reply {
        Reply::SaleChanged(goods) => Ok(goods),
        other => Err(unexpected(other, "SALE_CONTROL")),
    }
}

/// STATS's answer.
pub(crate) fn stats(reply: Reply) -> Result<Vec<Stat>> {
    match reply {
        Reply::Stats(stats) => Ok(stats),
        other => Err(unexpected(other, "STATS")),
    }
}

/// RECONCILE's answer.
pub(crate) fn reconciled(reply: Reply) -> Result<Vec<Drift>> {
    match reply {
        Reply::Reconciled(drifts) => Ok(drifts),
        other => Err(unexpected(other, "RECONCILE")),
    }
}

/// STOCK's answer.
pub(crate) fn stock(reply: Reply) -> Result<StockParts> {
    match reply {
        Reply::Stock(parts) => Ok(parts),
        other => Err(unexpected(other, "STOCK")),
    }
}

/// Turns a reply a typed method did not expect into its error: the server's
/// error status, or a protocol error for a reply of the wrong kind.
pub(crate) fn unexpected(reply: Reply, command: &str) -> Error {
    match reply {
        Reply::Error { status, message } => Error::server(status, message),
        other => Error::protocol(format!("unexpected {} reply to {command}", other.status())),
    }
}
