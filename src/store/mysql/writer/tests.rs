//! The writer's choice against real servers: the 3-node Galera cluster of
//! `scripts/cluster/galera.sh`, a node behind a proxy that can be cut (a
//! node killed and started again), and the test MariaDB, a plain server.

use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Instant;

use ::mysql::prelude::Queryable;
use ::mysql::PooledConn;

use super::*;
use crate::store::mysql::calls::{Call, Failure, Link};
use crate::store::mysql::node_opts;
use crate::store::testdb::{galera, TestDb};

/// Taken by the tests that need the first Galera node as it is (one
/// desyncs it for a while, which another's choice of writer would see).
static FIRST_NODE: parking_lot::Mutex<()> = parking_lot::Mutex::new(());

#[test]
fn a_list_splits_at_the_commas_that_start_a_url() {
    assert_eq!(
        split_urls("mysql://a:1/db,mysql://b:2/db, mysql://c:3/db"),
        ["mysql://a:1/db", "mysql://b:2/db", "mysql://c:3/db"]
    );
    assert_eq!(
        split_urls("mysql://u:p,w@a/db?x=1,2"),
        ["mysql://u:p,w@a/db?x=1,2"]
    );
    assert_eq!(split_urls("mysql://a/db"), ["mysql://a/db"]);
}

#[test]
fn the_nodes_of_a_list_must_name_one_database() {
    use crate::store::mysql::MysqlStore;
    let refused = MysqlStore::new("mysql://root@127.0.0.1:1/a,mysql://root@127.0.0.1:2/b");
    assert!(
        matches!(&refused, Err(StoreError::Unavailable(m)) if m.contains("different databases")),
        "{:?}",
        refused.err()
    );
    // Nothing is connected yet: unreachable nodes are no error here.
    assert!(MysqlStore::new("mysql://root@127.0.0.1:1/a,mysql://root@127.0.0.1:2/a").is_ok());
}

#[test]
fn a_plain_mariadb_is_no_place_to_write_in_a_list() {
    let db = TestDb::new();
    let node = Node::new(Opts::from_url(db.url()).unwrap());
    let health = probe(&node).expect("the test server answers");
    assert_eq!(health, Health::Plain);
    assert!(!health.usable());
}

#[test]
fn a_list_with_a_plain_node_is_refused_at_start() {
    use crate::store::mysql::MysqlStore;
    let db = TestDb::new();
    let down = format!("mysql://root@127.0.0.1:1/{}", db.name());
    let store = MysqlStore::new(&format!("{down},{}", db.url())).unwrap();
    let refused = store.prepare();
    assert!(
        matches!(&refused, Err(StoreError::Inconsistent(m)) if m.contains("no Galera node")),
        "{refused:?}"
    );
    // One URL of a plain server is fine.
    MysqlStore::new(db.url()).unwrap().prepare().unwrap();
}

#[test]
fn a_galera_list_with_a_node_down_is_accepted_at_start() {
    use crate::store::mysql::MysqlStore;
    let nodes = galera();
    let db = TestDb::on(nodes[0]);
    let down = format!("mysql://root@127.0.0.1:1/{}", db.name());
    let store = MysqlStore::new(&format!("{down},{}/{}", nodes[1], db.name())).unwrap();
    store.prepare().unwrap();
}

#[test]
fn a_node_that_does_not_answer_fails_its_probe() {
    let node = Node::new(Opts::from_url("mysql://root@127.0.0.1:1/x").unwrap());
    assert!(probe(&node).is_err());
}

/// A TCP forwarder to a server that can be stopped (its listener closed
/// and every connection cut, as a node killed) and started again on the
/// same port.
struct Proxy {
    port: u16,
    upstream: SocketAddr,
    stop: Arc<AtomicBool>,
    accept: Option<JoinHandle<()>>,
}

