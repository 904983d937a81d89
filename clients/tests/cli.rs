//! `seckill-cli` run as a process against a small fake server: output, error
//! lines and exit codes as a shell sees them.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Command, Output};
use std::thread;

use bytes::{Buf, BytesMut};
use seckill_proto::{
    Drift, Frame, Goods, GoodsState, Order, OrderState, Reply, Request, RequestId, SaleAction,
    SaleRules, Stat, Status, ALL_GOODS, MAX_REQUEST_FRAME, NO_TOKEN, VERSION,
};

const TOKEN: &str = "s3cret";

/// A fake server for every connection to the returned address: HELLO checks
/// the token, the admin commands need admin, everything else is answered by
/// `answer`.
fn fake(answer: fn(&Request) -> Reply) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    thread::spawn(move || {
        for stream in listener.incoming() {
            let stream = stream.unwrap();
            thread::spawn(move || session(stream, answer));
        }
    });
    addr
}

fn session(mut stream: TcpStream, answer: fn(&Request) -> Reply) {
    let mut inbound = BytesMut::new();
    let mut admin = false;
    loop {
        let (opcode, id, request) = match Frame::parse(&inbound, MAX_REQUEST_FRAME) {
            Ok((frame, used)) => {
                let parsed = (frame.opcode, frame.id, Request::decode(&frame).unwrap());
                inbound.advance(used);
                parsed
            }
            Err(_) => {
                let mut chunk = [0u8; 4096];
                match stream.read(&mut chunk) {
                    Ok(0) | Err(_) => return,
                    Ok(n) => inbound.extend_from_slice(&chunk[..n]),
                }
                continue;
            }
        };
        // Goods 8 loses its BUYs and RESTOCKs: the connection drops before
        // the answer.
        if matches!(
            request,
            Request::Buy { goods_id: 8, .. } | Request::Restock { goods_id: 8, .. }
        ) {
            return;
        }
        let reply = match &request {
            Request::Hello { token, .. } if token.is_empty() || token == TOKEN => {
                admin = token == TOKEN;
                Reply::Hello {
                    version: VERSION,
                    admin,
                    server: None,
                }
            }
            Request::Hello { .. } => Reply::error(Status::Unauthorized, "wrong token"),
            other if other.opcode().is_admin() && !admin => {
                Reply::error(Status::Unauthorized, "admin only")
            }
            other => answer(other),
        };
        let mut out = BytesMut::new();
        reply.encode(opcode, id, &mut out);
        stream.write_all(&out).unwrap();
    }
}

fn phone() -> Goods {
    Goods {
        id: 1,
        name: "Phone".into(),
        price_cents: 99900,
        total: 100,
        remaining: 42,
        start_ms: 1_700_000_000_000,
        end_ms: 1_700_003_600_000,
        state: GoodsState::OnSale,
        rules: SaleRules::default(),
    }
}

/// An order of user 7 for the phone, made at its sale's start.
fn order(order_no: u64, state: OrderState) -> Order {
    Order {
        order_no,
        user_id: 7,
        goods_id: 1,
        state,
        created_ms: 1_700_000_000_000,
        pay_by_ms: 1_700_000_900_000,
    }
}

/// An order number as the server makes them: above 2^53, where a JSON
/// number read by JavaScript or jq 1.6 loses its last digits (this one
/// would come back as ...800).
const BIG_ORDER: u64 = 387_241_520_257_826_816;

/// A purchase token over 2^53, which a JSON number could not carry exactly.
const PURCHASE_TOKEN: u64 = 18_446_744_073_709_551_557;

