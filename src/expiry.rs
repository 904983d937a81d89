//! The expiry sweep: one thread that cancels unpaid orders whose payment
//! window has passed and returns their units to stock, then refreshes what
//! the catalog shows as left from the stock store (which also clears a
//! sold-out flag when another server returned units).
//!
//! The order store decides which orders each sweep cancels (a locking read
//! and a conditional update), so several servers may sweep one store at
//! once and a PAY may race a sweep: every order ends paid or cancelled, and
//! a cancelled order's unit comes back once. See `sale::lifecycle`.

use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use log::warn;

use crate::config::Config;
use crate::panics::survive;
use crate::sale::Sale;
use crate::stop::Stop;
use crate::store::StoreError;

pub struct Expiry {
    sale: Arc<Sale>,
    every: Duration,
    /// At a stop the sweep exits: what is due is swept at the next start,
    /// by this server or another.
    stop: Stop,
}

/// While sweeps keep panicking, how often every goods is marked for
/// reconciliation again.
const REMARK_EVERY: Duration = Duration::from_secs(30);
/// How finely the sleep between sweeps checks for a stop.
const STOP_CHECK: Duration = Duration::from_millis(50);
/// How often the catalog's units left are read back from the stock store:
/// the longest a wrong sold-out flag can keep units from sale.
pub const REFRESH_EVERY: Duration = Duration::from_millis(500);

impl Expiry {
    pub fn new(config: &Config, sale: Arc<Sale>, stop: Stop) -> Expiry {
        Expiry {
            sale,
            every: config.expiry_interval.max(Duration::from_millis(1)),
            stop,
        }
    }

    pub fn spawn(self) -> std::io::Result<JoinHandle<()>> {
        thread::Builder::new()
            .name("expiry".into())
            .spawn(move || self.run())
    }

    fn run(self) {
        let mut next_sweep = Instant::now();
        let mut next_refresh = Instant::now();
        // While sweeps keep panicking: when every goods was last marked.
        let mut panicking: Option<Instant> = None;
        while !self.stop.is_triggered() {
            let now = Instant::now();
            if now >= next_sweep {
                let swept = survive("the expiry sweep", || self.sale.expire_due());
                if swept.is_some() {
                    panicking = None;
                }
                next_sweep = match swept {
                    // A full batch: more may be due right now.
                    Some(Ok(n)) if n == crate::sale::EXPIRE_BATCH => Instant::now(),
                    Some(Ok(_)) => Instant::now() + self.every,
                    // The next tick tries again. An outage is logged once
                    // by the store itself; anything else here.
                    Some(Err(StoreError::Unavailable(_))) => Instant::now() + self.every,
                    // Logged by `survive`. The sweep may have stopped after
                    // the order store cancelled orders and before their
                    // units came back, as with an outcome unknown: every
                    // goods is marked, and again at most once per
                    // REMARK_EVERY while sweeps keep panicking (marking at
                    // every sweep would have every goods frozen and
                    // reconciled every second, on every server).
                    None => {
                        if panicking.is_none_or(|at| at.elapsed() >= REMARK_EVERY) {
                            self.sale.all_unsure();
                            panicking = Some(Instant::now());
                        }
                        Instant::now() + self.every
                    }
                    Some(Err(e)) => {
                        warn!("expiry sweep: {e}");
                        Instant::now() + self.every
                    }
                };
            }
            if now >= next_refresh {
                survive("the stock refresh", || self.sale.refresh_stock());
                next_refresh = Instant::now() + REFRESH_EVERY;
            }
            let wake = next_sweep.min(next_refresh);
            thread::sleep(
                wake.saturating_duration_since(Instant::now())
                    .min(STOP_CHECK),
            );
        }
    }
}
