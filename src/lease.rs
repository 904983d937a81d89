//! The node id lease: one thread that holds this server's node id, the part
//! of each order number that keeps two servers' numbers apart.
//!
//! Ids are leased from the order store ([`crate::store::nodes`]): at start
//! the server claims the id `--node-id` names, refusing to start if a live
//! server holds it, or by default the lowest id nobody holds. The lease
//! lasts `--node-lease` (30 s) by the database's clock, and this thread
//! renews it every sixth of that. Each claim and renewal also records how
//! far this server may stamp its numbers (its clock plus a lease), and the
//! generator ([`OrderNumbers`]) stops there: a server whose renewals fail
//! (the order store is down, or the server was paused) stops making numbers
//! about when its lease ends, and answers BUYs `busy`.
//!
//! A renewal that finds the id taken over (this server was paused or cut
//! off past its lease, and another server claimed the id) revokes the grant
//! at once and leases an id again: the one asked for if it is free, else
//! any free one. Numbers it made before cannot collide with the new
//! holder's, which are all stamped after the limit this server recorded.
//! At a clean stop, once no worker makes numbers any more, the id is
//! released, free for the next server at once.

use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use log::{error, info, warn};
use thiserror::Error;

use crate::clock::now_ms;
use crate::config::Config;
use crate::panics::survive;
use crate::sale::{OrderNumbers, MAX_NODE_ID};
use crate::stop::Stop;
use crate::store::{Claimed, NodeClaim, NodeRegistry, StoreError};

/// How finely the sleep between renewals checks for a stop.
const STOP_CHECK: Duration = Duration::from_millis(50);

/// Why no node id was leased.
#[derive(Debug, Error)]
pub enum LeaseError {
    #[error(
        "node id {node_id} is held by a live server ({by}) for {left_ms} ms more: give this one \
         another --node-id, or none to lease a free one (a server killed without a clean stop \
         holds its id until its lease runs out)"
    )]
    Held {
        node_id: u16,
        by: String,
        left_ms: u64,
    },
    #[error("every node id (0-{MAX_NODE_ID}) is held by a live server")]
    AllHeld,
    #[error("leasing a node id: {0}")]
    Store(#[from] StoreError),
}

/// What a claim or renewal asks for, read before it is made.
struct Horizon {
    /// How far this server may stamp numbers once it is recorded: a lease
    /// past its clock, or past its last number if that is later (a clock
    /// set back, or a fence taken over).
    until_ms: u64,
    /// A lease past its clock alone.
    clock_ms: u64,
}

pub struct NodeLease {
    registry: Arc<dyn NodeRegistry>,
    numbers: OrderNumbers,
    /// The id asked for (`--node-id`), if any.
    want: Option<u16>,
    /// This process's token in the registry.
    holder: u64,
    /// Who this server is, for the registry's readers.
    info: String,
    lease: Duration,
    /// The id leased, while it is.
    held: Option<u16>,
    /// Renewals are failing: logged once, when it starts and when it ends.
    failing: bool,
    /// The order store holds this server's limits below what it asks
    /// (its clock is ahead): logged once, while it lasts.
    capped: bool,
}

impl NodeLease {
    /// A lease for the generator `numbers`, not claimed yet. `info` says
    /// who this server is (its address) to an operator reading the
    /// registry.
    pub fn new(
        config: &Config,
        registry: Arc<dyn NodeRegistry>,
        numbers: OrderNumbers,
        info: &str,
    ) -> Result<NodeLease, getrandom::Error> {
        let holder = loop {
            let token = getrandom::u64()?;
            // 0 is "nobody".
            if token != 0 {
                break token;
            }
        };
        Ok(NodeLease {
            registry,
            numbers,
            want: config.node_id,
            holder,
            info: format!("pid {} on {} ({info})", std::process::id(), host_name()),
            lease: config.node_lease,
            held: None,
            failing: false,
            capped: false,
        })
    }

