//! The lifecycle scenario: orders that are paid, cancelled or left to
//! expire, and units that come back on sale exactly once.
//!
//! ```text
//!   ADD_GOODS (--stock, --pay-window)
//!     │
//!     ├─ 1. buy:    engine::run, each of --users BUYs once ─▶ acks: order numbers, when told
//!     ├─ 2. settle: fates.rs gives each order a fate (cancel, never pay, pay early,
//!     │             pay at the window's end) and an instant; engine::run sends each
//!     │             PAY / CANCEL once due (workload::Timed), timed from that instant
//!     ├─ 3. wait:   until the last window has closed and one sweep interval passed
//!     ├─ 4. verify: LIST_ORDERS of every user (again until none is created, up to
//!     │             --verify-timeout), GET_GOODS, MySQL ─▶ verify.rs
//!     └─ 5. rebuy:  the users without a paid order BUY once more: the returned units sell
//!
//!   report.rs: the three runs' reports, the plan and the answers, the verdict
//! ```

mod fates;
mod report;
mod verify;

use std::collections::{HashMap, HashSet};
use std::io::{IsTerminal, Write as _};
use std::net::SocketAddr;
use std::thread;
use std::time::{Duration, Instant};

use seckill_client::{Order, OrderState, SaleRules};

pub use fates::{Fate, Planned, Shares};
pub use report::{LifecycleReport, Tally};
pub use verify::{LifecycleVerification, RebuyCheck, StoreOrders};

use crate::checks;
use crate::cli::{self, Common};
use crate::engine::{self, Pace, Plan, Target};
use crate::error::Error;
use crate::report::{GoodsInfo, Output, Report};
use crate::scenario::{add_goods_with, admin_token, header, joined, plan, resolve_all};
use crate::servers;
use crate::users::UserPicker;
use crate::verify::{AckKind, Ledger};
use crate::workload::{Buyers, FlashCrowd, Timed};
use verify::Listing;

/// Each user's orders of the goods, as LIST_ORDERS shows them.
type Listed = HashMap<u64, Vec<Order>>;

/// Tries again of a PAY or CANCEL answered `busy`: 20 ms, 40 ms, ...
/// apart, about a second in all.
const RETRY_BUSY: u32 = 10;
/// Between two listings while orders are still created.
const POLL: Duration = Duration::from_millis(100);

/// What the rounds share.
struct Sale<'a> {
    common: &'a Common,
    args: &'a cli::Lifecycle,
    /// The servers of the sale; the connections are spread over them.
    addrs: Vec<SocketAddr>,
    target: Target,
    goods: u64,
    users: Vec<u64>,
}

