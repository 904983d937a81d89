//! The checks after the payment windows, as pure functions of what the
//! bench did, what it was told and what the server shows.
//!
//! The rules: every order ends exactly paid or cancelled, never still
//! created, and listed once under its buyer; a PAY answered `ok` left it
//! paid, a PAY answered `order_cancelled` or a CANCEL answered `ok` left it
//! cancelled, and an order the bench never paid is cancelled (by its buyer
//! or by the expiry sweep); every unit is paid or back on sale (paid +
//! remaining = total), in MySQL too. Then the units that came back sell
//! again.

use std::collections::HashMap;

use seckill_proto::{Order, OrderState};
use serde::Serialize;

use super::fates::{Fate, Planned};
use crate::checks::OrderRow;
use crate::verify::{verdict, AckKind};

/// Every order of the goods LIST_ORDERS showed, by number.
#[derive(Debug, Clone, Default)]
pub struct Listing {
    /// Order number → (user, state).
    pub orders: HashMap<u64, (u64, OrderState)>,
    /// Orders listed twice or under two users.
    pub problems: Vec<String>,
}

impl Listing {
    /// `listed`: each user's orders of the goods.
    pub fn of(listed: &HashMap<u64, Vec<Order>>) -> Listing {
        let mut listing = Listing::default();
        for (&user, orders) in listed {
            for o in orders {
                if o.user_id != user {
                    listing.problems.push(format!(
                        "LIST_ORDERS of user {user} shows order {} of user {}",
                        o.order_no, o.user_id
                    ));
                }
                if let Some((other, state)) = listing.orders.insert(o.order_no, (user, o.state)) {
                    listing.problems.push(format!(
                        "order {} is listed twice: user {other} ({}) and user {user} ({})",
                        o.order_no,
                        state.as_str(),
                        o.state.as_str()
                    ));
                }
            }
        }
        listing
    }

    pub fn count(&self, state: OrderState) -> u64 {
        self.orders.values().filter(|(_, s)| *s == state).count() as u64
    }
}

/// Each planned order against its final state and the answer its PAY or
/// CANCEL got (`answers`, by order number; none: no reply that settled it).
/// `unknown_buys`: BUYs of the round whose reply was lost, each of which
/// may have made an order the bench never heard of.
pub fn check_orders(
    planned: &[Planned],
    answers: &HashMap<u64, AckKind>,
    listing: &Listing,
    unknown_buys: u64,
) -> Vec<String> {
    let mut problems = listing.problems.clone();
    let mut known = HashMap::with_capacity(planned.len());
    for p in planned {
        known.insert(p.order_no, p.user);
        let answer = answers.get(&p.order_no).copied();
        let what = format!(
            "order {} of user {} ({})",
            p.order_no,
            p.user,
            p.fate.name()
        );
        if answer == Some(AckKind::CancelRefused) {
            problems.push(format!(
                "{what}: CANCEL answered order_paid, but nobody paid it"
            ));
        }
        let state = match listing.orders.get(&p.order_no) {
            None => {
                problems.push(format!("{what} is missing from LIST_ORDERS"));
                continue;
            }
            Some(&(user, _)) if user != p.user => {
                problems.push(format!("{what} is listed under user {user}"));
                continue;
            }
            Some(&(_, state)) => state,
        };
        let expected = match (answer, p.fate) {
            (Some(AckKind::Paid), _) => Some(OrderState::Paid),
            (Some(AckKind::PayRefused | AckKind::Cancelled), _) => Some(OrderState::Cancelled),
            // A PAY with no settling answer (busy, an error, lost): either.
            (_, Fate::Pay | Fate::PayLate) => None,
            (_, Fate::Cancel | Fate::Abandon) => Some(OrderState::Cancelled),
        };
        match (state, expected) {
            (OrderState::Created, _) => problems.push(format!(
                "{what} is still created after its payment window and the expiry sweep"
            )),
            (state, Some(want)) if state != want => {
                let told = match answer {
                    Some(AckKind::Paid) => "PAY answered ok",
                    Some(AckKind::PayRefused) => "PAY answered order_cancelled",
                    Some(AckKind::Cancelled) => "CANCEL answered ok",
                    _ => "the bench never paid it",
                };
                problems.push(format!("{what} is {}, but {told}", state.as_str()));
            }
            _ => {}
        }
    }
    let mut unacknowledged = 0;
    for (&order_no, &(user, state)) in &listing.orders {
        if known.contains_key(&order_no) {
            continue;
        }
        unacknowledged += 1;
        // Its BUY reply was lost: nobody paid it.
        if state != OrderState::Cancelled {
            problems.push(format!(
                "order {order_no} of user {user}, which no BUY reply announced, is {}",
                state.as_str()
            ));
        }
    }
    if unacknowledged > unknown_buys {
        problems.push(format!(
            "{unacknowledged} orders that no BUY reply announced, but only {unknown_buys} BUY replies were lost"
        ));
    }
    problems
}

