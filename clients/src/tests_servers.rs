//! Client request ids, and a client of several servers, against scripted
//! fakes over real TCP: which BUY carries which id, which request is sent
//! again to the next server after a connection failure, and which is not.

use std::net::{SocketAddr, TcpListener};
use std::sync::mpsc;
use std::time::Duration;

use seckill_proto::{Reply, Request, RequestId, Status, NO_TOKEN};

use crate::fake_server::{serve, FakeConn};
use crate::{random_request_id, Client, ErrorKind, Pipeline, Purchase};

/// An address nothing listens on: connecting to it is refused.
fn refused() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

/// The client request id of a BUY, and `None` for any other request.
fn id_of(request: &Request) -> Option<RequestId> {
    match request {
        Request::Buy { request_id, .. } => *request_id,
        _ => None,
    }
}

/// A fake that greets, then reports each request to `seen` and answers it
/// with `answer`, until the client closes.
fn recording(
    seen: mpsc::Sender<Request>,
    answer: fn(&Request) -> Reply,
) -> impl FnOnce(&mut FakeConn) + Send + 'static {
    move |conn| {
        conn.greet(false);
        while let Some(received) = conn.next() {
            let _ = seen.send(received.request.clone());
            conn.reply(&received, &answer(&received.request));
        }
    }
}

/// A fake that greets, takes one request, reports it, and hangs up without
/// answering: the request may or may not have been done.
fn hangs_up(seen: mpsc::Sender<Request>) -> impl FnOnce(&mut FakeConn) + Send + 'static {
    move |conn| {
        conn.greet(false);
        if let Some(received) = conn.next() {
            let _ = seen.send(received.request);
        }
    }
}

fn bought(_: &Request) -> Reply {
    Reply::Bought { order_no: 42 }
}

