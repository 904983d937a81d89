//! Hostile and broken clients: the limits hold, each is told why, and a
//! normal client beside them keeps its service.

use std::io::Write;
use std::net::TcpStream;
use std::time::{Duration, Instant};

use seckill_client::{Client, Purchase};
use seckill_proto::{Reply, Request, Status};

use crate::harness::{connect_from, on_sale, try_connect_from, Got, Raw, Server, TOKEN};

/// The connection-level error frame with this status, then the close.
fn refused(raw: &mut Raw, status: Status) -> String {
    match raw.until_closed().as_slice() {
        [Got::Frame {
            opcode: 0xff,
            id: 0,
            reply: Reply::Error { status: s, message },
        }] if *s == status => message.clone(),
        other => panic!("expected one {status:?} error frame, got {other:?}"),
    }
}

#[test]
fn connection_limits_refuse_the_excess_with_a_reason() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(
        &dir.path().join("h.db"),
        &["--max-connections", "8", "--max-connections-per-ip", "5"],
    );
    // Five from 127.0.0.1 are fine; the sixth is refused, and told why.
    let mut five: Vec<Raw> = (0..5).map(|_| Raw::greeted(server.addr)).collect();
    let mut sixth = Raw::connect(server.addr);
    let why = refused(&mut sixth, Status::Busy);
    assert!(why.contains("your address"), "{why}");

    // Another address (127.0.0.2 is loopback too) has its own count, up to
    // the global limit of 8.
    let mut others: Vec<Raw> = (0..3)
        .map(|_| {
            let mut raw = Raw::from_stream(connect_from("127.0.0.2", server.addr));
            raw.hello();
            raw
        })
        .collect();
    let mut ninth = Raw::from_stream(connect_from("127.0.0.2", server.addr));
    let why = refused(&mut ninth, Status::Busy);
    assert!(why.contains("too many connections"), "{why}");

    // A place given back is a place to take.
    drop(five.pop());
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let mut again = Raw::connect(server.addr);
        again.request(
            1,
            &Request::Hello {
                version: 1,
                token: String::new(),
            },
        );
        match again.next() {
            Got::Frame {
                reply: Reply::Hello { .. },
                ..
            } => break,
            _ => assert!(Instant::now() < deadline, "the place never came back"),
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    for raw in five.iter_mut().chain(&mut others) {
        raw.request(9, &Request::Ping);
        assert!(matches!(
            raw.next(),
            Got::Frame {
                reply: Reply::Pong,
                ..
            }
        ));
    }
    drop((five, others));
    let deadline = Instant::now() + Duration::from_secs(5);
    let stats = loop {
        match Client::builder(server.addr).token(TOKEN).connect() {
            Ok(mut admin) => break admin.stats().unwrap(),
            Err(e) if e.is_busy() && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(20))
            }
            Err(e) => panic!("{e}"),
        }
    };
    let refused = stats.iter().find(|s| s.name == "connections_refused");
    assert!(refused.is_some_and(|s| s.value >= 2), "{stats:?}");
}

#[test]
fn a_frame_trickled_too_slowly_is_cut_off() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("h.db"), &["--frame-timeout", "1s"]);
    let mut bystander = server.client();
    let mut slow = Raw::greeted(server.addr);
    let mut frame = bytes::BytesMut::new();
    Request::Ping.encode(5, &mut frame);
    let start = Instant::now();
    // One byte every 300 ms: never idle, never done. The frame is 13 bytes,
    // so it would take 3.9 s; the server cuts it off after about 1 s.
    for b in frame.iter() {
        if slow.stream.write_all(&[*b]).is_err() || start.elapsed() > Duration::from_secs(3) {
            break;
        }
        bystander.ping().expect("the bystander is served");
        std::thread::sleep(Duration::from_millis(300));
    }
    let why = refused(&mut slow, Status::BadRequest);
    assert!(why.contains("not completed"), "{why}");
    assert!(start.elapsed() < Duration::from_secs(5));
    assert_eq!(server.stat("frame_timeouts"), 1);
}

/// A client whose writes do not end on frame boundaries (the rest of one
/// frame, a whole one and the start of the next, in each write) is not cut
/// off by the frame timeout, however long it goes on: the timeout is for
/// each frame, not for the read buffer's time without being empty.
#[test]
fn a_steady_client_whose_writes_split_frames_is_not_cut_off() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("h.db"), &["--frame-timeout", "1s"]);
    let mut raw = Raw::greeted(server.addr);
    let mut ping = bytes::BytesMut::new();
    Request::Ping.encode(7, &mut ping);
    let (head, tail) = ping.split_at(5);
    let start = Instant::now();
    let mut answered = 0;
    let mut first = true;
    // 17 rounds 150 ms apart: over 2.4 s, more than twice the frame
    // timeout, with the buffer never empty between them.
    for _ in 0..17 {
        let mut write = Vec::new();
        if !first {
            write.extend_from_slice(tail);
        }
        write.extend_from_slice(&ping);
        write.extend_from_slice(head);
        raw.send(&write);
        for _ in 0..if first { 1 } else { 2 } {
            match raw.next() {
                Got::Frame {
                    reply: Reply::Pong, ..
                } => answered += 1,
                other => panic!("after {:?}: {other:?}", start.elapsed()),
            }
        }
        first = false;
        std::thread::sleep(Duration::from_millis(150));
    }
    assert_eq!(answered, 33, "PONGs");
    assert!(start.elapsed() >= Duration::from_millis(2_400));
    assert_eq!(server.stat("frame_timeouts"), 0);
}

