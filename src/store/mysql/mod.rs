//! The production order store: MySQL or MariaDB.
//!
//! The tables are those of `schema.sql` at the repository root, the one copy
//! of the DDL: `MysqlStore::open` creates the database named in its URL and
//! runs the file's CREATE TABLE statements when the tables are missing. The
//! database itself guards "one live order per user per goods" with a unique
//! key on `(user_id, goods_id, live_slot)` (`(goods_id, user_id, live_slot)`
//! on tables made before: both work).
//!
//! A batch of orders is one transaction of multi-row INSERTs, 1000 rows per
//! statement (the algorithm is [`super::batch`]'s), at READ COMMITTED
//! ([`calls::Call::ORDERS`]). A chunk with a row that hits a unique key
//! fails as a whole (InnoDB undoes the statement, not the transaction), and
//! that rare chunk is then looked at again as `batch` says. Not `INSERT
//! IGNORE` or a no-op `ON DUPLICATE KEY UPDATE`: the first turns data
//! errors into warnings, so a bad row could vanish silently, and with
//! either the rows of the chunk that did go in could not be told from rows
//! an earlier try of the batch stored.
//!
//! Connections come from a `mysql::Pool`, which opens new ones as needed.
//! Every connect, read and write has a timeout, so a dead MySQL costs a
//! worker a few seconds, never forever. A connection whose link failed
//! mid-exchange may still receive the reply it timed out on and would answer
//! the next query with it, so it is never handed out again: the whole pool
//! is replaced (the server most likely went away for all of them anyway),
//! and a call that is safe to run twice is tried once more on a new
//! connection. What each call may run again, and when a write is in doubt,
//! is in [`calls`].
//!
//! - `errors`: what a MySQL error means (a broken link, a passing failure).
//! - `calls`: the failure semantics of a call, as named strategies.
//! - `rows`: columns, row mappers and the statements of a batch.
//! - `schema`: the database and its tables, made from `schema.sql`.
//! - `sweep`: which orders the expiry sweep reads, and through which index.
//! - `nodes`: the registry of node ids ([`super::NodeRegistry`]).
//! - `writer`: which node of a MariaDB Galera cluster to write to, when the
//!   URL is a list of them.

use std::sync::OnceLock;
use std::time::Duration;

use parking_lot::Mutex;

use ::mysql::consts::CapabilityFlags;
use ::mysql::prelude::Queryable;
use ::mysql::{Opts, OptsBuilder, PoolConstraints, PoolOpts};
use seckill_proto::{NewGoods, OrderState, RequestId};

use self::calls::{Call, Failure, Link};
use self::load::Loads;
use self::nodes::NODE_COLUMNS;
use self::rows::{
    db_clock_ms, give_back_live, goods_by_id, goods_record, id_list, order_for_update,
    order_record, set_state, GoodsRow, OrderRow, Rows, GOODS_COLUMNS, ORDER_COLUMNS, PAUSED,
    ROWS_PER_INSERT,
};
use self::schema::{live_count_sql, DueIndex, GoodsIndex, Layout};
use self::sweep::{due_orders, SweepPlan};
use super::batch::per_goods;
use super::{
    batch, Epoch, GoodsId, GoodsRecord, KeptRequest, OrderNo, OrderRecord, OrderStore, Restocked,
    SaleChange, Settle, Settled, StoreError, UserId, Written,
};
use crate::clock::now_ms;

mod calls;
mod errors;
mod load;
mod nodes;
mod requests;
mod rows;
mod schema;
mod sweep;
#[cfg(test)]
mod tests;
mod writer;

pub use self::writer::split_urls;

/// The database used when the URL names none (as in `schema.sql`).
const DEFAULT_DB: &str = "seckill";

/// How long to wait for a TCP connection, and for any read or write on it.
/// A URL's own `tcp_connect_timeout_ms`, `read_timeout` or `write_timeout`
/// wins.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
const IO_TIMEOUT: Duration = Duration::from_secs(5);
/// Connections: none opened ahead (the pool is replaced after a broken
/// link), at most this many (workers, the order writer, admin calls).
const MAX_CONNECTIONS: usize = 32;

