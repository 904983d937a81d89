//! The client against a scripted fake server over real TCP.

use std::net::{TcpListener, TcpStream};
use std::sync::mpsc;
use std::time::Duration;

use bytes::{BufMut, BytesMut};
use seckill_proto::{
    Drift, Goods, GoodsState, NewGoods, Opcode, Order, OrderState, Reply, Request, SaleAction,
    SaleRules, Stat, Status, ALL_GOODS, MAX_REPLY_FRAME, MIN_VERSION, NO_TOKEN, VERSION,
};

use crate::connection::Connection;
use crate::fake_server::{serve, serve_each, FakeConn};
use crate::{Cancellation, Client, ErrorKind, Payment, Pipeline, Purchase, PurchaseToken};

fn goods(id: u64) -> Goods {
    Goods {
        id,
        name: format!("goods {id}"),
        price_cents: 1999,
        total: 100,
        remaining: 42,
        start_ms: 1_700_000_000_000,
        end_ms: 1_700_003_600_000,
        state: GoodsState::OnSale,
        rules: SaleRules::default(),
    }
}

fn order(order_no: u64, user_id: u64, goods_id: u64, state: OrderState) -> Order {
    Order {
        order_no,
        user_id,
        goods_id,
        state,
        created_ms: 1_700_000_000_123,
        pay_by_ms: 1_700_000_900_123,
    }
}

fn error(status: Status) -> Reply {
    Reply::error(status, format!("because {status}"))
}

/// A greeted client to a fake running `script` after HELLO.
fn client_for(script: impl FnOnce(&mut FakeConn) + Send + 'static) -> Client {
    let (addr, _) = serve(|conn| {
        conn.greet(false);
        script(conn);
    });
    Client::builder(addr)
        .read_timeout(Duration::from_secs(2))
        .connect()
        .unwrap()
}

#[test]
fn pipeline_replies_are_put_back_in_request_order() {
    let (addr, server) = serve(|conn| {
        conn.greet(false);
        let batch = conn.take(4);
        // HELLO has an id of its own; the counter starts at 1, one id per
        // request.
        let ids: Vec<u64> = batch.iter().map(|r| r.id).collect();
        assert_eq!(ids, [1, 2, 3, 4]);
        let replies = [
            Reply::Bought { order_no: 1007 },
            Reply::Goods(goods(7)),
            error(Status::NoOrder),
            Reply::Pong,
        ];
        for (received, reply) in batch.iter().zip(&replies).rev() {
            conn.reply(received, reply);
        }
    });
    let mut client = Client::connect(addr).unwrap();
    let mut p = Pipeline::new();
    p.buy(1, 7).get_goods(7).order_status(2, 7).ping();
    let replies = client.execute(&p).unwrap();
    assert_eq!(
        replies,
        [
            Reply::Bought { order_no: 1007 },
            Reply::Goods(goods(7)),
            error(Status::NoOrder),
            Reply::Pong,
        ]
    );
    server.join().unwrap();
}

#[test]
fn a_pipeline_longer_than_the_window_is_topped_up_as_replies_come() {
    let (largest_tx, largest_rx) = mpsc::channel();
    let (addr, _) = serve(move |conn| {
        conn.greet(false);
        let largest = conn.answer_reversed(|request| match request {
            Request::Buy { user_id, .. } => Reply::Bought { order_no: *user_id },
            other => panic!("unexpected {other:?}"),
        });
        largest_tx.send(largest).unwrap();
    });
    let mut client = Client::builder(addr).max_in_flight(8).connect().unwrap();
    let mut p = Pipeline::new();
    for user in 0..100 {
        p.buy(user, 1);
    }
    let replies = client.execute(&p).unwrap();
    let expected: Vec<Reply> = (0..100)
        .map(|order_no| Reply::Bought { order_no })
        .collect();
    assert_eq!(replies, expected);
    drop(client);
    let largest = largest_rx.recv().unwrap();
    assert!((1..=8).contains(&largest), "{largest} requests in flight");
}