/// A connection the server is closing (here after a frame too large to
/// read), whose replies its peer does not read, is closed a frame timeout
/// later even while the peer keeps sending: its input is read and thrown
/// away, and must not keep it open.
#[test]
fn a_closing_connection_is_closed_however_much_its_peer_sends() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(
        &dir.path().join("h.db"),
        // No pause at the high-water mark: every request is read.
        &["--frame-timeout", "1s", "--write-high-water", "16777216"],
    );
    let stream = small_receive_buffer(server.addr);
    Raw::from_stream(stream.try_clone().expect("clone")).hello();
    stream
        .set_write_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    // Half a megabyte of PONGs that are never read, then a length no frame
    // may have: the server answers what came before and is closing.
    let mut out = bytes::BytesMut::new();
    for id in 0..40_000u64 {
        Request::Ping.encode(id, &mut out);
    }
    out.extend_from_slice(&u32::MAX.to_be_bytes());
    let mut writer = &stream;
    writer.write_all(&out).expect("the requests are read");
    let start = Instant::now();
    // A byte every 200 ms, until a write finds the connection closed.
    let closed_after = loop {
        std::thread::sleep(Duration::from_millis(200));
        if writer.write_all(&[0]).is_err() {
            break start.elapsed();
        }
        assert!(
            start.elapsed() < Duration::from_secs(8),
            "still open after {:?}",
            start.elapsed()
        );
    };
    eprintln!("closed {closed_after:?} after its bad frame");
}

/// Wrong admin tokens: each refused (`unauthorized`) and counted; past ten
/// from one address, its HELLOs with a token are refused without a look,
/// the right token too, for a while (a guesser gets ten tries a minute),
/// while HELLOs without a token, and other addresses' admins, go on. The
/// right token before them counts for nothing.
#[test]
fn wrong_admin_tokens_past_ten_lock_their_address_out() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("h.db"), &[]);
    // From 127.0.0.2: the harness's own admin connections come from
    // 127.0.0.1.
    let from_elsewhere = || {
        let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)
            .expect("socket");
        let local: std::net::SocketAddr = "127.0.0.2:0".parse().unwrap();
        socket.bind(&local.into()).expect("bind 127.0.0.2");
        socket.connect(&server.addr.into()).expect("connect");
        Raw::from_stream(socket.into())
    };
    let hello = hello_with;
    // The right token, any number of times, uses up none of the ten.
    for _ in 0..15 {
        let (status, message) = hello(&mut from_elsewhere(), TOKEN);
        assert_eq!(status, None, "{message}");
    }
    let mut guesser = from_elsewhere();
    for guess in 0..10 {
        let (status, message) = hello(&mut guesser, &format!("guess {guess}"));
        assert_eq!(status, Some(Status::Unauthorized), "{message}");
        assert!(message.contains("wrong admin token"), "{message}");
    }
    let (status, message) = hello(&mut from_elsewhere(), TOKEN);
    assert_eq!(status, Some(Status::Unauthorized), "{message}");
    assert!(message.contains("too many wrong admin tokens"), "{message}");
    assert_eq!(hello(&mut guesser, "").0, None, "a buyer's HELLO");
    assert_eq!(server.stat("wrong_admin_tokens"), 11);
}

/// HELLO with `token` on `raw`: the error status and message, or `None`
/// and what the greeting said.
fn hello_with(raw: &mut Raw, token: &str) -> (Option<Status>, String) {
    raw.request(
        1,
        &Request::Hello {
            version: seckill_proto::VERSION,
            token: token.into(),
        },
    );
    match raw.next() {
        Got::Frame {
            reply: Reply::Error { status, message },
            ..
        } => (Some(status), message),
        Got::Frame {
            reply: Reply::Hello { admin, .. },
            ..
        } => (None, format!("greeted, admin {admin}")),
        other => panic!("HELLO answered {other:?}"),
    }
}