/// The connection options of one node's URL, with this store's timeouts,
/// pool size and session settings, and the database it names.
fn node_opts(url: &str) -> Result<(Opts, String), StoreError> {
    let opts =
        Opts::from_url(url).map_err(|e| StoreError::Unavailable(format!("mysql: bad url: {e}")))?;
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
        // Affected rows count rows changed, MySQL's default, which a
        // batch's fence and settling (in `rows`) read: as those change
        // every row they match, a count of rows matched would do as well.
        .additional_capabilities(
            opts.get_additional_capabilities() - CapabilityFlags::CLIENT_FOUND_ROWS,
        )
        .init(init)
        // No reset when a connection goes back to the pool: the store
        // leaves no session state behind (a failed transaction is rolled
        // back, a broken link retires the pool), and a reset would throw
        // away the prepared statements. No ping before each use either:
        // a dead connection is found by using it (see `Link::call`), and a
        // ping on a partitioned link would wait out the read timeout for
        // every idle connection in turn.
        .pool_opts(
            pool_opts
                .with_reset_connection(false)
                .with_check_health(false),
        )
        .db_name(Some(db.clone()));
    Ok((builder.into(), db))
}

/// Run on every new connection. Strict mode makes an out-of-range or too
/// long value an error, never a silent truncation, whatever the server's
/// default. UTC for the `created_at`/`updated_at` columns. A lock wait gives
/// up before the read timeout, so it fails as a clean server error and the
/// connection stays usable.
///
/// On MariaDB (10.3 and later: the executable comment), a transaction left
/// idle for 30 s is ended by the server: a server
/// stopped in the middle of a batch (SIGSTOP, a VM paused for a snapshot)
/// holds its goods' row lock, and every other server's orders and
/// reconciliations of that goods would wait on it until it woke. The store
/// never leaves a transaction idle that long; the stopped server, woken,
/// finds its connection gone and its batch in doubt, which a
/// reconciliation settles.
const SESSION_INIT: &str = "SET SESSION \
    sql_mode = 'STRICT_ALL_TABLES,NO_ZERO_IN_DATE,NO_ZERO_DATE,ERROR_FOR_DIVISION_BY_ZERO,NO_ENGINE_SUBSTITUTION', \
    time_zone = '+00:00', \
    innodb_lock_wait_timeout = 3 \
    /*M!100300 , idle_transaction_timeout = 30 */";

pub struct MysqlStore {
    link: Link,
    /// The database the URLs name: made by [`MysqlStore::prepare`].
    db: String,
    /// Which indexes this database's orders are read through by goods and
    /// by due time: found by [`MysqlStore::prepare`].
    layout: OnceLock<Layout>,
    /// Which goods the expiry sweep reads, where it reads by goods.
    sweep: Mutex<SweepPlan>,
    /// Whether chunks of created orders may leave `state` and `live_slot`
    /// to the table's defaults ([`schema::live_defaults`]); found at
    /// prepare.
    live_defaults: OnceLock<bool>,
    /// Whether chunks of created orders are loaded ([`load::LOAD_ORDERS`])
    /// rather than inserted: asked at prepare, and again now and then.
    loads: Loads,
}

impl MysqlStore {
    /// Connects to `url` (`mysql://user:password@host:port/database`, the
    /// database defaulting to `seckill`), creates the database and its
    /// tables if they are missing, and checks that the tables have the
    /// columns this store uses.
    /// (The server itself starts with `new` and prepares in the background:
    /// see `startup.rs`.)
    #[cfg(test)]
    pub fn open(url: &str) -> Result<Self, StoreError> {
        let store = Self::new(url)?;
        store.prepare()?;
        Ok(store)
    }

