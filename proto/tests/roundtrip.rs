//! Properties of the codec as a whole: every value survives encode → parse →
//! decode, framing does not care how the stream is cut, and no input makes
//! the decoders panic, over-read or allocate from a hostile count.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use bytes::{Buf, BytesMut};
use proptest::collection::vec;
use proptest::prelude::*;
use seckill_proto::{
    BodyError, Capabilities, Drift, Frame, FrameError, Goods, GoodsState, NewGoods, Opcode, Order,
    OrderState, Reply, Request, RequestId, SaleAction, SaleRules, ServerInfo, Stat, Status,
    StockParts, ALL_GOODS, BUY_LEN, BUY_WITH_ID_LEN, HEADER_LEN, LEN_PREFIX, MAX_NAME_LEN,
    MAX_REPLY_FRAME, MAX_REQUEST_FRAME, MAX_TOKEN_LEN, NO_TOKEN,
};

/// Longest stat name the decoder accepts (PROTOCOL.md, section 2); the crate
/// keeps its constant private.
const MAX_STAT_NAME: usize = 64;

// ---------------------------------------------------------------------------
// Allocation accounting, per thread, so that tests running in parallel do not
// see each other's allocations.

struct CountingAlloc;

thread_local! {
    // Const-initialised and without a destructor, so touching it from inside
    // the allocator never allocates.
    static ALLOCATED: Cell<usize> = const { Cell::new(0) };
}

unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // `try_with`: the slot may be gone while the thread is being torn down.
        let _ = ALLOCATED.try_with(|a| a.set(a.get().saturating_add(layout.size())));
        System.alloc(layout)
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout)
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let _ = ALLOCATED.try_with(|a| a.set(a.get().saturating_add(new_size)));
        System.realloc(ptr, layout, new_size)
    }
}

#[global_allocator]
static GLOBAL: CountingAlloc = CountingAlloc;

/// Runs `f` and returns its result with the bytes this thread allocated in it.
fn allocated_by<T>(f: impl FnOnce() -> T) -> (T, usize) {
    let before = ALLOCATED.with(Cell::get);
    let out = f();
    (out, ALLOCATED.with(Cell::get) - before)
}

// ---------------------------------------------------------------------------
// Strategies.

/// A string of at most `max` bytes of UTF-8, reaching the limit often: chars
/// of every width are drawn and the string is cut at the last char boundary
/// within the limit.
fn string_within(max: usize) -> impl Strategy<Value = String> {
    vec(any::<char>(), 0..=max).prop_map(move |chars| {
        let mut s = String::new();
        for c in chars {
            if s.len() + c.len_utf8() > max {
                break;
            }
            s.push(c);
        }
        s
    })
}

fn goods_state() -> impl Strategy<Value = GoodsState> {
    prop_oneof![
        Just(GoodsState::Upcoming),
        Just(GoodsState::OnSale),
        Just(GoodsState::SoldOut),
        Just(GoodsState::Ended),
        Just(GoodsState::Paused),
    ]
}

/// Any rules the codec can carry, not only those a server accepts: a limit
/// or a window of 0 is the server's to refuse, not the decoder's.
fn sale_rules() -> impl Strategy<Value = SaleRules> {
    (any::<u8>(), any::<u64>(), any::<bool>()).prop_map(
        |(per_user_limit, pay_window_ms, token_required)| SaleRules {
            per_user_limit,
            pay_window_ms,
            token_required,
        },
    )
}

fn sale_action() -> impl Strategy<Value = SaleAction> {
    prop_oneof![
        Just(SaleAction::Pause),
        Just(SaleAction::Resume),
        Just(SaleAction::End),
        (any::<u64>(), any::<u64>())
            .prop_map(|(start_ms, end_ms)| SaleAction::Window { start_ms, end_ms }),
    ]
}

/// A purchase token: none half of the time, since 0 has a meaning of its own.
fn purchase_token() -> impl Strategy<Value = u64> {
    prop_oneof![Just(NO_TOKEN), any::<u64>()]
}

/// A BUY's client request id: none a third of the time (the body of BUYs
/// from before ids), the edges 1 and `u128::MAX` often, else any non-zero
/// value.
fn client_request_id() -> impl Strategy<Value = Option<RequestId>> {
    prop_oneof![
        Just(None),
        prop_oneof![Just(1), Just(u128::MAX), 1..=u128::MAX].prop_map(RequestId::new),
    ]
}

fn order_state() -> impl Strategy<Value = OrderState> {
    prop_oneof![
        Just(OrderState::Created),
        Just(OrderState::Paid),
        Just(OrderState::Cancelled),
    ]
}

fn goods() -> impl Strategy<Value = Goods> {
    (
        any::<u64>(),
        string_within(MAX_NAME_LEN),
        any::<u64>(),
        any::<u32>(),
        any::<u32>(),
        any::<u64>(),
        any::<u64>(),
        goods_state(),
        sale_rules(),
    )
        .prop_map(
            |(id, name, price_cents, total, remaining, start_ms, end_ms, state, rules)| Goods {
                id,
                name,
                price_cents,
                total,
                remaining,
                start_ms,
                end_ms,
                state,
                rules,
            },
        )
}

fn new_goods() -> impl Strategy<Value = NewGoods> {
    (
        string_within(MAX_NAME_LEN),
        any::<u64>(),
        any::<u32>(),
        any::<u64>(),
        any::<u64>(),
        sale_rules(),
        // 1 (not sent) or any other: all four ADD_GOODS tails, with and
        // without a request id.
        prop_oneof![Just(1u16), 1u16..],
    )
        .prop_map(
            |(name, price_cents, stock, start_ms, end_ms, rules, buckets)| NewGoods {
                name,
                price_cents,
                stock,
                start_ms,
                end_ms,
                rules,
                buckets,
            },
        )
}

fn order() -> impl Strategy<Value = Order> {
    (
        any::<u64>(),
        any::<u64>(),
        any::<u64>(),
        order_state(),
        any::<u64>(),
        any::<u64>(),
    )
        .prop_map(
            |(order_no, user_id, goods_id, state, created_ms, pay_by_ms)| Order {
                order_no,
                user_id,
                goods_id,
                state,
                created_ms,
                pay_by_ms,
            },
        )
}

fn stat() -> impl Strategy<Value = Stat> {
    (string_within(MAX_STAT_NAME), any::<u64>()).prop_map(|(name, value)| Stat { name, value })
}

