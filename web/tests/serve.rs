//! The serving loop's limits, over real TCP: the connection cap, and the
//! deadlines on a client's head, body, idle time and unread answers.

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use seckill_web::serve::{serve, Limits};

/// A gateway served in a runtime of its own, so that the tests can use
/// blocking sockets; its seckill server is never called.
struct Gateway {
    addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Gateway {
    fn start(limits: Limits) -> Gateway {
        let (tell_addr, addr) = std::sync::mpsc::channel();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("runtime");
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                    .await
                    .expect("bind");
                tell_addr
                    .send(listener.local_addr().expect("addr"))
                    .expect("test waits");
                let app = seckill_web::app(common::config("127.0.0.1:1", 0.0, 1));
                serve(listener, app, limits, async {
                    let _ = stopped.await;
                })
                .await;
            });
        });
        Gateway {
            addr: addr.recv().expect("the gateway's address"),
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    fn connect(&self) -> TcpStream {
        TcpStream::connect(self.addr).expect("connect")
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

const GET_ASSET: &[u8] = b"GET /static/store.js HTTP/1.1\r\nHost: test\r\n\r\n";

/// Everything the peer sends until it closes, or what came before `wait`
/// passed with the connection still open (`None` then).
fn until_closed(stream: &mut TcpStream, wait: Duration) -> Option<String> {
    stream.set_read_timeout(Some(wait)).expect("timeout");
    let mut seen = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    loop {
        match stream.read(&mut chunk) {
            Ok(0) => return Some(String::from_utf8_lossy(&seen).into_owned()),
            Ok(n) => seen.extend_from_slice(&chunk[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                return None
            }
            // Reset: closed with bytes unread on its side.
            Err(_) => return Some(String::from_utf8_lossy(&seen).into_owned()),
        }
    }
}

/// The first bytes of an answer, or `None` if none came within `wait`.
fn answer_head(stream: &mut TcpStream, wait: Duration) -> Option<String> {
    stream.set_read_timeout(Some(wait)).expect("timeout");
    let mut head = [0u8; 64];
    match stream.read(&mut head) {
        Ok(n) if n > 0 => Some(String::from_utf8_lossy(&head[..n]).into_owned()),
        _ => None,
    }
}

#[test]
fn past_the_cap_a_connection_waits_until_one_closes() {
    let gateway = Gateway::start(Limits {
        max_connections: 2,
        header_timeout: Duration::from_secs(60),
        ..Limits::default()
    });
    // Two connections that send nothing take both places (the kernel hands
    // connections to accept in the order they came).
    let first = gateway.connect();
    let _second = gateway.connect();
    let mut third = gateway.connect();
    third.write_all(GET_ASSET).expect("send");
    assert_eq!(
        answer_head(&mut third, Duration::from_secs(1)),
        None,
        "a third connection was served past a cap of two"
    );
    drop(first);
    let head = answer_head(&mut third, Duration::from_secs(10)).expect("served once one closed");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
}

#[test]
fn a_head_sent_too_slowly_and_an_idle_connection_are_closed() {
    let gateway = Gateway::start(Limits {
        header_timeout: Duration::from_secs(2),
        ..Limits::default()
    });
    // A byte every 100 ms, steady but never the whole head: the deadline
    // is on the head, not between bytes.
    let mut slow = gateway.connect();
    let mut trickle = slow.try_clone().expect("clone");
    let trickler = thread::spawn(move || {
        for byte in b"GET /static/store.js HTTP/1.1\r\nX-Padding: "
            .iter()
            .cycle()
            .take(100)
        {
            if trickle.write_all(&[*byte]).is_err() {
                return;
            }
            thread::sleep(Duration::from_millis(100));
        }
    });
    let seen = until_closed(&mut slow, Duration::from_secs(8));
    assert!(
        seen.is_some(),
        "a head trickled for 8 s kept its connection"
    );
    trickler.join().expect("trickler");

    // Kept alive between requests, but idle after an answer only for the
    // same time.
    let mut idle = gateway.connect();
    idle.write_all(GET_ASSET).expect("send");
    let first = answer_head(&mut idle, Duration::from_secs(5)).expect("an answer");
    assert!(first.starts_with("HTTP/1.1 200"), "{first}");
    // The rest of the first answer, then a second request on the same
    // connection, within the timeout.
    thread::sleep(Duration::from_millis(200));
    idle.set_nonblocking(true).expect("nonblocking");
    let mut rest = [0u8; 16 * 1024];
    while idle.read(&mut rest).is_ok_and(|n| n > 0) {}
    idle.set_nonblocking(false).expect("blocking");
    idle.write_all(GET_ASSET).expect("send again");
    let seen = until_closed(&mut idle, Duration::from_secs(8)).expect("an idle connection closed");
    assert!(
        seen.starts_with("HTTP/1.1 200"),
        "the second request: {seen}"
    );
}

#[test]
fn a_body_that_does_not_arrive_in_time_is_408_in_json() {
    let gateway = Gateway::start(Limits {
        body_timeout: Duration::from_millis(300),
        header_timeout: Duration::from_secs(2),
        ..Limits::default()
    });
    // A body of 50 bytes, sent a byte every 100 ms: steady, but it would
    // take 5 s; the deadline is on the body, not between bytes.
    let mut stream = gateway.connect();
    stream
        .write_all(
            b"POST /api/login HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n\
              Content-Length: 50\r\n\r\n",
        )
        .expect("send");
    let mut trickle = stream.try_clone().expect("clone");
    let trickler = thread::spawn(move || {
        for byte in br#"{"name": "a very long name, sent very slowly..."}"# {
            if trickle.write_all(&[*byte]).is_err() {
                return;
            }
            thread::sleep(Duration::from_millis(100));
        }
    });
    let seen = until_closed(&mut stream, Duration::from_secs(4)).expect("answered and closed");
    assert!(seen.starts_with("HTTP/1.1 408"), "{seen}");
    assert!(seen.contains(r#""error":"request_timeout""#), "{seen}");
    trickler.join().expect("trickler");
}

#[test]
fn a_client_that_reads_no_answers_is_closed_and_frees_its_place() {
    let gateway = Gateway::start(Limits {
        max_connections: 1,
        send_timeout: Duration::from_millis(500),
        header_timeout: Duration::from_secs(60),
        ..Limits::default()
    });
    // A small receive window, so that the answers (7 KB each) soon fill it
    // and the gateway's send buffer.
    let hog =
        socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).expect("socket");
    hog.set_recv_buffer_size(4096).expect("SO_RCVBUF");
    hog.connect(&gateway.addr.into()).expect("connect");
    let mut hog: TcpStream = hog.into();
    let mut requests = hog.try_clone().expect("clone");
    // Requests until the connection is closed on it (or a minute, which
    // would fail below).
    requests
        .set_write_timeout(Some(Duration::from_secs(60)))
        .expect("timeout");
    let sender = thread::spawn(move || while requests.write_all(GET_ASSET).is_ok() {});
    // The only place is the hog's until its answers stall for 500 ms.
    let mut next = gateway.connect();
    next.write_all(GET_ASSET).expect("send");
    let head = answer_head(&mut next, Duration::from_secs(20))
        .expect("served once the non-reader was closed");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    // The hog's connection is gone: past what it buffered, the end.
    assert!(until_closed(&mut hog, Duration::from_secs(10)).is_some());
    sender.join().expect("sender");
}

#[test]
fn a_connection_that_keeps_sending_requests_gives_its_place_up_at_its_age() {
    let gateway = Gateway::start(Limits {
        max_connections: 1,
        max_age: Duration::from_secs(1),
        header_timeout: Duration::from_secs(60),
        ..Limits::default()
    });
    // A request every 100 ms, each answer read: no deadline ever passes.
    let mut busy = gateway.connect();
    let mut requests = busy.try_clone().expect("clone");
    let sender = thread::spawn(move || {
        while requests.write_all(GET_ASSET).is_ok() {
            thread::sleep(Duration::from_millis(100));
        }
    });
    let mut next = gateway.connect();
    next.write_all(GET_ASSET).expect("send");
    let head = answer_head(&mut next, Duration::from_secs(10))
        .expect("served once the busy connection reached its age");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    // The busy one was answered, then closed.
    let seen = until_closed(&mut busy, Duration::from_secs(10)).expect("closed at its age");
    assert!(seen.starts_with("HTTP/1.1 200"), "{seen}");
    sender.join().expect("sender");
}

#[test]
fn stopping_closes_idle_connections_without_waiting_out_the_drain() {
    let gateway = Gateway::start(Limits {
        header_timeout: Duration::from_secs(60),
        drain_timeout: Duration::from_secs(30),
        ..Limits::default()
    });
    let mut idle = gateway.connect();
    idle.write_all(GET_ASSET).expect("send");
    answer_head(&mut idle, Duration::from_secs(5)).expect("an answer");
    let _silent = gateway.connect();
    let begun = std::time::Instant::now();
    drop(gateway);
    assert!(
        begun.elapsed() < Duration::from_secs(10),
        "stopping waited {:?} on idle connections",
        begun.elapsed()
    );
    assert!(until_closed(&mut idle, Duration::from_secs(2)).is_some());
}

/// The status code of an admin login with `token` from `from`, over a
/// connection of its own.
fn admin_login(gateway: &Gateway, from: &str, token: &str) -> u16 {
    let socket =
        socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).expect("socket");
    let local: SocketAddr = format!("{from}:0").parse().expect("address");
    socket.bind(&local.into()).expect("bind");
    socket.connect(&gateway.addr.into()).expect("connect");
    let mut stream = TcpStream::from(socket);
    let body = format!(r#"{{"token":"{token}"}}"#);
    let request = format!(
        "POST /api/admin/login HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).expect("send");
    let answer = until_closed(&mut stream, Duration::from_secs(10)).expect("an answer");
    answer
        .get(9..12)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP answer: {answer}"))
}

/// Wrong admin logins are counted per address: one that used its ten up is
/// refused every login (429), the right one too, while the admin logs in
/// from another.
#[test]
fn wrong_admin_logins_shut_the_console_to_their_address_only() {
    let gateway = Gateway::start(Limits::default());
    // At once: each wrong one is answered a second late.
    let gateway = &gateway;
    let guesses: Vec<u16> = thread::scope(|s| {
        let guesses: Vec<_> = (0..10)
            .map(|i| s.spawn(move || admin_login(gateway, "127.0.0.2", &format!("guess {i}"))))
            .collect();
        guesses
            .into_iter()
            .map(|g| g.join().expect("guess"))
            .collect()
    });
    assert_eq!(guesses, [401; 10]);
    assert_eq!(admin_login(gateway, "127.0.0.2", "guess 11"), 429);
    assert_eq!(admin_login(gateway, "127.0.0.2", common::TOKEN), 429);
    assert_eq!(admin_login(gateway, "127.0.0.1", common::TOKEN), 200);
    assert_eq!(admin_login(gateway, "127.0.0.1", "guess"), 401);
}

/// ... and all together: a hundred wrong ones from as many addresses (then
/// one a second) shut the console to everyone for a while (429); a flood
/// from many addresses gets no more guesses than that.
#[test]
fn a_hundred_wrong_admin_logins_from_anywhere_shut_the_console() {
    let gateway = Gateway::start(Limits::default());
    let gateway = &gateway;
    let began = std::time::Instant::now();
    let statuses: Vec<u16> = thread::scope(|s| {
        let guesses: Vec<_> = (1..=120)
            .map(|i| s.spawn(move || admin_login(gateway, &format!("127.0.1.{i}"), "guess")))
            .collect();
        guesses
            .into_iter()
            .map(|g| g.join().expect("guess"))
            .collect()
    });
    // Each looked at is answered a second late: one more a second of it.
    let refills = began.elapsed().as_secs() as usize + 1;
    let looked_at = statuses.iter().filter(|&&s| s == 401).count();
    let refused = statuses.iter().filter(|&&s| s == 429).count();
    assert_eq!(looked_at + refused, 120, "{statuses:?}");
    assert!(
        (100..=100 + refills).contains(&looked_at),
        "{looked_at} looked at in {:?}",
        began.elapsed()
    );
}
