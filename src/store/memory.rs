//! The embedded stock store: counters in process memory.
//!
//! Nothing here is durable, and nothing needs to be: the order store is the
//! truth and this store is rebuilt from it at start. Purchase tokens are
//! not in the order store and are lost with the process, which costs only
//! the buyers who held one a new TOKEN request.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use parking_lot::{Mutex, RwLock};
use seckill_proto::{RequestId, NO_TOKEN};

use super::{
    Buyer, Closed, Epoch, GoodsId, Holders, KeptRequest, Levels, Loaded, OrderNo, Reservation,
    ReserveRules, Reserved, SaleState, StockStore, StoreError, TokenRefusal, Unmade, UserId,
    UserMap, REQUEST_ID_TTL_MS,
};
use crate::clock::now_ms;

/// Token entries forgotten per [`StockStore::issue_token`] at most, so that
/// one issue never stalls the goods' lock on a backlog.
pub(super) const PRUNE_BATCH: usize = 100;

#[derive(Default)]
pub struct MemoryStock {
    // The map lock is only written when a goods is added; each goods has its
    // own lock, so sales of different goods never wait on each other.
    goods: RwLock<HashMap<GoodsId, Arc<Mutex<GoodsStock>>>>,
}

#[derive(Default)]
struct GoodsStock {
    /// The epoch of the last load. One process reserves and loads here, so
    /// nothing is ever fenced off, but a load under an older epoch is
    /// refused as the trait says, and reservations report their epoch.
    epoch: Epoch,
    /// The sale controls, as [`StockStore::control`] last recorded them.
    sale: Option<SaleState>,
    /// Units [`StockStore::release`] gave back, ever.
    released: u64,
    /// The total of the last restock applied ([`StockStore::add`]).
    restocked_to: Option<u32>,
    /// Client request ids and the order each reserved, as Redis's `req`.
    requests: Requests,
    remaining: u32,
    /// Each holder's live orders, oldest first (one, mostly).
    holders: UserMap<Vec<OrderNo>>,
    /// Kept across loads: the order store does not know them.
    tokens: Tokens,
}

/// The purchase tokens issued for one goods.
#[derive(Default)]
struct Tokens {
    entries: HashMap<u64, Token>,
    /// `(forget_after_ms, token)`, earliest first: what pruning walks.
    forget: BTreeSet<(u64, u64)>,
}

struct Token {
    user: UserId,
    expires_ms: u64,
    /// The order it reserved, once it did.
    order: Option<OrderNo>,
}

/// When a token issued at `now_ms` may be forgotten: as long after its
/// expiry as it lived before it, so that for a while a late BUY hears
/// "expired" rather than "invalid". Shared with the Redis store, which must
/// agree.
pub(super) fn forget_after(now_ms: u64, expires_ms: u64) -> u64 {
    expires_ms.saturating_add(expires_ms.saturating_sub(now_ms))
}

impl Tokens {
    /// Forgets up to [`PRUNE_BATCH`] entries due by `now_ms`.
    fn prune(&mut self, now_ms: u64) {
        for _ in 0..PRUNE_BATCH {
            match self.forget.first() {
                Some(&(due, token)) if due <= now_ms => {
                    self.forget.pop_first();
                    self.entries.remove(&token);
                }
                _ => break,
            }
        }
    }

    /// Records a token unless it is already known: a repeated issue (a
    /// retry) must not wipe out the order that used it.
    fn issue(&mut self, user: UserId, token: u64, expires_ms: u64, now_ms: u64) {
        self.prune(now_ms);
        if token == NO_TOKEN || self.entries.contains_key(&token) {
            return;
        }
        self.entries.insert(
            token,
            Token {
                user,
                expires_ms,
                order: None,
            },
        );
        self.forget
            .insert((forget_after(now_ms, expires_ms), token));
    }
}

