//! The production order store: MySQL or MariaDB.
//!
//! The tables are those of `schema.sql` at the repository root, the one copy
//! of the DDL: [`MysqlStore::open`] creates the database named in its URL and
//! runs the file's CREATE TABLE statements when the tables are missing. The
//! database itself guards "one live order per user per goods" with a unique
//! key on `(goods_id, user_id, live_slot)`.
//!
//! A batch of orders is one transaction of multi-row INSERTs, 1000 rows per
//! statement. A row that hits a unique key is turned into a no-op update
//! (`ON DUPLICATE KEY UPDATE id = id`) rather than failing the batch; the
//! rare chunk where that happened is then looked at row by row. `INSERT
//! IGNORE` would do the same but also turns data errors into warnings, so a
//! bad row could vanish silently; a no-op update fails on them instead.
//!
//! Connections come from a `mysql::Pool`, which opens new ones as needed.
//! Every connect, read and write has a timeout, so a dead MySQL costs a
//! worker a few seconds, never forever. A connection whose link failed
//! mid-exchange may still receive the reply it timed out on and would answer
//! the next query with it, so it is never handed out again: the whole pool
//! is replaced (the server most likely went away for all of them anyway),
//! and a call that is safe to run twice is tried once more on a new
//! connection.

use std::cell::Cell;
use std::time::Duration;

use ::mysql::consts::CapabilityFlags;
use ::mysql::prelude::Queryable;
use ::mysql::{DriverError, Error, Opts, OptsBuilder, Pool, PoolConstraints, PoolOpts, PooledConn};
use parking_lot::RwLock;
use seckill_proto::{NewGoods, OrderState, SaleRules};

use super::outage::Outage;
use super::{
    GoodsId, GoodsRecord, OrderNo, OrderRecord, OrderStore, Settle, Settled, StoreError, UserId,
    Written,
};

/// The DDL, kept in one place: the tables are created from this file.
const SCHEMA: &str = include_str!("../../schema.sql");

/// The database used when the URL names none (as in `schema.sql`).
const DEFAULT_DB: &str = "seckill";

/// How long to wait for a TCP connection, and for any read or write on it.
/// A URL's own `tcp_connect_timeout_ms`, `read_timeout` or `write_timeout`
/// wins.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
const IO_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a call waits for a connection when the pool is at its maximum.
const CHECKOUT_TIMEOUT: Duration = Duration::from_secs(5);
/// Connections: none opened ahead (the pool is replaced after a broken
/// link), at most this many (workers, the order writer, admin calls).
const MAX_CONNECTIONS: usize = 32;

/// Run on every new connection. Strict mode makes an out-of-range or too
/// long value an error, never a silent truncation, whatever the server's
/// default. UTC for the `created_at`/`updated_at` columns. A lock wait gives
/// up before the read timeout, so it fails as a clean server error and the
/// connection stays usable.
const SESSION_INIT: &str = "SET SESSION \
    sql_mode = 'STRICT_ALL_TABLES,NO_ZERO_IN_DATE,NO_ZERO_DATE,ERROR_FOR_DIVISION_BY_ZERO,NO_ENGINE_SUBSTITUTION', \
    time_zone = '+00:00', \
    innodb_lock_wait_timeout = 3";

/// Rows per INSERT statement: about 100 kB of SQL, far under any
/// `max_allowed_packet`.
const ROWS_PER_INSERT: usize = 1000;

/// Server errors that may pass (the request is answered `busy`); any other
/// server error is a bug or a damaged database. By code: too many
/// connections (1040, 1203, 1226), shutdown in progress (1053), out of
/// memory or resources (1037, 1038, 1041), storage engine errors and a full
/// disk or table (1021, 1030, 1114), connection aborted or killed (1152,
/// 1158-1161, 1927), error during commit or rollback (1180, 1181), lock wait
/// timeout (1205), deadlock (1213), read-only server (1290, 1836),
/// interrupted or timed out statement (1317, 1969, 3024), too many
/// transactions (1637), unknown or inaccessible database (1044, 1045, 1049),
/// closed for inactivity (4031).
const PASSING_SERVER_ERRORS: &[u16] = &[
    1021, 1030, 1037, 1038, 1040, 1041, 1044, 1045, 1049, 1053, 1114, 1152, 1158, 1159, 1160, 1161,
    1180, 1181, 1203, 1205, 1213, 1226, 1290, 1317, 1637, 1836, 1927, 1969, 3024, 4031,
];

/// Server errors that end the connection: shutdown in progress (1053),
/// connection aborted (1152), killed (1927), closed for inactivity (4031).
const CONNECTION_ENDED: &[u16] = &[1053, 1152, 1927, 4031];

/// "Deadlock found when trying to get lock": the transaction was rolled back.
const DEADLOCK: u16 = 1213;

/// How [`MysqlStore::call_retrying`] runs its call.
#[derive(Clone, Copy)]
enum Calls {
    /// Must not run twice ([`MysqlStore::call_once`]).
    Once,
    /// Safe to run twice ([`MysqlStore::call`]).
    Idempotent,
}

const GOODS_COLUMNS: &str =
    "id, name, price_cents, total, start_ms, end_ms, per_user_limit, pay_window_ms, token_required, state";

type GoodsRow = (u64, String, u64, u32, u64, u64, u8, u64, bool, u8);

const ORDER_COLUMNS: &str = "order_no, user_id, goods_id, state, created_ms, pay_by_ms";

type OrderRow = (u64, u64, u64, u8, u64, u64);

/// `goods.state` of a paused sale.
const PAUSED: u8 = 1;

pub struct MysqlStore {
    /// To build a new pool after a broken link.
    opts: Opts,
    /// The pool in use and its generation, so that of many calls failing
    /// on one dead pool only the first replaces it.
    pool: RwLock<(u64, Pool)>,
    outage: Outage,
}

/// Whether the link itself failed: the connection is gone, or may be out of
/// step with the server, and must not be used again.
fn broken(e: &Error) -> bool {
    match e {
        Error::IoError(_) | Error::CodecError(_) => true,
        Error::DriverError(d) => matches!(
            d,
            DriverError::PacketOutOfSync
                | DriverError::UnexpectedPacket
                | DriverError::PacketTooLarge
        ),
        Error::MySqlError(e) => CONNECTION_ENDED.contains(&e.code),
        _ => false,
    }
}