/// Wrong admin tokens from many addresses, ten from each (their own limit):
/// past a hundred in all, HELLOs with a token are refused without a look,
/// from addresses that guessed nothing before too: a guesser with many
/// addresses gets no more than a hundred guesses and then one a second,
/// each logged.
#[test]
fn wrong_admin_tokens_from_many_addresses_are_capped_in_all() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("h.db"), &[]);
    let started = Instant::now();
    let mut wrong = 0;
    let mut capped = 0;
    for host in 10..=21 {
        let from = format!("127.0.1.{host}");
        for guess in 0..10 {
            let mut raw = Raw::from_stream(connect_from(&from, server.addr));
            let (status, message) = hello_with(&mut raw, &format!("guess {host}.{guess}"));
            assert_eq!(status, Some(Status::Unauthorized), "{message}");
            if message.contains("too many wrong admin tokens") {
                capped += 1;
            } else {
                assert!(message.contains("wrong admin token"), "{message}");
                wrong += 1;
            }
        }
    }
    // 120 guesses: 100 looked at, and one more a second while they went;
    // the rest refused unlooked.
    let refilled = started.elapsed().as_secs() as usize + 1;
    assert!(
        (100..=100 + refilled).contains(&wrong) && capped > 0,
        "{wrong} looked at, {capped} refused"
    );
}

#[test]
fn buys_are_rate_limited_per_user() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(
        &dir.path().join("h.db"),
        // Slow enough that no token comes back during the first four BUYs
        // on a loaded machine.
        &["--buy-rate", "0.2", "--buy-burst", "3"],
    );
    let goods = server.admin().add_goods(on_sale("gpu", 100)).unwrap().id;
    // The same user on two connections shares one bucket.
    let (mut a, mut b) = (server.client(), server.client());
    let no = a.buy(1, goods).unwrap().order_no().unwrap();
    assert_eq!(b.buy(1, goods).unwrap(), Purchase::AlreadyBought(no));
    assert_eq!(a.buy(1, goods).unwrap(), Purchase::AlreadyBought(no));
    let err = b.buy(1, goods).unwrap_err();
    assert_eq!(err.status(), Some(Status::RateLimited), "{err}");
    // Other users are not affected.
    assert!(matches!(a.buy(2, goods).unwrap(), Purchase::Ordered(_)));
    // The bucket refills at one per five seconds.
    std::thread::sleep(Duration::from_millis(5_300));
    assert_eq!(a.buy(1, goods).unwrap(), Purchase::AlreadyBought(no));
    assert_eq!(server.stat("buy_rate_limited"), 1);
}

#[test]
fn admin_commands_only_on_the_admin_listener() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("h.db"), &["--admin-listen", "127.0.0.1:0"]);
    let public = Client::builder(server.addr).token(TOKEN).connect();
    let err = public.unwrap_err();
    assert!(err.is_unauthorized(), "{err}");
    let admin_addr = server.admin_addr.expect("admin address");
    let mut admin = Client::builder(admin_addr).token(TOKEN).connect().unwrap();
    assert!(admin.is_admin());
    let goods = admin.add_goods(on_sale("desk", 1)).unwrap();
    // Buyers use the public listener as before.
    let mut buyer = server.client();
    assert_eq!(buyer.get_goods(goods.id).unwrap().total, 1);
    // A wrong token is refused on the admin listener too.
    let wrong = Client::builder(admin_addr).token("nope").connect();
    assert!(wrong.unwrap_err().is_unauthorized());
}

/// 10,000 connections that send nothing: all held, the server's memory
/// grows by little, and a normal client is served meanwhile.
#[test]
fn ten_thousand_silent_connections() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(
        &dir.path().join("h.db"),
        &["--max-connections-per-ip", "20000"],
    );
    let mut normal = server.client();
    normal.ping().unwrap();
    let before = server.rss_kib();
    let silent: Vec<TcpStream> = (0..10_000)
        .map(|i| TcpStream::connect(server.addr).unwrap_or_else(|e| panic!("connection {i}: {e}")))
        .collect();
    let deadline = Instant::now() + Duration::from_secs(30);
    while server.stat("connections_open") < 10_001 {
        assert!(Instant::now() < deadline, "connections not all accepted");
        normal.ping().unwrap();
        std::thread::sleep(Duration::from_millis(50));
    }
    let grown = server.rss_kib().saturating_sub(before);
    eprintln!("10,000 silent connections: resident memory grew by {grown} KiB");
    // What a connection costs is measured by seckill-bench; this only
    // catches a connection that holds buffers while idle (16 KiB each
    // would be 160 MiB).
    assert!(grown < 64 * 1024, "grew by {grown} KiB");
    normal.ping().unwrap();
    drop(silent);
}

