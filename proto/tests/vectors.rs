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
    BodyError, Capabilities, Drift, Frame, FrameError, Goods, GoodsState, NewGoods, Opcode, Order,
    OrderState, Reply, Request, RequestId, SaleAction, SaleRules, ServerInfo, Stat, Status,
    StockParts, ALL_GOODS, DEFAULT_PAY_WINDOW_MS, MAX_REPLY_FRAME, MAX_REQUEST_FRAME, NO_TOKEN,
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
/// The end a SALE_CONTROL window moves the sale to: an hour later.
const LATER_END_MS: u64 = 1_700_007_200_000;
/// When order 1001 was made, and the end of its payment window.
const CREATED_MS: u64 = 1_700_000_000_123;
const PAY_BY_MS: u64 = CREATED_MS + DEFAULT_PAY_WINDOW_MS;
/// A purchase token with every byte different, so a byte-order mistake
/// shows in the vectors.
const TOKEN: u64 = 0x0123_4567_89ab_cdef;
/// A client request id with every byte different, for the same reason.
const REQUEST_ID: Option<RequestId> = RequestId::new(0x0123_4567_89ab_cdef_fedc_ba98_7654_3210);

/// The Phone's rules are the defaults: one order per user, 15 minutes to
/// pay, no token.
const PHONE_RULES: SaleRules = SaleRules {
    per_user_limit: 1,
    pay_window_ms: DEFAULT_PAY_WINDOW_MS,
    token_required: false,
};

/// The Café's rules are none of the defaults, so every rules field is seen
/// with a second value.
const CAFE_RULES: SaleRules = SaleRules {
    per_user_limit: 2,
    pay_window_ms: 60_000,
    token_required: true,
};

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
        rules: PHONE_RULES,
    }
}

/// The ADD_GOODS of the Phone.
fn phone_new() -> NewGoods {
    NewGoods {
        name: "Phone".into(),
        price_cents: 99_900,
        stock: 100,
        start_ms: START_MS,
        end_ms: END_MS,
        rules: PHONE_RULES,
        buckets: 1,
    }
}

/// Order 1001 of user 7 for the Phone.
fn order_1001(state: OrderState) -> Order {
    Order {
        order_no: 1001,
        user_id: 7,
        goods_id: 1,
        state,
        created_ms: CREATED_MS,
        pay_by_ms: PAY_BY_MS,
    }
}

