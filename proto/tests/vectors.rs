//! The test vectors of PROTOCOL.md, checked both ways against the codec.
//!
//! The document is the contract other implementations are written from, so
//! its hex must be exactly what this crate sends and must decode to exactly
//! the value it is described as. Every vector listed here must appear in the
//! document once, and the document must hold no vector this file does not
//! check, so a vector that is changed, lost or added unchecked fails the test.
//!
//! To regenerate the blocks after a deliberate protocol change:
//! `cargo test -p seckill-proto --test vectors -- --ignored --nocapture print_vectors`

use std::collections::BTreeMap;

use bytes::BytesMut;
use seckill_proto::{
    Drift, Frame, Goods, GoodsState, NewGoods, Opcode, Order, OrderState, Reply, Request, Stat,
    Status, ALL_GOODS, MAX_REPLY_FRAME, MAX_REQUEST_FRAME,
};

const PROTOCOL: &str = include_str!("../PROTOCOL.md");

/// What a vector's bytes encode.
enum Value {
    Request {
        id: u64,
        request: Request,
    },
    /// `to` is the request opcode answered (without the reply bit).
    Reply {
        to: Opcode,
        id: u64,
        reply: Reply,
    },
}

struct Vector {
    name: &'static str,
    /// The line under the name in the document: what the bytes mean.
    description: &'static str,
    value: Value,
}

const START_MS: u64 = 1_700_000_000_000;
const END_MS: u64 = 1_700_003_600_000;

fn phone(total: u32, remaining: u32, state: GoodsState) -> Goods {
    Goods {
        id: 1,
        name: "Phone".into(),
        price_cents: 99_900,
        total,
        remaining,
        start_ms: START_MS,
        end_ms: END_MS,
        state,
    }
}

fn request(name: &'static str, description: &'static str, id: u64, request: Request) -> Vector {
    Vector {
        name,
        description,
        value: Value::Request { id, request },
    }
}

fn reply(
    name: &'static str,
    description: &'static str,
    to: Opcode,
    id: u64,
    reply: Reply,
) -> Vector {
    Vector {
        name,
        description,
        value: Value::Reply { to, id, reply },
    }
}

