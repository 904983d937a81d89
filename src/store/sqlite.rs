//! The embedded order store: goods and orders in one SQLite file.
//!
//! Durability is the point of this store, so the file runs in WAL mode with
//! `synchronous = FULL`: a commit has reached the disk before a client is
//! told "ok". Group commit (one transaction per batch) keeps that affordable.

use std::path::Path;

use parking_lot::Mutex;
use rusqlite::{params, Connection, OptionalExtension, Row};
use seckill_proto::{NewGoods, OrderState, SaleRules};

use super::outage::Outage;
use super::{
    GoodsId, GoodsRecord, OrderNo, OrderRecord, OrderStore, Settle, Settled, StoreError, UserId,
    Written,
};
use crate::clock::now_ms;

/// The schema. `orders_one_live` is the database's own guard of the purchase
/// limit: a live order holds one of its user's slots 1..=limit of the goods,
/// a cancelled one holds none (`live_slot` NULL, and NULLs never collide in
/// a unique index), so a user can buy again after a cancel.
const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS goods (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    name           TEXT    NOT NULL,
    price_cents    INTEGER NOT NULL,
    total          INTEGER NOT NULL,
    start_ms       INTEGER NOT NULL,
    end_ms         INTEGER NOT NULL,
    per_user_limit INTEGER NOT NULL DEFAULT 1,
    pay_window_ms  INTEGER NOT NULL,
    token_required INTEGER NOT NULL DEFAULT 0,
    paused         INTEGER NOT NULL DEFAULT 0,
    created_ms     INTEGER NOT NULL,
    updated_ms     INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS orders (
    order_no    INTEGER PRIMARY KEY,
    user_id     INTEGER NOT NULL,
    goods_id    INTEGER NOT NULL REFERENCES goods(id),
    state       INTEGER NOT NULL DEFAULT 0,
    live_slot   INTEGER,
    created_ms  INTEGER NOT NULL,
    pay_by_ms   INTEGER NOT NULL,
    updated_ms  INTEGER NOT NULL,
    CHECK (state <> 2 OR live_slot IS NULL)
);
CREATE UNIQUE INDEX IF NOT EXISTS orders_one_live
    ON orders (goods_id, user_id, live_slot);
CREATE INDEX IF NOT EXISTS orders_due ON orders (pay_by_ms) WHERE state = 0;
CREATE INDEX IF NOT EXISTS orders_by_user ON orders (user_id, created_ms);
";

/// Rows per INSERT statement: well under SQLite's limit on bound variables.
const ROWS_PER_INSERT: usize = 400;

pub struct SqliteStore {
    // Two connections: WAL lets a reader run beside the writer, so ORDER_STATUS
    // never waits behind a batch commit.
    writer: Mutex<Connection>,
    reader: Mutex<Connection>,
    outage: Outage,
}

fn unavailable(e: rusqlite::Error) -> StoreError {
    StoreError::Unavailable(format!("sqlite: {e}"))
}

// SQLite integers are i64; ids are u64 on the wire. They are stored bit for
// bit, so an id above i64::MAX reads back as itself.
fn to_sql(v: u64) -> i64 {
    v as i64
}

fn from_sql(v: i64) -> u64 {
    v as u64
}

const GOODS_COLUMNS: &str =
    "id, name, price_cents, total, start_ms, end_ms, per_user_limit, pay_window_ms, token_required, paused";

fn goods_from_row(row: &Row<'_>) -> rusqlite::Result<GoodsRecord> {
    Ok(GoodsRecord {
        id: from_sql(row.get(0)?),
        name: row.get(1)?,
        price_cents: from_sql(row.get(2)?),
        total: row.get(3)?,
        start_ms: from_sql(row.get(4)?),
        end_ms: from_sql(row.get(5)?),
        rules: SaleRules {
            per_user_limit: row.get(6)?,
            pay_window_ms: from_sql(row.get(7)?),
            token_required: row.get(8)?,
        },
        paused: row.get(9)?,
    })
}

const ORDER_COLUMNS: &str = "order_no, user_id, goods_id, state, created_ms, pay_by_ms";

fn order_from_row(row: &Row<'_>) -> rusqlite::Result<OrderRecord> {
    let state: u8 = row.get(3)?;
    Ok(OrderRecord {
        order_no: from_sql(row.get(0)?),
        user_id: from_sql(row.get(1)?),
        goods_id: from_sql(row.get(2)?),
        // The CHECK-free column is only ever written from an OrderState;
        // anything else is a damaged file, refused like a type error.
        state: OrderState::from_u8(state)
            .ok_or(rusqlite::Error::IntegralValueOutOfRange(3, state.into()))?,
        created_ms: from_sql(row.get(4)?),
        pay_by_ms: from_sql(row.get(5)?),
    })
}

/// The order of this number, if any.
fn order_by_no(conn: &Connection, order_no: OrderNo) -> Result<Option<OrderRecord>, StoreError> {
    conn.prepare_cached(&format!(
        "SELECT {ORDER_COLUMNS} FROM orders WHERE order_no = ?1"
    ))
    .and_then(|mut stmt| {
        stmt.query_row([to_sql(order_no)], order_from_row)
            .optional()
    })
    .map_err(unavailable)
}

/// Moves a created order to `to`; a cancelled one gives up its slot.
fn set_state(conn: &Connection, order_no: OrderNo, to: OrderState) -> Result<(), StoreError> {
    conn.prepare_cached(
        "UPDATE orders SET state = ?1,
             live_slot = CASE WHEN ?1 = 2 THEN NULL ELSE live_slot END, updated_ms = ?2
         WHERE order_no = ?3 AND state = 0",
    )
    .and_then(|mut stmt| stmt.execute(params![to as u8, to_sql(now_ms()), to_sql(order_no)]))
    .map_err(unavailable)?;
    Ok(())
}

/// Inserts one order into the first free slot of its user, or says which
/// order the user holds when every slot is taken. An order number already
/// stored is this order written by an earlier try of the batch (whatever
/// became of it since), unless it belongs to someone else: order numbers
/// are unique by construction, so that is a bug.
fn place(conn: &Connection, o: &OrderRecord, limit: u8) -> Result<Written, StoreError> {
    if let Some(stored) = order_by_no(conn, o.order_no)? {
        return if (stored.user_id, stored.goods_id) == (o.user_id, o.goods_id) {
            Ok(Written::Stored)
        } else {
            Err(StoreError::Inconsistent(format!(
                "order number {} is already used",
                o.order_no
            )))
        };
    }
    let live: Vec<(u64, u8)> = conn
        .prepare_cached(
            "SELECT order_no, live_slot FROM orders
             WHERE goods_id = ?1 AND user_id = ?2 AND live_slot IS NOT NULL ORDER BY live_slot",
        )
        .and_then(|mut stmt| {
            stmt.query_map([to_sql(o.goods_id), to_sql(o.user_id)], |r| {
                Ok((from_sql(r.get(0)?), r.get(1)?))
            })?
            .collect()
        })
        .map_err(unavailable)?;
    let slot = match super::slot_for(o, &live, limit) {
        Ok(slot) => slot,
        Err(held) => return Ok(Written::Duplicate(held)),
    };
    let created = to_sql(o.created_ms);
    conn.prepare_cached(
        "INSERT INTO orders (order_no, user_id, goods_id, state, live_slot, created_ms, pay_by_ms, updated_ms)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?6)",
    )
    .and_then(|mut stmt| {
        stmt.execute(params![
            to_sql(o.order_no),
            to_sql(o.user_id),
            to_sql(o.goods_id),
            o.state as u8,
            slot,
            created,
            to_sql(o.pay_by_ms)
        ])
    })
    .map_err(unavailable)?;
    Ok(Written::Stored)
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
        writer.execute_batch(SCHEMA).map_err(unavailable)?;
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
        })
    }

    /// Reports a result to the outage latch: only a failure to reach the
    /// database counts (not, say, an unknown goods).
    fn tracked<T>(&self, result: Result<T, StoreError>) -> Result<T, StoreError> {
        match &result {
            Ok(_) => self.outage.ok(),
            Err(e @ StoreError::Unavailable(_)) => self.outage.failed(e),
            Err(_) => {}
        }
        result
    }

    fn goods_by_id(conn: &Connection, id: GoodsId) -> Result<GoodsRecord, StoreError> {
        conn.query_row(
            &format!("SELECT {GOODS_COLUMNS} FROM goods WHERE id = ?1"),
            [to_sql(id)],
            goods_from_row,
        )
        .optional()
        .map_err(unavailable)?
        .ok_or(StoreError::UnknownGoods(id))
    }

    /// Runs `f` in a write transaction. A COMMIT that fails on the way to
    /// the disk may still be found in the WAL after a crash: its outcome is
    /// not known.
    fn write<T>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let mut conn = self.writer.lock();
        let tx = conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(unavailable)?;
        let result = f(&tx)?;
        tx.commit()
            .map_err(|e| StoreError::Indeterminate(format!("sqlite commit: {e}")))?;
        Ok(result)
    }
}

