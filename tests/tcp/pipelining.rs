use std::collections::HashMap;

use bytes::BytesMut;
use seckill_proto::{Reply, Request, Status};

use crate::harness::{on_sale, reply_to, Got, Raw, Server};

/// 1000 requests of four kinds written back to back on one connection,
/// under ids in no particular order: every reply carries the id of a request
/// sent, each id is answered once, and each answer fits its request.
#[test]
fn a_thousand_pipelined_requests_are_answered_by_id() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("p.db"), &[]);
    let goods = server.admin().add_goods(on_sale("pen", 100)).unwrap();
    let unknown = goods.id + 1000;

    let mut sent: HashMap<u64, Request> = HashMap::new();
    let mut out = BytesMut::new();
    for i in 0..1000u64 {
        // Spread ids over the whole u64 range, out of order.
        let id = i.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        let request = match i % 5 {
            0 => Request::Ping,
            1 => Request::GetGoods { goods_id: goods.id },
            2 => Request::GetGoods { goods_id: unknown },
            3 => Request::Buy {
                user_id: i,
                goods_id: goods.id,
                token: 0,
                request_id: None,
            },
            _ => Request::ListGoods,
        };
        request.encode(id, &mut out);
        assert!(sent.insert(id, request).is_none());
    }

    let mut raw = Raw::greeted(server.addr);
    // Write from another thread: the server reads only so far ahead of the
    // replies it has sent, so this side must read while it writes.
    let mut writer = raw.stream.try_clone().unwrap();
    let sending = std::thread::spawn(move || {
        use std::io::Write;
        writer.write_all(&out).unwrap();
    });

    let mut bought = Vec::new();
    for _ in 0..sent.len() {
        let Got::Frame { opcode, id, reply } = raw.next() else {
            panic!("connection closed with requests unanswered");
        };
        let request = sent
            .remove(&id)
            .unwrap_or_else(|| panic!("reply to id {id:#x}, never sent or answered twice"));
        assert_eq!(
            opcode,
            reply_to(request.opcode()),
            "opcode of reply {id:#x}"
        );
        match (&request, reply) {
            (Request::Ping, Reply::Pong) | (Request::ListGoods, Reply::GoodsList(_)) => {}
            (Request::GetGoods { goods_id }, Reply::Goods(g)) => assert_eq!(g.id, *goods_id),
            (Request::GetGoods { goods_id }, Reply::Error { status, .. }) => {
                assert_eq!(*goods_id, unknown);
                assert_eq!(status, Status::UnknownGoods);
            }
            (Request::Buy { user_id, .. }, Reply::Bought { order_no }) => {
                bought.push((*user_id, order_no))
            }
            (
                Request::Buy { .. },
                Reply::Error {
                    status: Status::SoldOut,
                    ..
                },
            ) => {}
            (request, reply) => panic!("{request:?} answered {reply:?}"),
        }
    }
    sending.join().unwrap();
    assert!(sent.is_empty());
    assert_eq!(bought.len(), 100, "200 buyers for 100 units");

    // Each BUY's reply went to its own request: the order number a user was
    // given is the one the server holds for that user.
    let mut client = server.client();
    for (user, order_no) in bought {
        let order = client.order_status(user, goods.id).unwrap().unwrap();
        assert_eq!(order.order_no, order_no, "user {user}");
    }
}

/// Many connections each write a burst of requests at once to a server
/// that takes one request per connection per turn (`--requests-per-turn
/// 1`) on one reactor: every connection has more than its share, turn after
/// turn, so each goes through the reactor's backlog again and again (its
/// events noted while it waits in the line, its share of the turn used up
/// exactly). Every request must be answered; a connection left with
/// buffered requests and no place in the line would hang until the read
/// timeout.
#[test]
fn bursts_far_beyond_the_turn_budget_are_all_answered() {
    const CONNECTIONS: usize = 40;
    const BURST: u64 = 300;
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(
        &dir.path().join("burst.db"),
        &["--requests-per-turn", "1", "--reactors", "1"],
    );
    let goods = server.admin().add_goods(on_sale("pen", 5)).unwrap();
    let clients: Vec<_> = (0..CONNECTIONS)
        .map(|c| {
            let addr = server.addr;
            std::thread::spawn(move || {
                let mut out = BytesMut::new();
                for i in 0..BURST {
                    let request = if i % 2 == 0 {
                        Request::Ping
                    } else {
                        Request::GetGoods { goods_id: goods.id }
                    };
                    request.encode(i + 1, &mut out);
                }
                let mut raw = Raw::greeted(addr);
                let mut writer = raw.stream.try_clone().unwrap();
                let sending = std::thread::spawn(move || {
                    use std::io::Write;
                    writer.write_all(&out).unwrap();
                });
                let mut seen = vec![false; BURST as usize + 1];
                for _ in 0..BURST {
                    match raw.next() {
                        Got::Frame { id, reply, .. } => {
                            assert!(
                                matches!(reply, Reply::Pong | Reply::Goods(_)),
                                "connection {c}: {reply:?}"
                            );
                            let slot = &mut seen[id as usize];
                            assert!(!*slot, "connection {c}: id {id} answered twice");
                            *slot = true;
                        }
                        Got::Closed => panic!("connection {c} closed with requests unanswered"),
                    }
                }
                sending.join().unwrap();
            })
        })
        .collect();
    for client in clients {
        client.join().expect("a client saw every reply");
    }
}