fn answer(request: &Request) -> Reply {
    match *request {
        Request::ListGoods => Reply::GoodsList(vec![phone()]),
        Request::Buy {
            goods_id: 1,
            token: NO_TOKEN,
            ..
        } => Reply::Bought { order_no: 1001 },
        Request::Buy { goods_id: 2, .. } => Reply::error(Status::SoldOut, "none left"),
        // Goods 4 is sold with a token only; goods 5 is paused.
        Request::Buy {
            goods_id: 4, token, ..
        } => match token {
            NO_TOKEN => Reply::error(Status::TokenRequired, "token required"),
            PURCHASE_TOKEN => Reply::Bought { order_no: 1004 },
            _ => Reply::error(Status::TokenExpired, "token expired"),
        },
        Request::Buy { goods_id: 5, .. } => Reply::error(Status::Paused, "paused"),
        // Goods 66: a hostile server's message, with terminal escapes.
        Request::Buy { goods_id: 66, .. } => Reply::error(
            Status::BadRequest,
            "no\u{1b}]52;c;cHduZWQ=\u{7} such\u{1b}[2J goods",
        ),
        // Goods 6 answers by the request id: the id 0xabc made order 1006.
        Request::Buy {
            goods_id: 6,
            request_id,
            ..
        } => match request_id.map(RequestId::get) {
            Some(0xabc) => Reply::Bought { order_no: 1006 },
            _ => Reply::error(Status::BadRequest, "not the id"),
        },
        // Goods 9 makes order numbers above 2^53, as real ones are.
        Request::Buy { goods_id: 9, .. } => Reply::Bought {
            order_no: BIG_ORDER,
        },
        Request::Buy { goods_id: 10, .. } => Reply::error(Status::RateLimited, "slow down"),
        Request::Buy { goods_id: 11, .. } => Reply::error(Status::Pending, "being written"),
        Request::Buy { goods_id: 12, .. } => Reply::error(Status::UnknownGoods, "no goods 12"),
        Request::Buy { .. } => Reply::error(Status::Busy, "queue full"),
        Request::Token {
            user_id: 7,
            goods_id: 4,
        } => Reply::Token {
            token: PURCHASE_TOKEN,
            expires_ms: 1_700_000_060_000,
        },
        Request::Token { goods_id: 5, .. } => Reply::error(Status::Paused, "paused"),
        // User 7's order 1001 is live; 1002 is cancelled on PAY, paid on
        // CANCEL; anything else is no order of theirs.
        Request::Pay {
            user_id: 7,
            order_no: 1001,
        } => Reply::Paid(order(1001, OrderState::Paid)),
        Request::Pay {
            user_id: 7,
            order_no: 1002,
        } => Reply::error(Status::OrderCancelled, "order cancelled"),
        Request::Cancel {
            user_id: 7,
            order_no: 1001,
        } => Reply::Cancelled(order(1001, OrderState::Cancelled)),
        Request::Cancel {
            user_id: 7,
            order_no: 1002,
        } => Reply::error(Status::OrderPaid, "order paid"),
        Request::Pay { .. } | Request::Cancel { .. } => {
            Reply::error(Status::NoOrder, "no such order of this user")
        }
        Request::ListOrders { user_id: 7 } => Reply::Orders(vec![
            order(1002, OrderState::Paid),
            order(1001, OrderState::Created),
        ]),
        Request::ListOrders { .. } => Reply::Orders(vec![]),
        Request::OrderStatus { .. } => Reply::error(Status::NoOrder, "no order"),
        // Made from what was sent, so that the output shows its encoding.
        // The CLI names every addition, so that it can be retried safely.
        Request::AddGoods {
            request_id: None, ..
        } => Reply::error(Status::BadRequest, "no request id"),
        Request::AddGoods { goods: ref new, .. } => Reply::GoodsAdded(Goods {
            id: 3,
            name: new.name.clone(),
            price_cents: new.price_cents,
            total: new.stock,
            remaining: new.stock,
            start_ms: new.start_ms,
            end_ms: new.end_ms,
            state: GoodsState::Upcoming,
            rules: new.rules,
        }),
        Request::SaleControl {
            goods_id: 1,
            action,
        } => Reply::SaleChanged(match action {
            SaleAction::Pause => Goods {
                state: GoodsState::Paused,
                ..phone()
            },
            SaleAction::Resume => phone(),
            SaleAction::End => Goods {
                state: GoodsState::Ended,
                end_ms: 1_700_000_500_000,
                ..phone()
            },
            SaleAction::Window { start_ms, end_ms } => Goods {
                state: GoodsState::Upcoming,
                start_ms,
                end_ms,
                ..phone()
            },
        }),
        Request::SaleControl { .. } => Reply::error(Status::UnknownGoods, "no such goods"),
        Request::Stats => Reply::Stats(vec![Stat {
            name: "buy_ok".into(),
            value: 7,
        }]),
        Request::Reconcile {
            goods_id: ALL_GOODS,
        } => Reply::Reconciled(vec![held_back(), missing()]),
        Request::Reconcile { goods_id: 1 } => Reply::Reconciled(vec![held_back()]),
        Request::Reconcile { .. } => Reply::error(Status::UnknownGoods, "no such goods"),
        _ => Reply::Pong,
    }
}

/// Goods 1 after a crash between the stock deduction and the order commit.
fn held_back() -> Drift {
    Drift {
        goods_id: 1,
        found_remaining: Some(41),
        found_holders: 59,
        remaining: 42,
        holders: 58,
    }
}

/// Goods 2, lost by the stock store.
fn missing() -> Drift {
    Drift {
        goods_id: 2,
        found_remaining: None,
        found_holders: 0,
        remaining: 7,
        holders: 3,
    }
}