/// The trait's work; the trait impl below reports each result to the
/// outage latch.
impl SqliteStore {
    fn do_goods(&self) -> Result<Vec<GoodsRecord>, StoreError> {
        let conn = self.reader.lock();
        let mut stmt = conn
            .prepare(&format!("SELECT {GOODS_COLUMNS} FROM goods ORDER BY id"))
            .map_err(unavailable)?;
        let rows = stmt.query_map([], goods_from_row).map_err(unavailable)?;
        rows.collect::<Result<_, _>>().map_err(unavailable)
    }

    fn do_add_goods(&self, goods: &NewGoods) -> Result<GoodsRecord, StoreError> {
        let conn = self.writer.lock();
        let now = to_sql(now_ms());
        conn.execute(
            "INSERT INTO goods (name, price_cents, total, start_ms, end_ms, per_user_limit,
                 pay_window_ms, token_required, created_ms, updated_ms)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?9)",
            params![
                goods.name,
                to_sql(goods.price_cents),
                goods.stock,
                to_sql(goods.start_ms),
                to_sql(goods.end_ms),
                goods.rules.per_user_limit,
                to_sql(goods.rules.pay_window_ms),
                goods.rules.token_required,
                now
            ],
        )
        .map_err(unavailable)?;
        Self::goods_by_id(&conn, from_sql(conn.last_insert_rowid()))
    }

    fn do_restock(&self, goods: GoodsId, amount: u32) -> Result<GoodsRecord, StoreError> {
        let conn = self.writer.lock();
        let changed = conn
            .execute(
                "UPDATE goods SET total = total + ?1, updated_ms = ?2 WHERE id = ?3",
                params![amount, to_sql(now_ms()), to_sql(goods)],
            )
            .map_err(unavailable)?;
        if changed == 0 {
            return Err(StoreError::UnknownGoods(goods));
        }
        Self::goods_by_id(&conn, goods)
    }

    fn do_save_sale(
        &self,
        goods: GoodsId,
        paused: bool,
        start_ms: u64,
        end_ms: u64,
    ) -> Result<GoodsRecord, StoreError> {
        let conn = self.writer.lock();
        let changed = conn
            .execute(
                "UPDATE goods SET paused = ?1, start_ms = ?2, end_ms = ?3, updated_ms = ?4
                 WHERE id = ?5",
                params![
                    paused,
                    to_sql(start_ms),
                    to_sql(end_ms),
                    to_sql(now_ms()),
                    to_sql(goods)
                ],
            )
            .map_err(unavailable)?;
        if changed == 0 {
            return Err(StoreError::UnknownGoods(goods));
        }
        Self::goods_by_id(&conn, goods)
    }

    fn do_insert_orders(&self, orders: &[OrderRecord]) -> Result<Vec<Written>, StoreError> {
        self.write(|tx| {
            let limits = super::limits_of(orders, |goods| {
                Ok(Self::goods_by_id(tx, goods)?.rules.per_user_limit.max(1))
            })?;
            let mut written = vec![None; orders.len()];
            // Goods of one order per user (the usual flash sale): one
            // multi-row INSERT per chunk, each order in slot 1. A row that
            // hits a unique key (a repeated order number, or a second live
            // order of a user) is skipped rather than failing the batch; the
            // rare chunk where that happened is then looked at row by row.
            let single: Vec<usize> = (0..orders.len())
                .filter(|&i| limits[&orders[i].goods_id] == 1)
                .collect();
            for chunk in single.chunks(ROWS_PER_INSERT) {
                let mut sql = String::from(
                    "INSERT INTO orders (order_no, user_id, goods_id, state, live_slot, created_ms, pay_by_ms, updated_ms) VALUES ",
                );
                let mut values: Vec<Option<i64>> = Vec::with_capacity(chunk.len() * 8);
                for (n, &i) in chunk.iter().enumerate() {
                    if n > 0 {
                        sql.push(',');
                    }
                    sql.push_str("(?,?,?,?,?,?,?,?)");
                    let o = &orders[i];
                    let created = Some(to_sql(o.created_ms));
                    values.extend([
                        Some(to_sql(o.order_no)),
                        Some(to_sql(o.user_id)),
                        Some(to_sql(o.goods_id)),
                        Some(i64::from(o.state as u8)),
                        (o.state != OrderState::Cancelled).then_some(1),
                        created,
                        Some(to_sql(o.pay_by_ms)),
                        created,
                    ]);
                }
                sql.push_str(" ON CONFLICT DO NOTHING");
                let inserted = tx
                    .prepare_cached(&sql)
                    .and_then(|mut stmt| stmt.execute(rusqlite::params_from_iter(values)))
                    .map_err(unavailable)?;
                if inserted == chunk.len() {
                    chunk.iter().for_each(|&i| written[i] = Some(Written::Stored));
                }
            }
            // The rest row by row: refused rows, and goods whose users may
            // hold several orders (each takes the first free slot).
            for (i, o) in orders.iter().enumerate() {
                if written[i].is_none() {
                    written[i] = Some(place(tx, o, limits[&o.goods_id])?);
                }
            }
            Ok(written.into_iter().flatten().collect())
        })
    }

    fn do_live_holders(&self, goods: GoodsId) -> Result<Vec<(UserId, OrderNo)>, StoreError> {
        let conn = self.reader.lock();
        let mut stmt = conn
            .prepare_cached(
                "SELECT user_id, order_no FROM orders WHERE goods_id = ?1 AND live_slot IS NOT NULL",
            )
            .map_err(unavailable)?;
        let rows = stmt
            .query_map([to_sql(goods)], |r| {
                Ok((from_sql(r.get(0)?), from_sql(r.get(1)?)))
            })
            .map_err(unavailable)?;
        rows.collect::<Result<_, _>>().map_err(unavailable)
    }

    fn do_find_order(
        &self,
        user: UserId,
        goods: GoodsId,
    ) -> Result<Option<OrderRecord>, StoreError> {
        let conn = self.reader.lock();
        conn.prepare_cached(&format!(
            "SELECT {ORDER_COLUMNS} FROM orders
             WHERE user_id = ?1 AND goods_id = ?2 AND live_slot IS NOT NULL
             ORDER BY live_slot LIMIT 1"
        ))
        .and_then(|mut stmt| {
            stmt.query_row([to_sql(user), to_sql(goods)], order_from_row)
                .optional()
        })
        .map_err(unavailable)
    }

    fn do_orders_of(&self, user: UserId, max: usize) -> Result<Vec<OrderRecord>, StoreError> {
        let conn = self.reader.lock();
        let mut stmt = conn
            .prepare_cached(&format!(
                "SELECT {ORDER_COLUMNS} FROM orders WHERE user_id = ?1
                 ORDER BY created_ms DESC, order_no DESC LIMIT ?2"
            ))
            .map_err(unavailable)?;
        let rows = stmt
            .query_map(params![to_sql(user), max as i64], order_from_row)
            .map_err(unavailable)?;
        rows.collect::<Result<_, _>>().map_err(unavailable)
    }

    /// PAY and CANCEL: `decide` says what a created order becomes. The
    /// writer connection serializes every change of an order, so the state
    /// read here is the one the update applies to.
    fn settle(
        &self,
        user: UserId,
        order_no: OrderNo,
        how: Settle,
    ) -> Result<Option<Settled>, StoreError> {
        self.write(|tx| {
            let Some(order) = order_by_no(tx, order_no)?.filter(|o| o.user_id == user) else {
                return Ok(None);
            };
            let (settled, change) = how.apply(order);
            if let Some(to) = change {
                set_state(tx, order_no, to)?;
            }
            Ok(Some(settled))
        })
    }

    fn do_expire_due(&self, now_ms: u64, max: usize) -> Result<Vec<OrderRecord>, StoreError> {
        self.write(|tx| {
            let due: Vec<OrderRecord> = tx
                .prepare_cached(&format!(
                    "SELECT {ORDER_COLUMNS} FROM orders WHERE state = 0 AND pay_by_ms <= ?1
                     ORDER BY pay_by_ms LIMIT ?2"
                ))
                .and_then(|mut stmt| {
                    stmt.query_map(params![to_sql(now_ms), max as i64], order_from_row)?
                        .collect()
                })
                .map_err(unavailable)?;
            let mut expired = Vec::with_capacity(due.len());
            for mut o in due {
                set_state(tx, o.order_no, OrderState::Cancelled)?;
                o.state = OrderState::Cancelled;
                expired.push(o);
            }
            Ok(expired)
        })
    }
}

