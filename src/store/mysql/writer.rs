//! Which node to write to when `--mysql` names several: the nodes of a
//! MariaDB Galera cluster, in order of preference.
//!
//! Every server writes through one node at a time: the first usable one in
//! list order. Galera certifies transactions optimistically, so two nodes
//! writing the same rows (a goods' epoch and counters, a user's slots)
//! abort one another at commit; with every server choosing by the same
//! rule, they all write through the same node and conflict only as they
//! would on one MySQL.
//!
//! - A node is *usable* when it answers and, if it is a Galera node, is
//!   Synced and ready (`wsrep_local_state` 4, `wsrep_ready` ON). A joiner
//!   refuses queries ([`super::errors::NOT_READY`]); an rsync SST donor
//!   blocks writes; a node cut off from the primary component refuses too.
//!   A node of a list whose server is no Galera node (a plain MySQL) is
//!   never usable: a list of plain servers is no one database, and servers
//!   that failed over on their own between them would sell from different
//!   order stores and lease node ids from different `nodes` tables. The
//!   store's preparation refuses such a list at start
//!   ([`Writer::check_nodes`]); a node made plain later is passed over.
//! - *Failover*: a link that broke, or a node that says it is not ready,
//!   makes the link choose again from the top of the list: a node that only
//!   closed an idle connection keeps its place; a dead one is passed over.
//! - *Failback*: while it writes through a later node, the link probes the
//!   earlier ones every [`FAILBACK_EVERY`] and goes back to the first that
//!   is usable again. Servers that failed over at different moments, or a
//!   server started after the failure, so meet again on one node. A node
//!   that rejoined is Synced only once it has caught up (IST or SST).
//! - *Reads after a switch*: every session of a list sets
//!   `wsrep_sync_wait = 1`: each read, and the START TRANSACTION of each
//!   transaction, first waits until the node has applied every write the
//!   cluster committed before it. Rows written through the previous node
//!   (a batch whose COMMIT reply was lost with it, say) are seen, even while
//!   they wait in this node's apply queue. Writes need no wait: a write
//!   that conflicts with one its node has not applied yet fails
//!   certification, as a deadlock (1213): the calls that run deadlock
//!   victims again (order batches, settling, leases) do, the others answer
//!   `busy`.
//!
//! Streaming replication (`wsrep_trx_fragment_size` above 0) is not
//! supported: a batch's chunk that meets a unique key is undone as one
//! statement (`store::batch`), which Galera refuses once a fragment of the
//! transaction has replicated: it aborts the whole transaction, and each
//! run again meets the same key.
//!
//! Row locks are a node's own in Galera: a locking read (the lock of a
//! goods' row before a read of its holders) waits for writers on its node
//! only. What keeps two
//! servers on two nodes safe (for the few seconds until they meet again on
//! one) is that every write that must exclude another is a write the
//! certification sees: the epoch fence of a batch is an UPDATE of the goods'
//! row (see `store::batch`).
//!
//! Probes run in the calling thread, one caller at a time: a node that
//! refuses costs nothing; one that does not answer costs that call the
//! connect timeout (2 s), once per [`FAILBACK_EVERY`] during a failback.
//! Other callers go on with the pool they have, but for those whose node
//! failed: they wait for the probe under way (one round, each node within
//! the connect timeout), and run again on the pool it chose.
//!
//! With one URL there is nothing to choose: no probe, no session setting,
//! the link works as it does on a single MySQL.

use std::fmt;
use std::ops::Range;
use std::time::{Duration, Instant};

use ::mysql::prelude::Queryable;
use ::mysql::{Conn, Error, Opts, OptsBuilder, Pool};
use parking_lot::{Mutex, RwLock};

use super::errors::store_error;
use crate::store::StoreError;

/// How often the earlier nodes are probed while writing through a later
/// one: often enough that servers meet again within seconds, rarely enough
/// that a node flapping in and out of its cluster is not chased.
pub(super) const FAILBACK_EVERY: Duration = Duration::from_secs(5);

/// Run on each new connection to a Galera node, after the store's own
/// session settings (see the module's doc).
const SYNC_WAIT: &str = "SET SESSION wsrep_sync_wait = 1";

/// `wsrep_local_state` of a node that is Synced with its cluster.
const SYNCED: &str = "4";

/// The node a link writes through, and its pool of connections: replaced
/// after a failure, moved to another node where the list has several.
pub(super) struct Writer {
    /// In order of preference; one for a plain MySQL.
    nodes: Vec<Node>,
    current: RwLock<Current>,
    /// Held by the one caller that probes the nodes to choose a writer.
    /// The probes run outside `current`'s lock, which is taken after this
    /// one (never the other way): a call that only reads the pool never
    /// waits for a probe. A first choice or a failback takes it with
    /// `try_lock` and goes on with the pool it has; a caller whose node
    /// failed waits for the probe under way, so that its run again takes
    /// the pool that probe makes ([`Turn`]).
    choosing: Mutex<()>,
}

