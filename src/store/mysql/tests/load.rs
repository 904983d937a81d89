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
    assert_eq!(store.loads.on(), local_infile == 1 && autoinc == 2);
}

/// A loaded chunk with a row that meets a unique key leaves none of its
/// rows, as a failed INSERT does, while its transaction (here a batch's
/// fence of the goods' row first, as in a batch) goes on and commits. With
/// LOCAL the server only warns of such a row and loads the rest: without
/// the savepoint, rows 1 and 3 would stay.
#[test]
fn a_loaded_chunk_that_meets_a_unique_key_leaves_none_of_its_rows() {
    use crate::store::batch::{Fence, GoodsRowsHeld, Table};
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
            let held = GoodsRowsHeld::fenced_by_test();
            let clashed = rows.insert_chunk(&held, &clash.iter().collect::<Vec<_>>())?;
            let went_in = rows.insert_chunk(&held, &fine.iter().collect::<Vec<_>>())?;
            Ok::<_, Failure>((fence, clashed, went_in))
        })
        .unwrap();
    assert_eq!((fence, clashed, went_in), (Fence::Taken, false, true));
    assert!(store.loads.on(), "loaded, not inserted after a refusal");
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

/// A load the server refuses (its `local_infile` turned off while the
/// store runs) is inserted instead, in the same batch, and the chunks after
/// it too; loads come back once the server, asked again (every minute, here
/// at once), takes them. On the third Galera node (it takes loads: its
/// `innodb_autoinc_lock_mode` is 2), whose `local_infile` this test alone
/// switches, and switches back however the test ends.
#[test]
fn a_refused_load_is_inserted_and_loads_come_back_once_the_server_takes_them() {
    let node = crate::store::testdb::galera()[2];
    let db = TestDb::on(node);
    let store = open(&db);
    assert!(store.loads.on(), "a Galera node takes loads");
    let g = store.add_goods(&new_goods(10), None).unwrap().id;

    /// `local_infile` off on the node until dropped.
    struct LocalInfileOff(::mysql::Conn);
    impl Drop for LocalInfileOff {
        fn drop(&mut self) {
            let _ = self.0.query_drop("SET GLOBAL local_infile = 1");
        }
    }
    let mut admin = ::mysql::Conn::new(::mysql::Opts::from_url(node).unwrap()).unwrap();
    admin.query_drop("SET GLOBAL local_infile = 0").unwrap();
    let off = LocalInfileOff(admin);
    let written = store
        .insert_orders(&[order(1, 10, g), order(2, 20, g)])
        .unwrap();
    assert!(written.iter().all(|w| *w == Written::Stored), "{written:?}");
    assert!(!store.loads.on(), "still loading after a refusal");
    store.insert_orders(&[order(3, 30, g)]).unwrap();
    drop(off);

    // Loads the node ran: the asking's empty one, then the chunk's.
    let loads = || -> u64 {
        let mut node = ::mysql::Conn::new(::mysql::Opts::from_url(node).unwrap()).unwrap();
        let row: Option<(String, u64)> = node
            .query_first("SHOW GLOBAL STATUS LIKE 'Com_load'")
            .unwrap();
        row.unwrap().1
    };
    let before = loads();
    store.loads.ask_soon();
    store.insert_orders(&[order(4, 40, g)]).unwrap();
    assert!(
        store.loads.on(),
        "not loading again once the server takes loads"
    );
    assert!(loads() - before >= 2, "the chunk was not loaded");
    let stored: Vec<(u64, u8, Option<u8>)> = db
        .conn()
        .query("SELECT order_no, state, live_slot FROM orders ORDER BY order_no")
        .unwrap();
    assert_eq!(
        stored,
        [1, 2, 3, 4].map(|n| (n, 0, Some(1))),
        "every order stored once, created"
    );
    assert_eq!(
        count(
            &db,
            &format!("SELECT live_orders FROM goods WHERE id = {g}")
        ),
        4
    );
}
