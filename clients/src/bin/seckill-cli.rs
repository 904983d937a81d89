//! `seckill-cli`: talk to a seckill flash-sale server from a shell.
//!
//! Tables for people, `--json` for scripts. Exit codes: 0 success; 2 a
//! flash-sale answer that is not a success (BUY sold out, not started or
//! ended; ORDER with no order); 1 any error, explained on stderr.

mod cli;

use std::io::Write;
use std::net::{SocketAddr, ToSocketAddrs};
use std::process::ExitCode;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{bail, Context};
use clap::{Parser, Subcommand};
use seckill_client::{Client, Error as ClientError, ErrorKind, Goods, NewGoods, Status};
use serde::Serialize;
use serde_json::json;

use cli::input::{parse_goods_id, parse_price, parse_when, resolve, unix_ms, When};
use cli::output::{
    goods_table, order_table, outcome, purchase_line, reconcile_table, stats_table, DriftJson,
    GoodsJson, OrderJson,
};

/// The exit code of an answer that is not a success but not an error either.
const EXIT_NO_LUCK: u8 = 2;

/// The help heading of the options every subcommand takes.
const GLOBAL: &str = "Global options";

#[derive(Parser)]
#[command(name = "seckill-cli", version)]
#[command(about = "Talk to a seckill flash-sale server")]
struct Cli {
    /// Server address, host:port.
    #[arg(long, global = true, help_heading = GLOBAL)]
    #[arg(env = "SECKILL_ADDR", default_value = "127.0.0.1:7700")]
    addr: String,
    /// Admin token, needed by `goods add`, `goods restock`, `stats` and
    /// `reconcile`.
    // The env value stays out of --help: the token is a secret.
    #[arg(long, global = true, help_heading = GLOBAL)]
    #[arg(env = "SECKILL_ADMIN_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Print one JSON value per command instead of text.
    #[arg(long, global = true, help_heading = GLOBAL)]
    json: bool,
    /// Connect, read and write timeout, e.g. 5s or 500ms.
    #[arg(long, global = true, help_heading = GLOBAL)]
    #[arg(default_value = "5s", value_parser = parse_timeout)]
    timeout: Duration,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Check the server answers, and how fast.
    Ping,
    /// List, show, add or restock goods.
    #[command(subcommand)]
    Goods(GoodsCommand),
    /// Try to buy one unit of a goods for a user (exit 2 if the sale says no).
    Buy {
        #[arg(long)]
        user: u64,
        #[arg(long)]
        goods: u64,
    },
    /// Show a user's order for a goods (exit 2 if there is none).
    Order {
        #[arg(long)]
        user: u64,
        #[arg(long)]
        goods: u64,
    },
    /// Show the server's counters (admin).
    Stats,
    /// Repair the stock store from the order store and show what was found
    /// and fixed, per goods (admin).
    ///
    /// DRIFT is FOUND LEFT minus LEFT: negative for units that were held back
    /// from sale (as a crash between the stock deduction and the order
    /// commit leaves them), positive for units that would have been sold
    /// twice. FOUND LEFT is `missing` when the stock store held no stock for
    /// the goods.
    Reconcile {
        /// Only this goods; without it, every goods.
        #[arg(long, value_parser = parse_goods_id)]
        goods: Option<u64>,
    },
}

#[derive(Subcommand)]
enum GoodsCommand {
    /// Every goods with its sale state.
    List,
    /// One goods.
    Show { id: u64 },
    /// Put a new goods on sale (admin).
    Add {
        /// Goods name, up to 200 bytes of UTF-8.
        #[arg(long)]
        name: String,
        /// Price in currency units with up to 2 decimals, e.g. 19.99.
        #[arg(long, value_parser = parse_price)]
        price: u64,
        /// Units to sell.
        #[arg(long)]
        stock: u32,
        /// When the sale opens: now, +DURATION (e.g. +10m) or RFC3339 UTC.
        #[arg(long, value_parser = parse_when, default_value = "now")]
        start: When,
        /// When it closes: +DURATION from now, DURATION after the start
        /// (e.g. 1h) or RFC3339 UTC.
        #[arg(long, value_parser = parse_when)]
        end: When,
    },
    /// Add units to a goods (admin).
    Restock {
        id: u64,
        #[arg(long)]
        amount: u32,
    },
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        // clap would exit with 2 on a usage error, which here means "the
        // sale said no"; a typo is an error like any other.
        Err(err) => {
            let _ = err.print();
            return if err.use_stderr() {
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    match run(&cli) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {}", explain(&err, &cli));
            ExitCode::FAILURE
        }
    }
}

