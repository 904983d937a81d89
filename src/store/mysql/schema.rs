//! The database and its tables, made from `schema.sql` at the repository
//! root: the one copy of the DDL, also run by hand by operators.

use ::mysql::prelude::Queryable;
use ::mysql::Conn;

/// The DDL, kept in one place: the tables are created from this file.
pub(super) const SCHEMA: &str = include_str!("../../../schema.sql");

/// Creates database `db` and its tables where they are missing, on a
/// connection to no database, and leaves the connection in `db`. Warns if
/// the server may lose a commit in a crash.
pub(super) fn create(conn: &mut Conn, db: &str) -> ::mysql::Result<()> {
    conn.query_drop(format!(
        "CREATE DATABASE IF NOT EXISTS {} CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci",
        quote_ident(db)
    ))?;
    conn.select_db(db)?;
    for ddl in table_ddl(SCHEMA) {
        conn.query_drop(ddl)?;
    }
    add_missing_columns(conn)?;
    let flush: Option<u64> = conn.query_first("SELECT @@innodb_flush_log_at_trx_commit")?;
    if flush != Some(1) {
        log::warn!(
            "mysql: innodb_flush_log_at_trx_commit is {flush:?}, not 1: \
             a crash of the database host may lose acknowledged orders"
        );
    }
    Ok(())
}

/// Columns that tables made by an older server lack, with their definition
/// in `schema.sql` (CREATE TABLE IF NOT EXISTS leaves such a table as it is)
/// and what fills them in on rows made before.
const ADDED_COLUMNS: &[(&str, &str, &str, Option<&str>)] = &[
    ("goods", "epoch", "BIGINT UNSIGNED NOT NULL DEFAULT 0", None),
    (
        "goods",
        "orders_written",
        "BIGINT UNSIGNED NOT NULL DEFAULT 0",
        None,
    ),
    (
        "goods",
        "sale_version",
        "BIGINT UNSIGNED NOT NULL DEFAULT 0",
        None,
    ),
    (
        "goods",
        "buckets",
        "SMALLINT UNSIGNED NOT NULL DEFAULT 1",
        None,
    ),
    (
        "goods",
        "live_orders",
        "BIGINT UNSIGNED NOT NULL DEFAULT 0",
        Some(COUNT_LIVE_ORDERS),
    ),
    (
        "goods",
        "unpaid_until_ms",
        "BIGINT UNSIGNED NOT NULL DEFAULT 0",
        Some(MARK_UNPAID),
    ),
];

/// `goods.unpaid_until_ms` as the orders say, for goods that had orders
/// before the column.
const MARK_UNPAID: &str = "UPDATE goods SET unpaid_until_ms = COALESCE((SELECT MAX(pay_by_ms)
     FROM orders WHERE orders.goods_id = goods.id AND orders.state = 0), 0)";

/// `goods.live_orders` as the orders say, for goods that had orders before
/// the column.
const COUNT_LIVE_ORDERS: &str = "UPDATE goods SET live_orders = (SELECT COUNT(*) FROM orders
     WHERE orders.goods_id = goods.id AND orders.live_slot IS NOT NULL)";

/// Adds the [`ADDED_COLUMNS`] a table of the connection's database lacks.
/// Asked first (`SHOW COLUMNS`), since MySQL (unlike MariaDB) has no ADD
/// COLUMN IF NOT EXISTS; two servers starting at once may both try, and the
/// loser's "duplicate column" is not an error.
///
/// The schema is read with `SHOW` statements on the text protocol, not
/// prepared statements on information_schema: MariaDB 10.11.19 crashed
/// (signal 11, freeing the temporary table of a re-executed prepared
/// information_schema.COLUMNS query) once under this test suite's load.
fn add_missing_columns(conn: &mut Conn) -> ::mysql::Result<()> {
    let mut columns: Option<(&str, Vec<Column>)> = None;
    for &(table, column, definition, fill) in ADDED_COLUMNS {
        if columns.as_ref().is_none_or(|(t, _)| *t != table) {
            columns = Some((table, show_columns(conn, table)?));
        }
        let present = columns
            .as_ref()
            .is_some_and(|(_, cs)| cs.iter().any(|c| c.name.eq_ignore_ascii_case(column)));
        if present {
            continue;
        }
        log::info!("mysql: adding column {table}.{column}");
        match conn.query_drop(format!(
            "ALTER TABLE {table} ADD COLUMN {column} {definition}"
        )) {
            Err(::mysql::Error::MySqlError(e)) if e.code == DUPLICATE_COLUMN => {}
            other => other?,
        }
        if let Some(fill) = fill {
            conn.query_drop(fill)?;
        }
    }
    Ok(())
}

