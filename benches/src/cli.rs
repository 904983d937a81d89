//! Flags.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Load generator for the seckill flash-sale server: proves a deployment
/// before a flash sale.
///
/// Many connections are driven by a few threads (mio). Closed loop by
/// default: each connection keeps --pipeline requests in flight. With
/// --rate, open loop: requests leave at scheduled instants and latency is
/// measured from those instants, so a stalling server cannot hide its tail.
#[derive(Parser, Debug, Clone)]
#[command(name = "seckill-bench", version)]
pub struct Cli {
    #[command(flatten)]
    pub common: Common,
    #[command(subcommand)]
    pub scenario: Scenario,
}

/// Flags every scenario takes.
#[derive(Args, Debug, Clone)]
pub struct Common {
    /// The seckill server, or several of one sale, comma-separated: the
    /// connections are spread over them round robin, and the verification
    /// covers them all (attack: one server only).
    #[arg(
        long,
        global = true,
        env = "SECKILL_ADDR",
        default_value = "127.0.0.1:7700",
        value_name = "ADDR[,ADDR...]"
    )]
    pub addr: String,

    /// The server's admin token: flash-crowd, sustained, lifecycle and attack
    /// create their goods with ADD_GOODS.
    #[arg(
        long,
        global = true,
        env = "SECKILL_ADMIN_TOKEN",
        hide_env_values = true
    )]
    pub token: Option<String>,

    /// Where admin commands go, if the server has an admin listener of its
    /// own (--admin-listen) [default: the first of --addr].
    #[arg(long, global = true, value_name = "ADDR")]
    pub admin_addr: Option<String>,

    /// Connections to open [default: 100; attack: 10].
    #[arg(long, short = 'c', global = true)]
    pub connections: Option<usize>,

    /// Threads that drive the connections [default: the number of cores,
    /// at most 4].
    #[arg(long, global = true)]
    pub threads: Option<usize>,

    /// Requests in flight per connection [default: 1; with --rate, the most
    /// in flight per connection, default 32].
    #[arg(long, short = 'd', global = true)]
    pub pipeline: Option<usize>,

    /// Open loop: send this many requests per second in all, at scheduled
    /// instants, and time each from its instant [attack: always open loop,
    /// default 2000].
    #[arg(long, global = true, value_name = "REQ_PER_S")]
    pub rate: Option<f64>,

    /// Split the goods a scenario adds over this many buckets (ADD_GOODS
    /// `buckets`, 1 to 64): a hot goods spread over a Redis Cluster's shards.
    #[arg(long, global = true, default_value_t = 1)]
    pub buckets: u16,

    /// Send each BUY with a client request id of its own, as the client
    /// crate does by default (the server and its Redis then remember every
    /// id for an hour; the redis-direct baseline passes each to the reserve
    /// script as the server would); without, BUYs carry none.
    #[arg(long, global = true)]
    pub request_ids: bool,

    /// Seed of the user order and the browse mix.
    #[arg(long, global = true, default_value_t = 1)]
    pub seed: u64,

    /// Give up on replies after this long without any.
    #[arg(long, global = true, default_value = "30s", value_parser = humantime::parse_duration)]
    pub timeout: Duration,

    /// Print one JSON object with the whole report to stdout.
    #[arg(long, global = true)]
    pub json: bool,

    /// The server's process id, when it runs on this machine: report the
    /// CPU time it spent on the run, and per request answered (attack:
    /// also its resident memory, VmRSS, after each phase).
    #[arg(long, global = true, value_name = "PID")]
    pub server_pid: Option<u32>,

    /// Process ids of the stores (Redis, MySQL) when they run on this
    /// machine: their CPU time is reported beside the server's.
    #[arg(long, global = true, value_name = "PID,...", value_delimiter = ',')]
    pub store_pids: Vec<u32>,

    /// The server's metrics endpoint (its --metrics-listen: host:port or an
    /// http:// URL), or one per server, comma-separated: scraped right
    /// before and after the load, to report the requests the servers
    /// counted and their own latency percentiles beside the bench's
    /// (flash-crowd against the server, sustained and browse).
    #[arg(long, global = true, value_name = "URL,...", value_delimiter = ',')]
    pub metrics: Vec<String>,

    /// Draw throughput and p99 latency per second into this SVG file.
    #[arg(long, global = true, value_name = "FILE.svg")]
    pub plot: Option<PathBuf>,
}

