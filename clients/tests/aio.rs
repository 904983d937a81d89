//! The async client against the real `seckill-server` binary (embedded
//! store), and against a silent fake for its timeouts.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::{Buf, BytesMut};
use seckill_client::aio::Client;
use seckill_client::{ErrorKind, NewGoods, Pipeline, Purchase, Reply, SaleAction, SaleRules};
use seckill_proto::{Frame, Opcode, Request, Status, MAX_REQUEST_FRAME, VERSION};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use common::server::{Server, TOKEN};

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_millis() as u64
}

fn goods(name: &str, stock: u32) -> NewGoods {
    NewGoods {
        name: name.into(),
        price_cents: 1999,
        stock,
        start_ms: now_ms() - 1000,
        end_ms: now_ms() + 3_600_000,
        rules: SaleRules::default(),
        buckets: 1,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_tasks_share_one_connection_and_never_oversell() {
    let server = Server::start();
    let admin = Client::builder(&server.addr)
        .token(TOKEN)
        .connect()
        .await
        .unwrap();
    assert!(admin.is_admin().await.unwrap());
    let phone = admin.add_goods(goods("Phone", 5)).await.unwrap();

    let buyers = Client::connect(&server.addr).await.unwrap();
    assert!(!buyers.is_admin().await.unwrap());
    let mut tasks = Vec::new();
    for user_id in 1..=40u64 {
        let client = buyers.clone();
        tasks.push(tokio::spawn(async move {
            (user_id, client.buy(user_id, phone.id).await.unwrap())
        }));
    }
    let mut ordered = Vec::new();
    for task in tasks {
        match task.await.unwrap() {
            (user, Purchase::Ordered(no)) => ordered.push((user, no)),
            (_, Purchase::SoldOut) => {}
            (user, other) => panic!("user {user}: {other:?}"),
        }
    }
    assert_eq!(ordered.len(), 5, "exactly the stock is sold: {ordered:?}");

    // The same user again: already bought, with the same order.
    let (user, no) = ordered[0];
    assert_eq!(
        buyers.buy(user, phone.id).await.unwrap(),
        Purchase::AlreadyBought(no)
    );
    let paid = buyers.pay(user, no).await.unwrap();
    assert_eq!(paid.order().map(|o| o.order_no), Some(no));
    let orders = buyers.list_orders(user).await.unwrap();
    assert_eq!(orders.len(), 1);
    assert_eq!(
        buyers
            .order_status(user, phone.id)
            .await
            .unwrap()
            .map(|o| o.order_no),
        Some(no)
    );
    assert_eq!(buyers.get_goods(phone.id).await.unwrap().remaining, 0);

    // Admin commands on the admin client; refused on the other.
    admin
        .sale_control(phone.id, SaleAction::Pause)
        .await
        .unwrap();
    assert_eq!(buyers.buy(999, phone.id).await.unwrap(), Purchase::Paused);
    let err = buyers.stats().await.unwrap_err();
    assert!(err.is_unauthorized(), "{err}");
    assert!(!admin.stats().await.unwrap().is_empty());
    let drifts = admin.reconcile(Some(phone.id)).await.unwrap();
    assert_eq!(drifts.len(), 1);
}

#[tokio::test]
async fn a_pipeline_gets_its_replies_in_request_order() {
    let server = Server::start();
    let admin = Client::builder(&server.addr)
        .token(TOKEN)
        .connect()
        .await
        .unwrap();
    let lamp = admin.add_goods(goods("Lamp", 3)).await.unwrap();
    let mut p = Pipeline::new();
    p.ping()
        .get_goods(lamp.id)
        .order_status(7, lamp.id)
        .list_goods();
    let replies = admin.execute(&p).await.unwrap();
    assert_eq!(replies.len(), 4);
    assert!(matches!(replies[0], Reply::Pong));
    assert!(matches!(&replies[1], Reply::Goods(g) if g.id == lamp.id));
    assert!(matches!(replies[2], Reply::Error { .. }), "no order yet");
    assert!(matches!(&replies[3], Reply::GoodsList(list) if list.len() == 1));
}

#[tokio::test]
async fn a_wrong_token_is_refused_at_connect() {
    let server = Server::start();
    let err = Client::builder(&server.addr)
        .token("wrong")
        .connect()
        .await
        .unwrap_err();
    assert!(err.is_unauthorized(), "{err}");
}

#[tokio::test]
async fn a_dead_server_of_the_list_is_passed_over() {
    let server = Server::start();
    let dead = free_addr();
    let client = Client::builder(dead.clone())
        .addrs([server.addr.clone()])
        .connect()
        .await
        .unwrap();
    assert_eq!(client.server_count(), 2);
    client.ping().await.unwrap();
    assert!(client.list_goods().await.unwrap().is_empty());
}

#[tokio::test]
async fn it_reconnects_after_the_server_restarts_and_backs_off_while_it_is_down() {
    let server = Server::start();
    let addr = server.addr.clone();
    let client = Client::builder(&addr)
        .token(TOKEN)
        // Long enough that the second call below surely falls within it.
        .backoff(Duration::from_secs(2), Duration::from_secs(4))
        .build()
        .unwrap();
    let lamp = client.add_goods(goods("Lamp", 2)).await.unwrap();
    let data = server.kill();

    // Down: the first call dials and fails, the next fails at once (backoff).
    let err = client.ping().await.unwrap_err();
    assert!(!err.is_timeout(), "refused, not timed out: {err}");
    let started = std::time::Instant::now();
    let err = client.ping().await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Closed, "{err}");
    assert!(err.to_string().contains("dialling again"), "{err}");
    assert!(started.elapsed() < Duration::from_secs(1), "not at once");

    // Back on the same port with the same data: found again after the wait.
    let _server = Server::start_in(data, &addr, &[]);
    tokio::time::sleep(Duration::from_millis(2_100)).await;
    let again = client.get_goods(lamp.id).await.unwrap();
    assert_eq!(again.name, "Lamp");
}

/// A server first in the list that accepts connections and never greets
/// (hung) is passed over within one call: its dial gives up at half the
/// call's timeout, and the call goes on to the next server.
#[tokio::test]
async fn a_server_that_never_greets_is_passed_over_within_the_call() {
    let mute_addr = mute_server(&Arc::new(AtomicUsize::new(0))).await;
    let server = Server::start();
    let client = Client::builder(mute_addr)
        .addrs([server.addr.clone()])
        .request_timeout(Duration::from_secs(2))
        .build()
        .unwrap();
    client.ping().await.unwrap();
}

#[tokio::test]
async fn a_silent_server_times_a_call_out() {
    let addr = silent_server().await;
    let client = Client::builder(addr)
        .request_timeout(Duration::from_millis(300))
        .connect_timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    let started = std::time::Instant::now();
    let err = client.ping().await.unwrap_err();
    assert!(err.is_timeout(), "{err}");
    assert!(started.elapsed() < Duration::from_secs(2));
}

#[tokio::test]
async fn a_buy_lost_with_its_connection_is_sent_again_as_a_repeat_of_the_same_purchase() {
    let (addr, seen) = dropping_server(false, false).await;
    let client = Client::builder(addr.clone()).build().unwrap();
    assert_eq!(client.buy(7, 1).await.unwrap(), Purchase::Ordered(99));
    repeated_once(&seen);

    // Without a request id a BUY could buy twice: its error is returned.
    let (addr, seen) = dropping_server(false, false).await;
    let bare = Client::builder(addr).request_ids(false).build().unwrap();
    let err = bare.buy(7, 1).await.unwrap_err();
    assert!(err.is_closed(), "{err}");
    assert_eq!(seen.lock().unwrap().len(), 1, "not sent again");
}

/// The same when the server closes the connection with its connection-level
/// error frame (`bad_request`: on a connection many callers share, another
/// caller's doing): the BUY in flight is not answered `bad_request`, which
/// would not be retried though it may have bought; it is sent again.
#[tokio::test]
async fn a_buy_in_flight_when_the_server_gives_up_on_the_connection_is_sent_again() {
    let (addr, seen) = dropping_server(true, false).await;
    let client = Client::builder(addr.clone()).build().unwrap();
    assert_eq!(client.buy(7, 1).await.unwrap(), Purchase::Ordered(99));
    repeated_once(&seen);

    let (addr, _) = dropping_server(true, false).await;
    let bare = Client::builder(addr).request_ids(false).build().unwrap();
    let err = bare.buy(7, 1).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Closed, "{err}");
    assert!(
        err.to_string().contains("bad requests on this connection"),
        "{err}"
    );
}

