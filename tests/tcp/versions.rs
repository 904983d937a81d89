//! Protocol versions over real TCP: what HELLO of each version gets, byte
//! for byte where the form matters, and ADD_GOODS named by a request id.

use std::time::{SystemTime, UNIX_EPOCH};

use seckill_client::Client;
use seckill_proto::{
    Capabilities, Reply, Request, RequestId, ServerInfo, Status, MAX_REQUEST_FRAME, MIN_VERSION,
    VERSION,
};

use crate::harness::{on_sale, Backends, Got, Raw, Server};

fn hello(raw: &mut Raw, version: u16) -> Got {
    raw.request(
        1,
        &Request::Hello {
            version,
            token: String::new(),
        },
    );
    raw.next()
}

fn now_ms() -> u64 {
    let since = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    since.as_millis() as u64
}

#[test]
fn hello_of_each_version_gets_that_version_s_reply() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("v.db"), &[]);

    // Version 1: the reply of version 1, byte for byte (its test vector),
    // which a version 1 client reads: nothing after `admin`.
    let mut v1 = Raw::connect(server.addr);
    v1.request(
        1,
        &Request::Hello {
            version: 1,
            token: String::new(),
        },
    );
    let mut bytes = [0u8; 17];
    std::io::Read::read_exact(&mut v1.stream, &mut bytes).unwrap();
    assert_eq!(
        bytes,
        [0, 0, 0, 0x0d, 0x81, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 1, 0]
    );

    // Version 2: the server's versions, limits, clock and capabilities.
    let mut v2 = Raw::connect(server.addr);
    let before = now_ms();
    let Got::Frame {
        reply:
            Reply::Hello {
                version: 2,
                admin: false,
                server: Some(info),
            },
        ..
    } = hello(&mut v2, 2)
    else {
        panic!("HELLO of version 2 got no version 2 reply");
    };
    let after = now_ms();
    let ServerInfo {
        min_version,
        max_version,
        max_request_frame,
        max_in_flight,
        server_time_ms,
        capabilities,
    } = info;
    assert_eq!((min_version, max_version), (MIN_VERSION, VERSION));
    assert_eq!((max_request_frame, max_in_flight), (MAX_REQUEST_FRAME, 256));
    assert!(
        (before..=after).contains(&server_time_ms),
        "{before} {server_time_ms} {after}"
    );
    assert!(capabilities.contains(Capabilities::BUY_REQUEST_ID));
    assert!(capabilities.contains(Capabilities::ADD_GOODS_REQUEST_ID));
    assert!(!capabilities.contains(Capabilities::ADMIN_LISTENER_ONLY));

    // A version the server does not speak: refused, and the connection
    // closed after the reply.
    for version in [0, VERSION + 1] {
        let mut raw = Raw::connect(server.addr);
        match hello(&mut raw, version) {
            Got::Frame { reply, .. } => assert_eq!(reply.status(), Status::UnsupportedVersion),
            other => panic!("HELLO of version {version}: {other:?}"),
        }
        assert!(matches!(raw.next(), Got::Closed));
    }

    // The client speaks the newest version and tells what it learnt.
    let client = server.client();
    assert_eq!(client.server_version(), VERSION);
    assert_eq!(client.server_info().map(|i| i.max_version), Some(VERSION));
}

/// A second HELLO is handled like the first: it replaces the version and
/// the admin rights, and a refused one leaves the connection not greeted.
#[test]
fn a_second_hello_replaces_what_the_first_agreed() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("h.db"), &[]);
    let mut raw = Raw::connect(server.addr);
    assert!(matches!(
        hello(&mut raw, 2),
        Got::Frame {
            reply: Reply::Hello { version: 2, .. },
            ..
        }
    ));
    assert!(matches!(
        hello(&mut raw, 1),
        Got::Frame {
            reply: Reply::Hello {
                version: 1,
                server: None,
                ..
            },
            ..
        }
    ));
    raw.request(
        1,
        &Request::Hello {
            version: 2,
            token: "wrong".into(),
        },
    );
    match raw.next() {
        Got::Frame { reply, .. } => assert_eq!(reply.status(), Status::Unauthorized),
        other => panic!("{other:?}"),
    }
    raw.request(2, &Request::Ping);
    match raw.next() {
        Got::Frame { reply, .. } => assert_eq!(reply.status(), Status::BadRequest),
        other => panic!("{other:?}"),
    }
}

/// With `--admin-listen`, the public listener's HELLO says so: a client
/// learns not to send its admin token there.
#[test]
fn the_public_listener_says_admin_commands_are_elsewhere() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("a.db"), &["--admin-listen", "127.0.0.1:0"]);
    let client = Client::connect(server.addr).unwrap();
    let caps = client.server_info().expect("version 2").capabilities;
    assert!(caps.contains(Capabilities::ADMIN_LISTENER_ONLY));
}

/// ADD_GOODS sent again under its request id (a lost reply, a restart)
/// gets the goods the first one made: one goods, on SQLite and on MySQL.
fn a_retried_add_goods_makes_one_goods(start: &dyn Fn() -> Server) {
    let id = RequestId::new(0x0123_4567_89ab_cdef_fedc_ba98_7654_3210).unwrap();
    let server = start();
    let first = server
        .admin()
        .add_goods_with_request_id(on_sale("lamp", 3), id)
        .unwrap();
    // A repeat, marked so or not, on a new connection.
    for again in [id, id.repeat()] {
        let same = server
            .admin()
            .add_goods_with_request_id(on_sale("lamp", 3), again)
            .unwrap();
        assert_eq!(same.id, first.id);
    }
    // One id for another goods is the client's mistake.
    let other = server
        .admin()
        .add_goods_with_request_id(on_sale("desk", 3), id)
        .unwrap_err();
    assert_eq!(other.status(), Some(Status::BadRequest));
    server.terminate();

    let server = start();
    let after_restart = server
        .admin()
        .add_goods_with_request_id(on_sale("lamp", 3), id)
        .unwrap();
    assert_eq!(after_restart.id, first.id);
    assert_eq!(server.client().list_goods().unwrap().len(), 1);
    // Without an id, or with another, a new goods.
    let fresh = RequestId::new(5).unwrap();
    let second = server
        .admin()
        .add_goods_with_request_id(on_sale("lamp", 3), fresh)
        .unwrap();
    assert_ne!(second.id, first.id);
    assert_eq!(server.client().list_goods().unwrap().len(), 2);
}

#[test]
fn a_retried_add_goods_makes_one_goods_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("add.db");
    a_retried_add_goods_makes_one_goods(&|| Server::start(&data, &[]));
}

#[test]
fn a_retried_add_goods_makes_one_goods_on_mysql() {
    let dir = tempfile::tempdir().unwrap();
    let stores = Backends::new();
    let args = stores.args("durable");
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let data = dir.path().join("unused.db");
    a_retried_add_goods_makes_one_goods(&|| Server::start(&data, &args));
}