/// The pool in use.
struct Current {
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

impl Writer {
    /// On the first of `nodes` (one or more), nothing opened or probed yet.
    pub(super) fn new(nodes: Vec<Opts>) -> Result<Writer, StoreError> {
        let nodes: Vec<Node> = nodes.into_iter().map(Node::new).collect();
        if nodes.is_empty() {
            return Err(StoreError::Unavailable("mysql: no node".into()));
        }
        let pool = Pool::new(pool_opts(&nodes, 0)).map_err(|e| store_error("pool", &e))?;
        Ok(Writer {
            current: RwLock::new(Current {
                generation: 0,
                node: 0,
                pool,
                // One node: nothing to choose.
                chosen: nodes.len() == 1,
                failback_at: Instant::now(),
            }),
            nodes,
            choosing: Mutex::new(()),
        })
    }

    /// The pool to use and its generation: first chooses a writer if none
    /// is chosen yet, or probes the earlier nodes if their time has come.
    pub(super) fn current(&self) -> (u64, Pool) {
        let (generation, node, chosen, failback) = {
            let c = self.current.read();
            if c.chosen && (c.node == 0 || Instant::now() < c.failback_at) {
                return (c.generation, c.pool.clone());
            }
            (c.generation, c.node, c.chosen, c.failback_at)
        };
        if !chosen {
            self.choose(generation, 0..self.nodes.len(), Turn::Skip);
        } else if Instant::now() >= failback {
            self.choose(generation, 0..node, Turn::Skip);
        }
        let c = self.current.read();
        (c.generation, c.pool.clone())
    }

    /// The writer node's server, without the database, and the pool
    /// generation it goes with.
    pub(super) fn server(&self) -> (u64, Opts) {
        let (generation, _) = self.current();
        let c = self.current.read();
        (generation, self.nodes[c.node].server.clone())
    }

    /// The node of this generation's pool failed: a new pool on the same
    /// node when it is the only one, else on the first usable node (which
    /// may be the same: a connection closed for inactivity is no failed
    /// node). The old pool closes its idle connections when the last caller
    /// using it is done.
    pub(super) fn failed(&self, generation: u64) {
        if self.nodes.len() > 1 {
            self.choose(generation, 0..self.nodes.len(), Turn::Wait);
            return;
        }
        let mut c = self.current.write();
        if c.generation != generation {
            return;
        }
        // With no minimum of connections, creating a pool connects nothing
        // and cannot fail; if it ever does, the old pool stays.
        if let Ok(pool) = Pool::new(self.nodes[0].opts.clone()) {
            c.pool = pool;
            c.generation += 1;
        }
    }

