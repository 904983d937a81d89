//! The [`StockStore`] suite's tests of retries and sale rules, run by the
//! suite in `conformance::stock` against every stock store: a call sent
//! twice acts once (RESERVE, ADD), a client request id gets its first order
//! back, and the sale controls close a sale per buyer.

use seckill_proto::NO_TOKEN;

use super::stock::{rules, Subject, NOW};
use crate::store::fixtures::{buy, buyers, LoadNext};
use crate::store::{Buyer, Closed, Reservation, ReserveRules, SaleState, Unmade};

/// A reserve call run twice (a client library resent it after a dropped
/// connection) answers the second time as the first, and takes nothing more:
/// with a limit of 1 and with a limit of 3, where a second unit per user
/// would otherwise be sold.
pub(super) fn the_same_call_run_twice_sells_once(stock: &impl Subject) {
    for (goods, limit) in [(1, 1), (2, 3)] {
        stock.load_next(goods, 10, &[]).unwrap();
        let batch = buyers(&[(1, 100), (2, 200), (1, 101)]);
        let first = stock.reserve(goods, &rules(limit), &batch).unwrap();
        let again = stock.reserve(goods, &rules(limit), &batch).unwrap();
        assert_eq!(again.decisions, first.decisions, "limit {limit}");
        assert_eq!(again.remaining, first.remaining, "limit {limit}");
        let sold = if limit == 1 { 2 } else { 3 };
        assert_eq!(first.remaining, 10 - sold, "limit {limit}");
        let (left, holders) = stock.snapshot(goods).unwrap().unwrap();
        assert_eq!(
            (left, holders.len() as u32),
            (10 - sold, sold),
            "limit {limit}"
        );
    }
}

/// A BUY retried under its request id gets the order its first attempt
/// reserved, also with a limit above one (where a retry without the id
/// would buy a second unit) and while the sale is paused; the same id from
/// another user is refused; an id whose first attempt reserved nothing
/// records nothing; and an id is forgotten after its lifetime.
pub(super) fn a_request_id_gets_its_first_order_back_and_only_its_user(stock: &impl Subject) {
    use seckill_proto::RequestId;
    stock.load_next(1, 10, &[]).unwrap();
    let id = |n| RequestId::new(n);
    let with = |user, order_no, rid| Buyer {
        request_id: id(rid),
        ..buy(user, order_no, NO_TOKEN)
    };
    let at = |now_ms| ReserveRules { now_ms, ..rules(3) };
    let one = |b: Buyer, now_ms| stock.reserve(1, &at(now_ms), &[b]).unwrap().decisions[0];
    assert_eq!(one(with(7, 700, 0xabc), NOW), Reservation::Reserved);
    // The retry proposes another number; it gets the first order back.
    assert_eq!(one(with(7, 701, 0xabc), NOW), Reservation::Replayed(700));
    assert_eq!(one(with(8, 800, 0xabc), NOW), Reservation::RequestIdTaken);
    // Without the id, the same user (limit 3) buys a second unit.
    assert_eq!(one(with(7, 702, 0), NOW), Reservation::Reserved);
    assert_eq!(stock.remaining(1).unwrap(), Some(8));
    // Paused: the retry still gets its order; a new BUY does not.
    stock
        .control(
            1,
            &SaleState {
                paused: true,
                start_ms: 0,
                end_ms: u64::MAX,
                version: 1,
            },
        )
        .unwrap();
    assert_eq!(one(with(7, 703, 0xabc), NOW), Reservation::Replayed(700));
    assert_eq!(
        one(with(9, 900, 0xdef), NOW),
        Reservation::Closed(Closed::Paused)
    );
    stock
        .control(
            1,
            &SaleState {
                paused: false,
                start_ms: 0,
                end_ms: u64::MAX,
                version: 2,
            },
        )
        .unwrap();
    // 0xdef was refused, so it recorded nothing: it buys now.
    assert_eq!(one(with(9, 901, 0xdef), NOW), Reservation::Reserved);
    // Forgetting names the order: an id naming another is kept; one
    // naming it is forgotten, and its BUY is decided afresh.
    let forget = |order_no| {
        let unmade = Unmade {
            user: 9,
            order_no,
            request_id: id(0xdef),
            token: NO_TOKEN,
        };
        stock.forget_unmade(1, &[unmade]).unwrap()
    };
    forget(999);
    assert_eq!(one(with(9, 902, 0xdef), NOW), Reservation::Replayed(901));
    forget(901);
    assert_eq!(one(with(9, 903, 0xdef), NOW), Reservation::Reserved);
    // After its lifetime the id is forgotten: it is a new BUY.
    let later = NOW + crate::store::REQUEST_ID_TTL_MS;
    assert_eq!(one(with(8, 802, 0xabc), later), Reservation::Reserved);
    assert_eq!(stock.remaining(1).unwrap(), Some(5));
    // An id twice in one call (a retry merged with its first attempt): the
    // second sees what the first reserved.
    let twice = [
        with(5, 500, 0x111),
        with(5, 501, 0x111),
        with(6, 600, 0x111),
    ];
    let decided = stock.reserve(1, &at(later), &twice).unwrap();
    assert_eq!(
        decided.decisions,
        [
            Reservation::Reserved,
            Reservation::Replayed(500),
            Reservation::RequestIdTaken
        ]
    );
    assert_eq!(decided.remaining, 4);
    assert_eq!(one(with(5, 502, 0x111), later), Reservation::Replayed(500));
}

