//! What becomes of each order of the BUY round, and when: paid early in its
//! window or at its very end, cancelled, or never paid.

use std::time::{Duration, Instant};

use serde::Serialize;

use crate::engine::Op;
use crate::error::Error;
use crate::users::{splitmix, Rng};
use crate::verify::{Ack, AckKind};

/// Early PAYs and the CANCELs are spread over this share of the window, so
/// that they land before its end even after a slow BUY reply.
const EARLY: f64 = 0.9;
/// Late PAYs land within this share of the window of its end, either side.
const LATE_BAND: f64 = 0.05;

/// How the orders are shared out.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Shares {
    pub cancel: f64,
    pub abandon: f64,
    /// Of the orders paid.
    pub late: f64,
}

impl Shares {
    /// Each share in 0..=1, and cancelled plus abandoned at most all.
    pub fn new(cancel: f64, abandon: f64, late: f64) -> Result<Shares, Error> {
        for (name, v) in [("cancel", cancel), ("abandon", abandon), ("late", late)] {
            if !(0.0..=1.0).contains(&v) {
                return Err(Error::Setup(format!(
                    "--{name}-share must be between 0 and 1, not {v}"
                )));
            }
        }
        if cancel + abandon > 1.0 {
            return Err(Error::Setup(format!(
                "--cancel-share {cancel} and --abandon-share {abandon} add up to more than 1"
            )));
        }
        Ok(Shares {
            cancel,
            abandon,
            late,
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fate {
    /// PAY in the first 90% of the window.
    Pay,
    /// PAY within 5% of the window's end, either side: it races the expiry
    /// sweep, and may come too late.
    PayLate,
    /// CANCEL in the first 90% of the window.
    Cancel,
    /// Never paid: the server must cancel it once the window passes.
    Abandon,
}

impl Fate {
    /// Whether the bench pays the order: if not, it must end cancelled.
    pub fn pays(self) -> bool {
        matches!(self, Fate::Pay | Fate::PayLate)
    }

    pub fn name(self) -> &'static str {
        match self {
            Fate::Pay => "paid",
            Fate::PayLate => "paid at the window's end",
            Fate::Cancel => "cancelled by its buyer",
            Fate::Abandon => "never paid",
        }
    }
}

/// An order of the BUY round and what the bench does with it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Planned {
    pub user: u64,
    pub order_no: u64,
    /// When its BUY reply came. The order was made a little before, so its
    /// window closes a little before this plus the window.
    pub ordered_at: Instant,
    pub fate: Fate,
    /// When its PAY or CANCEL is due; none if it is never paid.
    pub due: Option<Instant>,
}

impl Planned {
    /// The PAY or CANCEL at its instant; none if the order is never paid.
    pub fn request(&self) -> Option<(Instant, Op)> {
        let (user, order_no) = (self.user, self.order_no);
        let op = match self.fate {
            Fate::Pay | Fate::PayLate => Op::Pay { user, order_no },
            Fate::Cancel => Op::Cancel { user, order_no },
            Fate::Abandon => return None,
        };
        Some((self.due?, op))
    }
}

/// The fate of each new order among `acks` (BUY `ok` replies; the others
/// are left out), drawn from the seed and the user: a seed treats a user
/// the same way in every run. Times count from each BUY reply.
pub fn plan(acks: &[Ack], shares: &Shares, window: Duration, seed: u64) -> Vec<Planned> {
    let at = |from: Instant, share: f64| from + window.mul_f64(share);
    acks.iter()
        .filter(|a| a.kind == AckKind::Ok)
        .map(|a| {
            let mut rng = Rng::new(splitmix(seed ^ splitmix(a.user)));
            let (which, late, when) = (rng.unit(), rng.unit(), rng.unit());
            let fate = if which < shares.cancel {
                Fate::Cancel
            } else if which < shares.cancel + shares.abandon {
                Fate::Abandon
            } else if late < shares.late {
                Fate::PayLate
            } else {
                Fate::Pay
            };
            let due = match fate {
                Fate::Pay | Fate::Cancel => Some(at(a.at, EARLY * when)),
                Fate::PayLate => Some(at(a.at, 1.0 - LATE_BAND + 2.0 * LATE_BAND * when)),
                Fate::Abandon => None,
            };
            Planned {
                user: a.user,
                order_no: a.order_no,
                ordered_at: a.at,
                fate,
                due,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bought(n: u64, at: Instant) -> Vec<Ack> {
        (1..=n)
            .map(|user| Ack {
                user,
                order_no: 1000 + user,
                kind: AckKind::Ok,
                at,
                server: 0,
            })
            .collect()
    }

    #[test]
    fn shares_must_add_up() {
        assert!(Shares::new(0.2, 0.2, 0.1).is_ok());
        assert!(Shares::new(0.0, 1.0, 1.0).is_ok());
        assert!(Shares::new(0.6, 0.5, 0.1).is_err());
        assert!(Shares::new(-0.1, 0.2, 0.1).is_err());
        assert!(Shares::new(0.1, 0.2, 1.5).is_err());
    }

    #[test]
    fn orders_are_shared_out_and_timed_within_their_window() {
        let t0 = Instant::now();
        let window = Duration::from_secs(3);
        let shares = Shares::new(0.2, 0.3, 0.5).unwrap();
        let mut acks = bought(10_000, t0);
        acks.push(Ack {
            kind: AckKind::AlreadyBought,
            ..acks[0]
        });
        let planned = plan(&acks, &shares, window, 7);
        assert_eq!(planned.len(), 10_000, "only new orders");
        let count = |f: Fate| planned.iter().filter(|p| p.fate == f).count();
        let near = |n: usize, want: usize| n.abs_diff(want) < 300;
        assert!(near(count(Fate::Cancel), 2000), "{}", count(Fate::Cancel));
        assert!(near(count(Fate::Abandon), 3000), "{}", count(Fate::Abandon));
        assert!(near(count(Fate::PayLate), 2500), "{}", count(Fate::PayLate));
        assert!(near(count(Fate::Pay), 2500), "{}", count(Fate::Pay));
        for p in &planned {
            let offset = p.due.map(|d| d - t0);
            match p.fate {
                Fate::Abandon => assert!(offset.is_none() && p.request().is_none()),
                Fate::Pay | Fate::Cancel => assert!(offset.unwrap() < window.mul_f64(EARLY)),
                Fate::PayLate => {
                    let offset = offset.unwrap();
                    assert!(offset >= window.mul_f64(0.95) && offset <= window.mul_f64(1.05));
                }
            }
            match (p.fate, p.request()) {
                (Fate::Cancel, Some((_, Op::Cancel { user, order_no })))
                | (Fate::Pay | Fate::PayLate, Some((_, Op::Pay { user, order_no }))) => {
                    assert_eq!((user, order_no), (p.user, p.order_no))
                }
                (Fate::Abandon, None) => {}
                other => panic!("{other:?}"),
            }
        }
        // The same seed, the same fates.
        let again = plan(&acks, &shares, window, 7);
        assert!(planned.iter().zip(&again).all(|(a, b)| a.fate == b.fate));
        let other = plan(&acks, &shares, window, 8);
        assert!(planned.iter().zip(&other).any(|(a, b)| a.fate != b.fate));
    }
}
