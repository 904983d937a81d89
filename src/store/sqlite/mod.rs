//! The embedded order store: goods and orders in one SQLite file.
//!
//! Durability is the point of this store, so the file runs in WAL mode with
//! `synchronous = FULL`: a commit has reached the disk before a client is
//! told "ok". Group commit (one transaction per batch) keeps that affordable.
//!
//! The tables are those of `schema.sql` next to this file, created when
//! missing; `rows` holds the columns, row mappers and the statements of a
//! batch write (whose algorithm is [`super::batch`]'s, shared with MySQL).
//! Every trait method is one [`SqliteStore::call`]: a body on the reader or
//! the writer connection, or in a write transaction.
//!
//! The file belongs to one server process at a time
//! ([`SqliteStore::open_exclusive`]): the catalog, the sold-out flags and
//! the stock in memory are that process's own, so a second server on the
//! same file would sell the same units again. `nodes` keeps the registry of
//! node ids ([`super::NodeRegistry`]).

use std::fs::{File, OpenOptions, TryLockError};
use std::path::Path;

use parking_lot::Mutex;
use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};
use seckill_proto::{NewGoods, OrderState, RequestId};

use self::rows::{
    from_sql, give_back_live, goods_by_id, goods_from_row, order_by_no, order_from_row, set_state,
    to_sql, Batch, GOODS_COLUMNS, ORDER_COLUMNS,
};
use super::batch;
use super::batch::per_goods;
use super::outage::Outage;
use super::{
    Epoch, GoodsId, GoodsRecord, KeptRequest, OrderNo, OrderRecord, OrderStore, Restocked,
    SaleChange, Settle, Settled, StoreError, UserId, Written, REQUEST_ID_TTL_MS,
};
use crate::clock::now_ms;

mod nodes;
mod rows;
#[cfg(test)]
mod tests;

/// The tables and indexes (`CREATE ... IF NOT EXISTS`), run at every open.
const SCHEMA: &str = include_str!("schema.sql");

/// Request ids pruned at most per batch write, so that one write stays
/// short however many fell due at once.
const PRUNE_REQUESTS: i64 = 1000;

pub struct SqliteStore {
    // Two connections: WAL lets a reader run beside the writer, so ORDER_STATUS
    // never waits behind a batch commit.
    writer: Mutex<Connection>,
    reader: Mutex<Connection>,
    outage: Outage,
    /// With [`open_exclusive`](SqliteStore::open_exclusive): the file's lock,
    /// held as long as the store (and so the process) lives. Last, so that
    /// it is let go after the connections are closed.
    _lock: Option<File>,
}

/// Where a call runs.
#[derive(Clone, Copy)]
enum Access {
    /// On the reader, beside any write.
    Read,
    /// On the writer, each statement committed on its own.
    Write,
    /// On the writer, in one transaction that holds the write lock from its
    /// start: every change of an order is serialized, so a state it read is
    /// the one its update applies to.
    Transaction,
}

/// Why a call's body failed.
pub(crate) enum Failure {
    /// SQLite could not do it: the store is unavailable.
    Sqlite(rusqlite::Error),
    /// The store's own answer (an unknown goods, a broken invariant), passed
    /// on as it is; a transaction is rolled back.
    Store(StoreError),
}

impl From<rusqlite::Error> for Failure {
    fn from(e: rusqlite::Error) -> Self {
        Failure::Sqlite(e)
    }
}

impl From<StoreError> for Failure {
    fn from(e: StoreError) -> Self {
        Failure::Store(e)
    }
}

impl Failure {
    fn into_store_error(self) -> StoreError {
        match self {
            Failure::Sqlite(e) => unavailable(e),
            Failure::Store(e) => e,
        }
    }
}

fn unavailable(e: rusqlite::Error) -> StoreError {
    StoreError::Unavailable(format!("sqlite: {e}"))
}