    /// A store for `urls`, connected to nothing yet: fails only on a URL
    /// that can never work. One URL, or a comma-separated list of the nodes
    /// of a MariaDB Galera cluster in order of preference, all naming the
    /// same database (see [`writer`]). [`prepare`](Self::prepare) before
    /// use.
    pub fn new(urls: &str) -> Result<Self, StoreError> {
        let mut db = None;
        let mut nodes = Vec::new();
        for url in split_urls(urls) {
            let (opts, named) = node_opts(url)?;
            if db.get_or_insert_with(|| named.clone()) != &named {
                return Err(StoreError::Unavailable(format!(
                    "mysql: the nodes name different databases ({} and {named})",
                    db.unwrap_or_default()
                )));
            }
            nodes.push(opts);
        }
        Ok(MysqlStore {
            link: Link::to_nodes(nodes)?,
            db: db.unwrap_or_else(|| DEFAULT_DB.to_string()),
            layout: OnceLock::new(),
            live_defaults: OnceLock::new(),
            loads: Loads::new(),
            sweep: Mutex::new(SweepPlan::new()),
        })
    }

    /// Creates the database and its tables if they are missing, and checks
    /// that the tables have the columns this store uses, and that a list
    /// names Galera nodes only. Can be tried again until MySQL answers.
    pub fn prepare(&self) -> Result<(), StoreError> {
        self.link.check_nodes()?;
        // The database may not exist yet: connect without it first.
        let (layout, defaults) = self.link.setup("setup", |conn| {
            schema::create(conn, &self.db)?;
            Ok((schema::layout(conn)?, schema::live_defaults(conn)?))
        })?;
        let layout = layout.map_err(|lacks| {
            StoreError::Inconsistent(format!("mysql: orders has {lacks}: see schema.sql"))
        })?;
        // Set once: a table's indexes are changed with the servers stopped
        // (CHANGELOG.md).
        let _ = self.layout.set(layout);
        let _ = self.live_defaults.set(defaults);
        self.check_columns()?;
        self.ask_loads()?;
        self.link.read_committed()?;
        Ok(())
    }

    /// Asks the server again whether it takes loads, when it is time
    /// ([`Loads::ask_due`]): in a call of its own before a batch, never
    /// inside the batch's transaction, where an error while asking (a
    /// deadlock that rolled the batch back) must fail the batch, not be
    /// taken for a "no". A failure is only logged: the batch goes on as
    /// the last answer says.
    fn ask_loads_if_due(&self) {
        if self.loads.ask_due() {
            if let Err(e) = self.ask_loads() {
                log::warn!("mysql: asking whether orders may be loaded: {e}");
            }
        }
    }

    /// Asks the server whether it takes loads ([`Loads::ask`]), in a call
    /// of its own.
    fn ask_loads(&self) -> Result<(), StoreError> {
        self.link.call("load probe", Call::IDEMPOTENT, |conn| {
            Ok(self.loads.ask(conn)?)
        })
    }

    /// The batch statements on a transaction's connection.
    fn rows<'c>(&'c self, conn: &'c mut ::mysql::PooledConn) -> Rows<'c> {
        Rows {
            conn,
            live_defaults: self.live_defaults.get().copied().unwrap_or(false),
            loads: &self.loads,
        }
    }

    /// Loads (`true`) or inserts every chunk from now on ([`Loads::force`]).
    #[cfg(test)]
    pub(crate) fn set_loads(&self, load: bool) {
        self.loads.force(load);
    }

    /// Fails early, with the column named, if an existing table predates
    /// the schema this store was built for.
    fn check_columns(&self) -> Result<(), StoreError> {
        self.link.call("schema check", Call::IDEMPOTENT, |conn| {
            conn.query_drop(format!("SELECT {GOODS_COLUMNS} FROM goods LIMIT 0"))?;
            conn.query_drop(format!("SELECT {NODE_COLUMNS} FROM nodes LIMIT 0"))?;
            conn.query_drop(
                "SELECT goods_id, request_id, user_id, order_no, forget_at_ms \
                 FROM buy_requests LIMIT 0",
            )?;
            let orders = format!("SELECT id, live_slot, {ORDER_COLUMNS} FROM orders LIMIT 0");
            Ok(conn.query_drop(orders)?)
        })
    }

