//! Reconciliation: the stock store rebuilt from the order store.
//!
//! The order store (plus, in the `queued` mode, the orders queued but not yet
//! written) is the truth. A crash between a deduction and its commit leaves a
//! unit reserved with no order behind it; a Redis restart loses the stock
//! altogether. Reconciling a goods recomputes remaining = total − orders and
//! the set of buyers, compares it with what the stock store holds (the
//! drift), and loads the truth into the stock store.
//!
//! Reconciling takes the goods' gate alone, so no deduction runs beside it
//! (BUYs of the goods are answered `busy` meanwhile), and first waits for
//! reserved units ([`super::PendingOrder`]s) to be committed or released:
//! what it reads from the stores is then complete for this server's orders.
//!
//! Other servers' deductions are not held off: the epoch fences them. A
//! reconciliation first takes a new epoch from the order store, then counts
//! the orders, then loads the stock store under that epoch, unless a later
//! reconciliation's load came first. An order whose unit was reserved under
//! an older epoch is not written after the new epoch was taken (the order
//! writer's transaction checks it), so the count misses no order that will
//! ever exist, and no unit is put back on sale while its order may still be
//! committed — whichever server reconciles, and however many do at once.

use std::collections::{BTreeSet, HashSet};
use std::time::Duration;

use log::{error, info, warn};
use seckill_proto::{Drift, NO_TOKEN};

use super::{Entry, Sale};
use crate::store::{GoodsId, Loaded, OrderNo, StoreError, Unmade, UserId};
use crate::telemetry::StoreCall;

/// How long reconciliation waits for a goods' reserved units to settle.
const SETTLE_WITHIN: Duration = Duration::from_secs(10);

/// One line for the log.
pub fn describe(d: &Drift) -> String {
    let found = match d.found_remaining {
        Some(left) => format!("{left} left and {} buyers", d.found_holders),
        None => "nothing".into(),
    };
    format!(
        "goods {}: stock store had {found}; now {} left and {} buyers",
        d.goods_id, d.remaining, d.holders
    )
}

impl Sale {
    /// Reconciles one goods, or every goods with `None`.
    pub fn reconcile(&self, goods: Option<GoodsId>) -> Result<Vec<Drift>, StoreError> {
        let entries = match goods {
            Some(id) => vec![self.catalog.get(id).ok_or(StoreError::UnknownGoods(id))?],
            None => self.catalog.all(),
        };
        entries
            .iter()
            .map(|entry| {
                let drift = {
                    let _gate = entry.gate.exclusive_for_io();
                    self.timed_reconcile(entry)
                };
                self.recount_live(entry, &drift);
                drift
            })
            .collect()
    }

    /// Every goods at start. One that cannot be reconciled now (its shard
    /// down, another server reconciling it) is left in doubt, its BUYs
    /// `busy` until the repair the doubt asks for succeeds, rather than
    /// fail the start: start-up would try again in a moment and reconcile
    /// every goods again, each time taking a new epoch and freezing it on
    /// every server. Only when none can be reconciled does the start fail
    /// (the stores are down: start-up waits for them).
    pub(super) fn reconcile_at_start(&self) -> Result<(), StoreError> {
        let entries = self.catalog.all();
        let mut failed = Vec::new();
        for entry in &entries {
            let reconciled = {
                let _gate = entry.gate.exclusive_for_io();
                self.timed_reconcile(entry)
            };
            self.recount_live(entry, &reconciled);
            match reconciled {
                Ok(drift) if !drift.is_in_step() => {
                    warn!("reconciled at start: {}", describe(&drift));
                }
                Ok(_) => {}
                Err(e) => failed.push((entry, e)),
            }
        }
        if failed.len() == entries.len() {
            if let Some((_, e)) = failed.into_iter().next() {
                return Err(e);
            }
            return Ok(());
        }
        for (entry, e) in failed {
            warn!(
                "goods {} not reconciled at start ({e}): its BUYs are busy until it is",
                entry.id
            );
            entry.gate.mark_unsure();
            self.request_repair(entry);
        }
        Ok(())
    }

