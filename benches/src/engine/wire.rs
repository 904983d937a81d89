//! What goes over a connection: the seckill protocol (through
//! `seckill_proto`) or, for the redis-direct baseline, RESP (through the
//! `redis` crate's command packer and reply parser). No I/O here: the
//! engine moves the bytes.

use std::io::{self, Read};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::{Buf, BytesMut};
use redis::Value;
use seckill_proto::{
    Frame, FrameError, Opcode, Reply, Request, RequestId, SaleRules, Status, MAX_REPLY_FRAME,
    NO_TOKEN, VERSION,
};
use seckill_redis_scripts::{Call, Decision, Mode, ReserveBuyer, ReserveCall};

use super::Op;
use crate::stats::Outcome;

/// Request id of the seckill HELLO; the load starts at the next one.
pub const HELLO_ID: u64 = 1;

/// What one reply said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// A reply to the connection's greeting: ok, or why not.
    Greeting(Result<(), String>),
    /// A reply to a request: to request `id`, or to the oldest one in
    /// flight when the protocol has no ids. `order_no` is the order number
    /// the reply carried, if any.
    Reply {
        id: Option<u64>,
        outcome: Outcome,
        order_no: Option<u64>,
    },
}

/// The Redis side of the redis-direct baseline: the server's reserve
/// script, loaded under `sha`, called with one buyer per call.
#[derive(Debug, Clone)]
pub struct RedisScript {
    pub sha: String,
    /// The goods' keys the script takes, in its order
    /// ([`ReserveCall::KEYS`]).
    pub keys: Vec<String>,
    pub goods: u64,
    /// The epoch the goods was loaded under (the script acts only on it).
    pub epoch: u64,
    /// Commands a new connection sends before any load (AUTH, SELECT,
    /// PING), packed; each must be answered without an error.
    pub greeting: Vec<Vec<u8>>,
}

/// Client request ids for a run's BUYs (`--request-ids`), unique across its
/// connections: a random base drawn once per run, each connection's ids
/// the next number from it in their upper half (bit 127, the repeat mark,
/// clear) and the request's own id, unique on its connection, below.
#[derive(Debug, Clone)]
pub struct RequestIds {
    base: u64,
    connections: Arc<AtomicU64>,
}

impl RequestIds {
    pub fn draw() -> Result<RequestIds, seckill_client::Error> {
        let random = seckill_client::random_request_id()?.get();
        Ok(RequestIds {
            base: (random >> 64) as u64,
            connections: Arc::new(AtomicU64::new(0)),
        })
    }

    /// The upper half of a new connection's ids.
    fn next_connection(&self) -> u128 {
        let k = self.connections.fetch_add(1, Ordering::Relaxed);
        u128::from(self.base.wrapping_add(k) & (u64::MAX >> 1)) << 64
    }
}

/// The client request id of the BUY sent under `id` on a connection whose
/// ids have the upper half `upper` (see [`RequestIds`]), if it has one.
fn buy_request_id(upper: Option<u128>, id: u64) -> Option<RequestId> {
    upper.and_then(|upper| RequestId::new(upper | u128::from(id)))
}

/// One connection's codec. `request_ids`: the upper half of the client
/// request id each BUY carries (see [`RequestIds`]), or none.
pub enum Codec {
    Seckill {
        request_ids: Option<u128>,
    },
    Redis {
        /// Boxed: the seckill codec, the common one, need not be as big.
        script: Box<RedisScript>,
        parser: redis::Parser,
        request_ids: Option<u128>,
    },
}

impl Codec {
    /// The seckill protocol; with `request_ids`, every BUY carries a
    /// client request id of its own.
    pub fn seckill(request_ids: Option<&RequestIds>) -> Codec {
        Codec::Seckill {
            request_ids: request_ids.map(RequestIds::next_connection),
        }
    }

    /// The reserve script straight into Redis, with each buyer's request id
    /// as the server would pass it, or none.
    pub fn redis(script: RedisScript, request_ids: Option<&RequestIds>) -> Codec {
        Codec::Redis {
            script: Box::new(script),
            parser: redis::Parser::new(),
            request_ids: request_ids.map(RequestIds::next_connection),
        }
    }

