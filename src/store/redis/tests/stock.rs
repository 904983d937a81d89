//! What only the Redis stock store does: numbers that Lua must keep as
//! strings, the buyers hash and the tokens as laid out, what a reserve call
//! that meets a damaged entry or fails half-way does. The epoch fence and
//! loads are in `loads.rs`. What every stock store does is in the
//! conformance suite (`store/conformance/stock.rs`), run against Redis too.

use seckill_proto::RequestId;
use seckill_redis_scripts::{Call, Mode, ReserveBuyer, ReserveCall};

use crate::store::Buyer;

use super::*;

#[test]
fn order_numbers_keep_all_64_bits() {
    let stock = open(AckMode::Queued);
    let two53 = 1u64 << 53;
    let pairs = [
        (u64::MAX, u64::MAX),
        (two53 + 1, two53 + 1),
        (two53, u64::MAX - 1),
    ];
    stock.load_next(3, 10, &[]).unwrap();
    let r = stock.reserve(3, &rules(1), &buyers(&pairs)).unwrap();
    assert_eq!(r.decisions, vec![Reservation::Reserved; 3]);
    // Asking again with other numbers gives back the exact ones held.
    let again = [(u64::MAX, 1), (two53 + 1, 2), (two53, 3)];
    let r = stock.reserve(3, &rules(1), &buyers(&again)).unwrap();
    assert_eq!(
        r.decisions,
        pairs
            .iter()
            .map(|&(_, o)| Reservation::Held(o))
            .collect::<Vec<_>>()
    );
    let mut sorted = pairs.to_vec();
    sorted.sort_unstable();
    assert_eq!(stock.snapshot(3).unwrap(), Some((7, sorted)));
    // 2^53 and 2^53 + 1 are the same double: only the exact pair goes.
    assert_eq!(stock.release(3, &[(two53 + 1, two53)]).unwrap(), 7);
    assert_eq!(stock.release(3, &[(u64::MAX, u64::MAX - 1)]).unwrap(), 7);
    let queued = stock.queued(3).unwrap();
    let got: Vec<_> = queued.iter().map(|o| (o.user_id, o.order_no)).collect();
    assert_eq!(got, pairs.to_vec());
    assert_eq!(stock.release(3, &[(two53 + 1, two53 + 1)]).unwrap(), 8);
    // A holder loaded with big numbers comes back exact too, and so
    // does the first of several.
    let loaded = [(u64::MAX - 5, two53 + 1), (u64::MAX - 5, two53)];
    stock.load_next(3, 0, &loaded).unwrap();
    let r = stock.reserve(3, &rules(2), &buyers(&[(u64::MAX - 5, 0)]));
    assert_eq!(r.unwrap().decisions, vec![Reservation::Held(two53 + 1)]);
    assert_eq!(stock.release(3, &[(u64::MAX - 5, two53)]).unwrap(), 1);
    assert_eq!(
        stock.snapshot(3).unwrap(),
        Some((1, vec![(u64::MAX - 5, two53 + 1)]))
    );
    // Tokens too: 2^53 + 1 is not 2^53, nor is one user another.
    let expires = now_ms() + 60_000;
    stock.issue_token(3, two53 + 1, two53 + 1, expires).unwrap();
    stock.issue_token(3, u64::MAX, u64::MAX, expires).unwrap();
    stock.add(3, 5, 15).unwrap();
    let r = stock.reserve(
        3,
        &tokened(1, now_ms()),
        &[
            buy(two53 + 1, 1, two53),
            buy(two53, 2, two53 + 1),
            buy(u64::MAX - 1, 3, u64::MAX),
            buy(u64::MAX, u64::MAX, u64::MAX),
            buy(u64::MAX, 4, u64::MAX),
        ],
    );
    assert_eq!(
        r.unwrap().decisions,
        [
            INVALID,
            INVALID,
            INVALID,
            Reservation::Reserved,
            Reservation::Held(u64::MAX)
        ]
    );
}