impl OrderStore for SqliteStore {
    fn goods(&self) -> Result<Vec<GoodsRecord>, StoreError> {
        self.tracked(self.do_goods())
    }

    fn add_goods(&self, goods: &NewGoods) -> Result<GoodsRecord, StoreError> {
        self.tracked(self.do_add_goods(goods))
    }

    fn restock(&self, goods: GoodsId, amount: u32) -> Result<GoodsRecord, StoreError> {
        self.tracked(self.do_restock(goods, amount))
    }

    fn save_sale(
        &self,
        goods: GoodsId,
        paused: bool,
        start_ms: u64,
        end_ms: u64,
    ) -> Result<GoodsRecord, StoreError> {
        self.tracked(self.do_save_sale(goods, paused, start_ms, end_ms))
    }

    fn insert_orders(&self, orders: &[OrderRecord]) -> Result<Vec<Written>, StoreError> {
        self.tracked(self.do_insert_orders(orders))
    }

    fn live_holders(&self, goods: GoodsId) -> Result<Vec<(UserId, OrderNo)>, StoreError> {
        self.tracked(self.do_live_holders(goods))
    }

    fn find_order(&self, user: UserId, goods: GoodsId) -> Result<Option<OrderRecord>, StoreError> {
        self.tracked(self.do_find_order(user, goods))
    }