#[derive(Subcommand, Debug, Clone)]
pub enum Scenario {
    /// U users rush one goods of small stock: N BUY attempts in all, each
    /// user at least once when N ≥ U (the rest are retries). Then checks
    /// that nothing was oversold or lost.
    FlashCrowd(FlashCrowd),
    /// BUYs of a goods that never sells out, every one by a new user, for
    /// --duration: accepted orders/s end to end. Then checks, as the flash
    /// crowd does, that every `ok` is an order sold (and in MySQL with
    /// --mysql).
    Sustained(Sustained),
    /// What a front page asks: LIST_GOODS and GET_GOODS, for --duration.
    Browse(Browse),
    /// The order lifecycle: U users BUY a goods with a short payment
    /// window; of the orders, some are cancelled, some never paid, the rest
    /// paid over the window (some at its very end, racing the server's
    /// expiry sweep). Past the window, every order must be paid or
    /// cancelled and every unit paid or back on sale; then the users left
    /// without a paid order buy the returned units.
    Lifecycle(Lifecycle),
    /// What a normal client sees while the server is under hostile traffic:
    /// an open-loop mix of GET_GOODS, LIST_GOODS and BUY, first alone
    /// (baseline), then beside each attack in turn, one --phase each.
    Attack(Attack),
    /// A sale opens and everyone connects at once: --connects connections
    /// from --clients threads, each connected and greeted (HELLO), all held
    /// until the last is made. Reports connect latency, the kernel's
    /// listen-queue overflows, and the server's CPU with --server-pid.
    ConnectStorm(ConnectStorm),
    /// The flash crowd, open loop, once at each of --rates (a new goods
    /// each, each verified), --rounds times: p50, p99 and p99.9 timed from
    /// the schedule, and the highest offered rate whose median p99 is within
    /// --p99-target. --plot draws latency against the offered rate.
    Sweep(Sweep),
}

#[derive(Args, Debug, Clone)]
pub struct Sweep {
    /// Offered rates (BUYs/s in all), comma-separated, run in this order.
    #[arg(
        long,
        value_delimiter = ',',
        required = true,
        value_name = "REQ_PER_S,..."
    )]
    pub rates: Vec<f64>,

    /// Run the whole list of rates this many times, one round after the
    /// other: on a shared machine one run's p99 is noisy, and a rate counts
    /// as within the target when the median of its rounds' p99s is.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=100))]
    pub rounds: u32,

    /// The p99 a rate must keep to count as sustained.
    #[arg(long, default_value = "10ms", value_parser = humantime::parse_duration)]
    pub p99_target: Duration,

    /// What to call this server in the text and the plot (a mode, a
    /// build).
    #[arg(long)]
    pub label: Option<String>,

    #[command(flatten)]
    pub crowd: FlashCrowd,
}

#[derive(Args, Debug, Clone)]
pub struct ConnectStorm {
    /// Connections to open in all.
    #[arg(long, default_value_t = 10_000)]
    pub connects: usize,

    /// Threads connecting, each issuing its share of the connects at once
    /// (non-blocking), then greeting each as it comes up.
    #[arg(long, default_value_t = 50)]
    pub clients: usize,

    /// Connects each thread keeps in flight (1: one blocking connect after
    /// another) [default: its whole share at once].
    #[arg(long, value_name = "N")]
    pub in_flight: Option<usize>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum TargetKind {
    /// The seckill server at --addr.
    Server,
    /// Redis at --redis, with the server's own reserve script, one buyer a
    /// call: the baseline of what the stock deduction alone costs.
    RedisDirect,
}

#[derive(Args, Debug, Clone)]
pub struct FlashCrowd {
    /// Distinct users.
    #[arg(long, short = 'u', default_value_t = 10_000)]
    pub users: u64,

    /// BUY attempts in all.
    #[arg(long, short = 'n', default_value_t = 20_000)]
    pub attempts: u64,

    /// Units of the goods on sale.
    #[arg(long, short = 's', default_value_t = 1_000)]
    pub stock: u32,

    /// The first user id; users are this and the next U − 1.
    #[arg(long, default_value_t = 1)]
    pub first_user: u64,

