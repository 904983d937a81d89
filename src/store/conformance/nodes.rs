//! What every [`NodeRegistry`] does, checked against SQLite and MySQL (the
//! tests are `store::conformance::nodes::{sqlite,mysql}::*`). Each store
//! opened on one database stands for one server; lease ends are the
//! database's clock, so the tests wait real time for a short lease to end.

use std::sync::Arc;
use std::time::Duration;

use tempfile::TempDir;

use crate::clock::now_ms;
use crate::store::nodes::Lease;
use crate::store::testdb::TestDb;
use crate::store::{Claimed, MysqlStore, NodeClaim, NodeRegistry, SqliteStore};

/// A database for one test, and the stores a backend opens on it.
trait Backend {
    type Store: NodeRegistry + 'static;
    fn new() -> Self;
    /// Another server on the same database.
    fn open(&self) -> Self::Store;
    /// Writes id `node_id` as free, with a fence at `until_ms` (as a server
    /// from before the cap, whose clock ran ahead, could have left it).
    fn seed_fence(&self, node_id: u16, until_ms: u64);
}

struct Sqlite(TempDir);

impl Backend for Sqlite {
    type Store = SqliteStore;
    fn new() -> Self {
        Sqlite(tempfile::tempdir().expect("a temporary directory"))
    }
    fn open(&self) -> SqliteStore {
        SqliteStore::open(&self.0.path().join("nodes.db")).expect("open the file")
    }
    fn seed_fence(&self, node_id: u16, until_ms: u64) {
        drop(self.open());
        let file = rusqlite::Connection::open(self.0.path().join("nodes.db")).expect("the file");
        file.execute(
            "INSERT OR REPLACE INTO nodes (node_id, holder, holder_info, expires_ms, numbers_until_ms)
             VALUES (?1, 0, '', 0, ?2)",
            rusqlite::params![node_id, i64::try_from(until_ms).expect("a fence")],
        )
        .expect("seed the fence");
    }
}

struct Mysql(TestDb);

impl Backend for Mysql {
    type Store = MysqlStore;
    fn new() -> Self {
        Mysql(TestDb::new())
    }
    fn open(&self) -> MysqlStore {
        MysqlStore::open(self.0.url()).unwrap_or_else(|e| panic!("open {}: {e}", self.0.url()))
    }
    fn seed_fence(&self, node_id: u16, until_ms: u64) {
        use ::mysql::prelude::Queryable;
        drop(self.open());
        self.0
            .conn()
            .exec_drop(
                "INSERT INTO nodes (node_id, holder, holder_info, expires_at, numbers_until_ms)
                 VALUES (?, 0, '', UTC_TIMESTAMP(6), ?)
                 ON DUPLICATE KEY UPDATE holder = 0, numbers_until_ms = VALUES(numbers_until_ms)",
                (node_id, until_ms),
            )
            .expect("seed the fence");
    }
}

/// What the database's clock may be off this process's, in the tests that
/// compare a limit it capped with `now_ms()`.
const SLACK_MS: u64 = 1_000;

const LONG: Duration = Duration::from_secs(30);
const SHORT: Duration = Duration::from_millis(300);

/// `holder` asks for `want` (any id with `None`) for `lease`, hoping to
/// stamp numbers up to `until_ms`.
fn claim(
    store: &dyn NodeRegistry,
    want: Option<u16>,
    holder: u64,
    lease: Duration,
    until_ms: u64,
) -> Claimed {
    let info = format!("holder {holder}");
    store
        .claim_node(&NodeClaim {
            want,
            max_id: 1023,
            holder,
            info: &info,
            lease,
            until_ms,
        })
        .expect("claim")
}

fn leased(claimed: Claimed) -> Lease {
    match claimed {
        Claimed::Leased(lease) => lease,
        other => panic!("expected a lease, got {other:?}"),
    }
}

fn two_servers_lease_different_ids_and_a_live_one_is_not_taken<B: Backend>() {
    let db = B::new();
    let (a, b) = (db.open(), db.open());
    let now = now_ms();
    let first = leased(claim(&a, None, 1, LONG, now + 30_000));
    assert_eq!(
        first,
        Lease {
            node_id: 0,
            floor_ms: 0,
            until_ms: now + 30_000
        }
    );
    assert_eq!(leased(claim(&b, None, 2, LONG, now)).node_id, 1);
    match claim(&b, Some(0), 3, LONG, now) {
        Claimed::Held {
            node_id: 0,
            by,
            left_ms,
        } => {
            assert_eq!(by, "holder 1");
            assert!(left_ms > 25_000 && left_ms <= 30_000, "{left_ms}");
        }
        other => panic!("a live lease was given away: {other:?}"),
    }
    // An id asked for that nobody holds is given, gaps and all.
    assert_eq!(leased(claim(&b, Some(7), 3, LONG, now)).node_id, 7);
    assert_eq!(leased(claim(&b, None, 4, LONG, now)).node_id, 2);
}