fn cli(addr: SocketAddr, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_seckill-cli"))
        .arg("--addr")
        .arg(addr.to_string())
        .args(args)
        .env_remove("SECKILL_ADDR")
        .env_remove("SECKILL_ADMIN_TOKEN")
        .env_remove("SECKILL_ADMIN_TOKEN_FILE")
        .output()
        .unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn buy_exits_0_for_an_order_and_2_for_a_sale_answer() {
    let addr = fake(answer);
    let ordered = cli(addr, &["buy", "--user", "7", "--goods", "1"]);
    assert_eq!(ordered.status.code(), Some(0));
    assert_eq!(text(&ordered.stdout), "ordered: order 1001\n");

    let sold_out = cli(addr, &["--json", "buy", "--user", "7", "--goods", "2"]);
    assert_eq!(sold_out.status.code(), Some(2));
    let json: serde_json::Value = serde_json::from_slice(&sold_out.stdout).unwrap();
    assert_eq!(json["outcome"], "sold_out");
    assert_eq!(json["order_no"], serde_json::Value::Null);

    let no_order = cli(addr, &["order", "--user", "7", "--goods", "2"]);
    assert_eq!(no_order.status.code(), Some(2));
}

/// What a server says in an error reaches the terminal without its control
/// characters: an escape sequence in it would be run by the terminal
/// (clear the screen, set the clipboard).
#[test]
fn a_servers_error_message_reaches_the_terminal_without_escapes() {
    let addr = fake(answer);
    let out = cli(addr, &["buy", "--user", "7", "--goods", "66"]);
    assert_eq!(out.status.code(), Some(1));
    let said = text(&out.stderr);
    assert!(said.contains("such") && said.contains("goods"), "{said:?}");
    assert!(
        !said.contains('\u{1b}') && !said.contains('\u{7}'),
        "{said:?}"
    );
}

#[test]
fn errors_are_explained_on_stderr_with_exit_1_or_3_if_retryable() {
    let addr = fake(answer);
    let busy = cli(addr, &["buy", "--user", "7", "--goods", "3"]);
    assert_eq!(busy.status.code(), Some(3));
    assert_eq!(text(&busy.stderr), "error: server is busy, retry later\n");

    let denied = cli(addr, &["stats"]);
    assert_eq!(denied.status.code(), Some(1));
    assert!(text(&denied.stderr).starts_with("error: unauthorized: admin token missing or wrong"));

    let wrong = cli(addr, &["--token", "nope", "stats"]);
    assert_eq!(wrong.status.code(), Some(1));
    assert!(text(&wrong.stderr).contains("set SECKILL_ADMIN_TOKEN"));

    let gone = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let refused = cli(gone, &["ping"]);
    assert_eq!(refused.status.code(), Some(1));
    let said = text(&refused.stderr);
    assert!(said.contains(&gone.to_string()));
    // Said once, not "connecting to X failed: connecting to X failed".
    assert_eq!(said.matches(&gone.to_string()).count(), 1, "{said}");
}

/// With `--json` a failure is one JSON object on stdout, and the exit code
/// says what a script should do: 3 try again as it is, 1 give up.
#[test]
fn json_errors_parse_and_exit_codes_say_what_to_do() {
    let addr = fake(answer);
    let cases = [
        ("3", "busy", 3),
        ("10", "rate_limited", 3),
        ("11", "pending", 3),
        ("12", "unknown_goods", 1),
    ];
    for (goods, status, code) in cases {
        let out = cli(addr, &["--json", "buy", "--user", "7", "--goods", goods]);
        assert_eq!(out.status.code(), Some(code), "{status}");
        let failure = json(&out);
        assert_eq!(failure["status"], status);
        assert_eq!(failure["exit_code"], code);
        assert!(failure["message"].as_str().is_some_and(|m| !m.is_empty()));
        assert!(out.stderr.is_empty(), "{}", text(&out.stderr));
    }
    let denied = json(&cli(addr, &["--json", "stats"]));
    assert_eq!(denied["status"], "unauthorized");
    let gone = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let refused = cli(gone, &["--json", "ping"]);
    assert_eq!(refused.status.code(), Some(1));
    assert_eq!(json(&refused)["status"], "io_error");
    let none = cli(addr, &["--json", "order", "--user", "7", "--goods", "2"]);
    assert_eq!(none.status.code(), Some(2));
    assert_eq!(
        json(&none),
        serde_json::json!({
            "status": "no_order",
            "message": "user 7 holds no order for goods 2",
            "exit_code": 2,
            "user_id": "7",
            "goods_id": "2",
        })
    );
}

/// A peer that accepts and says nothing (Redis waits for a line end) is
/// named within about a second, not after the whole --timeout.
#[test]
fn a_silent_peer_is_named_quickly() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    thread::spawn(move || {
        let held: Vec<TcpStream> = listener.incoming().map_while(Result::ok).collect();
        drop(held);
    });
    let started = std::time::Instant::now();
    let out = cli(addr, &["--timeout", "10s", "ping"]);
    assert!(
        started.elapsed() < std::time::Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );
    assert_eq!(out.status.code(), Some(1));
    let said = text(&out.stderr);
    assert!(said.contains("did not answer HELLO"), "{said}");
    assert!(said.contains("not a seckill server"), "{said}");
}