/// Columns that files made by an older server lack, with their definition in
/// `schema.sql` (CREATE TABLE IF NOT EXISTS leaves such a table as it is).
/// What fills an added column in on rows made before, if anything.
const ADDED_COLUMNS: &[(&str, &str, &str, Option<&str>)] = &[
    ("goods", "epoch", "INTEGER NOT NULL DEFAULT 0", None),
    (
        "goods",
        "orders_written",
        "INTEGER NOT NULL DEFAULT 0",
        None,
    ),
    ("goods", "sale_version", "INTEGER NOT NULL DEFAULT 0", None),
    ("goods", "buckets", "INTEGER NOT NULL DEFAULT 1", None),
    (
        "goods",
        "live_orders",
        "INTEGER NOT NULL DEFAULT 0",
        Some(
            "UPDATE goods SET live_orders = (SELECT COUNT(*) FROM orders
             WHERE orders.goods_id = goods.id AND orders.live_slot IS NOT NULL)",
        ),
    ),
];

fn add_missing_columns(conn: &Connection) -> rusqlite::Result<()> {
    for &(table, column, definition, fill) in ADDED_COLUMNS {
        let present: bool = conn.query_row(
            &format!("SELECT COUNT(*) > 0 FROM pragma_table_info('{table}') WHERE name = ?1"),
            [column],
            |r| r.get(0),
        )?;
        if !present {
            log::info!("sqlite: adding column {table}.{column}");
            conn.execute_batch(&format!(
                "ALTER TABLE {table} ADD COLUMN {column} {definition}"
            ))?;
            if let Some(fill) = fill {
                conn.execute_batch(fill)?;
            }
        }
    }
    Ok(())
}

/// Checks that `conn` is in WAL mode with `synchronous = FULL`: SQLite
/// keeps its old journal mode where WAL cannot be had (some network file
/// systems) without an error, and the store's durability rests on both.
fn durable(conn: &Connection) -> Result<(), StoreError> {
    let mode: String = conn
        .pragma_query_value(None, "journal_mode", |r| r.get(0))
        .map_err(unavailable)?;
    let synchronous: i64 = conn
        .pragma_query_value(None, "synchronous", |r| r.get(0))
        .map_err(unavailable)?;
    if !mode.eq_ignore_ascii_case("wal") || synchronous != 2 {
        return Err(StoreError::Unavailable(format!(
            "sqlite: journal_mode {mode} and synchronous {synchronous}, not wal and 2 (FULL): \
             the file system may not support WAL"
        )));
    }
    Ok(())
}

