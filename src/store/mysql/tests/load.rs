//! Chunks of created orders loaded (`LOAD DATA LOCAL INFILE`) rather than
//! inserted: where the store does so, and what a chunk that clashes leaves.

use super::*;

/// The store loads chunks only where the server takes loads and allocates
/// ids without a table lock; whatever this server's settings, the probe
/// says what they are.
#[test]
fn chunks_are_loaded_where_local_infile_is_on_and_autoinc_interleaved() {
    let db = TestDb::new();
    let store = open(&db);
    let (local_infile, autoinc): (u8, u8) = db
        .conn()
        .query_first("SELECT @@local_infile, @@innodb_autoinc_lock_mode")
        .unwrap()
        .unwrap();
    assert_eq!(
        store.load_orders.load(std::sync::atomic::Ordering::Relaxed),
        local_infile == 1 && autoinc == 2
    );
}

/// A loaded chunk with a row that meets a unique key leaves none of its
/// rows, as a failed INSERT does, while its transaction (here a batch's
/// fence of the goods' row first, as in a batch) goes on and commits. With
/// LOCAL the server only warns of such a row and loads the rest: without
/// the savepoint, rows 1 and 3 would stay.
#[test]
fn a_loaded_chunk_that_meets_a_unique_key_leaves_none_of_its_rows() {
    use crate::store::batch::{Fence, Table};
    use crate::store::mysql::calls::{Call, Failure};
    let db = TestDb::new();
    let store = open(&db);
    store.set_loads(true);
    let g = store.add_goods(&new_goods(10), None).unwrap().id;
    store.insert_orders(&[order(2, 20, g)]).unwrap();
    let (clash, fine) = (
        [order(1, 10, g), order(2, 20, g), order(3, 30, g)],
        [order(4, 40, g), order(5, 50, g)],
    );
    let (fence, clashed, went_in) = store
        .link
        .call("t", Call::ORDERS, |conn| {
            let mut rows = store.rows(conn);
            let fence = rows.fence(g, 0, 2, 0)?;
            let clashed = rows.insert_chunk(&clash.iter().collect::<Vec<_>>())?;
            let went_in = rows.insert_chunk(&fine.iter().collect::<Vec<_>>())?;
            Ok::<_, Failure>((fence, clashed, went_in))
        })
        .unwrap();
    assert_eq!((fence, clashed, went_in), (Fence::Taken, false, true));
    assert!(
        store.load_orders.load(std::sync::atomic::Ordering::Relaxed),
        "loaded, not inserted after a refusal"
    );
    let stored: Vec<(u64, u8, Option<u8>)> = db
        .conn()
        .query("SELECT order_no, state, live_slot FROM orders ORDER BY order_no")
        .unwrap();
    assert_eq!(stored, [(2, 0, Some(1)), (4, 0, Some(1)), (5, 0, Some(1))]);
    // The fence's count survived the chunk's undoing.
    assert_eq!(
        count(
            &db,
            &format!("SELECT live_orders FROM goods WHERE id = {g}")
        ),
        3
    );
}