/// Order numbers above 2^53 come out as JSON strings, and read back as
/// exactly the number the server sent.
#[test]
fn a_json_id_above_2_pow_53_round_trips_exactly() {
    let addr = fake(answer);
    let out = cli(addr, &["--json", "buy", "--user", "7", "--goods", "9"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let bought = json(&out);
    let order_no = bought["order_no"].as_str().expect("a string");
    assert_eq!(order_no.parse::<u64>().unwrap(), BIG_ORDER);
    // What JavaScript or jq 1.6 would print of it as a number: another
    // order number.
    assert_eq!((BIG_ORDER as f64).to_string(), "387241520257826800");
    assert_eq!(bought["user_id"], "7");
    assert_eq!(bought["goods_id"], "9");
}

/// A stale admin token (in the environment, say) is not sent by the public
/// commands, so they work; only admin commands use it.
#[test]
fn a_stale_admin_token_does_not_break_public_commands() {
    let addr = fake(answer);
    for args in [
        &["--token", "stale", "goods", "list"][..],
        &["--token", "stale", "buy", "--user", "7", "--goods", "1"],
        &["--token", "stale", "ping"],
    ] {
        let out = cli(addr, args);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{args:?}: {}",
            text(&out.stderr)
        );
    }
    let admin = cli(addr, &["--token", "stale", "stats"]);
    assert_eq!(admin.status.code(), Some(1));
}

/// Every argument of every subcommand says what it is in `--help`.
#[test]
fn no_help_line_is_blank() {
    let commands: [&[&str]; 12] = [
        &["buy"],
        &["token"],
        &["pay"],
        &["cancel"],
        &["order"],
        &["orders"],
        &["goods", "show"],
        &["goods", "add"],
        &["goods", "restock"],
        &["sale", "pause"],
        &["sale", "window"],
        &["reconcile"],
    ];
    for command in commands {
        let out = Command::new(env!("CARGO_BIN_EXE_seckill-cli"))
            .args(command)
            // -h: one line per argument, its help beside it.
            .arg("-h")
            .env_remove("SECKILL_ADDR")
            .output()
            .unwrap();
        let help = text(&out.stdout);
        for line in help.lines() {
            let arg = line.trim_start();
            if arg.starts_with('-') || arg.starts_with('<') {
                // An option alone on its line, with no words after it.
                let words = arg.split_whitespace().count();
                let bare = words == 1 || (words == 2 && arg.contains(" <"));
                assert!(!bare, "{command:?}: blank help for `{arg}`\n{help}");
            }
        }
    }
}

#[test]
fn the_admin_token_comes_from_the_environment_and_is_never_shown() {
    let addr = fake(answer);
    let stats = Command::new(env!("CARGO_BIN_EXE_seckill-cli"))
        .args(["--addr", &addr.to_string(), "stats"])
        .env("SECKILL_ADMIN_TOKEN", TOKEN)
        .env_remove("SECKILL_ADMIN_TOKEN_FILE")
        .output()
        .unwrap();
    assert_eq!(stats.status.code(), Some(0), "{}", text(&stats.stderr));
    assert_eq!(text(&stats.stdout), "NAME    VALUE\nbuy_ok      7\n");

    let help = Command::new(env!("CARGO_BIN_EXE_seckill-cli"))
        .arg("--help")
        .env("SECKILL_ADMIN_TOKEN", TOKEN)
        .env_remove("SECKILL_ADMIN_TOKEN_FILE")
        .output()
        .unwrap();
    assert!(!text(&help.stdout).contains(TOKEN));
}

/// The admin token read from a file, as systemd's `LoadCredential=` gives
/// one: its line end dropped, read only by the admin commands, refused
/// beside `--token`, and a file that gives no token named without a word
/// of what it holds.
#[test]
fn the_admin_token_comes_from_a_file() {
    let addr = fake(answer);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("admin-token");
    std::fs::write(&path, format!("{TOKEN}\r\n")).unwrap();
    let file = path.to_str().unwrap();

    let stats = cli(addr, &["--token-file", file, "stats"]);
    assert_eq!(stats.status.code(), Some(0), "{}", text(&stats.stderr));
    assert_eq!(text(&stats.stdout), "NAME    VALUE\nbuy_ok      7\n");
    let from_env = Command::new(env!("CARGO_BIN_EXE_seckill-cli"))
        .args(["--addr", &addr.to_string(), "stats"])
        .env_remove("SECKILL_ADMIN_TOKEN")
        .env("SECKILL_ADMIN_TOKEN_FILE", &path)
        .output()
        .unwrap();
    assert_eq!(
        from_env.status.code(),
        Some(0),
        "{}",
        text(&from_env.stderr)
    );

    // Both, on one side of the subcommand or on either: an admin command
    // is refused, a public one (which sends no token) is not.
    for args in [
        ["--token", TOKEN, "--token-file", file, "stats"],
        ["--token-file", file, "stats", "--token", TOKEN],
    ] {
        let both = cli(addr, &args);
        assert_eq!(both.status.code(), Some(1), "{args:?}");
        assert!(
            text(&both.stderr).contains("cannot be used with"),
            "{args:?}"
        );
        assert!(!text(&both.stderr).contains(TOKEN), "{args:?}");
    }
    let public = Command::new(env!("CARGO_BIN_EXE_seckill-cli"))
        .args(["--addr", &addr.to_string(), "goods", "list"])
        .env("SECKILL_ADMIN_TOKEN", TOKEN)
        .env("SECKILL_ADMIN_TOKEN_FILE", &path)
        .output()
        .unwrap();
    assert_eq!(public.status.code(), Some(0), "{}", text(&public.stderr));

    // A file that cannot be read fails the admin commands only.
    let missing = dir.path().join("no-such-token");
    let missing = missing.to_str().unwrap();
    let denied = cli(addr, &["--token-file", missing, "stats"]);
    assert_eq!(denied.status.code(), Some(1));
    let said = text(&denied.stderr);
    assert!(
        said.contains("--token-file") && said.contains(missing),
        "{said}"
    );
    let listed = cli(addr, &["--token-file", missing, "goods", "list"]);
    assert_eq!(listed.status.code(), Some(0), "{}", text(&listed.stderr));

    // Two lines (a token and a stray line): refused, neither shown.
    std::fs::write(&path, format!("{TOKEN}\nleaked-word\n")).unwrap();
    let refused = cli(addr, &["--json", "--token-file", file, "stats"]);
    assert_eq!(refused.status.code(), Some(1));
    let said = format!("{}{}", text(&refused.stdout), text(&refused.stderr));
    assert!(said.contains("more than one line"), "{said}");
    assert!(
        !said.contains(TOKEN) && !said.contains("leaked-word"),
        "{said}"
    );
}

#[test]
fn reconcile_prints_the_drift_per_goods_as_a_table_or_json() {
    let addr = fake(answer);
    let every = cli(addr, &["--token", TOKEN, "reconcile"]);
    assert_eq!(every.status.code(), Some(0), "{}", text(&every.stderr));
    assert_eq!(
        text(&every.stdout),
        "GOODS  FOUND LEFT  FOUND HOLDERS  LEFT  HOLDERS  DRIFT\n    \
             1          41             59    42       58     -1\n    \
             2     missing              0     7        3     -7\n"
    );

    let one = cli(
        addr,
        &["--token", TOKEN, "--json", "reconcile", "--goods", "1"],
    );
    assert_eq!(one.status.code(), Some(0), "{}", text(&one.stderr));
    let json: serde_json::Value = serde_json::from_slice(&one.stdout).unwrap();
    assert_eq!(
        json,
        serde_json::json!([{
            "goods_id": "1",
            "found_remaining": 41,
            "found_holders": 59,
            "remaining": 42,
            "holders": 58,
            "drift": -1,
        }])
    );
    let all = cli(addr, &["--token", TOKEN, "--json", "reconcile"]);
    let json: serde_json::Value = serde_json::from_slice(&all.stdout).unwrap();
    assert_eq!(json[1]["found_remaining"], serde_json::Value::Null);
    assert_eq!(json[1]["drift"], -7);

    let unknown = cli(addr, &["--token", TOKEN, "reconcile", "--goods", "9"]);
    assert_eq!(unknown.status.code(), Some(1));
    assert!(text(&unknown.stderr).contains("no such goods"));
    let denied = cli(addr, &["reconcile"]);
    assert_eq!(denied.status.code(), Some(1));
    assert!(text(&denied.stderr).starts_with("error: unauthorized"));
    // Goods ids start at 1: 0 is a usage error, not "every goods".
    let zero = cli(addr, &["--token", TOKEN, "reconcile", "--goods", "0"]);
    assert_eq!(zero.status.code(), Some(1));
    assert!(zero.stdout.is_empty());
    assert!(text(&zero.stderr).contains("goods ids start at 1"));
}

#[test]
fn goods_list_prints_a_table_or_json() {
    let addr = fake(answer);
    let table = cli(addr, &["goods", "list"]);
    assert_eq!(
        text(&table.stdout),
        "ID  NAME    PRICE  LEFT  TOTAL  STATE    START                 END                   \
         LIMIT  PAY WINDOW  TOKEN\n \
         1  Phone  999.00    42    100  on_sale  2023-11-14T22:13:20Z  2023-11-14T23:13:20Z      \
         1  15m         no\n"
    );
    let json = cli(addr, &["goods", "list", "--json"]);
    let list: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(list[0]["price_cents"], 99900);
    assert_eq!(list[0]["end"], "2023-11-14T23:13:20Z");
    assert_eq!(list[0]["rules"]["pay_window_ms"], 900_000);
}

fn json(out: &Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}{}", text(&out.stdout), text(&out.stderr)))
}