fn vectors() -> Vec<Vector> {
    vec![
        request(
            "hello_request",
            "request id=1 Hello{version=1, token=\"\"}",
            1,
            Request::Hello {
                version: 1,
                token: String::new(),
            },
        ),
        request(
            "hello_admin_request",
            "request id=1 Hello{version=1, token=\"secret\"}",
            1,
            Request::Hello {
                version: 1,
                token: "secret".into(),
            },
        ),
        request("ping_request", "request id=2 Ping", 2, Request::Ping),
        request(
            "list_goods_request",
            "request id=3 ListGoods",
            3,
            Request::ListGoods,
        ),
        request(
            "get_goods_request",
            "request id=4 GetGoods{goods_id=1}",
            4,
            Request::GetGoods { goods_id: 1 },
        ),
        request(
            "buy_request",
            "request id=42 Buy{user_id=7, goods_id=1}",
            42,
            Request::Buy {
                user_id: 7,
                goods_id: 1,
            },
        ),
        request(
            "order_status_request",
            "request id=43 OrderStatus{user_id=7, goods_id=1}",
            43,
            Request::OrderStatus {
                user_id: 7,
                goods_id: 1,
            },
        ),
        request(
            "add_goods_request",
            "request id=5 AddGoods{name=\"Phone\", price_cents=99900, stock=100, \
             start_ms=1700000000000, end_ms=1700003600000}",
            5,
            Request::AddGoods(NewGoods {
                name: "Phone".into(),
                price_cents: 99_900,
                stock: 100,
                start_ms: START_MS,
                end_ms: END_MS,
            }),
        ),
        request(
            "restock_request",
            "request id=6 Restock{goods_id=1, amount=50}",
            6,
            Request::Restock {
                goods_id: 1,
                amount: 50,
            },
        ),
        request("stats_request", "request id=7 Stats", 7, Request::Stats),
        request(
            "reconcile_request",
            "request id=8 Reconcile{goods_id=0}",
            8,
            Request::Reconcile {
                goods_id: ALL_GOODS,
            },
        ),
        reply(
            "hello_reply",
            "reply to=HELLO id=1 ok Hello{version=1, admin=0}",
            Opcode::Hello,
            1,
            Reply::Hello {
                version: 1,
                admin: false,
            },
        ),
        reply(
            "hello_admin_reply",
            "reply to=HELLO id=1 ok Hello{version=1, admin=1}",
            Opcode::Hello,
            1,
            Reply::Hello {
                version: 1,
                admin: true,
            },
        ),
        reply(
            "pong_reply",
            "reply to=PING id=2 ok Pong",
            Opcode::Ping,
            2,
            Reply::Pong,
        ),
        reply(
            "goods_reply",
            "reply to=GET_GOODS id=4 ok Goods{id=1, name=\"Phone\", price_cents=99900, \
             total=100, remaining=42, start_ms=1700000000000, end_ms=1700003600000, \
             state=on_sale}",
            Opcode::GetGoods,
            4,
            Reply::Goods(phone(100, 42, GoodsState::OnSale)),
        ),
        reply(
            "goods_list_reply",
            "reply to=LIST_GOODS id=3 ok GoodsList[Goods{id=1, name=\"Phone\", \
             price_cents=99900, total=100, remaining=42, start_ms=1700000000000, \
             end_ms=1700003600000, state=on_sale}, Goods{id=2, name=\"Café\" (5 bytes), \
             price_cents=450, total=10, remaining=0, start_ms=1700000000000, \
             end_ms=1700003600000, state=sold_out}]",
            Opcode::ListGoods,
            3,
            Reply::GoodsList(vec![
                phone(100, 42, GoodsState::OnSale),
                Goods {
                    id: 2,
                    name: "Café".into(),
                    price_cents: 450,
                    total: 10,
                    remaining: 0,
                    start_ms: START_MS,
                    end_ms: END_MS,
                    state: GoodsState::SoldOut,
                },
            ]),
        ),
        reply(
            "bought_reply",
            "reply to=BUY id=42 ok Bought{order_no=1001}",
            Opcode::Buy,
            42,
            Reply::Bought { order_no: 1001 },
        ),
        reply(
            "already_bought_reply",
            "reply to=BUY id=42 already_bought AlreadyBought{order_no=1001}",
            Opcode::Buy,
            42,
            Reply::AlreadyBought { order_no: 1001 },
        ),
        reply(
            "order_reply",
            "reply to=ORDER_STATUS id=43 ok Order{order_no=1001, user_id=7, goods_id=1, \
             state=created, created_ms=1700000000123}",
            Opcode::OrderStatus,
            43,
            Reply::Order(Order {
                order_no: 1001,
                user_id: 7,
                goods_id: 1,
                state: OrderState::Created,
                created_ms: 1_700_000_000_123,
            }),
        ),
        reply(
            "goods_added_reply",
            "reply to=ADD_GOODS id=5 ok GoodsAdded{id=1, name=\"Phone\", price_cents=99900, \
             total=100, remaining=100, start_ms=1700000000000, end_ms=1700003600000, \
             state=upcoming}",
            Opcode::AddGoods,
            5,
            Reply::GoodsAdded(phone(100, 100, GoodsState::Upcoming)),
        ),
        reply(
            "restocked_reply",
            "reply to=RESTOCK id=6 ok Restocked{id=1, name=\"Phone\", price_cents=99900, \
             total=150, remaining=92, start_ms=1700000000000, end_ms=1700003600000, \
             state=on_sale}",
            Opcode::Restock,
            6,
            Reply::Restocked(phone(150, 92, GoodsState::OnSale)),
        ),
        reply(
            "stats_reply",
            "reply to=STATS id=7 ok Stats[{name=\"buy_ok\", value=10}, \
             {name=\"sold_out\", value=3}]",
            Opcode::Stats,
            7,
            Reply::Stats(vec![
                Stat {
                    name: "buy_ok".into(),
                    value: 10,
                },
                Stat {
                    name: "sold_out".into(),
                    value: 3,
                },
            ]),
        ),
        reply(
            "reconciled_reply",
            "reply to=RECONCILE id=8 ok Reconciled[{goods_id=1, found_loaded=1, \
             found_remaining=41, found_holders=59, remaining=42, holders=58}, \
             {goods_id=2, found_loaded=0, found_remaining=0, found_holders=0, remaining=7, \
             holders=3}]",
            Opcode::Reconcile,
            8,
            Reply::Reconciled(vec![
                // A crash after the stock deduction, before the order commit:
                // one unit and one buyer held, no order. Both are given back.
                Drift {
                    goods_id: 1,
                    found_remaining: Some(41),
                    found_holders: 59,
                    remaining: 42,
                    holders: 58,
                },
                // The stock store lost the goods: it is loaded again.
                Drift {
                    goods_id: 2,
                    found_remaining: None,
                    found_holders: 0,
                    remaining: 7,
                    holders: 3,
                },
            ]),
        ),
        reply(
            "sold_out_reply",
            "reply to=BUY id=42 sold_out message=\"sold out\"",
            Opcode::Buy,
            42,
            Reply::error(Status::SoldOut, "sold out"),
        ),
        reply(
            "unsupported_version_reply",
            "reply to=HELLO id=1 unsupported_version message=\"server speaks version 1\"",
            Opcode::Hello,
            1,
            Reply::error(Status::UnsupportedVersion, "server speaks version 1"),
        ),
        reply(
            "connection_error_reply",
            "reply to=ERROR id=0 bad_request message=\"frame length 70000 is over the limit \
             of 65536\"",
            Opcode::Error,
            0,
            Reply::error(
                Status::BadRequest,
                "frame length 70000 is over the limit of 65536",
            ),
        ),
    ]
}