/// The fake's answers for the status-mapping test, keyed by goods id.
fn by_goods_id(request: &Request) -> Reply {
    match *request {
        Request::GetGoods { goods_id: 1 } => Reply::Goods(goods(1)),
        Request::GetGoods { goods_id: 2 } => error(Status::Busy),
        Request::GetGoods { .. } => error(Status::UnknownGoods),
        Request::Buy { goods_id, .. } => match goods_id {
            10 => Reply::Bought { order_no: 5 },
            11 => Reply::AlreadyBought { order_no: 4 },
            12 => error(Status::SoldOut),
            13 => error(Status::NotStarted),
            14 => error(Status::Ended),
            15 => error(Status::RateLimited),
            _ => error(Status::InternalError),
        },
        Request::OrderStatus { goods_id: 10, .. } => {
            Reply::Order(order(5, 1, 10, OrderState::Created))
        }
        Request::OrderStatus { .. } => error(Status::NoOrder),
        Request::Stats | Request::Reconcile { .. } | Request::SaleControl { .. } => {
            error(Status::Unauthorized)
        }
        Request::Restock { .. } => error(Status::BadRequest),
        _ => Reply::Pong,
    }
}

#[test]
fn typed_methods_map_replies_and_statuses() {
    let mut c = client_for(|conn| {
        conn.answer_reversed(by_goods_id);
    });
    assert!(!c.is_admin());
    assert_eq!(c.get_goods(1).unwrap(), goods(1));

    let busy = c.get_goods(2).unwrap_err();
    assert!(busy.is_busy());
    assert_eq!(busy.kind(), ErrorKind::Server(Status::Busy));
    assert_eq!(busy.server_message(), Some("because busy"));
    let unknown = c.get_goods(3).unwrap_err();
    assert_eq!(unknown.status(), Some(Status::UnknownGoods));

    assert_eq!(c.buy(1, 10).unwrap(), Purchase::Ordered(5));
    assert_eq!(c.buy(1, 11).unwrap(), Purchase::AlreadyBought(4));
    assert_eq!(c.buy(1, 12).unwrap(), Purchase::SoldOut);
    assert_eq!(c.buy(1, 13).unwrap(), Purchase::NotStarted);
    assert_eq!(c.buy(1, 14).unwrap(), Purchase::Ended);
    let limited = c.buy(1, 15).unwrap_err();
    assert_eq!(limited.kind(), ErrorKind::Server(Status::RateLimited));
    let internal = c.buy(1, 16).unwrap_err();
    assert_eq!(internal.kind(), ErrorKind::Server(Status::InternalError));

    assert_eq!(c.order_status(1, 10).unwrap().map(|o| o.order_no), Some(5));
    assert_eq!(c.order_status(1, 11).unwrap(), None);

    let denied = c.stats().unwrap_err();
    assert!(denied.is_unauthorized());
    assert!(c.reconcile(None).unwrap_err().is_unauthorized());
    assert!(c
        .sale_control(1, SaleAction::Pause)
        .unwrap_err()
        .is_unauthorized());
    let bad = c.restock(1, 5).unwrap_err();
    assert_eq!(bad.kind(), ErrorKind::Server(Status::BadRequest));
    // Error statuses leave the connection as it was.
    assert!(c.is_open());
    c.ping().unwrap();
}

#[test]
fn admin_calls_send_the_token_and_decode_their_replies() {
    let (addr, server) = serve(|conn| {
        assert_eq!(conn.greet(true), "s3cret");
        conn.answer_reversed(|request| match request {
            Request::AddGoods { goods: new, .. } => Reply::GoodsAdded(Goods {
                name: new.name.clone(),
                ..goods(9)
            }),
            Request::Restock { goods_id, .. } => Reply::Restocked(goods(*goods_id)),
            Request::Stats => Reply::Stats(vec![Stat {
                name: "buy_ok".into(),
                value: 3,
            }]),
            Request::Reconcile { goods_id: 4 } => Reply::Reconciled(vec![drift(4, None)]),
            Request::Reconcile { goods_id: 5 } => error(Status::UnknownGoods),
            Request::Reconcile {
                goods_id: ALL_GOODS,
            } => Reply::Reconciled(vec![drift(1, Some(41)), drift(4, None)]),
            other => panic!("unexpected {other:?}"),
        });
    });
    let mut admin = Client::builder(addr).token("s3cret").connect().unwrap();
    assert!(admin.is_admin());
    let new = NewGoods {
        name: "Phone".into(),
        price_cents: 99900,
        stock: 100,
        start_ms: 1,
        end_ms: 2,
        rules: SaleRules::default(),
        buckets: 1,
    };
    assert_eq!(admin.add_goods(new).unwrap().name, "Phone");
    assert_eq!(admin.restock(4, 10).unwrap().id, 4);
    assert_eq!(admin.stats().unwrap()[0].value, 3);
    assert_eq!(admin.reconcile(Some(4)).unwrap(), [drift(4, None)]);
    assert_eq!(
        admin.reconcile(None).unwrap(),
        [drift(1, Some(41)), drift(4, None)]
    );
    let unknown = admin.reconcile(Some(5)).unwrap_err();
    assert_eq!(unknown.status(), Some(Status::UnknownGoods));
    drop(admin);
    server.join().unwrap();
}

