//! The failure semantics of a MySQL call: which failures are tried again,
//! and which leave a write in doubt.
//!
//! Every call names its [`Call`], one of the strategies below, and gives a
//! body that runs on a pooled connection. [`Link::call`] runs it and turns
//! the way it ended into the sale's [`StoreError`]:
//!
//! - A link that broke (the server went away, or closed an idle
//!   connection) retires the whole pool: a connection that may still
//!   receive the reply it timed out on would answer the next query with it.
//!   An idempotent call then runs once more on a new connection; a call that
//!   must not run twice and had begun is [`StoreError::Indeterminate`].
//!   With several nodes (a Galera cluster), the new pool is on the writer
//!   chosen again ([`super::writer`]); a Galera node that says it is not
//!   ready counts as a failed node too.
//! - A COMMIT that failed may have been applied: every later failure of
//!   that call is `Indeterminate`, whatever it says.
//! - A transaction MySQL picked as a deadlock victim was rolled back, so
//!   nothing is in doubt, and calls that lock rows in racing orders run it
//!   again.
//!
//! The outcome travels as a value ([`Failure`]), not in flags.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use ::mysql::prelude::Queryable;
use ::mysql::{Conn, Error, Opts, PooledConn};

use super::errors::{broken, deadlocked, node_failed, statement_binlog, store_error};
use super::writer::Writer;
use crate::store::outage::Outage;
use crate::store::StoreError;

/// How long a call waits for a connection when the pool is at its maximum.
const CHECKOUT_TIMEOUT: Duration = Duration::from_secs(5);

/// How a call runs, and so what its failures mean. Every call uses one of
/// the constants.
#[derive(Debug, Clone, Copy)]
pub(super) struct Call {
    /// Safe to run twice: run once more, on a new connection, after a
    /// broken link. Else a link that broke once the body began leaves its
    /// writes in doubt.
    idempotent: bool,
    scope: Scope,
    /// How many times in all a deadlock victim is run.
    deadlock_runs: u8,
    /// The isolation level of its transaction.
    isolation: Isolation,
}

/// The isolation level of a call's transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Isolation {
    /// The session's: InnoDB's default, REPEATABLE READ, where a locking
    /// read of a range also locks the gaps in it and after it, so that no
    /// row can appear where a transaction looked.
    Session,
    /// READ COMMITTED: a locking read locks the rows it finds and no gaps
    /// (InnoDB still locks gaps for duplicate-key checks, at every level).
    /// Only for transactions that need no gap locks: see [`Call::ORDERS`].
    /// Where the server logs statements to its binary log (`binlog_format`
    /// STATEMENT), InnoDB refuses writes at this level, and the link runs
    /// such calls at [`Isolation::Session`] instead, from when it finds
    /// that out: at `prepare` ([`Link::read_committed`]), or when such a
    /// write is refused (run once more at the session's level).
    ReadCommitted,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scope {
    /// Each statement commits on its own.
    Autocommit,
    /// One transaction that writes: a COMMIT that failed may have been
    /// applied.
    Write,
}

impl Call {
    /// Reads, and writes that set a value (setting it twice is harmless).
    pub(super) const IDEMPOTENT: Call = Call {
        idempotent: true,
        scope: Scope::Autocommit,
        deadlock_runs: 1,
        isolation: Isolation::Session,
    };

    /// A write that must not run twice: a goods added by a call whose reply
    /// was lost would be added twice.
    pub(super) const ONCE: Call = Call {
        idempotent: false,
        ..Call::IDEMPOTENT
    };

    /// A transaction that must not run twice (a restock).
    pub(super) const ONCE_IN_TRANSACTION: Call = Call {
        scope: Scope::Write,
        ..Call::ONCE
    };

    /// A batch of orders: safe to run twice (a stored order number is
    /// recognised), so a batch whose COMMIT reply was lost is answered by
    /// its retry. Order writes with purchase slots lock the same rows as
    /// PAY, CANCEL and the expiry through other indexes, so under a race a
    /// deadlock is normal, not an outage.
    ///
    /// At READ COMMITTED: every transaction that inserts orders of a goods
    /// first writes the goods' row (a batch's fence or live count, see
    /// `store::batch`) and holds it to its commit, so the writers of a
    /// goods' orders already queue there, and the gap locks of
    /// REPEATABLE READ on a user's slots would guard against nobody. They
    /// would only hold up *other* goods' batches and cancels whose index
    /// entries fall in those gaps (a user's neighbours in the purchase-limit
    /// key, which leads with the user), and could deadlock two batches.
    pub(super) const ORDERS: Call = Call {
        idempotent: true,
        scope: Scope::Write,
        deadlock_runs: 5,
        isolation: Isolation::ReadCommitted,
    };

