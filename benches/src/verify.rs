//! The checks after a flash crowd, as pure functions of what the bench was
//! told and what the stores show; [`crate::checks`] fetches the latter.
//!
//! The rules: every unit sold was acknowledged to exactly one user with one
//! order number (ok replies = units sold), no user holds two orders, and
//! every acknowledged order is where it should be (ORDER_STATUS, the order
//! store). A BUY whose reply never came (its connection broke) may or may
//! not have sold a unit: such runs are checked within that margin.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Instant;

use seckill_proto::{OrderState, Reply, Status};
use serde::Serialize;

use crate::stats::Outcome;

/// How many problems a report lists; the rest are counted.
pub const MAX_LISTED: usize = 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AckKind {
    /// BUY `ok`: a new order.
    Ok,
    /// BUY `already_bought`: the order the user holds.
    AlreadyBought,
    /// PAY `ok`: the order is paid.
    Paid,
    /// PAY `order_cancelled`: too late, or cancelled before.
    PayRefused,
    /// CANCEL `ok`: the order is cancelled.
    Cancelled,
    /// CANCEL `order_paid`: the order was paid first.
    CancelRefused,
}

impl AckKind {
    /// What a BUY reply says of an order, if anything.
    pub fn of_buy(outcome: Outcome) -> Option<AckKind> {
        match outcome {
            Outcome::Ok => Some(AckKind::Ok),
            Outcome::AlreadyBought => Some(AckKind::AlreadyBought),
            _ => None,
        }
    }

    /// What a PAY reply says of its order, if it settles it.
    pub fn of_pay(outcome: Outcome) -> Option<AckKind> {
        match outcome {
            Outcome::Ok => Some(AckKind::Paid),
            Outcome::Error(e) if e == Status::OrderCancelled.as_str() => Some(AckKind::PayRefused),
            _ => None,
        }
    }

    /// What a CANCEL reply says of its order, if it settles it.
    pub fn of_cancel(outcome: Outcome) -> Option<AckKind> {
        match outcome {
            Outcome::Ok => Some(AckKind::Cancelled),
            Outcome::Error(e) if e == Status::OrderPaid.as_str() => Some(AckKind::CancelRefused),
            _ => None,
        }
    }

    fn is_buy(self) -> bool {
        matches!(self, AckKind::Ok | AckKind::AlreadyBought)
    }
}

/// A reply that named an order: a BUY's, or a PAY's or CANCEL's that
/// settled one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ack {
    pub user: u64,
    pub order_no: u64,
    pub kind: AckKind,
    /// When the reply arrived.
    pub at: Instant,
    /// Which server of the target sent it (an index into its addresses).
    pub server: usize,
}

/// What the replies add up to.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Ledger {
    /// `ok` replies.
    pub ok: u64,
    /// Each user told of an order, with the order number first told.
    pub holders: BTreeMap<u64, u64>,
    /// The users told `ok`.
    pub told_ok: BTreeSet<u64>,
    /// Each holder's server (an index into the target's addresses): the
    /// one that told them `ok`, else the first that told them of the order.
    /// In the `queued` ack mode an order is written after its reply, and
    /// until then only the server that made it can show it.
    pub told_by: HashMap<u64, usize>,
    /// Users told two different order numbers, orders told to two users,
    /// users told `ok` twice.
    pub problems: Vec<String>,
}

impl Ledger {
    /// The ledger of the BUY replies among `acks`.
    pub fn of(acks: &[Ack]) -> Ledger {
        let mut ledger = Ledger::default();
        let mut oks: HashMap<u64, u32> = HashMap::new();
        let mut owners: HashMap<u64, u64> = HashMap::new();
        for ack in acks.iter().filter(|a| a.kind.is_buy()) {
            if ack.kind == AckKind::Ok {
                ledger.ok += 1;
                ledger.told_ok.insert(ack.user);
                let n = oks.entry(ack.user).or_default();
                *n += 1;
                if *n == 2 {
                    ledger
                        .problems
                        .push(format!("user {} was told ok more than once", ack.user));
                }
            }
            let by = ledger.told_by.entry(ack.user).or_insert(ack.server);
            if ack.kind == AckKind::Ok {
                *by = ack.server;
            }
            let held = *ledger.holders.entry(ack.user).or_insert(ack.order_no);
            if held != ack.order_no {
                ledger.problems.push(format!(
                    "user {} was told two order numbers, {held} and {}",
                    ack.user, ack.order_no
                ));
            }
            let owner = *owners.entry(ack.order_no).or_insert(ack.user);
            if owner != ack.user {
                ledger.problems.push(format!(
                    "order {} was given to two users, {owner} and {}",
                    ack.order_no, ack.user
                ));
            }
        }
        ledger
    }
}

