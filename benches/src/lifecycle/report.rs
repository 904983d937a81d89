//! The lifecycle run's report: the report of each round, what was planned
//! and answered, and the verdict; as text for people or one JSON object.

use std::fmt::Write as _;

use serde::Serialize;

use super::fates::{Fate, Planned, Shares};
use super::verify::LifecycleVerification;
use crate::report::{GoodsInfo, Report};
use crate::verify::AckKind;

/// The whole run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LifecycleReport {
    pub scenario: String,
    pub addr: String,
    pub goods: GoodsInfo,
    pub pay_window_ms: u64,
    /// The server's sweep interval, as the bench was told it.
    pub expiry_interval_ms: u64,
    pub shares: Shares,
    /// Round one: each user BUYs once.
    pub buy: Report,
    /// PAY and CANCEL, each sent at its instant and timed from it.
    pub settle: Report,
    /// Round two (unless --no-rebuy): the users left without a paid order
    /// BUY the units that came back.
    pub rebuy: Option<Report>,
    pub orders: Tally,
    pub verification: LifecycleVerification,
}

/// The orders of round one: what the bench meant to do with them and what
/// it was told.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Tally {
    /// BUY `ok` replies: new orders.
    pub orders: u64,
    pub to_pay: u64,
    /// Of `to_pay`, paid at the window's end.
    pub to_pay_late: u64,
    pub to_cancel: u64,
    pub never_paid: u64,
    /// PAY `ok`.
    pub paid: u64,
    /// PAY `order_cancelled`: too late.
    pub pay_refused: u64,
    /// Of the late PAYs, answered `ok` and `order_cancelled`: how the race
    /// with the expiry sweep went.
    pub late_paid: u64,
    pub late_refused: u64,
    /// CANCEL `ok`.
    pub cancelled: u64,
    /// CANCEL `order_paid`.
    pub cancel_refused: u64,
    /// PAYs and CANCELs with no reply that settled their order (busy
    /// every try, an error, lost).
    pub unsettled: u64,
}

impl Tally {
    pub fn of(planned: &[Planned], answer: impl Fn(u64) -> Option<AckKind>) -> Tally {
        let mut t = Tally {
            orders: planned.len() as u64,
            ..Tally::default()
        };
        for p in planned {
            let late = p.fate == Fate::PayLate;
            match p.fate {
                Fate::Pay | Fate::PayLate => t.to_pay += 1,
                Fate::Cancel => t.to_cancel += 1,
                Fate::Abandon => t.never_paid += 1,
            }
            t.to_pay_late += u64::from(late);
            match answer(p.order_no) {
                Some(AckKind::Paid) => {
                    t.paid += 1;
                    t.late_paid += u64::from(late);
                }
                Some(AckKind::PayRefused) => {
                    t.pay_refused += 1;
                    t.late_refused += u64::from(late);
                }
                Some(AckKind::Cancelled) => t.cancelled += 1,
                Some(AckKind::CancelRefused) => t.cancel_refused += 1,
                _ if p.fate != Fate::Abandon => t.unsettled += 1,
                _ => {}
            }
        }
        t
    }
}

impl LifecycleReport {
    pub fn passed(&self) -> bool {
        self.verification.passed
    }

    pub fn reports(&self) -> Vec<&Report> {
        let mut all = vec![&self.buy, &self.settle];
        all.extend(&self.rebuy);
        all
    }

    /// The report for people.
    pub fn text(&self) -> String {
        let mut s = String::new();
        for r in self.reports() {
            s.push_str(&r.text());
        }
        let t = &self.orders;
        let _ = writeln!(
            s,
            "lifecycle of goods {} ({} units, pay window {} ms, sweep every {} ms): {} orders",
            self.goods.id, self.goods.stock, self.pay_window_ms, self.expiry_interval_ms, t.orders
        );
        let _ = writeln!(
            s,
            "  plan: {} to pay ({} at the window's end), {} to cancel, {} never paid",
            t.to_pay, t.to_pay_late, t.to_cancel, t.never_paid
        );
        let _ = writeln!(
            s,
            "  answers: PAY ok {} / order_cancelled {} (at the window's end: {} / {}), CANCEL ok {} / order_paid {}, unsettled {}",
            t.paid, t.pay_refused, t.late_paid, t.late_refused, t.cancelled, t.cancel_refused, t.unsettled
        );
        let v = &self.verification;
        let verdict = if v.passed { "passed" } else { "FAILED" };
        let _ = write!(
            s,
            "  verification {verdict}: {} paid + {} left of {} units; {} users listed: {} orders, {} paid, {} cancelled, {} still created, {} never announced ({} BUY replies lost); settled {} ms after the last window + one sweep interval",
            v.paid,
            v.remaining,
            v.total,
            v.users_listed,
            v.orders_listed,
            v.paid,
            v.cancelled,
            v.still_created,
            v.unacknowledged_orders,
            v.unknown_buys,
            v.settle_wait_ms
        );
        if let Some(store) = &v.store {
            let _ = write!(
                s,
                "; {}: {} orders, {} paid, {} cancelled",
                store.name, store.rows, store.paid, store.cancelled
            );
        }
        s.push('\n');
        if let Some(r) = &v.rebuy {
            let _ = writeln!(
                s,
                "  rebuy: {} users without a paid order, {} units back on sale: {} sold ({} to users whose order was cancelled), {} left{}",
                r.buyers,
                r.returned,
                r.sold,
                r.sold_to_returning,
                r.remaining_after,
                if r.exact { "" } else { " (the round outlasted the window: counts not exact)" }
            );
        }
        for p in &v.problems {
            let _ = writeln!(s, "    - {p}");
        }
        if v.problem_count > v.problems.len() {
            let _ = writeln!(s, "    … and {} more", v.problem_count - v.problems.len());
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;

    #[test]
    fn the_tally_counts_plans_and_answers() {
        let at = Instant::now();
        let p = |user, fate| Planned {
            user,
            order_no: user,
            ordered_at: at,
            fate,
            due: None,
        };
        let planned = [
            p(1, Fate::Pay),
            p(2, Fate::PayLate),
            p(3, Fate::PayLate),
            p(4, Fate::Cancel),
            p(5, Fate::Abandon),
            p(6, Fate::Pay),
        ];
        let t = Tally::of(&planned, |order_no| match order_no {
            1 | 2 => Some(AckKind::Paid),
            3 => Some(AckKind::PayRefused),
            4 => Some(AckKind::Cancelled),
            _ => None,
        });
        assert_eq!((t.orders, t.to_pay, t.to_pay_late), (6, 4, 2));
        assert_eq!((t.to_cancel, t.never_paid), (1, 1));
        assert_eq!(
            (t.paid, t.pay_refused, t.late_paid, t.late_refused),
            (2, 1, 1, 1)
        );
        assert_eq!((t.cancelled, t.cancel_refused, t.unsettled), (1, 0, 1));
    }
}