#[test]
fn buy_sends_its_purchase_token_and_maps_the_new_statuses() {
    let (addr, server) = serve(|conn| {
        conn.greet(false);
        conn.answer_reversed(|request| match *request {
            Request::Buy {
                user_id: 1,
                goods_id: 20,
                token,
                ..
            } => match token {
                NO_TOKEN => error(Status::TokenRequired),
                77 => Reply::Bought { order_no: 2077 },
                78 => error(Status::TokenInvalid),
                79 => error(Status::TokenExpired),
                80 => error(Status::TokenUsed),
                other => panic!("unexpected token {other}"),
            },
            Request::Buy { goods_id: 21, .. } => error(Status::Paused),
            Request::Ping => Reply::Pong,
            ref other => panic!("unexpected {other:?}"),
        });
    });
    let mut c = Client::connect(addr).unwrap();
    assert_eq!(
        c.buy_with_token(1, 20, 77).unwrap(),
        Purchase::Ordered(2077)
    );
    assert_eq!(c.buy(1, 21).unwrap(), Purchase::Paused);
    assert_eq!(Purchase::Paused.order_no(), None);

    // buy() sends NO_TOKEN, which such goods refuse.
    let required = c.buy(1, 20).unwrap_err();
    assert_eq!(required.kind(), ErrorKind::Server(Status::TokenRequired));
    assert!(required.needs_new_token());
    for (token, status) in [
        (78, Status::TokenInvalid),
        (79, Status::TokenExpired),
        (80, Status::TokenUsed),
    ] {
        let err = c.buy_with_token(1, 20, token).unwrap_err();
        assert_eq!(err.status(), Some(status));
        assert!(err.needs_new_token(), "{err}");
    }
    assert!(c.is_open());

    // Token 0 is NO_TOKEN on the wire: refused before sending, alone or in a
    // batch (the fake panics on a BUY of goods 22).
    let zero = c.buy_with_token(1, 22, NO_TOKEN).unwrap_err();
    assert_eq!(zero.kind(), ErrorKind::InvalidInput);
    assert!(zero.to_string().contains("means no token"), "{zero}");
    let mut p = Pipeline::new();
    p.ping().buy_with_token(1, 22, NO_TOKEN);
    assert_eq!(p.len(), 1);
    assert_eq!(c.execute(&p).unwrap_err().kind(), ErrorKind::InvalidInput);
    c.ping().unwrap();
    drop(c);
    server.join().unwrap();
}