    /// Probes `candidates` in order and moves to the first usable one, with
    /// a new pool, unless another caller is choosing (`turn` says whether
    /// to wait for its choice) or has already replaced this generation.
    /// When none is usable: a new pool on the same node after a failure
    /// (its connections are suspect), and the next call probes again; the
    /// earlier nodes of a failback are probed again after
    /// [`FAILBACK_EVERY`].
    fn choose(&self, generation: u64, candidates: Range<usize>, turn: Turn) {
        let _turn = match (self.choosing.try_lock(), turn) {
            (Some(held), _) => held,
            (None, Turn::Skip) => return,
            // Once the other caller has chosen: this generation replaced
            // then (found below), or probed again.
            (None, Turn::Wait) => self.choosing.lock(),
        };
        let failback = {
            let c = self.current.read();
            if c.generation != generation {
                return;
            }
            c.chosen && candidates.end <= c.node
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
        let mut c = self.current.write();
        match found {
            Some((i, health)) => {
                let Ok(pool) = Pool::new(pool_opts(&self.nodes, i)) else {
                    return;
                };
                // A switch is news; the first choice only says where.
                if c.chosen && i != c.node {
                    log::warn!(
                        "mysql order store: writing through node {} ({health:?}) instead of {}",
                        self.nodes[i],
                        self.nodes[c.node]
                    );
                } else if !c.chosen {
                    log::info!(
                        "mysql order store: writing through node {} ({health:?})",
                        self.nodes[i]
                    );
                }
                *c = Current {
                    generation: c.generation + 1,
                    node: i,
                    pool,
                    chosen: true,
                    failback_at: Instant::now() + FAILBACK_EVERY,
                };
            }
            None if failback => c.failback_at = Instant::now() + FAILBACK_EVERY,
            None => {
                if let Ok(pool) = Pool::new(pool_opts(&self.nodes, c.node)) {
                    c.pool = pool;
                    c.generation += 1;
                }
            }
        }
    }

    /// Refuses a list with a node that answers and is no Galera node
    /// (see the module's docs). A node that does not answer now is let
    /// be: it is probed again before it is ever written through, and then
    /// passed over if plain. One URL is a plain MySQL or a Galera node,
    /// either fine.
    pub(super) fn check_nodes(&self) -> Result<(), StoreError> {
        if self.nodes.len() < 2 {
            return Ok(());
        }
        for node in &self.nodes {
            if let Ok(Health::Plain) = probe(node) {
                return Err(StoreError::Inconsistent(format!(
                    "mysql node {node} is no Galera node (wsrep_on is not ON): a --mysql list \
                     names the nodes of one Galera cluster; servers failing over on their own \
                     between plain servers would sell from different order stores"
                )));
            }
        }
        Ok(())
    }

    /// Which node it writes through (an index into the list).
    #[cfg(test)]
    pub(super) fn node(&self) -> usize {
        self.current.read().node
    }

    #[cfg(test)]
    pub(super) fn generation(&self) -> u64 {
        self.current.read().generation
    }
}

/// The connection options of a pool on node `i` of `nodes`: with the sync
/// wait in a list, as every node of a list is a Galera node.
fn pool_opts(nodes: &[Node], i: usize) -> Opts {
    let opts = nodes[i].opts.clone();
    if nodes.len() < 2 {
        return opts;
    }
    let mut init = opts.get_init();
    init.push(SYNC_WAIT.to_string());
    OptsBuilder::from_opts(opts).init(init).into()
}

/// One node of the list.
pub(super) struct Node {
    /// Connections to the store's database.
    pub(super) opts: Opts,
    /// The server without a database: for probes, and to create the
    /// database.
    pub(super) server: Opts,
}

impl Node {
    pub(super) fn new(opts: Opts) -> Node {
        let server = OptsBuilder::from_opts(opts.clone())
            .db_name(None::<String>)
            .into();
        Node { opts, server }
    }
}

impl fmt::Display for Node {
    /// `host:port`: never the password.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}",
            self.opts.get_ip_or_hostname(),
            self.opts.get_tcp_port()
        )
    }
}

/// What a probe found. Probes are made only where a list names several
/// nodes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Health {
    /// Answers, and is no Galera node: no place to write in a list.
    Plain,
    /// A Galera node, Synced and ready.
    Galera,
    /// A Galera node that is not (its state, for the log).
    NotReady(String),
}

impl Health {
    pub(super) fn usable(&self) -> bool {
        *self == Health::Galera
    }
}

/// Connects to `node` and asks whether it can take writes. SHOW statements
/// only: a Galera node that is not ready refuses anything else.
pub(super) fn probe(node: &Node) -> Result<Health, Error> {
    let mut conn = Conn::new(node.server.clone())?;
    let wsrep_on: Option<(String, String)> =
        conn.query_first("SHOW GLOBAL VARIABLES LIKE 'wsrep_on'")?;
    // No such variable (MySQL) or OFF (a MariaDB without a provider).
    if !wsrep_on.is_some_and(|(_, on)| on.eq_ignore_ascii_case("ON")) {
        return Ok(Health::Plain);
    }
    let status: Vec<(String, String)> = conn.query(
        "SHOW GLOBAL STATUS WHERE Variable_name IN
         ('wsrep_ready', 'wsrep_local_state', 'wsrep_local_state_comment')",
    )?;
    let value = |name: &str| {
        status
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map_or("", |(_, v)| v.as_str())
    };
    if value("wsrep_ready").eq_ignore_ascii_case("ON") && value("wsrep_local_state") == SYNCED {
        Ok(Health::Galera)
    } else {
        Ok(Health::NotReady(format!(
            "wsrep_ready {}, state {}",
            value("wsrep_ready"),
            value("wsrep_local_state_comment")
        )))
    }
}

/// The URLs of a `--mysql` list: split at each comma that starts another
/// `mysql://` URL, so that a comma inside one URL (a password, a
/// parameter) stays in it.
pub fn split_urls(list: &str) -> Vec<&str> {
    let mut urls = Vec::new();
    let mut start = 0;
    for (i, _) in list.match_indices(',') {
        if list[i + 1..].trim_start().starts_with("mysql://") {
            urls.push(list[start..i].trim());
            start = i + 1;
        }
    }
    urls.push(list[start..].trim());
    urls
}

/// What a caller that finds another choosing the writer node does.
#[derive(Debug, Clone, Copy)]
enum Turn {
    /// Goes on with the pool it has: a first choice or a failback probe,
    /// which the other caller's choice makes for it.
    Skip,
    /// Waits for that choice: a caller whose node failed, and which will
    /// run its call again at once. Without the wait, that run would take
    /// the failed pool again (a COMMIT whose reply was lost with its node
    /// then left in doubt, though the next node would have told).
    Wait,
}

#[cfg(test)]
mod tests;