#[test]
fn release_gives_back_exactly_the_order_named() {
    let stock = open(AckMode::Durable);
    stock.load_next(1, 5, &[]).unwrap();
    let batch = buyers(&[(1, 101), (1, 102), (1, 103), (1, 104)]);
    let r = stock.reserve(1, &rules(3), &batch).unwrap();
    assert_eq!(
        r.decisions,
        [
            Reservation::Reserved,
            Reservation::Reserved,
            Reservation::Reserved,
            Reservation::Held(101),
        ]
    );
    let field = |stock: &TestStock| -> Option<String> {
        let mut hget = ::redis::cmd("HGET");
        hget.arg(stock.keys(1).buyers).arg(1);
        stock.call("hget", |con| hget.query(con)).unwrap()
    };
    assert_eq!(field(&stock).as_deref(), Some("101 102 103"));
    // The middle one, twice in one call and once more: one unit.
    assert_eq!(stock.release(1, &[(1, 102), (1, 102)]).unwrap(), 3);
    assert_eq!(stock.release(1, &[(1, 102), (2, 101)]).unwrap(), 3);
    assert_eq!(field(&stock).as_deref(), Some("101 103"));
    // A number that is a part of a held one is not held.
    assert_eq!(
        stock
            .release(1, &[(1, 10), (1, 1), (1, 3), (1, 0)])
            .unwrap(),
        3
    );
    // Room again under the limit: the new order goes last.
    let r = stock.reserve(1, &rules(3), &buyers(&[(1, 105), (1, 106)]));
    assert_eq!(
        r.unwrap().decisions,
        [Reservation::Reserved, Reservation::Held(101)]
    );
    assert_eq!(field(&stock).as_deref(), Some("101 103 105"));
    assert_eq!(
        stock.release(1, &[(1, 101), (1, 103), (1, 105)]).unwrap(),
        5
    );
    assert_eq!(field(&stock), None, "an empty list stays behind");
    assert_eq!(stock.release(1, &[(1, 101)]).unwrap(), 5);
    assert_eq!(stock.snapshot(1).unwrap(), Some((5, vec![])));
}

/// The token rules themselves are in the conformance suite; here, what
/// only Redis does: tokens are not fenced by the epoch, so they can be
/// issued before the first load, and a token's entry records its user,
/// expiry and then the order it bought.
#[test]
fn tokens_are_issued_before_a_load_and_record_their_order() {
    const NOW: u64 = 1_000_000;
    let stock = open(AckMode::Durable);
    let expires = NOW + 1_000;
    stock.issue_token_at(1, 1, 11, expires, NOW).unwrap();
    stock.load_next(1, 2, &[]).unwrap();
    let entry = |stock: &TestStock| -> Option<String> {
        let mut hget = ::redis::cmd("HGET");
        hget.arg(stock.keys(1).tokens).arg(11);
        stock.call("hget", |con| hget.query(con)).unwrap()
    };
    assert_eq!(entry(&stock), Some(format!("1 {expires}")));
    let r = stock.reserve(1, &tokened(1, NOW), &[buy(1, 100, 11)]);
    assert_eq!(r.unwrap().decisions, [Reservation::Reserved]);
    assert_eq!(entry(&stock), Some(format!("1 {expires} 100")));
}