/// What a MySQL error means to the sale: the store is unavailable (the
/// link, the server's health, a lock conflict) or something is wrong with
/// the data or the code (a constraint, a value that does not convert).
fn store_error(what: &str, e: &Error) -> StoreError {
    let passing = match e {
        Error::MySqlError(e) => PASSING_SERVER_ERRORS.contains(&e.code),
        Error::FromValueError(_) | Error::FromRowError(_) => false,
        Error::DriverError(
            DriverError::MismatchedStmtParams(..)
            | DriverError::Params(_)
            | DriverError::MixedParams,
        ) => false,
        _ => true,
    };
    if passing {
        StoreError::Unavailable(format!("mysql {what}: {e}"))
    } else {
        StoreError::Inconsistent(format!("mysql {what}: {e}"))
    }
}

/// The CREATE TABLE statements of `schema.sql`, in order: everything but
/// comment lines, CREATE DATABASE and USE (the database is the URL's).
fn table_ddl(schema: &str) -> Vec<String> {
    let code: String = schema
        .lines()
        .filter(|l| !l.trim_start().starts_with("--"))
        .map(|l| format!("{l}\n"))
        .collect();
    code.split(';')
        .map(str::trim)
        .filter(|s| {
            let upper = s.to_ascii_uppercase();
            !s.is_empty() && !upper.starts_with("CREATE DATABASE") && !upper.starts_with("USE ")
        })
        .map(String::from)
        .collect()
}

/// A database name as a quoted identifier.
fn quote_ident(name: &str) -> String {
    format!("`{}`", name.replace('`', "``"))
}

fn goods_record(row: GoodsRow) -> GoodsRecord {
    let (id, name, price_cents, total, start_ms, end_ms, limit, window, token, state) = row;
    GoodsRecord {
        id,
        name,
        price_cents,
        total,
        start_ms,
        end_ms,
        rules: SaleRules {
            per_user_limit: limit,
            pay_window_ms: window,
            token_required: token,
        },
        paused: state == PAUSED,
    }
}

fn order_record(row: OrderRow) -> Result<OrderRecord, StoreError> {
    let (order_no, user_id, goods_id, state, created_ms, pay_by_ms) = row;
    let state = OrderState::from_u8(state).ok_or_else(|| {
        StoreError::Inconsistent(format!("mysql: order {order_no} has state {state}"))
    })?;
    Ok(OrderRecord {
        order_no,
        user_id,
        goods_id,
        state,
        created_ms,
        pay_by_ms,
    })
}

/// One multi-row INSERT of a chunk of orders. The values are all integers
/// formatted here, so the text protocol is safe, and saves preparing a
/// statement of up to 6000 placeholders.
fn insert_sql<'a>(chunk: impl Iterator<Item = &'a OrderRecord>) -> String {
    let mut sql = String::with_capacity(120 + ROWS_PER_INSERT * 110);
    sql.push_str(
        "INSERT INTO orders (order_no, user_id, goods_id, state, live_slot, created_ms, pay_by_ms) VALUES ",
    );
    for (i, o) in chunk.enumerate() {
        if i > 0 {
            sql.push(',');
        }
        // A cancelled order holds no slot, so it never blocks a re-buy.
        let slot = if o.state == OrderState::Cancelled {
            "NULL"
        } else {
            "1"
        };
        sql.push_str(&format!(
            "({},{},{},{},{slot},{},{})",
            o.order_no, o.user_id, o.goods_id, o.state as u8, o.created_ms, o.pay_by_ms
        ));
    }
    sql.push_str(" ON DUPLICATE KEY UPDATE id = id");
    sql
}

/// Writes one order into the first free slot of its user, or says which
/// order the user holds when every slot is taken. An order number already
/// stored is this order, written by an earlier try of the batch (whatever
/// became of it since); `None` if it belongs to someone else (order numbers
/// are unique by construction, so that is a bug). The locking reads see the
/// latest committed rows, not the transaction's snapshot, and lock the
/// user's slots until the commit.
fn place(conn: &mut PooledConn, o: &OrderRecord, limit: u8) -> ::mysql::Result<Option<Written>> {
    let owner: Option<(u64, u64)> = conn.exec_first(
        "SELECT user_id, goods_id FROM orders WHERE order_no = ? LOCK IN SHARE MODE",
        (o.order_no,),
    )?;
    if let Some(owner) = owner {
        return Ok((owner == (o.user_id, o.goods_id)).then_some(Written::Stored));
    }
    let live: Vec<(u64, u8)> = conn.exec(
        "SELECT order_no, live_slot FROM orders
         WHERE goods_id = ? AND user_id = ? AND live_slot IS NOT NULL
         ORDER BY live_slot FOR UPDATE",
        (o.goods_id, o.user_id),
    )?;
    let slot = match super::slot_for(o, &live, limit) {
        Ok(slot) => slot,
        Err(held) => return Ok(Some(Written::Duplicate(held))),
    };
    conn.exec_drop(
        "INSERT INTO orders (order_no, user_id, goods_id, state, live_slot, created_ms, pay_by_ms)
         VALUES (?, ?, ?, ?, ?, ?, ?)",
        (
            o.order_no,
            o.user_id,
            o.goods_id,
            o.state as u8,
            slot,
            o.created_ms,
            o.pay_by_ms,
        ),
    )?;
    Ok(Some(Written::Stored))
}

/// Writes a batch, in a transaction. `Err(order_no)` inside: that order
/// number is another order's.
fn write_batch(
    conn: &mut PooledConn,
    orders: &[OrderRecord],
) -> ::mysql::Result<Result<Vec<Written>, OrderNo>> {
    let limits = super::limits_of(orders, |goods| {
        // A goods that is gone leaves its orders to the foreign key.
        let limit: Option<u8> =
            conn.exec_first("SELECT per_user_limit FROM goods WHERE id = ?", (goods,))?;
        Ok::<_, Error>(limit.unwrap_or(1).max(1))
    })?;
    let mut written = vec![None; orders.len()];
    // Goods of one order per user (the usual flash sale): multi-row
    // INSERTs, each order in slot 1.
    let single: Vec<usize> = (0..orders.len())
        .filter(|&i| limits[&orders[i].goods_id] == 1)
        .collect();
    for chunk in single.chunks(ROWS_PER_INSERT) {
        conn.query_drop(insert_sql(chunk.iter().map(|&i| &orders[i])))?;
        // An inserted row counts 1, a no-op update 0 (CLIENT_FOUND_ROWS is
        // off, see `open`): fewer than the chunk means a row was refused,
        // and the chunk is looked at row by row below.
        if conn.affected_rows() == chunk.len() as u64 {
            chunk
                .iter()
                .for_each(|&i| written[i] = Some(Written::Stored));
        }
    }
    // The rest row by row: refused rows, and goods whose users may hold
    // several orders (each takes the first free slot).
    for (i, o) in orders.iter().enumerate() {
        if written[i].is_none() {
            match place(conn, o, limits[&o.goods_id])? {
                Some(w) => written[i] = Some(w),
                None => return Ok(Err(o.order_no)),
            }
        }
    }
    Ok(Ok(written.into_iter().flatten().collect()))
}

