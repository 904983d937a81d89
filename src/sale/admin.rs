//! Admin commands: ADD_GOODS, RESTOCK, SALE_CONTROL and RECONCILE, and the
//! repair of goods a BUY found in doubt. They run on the admin worker, never
//! on a BUY worker, so that a reconciliation waiting for a goods to settle
//! holds up no BUY of any other goods.

use log::{debug, error, warn};
use seckill_proto::{NewGoods, Reply, RequestId, SaleAction, Status, StockParts};

use super::{describe, now_ms, store_failure, unknown_goods, Sale, MAX_PAY_WINDOW_MS};
use crate::store::{GoodsId, GoodsRecord, Restocked, SaleChange, StoreError};
use seckill_redis_scripts::MAX_BUCKETS;

impl Sale {
    /// ADD_GOODS. With a request id it is safe to send again: a repeat
    /// (after a lost reply, a timeout, a restart of either side) gets the
    /// goods the first one made, found in the order store by its id.
    pub fn add_goods(&self, new: &NewGoods, request_id: Option<RequestId>) -> Reply {
        if new.name.trim().is_empty() {
            return Reply::error(Status::BadRequest, "a goods needs a name");
        }
        if new.end_ms <= new.start_ms {
            return Reply::error(Status::BadRequest, "the sale must end after it starts");
        }
        if new.rules.per_user_limit == 0 {
            return Reply::error(Status::BadRequest, "the purchase limit must be at least 1");
        }
        if new.rules.pay_window_ms == 0 || new.rules.pay_window_ms > MAX_PAY_WINDOW_MS {
            return Reply::error(
                Status::BadRequest,
                "the payment window must be between 1 ms and 366 days",
            );
        }
        if !(1..=MAX_BUCKETS).contains(&new.buckets) {
            return Reply::error(
                Status::BadRequest,
                format!("a goods has 1 to {MAX_BUCKETS} buckets"),
            );
        }
        // The id proper: the repeat mark says nothing about which goods.
        // An id of only the mark is no id, as for BUY.
        let request_id = request_id.and_then(RequestId::purchase);
        if let Some(id) = request_id {
            match self.orders.added_by(id) {
                Ok(Some(found)) => return self.added_before(new, id, &found),
                Ok(None) => {}
                Err(e) => return store_failure("order store", &e),
            }
        }
        // LIST_GOODS answers every goods in one reply, which must fit a
        // client's reply limit. Counted in this server's catalog, which
        // another server's goods reach within a refresh: two servers adding
        // at once may pass the cap by a few, inside its margin.
        if self.catalog.len() >= self.max_goods {
            return Reply::error(
                Status::BadRequest,
                format!("a sale holds at most {} goods", self.max_goods),
            );
        }
        let record = match self.orders.add_goods(new, request_id) {
            Ok(r) => r,
            // Another server added under this id meanwhile (the key
            // refused ours), or our commit went through and its reply was
            // lost: either way the order store now names the goods.
            Err(e) => match request_id.map(|id| (id, self.orders.added_by(id))) {
                Some((id, Ok(Some(found)))) => return self.added_before(new, id, &found),
                _ => return store_failure("order store", &e),
            },
        };
        self.stock.split(record.id, record.buckets);
        let loaded = self.orders.next_epoch(record.id, 0).and_then(|epoch| {
            self.stock.begin_load(record.id, epoch)?;
            self.stock
                .load(record.id, record.total, &[], epoch, record.total)?;
            self.stock.control(record.id, &record.sale())
        });
        let entry = self.catalog.insert(&record, record.total);
        if loaded.is_ok() {
            // The catalog's refresh may have found it first.
            entry.view.set_remaining(record.total);
        }
        if let Err(e) = loaded {
            // The goods exists (the order store has it), so the command
            // succeeded: answering `busy` would have the admin add it twice.
            // Its stock is loaded by the reconciliation before its first
            // sale.
            warn!(
                "goods {} added; its stock is not loaded yet: {e}",
                record.id
            );
            entry.gate.mark_unsure();
        }
        Reply::GoodsAdded(entry.view.to_goods(now_ms()))
    }

