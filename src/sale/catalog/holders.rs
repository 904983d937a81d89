//! The live orders of one goods that this server knows: who holds a unit.
//! Reactors read them to answer a repeated BUY with the order already held;
//! the order writer, the expiry sweep and reconciliation change them.
//!
//! Lock order: `live` before `forgotten` (see [`crate::sale::catalog`]).

use std::collections::HashSet;

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use parking_lot::{Mutex, RwLock};
use smallvec::SmallVec;

use crate::store::{OrderNo, UserId, UserMap};

/// Cancelled orders remembered as never to be added (see
/// [`Holders::forgotten`]). Past this many (only orders this server never
/// held, such as another server's, pile up here) the memory is cleared.
const MAX_FORGOTTEN: usize = 4096;

/// One user's live orders of the goods: at most its purchase limit, which
/// is 1 for most sales, so one order is kept inline (a goods that sells a
/// million units would otherwise cost the order writer a million small
/// allocations, and each look-up a pointer to follow).
type Held = SmallVec<[OrderNo; 1]>;

#[derive(Default)]
pub struct Holders {
    /// Acknowledged live orders, user → order numbers (at most the purchase
    /// limit each). At most the goods' total in all.
    live: RwLock<UserMap<Held>>,
    /// Orders cancelled before they were added to `live`: an expiry or a
    /// CANCEL can settle an order between its commit and the order writer
    /// adding it here, and adding it after would keep its buyer "already
    /// bought" for good. Nearly always empty; bounded by [`MAX_FORGOTTEN`].
    forgotten: Mutex<HashSet<OrderNo>>,
    /// The stock store's count of units given back, as of the last time
    /// these holders were read from the order store (see
    /// [`Holders::releases_moved`]).
    releases_seen: AtomicU64,
}

impl Holders {
    /// Orders of this goods that are now acknowledged.
    pub fn add(&self, orders: impl IntoIterator<Item = (UserId, OrderNo)>) {
        let mut live = self.live.write();
        let mut forgotten = self.forgotten.lock();
        for (user, order_no) in orders {
            // Nearly always empty: no hashing then.
            if !forgotten.is_empty() && forgotten.remove(&order_no) {
                continue;
            }
            hold(&mut live, user, order_no);
        }
    }

    /// An order that is no longer live (cancelled or expired).
    pub fn remove(&self, user: UserId, order_no: OrderNo) {
        let mut live = self.live.write();
        if let_go(&mut live, user, order_no) {
            return;
        }
        // Not added yet (or never held here): never to be. `live` stays
        // locked meanwhile, so that an `add` cannot come in between.
        let mut forgotten = self.forgotten.lock();
        if forgotten.len() >= MAX_FORGOTTEN {
            forgotten.clear();
        }
        forgotten.insert(order_no);
    }

    /// Whether this server knows `order_no` as a live order of `user`.
    pub fn holds(&self, user: UserId, order_no: OrderNo) -> bool {
        self.live
            .read()
            .get(&user)
            .is_some_and(|held| held.contains(&order_no))
    }

    /// Every (user, order number) this server knows as live.
    pub fn all(&self) -> Vec<(UserId, OrderNo)> {
        let live = self.live.read();
        live.iter()
            .flat_map(|(&user, held)| held.iter().map(move |&no| (user, no)))
            .collect()
    }

    /// The live orders this server knows `user` to hold.
    pub fn of(&self, user: UserId) -> Vec<OrderNo> {
        self.live
            .read()
            .get(&user)
            .map(|held| held.to_vec())
            .unwrap_or_default()
    }

    /// The user's first order, if they hold `limit` orders or more.
    pub fn at_limit(&self, user: UserId, limit: u8) -> Option<OrderNo> {
        let live = self.live.read();
        let held = live.get(&user)?;
        (held.len() >= usize::from(limit))
            .then(|| held.first().copied())
            .flatten()
    }

    /// Whether the stock store's count of released units moved since this
    /// was last asked: some holder let go, through this server or another,
    /// and these holders should be read again from the order store.
    pub fn releases_moved(&self, released: u64) -> bool {
        self.releases_seen.swap(released, Relaxed) != released
    }

    /// Brings the holders to the stores' view `fresh`, read while `before`
    /// was this cache: drops what was there before and is not in the stores
    /// now, adds what the stores have; leaves alone what was added since
    /// `before` (an order acknowledged during the read).
    pub fn update(&self, before: &[(UserId, OrderNo)], fresh: &[(UserId, OrderNo)]) {
        let fresh_set: HashSet<(UserId, OrderNo)> = fresh.iter().copied().collect();
        let mut live = self.live.write();
        for &(user, order_no) in before {
            if fresh_set.contains(&(user, order_no)) {
                continue;
            }
            let_go(&mut live, user, order_no);
        }
        for &(user, order_no) in fresh {
            hold(&mut live, user, order_no);
        }
    }

    /// Replaces the holders with the stores' view (reconciliation).
    pub fn set(&self, pairs: &[(UserId, OrderNo)]) {
        let mut fresh: UserMap<Held> = UserMap::default();
        for &(user, order_no) in pairs {
            fresh.entry(user).or_default().push(order_no);
        }
        *self.live.write() = fresh;
    }
}

/// Notes `order_no` as held by `user`, once.
fn hold(live: &mut UserMap<Held>, user: UserId, order_no: OrderNo) {
    let held = live.entry(user).or_default();
    if !held.contains(&order_no) {
        held.push(order_no);
    }
}

/// Drops `order_no` from `user`'s orders, and the user once they hold
/// none; says whether they held it.
fn let_go(live: &mut UserMap<Held>, user: UserId, order_no: OrderNo) -> bool {
    let Some(held) = live.get_mut(&user).filter(|held| held.contains(&order_no)) else {
        return false;
    };
    held.retain(|n| *n != order_no);
    if held.is_empty() {
        live.remove(&user);
    }
    true
}