/// Units sold against `ok` replies. `unknown` is the BUYs whose replies
/// were lost; `lost_orders`, if their users could all be asked, the live
/// orders those of them never told `ok` hold (orders those BUYs made): the
/// units are then checked against `ok` replies and those orders exactly,
/// else within a margin of one unit per lost BUY.
pub fn check_sold(
    ledger: &Ledger,
    total: u32,
    remaining: u32,
    unknown: u64,
    lost_orders: Option<u64>,
) -> Vec<String> {
    let mut problems = Vec::new();
    if remaining > total {
        problems.push(format!("{remaining} units remain of {total}"));
        return problems;
    }
    let sold = u64::from(total - remaining);
    let (ok, unknown) = match lost_orders {
        Some(found) if unknown > 0 => (ledger.ok + found, 0),
        _ => (ledger.ok, unknown),
    };
    let holders = ledger.holders.len() as u64;
    if holders > u64::from(total) {
        problems.push(format!(
            "oversold: {holders} users hold an order but there were only {total} units"
        ));
    }
    if unknown == 0 {
        if ok > sold {
            problems.push(format!(
                "oversold: {ok} ok replies but only {sold} units sold"
            ));
        } else if ok < sold {
            problems.push(format!(
                "{sold} units sold but only {ok} ok replies: {} units went without an ok",
                sold - ok
            ));
        }
        if holders > ok {
            problems.push(format!(
                "{} users were told already_bought without ever being told ok",
                holders - ok
            ));
        }
    } else if ok > sold || holders > sold {
        problems.push(format!(
            "oversold: {ok} ok replies ({holders} users told of an order) but only {sold} units sold"
        ));
    } else if sold > ok + unknown {
        problems.push(format!(
            "{sold} units sold but only {ok} ok replies and {unknown} BUYs of unknown outcome"
        ));
    }
    problems
}

/// One ORDER_STATUS reply for an acknowledged order.
pub fn check_order_reply(goods: u64, user: u64, order_no: u64, reply: &Reply) -> Option<String> {
    match reply {
        Reply::Order(o)
            if o.order_no == order_no
                && o.user_id == user
                && o.goods_id == goods
                && o.state != OrderState::Cancelled =>
        {
            None
        }
        Reply::Order(o) => Some(format!(
            "ORDER_STATUS of user {user} gives order {} (user {}, goods {}, {:?}), not the acknowledged order {order_no}",
            o.order_no, o.user_id, o.goods_id, o.state
        )),
        other => Some(format!(
            "ORDER_STATUS of user {user} (acknowledged order {order_no}) answered {}",
            other.status()
        )),
    }
}

/// The live orders of the goods in a store (`user`, `order_no`) against
/// the acknowledged ones: `expected` of them, each acknowledged order
/// present under its user, no user or order twice.
pub fn check_store(
    store: &str,
    ledger: &Ledger,
    expected: u64,
    rows: &[(u64, u64)],
) -> Vec<String> {
    let mut problems = Vec::new();
    if rows.len() as u64 != expected {
        problems.push(format!(
            "{store} has {} live orders for the goods, expected {expected}",
            rows.len()
        ));
    }
    let mut by_user: HashMap<u64, u64> = HashMap::new();
    let mut by_order: HashMap<u64, u64> = HashMap::new();
    for &(user, order_no) in rows {
        if let Some(other) = by_user.insert(user, order_no) {
            problems.push(format!(
                "{store}: user {user} holds two live orders, {other} and {order_no}"
            ));
        }
        if let Some(other) = by_order.insert(order_no, user) {
            problems.push(format!(
                "{store}: order {order_no} appears twice (users {other} and {user})"
            ));
        }
    }
    for (&user, &order_no) in &ledger.holders {
        match by_order.get(&order_no) {
            Some(&owner) if owner == user => {}
            Some(&owner) => problems.push(format!(
                "{store}: acknowledged order {order_no} of user {user} is held by user {owner}"
            )),
            None => problems.push(format!(
                "{store}: acknowledged order {order_no} of user {user} is missing"
            )),
        }
    }
    problems
}

