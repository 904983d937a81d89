//! `seckill-cli`: talk to a seckill flash-sale server from a shell.
//!
//! Tables for people, `--json` for scripts (one JSON value on stdout per
//! command, failures included; clients/README.md documents each shape).
//! Exit codes: 0 success; 2 a flash-sale answer that is not a success (BUY
//! sold out, not started, ended or paused; TOKEN for such a sale; PAY of a
//! cancelled order; CANCEL of a paid one; ORDER with no order); 3 a failure
//! worth retrying as it is (`busy`, `rate_limited`, `pending`, a timeout,
//! a BUY or ADD_GOODS whose outcome is unknown); 1 anything else.

mod cli;

use std::io::{IsTerminal, Write};
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{bail, Context};
use clap::{Parser, Subcommand};
use seckill_client::metrics::{Scraper, Snapshot};
use seckill_client::proto::Capabilities;
use seckill_client::secret_file;
use seckill_client::{
    random_request_id, Cancellation, Client, Error as ClientError, ErrorKind, Goods, NewGoods,
    Order, OrderState, Payment, Purchase, RequestId, SaleAction, SaleRules, Status,
};
use serde::Serialize;

use cli::input::{
    parse_goods_id, parse_pay_window, parse_price, parse_purchase_token, parse_when, resolve,
    unix_ms, When,
};
use cli::output::{
    goods_table, orders_table, outcome, printable, purchase_line, reconcile_table, stats_table,
    stock_table, token_line, BuyJson, DriftJson, FailureJson, GoodsJson, NoTokenJson, OrderJson,
    StockJson, TokenJson,
};
use cli::top::View;

/// The exit code of an answer that is not a success but not an error either.
const EXIT_NO_LUCK: u8 = 2;
/// The exit code of a failure that may go away if the same command is run
/// again a little later: nothing was done, or it is safe to do again.
const EXIT_RETRY: u8 = 3;

/// How long a server has to answer HELLO.
const HELLO_TIMEOUT: Duration = Duration::from_secs(1);

/// The help heading of the options every subcommand takes.
const GLOBAL: &str = "Global options";

#[derive(Parser)]
#[command(name = "seckill-cli", version)]
#[command(about = "Talk to a seckill flash-sale server")]
struct Cli {
    /// Server address, host:port. Several, comma-separated, for servers of
    /// one sale: the first that answers is used, and the next when a
    /// connection to it fails.
    #[arg(long, global = true, help_heading = GLOBAL, value_name = "ADDR[,ADDR...]")]
    #[arg(env = "SECKILL_ADDR", default_value = "127.0.0.1:7700")]
    addr: String,
    /// Admin token, needed by `goods add`, `goods restock`, `sale`, `stats`
    /// and `reconcile`; the other commands do not send it.
    // The env value stays out of --help: the token is a secret.
    #[arg(long, global = true, help_heading = GLOBAL)]
    #[arg(env = "SECKILL_ADMIN_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Read the admin token from this file instead (one trailing newline is
    /// dropped; at most 4 KiB), e.g. a systemd credential: a path shows in
    /// the process list, the token does not. Not with --token (nor
    /// SECKILL_ADMIN_TOKEN): an admin command with both is refused.
    // Not a clap conflict: clap misses one across the subcommand
    // (clap-rs/clap#1204), and one from the environment would refuse the
    // public commands too, which send no token.
    #[arg(long, global = true, help_heading = GLOBAL, value_name = "PATH")]
    #[arg(env = "SECKILL_ADMIN_TOKEN_FILE")]
    token_file: Option<PathBuf>,
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
        /// The buyer's user id.
        #[arg(long)]
        user: u64,
        /// The goods id, as `goods list` shows it.
        #[arg(long)]
        goods: u64,
        /// A purchase token from `seckill-cli token`, for goods that require
        /// one.
        // Not `--token`: that global option is the admin token, and it may
        // be written after the subcommand too.
        #[arg(long, value_name = "N", value_parser = parse_purchase_token)]
        purchase_token: Option<u64>,
        /// The purchase's client request id: 1 to 32 hex digits, or a UUID.
        /// Without it a fresh one is drawn. A BUY with the id of an earlier
        /// one is the same purchase: it gets that one's order, never a
        /// second unit. Give the id an earlier try printed when its outcome
        /// was unknown.
        #[arg(long, value_name = "ID")]
        request_id: Option<RequestId>,
    },
    /// Get a purchase token for one `buy --purchase-token` (exit 2 if the
    /// sale says no).
    ///
    /// The token is good for one BUY of this goods by this user, until it
    /// expires.
    Token {
        /// The buyer's user id.
        #[arg(long)]
        user: u64,
        /// The goods id, as `goods list` shows it.
        #[arg(long)]
        goods: u64,
    },
    /// Pay a user's order, which keeps it for good (exit 2 if it was
    /// cancelled first, or its payment window passed).
    Pay {
        /// The buyer's user id.
        #[arg(long)]
        user: u64,
        /// The order number, as `buy` showed it.
        #[arg(long)]
        order: u64,
    },
    /// Cancel a user's unpaid order, putting its unit back on sale (exit 2 if
    /// it is paid).
    Cancel {
        /// The buyer's user id.
        #[arg(long)]
        user: u64,
        /// The order number, as `buy` showed it.
        #[arg(long)]
        order: u64,
    },
    /// Show a user's newest order for a goods (exit 2 if there is none).
    Order {
        /// The buyer's user id.
        #[arg(long)]
        user: u64,
        /// The goods id, as `goods list` shows it.
        #[arg(long)]
        goods: u64,
    },
    /// Show every order of a user, newest first.
    Orders {
        /// The buyer's user id.
        #[arg(long)]
        user: u64,
    },
    /// Pause, resume or end a sale, or move its window (admin).
    #[command(subcommand)]
    Sale(SaleCommand),
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
    /// Watch a server live, from its metrics endpoint, like `redis-cli
    /// --stat`: requests/s, BUY ok/s, p50 and p99 latency, errors/s,
    /// connections, queues, store health, and sold and left per goods.
    ///
    /// Each refresh covers the interval since the previous scrape, so the
    /// first comes one interval after the start. On a terminal the screen
    /// is redrawn in place; otherwise one line per refresh, or with
    /// `--json` one JSON object per line. A failed scrape prints an error
    /// line and is tried again at the next refresh. Needs no admin token:
    /// the endpoint is the server's `--metrics-listen` address, not `--addr`.
    Top {
        /// The server's metrics endpoint: host:port (of its
        /// `--metrics-listen`) or an http:// URL; `/metrics` is implied.
        #[arg(long, value_name = "URL", env = "SECKILL_METRICS")]
        metrics: String,
        /// Stop after this many refreshes (a failed scrape counts as one);
        /// without it, run until interrupted.
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
        count: Option<u64>,
        /// Time between refreshes, e.g. 1s or 500ms.
        #[arg(long, default_value = "1s", value_parser = parse_timeout)]
        interval: Duration,
    },
}