    /// Rush this goods instead of adding one (then --token and --stock are
    /// not needed). It must be on sale under the default rules (one order
    /// per user, no purchase token) with nothing sold yet: the
    /// verification counts every unit sold of it. For servers that learn
    /// of a goods only when they start, add it before starting them.
    #[arg(long, value_name = "ID")]
    pub goods: Option<u64>,

    #[command(flatten)]
    pub direct: Direct,

    /// The server's MySQL database: also verify the orders there.
    #[arg(long, value_name = "URL")]
    pub mysql: Option<String>,

    /// How long verification waits for MySQL to show every order (the
    /// `queued` ack mode writes behind the replies).
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    pub verify_timeout: Duration,
}

#[derive(Args, Debug, Clone)]
pub struct Lifecycle {
    /// Distinct users; each BUYs once.
    #[arg(long, short = 'u', default_value_t = 10_000)]
    pub users: u64,

    /// Units of the goods on sale.
    #[arg(long, short = 's', default_value_t = 1_000)]
    pub stock: u32,

    /// The first user id; users are this and the next U − 1.
    #[arg(long, default_value_t = 1)]
    pub first_user: u64,

    /// The goods' payment window: an order unpaid this long after it was
    /// made is cancelled by the server and its unit goes back on sale.
    #[arg(long, default_value = "3s", value_parser = humantime::parse_duration)]
    pub pay_window: Duration,

    /// Share of the orders their buyers cancel, each at a random time in
    /// the window.
    #[arg(long, default_value_t = 0.2)]
    pub cancel_share: f64,

    /// Share of the orders never paid: the server must cancel them.
    #[arg(long, default_value_t = 0.2)]
    pub abandon_share: f64,

    /// Of the orders paid, the share paid within 5% of the window's end,
    /// either side (racing the expiry sweep); the others are paid at a
    /// random time in the first 90% of it.
    #[arg(long, default_value_t = 0.1)]
    pub late_share: f64,

    /// The server's --expiry-interval: verification starts this long after
    /// the last payment window closed.
    #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
    pub expiry_interval: Duration,

    /// How much longer verification waits for every order to settle
    /// (paid or cancelled) before it fails.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    pub verify_timeout: Duration,

    /// Skip the second round, in which the users left without a paid order
    /// buy the units that came back.
    #[arg(long)]
    pub no_rebuy: bool,

    /// The server's MySQL database: also verify the orders there.
    #[arg(long, value_name = "URL")]
    pub mysql: Option<String>,
}

#[derive(Args, Debug, Clone)]
pub struct Sustained {
    /// How long to buy.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    pub duration: Duration,

    /// The server's MySQL database: also verify the orders there (against
    /// the server; redis-direct verifies against Redis).
    #[arg(long, value_name = "URL")]
    pub mysql: Option<String>,

    /// How long verification waits for the servers and MySQL to show every
    /// order (the `queued` ack mode writes behind the replies).
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    pub verify_timeout: Duration,

    #[command(flatten)]
    pub direct: Direct,
}

/// The redis-direct baseline's flags, shared by flash-crowd and sustained.
#[derive(Args, Debug, Clone)]
pub struct Direct {
    /// What to load.
    #[arg(long, value_enum, default_value_t = TargetKind::Server)]
    pub target: TargetKind,

    /// Run against the server, then against Redis directly, and print
    /// server ÷ redis-direct throughput.
    #[arg(long)]
    pub compare: bool,

    /// Redis for --target redis-direct and --compare.
    #[arg(
        long,
        value_name = "URL",
        env = "SECKILL_BENCH_REDIS",
        default_value = "redis://127.0.0.1:6379"
    )]
    pub redis: String,

    /// Prefix of the redis-direct keys (deleted at the end).
    #[arg(long, default_value = "seckill-bench:")]
    pub redis_prefix: String,
}

#[derive(Args, Debug, Clone)]
pub struct Browse {
    /// How long to browse.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    pub duration: Duration,

    /// Share of LIST_GOODS among the requests; the rest are GET_GOODS.
    #[arg(long, default_value_t = 0.2)]
    pub list_share: f64,

    /// Goods to create (needs --token) when the server has none.
    #[arg(long, default_value_t = 10)]
    pub goods: u32,
}