impl SqliteStore {
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let open = || -> rusqlite::Result<Connection> {
            let conn = Connection::open(path)?;
            conn.pragma_update(None, "journal_mode", "WAL")?;
            conn.pragma_update(None, "synchronous", "FULL")?;
            conn.pragma_update(None, "foreign_keys", "ON")?;
            conn.busy_timeout(std::time::Duration::from_secs(5))?;
            Ok(conn)
        };
        let writer = open().map_err(unavailable)?;
        durable(&writer)?;
        writer.execute_batch(SCHEMA).map_err(unavailable)?;
        add_missing_columns(&writer).map_err(unavailable)?;
        // A file made by an older server has tables without the lifecycle's
        // columns: say so at start, not on the first order.
        writer
            .execute_batch(&format!(
                "SELECT {GOODS_COLUMNS} FROM goods LIMIT 0; SELECT {ORDER_COLUMNS}, live_slot FROM orders LIMIT 0;"
            ))
            .map_err(|e| {
                StoreError::Unavailable(format!(
                    "sqlite: {} predates this server's schema ({e}); move it away",
                    path.display()
                ))
            })?;
        let reader = open().map_err(unavailable)?;
        Ok(SqliteStore {
            writer: Mutex::new(writer),
            reader: Mutex::new(reader),
            outage: Outage::new("sqlite order store"),
            _lock: None,
        })
    }

    /// [`open`](Self::open) for this process alone: takes an exclusive lock
    /// on the file first (`flock`, which the kernel lets go when the process
    /// dies, `kill -9` included, so a restart finds it free), and refuses a
    /// file another process holds. Only servers take it (SQLite's own locks
    /// are `fcntl` locks, apart from this one), so tools can still read the
    /// file. Every node id lease found in the file is then a dead process's,
    /// and ends now.
    pub fn open_exclusive(path: &Path) -> Result<Self, StoreError> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map_err(|e| StoreError::Unavailable(format!("sqlite: {}: {e}", path.display())))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                return Err(StoreError::Unavailable(format!(
                    "sqlite: {} is in use by another seckill server (it holds the file's lock); \
                     one server per data file: to run several servers on one store, use MySQL",
                    path.display()
                )))
            }
            Err(TryLockError::Error(e)) => {
                return Err(StoreError::Unavailable(format!(
                    "sqlite: locking {}: {e}",
                    path.display()
                )))
            }
        }
        let mut store = Self::open(path)?;
        store._lock = Some(file);
        store.call(Access::Write, |conn| {
            Ok(conn.execute("UPDATE nodes SET expires_ms = 0 WHERE holder <> 0", [])?)
        })?;
        Ok(store)
    }

    /// Runs `body` where `access` says and reports the result to the outage
    /// latch: only a failure to reach the database counts (not, say, an
    /// unknown goods).
    fn call<T>(
        &self,
        access: Access,
        body: impl FnOnce(&Connection) -> Result<T, Failure>,
    ) -> Result<T, StoreError> {
        let result = match access {
            Access::Read => body(&self.reader.lock()),
            Access::Write => body(&self.writer.lock()),
            Access::Transaction => self.transaction(body),
        }
        .map_err(Failure::into_store_error);
        match &result {
            Ok(_) => self.outage.ok(),
            Err(e @ StoreError::Unavailable(_)) => self.outage.failed(e),
            Err(_) => {}
        }
        result
    }

    /// Runs `body` in a write transaction: commits its `Ok`, rolls back its
    /// `Err`. A COMMIT that fails on the way to the disk may still be found
    /// in the WAL after a crash: its outcome is not known.
    fn transaction<T>(
        &self,
        body: impl FnOnce(&Connection) -> Result<T, Failure>,
    ) -> Result<T, Failure> {
        let mut conn = self.writer.lock();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let result = body(&tx)?;
        tx.commit()
            .map_err(|e| StoreError::Indeterminate(format!("sqlite commit: {e}")))?;
        Ok(result)
    }

    /// PAY and CANCEL. `None`: no order of that number is this user's.
    fn settle(
        &self,
        user: UserId,
        order_no: OrderNo,
        how: Settle,
    ) -> Result<Option<Settled>, StoreError> {
        self.call(Access::Transaction, |tx| {
            let order = order_by_no(tx, order_no)?;
            let settled = how.run(user, order, |to| {
                set_state(tx, order_no, to)?;
                Ok::<_, rusqlite::Error>(())
            })?;
            if let Some(s) = settled.as_ref().filter(|s| s.cancelled_now) {
                give_back_live(tx, s.order.goods_id, 1)?;
            }
            Ok(settled)
        })
    }
}

impl OrderStore for SqliteStore {
    fn goods(&self) -> Result<Vec<GoodsRecord>, StoreError> {
        self.call(Access::Read, |conn| {
            let sql = format!("SELECT {GOODS_COLUMNS} FROM goods ORDER BY id");
            let mut stmt = conn.prepare(&sql)?;
            let rows = stmt.query_map([], goods_from_row)?;
            Ok(rows.collect::<rusqlite::Result<_>>()?)
        })
    }

    fn find_goods(&self, goods: GoodsId) -> Result<Option<GoodsRecord>, StoreError> {
        self.call(Access::Read, |conn| match goods_by_id(conn, goods) {
            Ok(found) => Ok(Some(found)),
            Err(Failure::Store(StoreError::UnknownGoods(_))) => Ok(None),
            Err(e) => Err(e),
        })
    }

