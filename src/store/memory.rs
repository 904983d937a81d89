//! The embedded stock store: counters in process memory.
//!
//! Nothing here is durable, and nothing needs to be: the order store is the
//! truth and this store is rebuilt from it at start.

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::{Mutex, RwLock};

use super::{GoodsId, Holders, OrderNo, Reservation, Reserved, StockStore, StoreError, UserId};

#[derive(Default)]
pub struct MemoryStock {
    // The map lock is only written when a goods is added; each goods has its
    // own lock, so sales of different goods never wait on each other.
    goods: RwLock<HashMap<GoodsId, Arc<Mutex<GoodsStock>>>>,
}

struct GoodsStock {
    remaining: u32,
    holders: HashMap<UserId, OrderNo>,
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
}

impl StockStore for MemoryStock {
    fn load(
        &self,
        goods: GoodsId,
        remaining: u32,
        holders: &[(UserId, OrderNo)],
    ) -> Result<(), StoreError> {
        let stock = GoodsStock {
            remaining,
            holders: holders.iter().copied().collect(),
        };
        self.goods
            .write()
            .insert(goods, Arc::new(Mutex::new(stock)));
        Ok(())
    }

    fn reserve(
        &self,
        goods: GoodsId,
        buyers: &[(UserId, OrderNo)],
    ) -> Result<Reserved, StoreError> {
        let stock = self.get(goods)?;
        let mut stock = stock.lock();
        let decisions = buyers
            .iter()
            .map(|&(user, order_no)| {
                if let Some(&held) = stock.holders.get(&user) {
                    Reservation::Held(held)
                } else if stock.remaining == 0 {
                    Reservation::SoldOut
                } else {
                    stock.remaining -= 1;
                    stock.holders.insert(user, order_no);
                    Reservation::Reserved
                }
            })
            .collect();
        Ok(Reserved {
            decisions,
            remaining: stock.remaining,
        })
    }

    fn release(&self, goods: GoodsId, buyers: &[(UserId, OrderNo)]) -> Result<u32, StoreError> {
        let stock = self.get(goods)?;
        let mut stock = stock.lock();
        for &(user, order_no) in buyers {
            if stock.holders.get(&user) == Some(&order_no) {
                stock.holders.remove(&user);
                stock.remaining += 1;
            }
        }
        Ok(stock.remaining)
    }

    fn add(&self, goods: GoodsId, amount: u32) -> Result<u32, StoreError> {
        let stock = self.get(goods)?;
        let mut stock = stock.lock();
        stock.remaining = stock.remaining.saturating_add(amount);
        Ok(stock.remaining)
    }

    fn snapshot(&self, goods: GoodsId) -> Result<Option<(u32, Holders)>, StoreError> {
        let Some(stock) = self.goods.read().get(&goods).cloned() else {
            return Ok(None);
        };
        let stock = stock.lock();
        let holders = stock.holders.iter().map(|(&u, &n)| (u, n)).collect();
        Ok(Some((stock.remaining, holders)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reserve_never_goes_below_zero_and_remembers_holders() {
        let stock = MemoryStock::new();
        stock.load(1, 2, &[(9, 900)]).unwrap();
        let got = stock.reserve(1, &[(1, 100), (9, 901), (1, 102), (2, 200), (3, 300)]);
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
        stock.reserve(1, &[(1, 100)]).unwrap();
        // A release with the wrong order number returns nothing.
        assert_eq!(stock.release(1, &[(1, 999)]).unwrap(), 0);
        assert_eq!(stock.release(1, &[(1, 100)]).unwrap(), 1);
        assert_eq!(stock.release(1, &[(1, 100)]).unwrap(), 1);
        assert!(matches!(
            stock.reserve(7, &[]),
            Err(StoreError::UnknownGoods(7))
        ));
    }
}