/// Every unit is paid or back on sale.
pub fn check_units(store: &str, total: u32, remaining: u32, paid: u64) -> Option<String> {
    let back = paid + u64::from(remaining);
    (back != u64::from(total)).then(|| {
        format!(
            "{store}: {paid} paid orders + {remaining} units left = {back}, not the {total} units"
        )
    })
}

/// What MySQL holds of the goods' orders.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct StoreOrders {
    pub name: String,
    pub rows: u64,
    pub paid: u64,
    pub cancelled: u64,
}

/// The goods' rows in MySQL against LIST_ORDERS: the same orders in the
/// same states under the same users, each paid or cancelled, a live slot
/// held by the paid ones only, and paid + remaining = total.
pub fn check_rows(
    rows: &[OrderRow],
    listing: &Listing,
    total: u32,
    remaining: u32,
) -> (StoreOrders, Vec<String>) {
    let mut problems = Vec::new();
    let mut seen = HashMap::with_capacity(rows.len());
    let mut tally = StoreOrders {
        name: "mysql".into(),
        rows: rows.len() as u64,
        ..StoreOrders::default()
    };
    for r in rows {
        let state = match r.state {
            1 => OrderState::Paid,
            2 => OrderState::Cancelled,
            0 => {
                problems.push(format!("mysql: order {} is still created", r.order_no));
                OrderState::Created
            }
            other => {
                problems.push(format!("mysql: order {} has state {other}", r.order_no));
                continue;
            }
        };
        match state {
            OrderState::Paid => tally.paid += 1,
            OrderState::Cancelled => tally.cancelled += 1,
            OrderState::Created => {}
        }
        let holds = state != OrderState::Cancelled;
        if r.live != holds {
            problems.push(format!(
                "mysql: order {} is {} but its live_slot is {}",
                r.order_no,
                state.as_str(),
                if r.live { "set" } else { "NULL" }
            ));
        }
        if seen.insert(r.order_no, ()).is_some() {
            problems.push(format!("mysql: order {} is stored twice", r.order_no));
        }
        match listing.orders.get(&r.order_no) {
            None => problems.push(format!(
                "mysql: order {} of user {} is not in LIST_ORDERS",
                r.order_no, r.user_id
            )),
            Some(&(user, listed)) if user != r.user_id || listed != state => {
                problems.push(format!(
                    "mysql: order {} is user {}'s and {}, LIST_ORDERS says user {user}'s and {}",
                    r.order_no,
                    r.user_id,
                    state.as_str(),
                    listed.as_str()
                ))
            }
            Some(_) => {}
        }
    }
    for (order_no, (user, _)) in &listing.orders {
        if !seen.contains_key(order_no) {
            problems.push(format!("mysql: order {order_no} of user {user} is missing"));
        }
    }
    problems.extend(check_units("mysql", total, remaining, tally.paid));
    (tally, problems)
}

/// The second round: the users left without a paid order buy the units
/// that came back.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct RebuyCheck {
    /// Users who tried, each once.
    pub buyers: u64,
    /// Units on sale when the round began.
    pub returned: u32,
    /// `ok` replies.
    pub sold: u64,
    /// Of those, to users whose order of the first round was cancelled.
    pub sold_to_returning: u64,
    pub remaining_after: u32,
    /// BUYs whose reply was lost.
    pub unknown: u64,
    /// The round ended before any of its orders could expire, so the units
    /// left are exactly those not sold.
    pub exact: bool,
}