fn drift() -> impl Strategy<Value = Drift> {
    (
        any::<u64>(),
        proptest::option::of(any::<u32>()),
        any::<u32>(),
        any::<u32>(),
        any::<u32>(),
    )
        .prop_map(
            |(goods_id, found_remaining, found_holders, remaining, holders)| Drift {
                goods_id,
                found_remaining,
                found_holders,
                remaining,
                holders,
            },
        )
}

fn request() -> impl Strategy<Value = Request> {
    prop_oneof![
        (any::<u16>(), string_within(MAX_TOKEN_LEN))
            .prop_map(|(version, token)| Request::Hello { version, token }),
        Just(Request::Ping),
        Just(Request::ListGoods),
        any::<u64>().prop_map(|goods_id| Request::GetGoods { goods_id }),
        (
            any::<u64>(),
            any::<u64>(),
            purchase_token(),
            client_request_id()
        )
            .prop_map(|(user_id, goods_id, token, request_id)| Request::Buy {
                user_id,
                goods_id,
                token,
                request_id,
            }),
        (any::<u64>(), any::<u64>())
            .prop_map(|(user_id, goods_id)| Request::OrderStatus { user_id, goods_id }),
        (any::<u64>(), any::<u64>())
            .prop_map(|(user_id, order_no)| Request::Pay { user_id, order_no }),
        (any::<u64>(), any::<u64>())
            .prop_map(|(user_id, order_no)| Request::Cancel { user_id, order_no }),
        any::<u64>().prop_map(|user_id| Request::ListOrders { user_id }),
        (any::<u64>(), any::<u64>())
            .prop_map(|(user_id, goods_id)| Request::Token { user_id, goods_id }),
        (new_goods(), client_request_id())
            .prop_map(|(goods, request_id)| Request::AddGoods { goods, request_id }),
        (any::<u64>(), any::<u32>())
            .prop_map(|(goods_id, amount)| Request::Restock { goods_id, amount }),
        Just(Request::Stats),
        prop_oneof![Just(ALL_GOODS), any::<u64>()]
            .prop_map(|goods_id| Request::Reconcile { goods_id }),
        (any::<u64>(), sale_action())
            .prop_map(|(goods_id, action)| Request::SaleControl { goods_id, action }),
        any::<u64>().prop_map(|goods_id| Request::Stock { goods_id }),
    ]
}

const ALL_OPCODES: [Opcode; 16] = [
    Opcode::Hello,
    Opcode::Ping,
    Opcode::ListGoods,
    Opcode::GetGoods,
    Opcode::Buy,
    Opcode::OrderStatus,
    Opcode::Pay,
    Opcode::Cancel,
    Opcode::ListOrders,
    Opcode::Token,
    Opcode::AddGoods,
    Opcode::Restock,
    Opcode::Stats,
    Opcode::Reconcile,
    Opcode::SaleControl,
    Opcode::Error,
];

/// Every status that travels with a message: all but `ok`.
/// `already_bought` is one too, except in a reply to BUY.
const MESSAGE_STATUSES: [Status; 20] = [
    Status::SoldOut,
    Status::AlreadyBought,
    Status::NotStarted,
    Status::Ended,
    Status::UnknownGoods,
    Status::RateLimited,
    Status::Busy,
    Status::Unauthorized,
    Status::BadRequest,
    Status::InternalError,
    Status::UnsupportedVersion,
    Status::NoOrder,
    Status::Paused,
    Status::TokenRequired,
    Status::TokenInvalid,
    Status::TokenExpired,
    Status::TokenUsed,
    Status::OrderCancelled,
    Status::OrderPaid,
    Status::Pending,
];

fn server_info() -> impl Strategy<Value = ServerInfo> {
    (any::<(u16, u16, u32, u32)>(), any::<u64>(), any::<u64>()).prop_map(
        |((min_version, max_version, max_request_frame, max_in_flight), time, bits)| ServerInfo {
            min_version,
            max_version,
            max_request_frame,
            max_in_flight,
            server_time_ms: time,
            capabilities: Capabilities::from_bits(bits),
        },
    )
}

/// A reply with the request opcode it answers.
fn reply() -> impl Strategy<Value = (Opcode, Reply)> {
    let error = (
        proptest::sample::select(&ALL_OPCODES[..]),
        proptest::sample::select(&MESSAGE_STATUSES[..]),
        string_within(300),
    )
        // To BUY, `already_bought` carries an order number, not a message:
        // that is `Reply::AlreadyBought`.
        .prop_filter(
            "already_bought to BUY is not an error",
            |(op, status, _)| !(*op == Opcode::Buy && *status == Status::AlreadyBought),
        )
        .prop_map(|(op, status, message)| (op, Reply::error(status, message)));
    prop_oneof![
        (
            any::<u16>(),
            any::<bool>(),
            proptest::option::of(server_info())
        )
            .prop_map(|(version, admin, server)| (
                Opcode::Hello,
                Reply::Hello {
                    version,
                    admin,
                    server
                }
            )),
        Just((Opcode::Ping, Reply::Pong)),
        vec(goods(), 0..6).prop_map(|list| (Opcode::ListGoods, Reply::GoodsList(list))),
        goods().prop_map(|g| (Opcode::GetGoods, Reply::Goods(g))),
        any::<u64>().prop_map(|order_no| (Opcode::Buy, Reply::Bought { order_no })),
        any::<u64>().prop_map(|order_no| (Opcode::Buy, Reply::AlreadyBought { order_no })),
        order().prop_map(|o| (Opcode::OrderStatus, Reply::Order(o))),
        order().prop_map(|o| (Opcode::Pay, Reply::Paid(o))),
        order().prop_map(|o| (Opcode::Cancel, Reply::Cancelled(o))),
        vec(order(), 0..8).prop_map(|orders| (Opcode::ListOrders, Reply::Orders(orders))),
        (any::<u64>(), any::<u64>())
            .prop_map(|(token, expires_ms)| (Opcode::Token, Reply::Token { token, expires_ms })),
        goods().prop_map(|g| (Opcode::AddGoods, Reply::GoodsAdded(g))),
        goods().prop_map(|g| (Opcode::Restock, Reply::Restocked(g))),
        vec(stat(), 0..8).prop_map(|stats| (Opcode::Stats, Reply::Stats(stats))),
        vec(drift(), 0..8).prop_map(|drifts| (Opcode::Reconcile, Reply::Reconciled(drifts))),
        (
            any::<u64>(),
            any::<u32>(),
            any::<u32>(),
            any::<i64>(),
            any::<u64>(),
            vec(any::<u32>(), 0..65),
        )
            .prop_map(|(goods_id, total, pool, in_flight, holders, buckets)| {
                (
                    Opcode::Stock,
                    Reply::Stock(StockParts {
                        goods_id,
                        total,
                        pool,
                        in_flight,
                        holders,
                        buckets,
                    }),
                )
            }),
        goods().prop_map(|g| (Opcode::SaleControl, Reply::SaleChanged(g))),
        error,
    ]
}

