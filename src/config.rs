//! Server configuration: every setting is a flag, and every flag may come
//! from the command line, from a `SECKILL_*` environment variable, or from a
//! TOML file named by `--config`, in that order of precedence, before its
//! default (`layers.rs`). Secrets (the admin token, store URLs that may
//! carry a password) may also be read from a file of their own
//! (`secrets.rs`), so that none has to be on a command line, where `ps`
//! shows it. The effective configuration is logged at start with its
//! secrets redacted (`effective.rs`).

mod effective;
mod file;
mod layers;
mod secrets;

pub use effective::Effective;
pub use layers::{ConfigError, Loaded};

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use clap::Parser;

/// `--version`: the crate's version and the git commit it was built from
/// (build.rs).
pub const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (git ",
    env!("SECKILL_GIT_COMMIT"),
    ")"
);

/// The largest `--socket-buffer`: far above any kernel's cap, and small
/// enough that the kernel's doubling of it cannot overflow its `int`.
const MAX_SOCKET_BUFFER: i64 = 256 << 20;

/// The largest `--job-queue`: the channel allocates every slot at start.
const MAX_JOB_QUEUE: usize = 1 << 24;
/// The largest `--batch-max`: BUYs in one stock call, orders in one write.
const MAX_BATCH: usize = 100_000;

/// A flash-sale server: a mio reactor in front of a stock store and an
/// order store.
#[derive(Parser, Debug, Clone)]
#[command(name = "seckill-server", version = VERSION)]
pub struct Config {
    /// Read settings from this TOML file: its keys are the long flags
    /// without their dashes in front (`listen = "0.0.0.0:7700"`,
    /// `redis-wait-timeout = "100ms"`). The command line and the
    /// environment override it.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:7700")]
    pub listen: SocketAddr,

    /// Length of the listen queue (connections the kernel has completed
    /// and the server not yet accepted). A sale opens with everyone
    /// connecting at once: past the queue, the kernel drops the handshake
    /// and the client waits a SYN retransmit (a second or more). Linux caps
    /// it at net.core.somaxconn; the server warns when it does.
    #[arg(long, default_value_t = 4096)]
    pub backlog: u32,

