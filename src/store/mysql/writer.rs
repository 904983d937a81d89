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
//!   A node whose server is no Galera node (a plain MySQL) is usable when
//!   it answers.
//! - *Failover*: a link that broke, or a node that says it is not ready,
//!   makes the link choose again from the top of the list: a node that only
//!   closed an idle connection keeps its place; a dead one is passed over.
//! - *Failback*: while it writes through a later node, the link probes the
//!   earlier ones every [`FAILBACK_EVERY`] and goes back to the first that
//!   is usable again. Servers that failed over at different moments, or a
//!   server started after the failure, so meet again on one node. A node
//!   that rejoined is Synced only once it has caught up (IST or SST).
//! - *Reads after a switch*: a session on a Galera node sets
//!   `wsrep_sync_wait = 1`: each read, and the START TRANSACTION of each
//!   transaction, first waits until the node has applied every write the
//!   cluster committed before it. Rows written through the previous node
//!   (a batch whose COMMIT reply was lost with it, say) are seen, even while
//!   they wait in this node's apply queue. Writes need no wait: a write
//!   that conflicts with one its node has not applied yet fails
//!   certification, as a deadlock, which the calls run again.
//!
//! With one URL there is nothing to choose: no probe, no session setting,
//! the link works as it does on a single MySQL.

use std::fmt;
use std::time::Duration;

use ::mysql::prelude::Queryable;
use ::mysql::{Conn, Error, Opts, OptsBuilder};

/// How often the earlier nodes are probed while writing through a later
/// one: often enough that servers meet again within seconds, rarely enough
/// that a node flapping in and out of its cluster is not chased.
pub(super) const FAILBACK_EVERY: Duration = Duration::from_secs(5);

/// Run on each new connection to a Galera node, after the store's own
/// session settings (see the module's doc).
const SYNC_WAIT: &str = "SET SESSION wsrep_sync_wait = 1";

/// `wsrep_local_state` of a node that is Synced with its cluster.
const SYNCED: &str = "4";

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

    /// The connection options of a pool on this node: with the sync wait
    /// when it is a Galera node in a list.
    pub(super) fn pool_opts(&self, health: &Health) -> Opts {
        if *health != Health::Galera {
            return self.opts.clone();
        }
        let mut init = self.opts.get_init();
        init.push(SYNC_WAIT.to_string());
        OptsBuilder::from_opts(self.opts.clone()).init(init).into()
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

/// What a probe found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Health {
    /// Answers, and is no Galera node.
    Plain,
    /// A Galera node, Synced and ready.
    Galera,
    /// A Galera node that is not (its state, for the log).
    NotReady(String),
}

impl Health {
    pub(super) fn usable(&self) -> bool {
        !matches!(self, Health::NotReady(_))
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

#[cfg(test)]
mod tests;