/// Bytes that are likely to get past the framing and into the decoders: a
/// correct length prefix around an interesting opcode and an arbitrary body.
fn framed_garbage() -> impl Strategy<Value = Vec<u8>> {
    let opcode = prop_oneof![
        proptest::sample::select(&ALL_OPCODES[..]).prop_map(|op| op as u8),
        proptest::sample::select(&ALL_OPCODES[..]).prop_map(|op| op as u8 | 0x80),
        any::<u8>(),
    ];
    (opcode, any::<u64>(), vec(any::<u8>(), 0..128)).prop_map(|(opcode, id, body)| {
        let len = (HEADER_LEN + body.len()) as u32;
        let mut out = len.to_be_bytes().to_vec();
        out.push(opcode);
        out.extend_from_slice(&id.to_be_bytes());
        out.extend_from_slice(&body);
        out
    })
}

/// A valid frame, then damaged: bytes overwritten, and maybe cut or extended.
fn mutated_frame() -> impl Strategy<Value = Vec<u8>> {
    let valid = prop_oneof![
        (request(), any::<u64>()).prop_map(|(r, id)| {
            let mut b = BytesMut::new();
            r.encode(id, &mut b);
            b.to_vec()
        }),
        (reply(), any::<u64>()).prop_map(|((to, r), id)| {
            let mut b = BytesMut::new();
            r.encode(to as u8, id, &mut b);
            b.to_vec()
        }),
    ];
    (
        valid,
        vec((any::<prop::sample::Index>(), any::<u8>()), 0..4),
        any::<prop::sample::Index>(),
        vec(any::<u8>(), 0..8),
    )
        .prop_map(|(mut bytes, flips, cut, tail)| {
            for (at, byte) in flips {
                let i = at.index(bytes.len());
                bytes[i] = byte;
            }
            bytes.truncate(cut.index(bytes.len() + 1));
            bytes.extend_from_slice(&tail);
            bytes
        })
}

// ---------------------------------------------------------------------------
// Helpers.

fn encode_request(request: &Request, id: u64) -> Vec<u8> {
    let mut buf = BytesMut::new();
    request.encode(id, &mut buf);
    buf.to_vec()
}

fn encode_reply(to: Opcode, reply: &Reply, id: u64) -> Vec<u8> {
    let mut buf = BytesMut::new();
    reply.encode(to as u8, id, &mut buf);
    buf.to_vec()
}

/// Takes every frame out of `data`, as a receiver does, until one cannot be
/// taken, checking on each what a caller relies on: the frame lies within
/// the buffer, and any body that decodes re-encodes to the very same bytes
/// (the encoding is canonical, so two implementations cannot disagree).
fn parse_all(data: &[u8], max_len: u32) -> Result<(), TestCaseError> {
    let mut rest = data;
    loop {
        let (frame, used) = match Frame::parse(rest, max_len) {
            Ok(found) => found,
            Err(FrameError::Incomplete) => {
                // Incomplete is only said of a buffer that cannot hold the
                // frame its prefix announces.
                if let Some(prefix) = rest.get(..LEN_PREFIX) {
                    let len = u32::from_be_bytes([prefix[0], prefix[1], prefix[2], prefix[3]]);
                    prop_assert!(LEN_PREFIX as u64 + u64::from(len) > rest.len() as u64);
                }
                return Ok(());
            }
            Err(FrameError::TooLarge { len, max }) => {
                prop_assert!(len > max);
                return Ok(());
            }
            Err(FrameError::TooShort { len }) => {
                prop_assert!((len as usize) < HEADER_LEN);
                return Ok(());
            }
        };
        prop_assert!(used <= rest.len());
        prop_assert_eq!(used, LEN_PREFIX + HEADER_LEN + frame.body.len());
        prop_assert!(used as u64 <= LEN_PREFIX as u64 + u64::from(max_len));
        let original = &rest[..used];
        if let Ok(request) = Request::decode(&frame) {
            prop_assert_eq!(encode_request(&request, frame.id), original);
        }
        if let Ok((to, reply)) = Reply::decode(&frame) {
            prop_assert_eq!(to as u8 | 0x80, frame.opcode);
            prop_assert_eq!(encode_reply(to, &reply, frame.id), original);
        }
        rest = &rest[used..];
    }
}