#[derive(Args, Debug, Clone)]
pub struct Attack {
    /// How long each phase lasts (the baseline and each attack).
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    pub phase: Duration,

    /// The attacks to run, comma-separated [default: all]. They run in the
    /// order listed here, whatever the order given.
    #[arg(long, value_enum, value_delimiter = ',')]
    pub attacks: Vec<AttackKind>,

    /// Connections of each reconnecting attack (random-bytes, huge-length,
    /// zero-length, wrong-version), one thread each.
    #[arg(long, default_value_t = 50)]
    pub attackers: usize,

    /// Connections the truncated attack holds, each with a frame begun and
    /// never finished.
    #[arg(long, default_value_t = 1_000)]
    pub slow_connections: usize,

    /// Connections the idle-10k attack holds, sending nothing (capped by the
    /// open-files limit).
    #[arg(long, default_value_t = 10_000)]
    pub idle_connections: usize,

    /// Clients of the no-read attack.
    #[arg(long, default_value_t = 20)]
    pub no_readers: usize,

    /// Connections of the unread-goods attack.
    #[arg(long, default_value_t = 1_500)]
    pub unread_connections: usize,

    /// Requests the million-pipelined client writes without reading.
    #[arg(long, default_value_t = 1_000_000)]
    pub pipelined: u64,

    /// Kernel send buffer of each attack connection (SO_SNDBUF), 0 for the
    /// kernel's autotuning. An attacker's send buffers are on its own
    /// machine; with the bench on the server's machine, autotuned ones
    /// (megabytes each, for connections the server does not read) fill
    /// the kernel's TCP memory that the server's connections share, and
    /// the run measures that instead of the server.
    #[arg(long, default_value_t = 64 << 10)]
    pub attack_send_buffer: usize,

    /// Source address of the attack's connections (bound before each
    /// connect), so that the server tells the attacker from the normal
    /// client, which connects from the default source: on loopback, e.g.
    /// 127.0.0.2. Off (the default), both come from the same address, and
    /// the server's per-address limits would refuse both alike.
    #[arg(long)]
    pub attack_from: Option<std::net::IpAddr>,
}

/// One kind of hostile traffic (SECURITY.md, threat model).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, ValueEnum)]
pub enum AttackKind {
    /// Connections sending random bytes, reconnecting.
    RandomBytes,
    /// Connections that begin a frame and go silent (slowloris), reopened
    /// when the server cuts them at its --frame-timeout.
    Truncated,
    /// A length prefix of 4 GiB (0xFFFFFFFF), reconnecting.
    HugeLength,
    /// A length prefix of 0, reconnecting.
    ZeroLength,
    /// Well-framed requests with unknown opcodes, pipelined after HELLO
    /// (the replies are read).
    UnknownOpcode,
    /// HELLO with protocol version 999, reconnecting.
    WrongVersion,
    /// --idle-connections connections that send nothing.
    #[value(name = "idle-10k")]
    Idle10k,
    /// Clients pipelining PINGs and BUYs as fast as they can, never reading.
    NoRead,
    /// --unread-connections connections pipelining GET_GOODS for as long
    /// as the server reads them, never reading a reply: what the server's
    /// memory holds for them, and gives back after they close.
    UnreadGoods,
    /// One client writing --pipelined requests without reading.
    MillionPipelined,
}

impl AttackKind {
    /// Every attack, in the order they run.
    pub const ALL: [AttackKind; 10] = [
        AttackKind::RandomBytes,
        AttackKind::Truncated,
        AttackKind::HugeLength,
        AttackKind::ZeroLength,
        AttackKind::UnknownOpcode,
        AttackKind::WrongVersion,
        AttackKind::Idle10k,
        AttackKind::NoRead,
        AttackKind::UnreadGoods,
        AttackKind::MillionPipelined,
    ];

