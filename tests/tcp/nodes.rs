//! Who may share a store: servers on one MySQL lease node ids of their own
//! for their order numbers, and the embedded store's file belongs to one
//! server at a time.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use mysql::prelude::Queryable;
use seckill_client::Purchase;

use crate::harness::{on_sale, stored_orders, while_busy, Backends, Server};

/// The node id in an order number (bits 12..22).
fn node_of(order_no: u64) -> u64 {
    (order_no >> 12) & 1023
}

/// Buys one unit for `user` through `server`, retrying `busy` (a server
/// reloading a goods another just loaded, or one without a node id yet)
/// with `while_busy`.
fn buy_one(server: &Server, goods: u64, user: u64) -> u64 {
    let mut client = server.client();
    match while_busy(|| client.buy(user, goods)) {
        Ok(Purchase::Ordered(no)) => no,
        other => panic!("user {user}: {other:?}"),
    }
}

/// The ids live servers hold, as the `nodes` table says.
fn held_ids(stores: &Backends) -> Vec<u64> {
    let mut conn = mysql::Conn::new(mysql::Opts::from_url(&stores.mysql_url()).unwrap())
        .expect("MySQL connection");
    conn.query(
        "SELECT node_id FROM nodes WHERE holder <> 0 AND expires_at > UTC_TIMESTAMP(6)
         ORDER BY node_id",
    )
    .expect("read the nodes table")
}

/// `flags` on these stores, durable mode, with a short node lease.
fn flags(stores: &Backends, lease: &str, extra: &[&str]) -> Vec<String> {
    let mut flags = stores.args("durable");
    flags.extend(["--node-lease", lease].map(String::from));
    flags.extend(extra.iter().map(|f| f.to_string()));
    flags
}

fn start(dir: &tempfile::TempDir, name: &str, flags: &[String]) -> Server {
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    Server::start(&dir.path().join(name), &flags)
}

fn refused(dir: &tempfile::TempDir, flags: &[String]) -> String {
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    Server::refused(&dir.path().join("refused.db"), &flags)
}

/// Two servers on one MySQL lease different ids (their order numbers say
/// so); a third asking for a live one's id is refused with a message that
/// names it; a killed server's id is taken over once its lease runs out,
/// and a stopped one's at once.
#[test]
fn servers_on_one_store_never_share_a_node_id() {
    let dir = tempfile::tempdir().unwrap();
    let stores = Backends::new();
    let plain = flags(&stores, "6s", &[]);
    let a = start(&dir, "a.db", &plain);
    let goods = a.admin().add_goods(on_sale("pen", 100)).unwrap().id;
    let b = start(&dir, "b.db", &plain);
    let (node_a, node_b) = (
        node_of(buy_one(&a, goods, 1)),
        node_of(buy_one(&b, goods, 2)),
    );
    assert_ne!(node_a, node_b, "two live servers, one node id");
    let mut held = vec![node_a, node_b];
    held.sort_unstable();
    assert_eq!(held_ids(&stores), held);

    let asked = node_a.to_string();
    let log = refused(&dir, &flags(&stores, "6s", &["--node-id", &asked]));
    assert!(
        log.contains(&format!("node id {node_a} is held by a live server")),
        "{log}"
    );

    // Killed: its lease runs out within 6 s (renewed every second); until
    // then its id is refused, and then it is free.
    a.kill();
    let log = refused(&dir, &flags(&stores, "6s", &["--node-id", &asked]));
    assert!(log.contains("held by a live server"), "{log}");
    let deadline = Instant::now() + Duration::from_secs(30);
    while held_ids(&stores).contains(&node_a) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    let c = start(&dir, "c.db", &flags(&stores, "6s", &["--node-id", &asked]));
    assert_eq!(node_of(buy_one(&c, goods, 3)), node_a);

    // Stopped cleanly: released, free at once.
    assert!(b.terminate().success());
    let again = node_b.to_string();
    let d = start(&dir, "d.db", &flags(&stores, "6s", &["--node-id", &again]));
    assert_eq!(node_of(buy_one(&d, goods, 4)), node_b);

    let numbers: HashSet<u64> = stores.orders().iter().map(|o| o.0).collect();
    assert_eq!(numbers.len(), 4);
}

/// A server paused for longer than its lease, whose id another server took
/// meanwhile, makes no number under that id once it wakes up: it answers
/// `busy` until it has leased another id, and every order of both servers
/// is written (a number made twice would fail a whole batch).
#[test]
fn a_paused_server_whose_id_was_taken_over_moves_to_another() {
    let dir = tempfile::tempdir().unwrap();
    let stores = Backends::new();
    let a = start(&dir, "a.db", &flags(&stores, "1s", &[]));
    let goods = a.admin().add_goods(on_sale("cup", 1000)).unwrap().id;
    let before: Vec<u64> = (1..=5).map(|u| buy_one(&a, goods, u)).collect();
    let node_a = node_of(before[0]);

    a.signal("-STOP");
    let paused = Instant::now();
    // Its 1 s lease runs out (renewed last at most a second before the
    // pause, later on a loaded machine): wait for the store to say so.
    let deadline = Instant::now() + Duration::from_secs(30);
    while held_ids(&stores).contains(&node_a) {
        assert!(Instant::now() < deadline, "node id {node_a} still held");
        std::thread::sleep(Duration::from_millis(100));
    }
    let asked = node_a.to_string();
    let c = start(&dir, "c.db", &flags(&stores, "1s", &["--node-id", &asked]));
    let theirs: Vec<u64> = (100..110).map(|u| buy_one(&c, goods, u)).collect();
    assert!(theirs.iter().all(|&n| node_of(n) == node_a));
    // Long enough for any number A could have made to be behind it.
    std::thread::sleep(Duration::from_millis(3000).saturating_sub(paused.elapsed()));
    a.signal("-CONT");

    let after: Vec<u64> = (200..210).map(|u| buy_one(&a, goods, u)).collect();
    let node_after = node_of(after[0]);
    assert_ne!(
        node_after, node_a,
        "A still makes numbers under the id C holds"
    );
    assert!(after.iter().all(|&n| node_of(n) == node_after));
    a.wait_for_log("was taken over by another server", Duration::from_secs(10));
    let rows = stores.orders();
    assert_eq!(rows.len(), 25, "every order written");
    let numbers: HashSet<u64> = rows.iter().map(|o| o.0).collect();
    assert_eq!(numbers.len(), 25);
}

/// The embedded store's file belongs to one server: a second one on it is
/// refused; once the first is killed (its lock goes with it), a restart on
/// the file finds its goods and sells.
#[test]
fn one_server_per_sqlite_file() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("shop.db");
    let first = Server::start(&data, &[]);
    let goods = first.admin().add_goods(on_sale("lamp", 2)).unwrap().id;
    let sold = buy_one(&first, goods, 1);

    let log = Server::refused(&data, &[]);
    assert!(log.contains("is in use by another seckill server"), "{log}");

    first.kill();
    let restarted = Server::start(&data, &[]);
    assert_eq!(restarted.client().get_goods(goods).unwrap().remaining, 1);
    let again = buy_one(&restarted, goods, 2);
    assert_ne!(again, sold);
    assert_eq!(stored_orders(&data).len(), 2);
}
