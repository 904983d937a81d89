//! The one error type of the client, and what kind of failure it is.

use std::io;

use seckill_proto::Status;
use thiserror::Error;

/// What went wrong, in the coarse terms a caller branches on.
///
/// Use [`Error::kind`] to get it. Flash-sale outcomes are not errors: those of
/// BUY (sold out, not started, ended, paused) are a
/// [`Purchase`](crate::Purchase), PAY of a cancelled order is a
/// [`Payment`](crate::Payment), CANCEL of a paid one a
/// [`Cancellation`](crate::Cancellation).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The socket failed: connection refused, address not resolvable, a
    /// write or read error that is neither a timeout nor a close.
    Io,
    /// Connecting, reading or writing took longer than its timeout.
    Timeout,
    /// The server closed the connection, or this client can no longer be used
    /// because an earlier call broke it.
    Closed,
    /// The server sent something this client cannot make sense of: a frame
    /// over the size limit, an undecodable body, a reply to a request that
    /// was never sent, or a reply of the wrong kind.
    Protocol,
    /// The caller asked for something that cannot be sent, such as a goods
    /// name over the protocol's limit. Nothing was sent.
    InvalidInput,
    /// The server answered with an error status (`busy`, `unauthorized`,
    /// `unknown_goods`, `bad_request`, `token_expired`, ...). Its message is
    /// kept in the error.
    Server(Status),
}

/// An error from the client: a socket failure, a broken protocol exchange, or
/// an error status from the server.
///
/// It is deliberately opaque, like `redis::RedisError`: branch on
/// [`kind`](Error::kind) or the predicates, read the server's words with
/// [`server_message`](Error::server_message).
#[derive(Debug, Error)]
#[error("{}", describe(self.kind, &self.detail))]
pub struct Error {
    kind: ErrorKind,
    /// For `Server`, the server's message verbatim; otherwise what the client
    /// was doing, said for people.
    detail: String,
    #[source]
    source: Option<io::Error>,
}

/// Shorthand for results of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The Display text. The io source is not repeated here: it is returned by
/// `source()`, so an error reporter that walks the chain shows it once.
fn describe(kind: ErrorKind, detail: &str) -> String {
    match kind {
        ErrorKind::Server(status) if detail.is_empty() => format!("server replied {status}"),
        ErrorKind::Server(status) => format!("server replied {status}: {detail}"),
        ErrorKind::Protocol => format!("protocol error: {detail}"),
        ErrorKind::InvalidInput => format!("invalid request: {detail}"),
        ErrorKind::Io | ErrorKind::Timeout | ErrorKind::Closed => detail.to_owned(),
    }
}

impl Error {
    /// What kind of failure this is.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The status the server answered with, for [`ErrorKind::Server`].
    pub fn status(&self) -> Option<Status> {
        match self.kind {
            ErrorKind::Server(status) => Some(status),
            _ => None,
        }
    }

    /// The server's message, for [`ErrorKind::Server`]. Meant for people:
    /// branch on [`status`](Error::status), never on this text.
    pub fn server_message(&self) -> Option<&str> {
        match self.kind {
            ErrorKind::Server(_) => Some(&self.detail),
            _ => None,
        }
    }

    /// Connecting, reading or writing timed out.
    pub fn is_timeout(&self) -> bool {
        self.kind == ErrorKind::Timeout
    }

    /// The server said `busy`: nothing was done, retry later.
    pub fn is_busy(&self) -> bool {
        self.status() == Some(Status::Busy)
    }

    /// Nothing was done and the same call may succeed if made again a little
    /// later: the server said `busy`, `rate_limited` or `pending` (the first
    /// try of this request is still being written).
    pub fn is_retryable(&self) -> bool {
        self.status().is_some_and(Status::is_retryable)
    }

    /// The server said `unauthorized`: a wrong admin token in HELLO, or an
    /// admin command on a connection without admin rights.
    pub fn is_unauthorized(&self) -> bool {
        self.status() == Some(Status::Unauthorized)
    }

    /// The server refused the purchase token of a BUY: none was given for
    /// goods that require one (`token_required`), or it was not issued to
    /// this user for this goods (`token_invalid`), expired (`token_expired`)
    /// or already spent on a unit no longer held (`token_used`). Each is
    /// mended the same way: get a new token with
    /// [`Client::purchase_token`](crate::Client::purchase_token) and BUY
    /// with it.
    pub fn needs_new_token(&self) -> bool {
        matches!(
            self.status(),
            Some(
                Status::TokenRequired
                    | Status::TokenInvalid
                    | Status::TokenExpired
                    | Status::TokenUsed
            )
        )
    }

    /// The connection is gone (closed by the server or broken by an earlier
    /// error); a new [`Client`](crate::Client) is needed.
    pub fn is_closed(&self) -> bool {
        self.kind == ErrorKind::Closed
    }

    /// The error for an error status the server answered with: what a
    /// caller of [`Client::request`](crate::Client::request) that got a
    /// [`Reply::Error`](crate::Reply::Error) makes of it, or a test of code
    /// that handles the client's errors.
    pub fn from_status(status: Status, message: impl Into<String>) -> Error {
        Error::server(status, message)
    }

