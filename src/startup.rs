//! Start-up: what must be done before the first sale, tried at start and,
//! while a store is down, again in the background with backoff.
//!
//! In order, each step once the one before it succeeded:
//! 0. the stock store answers: checked first so that a server that cannot
//!    reach Redis has created nothing in MySQL yet (it leaves no debris);
//! 1. MySQL's database and tables, created where missing (SQLite's were
//!    made when its file was opened);
//! 2. a node id leased for the order numbers ([`NodeLease`]), whose thread
//!    then renews it: without a lease no number is made;
//! 3. the goods loaded into the catalog and every goods reconciled
//!    ([`Sale::open`]): the stock store rebuilt from the order store. A
//!    store that fails half-way through (a Redis restarting while the goods
//!    load) fails the step, and the whole load is tried again.
//!
//! Only then is the sale put in the [`SaleSlot`], where reactors find it:
//! until then they answer every request that needs a store `busy` (and
//! LIST_GOODS with an empty list), so nothing is sold before its goods is
//! reconciled. What can never work (a URL that does not parse, a data file
//! another server holds) fails [`Server::start`](crate::Server::start); so
//! do an id asked for with `--node-id` that a live server holds, and a store
//! that holds something it should not, found at start or later (then the
//! server stops). A store that does not answer is only ever waited for.

use std::sync::{Arc, OnceLock};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use anyhow::Context;
use log::{error, info, warn};

use crate::clock::now_ms;
use crate::config::Config;
use crate::drain::Drain;
use crate::lease::{LeaseError, NodeLease};
use crate::metrics::Metrics;
use crate::panics::survive;
use crate::sale::{OrderNumbers, Queues, Sale};
use crate::server::Shutdown;
use crate::stop::Stop;
use crate::store::{MysqlStore, NodeRegistry, OrderStore, StockStore, StoreError};

/// Backoff between tries while a store is down.
const RETRY_FIRST: Duration = Duration::from_millis(100);
const RETRY_MAX: Duration = Duration::from_secs(2);
/// How finely a wait between tries checks for a stop.
const STOP_CHECK: Duration = Duration::from_millis(50);

/// The stores the flags ask for, opened but maybe not reachable yet.
pub struct Stores {
    pub stock: Arc<dyn StockStore>,
    pub orders: Arc<dyn OrderStore>,
    /// With the stock in Redis: its order queues, and what the ack mode
    /// makes of them.
    pub queues: Queues,
    /// The order store's registry of node ids.
    pub nodes: Arc<dyn NodeRegistry>,
    /// With `--mysql`: its database and tables are made at step 1.
    pub mysql: Option<Arc<MysqlStore>>,
}

/// Where reactors find the sale once start-up is done.
#[derive(Clone, Default)]
pub struct SaleSlot(Arc<OnceLock<Arc<Sale>>>);

impl SaleSlot {
    /// The sale, once its goods are loaded and reconciled.
    pub fn get(&self) -> Option<&Arc<Sale>> {
        self.0.get()
    }

    pub(crate) fn fill(&self, sale: Arc<Sale>) {
        // Filled once, by the one start-up.
        let _ = self.0.set(sale);
    }
}

/// What a try came to.
pub enum Progress {
    /// Every step is done: the sale is open.
    Ready(Arc<Sale>),
    /// A store is not up yet: try again later.
    Waiting,
}

/// The step a try is at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    Stock,
    Schema,
    NodeId,
    Goods,
    Leftovers,
}

impl Step {
    fn what(self) -> &'static str {
        match self {
            Step::Stock => "reaching the stock store",
            Step::Schema => "creating MySQL's tables",
            Step::NodeId => "leasing a node id",
            Step::Goods => "loading and reconciling the goods",
            Step::Leftovers => "writing the orders queued servers left in Redis",
        }
    }
}

/// Why a try stopped.
enum Stopped {
    /// At a store that does not answer (yet).
    Waiting(Step, String),
    /// At something waiting will not fix.
    Fatal(anyhow::Error),
}

/// A failure of a store at `step`: waited for, unless the store holds
/// something it should not (an old schema, a broken value).
fn failed(step: Step, e: StoreError) -> Stopped {
    match e {
        StoreError::Inconsistent(_) => Stopped::Fatal(anyhow::Error::new(e).context(step.what())),
        e => Stopped::Waiting(step, e.to_string()),
    }
}

/// The roles that need the open sale, and the threads they run on.
#[derive(Default)]
pub struct Started {
    /// Fed by channels: they stop once the reactors are gone.
    pub pipeline: Vec<JoinHandle<()>>,
    /// Stopped last, by the back stop (the node lease among them).
    pub back: Vec<JoinHandle<()>>,
    /// Why start-up gave up in the background, if it did.
    pub failed: Option<anyhow::Error>,
}

