//! The servers a client knows, how it connects to one, and when a request
//! that met a failed connection may go to the next.
//!
//! ```text
//!   call ─▶ connection up? ─no─▶ dial the next server ─fails─▶ the one after … (each once a call)
//!               │yes                    │greeted
//!               ▼                       ▼
//!            exchange ─connection failed─▶ safe to send again? ─yes─▶ dial the next server
//!               │                              │no
//!               ▼                              ▼
//!            replies                     the error (the next call dials the next server)
//! ```
//!
//! A client of one server never dials again: after a failure it is broken,
//! as it always was, and the caller connects anew.

use std::fmt;
use std::io;
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use seckill_proto::{Request, Status};

use crate::error::{Error, ErrorKind, Result};

/// What every connection of a client is opened with; kept by the client to
/// connect again.
#[derive(Clone)]
pub(crate) struct Options {
    pub(crate) token: String,
    pub(crate) connect_timeout: Duration,
    pub(crate) read_timeout: Option<Duration>,
    pub(crate) write_timeout: Option<Duration>,
    pub(crate) max_in_flight: usize,
    /// BUYs made by `buy()` carry a fresh client request id.
    pub(crate) request_ids: bool,
}

/// An admin token as a `Debug` shows it: whether there is one, never what.
pub(crate) fn shown_token(token: &str) -> &'static str {
    if token.is_empty() {
        ""
    } else {
        "<redacted>"
    }
}

/// Hand-written so that the token never reaches a log line.
impl fmt::Debug for Options {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Options")
            .field("token", &shown_token(&self.token))
            .field("connect_timeout", &self.connect_timeout)
            .field("read_timeout", &self.read_timeout)
            .field("write_timeout", &self.write_timeout)
            .field("max_in_flight", &self.max_in_flight)
            .field("request_ids", &self.request_ids)
            .finish()
    }
}

/// One server of a client's list, as resolved when the client was built.
///
/// Names are resolved once: the client keeps addresses, not the caller's
/// `ToSocketAddrs` value, which may borrow. A name that did not resolve is
/// kept with its error, and passed over in its turn.
#[derive(Debug, Clone)]
pub(crate) enum Server {
    /// Its addresses, tried in order as one server.
    Resolved(Vec<SocketAddr>),
    Unresolved(String),
}

impl Server {
    /// A TCP connection to the first of its addresses that accepts, set up
    /// with `options`.
    pub(crate) fn open(&self, options: &Options) -> Result<TcpStream> {
        let addrs = match self {
            Server::Resolved(addrs) => addrs,
            Server::Unresolved(why) => {
                return Err(Error::io(
                    "resolving the server address",
                    io::Error::new(io::ErrorKind::NotFound, why.clone()),
                ))
            }
        };
        let mut last_error = None;
        for &addr in addrs {
            match TcpStream::connect_timeout(&addr, options.connect_timeout) {
                Ok(stream) => return configure(stream, addr, options),
                Err(e) => last_error = Some(Error::io(format!("connecting to {addr}"), e)),
            }
        }
        Err(last_error.unwrap_or_else(|| {
            Error::io(
                "resolving the server address",
                io::Error::new(io::ErrorKind::NotFound, "it resolved to no address"),
            )
        }))
    }
}

fn configure(stream: TcpStream, addr: SocketAddr, options: &Options) -> Result<TcpStream> {
    let doing = || format!("setting up the connection to {addr}");
    stream
        .set_nodelay(true)
        .and_then(|()| stream.set_read_timeout(options.read_timeout))
        .and_then(|()| stream.set_write_timeout(options.write_timeout))
        .map_err(|e| Error::io(doing(), e))?;
    Ok(stream)
}

/// Whether a failure to connect to a server, or to greet it, is a reason to
/// try the next one. Nothing of the caller's was sent yet, so any request
/// may go on; only a refusal that every server would repeat (a wrong token,
/// a version none speaks, a request the protocol cannot carry) stops there.
/// A server at its connection limits (`busy`) is one server's state.
pub(crate) fn dial_failed(err: &Error) -> bool {
    matches!(
        err.kind(),
        ErrorKind::Io
            | ErrorKind::Closed
            | ErrorKind::Timeout
            | ErrorKind::Protocol
            | ErrorKind::Server(Status::Busy)
    )
}

/// The error of a call that no server answered: `later`, what stopped it
/// last; but if its requests were in flight when a connection failed
/// (`in_doubt`), closed, the outcome unknown, whatever `later` says of its
/// own server (a `busy` there would say "nothing was done").
pub(crate) fn gave_up(in_doubt: Option<Error>, later: Option<Error>) -> Error {
    match (in_doubt, later) {
        (Some(first), None) => first,
        (Some(first), Some(later)) => {
            Error::closed(format!("{first}, with the request in flight; then {later}"))
        }
        (None, Some(later)) => later,
        (None, None) => Error::closed("no server could be reached"),
    }
}

