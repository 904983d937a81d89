//! The log of admin actions: every admin command that changes the sale is
//! logged at info with the address it came from and what it did (or why it
//! failed), so that an operator can tell who added, restocked, paused or
//! reconciled what during a sale. Never the token: HELLO carries it, and
//! HELLO is no admin job; nothing here reads a connection's credentials.
//!
//! Goods names come from the client: they are logged with `{:?}`, so that a
//! name with a line break cannot forge a log line.

use std::fmt;
use std::net::SocketAddr;

use log::{debug, info, Level};
use seckill_proto::{Drift, Reply, Request, SaleAction, ALL_GOODS};

use crate::sale::describe;

/// Who sent an admin command, as logged.
#[derive(Debug, Clone, Copy)]
pub struct Peer(pub Option<SocketAddr>);

impl fmt::Display for Peer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(addr) => write!(f, "{addr}"),
            None => f.write_str("an unknown peer"),
        }
    }
}

/// Logs what `request`, answered `reply`, did.
pub fn log(peer: Peer, request: &Request, reply: &Reply) {
    let Some((level, line)) = line(peer, request, reply) else {
        return;
    };
    match level {
        Level::Info => info!("{line}"),
        _ => debug!("{line}"),
    }
}

/// The log line for an admin command, and its level: info for what changes
/// the sale, debug for what only reads it.
pub fn line(peer: Peer, request: &Request, reply: &Reply) -> Option<(Level, String)> {
    let what = match (request, reply) {
        (Request::AddGoods { .. }, Reply::GoodsAdded(added)) => format!(
            "added goods {} {:?} with {} units at {} cents, sale {}..{} ms",
            added.id, added.name, added.total, added.price_cents, added.start_ms, added.end_ms
        ),
        (Request::AddGoods { goods: new, .. }, _) => {
            format!("adding goods {:?} with {} units", new.name, new.stock)
        }
        (Request::Restock { goods_id, amount }, Reply::Restocked(goods)) => format!(
            "restocked goods {goods_id} by {amount}: {} units in all, {} left",
            goods.total, goods.remaining
        ),
        (Request::Restock { goods_id, amount }, _) => {
            format!("restocking goods {goods_id} by {amount}")
        }
        (Request::SaleControl { goods_id, action }, _) => {
            format!("sale of goods {goods_id}: {}", action_text(action))
        }
        (Request::Reconcile { goods_id }, Reply::Reconciled(drifts)) => {
            format!("reconciled {}: {}", which(*goods_id), drifts_text(drifts))
        }
        (Request::Reconcile { goods_id }, _) => format!("reconciling {}", which(*goods_id)),
        (Request::Stock { goods_id }, _) => {
            return Some((
                Level::Debug,
                format!("admin {peer}: stock of goods {goods_id} read"),
            ));
        }
        _ => return None,
    };
    let line = match reply {
        Reply::Error { status, message } => {
            format!(
                "admin {peer}: {what} failed: {}: {message:?}",
                status.as_str()
            )
        }
        _ => format!("admin {peer}: {what}"),
    };
    Some((Level::Info, line))
}

fn action_text(action: &SaleAction) -> String {
    match action {
        SaleAction::Pause => "paused".into(),
        SaleAction::Resume => "resumed".into(),
        SaleAction::End => "ended".into(),
        SaleAction::Window { start_ms, end_ms } => {
            format!("window moved to {start_ms}..{end_ms} ms")
        }
    }
}

fn which(goods_id: u64) -> String {
    if goods_id == ALL_GOODS {
        "every goods".into()
    } else {
        format!("goods {goods_id}")
    }
}

fn drifts_text(drifts: &[Drift]) -> String {
    let repaired: Vec<String> = drifts
        .iter()
        .filter(|d| !d.is_in_step())
        .map(describe)
        .collect();
    let in_step = drifts.len() - repaired.len();
    if repaired.is_empty() {
        format!("{in_step} in step, none repaired")
    } else {
        format!(
            "{in_step} in step, {} repaired ({})",
            repaired.len(),
            repaired.join("; ")
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use seckill_proto::{NewGoods, SaleRules, Status};

    fn peer() -> Peer {
        Peer(Some("10.0.0.7:51234".parse().expect("an address")))
    }

    #[test]
    fn a_failed_action_is_logged_with_its_peer_and_why() {
        let request = Request::Restock {
            goods_id: 3,
            amount: 50,
        };
        let reply = Reply::error(Status::BadRequest, "total stock would overflow");
        let (level, line) = line(peer(), &request, &reply).expect("logged");
        assert_eq!(level, Level::Info);
        assert_eq!(
            line,
            "admin 10.0.0.7:51234: restocking goods 3 by 50 failed: bad_request: \"total stock would overflow\""
        );
    }

    #[test]
    fn a_goods_name_cannot_forge_a_log_line() {
        let request = Request::AddGoods {
            goods: NewGoods {
                name: "Lamp\n[INFO] admin: nothing happened".into(),
                price_cents: 500,
                stock: 10,
                start_ms: 0,
                end_ms: 1,
                rules: SaleRules::default(),
                buckets: 1,
            },
            request_id: None,
        };
        let reply = Reply::error(Status::Busy, "order store down");
        let (_, line) = line(peer(), &request, &reply).expect("logged");
        assert!(!line.contains('\n'), "{line}");
        assert!(line.contains(r#""Lamp\n[INFO]"#), "{line}");
    }

    #[test]
    fn only_admin_commands_are_logged_and_reads_at_debug() {
        let stock = line(peer(), &Request::Stock { goods_id: 1 }, &Reply::Pong);
        assert_eq!(stock.map(|(level, _)| level), Some(Level::Debug));
        assert!(line(peer(), &Request::Ping, &Reply::Pong).is_none());
    }
}
