//! What only the SQLite store does, in a file of a temporary directory.
//! What every order store does is in `store::conformance::orders`.

use super::SqliteStore;
use crate::store::conformance::orders::new_goods;
use crate::store::{OrderStore, StoreError};

#[test]
fn a_file_is_opened_again_with_its_tables_and_data() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.db");
    let store = SqliteStore::open(&path).unwrap();
    let g = store.add_goods(&new_goods(5)).unwrap();
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