/// Whether a request that may have reached a server has failed with its
/// connection (refused, reset, closed), so that the next server may be
/// asked. A timeout is not: the caller set how long a call may take, and
/// sending again elsewhere would take that much again.
pub(crate) fn connection_failed(err: &Error) -> bool {
    matches!(err.kind(), ErrorKind::Io | ErrorKind::Closed)
}

/// Whether `request` may be sent again after a connection failed with it in
/// flight: doing it twice must do no more than doing it once, for it may
/// have been done.
///
/// - Reads, and HELLO, change nothing.
/// - PAY and CANCEL are idempotent by the protocol (section 9); so are the
///   sale controls (a pause of a paused sale, an end of an ended one, the
///   same window) and RECONCILE ("safe to send again").
/// - TOKEN issues one more token: harmless, the first is never used.
/// - BUY is safe with a client request id (a repeat gets the first answer).
///   Without one it is not: a bare BUY of goods whose limit is over 1 could
///   buy twice, and so could one with a purchase token sent to a server
///   that restarted since and forgot its tokens (the embedded store's are
///   in memory): the repeat is told `token_invalid`, and the caller buys
///   again with a new token (PROTOCOL.md, section 9).
/// - ADD_GOODS without a request id would make a second goods, RESTOCK add
///   the units twice; ADD_GOODS with one finds the goods the first made.
pub(crate) fn safe_to_resend(request: &Request) -> bool {
    match request {
        Request::Buy { request_id, .. } => request_id.is_some(),
        // Named by a request id, a repeat gets the goods the first made.
        Request::AddGoods { request_id, .. } => request_id.is_some(),
        Request::Restock { .. } => false,
        Request::Hello { .. }
        | Request::Ping
        | Request::ListGoods
        | Request::GetGoods { .. }
        | Request::OrderStatus { .. }
        | Request::Pay { .. }
        | Request::Cancel { .. }
        | Request::ListOrders { .. }
        | Request::Token { .. }
        | Request::Stats
        | Request::Reconcile { .. }
        | Request::SaleControl { .. }
        | Request::Stock { .. } => true,
    }
}

/// `request` as it is sent again: a BUY or an ADD_GOODS under a request id
/// marked a repeat.
pub(crate) fn as_repeat(request: &Request) -> Request {
    match request {
        Request::AddGoods {
            goods,
            request_id: Some(id),
        } => Request::AddGoods {
            goods: goods.clone(),
            request_id: Some(id.repeat()),
        },
        &Request::Buy {
            user_id,
            goods_id,
            token,
            request_id: Some(id),
        } => Request::Buy {
            user_id,
            goods_id,
            token,
            request_id: Some(id.repeat()),
        },
        other => other.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use seckill_proto::{NewGoods, RequestId, SaleAction, SaleRules, NO_TOKEN};

    #[test]
    fn only_requests_that_cannot_act_twice_are_sent_again() {
        let buy = |token, request_id| Request::Buy {
            user_id: 1,
            goods_id: 2,
            token,
            request_id,
        };
        assert!(!safe_to_resend(&buy(NO_TOKEN, None)));
        assert!(safe_to_resend(&buy(NO_TOKEN, RequestId::new(9))));
        // A token alone is not enough: a restarted embedded server has
        // forgotten it, and the repeat would buy again with a new one.
        assert!(!safe_to_resend(&buy(77, None)));
        assert!(safe_to_resend(&buy(77, RequestId::new(9))));
        assert!(!safe_to_resend(&Request::Restock {
            goods_id: 2,
            amount: 5
        }));
        let add = |request_id| Request::AddGoods {
            goods: NewGoods {
                name: "x".into(),
                price_cents: 1,
                stock: 1,
                start_ms: 1,
                end_ms: 2,
                rules: SaleRules::default(),
                buckets: 1,
            },
            request_id,
        };
        assert!(!safe_to_resend(&add(None)));
        assert!(safe_to_resend(&add(RequestId::new(5))));
        assert!(safe_to_resend(&Request::Pay {
            user_id: 1,
            order_no: 3
        }));
        assert!(safe_to_resend(&Request::SaleControl {
            goods_id: 2,
            action: SaleAction::End
        }));
    }

    #[test]
    fn timeouts_move_a_dial_on_but_not_a_request() {
        let timeout = Error::io("reading a reply", io::ErrorKind::WouldBlock.into());
        let reset = Error::io("reading a reply", io::ErrorKind::ConnectionReset.into());
        let refused = Error::io("connecting", io::ErrorKind::ConnectionRefused.into());
        let busy = Error::server(seckill_proto::Status::Busy, "full");
        assert!(dial_failed(&timeout) && dial_failed(&reset) && dial_failed(&refused));
        // A server full up at connect: the next may have room.
        assert!(dial_failed(&busy));
        assert!(!dial_failed(&Error::server(
            seckill_proto::Status::Unauthorized,
            "no"
        )));
        assert!(connection_failed(&reset) && connection_failed(&refused));
        assert!(!connection_failed(&timeout));
        assert!(!connection_failed(&busy));
    }
}
