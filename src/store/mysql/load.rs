//! Chunks of created orders loaded (`LOAD DATA LOCAL INFILE` from memory)
//! rather than inserted, where the server takes loads cheaply: whether it
//! does is asked at prepare and again now and then, since a failover or a
//! changed setting can change the answer either way.

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use ::mysql::prelude::Queryable;
use ::mysql::{LocalInfileHandler, PooledConn};
use log::{info, warn};
use parking_lot::Mutex;

use super::errors::LOAD_REFUSED;
use crate::store::OrderRecord;

/// How often the server is asked again whether it takes loads, before a
/// batch (not in its transaction): so that a node failed over to (or back
/// from) with other settings is written to as it allows.
const ASK_AGAIN: Duration = Duration::from_secs(60);

/// A chunk of created orders, the table's defaults giving `state` and
/// `live_slot`: MariaDB takes rows loaded this way for about half a
/// microsecond of CPU an order less than the VALUES of an INSERT
/// (BENCHMARKS.md, "orders loaded, not inserted"). `'orders'` names no
/// file: the connection's handler, set for this one statement
/// ([`load_chunk`]), sends the chunk from memory whatever name the server
/// asks for, so no file of this machine is ever read or sent. Read as
/// bytes (`CHARACTER SET binary`), not in the database's character set,
/// which a database made beforehand may have other than ASCII. (Galera's
/// deprecated `wsrep_load_data_splitting` commits a load every 10,000 rows:
/// a chunk is at most `ROWS_PER_INSERT`, so one transaction stays one.)
pub(super) const LOAD_ORDERS: &str = "LOAD DATA LOCAL INFILE 'orders' INTO TABLE orders \
     CHARACTER SET binary (order_no, user_id, goods_id, created_ms, pay_by_ms)";

/// Whether chunks are loaded: the last answer of the server, and when to
/// ask it again. Changes are said in the log, the first answer too.
pub(super) struct Loads {
    on: AtomicBool,
    /// When a batch next asks; `None` until the first answer.
    ask_at: Mutex<Option<Instant>>,
}

impl Loads {
    pub(super) fn new() -> Loads {
        Loads {
            on: AtomicBool::new(false),
            ask_at: Mutex::new(None),
        }
    }

    pub(super) fn on(&self) -> bool {
        self.on.load(Ordering::Relaxed)
    }

    /// Asks the server on `conn` whether it takes loads, and goes by the
    /// answer until the next time. A broken link fails the asking, to be
    /// tried again.
    pub(super) fn ask(&self, conn: &mut PooledConn) -> ::mysql::Result<()> {
        let answer = server_loads(conn)?;
        let first = self
            .ask_at
            .lock()
            .replace(Instant::now() + ASK_AGAIN)
            .is_none();
        let was = self.on.swap(answer.is_ok(), Ordering::Relaxed);
        match answer {
            Ok(()) if first || !was => info!("mysql: orders are loaded, not inserted"),
            Err(why) if first => info!("mysql: orders are inserted, not loaded: {why}"),
            Err(why) if was => warn!("mysql: orders inserted, not loaded, from now on: {why}"),
            _ => {}
        }
        Ok(())
    }

    /// Whether the server is to be asked again now, before a batch (and,
    /// if so, not before the next time).
    pub(super) fn ask_due(&self) -> bool {
        let mut ask_at = self.ask_at.lock();
        let now = Instant::now();
        match *ask_at {
            Some(at) if now < at => false,
            _ => {
                *ask_at = Some(now + ASK_AGAIN);
                true
            }
        }
    }

    /// A load the server refused: chunks are inserted until it is asked
    /// again and takes them.
    pub(super) fn refused(&self, e: &::mysql::MySqlError) {
        if self.on.swap(false, Ordering::Relaxed) {
            warn!("mysql: orders inserted, not loaded, from now on: {e}");
        }
    }

    /// Loads (`true`) or inserts every chunk, whatever the server says and
    /// without asking it again: for the tests of each path, on a server
    /// with `local_infile` on (the load needs no `innodb_autoinc_lock_mode`
    /// of 2 to work, only to be cheap with several writers).
    #[cfg(test)]
    pub(super) fn force(&self, on: bool) {
        self.on.store(on, Ordering::Relaxed);
        *self.ask_at.lock() = Some(Instant::now() + Duration::from_secs(86_400));
    }

    /// The next batch asks the server again, as if a minute had passed.
    #[cfg(test)]
    pub(super) fn ask_soon(&self) {
        *self.ask_at.lock() = Some(Instant::now());
    }
}