/// The indexes of `orders` that the reads by goods and the expiry sweep
/// name: which ones depends on when the table was made (a table's indexes
/// are changed with the servers stopped: CHANGELOG.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Layout {
    pub(super) goods: GoodsIndex,
    pub(super) due: DueIndex,
}

/// The index through which a goods' orders are read by its `goods_id`
/// prefix (the live holders), named in the read so that a poor plan never
/// reads the whole table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum GoodsIndex {
    /// `orders_by_goods`, which leads with `goods_id`.
    ByGoods,
    /// A table made before the purchase-limit key led with the user:
    /// `orders_one_live (goods_id, user_id, live_slot)`.
    OneLive,
}

impl GoodsIndex {
    pub(super) fn name(self) -> &'static str {
        match self {
            GoodsIndex::ByGoods => "orders_by_goods",
            GoodsIndex::OneLive => "orders_one_live",
        }
    }
}

/// The count of a goods' live orders (`?`: its id). Read from the index
/// alone where `orders_by_goods` carries `state`, as `schema.sql` makes it:
/// live means created or paid there, which every write keeps in step with a
/// slot in `live_slot` (a cancel sets `state` and clears the slot in one
/// UPDATE; a cancelled order is written without one). An index without
/// `state` has each entry's row read for its `live_slot`: on this machine's
/// MariaDB, 102 ms against 16 ms for 120,000 live orders of a goods, held
/// up meanwhile (`recount_live`).
pub(super) fn live_count_sql(layout: Option<&Layout>) -> String {
    match layout {
        Some(Layout {
            goods,
            due: DueIndex::Due,
        }) => format!(
            "SELECT COUNT(*) FROM orders FORCE INDEX ({})
             WHERE goods_id = ? AND live_slot IS NOT NULL",
            goods.name()
        ),
        _ => "SELECT COUNT(*) FROM orders FORCE INDEX (orders_by_goods)
             WHERE goods_id = ? AND state IN (0, 1)"
            .into(),
    }
}

/// The index through which the expiry sweep finds created orders whose
/// payment window has closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum DueIndex {
    /// `orders_by_goods (goods_id, state, pay_by_ms)`, as `schema.sql` makes
    /// it: one range per goods.
    ByGoods,
    /// A table made before: `orders_due (state, pay_by_ms)`, one range.
    Due,
}

/// The [`Layout`] of the orders table of the connection's database, or
/// what it lacks (a table altered by hand half-way).
pub(super) fn layout(conn: &mut Conn) -> ::mysql::Result<Result<Layout, String>> {
    // Key_name, Seq_in_index and Column_name, by name: the columns of SHOW
    // INDEX differ between servers and versions.
    let mut columns: Vec<(String, u32, String)> = Vec::new();
    for row in conn.query::<::mysql::Row, _>("SHOW INDEX FROM orders")? {
        if let (Some(index), Some(seq), Some(column)) = (
            text(&row, "Key_name"),
            row.get_opt::<u32, _>("Seq_in_index").and_then(Result::ok),
            text(&row, "Column_name"),
        ) {
            columns.push((index, seq, column));
        }
    }
    columns.sort();
    let columns: Vec<(String, String)> = columns.into_iter().map(|(i, _, c)| (i, c)).collect();
    Ok(layout_of(&columns))
}

/// A column as `SHOW COLUMNS` gives it.
struct Column {
    name: String,
    default: Option<String>,
}

/// A text column of a `SHOW` row, by name; `None` for NULL (or, never
/// seen, a value that is no text), never a panic.
fn text(row: &::mysql::Row, column: &str) -> Option<String> {
    row.get_opt::<Option<String>, _>(column)
        .and_then(Result::ok)
        .flatten()
}

/// The columns of `table` in the connection's database.
fn show_columns(conn: &mut Conn, table: &str) -> ::mysql::Result<Vec<Column>> {
    let rows =
        conn.query::<::mysql::Row, _>(format!("SHOW COLUMNS FROM {}", quote_ident(table)))?;
    Ok(rows
        .into_iter()
        .filter_map(|row| {
            Some(Column {
                name: text(&row, "Field")?,
                default: text(&row, "Default"),
            })
        })
        .collect())
}

