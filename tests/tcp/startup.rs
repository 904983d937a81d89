//! A server started before its stores: it listens, answers `busy`, and
//! sells once Redis and MySQL are up, with the MariaDB and the Redis of
//! `faults.rs`, which the test starts and kills itself.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use seckill_client::{Client, Purchase};
use seckill_proto::Status;

use crate::faults::{MariaDb, RedisServer};
use crate::harness::{on_sale, Backends, Server};

fn start(dir: &tempfile::TempDir, stores: &Backends) -> Server {
    let args = stores.args("durable");
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    // The SQLite file is not used: --mysql replaces it. At `info`, to see
    // the stores come up.
    Server::start_logging(&dir.path().join("unused.db"), &args, "info")
}

/// Busy while the stores are down: no goods listed, every request that
/// needs a store or the catalog answered `busy` (never "unknown goods").
fn assert_busy(client: &mut Client, goods: u64) {
    assert_eq!(client.list_goods().expect("LIST_GOODS"), []);
    let busy = |r: Result<Purchase, seckill_client::Error>| match r {
        Err(e) => e.status() == Some(Status::Busy),
        Ok(_) => false,
    };
    assert!(busy(client.buy(1, goods)), "BUY while the stores are down");
    let get = client.get_goods(goods);
    assert!(
        matches!(&get, Err(e) if e.status() == Some(Status::Busy)),
        "GET_GOODS: {get:?}"
    );
}

/// Retries `f` while it answers `busy`, for up to 60 s.
fn until_served<T>(mut f: impl FnMut() -> Result<T, seckill_client::Error>) -> T {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match f() {
            Err(e) if e.status() == Some(Status::Busy) && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(50))
            }
            other => return other.expect("served once the stores are up"),
        }
    }
}

/// Buyers, one new user per BUY, `busy` retried with the next user, until
/// `sold` orders are told "ok" or the goods sells out. Returns user →
/// order number.
fn buy(server: &Server, goods: u64, threads: usize, sold: usize) -> HashMap<u64, u64> {
    static NEXT_USER: AtomicU64 = AtomicU64::new(1);
    let told = Arc::new(Mutex::new(HashMap::new()));
    let buyers: Vec<_> = (0..threads)
        .map(|_| {
            let mut client = server.client();
            let told = told.clone();
            std::thread::spawn(move || {
                let deadline = Instant::now() + Duration::from_secs(60);
                while told.lock().unwrap().len() < sold {
                    assert!(Instant::now() < deadline, "the sale stalled");
                    let user = NEXT_USER.fetch_add(1, Ordering::Relaxed);
                    match client.buy(user, goods) {
                        Ok(Purchase::Ordered(no)) => {
                            told.lock().unwrap().insert(user, no);
                        }
                        Ok(Purchase::SoldOut) => return,
                        Ok(other) => panic!("user {user}: {other:?}"),
                        Err(e) if e.status() == Some(Status::Busy) => {
                            std::thread::sleep(Duration::from_millis(5))
                        }
                        Err(e) => panic!("user {user}: {e}"),
                    }
                }
            })
        })
        .collect();
    for b in buyers {
        b.join().unwrap();
    }
    let told = told.lock().unwrap().clone();
    told
}

/// How often the server said it was waiting for its stores.
fn waits(server: &Server) -> usize {
    server.log().matches("not serving yet").count()
}

/// A server started with Redis and MySQL both down (MySQL never ran: not
/// even the database exists) comes up and answers `busy`, then serves once
/// they start. Killed mid-sale, it is started again with both stores down
/// once more, Redis coming back empty: it reloads the stock from MySQL
/// before it sells, and the sale ends at exactly its stock.
#[test]
fn a_server_started_before_its_stores_sells_exactly_the_stock_once_they_are_up() {
    const STOCK: u32 = 300;
    let dir = tempfile::tempdir().unwrap();
    let mut mariadb = MariaDb::install();
    let mut redis = RedisServer::new(false);
    let mut stores = Backends::new();
    stores.mysql_base = mariadb.url();
    stores.redis_url = redis.url();

    let first = start(&dir, &stores);
    assert_busy(&mut first.client(), 1);
    mariadb.daemon.start();
    redis.daemon.start();
    let goods = until_served(|| first.admin().add_goods(on_sale("kettle", STOCK))).id;
    let mut told = buy(&first, goods, 4, 100);
    assert!(told.len() >= 100, "{} sold before the kill", told.len());
    assert!(waits(&first) <= 3, "{}", first.log());
    first.wait_for_log("the stores are up", Duration::from_secs(10));
    first.kill();

    mariadb.daemon.kill();
    redis.daemon.kill();
    let second = start(&dir, &stores);
    let mut client = second.client();
    assert_busy(&mut client, goods);
    // Redis first: the stock cannot be rebuilt before MySQL is back too.
    redis.daemon.start();
    std::thread::sleep(Duration::from_millis(500));
    assert_busy(&mut client, goods);
    mariadb.daemon.start();
    let listed = until_served(|| client.get_goods(goods));
    assert_eq!(listed.remaining as usize, STOCK as usize - told.len());
    told.extend(buy(&second, goods, 4, STOCK as usize));

    assert_eq!(told.len(), STOCK as usize, "orders told ok");
    let rows = stores.orders();
    let stored: HashMap<u64, u64> = rows.iter().map(|&(no, user, _, _)| (user, no)).collect();
    assert_eq!(stored.len(), rows.len(), "a user holds two orders");
    assert_eq!(stored, told, "MySQL holds exactly the orders told ok");
    assert_eq!(stores.redis_stock(goods), Some(0));
}

