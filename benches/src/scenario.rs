//! The scenarios: set up, run the engine, verify, report.

use std::net::{SocketAddr, ToSocketAddrs};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use seckill_client::{Client, Goods, NewGoods, SaleRules};

use crate::attack;
use crate::checks;
use crate::cli::{self, Cli, Common, Scenario, TargetKind};
use crate::engine::wire::RequestIds;
use crate::engine::{self, Finished, Pace, Plan, Target};
use crate::error::Error;
use crate::lifecycle;
use crate::redis_goods::RedisGoods;
use crate::report::{Comparison, GoodsInfo, Header, Output, Report};
use crate::server_view::{ServerMetrics, Watch};
use crate::servers;
use crate::users::UserPicker;
use crate::verify::{check_sold, check_store, Ledger, StoreCheck, Verification};
use crate::workload;

/// Stock of the sustained scenario's goods: never sold out in a run.
const SUSTAINED_STOCK: u32 = 2_000_000_000;
/// Stock of each goods browse creates when the server has none.
const BROWSE_STOCK: u32 = 1_000;
/// How long setup and verification requests may wait.
const ADMIN_TIMEOUT: Duration = Duration::from_secs(30);
/// Connections of every scenario but attack, unless told.
const DEFAULT_CONNECTIONS: usize = 100;

/// Runs the scenario the flags name.
pub fn run(cli: &Cli) -> Result<Output, Error> {
    let common = &cli.common;
    let watched = match &cli.scenario {
        Scenario::FlashCrowd(cli::FlashCrowd { direct, .. })
        | Scenario::Sustained(cli::Sustained { direct, .. }) => {
            direct.target == TargetKind::Server || direct.compare
        }
        Scenario::Browse(_) => true,
        _ => false,
    };
    if !common.metrics.is_empty() && !watched {
        return Err(Error::Setup(
            "--metrics is for flash-crowd against the server, sustained and browse".into(),
        ));
    }
    match &cli.scenario {
        Scenario::FlashCrowd(args) if args.direct.compare => Ok(compare(
            flash_crowd_server(common, args)?,
            flash_crowd_redis(common, args)?,
        )),
        Scenario::FlashCrowd(args) => match args.direct.target {
            TargetKind::Server => flash_crowd_server(common, args),
            TargetKind::RedisDirect => flash_crowd_redis(common, args),
        }
        .map(single),
        Scenario::Sustained(args) if args.direct.compare => Ok(compare(
            sustained(common, args)?,
            sustained_redis(common, args)?,
        )),
        Scenario::Sustained(args) => match args.direct.target {
            TargetKind::Server => sustained(common, args),
            TargetKind::RedisDirect => sustained_redis(common, args),
        }
        .map(single),
        Scenario::Browse(args) => browse(common, args).map(single),
        Scenario::Attack(args) => attack::run(common, args),
        Scenario::Lifecycle(args) => lifecycle::run(common, args),
        Scenario::ConnectStorm(args) => {
            crate::storm::run(common, args).map(|s| Output::Storm(Box::new(s)))
        }
        Scenario::Sweep(args) => {
            crate::sweep::run(common, args).map(|s| Output::Sweep(Box::new(s)))
        }
    }
}

fn single(report: Report) -> Output {
    Output::Single(Box::new(report))
}

/// The server's run beside the same run straight against Redis.
fn compare(server: Report, redis_direct: Report) -> Output {
    let ratio = if redis_direct.throughput_rps > 0.0 {
        server.throughput_rps / redis_direct.throughput_rps
    } else {
        0.0
    };
    Output::Compare(Box::new(Comparison {
        server,
        redis_direct,
        ratio,
    }))
}

/// The engine plan the common flags describe.
pub fn plan(common: &Common, duration: Option<Duration>, keep_acks: bool) -> Plan {
    let pace = match common.rate {
        Some(rate) => Pace::Open {
            rate,
            max_in_flight: common.pipeline.unwrap_or(32),
        },
        None => Pace::Closed {
            pipeline: common.pipeline.unwrap_or(1),
        },
    };
    let connections = common.connections.unwrap_or(DEFAULT_CONNECTIONS).max(1);
    let threads = common
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get().min(4)));
    Plan {
        connections,
        threads: threads.clamp(1, connections),
        pace,
        duration,
        drain: common.timeout,
        stall: common.timeout,
        seed: common.seed,
        keep_acks,
        retry_busy: 0,
        live: true,
        watch: common
            .server_pid
            .into_iter()
            .chain(common.store_pids.iter().copied())
            .collect(),
    }
}