/// Every returned unit sold (as many as there were buyers for), none twice.
pub fn check_rebuy(r: &RebuyCheck) -> Vec<String> {
    let mut problems = Vec::new();
    let want = u64::from(r.returned).min(r.buyers);
    if r.sold + r.unknown < want {
        problems.push(format!(
            "rebuy: {} of {} users were sold one of the {} returned units ({} replies lost)",
            r.sold, r.buyers, r.returned, r.unknown
        ));
    }
    if !r.exact {
        return problems;
    }
    let Some(taken) = r.returned.checked_sub(r.remaining_after) else {
        problems.push(format!(
            "rebuy: {} units left after the round, {} before",
            r.remaining_after, r.returned
        ));
        return problems;
    };
    let taken = u64::from(taken);
    if r.sold > taken {
        problems.push(format!(
            "rebuy: oversold: {} ok replies but only {taken} units taken",
            r.sold
        ));
    } else if taken > r.sold + r.unknown {
        problems.push(format!(
            "rebuy: {taken} units taken but only {} ok replies and {} BUYs of unknown outcome",
            r.sold, r.unknown
        ));
    }
    problems
}

/// The verification part of a lifecycle report.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct LifecycleVerification {
    pub passed: bool,
    pub total: u32,
    /// GET_GOODS once every order settled, before the second round.
    pub remaining: u32,
    pub users_listed: u64,
    /// Orders of the goods LIST_ORDERS showed.
    pub orders_listed: u64,
    pub paid: u64,
    pub cancelled: u64,
    pub still_created: u64,
    /// Listed orders that no BUY reply announced (their reply was lost).
    pub unacknowledged_orders: u64,
    /// BUYs of the first round whose reply was lost.
    pub unknown_buys: u64,
    /// How long past the last window and one sweep interval until no order
    /// was left created.
    pub settle_wait_ms: u64,
    pub store: Option<StoreOrders>,
    pub rebuy: Option<RebuyCheck>,
    /// The first [`MAX_LISTED`](crate::verify::MAX_LISTED) problems.
    pub problems: Vec<String>,
    pub problem_count: usize,
}