    /// PAY, CANCEL and the expiry: run once, since a retry after a lost
    /// COMMIT reply would find the order already settled and not know that
    /// it was this call that cancelled it (its unit would never come back).
    /// Run again after a deadlock, like [`Call::ORDERS`]. At the session's
    /// isolation, as they were made and tested: they lock single orders by
    /// number and their goods' rows, where the level changes nothing.
    pub(super) const SETTLE: Call = Call {
        idempotent: false,
        isolation: Isolation::Session,
        ..Call::ORDERS
    };

    /// A node id's claim or renewal: safe to run twice (a holder that finds
    /// its own lease takes it again), and two servers claiming at once may
    /// deadlock on the gap where a new id goes, which is not an outage. At
    /// the session's isolation, as its locking was designed (`nodes`).
    pub(super) const LEASE: Call = Call {
        isolation: Isolation::Session,
        ..Call::ORDERS
    };
}

/// Why a body or its call failed.
#[derive(Debug)]
pub(crate) enum Failure {
    /// No connection could be had: nothing was sent.
    NoConnection(Error),
    /// A statement failed, or the link broke, once the body had begun.
    Sql(Error),
    /// COMMIT failed: the transaction may have been applied.
    Commit(Error),
    /// The body's own answer (an unknown goods, a broken invariant), passed
    /// on as it is; a transaction is rolled back.
    Store(StoreError),
}

impl From<Error> for Failure {
    fn from(e: Error) -> Self {
        Failure::Sql(e)
    }
}

impl From<StoreError> for Failure {
    fn from(e: StoreError) -> Self {
        Failure::Store(e)
    }
}

impl Failure {
    fn mysql(&self) -> Option<&Error> {
        match self {
            Failure::NoConnection(e) | Failure::Sql(e) | Failure::Commit(e) => Some(e),
            Failure::Store(_) => None,
        }
    }

    fn broke_link(&self) -> bool {
        self.mysql().is_some_and(broken)
    }

    /// The link broke or the node is not ready: the writer is chosen again.
    fn failed_node(&self) -> bool {
        self.mysql().is_some_and(node_failed)
    }
}

/// The link to MySQL: a pool of connections to the writer node, replaced
/// after a broken link (and moved to another node where there are several:
/// [`Writer`]), and the outage latch every call reports to.
pub(super) struct Link {
    writer: Writer,
    pub(super) outage: Outage,
    /// Whether calls may run at [`Isolation::ReadCommitted`]: true until
    /// [`Link::read_committed`] finds that the server cannot write at it.
    read_committed: AtomicBool,
}

impl Link {
    /// A pool of connections made with `opts`; none is opened yet.
    #[cfg(test)]
    pub(super) fn new(opts: Opts) -> Result<Link, StoreError> {
        Link::to_nodes(vec![opts])
    }

    /// A link to the first usable of these nodes (one or more); nothing
    /// is opened or probed yet.
    pub(super) fn to_nodes(nodes: Vec<Opts>) -> Result<Link, StoreError> {
        Ok(Link {
            writer: Writer::new(nodes)?,
            outage: Outage::new("mysql order store"),
            read_committed: AtomicBool::new(true),
        })
    }

    /// Whether the server can write at READ COMMITTED, as a connection of
    /// the pool finds it: not where it logs statements to its binary log
    /// (InnoDB refuses every write at that level with `binlog_format`
    /// STATEMENT). Where it cannot, calls that asked for it run at the
    /// session's level from now on, and this says why once.
    pub(super) fn read_committed(&self) -> Result<bool, StoreError> {
        let row: Option<(u8, u8, String)> = self.call("isolation", Call::IDEMPOTENT, |conn| {
            Ok(conn.query_first("SELECT @@log_bin, @@sql_log_bin, @@binlog_format")?)
        })?;
        let statements =
            matches!(&row, Some((1, 1, format)) if format.eq_ignore_ascii_case("STATEMENT"));
        if statements {
            self.statement_binlog_found();
        }
        Ok(!statements)
    }