/// A claim retried after its reply was lost finds its own lease, and
/// starts from the floor the lost claim was given: above the previous
/// holder's numbers, and not a lease in the future (the lost claim's
/// limit), where the numbers' timestamps would be off by a lease.
fn a_holder_claiming_again_keeps_its_id<B: Backend>() {
    let db = B::new();
    let (a, b) = (db.open(), db.open());
    let now = now_ms();
    // Asking, as a server does, for a lease's worth of numbers from now.
    assert_eq!(leased(claim(&a, None, 1, LONG, now + 30_000)).node_id, 0);
    let again = leased(claim(&a, None, 1, LONG, now + 30_005));
    assert_eq!(again.node_id, 0);
    assert!(
        again.floor_ms <= now,
        "a floor of {} is in the future",
        again.floor_ms
    );
    // An id taken over from a holder whose lease ran out, the claim
    // retried: the previous holder's limit stays the floor. (Within two
    // leases of now: a limit further ahead is held to that.)
    let old_until = now_ms() + 300;
    assert_eq!(leased(claim(&b, Some(5), 2, SHORT, old_until)).node_id, 5);
    std::thread::sleep(SHORT * 2);
    // Asking for no limit of their own: a lease above the floor is theirs.
    let taken = leased(claim(&a, Some(5), 3, SHORT, 0));
    assert_eq!(taken.floor_ms, old_until);
    let retried = leased(claim(&a, Some(5), 3, SHORT, 0));
    assert_eq!(
        (retried.node_id, retried.floor_ms),
        (5, old_until),
        "not the lost claim's limit, {}",
        taken.until_ms
    );
    assert!(retried.until_ms >= taken.until_ms);
}

/// A server killed without a clean stop: its id is taken over once the
/// lease runs out by the database's clock, and the new holder's numbers
/// start above the old holder's fence; the old holder's renewal fails.
fn a_lease_that_ran_out_is_taken_over_above_its_fence<B: Backend>() {
    let db = B::new();
    let (a, b) = (db.open(), db.open());
    // Within two leases of now: a limit further ahead is held to that.
    let old_until = now_ms() + 300;
    assert_eq!(leased(claim(&a, None, 1, SHORT, old_until)).node_id, 0);
    assert!(matches!(
        claim(&b, Some(0), 2, SHORT, 0),
        Claimed::Held { .. }
    ));
    std::thread::sleep(SHORT * 2);
    let taken = leased(claim(&b, Some(0), 2, SHORT, now_ms()));
    assert_eq!(taken.node_id, 0);
    assert_eq!(taken.floor_ms, old_until, "starts above the old fence");
    assert!(taken.until_ms >= old_until + 300, "a lease's room above it");
    assert_eq!(a.renew_node(0, 1, SHORT, now_ms()).expect("renew"), None);
    assert!(b
        .renew_node(0, 2, SHORT, now_ms())
        .expect("renew")
        .is_some());
}

/// Renewals keep a short lease alive, and never lower the fence.
fn renewals_keep_a_lease_and_raise_its_fence<B: Backend>() {
    // Longer than SHORT: a renewal must get through in each third of it,
    // which a stalled test thread on a loaded machine could miss.
    const LEASE: Duration = Duration::from_secs(1);
    let db = B::new();
    let (a, b) = (db.open(), db.open());
    let until = now_ms() + 1_500;
    assert_eq!(leased(claim(&a, None, 1, LEASE, until)).node_id, 0);
    for _ in 0..6 {
        std::thread::sleep(LEASE / 3);
        // Asking for less grants what is recorded.
        let granted = a.renew_node(0, 1, LEASE, until - 5_000).expect("renew");
        assert_eq!(granted, Some(until));
    }
    assert!(matches!(
        claim(&b, Some(0), 2, LEASE, 0),
        Claimed::Held { .. }
    ));
    assert_eq!(
        a.renew_node(0, 1, LEASE, until + 1).expect("renew"),
        Some(until + 1)
    );
    std::thread::sleep(LEASE * 2);
    assert_eq!(leased(claim(&b, Some(0), 2, LEASE, 0)).floor_ms, until + 1);
}