/// PAY and CANCEL, in a transaction: the order's row is locked, so an
/// expiry sweep or another server settling it waits, then sees the outcome.
fn settle(
    conn: &mut PooledConn,
    user: UserId,
    order_no: OrderNo,
    how: Settle,
) -> ::mysql::Result<Result<Option<Settled>, StoreError>> {
    let row: Option<OrderRow> = conn.exec_first(
        format!("SELECT {ORDER_COLUMNS} FROM orders WHERE order_no = ? FOR UPDATE"),
        (order_no,),
    )?;
    let order = match row.map(order_record).transpose() {
        Ok(Some(o)) if o.user_id == user => o,
        Ok(_) => return Ok(Ok(None)),
        Err(e) => return Ok(Err(e)),
    };
    let (settled, change) = how.apply(order);
    if let Some(to) = change {
        set_state(conn, order_no, to)?;
    }
    Ok(Ok(Some(settled)))
}

/// Moves a created order on; a cancelled one gives up its slot.
fn set_state(conn: &mut PooledConn, order_no: OrderNo, to: OrderState) -> ::mysql::Result<()> {
    conn.exec_drop(
        "UPDATE orders SET state = ?, live_slot = IF(? = 2, NULL, live_slot)
         WHERE order_no = ? AND state = 0",
        (to as u8, to as u8, order_no),
    )
}

fn goods_by_id(conn: &mut PooledConn, id: GoodsId) -> ::mysql::Result<Option<GoodsRecord>> {
    let row: Option<GoodsRow> = conn.exec_first(
        format!("SELECT {GOODS_COLUMNS} FROM goods WHERE id = ?"),
        (id,),
    )?;
    Ok(row.map(goods_record))
}

impl MysqlStore {
    /// Connects to `url` (`mysql://user:password@host:port/database`, the
    /// database defaulting to `seckill`), creates the database and its
    /// tables if they are missing, and checks that the tables have the
    /// columns this store uses.
    pub fn open(url: &str) -> Result<Self, StoreError> {
        let opts = Opts::from_url(url)
            .map_err(|e| StoreError::Unavailable(format!("mysql: bad url: {e}")))?;
        let db = opts.get_db_name().unwrap_or(DEFAULT_DB).to_string();
        let pool_opts = if opts.get_pool_opts().constraints() == PoolConstraints::DEFAULT {
            // Not set by the URL: ours. PoolConstraints::new(0, n) is Some.
            PoolOpts::default().with_constraints(
                PoolConstraints::new(0, MAX_CONNECTIONS).unwrap_or(PoolConstraints::DEFAULT),
            )
        } else {
            opts.get_pool_opts().clone()
        };
        let mut init = vec![SESSION_INIT.to_string()];
        init.extend(opts.get_init());
        let builder = OptsBuilder::from_opts(opts.clone())
            .tcp_connect_timeout(Some(
                opts.get_tcp_connect_timeout().unwrap_or(CONNECT_TIMEOUT),
            ))
            .read_timeout(Some(opts.get_read_timeout().copied().unwrap_or(IO_TIMEOUT)))
            .write_timeout(Some(
                opts.get_write_timeout().copied().unwrap_or(IO_TIMEOUT),
            ))
            // Affected rows must count a no-op update as 0 (write_batch).
            .additional_capabilities(
                opts.get_additional_capabilities() - CapabilityFlags::CLIENT_FOUND_ROWS,
            )
            .init(init)
            // No reset when a connection goes back to the pool: the store
            // leaves no session state behind (a failed transaction is rolled
            // back, a broken link retires the pool), and a reset would throw
            // away the prepared statements. No ping before each use either:
            // a dead connection is found by using it (see `call`), and a
            // ping on a partitioned link would wait out the read timeout for
            // every idle connection in turn.
            .pool_opts(
                pool_opts
                    .with_reset_connection(false)
                    .with_check_health(false),
            );

        // The database may not exist yet: connect without it first.
        let setup = || -> ::mysql::Result<()> {
            let mut conn = ::mysql::Conn::new(builder.clone().db_name(None::<String>))?;
            conn.query_drop(format!(
                "CREATE DATABASE IF NOT EXISTS {} CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci",
                quote_ident(&db)
            ))?;
            conn.select_db(&db)?;
            for ddl in table_ddl(SCHEMA) {
                conn.query_drop(ddl)?;
            }
            let flush: Option<u64> = conn.query_first("SELECT @@innodb_flush_log_at_trx_commit")?;
            if flush != Some(1) {
                log::warn!(
                    "mysql: innodb_flush_log_at_trx_commit is {flush:?}, not 1: \
                     a crash of the database host may lose acknowledged orders"
                );
            }
            Ok(())
        };
        setup().map_err(|e| store_error("setup", &e))?;
        let opts: Opts = builder.db_name(Some(db)).into();
        let pool = Pool::new(opts.clone()).map_err(|e| store_error("pool", &e))?;
        let store = MysqlStore {
            opts,
            pool: RwLock::new((0, pool)),
            outage: Outage::new("mysql order store"),
        };
        store.check_columns()?;
        Ok(store)
    }

    /// Fails early, with the column named, if an existing table predates
    /// the schema this store was built for.
    fn check_columns(&self) -> Result<(), StoreError> {
        self.call("schema check", |conn| {
            conn.query_drop(format!("SELECT {GOODS_COLUMNS} FROM goods LIMIT 0"))?;
            conn.query_drop(format!(
                "SELECT id, live_slot, {ORDER_COLUMNS} FROM orders LIMIT 0"
            ))
        })
    }

    /// Runs an idempotent `f` on a pooled connection and reports the
    /// result to the outage tracker. After a broken link `f` is tried once
    /// more, on a new connection: an idle connection is found dead this way
    /// (MySQL restarted, or closed it after `wait_timeout`) at the cost of
    /// one failed attempt rather than a ping before every call, and a batch
    /// whose COMMIT reply was lost is answered by its retry.
    fn call<T>(
        &self,
        what: &str,
        mut f: impl FnMut(&mut PooledConn) -> ::mysql::Result<T>,
    ) -> Result<T, StoreError> {
        let result = match self.attempt(&mut f) {
            Err(e) if broken(&e) => self.attempt(&mut f),
            result => result,
        };
        self.track(what, result)
    }

