//! The SQL of the SQLite order store: its columns, rows and statements.

use rusqlite::{params, Connection, OptionalExtension, Row};
use seckill_proto::{OrderState, SaleRules};

use super::Failure;
use crate::clock::now_ms;
use crate::store::batch::{Fence, GoodsRowsHeld, Table};
use crate::store::{Epoch, GoodsId, GoodsRecord, OrderNo, OrderRecord, StoreError, UserId};

/// Rows per INSERT statement: well under SQLite's limit on bound variables.
pub(super) const ROWS_PER_INSERT: usize = 400;

// SQLite integers are i64; ids are u64 on the wire. They are stored bit for
// bit, so an id above i64::MAX reads back as itself. But SQL compares them
// signed: a timestamp above i64::MAX (a window or payment deadline
// "forever") is negative to it, and a comparison with the clock says
// `BETWEEN 0 AND ?now` where it means `<= ?now`.
pub(super) fn to_sql(v: u64) -> i64 {
    v as i64
}

pub(super) fn from_sql(v: i64) -> u64 {
    v as u64
}

pub(super) const GOODS_COLUMNS: &str =
    "id, name, price_cents, total, start_ms, end_ms, per_user_limit, pay_window_ms, token_required, paused, sale_version, buckets, live_orders";

pub(super) fn goods_from_row(row: &Row<'_>) -> rusqlite::Result<GoodsRecord> {
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
        sale_version: from_sql(row.get(10)?),
        buckets: row.get(11)?,
        live_orders: from_sql(row.get(12)?),
    })
}

pub(super) const ORDER_COLUMNS: &str = "order_no, user_id, goods_id, state, created_ms, pay_by_ms";

pub(super) fn order_from_row(row: &Row<'_>) -> rusqlite::Result<OrderRecord> {
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

pub(super) fn goods_by_id(conn: &Connection, id: GoodsId) -> Result<GoodsRecord, Failure> {
    let sql = format!("SELECT {GOODS_COLUMNS} FROM goods WHERE id = ?1");
    let goods = conn
        .query_row(&sql, [to_sql(id)], goods_from_row)
        .optional()?;
    Ok(goods.ok_or(StoreError::UnknownGoods(id))?)
}

/// The order of this number, if any.
pub(super) fn order_by_no(
    conn: &Connection,
    order_no: OrderNo,
) -> rusqlite::Result<Option<OrderRecord>> {
    conn.prepare_cached(&format!(
        "SELECT {ORDER_COLUMNS} FROM orders WHERE order_no = ?1"
    ))?
    .query_row([to_sql(order_no)], order_from_row)
    .optional()
}

/// Moves a created order to `to`; a cancelled one gives up its slot (and
/// the caller gives its goods one live order back: [`give_back_live`]).
/// Whether it moved (it was created).
pub(super) fn set_state(
    conn: &Connection,
    order_no: OrderNo,
    to: OrderState,
) -> rusqlite::Result<bool> {
    let changed = conn
        .prepare_cached(
            "UPDATE orders SET state = ?1,
                 live_slot = CASE WHEN ?1 = 2 THEN NULL ELSE live_slot END, updated_ms = ?2
             WHERE order_no = ?3 AND state = 0",
        )?
        .execute(params![to as u8, to_sql(now_ms()), to_sql(order_no)])?;
    Ok(changed == 1)
}

/// Takes `orders` cancelled orders off a goods' live orders.
pub(super) fn give_back_live(
    conn: &Connection,
    goods: GoodsId,
    orders: u64,
) -> rusqlite::Result<()> {
    conn.prepare_cached("UPDATE goods SET live_orders = MAX(live_orders - ?1, 0) WHERE id = ?2")?
        .execute(params![to_sql(orders), to_sql(goods)])?;
    Ok(())
}

/// The statements of a batch write ([`super::batch`]), on the writer
/// inside the batch's transaction.
pub(super) struct Batch<'c>(pub(super) &'c Connection);