impl Proxy {
    fn start(port: u16, upstream: SocketAddr) -> Proxy {
        let listener = TcpListener::bind(("127.0.0.1", port)).expect("bind the proxy");
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        let accept = std::thread::spawn(move || {
            let mut links: Vec<TcpStream> = Vec::new();
            while !stopped.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((client, _)) => {
                        client.set_nonblocking(false).unwrap();
                        let Ok(server) = TcpStream::connect(upstream) else {
                            continue;
                        };
                        links.push(client.try_clone().unwrap());
                        links.push(server.try_clone().unwrap());
                        pipe(client.try_clone().unwrap(), server.try_clone().unwrap());
                        pipe(server, client);
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
            for link in links {
                let _ = link.shutdown(Shutdown::Both);
            }
        });
        Proxy {
            port,
            upstream,
            stop,
            accept: Some(accept),
        }
    }

    /// Closes the listener and cuts every connection.
    fn stop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.accept.take() {
            t.join().unwrap();
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop();
    }
}

fn pipe(mut from: TcpStream, mut to: TcpStream) {
    std::thread::spawn(move || {
        let _ = std::io::copy(&mut from, &mut to);
        let _ = to.shutdown(Shutdown::Both);
    });
}

/// The store's options for `url` on another address, without the switch
/// to the Unix socket a loopback URL would make.
fn via(url: &str, port: u16) -> Opts {
    let (opts, _) = node_opts(url).unwrap();
    OptsBuilder::from_opts(opts)
        .ip_or_hostname(Some("127.0.0.1"))
        .tcp_port(port)
        .prefer_socket(false)
        .into()
}

fn insert(id: u32) -> impl FnMut(&mut PooledConn) -> Result<(), Failure> {
    move |conn| {
        Ok(conn.exec_drop(
            "INSERT INTO t VALUES (?) ON DUPLICATE KEY UPDATE id = id",
            (id,),
        )?)
    }
}

fn with_table(db: &TestDb) {
    let mut admin = db.conn();
    admin
        .query_drop(format!("CREATE DATABASE `{}`", db.name()))
        .unwrap();
    admin.select_db(db.name()).unwrap();
    admin
        .query_drop("CREATE TABLE t (id INT PRIMARY KEY) ENGINE = InnoDB")
        .unwrap();
}

#[test]
fn a_list_fails_over_to_the_next_node_and_back_to_the_first() {
    let _first = FIRST_NODE.lock();
    let nodes = galera();
    let db = TestDb::on(nodes[0]);
    with_table(&db);
    let url = |i: usize| format!("{}/{}", nodes[i], db.name());
    let first = node_opts(&url(0)).unwrap().0;
    let upstream = SocketAddr::new(
        first.get_ip_or_hostname().parse().expect("an IP address"),
        first.get_tcp_port(),
    );
    let mut proxy = Proxy::start(0, upstream);
    let second = node_opts(&url(1)).unwrap().0;
    let link = Link::to_nodes(vec![via(&url(0), proxy.port), second]).unwrap();
    let node = |link: &Link| link.writer_node();

    link.call("t", Call::IDEMPOTENT, insert(1)).unwrap();
    assert_eq!(node(&link), 0, "the first node, while it answers");

    // The first node dies with a connection in the pool: the call runs
    // again, through the second.
    proxy.stop();
    link.call("t", Call::IDEMPOTENT, insert(2)).unwrap();
    assert_eq!(node(&link), 1, "failed over");

    // Back up: the link stays where it is until the next failback probe,
    // then returns to the first node.
    let proxy = Proxy::start(proxy.port, proxy.upstream);
    link.call("t", Call::IDEMPOTENT, insert(3)).unwrap();
    assert_eq!(node(&link), 1, "no probe before FAILBACK_EVERY");
    std::thread::sleep(FAILBACK_EVERY);
    link.call("t", Call::IDEMPOTENT, insert(4)).unwrap();
    assert_eq!(node(&link), 0, "failed back");
    // Through the link, whose sessions wait for the cluster: the rows
    // written through the second node are seen on the first.
    let rows: u64 = link
        .call("t", Call::IDEMPOTENT, |conn| {
            Ok(conn.query_first("SELECT COUNT(*) FROM t")?.unwrap_or(0))
        })
        .unwrap();
    assert_eq!(rows, 4);
    assert!(!link.outage.is_down());
    drop(proxy);
}

#[test]
fn a_galera_node_out_of_sync_is_passed_over_and_sessions_wait_for_the_cluster() {
    let _first = FIRST_NODE.lock();
    let nodes = galera();
    let db = TestDb::on(nodes[0]);
    with_table(&db);
    let url = |i: usize| format!("{}/{}", nodes[i], db.name());
    let galera_node = |i: usize| Node::new(node_opts(&url(i)).unwrap().0);
    assert_eq!(probe(&galera_node(1)).unwrap(), Health::Galera);

    /// Node 1 desynced (a donor's state) until dropped, the test failing
    /// or not: the cluster stays whole for the other tests.
    struct Desynced(String);
    impl Drop for Desynced {
        fn drop(&mut self) {
            if let Ok(mut c) = ::mysql::Conn::new(Opts::from_url(&self.0).unwrap()) {
                let _ = c.query_drop("SET GLOBAL wsrep_desync = OFF");
            }
        }
    }
    let mut first = ::mysql::Conn::new(Opts::from_url(nodes[0]).unwrap()).unwrap();
    first.query_drop("SET GLOBAL wsrep_desync = ON").unwrap();
    let desynced = Desynced(nodes[0].to_string());
    assert!(!probe(&galera_node(0)).unwrap().usable());

    let link = Link::to_nodes(vec![
        node_opts(&url(0)).unwrap().0,
        node_opts(&url(1)).unwrap().0,
    ])
    .unwrap();
    let sync_wait: u8 = link
        .call("t", Call::IDEMPOTENT, |conn| {
            Ok(conn.query_first("SELECT @@wsrep_sync_wait")?.unwrap_or(0))
        })
        .unwrap();
    assert_eq!((link.writer_node(), sync_wait), (1, 1));
    link.call("t", Call::ORDERS, insert(1)).unwrap();

    drop(desynced);
    let deadline = Instant::now() + Duration::from_secs(30);
    while !probe(&galera_node(0)).is_ok_and(|h| h.usable()) {
        assert!(Instant::now() < deadline, "node 1 did not resync");
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(FAILBACK_EVERY);
    link.call("t", Call::ORDERS, insert(2)).unwrap();
    assert_eq!(link.writer_node(), 0, "back on the first node once Synced");
    let rows: u64 = first
        .query_first(format!("SELECT COUNT(*) FROM `{}`.t", db.name()))
        .unwrap()
        .unwrap();
    assert_eq!(rows, 2, "both rows, whichever node wrote them");
}
