//! Open files: every connection of a flash sale is a file descriptor, and
//! the soft limit a shell usually hands down (1024) would cap the server at
//! about a thousand buyers, the rest left waiting in the listen queue. Like
//! nginx, Redis and HAProxy, the server raises its own soft limit to the
//! hard limit at start, fits its connection limit to what it got, and says
//! both.

use log::{info, warn};

use crate::config::Config;

/// Descriptors kept for everything but client connections: the listeners,
/// each reactor's and the acceptor's epoll and waker, store connections,
/// the data file, logs.
const RESERVED: u64 = 256;

/// The configuration with `max_connections` no more than the open-files
/// limit allows, after raising the soft limit to the hard one.
pub fn fit_connections(config: &Config) -> Config {
    let mut fitted = config.clone();
    let before = rlimit::getrlimit(rlimit::Resource::NOFILE).map(|(soft, _)| soft);
    let limit = match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => limit,
        Err(e) => {
            warn!("cannot read or raise the open-files limit ({e}); --max-connections is used as given");
            return fitted;
        }
    };
    let room = usize::try_from(limit.saturating_sub(RESERVED).max(1)).unwrap_or(usize::MAX);
    match before {
        Ok(before) if before < limit => {
            info!("open files: soft limit raised from {before} to {limit} (the hard limit)")
        }
        _ => info!("open files: limit {limit}"),
    }
    if room < config.max_connections {
        warn!(
            "--max-connections {} needs more open files than the limit of {limit} allows: serving at most {room} connections; raise the hard limit (ulimit -Hn, systemd LimitNOFILE=) to serve more",
            config.max_connections
        );
        fitted.max_connections = room;
    }
    info!("connections: at most {}", fitted.max_connections);
    fitted
}