/// Feeds `stream` to a receiver in pieces ending at each of `cuts` (then the
/// rest), parsing whenever possible, and returns the frames as decoded by
/// `decode`. `ends` are the offsets where the frames of the stream end: a
/// frame must come out exactly when its last byte has arrived, and the
/// parser must say `Incomplete` until then.
fn feed<T>(
    stream: &[u8],
    ends: &[usize],
    cuts: impl IntoIterator<Item = usize>,
    max_len: u32,
    decode: impl Fn(&Frame<'_>) -> T,
) -> Vec<(u64, T)> {
    let mut buf = BytesMut::new();
    let mut fed = 0;
    let mut out = Vec::new();
    for cut in cuts.into_iter().chain([stream.len()]) {
        buf.extend_from_slice(&stream[fed..cut]);
        fed = cut;
        loop {
            match Frame::parse(&buf, max_len) {
                Ok((frame, used)) => {
                    out.push((frame.id, decode(&frame)));
                    buf.advance(used);
                }
                Err(FrameError::Incomplete) => break,
                Err(e) => panic!("a valid stream gave {e}"),
            }
        }
        let whole = ends.iter().filter(|&&end| end <= fed).count();
        assert_eq!(out.len(), whole, "after {fed} bytes");
    }
    assert!(buf.is_empty(), "{} bytes left over", buf.len());
    out
}

/// A stream holding every kind of request, several times, with their ids,
/// and the offsets where its frames end.
fn request_stream() -> (Vec<u8>, Vec<usize>, Vec<(u64, Request)>) {
    let samples = [
        Request::Hello {
            version: 1,
            token: "secret".into(),
        },
        Request::Ping,
        Request::ListGoods,
        Request::GetGoods { goods_id: 1 },
        Request::Buy {
            user_id: 7,
            goods_id: 1,
            token: NO_TOKEN,
            request_id: None,
        },
        Request::Buy {
            user_id: 7,
            goods_id: 2,
            token: u64::MAX,
            request_id: None,
        },
        Request::Buy {
            user_id: 7,
            goods_id: 1,
            token: NO_TOKEN,
            request_id: RequestId::new(u128::MAX),
        },
        Request::OrderStatus {
            user_id: u64::MAX,
            goods_id: 0,
        },
        Request::Pay {
            user_id: 7,
            order_no: 1001,
        },
        Request::Cancel {
            user_id: 7,
            order_no: 1002,
        },
        Request::ListOrders { user_id: 7 },
        Request::Token {
            user_id: 7,
            goods_id: 2,
        },
        Request::AddGoods {
            goods: NewGoods {
                name: "Café crème ☕".into(),
                price_cents: 450,
                stock: 10,
                start_ms: 1_700_000_000_000,
                end_ms: 1_700_003_600_000,
                rules: SaleRules {
                    per_user_limit: 2,
                    pay_window_ms: 60_000,
                    token_required: true,
                },
                buckets: 1,
            },
            request_id: None,
        },
        Request::Restock {
            goods_id: 3,
            amount: 50,
        },
        Request::Stats,
        Request::Reconcile {
            goods_id: ALL_GOODS,
        },
        Request::Reconcile { goods_id: 3 },
        Request::SaleControl {
            goods_id: 3,
            action: SaleAction::Pause,
        },
        Request::SaleControl {
            goods_id: 3,
            action: SaleAction::Resume,
        },
        Request::SaleControl {
            goods_id: 3,
            action: SaleAction::End,
        },
        Request::SaleControl {
            goods_id: 3,
            action: SaleAction::Window {
                start_ms: 1_700_000_000_000,
                end_ms: 1_700_007_200_000,
            },
        },
    ];
    let mut stream = BytesMut::new();
    let mut ends = Vec::new();
    let mut expected = Vec::new();
    for round in 0..4u64 {
        for (i, r) in samples.iter().enumerate() {
            let id = round * 1000 + i as u64;
            r.encode(id, &mut stream);
            ends.push(stream.len());
            expected.push((id, r.clone()));
        }
    }
    (stream.to_vec(), ends, expected)
}

// ---------------------------------------------------------------------------
// Round trips.

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn every_request_round_trips(request in request(), id in any::<u64>()) {
        let bytes = encode_request(&request, id);
        let (frame, used) = Frame::parse(&bytes, MAX_REQUEST_FRAME)
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(used, bytes.len());
        prop_assert_eq!(frame.id, id);
        prop_assert_eq!(frame.opcode, request.opcode() as u8);
        prop_assert_eq!(Request::decode(&frame), Ok(request));
    }

    #[test]
    fn every_reply_round_trips((to, reply) in reply(), id in any::<u64>()) {
        let bytes = encode_reply(to, &reply, id);
        let (frame, used) = Frame::parse(&bytes, MAX_REPLY_FRAME)
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(used, bytes.len());
        prop_assert_eq!(frame.id, id);
        prop_assert_eq!(frame.opcode, to as u8 | 0x80);
        prop_assert_eq!(Reply::decode(&frame), Ok((to, reply)));
    }

    /// Many frames back to back, delivered in random pieces.
    #[test]
    fn a_stream_decodes_the_same_in_any_pieces(
        requests in vec((request(), any::<u64>()), 1..20),
        cuts in vec(any::<prop::sample::Index>(), 0..20),
    ) {
        let mut stream = BytesMut::new();
        let mut ends = Vec::new();
        for (r, id) in &requests {
            r.encode(*id, &mut stream);
            ends.push(stream.len());
        }
        let mut cuts: Vec<usize> = cuts.iter().map(|c| c.index(stream.len() + 1)).collect();
        cuts.sort_unstable();
        let got = feed(&stream, &ends, cuts, MAX_REQUEST_FRAME, Request::decode);
        let want: Vec<_> = requests.into_iter().map(|(r, id)| (id, Ok(r))).collect();
        prop_assert_eq!(got, want);
    }
}

#[test]
fn a_request_stream_decodes_the_same_byte_by_byte() {
    let (stream, ends, expected) = request_stream();
    let got = feed(&stream, &ends, 1..stream.len(), MAX_REQUEST_FRAME, |f| {
        Request::decode(f).unwrap()
    });
    assert_eq!(got, expected);
}

#[test]
fn a_request_stream_decodes_the_same_split_at_every_byte() {
    let (stream, ends, expected) = request_stream();
    for cut in 0..=stream.len() {
        let got = feed(&stream, &ends, [cut], MAX_REQUEST_FRAME, |f| {
            Request::decode(f).unwrap()
        });
        assert_eq!(got, expected, "split at {cut}");
    }
}