/// The fake's answers for PAY, CANCEL, LIST_ORDERS and TOKEN, all for user
/// 1: order 5 is live, 6 is cancelled on PAY and paid on CANCEL; any other
/// order, or another user, has none.
fn checkout(request: &Request) -> Reply {
    match *request {
        Request::Token {
            user_id: 1,
            goods_id: 20,
        } => Reply::Token {
            token: 0xdead_beef_cafe,
            expires_ms: 1_700_000_060_000,
        },
        Request::Token { goods_id: 21, .. } => error(Status::Paused),
        Request::Pay {
            user_id: 1,
            order_no: 5,
        } => Reply::Paid(order(5, 1, 10, OrderState::Paid)),
        Request::Pay {
            user_id: 1,
            order_no: 6,
        } => error(Status::OrderCancelled),
        Request::Cancel {
            user_id: 1,
            order_no: 5,
        } => Reply::Cancelled(order(5, 1, 10, OrderState::Cancelled)),
        Request::Cancel {
            user_id: 1,
            order_no: 6,
        } => error(Status::OrderPaid),
        Request::Pay { .. } | Request::Cancel { .. } => error(Status::NoOrder),
        Request::ListOrders { user_id: 1 } => Reply::Orders(vec![
            order(6, 1, 11, OrderState::Paid),
            order(5, 1, 10, OrderState::Created),
        ]),
        Request::ListOrders { user_id: 2 } => Reply::Orders(vec![]),
        Request::ListOrders { .. } => error(Status::Busy),
        ref other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn checkout_calls_map_replies_and_statuses() {
    let mut c = client_for(|conn| {
        conn.answer_reversed(checkout);
    });
    let token = c.purchase_token(1, 20).unwrap();
    assert_eq!(
        token,
        PurchaseToken {
            token: 0xdead_beef_cafe,
            expires_ms: 1_700_000_060_000,
        }
    );
    // A bearer capability stays out of logs.
    let shown = format!("{token:?}");
    assert!(
        !shown.contains(&0xdead_beef_cafe_u64.to_string()),
        "{shown}"
    );
    assert!(shown.contains("1700000060000"), "{shown}");
    let paused = c.purchase_token(1, 21).unwrap_err();
    assert_eq!(paused.kind(), ErrorKind::Server(Status::Paused));

    let paid = c.pay(1, 5).unwrap();
    assert_eq!(paid, Payment::Paid(order(5, 1, 10, OrderState::Paid)));
    assert_eq!(paid.order().map(|o| o.pay_by_ms), Some(1_700_000_900_123));
    assert_eq!(c.pay(1, 6).unwrap(), Payment::OrderCancelled);
    assert_eq!(Payment::OrderCancelled.order(), None);
    let not_hers = c.pay(2, 5).unwrap_err();
    assert_eq!(not_hers.kind(), ErrorKind::Server(Status::NoOrder));
    assert_eq!(not_hers.server_message(), Some("because no_order"));

    let cancelled = c.cancel(1, 5).unwrap();
    assert_eq!(
        cancelled.order().map(|o| o.state),
        Some(OrderState::Cancelled)
    );
    assert_eq!(c.cancel(1, 6).unwrap(), Cancellation::OrderPaid);
    assert_eq!(Cancellation::OrderPaid.order(), None);
    assert_eq!(c.cancel(1, 7).unwrap_err().status(), Some(Status::NoOrder));

    let orders = c.list_orders(1).unwrap();
    let numbers: Vec<u64> = orders.iter().map(|o| o.order_no).collect();
    assert_eq!(numbers, [6, 5]);
    assert_eq!(c.list_orders(2).unwrap(), []);
    assert!(c.list_orders(3).unwrap_err().is_busy());
    assert!(c.is_open());
}

#[test]
fn admin_sale_control_and_goods_rules_go_over_the_wire() {
    let (addr, server) = serve(|conn| {
        conn.greet(true);
        conn.answer_reversed(|request| match request {
            // Echo the rules, so that the test sees what was encoded.
            Request::AddGoods { goods: new, .. } => Reply::GoodsAdded(Goods {
                rules: new.rules,
                ..goods(9)
            }),
            Request::SaleControl { goods_id: 8, .. } => error(Status::UnknownGoods),
            Request::SaleControl { goods_id, action } => {
                let before = goods(*goods_id);
                Reply::SaleChanged(match *action {
                    SaleAction::Pause => Goods {
                        state: GoodsState::Paused,
                        ..before
                    },
                    SaleAction::Resume => before,
                    SaleAction::End => Goods {
                        state: GoodsState::Ended,
                        end_ms: 1_700_000_500_000,
                        ..before
                    },
                    SaleAction::Window { start_ms, end_ms } => Goods {
                        state: GoodsState::Upcoming,
                        start_ms,
                        end_ms,
                        ..before
                    },
                })
            }
            other => panic!("unexpected {other:?}"),
        });
    });
    let mut admin = Client::builder(addr).token("s3cret").connect().unwrap();
    let rules = SaleRules {
        per_user_limit: 3,
        pay_window_ms: 90_000,
        token_required: true,
    };
    let new = NewGoods {
        name: "Phone".into(),
        price_cents: 99900,
        stock: 100,
        start_ms: 1,
        end_ms: 2,
        rules,
        buckets: 1,
    };
    assert_eq!(admin.add_goods(new).unwrap().rules, rules);

    let paused = admin.sale_control(4, SaleAction::Pause).unwrap();
    assert_eq!((paused.id, paused.state), (4, GoodsState::Paused));
    let resumed = admin.sale_control(4, SaleAction::Resume).unwrap();
    assert_eq!(resumed.state, GoodsState::OnSale);
    let ended = admin.sale_control(4, SaleAction::End).unwrap();
    assert_eq!(
        (ended.state, ended.end_ms),
        (GoodsState::Ended, 1_700_000_500_000)
    );
    let window = SaleAction::Window {
        start_ms: 1_800_000_000_000,
        end_ms: 1_800_000_600_000,
    };
    let moved = admin.sale_control(4, window).unwrap();
    assert_eq!(
        (moved.start_ms, moved.end_ms),
        (1_800_000_000_000, 1_800_000_600_000)
    );
    let unknown = admin.sale_control(8, SaleAction::Pause).unwrap_err();
    assert_eq!(unknown.status(), Some(Status::UnknownGoods));
    drop(admin);
    server.join().unwrap();
}

#[test]
fn pipeline_helpers_build_the_new_requests() {
    let mut p = Pipeline::new();
    p.buy(1, 2)
        .buy_with_token(1, 2, 77)
        .purchase_token(1, 2)
        .pay(1, 5)
        .cancel(1, 6)
        .list_orders(1)
        .sale_control(2, SaleAction::End);
    assert_eq!(
        p.requests(),
        [
            Request::Buy {
                user_id: 1,
                goods_id: 2,
                token: NO_TOKEN,
                request_id: None,
            },
            Request::Buy {
                user_id: 1,
                goods_id: 2,
                token: 77,
                request_id: None,
            },
            Request::Token {
                user_id: 1,
                goods_id: 2,
            },
            Request::Pay {
                user_id: 1,
                order_no: 5,
            },
            Request::Cancel {
                user_id: 1,
                order_no: 6,
            },
            Request::ListOrders { user_id: 1 },
            Request::SaleControl {
                goods_id: 2,
                action: SaleAction::End,
            },
        ]
    );
}

fn drift(goods_id: u64, found_remaining: Option<u32>) -> Drift {
    Drift {
        goods_id,
        found_remaining,
        found_holders: 3,
        remaining: 42,
        holders: 3,
    }
}

#[test]
fn reconcile_of_goods_0_is_refused_before_sending() {
    let (addr, server) = serve(|conn| {
        conn.greet(true);
        // Only the PINGs and the valid batch get here: one RECONCILE for
        // every goods (id 0), one for goods 7.
        conn.answer_reversed(|request| match request {
            Request::Ping => Reply::Pong,
            Request::Reconcile { goods_id } => Reply::Reconciled(vec![drift(*goods_id, Some(1))]),
            other => panic!("unexpected {other:?}"),
        });
    });
    let mut c = Client::builder(addr).token("s3cret").connect().unwrap();
    let err = c.reconcile(Some(0)).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
    assert!(err.to_string().contains("ids start at 1"), "{err}");
    c.ping().unwrap();

    let mut p = Pipeline::new();
    p.ping().reconcile(Some(0)).reconcile(Some(7));
    assert_eq!(p.len(), 2);
    assert_eq!(c.execute(&p).unwrap_err().kind(), ErrorKind::InvalidInput);
    assert!(c.is_open());
    c.ping().unwrap();

    p.clear();
    p.reconcile(None).reconcile(Some(7));
    assert_eq!(
        p.requests(),
        [
            Request::Reconcile {
                goods_id: ALL_GOODS
            },
            Request::Reconcile { goods_id: 7 },
        ]
    );
    assert_eq!(
        c.execute(&p).unwrap(),
        [
            Reply::Reconciled(vec![drift(0, Some(1))]),
            Reply::Reconciled(vec![drift(7, Some(1))]),
        ]
    );
    drop(c);
    server.join().unwrap();
}

#[test]
fn a_refused_hello_fails_connect_with_its_status() {
    let (addr, _) = serve(move |conn| {
        let hello = conn.next().unwrap();
        conn.reply(&hello, &error(Status::Unauthorized));
    });
    let err = Client::builder(addr).token("wrong").connect().unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Server(Status::Unauthorized));
    assert!(err.is_unauthorized());
}

/// A server that speaks only version 1 refuses HELLO of version 2 and
/// closes; the client connects again and speaks version 1 to it, and
/// learns nothing of its limits (a version 1 HELLO reply has none).
#[test]
fn a_version_1_server_is_spoken_to_in_version_1() {
    let (addr, server) = serve_each(2, |index, conn| {
        let hello = conn.next().unwrap();
        let Request::Hello { version, .. } = hello.request else {
            panic!("first request was {:?}", hello.request);
        };
        assert_eq!(
            hello.id.to_be_bytes(),
            *b"\r\nseck\r\n",
            "HELLO's id is two lines"
        );
        if index == 0 {
            assert_eq!(version, VERSION);
            conn.reply(&hello, &error(Status::UnsupportedVersion));
            return;
        }
        assert_eq!(version, MIN_VERSION);
        let v1 = Reply::Hello {
            version: 1,
            admin: false,
            server: None,
        };
        conn.reply(&hello, &v1);
        let ping = conn.next().unwrap();
        conn.reply(&ping, &Reply::Pong);
    });
    let mut client = Client::connect(addr).unwrap();
    assert_eq!(client.server_version(), 1);
    assert!(client.server_info().is_none());
    client.ping().unwrap();
    drop(client);
    server.join().unwrap();
}

/// A server that speaks no version of ours: the error names the status.
#[test]
fn a_server_of_no_common_version_fails_connect() {
    let (addr, _) = serve_each(2, |_, conn| {
        let hello = conn.next().unwrap();
        conn.reply(&hello, &error(Status::UnsupportedVersion));
    });
    let err = Client::connect(addr).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Server(Status::UnsupportedVersion));
}

