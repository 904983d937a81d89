//! A goods' gate: which work on its stock may run side by side.
//!
//! Reservations take the gate shared: any number of workers deduct at once.
//! Work that must not race a deduction takes it alone: reconciliation (it
//! reads the stores and loads the truth, which a deduction in between would
//! overwrite), a restock (a reconciliation in between would count the new
//! units twice), and a sale control (so that once a pause is answered, no
//! BUY that was queued before it sells).
//!
//! The exclusive side may be held across store I/O (reconciliation waits for
//! reserved units to settle, then reads and writes both stores). A BUY does
//! not wait behind that: [`Gate::enter_for_buy`] answers "not now" instead,
//! so a BUY waits on a gate no longer than its own stock call. Its place in
//! the server's lock order is in [`crate::sale::catalog`].

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering::Relaxed, Ordering::SeqCst};
use std::time::Duration;

use parking_lot::{Mutex, RwLock, RwLockReadGuard, RwLockWriteGuard};
use seckill_proto::RequestId;

use crate::sale::reservation::InFlight;
use crate::store::{Epoch, OrderNo, UserId};

/// Abandoned request ids noted per goods at most before a reconciliation
/// forgets them.
const MAX_ABANDONED: usize = 1024;

/// How long a BUY waits, at a time, for a brief exclusive holder (a sale
/// control changing the catalog) before it looks again whether the holder
/// has turned to store I/O.
const BRIEF_WAIT: Duration = Duration::from_millis(1);

#[derive(Default)]
pub struct Gate {
    lock: RwLock<()>,
    /// How many holders, or would-be holders, of the exclusive side mean to
    /// hold it across store I/O: counted, not a flag, so that one of them
    /// letting go does not clear it for another still waiting for it.
    io_hold: AtomicU32,
    /// Units reserved in the stock store whose orders are neither committed
    /// nor released yet: reconciliation waits for them to settle. Raised
    /// and lowered only by [`crate::sale::PendingOrder`].
    pub(in crate::sale) in_flight: InFlight,
    /// A write of this goods' orders ended with an unknown outcome: the
    /// stock store needs reconciling before it sells more.
    ///
    /// Counted, not a flag: marks since the last reconciliation began. A
    /// reconciliation clears only the marks it was started after, so one
    /// made while it read the stores (a PAY or CANCEL in doubt meanwhile)
    /// keeps the goods in doubt for the next one.
    unsure: AtomicU64,
    unsure_cleared: AtomicU64,
    /// When the periodic refresh may next try to reconcile this goods
    /// (see [`Gate::repair_due`]).
    refresh_repairs: Backoff,
    /// A repair is asked of the admin worker and not yet begun: one request
    /// at a time per goods, however many BUYs find it in doubt.
    repair_asked: AtomicBool,
    /// When an asked-for repair may next run (see
    /// [`Gate::asked_repair_due`]).
    asked_repairs: Backoff,
    /// The newest epoch whose orders were fenced off (0: none), and when
    /// that was first seen: a reconciliation, of any server, took a newer
    /// epoch and should load the stock store under it within moments. If
    /// its server died in between, the stock store keeps the fenced-off
    /// units deducted; [`Gate::reload_overdue`] notices.
    fenced_epoch: AtomicU64,
    fenced_at_ms: AtomicU64,
    /// Request ids naming orders that were never written, to be forgotten
    /// by the next reconciliation once it has taken its epoch (a leaf lock;
    /// see [`Gate::abandon_request`]).
    abandoned: Mutex<Vec<(RequestId, UserId, OrderNo)>>,
    /// When a repair may next be asked for a unit held for an order never
    /// written (see [`Gate::abandoned_holder_repair`]).
    abandoned_holder_repairs: Backoff,
    /// Since when (Unix ms; 0: not) the stock store has had none of this
    /// goods' units left while the order store's live orders were short
    /// of its total (see [`Gate::stranded_for`]).
    stranded_since_ms: AtomicU64,
}

