//! Servers on a Redis Cluster (`scripts/cluster/redis.sh`) whose shard
//! fails over mid-sale.

use std::collections::HashSet;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Duration, Instant};

use redis::Value;
use seckill_client::NewGoods;

use crate::harness::{cluster_lock, cluster_script, on_sale, Backends, Server, CLUSTER_NODES};
use crate::several::{sell_the_rest_and_check, start, wait_known, Crowd};

/// The port of the primary serving `key` now.
fn primary_of(key: &str) -> u16 {
    for port in CLUSTER_NODES {
        let Ok(mut con) = redis::Client::open(format!("redis://127.0.0.1:{port}"))
            .and_then(|c| c.get_connection_with_timeout(Duration::from_secs(1)))
        else {
            continue;
        };
        let slot: i64 = redis::cmd("CLUSTER")
            .arg("KEYSLOT")
            .arg(key)
            .query(&mut con)
            .unwrap();
        let Value::Array(ranges) = redis::cmd("CLUSTER").arg("SLOTS").query(&mut con).unwrap()
        else {
            panic!("CLUSTER SLOTS: no array");
        };
        for range in ranges {
            let Value::Array(items) = range else { continue };
            if let [Value::Int(first), Value::Int(last), Value::Array(primary), ..] = &items[..] {
                if (*first..=*last).contains(&slot) {
                    let Some(Value::Int(port)) = primary.get(1) else {
                        panic!("CLUSTER SLOTS: no port")
                    };
                    return u16::try_from(*port).unwrap();
                }
            }
        }
    }
    panic!("no node serves {key}");
}

/// kill -9 of the cluster node on `port`, by the pid its script recorded.
fn kill_node(port: u16) {
    let dir = std::env::var("SECKILL_CLUSTER_DIR").unwrap_or("/tmp/seckill-cluster".into());
    let pid = std::fs::read_to_string(format!("{dir}/redis/{port}/redis.pid"))
        .unwrap_or_else(|e| panic!("pid of node {port}: {e}"));
    let status = std::process::Command::new("kill")
        .args(["-9", pid.trim()])
        .status()
        .unwrap();
    assert!(status.success(), "kill -9 {pid}");
}

