//! The SQL of the MySQL order store: its columns, rows and statements.

use ::mysql::prelude::Queryable;
use ::mysql::PooledConn;
use seckill_proto::{OrderState, SaleRules};

use super::calls::Failure;
use super::errors::DUPLICATE_KEY;
use super::load::{is_refusal, load_chunk, Loads};
use crate::store::batch::{Fence, GoodsRowsHeld, Table};
use crate::store::{Epoch, GoodsId, GoodsRecord, OrderNo, OrderRecord, StoreError, UserId};

/// Rows per INSERT statement: about 100 kB of SQL, far under any
/// `max_allowed_packet`.
pub(super) const ROWS_PER_INSERT: usize = 1000;

pub(super) const GOODS_COLUMNS: &str =
    "id, name, price_cents, total, start_ms, end_ms, per_user_limit, pay_window_ms, token_required, state, sale_version, buckets, live_orders";

/// A row of [`GOODS_COLUMNS`]: one column more than the crate reads into
/// a tuple.
pub(super) struct GoodsRow(GoodsRecord);

impl ::mysql::prelude::FromRow for GoodsRow {
    fn from_row_opt(row: ::mysql::Row) -> Result<Self, ::mysql::FromRowError> {
        fn col<T: ::mysql::prelude::FromValue>(row: &::mysql::Row, i: usize) -> Option<T> {
            row.get_opt(i)?.ok()
        }
        let record = (|| {
            Some(GoodsRecord {
                id: col(&row, 0)?,
                name: col(&row, 1)?,
                price_cents: col(&row, 2)?,
                total: col(&row, 3)?,
                start_ms: col(&row, 4)?,
                end_ms: col(&row, 5)?,
                rules: SaleRules {
                    per_user_limit: col(&row, 6)?,
                    pay_window_ms: col(&row, 7)?,
                    token_required: col(&row, 8)?,
                },
                paused: col::<u8>(&row, 9)? == PAUSED,
                sale_version: col(&row, 10)?,
                buckets: col(&row, 11)?,
                live_orders: col(&row, 12)?,
            })
        })();
        match (record, row.len()) {
            (Some(record), 13) => Ok(GoodsRow(record)),
            _ => Err(::mysql::FromRowError(row)),
        }
    }
}

pub(super) const ORDER_COLUMNS: &str = "order_no, user_id, goods_id, state, created_ms, pay_by_ms";

pub(super) type OrderRow = (u64, u64, u64, u8, u64, u64);

/// The database's clock, Unix ms, whatever the session's time zone.
pub(super) fn db_clock_ms(conn: &mut impl Queryable) -> ::mysql::Result<Option<u64>> {
    conn.query_first("SELECT CAST(UNIX_TIMESTAMP(NOW(3)) * 1000 AS UNSIGNED)")
}

/// `goods.state` of a paused sale.
pub(super) const PAUSED: u8 = 1;

pub(super) fn goods_record(row: GoodsRow) -> GoodsRecord {
    row.0
}

