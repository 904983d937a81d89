use std::time::{Duration, Instant};

use seckill_proto::Request;

use crate::harness::{on_sale, stored_orders, Got, Raw, Server};

/// SIGTERM with BUYs in flight: each is answered before the connection
/// closes, the process exits cleanly, and every order told "ok" is stored.
#[test]
fn sigterm_finishes_in_flight_work_and_exits() {
    sigterm_answers_every_buy_read(&[]);
}

/// The same with at most 8 BUYs of the connection in flight and 8 taken a
/// turn: at SIGTERM most of the 200 are not in flight yet but whole in the
/// connection's read buffer, and are answered too.
#[test]
fn sigterm_answers_the_requests_read_and_not_yet_started() {
    sigterm_answers_every_buy_read(&["--max-inflight", "8", "--requests-per-turn", "8"]);
}

fn sigterm_answers_every_buy_read(flags: &[&str]) {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("s.db");
    let server = Server::start(&data, flags);
    let goods = server
        .admin()
        .add_goods(on_sale("bike", 10_000))
        .unwrap()
        .id;

    // All 200 BUYs in one write, which the server takes in one read (16 KiB
    // chunks), so that once the first is answered every one of them is in
    // the server: in flight or whole in its read buffer. Both are answered
    // at shutdown; bytes still in the socket would not be.
    let mut raw = Raw::greeted(server.addr);
    let mut burst = bytes::BytesMut::new();
    for user in 0..200u64 {
        Request::Buy {
            user_id: user,
            goods_id: goods,
            token: 0,
            request_id: None,
        }
        .encode(100 + user, &mut burst);
    }
    assert!(burst.len() <= 16 * 1024, "one read chunk: {}", burst.len());
    raw.send(&burst);
    let first = raw.next();
    let status = server.terminate();
    assert!(status.success(), "exit status {status:?}");

    let mut frames = vec![first];
    frames.extend(raw.until_closed());
    let mut ok = Vec::new();
    for f in &frames {
        match f {
            Got::Frame {
                id,
                reply: seckill_proto::Reply::Bought { order_no },
                ..
            } => ok.push((*id - 100, *order_no)),
            other => panic!("in-flight BUY answered {other:?}"),
        }
    }
    assert_eq!(ok.len(), 200, "every in-flight BUY was answered");
    let stored = stored_orders(&data);
    for (user, no) in ok {
        assert!(stored.contains(&(no, user, goods)), "order {no} lost");
    }
}

#[test]
fn an_idle_connection_is_closed() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("i.db"), &["--idle-timeout", "1s"]);
    let mut idle = Raw::greeted(server.addr);
    let mut busy = Raw::greeted(server.addr);
    let start = Instant::now();
    // The busy connection pings every 200 ms and stays open.
    for i in 0..10 {
        busy.request(10 + i, &Request::Ping);
        assert!(matches!(busy.next(), Got::Frame { .. }));
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(idle.next(), Got::Closed);
    let waited = start.elapsed();
    assert!(
        waited >= Duration::from_millis(900),
        "closed after {waited:?}"
    );
}