    fn add_goods(
        &self,
        goods: &NewGoods,
        request_id: Option<RequestId>,
    ) -> Result<GoodsRecord, StoreError> {
        // One transaction, as on MySQL: no goods without its request id.
        self.call(Access::Transaction, |conn| {
            conn.execute(
                "INSERT INTO goods (name, price_cents, total, start_ms, end_ms, per_user_limit,
                     pay_window_ms, token_required, created_ms, updated_ms, buckets)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?9, ?10)",
                params![
                    goods.name,
                    to_sql(goods.price_cents),
                    goods.stock,
                    to_sql(goods.start_ms),
                    to_sql(goods.end_ms),
                    goods.rules.per_user_limit,
                    to_sql(goods.rules.pay_window_ms),
                    goods.rules.token_required,
                    to_sql(now_ms()),
                    goods.buckets
                ],
            )?;
            let id = from_sql(conn.last_insert_rowid());
            if let Some(request_id) = request_id {
                conn.execute(
                    "INSERT INTO goods_requests (request_id, goods_id) VALUES (?1, ?2)",
                    params![request_id.to_bytes().to_vec(), to_sql(id)],
                )?;
            }
            goods_by_id(conn, id)
        })
    }

    fn added_by(&self, request_id: RequestId) -> Result<Option<GoodsRecord>, StoreError> {
        self.call(Access::Read, |conn| {
            let goods: Option<i64> = conn
                .query_row(
                    "SELECT goods_id FROM goods_requests WHERE request_id = ?1",
                    [request_id.to_bytes().to_vec()],
                    |row| row.get(0),
                )
                .optional()?;
            match goods {
                Some(id) => goods_by_id(conn, from_sql(id)).map(Some),
                None => Ok(None),
            }
        })
    }

    fn restock(&self, goods: GoodsId, amount: u32) -> Result<Restocked, StoreError> {
        // One transaction with the read back: a read failing after the
        // UPDATE committed would report `busy` for a restock made, and its
        // retry would add the units twice.
        self.call(Access::Transaction, |conn| {
            let changed = conn.execute(
                "UPDATE goods SET total = total + ?1, updated_ms = ?2
                 WHERE id = ?3 AND total + ?1 <= 4294967295",
                params![amount, to_sql(now_ms()), to_sql(goods)],
            )?;
            // An unknown goods is an error here.
            let record = goods_by_id(conn, goods)?;
            Ok(match changed {
                0 => Restocked::Refused {
                    total: record.total,
                },
                _ => Restocked::Raised(record),
            })
        })
    }

    fn save_sale(&self, goods: GoodsId, change: SaleChange) -> Result<GoodsRecord, StoreError> {
        // Each control changes only its own fields, as on MySQL.
        self.call(Access::Write, |conn| {
            let now = to_sql(now_ms());
            let changed = match change {
                SaleChange::Pause | SaleChange::Resume => conn.execute(
                    "UPDATE goods SET paused = ?1, updated_ms = ?2,
                     sale_version = sale_version + 1 WHERE id = ?3",
                    params![change == SaleChange::Pause, now, to_sql(goods)],
                )?,
                // The smaller as unsigned numbers: a u64 past i64::MAX is
                // stored negative (rows.rs), and the clock never is.
                SaleChange::End { now_ms } => conn.execute(
                    "UPDATE goods SET
                     start_ms = CASE WHEN start_ms BETWEEN 0 AND ?1 THEN start_ms ELSE ?1 END,
                     end_ms = CASE WHEN end_ms BETWEEN 0 AND ?1 THEN end_ms ELSE ?1 END,
                     updated_ms = ?2, sale_version = sale_version + 1 WHERE id = ?3",
                    params![to_sql(now_ms), now, to_sql(goods)],
                )?,
                SaleChange::Window { start_ms, end_ms } => conn.execute(
                    "UPDATE goods SET start_ms = ?1, end_ms = ?2, updated_ms = ?3,
                     sale_version = sale_version + 1 WHERE id = ?4",
                    params![to_sql(start_ms), to_sql(end_ms), now, to_sql(goods)],
                )?,
            };
            if changed == 0 {
                return Err(StoreError::UnknownGoods(goods).into());
            }
            goods_by_id(conn, goods)
        })
    }

    fn commit_orders(
        &self,
        orders: &[OrderRecord],
        epochs: &[Epoch],
    ) -> Result<Vec<Written>, StoreError> {
        self.commit_requested_orders(orders, epochs, &[])
    }

    /// The ids of the orders stored, in the same transaction; those due are
    /// pruned with them, a batch at a time.
    fn commit_requested_orders(
        &self,
        orders: &[OrderRecord],
        epochs: &[Epoch],
        requests: &[Option<RequestId>],
    ) -> Result<Vec<Written>, StoreError> {
        self.call(Access::Transaction, |tx| {
            let written = batch::write(&mut Batch(tx), orders, epochs)?;
            let now = now_ms();
            let forget_at = to_sql(now.saturating_add(REQUEST_ID_TTL_MS));
            let mut keep = tx.prepare_cached(
                "INSERT OR REPLACE INTO buy_requests
                 (request_id, goods_id, user_id, order_no, forget_at_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
            )?;
            for ((order, written), id) in orders.iter().zip(&written).zip(requests) {
                if let (Written::Stored, Some(id)) = (written, id) {
                    keep.execute(params![
                        id.to_bytes().to_vec(),
                        to_sql(order.goods_id),
                        to_sql(order.user_id),
                        to_sql(order.order_no),
                        forget_at
                    ])?;
                }
            }
            tx.prepare_cached(
                "DELETE FROM buy_requests WHERE rowid IN
                 (SELECT rowid FROM buy_requests WHERE forget_at_ms <= ?1 LIMIT ?2)",
            )?
            .execute(params![to_sql(now), PRUNE_REQUESTS])?;
            Ok(written)
        })
    }

    fn kept_requests(&self, goods: GoodsId, now_ms: u64) -> Result<Vec<KeptRequest>, StoreError> {
        self.call(Access::Read, |conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT request_id, user_id, order_no, forget_at_ms FROM buy_requests
                 WHERE goods_id = ?1 AND forget_at_ms > ?2",
            )?;
            let rows = stmt.query_map(params![to_sql(goods), to_sql(now_ms)], |r| {
                Ok((
                    r.get::<_, Vec<u8>>(0)?,
                    from_sql(r.get(1)?),
                    from_sql(r.get(2)?),
                    from_sql(r.get(3)?),
                ))
            })?;
            let mut kept = Vec::new();
            for row in rows {
                let (id, user, order_no, forget_at_ms) = row?;
                // A row not written here (a damaged file) is skipped: the
                // id is then only forgotten early.
                let Some(request_id) = <[u8; 16]>::try_from(id.as_slice())
                    .ok()
                    .and_then(RequestId::from_bytes)
                else {
                    continue;
                };
                kept.push(KeptRequest {
                    request_id,
                    user,
                    order_no,
                    forget_at_ms,
                });
            }
            Ok(kept)
        })
    }

    fn next_epoch(&self, goods: GoodsId, above: Epoch) -> Result<Epoch, StoreError> {
        self.call(Access::Transaction, |tx| {
            tx.execute(
                "UPDATE goods SET epoch = MAX(epoch, ?1) + 1 WHERE id = ?2",
                params![to_sql(above), to_sql(goods)],
            )?;
            let epoch: Option<i64> = tx
                .query_row(
                    "SELECT epoch FROM goods WHERE id = ?1",
                    [to_sql(goods)],
                    |r| r.get(0),
                )
                .optional()?;
            Ok(from_sql(epoch.ok_or(StoreError::UnknownGoods(goods))?))
        })
    }

    fn live_holders(&self, goods: GoodsId) -> Result<Vec<(UserId, OrderNo)>, StoreError> {
        self.call(Access::Read, |conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT user_id, order_no FROM orders WHERE goods_id = ?1 AND live_slot IS NOT NULL",
            )?;
            let rows = stmt.query_map([to_sql(goods)], |r| {
                Ok((from_sql(r.get(0)?), from_sql(r.get(1)?)))
            })?;
            Ok(rows.collect::<rusqlite::Result<_>>()?)
        })
    }

    /// In one write transaction: SQLite's one writer writes no order
    /// meanwhile.
    fn recount_live(&self, goods: GoodsId) -> Result<Option<(u64, u64)>, StoreError> {
        self.call(Access::Transaction, |tx| {
            let was: Option<i64> = tx
                .query_row(
                    "SELECT live_orders FROM goods WHERE id = ?1",
                    [to_sql(goods)],
                    |r| r.get(0),
                )
                .optional()?;
            let Some(was) = was else {
                return Ok(None);
            };
            let live: i64 = tx.query_row(
                "SELECT COUNT(*) FROM orders WHERE goods_id = ?1 AND live_slot IS NOT NULL",
                [to_sql(goods)],
                |r| r.get(0),
            )?;
            if live == was {
                return Ok(None);
            }
            tx.execute(
                "UPDATE goods SET live_orders = ?1 WHERE id = ?2",
                params![live, to_sql(goods)],
            )?;
            Ok(Some((from_sql(was), from_sql(live))))
        })
    }

    fn find_order(&self, user: UserId, goods: GoodsId) -> Result<Option<OrderRecord>, StoreError> {
        self.call(Access::Read, |conn| {
            let mut stmt = conn.prepare_cached(&format!(
                "SELECT {ORDER_COLUMNS} FROM orders
                 WHERE user_id = ?1 AND goods_id = ?2 AND live_slot IS NOT NULL
                 ORDER BY live_slot LIMIT 1"
            ))?;
            let found = stmt.query_row([to_sql(user), to_sql(goods)], order_from_row);
            Ok(found.optional()?)
        })
    }

    fn orders_of(&self, user: UserId, max: usize) -> Result<Vec<OrderRecord>, StoreError> {
        self.call(Access::Read, |conn| {
            let mut stmt = conn.prepare_cached(&format!(
                "SELECT {ORDER_COLUMNS} FROM orders WHERE user_id = ?1
                 ORDER BY created_ms DESC, order_no DESC LIMIT ?2"
            ))?;
            let rows = stmt.query_map(params![to_sql(user), max as i64], order_from_row)?;
            Ok(rows.collect::<rusqlite::Result<_>>()?)
        })
    }

    fn stored_states(
        &self,
        order_nos: &[OrderNo],
    ) -> Result<Vec<(OrderNo, OrderState)>, StoreError> {
        self.call(Access::Read, |conn| {
            let mut found = Vec::new();
            for &n in order_nos {
                if let Some(order) = order_by_no(conn, n)? {
                    found.push((n, order.state));
                }
            }
            Ok(found)
        })
    }

    fn pay(
        &self,
        user: UserId,
        order_no: OrderNo,
        now_ms: u64,
    ) -> Result<Option<Settled>, StoreError> {
        self.settle(user, order_no, Settle::Pay { now_ms })
    }

    fn cancel(&self, user: UserId, order_no: OrderNo) -> Result<Option<Settled>, StoreError> {
        self.settle(user, order_no, Settle::Cancel)
    }

    fn expire_due(&self, now_ms: u64, max: usize) -> Result<Vec<OrderRecord>, StoreError> {
        self.call(Access::Transaction, |tx| {
            let due: Vec<OrderRecord> = tx
                .prepare_cached(&format!(
                    "SELECT {ORDER_COLUMNS} FROM orders
                     WHERE state = 0 AND pay_by_ms BETWEEN 0 AND ?1
                     ORDER BY pay_by_ms LIMIT ?2"
                ))?
                .query_map(params![to_sql(now_ms), max as i64], order_from_row)?
                .collect::<rusqlite::Result<_>>()?;
            let mut expired = Vec::with_capacity(due.len());
            for mut o in due {
                set_state(tx, o.order_no, OrderState::Cancelled)?;
                o.state = OrderState::Cancelled;
                expired.push(o);
            }
            for (goods, n) in per_goods(&expired) {
                give_back_live(tx, goods, n)?;
            }
            Ok(expired)
        })
    }
}
