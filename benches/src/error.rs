//! Why a run could not be made. A run that was made but failed its
//! verification is not an error: its report says so.

use thiserror::Error;

#[derive(Debug, Error)]
pub enum Error {
    /// Bad flags, a server that refused the setup, and the like.
    #[error("{0}")]
    Setup(String),
    #[error("seckill: {0}")]
    Client(#[from] seckill_client::Error),
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("mysql: {0}")]
    Mysql(#[from] mysql::Error),
    /// Redis holds something the stock scripts never write (a stock out of
    /// range, a buyers hash that is no list of numbers).
    #[error("redis store: {0}")]
    Store(String),
    #[error("{what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
    /// A scrape of `--metrics` before the run.
    #[error("metrics: {0}")]
    Metrics(#[from] seckill_client::metrics::Error),
    #[error("plot: {0}")]
    Plot(String),
}