/// The gate held alone; if it was taken for store I/O, BUYs are turned away
/// until it is dropped.
pub struct Exclusive<'a> {
    _guard: RwLockWriteGuard<'a, ()>,
    io_hold: Option<&'a AtomicU32>,
}

impl Drop for Exclusive<'_> {
    fn drop(&mut self) {
        if let Some(holds) = self.io_hold {
            holds.fetch_sub(1, SeqCst);
        }
    }
}

impl Gate {
    /// The shared side for a reservation, unless the exclusive side is held
    /// for store I/O (then `None`: answer `busy`). Waits only for a brief
    /// exclusive holder, and for the reservations it waits behind.
    pub fn enter_for_buy(&self) -> Option<RwLockReadGuard<'_, ()>> {
        loop {
            if let Some(guard) = self.lock.try_read() {
                return Some(guard);
            }
            if self.io_hold.load(SeqCst) > 0 {
                return None;
            }
            if let Some(guard) = self.lock.try_read_for(BRIEF_WAIT) {
                return Some(guard);
            }
        }
    }

    /// The shared side, waiting as long as it takes: for work off the BUY
    /// path that must not run beside a reconciliation (returning units).
    pub fn shared(&self) -> RwLockReadGuard<'_, ()> {
        self.lock.read()
    }

    /// The exclusive side for a change that does no store I/O.
    pub fn exclusive(&self) -> Exclusive<'_> {
        Exclusive {
            _guard: self.lock.write(),
            io_hold: None,
        }
    }

    /// The exclusive side, to be held across store I/O.
    pub fn exclusive_for_io(&self) -> Exclusive<'_> {
        self.io_hold.fetch_add(1, SeqCst);
        Exclusive {
            _guard: self.lock.write(),
            io_hold: Some(&self.io_hold),
        }
    }

    /// As [`exclusive_for_io`](Self::exclusive_for_io), unless another
    /// holder has the gate now.
    pub fn try_exclusive_for_io(&self) -> Option<Exclusive<'_>> {
        let guard = self.lock.try_write()?;
        self.io_hold.fetch_add(1, SeqCst);
        Some(Exclusive {
            _guard: guard,
            io_hold: Some(&self.io_hold),
        })
    }

    pub fn mark_unsure(&self) {
        self.unsure.fetch_add(1, SeqCst);
    }

    pub fn is_unsure(&self) -> bool {
        self.unsure.load(SeqCst) != self.unsure_cleared.load(SeqCst)
    }

    /// Taken before a reconciliation reads the stores; give it back to
    /// [`clear_unsure`](Self::clear_unsure) when it is done.
    pub fn unsure_marks(&self) -> u64 {
        self.unsure.load(SeqCst)
    }

    /// Reconciled: what was in doubt when `marks` was taken is settled.
    pub fn clear_unsure(&self, marks: u64) {
        self.unsure_cleared.fetch_max(marks, SeqCst);
        self.refresh_repairs.reset();
        self.asked_repairs.reset();
    }

    /// Records that a repair is asked for; false if one already is.
    pub fn ask_repair(&self) -> bool {
        !self.repair_asked.swap(true, SeqCst)
    }

    /// The asked-for repair begins: a fault after this asks again.
    pub fn repair_begins(&self) {
        self.repair_asked.store(false, SeqCst);
    }

    /// Notes a request id whose order was never written, for the next
    /// reconciliation to forget; false if it is noted already (or too many
    /// are: the next reconciliation comes first).
    pub fn abandon_request(&self, id: RequestId, user: UserId, order_no: OrderNo) -> bool {
        let mut abandoned = self.abandoned.lock();
        if abandoned.len() >= MAX_ABANDONED || abandoned.contains(&(id, user, order_no)) {
            return false;
        }
        abandoned.push((id, user, order_no));
        true
    }

    /// Whether a repair may be asked at `now_ms` for a unit held for an
    /// order never written (its server died between the deduction and the
    /// commit): at most once every `every_ms`. One reconciliation takes
    /// every such holder out at once; asking more often would only
    /// reconcile a sale over and over where a server's clock runs far
    /// behind, and its orders still being written look old.
    /// (A race between two workers can let both ask: the repair is asked
    /// for once either way, [`Gate::ask_repair`].)
    pub fn abandoned_holder_repair(&self, now_ms: u64, every_ms: u64) -> bool {
        self.abandoned_holder_repairs
            .take(now_ms, every_ms, every_ms)
    }

    /// The request ids noted as abandoned, for a reconciliation that has
    /// taken its epoch to forget.
    pub fn take_abandoned(&self) -> Vec<(RequestId, UserId, OrderNo)> {
        std::mem::take(&mut *self.abandoned.lock())
    }

    /// Orders reserved under `epoch` were fenced off at `now_ms`.
    pub fn note_fenced(&self, epoch: Epoch, now_ms: u64) {
        self.fenced_epoch.fetch_max(epoch, SeqCst);
        let _ = self
            .fenced_at_ms
            .compare_exchange(0, now_ms.max(1), SeqCst, SeqCst);
    }

    pub fn has_fence(&self) -> bool {
        self.fenced_epoch.load(SeqCst) != 0
    }

    /// Whether the reload that fenced off this goods' orders is overdue:
    /// the stock store (at `stock_epoch`) still has the fenced epoch
    /// `grace_ms` after the fence was seen. Forgets the fence once the
    /// stock store has moved past it, or once it reports it overdue.
    pub fn reload_overdue(&self, stock_epoch: Option<Epoch>, now_ms: u64, grace_ms: u64) -> bool {
        let fenced = self.fenced_epoch.load(SeqCst);
        if fenced == 0 {
            return false;
        }
        let moved_on = stock_epoch.is_some_and(|e| e > fenced);
        let overdue = !moved_on && now_ms >= self.fenced_at_ms.load(SeqCst) + grace_ms;
        if moved_on || overdue {
            self.fenced_epoch.store(0, SeqCst);
            self.fenced_at_ms.store(0, SeqCst);
        }
        overdue
    }

    /// How long, at `now_ms`, the goods has looked sold out with units not
    /// in any live order (`short`, as the caller finds it now): 0 when it
    /// does not now, which starts the count again.
    pub fn stranded_for(&self, short: bool, now_ms: u64) -> u64 {
        if !short {
            self.stranded_since_ms.store(0, Relaxed);
            return 0;
        }
        let since =
            match self
                .stranded_since_ms
                .compare_exchange(0, now_ms.max(1), Relaxed, Relaxed)
            {
                Ok(_) => now_ms,
                Err(since) => since,
            };
        now_ms.saturating_sub(since)
    }

    /// No repair before `now_ms + wait_ms`.
    pub fn defer_repair(&self, now_ms: u64, wait_ms: u64) {
        self.refresh_repairs.not_before(now_ms + wait_ms);
    }

    /// Whether an asked-for repair (a BUY, a restock or a control that
    /// found the goods in doubt) should run now: the first at once, then,
    /// while they fail, one per 100 ms doubling to 2 s. Every BUY of an
    /// unsure goods asks again, and each try takes a new epoch and freezes
    /// the goods' stock on every server: a fault that lasts must not keep
    /// the admin worker reconciling it back to back; once the stores are
    /// back, it sells again within 2 s.
    pub fn asked_repair_due(&self, now_ms: u64) -> bool {
        self.asked_repairs.take(now_ms, 100, 2_000)
    }

    /// Whether asked-for repairs are backing off at `now_ms`: asking for
    /// one then would only wake the admin worker to find none due.
    pub fn asked_repairs_wait(&self, now_ms: u64) -> bool {
        !self.asked_repairs.due(now_ms)
    }

    /// Whether the periodic refresh should try to repair this goods now; if
    /// so, the next try waits twice as long (1 s doubling to 30 s) unless a
    /// reconciliation succeeds first.
    pub fn repair_due(&self, now_ms: u64) -> bool {
        self.refresh_repairs.take(now_ms, 1_000, 30_000)
    }
}

