//! Buyers and rules for the stock stores' tests, written once for both
//! stores (their tests check that they behave alike), and the orders the
//! sale's and the drain's tests write.

use seckill_proto::{DEFAULT_PAY_WINDOW_MS, NO_TOKEN};

use super::{Buyer, OrderNo, ReserveRules, UserId};

/// A limit of `per_user_limit`, no token, at `now_ms` on the caller's clock,
/// with the default payment window.
pub fn rules_at(per_user_limit: u8, now_ms: u64) -> ReserveRules {
    ReserveRules {
        per_user_limit,
        token_required: false,
        now_ms,
        pay_by_ms: now_ms + DEFAULT_PAY_WINDOW_MS,
    }
}

/// [`rules_at`] with purchase tokens required.
pub fn tokened(per_user_limit: u8, now_ms: u64) -> ReserveRules {
    ReserveRules {
        token_required: true,
        ..rules_at(per_user_limit, now_ms)
    }
}

/// Buyers without tokens, from (user, order number) pairs.
pub fn buyers(pairs: &[(UserId, OrderNo)]) -> Vec<Buyer> {
    pairs
        .iter()
        .map(|&(user, order_no)| buy(user, order_no, NO_TOKEN))
        .collect()
}

pub fn buy(user: UserId, order_no: OrderNo, token: u64) -> Buyer {
    Buyer {
        request_id: None,
        user,
        order_no,
        token,
    }
}

/// Loads for tests: each load of a goods under the next epoch, as the
/// sale's reconciliation gets them from the order store.
pub trait LoadNext {
    fn load_next(
        &self,
        goods: super::GoodsId,
        remaining: u32,
        holders: &[(UserId, OrderNo)],
    ) -> Result<super::Epoch, super::StoreError>;
}

impl<S: super::StockStore + ?Sized> LoadNext for S {
    fn load_next(
        &self,
        goods: super::GoodsId,
        remaining: u32,
        holders: &[(UserId, OrderNo)],
    ) -> Result<super::Epoch, super::StoreError> {
        let epoch = self.epoch(goods)?.unwrap_or(0) + 1;
        assert_eq!(self.begin_load(goods, epoch)?, super::Loaded::Now);
        let total = remaining.saturating_add(holders.len() as u32);
        match self.load(goods, remaining, holders, epoch, total)? {
            super::Loaded::Now => Ok(epoch),
            super::Loaded::Superseded(later) => panic!("epoch {epoch} superseded by {later}"),
        }
    }
}

/// A created order that is never due.
pub fn created(order_no: OrderNo, user_id: UserId, goods_id: super::GoodsId) -> super::OrderRecord {
    super::OrderRecord {
        order_no,
        user_id,
        goods_id,
        state: seckill_proto::OrderState::Created,
        created_ms: 1,
        pay_by_ms: u64::MAX,
    }
}