/// A clean stop frees the id at once, its fence lowered to the last number
/// made; a release by someone who no longer holds the id changes nothing.
fn a_released_id_is_free_at_once<B: Backend>() {
    let db = B::new();
    let (a, b) = (db.open(), db.open());
    let now = now_ms();
    assert_eq!(leased(claim(&a, None, 1, LONG, now + 30_000)).node_id, 0);
    a.release_node(0, 2, now).expect("a stranger's release");
    assert!(matches!(
        claim(&b, Some(0), 2, LONG, now),
        Claimed::Held { .. }
    ));
    a.release_node(0, 1, now + 10).expect("release");
    let next = leased(claim(&b, None, 2, LONG, now + 20));
    assert_eq!((next.node_id, next.floor_ms), (0, now + 10));
    assert_eq!(a.renew_node(0, 1, LONG, now).expect("renew"), None);
}

/// A server whose clock runs an hour ahead asks for limits an hour ahead:
/// held to two leases past the database's clock, in what is recorded and
/// in what is granted, so that the next holder of the id does not inherit
/// a fence an hour in the future.
fn a_limit_far_ahead_of_the_stores_clock_is_held_to_two_leases<B: Backend>() {
    let db = B::new();
    let (a, b) = (db.open(), db.open());
    let ahead = now_ms() + 3_600_000;
    let lease = leased(claim(&a, None, 1, SHORT, ahead));
    let most = || now_ms() + 600 + SLACK_MS;
    assert!(lease.until_ms <= most(), "claimed {}", lease.until_ms);
    let granted = a
        .renew_node(0, 1, SHORT, ahead)
        .expect("renew")
        .expect("held");
    assert!(granted <= most(), "granted {granted}");
    std::thread::sleep(SHORT * 2);
    let next = leased(claim(&b, Some(0), 2, SHORT, now_ms()));
    assert!(
        next.floor_ms <= now_ms() + SLACK_MS,
        "inherited a fence at {}",
        next.floor_ms
    );
    // And never below what was granted: the successor's numbers start above.
    assert!(next.floor_ms >= lease.until_ms.max(granted));
}

/// A fence already beyond the cap (left by a server from before it) is
/// kept: the next holder starts above it, and its renewals grant it, never
/// less (which would stop its numbers, made above the fence, until the
/// database's clock caught up).
fn a_fence_beyond_the_cap_is_kept_and_granted<B: Backend>() {
    let db = B::new();
    let fence = now_ms() + 3_600_000;
    db.seed_fence(0, fence);
    let a = db.open();
    let lease = leased(claim(&a, Some(0), 1, SHORT, now_ms()));
    assert_eq!((lease.floor_ms, lease.until_ms), (fence, fence + 300));
    let granted = a.renew_node(0, 1, SHORT, now_ms() + 300).expect("renew");
    assert_eq!(granted, Some(fence + 300));
}

fn when_every_id_is_held_none_is_given<B: Backend>() {
    let db = B::new();
    let a = db.open();
    let claim_of = |holder| NodeClaim {
        want: None,
        max_id: 1,
        holder,
        info: "x",
        lease: LONG,
        until_ms: now_ms(),
    };
    for (holder, id) in [(1, 0), (2, 1)] {
        assert_eq!(leased(a.claim_node(&claim_of(holder)).unwrap()).node_id, id);
    }
    assert_eq!(a.claim_node(&claim_of(3)).unwrap(), Claimed::AllHeld);
}

/// Servers starting together, each with its own connection: every one gets
/// an id of its own (MySQL picks deadlock victims among them, which run
/// again).
fn servers_claiming_at_once_get_distinct_ids<B: Backend>() {
    let db = B::new();
    let stores: Vec<Arc<B::Store>> = (0..6).map(|_| Arc::new(db.open())).collect();
    let claims: Vec<_> = stores
        .iter()
        .enumerate()
        .map(|(i, store)| {
            let store = store.clone();
            std::thread::spawn(move || {
                leased(claim(&*store, None, 100 + i as u64, LONG, now_ms())).node_id
            })
        })
        .collect();
    let mut ids: Vec<u16> = claims.into_iter().map(|c| c.join().unwrap()).collect();
    ids.sort_unstable();
    assert_eq!(ids, [0, 1, 2, 3, 4, 5]);
}

per_backend!(
    two_servers_lease_different_ids_and_a_live_one_is_not_taken,
    a_holder_claiming_again_keeps_its_id,
    a_lease_that_ran_out_is_taken_over_above_its_fence,
    renewals_keep_a_lease_and_raise_its_fence,
    a_released_id_is_free_at_once,
    when_every_id_is_held_none_is_given,
    servers_claiming_at_once_get_distinct_ids,
    a_limit_far_ahead_of_the_stores_clock_is_held_to_two_leases,
    a_fence_beyond_the_cap_is_kept_and_granted,
);