/// A BUY lost with its connection whose next server is full up (`busy` as
/// it accepts): the call fails as closed, its outcome unknown, not with
/// that `busy`, which would say nothing was done.
#[tokio::test]
async fn a_buy_in_doubt_is_not_reported_busy_by_the_next_server() {
    let (addr, seen) = dropping_server(false, true).await;
    let full = full_server().await;
    let client = Client::builder(addr).addrs([full]).build().unwrap();
    let err = client.buy(7, 1).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Closed, "{err}");
    assert!(!err.is_retryable());
    assert_eq!(seen.lock().unwrap().len(), 1, "the BUY reached the first");
}

/// A fake server that refuses every connection as it accepts it, with the
/// connection-level `busy` frame.
async fn full_server() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let mut out = BytesMut::new();
            Reply::error(Status::Busy, "too many connections").encode(
                Opcode::Error as u8,
                0,
                &mut out,
            );
            let _ = stream.write_all(&out).await;
        }
    });
    addr
}

/// The BUYs `seen` are one purchase sent twice: first, then as its repeat.
fn repeated_once(seen: &Mutex<Vec<Request>>) {
    let buys = seen.lock().unwrap().clone();
    let ids: Vec<_> = buys
        .iter()
        .map(|r| match r {
            Request::Buy { request_id, .. } => request_id.expect("an id on every BUY"),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(ids.len(), 2, "sent twice: {buys:?}");
    assert!(!ids[0].is_repeat() && ids[1].is_repeat());
    assert_eq!(ids[0].purchase(), ids[1].purchase(), "one purchase");
}

/// A fake server whose first connection closes on its first BUY, unanswered
/// (after a connection-level error frame, with `farewell`); later
/// connections answer every BUY with order 99, or, `then_gone`, are
/// refused (it stops listening). It records the BUYs.
async fn dropping_server(farewell: bool, then_gone: bool) -> (String, Arc<Mutex<Vec<Request>>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let record = seen.clone();
    tokio::spawn(async move {
        let mut connections = 0;
        while let Ok((stream, _)) = listener.accept().await {
            if then_gone && connections == 1 {
                // Refused from now on: the listener goes with this task.
                break;
            }
            connections += 1;
            let drop_buys = connections == 1;
            let record = record.clone();
            tokio::spawn(async move {
                let mut conn = FakeConn::new(stream);
                while let Some((opcode, id, request)) = conn.next().await {
                    let reply = match &request {
                        Request::Hello { .. } => hello(false),
                        Request::Buy { .. } => {
                            record.lock().unwrap().push(request.clone());
                            if drop_buys {
                                if farewell {
                                    let why = Reply::error(
                                        Status::BadRequest,
                                        "32 bad requests on this connection: closing it",
                                    );
                                    let _ = conn.reply(Opcode::Error as u8, 0, &why).await;
                                }
                                return;
                            }
                            Reply::Bought { order_no: 99 }
                        }
                        _ => Reply::Pong,
                    };
                    conn.reply(opcode, id, &reply).await.unwrap();
                }
            });
        }
    });
    (addr, seen)
}

#[tokio::test]
async fn a_call_that_times_out_leaves_the_connection_to_the_others() {
    let (addr, connections) = choosy_server().await;
    let client = Client::builder(addr)
        .request_timeout(Duration::from_millis(500))
        .build()
        .unwrap();
    client.ping().await.unwrap();
    let waiting = client.clone();
    let unanswered = tokio::spawn(async move { waiting.get_goods(1).await });
    // The server keeps answering PINGs meanwhile.
    for _ in 0..8 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        client.ping().await.unwrap();
    }
    let err = unanswered.await.unwrap().unwrap_err();
    assert!(err.is_timeout(), "{err}");
    client.ping().await.unwrap();
    assert_eq!(
        connections.load(Ordering::Relaxed),
        1,
        "one connection throughout"
    );
}

/// A fake server that answers HELLO and PING and never GET_GOODS; it counts
/// its connections.
async fn choosy_server() -> (String, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let connections = Arc::new(AtomicUsize::new(0));
    let count = connections.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            count.fetch_add(1, Ordering::Relaxed);
            tokio::spawn(async move {
                let mut conn = FakeConn::new(stream);
                while let Some((opcode, id, request)) = conn.next().await {
                    let reply = match request {
                        Request::Hello { .. } => hello(false),
                        Request::Ping => Reply::Pong,
                        _ => continue,
                    };
                    conn.reply(opcode, id, &reply).await.unwrap();
                }
            });
        }
    });
    (addr, connections)
}