fn pong(request: &Request) -> Reply {
    match request {
        Request::Ping => Reply::Pong,
        Request::Buy { .. } => Reply::Bought { order_no: 42 },
        Request::Restock { .. } => Reply::error(Status::Busy, "nothing done"),
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn each_buy_gets_a_fresh_request_id_unless_given_one_or_told_not_to() {
    let (seen, got) = mpsc::channel();
    let (addr, server) = serve(recording(seen, bought));
    let mut c = Client::connect(addr).unwrap();
    c.buy(1, 7).unwrap();
    c.buy(1, 7).unwrap();
    c.buy_with_token(1, 7, 77).unwrap();
    let mine = random_request_id().unwrap();
    c.buy_with_request_id(1, 7, mine).unwrap();
    c.buy_with_token_and_request_id(1, 7, 78, mine).unwrap();
    let mut p = Pipeline::new();
    p.buy(1, 7).buy_with_request_id(1, 7, mine);
    c.execute(&p).unwrap();
    drop(c);
    server.join().unwrap();

    let requests: Vec<Request> = got.iter().collect();
    let ids: Vec<Option<RequestId>> = requests.iter().map(id_of).collect();
    let (a, b, t) = (ids[0].unwrap(), ids[1].unwrap(), ids[2].unwrap());
    assert!(a != b && b != t && a != t, "{ids:?}");
    assert_eq!(ids[3..], [Some(mine), Some(mine), None, Some(mine)]);
    assert!(matches!(
        requests[4],
        Request::Buy {
            token: 78,
            user_id: 1,
            goods_id: 7,
            ..
        }
    ));

    let (seen, got) = mpsc::channel();
    let (addr, server) = serve(recording(seen, bought));
    let mut c = Client::builder(addr).request_ids(false).connect().unwrap();
    c.buy(1, 7).unwrap();
    c.buy_with_token(1, 7, 77).unwrap();
    // An id given is sent, whatever the default.
    c.buy_with_request_id(1, 7, mine).unwrap();
    drop(c);
    server.join().unwrap();
    let ids: Vec<Option<RequestId>> = got.iter().map(|r| id_of(&r)).collect();
    assert_eq!(ids, [None, None, Some(mine)]);
}

#[test]
fn a_buy_whose_connection_fails_goes_to_the_next_server_with_the_same_id() {
    let (seen, got) = mpsc::channel();
    let (a, server_a) = serve(hangs_up(seen.clone()));
    let (b, server_b) = serve(recording(seen, bought));
    let mut c = Client::builder(a).addrs([b]).connect().unwrap();
    assert_eq!(c.peer_addr().unwrap(), a);
    assert_eq!(c.server_count(), 2);

    assert_eq!(c.buy(1, 7).unwrap(), Purchase::Ordered(42));
    assert_eq!(c.peer_addr().unwrap(), b);
    drop(c);
    server_a.join().unwrap();
    server_b.join().unwrap();

    let sent: Vec<Request> = got.iter().collect();
    assert_eq!(sent.len(), 2, "{sent:?}");
    // The retry is the same purchase, marked a repeat (PROTOCOL.md, 9).
    let (first, again) = (id_of(&sent[0]).unwrap(), id_of(&sent[1]).unwrap());
    assert!(!first.is_repeat());
    assert_eq!(again, first.repeat(), "{sent:?}");
    let unmarked = |r: &Request| match r.clone() {
        Request::Buy {
            user_id,
            goods_id,
            token,
            request_id,
        } => Request::Buy {
            user_id,
            goods_id,
            token,
            request_id: request_id.and_then(RequestId::purchase),
        },
        other => other,
    };
    assert_eq!(
        unmarked(&sent[0]),
        unmarked(&sent[1]),
        "the very same BUY otherwise"
    );
}

/// A server that refuses a connection as it accepts it, with the
/// connection-level `busy` frame.
fn full_up(conn: &mut FakeConn) {
    conn.give_up(Status::Busy, "too many connections");
}

/// A BUY lost with its connection, sent on to a server that is full up
/// (`busy` at connect): the call fails as closed (it may have bought), not
/// with that `busy`, which would say that nothing was done and have the
/// caller try again as a new purchase. A server full up at connect is
/// passed over, as one that cannot be reached is.
#[test]
fn a_buy_in_doubt_is_not_reported_busy_by_the_next_server() {
    let (seen, got) = mpsc::channel();
    let (a, server_a) = serve(hangs_up(seen));
    let (b, server_b) = serve(full_up);
    let mut c = Client::builder(a).addrs([b]).connect().unwrap();
    let err = c.buy(1, 7).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Closed, "{err:?}");
    assert!(!err.is_retryable());
    server_a.join().unwrap();
    server_b.join().unwrap();
    assert_eq!(got.iter().count(), 1, "the BUY reached a");

    let (full, server_full) = serve(full_up);
    let (seen, _got) = mpsc::channel();
    let (room, server_room) = serve(recording(seen, bought));
    let mut c = Client::builder(full).addrs([room]).connect().unwrap();
    assert_eq!(c.peer_addr().unwrap(), room);
    assert_eq!(c.buy(1, 7).unwrap(), Purchase::Ordered(42));
    drop(c);
    server_full.join().unwrap();
    server_room.join().unwrap();
}

#[test]
fn a_request_that_could_act_twice_is_not_sent_again_but_the_next_call_moves_on() {
    for unsafe_request in [
        Request::Buy {
            user_id: 1,
            goods_id: 7,
            token: NO_TOKEN,
            request_id: None,
        },
        Request::Restock {
            goods_id: 7,
            amount: 5,
        },
    ] {
        let (seen, got) = mpsc::channel();
        let (a, server_a) = serve(hangs_up(seen.clone()));
        let (b, server_b) = serve(recording(seen, pong));
        let mut c = Client::builder(a).addrs([b]).connect().unwrap();
        let err = c.request(&unsafe_request).unwrap_err();
        assert!(err.is_closed(), "{err:?}");
        assert!(!c.is_open());
        // Not lost for good: the next call is served by the next server.
        c.ping().unwrap();
        assert_eq!(c.peer_addr().unwrap(), b);
        drop(c);
        server_a.join().unwrap();
        server_b.join().unwrap();
        let sent: Vec<Request> = got.iter().collect();
        assert_eq!(sent, [unsafe_request, Request::Ping]);
    }
}

#[test]
fn a_batch_is_sent_again_only_if_every_request_of_it_may_be() {
    let (seen, got) = mpsc::channel();
    let (a, server_a) = serve(hangs_up(seen.clone()));
    let (b, server_b) = serve(recording(seen, pong));
    let mut c = Client::builder(a).addrs([b]).connect().unwrap();
    let mut p = Pipeline::new();
    p.ping()
        .buy_with_request_id(1, 7, RequestId::new(5).unwrap());
    let replies = c.execute(&p).unwrap();
    assert_eq!(replies, [Reply::Pong, Reply::Bought { order_no: 42 }]);
    p.restock(7, 1);
    assert!(c.execute(&p).is_ok(), "b is up: nothing to send again");
    drop(c);
    server_a.join().unwrap();
    server_b.join().unwrap();
    // a took the first request and hung up; b had the whole batch again.
    assert_eq!(got.iter().count(), 1 + 2 + 3);

    // One RESTOCK in it, and the batch is not sent again.
    let (seen, got) = mpsc::channel();
    let (a, server_a) = serve(hangs_up(seen.clone()));
    let (b, server_b) = serve(recording(seen, pong));
    let mut c = Client::builder(a).addrs([b]).connect().unwrap();
    let mut p = Pipeline::new();
    p.ping().restock(7, 1);
    assert!(c.execute(&p).unwrap_err().is_closed());
    c.ping().unwrap();
    drop(c);
    server_a.join().unwrap();
    server_b.join().unwrap();
    assert_eq!(
        got.iter().collect::<Vec<_>>(),
        [Request::Ping, Request::Ping]
    );
}

#[test]
fn servers_that_refuse_are_passed_over_at_connect_and_in_a_call() {
    let (seen, _got) = mpsc::channel();
    let (up, server) = serve(recording(seen, pong));
    let down = refused();
    let mut c = Client::builder(down).addrs([up]).connect().unwrap();
    assert_eq!(c.peer_addr().unwrap(), up);
    c.ping().unwrap();
    drop(c);
    server.join().unwrap();

    // Every server down: connect fails with the last one's error.
    let (first, last) = (refused(), refused());
    let err = Client::builder(first).addrs([last]).connect().unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Io);
    assert!(err.to_string().contains(&last.to_string()), "{err}");

    // Up at connect, then every server gone: one pass over the list, and
    // the BUY's outcome unknown (closed), with the last server's error.
    let (seen, _got) = mpsc::channel();
    let (a, server_a) = serve(hangs_up(seen));
    let gone = refused();
    let mut c = Client::builder(a).addrs([gone]).connect().unwrap();
    let err = c.buy(1, 7).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Closed, "{err:?}");
    assert!(err.to_string().contains(&gone.to_string()), "{err}");
    server_a.join().unwrap();
}

