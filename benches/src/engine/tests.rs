//! The engine against a fake seckill server that answers every BUY with a
//! new order: the runs end when they should and every request is counted.

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::AtomicU64;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use bytes::{Buf, BytesMut};
use seckill_proto::{
    Frame, Opcode, Order, OrderState, Reply, Request, Status, MAX_REQUEST_FRAME, VERSION,
};

use super::*;
use crate::users::UserPicker;
use crate::verify::AckKind;
use crate::workload::{FlashCrowd, Sustained, Timed};

/// Answers HELLO, BUY (a new order number each time), PAY (`busy` the
/// first time for each order, then paid) and anything else (PONG-like ok),
/// one thread per connection.
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
    static PAID: Mutex<BTreeSet<u64>> = Mutex::new(BTreeSet::new());
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
                    server: None,
                },
                Ok(Request::Buy { .. }) => Reply::Bought {
                    order_no: ORDERS.fetch_add(1, Ordering::Relaxed),
                },
                Ok(Request::Pay { user_id, order_no }) => {
                    let first = PAID.lock().expect("lock").insert(order_no);
                    if first {
                        Reply::error(Status::Busy, "being written")
                    } else {
                        Reply::Paid(Order {
                            order_no,
                            user_id,
                            goods_id: 1,
                            state: OrderState::Paid,
                            created_ms: 0,
                            pay_by_ms: 0,
                        })
                    }
                }
                _ => Reply::GoodsList(Vec::new()),
            };
            let to = match reply {
                Reply::Hello { .. } => Opcode::Hello,
                Reply::Bought { .. } => Opcode::Buy,
                Reply::Paid(_) | Reply::Error { .. } => Opcode::Pay,
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
        retry_busy: 0,
        live: false,
        watch: Vec::new(),
    }
}

#[test]
fn a_closed_loop_flash_crowd_sends_every_attempt_once() {
    let target = Target::seckill(fake_server());
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
    let target = Target::seckill(fake_server());
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
    let target = Target::seckill(fake_server());
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
fn timed_requests_wait_for_their_instant_and_busy_ones_are_retried() {
    let target = Target::seckill(fake_server());
    let t0 = Instant::now();
    // Order numbers of their own, far from the BUYs of the other tests.
    let ops = (0..100u64)
        .map(|i| {
            let at = t0 + Duration::from_millis(100 + 2 * i);
            let pay = Op::Pay {
                user: i,
                order_no: 1 << 40 | i,
            };
            (at, pay)
        })
        .collect();
    let mut plan = plan(Pace::Closed { pipeline: 2 }, None);
    plan.retry_busy = 3;
    let done = run(&plan, &target, &Timed::new(ops));
    // Nothing went before its time: the last is due at 298 ms, and its
    // retry comes 20 ms after its busy reply.
    assert!(
        t0.elapsed() >= Duration::from_millis(318),
        "{:?}",
        t0.elapsed()
    );
    assert_eq!(done.sent, 200, "each PAY twice: busy, then paid");
    let o = &done.recorder.outcomes;
    assert_eq!((o.ok, o.busy, o.lost), (100, 100, 0));
    assert_eq!(done.acks.len(), 100);
    assert!(done.acks.iter().all(|a| a.kind == AckKind::Paid));
    assert_eq!(done.recorder.by_request["pay"].len(), 200);
}

/// Greets, then reads and answers nothing: a server that hangs.
fn silent_server() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    std::thread::spawn(move || {
        for mut stream in listener.incoming().map_while(Result::ok) {
            std::thread::spawn(move || {
                let mut input = BytesMut::new();
                let mut chunk = [0u8; 16 * 1024];
                let mut greeted = false;
                while let Ok(n) = stream.read(&mut chunk) {
                    if n == 0 {
                        return;
                    }
                    input.extend_from_slice(&chunk[..n]);
                    if greeted {
                        continue;
                    }
                    if let Ok((frame, _)) = Frame::parse(&input, MAX_REQUEST_FRAME) {
                        let mut out = BytesMut::new();
                        Reply::Hello {
                            version: VERSION,
                            admin: false,
                            server: None,
                        }
                        .encode(Opcode::Hello as u8, frame.id, &mut out);
                        greeted = stream.write_all(&out).is_ok();
                    }
                }
            });
        }
    });
    addr
}

/// A run that stops on a stall counts the requests it sent and never got
/// an answer to as lost (their outcome unknown), and the slots it had not
/// sent yet as never sent (nothing done), not as lost.
#[test]
fn a_stalled_open_loop_counts_lost_and_never_sent_apart() {
    let target = Target::seckill(silent_server());
    let workload = Sustained::new(1, 1);
    let pace = Pace::Open {
        rate: 1000.0,
        max_in_flight: 2,
    };
    let mut plan = plan(pace, Some(Duration::from_millis(500)));
    plan.stall = Duration::from_millis(300);
    let done = run(&plan, &target, &workload);
    let o = &done.recorder.outcomes;
    assert_eq!(o.answered(), 0);
    assert_eq!(o.lost, done.sent, "{o:?}");
    // Every one a BUY, noted for the verification to ask after.
    assert_eq!(done.lost_buys.len() as u64, o.lost);
    // Six connections, two in flight each.
    assert_eq!(done.sent, 12, "{o:?}");
    assert!(o.unsent > 0, "{o:?}");
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
        &Target::seckill(addr),
        &workload,
    );
    assert_eq!(done.connected, 0);
    assert_eq!(done.recorder.outcomes.connection_failures, 6);
    assert_eq!(done.sent, 0);
}

#[test]
fn connections_are_spread_over_the_servers_round_robin() {
    let (a, b) = (fake_server(), fake_server());
    let down = {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr")
    };
    let target = Target::Seckill {
        addrs: vec![a, b, down],
        request_ids: None,
    };
    let workload = FlashCrowd::new(1, UserPicker::new(100, 1, 1), 600);
    // 7 connections over 2 threads (4 + 3): 3 to a, 2 to b, 2 to the dead
    // one, whichever thread holds them.
    let mut plan = plan(Pace::Closed { pipeline: 2 }, None);
    plan.connections = 7;
    let done = run(&plan, &target, &workload);
    let shares: Vec<(SocketAddr, usize, usize, u64)> = done
        .servers
        .iter()
        .map(|&(addr, c)| (addr, c.connections, c.connected, c.connection_failures))
        .collect();
    assert_eq!(shares, [(a, 3, 3, 0), (b, 2, 2, 0), (down, 2, 0, 2)]);
    assert_eq!(done.connected, 5);
    assert_eq!(done.recorder.outcomes.connection_failures, 2);
    let answered: u64 = done.servers.iter().map(|(_, c)| c.answered).sum();
    assert_eq!(answered, 600);
    assert!(done.servers[0].1.answered > 0 && done.servers[1].1.answered > 0);
    // Every acknowledgement names a server that took connections.
    assert!(done.acks.iter().all(|ack| ack.server < 2));
}