#[test]
fn token_prints_a_purchase_token_that_buy_sends() {
    let addr = fake(answer);
    let token = cli(addr, &["token", "--user", "7", "--goods", "4"]);
    assert_eq!(token.status.code(), Some(0), "{}", text(&token.stderr));
    assert_eq!(
        text(&token.stdout),
        format!(
            "token {PURCHASE_TOKEN} for user 7 and goods 4, valid until 2023-11-14T22:14:20Z\n"
        )
    );
    let as_json = json(&cli(
        addr,
        &["--json", "token", "--user", "7", "--goods", "4"],
    ));
    assert_eq!(
        as_json,
        serde_json::json!({
            "user_id": "7",
            "goods_id": "4",
            "token": PURCHASE_TOKEN.to_string(),
            "expires": "2023-11-14T22:14:20Z",
            "expires_ms": 1_700_000_060_000_u64,
        })
    );

    let token_arg = PURCHASE_TOKEN.to_string();
    let args = ["buy", "--user", "7", "--goods", "4", "--purchase-token"];
    let bought = cli(addr, &[&args[..], &[token_arg.as_str()]].concat());
    assert_eq!(bought.status.code(), Some(0), "{}", text(&bought.stderr));
    assert_eq!(text(&bought.stdout), "ordered: order 1004\n");

    let expired = cli(addr, &[&args[..], &["12345"]].concat());
    assert_eq!(expired.status.code(), Some(1));
    assert_eq!(
        text(&expired.stderr),
        "error: the purchase token has expired: get a new one with `seckill-cli token`\n"
    );
    let without = cli(addr, &["buy", "--user", "7", "--goods", "4"]);
    assert_eq!(without.status.code(), Some(1));
    assert!(
        text(&without.stderr).contains("purchase token"),
        "{}",
        text(&without.stderr)
    );
    // 0 would be a BUY without a token on the wire.
    let zero = cli(addr, &[&args[..], &["0"]].concat());
    assert_eq!(zero.status.code(), Some(1));
    assert!(zero.stdout.is_empty());
    assert!(
        text(&zero.stderr).contains("never 0"),
        "{}",
        text(&zero.stderr)
    );
}