    /// Calls run at the session's level from now on, as the server logs
    /// statements; says so once. Whether this changed it.
    fn statement_binlog_found(&self) -> bool {
        let changed = self.read_committed.swap(false, Ordering::Relaxed);
        if changed {
            log::warn!(
                "mysql: binlog_format is STATEMENT, so order batches run at the session's \
                 isolation level, not READ COMMITTED: with ROW or MIXED they would lock no gaps"
            );
        }
        changed
    }

    /// Refuses a list of nodes with a plain (non-Galera) server in it.
    pub(super) fn check_nodes(&self) -> Result<(), StoreError> {
        self.writer.check_nodes()
    }

    /// Which node the link writes through (an index into its list).
    #[cfg(test)]
    pub(super) fn writer_node(&self) -> usize {
        self.writer.node()
    }

    /// Runs `body` on a new connection to the writer node's server, without
    /// the database (which it may create): the schema's setup.
    pub(super) fn setup<T>(
        &self,
        what: &str,
        body: impl FnOnce(&mut Conn) -> ::mysql::Result<T>,
    ) -> Result<T, StoreError> {
        let (generation, server) = self.writer.server();
        let result = Conn::new(server).and_then(|mut c| body(&mut c));
        if result.as_ref().is_err_and(node_failed) {
            self.writer.failed(generation);
        }
        result.map_err(|e| store_error(what, &e))
    }

    /// Runs `body` as `how` says and reports the outcome to the outage
    /// latch. A transaction's body commits by returning `Ok` and rolls back
    /// by returning `Err`.
    pub(super) fn call<T>(
        &self,
        what: &str,
        how: Call,
        mut body: impl FnMut(&mut PooledConn) -> Result<T, Failure>,
    ) -> Result<T, StoreError> {
        // Sticky over the runs: once a COMMIT may have gone through, a later
        // failure, however it failed, leaves the outcome unknown.
        let mut in_doubt = false;
        let mut relinked = false;
        let mut runs = 1;
        loop {
            let failure = match self.attempt(how, &mut body) {
                Ok(v) => {
                    self.outage.ok();
                    return Ok(v);
                }
                Err(failure) => failure,
            };
            in_doubt |= how.scope == Scope::Write && matches!(failure, Failure::Commit(_));
            if how.idempotent && !relinked && failure.failed_node() {
                // Once more on a new connection: an idle connection is found
                // dead this way (MySQL restarted, or closed it after
                // `wait_timeout`) at the cost of one failed attempt rather
                // than a ping before every call. With several nodes, on the
                // writer chosen anew: a batch whose COMMIT reply was lost
                // with its node is answered on the next (a stored order is
                // recognised, and the sync wait makes it seen).
                relinked = true;
                continue;
            }
            if how.isolation == Isolation::ReadCommitted
                && failure.mysql().is_some_and(statement_binlog)
                && self.statement_binlog_found()
            {
                // The server began logging statements after `prepare` (or
                // the writer moved to a node that does): refused before
                // anything was written, so once more at the session's level.
                continue;
            }
            let deadlock = failure.mysql().is_some_and(deadlocked);
            let error = self.failed(what, how, failure, in_doubt);
            if !deadlock || runs == how.deadlock_runs {
                return Err(error);
            }
            runs += 1;
            relinked = false;
        }
    }

    /// Runs `body` on a pooled connection, in a transaction if `how` says
    /// so. A connection whose link broke is closed, not handed back, and
    /// the pool it came from is replaced (by one on another node, if its
    /// node failed and there are others).
    fn attempt<T>(
        &self,
        how: Call,
        body: &mut impl FnMut(&mut PooledConn) -> Result<T, Failure>,
    ) -> Result<T, Failure> {
        let (generation, pool) = self.writer.current();
        let mut held = ClosedOnUnwind(Some(
            pool.try_get_conn(CHECKOUT_TIMEOUT)
                .map_err(Failure::NoConnection)?,
        ));
        let isolation = match how.isolation {
            Isolation::ReadCommitted if !self.read_committed.load(Ordering::Relaxed) => {
                Isolation::Session
            }
            isolation => isolation,
        };
        let Some(conn) = held.0.as_mut() else {
            unreachable!("the connection is taken only when the guard is dropped")
        };
        let result = match how.scope {
            Scope::Autocommit => body(conn),
            Scope::Write => transaction(conn, isolation, body),
        };
        if result.as_ref().is_err_and(Failure::failed_node) {
            self.writer.failed(generation);
        }
        if result.as_ref().is_err_and(Failure::broke_link) {
            held.close();
        }
        result
    }