    /// Writes the greeting; returns how many replies it expects.
    pub fn greet(&self, out: &mut BytesMut) -> usize {
        match self {
            Codec::Seckill { .. } => {
                let hello = Request::Hello {
                    version: VERSION,
                    token: String::new(),
                };
                hello.encode(HELLO_ID, out);
                1
            }
            Codec::Redis { script, .. } => {
                for cmd in &script.greeting {
                    out.extend_from_slice(cmd);
                }
                script.greeting.len()
            }
        }
    }

    /// Writes one request with id `id` (to Redis, only as the lower half of
    /// its BUY's request id, if any).
    pub fn encode(&self, op: &Op, id: u64, out: &mut BytesMut) {
        match self {
            Codec::Seckill { request_ids } => {
                let request = match *op {
                    // Each BUY of a workload is a purchase of its own, never
                    // resent (a busy one is sent again only as a new try):
                    // its request id, if any, is its own.
                    Op::Buy { user, goods, .. } => Request::Buy {
                        user_id: user,
                        goods_id: goods,
                        token: NO_TOKEN,
                        request_id: buy_request_id(*request_ids, id),
                    },
                    Op::GetGoods { goods } => Request::GetGoods { goods_id: goods },
                    Op::ListGoods => Request::ListGoods,
                    Op::Pay { user, order_no } => Request::Pay {
                        user_id: user,
                        order_no,
                    },
                    Op::Cancel { user, order_no } => Request::Cancel {
                        user_id: user,
                        order_no,
                    },
                };
                request.encode(id, out);
            }
            Codec::Redis {
                script,
                request_ids,
                ..
            } => {
                let packed = match *op {
                    Op::Buy { user, order_no, .. } => {
                        let request_id = buy_request_id(*request_ids, id).map(RequestId::get);
                        reserve_command(script, user, order_no, request_id)
                    }
                    // The baseline only buys; anything else is a round trip.
                    Op::GetGoods { .. } | Op::ListGoods | Op::Pay { .. } | Op::Cancel { .. } => {
                        redis::cmd("PING").get_packed_command()
                    }
                };
                out.extend_from_slice(&packed);
            }
        }
    }

    /// Takes the next whole reply from `input`, if one is there. An error
    /// means the stream is broken and the connection must close.
    pub fn decode(
        &mut self,
        input: &mut BytesMut,
        greeting: bool,
    ) -> Result<Option<Answer>, String> {
        match self {
            Codec::Seckill { .. } => decode_seckill(input),
            Codec::Redis { parser, .. } => {
                let mut feed = Feed(input);
                match parser.parse_value(&mut feed) {
                    Ok(value) if greeting => Ok(Some(Answer::Greeting(match value {
                        Value::ServerError(e) => Err(e.to_string()),
                        _ => Ok(()),
                    }))),
                    Ok(value) => Ok(Some(redis_answer(value))),
                    // The parser keeps what it has read of a partial reply
                    // and goes on from there next time.
                    Err(e) if e.is_io_error() && feed.0.is_empty() => Ok(None),
                    Err(e) => Err(format!("bad reply from redis: {e}")),
                }
            }
        }
    }
}

/// The reserve script's call for one buyer: EVALSHA with the server's own
/// call for a goods of the default rules (mode `durable`: no queue entry;
/// one order per user; no token, so the tokens key is given but never
/// read).
fn reserve_command(
    script: &RedisScript,
    user: u64,
    order_no: u64,
    request_id: Option<u128>,
) -> Vec<u8> {
    let rules = SaleRules::default();
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let buyers = [ReserveBuyer {
        user,
        order_no,
        token: NO_TOKEN,
        request_id,
    }];
    let call = ReserveCall {
        mode: Mode::Durable,
        goods: script.goods,
        now_ms,
        epoch: script.epoch,
        per_user_limit: rules.per_user_limit,
        token_required: rules.token_required,
        pay_by_ms: now_ms.saturating_add(rules.pay_window_ms),
        // The server's own figure, for the same work.
        request_id_ttl_ms: 3_600_000,
        buyers: &buyers,
    };
    let mut cmd = redis::cmd("EVALSHA");
    cmd.arg(&script.sha)
        .arg(script.keys.len())
        .arg(&script.keys[..]);
    call.write_args(&mut |arg| {
        cmd.arg(arg);
    });
    cmd.get_packed_command()
}

