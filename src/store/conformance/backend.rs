//! The backends the order-store suites run against, each opening stores on
//! a fresh database of its own: MySQL against the real server
//! (`SECKILL_TEST_MYSQL`, see `store::testdb`), each test in a database of
//! its own; SQLite in a file of a temporary directory.

use std::path::PathBuf;

use ::mysql::prelude::Queryable;
use tempfile::TempDir;

use crate::store::testdb::TestDb;
use crate::store::{GoodsId, MysqlStore, OrderNo, OrderStore, SqliteStore};

/// A database for one test, and the stores a backend opens on it.
pub(super) trait Backend {
    type Store: OrderStore + 'static;

    /// Whether writers of different rows run at once (MySQL's row locks),
    /// rather than one write transaction at a time (SQLite's one writer).
    const ROW_LOCKS: bool;

    /// A fresh, empty database, removed when this is dropped.
    fn new() -> Self;

    /// A store on the database; another one is another server on the same
    /// data.
    fn open(&self) -> Self::Store;

    /// Every row of the orders table as (order number, state), read
    /// around the store.
    fn rows(&self) -> Vec<(OrderNo, u8)>;

    /// Makes `id` the next goods id; `false` if the database cannot issue
    /// such an id (SQLite's ids end at `i64::MAX`).
    fn next_goods_id(&self, id: GoodsId) -> bool;

    /// Puts in a request id of `goods` due long ago, by hand.
    fn add_due_request(&self, goods: GoodsId);

    /// The request ids kept, of every goods, due or not.
    fn kept_rows(&self) -> u64;

    /// Sets a goods' count of live orders by hand, as an older server or
    /// an operator might have left it.
    fn set_live_count(&self, goods: GoodsId, live: u64);
}

pub(super) struct Sqlite {
    dir: TempDir,
}

impl Sqlite {
    fn path(&self) -> PathBuf {
        self.dir.path().join("orders.db")
    }
}

impl Backend for Sqlite {
    type Store = SqliteStore;
    const ROW_LOCKS: bool = false;

    fn new() -> Self {
        Sqlite {
            dir: tempfile::tempdir().expect("a temporary directory"),
        }
    }

    fn open(&self) -> SqliteStore {
        SqliteStore::open(&self.path()).unwrap_or_else(|e| panic!("open {:?}: {e}", self.path()))
    }

    fn rows(&self) -> Vec<(OrderNo, u8)> {
        let conn = rusqlite::Connection::open(self.path()).expect("open the file");
        let mut stmt = conn
            .prepare("SELECT order_no, state FROM orders")
            .expect("a query");
        let rows = stmt
            .query_map([], |r| Ok((r.get::<_, i64>(0)? as u64, r.get(1)?)))
            .expect("rows");
        rows.collect::<rusqlite::Result<_>>().expect("rows")
    }

    fn next_goods_id(&self, _: GoodsId) -> bool {
        false
    }

    fn add_due_request(&self, goods: GoodsId) {
        let conn = rusqlite::Connection::open(self.path()).expect("open the file");
        conn.execute(
            "INSERT INTO buy_requests VALUES (?1, x'00000000000000000000000000000009', 9, 900, 1)",
            [goods as i64],
        )
        .expect("a due request id");
    }

    fn kept_rows(&self) -> u64 {
        let conn = rusqlite::Connection::open(self.path()).expect("open the file");
        conn.query_row("SELECT COUNT(*) FROM buy_requests", [], |r| {
            r.get::<_, i64>(0)
        })
        .expect("a count") as u64
    }

    fn set_live_count(&self, goods: GoodsId, live: u64) {
        let conn = rusqlite::Connection::open(self.path()).expect("open the file");
        conn.execute(
            "UPDATE goods SET live_orders = ?1 WHERE id = ?2",
            [live as i64, goods as i64],
        )
        .expect("a count set");
    }
}

/// The store loads chunks of created orders (`LOAD`) or inserts them,
/// whatever its probe found (which, on a MariaDB of default settings, is to
/// insert): the `mysql` tests load, the `mysql_inserted` ones insert.
pub(super) struct Mysql<const LOAD: bool = true> {
    db: TestDb,
}

impl<const LOAD: bool> Backend for Mysql<LOAD> {
    type Store = MysqlStore;
    const ROW_LOCKS: bool = true;

    fn new() -> Self {
        Mysql { db: TestDb::new() }
    }

    fn open(&self) -> MysqlStore {
        let store = MysqlStore::open(self.db.url())
            .unwrap_or_else(|e| panic!("open {}: {e}", self.db.url()));
        store.set_loads(LOAD);
        store
    }

    fn rows(&self) -> Vec<(OrderNo, u8)> {
        let mut conn = self.db.conn();
        conn.query("SELECT order_no, state FROM orders")
            .expect("rows")
    }

    fn next_goods_id(&self, id: GoodsId) -> bool {
        let mut conn = self.db.conn();
        let sql = format!("ALTER TABLE goods AUTO_INCREMENT = {id}");
        conn.query_drop(sql).expect("set the next goods id");
        true
    }

    fn add_due_request(&self, goods: GoodsId) {
        self.db
            .conn()
            .exec_drop(
                "INSERT INTO buy_requests VALUES (?, x'00000000000000000000000000000009', 9, 900, 1)",
                (goods,),
            )
            .expect("a due request id");
    }

    fn kept_rows(&self) -> u64 {
        self.db
            .conn()
            .query_first("SELECT COUNT(*) FROM buy_requests")
            .expect("a count")
            .unwrap_or(0)
    }

    fn set_live_count(&self, goods: GoodsId, live: u64) {
        self.db
            .conn()
            .exec_drop(
                "UPDATE goods SET live_orders = ? WHERE id = ?",
                (live, goods),
            )
            .expect("a count set");
    }
}