#[derive(Subcommand)]
enum GoodsCommand {
    /// Every goods with its sale state.
    List,
    /// One goods.
    Show {
        /// The goods id, as `goods list` shows it.
        id: u64,
        /// Also where its units are in the stock store (admin): the pool,
        /// each bucket, units on their way between them, orders holding
        /// one, and whether they add up to the total.
        #[arg(long)]
        stock: bool,
    },
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
        /// Live orders one user may hold, 1 to 255.
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u8).range(1..))]
        limit: u8,
        /// How long a buyer has to pay before the order is cancelled and its
        /// unit goes back on sale, e.g. 15m or 90s.
        #[arg(long, value_parser = parse_pay_window, default_value = "15m")]
        pay_window: u64,
        /// BUY must carry a purchase token from `seckill-cli token`.
        #[arg(long)]
        token_required: bool,
        /// Split the goods' stock over this many buckets, 1 to 64, in the
        /// server's Redis stock store: for a goods whose BUYs one Redis
        /// node cannot take; each bucket may live on another node of a
        /// Redis Cluster. 1 (the default) is no split.
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=64))]
        buckets: u16,
        /// This addition's client request id: 1 to 32 hex digits, or a
        /// UUID. Without it a fresh one is drawn. An ADD_GOODS with the id
        /// of an earlier one gets the goods that one made, never a second
        /// goods. Give the id an earlier try printed when its outcome was
        /// unknown.
        #[arg(long, value_name = "ID")]
        request_id: Option<RequestId>,
    },
    /// Add units to a goods (admin).
    Restock {
        /// The goods id, as `goods list` shows it.
        id: u64,
        /// Units to add to its stock.
        #[arg(long)]
        amount: u32,
    },
}

#[derive(Subcommand)]
enum SaleCommand {
    /// Refuse BUY and TOKEN with `paused` until a resume.
    Pause {
        /// The goods id, as `goods list` shows it.
        goods: u64,
    },
    /// Take orders again after a pause.
    Resume {
        /// The goods id, as `goods list` shows it.
        goods: u64,
    },
    /// End the sale now.
    End {
        /// The goods id, as `goods list` shows it.
        goods: u64,
    },
    /// Move the sale window.
    Window {
        /// The goods id, as `goods list` shows it.
        goods: u64,
        /// When the sale opens: now, +DURATION (e.g. +10m) or RFC3339 UTC.
        #[arg(long, value_parser = parse_when, default_value = "now")]
        start: When,
        /// When it closes: +DURATION from now, DURATION after the start
        /// (e.g. 1h) or RFC3339 UTC.
        #[arg(long, value_parser = parse_when)]
        end: When,
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
        Err(err) => fail(
            &cli,
            &err,
            FailureJson::new(status_name(&err), explain(&err, &cli)),
        ),
    }
}