/// Runs the rounds and verifies them.
pub fn run(common: &Common, args: &cli::Lifecycle) -> Result<Output, Error> {
    let shares = Shares::new(args.cancel_share, args.abandon_share, args.late_share)?;
    let pay_window_ms = u64::try_from(args.pay_window.as_millis()).unwrap_or(u64::MAX);
    if pay_window_ms == 0 {
        return Err(Error::Setup("--pay-window must be 1 ms or more".into()));
    }
    let addrs = resolve_all(&common.addr)?;
    if addrs.is_empty() {
        return Err(Error::Setup("--addr names no server".into()));
    }
    let token = admin_token(common, "lifecycle")?;
    let rules = SaleRules {
        per_user_limit: 1,
        pay_window_ms,
        token_required: false,
    };
    let goods = add_goods_with(common, token, "lifecycle", args.stock, rules)?;
    servers::await_goods(&addrs, goods.id)?;
    let sale = Sale {
        common,
        args,
        target: Target::Seckill {
            addrs: addrs.clone(),
            request_ids: crate::scenario::request_ids(common)?,
        },
        addrs,
        goods: goods.id,
        users: (0..args.users.max(1))
            .map(|i| args.first_user + i)
            .collect(),
    };

    let buy_plan = plan(common, None, true);
    let picker = UserPicker::new(args.users, args.first_user, common.seed);
    let bought = engine::run(
        &buy_plan,
        &sale.target,
        &FlashCrowd::new(goods.id, picker, args.users.max(1)),
    );
    let planned = fates::plan(&bought.acks, &shares, args.pay_window, common.seed);

    // PAYs and CANCELs keep to their instants whatever --rate says.
    let settle_plan = Plan {
        pace: Pace::Closed {
            pipeline: match buy_plan.pace {
                Pace::Closed { pipeline } => pipeline,
                Pace::Open { max_in_flight, .. } => max_in_flight,
            },
        },
        // A PAY or CANCEL answered busy (an order not yet written) is
        // tried again, as a buyer would.
        retry_busy: RETRY_BUSY,
        ..buy_plan.clone()
    };
    let timed = Timed::new(planned.iter().filter_map(Planned::request).collect());
    let settled = engine::run(&settle_plan, &sale.target, &timed);
    let answers: HashMap<u64, AckKind> =
        settled.acks.iter().map(|a| (a.order_no, a.kind)).collect();

    let mut settle = sale.report(&settle_plan, "lifecycle pay+cancel", &settled);
    // Timed from each request's instant, not from its send.
    settle.pace.latency_from = "schedule".into();
    let mut report = LifecycleReport {
        scenario: "lifecycle".into(),
        addr: joined(&sale.addrs),
        goods: GoodsInfo {
            id: goods.id,
            stock: args.stock,
        },
        pay_window_ms,
        expiry_interval_ms: args.expiry_interval.as_millis() as u64,
        shares,
        buy: sale.report(&buy_plan, "lifecycle buy", &bought),
        settle,
        rebuy: None,
        orders: Tally::of(&planned, |order_no| answers.get(&order_no).copied()),
        verification: LifecycleVerification::default(),
    };

    let last_window = planned.iter().map(|p| p.ordered_at).max();
    if let Some(last) = last_window {
        sale.wait_for_the_sweep(last + args.pay_window + args.expiry_interval);
    }
    let mut v = LifecycleVerification {
        unknown_buys: bought.recorder.outcomes.lost,
        ..LifecycleVerification::default()
    };
    let mut problems = Ledger::of(&bought.acks).problems;
    match sale.verify(&planned, &answers, &mut v) {
        Ok((found, listed)) => {
            problems.extend(found);
            if !args.no_rebuy {
                match sale.rebuy(&buy_plan, &listed, v.remaining) {
                    Ok((round, check, found)) => {
                        report.rebuy = Some(round);
                        v.rebuy = Some(check);
                        problems.extend(found);
                    }
                    Err(e) => problems.push(format!("could not run the second round: {e}")),
                }
            }
        }
        Err(e) => problems.push(format!("could not verify: {e}")),
    }
    v.conclude(problems);
    report.verification = v;
    Ok(Output::Lifecycle(Box::new(report)))
}

