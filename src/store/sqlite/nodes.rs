//! The registry of node ids on SQLite: the `nodes` table of `schema.sql`.
//!
//! Each call is one write transaction, which holds the file's write lock
//! from its start, so a claim's choice ([`choose`]) is made on rows nobody
//! else changes before it commits. Lease ends are compared with SQLite's
//! `now`: the clock of the one host every process on the file runs on.

use std::time::Duration;

use rusqlite::{params, OptionalExtension};

use super::rows::{from_sql, to_sql};
use super::{Access, SqliteStore};
use crate::clock::now_ms;
use crate::store::nodes::{
    capped, choose, renewed, Choice, Claimed, NodeClaim, NodeRegistry, NodeRow,
};
use crate::store::StoreError;

/// Now, in Unix milliseconds, by SQLite's clock.
const NOW_MS: &str = "CAST((julianday('now') - 2440587.5) * 86400000.0 AS INTEGER)";

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

impl NodeRegistry for SqliteStore {
    fn claim_node(&self, claim: &NodeClaim) -> Result<Claimed, StoreError> {
        // The database's clock is this host's: the cap binds only a limit
        // asked for too far ahead (as in the tests of both stores).
        let claim = &NodeClaim {
            until_ms: capped(claim.until_ms, now_ms(), claim.lease),
            ..*claim
        };
        self.call(Access::Transaction, |tx| {
            let rows: Vec<NodeRow> = tx
                .prepare_cached(&format!(
                    "SELECT node_id, holder, holder_info, MAX(expires_ms - {NOW_MS}, 0),
                            numbers_until_ms
                     FROM nodes ORDER BY node_id"
                ))?
                .query_map([], |r| {
                    Ok(NodeRow {
                        node_id: r.get(0)?,
                        holder: from_sql(r.get(1)?),
                        info: r.get(2)?,
                        left_ms: from_sql(r.get(3)?),
                        until_ms: from_sql(r.get(4)?),
                    })
                })?
                .collect::<rusqlite::Result<_>>()?;
            let lease = match choose(&rows, claim) {
                Choice::Take { lease, .. } => lease,
                Choice::Refuse(refusal) => return Ok(refusal),
            };
            tx.execute(
                &format!(
                    "INSERT OR REPLACE INTO nodes
                         (node_id, holder, holder_info, expires_ms, numbers_until_ms)
                     VALUES (?1, ?2, ?3, {NOW_MS} + ?4, ?5)"
                ),
                params![
                    lease.node_id,
                    to_sql(claim.holder),
                    claim.info,
                    millis(claim.lease),
                    to_sql(lease.until_ms)
                ],
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
        self.call(Access::Transaction, |tx| {
            let found: Option<(i64, i64)> = tx
                .query_row(
                    "SELECT holder, numbers_until_ms FROM nodes WHERE node_id = ?1",
                    [node_id],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .optional()?;
            let Some((_, recorded)) = found.filter(|&(h, _)| from_sql(h) == holder) else {
                return Ok(None);
            };
            // The database's clock is this host's.
            let granted = renewed(from_sql(recorded), until_ms, now_ms(), lease);
            tx.execute(
                &format!(
                    "UPDATE nodes SET expires_ms = {NOW_MS} + ?1,
                         numbers_until_ms = MAX(numbers_until_ms, ?2)
                     WHERE node_id = ?3"
                ),
                params![millis(lease), to_sql(granted), node_id],
            )?;
            Ok(Some(granted))
        })
    }

    fn release_node(&self, node_id: u16, holder: u64, last_ms: u64) -> Result<(), StoreError> {
        self.call(Access::Write, |conn| {
            conn.execute(
                &format!(
                    "UPDATE nodes SET holder = 0, expires_ms = {NOW_MS},
                         numbers_until_ms = MIN(numbers_until_ms, ?1)
                     WHERE node_id = ?2 AND holder = ?3"
                ),
                params![to_sql(last_ms), node_id, to_sql(holder)],
            )?;
            Ok(())
        })
    }
}