/// Started from a shell with the usual soft limit of 1024 open files, the
/// server raises its own limit and takes 5,000 connections, not ~1,000.
#[test]
fn a_server_started_with_1024_open_files_takes_5000_connections() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_with_open_files(
        &dir.path().join("h.db"),
        &["--max-connections-per-ip", "20000"],
        1024,
    );
    let mut normal = server.client();
    normal.ping().unwrap();
    let held: Vec<TcpStream> = (0..5_000)
        .map(|i| TcpStream::connect(server.addr).unwrap_or_else(|e| panic!("connection {i}: {e}")))
        .collect();
    let deadline = Instant::now() + Duration::from_secs(30);
    while server.stat("connections_open") < 5_001 {
        assert!(
            Instant::now() < deadline,
            "{} of 5,001 connections accepted; the server's log:\n{}",
            server.stat("connections_open"),
            server.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        server
            .log()
            .contains("open files: soft limit raised from 1024"),
        "{}",
        server.log()
    );
    normal.ping().unwrap();
    drop(held);
}

/// A client that pipelines without ever reading: the server stops reading
/// it once its replies back up, its memory stays bounded, and others are
/// served.
#[test]
fn a_client_that_never_reads_is_held_back() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("h.db"), &[]);
    let mut normal = server.client();
    let mut flood = Raw::greeted(server.addr);
    flood
        .stream
        .set_write_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    let mut chunk = bytes::BytesMut::new();
    for id in 0..10_000u64 {
        Request::Ping.encode(id, &mut chunk);
    }
    let before = server.rss_kib();
    // Up to a million PINGs, until the socket stops taking them.
    let mut sent = 0u64;
    let mut blocked = false;
    while sent < 1_000_000 {
        match flood.stream.write_all(&chunk) {
            Ok(()) => sent += 10_000,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                blocked = true;
                break;
            }
            Err(e) => panic!("writing the flood: {e}"),
        }
        normal.ping().expect("the normal client is served");
    }
    assert!(
        blocked,
        "the server read {sent} PINGs without the client reading a reply"
    );
    let grown = server.rss_kib().saturating_sub(before);
    eprintln!("flood of {sent} unread PINGs: resident memory grew by {grown} KiB");
    assert!(grown < 64 * 1024, "grew by {grown} KiB");
    for _ in 0..100 {
        normal.ping().expect("the normal client is served");
    }
}

/// A client that keeps sending requests the server cannot read is answered
/// `bad_request` for each, up to its budget; the last one is followed by an
/// error frame saying why, and the connection is closed. Well-formed
/// requests whose values are refused (`bad_request` too) do not count: a
/// connection may carry many buyers' requests, as a gateway's does, and
/// one buyer's refusals must not close it on the others.
#[test]
fn bad_requests_past_the_budget_close_the_connection() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("h.db"), &["--bad-request-budget", "4"]);
    let goods = server.admin().add_goods(on_sale("lamp", 5)).unwrap().id;
    let mut bystander = server.client();
    let mut raw = Raw::greeted(server.addr);
    // A goods bought without tokens: TOKEN is refused, ten times over.
    for id in 1..=10u64 {
        raw.request(
            id,
            &Request::Token {
                user_id: id,
                goods_id: goods,
            },
        );
        match raw.next() {
            Got::Frame {
                id: got,
                reply: Reply::Error { status, .. },
                ..
            } => assert_eq!((got, status), (id, Status::BadRequest)),
            other => panic!("expected bad_request, got {other:?}"),
        }
    }
    let mut unknown = bytes::BytesMut::new();
    for id in 10..13u64 {
        unknown.clear();
        unknown.extend_from_slice(&9u32.to_be_bytes());
        unknown.extend_from_slice(&[0x66]);
        unknown.extend_from_slice(&id.to_be_bytes());
        raw.send(&unknown);
        match raw.next() {
            Got::Frame {
                id: got,
                reply: Reply::Error { status, .. },
                ..
            } => assert_eq!((got, status), (id, Status::BadRequest)),
            other => panic!("expected bad_request, got {other:?}"),
        }
    }
    // Three bad requests of four: the connection still serves.
    raw.request(20, &Request::Ping);
    assert!(matches!(
        raw.next(),
        Got::Frame {
            reply: Reply::Pong,
            ..
        }
    ));
    // The fourth: its answer, then the reason, then the close.
    unknown.clear();
    unknown.extend_from_slice(&9u32.to_be_bytes());
    unknown.extend_from_slice(&[0x66]);
    unknown.extend_from_slice(&21u64.to_be_bytes());
    raw.send(&unknown);
    let frames = raw.until_closed();
    match frames.as_slice() {
        [Got::Frame {
            id: 21,
            reply:
                Reply::Error {
                    status: Status::BadRequest,
                    ..
                },
            ..
        }, Got::Frame {
            opcode: 0xff,
            id: 0,
            reply:
                Reply::Error {
                    status: Status::BadRequest,
                    message,
                },
        }] => assert!(message.contains("4 bad requests"), "{message}"),
        other => panic!("expected the fourth answer, an error frame and the close: {other:?}"),
    }
    assert_eq!(server.stat("bad_request_closes"), 1);
    bystander.ping().expect("the bystander is served");
}