/// Start-up's steps, and how far they got.
pub struct Startup {
    stores: Stores,
    config: Config,
    metrics: Arc<Metrics>,
    numbers: OrderNumbers,
    /// Until leased; then its thread renews it.
    lease: Option<NodeLease>,
    prepared: bool,
    /// Opened, while the orders queued servers left are written.
    opened: Option<Arc<Sale>>,
    back_stop: Stop,
    /// The node lease's thread, once it runs.
    threads: Vec<JoinHandle<()>>,
    /// The step the last try stopped at, to log an outage once.
    waiting: Option<Step>,
    began: Instant,
}

impl Startup {
    /// Start-up on `stores` for a server known as `info` (its address).
    /// The node lease's thread, once it runs, stops at `back_stop`.
    pub fn new(
        config: &Config,
        stores: Stores,
        metrics: &Arc<Metrics>,
        info: &str,
        back_stop: Stop,
    ) -> anyhow::Result<Startup> {
        let numbers = OrderNumbers::ungranted();
        let lease = NodeLease::new(config, stores.nodes.clone(), numbers.clone(), info)
            .context("no randomness for the node lease's token")?;
        Ok(Startup {
            stores,
            config: config.clone(),
            metrics: metrics.clone(),
            numbers,
            lease: Some(lease),
            prepared: false,
            opened: None,
            back_stop,
            threads: Vec::new(),
            waiting: None,
            began: Instant::now(),
        })
    }

    /// Tries the steps still to do, once each, in order. An error is one
    /// waiting will not fix.
    pub fn advance(&mut self) -> anyhow::Result<Progress> {
        match self.steps() {
            Ok(sale) => {
                if self.waiting.take().is_some() {
                    info!(
                        "the stores are up after {:?}: serving",
                        self.began.elapsed()
                    );
                }
                Ok(Progress::Ready(sale))
            }
            Err(Stopped::Waiting(step, why)) => {
                // Once per outage of a step, not once per try.
                if self.waiting.replace(step) != Some(step) {
                    warn!(
                        "not serving yet: {} failed ({why}); requests that need a store are \
                         answered busy while it is tried again",
                        step.what()
                    );
                }
                Ok(Progress::Waiting)
            }
            Err(Stopped::Fatal(e)) => Err(e),
        }
    }

    /// The threads start-up started (the node lease's).
    pub fn into_threads(self) -> Vec<JoinHandle<()>> {
        self.threads
    }

    /// The threads start-up started so far, taken from it (the node
    /// lease's, if it was leased).
    pub fn take_threads(&mut self) -> Vec<JoinHandle<()>> {
        std::mem::take(&mut self.threads)
    }

    fn steps(&mut self) -> Result<Arc<Sale>, Stopped> {
        if !self.prepared {
            // Goods ids start at 1, so goods 0 has no stock entry: reading
            // its epoch reads nothing, and only a stock store that answers
            // can say so.
            self.stores
                .stock
                .epoch(0)
                .map_err(|e| failed(Step::Stock, e))?;
            if let Some(mysql) = &self.stores.mysql {
                mysql.prepare().map_err(|e| failed(Step::Schema, e))?;
            }
            check_clock("stock store", || self.stores.stock.clock_ms());
            check_clock("order store", || self.stores.orders.clock_ms());
            // Said, not enforced: as with MySQL's flush setting, the
            // operator may know better (a disk with its own log, a replica
            // that never becomes primary).
            if let Queues::Acked(queue) = &self.stores.queues {
                match queue.risks() {
                    Ok(risks) => risks.iter().for_each(|r| warn!("queued mode: {r}")),
                    Err(e) => warn!("queued mode: could not ask Redis what it persists: {e}"),
                }
            }
            self.prepared = true;
        }
        if let Some(mut lease) = self.lease.take() {
            match lease.acquire() {
                Ok(_) => {
                    let thread = lease.spawn(self.back_stop.clone());
                    self.threads
                        .push(thread.map_err(|e| Stopped::Fatal(e.into()))?);
                }
                Err(e) => {
                    self.lease = Some(lease);
                    return Err(match e {
                        held @ LeaseError::Held { .. } => Stopped::Fatal(held.into()),
                        LeaseError::AllHeld => Stopped::Waiting(Step::NodeId, e.to_string()),
                        LeaseError::Store(e) => failed(Step::NodeId, e),
                    });
                }
            }
        }
        let sale = match self.opened.take() {
            Some(sale) => sale,
            None => {
                let stores = &self.stores;
                let mut sale = Sale::open(
                    stores.stock.clone(),
                    stores.orders.clone(),
                    stores.queues.clone(),
                    self.numbers.clone(),
                    self.metrics.clone(),
                )
                .map_err(|e| failed(Step::Goods, e))?;
                let ttl = u64::try_from(self.config.token_ttl.as_millis()).unwrap_or(u64::MAX);
                sale.set_token_ttl(ttl);
                Arc::new(sale)
            }
        };
        // Before the sale opens: every BUY and read then meets those orders
        // in the order store, as the durable mode's own.
        if let Some(leftovers) = sale.leftovers() {
            let drain = Drain::new(
                &self.config,
                sale.clone(),
                leftovers,
                self.back_stop.clone(),
            );
            if let Err(why) = drain.write_leftovers() {
                self.opened = Some(sale);
                return Err(Stopped::Waiting(Step::Leftovers, why));
            }
        }
        Ok(sale)
    }
}