    /// The error a failed run ends with, after reporting it to the outage
    /// latch: only a store that is unavailable counts as down.
    fn failed(&self, what: &str, how: Call, failure: Failure, in_doubt: bool) -> StoreError {
        let (e, began) = match failure {
            Failure::Store(e) => {
                self.outage.ok();
                // After a COMMIT that may have gone through, a later run's
                // own refusal says nothing of whether the first committed.
                return match in_doubt {
                    true => StoreError::Indeterminate(format!(
                        "{what}: a COMMIT's reply was lost, and its run again was refused: {e}"
                    )),
                    false => e,
                };
            }
            Failure::NoConnection(e) => (e, false),
            Failure::Sql(e) | Failure::Commit(e) => (e, true),
        };
        let error = store_error(what, &e);
        match &error {
            StoreError::Unavailable(_) => self.outage.failed(&error),
            _ => self.outage.ok(),
        }
        // A link that broke once a call that must not run twice had begun
        // leaves its write in doubt: an INSERT or a COMMIT may have been
        // applied before the link went.
        let broke_midway = !how.idempotent && began && broken(&e);
        match error {
            StoreError::Unavailable(m) if broke_midway || in_doubt => StoreError::Indeterminate(m),
            StoreError::Inconsistent(m) if in_doubt => StoreError::Indeterminate(m),
            other => other,
        }
    }
}

/// A pooled connection in use, closed rather than handed back to the pool
/// if the call unwinds (a panic in its body): the pool does not reset the
/// connections it gets back (see `mod.rs`), and one handed back in the
/// middle of a transaction would carry it on into the next call that takes
/// it, which would read the rows it wrote, or commit them with its own.
/// Closed, the connection's transaction is rolled back by the server.
struct ClosedOnUnwind(Option<PooledConn>);

impl ClosedOnUnwind {
    /// Takes the connection out of the pool's hands and closes it: a
    /// broken link, or an unwinding call.
    fn close(&mut self) {
        if let Some(conn) = self.0.take() {
            drop(PooledConn::unwrap(conn));
        }
    }
}

impl Drop for ClosedOnUnwind {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.close();
        }
    }
}

/// Runs `body` in a transaction at `isolation`: commits if it succeeds
/// (durable when COMMIT returns, with InnoDB's default flush at commit),
/// rolls back if it fails. After a broken link nothing more is sent: the server rolls back
/// when the connection closes. A COMMIT that fails is a
/// [`Failure::Commit`]: the server may have committed.
fn transaction<T>(
    conn: &mut PooledConn,
    isolation: Isolation,
    body: &mut impl FnMut(&mut PooledConn) -> Result<T, Failure>,
) -> Result<T, Failure> {
    if isolation == Isolation::ReadCommitted {
        // For the next transaction only; the session keeps its level. A
        // statement of its own: the driver drops the errors of all but the
        // first statement of a query, and START TRANSACTION's (Galera's
        // sync wait) must not be lost.
        conn.query_drop("SET TRANSACTION ISOLATION LEVEL READ COMMITTED")?;
        if let Err(e) = conn.query_drop("START TRANSACTION") {
            // MariaDB keeps the level pending after a START TRANSACTION that
            // failed (a Galera sync wait that timed out, say), and the next
            // call on this pooled connection would start at it: the pool
            // resets this one's session (its settings run again) when it
            // comes back, or closes it if that fails.
            conn.reset_connection(true);
            return Err(e.into());
        }
    } else {
        conn.query_drop("START TRANSACTION")?;
    }
    let failure = match body(conn) {
        Ok(v) => {
            return conn
                .query_drop("COMMIT")
                .map(|()| v)
                .map_err(Failure::Commit)
        }
        Err(failure) => failure,
    };
    match &failure {
        Failure::Store(_) => conn.query_drop("ROLLBACK")?,
        f if f.broke_link() => {}
        _ => {
            // The link broke on the way: that error, so that the caller
            // drops the connection rather than hand it out out of step.
            if let Err(rollback) = conn.query_drop("ROLLBACK") {
                if broken(&rollback) {
                    return Err(Failure::Sql(rollback));
                }
            }
        }
    }
    Err(failure)
}

#[cfg(test)]
mod tests {
    //! Against the real MySQL/MariaDB, in a database of the test's own. The
    //! failures are real (a connection killed from the side) or, where the
    //! server cannot be made to fail on cue (a deadlock), errors the body
    //! returns as the driver would.

    use std::cell::Cell;

    use ::mysql::{OptsBuilder, PoolConstraints, PoolOpts};