    /// The first claim, at start: the id asked for or, without one, the
    /// lowest free one. Granted to the generator once leased.
    pub fn acquire(&mut self) -> Result<u16, LeaseError> {
        let asked = Instant::now();
        let asked_for = self.horizon();
        let lease = match self.claim(self.want, asked_for.until_ms)? {
            Claimed::Leased(lease) => lease,
            Claimed::Held {
                node_id,
                by,
                left_ms,
            } => {
                return Err(LeaseError::Held {
                    node_id,
                    by,
                    left_ms,
                })
            }
            Claimed::AllHeld => return Err(LeaseError::AllHeld),
        };
        self.numbers.grant_until(
            lease.node_id,
            lease.floor_ms,
            lease.until_ms,
            asked + self.lease,
        );
        self.note_capped(lease.until_ms, &asked_for);
        self.held = Some(lease.node_id);
        info!(
            "node id {} leased for order numbers (lease {:?}, renewed every {:?})",
            lease.node_id,
            self.lease,
            self.renew_every()
        );
        Ok(lease.node_id)
    }

    /// Renews the lease every sixth of it until `stop`, then releases it.
    /// Start it once [`acquire`](Self::acquire) succeeded, and trigger
    /// `stop` only once no worker makes order numbers any more.
    pub fn spawn(self, stop: Stop) -> std::io::Result<JoinHandle<()>> {
        thread::Builder::new()
            .name("node-lease".into())
            .spawn(move || self.run(stop))
    }

    fn run(mut self, stop: Stop) {
        let mut next = Instant::now() + self.renew_every();
        while !stop.is_triggered() {
            if Instant::now() >= next {
                // A renewal that panicked is as one that failed: the grant
                // runs out at the limit last recorded.
                survive("the node lease's renewal", || self.renew());
                next = Instant::now() + self.renew_every();
            }
            thread::sleep(
                next.saturating_duration_since(Instant::now())
                    .min(STOP_CHECK),
            );
        }
        self.release();
    }

    fn renew_every(&self) -> Duration {
        (self.lease / 6).max(Duration::from_millis(10))
    }

    /// What the next claim or renewal asks for, read before it is made.
    fn horizon(&self) -> Horizon {
        let lease_ms = u64::try_from(self.lease.as_millis()).unwrap_or(u64::MAX);
        let now = now_ms();
        Horizon {
            until_ms: now.max(self.numbers.last_ms()).saturating_add(lease_ms),
            clock_ms: now.saturating_add(lease_ms),
        }
    }

    /// Claims `want` (or the lowest free id), asking to stamp numbers up
    /// to `until_ms` (a [`horizon`](Self::horizon)'s).
    fn claim(&self, want: Option<u16>, until_ms: u64) -> Result<Claimed, StoreError> {
        self.registry.claim_node(&NodeClaim {
            want,
            max_id: MAX_NODE_ID,
            holder: self.holder,
            info: &self.info,
            lease: self.lease,
            until_ms,
        })
    }

    fn renew(&mut self) {
        let Some(node) = self.held else {
            self.lease_again();
            return;
        };
        let asked = Instant::now();
        let asked_for = self.horizon();
        match self
            .registry
            .renew_node(node, self.holder, self.lease, asked_for.until_ms)
        {
            Ok(Some(granted)) => {
                // Raised only once the order store has the new limit; the
                // lease timed from when it was asked for, by the monotonic
                // clock too.
                self.numbers
                    .grant_until(node, 0, granted, asked + self.lease);
                self.note_capped(granted, &asked_for);
                if std::mem::take(&mut self.failing) {
                    info!("node id {node}: lease renewed again");
                }
            }
            Ok(None) => {
                self.numbers.revoke();
                self.held = None;
                error!(
                    "node id {node} was taken over by another server: this one was paused or cut \
                     off from the order store for longer than its lease; no order numbers (BUYs \
                     are answered busy) until it leases an id again"
                );
                self.lease_again();
            }
            // The grant runs out by itself at the limit last recorded,
            // about when the lease ends.
            Err(e) => {
                if !std::mem::replace(&mut self.failing, true) {
                    warn!("node id {node}: lease not renewed ({e}); order numbers stop when it runs out unless a renewal gets through");
                }
            }
        }
    }