    /// [`call`](Self::call) for what must not run twice: a goods added or
    /// restocked by an attempt whose reply was lost would be so twice.
    ///
    /// A link that breaks once `f` has begun leaves its write in doubt (an
    /// INSERT or a COMMIT may have been applied before the link went): that
    /// is [`StoreError::Indeterminate`], not "nothing was done".
    fn call_once<T>(
        &self,
        what: &str,
        mut f: impl FnMut(&mut PooledConn) -> ::mysql::Result<T>,
    ) -> Result<T, StoreError> {
        let started = Cell::new(false);
        let result = self.attempt(&mut |conn: &mut PooledConn| {
            started.set(true);
            f(conn)
        });
        let in_doubt = matches!(&result, Err(e) if broken(e)) && started.get();
        match self.track(what, result) {
            Err(StoreError::Unavailable(m)) if in_doubt => Err(StoreError::Indeterminate(m)),
            other => other,
        }
    }

    /// [`call`](Self::call) or [`call_once`](Self::call_once) of `f`, a
    /// whole transaction, tried again when MySQL chose it as a deadlock
    /// victim: the server rolled the transaction back, so nothing is in
    /// doubt. PAY, CANCEL, the expiry and order writes with purchase slots
    /// lock the same rows through different indexes, so under a race a
    /// deadlock is normal, not an outage.
    fn call_retrying<T>(
        &self,
        what: &str,
        calls: Calls,
        mut f: impl FnMut(&mut PooledConn) -> ::mysql::Result<T>,
    ) -> Result<T, StoreError> {
        const ATTEMPTS: usize = 5;
        for attempt in 1.. {
            let deadlocked = Cell::new(false);
            let mut noting = |conn: &mut PooledConn| {
                let result = f(conn);
                if matches!(&result, Err(Error::MySqlError(e)) if e.code == DEADLOCK) {
                    deadlocked.set(true);
                }
                result
            };
            let result = match calls {
                Calls::Once => self.call_once(what, &mut noting),
                Calls::Idempotent => self.call(what, &mut noting),
            };
            if !deadlocked.get() || attempt == ATTEMPTS {
                return result;
            }
        }
        unreachable!("the loop returns on its last attempt")
    }

    /// Runs `f` on a pooled connection. A connection whose link broke is
    /// dropped, not handed back, and the pool it came from is replaced.
    fn attempt<T>(
        &self,
        f: &mut impl FnMut(&mut PooledConn) -> ::mysql::Result<T>,
    ) -> ::mysql::Result<T> {
        let (generation, pool) = {
            let current = self.pool.read();
            (current.0, current.1.clone())
        };
        let mut conn = pool.try_get_conn(CHECKOUT_TIMEOUT)?;
        let result = f(&mut conn);
        if matches!(&result, Err(e) if broken(e)) {
            self.retire(generation);
            // Closes the socket here instead of returning it to the old
            // pool, where another caller could still take it.
            drop(conn.unwrap());
        }
        result
    }

    fn track<T>(&self, what: &str, result: ::mysql::Result<T>) -> Result<T, StoreError> {
        let result = result.map_err(|e| store_error(what, &e));
        match &result {
            Err(e @ StoreError::Unavailable(_)) => self.outage.failed(e),
            _ => self.outage.ok(),
        }
        result
    }

    /// Replaces the pool of this generation with an empty one; the old one
    /// closes its idle connections when the last caller using it is done.
    fn retire(&self, generation: u64) {
        let mut current = self.pool.write();
        if current.0 != generation {
            return;
        }
        // With no minimum of connections, creating a pool connects nothing
        // and cannot fail; if it ever does, the old pool stays.
        if let Ok(pool) = Pool::new(self.opts.clone()) {
            *current = (generation + 1, pool);
        }
    }
}

impl OrderStore for MysqlStore {
    fn goods(&self) -> Result<Vec<GoodsRecord>, StoreError> {
        let rows: Vec<GoodsRow> = self.call("goods", |conn| {
            conn.query(format!("SELECT {GOODS_COLUMNS} FROM goods ORDER BY id"))
        })?;
        Ok(rows.into_iter().map(goods_record).collect())
    }