    use super::*;
    use crate::store::mysql::errors::{server_error, DEADLOCK};
    use crate::store::testdb::TestDb;

    /// A link to `url`, opening no connection ahead.
    fn link_to(url: &str) -> Link {
        let constraints = PoolConstraints::new(0, 4).expect("0 <= 4");
        let opts = OptsBuilder::from_opts(Opts::from_url(url).expect("a MySQL URL")).pool_opts(
            // As the store's own pool (mod.rs): connections are not
            // reset when they come back.
            PoolOpts::default()
                .with_constraints(constraints)
                .with_reset_connection(false),
        );
        Link::new(opts.into()).expect("a pool")
    }

    /// A link to a fresh database with one table `t`.
    fn link(db: &TestDb) -> Link {
        let mut admin = db.conn();
        admin
            .query_drop(format!("CREATE DATABASE `{}`", db.name()))
            .unwrap();
        admin.select_db(db.name()).unwrap();
        admin
            .query_drop("CREATE TABLE t (id INT PRIMARY KEY) ENGINE = InnoDB")
            .unwrap();
        link_to(db.url())
    }

    fn rows(db: &TestDb) -> u64 {
        db.conn()
            .query_first("SELECT COUNT(*) FROM t")
            .unwrap()
            .unwrap()
    }

    /// Kills the connection `conn` from the side, as a MySQL restart would.
    fn kill(db: &TestDb, conn: &mut PooledConn) {
        let id: u64 = conn.query_first("SELECT CONNECTION_ID()").unwrap().unwrap();
        db.conn()
            .query_drop(format!("KILL CONNECTION {id}"))
            .unwrap();
    }

    fn generation(link: &Link) -> u64 {
        link.writer.generation()
    }

    #[test]
    fn a_transaction_commits_its_ok_and_rolls_back_its_err() {
        let db = TestDb::new();
        let link = link(&db);
        let insert = |id: u32| {
            move |conn: &mut PooledConn| -> Result<(), Failure> {
                Ok(conn.exec_drop("INSERT INTO t VALUES (?)", (id,))?)
            }
        };
        link.call("t", Call::ORDERS, insert(1)).unwrap();
        let refused = link.call("t", Call::ONCE_IN_TRANSACTION, |conn| {
            insert(2)(conn)?;
            Err::<(), _>(StoreError::UnknownGoods(9).into())
        });
        assert!(
            matches!(refused, Err(StoreError::UnknownGoods(9))),
            "{refused:?}"
        );
        // A statement that fails rolls back the statements before it.
        let failed = link.call("t", Call::ORDERS, |conn| {
            insert(3)(conn)?;
            insert(1)(conn)
        });
        assert!(
            matches!(failed, Err(StoreError::Inconsistent(_))),
            "{failed:?}"
        );
        assert_eq!(rows(&db), 1);
        assert!(!link.outage.is_down(), "the store answered every time");
    }

