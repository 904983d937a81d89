//! BUYs whose replies are lost: the bench must find out what they did, by
//! asking their users' ORDER_STATUS, and check the units sold exactly
//! against the `ok` replies and the orders found.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::thread;

use seckill_bench::Output;

mod common;
use common::{run_bench, Server, TOKEN};

/// A relay in front of `server` that cuts the connections it is given by
/// the order they came in (`cut`, counting from 0) once `after` bytes of
/// replies went back: what the client sent until then reaches the server,
/// the replies past that never come back. Returns the relay's address.
fn cutting_relay(server: String, cut: &'static [usize], after: usize) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr").to_string();
    thread::spawn(move || {
        for (n, client) in listener.incoming().enumerate() {
            let Ok(client) = client else { continue };
            let Ok(upstream) = TcpStream::connect(&server) else {
                continue;
            };
            let (Ok(mut requests_in), Ok(mut requests_out)) =
                (client.try_clone(), upstream.try_clone())
            else {
                continue;
            };
            thread::spawn(move || {
                let _ = std::io::copy(&mut requests_in, &mut requests_out);
                let _ = requests_out.shutdown(Shutdown::Write);
            });
            let limit = cut.contains(&n).then_some(after);
            thread::spawn(move || relay_replies(upstream, client, limit));
        }
    });
    addr
}

fn relay_replies(mut from: TcpStream, mut to: TcpStream, limit: Option<usize>) {
    let mut sent = 0;
    let mut buf = [0u8; 4096];
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let n = limit.map_or(n, |limit| n.min(limit - sent));
        if to.write_all(&buf[..n]).is_err() {
            break;
        }
        sent += n;
        if limit.is_some_and(|limit| sent >= limit) {
            // Cut, both ways, mid-frame as likely as not.
            let _ = to.shutdown(Shutdown::Both);
            let _ = from.shutdown(Shutdown::Both);
            return;
        }
    }
    let _ = to.shutdown(Shutdown::Write);
}

#[test]
fn the_orders_of_buys_whose_replies_were_lost_are_found_and_counted_exactly() {
    let server = Server::start(&[]);
    // Two of the eight selling connections cut after a few replies (the
    // bench's first connection sets the sale up; its checkers come last).
    let relay = cutting_relay(server.addr.clone(), &[3, 6], 200);
    let (users, attempts, stock) = (300u64, 700u64, 200u64);
    let output = run_bench(&[
        "flash-crowd",
        "--addr",
        &relay,
        "--token",
        TOKEN,
        "--connections",
        "8",
        "--threads",
        "2",
        "--pipeline",
        "8",
        "--users",
        &users.to_string(),
        "--attempts",
        &attempts.to_string(),
        "--stock",
        &stock.to_string(),
    ]);
    let Output::Single(report) = &output else {
        panic!("one report expected")
    };
    let text = output.text();
    let o = &report.outcomes;
    assert_eq!(o.connection_failures, 2, "{text}");
    assert!(o.lost > 0, "{text}");
    let v = report.verification.as_ref().expect("a verification");
    assert!(v.passed, "{text}");
    assert_eq!(v.unknown_outcomes, o.lost);
    // Early in the sale, with units left, the lost BUYs bought: their
    // users were asked, and what they hold closes the count exactly.
    let found = v.lost_orders.expect("the users of lost BUYs asked");
    assert!(found > 0, "{text}");
    assert_eq!(v.ok_replies + found, v.sold, "{text}");
    assert!(
        text.contains(&format!("which made {found} orders")),
        "{text}"
    );
    server.stop();
}