#[test]
fn a_paused_sale_exits_2_for_buy_and_token() {
    let addr = fake(answer);
    let buy = cli(addr, &["buy", "--user", "7", "--goods", "5"]);
    assert_eq!(buy.status.code(), Some(2));
    assert_eq!(text(&buy.stdout), "the sale is paused\n");

    let token = cli(addr, &["token", "--user", "7", "--goods", "5"]);
    assert_eq!(token.status.code(), Some(2), "{}", text(&token.stderr));
    assert_eq!(text(&token.stdout), "the sale is paused\n");
    let token = cli(addr, &["--json", "token", "--user", "7", "--goods", "5"]);
    assert_eq!(token.status.code(), Some(2));
    let token = json(&token);
    assert_eq!(token["outcome"], "paused");
    assert_eq!(token["token"], serde_json::Value::Null);
}

#[test]
fn pay_and_cancel_show_the_order_or_exit_2_when_its_state_forbids() {
    let addr = fake(answer);
    let paid = cli(addr, &["pay", "--user", "7", "--order", "1001"]);
    assert_eq!(paid.status.code(), Some(0), "{}", text(&paid.stderr));
    assert_eq!(
        text(&paid.stdout),
        "ORDER  USER  GOODS  STATE  CREATED               PAY BY\n \
          1001     7      1  paid   2023-11-14T22:13:20Z  2023-11-14T22:28:20Z\n"
    );
    let paid = json(&cli(
        addr,
        &["--json", "pay", "--user", "7", "--order", "1001"],
    ));
    assert_eq!(paid["state"], "paid");
    assert_eq!(paid["pay_by"], "2023-11-14T22:28:20Z");

    let too_late = cli(addr, &["pay", "--user", "7", "--order", "1002"]);
    assert_eq!(too_late.status.code(), Some(2));
    assert_eq!(
        text(&too_late.stdout),
        "order 1002 of user 7 is cancelled (by its buyer, or its payment window passed): \
         it can no longer be paid\n"
    );
    let too_late = cli(addr, &["--json", "pay", "--user", "7", "--order", "1002"]);
    assert_eq!(too_late.status.code(), Some(2));
    assert_eq!(
        json(&too_late),
        serde_json::json!({
            "status": "order_cancelled",
            "message": "order 1002 of user 7 is cancelled (by its buyer, or its payment \
                        window passed): it can no longer be paid",
            "exit_code": 2,
            "user_id": "7",
            "order_no": "1002",
        })
    );

    let cancelled = json(&cli(
        addr,
        &["--json", "cancel", "--user", "7", "--order", "1001"],
    ));
    assert_eq!(cancelled["state"], "cancelled");
    let paid_first = cli(addr, &["cancel", "--user", "7", "--order", "1002"]);
    assert_eq!(paid_first.status.code(), Some(2));
    assert_eq!(
        text(&paid_first.stdout),
        "order 1002 of user 7 is paid: it can no longer be cancelled\n"
    );

    // Someone else's order is an error, not a sale answer.
    for command in ["pay", "cancel"] {
        let theirs = cli(addr, &[command, "--user", "8", "--order", "1001"]);
        assert_eq!(theirs.status.code(), Some(1));
        assert_eq!(
            text(&theirs.stderr),
            "error: server replied no_order: no such order of this user\n"
        );
    }
}