/// An entry damaged by hand (a token's with no expiry, a request id's with
/// no order) refuses its own buyer only: the others of the merged call of
/// that goods are decided as without it, and what they took is written.
/// (Each used to fail the whole call, so every BUY of the goods that came
/// with it, for as long as its buyer kept trying.)
#[test]
fn a_damaged_entry_refuses_its_own_buyer_only() {
    const NOW: u64 = 1_000_000;
    let stock = open(AckMode::Queued);
    stock.issue_token_at(1, 1, 11, NOW + 1_000, NOW).unwrap();
    stock.issue_token_at(1, 3, 33, NOW + 1_000, NOW).unwrap();
    stock.load_next(1, 5, &[]).unwrap();
    let keys = stock.keys(1);
    let hset = |key: &str, field: &str, value: &str| {
        stock
            .call("hset", |con| {
                ::redis::cmd("HSET")
                    .arg(key)
                    .arg(field)
                    .arg(value)
                    .query::<()>(con)
            })
            .unwrap()
    };
    hset(&keys.tokens, "22", "2");
    hset(&keys.req, &format!("{:032x}", 0xbad_u128), "3");
    let entry = |token: u64| -> Option<String> {
        let mut hget = ::redis::cmd("HGET");
        hget.arg(&keys.tokens).arg(token);
        stock.call("hget", |con| hget.query(con)).unwrap()
    };
    let damaged_id = crate::store::Buyer {
        request_id: seckill_proto::RequestId::new(0xbad),
        ..buy(3, 300, 33)
    };
    let batch = [buy(1, 100, 11), buy(2, 200, 22), damaged_id];
    let r = stock.reserve(1, &tokened(1, NOW), &batch).unwrap();
    assert_eq!(
        r.decisions,
        [
            Reservation::Reserved,
            Reservation::Token(TokenRefusal::Invalid),
            Reservation::RequestIdTaken
        ]
    );
    assert_eq!(r.remaining, 4);
    assert_eq!(entry(11), Some(format!("1 {} 100", NOW + 1_000)));
    assert_eq!(entry(33), Some(format!("3 {}", NOW + 1_000)), "spent");
    assert_eq!(stock.snapshot(1).unwrap(), Some((4, vec![(1, 100)])));
    assert_eq!(stock.queued(1).unwrap().len(), 1);
}

/// A call that fails half-way leaves everything as it was: the decisions
/// are written at the end, so a buyer decided before the failure neither
/// took a unit nor was queued (a unit taken and its order lost would leave
/// the sale short). Here the failure is a request id's lifetime that is no
/// number, met only once a buyer with an id reserves, the second of the
/// call; the server never sends one.
#[test]
fn a_call_that_fails_half_way_writes_nothing() {
    let stock = open(AckMode::Queued);
    let epoch = stock.load_next(1, 5, &[]).unwrap();
    let batch = [
        ReserveBuyer {
            user: 1,
            order_no: 100,
            token: NO_TOKEN,
            request_id: None,
        },
        ReserveBuyer {
            user: 2,
            order_no: 200,
            token: NO_TOKEN,
            request_id: Some(0xabc),
        },
    ];
    // ARGV[8]: how long a request id is remembered.
    let call = queued_reserve(epoch, &batch);
    let r = eval_replacing(&stock, 1, &call, Some((8, "not a number")));
    assert!(r.is_err(), "{r:?}");
    assert_eq!(stock.snapshot(1).unwrap(), Some((5, vec![])));
    assert!(stock.queued(1).unwrap().is_empty());
    let r = stock.reserve(1, &rules(1), &buyers(&[(1, 101)]));
    assert_eq!(r.unwrap().decisions, [Reservation::Reserved]);
}

/// The keys of the tokens expire when their last token may be forgotten,
/// by the caller's clock or Redis's, whichever is behind: a sale's tokens do not outlive it when no more
/// are issued to prune them.
#[test]
fn token_keys_expire_when_their_last_token_may_be_forgotten() {
    const NOW: u64 = 1_000_000;
    let stock = open(AckMode::Durable);
    stock.load_next(1, 10, &[]).unwrap();
    // Lives 1 s from NOW: expired from NOW + 1 s, forgotten from NOW + 2 s.
    stock.issue_token_at(1, 1, 11, NOW + 1_000, NOW).unwrap();
    let keys = stock.keys(1);
    for key in [&keys.tokens, &keys.token_expiry] {
        let ttl: i64 = stock
            .call("pttl", |con| ::redis::cmd("PTTL").arg(key).query(con))
            .unwrap();
        assert!((1_900..=2_000).contains(&ttl), "{key}: {ttl} ms");
    }
}