pub(super) fn order_record(row: OrderRow) -> Result<OrderRecord, StoreError> {
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

pub(super) fn goods_by_id(
    conn: &mut PooledConn,
    id: GoodsId,
) -> ::mysql::Result<Option<GoodsRecord>> {
    let row: Option<GoodsRow> = conn.exec_first(
        format!("SELECT {GOODS_COLUMNS} FROM goods WHERE id = ?"),
        (id,),
    )?;
    Ok(row.map(goods_record))
}

/// The order of this number, its row locked until the commit: an expiry
/// sweep or another server settling it waits, then sees the outcome.
pub(super) fn order_for_update(
    conn: &mut PooledConn,
    order_no: OrderNo,
) -> Result<Option<OrderRecord>, Failure> {
    let row: Option<OrderRow> = conn.exec_first(
        format!("SELECT {ORDER_COLUMNS} FROM orders WHERE order_no = ? FOR UPDATE"),
        (order_no,),
    )?;
    Ok(row.map(order_record).transpose()?)
}

/// Moves a created order on; a cancelled one gives up its slot (and the
/// caller gives its goods one live order back: [`give_back_live`]). Whether
/// it moved (it was created).
pub(super) fn set_state(
    conn: &mut PooledConn,
    order_no: OrderNo,
    to: OrderState,
) -> ::mysql::Result<bool> {
    conn.exec_drop(
        "UPDATE orders SET state = ?, live_slot = IF(? = 2, NULL, live_slot)
         WHERE order_no = ? AND state = 0",
        (to as u8, to as u8, order_no),
    )?;
    Ok(conn.affected_rows() == 1)
}

/// Takes `orders` cancelled orders off a goods' live orders. Last in its
/// transaction: the goods' row is every order writer's too, and its lock is
/// held from here to the commit.
pub(super) fn give_back_live(
    conn: &mut PooledConn,
    goods: GoodsId,
    orders: u64,
) -> ::mysql::Result<()> {
    // Signed, as add_live's delta: an unsigned parameter would make MySQL
    // subtract unsigned, and a count below `orders` (one undercounted by an
    // older server) would fail the statement (1690, out of range) instead
    // of stopping at 0, and with it every cancel and expiry sweep.
    let orders = i64::try_from(orders).unwrap_or(i64::MAX);
    conn.exec_drop(
        "UPDATE goods SET live_orders = GREATEST(CAST(live_orders AS SIGNED) - ?, 0)
         WHERE id = ?",
        (orders, goods),
    )
}

/// Whether a chunk leaves `state` and `live_slot` to the table's defaults:
/// a table that has them (`live_defaults`), and created orders only.
fn defaulted(chunk: &[&OrderRecord], live_defaults: bool) -> bool {
    live_defaults && chunk.iter().all(|o| o.state == OrderState::Created)
}

/// One multi-row INSERT of a chunk of orders. The values are all integers
/// formatted here, so the text protocol is safe, and saves preparing a
/// statement of up to 6000 placeholders. With `live_defaults` (the table
/// gives `state` 0 and `live_slot` 1), a chunk of created orders leaves
/// both to the table.
fn insert_sql(chunk: &[&OrderRecord], live_defaults: bool) -> String {
    let defaulted = defaulted(chunk, live_defaults);
    let mut sql = String::with_capacity(120 + ROWS_PER_INSERT * 110);
    sql.push_str(match defaulted {
        true => "INSERT INTO orders (order_no, user_id, goods_id, created_ms, pay_by_ms) VALUES ",
        false => "INSERT INTO orders (order_no, user_id, goods_id, state, live_slot, created_ms, pay_by_ms) VALUES ",
    });
    let mut digits = itoa::Buffer::new();
    for (i, o) in chunk.iter().enumerate() {
        sql.push_str(if i > 0 { ",(" } else { "(" });
        sql.push_str(digits.format(o.order_no));
        sql.push(',');
        sql.push_str(digits.format(o.user_id));
        sql.push(',');
        sql.push_str(digits.format(o.goods_id));
        sql.push(',');
        if !defaulted {
            // A cancelled order holds no slot, so it never blocks a re-buy.
            let slot = if o.state == OrderState::Cancelled {
                "NULL"
            } else {
                "1"
            };
            sql.push_str(digits.format(o.state as u8));
            sql.push(',');
            sql.push_str(slot);
            sql.push(',');
        }
        sql.push_str(digits.format(o.created_ms));
        sql.push(',');
        sql.push_str(digits.format(o.pay_by_ms));
        sql.push(')');
    }
    sql
}

/// Order numbers or goods ids as the list of an `IN (...)`: integers only,
/// formatted here (as in a chunk's INSERT), so no placeholder list to build.
pub(super) fn id_list(ids: &[u64]) -> String {
    let mut list = String::with_capacity(ids.len() * 21);
    let mut digits = itoa::Buffer::new();
    for (i, &id) in ids.iter().enumerate() {
        if i > 0 {
            list.push(',');
        }
        list.push_str(digits.format(id));
    }
    list
}

/// The connection of a batch write's transaction, whether its chunks may
/// leave `state` and `live_slot` to the table's defaults, and whether such
/// chunks are loaded (the store's [`Loads`]).
pub(super) struct Rows<'c> {
    pub(super) conn: &'c mut PooledConn,
    pub(super) live_defaults: bool,
    pub(super) loads: &'c Loads,
}