/// An address nothing listens on.
fn free_addr() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    drop(listener);
    addr
}

/// A fake server that greets and then never answers.
async fn silent_server() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut conn = FakeConn::new(stream);
                let mut greeted = false;
                while let Some((opcode, id, request)) = conn.next().await {
                    if !greeted && matches!(request, Request::Hello { .. }) {
                        greeted = true;
                        conn.reply(opcode, id, &hello(false)).await.unwrap();
                    }
                }
            });
        }
    });
    addr
}

/// A server that answers a call and resets the connection at once (it
/// closes with requests unread) while the client is blocked writing more:
/// the call gets its reply, though the failed write may be what the client
/// notices first. Before, the write's failure failed every call in flight
/// as in doubt, the answered one too, about one round in two.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reply_that_came_before_a_reset_is_delivered_though_a_write_failed_first() {
    let (addr, mut got_buy) = resetting_server().await;
    for round in 0..16 {
        let client = Client::builder(addr.clone())
            .request_ids(false)
            .max_in_flight(100_000)
            .request_timeout(Duration::from_secs(10))
            .build()
            .unwrap();
        client.ping().await.unwrap();
        let buyer = client.clone();
        let answered = tokio::spawn(async move { buyer.buy(7, 1).await });
        got_buy.recv().await.expect("the fake server took the BUY");
        // More than the sockets' buffers hold: the client is left blocked
        // writing when the server answers the BUY and resets.
        let mut filler = Pipeline::new();
        for _ in 0..20_000 {
            filler.add_goods(goods(&"x".repeat(200), 1));
        }
        let filled = client.execute(&filler).await;
        assert!(filled.is_err(), "round {round}: the filler was answered");
        let bought = answered.await.unwrap();
        assert!(
            matches!(bought, Ok(Purchase::Ordered(42))),
            "round {round}: {bought:?}"
        );
    }
}