fn encode(value: &Value) -> Vec<u8> {
    let mut buf = BytesMut::new();
    match value {
        Value::Request { id, request } => request.encode(*id, &mut buf),
        Value::Reply { to, id, reply } => reply.encode(*to as u8, *id, &mut buf),
    }
    buf.to_vec()
}

/// The document's form of a vector: name, description, then the frame's
/// bytes as lowercase hex, 16 to a line.
fn render(v: &Vector) -> String {
    let mut out = format!("```\nvector: {}\n{}\n", v.name, v.description);
    for line in encode(&v.value).chunks(16) {
        let hex: Vec<String> = line.iter().map(|b| format!("{b:02x}")).collect();
        out.push_str(&hex.join(" "));
        out.push('\n');
    }
    out.push_str("```\n");
    out
}

struct DocVector {
    description: String,
    bytes: Vec<u8>,
}

/// Every fenced block of the document whose first line is `vector: NAME`.
fn doc_vectors() -> BTreeMap<String, DocVector> {
    let mut found = BTreeMap::new();
    let mut lines = PROTOCOL.lines();
    while let Some(line) = lines.next() {
        if !line.trim_start().starts_with("```") {
            continue;
        }
        let block: Vec<&str> = lines
            .by_ref()
            .take_while(|l| !l.trim_start().starts_with("```"))
            .collect();
        let Some(name) = block.first().and_then(|l| l.strip_prefix("vector: ")) else {
            continue;
        };
        let description = block
            .get(1)
            .unwrap_or_else(|| panic!("vector {name} has no description line"));
        let bytes = block[2..]
            .iter()
            .flat_map(|l| l.split_whitespace())
            .map(|h| {
                assert_eq!(h.len(), 2, "vector {name}: `{h}` is not one hex byte");
                u8::from_str_radix(h, 16)
                    .unwrap_or_else(|_| panic!("vector {name}: `{h}` is not hex"))
            })
            .collect();
        let previous = found.insert(
            name.trim().to_owned(),
            DocVector {
                description: description.to_string(),
                bytes,
            },
        );
        assert!(previous.is_none(), "vector {name} appears twice");
    }
    found
}

#[test]
fn every_vector_is_in_the_document_and_nothing_else() {
    let doc = doc_vectors();
    let expected: Vec<&str> = vectors().iter().map(|v| v.name).collect();
    let missing: Vec<&&str> = expected.iter().filter(|n| !doc.contains_key(**n)).collect();
    assert!(missing.is_empty(), "missing from PROTOCOL.md: {missing:?}");
    let unchecked: Vec<&String> = doc
        .keys()
        .filter(|n| !expected.contains(&n.as_str()))
        .collect();
    assert!(
        unchecked.is_empty(),
        "not checked by this test: {unchecked:?}"
    );
    assert_eq!(doc.len(), expected.len());
}

#[test]
fn encoding_gives_the_documented_bytes() {
    let doc = doc_vectors();
    for v in vectors() {
        let Some(d) = doc.get(v.name) else {
            panic!("vector {} is missing from PROTOCOL.md", v.name);
        };
        assert_eq!(d.description, v.description, "vector {}", v.name);
        assert_eq!(
            d.bytes,
            encode(&v.value),
            "vector {}: the document's bytes are not what the encoder sends",
            v.name
        );
    }
}

#[test]
fn decoding_the_documented_bytes_gives_the_value() {
    let doc = doc_vectors();
    for v in vectors() {
        let Some(d) = doc.get(v.name) else {
            panic!("vector {} is missing from PROTOCOL.md", v.name);
        };
        match &v.value {
            Value::Request { id, request } => {
                let (frame, used) = Frame::parse(&d.bytes, MAX_REQUEST_FRAME).unwrap();
                assert_eq!(used, d.bytes.len(), "vector {}", v.name);
                assert_eq!(frame.id, *id, "vector {}", v.name);
                assert_eq!(frame.opcode, request.opcode() as u8, "vector {}", v.name);
                assert_eq!(
                    &Request::decode(&frame).unwrap(),
                    request,
                    "vector {}",
                    v.name
                );
            }
            Value::Reply { to, id, reply } => {
                let (frame, used) = Frame::parse(&d.bytes, MAX_REPLY_FRAME).unwrap();
                assert_eq!(used, d.bytes.len(), "vector {}", v.name);
                assert_eq!(frame.id, *id, "vector {}", v.name);
                assert_eq!(frame.opcode, *to as u8 | 0x80, "vector {}", v.name);
                assert_eq!(
                    Reply::decode(&frame).unwrap(),
                    (*to, reply.clone()),
                    "vector {}",
                    v.name
                );
            }
        }
    }
}

/// Prints the blocks in the document's format; see the module comment.
#[test]
#[ignore = "prints the vector blocks for PROTOCOL.md"]
fn print_vectors() {
    for v in vectors() {
        println!("{}", render(&v));
    }
}