    fn orders_of(&self, user: UserId, max: usize) -> Result<Vec<OrderRecord>, StoreError> {
        self.tracked(self.do_orders_of(user, max))
    }

    fn stored(&self, order_nos: &[OrderNo]) -> Result<Vec<OrderNo>, StoreError> {
        let conn = self.reader.lock();
        let found = order_nos.iter().try_fold(Vec::new(), |mut found, &n| {
            if order_by_no(&conn, n)?.is_some() {
                found.push(n);
            }
            Ok(found)
        });
        self.tracked(found)
    }

    fn pay(
        &self,
        user: UserId,
        order_no: OrderNo,
        now_ms: u64,
    ) -> Result<Option<Settled>, StoreError> {
        self.tracked(self.settle(user, order_no, Settle::Pay { now_ms }))
    }

    fn cancel(&self, user: UserId, order_no: OrderNo) -> Result<Option<Settled>, StoreError> {
        self.tracked(self.settle(user, order_no, Settle::Cancel))
    }

    fn expire_due(&self, now_ms: u64, max: usize) -> Result<Vec<OrderRecord>, StoreError> {
        self.tracked(self.do_expire_due(now_ms, max))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn orders_round_trip_and_batches_are_idempotent() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("t.db")).unwrap();
        let g = store
            .add_goods(&NewGoods {
                name: "phone".into(),
                price_cents: 100,
                stock: 5,
                start_ms: 0,
                end_ms: 10,
                rules: SaleRules::default(),
            })
            .unwrap();
        let batch: Vec<_> = (0..1200).map(|i| order(1000 + i, i, g.id, NEVER)).collect();
        let stored = vec![Written::Stored; batch.len()];
        assert_eq!(store.insert_orders(&batch).unwrap(), stored);
        // The same batch again is a no-op, not an error.
        assert_eq!(store.insert_orders(&batch).unwrap(), stored);
        assert_eq!(store.live_holders(g.id).unwrap().len(), 1200);
        let found = store.find_order(7, g.id).unwrap().unwrap();
        assert_eq!(found.order_no, 1007);
        assert_eq!(store.find_order(7, g.id + 1).unwrap(), None);
        // A second live order for a user is refused by the database itself,
        // and only that row: the rest of the batch is written.
        let written = store
            .insert_orders(&[order(5000, 5000, g.id, NEVER), order(5001, 7, g.id, NEVER)])
            .unwrap();
        assert_eq!(written, [Written::Stored, Written::Duplicate(1007)]);
        assert_eq!(
            store.find_order(5000, g.id).unwrap().unwrap().order_no,
            5000
        );
        assert_eq!(store.find_order(7, g.id).unwrap().unwrap().order_no, 1007);
        assert_eq!(store.restock(g.id, 3).unwrap().total, 8);
        assert!(matches!(
            store.restock(99, 1),
            Err(StoreError::UnknownGoods(99))
        ));
    }

    fn store_with_goods(limit: u8) -> (tempfile::TempDir, SqliteStore, GoodsId) {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("t.db")).unwrap();
        let g = store
            .add_goods(&NewGoods {
                name: "phone".into(),
                price_cents: 100,
                stock: 100,
                start_ms: 0,
                end_ms: u64::MAX,
                rules: SaleRules {
                    per_user_limit: limit,
                    pay_window_ms: 1000,
                    token_required: false,
                },
            })
            .unwrap();
        (dir, store, g.id)
    }

    /// A payment deadline that never comes.
    const NEVER: u64 = u64::MAX;

    fn order(order_no: u64, user_id: u64, goods_id: u64, pay_by_ms: u64) -> OrderRecord {
        OrderRecord {
            order_no,
            user_id,
            goods_id,
            state: OrderState::Created,
            created_ms: order_no,
            pay_by_ms,
        }
    }

    #[test]
    fn pay_and_cancel_settle_an_order_once() {
        let (_dir, store, g) = store_with_goods(1);
        store
            .insert_orders(&[order(1, 10, g, 100), order(2, 20, g, 100)])
            .unwrap();
        // Someone else's order, or no order: nothing.
        assert_eq!(store.pay(99, 1, 50).unwrap(), None);
        assert_eq!(store.cancel(10, 3).unwrap(), None);

        let paid = store.pay(10, 1, 50).unwrap().unwrap();
        assert_eq!(paid.order.state, OrderState::Paid);
        assert!(!paid.cancelled_now);
        // Paid again: the same, and a paid order is not cancelled.
        assert_eq!(store.pay(10, 1, 60).unwrap().unwrap().order, paid.order);
        let kept = store.cancel(10, 1).unwrap().unwrap();
        assert_eq!(
            (kept.order.state, kept.cancelled_now),
            (OrderState::Paid, false)
        );

        let cancelled = store.cancel(20, 2).unwrap().unwrap();
        assert_eq!(
            (cancelled.order.state, cancelled.cancelled_now),
            (OrderState::Cancelled, true)
        );
        // Only the first cancel cancelled it; a PAY after it cannot revive it.
        assert!(!store.cancel(20, 2).unwrap().unwrap().cancelled_now);
        let late = store.pay(20, 2, 50).unwrap().unwrap();
        assert_eq!(
            (late.order.state, late.cancelled_now),
            (OrderState::Cancelled, false)
        );
        // The cancelled order holds no slot: its user may buy again.
        assert_eq!(store.live_holders(g).unwrap(), vec![(10, 1)]);
        assert_eq!(
            store.insert_orders(&[order(3, 20, g, 100)]).unwrap(),
            [Written::Stored]
        );
        let listed: Vec<_> = store.orders_of(20, 10).unwrap();
        assert_eq!(
            listed
                .iter()
                .map(|o| (o.order_no, o.state))
                .collect::<Vec<_>>(),
            [(3, OrderState::Created), (2, OrderState::Cancelled)]
        );
    }

    #[test]
    fn expiry_cancels_what_is_due_once_and_a_late_pay_cancels_too() {
        let (_dir, store, g) = store_with_goods(1);
        store
            .insert_orders(&[
                order(1, 1, g, 100),
                order(2, 2, g, 200),
                order(3, 3, g, 100),
            ])
            .unwrap();
        store.pay(3, 3, 99).unwrap();
        let expired = store.expire_due(150, 10).unwrap();
        assert_eq!(
            expired.iter().map(|o| o.order_no).collect::<Vec<_>>(),
            [1],
            "only the unpaid order past its window"
        );
        assert!(store.expire_due(150, 10).unwrap().is_empty(), "once");
        // PAY at or past the end of the window cancels instead.
        let late = store.pay(2, 2, 200).unwrap().unwrap();
        assert_eq!(
            (late.order.state, late.cancelled_now),
            (OrderState::Cancelled, true)
        );
        assert!(store.expire_due(1000, 10).unwrap().is_empty());
    }

    #[test]
    fn a_purchase_limit_gives_each_order_a_slot_and_refuses_past_it() {
        let (_dir, store, g) = store_with_goods(3);
        let batch: Vec<_> = (1..=4).map(|n| order(n, 7, g, 100)).collect();
        assert_eq!(
            store.insert_orders(&batch).unwrap(),
            [
                Written::Stored,
                Written::Stored,
                Written::Stored,
                Written::Duplicate(1)
            ]
        );
        // A retried batch is stored, not refused; a cancel frees a slot.
        assert_eq!(
            store.insert_orders(&batch[..3]).unwrap(),
            [Written::Stored; 3]
        );
        store.cancel(7, 2).unwrap();
        assert_eq!(
            store.insert_orders(&[order(5, 7, g, 100)]).unwrap(),
            [Written::Stored]
        );
        let mut live = store.live_holders(g).unwrap();
        live.sort_unstable();
        assert_eq!(live, [(7, 1), (7, 3), (7, 5)]);
    }

    /// A queued order refused as a second live order is written as
    /// cancelled (it needs no slot, even with the user at the limit); its
    /// entry read again later finds it stored, not a free slot.
    #[test]
    fn a_refused_order_written_as_cancelled_stays_cancelled() {
        for limit in [1, 2] {
            let (_dir, store, g) = store_with_goods(limit);
            let held: Vec<_> = (1..=u64::from(limit))
                .map(|n| order(n, 7, g, 100))
                .collect();
            store.insert_orders(&held).unwrap();
            let refused = order(80, 7, g, 100);
            assert_eq!(
                store.insert_orders(std::slice::from_ref(&refused)).unwrap(),
                [Written::Duplicate(1)]
            );
            let tombstone = OrderRecord {
                state: OrderState::Cancelled,
                ..refused.clone()
            };
            assert_eq!(
                store.insert_orders(&[tombstone]).unwrap(),
                [Written::Stored]
            );
            store.cancel(7, 1).unwrap();
            assert_eq!(store.insert_orders(&[refused]).unwrap(), [Written::Stored]);
            assert!(store.live_holders(g).unwrap().iter().all(|&(_, n)| n != 80));
            assert_eq!(store.stored(&[80, 81]).unwrap(), [80]);
        }
    }

    #[test]
    fn sale_controls_are_saved() {
        let (_dir, store, g) = store_with_goods(1);
        let saved = store.save_sale(g, true, 5, 6).unwrap();
        assert!(saved.paused);
        assert_eq!((saved.start_ms, saved.end_ms), (5, 6));
        assert_eq!(store.goods().unwrap()[0], saved);
        assert!(matches!(
            store.save_sale(g + 1, false, 1, 2),
            Err(StoreError::UnknownGoods(_))
        ));
    }
}