    /// PAY and CANCEL, in a transaction: the order's row is locked, so an
    /// expiry sweep or another server settling it waits, then sees the
    /// outcome. `None`: no order of that number is this user's.
    fn settle(
        &self,
        what: &str,
        user: UserId,
        order_no: OrderNo,
        how: Settle,
    ) -> Result<Option<Settled>, StoreError> {
        self.link.call(what, Call::SETTLE, |conn| {
            let order = order_for_update(conn, order_no)?;
            let settled = how.run(user, order, |to| {
                set_state(conn, order_no, to)?;
                Ok::<_, Failure>(())
            })?;
            if let Some(s) = settled.as_ref().filter(|s| s.cancelled_now) {
                give_back_live(conn, s.order.goods_id, 1)?;
            }
            Ok(settled)
        })
    }
}

impl OrderStore for MysqlStore {
    fn goods(&self) -> Result<Vec<GoodsRecord>, StoreError> {
        let rows: Vec<GoodsRow> = self.link.call("goods", Call::IDEMPOTENT, |conn| {
            Ok(conn.query(format!("SELECT {GOODS_COLUMNS} FROM goods ORDER BY id"))?)
        })?;
        Ok(rows.into_iter().map(goods_record).collect())
    }

    fn clock_ms(&self) -> Result<Option<u64>, StoreError> {
        self.link
            .call("clock", Call::IDEMPOTENT, |conn| Ok(db_clock_ms(conn)?))
    }

    fn find_goods(&self, goods: GoodsId) -> Result<Option<GoodsRecord>, StoreError> {
        self.link.call("find goods", Call::IDEMPOTENT, |conn| {
            Ok(goods_by_id(conn, goods)?)
        })
    }

