//! The local Redis Cluster of `scripts/cluster/redis.sh` for the tests, and
//! what only a cluster does: queues in many slots read at once, a script
//! whose cache a node lost.

use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use super::{buyers, open_cluster, open_cluster_with, rules};
use crate::config::AckMode;
use crate::store::fixtures::LoadNext;
use crate::store::redis::Replication;
use crate::store::{OrderQueue, Reservation, StockStore, StoreError};

/// The cluster's nodes, primaries and replicas (the script's ports).
const NODES: [u16; 6] = [30001, 30002, 30003, 30004, 30005, 30006];

/// Forms the cluster once a test binary (the script does nothing when it
/// is up, and takes a lock against other binaries), and gives its seeds.
pub(in crate::store) fn up() -> Vec<String> {
    static UP: OnceLock<Result<(), String>> = OnceLock::new();
    let formed = UP.get_or_init(|| {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/cluster/redis.sh");
        let status = Command::new(script)
            .arg("up")
            .status()
            .map_err(|e| format!("running {script}: {e}"))?;
        status
            .success()
            .then_some(())
            .ok_or_else(|| format!("{script} up: {status}"))
    });
    if let Err(e) = formed {
        panic!("the Redis Cluster tests need the local cluster: {e}");
    }
    NODES[..3]
        .iter()
        .map(|port| format!("127.0.0.1:{port}"))
        .collect()
}

/// Deletes the keys matching `pattern` on every primary of the cluster.
pub(super) fn delete_matching(pattern: &str) -> ::redis::RedisResult<()> {
    for port in NODES {
        let client = ::redis::Client::open(format!("redis://127.0.0.1:{port}"))?;
        let mut con = client.get_connection_with_timeout(Duration::from_secs(2))?;
        let role: Vec<::redis::Value> = ::redis::cmd("ROLE").query(&mut con)?;
        if role.first() == Some(&::redis::Value::BulkString(b"master".to_vec())) {
            super::delete_matching(&mut con, pattern)?;
        }
    }
    Ok(())
}

/// Primaries of the cluster now (failovers in other tests may have moved
/// them), each as a plain connection.
fn primaries() -> Vec<::redis::Connection> {
    NODES
        .iter()
        .filter_map(|port| {
            let client = ::redis::Client::open(format!("redis://127.0.0.1:{port}")).ok()?;
            let mut con = client
                .get_connection_with_timeout(Duration::from_secs(2))
                .ok()?;
            let role: Vec<::redis::Value> = ::redis::cmd("ROLE").query(&mut con).ok()?;
            (role.first() == Some(&::redis::Value::BulkString(b"master".to_vec()))).then_some(con)
        })
        .collect()
}

/// Twelve goods land on every shard; their queues cannot be read in one
/// command there (CROSSSLOT), yet one `read` gets every order of them all.
#[test]
fn queues_in_many_slots_are_read_and_acked_together() {
    let stock = open_cluster(AckMode::Queued);
    let goods: Vec<u64> = (1..=12).collect();
    for &g in &goods {
        stock.load_next(g, 2, &[]).unwrap();
        let r = stock
            .reserve(
                g,
                &rules(1),
                &buyers(&[(g * 10, g * 100), (g * 10 + 1, g * 100 + 1)]),
            )
            .unwrap();
        assert_eq!(r.decisions, [Reservation::Reserved, Reservation::Reserved]);
    }
    let mut read = Vec::new();
    while read.len() < 24 {
        let batch = stock
            .read(&goods, "a", 100, Duration::from_millis(50))
            .unwrap();
        assert!(!batch.is_empty(), "read {} of 24 orders", read.len());
        read.extend(batch);
    }
    let mut numbers: Vec<u64> = read.iter().map(|q| q.order.order_no).collect();
    numbers.sort_unstable();
    let expected: Vec<u64> = goods.iter().flat_map(|g| [g * 100, g * 100 + 1]).collect();
    assert_eq!(numbers, expected);
    for &g in &goods {
        let ids: Vec<String> = read
            .iter()
            .filter(|q| q.order.goods_id == g)
            .map(|q| q.id.clone())
            .collect();
        stock.ack(g, &ids).unwrap();
        assert!(
            stock.queued(g).unwrap().is_empty(),
            "goods {g} still queued"
        );
    }
    assert!(stock
        .read(&goods, "a", 100, Duration::ZERO)
        .unwrap()
        .is_empty());
}

/// A promoted replica has no script cache (it is not replicated): a
/// cluster that forgot every script still runs them, loaded again on the
/// node that answered NOSCRIPT.
#[test]
fn scripts_run_on_nodes_that_forgot_them() {
    let stock = open_cluster(AckMode::Durable);
    for g in 1..=6 {
        stock.load_next(g, 1, &[]).unwrap();
    }
    for mut con in primaries() {
        ::redis::cmd("SCRIPT")
            .arg("FLUSH")
            .query::<()>(&mut con)
            .unwrap();
    }
    for g in 1..=6 {
        let r = stock.reserve(g, &rules(1), &buyers(&[(1, g)])).unwrap();
        assert_eq!(r.decisions, [Reservation::Reserved], "goods {g}");
        assert_eq!(r.remaining, 0);
    }
}