/// Hands the parser the bytes read so far, then says "would block": the
/// parser keeps its partial state and is called again when more arrive.
struct Feed<'a>(&'a mut BytesMut);

impl Read for Feed<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.0.is_empty() {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        let n = buf.len().min(self.0.len());
        buf[..n].copy_from_slice(&self.0[..n]);
        self.0.advance(n);
        Ok(n)
    }
}

fn decode_seckill(input: &mut BytesMut) -> Result<Option<Answer>, String> {
    let (frame, used) = match Frame::parse(input, MAX_REPLY_FRAME) {
        Ok(found) => found,
        Err(FrameError::Incomplete) => return Ok(None),
        Err(e) => return Err(format!("bad reply frame: {e}")),
    };
    let answer = match Reply::decode(&frame) {
        Ok((Opcode::Hello, Reply::Hello { .. })) => Answer::Greeting(Ok(())),
        Ok((Opcode::Hello, reply)) => Answer::Greeting(Err(format!("HELLO refused: {reply:?}"))),
        Ok((Opcode::Error, reply)) => {
            return Err(format!("the server gave up on the connection: {reply:?}"))
        }
        Ok((_, reply)) => {
            let (outcome, order_no) = seckill_outcome(&reply);
            Answer::Reply {
                id: Some(frame.id),
                outcome,
                order_no,
            }
        }
        Err(_) => Answer::Reply {
            id: Some(frame.id),
            outcome: Outcome::Error("bad_reply"),
            order_no: None,
        },
    };
    input.advance(used);
    Ok(Some(answer))
}

/// A seckill reply as an outcome, with the order number it carries.
pub fn seckill_outcome(reply: &Reply) -> (Outcome, Option<u64>) {
    match reply {
        Reply::Bought { order_no } => (Outcome::Ok, Some(*order_no)),
        Reply::AlreadyBought { order_no } => (Outcome::AlreadyBought, Some(*order_no)),
        Reply::Error { status, .. } => (status_outcome(*status), None),
        _ => (Outcome::Ok, None),
    }
}

fn status_outcome(status: Status) -> Outcome {
    match status {
        Status::Ok => Outcome::Ok,
        Status::SoldOut => Outcome::SoldOut,
        Status::AlreadyBought => Outcome::AlreadyBought,
        Status::Busy | Status::Pending => Outcome::Busy,
        other => Outcome::Error(other.as_str()),
    }
}

/// The reserve script's reply for one buyer: `{remaining, "decision"}` (a
/// token refusal never comes, without a token).
fn redis_answer(value: Value) -> Answer {
    let (outcome, order_no) = match value {
        // A number first: `{"stale", epoch}` is no decision.
        Value::Array(items) if matches!(items.as_slice(), [Value::Int(_), _]) => {
            match decision(&items[1]) {
                Some(Decision::Reserved) => (Outcome::Ok, None),
                Some(Decision::SoldOut) => (Outcome::SoldOut, None),
                Some(Decision::TokenInvalid) => (Outcome::Error("token_invalid"), None),
                Some(Decision::TokenExpired) => (Outcome::Error("token_expired"), None),
                Some(Decision::TokenUsed) => (Outcome::Error("token_used"), None),
                Some(Decision::Held(order_no)) => (Outcome::AlreadyBought, Some(order_no)),
                Some(Decision::Replayed(order_no)) => (Outcome::Ok, Some(order_no)),
                Some(Decision::RequestIdTaken) => (Outcome::Error("request_id_taken"), None),
                Some(Decision::Paused) => (Outcome::Error("paused"), None),
                Some(Decision::NotStarted) => (Outcome::Error("not_started"), None),
                Some(Decision::Ended) => (Outcome::Error("ended"), None),
                None => (Outcome::Error("bad_reply"), None),
            }
        }
        // The stock key is missing.
        Value::Nil => (Outcome::Error("not_loaded"), None),
        Value::ServerError(e) => match e.code() {
            "BUSY" | "LOADING" | "TRYAGAIN" => (Outcome::Busy, None),
            "NOSCRIPT" => (Outcome::Error("noscript"), None),
            _ => (Outcome::Error("redis_error"), None),
        },
        _ => (Outcome::Error("bad_reply"), None),
    };
    Answer::Reply {
        id: None,
        outcome,
        order_no,
    }
}