    /// Kernel buffer of each client connection, each way (SO_RCVBUF and
    /// SO_SNDBUF, set on the listening socket and inherited by every
    /// connection; Linux doubles it for its bookkeeping). Requests and
    /// replies are small, so a small buffer costs nothing, and it bounds
    /// what a connection that sends without reading pins in the kernel:
    /// left to autotuning, 1,500 such connections filled the kernel's TCP
    /// memory (net.ipv4.tcp_mem) and every connection on the machine
    /// stalled on dropped packets. 0 leaves the sizes to the kernel, which
    /// also caps what is set at net.core.rmem_max and wmem_max (the server
    /// warns when it does).
    #[arg(long, default_value_t = 64 << 10,
          value_parser = clap::value_parser!(u32).range(0..=MAX_SOCKET_BUFFER))]
    pub socket_buffer: u32,

    /// Threads that accept connections, each from a listen queue of its own
    /// on the one port (SO_REUSEPORT: Linux hashes each new connection to
    /// one of the queues), so that a storm has up to N times --backlog to
    /// land in before the kernel drops handshakes: with Linux's default cap
    /// of 4096, 3 held 10,000 connects at once (BENCHMARKS.md, sixth
    /// session). A queue whose acceptor is kept off a core still overflows
    /// alone.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u8).range(1..=16))]
    pub acceptors: u8,

    /// Reactor threads that own connections [default: number of cores].
    #[arg(long)]
    pub reactors: Option<usize>,

    /// Worker threads that talk to the stores.
    #[arg(long, default_value_t = 4)]
    pub workers: usize,

    /// The embedded store's SQLite file (goods and orders), used when no
    /// `--mysql` is given.
    #[arg(long, default_value = "seckill.db")]
    pub data: PathBuf,

    /// Keep stock in this Redis (e.g. redis://127.0.0.1:6379) instead of
    /// process memory (see also --redis-cluster).
    #[arg(long, value_name = "URL")]
    pub redis: Option<StoreUrl>,

    /// Keep stock in this Redis Cluster instead, found through any of these
    /// seed nodes (HOST:PORT or redis:// URLs, comma-separated). Every
    /// goods' keys share one hash tag, so each stock call goes to one shard.
    #[arg(
        long,
        value_name = "HOST:PORT,...",
        value_delimiter = ',',
        conflicts_with = "redis"
    )]
    pub redis_cluster: Option<Vec<StoreUrl>>,

    /// Read --redis from this file (one URL; a trailing newline is
    /// dropped), so that its password is on no command line.
    #[arg(long, value_name = "PATH")]
    pub redis_file: Option<PathBuf>,

    /// Read --redis-cluster from this file (the seed nodes,
    /// comma-separated).
    #[arg(long, value_name = "PATH")]
    pub redis_cluster_file: Option<PathBuf>,

    /// Replicas each reservation and restock must reach (Redis WAIT on the
    /// goods' primary) before anyone is told "ok" on it; short of them
    /// within --redis-wait-timeout the BUY is answered `busy` and the goods
    /// reconciled. Replication is asynchronous, so without it a failover
    /// to a replica may lose the last deductions (durable mode reloads the
    /// goods when it sees the failover) or the last queued orders (queued
    /// mode: acknowledged orders lost). 0: no wait.
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub redis_wait: u32,

    /// How long --redis-wait waits for the replicas (at most 1s).
    #[arg(long, default_value = "100ms", value_parser = humantime::parse_duration)]
    pub redis_wait_timeout: Duration,

    /// Prefix of every Redis key this server uses.
    #[arg(long, default_value = "seckill:")]
    pub redis_prefix: String,

    /// Keep goods and orders in this MySQL/MariaDB database (e.g.
    /// mysql://root@127.0.0.1:3306/seckill) instead of the SQLite file.
    /// The database and its tables are created when missing. A
    /// comma-separated list of URLs names the nodes of a MariaDB Galera
    /// cluster, in order of preference: writes go through the first node
    /// that is Synced, and move to the next when it fails. A list with a
    /// plain (non-Galera) server in it is refused at start: servers
    /// failing over on their own between plain servers would part ways.
    #[arg(long, value_name = "URL[,URL...]")]
    pub mysql: Option<StoreUrl>,

    /// Read --mysql from this file (one URL, or a comma-separated list).
    #[arg(long, value_name = "PATH")]
    pub mysql_file: Option<PathBuf>,

    /// When a buyer is told "ok": `durable`, once the order is committed
    /// to the order store; `queued` (needs --redis), once the stock is
    /// deducted and the order appended to a Redis stream in the same atomic
    /// step; the stream is written to the order store behind. Lossless only
    /// if Redis persists its writes (appendonly yes, appendfsync always)
    /// and, with replicas, with --redis-wait: the server warns at start
    /// where Redis says otherwise.
    #[arg(long, value_enum, default_value_t = AckMode::Durable)]
    pub ack: AckMode,

    /// Token that grants admin commands in HELLO. Without one, admin
    /// commands are refused on every connection.
    #[arg(long, env = "SECKILL_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<Secret>,

    /// Read the admin token from this file (a trailing newline is dropped),
    /// e.g. a systemd credential.
    #[arg(long, value_name = "PATH")]
    pub admin_token_file: Option<PathBuf>,

    /// Largest request frame accepted (the length field), in bytes: 1 KiB
    /// (every request fits) to 16 MiB (a connection's read buffer grows to
    /// it).
    #[arg(long, default_value_t = seckill_proto::MAX_REQUEST_FRAME,
          value_parser = clap::value_parser!(u32).range(1024..=16 << 20))]
    pub max_frame: u32,

    /// Requests a connection may have in flight before the server stops
    /// reading from it.
    #[arg(long, default_value_t = 256)]
    pub max_inflight: usize,

    /// Unsent reply bytes above which the server stops reading a connection.
    #[arg(long, default_value_t = 64 << 10)]
    pub write_high_water: usize,

    /// Unsent reply bytes of all connections together. Past it, the
    /// connections that do not read their replies are closed, those with
    /// the most unsent first, with an error frame, until the total is
    /// back under it.
    #[arg(long, default_value_t = 64 << 20)]
    pub reply_budget: usize,

    /// Input bytes the read buffers of all connections may hold together
    /// (frames begun and not finished, and whole frames not served yet).
    /// Past it, the connections holding the largest unfinished frames are
    /// closed, largest first, with an error frame, until the total is back
    /// under it.
    #[arg(long, default_value_t = 64 << 20)]
    pub input_budget: usize,

    /// Frames a connection may send that the server cannot read (unknown
    /// opcode, bad body) or that come before HELLO, each answered
    /// `bad_request`, before it is closed (with an error frame): a broken or
    /// hostile client stops costing the server. Well-formed requests the
    /// server refuses do not count.
    #[arg(long, default_value_t = 32)]
    pub bad_request_budget: u32,

    /// Requests taken from one connection per turn of its reactor's loop:
    /// a connection with more waits for the next turn, so one client
    /// pipelining thousands cannot hold a reactor.
    #[arg(long, default_value_t = 64)]
    pub requests_per_turn: usize,

    /// Serve admin commands on this address only (keep it on loopback or a
    /// private network, e.g. 127.0.0.1:7701). The public listener then
    /// refuses the admin token.
    #[arg(long, value_name = "ADDR")]
    pub admin_listen: Option<SocketAddr>,

    /// Serve HTTP on this address: Prometheus metrics at /metrics, and
    /// /healthz (alive) and /readyz (stores reachable, goods loaded) for
    /// load balancers and service managers. Keep it on loopback or a
    /// private network (e.g. 127.0.0.1:9700): it needs no token.
    #[arg(long, value_name = "ADDR")]
    pub metrics_listen: Option<SocketAddr>,

    /// Open connections at most; past it, a new connection gets an error
    /// frame and is closed.
    #[arg(long, default_value_t = 100_000)]
    pub max_connections: usize,

    /// Open connections from one IP address at most (an IPv6 address
    /// counts by its /64).
    #[arg(long, default_value_t = 2048)]
    pub max_connections_per_ip: usize,

    /// Requests from one IP address (an IPv6 address: its /64), over all its
    /// connections, waiting for or at a worker at most; past it, a request
    /// that needs a store is answered `busy` at once, so that one address
    /// cannot fill the job queue and have every other client's requests
    /// refused. 0: no limit (the default, since clients behind one proxy or
    /// NAT share an address).
    #[arg(long, default_value_t = 0)]
    pub max_inflight_per_ip: usize,

    /// New connections one IP address (an IPv6 address: its /64) may open
    /// per second, on average (bursts of as many); past it, a connection
    /// gets an error frame and is closed as it is accepted. 0: no limit (the default, since clients
    /// behind one proxy or NAT share an address).
    #[arg(long, default_value_t = 0.0)]
    pub accept_rate_per_ip: f64,

    /// After an address is refused for --accept-rate-per-ip, drop its
    /// connection requests in the kernel for this long (Linux only: a
    /// filter on the public listening sockets), so that a reconnecting
    /// flood costs neither a handshake nor an accept; its connects wait for
    /// TCP's retransmission, a second or more. 0s (or another system):
    /// refuse each such connection at accept, with an error frame.
    #[arg(long, default_value = "2s", value_parser = humantime::parse_duration)]
    pub block_for: Duration,

    /// A frame that has begun must be complete within this long (against
    /// slowloris clients that trickle a frame to hold a connection).
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    pub frame_timeout: Duration,

    /// BUY requests one user may make per second, on average (0: no
    /// limit); the excess is answered `rate_limited`.
    #[arg(long, default_value_t = 10.0)]
    pub buy_rate: f64,

    /// BUY requests one user may make in a burst.
    #[arg(long, default_value_t = 20)]
    pub buy_burst: u32,

    /// Close a connection that has sent nothing for this long.
    #[arg(long, default_value = "300s", value_parser = humantime::parse_duration)]
    pub idle_timeout: Duration,

    /// Capacity of the job channel to the workers; past it, requests are
    /// answered `busy`.
    #[arg(long, default_value_t = 65_536)]
    pub job_queue: usize,

    /// Most BUYs merged into one stock call, and most orders in one write.
    #[arg(long, default_value_t = 1000)]
    pub batch_max: usize,

    /// This server's id in order numbers (0–1023), asked for explicitly.
    /// Node ids are leased from the order store (a `nodes` table): without
    /// this flag the server leases the lowest id no live server holds; with
    /// it, that id, and the server refuses to start while a live server
    /// holds it. A lease is renewed every few seconds; the id of a server
    /// killed without a clean stop is free once its lease runs out.
    #[arg(long, value_parser = clap::value_parser!(u16).range(0..=1023))]
    pub node_id: Option<u16>,

    /// How long a node id lease lasts without renewal, by the order
    /// store's clock (renewed every sixth of it). For tests.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration, hide = true)]
    pub node_lease: Duration,

    /// How often unpaid orders past their payment window are looked for
    /// (each is cancelled and its unit returned to stock).
    #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
    pub expiry_interval: Duration,

    /// How long a purchase token (TOKEN) stays good for its BUY (at most
    /// an hour: issued tokens are kept for twice this long).
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    pub token_ttl: Duration,

    /// How long shutdown waits for in-flight requests to be answered.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    pub shutdown_grace: Duration,
}