/// A line-based server on the wrong port answers HELLO at once (its id
/// ends in CR LF), and the error shows what it said.
#[test]
fn a_line_server_is_named_quickly_with_what_it_said() {
    use std::io::{BufRead, BufReader, Write};
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        let (stream, _) = listener.accept().unwrap();
        let mut line = Vec::new();
        // Like Redis: wait for a line end, then refuse the command.
        BufReader::new(&stream)
            .read_until(b'\n', &mut line)
            .unwrap();
        (&stream).write_all(b"-ERR unknown command\r\n").unwrap();
        std::thread::sleep(Duration::from_secs(10));
    });
    let started = std::time::Instant::now();
    let err = Client::builder(addr)
        .read_timeout(Duration::from_secs(5))
        .connect()
        .unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(2), "{err}");
    assert_eq!(err.kind(), ErrorKind::Protocol);
    let said = err.to_string();
    assert!(said.contains("-ERR unknown command\\x0d\\x0a"), "{said}");
    assert!(said.contains("not a seckill server"), "{said}");
}

#[test]
fn an_oversized_reply_length_is_refused_before_it_is_buffered() {
    let (addr, _) = serve(|conn| {
        let mut bytes = vec![0xff; 4];
        bytes.extend_from_slice(&[0xa0; 64]);
        conn.raw(&bytes);
        // Hold the connection open, so the client's error is its own.
        conn.next();
    });
    let mut conn = Connection::new(TcpStream::connect(addr).unwrap(), MAX_REPLY_FRAME, None);
    let err = conn.read_frame().unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Protocol);
    assert!(err.to_string().contains("over the limit"), "{err}");
    assert!(conn.inbound_capacity() <= 64 * 1024);
    // The stream cannot be delimited any more: the connection is done.
    assert!(conn.read_frame().unwrap_err().is_closed());
}