    fn add_goods(
        &self,
        goods: &NewGoods,
        request_id: Option<RequestId>,
    ) -> Result<GoodsRecord, StoreError> {
        // In one transaction: the goods exists only with its request id, so
        // a repeat can always find what the first one made.
        self.link
            .call("add goods", Call::ONCE_IN_TRANSACTION, |conn| {
                conn.exec_drop(
                    "INSERT INTO goods (name, price_cents, total, start_ms, end_ms,
                     per_user_limit, pay_window_ms, token_required, buckets)
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        &goods.name,
                        goods.price_cents,
                        goods.stock,
                        goods.start_ms,
                        goods.end_ms,
                        goods.rules.per_user_limit,
                        goods.rules.pay_window_ms,
                        goods.rules.token_required,
                        goods.buckets,
                    ),
                )?;
                let id = conn.last_insert_id();
                if let Some(request_id) = request_id {
                    conn.exec_drop(
                        "INSERT INTO goods_requests (request_id, goods_id) VALUES (?, ?)",
                        (request_id.to_bytes().to_vec(), id),
                    )?;
                }
                let added = goods_by_id(conn, id)?;
                Ok(added.ok_or_else(|| {
                    StoreError::Inconsistent("mysql: an added goods is gone".into())
                })?)
            })
    }

    fn added_by(&self, request_id: RequestId) -> Result<Option<GoodsRecord>, StoreError> {
        self.link
            .call("goods by request", Call::IDEMPOTENT, |conn| {
                let goods: Option<GoodsId> = conn.exec_first(
                    "SELECT goods_id FROM goods_requests WHERE request_id = ?",
                    (request_id.to_bytes().to_vec(),),
                )?;
                match goods {
                    Some(id) => Ok(goods_by_id(conn, id)?),
                    None => Ok(None),
                }
            })
    }

    fn restock(&self, goods: GoodsId, amount: u32) -> Result<Restocked, StoreError> {
        // Affected rows cannot tell an unknown goods from a refusal (or a
        // restock by 0): the goods is read back, in the same transaction.
        self.link
            .call("restock", Call::ONCE_IN_TRANSACTION, |conn| {
                conn.exec_drop(
                    "UPDATE goods SET total = total + ? WHERE id = ? AND total <= 4294967295 - ?",
                    (amount, goods, amount),
                )?;
                let raised = conn.affected_rows() == 1;
                let record = goods_by_id(conn, goods)?.ok_or(StoreError::UnknownGoods(goods))?;
                Ok(match raised || amount == 0 {
                    true => Restocked::Raised(record),
                    false => Restocked::Refused {
                        total: record.total,
                    },
                })
            })
    }

    fn commit_orders(
        &self,
        orders: &[OrderRecord],
        epochs: &[Epoch],
    ) -> Result<Vec<Written>, StoreError> {
        if orders.is_empty() {
            return Ok(Vec::new());
        }
        self.ask_loads_if_due();
        self.link.call("insert orders", Call::ORDERS, |conn| {
            batch::write(&mut self.rows(conn), orders, epochs)
        })
    }

    /// The ids of the orders stored, in the same transaction (see
    /// [`requests`]); only for a stock store in memory, so one server.
    fn commit_requested_orders(
        &self,
        orders: &[OrderRecord],
        epochs: &[Epoch],
        requests: &[Option<RequestId>],
    ) -> Result<Vec<Written>, StoreError> {
        if orders.is_empty() {
            return Ok(Vec::new());
        }
        self.ask_loads_if_due();
        self.link.call("insert orders", Call::ORDERS, |conn| {
            let written = batch::write(&mut self.rows(conn), orders, epochs)?;
            requests::keep(conn, orders, &written, requests, now_ms())?;
            Ok(written)
        })
    }

    fn kept_requests(&self, goods: GoodsId, now_ms: u64) -> Result<Vec<KeptRequest>, StoreError> {
        self.link
            .call("kept request ids", Call::IDEMPOTENT, |conn| {
                requests::kept(conn, goods, now_ms)
            })
    }

    /// Issuing an epoch twice (a retry after a COMMIT whose reply was lost)
    /// only skips one: epochs need to rise, not to be consecutive.
    fn next_epoch(&self, goods: GoodsId, above: Epoch) -> Result<Epoch, StoreError> {
        self.link
            .call("next epoch", Call::ONCE_IN_TRANSACTION, |conn| {
                conn.exec_drop(
                    "UPDATE goods SET epoch = GREATEST(epoch, ?) + 1 WHERE id = ?",
                    (above, goods),
                )?;
                let epoch: Option<Epoch> =
                    conn.exec_first("SELECT epoch FROM goods WHERE id = ?", (goods,))?;
                Ok(epoch.ok_or(StoreError::UnknownGoods(goods))?)
            })
    }

    /// Waits first for any transaction still writing orders of this goods
    /// (say one whose COMMIT reply was lost and which the server is still
    /// committing), then reads, rather than read around it: reconciliation
    /// rebuilds the stock from this, so a read that missed orders about to
    /// exist would put their units back on sale. Every such transaction
    /// holds the goods' row to its commit: exclusively from its first
    /// statement (a batch's epoch fence or live count, `store::batch`), or
    /// shared (the foreign key of any order inserted, by hand too). So the
    /// wait is a lock of that row, taken and let go in one statement, and
    /// the read a plain one after it, which sees what they committed. (So a
    /// transaction of this store takes a goods' row exclusively before it
    /// inserts orders of it, as `store::batch` does: one that held the
    /// foreign key's shared lock and then updated the row would deadlock
    /// with this wait, the read the victim.)
    ///
    /// The read locks no order: a locking read through `orders_by_goods
    /// (goods_id, state, pay_by_ms)` took each order's index entry, then its
    /// row, where a PAY or a cancel takes the row, then moves the entry, and
    /// the two deadlocked; and a batch inserting a goods' orders out of
    /// `pay_by_ms` order met the read's lock on the gap of its later row
    /// while the read waited for its first (both reproduced on MariaDB
    /// 10.11: BENCHMARKS.md, "one index of a goods' orders, with the goods
    /// to sweep"). A cancel that commits after the read is counted live
    /// here; its unit comes back as after any cancel that races a
    /// reconciliation (`release.lua`: refused while the goods is frozen,
    /// then a repair finds the order cancelled).
    ///
    /// Through an index of the goods ([`GoodsIndex`]), named: when one goods
    /// holds a large share of the table the optimizer might prefer a full
    /// scan.
    fn live_holders(&self, goods: GoodsId) -> Result<Vec<(UserId, OrderNo)>, StoreError> {
        let index = self.layout.get().map_or(GoodsIndex::ByGoods, |l| l.goods);
        let sql = format!(
            "SELECT user_id, order_no FROM orders FORCE INDEX ({})
             WHERE goods_id = ? AND live_slot IS NOT NULL",
            index.name()
        );
        self.link.call("live holders", Call::IDEMPOTENT, |conn| {
            // Autocommit: the lock goes with the statement.
            conn.exec_drop("SELECT id FROM goods WHERE id = ? FOR UPDATE", (goods,))?;
            Ok(conn.exec(&sql, (goods,))?)
        })
    }

    /// In one transaction, the goods' row locked first and held to the
    /// commit: every transaction that writes its orders or cancels one
    /// updates that row, so none is half done while the orders are counted
    /// (a cancel that changed its order and waits for the row is counted
    /// live, and takes its order off the new count after). The count reads
    /// without locks, as [`live_holders`](Self::live_holders) does, and for
    /// as long as it takes (a goods' whole index range, [`live_count_sql`])
    /// holds up the goods' order writes.
    fn recount_live(&self, goods: GoodsId) -> Result<Option<(u64, u64)>, StoreError> {
        let count = live_count_sql(self.layout.get());
        self.link.call("recount live orders", Call::ORDERS, |conn| {
            let was: Option<u64> = conn.exec_first(
                "SELECT live_orders FROM goods WHERE id = ? FOR UPDATE",
                (goods,),
            )?;
            let Some(was) = was else {
                return Ok(None);
            };
            let live: u64 = conn.exec_first(&count, (goods,))?.unwrap_or(0);
            if live == was {
                return Ok(None);
            }
            conn.exec_drop(
                "UPDATE goods SET live_orders = ? WHERE id = ?",
                (live, goods),
            )?;
            Ok(Some((was, live)))
        })
    }

    fn find_order(&self, user: UserId, goods: GoodsId) -> Result<Option<OrderRecord>, StoreError> {
        let found: Option<OrderRow> = self.link.call("find order", Call::IDEMPOTENT, |conn| {
            Ok(conn.exec_first(
                format!(
                    "SELECT {ORDER_COLUMNS} FROM orders FORCE INDEX (orders_one_live)
                     WHERE goods_id = ? AND user_id = ? AND live_slot IS NOT NULL
                     ORDER BY live_slot LIMIT 1"
                ),
                (goods, user),
            )?)
        })?;
        found.map(order_record).transpose()
    }

    fn orders_of(&self, user: UserId, max: usize) -> Result<Vec<OrderRecord>, StoreError> {
        let rows: Vec<OrderRow> = self.link.call("orders of user", Call::IDEMPOTENT, |conn| {
            Ok(conn.exec(
                format!(
                    "SELECT {ORDER_COLUMNS} FROM orders WHERE user_id = ?
                     ORDER BY created_ms DESC, order_no DESC LIMIT ?"
                ),
                (user, max as u64),
            )?)
        })?;
        rows.into_iter().map(order_record).collect()
    }

    fn stored_states(
        &self,
        order_nos: &[OrderNo],
    ) -> Result<Vec<(OrderNo, OrderState)>, StoreError> {
        let mut found = Vec::new();
        for chunk in order_nos.chunks(ROWS_PER_INSERT) {
            let sql = format!(
                "SELECT order_no, state FROM orders WHERE order_no IN ({})",
                id_list(chunk)
            );
            let rows: Vec<(u64, u8)> =
                self.link.call("stored orders", Call::IDEMPOTENT, |conn| {
                    Ok(conn.query(&sql)?)
                })?;
            for (order_no, state) in rows {
                let state = OrderState::from_u8(state).ok_or_else(|| {
                    StoreError::Inconsistent(format!("mysql: order {order_no} has state {state}"))
                })?;
                found.push((order_no, state));
            }
        }
        Ok(found)
    }

    fn save_sale(&self, goods: GoodsId, change: SaleChange) -> Result<GoodsRecord, StoreError> {
        // Each control changes only its own fields, so that two servers'
        // controls of one goods both stand. Applying one twice (a retry)
        // gives the same fields; the version rises once more, which only
        // says "as late as that".
        self.link.call("save sale", Call::IDEMPOTENT, |conn| {
            match change {
                SaleChange::Pause | SaleChange::Resume => conn.exec_drop(
                    "UPDATE goods SET state = ?, sale_version = sale_version + 1 WHERE id = ?",
                    (
                        if change == SaleChange::Pause {
                            PAUSED
                        } else {
                            0
                        },
                        goods,
                    ),
                )?,
                SaleChange::End { now_ms } => conn.exec_drop(
                    "UPDATE goods SET start_ms = LEAST(start_ms, ?), end_ms = LEAST(end_ms, ?),
                     sale_version = sale_version + 1 WHERE id = ?",
                    (now_ms, now_ms, goods),
                )?,
                SaleChange::Window { start_ms, end_ms } => conn.exec_drop(
                    "UPDATE goods SET start_ms = ?, end_ms = ?, sale_version = sale_version + 1
                     WHERE id = ?",
                    (start_ms, end_ms, goods),
                )?,
            }
            Ok(goods_by_id(conn, goods)?.ok_or(StoreError::UnknownGoods(goods))?)
        })
    }

    fn pay(
        &self,
        user: UserId,
        order_no: OrderNo,
        now_ms: u64,
    ) -> Result<Option<Settled>, StoreError> {
        self.settle("pay", user, order_no, Settle::Pay { now_ms })
    }

    fn cancel(&self, user: UserId, order_no: OrderNo) -> Result<Option<Settled>, StoreError> {
        self.settle("cancel", user, order_no, Settle::Cancel)
    }

    /// The due orders are found by a plain read, then each is cancelled by
    /// an UPDATE of its row by order number that only applies to a created
    /// order: the same row lock, taken the same way, as a PAY's. So two
    /// servers sweeping at once, or a PAY racing the sweep, queue on each
    /// order's row lock, and whoever comes second finds it settled and
    /// leaves it.
    ///
    /// Where the due orders are read by goods ([`DueIndex::ByGoods`]), the
    /// goods read are those that may have unpaid orders ([`SweepPlan`]).
    fn expire_due(&self, now_ms: u64, max: usize) -> Result<Vec<OrderRecord>, StoreError> {
        if max == 0 {
            return Ok(Vec::new());
        }
        let due_index = self.layout.get().map_or(DueIndex::ByGoods, |l| l.due);
        let sweep = self.sweep.lock().next();
        let (expired, stopped_in) = self.link.call("expire", Call::SETTLE, |conn| {
            let mut due = due_orders(conn, due_index, sweep, now_ms, max)?
                .into_iter()
                .map(order_record)
                .collect::<Result<Vec<_>, _>>()?;
            // In the order read: the goods whose due orders filled the sweep.
            let stopped_in = due.last().filter(|_| due.len() >= max).map(|o| o.goods_id);
            // Locked in order-number order, whatever order each server read
            // them in (each begins its sweeps where its last one stopped):
            // two servers sweeping the same orders then queue, never
            // deadlock.
            due.sort_unstable_by_key(|o| o.order_no);
            let mut expired = Vec::with_capacity(due.len());
            for mut o in due {
                if set_state(conn, o.order_no, OrderState::Cancelled)? {
                    o.state = OrderState::Cancelled;
                    expired.push(o);
                }
            }
            for (goods, n) in per_goods(&expired) {
                give_back_live(conn, goods, n)?;
            }
            Ok((expired, stopped_in))
        })?;
        self.sweep.lock().swept(sweep, now_ms, stopped_in);
        Ok(expired)
    }
}