/// Reports a failure, as JSON on stdout with `--json` (so that a script
/// reads one JSON value whatever happened) or as a line on stderr, and
/// returns its exit code.
fn fail(cli: &Cli, err: &anyhow::Error, report: FailureJson) -> ExitCode {
    report_failure(cli, report, exit_code(err))
}

/// [`fail`] with the exit code given.
fn report_failure(cli: &Cli, mut report: FailureJson, code: u8) -> ExitCode {
    if cli.json {
        report.exit_code = Some(code);
        // Nothing more can be said if stdout is gone.
        let _ = print_json(&report);
    } else {
        // The message may carry what a server said: no control characters
        // reach the terminal (an escape sequence would be run by it).
        eprintln!("error: {}", printable(&report.message));
    }
    ExitCode::from(code)
}

/// The exit code of a failure: [`EXIT_RETRY`] for what may pass if tried
/// again as it is, 1 for the rest.
fn exit_code(err: &anyhow::Error) -> u8 {
    let Some(e) = err.downcast_ref::<ClientError>() else {
        return 1;
    };
    let retry = e.is_timeout() || e.status().is_some_and(Status::is_retryable);
    if retry {
        EXIT_RETRY
    } else {
        1
    }
}

/// The `status` of a failure in `--json`: the server's status name, or one
/// of the CLI's own for a failure that is not the server's answer. `error`
/// is the CLI's own refusal (times in the wrong order, an address that
/// does not resolve, a peer that is not a seckill server).
fn status_name(err: &anyhow::Error) -> String {
    let Some(e) = err.downcast_ref::<ClientError>() else {
        return "error".into();
    };
    match e.kind() {
        ErrorKind::Server(status) => status.as_str().into(),
        ErrorKind::Timeout => "timeout".into(),
        ErrorKind::Closed => "connection_closed".into(),
        ErrorKind::Protocol => "protocol_error".into(),
        ErrorKind::InvalidInput => "invalid_input".into(),
        _ => "io_error".into(),
    }
}