#[test]
fn an_oversized_reply_breaks_the_client() {
    let mut c = client_for(|conn| {
        conn.take(1);
        conn.raw(&u32::MAX.to_be_bytes());
        conn.next();
    });
    assert_eq!(c.ping().unwrap_err().kind(), ErrorKind::Protocol);
    assert!(!c.is_open());
    assert!(c.ping().unwrap_err().is_closed());
}

#[test]
fn a_read_timeout_is_reported_and_breaks_the_client() {
    let mut c = client_for(|conn| {
        conn.take(1);
        // Never answer; wait for the client to give up and close.
        conn.next();
    });
    c.set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let err = c.ping().unwrap_err();
    assert!(err.is_timeout(), "{err:?}");
    // A late PONG could be taken for the next request's reply.
    assert!(c.ping().unwrap_err().is_closed());
}

/// A server that trickles its reply (here a byte every 60 ms, each read
/// well within the timeout) times out all the same: the read timeout bounds
/// the whole reply, not each read of it.
#[test]
fn a_reply_trickled_a_byte_at_a_time_times_out() {
    let mut c = client_for(|conn| {
        let ping = conn.take(1).remove(0);
        let mut reply = bytes::BytesMut::new();
        Reply::Pong.encode(ping.opcode, ping.id, &mut reply);
        for byte in reply.iter() {
            conn.raw(&[*byte]);
            std::thread::sleep(Duration::from_millis(60));
        }
        conn.next();
    });
    c.set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let started = std::time::Instant::now();
    let err = c.ping().unwrap_err();
    assert!(err.is_timeout(), "{err:?}");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    assert!(c.ping().unwrap_err().is_closed());
}