/// Requests that a client keeps sending without reading the replies, until
/// the server stops reading it (its socket stops taking bytes) or the
/// connection is closed. LIST_GOODS, so that each small request costs a
/// large reply. The client's receive buffer is made small, so that the
/// replies back up into the server soon.
fn flood_without_reading(addr: std::net::SocketAddr) -> TcpStream {
    let stream = small_receive_buffer(addr);
    let mut raw = Raw::from_stream(stream.try_clone().expect("clone"));
    raw.hello();
    stream
        .set_write_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let mut chunk = bytes::BytesMut::new();
    for id in 0..1_000u64 {
        Request::ListGoods.encode(id, &mut chunk);
    }
    let mut writer = &stream;
    for _ in 0..10_000 {
        if writer.write_all(&chunk).is_err() {
            break;
        }
    }
    stream
}

/// A connection to `addr` whose receive buffer is small (4 KiB), so that
/// replies it does not read back up into the server soon.
fn small_receive_buffer(addr: std::net::SocketAddr) -> TcpStream {
    let socket =
        socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).expect("socket");
    socket.set_recv_buffer_size(4096).expect("SO_RCVBUF");
    socket.connect(&addr.into()).expect("connect");
    socket.into()
}

/// Waits (up to 30 s) until the server's count of unsent reply bytes has
/// not changed for half a second, and returns it.
fn settled_unsent(server: &Server) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut last = server.stat("unsent_reply_bytes");
    loop {
        std::thread::sleep(Duration::from_millis(500));
        let now = server.stat("unsent_reply_bytes");
        if now == last || Instant::now() > deadline {
            return now;
        }
        last = now;
    }
}

/// Goods enough that one LIST_GOODS reply is over a kilobyte.
fn many_goods(server: &Server) {
    let mut admin = server.admin();
    for i in 0..20 {
        admin
            .add_goods(on_sale(&format!("goods number {i} with a long name"), 10))
            .unwrap();
    }
}

/// Each connection that does not read holds at most about its high-water
/// mark of replies: the server stops reading it there.
#[test]
fn a_non_reader_is_held_at_its_high_water_mark() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("h.db"), &["--write-high-water", "16384"]);
    many_goods(&server);
    let mut normal = server.client();
    let floods: Vec<TcpStream> = (0..4).map(|_| flood_without_reading(server.addr)).collect();
    let unsent = settled_unsent(&server);
    eprintln!("4 non-readers, high-water mark 16 KiB: {unsent} reply bytes unsent");
    // Over the mark by less than one reply each (a LIST_GOODS reply of 20
    // goods is well under 4 KiB).
    assert!(unsent > 0, "the floods left no reply unsent");
    assert!(unsent <= 4 * (16384 + 4096), "{unsent} bytes unsent");
    assert_eq!(server.stat("reply_budget_closes"), 0);
    normal.ping().expect("the normal client is served");
    drop(floods);
    server.wait_for_zero(
        "unsent_reply_bytes",
        "unsent replies outlived their connections",
    );
}

/// Past the reply budget of all connections together, the non-readers with
/// the most unsent are closed until the total is back under the budget; the
/// others, and normal clients, stay. (The error frame that tells them why
/// is written only if their full socket takes it, so it is not looked for.)
#[test]
fn past_the_reply_budget_the_heaviest_non_readers_are_closed() {
    let dir = tempfile::tempdir().unwrap();
    let budget = 40_000u64;
    let server = Server::start(
        &dir.path().join("h.db"),
        &[
            "--write-high-water",
            "16384",
            "--reply-budget",
            &budget.to_string(),
        ],
    );
    many_goods(&server);
    let mut normal = server.client();
    // Six at about 16 KiB each would hold twice the budget.
    let floods: Vec<TcpStream> = (0..6).map(|_| flood_without_reading(server.addr)).collect();
    let unsent = settled_unsent(&server);
    let closed = server.stat("reply_budget_closes");
    eprintln!("6 non-readers, budget {budget}: {unsent} reply bytes unsent, {closed} closed");
    assert!(unsent <= budget, "{unsent} bytes unsent, over the budget");
    assert!((1..6).contains(&closed), "{closed} of 6 non-readers closed");
    normal.ping().expect("the normal client is served");
    drop(floods);
    server.wait_for_zero(
        "unsent_reply_bytes",
        "unsent replies outlived their connections",
    );
}

/// Past its accept rate, an address's new connections are refused as they
/// are accepted, told why; its connections already open are not touched.
#[test]
fn connections_over_the_accept_rate_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    // One connection every five seconds, a burst of one: slow enough that
    // no second one is let in by a stall on a loaded machine. The first is
    // greeted before the second connects: connections spread over the
    // acceptors' listen queues may be accepted in either order.
    let server = Server::start(&dir.path().join("h.db"), &["--accept-rate-per-ip", "0.2"]);
    let mut first = Raw::greeted(server.addr);
    let mut second = Raw::connect(server.addr);
    let why = refused(&mut second, Status::Busy);
    assert!(why.contains("slow down"), "{why}");
    first.request(9, &Request::Ping);
    assert!(matches!(
        first.next(),
        Got::Frame {
            reply: Reply::Pong,
            ..
        }
    ));
    // Another address has its own bucket.
    let mut other = Raw::from_stream(connect_from("127.0.0.2", server.addr));
    other.hello();
}