    pub(crate) fn server(status: Status, message: impl Into<String>) -> Error {
        Error::new(ErrorKind::Server(status), message.into(), None)
    }

    pub(crate) fn protocol(detail: impl Into<String>) -> Error {
        Error::new(ErrorKind::Protocol, detail.into(), None)
    }

    pub(crate) fn invalid_input(detail: impl Into<String>) -> Error {
        Error::new(ErrorKind::InvalidInput, detail.into(), None)
    }

    pub(crate) fn closed(detail: impl Into<String>) -> Error {
        Error::new(ErrorKind::Closed, detail.into(), None)
    }

    /// A deadline that passed without a socket call timing out: the async
    /// client's per-call deadline, or a server silent for too long.
    #[cfg_attr(not(feature = "tokio"), allow(dead_code))]
    pub(crate) fn timeout(detail: impl Into<String>) -> Error {
        Error::new(ErrorKind::Timeout, detail.into(), None)
    }

    /// The same failure for another caller: the async client's connection
    /// fails every request in flight with the error that broke it. The io
    /// source cannot be cloned; its text is kept in the detail.
    #[cfg_attr(not(feature = "tokio"), allow(dead_code))]
    pub(crate) fn duplicate(&self) -> Error {
        let detail = match &self.source {
            Some(source) => format!("{}: {source}", describe(self.kind, &self.detail)),
            None => self.detail.clone(),
        };
        let detail = match self.kind {
            // describe() already said it once; keep the bare detail.
            ErrorKind::Server(_) | ErrorKind::Protocol | ErrorKind::InvalidInput => {
                self.detail.clone()
            }
            ErrorKind::Io | ErrorKind::Timeout | ErrorKind::Closed => detail,
        };
        Error::new(self.kind, detail, None)
    }

    /// Wraps a socket error, sorting timeouts and closes out of plain I/O
    /// failures. `doing` says what the client was doing, e.g. "reading a
    /// reply".
    pub(crate) fn io(doing: impl Into<String>, source: io::Error) -> Error {
        let doing = doing.into();
        match source.kind() {
            // A read with a timeout reports WouldBlock on Unix and TimedOut
            // on Windows; connect_timeout reports TimedOut.
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => Error::new(
                ErrorKind::Timeout,
                format!("timed out {doing}"),
                Some(source),
            ),
            io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::BrokenPipe
            | io::ErrorKind::UnexpectedEof => Error::new(
                ErrorKind::Closed,
                format!("connection closed by the server while {doing}"),
                Some(source),
            ),
            _ => Error::new(ErrorKind::Io, format!("{doing} failed"), Some(source)),
        }
    }

    fn new(kind: ErrorKind, detail: String, source: Option<io::Error>) -> Error {
        Error {
            kind,
            detail,
            source,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn io_errors_are_sorted_into_timeout_closed_and_io() {
        let timeout = Error::io("reading a reply", io::ErrorKind::WouldBlock.into());
        assert!(timeout.is_timeout());
        assert_eq!(timeout.to_string(), "timed out reading a reply");

        let reset = Error::io("reading a reply", io::ErrorKind::ConnectionReset.into());
        assert!(reset.is_closed());

        let refused = Error::io(
            "connecting to 127.0.0.1:1",
            io::ErrorKind::ConnectionRefused.into(),
        );
        assert_eq!(refused.kind(), ErrorKind::Io);
        assert!(std::error::Error::source(&refused).is_some());
    }

    #[test]
    fn server_errors_keep_status_and_message() {
        let err = Error::server(Status::Busy, "queue full");
        assert!(err.is_busy());
        assert!(!err.is_unauthorized());
        assert_eq!(err.status(), Some(Status::Busy));
        assert_eq!(err.server_message(), Some("queue full"));
        assert_eq!(err.to_string(), "server replied busy: queue full");
        assert_eq!(Error::protocol("x").status(), None);
    }

    #[test]
    fn busy_rate_limited_and_pending_and_only_those_are_retryable() {
        for status in [Status::Busy, Status::RateLimited, Status::Pending] {
            assert!(Error::server(status, "").is_retryable(), "{status}");
        }
        let pending = Error::server(Status::Pending, "being written");
        assert!(!pending.is_busy(), "pending is its own status");
        for status in [
            Status::InternalError,
            Status::Unauthorized,
            Status::BadRequest,
        ] {
            assert!(!Error::server(status, "").is_retryable(), "{status}");
        }
        assert!(!Error::protocol("x").is_retryable());
    }

    #[test]
    fn every_token_refusal_and_only_those_need_a_new_token() {
        for status in [
            Status::TokenRequired,
            Status::TokenInvalid,
            Status::TokenExpired,
            Status::TokenUsed,
        ] {
            assert!(Error::server(status, "").needs_new_token(), "{status}");
        }
        for status in [Status::Paused, Status::Unauthorized, Status::BadRequest] {
            assert!(!Error::server(status, "").needs_new_token(), "{status}");
        }
        assert!(!Error::invalid_input("token 0").needs_new_token());
    }
}