#[test]
fn orders_lists_every_order_of_a_user() {
    let addr = fake(answer);
    let table = cli(addr, &["orders", "--user", "7"]);
    assert_eq!(table.status.code(), Some(0), "{}", text(&table.stderr));
    assert_eq!(
        text(&table.stdout),
        "ORDER  USER  GOODS  STATE    CREATED               PAY BY\n \
          1002     7      1  paid     2023-11-14T22:13:20Z  2023-11-14T22:28:20Z\n \
          1001     7      1  created  2023-11-14T22:13:20Z  2023-11-14T22:28:20Z\n"
    );
    let list = json(&cli(addr, &["--json", "orders", "--user", "7"]));
    assert_eq!(list[0]["order_no"], "1002");
    assert_eq!(list[1]["state"], "created");

    let none = cli(addr, &["orders", "--user", "8"]);
    assert_eq!(none.status.code(), Some(0));
    assert_eq!(text(&none.stdout), "user 8 holds no orders\n");
    let none = json(&cli(addr, &["--json", "orders", "--user", "8"]));
    assert_eq!(none, serde_json::json!([]));
}

#[test]
fn goods_add_sends_the_sale_rules() {
    let addr = fake(answer);
    let add = [
        "--token",
        TOKEN,
        "--json",
        "goods",
        "add",
        "--name",
        "Phone",
        "--price",
        "9.99",
        "--stock",
        "5",
        "--start",
        "2030-01-01T00:00:00Z",
        "--end",
        "1h",
    ];
    let defaults = json(&cli(addr, &add));
    assert_eq!(
        defaults["rules"],
        serde_json::json!({
            "per_user_limit": 1,
            "pay_window": "15m",
            "pay_window_ms": 900_000,
            "token_required": false,
        })
    );
    assert_eq!(defaults["end"], "2030-01-01T01:00:00Z");
    let rules = ["--limit", "3", "--pay-window", "90s", "--token-required"];
    let ruled = json(&cli(addr, &[&add[..], &rules[..]].concat()));
    assert_eq!(
        ruled["rules"],
        serde_json::json!({
            "per_user_limit": 3,
            "pay_window": "1m 30s",
            "pay_window_ms": 90_000,
            "token_required": true,
        })
    );
    let table = cli(addr, &[&add[..2], &add[3..], &rules[..]].concat());
    let row = text(&table.stdout);
    assert!(row.ends_with("      3  1m 30s      required\n"), "{row}");

    let zero = cli(addr, &[&add[..], &["--limit", "0"]].concat());
    assert_eq!(zero.status.code(), Some(1));
    assert!(zero.stdout.is_empty());
    let denied = cli(addr, &add[2..]);
    assert_eq!(denied.status.code(), Some(1));
    assert_eq!(json(&denied)["status"], "unauthorized");
    let denied = cli(addr, &add[3..]);
    assert!(text(&denied.stderr).starts_with("error: unauthorized"));
}

#[test]
fn sale_commands_show_the_goods_after_the_change() {
    let addr = fake(answer);
    let paused = cli(addr, &["--token", TOKEN, "sale", "pause", "1"]);
    assert_eq!(paused.status.code(), Some(0), "{}", text(&paused.stderr));
    let row = text(&paused.stdout);
    assert!(row.contains("  paused  "), "{row}");
    let resumed = json(&cli(
        addr,
        &["--token", TOKEN, "--json", "sale", "resume", "1"],
    ));
    assert_eq!(resumed["state"], "on_sale");
    let ended = json(&cli(
        addr,
        &["--token", TOKEN, "--json", "sale", "end", "1"],
    ));
    assert_eq!(
        (&ended["state"], &ended["end_ms"]),
        (&"ended".into(), &1_700_000_500_000_u64.into())
    );

    let window = [
        "--token",
        TOKEN,
        "--json",
        "sale",
        "window",
        "1",
        "--start",
        "2030-01-01T00:00:00Z",
        "--end",
        "30m",
    ];
    let moved = json(&cli(addr, &window));
    assert_eq!(moved["start"], "2030-01-01T00:00:00Z");
    assert_eq!(moved["end"], "2030-01-01T00:30:00Z");
    // An end before the start never reaches the server.
    let backwards = cli(addr, &[&window[..8], &["--end", "+1s"]].concat());
    assert_eq!(backwards.status.code(), Some(1));
    let said = json(&backwards);
    assert_eq!(said["status"], "error");
    assert!(said["message"]
        .as_str()
        .is_some_and(|m| m.contains("--end must be after --start")));

    let unknown = cli(addr, &["--token", TOKEN, "sale", "pause", "9"]);
    assert_eq!(unknown.status.code(), Some(1));
    assert!(text(&unknown.stderr).contains("no such goods"));
    let denied = cli(addr, &["sale", "pause", "1"]);
    assert_eq!(denied.status.code(), Some(1));
    assert!(text(&denied.stderr).starts_with("error: unauthorized"));
}

