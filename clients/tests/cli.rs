//! `seckill-cli` run as a process against a small fake server: output, error
//! lines and exit codes as a shell sees them.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Command, Output};
use std::thread;

use bytes::{Buf, BytesMut};
use seckill_proto::{
    Drift, Frame, Goods, GoodsState, Reply, Request, Stat, Status, ALL_GOODS, MAX_REQUEST_FRAME,
    VERSION,
};

const TOKEN: &str = "s3cret";

/// A fake server for every connection to the returned address: HELLO checks
/// the token, STATS and RECONCILE need admin, everything else is answered by
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
        let reply = match &request {
            Request::Hello { token, .. } if token.is_empty() || token == TOKEN => {
                admin = token == TOKEN;
                Reply::Hello {
                    version: VERSION,
                    admin,
                }
            }
            Request::Hello { .. } => Reply::error(Status::Unauthorized, "wrong token"),
            Request::Stats | Request::Reconcile { .. } if !admin => {
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
    }
}

fn answer(request: &Request) -> Reply {
    match *request {
        Request::ListGoods => Reply::GoodsList(vec![phone()]),
        Request::Buy { goods_id: 1, .. } => Reply::Bought { order_no: 1001 },
        Request::Buy { goods_id: 2, .. } => Reply::error(Status::SoldOut, "none left"),
        Request::Buy { .. } => Reply::error(Status::Busy, "queue full"),
        Request::OrderStatus { .. } => Reply::error(Status::NoOrder, "no order"),
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

#[test]
fn errors_are_explained_on_stderr_with_exit_1() {
    let addr = fake(answer);
    let busy = cli(addr, &["buy", "--user", "7", "--goods", "3"]);
    assert_eq!(busy.status.code(), Some(1));
    assert_eq!(text(&busy.stderr), "error: server is busy, retry later\n");

    let denied = cli(addr, &["stats"]);
    assert_eq!(denied.status.code(), Some(1));
    assert!(text(&denied.stderr).starts_with("error: unauthorized: admin token missing or wrong"));

    let wrong = cli(addr, &["--token", "nope", "stats"]);
    assert_eq!(wrong.status.code(), Some(1));
    assert!(text(&wrong.stderr).contains("--token or SECKILL_ADMIN_TOKEN"));

    let gone = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let refused = cli(gone, &["ping"]);
    assert_eq!(refused.status.code(), Some(1));
    assert!(text(&refused.stderr).contains(&gone.to_string()));
}

#[test]
fn the_admin_token_comes_from_the_environment_and_is_never_shown() {
    let addr = fake(answer);
    let stats = Command::new(env!("CARGO_BIN_EXE_seckill-cli"))
        .args(["--addr", &addr.to_string(), "stats"])
        .env("SECKILL_ADMIN_TOKEN", TOKEN)
        .output()
        .unwrap();
    assert_eq!(stats.status.code(), Some(0), "{}", text(&stats.stderr));
    assert_eq!(text(&stats.stdout), "NAME    VALUE\nbuy_ok      7\n");

    let help = Command::new(env!("CARGO_BIN_EXE_seckill-cli"))
        .arg("--help")
        .env("SECKILL_ADMIN_TOKEN", TOKEN)
        .output()
        .unwrap();
    assert!(!text(&help.stdout).contains(TOKEN));
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
            "goods_id": 1,
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
        "ID  NAME    PRICE  LEFT  TOTAL  STATE    START                 END\n \
         1  Phone  999.00    42    100  on_sale  2023-11-14T22:13:20Z  2023-11-14T23:13:20Z\n"
    );
    let json = cli(addr, &["goods", "list", "--json"]);
    let list: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(list[0]["price_cents"], 99900);
    assert_eq!(list[0]["end"], "2023-11-14T23:13:20Z");
}
