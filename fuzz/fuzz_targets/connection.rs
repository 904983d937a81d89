//! A real server, in this process, fed arbitrary bytes on a connection.
//!
//! Each input is written to a fresh TCP connection (after a HELLO, with or
//! without the admin token, chosen by the input's first byte), the write
//! side is closed, and everything the server sends back is read. The target
//! fails if the server sends anything that is not a valid reply frame, if it
//! neither answers nor closes within seconds (a hung connection), or if a
//! second, well-behaved client stops being served. A panic in any server
//! thread aborts the process, so libFuzzer sees it too.
//!
//! The decoder has its own target (`proto/fuzz`); this one reaches the
//! reactor, the request handling and the workers behind them.
//!
//! Run from the repository's root (needs nightly and `cargo install
//! cargo-fuzz`), growing the untracked `fuzz/corpus/connection` from the
//! named seeds in `fuzz/seeds/connection` (CONTRIBUTING.md has more, and why
//! leak detection is off): `mkdir -p fuzz/corpus/connection &&
//! ASAN_OPTIONS=detect_leaks=0 cargo +nightly fuzz run connection
//! fuzz/corpus/connection fuzz/seeds/connection -- -max_total_time=600`
//!
//! The first byte of an input picks the HELLO (by its value modulo 3): 0
//! none, 1 without the token, 2 with it; the rest is sent as it is. The
//! seeds are frames as `proto/PROTOCOL.md` specifies them.

#![no_main]

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use bytes::BytesMut;
use clap::Parser;
use libfuzzer_sys::fuzz_target;
use seckill::{Config, Server};
use seckill_client::{Client, NewGoods};
use seckill_proto::{Frame, Reply, Request, Status, MAX_REPLY_FRAME, VERSION};

const TOKEN: &str = "fuzz-token";

struct Fixture {
    addr: SocketAddr,
    /// The well-behaved client beside the fuzzed ones.
    bystander: Mutex<Client>,
    _server: Server,
    _dir: tempfile::TempDir,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        // Any panic, in any thread, is a finding.
        let hook = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            hook(info);
            std::process::abort();
        }));
        let dir = tempfile::tempdir().expect("tempdir");
        let data = dir.path().join("fuzz.db");
        let config = Config::parse_from([
            "seckill-server",
            "--listen",
            "127.0.0.1:0",
            "--data",
            data.to_str().expect("utf-8 path"),
            "--admin-token",
            TOKEN,
            "--reactors",
            "1",
            "--workers",
            "1",
            "--frame-timeout",
            "2s",
        ]);
        let server = Server::start(&config).expect("start the server");
        let addr = server.local_addr();
        let mut admin = Client::builder(addr)
            .token(TOKEN)
            .connect()
            .expect("admin client");
        // Goods 1 on sale, goods 2 not yet: BUYs reach every gate.
        let now = seckill::testing::now_ms();
        for (name, start) in [("on sale", now - 1000), ("upcoming", now + 3_600_000)] {
            admin
                .add_goods(NewGoods {
                    name: name.into(),
                    price_cents: 100,
                    stock: 1_000_000,
                    start_ms: start,
                    end_ms: now + 7_200_000,
                    rules: Default::default(),
                })
                .expect("add goods");
        }
        let bystander = Client::builder(addr)
            .read_timeout(Duration::from_secs(5))
            .connect()
            .expect("bystander");
        Fixture {
            addr,
            bystander: Mutex::new(bystander),
            _server: server,
            _dir: dir,
        }
    })
}

fuzz_target!(|data: &[u8]| {
    let fixture = fixture();
    let mut conn = TcpStream::connect(fixture.addr).expect("connect");
    conn.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("read timeout");
    let mut out = BytesMut::new();
    match data.first().map(|b| b % 3) {
        Some(0) => {}
        Some(1) => Request::Hello {
            version: VERSION,
            token: String::new(),
        }
        .encode(1, &mut out),
        _ => Request::Hello {
            version: VERSION,
            token: TOKEN.into(),
        }
        .encode(1, &mut out),
    }
    out.extend_from_slice(data.get(1..).unwrap_or_default());
    // The server may close first (a bad frame): that is fine.
    let _ = conn.write_all(&out);
    let _ = conn.shutdown(Shutdown::Write);

    let mut received = Vec::new();
    let mut chunk = [0u8; 64 * 1024];
    loop {
        match conn.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => received.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break,
            Err(e) => panic!("the server neither answered nor closed: {e}"),
        }
    }
    let mut rest = &received[..];
    while !rest.is_empty() {
        let (frame, used) = Frame::parse(rest, MAX_REPLY_FRAME)
            .unwrap_or_else(|e| panic!("the server sent a broken frame: {e}"));
        assert!(frame.opcode & 0x80 != 0, "a reply without the reply bit");
        if Reply::decode(&frame).is_err() {
            // Replies to unknown opcodes have unknown opcodes too: their
            // body must still be an error status with a message.
            let status = frame.body.first().and_then(|&s| Status::from_u8(s));
            assert!(
                matches!(status, Some(s) if s != Status::Ok),
                "an undecodable reply {:#x}: {:?}",
                frame.opcode,
                frame.body
            );
        }
        rest = &rest[used..];
    }

    fixture
        .bystander
        .lock()
        .expect("bystander lock")
        .ping()
        .expect("the well-behaved client is still served");
});