/// An address refused for its accept rate is then blocked in the kernel:
/// its next connects get no answer at all (their SYNs dropped) until
/// `--block-for` has passed, while other addresses connect and are served,
/// and the admin listener still answers it. Linux only: elsewhere nothing
/// is blocked.
#[cfg(target_os = "linux")]
#[test]
fn an_address_over_the_accept_rate_is_blocked_in_the_kernel_for_a_while() {
    let dir = tempfile::tempdir().unwrap();
    let block_for = Duration::from_secs(4);
    let server = Server::start(
        &dir.path().join("h.db"),
        &[
            // Three a second, a burst of three: the harness's admin
            // connections from 127.0.0.1 stay within it.
            "--accept-rate-per-ip",
            "3",
            "--block-for",
            "4s",
            "--acceptors",
            "3",
            "--admin-listen",
            "127.0.0.1:0",
        ],
    );
    let admin_addr = server.admin_addr.expect("an admin listener");
    let mut first = Raw::from_stream(connect_from("127.0.0.2", server.addr));
    first.hello();
    // Connections one after another until one is refused (the burst, and
    // what refilled meanwhile on a slow machine).
    let mut admitted = Vec::new();
    let why = loop {
        assert!(admitted.len() < 20, "never refused");
        let mut raw = Raw::from_stream(connect_from("127.0.0.2", server.addr));
        raw.request(1, &Request::Ping);
        match raw.next() {
            Got::Frame {
                opcode: 0xff,
                reply:
                    Reply::Error {
                        status: Status::Busy,
                        message,
                    },
                ..
            } => break message,
            _ => admitted.push(raw),
        }
    };
    assert!(why.contains("slow down"), "{why}");
    let blocked_at = Instant::now();
    // Connects to the three listen queues (the kernel spreads them by
    // source port: six reach more than one queue in all likelihood; the
    // unit tests put the filter on each queue's socket).
    for _ in 0..6 {
        let tried = try_connect_from("127.0.0.2", server.addr, Duration::from_millis(300));
        let err = tried.err().map(|e| e.kind());
        assert_eq!(err, Some(std::io::ErrorKind::TimedOut));
    }
    assert!(
        blocked_at.elapsed() < block_for,
        "the machine is too slow for this test's timing: the block may have ended"
    );
    // Its connection made before the block is served, and so are other
    // addresses, accepted while the filter is on.
    first.request(9, &Request::Ping);
    assert!(matches!(
        first.next(),
        Got::Frame {
            reply: Reply::Pong,
            ..
        }
    ));
    let mut other = Raw::from_stream(connect_from("127.0.0.3", server.addr));
    other.hello();
    for id in 10..20 {
        other.request(id, &Request::Ping);
        assert!(matches!(
            other.next(),
            Got::Frame {
                reply: Reply::Pong,
                ..
            }
        ));
    }
    assert_eq!(server.stat("addresses_blocked"), 1);
    // The admin listener has no filter.
    try_connect_from("127.0.0.2", admin_addr, Duration::from_millis(300))
        .expect("the admin listener answers a blocked address");
    // Once the block ends, its connects are answered and served again.
    std::thread::sleep(block_for.saturating_sub(blocked_at.elapsed()));
    let after = Instant::now() + Duration::from_secs(10);
    let again = loop {
        // The acceptors end the block within a poll of its time.
        match try_connect_from("127.0.0.2", server.addr, Duration::from_millis(300)) {
            Ok(stream) => break stream,
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut && Instant::now() < after => {}
            Err(e) => panic!("the block did not end: {e}"),
        }
    };
    let mut again = Raw::from_stream(again);
    again.hello();
    again.request(30, &Request::Ping);
    assert!(matches!(
        again.next(),
        Got::Frame {
            reply: Reply::Pong,
            ..
        }
    ));
}

/// The listening sockets on 127.0.0.1:`port`, from /proc/net/tcp: a listen
/// queue each.
#[cfg(target_os = "linux")]
fn listen_queues_on(port: u16) -> usize {
    let table = std::fs::read_to_string("/proc/net/tcp").expect("/proc/net/tcp");
    // 127.0.0.1 as the kernel prints it: hex, in host byte order.
    let local = format!("0100007F:{port:04X}");
    table
        .lines()
        .skip(1)
        .filter(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            // local_address is "ADDR:PORT" in hex; state 0A is LISTEN.
            fields.get(1) == Some(&local.as_str()) && fields.get(3) == Some(&"0A")
        })
        .count()
}

