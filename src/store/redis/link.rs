//! The link to Redis: one Redis or a Redis Cluster ([`Target`]), a small
//! pool of connections to it ([`Link`]), the one place a call runs
//! ([`RedisStock::call`] and [`RedisStock::call_effect`]), and what a Redis
//! error means to the sale.
//!
//! On a cluster every call stays in one slot: a goods' keys share its hash
//! tag, so each script, pipeline and MULTI goes whole to the goods' primary
//! (the cluster client routes by the first key). The client follows MOVED
//! and ASK, waits out TRYAGAIN and CLUSTERDOWN, refreshes its slot map when
//! a node answers that it no longer serves a slot, and sends a command
//! again after a dropped connection. That last one is why every script is
//! safe to run twice: a resent RESERVE finds its order numbers already
//! held and answers as the first run did.

use std::time::Duration;

use ::redis::cluster::{ClusterClient, ClusterConnection};
use ::redis::cluster_routing::{Route, RoutingInfo, SingleNodeRoutingInfo, SlotAddr};
use ::redis::{Client, Cmd, Connection, ConnectionLike, ErrorKind, RedisError, RedisResult, Value};

use super::{RedisStock, Replication};
use crate::store::StoreError;

/// How long to wait for a connection, and for any reply but a blocking
/// read's: a dead Redis costs a worker this long, never more.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
pub(super) const IO_TIMEOUT: Duration = Duration::from_secs(2);
/// Idle connections kept for reuse; more are closed when handed back.
const MAX_IDLE: usize = 32;
/// How often the cluster client tries a command again (after a redirect, a
/// cluster still electing a primary, a dropped link), and how long it waits
/// in between: about 2 s in all, so that a worker stuck in a failover (which
/// takes about twice the cluster's node timeout) gives up and answers busy
/// rather than hold its BUYs for the whole election.
const CLUSTER_RETRIES: u32 = 4;
const CLUSTER_RETRY_WAIT_MS: (u64, u64) = (50, 1000);

/// Where the stock lives.
pub(super) enum Target {
    One(Client),
    /// A Redis Cluster, found through its seed nodes.
    Cluster(ClusterClient),
}

impl Target {
    /// One Redis at `url`.
    pub(super) fn one(url: &str) -> Result<Self, StoreError> {
        Client::open(url)
            .map(Target::One)
            .map_err(|e| StoreError::Unavailable(format!("bad redis url: {e}")))
    }

    /// A Redis Cluster found through any of `seeds` (URLs or HOST:PORT).
    pub(super) fn cluster(seeds: &[String]) -> Result<Self, StoreError> {
        let urls: Vec<String> = seeds
            .iter()
            .map(|s| {
                if s.contains("://") {
                    s.clone()
                } else {
                    format!("redis://{s}")
                }
            })
            .collect();
        let (min_wait, max_wait) = CLUSTER_RETRY_WAIT_MS;
        ClusterClient::builder(urls)
            .connection_timeout(CONNECT_TIMEOUT)
            .response_timeout(IO_TIMEOUT)
            .retries(CLUSTER_RETRIES)
            .min_retry_wait(min_wait)
            .max_retry_wait(max_wait)
            .build()
            .map(Target::Cluster)
            .map_err(|e| StoreError::Unavailable(format!("bad redis cluster seeds: {e}")))
    }

    pub(super) fn connect(&self) -> RedisResult<Link> {
        match self {
            Target::One(client) => {
                let con = client.get_connection_with_timeout(CONNECT_TIMEOUT)?;
                con.set_read_timeout(Some(IO_TIMEOUT))?;
                con.set_write_timeout(Some(IO_TIMEOUT))?;
                Ok(Link::One(con))
            }
            Target::Cluster(client) => {
                let con = client.get_connection()?;
                con.set_read_timeout(Some(IO_TIMEOUT))?;
                con.set_write_timeout(Some(IO_TIMEOUT))?;
                Ok(Link::Cluster(Box::new(con)))
            }
        }
    }
}