/// The request ids a goods remembers: id → (user, order number), and when
/// each may be forgotten.
#[derive(Default)]
struct Requests {
    /// Each id's order, and when it is to be forgotten (its key in
    /// `forget`, so that forgetting one early finds it at once).
    orders: HashMap<u128, (UserId, OrderNo, u64)>,
    forget: BTreeSet<(u64, u128)>,
}

impl Requests {
    fn prune(&mut self, now_ms: u64) {
        for _ in 0..PRUNE_BATCH {
            match self.forget.first() {
                Some(&(due, id)) if due <= now_ms => {
                    self.forget.pop_first();
                    self.orders.remove(&id);
                }
                _ => break,
            }
        }
    }
}

impl GoodsStock {
    /// One buyer's decision, in the order of checks that
    /// [`StockStore::reserve`] documents.
    fn decide(
        &mut self,
        rules: &ReserveRules,
        buyer: &Buyer,
        closed: Option<Closed>,
    ) -> Reservation {
        // The proto allows no limit of 0; should one come, it means 1
        // rather than "nobody may buy".
        let limit = usize::from(rules.per_user_limit.max(1));
        let held = self.holders.get(&buyer.user).map_or(&[][..], Vec::as_slice);
        // Tokens mean nothing on a goods that requires none.
        let token = if rules.token_required && buyer.token != NO_TOKEN {
            self.tokens.entries.get(&buyer.token)
        } else {
            None
        };
        // 0. This very call again: its proposed order is held already, so an
        //    earlier run reserved it; answered as that run was.
        if held.contains(&buyer.order_no) {
            return Reservation::Reserved;
        }
        // 0'. A BUY retried under its request id: its first order.
        let request = buyer.request_id.map(RequestId::get);
        if let Some(&(user, order_no, _)) = request.and_then(|id| self.requests.orders.get(&id)) {
            return match user == buyer.user {
                true => Reservation::Replayed(order_no),
                false => Reservation::RequestIdTaken,
            };
        }
        // 0''. The sale controls.
        if let Some(closed) = closed {
            return Reservation::Closed(closed);
        }
        // 1. A retried BUY: the token bought an order the user still holds.
        if let Some(order) = token.filter(|t| t.user == buyer.user).and_then(|t| t.order) {
            if held.contains(&order) {
                return Reservation::Held(order);
            }
        }
        // 2. The user holds as many orders as the limit allows.
        if held.len() >= limit {
            if let Some(&first) = held.first() {
                return Reservation::Held(first);
            }
        }
        // 3. The token must be the user's, unused and not expired.
        if rules.token_required {
            match token {
                Some(t) if t.user == buyer.user => {
                    if t.order.is_some() {
                        return Reservation::Token(TokenRefusal::Used);
                    }
                    if rules.now_ms >= t.expires_ms {
                        return Reservation::Token(TokenRefusal::Expired);
                    }
                }
                _ => return Reservation::Token(TokenRefusal::Invalid),
            }
        }
        // 4. A unit, if one is left. Sold out does not spend the token.
        if self.remaining == 0 {
            return Reservation::SoldOut;
        }
        self.remaining -= 1;
        self.holders
            .entry(buyer.user)
            .or_default()
            .push(buyer.order_no);
        if rules.token_required {
            if let Some(t) = self.tokens.entries.get_mut(&buyer.token) {
                t.order = Some(buyer.order_no);
            }
        }
        if let Some(id) = request {
            let forget_at = rules.now_ms.saturating_add(REQUEST_ID_TTL_MS);
            self.requests
                .orders
                .insert(id, (buyer.user, buyer.order_no, forget_at));
            self.requests.forget.insert((forget_at, id));
        }
        Reservation::Reserved
    }

    /// Gives back the unit of one held order; false if it is not held.
    fn release(&mut self, user: UserId, order_no: OrderNo) -> bool {
        let Some(orders) = self.holders.get_mut(&user) else {
            return false;
        };
        let Some(at) = orders.iter().position(|&o| o == order_no) else {
            return false;
        };
        orders.remove(at);
        if orders.is_empty() {
            self.holders.remove(&user);
        }
        self.remaining = self.remaining.saturating_add(1);
        self.released += 1;
        true
    }
}