/// The verification part of a report.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Verification {
    pub passed: bool,
    pub total: u32,
    pub remaining: u32,
    pub sold: u64,
    pub ok_replies: u64,
    /// Users told of an order (by `ok` or `already_bought`).
    pub holders: u64,
    /// BUYs whose reply never came.
    pub unknown_outcomes: u64,
    /// Orders those BUYs made, found by asking their users' ORDER_STATUS:
    /// units sold are then checked exactly against `ok_replies` and them.
    /// `None` if no BUY was lost, or some users could not be asked (then
    /// within a margin of one unit per lost BUY).
    pub lost_orders: Option<u64>,
    /// Acknowledged orders confirmed through the protocol (ORDER_STATUS).
    pub orders_checked: u64,
    /// How long those checks took.
    pub order_status_ms: u64,
    /// The order store or stock store looked into, if any.
    pub store: Option<StoreCheck>,
    /// The first [`MAX_LISTED`] problems.
    pub problems: Vec<String>,
    pub problem_count: usize,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct StoreCheck {
    pub name: String,
    pub live_orders: u64,
    /// How long it took the store to show them (the `queued` ack mode
    /// writes behind the replies).
    pub waited_ms: u64,
}

/// What a list of problems says: passed (none), how many, and the first
/// [`MAX_LISTED`] of them.
pub fn verdict(problems: Vec<String>) -> (bool, usize, Vec<String>) {
    let count = problems.len();
    (
        count == 0,
        count,
        problems.into_iter().take(MAX_LISTED).collect(),
    )
}

impl Verification {
    /// Sets the problems (listing the first few) and whether it passed.
    pub fn conclude(&mut self, problems: Vec<String>) {
        (self.passed, self.problem_count, self.problems) = verdict(problems);
    }
}

#[cfg(test)]
mod tests {
    use seckill_proto::Order;

    use super::*;

    fn ok(user: u64, order_no: u64) -> Ack {
        Ack {
            user,
            order_no,
            kind: AckKind::Ok,
            at: Instant::now(),
            server: 0,
        }
    }

    fn again(user: u64, order_no: u64) -> Ack {
        Ack {
            kind: AckKind::AlreadyBought,
            ..ok(user, order_no)
        }
    }

    #[test]
    fn settling_replies_are_told_apart_and_left_out_of_the_ledger() {
        let cancelled = Outcome::Error("order_cancelled");
        let paid = Outcome::Error("order_paid");
        assert_eq!(AckKind::of_pay(Outcome::Ok), Some(AckKind::Paid));
        assert_eq!(AckKind::of_pay(cancelled), Some(AckKind::PayRefused));
        assert_eq!(AckKind::of_pay(Outcome::Busy), None);
        assert_eq!(AckKind::of_cancel(Outcome::Ok), Some(AckKind::Cancelled));
        assert_eq!(AckKind::of_cancel(paid), Some(AckKind::CancelRefused));
        assert_eq!(AckKind::of_cancel(cancelled), None);
        assert_eq!(AckKind::of_buy(Outcome::SoldOut), None);
        let pay = Ack {
            kind: AckKind::Paid,
            ..ok(1, 11)
        };
        let ledger = Ledger::of(&[ok(1, 11), pay]);
        assert_eq!(ledger.ok, 1);
        assert!(ledger.problems.is_empty(), "{:?}", ledger.problems);
    }

    #[test]
    fn a_clean_sale_passes() {
        let acks = [ok(1, 11), ok(2, 12), again(1, 11), ok(3, 13), again(2, 12)];
        let ledger = Ledger::of(&acks);
        assert_eq!(ledger.ok, 3);
        assert_eq!(ledger.holders.len(), 3);
        assert!(ledger.problems.is_empty());
        assert!(check_sold(&ledger, 5, 2, 0, None).is_empty());
        let rows = [(3, 13), (1, 11), (2, 12)];
        assert!(check_store("mysql", &ledger, 3, &rows).is_empty());
    }

    #[test]
    fn two_numbers_for_one_user_and_one_number_for_two_users_are_caught() {
        let ledger = Ledger::of(&[ok(1, 11), again(1, 99), ok(2, 11), ok(3, 13), ok(3, 13)]);
        let text = ledger.problems.join("\n");
        assert!(
            text.contains("user 1 was told two order numbers, 11 and 99"),
            "{text}"
        );
        assert!(
            text.contains("order 11 was given to two users, 1 and 2"),
            "{text}"
        );
        assert!(text.contains("user 3 was told ok more than once"), "{text}");
    }