/// A connection to the [`Target`]: to one Redis, or to every node of a
/// cluster it has talked to.
pub(super) enum Link {
    One(Connection),
    /// Boxed: a cluster connection is four times the size of one to one
    /// Redis, and pooled links are moved in and out of the pool.
    Cluster(Box<ClusterConnection>),
}

impl Link {
    /// WAIT until `r.replicas` replicas of the node serving `key` have
    /// every write this link sent it, or `r.timeout` passes; how many did.
    /// On a cluster, sent to that node (the crate would send WAIT to every
    /// primary).
    pub(super) fn wait_replicas(&mut self, key: &str, r: &Replication) -> RedisResult<i64> {
        let mut wait = ::redis::cmd("WAIT");
        wait.arg(r.replicas).arg(
            u64::try_from(r.timeout.as_millis())
                .unwrap_or(u64::MAX)
                .max(1),
        );
        match self {
            Link::One(con) => wait.query(con),
            Link::Cluster(con) => {
                let node = Route::with_key(key, SlotAddr::Master);
                let routing = RoutingInfo::SingleNode(SingleNodeRoutingInfo::SpecificNode(node));
                // WAIT counts the writes of the connection it is sent on.
                // The cluster client reconnects a node whose connection
                // broke and sends again: on the new connection, which has
                // written nothing, WAIT would confirm at once what never
                // reached a replica. So no reconnection for it: the error
                // instead, which the caller takes as in doubt.
                con.set_auto_reconnect(false);
                let waited = con.route_command(&wait, routing);
                con.set_auto_reconnect(true);
                Ok(::redis::from_redis_value(waited?)?)
            }
        }
    }

    pub(super) fn set_read_timeout(&self, timeout: Option<Duration>) -> RedisResult<()> {
        match self {
            Link::One(con) => con.set_read_timeout(timeout),
            Link::Cluster(con) => con.set_read_timeout(timeout),
        }
    }

    fn inner(&mut self) -> &mut dyn ConnectionLike {
        match self {
            Link::One(con) => con,
            Link::Cluster(con) => &mut **con,
        }
    }
}

/// Commands and scripts run on a `Link` as on any connection.
impl ConnectionLike for Link {
    fn req_packed_command(&mut self, cmd: &[u8]) -> RedisResult<Value> {
        self.inner().req_packed_command(cmd)
    }

    fn req_packed_commands(
        &mut self,
        cmd: &[u8],
        offset: usize,
        count: usize,
    ) -> RedisResult<Vec<Value>> {
        self.inner().req_packed_commands(cmd, offset, count)
    }

    fn req_command(&mut self, cmd: &Cmd) -> RedisResult<Value> {
        self.inner().req_command(cmd)
    }

    fn get_db(&self) -> i64 {
        match self {
            Link::One(con) => con.get_db(),
            Link::Cluster(con) => con.get_db(),
        }
    }

    fn check_connection(&mut self) -> bool {
        self.inner().check_connection()
    }

    fn is_open(&self) -> bool {
        match self {
            Link::One(con) => con.is_open(),
            Link::Cluster(con) => con.is_open(),
        }
    }
}

pub(super) fn inconsistent(what: String) -> StoreError {
    StoreError::Inconsistent(format!("redis: {what}"))
}

/// Whether a failed connection can still be used: only if Redis answered
/// (with an error) and the reply was read whole.
pub(super) fn reusable(e: &RedisError) -> bool {
    matches!(e.kind(), ErrorKind::Server(_) | ErrorKind::Extension)
}

/// What a Redis error means to the sale: a broken value is `Inconsistent`;
/// everything else (I/O, timeouts, LOADING, OOM, READONLY, ...) may pass.
fn store_error(what: &str, e: &RedisError) -> StoreError {
    let broken = match e.kind() {
        ErrorKind::Parse | ErrorKind::UnexpectedReturnType => true,
        ErrorKind::Extension => e.code() == Some("WRONGTYPE"),
        // A script that failed at run time (e.g. a stock that is no integer).
        ErrorKind::Server(::redis::ServerErrorKind::ResponseError) => {
            e.detail().is_some_and(|d| d.contains("script"))
        }
        _ => false,
    };
    if broken {
        inconsistent(format!("{what}: {e}"))
    } else {
        StoreError::Unavailable(format!("redis {what}: {e}"))
    }
}