pub(crate) fn header(
    common: &Common,
    plan: &Plan,
    scenario: &'static str,
    target: &'static str,
    addr: String,
) -> Header {
    Header {
        scenario,
        target,
        addr,
        connections: plan.connections,
        threads: plan.threads,
        pace: plan.pace,
        seed: common.seed,
        request_ids: common.request_ids,
    }
}

/// The run's client request ids, with `--request-ids`.
pub(crate) fn request_ids(common: &Common) -> Result<Option<RequestIds>, Error> {
    Ok(if common.request_ids {
        Some(RequestIds::draw()?)
    } else {
        None
    })
}

/// A server address list as `--addr` takes it: comma-separated, each
/// resolved to its first address.
pub(crate) fn resolve_all(list: &str) -> Result<Vec<SocketAddr>, Error> {
    let mut addrs = Vec::new();
    for addr in list.split(',').map(str::trim) {
        if addr.is_empty() {
            return Err(Error::Setup(format!(
                "--addr {list:?} has an empty server address"
            )));
        }
        addrs.push(resolve(addr)?);
    }
    Ok(addrs)
}

/// The addresses for a report's header: comma-separated.
pub(crate) fn joined(addrs: &[SocketAddr]) -> String {
    addrs
        .iter()
        .map(SocketAddr::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

pub(crate) fn resolve(addr: &str) -> Result<SocketAddr, Error> {
    addr.to_socket_addrs()
        .map_err(|e| Error::Io {
            what: format!("resolving {addr}"),
            source: e,
        })?
        .next()
        .ok_or_else(|| Error::Setup(format!("{addr} resolves to no address")))
}

/// Where ADD_GOODS goes: --admin-addr, or the first server of --addr.
fn admin_addr(common: &Common) -> Result<SocketAddr, Error> {
    match &common.admin_addr {
        Some(addr) => resolve(addr),
        None => resolve_all(&common.addr)?
            .first()
            .copied()
            .ok_or_else(|| Error::Setup("--addr names no server".into())),
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

pub(crate) fn admin_token<'a>(common: &'a Common, why: &str) -> Result<&'a str, Error> {
    common.token.as_deref().ok_or_else(|| {
        Error::Setup(format!(
            "{why} creates goods with ADD_GOODS: give the server's admin token (--token or SECKILL_ADMIN_TOKEN)"
        ))
    })
}

/// Puts a goods of `stock` units on sale under the default rules, open
/// from a minute ago for an hour.
pub(crate) fn add_goods(
    common: &Common,
    token: &str,
    what: &str,
    stock: u32,
) -> Result<Goods, Error> {
    add_goods_with(common, token, what, stock, SaleRules::default())
}

/// [`add_goods`] under rules of its own.
pub(crate) fn add_goods_with(
    common: &Common,
    token: &str,
    what: &str,
    stock: u32,
    rules: SaleRules,
) -> Result<Goods, Error> {
    let addr = admin_addr(common)?;
    let mut admin = Client::builder(addr)
        .token(token)
        .read_timeout(ADMIN_TIMEOUT)
        .connect()?;
    let now = now_ms();
    Ok(admin.add_goods(NewGoods {
        name: format!("seckill-bench {what} {now}"),
        price_cents: 100,
        stock,
        start_ms: now.saturating_sub(60_000),
        end_ms: now + 3_600_000,
        rules,
        buckets: common.buckets,
    })?)
}

/// Runs the load with the servers' metrics scraped right before and right
/// after it (`--metrics`), so that they cover the load and nothing else.
fn watched(
    common: &Common,
    load: impl FnOnce() -> Finished,
) -> Result<(Finished, Option<ServerMetrics>), Error> {
    let watch = Watch::start(&common.metrics)?;
    let finished = load();
    Ok((finished, watch.map(Watch::finish)))
}

/// The flash crowd against the server, verified through the protocol (and
/// MySQL with --mysql).
pub fn flash_crowd_server(common: &Common, args: &cli::FlashCrowd) -> Result<Report, Error> {
    let addrs = resolve_all(&common.addr)?;
    let goods = match args.goods {
        Some(id) => servers::fresh_goods(&addrs, id)?,
        None => {
            let token = admin_token(common, "flash-crowd")?;
            add_goods(common, token, "flash-crowd", args.stock)?
        }
    };
    servers::await_goods(&addrs, goods.id)?;
    let picker = UserPicker::new(args.users, args.first_user, common.seed);
    let workload = workload::FlashCrowd::new(goods.id, picker, args.attempts);
    let plan = plan(common, None, true);
    let target = Target::Seckill {
        addrs: addrs.clone(),
        request_ids: request_ids(common)?,
    };
    let (finished, server_metrics) = watched(common, || engine::run(&plan, &target, &workload))?;
    let header = header(common, &plan, "flash-crowd", "server", joined(&addrs));
    let mut report = Report::new(header, &finished);
    report.server_metrics = server_metrics;
    report.goods = Some(GoodsInfo {
        id: goods.id,
        stock: goods.total,
    });
    let store = StoreVerify {
        mysql: args.mysql.as_deref(),
        timeout: args.verify_timeout,
    };
    report.verification =
        Some(verify_server(&addrs, goods.id, &finished, store).unwrap_or_else(|e| unverified(&e)));
    Ok(report)
}

/// Where and how long verification looks for the orders besides the
/// servers: MySQL, if given, waited on for up to `timeout` (the `queued` ack
/// mode writes behind the replies), as are the servers' views of the goods.
#[derive(Clone, Copy)]
struct StoreVerify<'a> {
    mysql: Option<&'a str>,
    timeout: Duration,
}

/// The flash crowd's checks, over every server the run went through: what
/// is left as they all show it once they agree, each acknowledged order
/// through ORDER_STATUS at the server that acknowledged it, and MySQL,
/// which they share.
fn verify_server(
    addrs: &[SocketAddr],
    goods: u64,
    finished: &Finished,
    store: StoreVerify<'_>,
) -> Result<Verification, Error> {
    let ledger = Ledger::of(&finished.acks);
    let unknown = finished.recorder.outcomes.lost;
    let settled = servers::settled_goods(addrs, goods, store.timeout)?;
    let after = settled.goods;
    let mut v = verification(&ledger, after.total, after.remaining, unknown);
    let mut problems = ledger.problems.clone();
    problems.extend(settled.problems);
    // What the BUYs whose replies were lost did: the orders their users
    // hold that no `ok` told of.
    let lost_orders = if unknown > 0 {
        checks::lost_orders(addrs, goods, &ledger, &finished.lost_buys)
    } else {
        None
    };
    v.lost_orders = lost_orders;
    problems.extend(check_sold(
        &ledger,
        after.total,
        after.remaining,
        unknown,
        lost_orders,
    ));
    // MySQL first: how long it lags behind the replies is worth knowing.
    if let Some(url) = store.mysql {
        let expected = match lost_orders {
            _ if unknown == 0 => ledger.ok,
            Some(found) => ledger.ok + found,
            None => v.sold,
        };
        let live = checks::mysql_live_orders(url, goods, expected, store.timeout)?;
        problems.extend(check_store("mysql", &ledger, expected, &live.rows));
        v.store = Some(StoreCheck {
            name: "mysql".into(),
            live_orders: live.rows.len() as u64,
            waited_ms: live.waited.as_millis() as u64,
        });
    }
    let begun = std::time::Instant::now();
    let (checked, found) = checks::order_status(addrs, goods, &ledger)?;
    v.orders_checked = checked;
    v.order_status_ms = begun.elapsed().as_millis() as u64;
    problems.extend(found);
    v.conclude(problems);
    Ok(v)
}

/// A verification that could not be made: failed, with the reason.
fn unverified(e: &Error) -> Verification {
    let mut v = Verification::default();
    v.conclude(vec![format!("could not verify: {e}")]);
    v
}

fn verification(ledger: &Ledger, total: u32, remaining: u32, unknown: u64) -> Verification {
    Verification {
        total,
        remaining,
        sold: u64::from(total.saturating_sub(remaining)),
        ok_replies: ledger.ok,
        holders: ledger.holders.len() as u64,
        unknown_outcomes: unknown,
        ..Verification::default()
    }
}

/// The same flash crowd straight against Redis: the server's reserve
/// script, one buyer per EVALSHA, under a key prefix of the bench's own.
pub fn flash_crowd_redis(common: &Common, args: &cli::FlashCrowd) -> Result<Report, Error> {
    let plan = plan(common, None, true);
    redis_direct(
        common,
        &args.direct,
        &plan,
        "flash-crowd",
        args.stock,
        |goods| {
            let picker = UserPicker::new(args.users, args.first_user, common.seed);
            workload::FlashCrowd::new(goods, picker, args.attempts)
        },
    )
}

/// The sustained scenario straight against Redis: one call of the server's
/// reserve script per BUY, each by a new user, on a goods that never sells
/// out; the in-stock baseline.
pub fn sustained_redis(common: &Common, args: &cli::Sustained) -> Result<Report, Error> {
    let plan = plan(common, Some(args.duration), true);
    redis_direct(
        common,
        &args.direct,
        &plan,
        "sustained",
        SUSTAINED_STOCK,
        |goods| workload::Sustained::new(goods, 1),
    )
}

/// Runs `workload` (made for the goods id) against Redis at
/// `direct.redis`, on a goods of `stock` units of the run's own, then
/// verifies that the units sold are the `ok` replies and the holders in
/// Redis, and deletes the goods' keys.
fn redis_direct<W: engine::Workload>(
    common: &Common,
    direct: &cli::Direct,
    plan: &Plan,
    scenario: &'static str,
    stock: u32,
    workload: impl FnOnce(u64) -> W,
) -> Result<Report, Error> {
    let client = redis::Client::open(direct.redis.as_str())?;
    let info = client.get_connection_info();
    let addr = match info.addr() {
        redis::ConnectionAddr::Tcp(host, port) => resolve(&format!("{host}:{port}"))?,
        other => {
            return Err(Error::Setup(format!(
                "redis-direct needs a plain TCP redis:// URL, not {other:?}"
            )))
        }
    };
    let settings = info.redis_settings();
    let mut greeting = Vec::new();
    if let Some(password) = settings.password() {
        let mut auth = redis::cmd("AUTH");
        if let Some(user) = settings.username() {
            auth.arg(user);
        }
        greeting.push(auth.arg(password).get_packed_command());
    }
    if settings.db() != 0 {
        greeting.push(redis::cmd("SELECT").arg(settings.db()).get_packed_command());
    }
    greeting.push(redis::cmd("PING").get_packed_command());

    // A goods id of the run's own, so that runs never share keys.
    let goods = now_ms();
    let loaded = RedisGoods::load(&client, &direct.redis_prefix, goods, stock)?;
    let script = loaded.reserve_script(greeting)?;
    let workload = workload(goods);
    let target = Target::RedisDirect {
        addr,
        script,
        request_ids: request_ids(common)?,
    };
    let finished = engine::run(plan, &target, &workload);
    let header = header(common, plan, scenario, "redis-direct", addr.to_string());
    let mut report = Report::new(header, &finished);
    report.goods = Some(GoodsInfo { id: goods, stock });

    let ledger = Ledger::of(&finished.acks);
    let unknown = finished.recorder.outcomes.lost;
    let (remaining, holders) = match loaded.snapshot() {
        Ok(Some(found)) => found,
        Ok(None) => {
            report.verification = Some(unverified(&Error::Setup(format!(
                "the stock of goods {goods} vanished from redis"
            ))));
            return Ok(report);
        }
        Err(e) => {
            report.verification = Some(unverified(&e));
            return Ok(report);
        }
    };
    let mut v = verification(&ledger, stock, remaining, unknown);
    let mut problems = ledger.problems.clone();
    // Redis's own holders are checked against the ledger below.
    problems.extend(check_sold(&ledger, stock, remaining, unknown, None));
    let expected = if unknown == 0 { ledger.ok } else { v.sold };
    problems.extend(check_store("redis", &ledger, expected, &holders));
    v.store = Some(StoreCheck {
        name: "redis".into(),
        live_orders: holders.len() as u64,
        waited_ms: 0,
    });
    v.conclude(problems);
    report.verification = Some(v);
    Ok(report)
}

/// BUYs by new users of a goods that never sells out, for a while.
pub fn sustained(common: &Common, args: &cli::Sustained) -> Result<Report, Error> {
    let addrs = resolve_all(&common.addr)?;
    let token = admin_token(common, "sustained")?;
    let goods = add_goods(common, token, "sustained", SUSTAINED_STOCK)?;
    servers::await_goods(&addrs, goods.id)?;
    let workload = workload::Sustained::new(goods.id, 1);
    let plan = plan(common, Some(args.duration), true);
    let target = Target::Seckill {
        addrs: addrs.clone(),
        request_ids: request_ids(common)?,
    };
    let (finished, server_metrics) = watched(common, || engine::run(&plan, &target, &workload))?;
    let header = header(common, &plan, "sustained", "server", joined(&addrs));
    let mut report = Report::new(header, &finished);
    report.server_metrics = server_metrics;
    report.goods = Some(GoodsInfo {
        id: goods.id,
        stock: SUSTAINED_STOCK,
    });
    // As the flash crowd's: units sold = `ok` replies, every acknowledged
    // order shown by ORDER_STATUS at its server, and in MySQL with --mysql.
    let store = StoreVerify {
        mysql: args.mysql.as_deref(),
        timeout: args.verify_timeout,
    };
    report.verification =
        Some(verify_server(&addrs, goods.id, &finished, store).unwrap_or_else(|e| unverified(&e)));
    Ok(report)
}

/// LIST_GOODS and GET_GOODS, for a while.
pub fn browse(common: &Common, args: &cli::Browse) -> Result<Report, Error> {
    let addrs = resolve_all(&common.addr)?;
    let first = *addrs
        .first()
        .ok_or_else(|| Error::Setup("--addr names no server".into()))?;
    let mut client = Client::builder(first)
        .read_timeout(ADMIN_TIMEOUT)
        .connect()?;
    let mut list = client.list_goods()?;
    if list.is_empty() {
        let token = admin_token(common, "browse, on a server with no goods,")?;
        for _ in 0..args.goods.max(1) {
            add_goods(common, token, "browse", BROWSE_STOCK)?;
        }
        list = client.list_goods()?;
    }
    for goods in &list {
        servers::await_goods(&addrs, goods.id)?;
    }
    let workload = workload::Browse::new(list.iter().map(|g| g.id).collect(), args.list_share);
    let plan = plan(common, Some(args.duration), false);
    let target = Target::Seckill {
        addrs: addrs.clone(),
        request_ids: request_ids(common)?,
    };
    let (finished, server_metrics) = watched(common, || engine::run(&plan, &target, &workload))?;
    let header = header(common, &plan, "browse", "server", joined(&addrs));
    let mut report = Report::new(header, &finished);
    report.server_metrics = server_metrics;
    Ok(report)
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[test]
    fn addr_is_a_comma_separated_list() {
        let addrs = resolve_all("127.0.0.1:7701, 127.0.0.1:7702").unwrap();
        assert_eq!(joined(&addrs), "127.0.0.1:7701,127.0.0.1:7702");
        assert_eq!(resolve_all("127.0.0.1:7701").unwrap().len(), 1);
        for bad in ["", "127.0.0.1:7701,", "127.0.0.1:7701,,127.0.0.1:7702"] {
            assert!(
                matches!(resolve_all(bad), Err(Error::Setup(e)) if e.contains("empty")),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn attack_measures_one_server() {
        let cli = Cli::try_parse_from([
            "seckill-bench",
            "attack",
            "--addr",
            "127.0.0.1:1,127.0.0.1:2",
            "--token",
            "t",
        ])
        .unwrap();
        match run(&cli) {
            Err(Error::Setup(why)) => assert!(why.contains("one server"), "{why}"),
            other => panic!("{other:?}"),
        }
        // The server's metrics cover one run of load, which attack is not.
        let watched = Cli::try_parse_from([
            "seckill-bench",
            "attack",
            "--token",
            "t",
            "--metrics",
            "127.0.0.1:1",
        ])
        .unwrap();
        match run(&watched) {
            Err(Error::Setup(why)) => assert!(why.contains("--metrics is for"), "{why}"),
            other => panic!("{other:?}"),
        }
        let crowd = Cli::try_parse_from(["seckill-bench", "flash-crowd", "--goods", "7"]).unwrap();
        let Scenario::FlashCrowd(args) = crowd.scenario else {
            panic!("not a flash crowd")
        };
        assert_eq!(args.goods, Some(7));
    }
}