impl MemoryStock {
    pub fn new() -> Self {
        Self::default()
    }

    fn get(&self, goods: GoodsId) -> Result<Arc<Mutex<GoodsStock>>, StoreError> {
        self.goods
            .read()
            .get(&goods)
            .cloned()
            .ok_or(StoreError::UnknownGoods(goods))
    }

    /// [`StockStore::issue_token`] at a given time (the tests' clock).
    fn issue_token_at(
        &self,
        goods: GoodsId,
        user: UserId,
        token: u64,
        expires_ms: u64,
        now_ms: u64,
    ) -> Result<(), StoreError> {
        let stock = self.get(goods)?;
        stock.lock().tokens.issue(user, token, expires_ms, now_ms);
        Ok(())
    }
}

impl StockStore for MemoryStock {
    /// Replaces the units and holders of a goods in place, under its lock:
    /// a reservation racing the load is then either before it or after it,
    /// never made on a stock the load threw away. The tokens are kept.
    fn load(
        &self,
        goods: GoodsId,
        remaining: u32,
        holders: &[(UserId, OrderNo)],
        epoch: Epoch,
        total: u32,
    ) -> Result<Loaded, StoreError> {
        let mut by_user: UserMap<Vec<OrderNo>> = UserMap::default();
        for &(user, order_no) in holders {
            let orders = by_user.entry(user).or_default();
            // The same pair twice is one order, not two units.
            if !orders.contains(&order_no) {
                orders.push(order_no);
            }
        }
        let stock = Arc::clone(self.goods.write().entry(goods).or_default());
        let mut stock = stock.lock();
        if stock.epoch >= epoch {
            return Ok(Loaded::Superseded(stock.epoch));
        }
        stock.epoch = epoch;
        stock.restocked_to = Some(stock.restocked_to.map_or(total, |t| t.max(total)));
        stock.remaining = remaining;
        stock.holders = by_user;
        Ok(Loaded::Now)
    }

    fn forget_unmade(&self, goods: GoodsId, unmade: &[Unmade]) -> Result<(), StoreError> {
        let stock = self.get(goods)?;
        let mut stock = stock.lock();
        for u in unmade {
            if let Some(id) = u.request_id.map(RequestId::get) {
                if let Some(&(user, order_no, forget_at)) = stock.requests.orders.get(&id) {
                    if (user, order_no) == (u.user, u.order_no) {
                        stock.requests.orders.remove(&id);
                        stock.requests.forget.remove(&(forget_at, id));
                    }
                }
            }
            if let Some(t) = stock.tokens.entries.get_mut(&u.token) {
                if t.user == u.user && t.order == Some(u.order_no) {
                    t.order = None;
                }
            }
        }
        Ok(())
    }

    fn forgets_requests(&self) -> bool {
        true
    }

    fn restore_requests(&self, goods: GoodsId, kept: &[KeptRequest]) -> Result<(), StoreError> {
        let stock = Arc::clone(self.goods.write().entry(goods).or_default());
        let mut stock = stock.lock();
        for k in kept {
            let id = k.request_id.get();
            if let std::collections::hash_map::Entry::Vacant(e) = stock.requests.orders.entry(id) {
                e.insert((k.user, k.order_no, k.forget_at_ms));
                stock.requests.forget.insert((k.forget_at_ms, id));
            }
        }
        Ok(())
    }

    /// Recorded for a goods not loaded yet too: a reconciliation sets the
    /// controls before its load.
    fn control(&self, goods: GoodsId, sale: &SaleState) -> Result<(), StoreError> {
        let stock = Arc::clone(self.goods.write().entry(goods).or_default());
        let mut stock = stock.lock();
        if stock.sale.is_none_or(|s| s.version < sale.version) {
            stock.sale = Some(*sale);
        }
        Ok(())
    }