    /// Warns, once until it no longer is, when the order store held the
    /// limit to less (`granted`) than this server's clock and a lease when
    /// it asked: its clock is ahead of the database's by more than a lease,
    /// and its BUYs are answered busy once it passes the limit. (A limit
    /// short of the numbers already made, a fence taken over, says nothing
    /// of the clock: compared with the clock's part of the ask only.)
    ///
    /// The clock as read before the call, not again now: the call's own
    /// time would otherwise pass for a clock ahead.
    fn note_capped(&mut self, granted: u64, asked_for: &Horizon) {
        let capped = granted < asked_for.clock_ms;
        if capped && !std::mem::replace(&mut self.capped, true) {
            // Granted at most the database's clock and two leases, asked
            // this clock and one: ahead by the difference and a lease.
            let lease_ms = u64::try_from(self.lease.as_millis()).unwrap_or(u64::MAX);
            warn!(
                "this server's clock is {} ms or more ahead of the order store's: its order numbers \
                 are held to the database's clock plus two leases (BUYs busy past that); set the \
                 clock right",
                (asked_for.clock_ms - granted).saturating_add(lease_ms)
            );
        } else if !capped {
            self.capped = false;
        }
    }

    /// After the id was lost: the one asked for again if it is free, else
    /// the lowest free one. Tried again at each renewal until it works.
    fn lease_again(&mut self) {
        let asked = Instant::now();
        let asked_for = self.horizon();
        let claimed = match self.claim(self.want, asked_for.until_ms) {
            Ok(Claimed::Held { node_id, by, .. }) => {
                warn!("node id {node_id} asked for is held by {by}: leasing a free one");
                self.claim(None, asked_for.until_ms)
            }
            other => other,
        };
        match claimed {
            Ok(Claimed::Leased(lease)) => {
                self.numbers.grant_until(
                    lease.node_id,
                    lease.floor_ms,
                    lease.until_ms,
                    asked + self.lease,
                );
                self.held = Some(lease.node_id);
                self.failing = false;
                self.note_capped(lease.until_ms, &asked_for);
                warn!("node id {} leased: order numbers again", lease.node_id);
            }
            Ok(_) | Err(_) if self.failing => {}
            Ok(_) => {
                self.failing = true;
                warn!("no node id free to lease: retrying");
            }
            Err(e) => {
                self.failing = true;
                warn!("leasing a node id: {e}; retrying");
            }
        }
    }

    /// Gives the id back at a clean stop, with its fence lowered to the
    /// last number made. A failure leaves it to run out.
    fn release(&mut self) {
        let Some(node) = self.held.take() else {
            return;
        };
        self.numbers.revoke();
        match self
            .registry
            .release_node(node, self.holder, self.numbers.last_ms())
        {
            Ok(()) => info!("node id {node} released"),
            Err(e) => {
                warn!("node id {node} not released ({e}): it is free once its lease runs out")
            }
        }
    }
}