impl LifecycleVerification {
    /// Sets the problems (listing the first few) and whether it passed.
    pub fn conclude(&mut self, problems: Vec<String>) {
        (self.passed, self.problem_count, self.problems) = verdict(problems);
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;

    fn planned(user: u64, fate: Fate) -> Planned {
        Planned {
            user,
            order_no: 100 + user,
            ordered_at: Instant::now(),
            fate,
            due: None,
        }
    }

    fn order(user: u64, order_no: u64, state: OrderState) -> Order {
        Order {
            order_no,
            user_id: user,
            goods_id: 7,
            state,
            created_ms: 0,
            pay_by_ms: 0,
        }
    }

    fn listed(orders: &[(u64, u64, OrderState)]) -> HashMap<u64, Vec<Order>> {
        let mut listed: HashMap<u64, Vec<Order>> = HashMap::new();
        for &(user, order_no, state) in orders {
            listed
                .entry(user)
                .or_default()
                .push(order(user, order_no, state));
        }
        listed
    }

    /// Four orders, one of each fate; the late PAY came too late.
    fn sale() -> (Vec<Planned>, HashMap<u64, AckKind>) {
        let planned = vec![
            planned(1, Fate::Pay),
            planned(2, Fate::PayLate),
            planned(3, Fate::Cancel),
            planned(4, Fate::Abandon),
        ];
        let answers = HashMap::from([
            (101, AckKind::Paid),
            (102, AckKind::PayRefused),
            (103, AckKind::Cancelled),
        ]);
        (planned, answers)
    }

    #[test]
    fn a_clean_lifecycle_passes() {
        let (planned, answers) = sale();
        let listing = Listing::of(&listed(&[
            (1, 101, OrderState::Paid),
            (2, 102, OrderState::Cancelled),
            (3, 103, OrderState::Cancelled),
            (4, 104, OrderState::Cancelled),
        ]));
        assert_eq!(listing.count(OrderState::Paid), 1);
        assert!(check_orders(&planned, &answers, &listing, 0).is_empty());
        assert_eq!(check_units("server", 10, 9, 1), None);
        assert!(check_units("server", 10, 8, 1).is_some());
    }

    #[test]
    fn states_that_contradict_the_answers_are_caught() {
        let (planned, answers) = sale();
        let listing = Listing::of(&listed(&[
            (1, 101, OrderState::Cancelled),
            (2, 102, OrderState::Paid),
            (3, 103, OrderState::Created),
        ]));
        let problems = check_orders(&planned, &answers, &listing, 0);
        let text = problems.join("\n");
        assert_eq!(problems.len(), 4, "{text}");
        assert!(text.contains("order 101 of user 1 (paid) is cancelled, but PAY answered ok"));
        assert!(text.contains("is paid, but PAY answered order_cancelled"));
        assert!(text.contains("order 103 of user 3 (cancelled by its buyer) is still created"));
        assert!(text.contains("order 104 of user 4 (never paid) is missing"));
    }

    #[test]
    fn an_abandoned_order_must_be_cancelled_and_a_pay_unanswered_may_go_either_way() {
        let planned = vec![planned(1, Fate::Pay), planned(2, Fate::Abandon)];
        let answers = HashMap::from([(102, AckKind::CancelRefused)]);
        let listing = Listing::of(&listed(&[
            (1, 101, OrderState::Cancelled),
            (2, 102, OrderState::Paid),
        ]));
        let problems = check_orders(&planned, &answers, &listing, 0);
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(problems[0].contains("CANCEL answered order_paid, but nobody paid it"));
        assert!(problems[1].contains("is paid, but the bench never paid it"));
    }

    #[test]
    fn orders_nobody_announced_need_lost_replies_and_must_be_cancelled() {
        let planned = vec![planned(1, Fate::Abandon)];
        let listing = Listing::of(&listed(&[
            (1, 101, OrderState::Cancelled),
            (5, 555, OrderState::Cancelled),
            (6, 666, OrderState::Paid),
        ]));
        let problems = check_orders(&planned, &HashMap::new(), &listing, 1);
        let text = problems.join("\n");
        assert_eq!(problems.len(), 2, "{text}");
        assert!(text.contains("order 666 of user 6, which no BUY reply announced, is paid"));
        assert!(text.contains("2 orders that no BUY reply announced, but only 1"));
        assert_eq!(
            check_orders(&planned, &HashMap::new(), &listing, 2).len(),
            1
        );
    }

    #[test]
    fn an_order_listed_twice_is_caught() {
        let listing = Listing::of(&listed(&[
            (1, 101, OrderState::Paid),
            (2, 101, OrderState::Cancelled),
        ]));
        assert_eq!(listing.problems.len(), 1);
        assert!(listing.problems[0].contains("order 101 is listed twice"));
    }

    #[test]
    fn mysql_must_agree_with_the_listing_and_the_stock() {
        let listing = Listing::of(&listed(&[
            (1, 101, OrderState::Paid),
            (2, 102, OrderState::Cancelled),
        ]));
        let row = |order_no, user_id, state, live| OrderRow {
            order_no,
            user_id,
            state,
            live,
        };
        let good = [row(101, 1, 1, true), row(102, 2, 2, false)];
        let (tally, problems) = check_rows(&good, &listing, 5, 4);
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!((tally.rows, tally.paid, tally.cancelled), (2, 1, 1));

        let bad = [row(101, 1, 2, true), row(103, 3, 0, true)];
        let (_, problems) = check_rows(&bad, &listing, 5, 4);
        let text = problems.join("\n");
        assert!(
            text.contains("order 101 is cancelled but its live_slot is set"),
            "{text}"
        );
        assert!(
            text.contains("LIST_ORDERS says user 1's and paid"),
            "{text}"
        );
        assert!(text.contains("order 103 is still created"), "{text}");
        assert!(
            text.contains("order 103 of user 3 is not in LIST_ORDERS"),
            "{text}"
        );
        assert!(text.contains("order 102 of user 2 is missing"), "{text}");
        assert!(
            text.contains("0 paid orders + 4 units left = 4, not the 5"),
            "{text}"
        );
    }

    #[test]
    fn the_returned_units_must_sell_once_each() {
        let round = RebuyCheck {
            buyers: 100,
            returned: 40,
            sold: 40,
            sold_to_returning: 12,
            remaining_after: 0,
            unknown: 0,
            exact: true,
        };
        assert!(check_rebuy(&round).is_empty());
        let unsold = RebuyCheck {
            sold: 30,
            remaining_after: 10,
            ..round.clone()
        };
        assert_eq!(check_rebuy(&unsold).len(), 1);
        let oversold = RebuyCheck {
            sold: 41,
            ..round.clone()
        };
        assert!(check_rebuy(&oversold)[0].contains("oversold"));
        let few_buyers = RebuyCheck {
            buyers: 10,
            sold: 10,
            remaining_after: 30,
            ..round
        };
        assert!(check_rebuy(&few_buyers).is_empty());
    }
}