fn run(cli: &Cli) -> anyhow::Result<ExitCode> {
    if let Command::Top {
        metrics,
        count,
        interval,
    } = &cli.command
    {
        return top(cli, metrics, *count, *interval);
    }
    // The admin token goes only with the admin commands: a stale one in the
    // environment must not make `goods list` or `buy` fail.
    let connect = || connect(cli, cli.command.is_admin());
    match &cli.command {
        Command::Ping => {
            let mut client = connect()?;
            let started = Instant::now();
            client.ping()?;
            let rtt_ms = started.elapsed().as_secs_f64() * 1000.0;
            let addr = client.peer_addr()?;
            if cli.json {
                print_json(&PingJson::new(&client, addr, rtt_ms))?;
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
        Command::Goods(GoodsCommand::Show { id, stock: false }) => {
            show_goods(cli, &connect()?.get_goods(*id)?)?
        }
        Command::Goods(GoodsCommand::Show { id, stock: true }) => {
            let mut client = connect()?;
            let goods = client.get_goods(*id)?;
            let parts = client.stock(*id)?;
            if cli.json {
                #[derive(Serialize)]
                struct WithStock<'a> {
                    #[serde(flatten)]
                    goods: GoodsJson<'a>,
                    stock: StockJson,
                }
                print_json(&WithStock {
                    goods: GoodsJson::from(&goods),
                    stock: StockJson::from(&parts),
                })?;
            } else {
                emit(&goods_table(std::slice::from_ref(&goods)))?;
                emit(&stock_table(std::slice::from_ref(&parts)))?;
            }
        }
        Command::Goods(GoodsCommand::Add {
            name,
            price,
            stock,
            start,
            end,
            limit,
            pay_window,
            token_required,
            buckets,
            request_id,
        }) => {
            // Check the times before connecting: a typo should not cost a
            // round trip, nor reach the server.
            let (start_ms, end_ms) = sale_window(*start, *end, SystemTime::now())?;
            let new = NewGoods {
                name: name.clone(),
                price_cents: *price,
                stock: *stock,
                start_ms,
                end_ms,
                rules: SaleRules {
                    per_user_limit: *limit,
                    pay_window_ms: *pay_window,
                    token_required: *token_required,
                },
                buckets: *buckets,
            };
            // Drawn here, as for `buy`, so that a try whose outcome is
            // unknown can say which id tries it again.
            let request_id = match request_id {
                Some(id) => *id,
                None => random_request_id()?,
            };
            match connect()?.add_goods_with_request_id(new, request_id) {
                Ok(goods) => show_goods(cli, &goods)?,
                Err(err) if outcome_unknown(&err) => {
                    let again = request_id.repeat();
                    let retry = format!(
                        "the goods may have been added: the same `seckill-cli goods add` with \
                         `--request-id {again}` tries it again, and cannot add it twice"
                    );
                    return Ok(unknown_outcome(cli, err, again, retry));
                }
                Err(err) => return Err(err.into()),
            }
        }
        Command::Goods(GoodsCommand::Restock { id, amount }) => {
            match connect()?.restock(*id, *amount) {
                Ok(goods) => show_goods(cli, &goods)?,
                Err(err) if outcome_unknown(&err) => return Ok(restock_in_doubt(cli, err, *id)),
                Err(err) => return Err(err.into()),
            }
        }
        Command::Buy {
            user,
            goods,
            purchase_token,
            request_id,
        } => {
            // Drawn here rather than by the library, so that a try whose
            // outcome is unknown can say which id tries it again.
            let request_id = match request_id {
                Some(id) => *id,
                None => random_request_id()?,
            };
            let mut client = connect()?;
            let bought = match purchase_token {
                Some(token) => {
                    client.buy_with_token_and_request_id(*user, *goods, *token, request_id)
                }
                None => client.buy_with_request_id(*user, *goods, request_id),
            };
            let purchase = match bought {
                Ok(purchase) => purchase,
                Err(err) if outcome_unknown(&err) => {
                    // Marked a repeat: the server answers it from its stores
                    // with the first answer, not from a cache.
                    let again = request_id.repeat();
                    let retry = format!(
                        "the purchase may have been made: `seckill-cli buy --user {user} \
                         --goods {goods} --request-id {again}` (with the same options) \
                         tries it again, and cannot buy twice"
                    );
                    return Ok(unknown_outcome(cli, err, again, retry));
                }
                Err(err) => return Err(err.into()),
            };
            if cli.json {
                print_json(&BuyJson {
                    outcome: outcome(purchase),
                    order_no: purchase.order_no(),
                    user_id: *user,
                    goods_id: *goods,
                    request_id: request_id.to_string(),
                })?;
            } else {
                emit(&format!("{}\n", purchase_line(purchase)))?;
            }
            if purchase.order_no().is_none() {
                return Ok(ExitCode::from(EXIT_NO_LUCK));
            }
        }
        Command::Token { user, goods } => match connect()?.purchase_token(*user, *goods) {
            Ok(token) if cli.json => print_json(&TokenJson::new(&token, *user, *goods))?,
            Ok(token) => emit(&format!("{}\n", token_line(&token, *user, *goods)))?,
            Err(err) => {
                // A sale that takes no orders gives no tokens either: the
                // same answer as BUY's, with BUY's exit code.
                let Some(answer) = sale_answer(&err) else {
                    return Err(err.into());
                };
                if cli.json {
                    print_json(&NoTokenJson {
                        outcome: outcome(answer),
                        token: None,
                        user_id: *user,
                        goods_id: *goods,
                    })?;
                } else {
                    emit(&format!("{}\n", purchase_line(answer)))?;
                }
                return Ok(ExitCode::from(EXIT_NO_LUCK));
            }
        },
        Command::Pay { user, order } => match connect()?.pay(*user, *order)? {
            Payment::Paid(paid) => show_order(cli, &paid)?,
            Payment::OrderCancelled => {
                let why = " (by its buyer, or its payment window passed): it can no longer \
                           be paid";
                return order_not_changed(cli, *user, *order, OrderState::Cancelled, why);
            }
        },
        Command::Cancel { user, order } => match connect()?.cancel(*user, *order)? {
            Cancellation::Cancelled(cancelled) => show_order(cli, &cancelled)?,
            Cancellation::OrderPaid => {
                let why = ": it can no longer be cancelled";
                return order_not_changed(cli, *user, *order, OrderState::Paid, why);
            }
        },
        Command::Orders { user } => {
            let orders = connect()?.list_orders(*user)?;
            if cli.json {
                print_json(&orders.iter().map(OrderJson::from).collect::<Vec<_>>())?;
            } else if orders.is_empty() {
                emit(&format!("user {user} holds no orders\n"))?;
            } else {
                emit(&orders_table(&orders))?;
            }
        }
        Command::Sale(command) => {
            // As for `goods add`: the times are checked before connecting.
            let (goods, action) = match command {
                SaleCommand::Pause { goods } => (goods, SaleAction::Pause),
                SaleCommand::Resume { goods } => (goods, SaleAction::Resume),
                SaleCommand::End { goods } => (goods, SaleAction::End),
                SaleCommand::Window { goods, start, end } => {
                    let (start_ms, end_ms) = sale_window(*start, *end, SystemTime::now())?;
                    (goods, SaleAction::Window { start_ms, end_ms })
                }
            };
            show_goods(cli, &connect()?.sale_control(*goods, action)?)?;
        }
        // Answered above: it scrapes, it does not connect.
        Command::Top { .. } => {}
        Command::Order { user, goods } => match connect()?.order_status(*user, *goods)? {
            Some(order) => show_order(cli, &order)?,
            None => {
                let message = format!("user {user} holds no order for goods {goods}");
                if cli.json {
                    print_json(&FailureJson {
                        exit_code: Some(EXIT_NO_LUCK),
                        user_id: Some(*user),
                        goods_id: Some(*goods),
                        ..FailureJson::new(Status::NoOrder.as_str(), message)
                    })?;
                } else {
                    emit(&format!("{message}\n"))?;
                }
                return Ok(ExitCode::from(EXIT_NO_LUCK));
            }
        },
        Command::Stats => {
            let mut stats = connect()?.stats()?;
            // By name, in the table as in the JSON object (whose keys are
            // sorted): one order to look things up in.
            stats.sort_by(|a, b| a.name.cmp(&b.name));
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
            let mut client = connect()?;
            let drifts = client.reconcile(*goods)?;
            // Where the units are now, from a server that can say.
            let parts = match client.server_info() {
                Some(info) if info.capabilities.contains(Capabilities::STOCK) => drifts
                    .iter()
                    .map(|d| client.stock(d.goods_id).map(Some))
                    .collect::<Result<Vec<_>, _>>()?,
                _ => vec![None; drifts.len()],
            };
            if cli.json {
                #[derive(Serialize)]
                struct WithStock {
                    #[serde(flatten)]
                    drift: DriftJson,
                    #[serde(skip_serializing_if = "Option::is_none")]
                    stock: Option<StockJson>,
                }
                let out: Vec<WithStock> = drifts
                    .iter()
                    .zip(&parts)
                    .map(|(d, p)| WithStock {
                        drift: DriftJson::from(d),
                        stock: p.as_ref().map(StockJson::from),
                    })
                    .collect();
                print_json(&out)?;
            } else if drifts.is_empty() {
                emit("no goods\n")?;
            } else {
                emit(&reconcile_table(&drifts))?;
                let parts: Vec<_> = parts.into_iter().flatten().collect();
                if !parts.is_empty() {
                    emit(&stock_table(&parts))?;
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `top`: scrape every `interval`, and show each interval from the second
/// scrape on, until `count` refreshes. A failed scrape is reported and
/// tried again at the next tick, never the end of the watch: a server
/// restarting during a sale is when an operator needs the view most.
/// Exits 0 if the last refresh was shown, [`EXIT_RETRY`] if it failed.
fn top(cli: &Cli, url: &str, count: Option<u64>, interval: Duration) -> anyhow::Result<ExitCode> {
    let scraper = Scraper::new(url)?.timeout(cli.timeout);
    let screen = !cli.json && std::io::stdout().is_terminal();
    // The terminal's home and erase-display sequences: redraw in place.
    const REDRAW: &str = "\x1b[H\x1b[2J";
    let mut before: Option<Snapshot> = None;
    let mut shown = 0u64;
    let mut failed = false;
    if screen {
        emit(&format!(
            "{REDRAW}seckill top  {}: the first refresh comes in {}\n",
            scraper.url(),
            humantime::format_duration(interval)
        ))?;
    }
    while count.is_none_or(|n| shown < n) {
        let tick = Instant::now();
        match scraper.scrape() {
            Ok(now) => {
                failed = false;
                if let Some(then) = &before {
                    let time_ms = unix_ms(SystemTime::now()).unwrap_or(0);
                    let view = View::between(then, &now, time_ms);
                    if cli.json {
                        print_json(&view)?;
                    } else if screen {
                        emit(&format!("{REDRAW}{}", view.screen(scraper.url())))?;
                    } else {
                        emit(&format!("{}\n", view.line()))?;
                    }
                    shown += 1;
                }
                // Even after a failure in between: the rates divide by
                // the time the two scrapes really lie apart.
                before = Some(now);
            }
            Err(err) => {
                failed = true;
                shown += 1;
                // "Trying again" only where a try is still to come.
                let message = if count.is_some_and(|n| shown >= n) {
                    err.to_string()
                } else {
                    format!(
                        "{err}; trying again in {}",
                        humantime::format_duration(interval)
                    )
                };
                if cli.json {
                    print_json(&FailureJson::new("scrape_failed", message))?;
                } else if screen {
                    emit(&format!(
                        "{REDRAW}seckill top  {}\nerror: {message}\n",
                        scraper.url()
                    ))?;
                } else {
                    eprintln!("error: {message}");
                }
            }
        }
        if count.is_some_and(|n| shown >= n) {
            break;
        }
        std::thread::sleep(interval.saturating_sub(tick.elapsed()));
    }
    Ok(if failed {
        ExitCode::from(EXIT_RETRY)
    } else {
        ExitCode::SUCCESS
    })
}

/// A timeout: a humantime duration, not zero (the socket would refuse it).
fn parse_timeout(s: &str) -> Result<Duration, String> {
    match humantime::parse_duration(s) {
        Ok(d) if d.is_zero() => Err("the timeout must be above zero".into()),
        Ok(d) => Ok(d),
        Err(e) => Err(e.to_string()),
    }
}

/// Whether a BUY that failed so may have made an order: the request was
/// sent and its answer never came, or the server did not know.
fn outcome_unknown(err: &ClientError) -> bool {
    matches!(
        err.kind(),
        ErrorKind::Timeout
            | ErrorKind::Closed
            | ErrorKind::Io
            | ErrorKind::Protocol
            | ErrorKind::Server(Status::InternalError)
    )
}

/// Reports a BUY or ADD_GOODS whose outcome is unknown, with the way to
/// try it again safely, and returns [`EXIT_RETRY`]: the retry is safe.
fn unknown_outcome(cli: &Cli, err: ClientError, again: RequestId, retry: String) -> ExitCode {
    let err = anyhow::Error::from(err);
    let report = FailureJson {
        retry_request_id: Some(again.to_string()),
        ..FailureJson::new(status_name(&err), explain(&err, cli))
    };
    let code = report_failure(cli, report, EXIT_RETRY);
    if !cli.json {
        eprintln!("{retry}");
    }
    code
}

/// Reports a RESTOCK whose outcome is unknown and returns 1, not
/// [`EXIT_RETRY`]: unlike BUY and ADD_GOODS it has no request id, and run
/// again it would add the units a second time if the first was applied.
fn restock_in_doubt(cli: &Cli, err: ClientError, goods: u64) -> ExitCode {
    let err = anyhow::Error::from(err);
    let message = format!(
        "{}; the restock may have been applied: check the goods' total \
         (`seckill-cli goods show {goods}`) before restocking again",
        explain(&err, cli)
    );
    report_failure(cli, FailureJson::new(status_name(&err), message), 1)
}

/// `ping` for `--json`: the connection and what HELLO said of the server.
#[derive(Serialize)]
struct PingJson {
    pong: bool,
    addr: String,
    rtt_ms: f64,
    /// The protocol version the connection speaks (not the server's build).
    protocol_version: u16,
    admin: bool,
    /// From a server of protocol version 2 or more; null from an older one.
    server: Option<ServerJson>,
}

#[derive(Serialize)]
struct ServerJson {
    min_version: u16,
    max_version: u16,
    max_request_frame: u32,
    max_in_flight: u32,
    server_time_ms: u64,
    /// The server's clock minus this machine's, at the HELLO reply.
    clock_offset_ms: i64,
    capabilities: Vec<&'static str>,
}

impl PingJson {
    fn new(client: &Client, addr: SocketAddr, rtt_ms: f64) -> PingJson {
        let now = unix_ms(SystemTime::now()).unwrap_or(0);
        PingJson {
            pong: true,
            addr: addr.to_string(),
            rtt_ms,
            protocol_version: client.server_version(),
            admin: client.is_admin(),
            server: client.server_info().map(|info| ServerJson {
                min_version: info.min_version,
                max_version: info.max_version,
                max_request_frame: info.max_request_frame,
                max_in_flight: info.max_in_flight,
                server_time_ms: info.server_time_ms,
                clock_offset_ms: info.server_time_ms as i64 - now as i64,
                capabilities: capability_names(info.capabilities),
            }),
        }
    }
}

/// The names of the capability bits this CLI knows.
fn capability_names(caps: Capabilities) -> Vec<&'static str> {
    [
        (Capabilities::BUY_REQUEST_ID, "buy_request_id"),
        (Capabilities::ADD_GOODS_REQUEST_ID, "add_goods_request_id"),
        (Capabilities::ADMIN_LISTENER_ONLY, "admin_listener_only"),
        (Capabilities::ADD_GOODS_BUCKETS, "add_goods_buckets"),
        (Capabilities::STOCK, "stock"),
    ]
    .into_iter()
    .filter(|(bit, _)| caps.contains(*bit))
    .map(|(_, name)| name)
    .collect()
}

impl Command {
    /// Whether the command needs admin rights, and so the admin token.
    fn is_admin(&self) -> bool {
        matches!(
            self,
            Command::Goods(
                GoodsCommand::Add { .. }
                    | GoodsCommand::Restock { .. }
                    | GoodsCommand::Show { stock: true, .. }
            ) | Command::Sale(_)
                | Command::Stats
                | Command::Reconcile { .. }
        )
    }
}

/// Resolves `--addr` here rather than in the library, so that a name that
/// does not resolve is reported with the name as typed. The admin token is
/// sent only when `admin`.
fn connect(cli: &Cli, admin: bool) -> anyhow::Result<Client> {
    let mut servers: Vec<Vec<SocketAddr>> = Vec::new();
    for addr in cli.addr.split(',').map(str::trim) {
        if addr.is_empty() {
            bail!("--addr {:?} has an empty server address", cli.addr);
        }
        let resolved = addr
            .to_socket_addrs()
            .with_context(|| format!("cannot resolve server address {addr}"))?;
        servers.push(resolved.collect());
    }
    let Some((first, rest)) = servers.split_first() else {
        bail!("--addr names no server");
    };
    // A seckill server answers HELLO at once, from its reactor, whatever
    // its stores are doing; a peer that says nothing for this long is
    // something else (Redis waits in silence for a line end).
    let hello_timeout = cli.timeout.min(HELLO_TIMEOUT);
    let mut builder = Client::builder(first.as_slice())
        .addrs(rest.iter().map(Vec::as_slice))
        .connect_timeout(cli.timeout)
        .read_timeout(hello_timeout)
        .write_timeout(cli.timeout);
    if admin {
        if let Some(token) = admin_token(cli)? {
            builder = builder.token(token);
        }
    }
    let mut client = match builder.connect() {
        Ok(client) => client,
        Err(e) if e.is_timeout() => bail!(
            "{} accepted the connection but did not answer HELLO within {}: \
             not a seckill server? (a seckill server answers HELLO at once)",
            cli.addr,
            humantime::format_duration(hello_timeout)
        ),
        Err(e) => return Err(e.into()),
    };
    client.set_read_timeout(Some(cli.timeout))?;
    Ok(client)
}

/// The admin token, as given or read from `--token-file`. The caller asks
/// only for an admin command: a token file this user cannot read must not
/// make `goods list` fail, as a stale token must not.
fn admin_token(cli: &Cli) -> anyhow::Result<Option<String>> {
    match (&cli.token, &cli.token_file) {
        (Some(_), Some(_)) => bail!(
            "--token (or SECKILL_ADMIN_TOKEN) cannot be used with --token-file \
             (or SECKILL_ADMIN_TOKEN_FILE): give the admin token one way"
        ),
        (Some(token), None) => Ok(Some(token.clone())),
        (None, Some(path)) => secret_file::read(path)
            .map(Some)
            .context("reading the admin token (--token-file)"),
        (None, None) => Ok(None),
    }
}

/// A sale window, `--start` and `--end` tied to one clock, as Unix
/// milliseconds.
fn sale_window(start: When, end: When, now: SystemTime) -> anyhow::Result<(u64, u64)> {
    let start = resolve(start, now, None)
        .map_err(anyhow::Error::msg)
        .context("--start")?;
    let end = resolve(end, now, Some(start))
        .map_err(anyhow::Error::msg)
        .context("--end")?;
    if end <= start {
        bail!("--end must be after --start");
    }
    Ok((
        unix_ms(start).map_err(anyhow::Error::msg)?,
        unix_ms(end).map_err(anyhow::Error::msg)?,
    ))
}

/// The BUY outcome that an error status of TOKEN amounts to, if it is an
/// answer of the sale rather than a failure.
fn sale_answer(err: &ClientError) -> Option<Purchase> {
    match err.status()? {
        Status::Paused => Some(Purchase::Paused),
        Status::SoldOut => Some(Purchase::SoldOut),
        Status::NotStarted => Some(Purchase::NotStarted),
        Status::Ended => Some(Purchase::Ended),
        _ => None,
    }
}

/// Reports a PAY or CANCEL that the order's state refused, `state` being the
/// state the order is in and `why` the rest of the sentence, and exits with
/// [`EXIT_NO_LUCK`].
fn order_not_changed(
    cli: &Cli,
    user: u64,
    order: u64,
    state: OrderState,
    why: &str,
) -> anyhow::Result<ExitCode> {
    let status = match state {
        OrderState::Paid => Status::OrderPaid,
        _ => Status::OrderCancelled,
    };
    let message = format!("order {order} of user {user} is {}{why}", state.as_str());
    if cli.json {
        print_json(&FailureJson {
            exit_code: Some(EXIT_NO_LUCK),
            user_id: Some(user),
            order_no: Some(order),
            ..FailureJson::new(status.as_str(), message)
        })?;
    } else {
        emit(&format!("{message}\n"))?;
    }
    Ok(ExitCode::from(EXIT_NO_LUCK))
}

fn show_goods(cli: &Cli, goods: &Goods) -> anyhow::Result<()> {
    if cli.json {
        print_json(&GoodsJson::from(goods))
    } else {
        emit(&goods_table(std::slice::from_ref(goods)))
    }
}

fn show_order(cli: &Cli, order: &Order) -> anyhow::Result<()> {
    if cli.json {
        print_json(&OrderJson::from(order))
    } else {
        emit(&orders_table(std::slice::from_ref(order)))
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
        ErrorKind::Server(Status::Pending) => {
            "the first try of this request is still being written: retry it shortly".into()
        }
        ErrorKind::Server(Status::RateLimited) => "rate limited, retry later, more slowly".into(),
        ErrorKind::Server(Status::Unauthorized) => {
            "unauthorized: admin token missing or wrong (set SECKILL_ADMIN_TOKEN, or give \
             --token-file PATH; --token works too, but other users of the machine can read it in \
             the process list)"
                .into()
        }
        ErrorKind::Server(Status::TokenRequired) => "this goods is sold only with a purchase \
            token: get one with `seckill-cli token`, then `buy --purchase-token`"
            .into(),
        ErrorKind::Server(Status::TokenInvalid) => {
            "the purchase token was not issued to this user for this goods".into()
        }
        ErrorKind::Server(Status::TokenExpired) => {
            "the purchase token has expired: get a new one with `seckill-cli token`".into()
        }
        ErrorKind::Server(Status::TokenUsed) => {
            "the purchase token was already used: get a new one with `seckill-cli token`".into()
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
    fn sale_window_ties_times_to_one_clock() {
        let now = UNIX_EPOCH + Duration::from_secs(1_000);
        let hour = Duration::from_secs(3600);
        let window = sale_window(When::FromNow(Duration::ZERO), When::AfterStart(hour), now);
        assert_eq!(window.unwrap(), (1_000_000, 4_600_000));
        assert!(sale_window(When::FromNow(hour), When::FromNow(hour), now).is_err());
        assert!(sale_window(When::AfterStart(hour), When::FromNow(hour), now).is_err());
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
            Command::Goods(GoodsCommand::Add {
                price: 1999,
                limit: 1,
                pay_window: 900_000,
                token_required: false,
                ..
            })
        ));
        let ruled = Cli::try_parse_from([
            "seckill-cli",
            "goods",
            "add",
            "--name=Phone",
            "--price=1",
            "--stock=5",
            "--end=+1h",
            "--limit=3",
            "--pay-window=90s",
            "--token-required",
        ])
        .unwrap();
        assert!(matches!(
            ruled.command,
            Command::Goods(GoodsCommand::Add {
                limit: 3,
                pay_window: 90_000,
                token_required: true,
                ..
            })
        ));
        let add = ["seckill-cli", "goods", "add", "--name=x", "--price=1"];
        for bad in ["--limit=0", "--limit=256", "--pay-window=0s"] {
            let args = add.iter().copied().chain(["--stock=1", "--end=1h", bad]);
            assert!(Cli::try_parse_from(args).is_err(), "{bad} was accepted");
        }

        // The admin token and the purchase token are different options, and
        // the global one may follow the subcommand.
        let buy = Cli::try_parse_from([
            "seckill-cli",
            "buy",
            "--user=1",
            "--goods=2",
            "--purchase-token=77",
            "--token=s3cret",
        ])
        .unwrap();
        assert_eq!(buy.token.as_deref(), Some("s3cret"));
        assert!(matches!(
            buy.command,
            Command::Buy {
                purchase_token: Some(77),
                ..
            }
        ));
        let window = Cli::try_parse_from(["seckill-cli", "sale", "window", "3", "--end", "+1h"]);
        assert!(matches!(
            window.unwrap().command,
            Command::Sale(SaleCommand::Window { goods: 3, .. })
        ));
        assert!(Cli::try_parse_from(["seckill-cli", "goods", "add", "--price", "1.999"]).is_err());

        let every = Cli::try_parse_from(["seckill-cli", "reconcile"]).unwrap();
        assert!(matches!(every.command, Command::Reconcile { goods: None }));
        let one = Cli::try_parse_from(["seckill-cli", "reconcile", "--goods", "3"]).unwrap();
        assert!(matches!(one.command, Command::Reconcile { goods: Some(3) }));
        // Goods ids start at 1; 0 would mean every goods on the wire.
        assert!(Cli::try_parse_from(["seckill-cli", "reconcile", "--goods", "0"]).is_err());
    }

    #[test]
    fn the_token_and_its_file_are_refused_together_for_admin_commands() {
        use clap::{CommandFactory, FromArgMatches};
        // Without the environment, where a SECKILL_ADMIN_TOKEN of whoever
        // runs the tests would count too.
        let parse = |args: &[&str]| {
            let matches = Cli::command()
                .mut_args(|arg| arg.env(None))
                .try_get_matches_from(args)
                .unwrap();
            Cli::from_arg_matches(&matches).unwrap()
        };
        let file = parse(&["seckill-cli", "stats", "--token-file=/run/t"]);
        assert_eq!(file.token_file, Some(PathBuf::from("/run/t")));
        // On either side of the subcommand: both options are global.
        for args in [
            [
                "seckill-cli",
                "--token=s3cret",
                "--token-file=/run/t",
                "stats",
            ],
            [
                "seckill-cli",
                "--token-file=/run/t",
                "stats",
                "--token=s3cret",
            ],
        ] {
            let cli = parse(&args);
            let refused = admin_token(&cli).expect_err("refused");
            assert!(
                refused.to_string().contains("cannot be used with"),
                "{refused}"
            );
            assert!(!format!("{refused:#}").contains("s3cret"), "{refused:#}");
        }
    }
}