/// `--redis-wait`: a reservation (or a load) that reached the replicas it
/// waits for is acted on; one that could not (the cluster has one replica a
/// primary) is in doubt, never "reserved", though it ran. The same for the queue
/// drain's read of its order, handed over only once replicated, and for the
/// orders a user holds, read to be told to the user.
#[test]
fn a_reservation_waits_for_its_replicas() {
    for (replicas, replicated) in [(1, true), (2, false)] {
        let replication = Replication {
            replicas,
            timeout: Duration::from_secs(1),
        };
        let test = open_cluster_with(AckMode::Queued, Some(replication));
        // A load waits for the replicas too: short of them, in doubt; then
        // loaded by a store that waits for none.
        let loaded = test.load_next(7, 2, &[]);
        if replicated {
            loaded.unwrap();
        } else {
            assert!(
                matches!(loaded, Err(StoreError::Indeterminate(_))),
                "{loaded:?}"
            );
            let plain =
                crate::store::RedisStock::open_cluster(&up(), &test.prefix, AckMode::Queued)
                    .unwrap();
            plain.load_next(7, 2, &[]).unwrap();
        }
        let got = test.reserve(7, &rules(1), &buyers(&[(1, 71)]));
        if replicated {
            assert_eq!(got.unwrap().decisions, [Reservation::Reserved]);
        } else {
            assert!(
                matches!(&got, Err(StoreError::Indeterminate(m)) if m.contains("0 of 2") || m.contains("1 of 2")),
                "{got:?}"
            );
        }
        assert_eq!(test.remaining(7).unwrap(), Some(1), "{replicas} replicas");
        // A pause too: answered only once on the replicas.
        let pause = crate::store::SaleState {
            paused: true,
            start_ms: 0,
            end_ms: u64::MAX,
            version: 1,
        };
        let paused = test.control(7, &pause);
        if replicated {
            paused.unwrap();
        } else {
            assert!(
                matches!(&paused, Err(StoreError::Indeterminate(_))),
                "{paused:?}"
            );
        }
        // The order is told to its user (ORDER_STATUS in the queued mode)
        // only once the replicas have it, whoever reserved it.
        let held = test.held(7, 1);
        if replicated {
            assert_eq!(held.unwrap(), [71]);
        } else {
            assert!(
                matches!(&held, Err(StoreError::Indeterminate(_))),
                "{held:?}"
            );
        }
        let read = test.read(&[7], "w", 10, Duration::ZERO);
        if replicated {
            assert_eq!(read.unwrap().len(), 1);
        } else {
            assert!(matches!(read, Err(StoreError::Unavailable(_))), "{read:?}");
        }
    }
}

/// A call that timed out on the cluster drops its own link only: the idle
/// links stay (each holds a connection per node, and one node that stalls
/// says nothing of the others'; a new link connects to and PINGs every
/// node, seconds with one stalled). A connection refused (a node gone for
/// good, which the idle links' slot maps still name) empties the pool, as
/// any failure does on one Redis (a Redis that restarted broke them all).
#[test]
fn on_a_cluster_a_timeout_keeps_the_idle_links_and_a_refusal_empties_them() {
    use std::io::ErrorKind::{ConnectionRefused, TimedOut};
    for (stock, kind, keeps) in [
        (open_cluster(AckMode::Durable), TimedOut, true),
        (open_cluster(AckMode::Durable), ConnectionRefused, false),
        (super::open(AckMode::Durable), TimedOut, false),
    ] {
        let links: Vec<_> = (0..3).map(|_| stock.target.connect().unwrap()).collect();
        stock.pool.lock().extend(links);
        let idle = stock.pool.lock().len();
        let failed = stock.call("a call that fails", |_| -> ::redis::RedisResult<()> {
            Err(std::io::Error::from(kind).into())
        });
        assert!(
            matches!(failed, Err(StoreError::Unavailable(_))),
            "{failed:?}"
        );
        // The failed call's own link is gone either way.
        let kept = if keeps { idle - 1 } else { 0 };
        let cluster = stock.is_cluster();
        assert_eq!(stock.pool.lock().len(), kept, "cluster {cluster}, {kind:?}");
    }
}

/// WAIT counts the writes of the connection it goes on: after the link's
/// connection to the node broke (killed here, after a write), the WAIT is
/// an error, not sent on a new connection that would confirm at once.
#[test]
fn a_wait_after_the_link_broke_is_an_error_not_a_fresh_confirmation() {
    use ::redis::cluster_routing::{Route, RoutingInfo, SingleNodeRoutingInfo, SlotAddr};
    let stock = open_cluster(AckMode::Durable);
    let key = format!("{}{{wait}}:x", stock.prefix);
    let mut link = stock.target.connect().unwrap();
    let super::super::link::Link::Cluster(con) = &mut link else {
        panic!("a cluster link");
    };
    let node = || {
        RoutingInfo::SingleNode(SingleNodeRoutingInfo::SpecificNode(Route::with_key(
            &key,
            SlotAddr::Master,
        )))
    };
    let _: () = ::redis::cmd("SET")
        .arg(&key)
        .arg(1)
        .query(&mut **con)
        .unwrap();
    let id: i64 = ::redis::from_redis_value(
        con.route_command(::redis::cmd("CLIENT").arg("ID"), node())
            .unwrap(),
    )
    .unwrap();
    // The node that holds the key closes the link's connection to it, told
    // by another client (the link sees nothing until its next command).
    let mut owner = primaries()
        .into_iter()
        .find_map(|mut c| {
            (::redis::cmd("EXISTS").arg(&key).query::<i64>(&mut c).ok() == Some(1)).then_some(c)
        })
        .expect("the key's primary");
    let killed: i64 = ::redis::cmd("CLIENT")
        .arg("KILL")
        .arg("ID")
        .arg(id)
        .query(&mut owner)
        .unwrap();
    assert_eq!(killed, 1);
    let replication = Replication {
        replicas: 1,
        timeout: Duration::from_millis(100),
    };
    let waited = link.wait_replicas(&key, &replication);
    assert!(
        waited.is_err(),
        "WAIT answered {waited:?} on a new connection"
    );
    let _: () = stock
        .call("clean up", |con| ::redis::cmd("DEL").arg(&key).query(con))
        .unwrap();
}