/// Several acceptors have a listen queue each on the one port: every
/// connection is taken by one of them and served, the connection limits
/// hold across them, and the server stops cleanly.
#[test]
fn several_acceptors_each_have_a_listen_queue() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(
        &dir.path().join("h.db"),
        &["--acceptors", "3", "--max-connections-per-ip", "20"],
    );
    #[cfg(target_os = "linux")]
    assert_eq!(listen_queues_on(server.addr.port()), 3);
    let mut clients: Vec<Raw> = (0..20).map(|_| Raw::greeted(server.addr)).collect();
    for (id, raw) in clients.iter_mut().enumerate() {
        raw.request(id as u64 + 10, &Request::Ping);
        assert!(matches!(
            raw.next(),
            Got::Frame {
                reply: Reply::Pong,
                ..
            }
        ));
    }
    // The 21st from this address is refused, whichever acceptor takes it.
    let mut over = Raw::connect(server.addr);
    let why = refused(&mut over, Status::Busy);
    assert!(why.contains("your address"), "{why}");
    drop(clients);
    assert!(server.terminate().success());
}

/// `--max-inflight-per-ip`: an address's requests waiting on the stores
/// count over all its connections; past the limit its next one is answered
/// `busy` at once (it cannot fill the job queue for everyone), and once its
/// requests are answered it is served again. The requests are held at the
/// order writer by a lock on the goods' row in MySQL (durable mode).
#[test]
fn an_address_with_too_many_requests_in_flight_is_told_busy() {
    use mysql::prelude::Queryable;
    let dir = tempfile::tempdir().unwrap();
    let stores = crate::harness::Backends::new();
    let mut args = stores.args("durable");
    args.extend(["--max-inflight-per-ip", "3"].map(String::from));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let server = Server::start(&dir.path().join("unused.db"), &args);
    let goods = server.admin().add_goods(on_sale("lamp", 10)).unwrap().id;
    // Sold through once first: the goods is loaded and every path warm.
    assert!(matches!(
        server.client().buy(100, goods),
        Ok(Purchase::Ordered(_))
    ));
    let mut lock = stores.mysql();
    let mut held = lock.start_transaction(mysql::TxOpts::default()).unwrap();
    let _: Vec<u64> = held
        .exec(
            format!(
                "SELECT id FROM `{}`.goods WHERE id = ? FOR UPDATE",
                stores.db
            ),
            (goods,),
        )
        .unwrap();
    let waiting: Vec<_> = (1..=3)
        .map(|user| {
            let mut client = server.client();
            std::thread::spawn(move || client.buy(user, goods))
        })
        .collect();
    // The three at the writer (they wait there up to the link's 5 s
    // timeout): a fourth request is refused at once.
    let deadline = Instant::now() + Duration::from_secs(4);
    while server.stat("requests_in_flight") < 3 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        waiting.iter().all(|w| !w.is_finished()),
        "the BUYs were not held"
    );
    let refused = server
        .client()
        .order_status(9, goods)
        .expect_err("a fourth request in flight");
    assert!(
        refused
            .to_string()
            .contains("too many requests in flight from your address"),
        "{refused}"
    );
    held.rollback().unwrap();
    for (user, w) in (1..=3).zip(waiting) {
        let bought = w.join().unwrap();
        assert!(
            matches!(bought, Ok(Purchase::Ordered(_))),
            "user {user}: {bought:?}"
        );
    }
    assert!(matches!(
        server.client().buy(4, goods),
        Ok(Purchase::Ordered(_))
    ));
    assert_eq!(server.client().order_status(9, goods).unwrap(), None);
}