/// A schedule of tries of something that may keep failing: due at once,
/// then after each try taken, not before a wait that doubles from `min_ms`
/// to `max_ms`; [`reset`](Self::reset) once it worked. Atomics: taken by
/// one thread at a time in practice (the refresh, the admin worker), and a
/// race costs one try more or less.
#[derive(Default)]
struct Backoff {
    at_ms: AtomicU64,
    wait_ms: AtomicU64,
}

impl Backoff {
    /// Whether a try is due at `now_ms`; if so, the next one waits longer.
    fn take(&self, now_ms: u64, min_ms: u64, max_ms: u64) -> bool {
        if now_ms < self.at_ms.load(Relaxed) {
            return false;
        }
        let wait = (self.wait_ms.load(Relaxed) * 2).clamp(min_ms, max_ms);
        self.wait_ms.store(wait, Relaxed);
        self.at_ms.store(now_ms + wait, Relaxed);
        true
    }

    /// Whether a try would be due at `now_ms`, without taking it.
    fn due(&self, now_ms: u64) -> bool {
        now_ms >= self.at_ms.load(Relaxed)
    }

    fn reset(&self) {
        self.wait_ms.store(0, Relaxed);
        self.at_ms.store(0, Relaxed);
    }

    /// No try before `at_ms`.
    fn not_before(&self, at_ms: u64) {
        self.at_ms.store(at_ms, Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_buy_is_turned_away_only_while_the_gate_is_held_for_io() {
        let gate = Gate::default();
        {
            let _alone = gate.exclusive_for_io();
            assert!(gate.enter_for_buy().is_none());
        }
        assert!(gate.enter_for_buy().is_some());
        // A brief holder is waited for.
        std::thread::scope(|s| {
            let alone = gate.exclusive();
            let buyer = s.spawn(|| gate.enter_for_buy().is_some());
            std::thread::sleep(Duration::from_millis(20));
            drop(alone);
            assert!(buyer.join().unwrap());
        });
        // One holder for I/O letting go while another waits for the gate
        // does not open it to BUYs.
        std::thread::scope(|s| {
            let first = gate.exclusive_for_io();
            let second = s.spawn(|| {
                let _second = gate.exclusive_for_io();
                std::thread::sleep(Duration::from_millis(20));
            });
            std::thread::sleep(Duration::from_millis(20));
            drop(first);
            std::thread::sleep(Duration::from_millis(5));
            assert!(gate.enter_for_buy().is_none());
            second.join().unwrap();
        });
        assert!(gate.enter_for_buy().is_some());
        // Shared holders do not keep each other out.
        let _a = gate.enter_for_buy().unwrap();
        assert!(gate.enter_for_buy().is_some());
        assert!(gate.try_exclusive_for_io().is_none());
    }

    /// Asked-for repairs: the first at once, then spaced 100 ms doubling to
    /// 2 s while they fail, and at once again after a reconciliation.
    #[test]
    fn asked_repairs_back_off_while_they_fail() {
        let gate = Gate::default();
        assert!(gate.asked_repair_due(1_000));
        assert!(!gate.asked_repair_due(1_050));
        assert!(gate.asked_repair_due(1_100));
        assert!(!gate.asked_repair_due(1_250));
        assert!(gate.asked_repair_due(1_300));
        let mut at = 1_300;
        for _ in 0..10 {
            at += 2_000;
            assert!(gate.asked_repair_due(at), "capped at 2 s");
        }
        gate.clear_unsure(gate.unsure_marks());
        assert!(gate.asked_repair_due(at + 1));
    }
}
