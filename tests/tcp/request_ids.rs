//! BUY with a client request id, in raw bytes. The server decodes the id
//! and hands it to the sale; a BUY is answered the same with or without one
//! (the stock store does not replay an id's first answer yet: that is
//! tested with the store), and an id the protocol forbids is a body error.

use seckill_proto::{Reply, Request, RequestId, Status, NO_TOKEN};

use crate::harness::{on_sale, stored_orders, Backends, Got, Raw, Server};

const BUY_REPLY: u8 = 0xa0;

fn buy(user_id: u64, goods_id: u64, request_id: Option<RequestId>) -> Request {
    Request::Buy {
        user_id,
        goods_id,
        token: NO_TOKEN,
        request_id,
    }
}

/// The reply to the request of id `id`, which must be a BUY's.
fn answer(raw: &mut Raw, id: u64) -> Reply {
    match raw.next() {
        Got::Frame {
            opcode: BUY_REPLY,
            id: got,
            reply,
        } if got == id => reply,
        other => panic!("expected the reply to BUY {id}, got {other:?}"),
    }
}

/// A BUY frame of request id `id` around a body built by hand.
fn buy_frame(id: u64, body: &[u8]) -> Vec<u8> {
    let mut f = (9 + body.len() as u32).to_be_bytes().to_vec();
    f.push(0x20);
    f.extend_from_slice(&id.to_be_bytes());
    f.extend_from_slice(body);
    f
}

#[test]
fn a_buy_with_a_request_id_is_answered_as_one_without() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("ids.db");
    let server = Server::start(&data, &[]);
    let goods = server.admin().add_goods(on_sale("lamp", 2)).unwrap().id;
    let first = RequestId::new(0x0123_4567_89ab_cdef_fedc_ba98_7654_3210);
    let mut raw = Raw::greeted(server.addr);

    raw.request(10, &buy(1, goods, first));
    let Reply::Bought { order_no: ordered } = answer(&mut raw, 10) else {
        panic!("the first BUY with an id made no order")
    };
    // The same purchase again: the order it made, whether the server
    // replays the first answer (`ok`) or finds the user's order
    // (`already_bought`, the limit being 1); never a second unit.
    raw.request(11, &buy(1, goods, first));
    match answer(&mut raw, 11) {
        Reply::Bought { order_no } | Reply::AlreadyBought { order_no } => {
            assert_eq!(order_no, ordered)
        }
        other => panic!("the repeat was answered {other:?}"),
    }
    // Without an id, as ever.
    raw.request(12, &buy(2, goods, None));
    let Reply::Bought { order_no: second } = answer(&mut raw, 12) else {
        panic!("a BUY without an id made no order")
    };
    raw.request(13, &buy(3, goods, RequestId::new(2)));
    assert!(matches!(
        answer(&mut raw, 13),
        Reply::Error {
            status: Status::SoldOut,
            ..
        }
    ));

    // An id of 0 and a body between the two lengths are body errors: each
    // answered under its own id, and the connection goes on.
    let mut head = Vec::new();
    for field in [4u64, goods, NO_TOKEN] {
        head.extend_from_slice(&field.to_be_bytes());
    }
    let mut zero = head.clone();
    zero.extend_from_slice(&[0; 16]);
    let mut between = head.clone();
    between.extend_from_slice(&[1; 8]);
    for (id, body) in [(14, zero), (15, between)] {
        raw.send(&buy_frame(id, &body));
        match answer(&mut raw, id) {
            Reply::Error { status, .. } => assert_eq!(status, Status::BadRequest),
            other => panic!("BUY {id} was answered {other:?}"),
        }
    }
    raw.request(16, &Request::Ping);
    assert!(matches!(
        raw.next(),
        Got::Frame {
            id: 16,
            reply: Reply::Pong,
            ..
        }
    ));

    let mut stored = stored_orders(&data);
    stored.sort_unstable();
    let mut expected = vec![(ordered, 1, goods), (second, 2, goods)];
    expected.sort_unstable();
    assert_eq!(stored, expected);
}

/// A BUY's request id outlives a kill -9 and a restart where the stock is
/// in memory (it starts empty; the order store kept the id with the
/// order). With a purchase limit of 3, a repeat that had forgotten its id
/// would buy a second unit. `start` starts the server on the same stores
/// each time; `orders_of_7` reads user 7's stored order numbers.
fn a_request_id_gets_its_order_after_a_restart(
    start: impl Fn() -> Server,
    orders_of_7: impl Fn() -> Vec<u64>,
) {
    use seckill_client::Purchase;
    use seckill_proto::SaleRules;
    let server = start();
    let mut lamp = on_sale("lamp", 10);
    lamp.rules = SaleRules {
        per_user_limit: 3,
        ..SaleRules::default()
    };
    let goods = server.admin().add_goods(lamp).unwrap().id;
    let id = RequestId::new(0x0123_4567_89ab_cdef_fedc_ba98_7654_3211).unwrap();
    let Purchase::Ordered(first) = server.client().buy_with_request_id(7, goods, id).unwrap()
    else {
        panic!("the first BUY made no order")
    };
    server.kill();
    let server = start();
    let again = server.client().buy_with_request_id(7, goods, id).unwrap();
    assert_eq!(again, Purchase::Ordered(first));
    // Another id is another purchase, as ever.
    let other = RequestId::new(0x0123_4567_89ab_cdef_fedc_ba98_7654_3212).unwrap();
    let Purchase::Ordered(second) = server
        .client()
        .buy_with_request_id(7, goods, other)
        .unwrap()
    else {
        panic!("a second purchase made no order")
    };
    assert_ne!(second, first);
    drop(server);
    let mine = orders_of_7();
    assert_eq!(mine.len(), 2, "{mine:?}");
}

/// The embedded stores: the SQLite file keeps the ids.
#[test]
fn a_request_id_gets_its_order_after_a_restart_of_the_embedded_server() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("ids.db");
    a_request_id_gets_its_order_after_a_restart(
        || Server::start(&data, &[]),
        || {
            stored_orders(&data)
                .into_iter()
                .filter(|o| o.1 == 7)
                .map(|o| o.0)
                .collect()
        },
    );
}

/// Stock in memory, orders in MySQL (no --redis): MySQL keeps the ids.
#[test]
fn a_request_id_gets_its_order_after_a_restart_with_stock_in_memory_and_mysql() {
    let dir = tempfile::tempdir().unwrap();
    let stores = Backends::new();
    let url = stores.mysql_url();
    a_request_id_gets_its_order_after_a_restart(
        || Server::start(&dir.path().join("unused.db"), &["--mysql", &url]),
        || {
            stores
                .orders()
                .into_iter()
                .filter(|o| o.1 == 7)
                .map(|o| o.0)
                .collect()
        },
    );
}