pub(super) fn to_u32(what: &str, n: i64) -> Result<u32, StoreError> {
    u32::try_from(n).map_err(|_| inconsistent(format!("{what}: stock {n} out of range")))
}

pub(super) fn parse_u64(what: &str, s: &str) -> Result<u64, StoreError> {
    s.parse()
        .map_err(|_| inconsistent(format!("{what}: {s:?} is no u64")))
}

impl RedisStock {
    /// Whether the stock is on a Redis Cluster.
    pub(super) fn is_cluster(&self) -> bool {
        matches!(self.target, Target::Cluster(_))
    }

    /// After a link broke with `e` (it is dropped): empties the pool of
    /// idle links too, or not. With one Redis, it does: they are most
    /// likely as dead (Redis restarted), and each would fail one more
    /// request. On a cluster, not for a timeout: a link there is one
    /// connection per node, one node that stalls says nothing of the
    /// others' connections, and each new link connects to and PINGs every
    /// node (seconds, with one stalled):
    /// dropping the pool made every worker wait on the stalled node, the
    /// BUYs of goods on healthy shards with them. But it does for any other
    /// failure (a connection refused or reset, say): a node gone for good
    /// leaves the pooled links a slot map that still names it (the client
    /// refreshes its map on MOVED, not on such errors), and new links read
    /// a fresh one.
    fn after_broken_link(&self, e: &RedisError) {
        if !self.is_cluster() || !e.is_timeout() {
            let idle = std::mem::take(&mut *self.pool.lock());
            drop(idle);
        }
    }

    /// A pooled connection, or a new one with timeouts set.
    fn connection(&self) -> RedisResult<Link> {
        let pooled = self.pool.lock().pop();
        if let Some(con) = pooled {
            return Ok(con);
        }
        self.target.connect()
    }

    /// Runs `f` on a connection, hands the connection back if it is still
    /// good, and reports the result to the outage tracker.
    pub(super) fn call<T>(
        &self,
        what: &str,
        f: impl FnOnce(&mut Link) -> RedisResult<T>,
    ) -> Result<T, StoreError> {
        self.run(what, false, f)
    }

    /// [`call`](Self::call) for a command that changes the stock (a script,
    /// a load): once it has been sent, a broken link or a timeout does not
    /// mean it did not run (a Redis that stalls runs it when it wakes up),
    /// so such a failure is [`StoreError::Indeterminate`], never
    /// `Unavailable` ("nothing was done").
    pub(super) fn call_effect<T>(
        &self,
        what: &str,
        f: impl FnOnce(&mut Link) -> RedisResult<T>,
    ) -> Result<T, StoreError> {
        self.run(what, true, f)
    }

    fn run<T>(
        &self,
        what: &str,
        effect: bool,
        f: impl FnOnce(&mut Link) -> RedisResult<T>,
    ) -> Result<T, StoreError> {
        let mut sent = false;
        let result = self.connection().and_then(|mut con| {
            sent = true;
            let result = f(&mut con);
            match &result {
                // The link broke or timed out: it goes, and perhaps the
                // idle links with it.
                Err(e) if !reusable(e) => self.after_broken_link(e),
                _ if con.is_open() => {
                    let mut pool = self.pool.lock();
                    if pool.len() < MAX_IDLE {
                        pool.push(con);
                    }
                }
                _ => {}
            }
            result
        });
        let result = result.map_err(|e| match store_error(what, &e) {
            StoreError::Unavailable(m) if effect && sent && !reusable(&e) => {
                StoreError::Indeterminate(m)
            }
            other => other,
        });
        match &result {
            Err(e @ (StoreError::Unavailable(_) | StoreError::Indeterminate(_))) => {
                self.outage.failed(e)
            }
            _ => self.outage.ok(),
        }
        result
    }
}