    /// Nothing to freeze: this store serves one process, whose own
    /// reservations of the goods wait on the goods' gate while it
    /// reconciles.
    fn begin_load(&self, goods: GoodsId, epoch: Epoch) -> Result<Loaded, StoreError> {
        // The map's guard is let go before the goods' lock is taken: both
        // are leaves of the lock order (`crate::sale::catalog`).
        let stock = self.goods.read().get(&goods).cloned();
        match stock.map(|s| s.lock().epoch) {
            Some(at) if at >= epoch => Ok(Loaded::Superseded(at)),
            _ => Ok(Loaded::Now),
        }
    }

    fn epoch(&self, goods: GoodsId) -> Result<Option<Epoch>, StoreError> {
        let stock = self.goods.read().get(&goods).cloned();
        Ok(stock.map(|s| s.lock().epoch))
    }

    fn reserve(
        &self,
        goods: GoodsId,
        rules: &ReserveRules,
        buyers: &[Buyer],
    ) -> Result<Reserved, StoreError> {
        let stock = self.get(goods)?;
        let mut stock = stock.lock();
        let closed = stock.sale.and_then(|s| s.closed(rules.now_ms));
        stock.requests.prune(rules.now_ms);
        let decisions = buyers
            .iter()
            .map(|b| stock.decide(rules, b, closed))
            .collect();
        Ok(Reserved {
            decisions,
            remaining: stock.remaining,
            epoch: stock.epoch,
        })
    }

    fn release(&self, goods: GoodsId, buyers: &[(UserId, OrderNo)]) -> Result<u32, StoreError> {
        let stock = self.get(goods)?;
        let mut stock = stock.lock();
        for &(user, order_no) in buyers {
            stock.release(user, order_no);
        }
        Ok(stock.remaining)
    }

    /// An unknown goods is `StoreError::UnknownGoods`, as for every call
    /// here: this store knows a goods from its first load on.
    fn issue_token(
        &self,
        goods: GoodsId,
        user: UserId,
        token: u64,
        expires_ms: u64,
    ) -> Result<(), StoreError> {
        self.issue_token_at(goods, user, token, expires_ms, now_ms())
    }

    fn add(&self, goods: GoodsId, amount: u32, total: u32) -> Result<u32, StoreError> {
        let stock = self.get(goods)?;
        let mut stock = stock.lock();
        // As Redis's ADD: the units between the total covered and this one.
        let adds = match stock.restocked_to {
            Some(covered) if total <= covered => return Ok(stock.remaining),
            Some(covered) => total - covered,
            None => amount,
        };
        stock.restocked_to = Some(total);
        stock.remaining = stock.remaining.saturating_add(adds);
        Ok(stock.remaining)
    }

    fn levels(&self, goods: GoodsId) -> Result<Option<Levels>, StoreError> {
        let stock = self.goods.read().get(&goods).cloned();
        Ok(stock.map(|s| {
            let s = s.lock();
            Levels {
                remaining: s.remaining,
                released: s.released,
            }
        }))
    }

    fn remaining(&self, goods: GoodsId) -> Result<Option<u32>, StoreError> {
        let stock = self.goods.read().get(&goods).cloned();
        Ok(stock.map(|s| s.lock().remaining))
    }

    fn held(&self, goods: GoodsId, user: UserId) -> Result<Vec<OrderNo>, StoreError> {
        let Some(stock) = self.goods.read().get(&goods).cloned() else {
            return Ok(Vec::new());
        };
        let mut held = stock.lock().holders.get(&user).cloned().unwrap_or_default();
        held.sort_unstable();
        Ok(held)
    }

    /// Holders sorted, like the Redis store's.
    fn snapshot(&self, goods: GoodsId) -> Result<Option<(u32, Holders)>, StoreError> {
        let Some(stock) = self.goods.read().get(&goods).cloned() else {
            return Ok(None);
        };
        let stock = stock.lock();
        let mut holders: Holders = stock
            .holders
            .iter()
            .flat_map(|(&u, orders)| orders.iter().map(move |&o| (u, o)))
            .collect();
        holders.sort_unstable();
        Ok(Some((stock.remaining, holders)))
    }
}

#[cfg(test)]
mod tests;
