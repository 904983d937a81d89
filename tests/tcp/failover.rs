//! A client of several real servers on one Redis + MySQL pair: it moves to
//! the next server when one is killed, and a purchase tried again through
//! another server is the same purchase.

use std::time::Duration;

use seckill_client::{random_request_id, Client, Purchase, RequestId, Result};

use crate::harness::{on_sale, while_busy, Backends, Server};

/// A server on `stores` with a node id of its own (order numbers must not
/// collide between servers) and a data file of its own in `dir`.
fn server_on(stores: &Backends, dir: &std::path::Path, node: u16) -> Server {
    let mut flags = stores.args("durable");
    flags.extend(["--node-id".into(), node.to_string()]);
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    Server::start(&dir.join(format!("node{node}.db")), &flags)
}

/// BUY `request_id` until an answer other than `busy` (`while_busy`). A
/// server that started on the stores reconciles them, which puts the goods
/// of the servers already running in doubt for a moment: they answer
/// `busy` (nothing done) until they have reconciled in turn.
fn buy(client: &mut Client, user: u64, goods: u64, request_id: RequestId) -> Result<Purchase> {
    while_busy(|| client.buy_with_request_id(user, goods, request_id))
}

#[test]
fn a_client_of_two_servers_keeps_buying_when_one_is_killed() {
    let stores = Backends::new();
    let dir = tempfile::tempdir().unwrap();
    let a = server_on(&stores, dir.path(), 1);
    let goods = a.admin().add_goods(on_sale("kettle", 10)).unwrap().id;
    // B loads the catalog when it starts, so it knows the goods.
    let b = server_on(&stores, dir.path(), 2);
    let (a_addr, b_addr) = (a.addr, b.addr);
    let connect = || {
        Client::builder(a_addr)
            .addrs([b_addr])
            .read_timeout(Duration::from_secs(30))
            .connect()
            .expect("connect")
    };

    let mut client = connect();
    assert_eq!(client.peer_addr().unwrap(), a_addr);
    let first_id = random_request_id().unwrap();
    let Purchase::Ordered(first) = buy(&mut client, 1, goods, first_id).unwrap() else {
        panic!("user 1 bought nothing")
    };

    a.kill();
    // The connection to A is dead: the BUY goes to B, in the same call.
    let second_id = random_request_id().unwrap();
    let Purchase::Ordered(second) = buy(&mut client, 2, goods, second_id).unwrap() else {
        panic!("user 2 bought nothing after A died")
    };
    assert_eq!(client.peer_addr().unwrap(), b_addr);
    // User 1's purchase tried again, through B: its order, not a second
    // one. (The limit is 1, so this holds whether B replays the id's first
    // answer or finds the user's order.)
    match buy(&mut client, 1, goods, first_id).unwrap() {
        Purchase::Ordered(no) | Purchase::AlreadyBought(no) => assert_eq!(no, first),
        other => panic!("the retry through B answered {other:?}"),
    }

    // A client made while A is down starts on B.
    let mut late = connect();
    assert_eq!(late.peer_addr().unwrap(), b_addr);
    late.ping().unwrap();

    let mut live: Vec<(u64, u64, u64)> = stores
        .orders()
        .into_iter()
        .filter(|&(.., state)| state != 2)
        .map(|(no, user, goods, _)| (no, user, goods))
        .collect();
    live.sort_unstable();
    let mut expected = vec![(first, 1, goods), (second, 2, goods)];
    expected.sort_unstable();
    assert_eq!(live, expected);
}