/// Waits until every replica of the cluster has its link to its primary
/// up: a node restarted after a kill syncs for a while, and a WAIT on its
/// primary counts it only after that.
fn replicas_linked() {
    let deadline = Instant::now() + Duration::from_secs(60);
    for port in CLUSTER_NODES {
        loop {
            let info: String = redis::Client::open(format!("redis://127.0.0.1:{port}"))
                .and_then(|c| c.get_connection_with_timeout(Duration::from_secs(1)))
                .and_then(|mut c| redis::cmd("INFO").arg("replication").query(&mut c))
                .unwrap_or_default();
            if info.contains("role:master") || info.contains("master_link_status:up") {
                break;
            }
            assert!(Instant::now() < deadline, "replica {port} never linked");
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

/// Starts a killed node again (it rejoins as a replica) and waits until
/// the script finds the cluster healthy, for the tests after this one.
fn restore(port: u16) {
    cluster_script(&["start", &port.to_string()]);
    let deadline = Instant::now() + Duration::from_secs(60);
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/cluster/redis.sh");
    while !std::process::Command::new(script)
        .arg("status")
        .output()
        .unwrap()
        .status
        .success()
    {
        assert!(Instant::now() < deadline, "the cluster did not heal");
        std::thread::sleep(Duration::from_millis(200));
    }
    replicas_linked();
}

/// Durable mode, two servers, a crowd: the primary holding the goods is
/// killed -9 mid-sale and its replica promoted (replication is
/// asynchronous, so it may lack the last deductions). The servers notice
/// the new primary and reload the goods from MySQL, the sale goes on, and
/// it ends at exactly its stock: nothing oversold, every acknowledged order
/// in MySQL once.
#[test]
fn a_primary_killed_mid_sale_durable() {
    const STOCK: u32 = 3000;
    let _cluster = cluster_lock();
    let dir = tempfile::tempdir().unwrap();
    let stores = Backends::on_cluster();
    let servers: Vec<Server> = (1..=2)
        .map(|n| start(&dir, &stores, "durable", n))
        .collect();
    let goods = servers[0]
        .admin()
        .add_goods(on_sale("lamp", STOCK))
        .unwrap()
        .id;
    wait_known(&servers, goods);
    let crowd = Crowd::new(&servers, goods);
    let buyers = crowd.buyers(8, &Arc::new(AtomicBool::new(false)));
    crowd.wait_told(STOCK as usize / 4);
    let primary = primary_of(&format!("{}{{g{goods}}}:stock", stores.prefix));
    kill_node(primary);
    let killed_at = (Instant::now(), crowd.told.lock().unwrap().len());
    for b in buyers {
        b.join().unwrap();
    }
    let after = crowd.told.lock().unwrap().len() - killed_at.1;
    eprintln!(
        "killed the primary on {primary} after {} orders; {after} more in the {:?} after",
        killed_at.1,
        killed_at.0.elapsed()
    );
    assert!(after > 0, "the sale did not go on after the failover");
    assert_ne!(
        primary_of(&format!("{}{{g{goods}}}:stock", stores.prefix)),
        primary,
        "no replica took over"
    );
    sell_the_rest_and_check(&servers, &stores, &crowd, STOCK);
    for s in &servers {
        s.wait_for_log("failed over", Duration::from_secs(10));
    }
    restore(primary);
}

/// `--redis-wait N`, queued mode: with N replicas reachable the sale sells
/// its stock and writes every order; asking for more replicas than the
/// cluster has, no BUY is told "ok" (each gets an error: the deduction ran
/// but is in doubt, so the outcome is unknown until ORDER_STATUS).
#[test]
fn queued_orders_wait_for_their_replicas() {
    let _cluster = cluster_lock();
    let dir = tempfile::tempdir().unwrap();
    let _ = Backends::on_cluster();
    replicas_linked();
    for (wait, sells) in [("1", true), ("2", false)] {
        let stores = Backends::on_cluster();
        let mut flags = stores.args("queued");
        // The longest wait: on a loaded 2-core machine a replica can take
        // longer than the default 100 ms to acknowledge.
        flags.extend([
            "--redis-wait".into(),
            wait.into(),
            "--redis-wait-timeout".into(),
            "1s".into(),
        ]);
        let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
        let server = Server::start(&dir.path().join(format!("wait{wait}.db")), &flags);
        let goods = server.admin().add_goods(on_sale("kettle", 50)).unwrap().id;
        let mut client = server.client();
        let mut ok = 0;
        for user in 1..=60 {
            match client.buy(user, goods) {
                Ok(seckill_client::Purchase::Ordered(_)) => ok += 1,
                Ok(seckill_client::Purchase::SoldOut) => {}
                Ok(other) => panic!("--redis-wait {wait}: {other:?}"),
                Err(e) => assert!(!sells, "--redis-wait {wait}: user {user}: {e}"),
            }
        }
        if sells {
            assert_eq!(ok, 50);
            stores.wait_written(goods, 50);
        } else {
            assert_eq!(ok, 0, "told ok on a change no second replica has");
            // Said at start, of every primary (each has one replica).
            let log = server.log();
            let short = log
                .matches("--redis-wait 2 but 1 replica(s) connected")
                .count();
            assert_eq!(short, 3, "{log}");
        }
        // The cluster's nodes keep no log of writes (scripts/cluster/redis.sh).
        assert_eq!(server.log().matches("appendonly is no").count(), 3);
    }
}

/// A hot goods over four buckets, spread over the cluster's shards, two
/// servers, a crowd; one server is killed -9 mid-sale (units it had
/// reserved or was moving between buckets left behind) and started again:
/// exactly the stock sold, nobody twice, every acknowledged order in MySQL
/// once, no unit stuck in a bucket.
fn a_hot_goods_over_four_buckets_two_servers_one_killed(ack: &str) {
    const STOCK: u32 = 3000;
    let _cluster = cluster_lock();
    let dir = tempfile::tempdir().unwrap();
    let stores = Backends::on_cluster();
    let mut servers: Vec<Server> = (1..=2).map(|n| start(&dir, &stores, ack, n)).collect();
    let goods = servers[0]
        .admin()
        .add_goods(NewGoods {
            buckets: 4,
            ..on_sale("hot", STOCK)
        })
        .unwrap()
        .id;
    wait_known(&servers, goods);
    let shards: HashSet<u16> = (0..4)
        .map(|b| primary_of(&format!("{}{{g{goods}.{b}}}:stock", stores.prefix)))
        .collect();
    eprintln!("the 4 buckets live on {} primaries", shards.len());
    let crowd = Crowd::new(&servers, goods);
    let buyers = crowd.buyers(8, &Arc::new(AtomicBool::new(false)));
    crowd.wait_told(STOCK as usize / 3);
    crowd.kill_and_restart(&mut servers, 1, || start(&dir, &stores, ack, 2));
    for b in buyers {
        b.join().unwrap();
    }
    sell_the_rest_and_check(&servers, &stores, &crowd, STOCK);
    for b in 0..4 {
        let key = format!("{}{{g{goods}.{b}}}:stock", stores.prefix);
        assert_eq!(stores.redis_get(&key).as_deref(), Some("0"), "bucket {b}");
    }
    // The conservation check, as `seckill-cli goods show --stock` shows it.
    let parts = servers[0].admin().stock(goods).unwrap();
    assert_eq!(
        (parts.total, parts.pool, parts.in_flight, parts.holders),
        (STOCK, 0, 0, u64::from(STOCK)),
        "{parts:?}"
    );
    assert_eq!(parts.buckets, [0, 0, 0, 0]);
    assert!(parts.balanced());
}

#[test]
fn a_hot_goods_over_four_buckets_two_servers_one_killed_durable() {
    a_hot_goods_over_four_buckets_two_servers_one_killed("durable");
}

/// The queued mode: each bucket queues its own orders, and the writers
/// drain every bucket's queue (the killed server's pending entries taken
/// over by the other).
#[test]
fn a_hot_goods_over_four_buckets_two_servers_one_killed_queued() {
    a_hot_goods_over_four_buckets_two_servers_one_killed("queued");
}
