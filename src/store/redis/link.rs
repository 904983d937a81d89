//! The link to Redis: a small pool of connections, the one place a call
//! runs ([`RedisStock::call`] and [`RedisStock::call_effect`]), and what a
//! Redis error means to the sale.

use std::time::Duration;

use ::redis::{Connection, ConnectionLike, ErrorKind, RedisError, RedisResult};

use super::RedisStock;
use crate::store::StoreError;

/// How long to wait for a connection, and for any reply but a blocking
/// read's: a dead Redis costs a worker this long, never more.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
pub(super) const IO_TIMEOUT: Duration = Duration::from_secs(2);
/// Idle connections kept for reuse; more are closed when handed back.
const MAX_IDLE: usize = 32;

pub(super) fn inconsistent(what: String) -> StoreError {
    StoreError::Inconsistent(format!("redis: {what}"))
}

/// Whether a failed connection can still be used: only if Redis answered
/// (with an error) and the reply was read whole.
fn reusable(e: &RedisError) -> bool {
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
    /// A pooled connection, or a new one with timeouts set.
    fn connection(&self) -> RedisResult<Connection> {
        let pooled = self.pool.lock().pop();
        if let Some(con) = pooled {
            return Ok(con);
        }
        let con = self.client.get_connection_with_timeout(CONNECT_TIMEOUT)?;
        con.set_read_timeout(Some(IO_TIMEOUT))?;
        con.set_write_timeout(Some(IO_TIMEOUT))?;
        Ok(con)
    }

    /// Runs `f` on a connection, hands the connection back if it is still
    /// good, and reports the result to the outage tracker.
    pub(super) fn call<T>(
        &self,
        what: &str,
        f: impl FnOnce(&mut Connection) -> RedisResult<T>,
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
        f: impl FnOnce(&mut Connection) -> RedisResult<T>,
    ) -> Result<T, StoreError> {
        self.run(what, true, f)
    }

    fn run<T>(
        &self,
        what: &str,
        effect: bool,
        f: impl FnOnce(&mut Connection) -> RedisResult<T>,
    ) -> Result<T, StoreError> {
        let mut sent = false;
        let result = self.connection().and_then(|mut con| {
            sent = true;
            let result = f(&mut con);
            match &result {
                Err(e) if !reusable(e) => {
                    // The link broke or timed out: the idle connections
                    // are most likely as dead (Redis restarted), so they go
                    // too rather than each failing one more request.
                    let idle = std::mem::take(&mut *self.pool.lock());
                    drop(idle);
                }
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
