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

use std::ops::Range;
use std::time::{Duration, Instant};

use ::mysql::prelude::Queryable;
use ::mysql::{Conn, Error, Opts, Pool, PooledConn};
use parking_lot::{Mutex, RwLock};

use super::errors::{broken, deadlocked, node_failed, store_error};
use super::writer::{probe, Node, FAILBACK_EVERY};
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
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scope {
    /// Each statement commits on its own.
    Autocommit,
    /// One transaction that only reads: its COMMIT leaves nothing in doubt.
    Read,
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

    /// A locking read, in a transaction so that its locks are taken: it
    /// waits for the writers of the rows it reads.
    pub(super) const LOCKING_READ: Call = Call {
        scope: Scope::Read,
        ..Call::IDEMPOTENT
    };

    /// A batch of orders: safe to run twice (a stored order number is
    /// recognised), so a batch whose COMMIT reply was lost is answered by
    /// its retry. Order writes with purchase slots lock the same rows as
    /// PAY, CANCEL and the expiry through other indexes, so under a race a
    /// deadlock is normal, not an outage.
    pub(super) const ORDERS: Call = Call {
        idempotent: true,
        scope: Scope::Write,
        deadlock_runs: 5,
    };

    /// PAY, CANCEL and the expiry: run once, since a retry after a lost
    /// COMMIT reply would find the order already settled and not know that
    /// it was this call that cancelled it (its unit would never come back).
    /// Run again after a deadlock, like [`Call::ORDERS`].
    pub(super) const SETTLE: Call = Call {
        idempotent: false,
        ..Call::ORDERS
    };

    /// A node id's claim or renewal: safe to run twice (a holder that finds
    /// its own lease takes it again), and two servers claiming at once may
    /// deadlock on the gap where a new id goes, which is not an outage.
    pub(super) const LEASE: Call = Call::ORDERS;
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
/// [`super::writer`]), and the outage latch every call reports to.
pub(super) struct Link {
    /// In order of preference; one for a plain MySQL.
    nodes: Vec<Node>,
    writer: RwLock<Writer>,
    /// Held by the one caller that probes the nodes to choose a writer.
    /// Taken with `try_lock`, and the probes run outside the writer's lock:
    /// no call ever waits for a probe; the others go on with the pool they
    /// have (and fail fast if its node is gone).
    choosing: Mutex<()>,
    pub(super) outage: Outage,
}

/// The pool in use.
struct Writer {
    /// Bumped by each new pool, so that of many calls failing on one dead
    /// pool only the first replaces it.
    generation: u64,
    /// Which of the nodes.
    node: usize,
    pool: Pool,
    /// Whether the node was probed and found usable. A list starts on its
    /// first node unprobed, and the first call probes.
    chosen: bool,
    /// When to probe the earlier nodes again (a writer past the first).
    failback_at: Instant,
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
        let nodes: Vec<Node> = nodes.into_iter().map(Node::new).collect();
        let first = nodes
            .first()
            .ok_or_else(|| StoreError::Unavailable("mysql: no node".into()))?;
        let pool = Pool::new(first.opts.clone()).map_err(|e| store_error("pool", &e))?;
        Ok(Link {
            writer: RwLock::new(Writer {
                generation: 0,
                node: 0,
                pool,
                // One node: nothing to choose.
                chosen: nodes.len() == 1,
                failback_at: Instant::now(),
            }),
            nodes,
            choosing: Mutex::new(()),
            outage: Outage::new("mysql order store"),
        })
    }

    /// Runs `body` on a new connection to the writer node's server, without
    /// the database (which it may create): the schema's setup.
    pub(super) fn setup<T>(
        &self,
        what: &str,
        body: impl FnOnce(&mut Conn) -> ::mysql::Result<T>,
    ) -> Result<T, StoreError> {
        let (generation, node, _) = self.current();
        let result = Conn::new(self.nodes[node].server.clone()).and_then(|mut c| body(&mut c));
        if result.as_ref().is_err_and(node_failed) {
            self.replace(generation);
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
            let failure = match self.attempt(how.scope, &mut body) {
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
            let deadlock = failure.mysql().is_some_and(deadlocked);
            let error = self.failed(what, how, failure, in_doubt);
            if !deadlock || runs == how.deadlock_runs {
                return Err(error);
            }
            runs += 1;
            relinked = false;
        }
    }

    /// Runs `body` on a pooled connection, in a transaction if `scope` says
    /// so. A connection whose link broke is closed, not handed back, and
    /// the pool it came from is replaced (by one on another node, if its
    /// node failed and there are others).
    fn attempt<T>(
        &self,
        scope: Scope,
        body: &mut impl FnMut(&mut PooledConn) -> Result<T, Failure>,
    ) -> Result<T, Failure> {
        let (generation, _, pool) = self.current();
        let mut conn = pool
            .try_get_conn(CHECKOUT_TIMEOUT)
            .map_err(Failure::NoConnection)?;
        let result = match scope {
            Scope::Autocommit => body(&mut conn),
            Scope::Read | Scope::Write => transaction(&mut conn, body),
        };
        if result.as_ref().is_err_and(Failure::failed_node) {
            self.replace(generation);
        }
        if result.as_ref().is_err_and(Failure::broke_link) {
            // Takes the connection out of the pool's hands and closes it,
            // so that no other caller can take it from the old pool.
            drop(PooledConn::unwrap(conn));
        }
        result
    }

    /// The error a failed run ends with, after reporting it to the outage
    /// latch: only a store that is unavailable counts as down.
    fn failed(&self, what: &str, how: Call, failure: Failure, in_doubt: bool) -> StoreError {
        let (e, began) = match failure {
            Failure::Store(e) => {
                self.outage.ok();
                return e;
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

    /// Which node the link writes through (an index into its list).
    #[cfg(test)]
    pub(super) fn writer_node(&self) -> usize {
        self.writer.read().node
    }

    /// The pool to use, its generation and node: first chooses a writer if
    /// none is chosen yet, or probes the earlier nodes if their time has
    /// come.
    fn current(&self) -> (u64, usize, Pool) {
        let (generation, node, chosen, failback) = {
            let w = self.writer.read();
            if w.chosen && (w.node == 0 || Instant::now() < w.failback_at) {
                return (w.generation, w.node, w.pool.clone());
            }
            (w.generation, w.node, w.chosen, w.failback_at)
        };
        if !chosen {
            self.choose(generation, 0..self.nodes.len());
        } else if Instant::now() >= failback {
            self.choose(generation, 0..node);
        }
        let w = self.writer.read();
        (w.generation, w.node, w.pool.clone())
    }

    /// Replaces the pool of this generation, whose node failed: with an
    /// empty one on the same node when it is the only one, else on the
    /// first usable node (which may be the same: a connection closed for
    /// inactivity is no failed node). The old pool closes its idle
    /// connections when the last caller using it is done.
    fn replace(&self, generation: u64) {
        if self.nodes.len() > 1 {
            self.choose(generation, 0..self.nodes.len());
            return;
        }
        let mut current = self.writer.write();
        if current.generation != generation {
            return;
        }
        // With no minimum of connections, creating a pool connects nothing
        // and cannot fail; if it ever does, the old pool stays.
        if let Ok(pool) = Pool::new(self.nodes[0].opts.clone()) {
            current.pool = pool;
            current.generation += 1;
        }
    }

    /// Probes `candidates` in order and moves the writer to the first
    /// usable one, with a new pool, unless another caller is choosing or
    /// has already replaced this generation. When none is usable: a new
    /// pool on the same node after a failure (its connections are suspect),
    /// and the next call probes again; the earlier nodes of a failback are
    /// probed again after [`FAILBACK_EVERY`].
    fn choose(&self, generation: u64, candidates: Range<usize>) {
        let Some(_turn) = self.choosing.try_lock() else {
            return;
        };
        let failback = {
            let w = self.writer.read();
            if w.generation != generation {
                return;
            }
            w.chosen && candidates.end <= w.node
        };
        // Debug only: while every node is down this runs on every failed
        // call, and the outage latch already says the store is down. The
        // switch itself is logged.
        let found = candidates.clone().find_map(|i| {
            let node = &self.nodes[i];
            match probe(node) {
                Ok(health) if health.usable() => Some((i, health)),
                Ok(health) => {
                    log::debug!("mysql node {node} cannot take writes: {health:?}");
                    None
                }
                Err(e) => {
                    log::debug!("mysql node {node} does not answer: {e}");
                    None
                }
            }
        });
        let mut w = self.writer.write();
        match found {
            Some((i, health)) => {
                let Ok(pool) = Pool::new(self.nodes[i].pool_opts(&health)) else {
                    return;
                };
                // A switch is news; the first choice only says where.
                if w.chosen && i != w.node {
                    log::warn!(
                        "mysql order store: writing through node {} ({health:?}) instead of {}",
                        self.nodes[i],
                        self.nodes[w.node]
                    );
                } else if !w.chosen {
                    log::info!(
                        "mysql order store: writing through node {} ({health:?})",
                        self.nodes[i]
                    );
                }
                *w = Writer {
                    generation: w.generation + 1,
                    node: i,
                    pool,
                    chosen: true,
                    failback_at: Instant::now() + FAILBACK_EVERY,
                };
            }
            None if failback => w.failback_at = Instant::now() + FAILBACK_EVERY,
            None => {
                if let Ok(pool) = Pool::new(self.nodes[w.node].opts.clone()) {
                    w.pool = pool;
                    w.generation += 1;
                }
            }
        }
    }
}

/// Runs `body` in a transaction: commits if it succeeds (durable when
/// COMMIT returns, with InnoDB's default flush at commit), rolls back if it
/// fails. After a broken link nothing more is sent: the server rolls back
/// when the connection closes. A COMMIT that fails is a
/// [`Failure::Commit`]: the server may have committed.
fn transaction<T>(
    conn: &mut PooledConn,
    body: &mut impl FnMut(&mut PooledConn) -> Result<T, Failure>,
) -> Result<T, Failure> {
    conn.query_drop("START TRANSACTION")?;
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
        let opts = OptsBuilder::from_opts(Opts::from_url(url).expect("a MySQL URL"))
            .pool_opts(PoolOpts::default().with_constraints(constraints));
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
        link.writer.read().generation
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
        // A read's COMMIT leaves nothing in doubt.
        runs.set(0);
        let read = link.call("t", Call::LOCKING_READ, body);
        assert!(matches!(read, Err(StoreError::Inconsistent(_))), "{read:?}");
        assert_eq!(rows(&db), 0, "the killed connection's insert rolled back");
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