#[test]
fn a_reply_stream_decodes_the_same_byte_by_byte() {
    let goods = Goods {
        id: 1,
        name: "Phone".into(),
        price_cents: 99_900,
        total: 100,
        remaining: 42,
        start_ms: 1,
        end_ms: 2,
        state: GoodsState::OnSale,
        rules: SaleRules::default(),
    };
    let order = |order_no, state| Order {
        order_no,
        user_id: 7,
        goods_id: 1,
        state,
        created_ms: 3,
        pay_by_ms: 4,
    };
    let replies = [
        (
            Opcode::Hello,
            Reply::Hello {
                version: 1,
                admin: true,
                server: None,
            },
        ),
        (Opcode::Ping, Reply::Pong),
        (
            Opcode::ListGoods,
            Reply::GoodsList(vec![goods.clone(), goods.clone()]),
        ),
        (Opcode::ListGoods, Reply::GoodsList(vec![])),
        (Opcode::GetGoods, Reply::Goods(goods.clone())),
        (Opcode::Buy, Reply::Bought { order_no: 9 }),
        (Opcode::Buy, Reply::AlreadyBought { order_no: 9 }),
        (
            Opcode::OrderStatus,
            Reply::Order(order(9, OrderState::Created)),
        ),
        (Opcode::Pay, Reply::Paid(order(9, OrderState::Paid))),
        (
            Opcode::Cancel,
            Reply::Cancelled(order(8, OrderState::Cancelled)),
        ),
        (
            Opcode::ListOrders,
            Reply::Orders(vec![
                order(9, OrderState::Paid),
                order(8, OrderState::Cancelled),
            ]),
        ),
        (Opcode::ListOrders, Reply::Orders(vec![])),
        (
            Opcode::Token,
            Reply::Token {
                token: 0x0123_4567_89ab_cdef,
                expires_ms: 5,
            },
        ),
        (Opcode::AddGoods, Reply::GoodsAdded(goods.clone())),
        (Opcode::Restock, Reply::Restocked(goods.clone())),
        (
            Opcode::SaleControl,
            Reply::SaleChanged(Goods {
                state: GoodsState::Paused,
                ..goods
            }),
        ),
        (
            Opcode::Stats,
            Reply::Stats(vec![Stat {
                name: "buy_ok".into(),
                value: 1,
            }]),
        ),
        (
            Opcode::Reconcile,
            Reply::Reconciled(vec![
                Drift {
                    goods_id: 1,
                    found_remaining: Some(41),
                    found_holders: 59,
                    remaining: 42,
                    holders: 58,
                },
                Drift {
                    goods_id: 2,
                    found_remaining: None,
                    found_holders: 0,
                    remaining: 7,
                    holders: 3,
                },
            ]),
        ),
        (Opcode::Reconcile, Reply::Reconciled(vec![])),
        (Opcode::Buy, Reply::error(Status::SoldOut, "sold out")),
        (Opcode::Buy, Reply::error(Status::TokenExpired, "expired")),
        (
            Opcode::Pay,
            Reply::error(Status::OrderCancelled, "too late"),
        ),
        (Opcode::Cancel, Reply::error(Status::OrderPaid, "paid")),
        (Opcode::Error, Reply::error(Status::BadRequest, "too large")),
    ];
    let mut stream = BytesMut::new();
    let mut ends = Vec::new();
    let mut expected = Vec::new();
    for (i, (to, r)) in replies.iter().enumerate() {
        r.encode(*to as u8, i as u64, &mut stream);
        ends.push(stream.len());
        expected.push((i as u64, (*to, r.clone())));
    }
    let got = feed(&stream, &ends, 1..stream.len(), MAX_REPLY_FRAME, |f| {
        Reply::decode(f).unwrap()
    });
    assert_eq!(got, expected);
}

// ---------------------------------------------------------------------------
// Hostile input.

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2048))]

    #[test]
    fn arbitrary_bytes_never_panic(
        data in vec(any::<u8>(), 0..256),
        max_len in prop_oneof![
            Just(MAX_REQUEST_FRAME),
            Just(MAX_REPLY_FRAME),
            Just(u32::MAX),
            any::<u32>(),
        ],
    ) {
        parse_all(&data, max_len)?;
    }

    #[test]
    fn framed_garbage_never_panics(frames in vec(framed_garbage(), 1..4)) {
        parse_all(&frames.concat(), MAX_REPLY_FRAME)?;
    }

    #[test]
    fn damaged_frames_never_panic(data in mutated_frame()) {
        parse_all(&data, MAX_REQUEST_FRAME)?;
        parse_all(&data, MAX_REPLY_FRAME)?;
    }
}

#[test]
fn a_huge_length_is_refused_from_the_prefix_alone() {
    let prefix = [0xff; 4];
    for max in [MAX_REQUEST_FRAME, MAX_REPLY_FRAME] {
        assert_eq!(
            Frame::parse(&prefix, max),
            Err(FrameError::TooLarge { len: u32::MAX, max })
        );
    }
    // One past the limit is refused too; the limit itself is allowed (and so
    // merely incomplete here).
    let over = (MAX_REQUEST_FRAME + 1).to_be_bytes();
    assert!(matches!(
        Frame::parse(&over, MAX_REQUEST_FRAME),
        Err(FrameError::TooLarge { .. })
    ));
    let at = MAX_REQUEST_FRAME.to_be_bytes();
    assert_eq!(
        Frame::parse(&at, MAX_REQUEST_FRAME),
        Err(FrameError::Incomplete)
    );
}

#[test]
fn a_length_under_the_header_is_refused() {
    for len in 0..HEADER_LEN as u32 {
        assert_eq!(
            Frame::parse(&len.to_be_bytes(), MAX_REQUEST_FRAME),
            Err(FrameError::TooShort { len })
        );
    }
}

/// A reply body of `status ok`, then `count`, then `records`.
fn counted_reply(opcode: Opcode, count: u32, records: &[u8]) -> Vec<u8> {
    let mut body = vec![Status::Ok as u8];
    body.extend_from_slice(&count.to_be_bytes());
    body.extend_from_slice(records);
    let mut out = ((HEADER_LEN + body.len()) as u32).to_be_bytes().to_vec();
    out.push(opcode as u8 | 0x80);
    out.extend_from_slice(&1u64.to_be_bytes());
    out.extend_from_slice(&body);
    out
}

