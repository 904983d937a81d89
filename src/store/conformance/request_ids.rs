//! The client request ids an [`OrderStore`] keeps: of ADD_GOODS with the
//! goods it made, of BUYs with the orders written, checked against each
//! backend as the rest of the order store's suite (`orders.rs`).

use seckill_proto::{OrderState, RequestId};

use super::backend::{Backend, Mysql, Sqlite};
use super::orders::new_goods;
use crate::store::{OrderRecord, OrderStore, Written};

/// ADD_GOODS under a request id: the id is kept with the goods, a second
/// goods under it is refused by the database, and a store opened later (a
/// restart) still finds the goods by its id.
fn a_request_id_names_one_goods_across_a_restart<B: Backend>() {
    let db = B::new();
    let id = RequestId::new(0x0123_4567_89ab_cdef_fedc_ba98_7654_3210).unwrap();
    let other = RequestId::new(77).unwrap();
    let added = {
        let store = db.open();
        assert_eq!(store.added_by(id).unwrap(), None);
        let added = store.add_goods(&new_goods(5), Some(id)).unwrap();
        assert_eq!(store.added_by(id).unwrap(), Some(added.clone()));
        assert!(store.add_goods(&new_goods(5), Some(id)).is_err());
        // The refused one made no goods.
        assert_eq!(store.goods().unwrap(), vec![added.clone()]);
        added
    };
    let store = db.open();
    assert_eq!(store.added_by(id).unwrap(), Some(added.clone()));
    assert_eq!(store.added_by(other).unwrap(), None);
    let second = store.add_goods(&new_goods(1), Some(other)).unwrap();
    assert_ne!(second.id, added.id);
    assert_eq!(store.added_by(other).unwrap(), Some(second));
}

/// The request ids of BUYs are kept with the orders written, not with
/// those refused (here a user's second live order, limit 1), until due.
fn request_ids_are_kept_with_the_orders_written_until_due<B: Backend>() {
    use crate::clock::now_ms;
    use crate::store::{KeptRequest, REQUEST_ID_TTL_MS};
    let backend = B::new();
    let store = backend.open();
    let goods = store.add_goods(&new_goods(5), None).unwrap().id;
    let order = |order_no, user_id| OrderRecord {
        order_no,
        user_id,
        goods_id: goods,
        state: OrderState::Created,
        created_ms: 1,
        pay_by_ms: u64::MAX,
    };
    let id = |n| RequestId::new(n);
    let begun = now_ms();
    let written = store
        .commit_requested_orders(
            &[order(100, 1), order(101, 1), order(200, 2), order(300, 3)],
            &[],
            &[id(1), id(2), None, id(4)],
        )
        .unwrap();
    assert!(matches!(written[1], Written::Duplicate(100)), "{written:?}");
    let mut kept = store.kept_requests(goods, begun).unwrap();
    kept.sort_by_key(|k| k.order_no);
    let due = |k: &KeptRequest| k.forget_at_ms;
    assert!(kept
        .iter()
        .all(|k| (begun + REQUEST_ID_TTL_MS..=now_ms() + REQUEST_ID_TTL_MS).contains(&due(k))));
    let named: Vec<_> = kept
        .iter()
        .map(|k| (k.request_id, k.user, k.order_no))
        .collect();
    assert_eq!(
        named,
        vec![(id(1).unwrap(), 1, 100), (id(4).unwrap(), 3, 300)]
    );
    assert_eq!(store.kept_requests(goods + 1, begun).unwrap(), vec![]);
    // Kept per goods: the same id (wrongly) used for another goods names
    // an order of each.
    let other = store.add_goods(&new_goods(5), None).unwrap().id;
    store
        .commit_requested_orders(
            &[OrderRecord {
                goods_id: other,
                ..order(600, 1)
            }],
            &[],
            &[id(1)],
        )
        .unwrap();
    let first_of = |goods| {
        store
            .kept_requests(goods, begun)
            .unwrap()
            .into_iter()
            .find(|k| Some(k.request_id) == id(1))
            .map(|k| k.order_no)
    };
    assert_eq!((first_of(goods), first_of(other)), (Some(100), Some(600)));
    // Past their time: not given back; and one already due (put there by
    // hand) is pruned by the next write.
    let later = now_ms() + REQUEST_ID_TTL_MS + 1;
    assert_eq!(store.kept_requests(goods, later).unwrap(), vec![]);
    assert_eq!(backend.kept_rows(), 3);
    backend.add_due_request(goods);
    assert_eq!(backend.kept_rows(), 4);
    store
        .commit_requested_orders(&[order(500, 5)], &[], &[id(5)])
        .unwrap();
    assert_eq!(
        backend.kept_rows(),
        4,
        "the due one pruned, the new one kept"
    );
    let ids: Vec<_> = store
        .kept_requests(goods, begun)
        .unwrap()
        .iter()
        .map(|k| k.order_no)
        .collect();
    assert!(!ids.contains(&900) && ids.contains(&500), "{ids:?}");
}

per_backend!(
    request_ids_are_kept_with_the_orders_written_until_due,
    a_request_id_names_one_goods_across_a_restart,
);