/// A server whose clock runs ahead forgets no request id or token the other
/// servers recorded before its time: its pruning goes by Redis's clock when
/// that is behind. (Its own ids are kept past their hour, by that much.)
#[test]
fn a_server_hours_ahead_forgets_no_one_elses_request_ids_or_tokens() {
    let stock = open(AckMode::Durable);
    stock.load_next(1, 10, &[]).unwrap();
    let now = now_ms();
    let ahead = now + 2 * crate::store::REQUEST_ID_TTL_MS;
    let with = |user, order_no, rid| Buyer {
        request_id: RequestId::new(rid),
        ..buy(user, order_no, NO_TOKEN)
    };
    let one = |b: Buyer, at| stock.reserve(1, &rules_at(1, at), &[b]).unwrap().decisions[0];
    assert_eq!(one(with(7, 700, 0xabc), now), Reservation::Reserved);
    stock.issue_token_at(1, 8, 88, now + 30_000, now).unwrap();
    // The server ahead reserves and issues, which prunes by its clock.
    assert_eq!(one(with(9, 900, 0xdef), ahead), Reservation::Reserved);
    stock
        .issue_token_at(1, 9, 99, ahead + 30_000, ahead)
        .unwrap();
    // The retry through a server on time still gets its first order, and
    // the token issued there is still known.
    assert_eq!(one(with(7, 701, 0xabc), now), Reservation::Replayed(700));
    assert_eq!(stock.tokens_kept(1), (2, 2));
    // The token keys live until the last token may be forgotten, by the
    // same clock: the one issued ahead is kept past two hours from now,
    // not for its minute from the clock ahead.
    let keys = stock.keys(1);
    let ttl: i64 = stock
        .call("pttl", |con| {
            ::redis::cmd("PTTL").arg(&keys.tokens).query(con)
        })
        .unwrap();
    assert!(ttl > 2 * 3_600_000, "{ttl} ms");
}

/// Runs a call with EVAL, as any client may send it from the shared
/// crate's typed calls (the bench does the same), not through the store.
pub(super) fn eval<C: Call>(stock: &TestStock, goods: GoodsId, call: &C) -> Value {
    eval_replacing(stock, goods, call, None).unwrap()
}

/// [`eval`] with argument `ARGV[n]` replaced, where `Some((n, arg))`.
fn eval_replacing<C: Call>(
    stock: &TestStock,
    goods: GoodsId,
    call: &C,
    replace: Option<(usize, &str)>,
) -> Result<Value, StoreError> {
    let keys = stock.keys(goods);
    let mut cmd = ::redis::cmd("EVAL");
    cmd.arg(C::SCRIPT).arg(C::KEYS.len());
    for &key in C::KEYS {
        cmd.arg(keys.get(key));
    }
    let mut n = 0;
    call.write_args(&mut |arg| {
        n += 1;
        match replace {
            Some((at, with)) if at == n => cmd.arg(with),
            _ => cmd.arg(arg),
        };
    });
    stock.call("eval", |con| cmd.query(con))
}

/// A queued-mode RESERVE of goods 1 under `epoch` at time 1, limit 1.
pub(super) fn queued_reserve(epoch: u64, buyers: &[ReserveBuyer]) -> ReserveCall<'_> {
    ReserveCall {
        mode: Mode::Queued,
        goods: 1,
        now_ms: 1,
        epoch,
        per_user_limit: 1,
        token_required: false,
        pay_by_ms: 2,
        request_id_ttl_ms: 1_000,
        buyers,
    }
}

/// A reserve call that only answers from what an earlier call wrote (the
/// order a user holds, the same call sent again) still writes: the WAIT
/// after it covers that call's own writes only (in Redis after 7.0), and an
/// earlier call's writes the replicas lack would be acted on, as "ok" in
/// the queued mode. Seen in what Redis ran for the call, by MONITOR; a call
/// that sold writes nothing more than it did.
#[test]
fn a_call_answered_from_earlier_writes_still_writes() {
    let stock = open(AckMode::Queued);
    stock.load_next(3, 10, &[]).unwrap();
    let epoch_key = stock.keys(3).epoch;
    let epoch_set = format!("\"SET\" \"{epoch_key}\"");
    let mut monitor = Monitor::start();
    let with_id = |order_no| Buyer {
        request_id: RequestId::new(7),
        ..buy(2, order_no, NO_TOKEN)
    };
    let decide = |buyers: &[Buyer]| stock.reserve(3, &rules(1), buyers).unwrap().decisions;
    assert_eq!(decide(&buyers(&[(1, 11)])), [Reservation::Reserved]);
    assert_eq!(decide(&[with_id(21)]), [Reservation::Reserved]);
    let sold_ran = monitor.through(&stock, "sold");
    assert_eq!(decide(&buyers(&[(1, 12)])), [Reservation::Held(11)]);
    assert_eq!(decide(&buyers(&[(1, 11)])), [Reservation::Reserved]);
    assert_eq!(decide(&[with_id(22)]), [Reservation::Replayed(21)]);
    let held_ran = monitor.through(&stock, "held");
    let sets = |ran: &[String]| ran.iter().filter(|l| l.contains(&epoch_set)).count();
    assert_eq!(sets(&sold_ran), 0, "a sale wrote its epoch:\n{sold_ran:#?}");
    assert_eq!(sets(&held_ran), 3, "ran:\n{held_ran:#?}");
}