/// A server waiting for its stores stops at SIGTERM like any other.
#[test]
fn a_server_waiting_for_its_stores_stops_when_asked() {
    let dir = tempfile::tempdir().unwrap();
    let mut stores = Backends::new();
    // Port 1 (tcpmux) is closed on any test machine.
    stores.mysql_base = "mysql://root@127.0.0.1:1".into();
    stores.redis_url = "redis://127.0.0.1:1".into();
    let server = start(&dir, &stores);
    assert_busy(&mut server.client(), 1);
    assert!(server.terminate().success());
}

/// An id asked for with `--node-id` that a live server holds, found only
/// once MySQL answers, stops the server that was waiting for it, saying
/// why: it is refused as it would have been at start.
#[test]
fn a_node_id_found_held_once_mysql_is_up_stops_the_server() {
    let dir = tempfile::tempdir().unwrap();
    let mut mariadb = MariaDb::start();
    let mut stores = Backends::new();
    stores.mysql_base = mariadb.url();
    let mut flags = stores.args("durable");
    flags.extend(["--node-id", "5"].map(String::from));
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    // A lease that outlives the outage however slowly MariaDB comes back.
    let holder = Server::start(
        &dir.path().join("a.db"),
        &[&flags[..], &["--node-lease", "5m"]].concat(),
    );
    mariadb.daemon.kill();
    let waiting = Server::start(&dir.path().join("b.db"), &flags);
    assert_busy(&mut waiting.client(), 1);
    mariadb.daemon.start();
    let (status, log) = waiting.exited(Duration::from_secs(60));
    assert!(!status.success(), "exited with {status}");
    assert!(log.contains("node id 5 is held by a live server"), "{log}");
    drop(holder);
}

/// A server that cannot reach Redis has created nothing in MySQL: the
/// stock store is asked first, so a start that goes no further leaves no
/// database behind.
#[test]
fn a_server_without_redis_creates_no_mysql_database() {
    use mysql::prelude::Queryable;
    let dir = tempfile::tempdir().unwrap();
    let mut stores = Backends::new();
    stores.redis_url = "redis://127.0.0.1:1".into();
    let server = start(&dir, &stores);
    assert_busy(&mut server.client(), 1);
    // Start-up has tried (and retried) by now: its first try runs before
    // the server listens.
    std::thread::sleep(Duration::from_millis(500));
    let found: Option<String> = stores
        .mysql()
        .exec_first(
            "SELECT SCHEMA_NAME FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = ?",
            (&stores.db,),
        )
        .unwrap();
    assert_eq!(found, None, "the database was created with Redis down");
    assert!(server.terminate().success());
}

/// A listen address that is taken fails the start before the data file is
/// made: no empty SQLite file is left behind.
#[test]
fn a_refused_bind_leaves_no_sqlite_file() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("never.db");
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_seckill-server"))
        .args(["--listen", &addr, "--data"])
        .arg(&data)
        .env_remove("RUST_BACKTRACE")
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run seckill-server");
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "started on a taken port: {log}");
    assert!(log.contains(&addr), "{log}");
    let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
    assert!(left.is_empty(), "left behind: {left:?}");
}

/// A `--mysql` list naming a plain (non-Galera) server is refused at start,
/// naming the node: servers failing over on their own between plain
/// servers would sell from different order stores. A node that does not
/// answer is no reason to refuse (it is probed before it is written to).
#[test]
fn a_mysql_list_with_a_plain_server_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let stores = Backends::new();
    let plain = stores.mysql_url();
    let down = format!("mysql://root@127.0.0.1:1/{}", stores.db);
    let mut flags = stores.args("durable");
    let at = flags.iter().position(|f| f == "--mysql").unwrap() + 1;
    flags[at] = format!("{down},{plain}");
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let log = Server::refused(&dir.path().join("unused.db"), &flags);
    assert!(log.contains("is no Galera node"), "{log}");
    assert!(!log.contains("127.0.0.1:1 is no Galera"), "{log}");
}