/// A RESTOCK whose outcome is unknown (the connection dropped before its
/// answer) exits 1, not 3: run again, it would add the units twice if the
/// first was applied; the message says what to check first.
#[test]
fn a_restock_whose_outcome_is_unknown_is_not_safe_to_run_again() {
    let addr = fake(answer);
    let args = ["--token", TOKEN, "goods", "restock", "8", "--amount", "100"];
    let out = cli(addr, &args);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("may have been applied"),
        "{}",
        text(&out.stderr)
    );
    let mut with_json = vec!["--json"];
    with_json.extend(args);
    let out = cli(addr, &with_json);
    assert_eq!(out.status.code(), Some(1));
    let report = json(&out);
    assert_eq!(report["exit_code"], 1, "{report}");
    assert!(
        report.get("retry_request_id").is_none_or(|v| v.is_null()),
        "{report}"
    );
}

#[test]
fn buy_sends_the_request_id_given_or_a_fresh_one_and_names_it_when_the_outcome_is_unknown() {
    let addr = fake(answer);
    let given = cli(
        addr,
        &["buy", "--user", "7", "--goods", "6", "--request-id", "abc"],
    );
    assert_eq!(given.status.code(), Some(0), "{}", text(&given.stderr));
    assert_eq!(text(&given.stdout), "ordered: order 1006\n");
    // A UUID is an id too: the same number, written its way.
    let uuid = "00000000-0000-0000-0000-000000000abc";
    let as_uuid = cli(
        addr,
        &["buy", "--user", "7", "--goods", "6", "--request-id", uuid],
    );
    assert_eq!(as_uuid.status.code(), Some(0), "{}", text(&as_uuid.stderr));

    let drawn = json(&cli(
        addr,
        &["--json", "buy", "--user", "7", "--goods", "1"],
    ));
    let id = drawn["request_id"].as_str().expect("a request id");
    assert_eq!(id.len(), 32, "{drawn}");
    let again = json(&cli(
        addr,
        &["--json", "buy", "--user", "7", "--goods", "1"],
    ));
    assert_ne!(
        again["request_id"], drawn["request_id"],
        "a fresh id each run"
    );

    for bad in ["0", "xyz", "123456789012345678901234567890123"] {
        let refused = cli(
            addr,
            &["buy", "--user", "7", "--goods", "6", "--request-id", bad],
        );
        assert_eq!(refused.status.code(), Some(1), "{bad}");
        assert!(refused.stdout.is_empty());
        assert!(text(&refused.stderr).contains("--request-id"), "{bad}");
    }

    // The connection drops with the BUY in flight: it may have been made,
    // and the error says how to try the same purchase again (the id marked
    // a repeat, bit 127: PROTOCOL.md, section 9).
    let lost = cli(
        addr,
        &["buy", "--user", "7", "--goods", "8", "--request-id", "feed"],
    );
    // Exit 3: trying again with that id is safe.
    assert_eq!(lost.status.code(), Some(3));
    let err = text(&lost.stderr);
    assert!(err.starts_with("error: "), "{err}");
    assert!(
        err.contains("--request-id 8000000000000000000000000000feed"),
        "{err}"
    );
}

#[test]
fn addr_takes_a_list_and_uses_the_first_server_that_answers() {
    let addr = fake(answer);
    let gone = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let list = format!("{gone}, {addr}");
    let ping = Command::new(env!("CARGO_BIN_EXE_seckill-cli"))
        .args(["--addr", &list, "ping"])
        .env_remove("SECKILL_ADMIN_TOKEN")
        .env_remove("SECKILL_ADMIN_TOKEN_FILE")
        .output()
        .unwrap();
    assert_eq!(ping.status.code(), Some(0), "{}", text(&ping.stderr));
    assert!(
        text(&ping.stdout).starts_with(&format!("PONG from {addr} in ")),
        "{}",
        text(&ping.stdout)
    );

    let from_env = Command::new(env!("CARGO_BIN_EXE_seckill-cli"))
        .args(["buy", "--user", "7", "--goods", "1"])
        .env("SECKILL_ADDR", &list)
        .output()
        .unwrap();
    assert_eq!(
        from_env.status.code(),
        Some(0),
        "{}",
        text(&from_env.stderr)
    );

    let empty = cli_with_addr(&format!("{addr},,{gone}"), &["ping"]);
    assert_eq!(empty.status.code(), Some(1));
    assert!(text(&empty.stderr).contains("empty server address"));
    let all_down = cli_with_addr(&format!("{gone},{gone}"), &["ping"]);
    assert_eq!(all_down.status.code(), Some(1));
    assert!(text(&all_down.stderr).contains(&gone.to_string()));
}

fn cli_with_addr(addr: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_seckill-cli"))
        .arg("--addr")
        .arg(addr)
        .args(args)
        .env_remove("SECKILL_ADDR")
        .env_remove("SECKILL_ADMIN_TOKEN")
        .env_remove("SECKILL_ADMIN_TOKEN_FILE")
        .output()
        .unwrap()
}
