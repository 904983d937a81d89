//! What only the memory store does; what every stock store does is in the
//! conformance suite (`store/conformance/stock.rs`).

use super::*;
use crate::store::conformance::stock::Subject;
use crate::store::fixtures::rules_at;

impl Subject for MemoryStock {
    fn issue_token_at(
        &self,
        goods: GoodsId,
        user: UserId,
        token: u64,
        expires_ms: u64,
        now_ms: u64,
    ) -> Result<(), StoreError> {
        MemoryStock::issue_token_at(self, goods, user, token, expires_ms, now_ms)
    }

    fn tokens_kept(&self, goods: GoodsId) -> (usize, usize) {
        let goods = self.get(goods).unwrap();
        let goods = goods.lock();
        (goods.tokens.entries.len(), goods.tokens.forget.len())
    }
}

/// This store knows a goods from its first load on: before, every call is
/// about an unknown goods (Redis, which loses goods, says "not loaded").
#[test]
fn a_goods_never_loaded_is_unknown() {
    let stock = MemoryStock::new();
    assert!(matches!(
        stock.reserve(7, &rules_at(1, 1_000_000), &[]),
        Err(StoreError::UnknownGoods(7))
    ));
    assert!(matches!(
        stock.issue_token(9, 1, 1, 1_000_000),
        Err(StoreError::UnknownGoods(9))
    ));
}
