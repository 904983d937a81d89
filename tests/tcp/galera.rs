//! The order store on a MariaDB Galera cluster: the 3 nodes of
//! `scripts/cluster/galera.sh` (brought up once per test binary), given to
//! the server as a `--mysql` list. The writer node is killed with SIGKILL
//! mid-sale; the sale goes on through the next node, and the killed node
//! rejoins afterwards so that the next test finds the cluster whole.

use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use mysql::prelude::Queryable;

use crate::faults::{
    assert_busy_wrote_nothing, assert_reconciled_sold_out, assert_sold_exactly, ok_after,
    start_server, told, Crowd, Outcome, BUYERS, STOCK,
};
use crate::harness::Backends;

/// The nodes' base URLs, in the server's order of preference.
const NODES: [&str; 3] = [
    "mysql://root@127.0.0.1:33061",
    "mysql://root@127.0.0.1:33062",
    "mysql://root@127.0.0.1:33063",
];

fn script() -> &'static str {
    concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/cluster/galera.sh")
}

/// Runs `galera.sh <command>`; panics with its output if it fails.
fn galera_sh(command: &str) {
    let out = Command::new(script())
        .arg(command)
        .output()
        .unwrap_or_else(|e| panic!("run {}: {e}", script()));
    assert!(
        out.status.success(),
        "galera.sh {command} failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The cluster up, once per test binary (the script is idempotent and
/// takes a lock, so other test binaries may race it).
fn galera_up() {
    static UP: OnceLock<()> = OnceLock::new();
    UP.get_or_init(|| galera_sh("up"));
}

/// Node `n`'s pid, from the pidfile the script wrote when it started it.
fn node_pid(n: usize) -> String {
    let dir = std::env::var_os("SECKILL_CLUSTER_DIR")
        .map_or_else(|| PathBuf::from("/tmp/seckill-cluster"), PathBuf::from);
    let pidfile = dir.join(format!("galera/node{n}/started.pid"));
    std::fs::read_to_string(&pidfile)
        .unwrap_or_else(|e| panic!("{}: {e}", pidfile.display()))
        .trim()
        .to_string()
}

fn sigkill_node(n: usize) {
    let status = Command::new("kill")
        .args(["-KILL", &node_pid(n)])
        .status()
        .expect("run kill");
    assert!(status.success(), "kill -KILL node {n}");
}

/// Writesets this node has replicated: those of the transactions written
/// through it.
fn replicated(n: usize) -> u64 {
    let mut conn = mysql::Conn::new(mysql::Opts::from_url(NODES[n - 1]).unwrap())
        .unwrap_or_else(|e| panic!("node {n}: {e}"));
    let row: Option<(String, u64)> = conn
        .query_first("SHOW GLOBAL STATUS LIKE 'wsrep_replicated'")
        .expect("wsrep_replicated");
    row.expect("a Galera node").1
}

/// Durable mode, every order written through node 1 until it is killed.
/// The cluster blocks writes until it has evicted node 1 (about 3 s); the
/// batch whose COMMIT was cut is run again through node 2, where it is
/// recognised if it committed. So BUYs wait, and are answered `ok`, or
/// `busy` (nothing done) where a store call fails outright, or
/// `internal_error` where a write is in doubt: never an `ok` that is lost
/// or stored twice, and the sale goes on through node 2 to exactly its
/// stock. Node 1 rejoins, and the server goes back to writing through it.
/// (On this machine the runs seen answered every BUY `ok`: the retry
/// through node 2 absorbed the failover; the counts are printed.)
#[test]
fn galera_writer_killed_mid_sale_durable_loses_no_ok_and_goes_on_through_the_next_node() {
    galera_up();
    let mut stores = Backends::new();
    // The test reads and drops its database through node 2, which stays up.
    stores.mysql_base = NODES[1].into();
    let list: Vec<String> = NODES.iter().map(|n| format!("{n}/{}", stores.db)).collect();
    let (server, goods) = start_server(&stores, "durable", Some(list.join(",")), STOCK);

    let crowd = Crowd::start(&server, goods, BUYERS, Duration::ZERO);
    crowd.wait_for("300 orders before the fault", |c, _| {
        c.ordered.load(std::sync::atomic::Ordering::Relaxed) >= 300
    });
    sigkill_node(1);
    let killed = Instant::now();
    crowd.wait_for("an ok through the next node", |_, attempts| {
        ok_after(attempts, killed)
    });
    let resumed = Instant::now();
    let attempts = crowd.finish();

    let tally = |f: fn(&Outcome) -> bool| attempts.iter().filter(|a| f(&a.outcome)).count();
    let failover: Vec<_> = attempts
        .iter()
        .filter(|a| a.sent >= killed && a.replied <= resumed)
        .map(|a| a.outcome)
        .collect();
    eprintln!(
        "galera writer killed: {} BUYs, {} ok, {} busy, {} in doubt; \
         {:?} from the kill to the first ok after it, answers meanwhile: {} busy, {} in doubt",
        attempts.len(),
        tally(|o| matches!(o, Outcome::Ordered(_))),
        tally(|o| *o == Outcome::Busy),
        tally(|o| *o == Outcome::InDoubt),
        resumed - killed,
        failover.iter().filter(|o| **o == Outcome::Busy).count(),
        failover.iter().filter(|o| **o == Outcome::InDoubt).count(),
    );
    let rows = assert_sold_exactly(&stores, goods, STOCK, &told(&attempts));
    assert_busy_wrote_nothing(&attempts, &rows);
    assert_reconciled_sold_out(&server, &stores, goods, STOCK);
    assert!(
        server
            .log()
            .contains("writing through node 127.0.0.1:33062"),
        "no failover to node 2 in the log:\n{}",
        server.log()
    );

    // Node 1 rejoins (IST from the others' gcache), and is the writer
    // again once the server probes it.
    galera_sh("up");
    let before = replicated(1);
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut admin = server.admin();
    let mut restocked = 0;
    while replicated(1) == before {
        assert!(
            Instant::now() < deadline,
            "no write through node 1 within 30 s of its rejoining"
        );
        // A write through whichever node the server is on.
        match admin.restock(goods, 1) {
            Ok(_) => restocked += 1,
            Err(e) if e.is_busy() => {}
            Err(e) => panic!("RESTOCK: {e}"),
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(restocked > 0);
}