    fn add_goods(&self, goods: &NewGoods) -> Result<GoodsRecord, StoreError> {
        let added = self.call_once("add goods", |conn| {
            conn.exec_drop(
                "INSERT INTO goods (name, price_cents, total, start_ms, end_ms,
                     per_user_limit, pay_window_ms, token_required)
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    &goods.name,
                    goods.price_cents,
                    goods.stock,
                    goods.start_ms,
                    goods.end_ms,
                    goods.rules.per_user_limit,
                    goods.rules.pay_window_ms,
                    goods.rules.token_required,
                ),
            )?;
            let id = conn.last_insert_id();
            goods_by_id(conn, id)
        })?;
        added.ok_or_else(|| StoreError::Inconsistent("mysql: an added goods is gone".into()))
    }

    fn restock(&self, goods: GoodsId, amount: u32) -> Result<GoodsRecord, StoreError> {
        // Saturates like the stock stores. Affected rows cannot tell an
        // unknown goods (a restock by 0 changes nothing either): the goods
        // is read back instead, in the same transaction.
        let unsure = Cell::new(false);
        let restocked = self.call_once("restock", |conn| {
            transaction(conn, &unsure, |conn| {
                conn.exec_drop(
                    "UPDATE goods SET total = LEAST(total + ?, 4294967295) WHERE id = ?",
                    (amount, goods),
                )?;
                Ok(goods_by_id(conn, goods)?.ok_or(()))
            })
        });
        let restocked = in_doubt(&unsure, restocked)?;
        restocked.map_err(|()| StoreError::UnknownGoods(goods))
    }

    fn insert_orders(&self, orders: &[OrderRecord]) -> Result<Vec<Written>, StoreError> {
        if orders.is_empty() {
            return Ok(Vec::new());
        }
        // Sticky over the retries: if an attempt's COMMIT may have gone
        // through and a later one failed, however it failed, nobody knows.
        let unsure = Cell::new(false);
        let written = self.call_retrying("insert orders", Calls::Idempotent, |conn| {
            transaction(conn, &unsure, |conn| write_batch(conn, orders))
        });
        let written = in_doubt(&unsure, written)?;
        written.map_err(|order_no| {
            StoreError::Inconsistent(format!("mysql: order number {order_no} is already used"))
        })
    }

    /// A locking read: it waits for any transaction still writing orders of
    /// this goods (say one whose COMMIT reply was lost and which the server
    /// is still committing) instead of reading around it. Reconciliation
    /// rebuilds the stock from this, so a plain read could miss orders that
    /// are about to exist and put their units back on sale.
    fn live_holders(&self, goods: GoodsId) -> Result<Vec<(UserId, OrderNo)>, StoreError> {
        self.call("live holders", |conn| {
            transaction(conn, &Cell::new(false), |conn| {
                conn.exec(
                    "SELECT user_id, order_no FROM orders
                     WHERE goods_id = ? AND live_slot IS NOT NULL
                     LOCK IN SHARE MODE",
                    (goods,),
                )
                .map(Ok::<_, std::convert::Infallible>)
            })
        })
        .map(|read| match read {
            Ok(holders) => holders,
            Err(never) => match never {},
        })
    }

    fn find_order(&self, user: UserId, goods: GoodsId) -> Result<Option<OrderRecord>, StoreError> {
        let found: Option<OrderRow> = self.call("find order", |conn| {
            conn.exec_first(
                format!(
                    "SELECT {ORDER_COLUMNS} FROM orders
                     WHERE goods_id = ? AND user_id = ? AND live_slot IS NOT NULL
                     ORDER BY live_slot LIMIT 1"
                ),
                (goods, user),
            )
        })?;
        found.map(order_record).transpose()
    }

    fn orders_of(&self, user: UserId, max: usize) -> Result<Vec<OrderRecord>, StoreError> {
        let rows: Vec<OrderRow> = self.call("orders of user", |conn| {
            conn.exec(
                format!(
                    "SELECT {ORDER_COLUMNS} FROM orders WHERE user_id = ?
                     ORDER BY created_ms DESC, order_no DESC LIMIT ?"
                ),
                (user, max as u64),
            )
        })?;
        rows.into_iter().map(order_record).collect()
    }

    fn stored(&self, order_nos: &[OrderNo]) -> Result<Vec<OrderNo>, StoreError> {
        let mut found = Vec::new();
        for chunk in order_nos.chunks(ROWS_PER_INSERT) {
            // Integers only, formatted here: no placeholder list to build.
            let list: Vec<String> = chunk.iter().map(u64::to_string).collect();
            let sql = format!(
                "SELECT order_no FROM orders WHERE order_no IN ({})",
                list.join(",")
            );
            let rows: Vec<u64> = self.call("stored orders", |conn| conn.query(&sql))?;
            found.extend(rows);
        }
        Ok(found)
    }

    fn save_sale(
        &self,
        goods: GoodsId,
        paused: bool,
        start_ms: u64,
        end_ms: u64,
    ) -> Result<GoodsRecord, StoreError> {
        // Setting the same values twice is harmless: a retry is safe.
        let saved = self.call("save sale", |conn| {
            conn.exec_drop(
                "UPDATE goods SET state = ?, start_ms = ?, end_ms = ? WHERE id = ?",
                (if paused { PAUSED } else { 0 }, start_ms, end_ms, goods),
            )?;
            goods_by_id(conn, goods)
        })?;
        saved.ok_or(StoreError::UnknownGoods(goods))
    }

    // PAY, CANCEL and the expiry each run once: a retry after a lost COMMIT
    // reply would find the order already settled and not know that it was
    // this call that cancelled it, so its unit would never come back. Such
    // a call is Indeterminate instead, and the sale reconciles the goods.

    fn pay(
        &self,
        user: UserId,
        order_no: OrderNo,
        now_ms: u64,
    ) -> Result<Option<Settled>, StoreError> {
        let unsure = Cell::new(false);
        let settled = self.call_retrying("pay", Calls::Once, |conn| {
            transaction(conn, &unsure, |conn| {
                settle(conn, user, order_no, Settle::Pay { now_ms })
            })
        });
        in_doubt(&unsure, settled)?
    }

    fn cancel(&self, user: UserId, order_no: OrderNo) -> Result<Option<Settled>, StoreError> {
        let unsure = Cell::new(false);
        let settled = self.call_retrying("cancel", Calls::Once, |conn| {
            transaction(conn, &unsure, |conn| {
                settle(conn, user, order_no, Settle::Cancel)
            })
        });
        in_doubt(&unsure, settled)?
    }

    /// The due orders are found by a plain read, then each is cancelled by
    /// an UPDATE of its row by order number that only applies to a created
    /// order: the same row lock, taken the same way, as a PAY's. So two
    /// servers sweeping at once, or a PAY racing the sweep, queue on each
    /// order's row lock, and whoever comes second finds it settled and
    /// leaves it.
    fn expire_due(&self, now_ms: u64, max: usize) -> Result<Vec<OrderRecord>, StoreError> {
        let unsure = Cell::new(false);
        let expired = self.call_retrying("expire", Calls::Once, |conn| {
            transaction(conn, &unsure, |conn| {
                let rows: Vec<OrderRow> = conn.exec(
                    format!(
                        "SELECT {ORDER_COLUMNS} FROM orders
                         WHERE state = 0 AND pay_by_ms <= ?
                         ORDER BY pay_by_ms, order_no LIMIT ?"
                    ),
                    (now_ms, max as u64),
                )?;
                let due = match rows
                    .into_iter()
                    .map(order_record)
                    .collect::<Result<Vec<_>, _>>()
                {
                    Ok(due) => due,
                    Err(e) => return Ok(Err(e)),
                };
                let mut expired = Vec::with_capacity(due.len());
                for mut o in due {
                    set_state(conn, o.order_no, OrderState::Cancelled)?;
                    if conn.affected_rows() == 1 {
                        o.state = OrderState::Cancelled;
                        expired.push(o);
                    }
                }
                Ok(Ok(expired))
            })
        });
        in_doubt(&unsure, expired)?
    }
}

/// A failed write whose COMMIT was sent: its outcome is unknown, whatever
/// the error says.
fn in_doubt<T>(unsure: &Cell<bool>, result: Result<T, StoreError>) -> Result<T, StoreError> {
    match result {
        Err(StoreError::Unavailable(m) | StoreError::Inconsistent(m)) if unsure.get() => {
            Err(StoreError::Indeterminate(m))
        }
        other => other,
    }
}

/// Runs `body` in a transaction: commits if it gives `Ok(Ok(_))` (durable
/// when COMMIT returns, with InnoDB's default flush at commit), rolls back
/// anything else. After a broken link nothing more is sent: the server rolls
/// back when the connection closes.
///
/// If COMMIT fails, however (a broken link, an interrupted statement), the
/// server may have committed: `unsure` is set, so the caller can say the
/// outcome is unknown rather than that nothing happened ([`in_doubt`]).
fn transaction<T, E>(
    conn: &mut PooledConn,
    unsure: &Cell<bool>,
    body: impl FnOnce(&mut PooledConn) -> ::mysql::Result<Result<T, E>>,
) -> ::mysql::Result<Result<T, E>> {
    conn.query_drop("START TRANSACTION")?;
    match body(conn) {
        Ok(Ok(v)) => match conn.query_drop("COMMIT") {
            Ok(()) => Ok(Ok(v)),
            Err(e) => {
                unsure.set(true);
                Err(e)
            }
        },
        Ok(Err(e)) => {
            conn.query_drop("ROLLBACK")?;
            Ok(Err(e))
        }
        Err(e) if broken(&e) => Err(e),
        Err(e) => match conn.query_drop("ROLLBACK") {
            // The link broke on the way: that error, so the caller drops
            // the connection rather than hand it out out of step.
            Err(rollback) if broken(&rollback) => Err(rollback),
            _ => Err(e),
        },
    }
}