#[test]
fn a_count_of_billions_is_refused_without_allocating() {
    // One real record behind the count, so the body is not simply empty.
    let one_goods = {
        let bytes = encode_reply(
            Opcode::GetGoods,
            &Reply::Goods(Goods {
                id: 1,
                name: String::new(),
                price_cents: 0,
                total: 0,
                remaining: 0,
                start_ms: 0,
                end_ms: 0,
                state: GoodsState::Upcoming,
                rules: SaleRules::default(),
            }),
            1,
        );
        bytes[LEN_PREFIX + HEADER_LEN + 1..].to_vec()
    };
    let one_stat = [0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
    let one_drift = drift_record(1, 5);
    let one_order = order_record(OrderState::Created as u8);
    for count in [4_000_000_000, u32::MAX, 2] {
        for (opcode, records, field) in [
            (Opcode::ListGoods, &one_goods[..], "goods_count"),
            (Opcode::Stats, &one_stat[..], "stat_count"),
            (Opcode::Reconcile, &one_drift[..], "drift_count"),
            (Opcode::ListOrders, &one_order[..], "order_count"),
        ] {
            let bytes = counted_reply(opcode, count, records);
            let (frame, _) = Frame::parse(&bytes, MAX_REPLY_FRAME).unwrap();
            let (result, allocated) = allocated_by(|| Reply::decode(&frame));
            assert_eq!(result, Err(BodyError::Truncated(field)), "count {count}");
            // Sizing a vector from the count would ask for hundreds of
            // gigabytes; the check must come before any of it.
            assert!(
                allocated < 1024,
                "count {count}: decoding allocated {allocated} bytes"
            );
        }
    }
    // The accounting does see the decoder's allocations: an honest count of
    // one allocates its vector.
    let bytes = counted_reply(Opcode::ListGoods, 1, &one_goods);
    let (frame, _) = Frame::parse(&bytes, MAX_REPLY_FRAME).unwrap();
    let (result, allocated) = allocated_by(|| Reply::decode(&frame));
    assert!(matches!(result, Ok((_, Reply::GoodsList(list))) if list.len() == 1));
    assert!(allocated > 0);
}

/// The 41 bytes of an Order record: order 9 of user 7 for goods 1, in state
/// `state`, made at 3 and to be paid by 4.
fn order_record(state: u8) -> Vec<u8> {
    let mut out = Vec::new();
    for field in [9u64, 7, 1] {
        out.extend_from_slice(&field.to_be_bytes());
    }
    out.push(state);
    out.extend_from_slice(&3u64.to_be_bytes());
    out.extend_from_slice(&4u64.to_be_bytes());
    out
}

/// The 25 bytes of a Drift record of goods 1: `found_loaded`, then
/// `found_remaining`, then zeros.
fn drift_record(found_loaded: u8, found_remaining: u32) -> Vec<u8> {
    let mut out = 1u64.to_be_bytes().to_vec();
    out.push(found_loaded);
    out.extend_from_slice(&found_remaining.to_be_bytes());
    out.extend_from_slice(&[0; 12]);
    out
}

fn decode_reply(bytes: &[u8]) -> Result<(Opcode, Reply), BodyError> {
    let (frame, _) = Frame::parse(bytes, MAX_REPLY_FRAME).unwrap();
    Reply::decode(&frame)
}

#[test]
fn a_drift_has_one_encoding_of_not_loaded() {
    let reconciled = |record: Vec<u8>| decode_reply(&counted_reply(Opcode::Reconcile, 1, &record));
    let found = |reply: Result<(Opcode, Reply), BodyError>| match reply {
        Ok((Opcode::Reconcile, Reply::Reconciled(drifts))) => drifts[0].found_remaining,
        other => panic!("{other:?}"),
    };
    assert_eq!(found(reconciled(drift_record(1, 5))), Some(5));
    assert_eq!(found(reconciled(drift_record(1, 0))), Some(0));
    assert_eq!(found(reconciled(drift_record(0, 0))), None);
    // Not loaded, yet a count: refused, or it would re-encode differently.
    assert_eq!(
        reconciled(drift_record(0, 5)),
        Err(BodyError::BadValue {
            field: "found_remaining",
            value: 5
        })
    );
    assert_eq!(
        reconciled(drift_record(2, 0)),
        Err(BodyError::BadValue {
            field: "found_loaded",
            value: 2
        })
    );
    // Records are fixed-size: one byte short or over is refused.
    let mut short = drift_record(1, 5);
    short.pop();
    assert_eq!(reconciled(short), Err(BodyError::Truncated("drift_count")));
    let mut long = drift_record(1, 5);
    long.push(0);
    assert_eq!(reconciled(long), Err(BodyError::TrailingBytes(1)));
}

#[test]
fn every_opcode_and_status_has_one_number_and_the_admin_set_is_the_documented_one() {
    for op in ALL_OPCODES {
        assert_eq!(Opcode::from_u8(op as u8), Some(op));
    }
    let admin: Vec<Opcode> = ALL_OPCODES.into_iter().filter(|op| op.is_admin()).collect();
    assert_eq!(
        admin,
        [
            Opcode::AddGoods,
            Opcode::Restock,
            Opcode::Stats,
            Opcode::Reconcile,
            Opcode::SaleControl,
        ]
    );
    // The numbers of PROTOCOL.md, section 4: a renumbering would pass every
    // round trip, so it is pinned here.
    let numbers: Vec<u8> = ALL_OPCODES.iter().map(|&op| op as u8).collect();
    assert_eq!(
        numbers,
        [
            0x01, 0x02, 0x10, 0x11, 0x20, 0x21, 0x22, 0x23, 0x24, 0x25, 0x40, 0x41, 0x42, 0x43,
            0x44, 0x7f
        ]
    );
    // Statuses are numbered without gaps, ok first, and nothing after.
    for (i, status) in MESSAGE_STATUSES.iter().enumerate() {
        assert_eq!(*status as usize, i + 1);
        assert_eq!(Status::from_u8(*status as u8), Some(*status));
    }
    assert_eq!(Status::from_u8(0), Some(Status::Ok));
    assert_eq!(Status::from_u8(MESSAGE_STATUSES.len() as u8 + 1), None);
}

/// A request frame of `opcode` and id 1 around `body`, as a peer could send
/// it whatever the codec thinks of it.
fn raw_request(opcode: Opcode, body: &[u8]) -> Vec<u8> {
    let mut out = ((HEADER_LEN + body.len()) as u32).to_be_bytes().to_vec();
    out.push(opcode as u8);
    out.extend_from_slice(&1u64.to_be_bytes());
    out.extend_from_slice(body);
    out
}

#[test]
fn a_sale_action_has_fields_only_for_a_window() {
    let sale_control = |action: &[u8]| {
        let mut body = 3u64.to_be_bytes().to_vec();
        body.extend_from_slice(action);
        decode_request(&raw_request(Opcode::SaleControl, &body))
    };
    let window = |start_ms: u64, end_ms: u64| {
        let mut action = vec![4];
        action.extend_from_slice(&start_ms.to_be_bytes());
        action.extend_from_slice(&end_ms.to_be_bytes());
        action
    };
    let control = |action| {
        Ok(Request::SaleControl {
            goods_id: 3,
            action,
        })
    };
    assert_eq!(sale_control(&[1]), control(SaleAction::Pause));
    assert_eq!(sale_control(&[2]), control(SaleAction::Resume));
    assert_eq!(sale_control(&[3]), control(SaleAction::End));
    assert_eq!(
        sale_control(&window(10, 20)),
        control(SaleAction::Window {
            start_ms: 10,
            end_ms: 20
        })
    );
    // The codec carries any window; an empty or backwards one is the
    // server's to refuse.
    assert_eq!(
        sale_control(&window(20, 10)),
        control(SaleAction::Window {
            start_ms: 20,
            end_ms: 10
        })
    );
    for bad in [0, 5, 0xff] {
        assert_eq!(
            sale_control(&[bad]),
            Err(BodyError::BadValue {
                field: "action",
                value: bad.into()
            })
        );
    }
    // Times after an action that has none are trailing bytes, not ignored.
    let mut pause_with_times = window(10, 20);
    pause_with_times[0] = 1;
    assert_eq!(
        sale_control(&pause_with_times),
        Err(BodyError::TrailingBytes(16))
    );
    assert_eq!(sale_control(&[]), Err(BodyError::Truncated("action")));
    assert_eq!(sale_control(&[4]), Err(BodyError::Truncated("start_ms")));
    assert_eq!(
        sale_control(&window(10, 20)[..9]),
        Err(BodyError::Truncated("end_ms"))
    );
}

/// A GET_GOODS ok reply carrying goods 1 with an empty name, the default
/// rules and the state `on_sale`, and the offset of its record in the frame.
fn goods_reply_bytes() -> (Vec<u8>, usize) {
    let bytes = encode_reply(
        Opcode::GetGoods,
        &Reply::Goods(Goods {
            id: 1,
            name: String::new(),
            price_cents: 0,
            total: 1,
            remaining: 1,
            start_ms: 0,
            end_ms: 1,
            state: GoodsState::OnSale,
            rules: SaleRules::default(),
        }),
        1,
    );
    (bytes, LEN_PREFIX + HEADER_LEN + 1)
}

#[test]
fn goods_and_order_enums_refuse_values_not_listed() {
    // Offsets in a Goods record with an empty name (PROTOCOL.md, 5.3).
    const STATE: usize = 42;
    const PER_USER_LIMIT: usize = 43;
    const TOKEN_REQUIRED: usize = 52;
    let goods_with = |at: usize, value: u8| {
        let (mut bytes, record) = goods_reply_bytes();
        assert_eq!(bytes.len(), record + 53, "a Goods record is 53 + n bytes");
        bytes[record + at] = value;
        decode_reply(&bytes)
    };
    let decoded = |reply: Result<(Opcode, Reply), BodyError>| match reply {
        Ok((Opcode::GetGoods, Reply::Goods(g))) => g,
        other => panic!("{other:?}"),
    };
    assert_eq!(decoded(goods_with(STATE, 4)).state, GoodsState::Paused);
    assert_eq!(
        goods_with(STATE, 5),
        Err(BodyError::BadValue {
            field: "state",
            value: 5
        })
    );
    // Any limit travels, 0 included: refusing it is the server's business.
    assert_eq!(
        decoded(goods_with(PER_USER_LIMIT, 0)).rules.per_user_limit,
        0
    );
    assert_eq!(
        decoded(goods_with(PER_USER_LIMIT, 255))
            .rules
            .per_user_limit,
        255
    );
    assert!(decoded(goods_with(TOKEN_REQUIRED, 1)).rules.token_required);
    assert_eq!(
        goods_with(TOKEN_REQUIRED, 2),
        Err(BodyError::BadValue {
            field: "token_required",
            value: 2
        })
    );

    let order_state =
        |state: u8| decode_reply(&counted_reply(Opcode::ListOrders, 1, &order_record(state)));
    assert!(matches!(
        order_state(OrderState::Cancelled as u8),
        Ok((Opcode::ListOrders, Reply::Orders(orders))) if orders[0].state == OrderState::Cancelled
    ));
    assert_eq!(
        order_state(3),
        Err(BodyError::BadValue {
            field: "order_state",
            value: 3
        })
    );
    // Order records are fixed-size: one byte short or over is refused.
    let mut short = order_record(0);
    short.pop();
    assert_eq!(
        decode_reply(&counted_reply(Opcode::ListOrders, 1, &short)),
        Err(BodyError::Truncated("order_count"))
    );
    let mut long = order_record(0);
    long.push(0);
    assert_eq!(
        decode_reply(&counted_reply(Opcode::ListOrders, 1, &long)),
        Err(BodyError::TrailingBytes(1))
    );
}

// ---------------------------------------------------------------------------
// String limits, at and just over each.

fn hello(token: String) -> Vec<u8> {
    encode_request(&Request::Hello { version: 1, token }, 1)
}

fn add_goods(name: String) -> Vec<u8> {
    encode_request(
        &Request::AddGoods {
            goods: NewGoods {
                name,
                price_cents: 1,
                stock: 1,
                start_ms: 0,
                end_ms: 1,
                rules: SaleRules::default(),
                buckets: 1,
            },
            request_id: None,
        },
        1,
    )
}

/// The ADD_GOODS tails: buckets alone, the request id alone, both; a
/// `buckets` of 0 or a tail of another length is refused.
#[test]
fn add_goods_tails_are_told_apart_by_length() {
    let base = add_goods("g".into());
    let with = |tail: &[u8]| {
        let mut bytes = base.clone();
        bytes.extend_from_slice(tail);
        let len = u32::try_from(bytes.len() - 4).unwrap();
        bytes[..4].copy_from_slice(&len.to_be_bytes());
        decode_request(&bytes)
    };
    let id = 0x0123_4567_89ab_cdef_0123_4567_89ab_cdefu128.to_be_bytes();
    let goods_of = |r: Result<Request, BodyError>| match r {
        Ok(Request::AddGoods { goods, request_id }) => (goods.buckets, request_id.map(|i| i.get())),
        other => panic!("{other:?}"),
    };
    assert_eq!(goods_of(with(&[])), (1, None));
    assert_eq!(goods_of(with(&[0, 4])), (4, None));
    assert_eq!(goods_of(with(&id)), (1, Some(u128::from_be_bytes(id))));
    let both = [&id[..], &[0, 9]].concat();
    assert_eq!(goods_of(with(&both)), (9, Some(u128::from_be_bytes(id))));
    assert_eq!(
        with(&[0, 0]),
        Err(BodyError::BadValue {
            field: "buckets",
            value: 0
        })
    );
    assert!(with(&[0]).is_err(), "a 1-byte tail");
    assert!(with(&[0, 0, 4]).is_err(), "a 3-byte tail");
}

fn decode_request(bytes: &[u8]) -> Result<Request, BodyError> {
    let (frame, _) = Frame::parse(bytes, MAX_REQUEST_FRAME).unwrap();
    Request::decode(&frame)
}

#[test]
fn string_limits_are_inclusive() {
    assert!(decode_request(&hello("t".repeat(MAX_TOKEN_LEN))).is_ok());
    assert_eq!(
        decode_request(&hello("t".repeat(MAX_TOKEN_LEN + 1))),
        Err(BodyError::TooLong {
            field: "token",
            len: MAX_TOKEN_LEN + 1,
            max: MAX_TOKEN_LEN
        })
    );
    // The limit is in bytes: 100 two-byte chars fit, 101 do not.
    assert!(decode_request(&add_goods("é".repeat(MAX_NAME_LEN / 2))).is_ok());
    assert!(matches!(
        decode_request(&add_goods("é".repeat(MAX_NAME_LEN / 2 + 1))),
        Err(BodyError::TooLong { field: "name", .. })
    ));

    let stats = |name: String| {
        let bytes = encode_reply(
            Opcode::Stats,
            &Reply::Stats(vec![Stat { name, value: 1 }]),
            1,
        );
        let (frame, _) = Frame::parse(&bytes, MAX_REPLY_FRAME).unwrap();
        Reply::decode(&frame)
    };
    assert!(stats("s".repeat(MAX_STAT_NAME)).is_ok());
    assert!(matches!(
        stats("s".repeat(MAX_STAT_NAME + 1)),
        Err(BodyError::TooLong {
            field: "stat_name",
            ..
        })
    ));
}

#[test]
fn body_errors_are_reported_by_kind() {
    let mut buy = encode_request(
        &Request::Buy {
            user_id: 7,
            goods_id: 1,
            token: NO_TOKEN,
            request_id: None,
        },
        42,
    );
    // Unknown opcode, and the reserved ERROR opcode, as requests.
    for op in [0x33, 0x7f, 0x81] {
        let mut b = buy.clone();
        b[LEN_PREFIX] = op;
        assert_eq!(decode_request(&b), Err(BodyError::UnknownOpcode(op)));
    }
    // A byte too many.
    buy.push(0);
    buy[3] += 1;
    assert_eq!(decode_request(&buy), Err(BodyError::TrailingBytes(1)));
    // Two bytes too few.
    buy.truncate(buy.len() - 3);
    buy[3] -= 3;
    assert_eq!(decode_request(&buy), Err(BodyError::Truncated("token")));
    // Bad UTF-8 in the token.
    let mut h = hello("ab".into());
    let last = h.len() - 1;
    h[last] = 0xff;
    assert_eq!(decode_request(&h), Err(BodyError::BadUtf8("token")));
    // A bool that is neither 0 nor 1.
    let mut r = encode_reply(
        Opcode::Hello,
        &Reply::Hello {
            version: 1,
            admin: true,
            server: None,
        },
        1,
    );
    let last = r.len() - 1;
    r[last] = 2;
    let (frame, _) = Frame::parse(&r, MAX_REPLY_FRAME).unwrap();
    assert_eq!(
        Reply::decode(&frame),
        Err(BodyError::BadValue {
            field: "admin",
            value: 2
        })
    );
}

/// A BUY frame around `body`, whatever the codec thinks of its length.
fn buy_of(body: &[u8]) -> Result<Request, BodyError> {
    decode_request(&raw_request(Opcode::Buy, body))
}

#[test]
fn a_buy_is_24_bytes_or_40_with_a_request_id_and_nothing_else() {
    let mut body = Vec::new();
    for field in [7u64, 1, NO_TOKEN] {
        body.extend_from_slice(&field.to_be_bytes());
    }
    assert_eq!(body.len(), BUY_LEN);
    let without = Request::Buy {
        user_id: 7,
        goods_id: 1,
        token: NO_TOKEN,
        request_id: None,
    };
    assert_eq!(buy_of(&body), Ok(without.clone()));
    // The encoder writes the old body when there is no id, so an old
    // server still takes every BUY sent without one.
    assert_eq!(
        encode_request(&without, 1)[LEN_PREFIX + HEADER_LEN..],
        body[..]
    );

    let id = RequestId::new(0x0123_4567_89ab_cdef_fedc_ba98_7654_3210).unwrap();
    let mut with = body.clone();
    with.extend_from_slice(&id.to_bytes());
    assert_eq!(with.len(), BUY_WITH_ID_LEN);
    assert_eq!(
        buy_of(&with),
        Ok(Request::Buy {
            user_id: 7,
            goods_id: 1,
            token: NO_TOKEN,
            request_id: Some(id),
        })
    );

    // 25 to 39 bytes: too few for an id, so bytes after the last field.
    for extra in 1..16 {
        let mut b = body.clone();
        b.extend(std::iter::repeat_n(0xab, extra));
        assert_eq!(buy_of(&b), Err(BodyError::TrailingBytes(extra)), "{extra}");
    }
    // Over 40: an id, then bytes after it.
    let mut long = with.clone();
    long.push(0);
    assert_eq!(buy_of(&long), Err(BodyError::TrailingBytes(1)));
    // Under 24: the token is cut.
    assert_eq!(
        buy_of(&body[..BUY_LEN - 1]),
        Err(BodyError::Truncated("token"))
    );
}

#[test]
fn a_request_id_of_zero_is_refused_so_no_id_has_one_encoding() {
    let mut body = vec![0u8; BUY_LEN];
    body.extend_from_slice(&[0; 16]);
    assert_eq!(
        buy_of(&body),
        Err(BodyError::BadValue {
            field: "client_request_id",
            value: 0
        })
    );
    // Only all 16 bytes at 0 are 0: a 1 in the low or the high byte is an id.
    for at in [BUY_LEN, BUY_WITH_ID_LEN - 1] {
        let mut b = body.clone();
        b[at] = 1;
        assert!(
            matches!(
                buy_of(&b),
                Ok(Request::Buy {
                    request_id: Some(_),
                    ..
                })
            ),
            "1 at {at}"
        );
    }
}

#[test]
fn debug_shows_the_request_id_but_not_the_token() {
    let id = RequestId::new(0xfeed).unwrap();
    let shown = format!(
        "{:?}",
        Request::Buy {
            user_id: 7,
            goods_id: 1,
            token: 99_999,
            request_id: Some(id),
        }
    );
    assert!(
        shown.contains("0000000000000000000000000000feed"),
        "{shown}"
    );
    assert!(!shown.contains("99999"), "{shown}");
}