/// A fake server that greets, answers PING, takes one BUY (and says so on
/// the channel returned) and reads no more; 300 ms later it answers the
/// BUY (order 42) and resets the connection (closes it with input unread,
/// SO_LINGER 0).
async fn resetting_server() -> (String, tokio::sync::mpsc::UnboundedReceiver<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let (took_buy, got_buy) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let took_buy = took_buy.clone();
            tokio::spawn(async move {
                let mut conn = FakeConn::new(stream);
                while let Some((opcode, id, request)) = conn.next().await {
                    let reply = match request {
                        Request::Hello { .. } => hello(true),
                        Request::Buy { .. } => {
                            let _ = took_buy.send(());
                            tokio::time::sleep(Duration::from_millis(300)).await;
                            let bought = Reply::Bought { order_no: 42 };
                            conn.reply(opcode, id, &bought).await.unwrap();
                            conn.stream.set_zero_linger().unwrap();
                            return;
                        }
                        _ => Reply::Pong,
                    };
                    conn.reply(opcode, id, &reply).await.unwrap();
                }
            });
        }
    });
    (addr, got_buy)
}

/// The only server accepts and never greets: the first call waits out its
/// timeout; the calls after it, within the backoff, fail at once as
/// "no server could be reached" rather than each open a connection to it
/// and wait out a timeout of its own.
#[tokio::test]
async fn the_only_server_that_never_greets_is_backed_off() {
    let accepted = Arc::new(AtomicUsize::new(0));
    let client = Client::builder(mute_server(&accepted).await)
        .request_timeout(Duration::from_millis(300))
        .backoff(Duration::from_secs(30), Duration::from_secs(60))
        .build()
        .unwrap();
    let first = client.ping().await.unwrap_err();
    assert!(first.is_timeout(), "{first}");
    for _ in 0..3 {
        let next = client.ping().await.unwrap_err();
        assert_eq!(next.kind(), ErrorKind::Closed, "{next}");
        assert!(next.to_string().contains("dialling again"), "{next}");
    }
    assert_eq!(accepted.load(Ordering::SeqCst), 1, "connections opened");
}