impl std::ops::Deref for Rows<'_> {
    type Target = PooledConn;

    fn deref(&self) -> &PooledConn {
        self.conn
    }
}

impl std::ops::DerefMut for Rows<'_> {
    fn deref_mut(&mut self) -> &mut PooledConn {
        self.conn
    }
}

/// The statements of a batch write ([`crate::store::batch`]), on the
/// connection of its transaction. The locking reads see the latest committed
/// rows, not the transaction's snapshot.
impl Table for Rows<'_> {
    type Error = Failure;
    const ROWS_PER_INSERT: usize = ROWS_PER_INSERT;

    fn fence(
        &mut self,
        goods: GoodsId,
        epoch: Epoch,
        orders: u32,
        unpaid_until_ms: u64,
    ) -> Result<Fence, Failure> {
        // At READ COMMITTED an UPDATE whose WHERE does not match unlocks
        // the row at once, so the epoch read below may already see a
        // reconciliation that came after the UPDATE: the orders are then
        // called fenced rather than sold out, refused either way.
        self.exec_drop(
            "UPDATE goods SET orders_written = orders_written + ?, live_orders = live_orders + ?,
             unpaid_until_ms = GREATEST(unpaid_until_ms, ?)
             WHERE id = ? AND epoch = ? AND live_orders + ? <= total",
            (orders, orders, unpaid_until_ms, goods, epoch, orders),
        )?;
        if self.affected_rows() == 1 {
            return Ok(Fence::Taken);
        }
        let at: Option<Epoch> =
            self.exec_first("SELECT epoch FROM goods WHERE id = ?", (goods,))?;
        Ok(if at == Some(epoch) {
            Fence::Full
        } else {
            Fence::Moved
        })
    }

    fn add_live(
        &mut self,
        goods: GoodsId,
        delta: i64,
        unpaid_until_ms: u64,
    ) -> Result<(), Failure> {
        self.exec_drop(
            "UPDATE goods SET live_orders = GREATEST(CAST(live_orders AS SIGNED) + ?, 0),
             unpaid_until_ms = GREATEST(unpaid_until_ms, ?)
             WHERE id = ?",
            (delta, unpaid_until_ms, goods),
        )?;
        Ok(())
    }

    fn per_user_limit(&mut self, goods: GoodsId) -> Result<u8, Failure> {
        // A goods that is gone leaves its orders to the foreign key.
        let limit: Option<u8> =
            self.exec_first("SELECT per_user_limit FROM goods WHERE id = ?", (goods,))?;
        Ok(limit.unwrap_or(1))
    }

    fn insert_chunk(
        &mut self,
        _: &GoodsRowsHeld,
        orders: &[&OrderRecord],
    ) -> Result<bool, Failure> {
        if defaulted(orders, self.live_defaults) && self.loads.on() {
            match load_chunk(self.conn, orders) {
                Ok(all) => return Ok(all),
                // A node with `local_infile` turned off since it was asked,
                // or another node of the list: inserted until it is asked
                // again.
                Err(::mysql::Error::MySqlError(e)) if is_refusal(&e) => self.loads.refused(&e),
                Err(e) => return Err(e.into()),
            }
        }
        let sql = insert_sql(orders, self.live_defaults);
        match self.query_drop(sql) {
            Ok(()) => Ok(true),
            Err(::mysql::Error::MySqlError(e)) if e.code == DUPLICATE_KEY => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    fn owners(
        &mut self,
        order_nos: &[OrderNo],
    ) -> Result<Vec<(OrderNo, UserId, GoodsId)>, Failure> {
        // The unique key, named, as for every locking read here: a scan
        // would wait on other goods' rows that other batches just wrote.
        Ok(self.query(format!(
            "SELECT order_no, user_id, goods_id FROM orders FORCE INDEX (orders_order_no)
             WHERE order_no IN ({}) LOCK IN SHARE MODE",
            id_list(order_nos)
        ))?)
    }

    fn live_slots(&mut self, goods: GoodsId, user: UserId) -> Result<Vec<(OrderNo, u8)>, Failure> {
        // The unique key, named: a locking read through another index
        // (which an optimizer with poor statistics may pick) would lock
        // more than this user's slots of this goods. By its (user, goods)
        // prefix alone, the user's cancelled orders of the goods too (as
        // many as the user made), the slots sorted out here: with a
        // condition on live_slot in the WHERE, MariaDB 10.11 also locked
        // the entry past the range, at READ COMMITTED too, which with the
        // user first is the next user's order of any goods
        // (`an_order_batch_locks_no_gap_past_a_users_slots` shows it).
        let rows: Vec<(OrderNo, Option<u8>)> = self.exec(
            "SELECT order_no, live_slot FROM orders FORCE INDEX (orders_one_live)
             WHERE user_id = ? AND goods_id = ? FOR UPDATE",
            (user, goods),
        )?;
        let mut live: Vec<(OrderNo, u8)> = rows
            .into_iter()
            .filter_map(|(order_no, slot)| Some((order_no, slot?)))
            .collect();
        live.sort_unstable_by_key(|&(_, slot)| slot);
        Ok(live)
    }

    fn insert(
        &mut self,
        _: &GoodsRowsHeld,
        o: &OrderRecord,
        slot: Option<u8>,
    ) -> Result<(), Failure> {
        Ok(self.exec_drop(
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
        )?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_id_list_is_the_numbers_comma_separated() {
        assert_eq!(id_list(&[u64::MAX, 0, 7]), "18446744073709551615,0,7");
        assert_eq!(id_list(&[42]), "42");
    }

    #[test]
    fn a_chunk_is_one_insert_with_a_row_per_order_and_no_slot_for_a_cancelled_one() {
        let live = OrderRecord {
            order_no: u64::MAX,
            user_id: 7,
            goods_id: 3,
            state: OrderState::Created,
            created_ms: 1_700_000_000_000,
            pay_by_ms: 1_700_000_900_000,
        };
        let cancelled = OrderRecord {
            order_no: 0,
            state: OrderState::Cancelled,
            ..live.clone()
        };
        let every_column = "INSERT INTO orders (order_no, user_id, goods_id, state, live_slot, created_ms, pay_by_ms) VALUES \
             (18446744073709551615,7,3,0,1,1700000000000,1700000900000),\
             (0,7,3,2,NULL,1700000000000,1700000900000)";
        assert_eq!(insert_sql(&[&live, &cancelled], false), every_column);
        // A cancelled order in the chunk: every column, defaults or not.
        assert_eq!(insert_sql(&[&live, &cancelled], true), every_column);
    }

    /// Created orders only, on a table with schema.sql's defaults: state
    /// and live_slot left to them.
    #[test]
    fn a_chunk_of_created_orders_leaves_the_defaulted_columns_out() {
        let live = crate::store::fixtures::created(5, 7, 3);
        let other = OrderRecord {
            order_no: 6,
            user_id: 8,
            ..live.clone()
        };
        assert_eq!(
            insert_sql(&[&live, &other], true),
            "INSERT INTO orders (order_no, user_id, goods_id, created_ms, pay_by_ms) VALUES \
             (5,7,3,1,18446744073709551615),(6,8,3,1,18446744073709551615)"
        );
        assert!(insert_sql(&[&live], false).contains("state, live_slot"));
    }
}