/// The longest timeout or interval taken: far past any use, far short of
/// overflowing a clock.
const MAX_TIMER: Duration = Duration::from_secs(30 * 24 * 3600);

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum AckMode {
    Durable,
    Queued,
}

impl Config {
    /// The configuration of this process: its command line, then the
    /// `SECKILL_*` environment, then the `--config` file, then the
    /// defaults; secrets read from their files.
    pub fn load() -> Result<Loaded, ConfigError> {
        layers::load()
    }

    /// [`load`](Self::load) from `args` (the program's name first) rather
    /// than this process's command line.
    pub fn load_from<I, T>(args: I) -> Result<Loaded, ConfigError>
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        layers::load_from(args)
    }

    /// Flags that only make sense together.
    pub fn check(&self) -> Result<(), String> {
        // Both size allocations made at start: the job channel's slots, the
        // order writer's batch.
        if !(1..=MAX_JOB_QUEUE).contains(&self.job_queue) {
            return Err(format!("--job-queue must be within 1..={MAX_JOB_QUEUE}"));
        }
        if !(1..=MAX_BATCH).contains(&self.batch_max) {
            return Err(format!("--batch-max must be within 1..={MAX_BATCH}"));
        }
        if !(self.buy_rate >= 0.0 && self.buy_rate.is_finite()) {
            return Err("--buy-rate must be a number of requests per second, 0 or more".into());
        }
        if !(self.accept_rate_per_ip >= 0.0 && self.accept_rate_per_ip.is_finite()) {
            return Err(
                "--accept-rate-per-ip must be a number of connections per second, 0 or more".into(),
            );
        }
        // Each is added to an Instant: a value past what a clock can hold
        // would panic a thread at its first use, long after the start.
        for (flag, value) in [
            ("--frame-timeout", self.frame_timeout),
            ("--idle-timeout", self.idle_timeout),
            ("--expiry-interval", self.expiry_interval),
            ("--shutdown-grace", self.shutdown_grace),
            ("--block-for", self.block_for),
        ] {
            if value > MAX_TIMER {
                return Err(format!("{flag} must be at most 30 days"));
            }
        }
        if self.token_ttl.is_zero() || self.token_ttl > Duration::from_secs(3600) {
            return Err("--token-ttl must be between 1 ms and 1 h".into());
        }
        if self.node_lease < Duration::from_millis(100)
            || self.node_lease > Duration::from_secs(3600)
        {
            return Err("--node-lease must be between 100 ms and 1 h".into());
        }
        // Clap refuses the two flags together; from a file of secrets one of
        // them may come late.
        if self.redis.is_some() && self.redis_cluster.is_some() {
            return Err("give --redis or --redis-cluster, not both".into());
        }
        if self.redis_wait > 0 && self.redis.is_none() && self.redis_cluster.is_none() {
            return Err("--redis-wait needs --redis or --redis-cluster".into());
        }
        if self.redis_wait_timeout.is_zero() || self.redis_wait_timeout > Duration::from_secs(1) {
            // WAIT shares the link's 2 s reply timeout.
            return Err("--redis-wait-timeout must be within 1ms..=1s".into());
        }
        if self.ack == AckMode::Queued && self.redis.is_none() && self.redis_cluster.is_none() {
            return Err(
                "--ack queued needs --redis or --redis-cluster: the queue is a Redis stream".into(),
            );
        }
        Ok(())
    }

    pub fn reactor_count(&self) -> usize {
        self.reactors
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
            .max(1)
    }
}