/// Order 1002 of user 7 for the Café, a minute after 1001: its payment
/// window is the Café's minute.
fn order_1002(state: OrderState) -> Order {
    Order {
        order_no: 1002,
        user_id: 7,
        goods_id: 2,
        state,
        created_ms: 1_700_000_060_000,
        pay_by_ms: 1_700_000_060_000 + CAFE_RULES.pay_window_ms,
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
        request(
            "hello_v2_request",
            "request id=1 Hello{version=2, token=\"\"}",
            1,
            Request::Hello {
                version: 2,
                token: String::new(),
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
            "request id=42 Buy{user_id=7, goods_id=1, token=0}",
            42,
            Request::Buy {
                user_id: 7,
                goods_id: 1,
                token: NO_TOKEN,
                request_id: None,
            },
        ),
        request(
            "buy_request_id_request",
            "request id=49 Buy{user_id=7, goods_id=1, token=0, \
             client_request_id=0x0123456789abcdeffedcba9876543210}",
            49,
            Request::Buy {
                user_id: 7,
                goods_id: 1,
                token: NO_TOKEN,
                request_id: REQUEST_ID,
            },
        ),
        request(
            "buy_token_request",
            "request id=48 Buy{user_id=7, goods_id=2, token=81985529216486895 \
             (0x0123456789abcdef)}",
            48,
            Request::Buy {
                user_id: 7,
                goods_id: 2,
                token: TOKEN,
                request_id: None,
            },
        ),
        request(
            "buy_token_request_id_request",
            "request id=50 Buy{user_id=7, goods_id=2, token=81985529216486895 \
             (0x0123456789abcdef), client_request_id=0x0123456789abcdeffedcba9876543210}",
            50,
            Request::Buy {
                user_id: 7,
                goods_id: 2,
                token: TOKEN,
                request_id: REQUEST_ID,
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
            "pay_request",
            "request id=44 Pay{user_id=7, order_no=1001}",
            44,
            Request::Pay {
                user_id: 7,
                order_no: 1001,
            },
        ),
        request(
            "cancel_request",
            "request id=45 Cancel{user_id=7, order_no=1002}",
            45,
            Request::Cancel {
                user_id: 7,
                order_no: 1002,
            },
        ),
        request(
            "list_orders_request",
            "request id=46 ListOrders{user_id=7}",
            46,
            Request::ListOrders { user_id: 7 },
        ),
        request(
            "token_request",
            "request id=47 Token{user_id=7, goods_id=2}",
            47,
            Request::Token {
                user_id: 7,
                goods_id: 2,
            },
        ),
        request(
            "add_goods_request",
            "request id=5 AddGoods{name=\"Phone\", price_cents=99900, stock=100, \
             start_ms=1700000000000, end_ms=1700003600000, rules={per_user_limit=1, \
             pay_window_ms=900000, token_required=0}}",
            5,
            Request::AddGoods {
                goods: phone_new(),
                request_id: None,
            },
        ),
        request(
            "add_goods_request_id_request",
            "request id=5 AddGoods{name=\"Phone\", price_cents=99900, stock=100, \
             start_ms=1700000000000, end_ms=1700003600000, rules={per_user_limit=1, \
             pay_window_ms=900000, token_required=0}, \
             client_request_id=0x0123456789abcdeffedcba9876543210}",
            5,
            Request::AddGoods {
                goods: phone_new(),
                request_id: REQUEST_ID,
            },
        ),
        request(
            "add_goods_buckets_request",
            "request id=5 AddGoods{name=\"Phone\", price_cents=99900, stock=100, \
             start_ms=1700000000000, end_ms=1700003600000, rules={per_user_limit=1, \
             pay_window_ms=900000, token_required=0}, \
             client_request_id=0x0123456789abcdeffedcba9876543210, buckets=4}",
            5,
            Request::AddGoods {
                goods: NewGoods {
                    buckets: 4,
                    ..phone_new()
                },
                request_id: REQUEST_ID,
            },
        ),
        request(
            "stock_request",
            "request id=10 Stock{goods_id=1}",
            10,
            Request::Stock { goods_id: 1 },
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
        request(
            "sale_control_pause_request",
            "request id=9 SaleControl{goods_id=1, action=pause}",
            9,
            Request::SaleControl {
                goods_id: 1,
                action: SaleAction::Pause,
            },
        ),
        request(
            "sale_control_resume_request",
            "request id=10 SaleControl{goods_id=1, action=resume}",
            10,
            Request::SaleControl {
                goods_id: 1,
                action: SaleAction::Resume,
            },
        ),
        request(
            "sale_control_end_request",
            "request id=11 SaleControl{goods_id=1, action=end}",
            11,
            Request::SaleControl {
                goods_id: 1,
                action: SaleAction::End,
            },
        ),
        request(
            "sale_control_window_request",
            "request id=12 SaleControl{goods_id=1, action=window{start_ms=1700000000000, \
             end_ms=1700007200000}}",
            12,
            Request::SaleControl {
                goods_id: 1,
                action: SaleAction::Window {
                    start_ms: START_MS,
                    end_ms: LATER_END_MS,
                },
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
                server: None,
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
                server: None,
            },
        ),
        reply(
            "hello_v2_reply",
            "reply to=HELLO id=1 ok Hello{version=2, admin=0, server={min_version=1, \
             max_version=2, max_request_frame=65536, max_in_flight=256, \
             server_time_ms=1700000000000, capabilities=0x3}}",
            Opcode::Hello,
            1,
            Reply::Hello {
                version: 2,
                admin: false,
                server: Some(ServerInfo {
                    min_version: 1,
                    max_version: 2,
                    max_request_frame: MAX_REQUEST_FRAME,
                    max_in_flight: 256,
                    server_time_ms: START_MS,
                    capabilities: Capabilities::BUY_REQUEST_ID
                        .with(Capabilities::ADD_GOODS_REQUEST_ID),
                }),
            },
        ),
        reply(
            "pending_reply",
            "reply to=BUY id=49 pending message=\"being written\"",
            Opcode::Buy,
            49,
            Reply::error(Status::Pending, "being written"),
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
             state=on_sale, rules={per_user_limit=1, pay_window_ms=900000, token_required=0}}",
            Opcode::GetGoods,
            4,
            Reply::Goods(phone(100, 42, GoodsState::OnSale)),
        ),
        reply(
            "goods_list_reply",
            "reply to=LIST_GOODS id=3 ok GoodsList[Goods{id=1, name=\"Phone\", \
             price_cents=99900, total=100, remaining=42, start_ms=1700000000000, \
             end_ms=1700003600000, state=on_sale, rules={per_user_limit=1, \
             pay_window_ms=900000, token_required=0}}, Goods{id=2, name=\"Café\" (5 bytes), \
             price_cents=450, total=10, remaining=0, start_ms=1700000000000, \
             end_ms=1700003600000, state=sold_out, rules={per_user_limit=2, \
             pay_window_ms=60000, token_required=1}}]",
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
                    rules: CAFE_RULES,
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
             state=created, created_ms=1700000000123, pay_by_ms=1700000900123}",
            Opcode::OrderStatus,
            43,
            Reply::Order(order_1001(OrderState::Created)),
        ),
        reply(
            "paid_reply",
            "reply to=PAY id=44 ok Paid{order_no=1001, user_id=7, goods_id=1, state=paid, \
             created_ms=1700000000123, pay_by_ms=1700000900123}",
            Opcode::Pay,
            44,
            Reply::Paid(order_1001(OrderState::Paid)),
        ),
        reply(
            "cancelled_reply",
            "reply to=CANCEL id=45 ok Cancelled{order_no=1002, user_id=7, goods_id=2, \
             state=cancelled, created_ms=1700000060000, pay_by_ms=1700000120000}",
            Opcode::Cancel,
            45,
            Reply::Cancelled(order_1002(OrderState::Cancelled)),
        ),
        reply(
            "orders_reply",
            "reply to=LIST_ORDERS id=46 ok Orders[Order{order_no=1002, user_id=7, \
             goods_id=2, state=cancelled, created_ms=1700000060000, \
             pay_by_ms=1700000120000}, Order{order_no=1001, user_id=7, goods_id=1, \
             state=paid, created_ms=1700000000123, pay_by_ms=1700000900123}]",
            Opcode::ListOrders,
            46,
            // Newest first.
            Reply::Orders(vec![
                order_1002(OrderState::Cancelled),
                order_1001(OrderState::Paid),
            ]),
        ),
        reply(
            "token_reply",
            "reply to=TOKEN id=47 ok Token{token=81985529216486895 (0x0123456789abcdef), \
             expires_ms=1700000080000}",
            Opcode::Token,
            47,
            Reply::Token {
                token: TOKEN,
                expires_ms: 1_700_000_080_000,
            },
        ),
        reply(
            "goods_added_reply",
            "reply to=ADD_GOODS id=5 ok GoodsAdded{id=1, name=\"Phone\", price_cents=99900, \
             total=100, remaining=100, start_ms=1700000000000, end_ms=1700003600000, \
             state=upcoming, rules={per_user_limit=1, pay_window_ms=900000, \
             token_required=0}}",
            Opcode::AddGoods,
            5,
            Reply::GoodsAdded(phone(100, 100, GoodsState::Upcoming)),
        ),
        reply(
            "restocked_reply",
            "reply to=RESTOCK id=6 ok Restocked{id=1, name=\"Phone\", price_cents=99900, \
             total=150, remaining=92, start_ms=1700000000000, end_ms=1700003600000, \
             state=on_sale, rules={per_user_limit=1, pay_window_ms=900000, \
             token_required=0}}",
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
            "stock_reply",
            "reply to=STOCK id=10 ok Stock{goods_id=1, total=100, pool=40, in_flight=-2, \
             holders=42, buckets=[5, 0, 7, 8]}",
            Opcode::Stock,
            10,
            // Read while two units moved from bucket 1 to bucket 2: counted
            // in both, and -2 in flight (40 + -2 + 20 + 42 = 100).
            Reply::Stock(StockParts {
                goods_id: 1,
                total: 100,
                pool: 40,
                in_flight: -2,
                holders: 42,
                buckets: vec![5, 0, 7, 8],
            }),
        ),
        reply(
            "sale_paused_reply",
            "reply to=SALE_CONTROL id=9 ok SaleChanged{id=1, name=\"Phone\", \
             price_cents=99900, total=100, remaining=42, start_ms=1700000000000, \
             end_ms=1700003600000, state=paused, rules={per_user_limit=1, \
             pay_window_ms=900000, token_required=0}}",
            Opcode::SaleControl,
            9,
            Reply::SaleChanged(phone(100, 42, GoodsState::Paused)),
        ),
        reply(
            "sale_window_reply",
            "reply to=SALE_CONTROL id=12 ok SaleChanged{id=1, name=\"Phone\", \
             price_cents=99900, total=100, remaining=42, start_ms=1700000000000, \
             end_ms=1700007200000, state=on_sale, rules={per_user_limit=1, \
             pay_window_ms=900000, token_required=0}}",
            Opcode::SaleControl,
            12,
            Reply::SaleChanged(Goods {
                end_ms: LATER_END_MS,
                ..phone(100, 42, GoodsState::OnSale)
            }),
        ),
        reply(
            "sold_out_reply",
            "reply to=BUY id=42 sold_out message=\"sold out\"",
            Opcode::Buy,
            42,
            Reply::error(Status::SoldOut, "sold out"),
        ),
        reply(
            "paused_reply",
            "reply to=BUY id=42 paused message=\"sale paused\"",
            Opcode::Buy,
            42,
            Reply::error(Status::Paused, "sale paused"),
        ),
        reply(
            "token_required_reply",
            "reply to=BUY id=42 token_required message=\"purchase token required\"",
            Opcode::Buy,
            42,
            Reply::error(Status::TokenRequired, "purchase token required"),
        ),
        reply(
            "order_cancelled_reply",
            "reply to=PAY id=44 order_cancelled message=\"payment window passed\"",
            Opcode::Pay,
            44,
            Reply::error(Status::OrderCancelled, "payment window passed"),
        ),
        reply(
            "order_paid_reply",
            "reply to=CANCEL id=45 order_paid message=\"order is paid\"",
            Opcode::Cancel,
            45,
            Reply::error(Status::OrderPaid, "order is paid"),
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

/// What a receiver must do with the bytes of a negative vector.
#[derive(Debug, PartialEq)]
enum Refusal {
    /// The frame cannot be delimited: the connection is closed (7.1).
    Frame(FrameError),
    /// The frame is whole but its body is invalid: `bad_request` to that
    /// frame, and the connection goes on (7.2).
    Body(BodyError),
}

/// Who receives a negative vector's bytes.
#[derive(Clone, Copy)]
enum Receiver {
    Server,
    Client,
}

struct Negative {
    name: &'static str,
    /// The document's second line: `server refuses: WHY` or `client
    /// refuses: WHY`, WHY being the refusal's Display text.
    receiver: Receiver,
    bytes: Vec<u8>,
    refusal: Refusal,
}

/// Frame bytes from a request vector's value, changed by `edit`.
fn edited(value: &Value, edit: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
    let mut bytes = encode(value);
    edit(&mut bytes);
    bytes
}

/// Adds `n` to a frame's length prefix (negative to shorten).
fn grow_length(bytes: &mut [u8], n: i64) {
    let len = u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
    let len = u32::try_from(i64::from(len) + n).expect("a valid length");
    bytes[..4].copy_from_slice(&len.to_be_bytes());
}

/// Bytes a receiver MUST refuse, and how (PROTOCOL.md, section 11.1).
fn negatives() -> Vec<Negative> {
    let buy = Value::Request {
        id: 42,
        request: Request::Buy {
            user_id: 7,
            goods_id: 1,
            token: 0,
            request_id: None,
        },
    };
    let hello = Value::Reply {
        to: Opcode::Hello,
        id: 1,
        reply: Reply::Hello {
            version: 1,
            admin: false,
            server: None,
        },
    };
    let ping = Value::Request {
        id: 2,
        request: Request::Ping,
    };
    let add = Value::Request {
        id: 5,
        request: Request::AddGoods {
            goods: phone_new(),
            request_id: None,
        },
    };
    vec![
        Negative {
            name: "frame_too_large",
            receiver: Receiver::Server,
            bytes: vec![0x00, 0x01, 0x00, 0x01, 0x02],
            refusal: Refusal::Frame(FrameError::TooLarge {
                len: 65537,
                max: MAX_REQUEST_FRAME,
            }),
        },
        Negative {
            name: "frame_too_short",
            receiver: Receiver::Server,
            bytes: vec![0x00, 0x00, 0x00, 0x08, 0x02, 0, 0, 0, 0, 0, 0, 0],
            refusal: Refusal::Frame(FrameError::TooShort { len: 8 }),
        },
        Negative {
            name: "unknown_opcode",
            receiver: Receiver::Server,
            bytes: edited(&ping, |b| b[4] = 0x30),
            refusal: Refusal::Body(BodyError::UnknownOpcode(0x30)),
        },
        Negative {
            name: "buy_trailing_byte",
            receiver: Receiver::Server,
            bytes: edited(&buy, |b| {
                b.push(0);
                grow_length(b, 1);
            }),
            refusal: Refusal::Body(BodyError::TrailingBytes(1)),
        },
        Negative {
            name: "buy_truncated",
            receiver: Receiver::Server,
            bytes: edited(&buy, |b| {
                b.truncate(b.len() - 1);
                grow_length(b, -1);
            }),
            refusal: Refusal::Body(BodyError::Truncated("token")),
        },
        Negative {
            name: "buy_zero_request_id",
            receiver: Receiver::Server,
            bytes: edited(&buy, |b| {
                b.extend([0; 16]);
                grow_length(b, 16);
            }),
            refusal: Refusal::Body(BodyError::BadValue {
                field: "client_request_id",
                value: 0,
            }),
        },
        Negative {
            name: "add_goods_zero_request_id",
            receiver: Receiver::Server,
            bytes: edited(&add, |b| {
                b.extend([0; 16]);
                grow_length(b, 16);
            }),
            refusal: Refusal::Body(BodyError::BadValue {
                field: "client_request_id",
                value: 0,
            }),
        },
        Negative {
            name: "hello_token_bad_utf8",
            receiver: Receiver::Server,
            bytes: vec![
                0x00, 0x00, 0x00, 0x0e, 0x01, 0, 0, 0, 0, 0, 0, 0, 1, 0x00, 0x02, 0x00, 0x01, 0xff,
            ],
            refusal: Refusal::Body(BodyError::BadUtf8("token")),
        },
        Negative {
            name: "reply_unknown_status",
            receiver: Receiver::Client,
            bytes: vec![
                0x00, 0x00, 0x00, 0x0c, 0xa0, 0, 0, 0, 0, 0, 0, 0, 42, 0x15, 0x00, 0x00,
            ],
            refusal: Refusal::Body(BodyError::BadValue {
                field: "status",
                value: 0x15,
            }),
        },
        Negative {
            name: "hello_reply_bad_bool",
            receiver: Receiver::Client,
            bytes: edited(&hello, |b| *b.last_mut().expect("a body") = 2),
            refusal: Refusal::Body(BodyError::BadValue {
                field: "admin",
                value: 2,
            }),
        },
        Negative {
            name: "hello_reply_short_server_info",
            receiver: Receiver::Client,
            bytes: edited(&hello, |b| {
                b.extend([0x00, 0x01, 0x00]);
                grow_length(b, 3);
            }),
            refusal: Refusal::Body(BodyError::Truncated("max_version")),
        },
        Negative {
            name: "ok_connection_error",
            receiver: Receiver::Client,
            bytes: vec![0x00, 0x00, 0x00, 0x0a, 0xff, 0, 0, 0, 0, 0, 0, 0, 0, 0x00],
            refusal: Refusal::Body(BodyError::BadValue {
                field: "status",
                value: 0,
            }),
        },
    ]
}

impl Negative {
    fn description(&self) -> String {
        let who = match self.receiver {
            Receiver::Server => "server",
            Receiver::Client => "client",
        };
        let why = match &self.refusal {
            Refusal::Frame(e) => format!("closes the connection: {e}"),
            Refusal::Body(e) => format!("refuses the body: {e}"),
        };
        format!("{who} {why}")
    }

    /// What the receiver makes of the bytes.
    fn receive(&self) -> Refusal {
        let max = match self.receiver {
            Receiver::Server => MAX_REQUEST_FRAME,
            Receiver::Client => MAX_REPLY_FRAME,
        };
        let frame = match Frame::parse(&self.bytes, max) {
            Ok((frame, used)) => {
                assert_eq!(used, self.bytes.len(), "negative {}", self.name);
                frame
            }
            Err(e) => return Refusal::Frame(e),
        };
        let decoded = match self.receiver {
            Receiver::Server => Request::decode(&frame).map(|r| format!("{r:?}")),
            Receiver::Client => Reply::decode(&frame).map(|r| format!("{r:?}")),
        };
        match decoded {
            Ok(value) => panic!("negative {} was accepted as {value}", self.name),
            Err(e) => Refusal::Body(e),
        }
    }
}

/// Every fenced block of the document whose first line is `refused: NAME`.
fn doc_negatives() -> BTreeMap<String, DocVector> {
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
        let Some(name) = block.first().and_then(|l| l.strip_prefix("refused: ")) else {
            continue;
        };
        let description = block
            .get(1)
            .unwrap_or_else(|| panic!("negative {name} has no description line"));
        let bytes = block[2..]
            .iter()
            .flat_map(|l| l.split_whitespace())
            .map(|h| {
                u8::from_str_radix(h, 16)
                    .unwrap_or_else(|_| panic!("negative {name}: `{h}` is not hex"))
            })
            .collect();
        let previous = found.insert(
            name.trim().to_owned(),
            DocVector {
                description: description.to_string(),
                bytes,
            },
        );
        assert!(previous.is_none(), "negative {name} appears twice");
    }
    found
}

#[test]
fn every_negative_vector_is_documented_and_refused_as_it_says() {
    let doc = doc_negatives();
    let negatives = negatives();
    let names: Vec<&str> = negatives.iter().map(|n| n.name).collect();
    let unchecked: Vec<&String> = doc
        .keys()
        .filter(|n| !names.contains(&n.as_str()))
        .collect();
    assert!(
        unchecked.is_empty(),
        "not checked by this test: {unchecked:?}"
    );
    for n in &negatives {
        let Some(d) = doc.get(n.name) else {
            panic!("negative {} is missing from PROTOCOL.md", n.name);
        };
        assert_eq!(d.description, n.description(), "negative {}", n.name);
        assert_eq!(d.bytes, n.bytes, "negative {}: bytes", n.name);
        assert_eq!(n.receive(), n.refusal, "negative {}", n.name);
    }
}

/// Prints the negative blocks in the document's format.
#[test]
#[ignore = "prints the negative vector blocks for PROTOCOL.md"]
fn print_negatives() {
    for n in negatives() {
        println!("```\nrefused: {}\n{}", n.name, n.description());
        for line in n.bytes.chunks(16) {
            let hex: Vec<String> = line.iter().map(|b| format!("{b:02x}")).collect();
            println!("{}", hex.join(" "));
        }
        println!("```\n");
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