    /// After a reconciliation that succeeded, the order store's own count of
    /// the goods' live orders, set right should it have drifted. Not part
    /// of the sale's repair (the stock is loaded; the count only caps what
    /// the order store takes), so run with the gate let go (this server's
    /// BUYs of the goods sell meanwhile), and a failure is only logged: the
    /// next reconciliation tries again.
    fn recount_live(&self, entry: &Entry, reconciled: &Result<Drift, StoreError>) {
        if reconciled.is_err() {
            return;
        }
        match self.orders.recount_live(entry.id) {
            Ok(None) => {}
            Ok(Some((was, live))) => warn!(
                "goods {}: the order store counted {was} live orders where it holds {live}: set right",
                entry.id
            ),
            Err(e) => warn!("goods {}: recounting its live orders: {e}", entry.id),
        }
    }

    /// After a store fault (the stock store lost the goods, or an order
    /// write ended in doubt): reconcile it, unless another worker already
    /// is.
    pub(super) fn reconcile_lost(&self, entry: &Entry) {
        let drift = {
            let Some(_gate) = entry.gate.try_exclusive_for_io() else {
                return;
            };
            self.timed_reconcile(entry)
        };
        self.recount_live(entry, &drift);
        match drift {
            Ok(drift) => warn!("reconciled after a store fault: {}", describe(&drift)),
            // Still unavailable: the next BUY tries again.
            Err(e) => warn!("reloading goods {} into the stock store: {e}", entry.id),
        }
    }

    /// Forgets the request ids noted as naming orders that were never
    /// written, once the new epoch is taken: from then on no late write of
    /// those orders can succeed, so their BUYs' retries may be decided
    /// afresh. But one may have been written after it was noted and before
    /// the epoch (a batch past its fence commits before the epoch can be
    /// taken; a writer stalled for a minute): the order store is asked
    /// again now, when its answer can no longer change, and the id of an
    /// order it has is kept, so that a retry gets that order back rather
    /// than a second unit. Where the stock store or the order store cannot
    /// say, the ids stay noted for the next reconciliation.
    fn forget_abandoned(&self, entry: &Entry) {
        let abandoned = entry.gate.take_abandoned();
        if abandoned.is_empty() {
            return;
        }
        let order_nos: Vec<OrderNo> = abandoned.iter().map(|&(_, _, o)| o).collect();
        let forgotten = self.orders.stored(&order_nos).and_then(|stored| {
            let stored: HashSet<OrderNo> = stored.into_iter().collect();
            let never_written: Vec<Unmade> = abandoned
                .iter()
                .filter(|(_, _, o)| !stored.contains(o))
                .map(|&(id, user, order_no)| Unmade {
                    user,
                    order_no,
                    request_id: Some(id),
                    token: NO_TOKEN,
                })
                .collect();
            if never_written.is_empty() {
                return Ok(());
            }
            self.stock.forget_unmade(entry.id, &never_written)
        });
        if let Err(e) = forgotten {
            warn!("goods {}: forgetting abandoned request ids: {e}", entry.id);
            for (id, user, order_no) in abandoned {
                entry.gate.abandon_request(id, user, order_no);
            }
        }
    }

    fn timed_reconcile(&self, entry: &Entry) -> Result<Drift, StoreError> {
        self.metrics
            .timing
            .time(StoreCall::Reconcile, || self.reconcile_entry(entry))
    }