/// A string that never shows itself in `Debug` output, so a config dump or
/// a panic message cannot leak it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Whether `guess` is this secret, in time that depends on neither.
    /// The SHA-256 digests are compared, in constant time: a comparison of
    /// the strings themselves returns at once on a length that differs, and
    /// so would tell a guesser the token's length.
    pub fn matches(&self, guess: &str) -> bool {
        use sha2::{Digest, Sha256};
        let expected: [u8; 32] = Sha256::digest(self.0.as_bytes()).into();
        let guessed: [u8; 32] = Sha256::digest(guess.as_bytes()).into();
        constant_time_eq::constant_time_eq_32(&expected, &guessed)
    }
}

impl FromStr for Secret {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.is_empty() {
            return Err("the admin token must not be empty".into());
        }
        if s.len() > seckill_proto::MAX_TOKEN_LEN {
            return Err(format!(
                "the admin token is longer than {} bytes",
                seckill_proto::MAX_TOKEN_LEN
            ));
        }
        Ok(Secret(s.to_owned()))
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// A store's URL (or a Redis Cluster seed, or a `--mysql` list), which may
/// hold a password: used as the `str` it is, shown by `Debug` with its
/// passwords hidden, so that no `{:?}` of the configuration logs one.
#[derive(Clone, PartialEq, Eq)]
pub struct StoreUrl(String);

impl StoreUrl {
    pub fn new(url: impl Into<String>) -> StoreUrl {
        StoreUrl(url.into())
    }
}

impl std::ops::Deref for StoreUrl {
    type Target = str;

    fn deref(&self) -> &str {
        &self.0
    }
}

impl FromStr for StoreUrl {
    type Err = std::convert::Infallible;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(StoreUrl(s.to_owned()))
    }
}

impl fmt::Debug for StoreUrl {
    /// Every URL of a list, or a cluster seed, with its passwords hidden.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let shown = match self.0.contains("://") {
            true => crate::redact::mysql(&self.0),
            false => crate::redact::seed(&self.0),
        };
        write!(f, "StoreUrl({shown:?})")
    }
}

#[cfg(test)]
mod tests;