/// The one buyer's decision of the reserve script's reply (its decisions
/// are a string of one word per buyer), `None` if it is none.
fn decision(value: &Value) -> Option<Decision> {
    match value {
        Value::BulkString(word) => Decision::parse(word),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn redis_codec() -> Codec {
        Codec::redis(
            RedisScript {
                sha: "abc".into(),
                keys: ["s", "b", "q", "e", "t"].map(String::from).to_vec(),
                goods: 9,
                epoch: 3,
                greeting: vec![redis::cmd("PING").get_packed_command()],
            },
            None,
        )
    }

    #[test]
    fn seckill_replies_decode_to_outcomes() {
        let mut input = BytesMut::new();
        Reply::Hello {
            version: VERSION,
            admin: false,
            server: None,
        }
        .encode(Opcode::Hello as u8, HELLO_ID, &mut input);
        Reply::Bought { order_no: 77 }.encode(Opcode::Buy as u8, 5, &mut input);
        Reply::error(Status::SoldOut, "gone").encode(Opcode::Buy as u8, 3, &mut input);
        Reply::AlreadyBought { order_no: 77 }.encode(Opcode::Buy as u8, 4, &mut input);
        Reply::error(Status::NotStarted, "soon").encode(Opcode::Buy as u8, 6, &mut input);
        let whole = input.clone();
        let mut codec = Codec::seckill(None);
        // Split anywhere: nothing is decoded before a frame is whole.
        let mut partial = BytesMut::from(&whole[..whole.len() - 1]);
        let mut answers = Vec::new();
        while let Some(a) = codec.decode(&mut partial, false).unwrap() {
            answers.push(a);
        }
        assert_eq!(answers.len(), 4);
        partial.extend_from_slice(&whole[whole.len() - 1..]);
        answers.push(codec.decode(&mut partial, false).unwrap().unwrap());
        assert!(partial.is_empty());
        assert_eq!(answers[0], Answer::Greeting(Ok(())));
        let reply = |id, outcome, order_no| Answer::Reply {
            id: Some(id),
            outcome,
            order_no,
        };
        assert_eq!(answers[1], reply(5, Outcome::Ok, Some(77)));
        assert_eq!(answers[2], reply(3, Outcome::SoldOut, None));
        assert_eq!(answers[3], reply(4, Outcome::AlreadyBought, Some(77)));
        assert_eq!(answers[4], reply(6, Outcome::Error("not_started"), None));
    }

    /// The client request id a BUY is sent with: none, or one per request
    /// and per connection, never the repeat mark.
    #[test]
    fn buys_carry_request_ids_of_their_own_when_asked() {
        let buy = Op::Buy {
            user: 7,
            goods: 1,
            order_no: 0,
        };
        let sent = |codec: &Codec, id| {
            let mut out = BytesMut::new();
            codec.encode(&buy, id, &mut out);
            let (frame, _) = Frame::parse(&out, seckill_proto::MAX_REQUEST_FRAME).unwrap();
            match Request::decode(&frame).unwrap() {
                Request::Buy { request_id, .. } => request_id,
                other => panic!("{other:?}"),
            }
        };
        assert_eq!(sent(&Codec::seckill(None), 5), None);
        let ids = RequestIds::draw().unwrap();
        let (a, b) = (Codec::seckill(Some(&ids)), Codec::seckill(Some(&ids)));
        let ids = [sent(&a, 5), sent(&a, 6), sent(&b, 5)].map(|id| id.unwrap().get());
        assert_eq!(ids[0] as u64, 5);
        assert_eq!(ids[1] as u64, 6);
        assert_eq!(ids[0] >> 64, ids[1] >> 64, "one connection's upper half");
        assert_ne!(ids[0], ids[2], "another connection's");
        assert!(ids.iter().all(|id| id >> 127 == 0));
        // The redis-direct baseline passes the id to the script as the
        // server does, in 32 hex digits; without ids, "0".
        let script = |ids: Option<&RequestIds>| {
            let codec = Codec::redis(
                RedisScript {
                    sha: "abc".into(),
                    keys: vec!["k".into(); 8],
                    goods: 9,
                    epoch: 3,
                    greeting: Vec::new(),
                },
                ids,
            );
            let mut out = BytesMut::new();
            codec.encode(&buy, 5, &mut out);
            String::from_utf8_lossy(&out).into_owned()
        };
        let with = RequestIds::draw().unwrap();
        let first = with.connections.load(Ordering::Relaxed);
        let packed = script(Some(&with));
        let upper = u128::from(with.base.wrapping_add(first) & (u64::MAX >> 1)) << 64;
        assert!(packed.contains(&format!("{:032x}", upper | 5)), "{packed}");
        assert!(script(None).ends_with("$1\r\n0\r\n$1\r\n0\r\n"));
    }

    #[test]
    fn a_connection_level_error_breaks_the_connection() {
        let mut input = BytesMut::new();
        Reply::error(Status::BadRequest, "bye").encode(Opcode::Error as u8, 0, &mut input);
        assert!(Codec::seckill(None).decode(&mut input, false).is_err());
    }

    #[test]
    fn redis_replies_decode_across_any_split() {
        let stream: &[u8] =
            b"+PONG\r\n*2\r\n:9\r\n$1\r\n1\r\n*2\r\n:0\r\n$1\r\n0\r\n*2\r\n:8\r\n$5\r\n#1234\r\n*2\r\n:8\r\n$2\r\n-1\r\n$-1\r\n*2\r\n$5\r\nstale\r\n$1\r\n1\r\n-NOSCRIPT No matching script\r\n";
        for split in 0..stream.len() {
            let mut codec = redis_codec();
            let mut greeting = true;
            let mut answers = Vec::new();
            let mut input = BytesMut::new();
            for part in [&stream[..split], &stream[split..]] {
                input.extend_from_slice(part);
                while let Some(a) = codec.decode(&mut input, greeting).unwrap() {
                    greeting = false;
                    answers.push(a);
                }
            }
            let reply = |outcome, order_no| Answer::Reply {
                id: None,
                outcome,
                order_no,
            };
            assert_eq!(
                answers,
                [
                    Answer::Greeting(Ok(())),
                    reply(Outcome::Ok, None),
                    reply(Outcome::SoldOut, None),
                    reply(Outcome::AlreadyBought, Some(1234)),
                    reply(Outcome::Error("token_invalid"), None),
                    reply(Outcome::Error("not_loaded"), None),
                    // Loaded again under another epoch: no decision.
                    reply(Outcome::Error("bad_reply"), None),
                    reply(Outcome::Error("noscript"), None),
                ],
                "split at {split}"
            );
        }
    }

    #[test]
    fn the_redis_call_is_the_servers_script_with_one_buyer() {
        let codec = redis_codec();
        let mut out = BytesMut::new();
        let buy = Op::Buy {
            user: 42,
            goods: 9,
            order_no: 1001,
        };
        codec.encode(&buy, 0, &mut out);
        let text = String::from_utf8_lossy(&out);
        let args: Vec<&str> = text.split("\r\n").skip(2).step_by(2).collect();
        assert_eq!(
            &args[..10],
            ["EVALSHA", "abc", "5", "s", "b", "q", "e", "t", "durable", "9"]
        );
        // now_ms, then the epoch, one order per user, no token required,
        // pay_by_ms, how long request ids are kept, and the one buyer's
        // user, order number, token and request id (none).
        let now_ms: u64 = args[10].parse().expect("now_ms");
        assert_eq!(&args[11..14], ["3", "1", "0"]);
        let pay_by_ms: u64 = args[14].parse().expect("pay_by_ms");
        assert_eq!(pay_by_ms - now_ms, seckill_proto::DEFAULT_PAY_WINDOW_MS);
        assert_eq!(&args[15..], ["3600000", "42", "1001", "0", "0"]);
    }
}
