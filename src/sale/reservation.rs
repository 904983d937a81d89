//! A reserved unit as a value.
//!
//! In the `durable` ack mode a BUY's unit is deducted in the stock store
//! before its order is written. Until the order store has the order, or the
//! unit is back in the stock store, the two stores disagree by that unit,
//! and reconciliation (which rebuilds the stock store from the order store)
//! must wait, or it would put the unit back on sale while its order is
//! still being committed.
//!
//! [`PendingOrder`] is that unit. It is made only where the stock store said
//! "reserved", travels from the worker to the order writer, and is settled
//! exactly once: [`PendingOrder::settle`] when the order is written or the unit
//! returned, or by being dropped (the writer is gone, the write's outcome
//! is unknown), which leaves the unit reserved and marks the goods for
//! reconciliation: never oversold, and returned by the next reconciliation.
//! The goods' in-flight count rises when one is made and falls when it goes
//! away, so it cannot be left raised or lowered twice.

use std::sync::atomic::{AtomicU32, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::catalog::Entry;
use seckill_proto::RequestId;

use crate::store::{Epoch, OrderRecord, Unmade};

/// The count of a goods' [`PendingOrder`] units; only they change it.
#[derive(Default)]
pub struct InFlight(AtomicU32);

impl InFlight {
    fn raise(&self) {
        self.0.fetch_add(1, Relaxed);
    }

    fn lower(&self) {
        self.0.fetch_sub(1, Relaxed);
    }

    /// Waits until every reserved unit is settled, or the deadline passes.
    /// Called with the gate held alone, so that none is added meanwhile.
    pub fn wait_settled(&self, within: Duration) -> bool {
        let deadline = Instant::now() + within;
        while self.0.load(Relaxed) > 0 {
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        true
    }
}

/// A unit reserved in the stock store for an order not yet written.
#[must_use = "a reserved unit left unsettled keeps its goods in doubt"]
pub struct PendingOrder {
    order: OrderRecord,
    /// The goods' epoch the unit was reserved under: the order is written
    /// only if the goods still has it.
    epoch: Epoch,
    /// The client's id of the BUY, which the stock store recorded with
    /// this order: forgotten again if the order is never written.
    request_id: Option<RequestId>,
    /// The BUY's purchase token (`NO_TOKEN`: none), which the stock store
    /// marked spent on this order: unmarked if the order is never written.
    token: u64,
    goods: Arc<Entry>,
    settled: bool,
}

impl PendingOrder {
    pub(super) fn new(
        goods: Arc<Entry>,
        order: OrderRecord,
        epoch: Epoch,
        request_id: Option<RequestId>,
        token: u64,
    ) -> PendingOrder {
        goods.gate.in_flight.raise();
        PendingOrder {
            order,
            epoch,
            request_id,
            token,
            goods,
            settled: false,
        }
    }

    pub fn order(&self) -> &OrderRecord {
        &self.order
    }

    pub fn epoch(&self) -> Epoch {
        self.epoch
    }

    pub fn request_id(&self) -> Option<RequestId> {
        self.request_id
    }

    /// What names this order in the stock store besides its holder, for
    /// when it will never exist: its request id and its token.
    pub fn unmade(&self) -> Unmade {
        Unmade {
            user: self.order.user_id,
            order_no: self.order.order_no,
            request_id: self.request_id,
            token: self.token,
        }
    }

    /// The stores agree on this unit again: its order is written, or the
    /// unit was handed back to the stock store (whose failure marks the
    /// goods for reconciliation on its own), or a reconciliation that came
    /// between has counted it (its order was fenced off).
    pub(super) fn settle(mut self) {
        self.settled = true;
    }
}

impl Drop for PendingOrder {
    fn drop(&mut self) {
        if !self.settled {
            // Never written, never returned: the unit stays reserved with no
            // order behind it until a reconciliation returns it.
            self.goods.gate.mark_unsure();
        }
        self.goods.gate.in_flight.lower();
    }
}

impl std::fmt::Debug for PendingOrder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PendingOrder")
            .field("order", &self.order)
            .finish()
    }
}

/// Two reservations are the same if they are for the same order.
impl PartialEq for PendingOrder {
    fn eq(&self, other: &Self) -> bool {
        self.order == other.order
    }
}

impl Eq for PendingOrder {}