fn run(cli: &Cli) -> anyhow::Result<ExitCode> {
    let connect = || connect(cli);
    match &cli.command {
        Command::Ping => {
            let mut client = connect()?;
            let started = Instant::now();
            client.ping()?;
            let rtt_ms = started.elapsed().as_secs_f64() * 1000.0;
            let addr = client.peer_addr()?;
            if cli.json {
                print_json(&json!({
                    "pong": true,
                    "addr": addr.to_string(),
                    "rtt_ms": rtt_ms,
                    "server_version": client.server_version(),
                    "admin": client.is_admin(),
                }))?;
            } else {
                emit(&format!("PONG from {addr} in {rtt_ms:.2} ms\n"))?;
            }
        }
        Command::Goods(GoodsCommand::List) => {
            let list = connect()?.list_goods()?;
            if cli.json {
                print_json(&list.iter().map(GoodsJson::from).collect::<Vec<_>>())?;
            } else if list.is_empty() {
                emit("no goods\n")?;
            } else {
                emit(&goods_table(&list))?;
            }
        }
        Command::Goods(GoodsCommand::Show { id }) => show_goods(cli, &connect()?.get_goods(*id)?)?,
        Command::Goods(GoodsCommand::Add {
            name,
            price,
            stock,
            start,
            end,
        }) => {
            // Check the times before connecting: a typo should not cost a
            // round trip, nor reach the server.
            let new = new_goods(name, *price, *stock, *start, *end, SystemTime::now())?;
            show_goods(cli, &connect()?.add_goods(new)?)?;
        }
        Command::Goods(GoodsCommand::Restock { id, amount }) => {
            show_goods(cli, &connect()?.restock(*id, *amount)?)?;
        }
        Command::Buy { user, goods } => {
            let purchase = connect()?.buy(*user, *goods)?;
            if cli.json {
                print_json(&json!({
                    "user_id": user,
                    "goods_id": goods,
                    "outcome": outcome(purchase),
                    "order_no": purchase.order_no(),
                }))?;
            } else {
                emit(&format!("{}\n", purchase_line(purchase)))?;
            }
            if purchase.order_no().is_none() {
                return Ok(ExitCode::from(EXIT_NO_LUCK));
            }
        }
        Command::Order { user, goods } => match connect()?.order_status(*user, *goods)? {
            Some(order) if cli.json => print_json(&OrderJson::from(&order))?,
            Some(order) => emit(&order_table(&order))?,
            None => {
                if cli.json {
                    print_json(&json!({
                        "order_no": null,
                        "user_id": user,
                        "goods_id": goods,
                        "state": Status::NoOrder.as_str(),
                    }))?;
                } else {
                    emit(&format!("user {user} holds no order for goods {goods}\n"))?;
                }
                return Ok(ExitCode::from(EXIT_NO_LUCK));
            }
        },
        Command::Stats => {
            let stats = connect()?.stats()?;
            if cli.json {
                let map: serde_json::Map<String, serde_json::Value> = stats
                    .iter()
                    .map(|s| (s.name.clone(), s.value.into()))
                    .collect();
                print_json(&map)?;
            } else {
                emit(&stats_table(&stats))?;
            }
        }
        Command::Reconcile { goods } => {
            let drifts = connect()?.reconcile(*goods)?;
            if cli.json {
                print_json(&drifts.iter().map(DriftJson::from).collect::<Vec<_>>())?;
            } else if drifts.is_empty() {
                emit("no goods\n")?;
            } else {
                emit(&reconcile_table(&drifts))?;
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// A timeout: a humantime duration, not zero (the socket would refuse it).
fn parse_timeout(s: &str) -> Result<Duration, String> {
    match humantime::parse_duration(s) {
        Ok(d) if d.is_zero() => Err("the timeout must be above zero".into()),
        Ok(d) => Ok(d),
        Err(e) => Err(e.to_string()),
    }
}

/// Resolves `--addr` here rather than in the library, so that a name that
/// does not resolve is reported with the name as typed.
fn connect(cli: &Cli) -> anyhow::Result<Client> {
    let addrs: Vec<SocketAddr> = cli
        .addr
        .to_socket_addrs()
        .with_context(|| format!("cannot resolve server address {}", cli.addr))?
        .collect();
    let mut builder = Client::builder(addrs.as_slice())
        .connect_timeout(cli.timeout)
        .read_timeout(cli.timeout)
        .write_timeout(cli.timeout);
    if let Some(token) = &cli.token {
        builder = builder.token(token.as_str());
    }
    Ok(builder.connect()?)
}

fn new_goods(
    name: &str,
    price_cents: u64,
    stock: u32,
    start: When,
    end: When,
    now: SystemTime,
) -> anyhow::Result<NewGoods> {
    let start = resolve(start, now, None)
        .map_err(anyhow::Error::msg)
        .context("--start")?;
    let end = resolve(end, now, Some(start))
        .map_err(anyhow::Error::msg)
        .context("--end")?;
    if end <= start {
        bail!("--end must be after --start");
    }
    Ok(NewGoods {
        name: name.to_owned(),
        price_cents,
        stock,
        start_ms: unix_ms(start).map_err(anyhow::Error::msg)?,
        end_ms: unix_ms(end).map_err(anyhow::Error::msg)?,
    })
}

fn show_goods(cli: &Cli, goods: &Goods) -> anyhow::Result<()> {
    if cli.json {
        print_json(&GoodsJson::from(goods))
    } else {
        emit(&goods_table(std::slice::from_ref(goods)))
    }
}

fn print_json(value: &impl Serialize) -> anyhow::Result<()> {
    emit(&format!("{}\n", serde_json::to_string(value)?))
}

/// Writes to stdout without println!'s panic on a closed pipe (`| head`).
fn emit(text: &str) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())
        .and_then(|()| out.flush())
        .context("cannot write to stdout")
}

/// The error line for people: the common server answers in plain words, the
/// rest as the error chain.
fn explain(err: &anyhow::Error, cli: &Cli) -> String {
    let Some(e) = err.downcast_ref::<ClientError>() else {
        return format!("{err:#}");
    };
    let said = e.server_message().unwrap_or_default();
    match e.kind() {
        ErrorKind::Server(Status::Busy) => "server is busy, retry later".into(),
        ErrorKind::Server(Status::RateLimited) => "rate limited, retry later, more slowly".into(),
        ErrorKind::Server(Status::Unauthorized) => {
            "unauthorized: admin token missing or wrong (use --token or SECKILL_ADMIN_TOKEN)".into()
        }
        ErrorKind::Server(Status::UnsupportedVersion) => format!(
            "the server at {} does not speak protocol version {}: {said}",
            cli.addr,
            seckill_client::proto::VERSION
        ),
        // The io source of a timeout ("resource temporarily unavailable")
        // would only confuse.
        ErrorKind::Timeout => format!(
            "{e} (server {}, timeout {})",
            cli.addr,
            humantime::format_duration(cli.timeout)
        ),
        _ => format!("{err:#}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::UNIX_EPOCH;

    #[test]
    fn new_goods_ties_times_to_one_clock() {
        let now = UNIX_EPOCH + Duration::from_secs(1_000);
        let hour = Duration::from_secs(3600);
        let g = new_goods(
            "Phone",
            1999,
            5,
            When::FromNow(Duration::ZERO),
            When::AfterStart(hour),
            now,
        )
        .unwrap();
        assert_eq!((g.start_ms, g.end_ms), (1_000_000, 4_600_000));
        assert!(new_goods("x", 1, 1, When::FromNow(hour), When::FromNow(hour), now).is_err());
        assert!(new_goods("x", 1, 1, When::AfterStart(hour), When::FromNow(hour), now).is_err());
    }

    #[test]
    fn the_command_line_parses() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
        let cli = Cli::try_parse_from([
            "seckill-cli",
            "goods",
            "add",
            "--name",
            "Phone",
            "--price",
            "19.99",
            "--stock",
            "5",
            "--end",
            "+1h",
            "--json",
        ])
        .unwrap();
        assert!(cli.json);
        assert!(matches!(
            cli.command,
            Command::Goods(GoodsCommand::Add { price: 1999, .. })
        ));
        assert!(Cli::try_parse_from(["seckill-cli", "goods", "add", "--price", "1.999"]).is_err());

        let every = Cli::try_parse_from(["seckill-cli", "reconcile"]).unwrap();
        assert!(matches!(every.command, Command::Reconcile { goods: None }));
        let one = Cli::try_parse_from(["seckill-cli", "reconcile", "--goods", "3"]).unwrap();
        assert!(matches!(one.command, Command::Reconcile { goods: Some(3) }));
        // Goods ids start at 1; 0 would mean every goods on the wire.
        assert!(Cli::try_parse_from(["seckill-cli", "reconcile", "--goods", "0"]).is_err());
    }
}