    /// A body that panics half-way through its transaction (a row the
    /// driver cannot convert panics in it): the connection is closed, not
    /// handed back with the transaction open, so the rows it wrote are
    /// never committed, nor seen, by the next call that takes it.
    #[test]
    fn a_transaction_whose_body_panics_is_rolled_back() {
        let db = TestDb::new();
        let link = link(&db);
        let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let _ = link.call("t", Call::ORDERS, |conn| -> Result<(), Failure> {
                conn.exec_drop("INSERT INTO t VALUES (?)", (1,))?;
                panic!("half-way through the batch");
            });
        }));
        assert!(panicked.is_err());
        // The next calls (the pool holds at most 4) see nothing of it, and
        // what they commit is theirs alone.
        for id in 2..=5u32 {
            let seen: u64 = link
                .call("t", Call::IDEMPOTENT, |conn| {
                    Ok(conn.query_first("SELECT COUNT(*) FROM t")?.unwrap_or(0))
                })
                .unwrap();
            assert_eq!(seen, u64::from(id) - 2, "rows seen before insert {id}");
            link.call("t", Call::ORDERS, |conn| {
                Ok(conn.exec_drop("INSERT INTO t VALUES (?)", (id,))?)
            })
            .unwrap();
        }
        let ids: Vec<u32> = db
            .conn()
            .query(format!("SELECT id FROM `{}`.t ORDER BY id", db.name()))
            .unwrap();
        assert_eq!(ids, [2, 3, 4, 5], "the panicked insert committed");
    }

    #[test]
    fn a_broken_link_runs_an_idempotent_call_again_and_leaves_a_once_call_in_doubt() {
        let db = TestDb::new();
        let link = link(&db);
        let runs = Cell::new(0);
        let dies_once = |conn: &mut PooledConn| -> Result<u32, Failure> {
            runs.set(runs.get() + 1);
            if runs.get() == 1 {
                kill(&db, conn);
            }
            Ok(conn.query_first("SELECT 7")?.unwrap_or(0))
        };
        assert_eq!(link.call("t", Call::IDEMPOTENT, dies_once).unwrap(), 7);
        assert_eq!(runs.get(), 2);
        assert_eq!(generation(&link), 1, "the pool was replaced");
        assert!(!link.outage.is_down());

        runs.set(0);
        let once = link.call("t", Call::ONCE, dies_once);
        assert!(
            matches!(once, Err(StoreError::Indeterminate(_))),
            "{once:?}"
        );
        assert_eq!((runs.get(), generation(&link)), (1, 2));
        assert!(link.outage.is_down());
        assert_eq!(link.call("t", Call::ONCE, dies_once).unwrap(), 7);
        assert!(!link.outage.is_down());
    }

    #[test]
    fn a_failed_commit_leaves_every_later_failure_of_a_write_in_doubt() {
        let db = TestDb::new();
        let link = link(&db);
        // The first run's COMMIT finds its link dead; the second run fails
        // as a bug would. Whether the first committed is unknown.
        let runs = Cell::new(0);
        let body = |conn: &mut PooledConn| -> Result<(), Failure> {
            runs.set(runs.get() + 1);
            if runs.get() == 1 {
                conn.exec_drop("INSERT INTO t VALUES (1)", ())?;
                kill(&db, conn);
                return Ok(());
            }
            Err(Failure::Sql(server_error(1062)))
        };
        let written = link.call("t", Call::ORDERS, body);
        assert!(
            matches!(written, Err(StoreError::Indeterminate(_))),
            "{written:?}"
        );
        assert_eq!(runs.get(), 2);
        // The same when the second run refuses of its own accord (an error
        // of the store's, not the driver's).
        runs.set(0);
        let refused = link.call("t", Call::ORDERS, |conn| {
            runs.set(runs.get() + 1);
            if runs.get() == 1 {
                conn.exec_drop("INSERT INTO t VALUES (2)", ())?;
                kill(&db, conn);
                return Ok(());
            }
            Err::<(), _>(StoreError::UnknownGoods(9).into())
        });
        assert!(
            matches!(refused, Err(StoreError::Indeterminate(_))),
            "{refused:?}"
        );
        assert_eq!(runs.get(), 2);
    }

    #[test]
    fn a_deadlock_victim_runs_again_up_to_five_times_where_its_call_says() {
        let db = TestDb::new();
        let link = link(&db);
        let runs = Cell::new(0);
        let victim = |times: u32| {
            let runs = &runs;
            move |_: &mut PooledConn| -> Result<u32, Failure> {
                runs.set(runs.get() + 1);
                if runs.get() <= times {
                    return Err(Failure::Sql(server_error(DEADLOCK)));
                }
                Ok(runs.get())
            }
        };
        assert_eq!(link.call("t", Call::SETTLE, victim(4)).unwrap(), 5);
        runs.set(0);
        let settled = link.call("t", Call::SETTLE, victim(5));
        assert!(
            matches!(settled, Err(StoreError::Unavailable(_))),
            "{settled:?}"
        );
        assert_eq!(runs.get(), 5);
        runs.set(0);
        assert_eq!(link.call("t", Call::ORDERS, victim(2)).unwrap(), 3);
        runs.set(0);
        let restock = link.call("t", Call::ONCE_IN_TRANSACTION, victim(1));
        assert!(
            matches!(restock, Err(StoreError::Unavailable(_))),
            "{restock:?}"
        );
        assert_eq!(runs.get(), 1, "not a call that runs again");
    }

    #[test]
    fn no_connection_means_nothing_was_done() {
        // Port 1 (tcpmux) is closed on any test machine.
        let link = link_to("mysql://root@127.0.0.1:1/seckill");
        let runs = Cell::new(0);
        for how in [Call::ONCE, Call::SETTLE, Call::ORDERS] {
            let result = link.call("t", how, |_| {
                runs.set(runs.get() + 1);
                Ok(())
            });
            assert!(
                matches!(result, Err(StoreError::Unavailable(_))),
                "{how:?}: {result:?}"
            );
        }
        assert_eq!(runs.get(), 0);
        assert!(link.outage.is_down());
    }
}