/// The server's connection-level error frame closes the connection, and
/// fails the requests in flight as closed (their outcome unknown), not with
/// its status: that `bad_request` is about the connection, and may be
/// another caller's doing on a connection many share, where a BUY told
/// `bad_request` would not be retried though it may have bought.
#[test]
fn the_connection_level_error_frame_fails_what_is_in_flight_as_closed() {
    let mut c = client_for(|conn| {
        conn.take(1);
        conn.give_up(Status::BadRequest, "frame too large");
    });
    let err = c.ping().unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Closed);
    assert_eq!(err.status(), None);
    assert!(err.to_string().contains("frame too large"), "{err}");
    assert!(c.ping().unwrap_err().is_closed());
}

/// A server that refuses the connection as it accepts it (its connection
/// limits) sends the connection-level error frame with `busy` before any
/// reply: connecting fails as `busy`, retry later, as the async client's
/// connecting does; nothing of the caller's was in flight.
#[test]
fn a_connection_refused_as_busy_fails_to_connect_as_busy() {
    let (addr, _) =
        serve(|conn| conn.give_up(Status::Busy, "too many connections from your address"));
    let err = Client::builder(addr)
        .read_timeout(Duration::from_secs(2))
        .connect()
        .unwrap_err();
    assert!(err.is_busy(), "{err:?}");
    assert!(err.is_retryable());
}

#[test]
fn an_undecodable_reply_fails_its_batch_but_not_the_connection() {
    let mut c = client_for(|conn| {
        let batch = conn.take(2);
        // PONG with a stray byte after its status.
        let mut out = BytesMut::new();
        out.put_u32(11);
        out.put_u8(Opcode::Ping as u8 | 0x80);
        out.put_u64(batch[1].id);
        out.put_slice(&[0, 1]);
        conn.raw(&out);
        conn.reply(&batch[0], &Reply::Pong);
        conn.answer_reversed(|_| Reply::Pong);
    });
    let mut p = Pipeline::new();
    p.ping().ping();
    let err = c.execute(&p).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Protocol);
    assert!(err.to_string().contains("after the last field"), "{err}");
    assert!(c.is_open());
    c.ping().unwrap();
}

#[test]
fn a_reply_to_an_id_never_sent_breaks_the_client() {
    let mut c = client_for(|conn| {
        let ping = conn.take(1).remove(0);
        let mut out = BytesMut::new();
        Reply::Pong.encode(ping.opcode, 999, &mut out);
        conn.raw(&out);
        conn.next();
    });
    assert_eq!(c.ping().unwrap_err().kind(), ErrorKind::Protocol);
    assert!(!c.is_open());
}

#[test]
fn a_server_that_hangs_up_gives_closed() {
    let mut c = client_for(|conn| {
        conn.take(1);
    });
    assert!(c.ping().unwrap_err().is_closed());
}

#[test]
fn a_refused_connection_is_io_and_names_the_address() {
    let addr = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let err = Client::connect(addr).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Io);
    assert!(err.to_string().contains(&addr.to_string()), "{err}");
}

#[test]
fn a_name_over_the_limit_is_refused_before_sending() {
    let mut c = client_for(|conn| {
        conn.answer_reversed(|_| Reply::Pong);
    });
    let new = NewGoods {
        name: "x".repeat(201),
        price_cents: 1,
        stock: 1,
        start_ms: 1,
        end_ms: 2,
        rules: SaleRules::default(),
        buckets: 1,
    };
    assert_eq!(
        c.add_goods(new).unwrap_err().kind(),
        ErrorKind::InvalidInput
    );
    c.ping().unwrap();
}

#[test]
fn an_empty_pipeline_sends_nothing() {
    let mut c = client_for(|conn| {
        conn.answer_reversed(|_| Reply::Pong);
    });
    assert_eq!(c.execute(&Pipeline::new()).unwrap(), []);
    c.ping().unwrap();
}