#[cfg(test)]
mod tests {
    //! Against the real MySQL/MariaDB (`SECKILL_TEST_MYSQL`, default
    //! mysql://root@127.0.0.1:3306): each test in a database of its own,
    //! dropped when the test ends, failing or not.

    use std::collections::BTreeSet;
    use std::sync::Arc;

    use super::*;
    use crate::store::testdb::TestDb;

    fn open(db: &TestDb) -> MysqlStore {
        MysqlStore::open(db.url()).unwrap_or_else(|e| panic!("open {}: {e}", db.url()))
    }

    fn new_goods(stock: u32) -> NewGoods {
        NewGoods {
            name: "Phone X".into(),
            price_cents: 1999,
            stock,
            start_ms: 1_000,
            end_ms: 2_000,
            rules: SaleRules::default(),
        }
    }

    fn order(order_no: u64, user_id: u64, goods_id: u64) -> OrderRecord {
        OrderRecord {
            order_no,
            user_id,
            goods_id,
            state: OrderState::Created,
            created_ms: 1_500,
            pay_by_ms: u64::MAX,
        }
    }

    fn count(db: &TestDb, sql: &str) -> u64 {
        db.conn()
            .query_first(sql)
            .expect("count query")
            .expect("one row")
    }

    #[test]
    fn the_schema_sql_yields_its_create_tables() {
        let ddl = table_ddl(SCHEMA);
        assert_eq!(ddl.len(), 2, "{ddl:#?}");
        assert!(ddl[0].starts_with("CREATE TABLE IF NOT EXISTS goods"));
        assert!(ddl[1].starts_with("CREATE TABLE IF NOT EXISTS orders"));
    }

    #[test]
    fn open_creates_the_database_and_tables_and_can_be_repeated() {
        let db = TestDb::new();
        let store = open(&db);
        let tables = count(
            &db,
            &format!(
                "SELECT COUNT(*) FROM information_schema.tables
                 WHERE table_schema = '{}' AND table_name IN ('goods', 'orders')",
                db.name()
            ),
        );
        assert_eq!(tables, 2);
        let one_live = count(
            &db,
            &format!(
                "SELECT COUNT(*) FROM information_schema.statistics
                 WHERE table_schema = '{}' AND table_name = 'orders'
                 AND index_name = 'orders_one_live' AND non_unique = 0",
                db.name()
            ),
        );
        assert_eq!(one_live, 3, "a unique key on three columns");
        let g = store.add_goods(&new_goods(5)).unwrap();
        drop(store);
        // Again on the existing database: nothing is recreated or lost.
        let store = open(&db);
        assert_eq!(store.goods().unwrap(), vec![g]);
    }

    #[test]
    fn open_fails_as_unavailable_when_nothing_listens() {
        // Port 1 (tcpmux) is closed on any test machine.
        match MysqlStore::open("mysql://root@127.0.0.1:1/seckill") {
            Err(StoreError::Unavailable(_)) => {}
            Err(e) => panic!("expected Unavailable, got {e}"),
            Ok(_) => panic!("opened a store on port 1"),
        }
    }

    #[test]
    fn goods_are_added_listed_and_restocked() {
        let db = TestDb::new();
        let store = open(&db);
        assert_eq!(store.goods().unwrap(), vec![]);
        let a = store.add_goods(&new_goods(5)).unwrap();
        assert_eq!(
            (
                a.name.as_str(),
                a.price_cents,
                a.total,
                a.start_ms,
                a.end_ms
            ),
            ("Phone X", 1999, 5, 1_000, 2_000)
        );
        let b = store
            .add_goods(&NewGoods {
                name: "手机 🚀".into(),
                ..new_goods(1)
            })
            .unwrap();
        assert_eq!(b.name, "手机 🚀", "utf8mb4 end to end");
        assert!(b.id > a.id);
        assert_eq!(store.goods().unwrap(), vec![a.clone(), b.clone()]);

        assert_eq!(store.restock(a.id, 3).unwrap().total, 8);
        assert_eq!(store.restock(a.id, 0).unwrap().total, 8);
        assert_eq!(store.restock(b.id, u32::MAX).unwrap().total, u32::MAX);
        assert_eq!(store.goods().unwrap()[0].total, 8);
        assert!(matches!(
            store.restock(b.id + 100, 1),
            Err(StoreError::UnknownGoods(id)) if id == b.id + 100
        ));
    }

    #[test]
    fn a_big_batch_is_stored_in_chunks_and_a_retry_doubles_nothing() {
        let db = TestDb::new();
        let store = open(&db);
        let g = store.add_goods(&new_goods(2500)).unwrap();
        let batch: Vec<_> = (0..2500).map(|i| order(10_000 + i, i, g.id)).collect();
        let stored = vec![Written::Stored; batch.len()];
        assert_eq!(store.insert_orders(&batch).unwrap(), stored);
        // A retried batch (its commit's reply was lost) is no error.
        assert_eq!(store.insert_orders(&batch).unwrap(), stored);
        assert_eq!(count(&db, "SELECT COUNT(*) FROM orders"), 2500);
        // Half new, half already stored, across a chunk boundary.
        let more: Vec<_> = (1500..3500).map(|i| order(10_000 + i, i, g.id)).collect();
        assert_eq!(
            store.insert_orders(&more).unwrap(),
            vec![Written::Stored; 2000]
        );
        assert_eq!(count(&db, "SELECT COUNT(*) FROM orders"), 3500);
        assert_eq!(store.insert_orders(&[]).unwrap(), vec![]);
    }

    #[test]
    fn a_second_live_order_is_refused_by_the_database_and_only_it() {
        let db = TestDb::new();
        let store = open(&db);
        let g = store.add_goods(&new_goods(10)).unwrap();
        store.insert_orders(&[order(100, 7, g.id)]).unwrap();
        let written = store
            .insert_orders(&[
                order(200, 1, g.id),
                order(201, 7, g.id),
                order(202, 2, g.id),
            ])
            .unwrap();
        assert_eq!(
            written,
            [Written::Stored, Written::Duplicate(100), Written::Stored]
        );
        assert_eq!(store.find_order(7, g.id).unwrap().unwrap().order_no, 100);
        assert_eq!(store.find_order(2, g.id).unwrap().unwrap().order_no, 202);
        assert_eq!(count(&db, "SELECT COUNT(*) FROM orders"), 3);
    }