/// A sale control the stock store has already (another server recorded
/// it, perhaps without its replicas), or a later one, is written back
/// unchanged, so that the WAIT after this call covers what the store holds
/// before the admin is told "ok"; an older one changes nothing else.
#[test]
fn a_control_recorded_already_is_written_back() {
    let stock = open(AckMode::Durable);
    stock.load_next(4, 10, &[]).unwrap();
    let ctl = stock.keys(4).ctl;
    let version_set = format!("\"HSET\" \"{ctl}\" \"version\"");
    let sale = |version| crate::store::SaleState {
        paused: true,
        start_ms: 0,
        end_ms: u64::MAX,
        version,
    };
    stock.control(4, &sale(5)).unwrap();
    let mut monitor = Monitor::start();
    stock.control(4, &sale(5)).unwrap();
    let again = monitor.through(&stock, "again");
    stock.control(4, &sale(4)).unwrap();
    let older = monitor.through(&stock, "older");
    let sets = |ran: &[String]| ran.iter().filter(|l| l.contains(&version_set)).count();
    // Written back as held: version 5 alone, nothing of version 4.
    let held = format!("{version_set} \"5\"");
    assert_eq!(sets(&again), 1, "ran:\n{again:#?}");
    assert_eq!(sets(&older), 1, "ran:\n{older:#?}");
    assert!(
        older
            .iter()
            .filter(|l| l.contains(&version_set))
            .all(|l| l.ends_with(&held)),
        "an older control changed the hash:\n{older:#?}"
    );
}

/// A connection in MONITOR: the commands Redis runs, one line each.
pub(super) struct Monitor(::redis::Connection);

impl Monitor {
    pub(super) fn start() -> Monitor {
        let url = std::env::var("SECKILL_TEST_REDIS")
            .unwrap_or_else(|_| "redis://127.0.0.1:6379".to_string());
        let mut con = ::redis::Client::open(url)
            .and_then(|c| c.get_connection())
            .unwrap();
        let ok: String = ::redis::cmd("MONITOR").query(&mut con).unwrap();
        assert_eq!(ok, "OK");
        con.set_read_timeout(Some(Duration::from_millis(300)))
            .unwrap();
        Monitor(con)
    }

    /// The commands Redis ran from now to a GET of a key named after
    /// `mark`, which `stock` sends (every test's commands: the caller picks
    /// its own out by its keys).
    pub(super) fn through(&mut self, stock: &TestStock, mark: &str) -> Vec<String> {
        let key = format!("{}{mark}", stock.prefix);
        let mut get = ::redis::cmd("GET");
        get.arg(&key);
        stock
            .call("mark", |con| get.query::<Option<String>>(con))
            .unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        let mut lines = Vec::new();
        loop {
            assert!(std::time::Instant::now() < deadline, "no {key} in MONITOR");
            let Ok(value) = self.0.recv_response() else {
                continue;
            };
            let line: String = ::redis::from_redis_value(value).unwrap();
            if line.contains(&key) {
                return lines;
            }
            lines.push(line);
        }
    }
}

/// Redis's clock, which each server's is compared with at start: Unix
/// milliseconds, within a moment of this process's on one machine.
#[test]
fn the_stores_clock_is_redis_time_in_ms() {
    let stock = open(AckMode::Durable);
    let before = crate::clock::now_ms();
    let theirs = stock.clock_ms().unwrap().expect("Redis has a clock");
    let after = crate::clock::now_ms();
    assert!(
        before.saturating_sub(1_000) <= theirs && theirs <= after + 1_000,
        "{before} <= {theirs} <= {after}"
    );
}