/// How far this server's clock may be from the shared stock store's before
/// start-up warns.
const CLOCK_SKEW_WARN_MS: u64 = 1_000;

/// Warns if this server's clock is off a shared store's (`store`, whose
/// clock `theirs` reads): every server stamps what it sends with its own
/// clock (the sale window and a token's expiry are judged by it, a request
/// id is kept in Redis for an hour from it and forgotten by it, order
/// numbers are stamped with it under limits the order store records), so
/// servers whose clocks disagree disagree on those, and one ahead by an
/// hour forgets every server's request ids at once (a retried BUY is then
/// decided afresh).
fn check_clock(store: &str, theirs: impl FnOnce() -> Result<Option<u64>, StoreError>) {
    let before = now_ms();
    let Ok(Some(theirs)) = theirs() else {
        return;
    };
    if let Some((skew, way)) = skew(before, theirs, now_ms()) {
        warn!(
            "this server's clock is {skew} ms {way} the {store}'s: servers judge sale windows, \
             token expiry, how long a request id is kept and their order numbers by their own \
             clocks, so keep them in step (NTP)"
        );
    }
}

/// How far, and which way, this server's clock (read `before` and `after`
/// the store's was) is off the store's (`theirs`), if by more than
/// [`CLOCK_SKEW_WARN_MS`] and the call's round trip.
fn skew(before: u64, theirs: u64, after: u64) -> Option<(u64, &'static str)> {
    let trip = after.saturating_sub(before);
    // Against the middle of the call: its round trip is not skew.
    let mine = before + trip / 2;
    let skew = mine.abs_diff(theirs);
    let way = if mine > theirs { "ahead of" } else { "behind" };
    (skew > CLOCK_SKEW_WARN_MS + trip).then_some((skew, way))
}

/// Goes on with start-up in a thread of its own, with backoff, until it is
/// done (then starts the roles through `begin`, which puts each thread in
/// the `Started` it is given as it starts, and fills `slot`), the server
/// stops (`stop`), or it meets what waiting will not fix (then it stops the
/// server through `shutdown`, and says why, with the threads that did start
/// handed over to be joined).
pub fn carry_on(
    mut startup: Startup,
    begin: impl FnOnce(&Arc<Sale>, &mut Started) -> std::io::Result<()> + Send + 'static,
    slot: SaleSlot,
    stop: Stop,
    shutdown: Shutdown,
) -> std::io::Result<JoinHandle<Started>> {
    thread::Builder::new()
        .name("startup".into())
        .spawn(move || {
            let mut wait = RETRY_FIRST;
            loop {
                if !pause(wait, &stop) {
                    return Started {
                        back: startup.into_threads(),
                        ..Started::default()
                    };
                }
                wait = (wait * 2).min(RETRY_MAX);
                // A panic (a bug) stops the server as a store holding what
                // it should not does, rather than leave it not ready for
                // ever with this thread gone; the node lease, if taken, is
                // released on the way out.
                // The roles' threads as they start: those of a start that
                // fails part of the way are stopped and joined with the rest.
                let mut started = Started::default();
                let failure = match survive("start-up", || startup.advance()) {
                    Some(Ok(Progress::Waiting)) => continue,
                    Some(Ok(Progress::Ready(sale))) => {
                        match survive("starting the roles", || begin(&sale, &mut started)) {
                            Some(Ok(())) => {
                                // The roles first, so that a request let through
                                // finds someone to serve it.
                                slot.fill(sale);
                                started.back.extend(startup.into_threads());
                                return started;
                            }
                            Some(Err(e)) => anyhow::Error::new(e).context("starting the workers"),
                            None => anyhow::anyhow!("starting the roles panicked"),
                        }
                    }
                    Some(Err(e)) => e,
                    None => anyhow::anyhow!("start-up panicked"),
                };
                error!("cannot start: {failure:#}; stopping");
                shutdown.trigger();
                started.back.extend(startup.into_threads());
                started.failed = Some(failure);
                return started;
            }
        })
}

/// Sleeps `wait` unless `stop` comes first; false if it did.
fn pause(wait: Duration, stop: &Stop) -> bool {
    let until = Instant::now() + wait;
    while !stop.is_triggered() {
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return true;
        }
        thread::sleep(left.min(STOP_CHECK));
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_clock_off_the_stores_by_more_than_a_second_and_the_trip_is_told() {
        assert_eq!(skew(10_000, 10_000, 10_000), None);
        assert_eq!(skew(10_000, 11_000, 10_000), None);
        assert_eq!(skew(10_000, 11_001, 10_000), Some((1_001, "behind")));
        assert_eq!(skew(10_000, 8_000, 10_000), Some((2_000, "ahead of")));
        // A slow call: its round trip is not counted as skew.
        assert_eq!(skew(10_000, 12_000, 12_000), None);
        assert_eq!(skew(3_600_000, 0, 3_600_000), Some((3_600_000, "ahead of")));
    }
}