    #[test]
    fn a_reused_order_number_is_inconsistent_and_writes_nothing() {
        let db = TestDb::new();
        let store = open(&db);
        let g = store.add_goods(&new_goods(10)).unwrap();
        store.insert_orders(&[order(100, 7, g.id)]).unwrap();
        // 100 belongs to user 7; user 8 holds nothing.
        let result = store.insert_orders(&[order(300, 9, g.id), order(100, 8, g.id)]);
        assert!(
            matches!(result, Err(StoreError::Inconsistent(_))),
            "{result:?}"
        );
        assert_eq!(store.find_order(9, g.id).unwrap(), None, "rolled back");
        // A data error (here: an unknown goods) fails the batch, never
        // vanishes as a warning.
        let result = store.insert_orders(&[order(400, 1, g.id + 1)]);
        assert!(
            matches!(result, Err(StoreError::Inconsistent(_))),
            "{result:?}"
        );
        assert_eq!(count(&db, "SELECT COUNT(*) FROM orders"), 1);
        // The store is still usable after both.
        assert_eq!(
            store.insert_orders(&[order(500, 9, g.id)]).unwrap(),
            [Written::Stored]
        );
    }

    /// Reconciliation reads the holders while another connection may still
    /// be committing orders: the read waits for that transaction rather than
    /// miss its orders.
    #[test]
    fn live_holders_wait_for_orders_still_being_committed() {
        let db = TestDb::new();
        let store = std::sync::Arc::new(open(&db));
        let g = store.add_goods(&new_goods(10)).unwrap();
        let mut writer = db.conn();
        writer.query_drop("START TRANSACTION").unwrap();
        writer
            .exec_drop(
                "INSERT INTO orders (order_no, user_id, goods_id, state, live_slot, created_ms, pay_by_ms)
                 VALUES (?, ?, ?, 0, 1, 1, 1)",
                (77u64, 7u64, g.id),
            )
            .unwrap();
        let reader = {
            let store = store.clone();
            std::thread::spawn(move || store.live_holders(g.id))
        };
        std::thread::sleep(Duration::from_millis(500));
        assert!(
            !reader.is_finished(),
            "the read did not wait for the commit"
        );
        writer.query_drop("COMMIT").unwrap();
        assert_eq!(reader.join().unwrap().unwrap(), vec![(7, 77)]);
    }

    #[test]
    fn live_holders_and_find_order_skip_cancelled_orders() {
        let db = TestDb::new();
        let store = open(&db);
        let g = store.add_goods(&new_goods(10)).unwrap();
        let other = store.add_goods(&new_goods(10)).unwrap();
        let cancelled = OrderRecord {
            state: OrderState::Cancelled,
            ..order(100, 1, g.id)
        };
        let paid = OrderRecord {
            state: OrderState::Paid,
            created_ms: 1_234,
            pay_by_ms: u64::MAX,
            ..order(101, 2, g.id)
        };
        let written = store
            .insert_orders(&[cancelled, paid.clone(), order(102, 3, other.id)])
            .unwrap();
        assert_eq!(written, [Written::Stored; 3]);
        assert_eq!(store.live_holders(g.id).unwrap(), vec![(2, 101)]);
        assert_eq!(store.find_order(2, g.id).unwrap(), Some(paid));
        assert_eq!(store.find_order(1, g.id).unwrap(), None);
        assert_eq!(store.find_order(3, g.id).unwrap(), None);
        // After a cancel the user may buy again: the cancelled order holds
        // no slot of the unique key.
        assert_eq!(
            store.insert_orders(&[order(103, 1, g.id)]).unwrap(),
            [Written::Stored]
        );
        let mut holders = store.live_holders(g.id).unwrap();
        holders.sort_unstable();
        assert_eq!(holders, vec![(1, 103), (2, 101)]);
        assert_eq!(store.live_holders(other.id + 1).unwrap(), vec![]);
    }

    /// Kills the store's connections from the side, as a MySQL restart or
    /// `wait_timeout` would.
    fn kill_store_connections(db: &TestDb) -> usize {
        let mut admin = db.conn();
        let ids: Vec<u64> = admin
            .query(format!(
                "SELECT id FROM information_schema.processlist
                 WHERE db = '{}' AND id <> CONNECTION_ID()",
                db.name()
            ))
            .unwrap();
        for id in &ids {
            admin.query_drop(format!("KILL CONNECTION {id}")).unwrap();
        }
        ids.len()
    }

    #[test]
    fn a_dead_connection_is_replaced() {
        let db = TestDb::new();
        let store = open(&db);
        let g = store.add_goods(&new_goods(10)).unwrap();
        store.insert_orders(&[order(100, 1, g.id)]).unwrap();
        assert!(kill_store_connections(&db) > 0);
        // Idempotent calls are tried again on a new connection.
        assert_eq!(store.find_order(1, g.id).unwrap().unwrap().order_no, 100);
        assert_eq!(
            store.insert_orders(&[order(101, 2, g.id)]).unwrap(),
            [Written::Stored]
        );
        assert!(!store.outage.is_down());
        // A restock is not: its link broke once it had begun, so it may or
        // may not have been applied (here it was not). The one after works.
        assert!(kill_store_connections(&db) > 0);
        match store.restock(g.id, 1) {
            Err(StoreError::Indeterminate(_)) => assert!(store.outage.is_down()),
            other => panic!("a restock on a killed connection: {other:?}"),
        }
        assert_eq!(store.restock(g.id, 1).unwrap().total, 11);
        assert!(!store.outage.is_down());
    }

    #[test]
    fn ids_above_i64_max_round_trip() {
        let db = TestDb::new();
        let store = open(&db);
        let big = i64::MAX as u64 + 10;
        db.conn()
            .query_drop(format!("ALTER TABLE goods AUTO_INCREMENT = {big}"))
            .unwrap();
        let g = store
            .add_goods(&NewGoods {
                price_cents: u64::MAX,
                start_ms: u64::MAX - 1,
                end_ms: u64::MAX,
                rules: SaleRules::default(),
                ..new_goods(1)
            })
            .unwrap();
        assert_eq!(g.id, big);
        assert_eq!(
            (g.price_cents, g.start_ms, g.end_ms),
            (u64::MAX, u64::MAX - 1, u64::MAX)
        );
        assert_eq!(store.restock(g.id, 1).unwrap().total, 2);
        assert_eq!(store.goods().unwrap()[0].id, big);
        let o = OrderRecord {
            created_ms: u64::MAX,
            pay_by_ms: u64::MAX,
            ..order(u64::MAX, u64::MAX - 1, g.id)
        };
        assert_eq!(
            store.insert_orders(std::slice::from_ref(&o)).unwrap(),
            [Written::Stored]
        );
        assert_eq!(
            store.insert_orders(std::slice::from_ref(&o)).unwrap(),
            [Written::Stored]
        );
        assert_eq!(
            store
                .insert_orders(&[order(u64::MAX - 5, u64::MAX - 1, g.id)])
                .unwrap(),
            [Written::Duplicate(u64::MAX)]
        );
        assert_eq!(
            store.live_holders(g.id).unwrap(),
            vec![(u64::MAX - 1, u64::MAX)]
        );
        assert_eq!(store.find_order(u64::MAX - 1, g.id).unwrap(), Some(o));
    }