    /// The name `--attacks` takes and the report shows.
    pub fn name(self) -> &'static str {
        match self {
            AttackKind::RandomBytes => "random-bytes",
            AttackKind::Truncated => "truncated",
            AttackKind::HugeLength => "huge-length",
            AttackKind::ZeroLength => "zero-length",
            AttackKind::UnknownOpcode => "unknown-opcode",
            AttackKind::WrongVersion => "wrong-version",
            AttackKind::Idle10k => "idle-10k",
            AttackKind::NoRead => "no-read",
            AttackKind::UnreadGoods => "unread-goods",
            AttackKind::MillionPipelined => "million-pipelined",
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn the_flags_hold_together() {
        Cli::command().debug_assert();
    }

    #[test]
    fn common_flags_go_after_the_scenario() {
        let cli = Cli::try_parse_from([
            "seckill-bench",
            "flash-crowd",
            "--connections",
            "7",
            "--json",
            "--rate",
            "500",
            "--users",
            "3",
        ])
        .unwrap();
        assert_eq!(cli.common.connections, Some(7));
        assert!(cli.common.json);
        assert_eq!(cli.common.rate, Some(500.0));
        let Scenario::FlashCrowd(f) = cli.scenario else {
            panic!("not a flash crowd")
        };
        assert_eq!((f.users, f.attempts, f.stock), (3, 20_000, 1_000));
    }

    #[test]
    fn lifecycle_flags_parse_with_their_defaults() {
        let cli = Cli::try_parse_from(["seckill-bench", "lifecycle", "--json"]).unwrap();
        let Scenario::Lifecycle(l) = cli.scenario else {
            panic!("not a lifecycle")
        };
        assert_eq!((l.users, l.stock, l.first_user), (10_000, 1_000, 1));
        assert_eq!(l.pay_window, Duration::from_secs(3));
        assert_eq!(
            (l.cancel_share, l.abandon_share, l.late_share),
            (0.2, 0.2, 0.1)
        );
        assert_eq!(l.expiry_interval, Duration::from_secs(1));
        assert!(!l.no_rebuy && l.mysql.is_none());
        assert!(cli.common.json);

        let cli = Cli::try_parse_from([
            "seckill-bench",
            "lifecycle",
            "--pay-window",
            "1s",
            "--expiry-interval",
            "100ms",
            "--cancel-share",
            "0.5",
            "--no-rebuy",
        ])
        .unwrap();
        let Scenario::Lifecycle(l) = cli.scenario else {
            panic!("not a lifecycle")
        };
        assert_eq!(l.pay_window, Duration::from_secs(1));
        assert_eq!(l.expiry_interval, Duration::from_millis(100));
        assert_eq!(l.cancel_share, 0.5);
        assert!(l.no_rebuy);
    }

    #[test]
    fn attack_flags_parse_with_their_defaults() {
        let cli = Cli::try_parse_from(["seckill-bench", "attack", "--token", "t"]).unwrap();
        let Scenario::Attack(a) = cli.scenario else {
            panic!("not an attack")
        };
        assert_eq!(a.phase, Duration::from_secs(5));
        assert!(a.attacks.is_empty(), "empty means all");
        assert_eq!((a.attackers, a.slow_connections), (50, 1_000));
        assert_eq!((a.idle_connections, a.no_readers), (10_000, 20));
        assert_eq!((a.pipelined, cli.common.server_pid), (1_000_000, None));
        assert_eq!((cli.common.rate, cli.common.connections), (None, None));

        let cli = Cli::try_parse_from([
            "seckill-bench",
            "attack",
            "--attacks",
            "idle-10k,huge-length",
            "--phase",
            "3s",
            "--server-pid",
            "42",
            "--rate",
            "500",
        ])
        .unwrap();
        let Scenario::Attack(a) = cli.scenario else {
            panic!("not an attack")
        };
        assert_eq!(a.attacks, [AttackKind::Idle10k, AttackKind::HugeLength]);
        assert_eq!(a.phase, Duration::from_secs(3));
        assert_eq!(cli.common.server_pid, Some(42));
        assert_eq!(cli.common.rate, Some(500.0));
        assert!(Cli::try_parse_from(["seckill-bench", "attack", "--attacks", "nope"]).is_err());
    }

    #[test]
    fn attack_names_are_the_flag_values() {
        for kind in AttackKind::ALL {
            let value = kind.to_possible_value().expect("a value");
            assert_eq!(value.get_name(), kind.name());
            assert_eq!(AttackKind::from_str(kind.name(), false), Ok(kind));
        }
        let mut sorted = AttackKind::ALL;
        sorted.sort();
        assert_eq!(sorted, AttackKind::ALL, "ALL is in the declared order");
    }
}