/// [`layout`] from each index's columns in order, as (index, column).
fn layout_of(columns: &[(String, String)]) -> Result<Layout, String> {
    let leads_with = |index: &str, prefix: &[&str]| {
        let of_index = columns
            .iter()
            .filter(|(name, _)| name == index)
            .map(|(_, column)| column.as_str());
        of_index.take(prefix.len()).eq(prefix.iter().copied())
    };
    let goods = [GoodsIndex::ByGoods, GoodsIndex::OneLive]
        .into_iter()
        .find(|index| leads_with(index.name(), &["goods_id"]))
        .ok_or("neither orders_by_goods nor orders_one_live leads with goods_id")?;
    let due = if leads_with("orders_by_goods", &["goods_id", "state", "pay_by_ms"]) {
        DueIndex::ByGoods
    } else if leads_with("orders_due", &["state", "pay_by_ms"]) {
        DueIndex::Due
    } else {
        return Err(
            "neither orders_by_goods (goods_id, state, pay_by_ms) nor orders_due (state, pay_by_ms)"
                .into(),
        );
    };
    Ok(Layout { goods, due })
}

/// Whether the connection's database's orders table gives `state` and `live_slot`
/// the defaults `schema.sql` does (0, created; 1, the first slot), so that
/// a chunk of created orders may leave them out: two values fewer a row for
/// MariaDB to parse and fill (BENCHMARKS.md, "leaving the defaulted columns
/// out"). A table whose defaults differ (altered by hand, made otherwise)
/// gets every column: the purchase limit never rests on a default that is
/// not there.
pub(super) fn live_defaults(conn: &mut Conn) -> ::mysql::Result<bool> {
    let columns = show_columns(conn, "orders")?;
    let default = |column: &str| {
        columns
            .iter()
            .find(|c| c.name.eq_ignore_ascii_case(column))
            .and_then(|c| c.default.as_deref())
    };
    Ok(default("state") == Some("0") && default("live_slot") == Some("1"))
}

/// ER_DUP_FIELDNAME.
const DUPLICATE_COLUMN: u16 = 1060;

/// The CREATE TABLE statements of `schema.sql`, in order: everything but
/// comment lines, CREATE DATABASE and USE (the database is the URL's).
pub(super) fn table_ddl(schema: &str) -> Vec<String> {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn indexes(list: &[(&str, &[&str])]) -> Vec<(String, String)> {
        list.iter()
            .flat_map(|(index, columns)| columns.iter().map(|c| (index.to_string(), c.to_string())))
            .collect()
    }

    #[test]
    fn the_layout_is_read_off_the_indexes_columns() {
        let current = indexes(&[
            ("PRIMARY", &["id"]),
            ("orders_one_live", &["user_id", "goods_id", "live_slot"]),
            ("orders_by_goods", &["goods_id", "state", "pay_by_ms"]),
        ]);
        assert_eq!(
            layout_of(&current),
            Ok(Layout {
                goods: GoodsIndex::ByGoods,
                due: DueIndex::ByGoods
            })
        );
        let user_first = indexes(&[
            ("orders_one_live", &["user_id", "goods_id", "live_slot"]),
            ("orders_by_goods", &["goods_id"]),
            ("orders_due", &["state", "pay_by_ms"]),
        ]);
        assert_eq!(
            layout_of(&user_first),
            Ok(Layout {
                goods: GoodsIndex::ByGoods,
                due: DueIndex::Due
            })
        );
        let goods_first = indexes(&[
            ("orders_one_live", &["goods_id", "user_id", "live_slot"]),
            ("orders_by_user", &["user_id", "created_ms"]),
            ("orders_due", &["state", "pay_by_ms"]),
        ]);
        assert_eq!(
            layout_of(&goods_first),
            Ok(Layout {
                goods: GoodsIndex::OneLive,
                due: DueIndex::Due
            })
        );
    }

    #[test]
    fn a_table_without_a_due_index_or_a_goods_index_is_refused() {
        let no_due = indexes(&[
            ("orders_one_live", &["user_id", "goods_id", "live_slot"]),
            ("orders_by_goods", &["goods_id"]),
        ]);
        assert!(layout_of(&no_due).unwrap_err().contains("orders_due"));
        let no_goods = indexes(&[
            ("orders_one_live", &["user_id", "goods_id", "live_slot"]),
            ("orders_due", &["state", "pay_by_ms"]),
            ("orders_by_state", &["goods_id", "state"]),
        ]);
        assert!(layout_of(&no_goods).unwrap_err().contains("goods_id"));
    }
}
