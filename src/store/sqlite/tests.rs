//! What only the SQLite store does, in a file of a temporary directory.
//! What every order store does is in `store::conformance::orders`.

use std::time::Duration;

use super::SqliteStore;
use crate::store::conformance::orders::new_goods;
use crate::store::{Claimed, NodeClaim, NodeRegistry, OrderStore, StoreError};

#[test]
fn a_file_is_opened_again_with_its_tables_and_data() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.db");
    let store = SqliteStore::open(&path).unwrap();
    let g = store.add_goods(&new_goods(5), None).unwrap();
    drop(store);
    // schema.sql runs again on an existing file: nothing is recreated.
    let store = SqliteStore::open(&path).unwrap();
    assert_eq!(store.goods().unwrap(), vec![g]);
    let conn = rusqlite::Connection::open(&path).unwrap();
    let one_live: String = conn
        .query_row(
            "SELECT sql FROM sqlite_master WHERE name = 'orders_one_live'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert!(one_live.starts_with("CREATE UNIQUE INDEX"), "{one_live}");
}

#[test]
fn a_file_older_than_the_schema_is_refused_at_open() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("old.db");
    rusqlite::Connection::open(&path)
        .unwrap()
        .execute_batch("CREATE TABLE goods (id INTEGER PRIMARY KEY, name TEXT NOT NULL)")
        .unwrap();
    match SqliteStore::open(&path) {
        Err(StoreError::Unavailable(m)) => assert!(m.contains("predates"), "{m}"),
        Err(e) => panic!("expected Unavailable, got {e}"),
        Ok(_) => panic!("opened a file without the goods' columns"),
    }
}

/// One server per file: a second exclusive open is refused while the
/// first store lives (the lock is the process's, and each open its own),
/// and the file is free again once it is gone.
#[test]
fn a_file_is_opened_exclusively_once_at_a_time() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("one.db");
    let first = SqliteStore::open_exclusive(&path).unwrap();
    let g = first.add_goods(&new_goods(5), None).unwrap();
    match SqliteStore::open_exclusive(&path) {
        Err(StoreError::Unavailable(m)) => assert!(m.contains("in use by another"), "{m}"),
        Err(e) => panic!("expected Unavailable, got {e}"),
        Ok(_) => panic!("opened a file another store holds"),
    }
    drop(first);
    let again = SqliteStore::open_exclusive(&path).unwrap();
    assert_eq!(again.goods().unwrap(), vec![g]);
}

/// Holding the file's lock, a server knows that a lease found in the file
/// is a dead process's: it ends at once, its fence kept.
#[test]
fn an_exclusive_open_ends_the_leases_of_dead_processes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("leases.db");
    let claim = |holder| NodeClaim {
        want: Some(3),
        max_id: 1023,
        holder,
        info: "x",
        lease: Duration::from_secs(3600),
        until_ms: 10_000_000,
    };
    let dead = SqliteStore::open_exclusive(&path).unwrap();
    assert!(matches!(dead.claim_node(&claim(1)), Ok(Claimed::Leased(_))));
    drop(dead);
    let next = SqliteStore::open_exclusive(&path).unwrap();
    match next.claim_node(&claim(2)) {
        Ok(Claimed::Leased(lease)) => assert_eq!((lease.node_id, lease.floor_ms), (3, 10_000_000)),
        other => panic!("expected the dead process's id, got {other:?}"),
    }
}

/// The request ids of BUYs are kept with the orders written, not with
/// those refused (here a user's second live order, limit 1), until due.
#[test]
fn request_ids_are_kept_with_the_orders_written_until_due() {
    use crate::clock::now_ms;
    use crate::store::{KeptRequest, OrderRecord, Written, REQUEST_ID_TTL_MS};
    use seckill_proto::{OrderState, RequestId};
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("t.db")).unwrap();
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
    let count = |store: &SqliteStore| -> i64 {
        store
            .call(super::Access::Read, |conn| {
                Ok(conn.query_row("SELECT COUNT(*) FROM buy_requests", [], |r| r.get(0))?)
            })
            .unwrap()
    };
    assert_eq!(count(&store), 3);
    store
        .call(super::Access::Transaction, |tx| {
            tx.execute(
                "INSERT INTO buy_requests VALUES (?1, x'00000000000000000000000000000009', 9, 900, 1)",
                [goods as i64],
            )?;
            Ok(())
        })
        .unwrap();
    assert_eq!(count(&store), 4);
    store
        .commit_requested_orders(&[order(500, 5)], &[], &[id(5)])
        .unwrap();
    assert_eq!(count(&store), 4, "the due one pruned, the new one kept");
    let ids: Vec<_> = store
        .kept_requests(goods, begun)
        .unwrap()
        .iter()
        .map(|k| k.order_no)
        .collect();
    assert!(!ids.contains(&900) && ids.contains(&500), "{ids:?}");
}

/// The store's durability rests on WAL with `synchronous = FULL`: a file
/// where SQLite would not keep them is refused, not silently used.
#[test]
fn a_connection_without_wal_and_full_sync_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let conn = rusqlite::Connection::open(dir.path().join("t.db")).unwrap();
    conn.pragma_update(None, "journal_mode", "DELETE").unwrap();
    conn.pragma_update(None, "synchronous", "FULL").unwrap();
    assert!(matches!(
        super::durable(&conn),
        Err(StoreError::Unavailable(_))
    ));
    conn.pragma_update(None, "journal_mode", "WAL").unwrap();
    conn.pragma_update(None, "synchronous", "NORMAL").unwrap();
    assert!(matches!(
        super::durable(&conn),
        Err(StoreError::Unavailable(_))
    ));
    conn.pragma_update(None, "synchronous", "FULL").unwrap();
    super::durable(&conn).unwrap();
}