    /// STOCK: where a goods' units are in the stock store, against its
    /// total as the order store has it now. Read part by part while the sale
    /// goes on, it may be off by the BUYs and releases of that moment; a
    /// move between parts cannot put it off (see `send.lua`).
    pub fn stock_parts(&self, goods: GoodsId) -> Reply {
        let record = match self.orders.find_goods(goods) {
            Ok(Some(record)) => record,
            Ok(None) => return unknown_goods(goods),
            Err(e) => return store_failure("order store", &e),
        };
        match self.stock.parts(goods) {
            Ok(Some(parts)) => Reply::Stock(StockParts {
                goods_id: goods,
                total: record.total,
                pool: parts.pool,
                in_flight: parts.in_flight,
                holders: parts.holders,
                buckets: parts.buckets,
            }),
            Ok(None) => Reply::error(
                Status::Busy,
                format!("the stock store holds no stock of goods {goods}: it is reconciled before its next sale"),
            ),
            Err(e) => store_failure("stock store", &e),
        }
    }

    /// The answer to a repeated ADD_GOODS: the goods its first send made,
    /// as it stands now. A repeat naming another goods is a client's
    /// mistake (one id for two additions), refused rather than answered
    /// with a goods the caller did not mean.
    fn added_before(&self, new: &NewGoods, id: RequestId, found: &GoodsRecord) -> Reply {
        if found.name != new.name || found.buckets != new.buckets {
            return Reply::error(
                Status::BadRequest,
                format!(
                    "request id {id} already added goods {} under another name or buckets",
                    found.id
                ),
            );
        }
        match self.catalog.get(found.id) {
            Some(entry) => Reply::GoodsAdded(entry.view.to_goods(now_ms())),
            // Added by another server a moment ago: this one's catalog
            // learns of it at its next refresh.
            None => Reply::error(
                Status::Busy,
                format!(
                    "goods {} is not loaded on this server yet, retry later",
                    found.id
                ),
            ),
        }
    }

    pub fn restock(&self, goods: GoodsId, amount: u32) -> Reply {
        let Some(entry) = self.catalog.get(goods) else {
            return unknown_goods(goods);
        };
        if amount == 0 {
            return Reply::error(Status::BadRequest, "restock amount must be positive");
        }
        let overflow = |total: u32| {
            Reply::error(
                Status::BadRequest,
                format!("total stock would overflow: it is {total}, at most 4294967295"),
            )
        };
        // This server's total may be behind another server's restock: the
        // order store checks again against its own.
        if entry.view.total().checked_add(amount).is_none() {
            return overflow(entry.view.total());
        }
        // Alone with the goods: a reconciliation in between would count the
        // new units twice.
        let _gate = entry.gate.exclusive_for_io();
        // The order store first: if the stock store then fails, the total is
        // right and the units are merely not yet for sale (never oversold).
        let record = match self.orders.restock(goods, amount) {
            Ok(Restocked::Raised(record)) => record,
            Ok(Restocked::Refused { total }) => {
                entry.view.raise_total(total);
                return overflow(total);
            }
            // Made or not: if it was, the stock store has not been told, and
            // the units would stay off sale until something reconciled the
            // goods. Reconciled now, which loads the total the order store
            // has. The admin is told to look before restocking again.
            Err(e @ StoreError::Indeterminate(_)) => {
                error!("order store: {e}");
                // Unsure first: a BUY that finds the flag down finds the
                // goods unsure. (No reservation runs until the gate is
                // let go, so none can raise the flag again before.)
                entry.gate.mark_unsure();
                entry.view.may_have_more();
                self.request_repair(&entry);
                return Reply::error(
                    Status::InternalError,
                    "the restock's outcome is unknown: read the goods' total (GET_GOODS) \
                     before restocking again",
                );
            }
            Err(e) => return store_failure("order store", &e),
        };
        match self.stock.add(goods, amount, record.total) {
            Ok(remaining) => entry.view.restocked(record.total, remaining),
            Err(e) => {
                // The order store has the new total, so the restock happened
                // (answering `busy` would have it done twice); the stock
                // store may or may not have the units, which the
                // reconciliation before the next sale settles (the epoch
                // fence stops a late ADD from counting them twice).
                warn!("goods {goods} restocked; the stock store not yet: {e}");
                entry.view.restocked(record.total, entry.view.remaining());
                // As for a restock in doubt: BUYs busy, not sold out, until
                // the repair asked for here has the stock store in step.
                entry.gate.mark_unsure();
                entry.view.may_have_more();
                self.request_repair(&entry);
            }
        }
        Reply::Restocked(entry.view.to_goods(now_ms()))
    }