/// A goods under sale controls: a paused sale, or one outside its window
/// at the reservation's clock, refuses a whole batch and takes nothing; a
/// control of a version no higher than the one recorded changes nothing,
/// whoever sends it late.
pub(super) fn sale_controls_refuse_whole_batches_and_only_a_newer_version_counts(
    stock: &impl Subject,
) {
    stock.load_next(1, 5, &[]).unwrap();
    let sale = |paused, start_ms, end_ms, version| SaleState {
        paused,
        start_ms,
        end_ms,
        version,
    };
    let batch = buyers(&[(1, 100), (2, 200)]);
    let decided = |want: Reservation| {
        let got = stock.reserve(1, &rules(1), &batch).unwrap();
        assert_eq!(got.decisions, [want; 2]);
        got.remaining
    };
    stock.control(1, &sale(true, 0, u64::MAX, 1)).unwrap();
    assert_eq!(decided(Reservation::Closed(Closed::Paused)), 5);
    stock.control(1, &sale(false, 0, u64::MAX, 0)).unwrap();
    assert_eq!(
        decided(Reservation::Closed(Closed::Paused)),
        5,
        "an older control"
    );
    stock
        .control(1, &sale(false, NOW + 1, u64::MAX, 2))
        .unwrap();
    decided(Reservation::Closed(Closed::NotStarted));
    stock.control(1, &sale(false, 0, NOW, 3)).unwrap();
    decided(Reservation::Closed(Closed::Ended));
    assert_eq!(
        stock.snapshot(1).unwrap(),
        Some((5, vec![])),
        "nothing taken"
    );
    stock.control(1, &sale(false, 0, NOW + 1, 4)).unwrap();
    assert_eq!(decided(Reservation::Reserved), 3);
}

/// Two restocks through two servers whose ADDs reach the stock store in the
/// other order add both; either of them again adds nothing.
pub(super) fn restocks_in_either_order_add_each_once(stock: &impl Subject) {
    stock.load_next(1, 10, &[]).unwrap();
    // The order store made the totals 15, then 25; the second ADD first.
    assert_eq!(stock.add(1, 10, 25).unwrap(), 25);
    assert_eq!(stock.add(1, 5, 15).unwrap(), 25);
    assert_eq!(stock.add(1, 10, 25).unwrap(), 25);
    assert_eq!(stock.add(1, 3, 28).unwrap(), 28);
}
