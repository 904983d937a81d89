use seckill_client::Purchase;
use seckill_proto::{Reply, Request, Status};

use crate::harness::{on_sale, Got, Raw, Server};

fn bad_request(got: Got, opcode: u8, id: u64) {
    match got {
        Got::Frame {
            opcode: o,
            id: i,
            reply: Reply::Error { status, message },
        } => {
            assert_eq!((o, i), (opcode, id), "reply header");
            assert_eq!(status, Status::BadRequest, "{message}");
            assert!(!message.is_empty());
        }
        other => panic!("expected bad_request, got {other:?}"),
    }
}

/// The connection-level error frame, then the close.
fn refused_and_closed(raw: &mut Raw) {
    let frames = raw.until_closed();
    assert_eq!(
        frames.len(),
        1,
        "one error frame before the close: {frames:?}"
    );
    let frame = frames.into_iter().next().unwrap();
    bad_request(frame, 0xff, 0);
}

/// Sends a frame with any opcode and body.
fn frame(opcode: u8, id: u64, body: &[u8]) -> Vec<u8> {
    let mut f = Vec::new();
    f.extend_from_slice(&(9 + body.len() as u32).to_be_bytes());
    f.push(opcode);
    f.extend_from_slice(&id.to_be_bytes());
    f.extend_from_slice(body);
    f
}

#[test]
fn bad_frames_get_errors_and_other_clients_keep_their_service() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("m.db"), &[]);
    let goods = server.admin().add_goods(on_sale("cup", 1000)).unwrap();
    let mut bystander = server.client();
    let mut next_user = 0;
    let mut still_served = |bystander: &mut seckill_client::Client| {
        next_user += 1;
        bystander.ping().expect("bystander ping");
        assert!(matches!(
            bystander.buy(next_user, goods.id).expect("bystander buy"),
            Purchase::Ordered(_)
        ));
    };

    // Body-level errors: answered under the frame's own id; the connection
    // goes on.
    let mut raw = Raw::greeted(server.addr);
    raw.send(&frame(0x55, 42, b"whatever"));
    bad_request(raw.next(), 0xd5, 42);
    raw.send(&frame(0x11, 43, &[0, 0, 1])); // GET_GOODS needs 8 bytes
    bad_request(raw.next(), 0x91, 43);
    raw.send(&frame(0x02, 44, b"x")); // PING has no body
    bad_request(raw.next(), 0x82, 44);
    raw.send(&frame(0x02, 45, b""));
    assert_eq!(
        raw.next(),
        Got::Frame {
            opcode: 0x82,
            id: 45,
            reply: Reply::Pong
        }
    );
    still_served(&mut bystander);

    // A request before HELLO.
    let mut raw = Raw::connect(server.addr);
    raw.request(7, &Request::Ping);
    bad_request(raw.next(), 0x82, 7);
    still_served(&mut bystander);

    // Lengths the server cannot accept: over the maximum, 4 GiB, under the
    // header size. The limit is checked from the prefix alone.
    for prefix in [
        (64 * 1024 + 1u32).to_be_bytes(),
        u32::MAX.to_be_bytes(),
        0u32.to_be_bytes(),
        8u32.to_be_bytes(),
    ] {
        let mut raw = Raw::greeted(server.addr);
        raw.send(&prefix);
        refused_and_closed(&mut raw);
        still_served(&mut bystander);
    }

    // A wrong protocol version.
    let mut raw = Raw::connect(server.addr);
    raw.request(
        1,
        &Request::Hello {
            version: 999,
            token: String::new(),
        },
    );
    let frames = raw.until_closed();
    match frames.as_slice() {
        [Got::Frame {
            opcode: 0x81,
            id: 1,
            reply: Reply::Error { status, .. },
        }] => {
            assert_eq!(*status, Status::UnsupportedVersion)
        }
        other => panic!("wrong version answered {other:?}"),
    }
    still_served(&mut bystander);

    // Random bytes, then end of input: every frame the server sends back is
    // a valid reply, and it closes the connection (never hangs).
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    for round in 0..20 {
        let mut junk = vec![0u8; 1 + round * 997];
        for b in junk.iter_mut() {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            *b = seed as u8;
        }
        let mut raw = if round % 2 == 0 {
            Raw::greeted(server.addr)
        } else {
            Raw::connect(server.addr)
        };
        raw.send(&junk);
        raw.stream.shutdown(std::net::Shutdown::Write).unwrap();
        let _ = raw.until_closed();
        still_served(&mut bystander);
    }
}

