//! The embedded stock store: counters in process memory.
//!
//! Nothing here is durable, and nothing needs to be: the order store is the
//! truth and this store is rebuilt from it at start. Purchase tokens are
//! not in the order store and are lost with the process, which costs only
//! the buyers who held one a new TOKEN request.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use parking_lot::{Mutex, RwLock};
use seckill_proto::NO_TOKEN;

use super::{
    Buyer, GoodsId, Holders, OrderNo, Reservation, ReserveRules, Reserved, StockStore, StoreError,
    TokenRefusal, UserId,
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
    remaining: u32,
    /// Each holder's live orders, oldest first (one, mostly).
    holders: HashMap<UserId, Vec<OrderNo>>,
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

impl GoodsStock {
    /// One buyer's decision, in the order of checks that
    /// [`StockStore::reserve`] documents.
    fn decide(&mut self, rules: &ReserveRules, buyer: &Buyer) -> Reservation {
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
    ) -> Result<(), StoreError> {
        let mut by_user: HashMap<UserId, Vec<OrderNo>> = HashMap::new();
        for &(user, order_no) in holders {
            let orders = by_user.entry(user).or_default();
            // The same pair twice is one order, not two units.
            if !orders.contains(&order_no) {
                orders.push(order_no);
            }
        }
        let stock = Arc::clone(self.goods.write().entry(goods).or_default());
        let mut stock = stock.lock();
        stock.remaining = remaining;
        stock.holders = by_user;
        Ok(())
    }

    fn reserve(
        &self,
        goods: GoodsId,
        rules: &ReserveRules,
        buyers: &[Buyer],
    ) -> Result<Reserved, StoreError> {
        let stock = self.get(goods)?;
        let mut stock = stock.lock();
        let decisions = buyers.iter().map(|b| stock.decide(rules, b)).collect();
        Ok(Reserved {
            decisions,
            remaining: stock.remaining,
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

    /// An unknown goods is [`StoreError::UnknownGoods`], as for every call
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

    fn add(&self, goods: GoodsId, amount: u32) -> Result<u32, StoreError> {
        let stock = self.get(goods)?;
        let mut stock = stock.lock();
        stock.remaining = stock.remaining.saturating_add(amount);
        Ok(stock.remaining)
    }

    fn remaining(&self, goods: GoodsId) -> Result<Option<u32>, StoreError> {
        let stock = self.goods.read().get(&goods).cloned();
        Ok(stock.map(|s| s.lock().remaining))
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
mod tests {
    use std::thread;

    use super::*;
    use crate::store::fixtures::{buy, buyers, rules_at, tokened};

    const NOW: u64 = 1_000_000;

    fn rules(per_user_limit: u8) -> ReserveRules {
        rules_at(per_user_limit, NOW)
    }

    #[test]
    fn reserve_never_goes_below_zero_and_remembers_holders() {
        let stock = MemoryStock::new();
        stock.load(1, 2, &[(9, 900)]).unwrap();
        let batch = buyers(&[(1, 100), (9, 901), (1, 102), (2, 200), (3, 300)]);
        let got = stock.reserve(1, &rules(1), &batch);
        assert_eq!(
            got.unwrap(),
            Reserved {
                decisions: vec![
                    Reservation::Reserved,
                    Reservation::Held(900),
                    Reservation::Held(100),
                    Reservation::Reserved,
                    Reservation::SoldOut,
                ],
                remaining: 0,
            }
        );
    }

    #[test]
    fn release_is_exact_and_repeatable() {
        let stock = MemoryStock::new();
        stock.load(1, 1, &[]).unwrap();
        stock.reserve(1, &rules(1), &buyers(&[(1, 100)])).unwrap();
        // A release with the wrong order number or user returns nothing.
        assert_eq!(stock.release(1, &[(1, 999), (2, 100)]).unwrap(), 0);
        assert_eq!(stock.release(1, &[(1, 100)]).unwrap(), 1);
        assert_eq!(stock.release(1, &[(1, 100)]).unwrap(), 1);
        // Repeated within one call too.
        stock.reserve(1, &rules(1), &buyers(&[(1, 101)])).unwrap();
        assert_eq!(stock.release(1, &[(1, 101), (1, 101)]).unwrap(), 1);
        assert_eq!(stock.snapshot(1).unwrap(), Some((1, vec![])));
        assert!(matches!(
            stock.reserve(7, &rules(1), &[]),
            Err(StoreError::UnknownGoods(7))
        ));
    }

    #[test]
    fn a_user_holds_up_to_the_limit_and_gets_the_first_back() {
        let stock = MemoryStock::new();
        stock.load(1, 10, &[(1, 100), (1, 100)]).unwrap();
        let batch = buyers(&[(1, 101), (1, 102), (1, 103), (2, 200)]);
        let r = stock.reserve(1, &rules(3), &batch).unwrap();
        assert_eq!(
            r.decisions,
            [
                Reservation::Reserved,
                Reservation::Reserved,
                Reservation::Held(100),
                Reservation::Reserved,
            ]
        );
        assert_eq!(r.remaining, 7);
        let held = vec![(1, 100), (1, 101), (1, 102), (2, 200)];
        assert_eq!(stock.snapshot(1).unwrap(), Some((7, held)));
        // Releasing one of several frees one place: the others stay.
        assert_eq!(stock.release(1, &[(1, 101)]).unwrap(), 8);
        assert_eq!(stock.release(1, &[(1, 101)]).unwrap(), 8);
        let r = stock.reserve(1, &rules(3), &buyers(&[(1, 104), (1, 105)]));
        assert_eq!(
            r.unwrap().decisions,
            [Reservation::Reserved, Reservation::Held(100)]
        );
        // The first goes: the next oldest is the one given back.
        assert_eq!(stock.release(1, &[(1, 100)]).unwrap(), 8);
        assert_eq!(stock.release(1, &[(1, 100)]).unwrap(), 8);
        let r = stock.reserve(1, &rules(2), &buyers(&[(1, 106)]));
        assert_eq!(r.unwrap().decisions, [Reservation::Held(102)]);
        let held = vec![(1, 102), (1, 104), (2, 200)];
        assert_eq!(stock.snapshot(1).unwrap(), Some((8, held)));
        // A limit of 0 (which the proto forbids) is taken as 1.
        let r = stock.reserve(1, &rules(0), &buyers(&[(3, 300), (3, 301)]));
        assert_eq!(
            r.unwrap().decisions,
            [Reservation::Reserved, Reservation::Held(300)]
        );
    }

    #[test]
    fn threads_never_give_a_user_more_than_the_limit() {
        const STOCK: u32 = 300;
        const USERS: u64 = 150;
        let stock = MemoryStock::new();
        stock.load(1, STOCK, &[]).unwrap();
        let got: Vec<(Buyer, Reservation)> = thread::scope(|s| {
            let workers: Vec<_> = (0..4u64)
                .map(|t| {
                    let stock = &stock;
                    s.spawn(move || {
                        let batch: Vec<Buyer> = (0..USERS * 4)
                            .map(|i| buy((i * 7 + t * 31) % USERS, (t << 32) | i, NO_TOKEN))
                            .collect();
                        let mut got = Vec::new();
                        for chunk in batch.chunks(20) {
                            let r = stock.reserve(1, &rules(3), chunk).unwrap();
                            got.extend(chunk.iter().copied().zip(r.decisions));
                        }
                        got
                    })
                })
                .collect();
            workers
                .into_iter()
                .flat_map(|w| w.join().unwrap())
                .collect()
        });
        let mut per_user: HashMap<UserId, usize> = HashMap::new();
        for (b, d) in &got {
            if *d == Reservation::Reserved {
                *per_user.entry(b.user).or_default() += 1;
            }
        }
        assert_eq!(per_user.values().sum::<usize>(), STOCK as usize);
        assert!(per_user.values().all(|&n| n <= 3), "{per_user:?}");
    }

    #[test]
    fn tokens_are_checked_in_the_documented_order() {
        let stock = MemoryStock::new();
        stock.load(1, 2, &[]).unwrap();
        let expires = NOW + 1_000;
        for (user, token) in [(1, 11), (2, 22), (3, 33), (4, 44)] {
            stock.issue_token_at(1, user, token, expires, NOW).unwrap();
        }
        let r = |buyers: &[Buyer], now_ms| {
            stock
                .reserve(1, &tokened(1, now_ms), buyers)
                .unwrap()
                .decisions
        };
        let invalid = Reservation::Token(TokenRefusal::Invalid);
        // Unknown, another user's, none at all.
        assert_eq!(
            r(
                &[buy(1, 100, 99), buy(1, 100, 22), buy(1, 100, NO_TOKEN)],
                NOW
            ),
            [invalid; 3]
        );
        // Expired at its expiry, not before.
        assert_eq!(
            r(&[buy(1, 100, 11)], expires),
            [Reservation::Token(TokenRefusal::Expired)]
        );
        assert_eq!(r(&[buy(1, 100, 11)], expires - 1), [Reservation::Reserved]);
        // A retry with the same token gets the order back, even expired;
        // a new order number in it changes nothing.
        assert_eq!(r(&[buy(1, 101, 11)], expires + 5), [Reservation::Held(100)]);
        // Sold out does not spend the token: a restock sells to it.
        assert_eq!(
            r(&[buy(2, 200, 22), buy(3, 300, 33)], NOW),
            [Reservation::Reserved, Reservation::SoldOut]
        );
        stock.add(1, 1).unwrap();
        assert_eq!(r(&[buy(3, 301, 33)], NOW), [Reservation::Reserved]);
        // Released (cancelled), the order is gone and the token is used.
        assert_eq!(stock.release(1, &[(1, 100)]).unwrap(), 1);
        assert_eq!(
            r(&[buy(1, 102, 11)], NOW),
            [Reservation::Token(TokenRefusal::Used)]
        );
        // The limit comes before the token: a holder with a bad one gets
        // their order back.
        assert_eq!(r(&[buy(2, 201, 99)], NOW), [Reservation::Held(200)]);
        // A repeated issue does not make a used token new again.
        stock.issue_token_at(1, 1, 11, expires, NOW).unwrap();
        assert_eq!(
            r(&[buy(1, 102, 11)], NOW),
            [Reservation::Token(TokenRefusal::Used)]
        );
        // Token 0 is never valid, even if issued.
        stock.issue_token_at(1, 4, NO_TOKEN, expires, NOW).unwrap();
        assert_eq!(r(&[buy(4, 400, NO_TOKEN)], NOW), [invalid]);
        // Without token_required, tokens are not looked at.
        let free = stock.reserve(1, &rules(1), &[buy(4, 401, 99)]).unwrap();
        assert_eq!(free.decisions, [Reservation::Reserved]);
        // A load keeps the tokens: 44 is still good, 11 still used.
        stock.load(1, 5, &[(2, 200)]).unwrap();
        assert_eq!(
            r(&[buy(5, 500, 44), buy(4, 402, 44), buy(1, 103, 11)], NOW),
            [
                invalid,
                Reservation::Reserved,
                Reservation::Token(TokenRefusal::Used)
            ]
        );
        assert!(matches!(
            stock.issue_token(9, 1, 1, expires),
            Err(StoreError::UnknownGoods(9))
        ));
    }

    #[test]
    fn tokens_are_forgotten_twice_their_lifetime_after_issue() {
        let stock = MemoryStock::new();
        stock.load(1, 10, &[]).unwrap();
        // Lives 1 s from NOW: expired from NOW + 1 s, forgotten from NOW + 2 s.
        stock.issue_token_at(1, 1, 11, NOW + 1_000, NOW).unwrap();
        let expired = Reservation::Token(TokenRefusal::Expired);
        let r = |token, now_ms| {
            stock
                .reserve(1, &tokened(1, now_ms), &[buy(1, 100, token)])
                .unwrap()
                .decisions[0]
        };
        // Pruning happens on issue, only of what is due.
        stock
            .issue_token_at(1, 2, 22, NOW + 10_000, NOW + 1_999)
            .unwrap();
        assert_eq!(r(11, NOW + 1_999), expired);
        stock
            .issue_token_at(1, 2, 23, NOW + 10_000, NOW + 2_000)
            .unwrap();
        assert_eq!(
            r(11, NOW + 2_000),
            Reservation::Token(TokenRefusal::Invalid)
        );
        // At most PRUNE_BATCH per issue. Each of these lives 1 ms, so is
        // forgotten from NOW + 1.
        let many = PRUNE_BATCH as u64 + 5;
        for token in 1_000..1_000 + many {
            stock.issue_token_at(1, 3, token, NOW, NOW - 1).unwrap();
        }
        stock
            .issue_token_at(1, 3, 1, NOW + 10_000, NOW + 1)
            .unwrap();
        let left = |stock: &MemoryStock| {
            let goods = stock.get(1).unwrap();
            let goods = goods.lock();
            (goods.tokens.entries.len(), goods.tokens.forget.len())
        };
        // 22, 23 and 1, plus the 5 not yet pruned.
        assert_eq!(left(&stock), (8, 8));
        stock
            .issue_token_at(1, 3, 2, NOW + 10_000, NOW + 1)
            .unwrap();
        assert_eq!(left(&stock), (4, 4));
    }
}
