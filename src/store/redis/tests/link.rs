//! The link: a connection that breaks, a Redis that is not there.

use super::*;

#[test]
fn a_dropped_connection_fails_one_call_and_is_replaced() {
    let stock = open(AckMode::Durable);
    stock.load_next(1, 5, &[]).unwrap();
    let id: i64 = stock
        .call("client id", |con| {
            ::redis::cmd("CLIENT").arg("ID").query(con)
        })
        .unwrap();
    let mut other = stock.target.connect().unwrap();
    ::redis::cmd("CLIENT")
        .arg("KILL")
        .arg("ID")
        .arg(id)
        .query::<()>(&mut other)
        .unwrap();
    // The script was sent and the link broke: whether it ran is not
    // known (here it did not: Redis had closed the connection).
    let failed = stock.reserve(1, &rules(1), &buyers(&[(1, 101)]));
    assert!(
        matches!(failed, Err(StoreError::Indeterminate(_))),
        "{failed:?}"
    );
    assert!(stock.outage.is_down());
    let r = stock.reserve(1, &rules(1), &buyers(&[(1, 101)])).unwrap();
    assert_eq!(r.decisions, vec![Reservation::Reserved]);
    assert!(!stock.outage.is_down());
}

#[test]
fn an_unreachable_redis_is_unavailable() {
    let refused = RedisStock::open("redis://127.0.0.1:1", "x:", AckMode::Durable);
    assert!(matches!(refused, Err(StoreError::Unavailable(_))));
    let braces = RedisStock::open("redis://127.0.0.1:1", "x{y}:", AckMode::Durable);
    assert!(matches!(braces, Err(StoreError::Unavailable(_))));
}

/// A script this Redis has never seen (as after a restart, a failover or
/// SCRIPT FLUSH) answers NOSCRIPT: it is loaded and the call sent once
/// more, and runs once.
#[test]
fn a_script_redis_does_not_know_is_loaded_and_runs_once() {
    let stock = open(AckMode::Durable);
    let key = format!("{}noscript", stock.prefix);
    // Code of its own (the key is in it), so no Redis has it loaded.
    let script = ::redis::Script::new(&format!(
        "-- {key}\nreturn redis.call('INCR', KEYS[1]) + tonumber(ARGV[1])"
    ));
    let mut inv = crate::store::redis::scripts::Invocation::new(&script, [key.as_str()]);
    inv.arg(100);
    let first: i64 = stock.call("unknown script", |con| inv.invoke(con)).unwrap();
    assert_eq!(first, 101, "run once, not twice");
    let again: i64 = stock.call("known script", |con| inv.invoke(con)).unwrap();
    assert_eq!(again, 102);
}
