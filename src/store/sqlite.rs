//! The embedded order store: goods and orders in one SQLite file.
//!
//! Durability is the point of this store, so the file runs in WAL mode with
//! `synchronous = FULL`: a commit has reached the disk before a client is
//! told "ok". Group commit (one transaction per batch) keeps that affordable.

use std::path::Path;

use parking_lot::Mutex;
use rusqlite::{params, Connection, OptionalExtension, Row};
use seckill_proto::{NewGoods, OrderState};

use super::outage::Outage;
use super::{GoodsId, GoodsRecord, OrderNo, OrderRecord, OrderStore, StoreError, UserId, Written};
use crate::clock::now_ms;

/// The schema. `orders_one_live` is the database's own guard of "one live
/// order per user per goods"; cancelled orders fall outside it, so a user
/// can buy again after a cancel.
const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS goods (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    name        TEXT    NOT NULL,
    price_cents INTEGER NOT NULL,
    total       INTEGER NOT NULL,
    start_ms    INTEGER NOT NULL,
    end_ms      INTEGER NOT NULL,
    created_ms  INTEGER NOT NULL,
    updated_ms  INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS orders (
    order_no    INTEGER PRIMARY KEY,
    user_id     INTEGER NOT NULL,
    goods_id    INTEGER NOT NULL REFERENCES goods(id),
    state       INTEGER NOT NULL DEFAULT 0,
    created_ms  INTEGER NOT NULL,
    updated_ms  INTEGER NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS orders_one_live
    ON orders (goods_id, user_id) WHERE state != 2;
";

/// Rows per INSERT statement: well under SQLite's limit on bound variables.
const ROWS_PER_INSERT: usize = 500;

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

fn goods_from_row(row: &Row<'_>) -> rusqlite::Result<GoodsRecord> {
    Ok(GoodsRecord {
        id: from_sql(row.get(0)?),
        name: row.get(1)?,
        price_cents: from_sql(row.get(2)?),
        total: row.get(3)?,
        start_ms: from_sql(row.get(4)?),
        end_ms: from_sql(row.get(5)?),
    })
}

const GOODS_COLUMNS: &str = "id, name, price_cents, total, start_ms, end_ms";

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
        let reader = open().map_err(unavailable)?;
        Ok(SqliteStore {
            writer: Mutex::new(writer),
            reader: Mutex::new(reader),
            outage: Outage::new("sqlite order store"),
        })
    }

    /// What became of an order whose chunk did not insert every row: it is
    /// stored if the user's live order of the goods carries its number.
    fn outcome(conn: &Connection, o: &OrderRecord) -> Result<Written, StoreError> {
        let live: Option<i64> = conn
            .prepare_cached(
                "SELECT order_no FROM orders WHERE goods_id = ?1 AND user_id = ?2 AND state != 2",
            )
            .and_then(|mut stmt| {
                stmt.query_row([to_sql(o.goods_id), to_sql(o.user_id)], |r| r.get(0))
                    .optional()
            })
            .map_err(unavailable)?;
        match live.map(from_sql) {
            Some(n) if n == o.order_no => Ok(Written::Stored),
            Some(n) => Ok(Written::Duplicate(n)),
            // The number is taken by another user's or a cancelled order:
            // order numbers are unique by construction, so this is a bug.
            None => Err(StoreError::Inconsistent(format!(
                "order number {} is already used",
                o.order_no
            ))),
        }
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
            "INSERT INTO goods (name, price_cents, total, start_ms, end_ms, created_ms, updated_ms)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6)",
            params![
                goods.name,
                to_sql(goods.price_cents),
                goods.stock,
                to_sql(goods.start_ms),
                to_sql(goods.end_ms),
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

    fn do_insert_orders(&self, orders: &[OrderRecord]) -> Result<Vec<Written>, StoreError> {
        let mut conn = self.writer.lock();
        let tx = conn.transaction().map_err(unavailable)?;
        let mut written = Vec::with_capacity(orders.len());
        for chunk in orders.chunks(ROWS_PER_INSERT) {
            // One multi-row INSERT per chunk. A row that hits a unique key (a
            // repeated order number, or a second live order of a user) is
            // skipped rather than failing the batch; the rare chunk where
            // that happened is then looked at row by row.
            let mut sql = String::from(
                "INSERT INTO orders (order_no, user_id, goods_id, state, created_ms, updated_ms) VALUES ",
            );
            for i in 0..chunk.len() {
                if i > 0 {
                    sql.push(',');
                }
                sql.push_str("(?,?,?,?,?,?)");
            }
            sql.push_str(" ON CONFLICT DO NOTHING");
            let mut values: Vec<i64> = Vec::with_capacity(chunk.len() * 6);
            for o in chunk {
                let created = to_sql(o.created_ms);
                values.extend([
                    to_sql(o.order_no),
                    to_sql(o.user_id),
                    to_sql(o.goods_id),
                    i64::from(o.state as u8),
                    created,
                    created,
                ]);
            }
            let inserted = tx
                .prepare_cached(&sql)
                .and_then(|mut stmt| stmt.execute(rusqlite::params_from_iter(values)))
                .map_err(unavailable)?;
            if inserted == chunk.len() {
                written.extend(chunk.iter().map(|_| Written::Stored));
                continue;
            }
            for o in chunk {
                written.push(Self::outcome(&tx, o)?);
            }
        }
        // A COMMIT that fails on the way to the disk may still be found in
        // the WAL after a crash: its outcome is not known.
        tx.commit()
            .map_err(|e| StoreError::Indeterminate(format!("sqlite commit: {e}")))?;
        Ok(written)
    }

    fn do_live_holders(&self, goods: GoodsId) -> Result<Vec<(UserId, OrderNo)>, StoreError> {
        let conn = self.reader.lock();
        let mut stmt = conn
            .prepare_cached(
                "SELECT user_id, order_no FROM orders WHERE goods_id = ?1 AND state != 2",
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
        let found = conn
            .query_row(
                "SELECT order_no, state, created_ms FROM orders
                 WHERE user_id = ?1 AND goods_id = ?2 AND state != 2",
                [to_sql(user), to_sql(goods)],
                |r| Ok((from_sql(r.get(0)?), r.get::<_, u8>(1)?, from_sql(r.get(2)?))),
            )
            .optional()
            .map_err(unavailable)?;
        let Some((order_no, state, created_ms)) = found else {
            return Ok(None);
        };
        let state = OrderState::from_u8(state).ok_or_else(|| {
            StoreError::Inconsistent(format!("order {order_no} has state {state}"))
        })?;
        Ok(Some(OrderRecord {
            order_no,
            user_id: user,
            goods_id: goods,
            state,
            created_ms,
        }))
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

    fn insert_orders(&self, orders: &[OrderRecord]) -> Result<Vec<Written>, StoreError> {
        self.tracked(self.do_insert_orders(orders))
    }

    fn live_holders(&self, goods: GoodsId) -> Result<Vec<(UserId, OrderNo)>, StoreError> {
        self.tracked(self.do_live_holders(goods))
    }

    fn find_order(&self, user: UserId, goods: GoodsId) -> Result<Option<OrderRecord>, StoreError> {
        self.tracked(self.do_find_order(user, goods))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn order(order_no: u64, user_id: u64, goods_id: u64) -> OrderRecord {
        OrderRecord {
            order_no,
            user_id,
            goods_id,
            state: OrderState::Created,
            created_ms: 1,
        }
    }

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
            })
            .unwrap();
        let batch: Vec<_> = (0..1200).map(|i| order(1000 + i, i, g.id)).collect();
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
            .insert_orders(&[order(5000, 5000, g.id), order(5001, 7, g.id)])
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
}
