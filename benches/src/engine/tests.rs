//! The engine against a fake seckill server that answers every BUY with a
//! new order: the runs end when they should and every request is counted.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::AtomicU64;
use std::time::{Duration, Instant};

use bytes::{Buf, BytesMut};
use seckill_proto::{Frame, Opcode, Reply, Request, MAX_REQUEST_FRAME, VERSION};

use super::*;
use crate::users::UserPicker;
use crate::workload::{FlashCrowd, Sustained};

/// Answers HELLO, BUY (a new order number each time) and anything else
/// (PONG-like ok), one thread per connection.
fn fake_server() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    std::thread::spawn(move || {
        for stream in listener.incoming().map_while(Result::ok) {
            std::thread::spawn(move || serve(stream));
        }
    });
    addr
}

fn serve(mut stream: TcpStream) {
    static ORDERS: AtomicU64 = AtomicU64::new(1);
    let mut input = BytesMut::new();
    let mut chunk = [0u8; 16 * 1024];
    loop {
        let n = match stream.read(&mut chunk) {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        input.extend_from_slice(&chunk[..n]);
        let mut out = BytesMut::new();
        while let Ok((frame, used)) = Frame::parse(&input, MAX_REQUEST_FRAME) {
            let reply = match Request::decode(&frame) {
                Ok(Request::Hello { .. }) => Reply::Hello {
                    version: VERSION,
                    admin: false,
                },
                Ok(Request::Buy { .. }) => Reply::Bought {
                    order_no: ORDERS.fetch_add(1, Ordering::Relaxed),
                },
                _ => Reply::GoodsList(Vec::new()),
            };
            let to = match reply {
                Reply::Hello { .. } => Opcode::Hello,
                Reply::Bought { .. } => Opcode::Buy,
                _ => Opcode::ListGoods,
            };
            reply.encode(to as u8, frame.id, &mut out);
            input.advance(used);
        }
        if stream.write_all(&out).is_err() {
            return;
        }
    }
}

fn plan(pace: Pace, duration: Option<Duration>) -> Plan {
    Plan {
        connections: 6,
        threads: 2,
        pace,
        duration,
        drain: Duration::from_secs(5),
        stall: Duration::from_secs(5),
        seed: 1,
        keep_acks: true,
        live: false,
    }
}

#[test]
fn a_closed_loop_flash_crowd_sends_every_attempt_once() {
    let target = Target::Seckill {
        addr: fake_server(),
    };
    let workload = FlashCrowd::new(1, UserPicker::new(100, 1, 1), 1000);
    let done = run(
        &plan(Pace::Closed { pipeline: 4 }, None),
        &target,
        &workload,
    );
    assert_eq!(done.connected, 6);
    assert_eq!(done.sent, 1000);
    assert_eq!(done.recorder.outcomes.ok, 1000);
    assert_eq!(done.recorder.outcomes.lost, 0);
    assert_eq!(done.acks.len(), 1000);
    assert_eq!(done.recorder.latency.len(), 1000);
}

#[test]
fn an_open_loop_flash_crowd_ends_when_the_attempts_run_out() {
    let target = Target::Seckill {
        addr: fake_server(),
    };
    let workload = FlashCrowd::new(1, UserPicker::new(100, 1, 1), 500);
    let begun = Instant::now();
    let pace = Pace::Open {
        rate: 2000.0,
        max_in_flight: 2,
    };
    let done = run(&plan(pace, None), &target, &workload);
    assert!(
        begun.elapsed() < Duration::from_secs(3),
        "{:?}",
        begun.elapsed()
    );
    assert_eq!(done.sent, 500);
    assert_eq!(done.recorder.outcomes.answered(), 500);
    assert_eq!(done.recorder.outcomes.lost, 0);
    // 500 requests at 2000/s: about a quarter of a second.
    assert!(
        done.elapsed >= Duration::from_millis(240),
        "{:?}",
        done.elapsed
    );
}

#[test]
fn a_timed_open_loop_run_sends_exactly_its_slots() {
    let target = Target::Seckill {
        addr: fake_server(),
    };
    let workload = Sustained::new(1, 1);
    let pace = Pace::Open {
        rate: 1000.0,
        max_in_flight: 8,
    };
    let done = run(
        &plan(pace, Some(Duration::from_millis(500))),
        &target,
        &workload,
    );
    assert_eq!(done.sent, 500);
    assert_eq!(done.recorder.outcomes.ok, 500);
    assert_eq!(done.recorder.outcomes.lost, 0);
}

#[test]
fn nothing_listening_counts_every_connection_as_failed() {
    let addr = {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr")
    };
    let workload = Sustained::new(1, 1);
    let done = run(
        &plan(
            Pace::Closed { pipeline: 1 },
            Some(Duration::from_millis(100)),
        ),
        &Target::Seckill { addr },
        &workload,
    );
    assert_eq!(done.connected, 0);
    assert_eq!(done.recorder.outcomes.connection_failures, 6);
    assert_eq!(done.sent, 0);
}