impl Table for Batch<'_> {
    type Error = Failure;
    const ROWS_PER_INSERT: usize = ROWS_PER_INSERT;

    /// The unpaid mark is for a sweep by goods: this store's reads all
    /// orders by due time (`orders_due`), and keeps none.
    fn fence(
        &mut self,
        goods: GoodsId,
        epoch: Epoch,
        orders: u32,
        _unpaid_until_ms: u64,
    ) -> Result<Fence, Failure> {
        let changed = self.0.execute(
            "UPDATE goods SET orders_written = orders_written + ?1,
                 live_orders = live_orders + ?1
             WHERE id = ?2 AND epoch = ?3 AND live_orders + ?1 <= total",
            params![orders, to_sql(goods), to_sql(epoch)],
        )?;
        if changed == 1 {
            return Ok(Fence::Taken);
        }
        let at: Option<i64> = self
            .0
            .query_row(
                "SELECT epoch FROM goods WHERE id = ?1",
                params![to_sql(goods)],
                |r| r.get(0),
            )
            .optional()?;
        Ok(match at {
            Some(at) if from_sql(at) == epoch => Fence::Full,
            _ => Fence::Moved,
        })
    }

    fn add_live(&mut self, goods: GoodsId, delta: i64, _: u64) -> Result<(), Failure> {
        self.0.execute(
            "UPDATE goods SET live_orders = MAX(live_orders + ?1, 0) WHERE id = ?2",
            params![delta, to_sql(goods)],
        )?;
        Ok(())
    }

    fn per_user_limit(&mut self, goods: GoodsId) -> Result<u8, Failure> {
        Ok(goods_by_id(self.0, goods)?.rules.per_user_limit)
    }

    fn insert_chunk(
        &mut self,
        _: &GoodsRowsHeld,
        orders: &[&OrderRecord],
    ) -> Result<bool, Failure> {
        let mut sql = String::from(
            "INSERT INTO orders (order_no, user_id, goods_id, state, live_slot, created_ms, pay_by_ms, updated_ms) VALUES ",
        );
        let mut values: Vec<Option<i64>> = Vec::with_capacity(orders.len() * 8);
        for (n, o) in orders.iter().enumerate() {
            if n > 0 {
                sql.push(',');
            }
            sql.push_str("(?,?,?,?,?,?,?,?)");
            let created = Some(to_sql(o.created_ms));
            values.extend([
                Some(to_sql(o.order_no)),
                Some(to_sql(o.user_id)),
                Some(to_sql(o.goods_id)),
                Some(i64::from(o.state as u8)),
                // A cancelled order holds no slot.
                (o.state != OrderState::Cancelled).then_some(1),
                created,
                Some(to_sql(o.pay_by_ms)),
                created,
            ]);
        }
        let mut stmt = self.0.prepare_cached(&sql)?;
        match stmt.execute(rusqlite::params_from_iter(values)) {
            Ok(_) => Ok(true),
            // A row hit a unique key: SQLite undid the statement (ABORT,
            // the default), not the transaction.
            Err(rusqlite::Error::SqliteFailure(e, _))
                if matches!(
                    e.extended_code,
                    rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE
                        | rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY
                ) =>
            {
                Ok(false)
            }
            Err(e) => Err(e.into()),
        }
    }

    fn owners(
        &mut self,
        order_nos: &[OrderNo],
    ) -> Result<Vec<(OrderNo, UserId, GoodsId)>, Failure> {
        // At most a chunk's numbers (ROWS_PER_INSERT), well within SQLite's
        // limit on parameters. Cached: one number (a row placed on its own)
        // is the common case.
        let marks = vec!["?"; order_nos.len()].join(",");
        let mut stmt = self.0.prepare_cached(&format!(
            "SELECT order_no, user_id, goods_id FROM orders WHERE order_no IN ({marks})"
        ))?;
        let rows = stmt.query_map(
            rusqlite::params_from_iter(order_nos.iter().map(|&n| to_sql(n))),
            |r| {
                Ok((
                    from_sql(r.get(0)?),
                    from_sql(r.get(1)?),
                    from_sql(r.get(2)?),
                ))
            },
        )?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    fn live_slots(&mut self, goods: GoodsId, user: UserId) -> Result<Vec<(OrderNo, u8)>, Failure> {
        let mut stmt = self.0.prepare_cached(
            "SELECT order_no, live_slot FROM orders
             WHERE goods_id = ?1 AND user_id = ?2 AND live_slot IS NOT NULL ORDER BY live_slot",
        )?;
        let rows = stmt.query_map([to_sql(goods), to_sql(user)], |r| {
            Ok((from_sql(r.get(0)?), r.get(1)?))
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    fn insert(
        &mut self,
        _: &GoodsRowsHeld,
        o: &OrderRecord,
        slot: Option<u8>,
    ) -> Result<(), Failure> {
        let created = to_sql(o.created_ms);
        self.0
            .prepare_cached(
                "INSERT INTO orders (order_no, user_id, goods_id, state, live_slot, created_ms, pay_by_ms, updated_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?6)",
            )?
            .execute(params![
                to_sql(o.order_no),
                to_sql(o.user_id),
                to_sql(o.goods_id),
                o.state as u8,
                slot,
                created,
                to_sql(o.pay_by_ms)
            ])?;
        Ok(())
    }
}