/// Past the input budget of all connections together, the connections
/// holding the largest unfinished frames are closed with a `busy` error
/// frame until the buffered input is back under the budget; a normal
/// client is served meanwhile. Without it, frames of the largest size begun
/// on every connection and never finished hold one frame each for the
/// frame timeout, however many connections there are.
#[test]
fn past_the_input_budget_the_largest_unfinished_frames_are_closed() {
    let dir = tempfile::tempdir().unwrap();
    let budget = 1u64 << 20;
    let server = Server::start(
        &dir.path().join("h.db"),
        &[
            "--input-budget",
            &budget.to_string(),
            "--frame-timeout",
            "120s",
        ],
    );
    let mut normal = server.client();
    // 40 frames of 60,000 bytes begun, 50,000 of each sent: about twice
    // the budget.
    let mut begun: Vec<Raw> = Vec::new();
    for _ in 0..40 {
        let mut raw = Raw::greeted(server.addr);
        let mut bytes = 60_000u32.to_be_bytes().to_vec();
        bytes.resize(50_000, 0);
        raw.send(&bytes);
        begun.push(raw);
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    let closed = loop {
        let held = server.stat("buffered_input_bytes");
        let closed = server.stat("input_budget_closes");
        if closed > 0 && held <= budget {
            break closed;
        }
        assert!(
            Instant::now() < deadline,
            "{held} input bytes buffered, {closed} connections closed"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(closed < 40, "every connection closed");
    normal.ping().expect("the normal client is served");
    // Those closed were told why, and only they: each of them reads the
    // error frame and the end; the others read nothing.
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut told = 0;
    for raw in &mut begun {
        raw.stream.set_nonblocking(true).unwrap();
    }
    let mut pending: Vec<usize> = (0..begun.len()).collect();
    while told < closed && Instant::now() < deadline {
        pending.retain(|&i| {
            let mut first = [0u8; 1];
            match begun[i].stream.peek(&mut first) {
                Ok(1) => {
                    begun[i].stream.set_nonblocking(false).unwrap();
                    let frames = begun[i].until_closed();
                    assert_eq!(frames.len(), 1, "{frames:?}");
                    match &frames[0] {
                        Got::Frame {
                            opcode: 0xff,
                            id: 0,
                            reply: Reply::Error { status, .. },
                        } => assert_eq!(*status, Status::Busy),
                        other => panic!("{other:?}"),
                    }
                    told += 1;
                    false
                }
                _ => true,
            }
        });
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(told, closed, "connections told they were closed");
    for &i in &pending {
        let mut first = [0u8; 1];
        let got = begun[i].stream.peek(&mut first);
        assert!(
            got.as_ref()
                .is_err_and(|e| e.kind() == std::io::ErrorKind::WouldBlock),
            "a connection kept open read {got:?}"
        );
    }
    drop(begun);
    server.wait_for_zero(
        "buffered_input_bytes",
        "buffered input outlived its connections",
    );
}

/// A peer that sends a frame of the largest size on each connection, then
/// one byte of the next, and stops: each connection keeps that byte, and
/// must not keep the buffer that held the large frame with it (advanced
/// past the frame, a buffer keeps its whole allocation while it is not
/// empty), which would pin a frame's worth of memory per connection under
/// a count of one byte. The server's memory comes back down once the
/// frames are answered.
#[test]
fn a_byte_left_after_a_large_frame_does_not_keep_its_buffer() {
    // An unknown opcode, 60,000 bytes of body: a whole frame the server
    // reads and answers `bad_request`, then the first byte of another.
    let mut bytes = (9 + 60_000u32).to_be_bytes().to_vec();
    bytes.push(0x7e);
    bytes.extend_from_slice(&1u64.to_be_bytes());
    bytes.resize(bytes.len() + 60_000, 0);
    bytes.push(0);
    a_byte_left_keeps_no_buffer(&bytes, 600, 1);
}

/// The same after a read chunk's worth of small frames (HELLO, then PINGs
/// to 16 KiB) and a byte.
#[test]
fn a_byte_left_after_many_small_frames_does_not_keep_its_buffer() {
    let mut bytes = bytes::BytesMut::new();
    Request::Hello {
        version: seckill_proto::VERSION,
        token: String::new(),
    }
    .encode(1, &mut bytes);
    let mut frames = 1;
    while bytes.len() + 17 <= 16 * 1024 {
        Request::Ping.encode(2, &mut bytes);
        frames += 1;
    }
    bytes.extend_from_slice(&[0]);
    a_byte_left_keeps_no_buffer(&bytes, 1500, frames);
}

/// `connections` each send `bytes` (whole frames, then one byte of the
/// next) and read the `replies` to them: what the server holds for them
/// afterwards is a byte each, counted and in memory.
fn a_byte_left_keeps_no_buffer(bytes: &[u8], connections: usize, replies: usize) {
    let dir = tempfile::tempdir().unwrap();
    // No frame timeout in the test's time: the byte left begins a frame.
    // One reactor: it frees all the buffers, and so asks malloc to give
    // the memory back (after 16 MiB freed).
    let server = Server::start(
        &dir.path().join("h.db"),
        &["--frame-timeout", "120s", "--reactors", "1"],
    );
    let before = server.rss_kib();
    let mut held = Vec::new();
    for _ in 0..connections {
        let mut raw = Raw::connect(server.addr);
        raw.send(bytes);
        held.push(raw);
    }
    for raw in &mut held {
        for _ in 0..replies {
            match raw.next() {
                Got::Frame { .. } => {}
                Got::Closed => panic!("closed"),
            }
        }
    }
    assert_eq!(server.stat("buffered_input_bytes"), connections as u64);
    // The buffers were freed: at once, or within the reactors' next sweeps
    // once malloc gives the memory back (a 16 KiB buffer each would be 24
    // MiB for 1,500 connections, a 64 KiB one 38 MiB for 600).
    let deadline = Instant::now() + Duration::from_secs(10);
    let grown = loop {
        let grown = server.rss_kib().saturating_sub(before);
        if grown < 12 * 1024 || Instant::now() >= deadline {
            break grown;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(
        grown < 12 * 1024,
        "{grown} KiB more held by {connections} connections of one byte each"
    );
    drop(held);
}