    /// The work, with the gate held by the caller.
    fn reconcile_entry(&self, entry: &Entry) -> Result<Drift, StoreError> {
        let marks = entry.gate.unsure_marks();
        if !entry.gate.in_flight.wait_settled(SETTLE_WITHIN) {
            return Err(StoreError::Unavailable(format!(
                "goods {}: reserved units did not settle within {SETTLE_WITHIN:?}",
                entry.id
            )));
        }
        // A new epoch first: from here on no order reserved before it is
        // written (the order writers' transactions check it), by this server
        // or any other. Then the stock store is frozen under it: no script
        // of any server reserves or queues anything until the load, so the
        // count below misses no order that will ever exist.
        let above = self.stock.epoch(entry.id)?.unwrap_or(0);
        let epoch = self.orders.next_epoch(entry.id, above)?;
        self.forget_abandoned(entry);
        // A freeze that failed may have frozen some of the goods (a part of
        // a goods split over buckets, or a script whose reply was lost): the
        // goods is repaired as soon as possible, as after a failed count.
        let frozen = self
            .stock
            .begin_load(entry.id, epoch)
            .inspect_err(|_| entry.gate.mark_unsure())?;
        if let Loaded::Superseded(later) = frozen {
            return Err(StoreError::Unavailable(format!(
                "goods {}: being reconciled by another server (epoch {later})",
                entry.id
            )));
        }
        // From here a failure leaves the goods frozen in the stock store
        // (every server's BUYs of it busy): this server repairs it as soon
        // as it can rather than wait for another to take it over.
        let counted = (|| -> Result<_, StoreError> {
            let found = self.stock.snapshot(entry.id)?;
            // The sale controls too, as the order store has them now, in place
            // before the load ends the freeze: the stock store may have lost
            // them with its data (it keeps the highest version it is given, so
            // a newer one set meanwhile stands).
            let record = self
                .orders
                .find_goods(entry.id)?
                .ok_or(StoreError::UnknownGoods(entry.id))?;
            self.stock.control(entry.id, &record.sale())?;
            entry.view.controls_passed(record.sale_version);
            entry.view.set_sale(&record.sale());
            // And the total as it is now, read once: another server may have
            // restocked it since this server last read it, and the count and
            // the load must name the same total (a restock's ADD resent after
            // the load adds what the load's total does not cover).
            let total = record.total;
            entry.view.raise_total(total);
            let (pairs, remaining) = self.rebuild(entry, total)?;
            let loaded = self.stock.load(entry.id, remaining, &pairs, epoch, total)?;
            if let Loaded::Superseded(later) = loaded {
                // Another server froze the goods after this one counted: its
                // count is the newer one, and stands.
                info!(
                    "goods {}: reconciled by another server meanwhile (epoch {later} after {epoch})",
                    entry.id
                );
            }
            Ok((found, pairs, remaining))
        })();
        let (found, pairs, remaining) = counted.inspect_err(|_| entry.gate.mark_unsure())?;
        let sold = u32::try_from(pairs.len()).unwrap_or(u32::MAX);
        entry.view.set_remaining(remaining);
        entry.holders.set(&pairs);
        entry.gate.clear_unsure(marks);
        Ok(Drift {
            goods_id: entry.id,
            found_remaining: found.as_ref().map(|(left, _)| *left),
            found_holders: found.map_or(0, |(_, buyers)| {
                u32::try_from(buyers.len()).unwrap_or(u32::MAX)
            }),
            remaining,
            holders: sold,
        })
    }

    /// The holders and units left of a goods as the order store (and the
    /// queue, in the queued mode, or what a queued server left in it) say.
    fn rebuild(
        &self,
        entry: &Entry,
        total: u32,
    ) -> Result<(Vec<(UserId, OrderNo)>, u32), StoreError> {
        // The queue before the order store: an order that moves from one to
        // the other in between is then seen twice (and counted once), never
        // missed.
        let queued = match self.queues.holding() {
            Some(q) => q.queued(entry.id)?,
            None => Vec::new(),
        };
        // A queued order the order store already has is counted from there
        // (live or not): it may have been written and then cancelled, its
        // unit returned, before the drain acknowledged its entry. Asked
        // before the live orders are read, so that an order written in
        // between is counted from one or the other (once), never neither.
        let numbers: Vec<OrderNo> = queued.iter().map(|o| o.order_no).collect();
        let written: std::collections::HashSet<OrderNo> =
            self.orders.stored(&numbers)?.into_iter().collect();
        let mut holders: BTreeSet<(UserId, OrderNo)> =
            self.orders.live_holders(entry.id)?.into_iter().collect();
        holders.extend(
            queued
                .iter()
                .filter(|o| !written.contains(&o.order_no))
                .map(|o| (o.user_id, o.order_no)),
        );

        let sold = u32::try_from(holders.len()).unwrap_or(u32::MAX);
        if sold > total {
            error!(
                "goods {} has {sold} orders for a total of {total}: oversold",
                entry.id
            );
        }
        Ok((holders.into_iter().collect(), total.saturating_sub(sold)))
    }
}