#[test]
fn a_timeout_is_returned_and_the_next_call_goes_to_the_next_server() {
    let (seen, got) = mpsc::channel();
    let (slow, server_slow) = serve(|conn| {
        conn.greet(false);
        // Take the BUY, never answer; wait for the client to give up.
        conn.take(1);
        conn.next();
    });
    let (b, server_b) = serve(recording(seen, pong));
    let mut c = Client::builder(slow)
        .addrs([b])
        .read_timeout(Duration::from_millis(200))
        .connect()
        .unwrap();
    let err = c.buy(1, 7).unwrap_err();
    assert!(err.is_timeout(), "{err:?}");
    c.ping().unwrap();
    assert_eq!(c.peer_addr().unwrap(), b);
    drop(c);
    server_slow.join().unwrap();
    server_b.join().unwrap();
    // The BUY was not sent to b: the caller's deadline had passed.
    assert_eq!(got.iter().collect::<Vec<_>>(), [Request::Ping]);
}

#[test]
fn a_wrong_token_stops_at_the_first_server_that_says_so() {
    let (a, server_a) = serve(|conn| {
        let hello = conn.next().unwrap();
        conn.reply(&hello, &Reply::error(Status::Unauthorized, "wrong token"));
    });
    let never = refused();
    let err = Client::builder(a)
        .addrs([never])
        .token("wrong")
        .connect()
        .unwrap_err();
    assert!(err.is_unauthorized(), "{err:?}");
    server_a.join().unwrap();
}
