//! The BUYs' client request ids, kept with their orders for a stock store
//! that forgets them at a restart (`buy_requests` in `schema.sql`): the
//! MySQL side of `OrderStore::commit_requested_orders` and `kept_requests`.

use ::mysql::prelude::Queryable;
use ::mysql::{Params, PooledConn, Value};
use seckill_proto::RequestId;

use super::calls::Failure;
use super::rows::ROWS_PER_INSERT;
use crate::store::{GoodsId, KeptRequest, OrderRecord, Written, REQUEST_ID_TTL_MS};

/// The columns of a row of `buy_requests` written.
const COLUMNS: usize = 5;

/// Rows pruned at most per batch of orders: more due rows than that wait for
/// the next batches, so that no one commit carries a long delete.
const PRUNE_AT_MOST: u32 = 1000;

/// In the orders' transaction: the ids of the orders stored, in multi-row
/// statements of at most [`ROWS_PER_INSERT`] (MySQL takes at most 65,535
/// placeholders a statement, and a batch has no such bound; an id written
/// again, by a batch run again after a deadlock, overwrites itself), then
/// at most [`PRUNE_AT_MOST`] ids past their time.
pub(super) fn keep(
    conn: &mut PooledConn,
    orders: &[OrderRecord],
    written: &[Written],
    requests: &[Option<RequestId>],
    now_ms: u64,
) -> Result<(), Failure> {
    let forget_at = now_ms.saturating_add(REQUEST_ID_TTL_MS);
    let mut values: Vec<Value> = Vec::new();
    for ((order, written), id) in orders.iter().zip(written).zip(requests) {
        if let (Written::Stored, Some(id)) = (written, id) {
            values.extend([
                Value::from(order.goods_id),
                Value::from(id.to_bytes().to_vec()),
                Value::from(order.user_id),
                Value::from(order.order_no),
                Value::from(forget_at),
            ]);
        }
    }
    for chunk in values.chunks(COLUMNS * ROWS_PER_INSERT) {
        let rows = vec!["(?, ?, ?, ?, ?)"; chunk.len() / COLUMNS].join(", ");
        conn.exec_drop(
            format!(
                "INSERT INTO buy_requests (goods_id, request_id, user_id, order_no, forget_at_ms) \
                 VALUES {rows} ON DUPLICATE KEY UPDATE user_id = VALUES(user_id), \
                 order_no = VALUES(order_no), forget_at_ms = VALUES(forget_at_ms)"
            ),
            Params::Positional(chunk.to_vec()),
        )?;
    }
    conn.exec_drop(
        "DELETE FROM buy_requests WHERE forget_at_ms <= ? ORDER BY forget_at_ms LIMIT ?",
        (now_ms, PRUNE_AT_MOST),
    )?;
    Ok(())
}

/// The ids kept of a goods not yet to be forgotten at `now_ms`. A row that
/// is no request id (written by hand) is skipped: that id is then only
/// forgotten early.
pub(super) fn kept(
    conn: &mut PooledConn,
    goods: GoodsId,
    now_ms: u64,
) -> Result<Vec<KeptRequest>, Failure> {
    let rows: Vec<(Vec<u8>, u64, u64, u64)> = conn.exec(
        "SELECT request_id, user_id, order_no, forget_at_ms FROM buy_requests \
         WHERE goods_id = ? AND forget_at_ms > ?",
        (goods, now_ms),
    )?;
    Ok(rows
        .into_iter()
        .filter_map(|(id, user, order_no, forget_at_ms)| {
            let request_id = <[u8; 16]>::try_from(id.as_slice())
                .ok()
                .and_then(RequestId::from_bytes)?;
            Some(KeptRequest {
                request_id,
                user,
                order_no,
                forget_at_ms,
            })
        })
        .collect())
}
