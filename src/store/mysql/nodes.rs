//! The registry of node ids on MySQL: the `nodes` table of `schema.sql`.
//!
//! A claim reads every row with `FOR UPDATE` in one transaction, so two
//! servers claiming at once take turns (queued on the lock of row 0, which
//! is made first; a deadlock victim would run again: [`Call::LEASE`]), and
//! the choice ([`choose`]) is made on rows nobody else can change
//! before the commit. Lease ends are compared with `UTC_TIMESTAMP(6)`, the
//! database's clock, whatever the session's time zone.

use std::time::Duration;

use ::mysql::prelude::Queryable;

use super::calls::Call;
use super::rows::db_clock_ms;
use super::MysqlStore;
use crate::store::nodes::{
    capped, choose, renewed, Choice, Claimed, NodeClaim, NodeRegistry, NodeRow,
};
use crate::store::StoreError;

/// The columns this store reads and writes, for the schema check.
pub(super) const NODE_COLUMNS: &str = "node_id, holder, holder_info, expires_at, numbers_until_ms";

/// `holder_info` is a VARCHAR(200): strict mode refuses a longer value.
const INFO_CHARS: usize = 200;

/// The database's clock, Unix ms; no cap at all should it say nothing.
fn db_now_ms(conn: &mut ::mysql::PooledConn) -> ::mysql::Result<u64> {
    Ok(db_clock_ms(conn)?.unwrap_or(u64::MAX))
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

impl NodeRegistry for MysqlStore {
    fn claim_node(&self, claim: &NodeClaim) -> Result<Claimed, StoreError> {
        let info: String = claim.info.chars().take(INFO_CHARS).collect();
        // Row 0, free, if the table has no row yet: every claim's locking
        // read then starts on a row that exists, and claims queue on its
        // lock. On an empty table they would all share the gap lock and
        // deadlock inserting into it.
        self.link.call("node ids", Call::IDEMPOTENT, |conn| {
            Ok(conn.query_drop(
                "INSERT INTO nodes (node_id, holder, holder_info, expires_at, numbers_until_ms)
                 VALUES (0, 0, '', UTC_TIMESTAMP(6), 0)
                 ON DUPLICATE KEY UPDATE node_id = node_id",
            )?)
        })?;
        self.link.call("claim node id", Call::LEASE, |conn| {
            let claim = &NodeClaim {
                until_ms: capped(claim.until_ms, db_now_ms(conn)?, claim.lease),
                ..*claim
            };
            let rows: Vec<(u16, u64, String, i64, u64)> = conn.query(
                "SELECT node_id, holder, holder_info,
                        TIMESTAMPDIFF(MICROSECOND, UTC_TIMESTAMP(6), expires_at),
                        numbers_until_ms
                 FROM nodes ORDER BY node_id FOR UPDATE",
            )?;
            let rows: Vec<NodeRow> = rows
                .into_iter()
                .map(|(node_id, holder, info, left_us, until_ms)| NodeRow {
                    node_id,
                    holder,
                    info,
                    // A lease with any time left is live.
                    left_ms: left_us.max(0).unsigned_abs().div_ceil(1000),
                    until_ms,
                })
                .collect();
            let (lease, exists) = match choose(&rows, claim) {
                Choice::Take { lease, exists } => (lease, exists),
                Choice::Refuse(refusal) => return Ok(refusal),
            };
            let sql = if exists {
                "UPDATE nodes SET holder = ?, holder_info = ?,
                     expires_at = UTC_TIMESTAMP(6) + INTERVAL ? MICROSECOND,
                     numbers_until_ms = ?
                 WHERE node_id = ?"
            } else {
                "INSERT INTO nodes (holder, holder_info, expires_at, numbers_until_ms, node_id)
                 VALUES (?, ?, UTC_TIMESTAMP(6) + INTERVAL ? MICROSECOND, ?, ?)"
            };
            conn.exec_drop(
                sql,
                (
                    claim.holder,
                    &info,
                    micros(claim.lease),
                    lease.until_ms,
                    lease.node_id,
                ),
            )?;
            Ok(Claimed::Leased(lease))
        })
    }

    fn renew_node(
        &self,
        node_id: u16,
        holder: u64,
        lease: Duration,
        until_ms: u64,
    ) -> Result<Option<u64>, StoreError> {
        self.link.call("renew node id", Call::LEASE, |conn| {
            let found: Option<(u64, u64)> = conn.exec_first(
                "SELECT holder, numbers_until_ms FROM nodes WHERE node_id = ? FOR UPDATE",
                (node_id,),
            )?;
            let Some((_, recorded)) = found.filter(|&(h, _)| h == holder) else {
                return Ok(None);
            };
            let granted = renewed(recorded, until_ms, db_now_ms(conn)?, lease);
            conn.exec_drop(
                "UPDATE nodes SET expires_at = UTC_TIMESTAMP(6) + INTERVAL ? MICROSECOND,
                     numbers_until_ms = GREATEST(numbers_until_ms, ?)
                 WHERE node_id = ?",
                (micros(lease), granted, node_id),
            )?;
            Ok(Some(granted))
        })
    }

    fn release_node(&self, node_id: u16, holder: u64, last_ms: u64) -> Result<(), StoreError> {
        // One statement: setting the same values twice is harmless.
        self.link.call("release node id", Call::IDEMPOTENT, |conn| {
            Ok(conn.exec_drop(
                "UPDATE nodes SET holder = 0, expires_at = UTC_TIMESTAMP(6),
                     numbers_until_ms = LEAST(numbers_until_ms, ?)
                 WHERE node_id = ? AND holder = ?",
                (last_ms, node_id, holder),
            )?)
        })
    }
}
