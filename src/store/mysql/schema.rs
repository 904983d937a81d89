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
    let flush: Option<u64> = conn.query_first("SELECT @@innodb_flush_log_at_trx_commit")?;
    if flush != Some(1) {
        log::warn!(
            "mysql: innodb_flush_log_at_trx_commit is {flush:?}, not 1: \
             a crash of the database host may lose acknowledged orders"
        );
    }
    Ok(())
}

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