/// One connection of a fake server: requests read as they come, replies
/// written.
struct FakeConn {
    stream: tokio::net::TcpStream,
    inbound: BytesMut,
}

impl FakeConn {
    fn new(stream: tokio::net::TcpStream) -> FakeConn {
        FakeConn {
            stream,
            inbound: BytesMut::new(),
        }
    }

    /// The next request, with the opcode and id its reply takes; `None`
    /// once the client has closed.
    async fn next(&mut self) -> Option<(u8, u64, Request)> {
        loop {
            if let Ok((frame, used)) = Frame::parse(&self.inbound, MAX_REQUEST_FRAME) {
                let (opcode, id) = (frame.opcode, frame.id);
                let request = Request::decode(&frame).unwrap();
                self.inbound.advance(used);
                return Some((opcode, id, request));
            }
            if matches!(
                self.stream.read_buf(&mut self.inbound).await,
                Ok(0) | Err(_)
            ) {
                return None;
            }
        }
    }

    async fn reply(&mut self, opcode: u8, id: u64, reply: &Reply) -> std::io::Result<()> {
        let mut out = BytesMut::new();
        reply.encode(opcode, id, &mut out);
        self.stream.write_all(&out).await
    }
}

/// HELLO's reply of this crate's version, with or without admin rights.
fn hello(admin: bool) -> Reply {
    Reply::Hello {
        version: VERSION,
        admin,
        server: None,
    }
}

/// Two servers that accept and never greet: each call's dials fail (the
/// first at its limit, half the call's timeout, the next cut by the
/// call's deadline), and once every server has failed a dial, over calls,
/// the client backs off: the calls after fail at once, without connecting.
#[tokio::test]
async fn servers_that_all_never_greet_are_backed_off() {
    let accepted = Arc::new(AtomicUsize::new(0));
    let client = Client::builder(mute_server(&accepted).await)
        .addrs([mute_server(&accepted).await])
        .request_timeout(Duration::from_millis(400))
        .backoff(Duration::from_secs(30), Duration::from_secs(60))
        .build()
        .unwrap();
    let mut fast = 0;
    for _ in 0..6 {
        let err = client.ping().await.unwrap_err();
        if err.to_string().contains("dialling again") {
            fast += 1;
        }
    }
    assert!(fast >= 3, "{fast} of 6 calls refused at once");
    assert!(
        accepted.load(Ordering::SeqCst) <= 4,
        "{} connections opened",
        accepted.load(Ordering::SeqCst)
    );
}

/// A fake server that accepts connections, counts them in `accepted`,
/// holds them and never says a word (a hung server).
async fn mute_server(accepted: &Arc<AtomicUsize>) -> String {
    let mute = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = mute.local_addr().unwrap().to_string();
    let count = accepted.clone();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = mute.accept().await {
            count.fetch_add(1, Ordering::SeqCst);
            held.push(stream);
        }
    });
    addr
}
