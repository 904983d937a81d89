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
    add_missing_columns(conn, db)?;
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
];

/// `goods.live_orders` as the orders say, for goods that had orders before
/// the column.
const COUNT_LIVE_ORDERS: &str = "UPDATE goods SET live_orders = (SELECT COUNT(*) FROM orders
     WHERE orders.goods_id = goods.id AND orders.live_slot IS NOT NULL)";

/// Adds the [`ADDED_COLUMNS`] a table of database `db` lacks. Asked of
/// information_schema first, since MySQL (unlike MariaDB) has no ADD COLUMN
/// IF NOT EXISTS; two servers starting at once may both try, and the loser's
/// "duplicate column" is not an error.
fn add_missing_columns(conn: &mut Conn, db: &str) -> ::mysql::Result<()> {
    for &(table, column, definition, fill) in ADDED_COLUMNS {
        let present: Option<u8> = conn.exec_first(
            "SELECT 1 FROM information_schema.COLUMNS
             WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? AND COLUMN_NAME = ?",
            (db, table, column),
        )?;
        if present.is_some() {
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

/// The index through which a goods' orders are read by its `goods_id`
/// prefix (the live holders, locked in share mode), named in the read so
/// that a poor plan never locks other goods' orders. Which one depends on
/// when the table was made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum GoodsIndex {
    /// `orders_by_goods (goods_id)`, as `schema.sql` makes it.
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

/// Which [`GoodsIndex`] the orders table of database `db` has; `None` if
/// neither leads with `goods_id` (a table altered by hand half-way).
pub(super) fn goods_index(conn: &mut Conn, db: &str) -> ::mysql::Result<Option<GoodsIndex>> {
    let leading: Vec<String> = conn.exec(
        "SELECT INDEX_NAME FROM information_schema.STATISTICS
         WHERE TABLE_SCHEMA = ? AND TABLE_NAME = 'orders' AND SEQ_IN_INDEX = 1
         AND COLUMN_NAME = 'goods_id'",
        (db,),
    )?;
    Ok([GoodsIndex::ByGoods, GoodsIndex::OneLive]
        .into_iter()
        .find(|index| leading.iter().any(|name| name == index.name())))
}

/// Whether the orders table of database `db` gives `state` and `live_slot`
/// the defaults `schema.sql` does (0, created; 1, the first slot), so that
/// a chunk of created orders may leave them out: two values fewer a row for
/// MariaDB to parse and fill (BENCHMARKS.md, "leaving the defaulted columns
/// out"). A table whose defaults differ (altered by hand, made otherwise)
/// gets every column: the purchase limit never rests on a default that is
/// not there.
pub(super) fn live_defaults(conn: &mut Conn, db: &str) -> ::mysql::Result<bool> {
    let defaults: Vec<(String, Option<String>)> = conn.exec(
        "SELECT COLUMN_NAME, COLUMN_DEFAULT FROM information_schema.COLUMNS
         WHERE TABLE_SCHEMA = ? AND TABLE_NAME = 'orders'
         AND COLUMN_NAME IN ('state', 'live_slot')",
        (db,),
    )?;
    let default = |column: &str| {
        defaults
            .iter()
            .find(|(name, _)| name.eq_ignore_ascii_case(column))
            .and_then(|(_, default)| default.as_deref())
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