/// A client that sends its requests and shuts its side at once: the data
/// and the end of input may come in one readiness event, with no edge after
/// it. It gets every answer, and then the server closes the connection,
/// long before any idle timeout.
#[test]
fn a_peer_that_shuts_its_side_gets_its_answers_and_a_close() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("m.db"), &[]);
    for round in 0..20 {
        let mut raw = Raw::connect(server.addr);
        let mut bytes = Vec::new();
        for (id, request) in [
            Request::Hello {
                version: 1,
                token: String::new(),
            },
            Request::Ping,
            Request::Ping,
        ]
        .iter()
        .enumerate()
        {
            let mut buf = bytes::BytesMut::new();
            request.encode(id as u64 + 1, &mut buf);
            bytes.extend_from_slice(&buf);
        }
        raw.send(&bytes);
        raw.stream.shutdown(std::net::Shutdown::Write).unwrap();
        let started = std::time::Instant::now();
        let got = raw.until_closed();
        assert_eq!(got.len(), 3, "round {round}: {got:?}");
        assert!(
            started.elapsed() < std::time::Duration::from_secs(5),
            "round {round}: closed after {:?}",
            started.elapsed()
        );
    }
}

/// A client that pipelines many requests and reads slowly, then sends a
/// frame the server cannot take and more bytes after it: it gets every
/// reply, then the error frame, then the close. Closing the socket with
/// that input unread would make the kernel reset the connection and throw
/// away the replies still queued for the client.
#[test]
fn a_slow_reader_closed_for_a_bad_frame_gets_every_reply_first() {
    use std::io::Write;
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("m.db"), &[]);
    // A small receive buffer: the replies wait in the server's socket.
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    socket.connect(&server.addr.into()).unwrap();
    let mut raw = Raw::from_stream(socket.into());
    raw.hello();

    const PINGS: u64 = 3000;
    let mut bytes = bytes::BytesMut::new();
    for id in 0..PINGS {
        Request::Ping.encode(100 + id, &mut bytes);
    }
    bytes.extend_from_slice(&(64 * 1024 + 1u32).to_be_bytes());
    // Less than the server drops once it has shut its side (256 KiB), far
    // more than it read before it closed at once.
    bytes.extend_from_slice(&vec![0u8; 192 * 1024]);
    let mut writer = raw.stream.try_clone().unwrap();
    let sender = std::thread::spawn(move || {
        // The server may close before it all went: not the point here.
        let _ = writer.write_all(&bytes);
    });
    std::thread::sleep(std::time::Duration::from_millis(500));
    let frames = raw.until_closed();
    let pongs = frames
        .iter()
        .filter(|f| {
            matches!(
                f,
                Got::Frame {
                    reply: Reply::Pong,
                    ..
                }
            )
        })
        .count();
    assert_eq!(pongs as u64, PINGS, "replies lost");
    assert_eq!(frames.len() as u64, PINGS + 1, "{:?}", frames.last());
    bad_request(frames.into_iter().last().unwrap(), 0xff, 0);
    sender.join().unwrap();
}

/// A BUY still at a worker when a later frame on its connection is bad:
/// its reply comes first, then the error frame, the last frame on the
/// connection (PROTOCOL.md 7.1). A client takes that frame for the close
/// and fails what is still in flight as in doubt, so a reply behind it
/// would be thrown away.
#[test]
fn the_error_frame_comes_after_the_replies_in_flight() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("m.db"), &[]);
    let goods = server.admin().add_goods(on_sale("lamp", 100)).unwrap().id;
    for round in 0..5u64 {
        let mut raw = Raw::greeted(server.addr);
        let mut bytes = bytes::BytesMut::new();
        Request::Buy {
            user_id: 100 + round,
            goods_id: goods,
            token: seckill_proto::NO_TOKEN,
            request_id: None,
        }
        .encode(7, &mut bytes);
        bytes.extend_from_slice(&(64 * 1024 + 1u32).to_be_bytes());
        raw.send(&bytes);
        let frames = raw.until_closed();
        assert_eq!(frames.len(), 2, "round {round}: {frames:?}");
        match &frames[0] {
            Got::Frame {
                id: 7,
                reply: Reply::Bought { .. },
                ..
            } => {}
            other => panic!("round {round}: first {other:?}"),
        }
        let last = frames.into_iter().last().unwrap();
        bad_request(last, 0xff, 0);
    }
}