    // PAY, CANCEL and the expiry, racing.

    fn goods(store: &MysqlStore, limit: u8) -> GoodsId {
        store
            .add_goods(&NewGoods {
                name: "lamp".into(),
                price_cents: 100,
                stock: 10_000,
                start_ms: 0,
                end_ms: u64::MAX,
                rules: SaleRules {
                    per_user_limit: limit,
                    pay_window_ms: 1000,
                    token_required: false,
                },
            })
            .unwrap()
            .id
    }

    /// An order due at `pay_by_ms`.
    fn due(order_no: u64, user_id: u64, goods_id: u64, pay_by_ms: u64) -> OrderRecord {
        OrderRecord {
            pay_by_ms,
            ..order(order_no, user_id, goods_id)
        }
    }

    #[test]
    fn pay_cancel_and_expiry_settle_each_order_once() {
        let db = TestDb::new();
        let store = open(&db);
        let g = goods(&store, 1);
        store
            .insert_orders(&[due(1, 1, g, 100), due(2, 2, g, 100), due(3, 3, g, 200)])
            .unwrap();
        assert_eq!(store.pay(9, 1, 50).unwrap(), None, "someone else's order");
        let paid = store.pay(1, 1, 50).unwrap().unwrap();
        assert_eq!(
            (paid.order.state, paid.cancelled_now),
            (OrderState::Paid, false)
        );
        assert_eq!(
            store.pay(1, 1, 500).unwrap().unwrap().order.state,
            OrderState::Paid
        );
        assert_eq!(
            store.cancel(1, 1).unwrap().unwrap().order.state,
            OrderState::Paid
        );
        let cancelled = store.cancel(2, 2).unwrap().unwrap();
        assert!(cancelled.cancelled_now);
        assert!(!store.cancel(2, 2).unwrap().unwrap().cancelled_now, "once");
        // Past its window, a PAY cancels; the sweep finds nothing left.
        let late = store.pay(3, 3, 200).unwrap().unwrap();
        assert_eq!(
            (late.order.state, late.cancelled_now),
            (OrderState::Cancelled, true)
        );
        assert!(store.expire_due(1000, 10).unwrap().is_empty());
        assert_eq!(store.live_holders(g).unwrap(), vec![(1, 1)]);
        // A cancelled order frees its user's slot; the list is newest first.
        store.insert_orders(&[due(4, 2, g, 100)]).unwrap();
        let listed: Vec<_> = store
            .orders_of(2, 10)
            .unwrap()
            .into_iter()
            .map(|o| (o.order_no, o.state))
            .collect();
        assert_eq!(
            listed,
            [(4, OrderState::Created), (2, OrderState::Cancelled)]
        );
        let saved = store.save_sale(g, true, 5, 6).unwrap();
        assert!(saved.paused && saved.start_ms == 5 && saved.end_ms == 6);
    }

    #[test]
    fn a_purchase_limit_gives_each_order_its_own_slot() {
        let db = TestDb::new();
        let store = open(&db);
        let g = goods(&store, 2);
        let batch = [due(1, 7, g, 9), due(2, 7, g, 9), due(3, 7, g, 9)];
        assert_eq!(
            store.insert_orders(&batch).unwrap(),
            [Written::Stored, Written::Stored, Written::Duplicate(1)]
        );
        assert_eq!(
            store.insert_orders(&batch[..2]).unwrap(),
            [Written::Stored; 2]
        );
        store.cancel(7, 1).unwrap();
        assert_eq!(store.insert_orders(&batch[2..]).unwrap(), [Written::Stored]);
        let mut live = store.live_holders(g).unwrap();
        live.sort_unstable();
        assert_eq!(live, [(7, 2), (7, 3)]);
    }

    /// 2000 orders all due, paid by one thread while two "servers" (stores
    /// with pools of their own) sweep: every order ends paid or cancelled,
    /// each cancelled one is returned by exactly one sweep, and a PAY told
    /// "paid" is paid.
    #[test]
    fn pays_racing_two_expiry_sweeps_settle_each_order_once() {
        const ORDERS: u64 = 2000;
        let db = TestDb::new();
        let store = Arc::new(open(&db));
        let g = goods(&store, 1);
        let batch: Vec<_> = (1..=ORDERS).map(|n| due(n, n, g, 1000)).collect();
        store.insert_orders(&batch).unwrap();

        let sweeper = |store: Arc<MysqlStore>| {
            std::thread::spawn(move || {
                let mut mine = Vec::new();
                loop {
                    let got = store.expire_due(1000, 50).unwrap();
                    if got.is_empty() {
                        return mine;
                    }
                    mine.extend(got.into_iter().map(|o| o.order_no));
                }
            })
        };
        let other = Arc::new(open(&db));
        let sweeps = [sweeper(store.clone()), sweeper(other)];
        // Pays as of a moment the window is still open (the PAY's clock
        // read before the deadline; the sweeps' after it).
        let payer = {
            let store = store.clone();
            std::thread::spawn(move || {
                (1..=ORDERS)
                    .rev()
                    .filter(|&n| {
                        let s = store.pay(n, n, 999).unwrap().unwrap();
                        assert!(!s.cancelled_now);
                        s.order.state == OrderState::Paid
                    })
                    .collect::<BTreeSet<u64>>()
            })
        };
        let paid = payer.join().unwrap();
        let swept: Vec<Vec<u64>> = sweeps.into_iter().map(|t| t.join().unwrap()).collect();
        let mut cancelled = BTreeSet::new();
        for n in swept.iter().flatten() {
            assert!(cancelled.insert(*n), "order {n} expired twice");
        }
        assert!(
            paid.is_disjoint(&cancelled),
            "an order both paid and cancelled"
        );
        assert_eq!(paid.len() + cancelled.len(), ORDERS as usize);
        let states: Vec<(u64, u8)> = db
            .conn()
            .query("SELECT order_no, state FROM orders ORDER BY order_no")
            .unwrap();
        for (n, state) in states {
            let want = if paid.contains(&n) { 1 } else { 2 };
            assert_eq!(state, want, "order {n}");
        }
        // The race was real: both sides won some.
        assert!(
            !paid.is_empty() && !cancelled.is_empty(),
            "{} paid",
            paid.len()
        );
    }
}