impl Sale<'_> {
    fn report(&self, plan: &Plan, scenario: &'static str, finished: &engine::Finished) -> Report {
        let header = header(self.common, plan, scenario, "server", joined(&self.addrs));
        let mut report = Report::new(header, finished);
        report.goods = Some(GoodsInfo {
            id: self.goods,
            stock: self.args.stock,
        });
        report
    }

    /// Sleeps until `until`, saying so on a terminal.
    fn wait_for_the_sweep(&self, until: Instant) {
        let wait = until.saturating_duration_since(Instant::now());
        if wait.is_zero() {
            return;
        }
        if std::io::stderr().is_terminal() {
            let _ = writeln!(
                std::io::stderr(),
                "[wait] {:.1} s for the last payment window and one expiry sweep",
                wait.as_secs_f64()
            );
        }
        thread::sleep(wait);
    }

    /// Lists every user's orders until none is created (or the timeout),
    /// then checks them, the units and MySQL. Fills `v`; returns the
    /// problems and the listing.
    fn verify(
        &self,
        planned: &[Planned],
        answers: &HashMap<u64, AckKind>,
        v: &mut LifecycleVerification,
    ) -> Result<(Vec<String>, Listed), Error> {
        let begun = Instant::now();
        let listed = loop {
            let listed_at = Instant::now();
            // Past every payment window all orders are written, so one
            // server lists them all.
            let listed = checks::list_orders(self.addrs[0], self.goods, &self.users)?;
            let created = listed.values().flatten();
            let created = created.filter(|o| o.state == OrderState::Created).count();
            if created == 0 || begun.elapsed() >= self.args.verify_timeout {
                v.settle_wait_ms = (listed_at - begun).as_millis() as u64;
                break listed;
            }
            thread::sleep(POLL);
        };
        let settled = self.settled()?;
        let (after, disagreement) = (settled.goods, settled.problems);
        let listing = Listing::of(&listed);
        v.total = after.total;
        v.remaining = after.remaining;
        v.users_listed = listed.len() as u64;
        v.orders_listed = listing.orders.len() as u64;
        v.paid = listing.count(OrderState::Paid);
        v.cancelled = listing.count(OrderState::Cancelled);
        v.still_created = listing.count(OrderState::Created);
        let announced: HashSet<u64> = planned.iter().map(|p| p.order_no).collect();
        v.unacknowledged_orders = listing
            .orders
            .keys()
            .filter(|o| !announced.contains(o))
            .count() as u64;
        let mut problems = verify::check_orders(planned, answers, &listing, v.unknown_buys);
        problems.extend(disagreement);
        problems.extend(verify::check_units(
            "server",
            after.total,
            after.remaining,
            v.paid,
        ));
        if let Some(url) = &self.args.mysql {
            let rows = checks::mysql_orders(url, self.goods)?;
            let (store, found) = verify::check_rows(&rows, &listing, after.total, after.remaining);
            v.store = Some(store);
            problems.extend(found);
        }
        Ok((problems, listed))
    }

    /// Round two: every user without a paid order BUYs once more, and the
    /// units that came back (`returned`) must sell.
    fn rebuy(
        &self,
        plan: &Plan,
        listed: &Listed,
        returned: u32,
    ) -> Result<(Report, RebuyCheck, Vec<String>), Error> {
        let holds = |user: &u64, state| {
            listed
                .get(user)
                .is_some_and(|orders| orders.iter().any(|o| o.state == state))
        };
        let buyers: Vec<u64> = self
            .users
            .iter()
            .copied()
            .filter(|u| !holds(u, OrderState::Paid))
            .collect();
        let begun = Instant::now();
        let workload = Buyers::new(self.goods, buyers.clone(), self.common.seed ^ 2);
        let round = engine::run(plan, &self.target, &workload);
        let settled = self.settled()?;
        let (after, disagreement) = (settled.goods, settled.problems);
        // No order of this round had expired when the servers first showed
        // the figure they settled on (an expiry since would have moved it).
        let exact = settled.since.duration_since(begun) < self.args.pay_window;
        let ledger = Ledger::of(&round.acks);
        let check = RebuyCheck {
            buyers: buyers.len() as u64,
            returned,
            sold: ledger.ok,
            sold_to_returning: round
                .acks
                .iter()
                .filter(|a| a.kind == AckKind::Ok && holds(&a.user, OrderState::Cancelled))
                .count() as u64,
            remaining_after: after.remaining,
            unknown: round.recorder.outcomes.lost,
            exact,
        };
        let mut problems = ledger.problems.clone();
        problems.extend(disagreement);
        problems.extend(verify::check_rebuy(&check));
        Ok((
            self.report(plan, "lifecycle rebuy", &round),
            check,
            problems,
        ))
    }

    /// The goods once every server shows the same units left.
    fn settled(&self) -> Result<servers::Settled, Error> {
        servers::settled_goods(&self.addrs, self.goods, self.args.verify_timeout)
    }
}
