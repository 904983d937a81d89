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