    /// SALE_CONTROL. The order store first; then the catalog changes under
    /// the goods' gate taken alone, so that reservations already running
    /// finish first and every later one (on any reactor or worker) sees the
    /// change.
    pub fn control(&self, goods: GoodsId, action: SaleAction) -> Reply {
        let Some(entry) = self.catalog.get(goods) else {
            return unknown_goods(goods);
        };
        let change = match action {
            SaleAction::Pause => SaleChange::Pause,
            SaleAction::Resume => SaleChange::Resume,
            SaleAction::End => SaleChange::End { now_ms: now_ms() },
            SaleAction::Window { start_ms, end_ms } if end_ms <= start_ms => {
                return Reply::error(Status::BadRequest, "the sale must end after it starts");
            }
            SaleAction::Window { start_ms, end_ms } => SaleChange::Window { start_ms, end_ms },
        };
        // Applied by the order store to what it holds now, not to this
        // server's view of it: another server's control a moment ago
        // stands, whatever this catalog has seen of it yet.
        let record = match self.orders.save_sale(goods, change) {
            Ok(record) => record,
            Err(e) => return store_failure("order store", &e),
        };
        // The stock store enforces it on every server's next BUY. If it
        // cannot be told now, the control stands (the order store has it):
        // here the goods sells nothing until a reconciliation has told the
        // stock store, and the other servers pass it on at their next
        // catalog refresh, but until then they may still sell: so the
        // admin is told `busy`, not `ok`, and a repeat (the same control,
        // harmless twice) is `ok` once the stock store has it.
        let told = match self.stock.control(goods, &record.sale()) {
            Ok(()) => {
                entry.view.controls_passed(record.sale_version);
                true
            }
            Err(e) => {
                warn!("sale of goods {goods} changed; the stock store not yet: {e}");
                entry.gate.mark_unsure();
                false
            }
        };
        {
            let _gate = entry.gate.exclusive();
            entry.view.set_sale(&record.sale());
        }
        if !told {
            return Reply::error(
                Status::Busy,
                "the change is saved and in force on this server; the stock store could not be \
                 told, so other servers may go on selling until their next catalog refresh \
                 (within a second): send it again to be sure",
            );
        }
        // The admin log (admin_log.rs) says it at info, with who asked.
        debug!(
            "sale of goods {goods}: {} (paused {}, window {}..{})",
            action.as_str(),
            record.paused,
            record.start_ms,
            record.end_ms
        );
        Reply::SaleChanged(entry.view.to_goods(now_ms()))
    }

    /// RECONCILE: one goods, or all with `None`.
    pub fn reconcile_reply(&self, goods: Option<GoodsId>) -> Reply {
        match self.reconcile(goods) {
            Ok(drifts) => {
                for d in drifts.iter().filter(|d| !d.is_in_step()) {
                    warn!("reconciled: {}", describe(d));
                }
                Reply::Reconciled(drifts)
            }
            Err(e) => store_failure("reconcile", &e),
        }
    }

    /// Reconciles a goods a BUY found in doubt (see
    /// [`repair_requests`](Self::repair_requests)), if it still is.
    pub fn repair(&self, goods: GoodsId) {
        if let Some(entry) = self.catalog.get(goods) {
            entry.gate.repair_begins();
            if entry.gate.is_unsure() && entry.gate.asked_repair_due(now_ms()) {
                self.reconcile_lost(&entry);
            }
        }
    }
}