/// This machine's name, for the registry's readers.
fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "an unnamed host".into())
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, Ordering};

    use clap::Parser;

    use super::*;
    use crate::store::SqliteStore;

    /// The registry of a SQLite file, whose calls fail while `down`; the
    /// next renewal panics once `panic_once` is set (a bug); each call takes
    /// `delay_ms` more (a slow network); renewals grant `shave_ms` less
    /// than the file records (a database whose clock is behind).
    struct Registry {
        store: SqliteStore,
        down: AtomicBool,
        panic_once: AtomicBool,
        delay_ms: std::sync::atomic::AtomicU64,
        shave_ms: std::sync::atomic::AtomicU64,
    }

    impl Registry {
        fn new(dir: &tempfile::TempDir) -> Arc<Registry> {
            Arc::new(Registry {
                store: SqliteStore::open(&dir.path().join("nodes.db")).unwrap(),
                down: AtomicBool::new(false),
                panic_once: AtomicBool::new(false),
                delay_ms: Default::default(),
                shave_ms: Default::default(),
            })
        }

        fn check(&self) -> Result<(), StoreError> {
            thread::sleep(Duration::from_millis(self.delay_ms.load(Ordering::Relaxed)));
            match self.down.load(Ordering::Relaxed) {
                true => Err(StoreError::Unavailable("down".into())),
                false => Ok(()),
            }
        }
    }

    impl NodeRegistry for Registry {
        fn claim_node(&self, claim: &NodeClaim) -> Result<Claimed, StoreError> {
            self.check()?;
            self.store.claim_node(claim)
        }
        fn renew_node(
            &self,
            n: u16,
            h: u64,
            l: Duration,
            u: u64,
        ) -> Result<Option<u64>, StoreError> {
            if self.panic_once.swap(false, Ordering::Relaxed) {
                panic!("a renewal's bug");
            }
            self.check()?;
            let shave = self.shave_ms.load(Ordering::Relaxed);
            Ok(self
                .store
                .renew_node(n, h, l, u)?
                .map(|granted| granted.saturating_sub(shave)))
        }
        fn release_node(&self, n: u16, h: u64, last: u64) -> Result<(), StoreError> {
            self.check()?;
            self.store.release_node(n, h, last)
        }
    }

    /// A server's lease on `registry`: `flags` as on the command line.
    fn lease(registry: &Arc<Registry>, flags: &[&str]) -> (NodeLease, OrderNumbers) {
        lease_of(registry, "300ms", flags)
    }

    /// [`lease`], `length` long: tests that need it renewed past its length
    /// take one long enough for a stalled renewal thread on a loaded
    /// machine not to miss it.
    fn lease_of(
        registry: &Arc<Registry>,
        length: &str,
        flags: &[&str],
    ) -> (NodeLease, OrderNumbers) {
        let mut args = vec!["seckill-server", "--node-lease", length];
        args.extend_from_slice(flags);
        let numbers = OrderNumbers::ungranted();
        let lease = NodeLease::new(
            &Config::parse_from(args),
            registry.clone(),
            numbers.clone(),
            "test",
        )
        .unwrap();
        (lease, numbers)
    }

    /// A claim or renewal that takes a while is granted what was asked for
    /// when it was made, which is less than the clock and a lease read once
    /// it is back: that is not a clock ahead of the database's (it was
    /// warned of, on every server, every few renewals).
    #[test]
    fn a_slow_renewal_is_not_taken_for_a_clock_ahead() {
        let dir = tempfile::tempdir().unwrap();
        let registry = Registry::new(&dir);
        registry.delay_ms.store(20, Ordering::Relaxed);
        let (mut l, _numbers) = lease(&registry, &[]);
        l.acquire().unwrap();
        assert!(!l.capped, "a slow claim warned of a clock ahead");
        l.renew();
        assert!(!l.capped, "a slow renewal warned of a clock ahead");
    }

    /// A grant short of the server's clock and a lease is warned of, and
    /// the warning ends once grants are whole again.
    #[test]
    fn a_grant_short_of_the_clock_and_a_lease_is_a_clock_ahead() {
        let dir = tempfile::tempdir().unwrap();
        let registry = Registry::new(&dir);
        let (mut l, _numbers) = lease_of(&registry, "10s", &[]);
        l.acquire().unwrap();
        assert!(!l.capped);
        registry.shave_ms.store(60_000, Ordering::Relaxed);
        l.renew();
        assert!(l.capped, "a grant a minute short was not noticed");
        registry.shave_ms.store(0, Ordering::Relaxed);
        l.renew();
        assert!(!l.capped);
    }

    /// An id whose fence, left by an earlier holder, is an hour ahead:
    /// the numbers start above it, and the renewals that ask past it are
    /// granted less than asked (the fence plus a lease), which says
    /// nothing of this server's clock.
    #[test]
    fn a_fence_taken_over_is_not_a_clock_ahead() {
        let dir = tempfile::tempdir().unwrap();
        let registry = Registry::new(&dir);
        let fence = now_ms() + 3_600_000;
        let file = rusqlite::Connection::open(dir.path().join("nodes.db")).unwrap();
        file.execute(
            "INSERT OR REPLACE INTO nodes (node_id, holder, holder_info, expires_ms, numbers_until_ms)
             VALUES (0, 0, '', 0, ?1)",
            rusqlite::params![i64::try_from(fence).unwrap()],
        )
        .unwrap();
        let (mut l, numbers) = lease(&registry, &["--node-id", "0"]);
        l.acquire().unwrap();
        numbers.next().expect("a number");
        assert!(numbers.last_ms() > fence, "numbers start above the fence");
        l.renew();
        assert!(!l.capped, "a fence taken over was taken for a clock ahead");
    }

    #[test]
    fn an_id_asked_for_that_a_live_server_holds_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let registry = Registry::new(&dir);
        let (mut a, a_numbers) = lease(&registry, &["--node-id", "5"]);
        assert_eq!(a.acquire().unwrap(), 5);
        assert_eq!(a_numbers.node(), Some(5));
        let (mut b, b_numbers) = lease(&registry, &["--node-id", "5"]);
        match b.acquire() {
            Err(e @ LeaseError::Held { node_id: 5, .. }) => {
                let message = e.to_string();
                assert!(
                    message.contains("pid") && message.contains("--node-id"),
                    "{message}"
                );
            }
            other => panic!("expected a refusal, got {other:?}"),
        }
        assert_eq!(b_numbers.next(), None, "no numbers without a lease");
        let (mut c, _) = lease(&registry, &[]);
        assert_eq!(c.acquire().unwrap(), 0, "any free id");
    }

    /// A server paused past its lease whose id was taken over stops making
    /// numbers under it at its next renewal, and leases another id.
    #[test]
    fn a_lease_taken_over_is_given_up_and_another_leased() {
        let dir = tempfile::tempdir().unwrap();
        let registry = Registry::new(&dir);
        let (mut paused, numbers) = lease(&registry, &[]);
        assert_eq!(paused.acquire().unwrap(), 0);
        let before = numbers.next().expect("a number under id 0");
        std::thread::sleep(Duration::from_millis(600));
        let (mut other, other_numbers) = lease(&registry, &["--node-id", "0"]);
        assert_eq!(other.acquire().unwrap(), 0);
        let theirs = other_numbers.next().unwrap();
        assert!(theirs > before);
        paused.renew();
        assert_eq!(numbers.node(), Some(1), "leased again, under another id");
        let after = numbers.next().unwrap();
        assert_ne!((after >> 12) & 1023, 0);
    }

    /// Renewals that fail let the numbers run out when the lease would;
    /// once one gets through, numbers are made again.
    #[test]
    fn numbers_run_out_while_renewals_fail() {
        let dir = tempfile::tempdir().unwrap();
        let registry = Registry::new(&dir);
        let (mut lease, numbers) = lease(&registry, &[]);
        lease.acquire().unwrap();
        registry.down.store(true, Ordering::Relaxed);
        lease.renew();
        assert!(numbers.next().is_some(), "the lease has not run out yet");
        std::thread::sleep(Duration::from_millis(400));
        lease.renew();
        assert_eq!(numbers.next(), None, "ran out with the lease");
        registry.down.store(false, Ordering::Relaxed);
        lease.renew();
        assert!(numbers.next().is_some());
        assert_eq!(numbers.node(), Some(0), "nobody took it meanwhile");
    }

    /// A clean stop releases the id: free for the next server at once.
    #[test]
    fn a_stopped_lease_is_released() {
        let dir = tempfile::tempdir().unwrap();
        let registry = Registry::new(&dir);
        let (mut first, numbers) = lease_of(&registry, "2s", &["--node-id", "3"]);
        first.acquire().unwrap();
        let stop = Stop::new();
        let thread = first.spawn(stop.clone()).unwrap();
        // Renewed meanwhile: not taken over after the 2 s lease.
        std::thread::sleep(Duration::from_millis(2_500));
        let (mut second, _) = lease(&registry, &["--node-id", "3"]);
        assert!(matches!(second.acquire(), Err(LeaseError::Held { .. })));
        stop.trigger();
        thread.join().unwrap();
        assert_eq!(numbers.next(), None);
        assert_eq!(second.acquire().unwrap(), 3);
    }

    /// A renewal that panics does not end the lease's thread: it renews on,
    /// so the id stays held, and releases it at the stop.
    #[test]
    fn a_renewal_that_panics_does_not_end_the_lease() {
        let dir = tempfile::tempdir().unwrap();
        let registry = Registry::new(&dir);
        let (mut first, numbers) = lease_of(&registry, "2s", &["--node-id", "4"]);
        first.acquire().unwrap();
        let stop = Stop::new();
        let thread = first.spawn(stop.clone()).unwrap();
        registry.panic_once.store(true, Ordering::Relaxed);
        // Past the 2 s lease: still held, so renewed after the panic.
        std::thread::sleep(Duration::from_millis(2_500));
        assert!(!registry.panic_once.load(Ordering::Relaxed), "it panicked");
        assert!(numbers.next().is_some());
        let (mut second, _) = lease(&registry, &["--node-id", "4"]);
        assert!(matches!(second.acquire(), Err(LeaseError::Held { .. })));
        stop.trigger();
        thread.join().expect("the thread lived on");
        assert_eq!(second.acquire().unwrap(), 4, "released at the stop");
    }
}