    #[test]
    fn overselling_and_lost_orders_are_caught() {
        let ledger = Ledger::of(&[ok(1, 11), ok(2, 12), ok(3, 13)]);
        let over = check_sold(&ledger, 2, 0, 0, None);
        assert!(over.iter().any(|p| p.starts_with("oversold")), "{over:?}");
        let lost = check_sold(&ledger, 10, 6, 0, None);
        assert_eq!(
            lost,
            ["4 units sold but only 3 ok replies: 1 units went without an ok"]
        );
        // With two BUYs of unknown outcome, one unit more than acknowledged
        // is possible; three are not.
        assert!(check_sold(&ledger, 10, 6, 2, None).is_empty());
        assert_eq!(check_sold(&ledger, 10, 4, 2, None).len(), 1);
    }

    #[test]
    fn already_bought_without_ok_needs_a_lost_reply() {
        let ledger = Ledger::of(&[ok(1, 11), again(2, 12)]);
        assert_eq!(check_sold(&ledger, 5, 3, 0, None).len(), 2);
        assert!(check_sold(&ledger, 5, 3, 1, None).is_empty());
    }

    #[test]
    fn the_orders_of_lost_buys_make_the_count_exact() {
        // Three told ok; two BUYs lost, whose users now hold one order.
        let ledger = Ledger::of(&[ok(1, 11), ok(2, 12), ok(3, 13)]);
        assert!(check_sold(&ledger, 10, 6, 2, Some(1)).is_empty());
        // An order nobody knows of: within the margin, not with the count.
        assert!(check_sold(&ledger, 10, 5, 2, None).is_empty());
        let short = check_sold(&ledger, 10, 5, 2, Some(1));
        assert_eq!(
            short,
            ["5 units sold but only 4 ok replies: 1 units went without an ok"]
        );
        // More orders than units sold, which the margin would not see.
        let over = check_sold(&ledger, 10, 6, 2, Some(2));
        assert!(over.iter().any(|p| p.starts_with("oversold")), "{over:?}");
        // A user told only already_bought, whose ok was lost: their order
        // is one the lost BUY made.
        let ledger = Ledger::of(&[ok(1, 11), again(2, 12)]);
        assert!(check_sold(&ledger, 5, 3, 1, Some(1)).is_empty());
        assert_eq!(ledger.told_ok.len(), 1);
    }

    #[test]
    fn the_store_must_hold_exactly_the_acknowledged_orders() {
        let ledger = Ledger::of(&[ok(1, 11), ok(2, 12)]);
        let missing = check_store("mysql", &ledger, 2, &[(1, 11)]);
        assert_eq!(missing.len(), 2, "{missing:?}");
        assert!(missing[1].contains("order 12 of user 2 is missing"));
        let twice = check_store("mysql", &ledger, 2, &[(1, 11), (2, 12), (2, 13)]);
        assert!(
            twice
                .iter()
                .any(|p| p.contains("user 2 holds two live orders")),
            "{twice:?}"
        );
        let swapped = check_store("redis", &ledger, 2, &[(2, 11), (1, 12)]);
        assert!(
            swapped.iter().any(|p| p.contains("is held by user 2")),
            "{swapped:?}"
        );
    }

    #[test]
    fn order_status_must_show_the_acknowledged_order() {
        let order = Order {
            order_no: 11,
            user_id: 1,
            goods_id: 5,
            state: OrderState::Created,
            created_ms: 0,
            pay_by_ms: 0,
        };
        assert_eq!(
            check_order_reply(5, 1, 11, &Reply::Order(order.clone())),
            None
        );
        assert!(check_order_reply(5, 1, 12, &Reply::Order(order.clone())).is_some());
        let cancelled = Order {
            state: OrderState::Cancelled,
            ..order
        };
        assert!(check_order_reply(5, 1, 11, &Reply::Order(cancelled)).is_some());
        let none = Reply::error(seckill_proto::Status::NoOrder, "none");
        assert!(check_order_reply(5, 1, 11, &none)
            .unwrap()
            .contains("no_order"));
    }

    #[test]
    fn only_the_first_problems_are_listed() {
        let mut v = Verification::default();
        v.conclude((0..50).map(|i| i.to_string()).collect());
        assert!(!v.passed);
        assert_eq!(v.problem_count, 50);
        assert_eq!(v.problems.len(), MAX_LISTED);
    }
}