/// Whether the server takes [`LOAD_ORDERS`] cheaply here, or why not: it
/// must take loads (`local_infile` on, as MariaDB has it by default; MySQL
/// 8 has it off) and allocate the surrogate `id`s of a load without a lock
/// of the table (`innodb_autoinc_lock_mode` 2, "interleaved": MySQL 8's
/// default, and Galera's requirement). At MariaDB's default of 1 a load
/// holds the table's AUTO-INC lock to its end, waits for row locks
/// included, where a multi-row INSERT takes it for a moment: the order
/// writers of several servers would queue on it, and one waiting on
/// another's row lock while holding it deadlocks with that other's next
/// chunk (a read-only review reproduced both). The probe is a load of no
/// rows, which the connection sends when no handler is set. A refusal by
/// the server (a proxy in front of it may have its own) means no; a broken
/// link is an error. Never run inside a batch's transaction: it takes any
/// server error for a no, a deadlock's rollback of the batch included.
fn server_loads(conn: &mut PooledConn) -> ::mysql::Result<Result<(), String>> {
    let mode: Option<u8> = conn.query_first("SELECT @@innodb_autoinc_lock_mode")?;
    if mode != Some(2) {
        return Ok(Err(format!(
            "innodb_autoinc_lock_mode is {}, not 2",
            mode.map_or("unknown".into(), |m| m.to_string())
        )));
    }
    match conn.query_drop(LOAD_ORDERS) {
        Ok(()) => Ok(Ok(())),
        Err(::mysql::Error::MySqlError(e)) => Ok(Err(e.to_string())),
        Err(e) => Err(e),
    }
}

/// Whether `e` is the server's refusal of a load (its `local_infile` off).
pub(super) fn is_refusal(e: &::mysql::MySqlError) -> bool {
    LOAD_REFUSED.contains(&e.code)
}

/// Loads a chunk of created orders on the connection of a batch's
/// transaction: all of them (`true`), or none (`false`) where a row meets
/// a unique key. With LOCAL the server cannot stop the client's sending, so
/// it takes every error of a row (a unique or foreign key, a value it could
/// not convert: the strict `sql_mode` does not apply) for a warning, skips
/// or converts the row, and loads the rest; a chunk loaded with fewer rows
/// or any warning is undone by the savepoint, as a failed INSERT is undone,
/// and the batch places its rows again by the statements that say what
/// failed.
pub(super) fn load_chunk(conn: &mut PooledConn, orders: &[&OrderRecord]) -> ::mysql::Result<bool> {
    conn.query_drop("SAVEPOINT chunk")?;
    let mut rows = Some(load_rows(orders));
    conn.set_local_infile_handler(Some(LocalInfileHandler::new(move |_, out| {
        match rows.take() {
            Some(rows) => out.write_all(&rows),
            None => Ok(()),
        }
    })));
    let loaded = conn.query_drop(LOAD_ORDERS);
    conn.set_local_infile_handler(None);
    loaded?;
    if conn.affected_rows() == orders.len() as u64 && conn.warnings() == 0 {
        return Ok(true);
    }
    conn.query_drop("ROLLBACK TO SAVEPOINT chunk")?;
    Ok(false)
}

/// A chunk of created orders as rows of tab-separated integers, in the
/// columns of [`LOAD_ORDERS`], each row ended by a newline (`LOAD DATA`'s
/// defaults: no quoting or escaping is needed for integers).
fn load_rows(chunk: &[&OrderRecord]) -> Vec<u8> {
    let mut rows = Vec::with_capacity(chunk.len() * 64);
    let mut digits = itoa::Buffer::new();
    for o in chunk {
        for (i, value) in [o.order_no, o.user_id, o.goods_id, o.created_ms, o.pay_by_ms]
            .into_iter()
            .enumerate()
        {
            if i > 0 {
                rows.push(b'\t');
            }
            rows.extend_from_slice(digits.format(value).as_bytes());
        }
        rows.push(b'\n');
    }
    rows
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::fixtures::created;

    #[test]
    fn loaded_rows_are_tab_separated_integers_a_line_each() {
        let (live, other) = (created(u64::MAX, 7, 3), created(0, 8, 3));
        assert_eq!(
            load_rows(&[&live, &other]),
            b"18446744073709551615\t7\t3\t1\t18446744073709551615\n0\t8\t3\t1\t18446744073709551615\n"
        );
    }
}
