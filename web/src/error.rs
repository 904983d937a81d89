//! How a failure becomes an HTTP answer: one JSON shape,
//! `{"error": "<code>", "message": "..."}`, and the status a browser or a
//! mobile app can act on. Overload is told apart from failure: the server's
//! `busy` (and an unreachable server) is 503 with `Retry-After`, a rate
//! limit 429 with `Retry-After`.

use axum::extract::rejection::JsonRejection;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use seckill_client::{Error as ClientError, ErrorKind, Status};
use serde_json::json;

/// An API failure, as the gateway answers it.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// No session, or one that does not verify.
    #[error("log in first")]
    Unauthenticated,
    /// The admin console needs the admin session.
    #[error("admin login required")]
    NotAdmin,
    /// The request itself is wrong: a field that does not parse.
    #[error("{0}")]
    BadRequest(String),
    /// No such goods or order.
    #[error("{0}")]
    NotFound(String),
    /// No such goods, as the servers say it (`unknown_goods`).
    #[error("no goods {0}")]
    UnknownGoods(u64),
    /// This session sent more than its rate allows.
    #[error("too many requests; retry in {retry_after_s} s")]
    RateLimited {
        /// Whole seconds until the next request is allowed.
        retry_after_s: u64,
    },
    /// The gateway was started without what this needs.
    #[error("{0}")]
    Disabled(String),
    /// A change that is not safe to send again (RESTOCK) may or may not
    /// have been made: its connection failed or timed out after it was
    /// sent. What to check first is in the message.
    #[error("{0}")]
    InDoubt(String),
    /// The request's JSON body could not be read: not JSON, not the
    /// fields asked for, too large, or not sent in time.
    #[error("{}", .0.body_text())]
    Body(JsonRejection),
    /// The seckill server answered with an error, or could not be reached.
    #[error(transparent)]
    Client(#[from] ClientError),
    /// The gateway itself failed (no random source): 500, logged.
    #[error("{0}")]
    Internal(String),
    /// A failure of a moment ago, answered again ([`crate::catalog`]).
    #[error("{}", .0.message)]
    Again(crate::catalog::Failure),
}

impl ApiError {
    /// The HTTP status, the machine-readable code and the `Retry-After`
    /// seconds (for overload) of this failure.
    pub fn parts(&self) -> (StatusCode, &'static str, Option<u64>) {
        match self {
            ApiError::Unauthenticated => (StatusCode::UNAUTHORIZED, "unauthenticated", None),
            ApiError::NotAdmin => (StatusCode::UNAUTHORIZED, "not_admin", None),
            ApiError::BadRequest(_) => (StatusCode::BAD_REQUEST, "bad_request", None),
            ApiError::InDoubt(_) => (StatusCode::GATEWAY_TIMEOUT, "outcome_unknown", None),
            ApiError::NotFound(_) => (StatusCode::NOT_FOUND, "not_found", None),
            ApiError::UnknownGoods(_) => (StatusCode::NOT_FOUND, "unknown_goods", None),
            ApiError::RateLimited { retry_after_s } => (
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                Some(*retry_after_s),
            ),
            ApiError::Disabled(_) => (StatusCode::NOT_FOUND, "disabled", None),
            ApiError::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal_error", None),
            ApiError::Body(rejection) => body_parts(rejection),
            ApiError::Client(e) => client_parts(e),
            ApiError::Again(failure) => failure.parts,
        }
    }
}

/// Servers that cannot be reached right now: 503 `unavailable`, retry in a
/// second.
pub(crate) const UNAVAILABLE: (StatusCode, &str, Option<u64>) =
    (StatusCode::SERVICE_UNAVAILABLE, "unavailable", Some(1));

fn body_parts(rejection: &JsonRejection) -> (StatusCode, &'static str, Option<u64>) {
    if timed_out(rejection) {
        return (StatusCode::REQUEST_TIMEOUT, "request_timeout", None);
    }
    match rejection.status() {
        StatusCode::PAYLOAD_TOO_LARGE => (StatusCode::PAYLOAD_TOO_LARGE, "too_large", None),
        _ => (StatusCode::BAD_REQUEST, "bad_request", None),
    }
}

/// Whether the body failed because it did not arrive in time (the serving
/// loop's deadline, `serve::Deadline`): somewhere down the error's sources.
fn timed_out(rejection: &JsonRejection) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(rejection);
    while let Some(error) = source {
        if error
            .downcast_ref::<std::io::Error>()
            .is_some_and(|e| e.kind() == std::io::ErrorKind::TimedOut)
        {
            return true;
        }
        source = error.source();
    }
    false
}

fn client_parts(e: &ClientError) -> (StatusCode, &'static str, Option<u64>) {
    match e.kind() {
        ErrorKind::Server(status) => match status {
            // Nothing was done: the same request may succeed in a moment.
            Status::Busy | Status::Pending => {
                (StatusCode::SERVICE_UNAVAILABLE, status.as_str(), Some(1))
            }
            Status::RateLimited => (StatusCode::TOO_MANY_REQUESTS, status.as_str(), Some(1)),
            Status::UnknownGoods | Status::NoOrder => {
                (StatusCode::NOT_FOUND, status.as_str(), None)
            }
            Status::TokenRequired
            | Status::TokenInvalid
            | Status::TokenExpired
            | Status::TokenUsed => (StatusCode::FORBIDDEN, status.as_str(), None),
            Status::NotStarted
            | Status::Ended
            | Status::Paused
            | Status::SoldOut
            | Status::OrderCancelled
            | Status::OrderPaid
            | Status::AlreadyBought => (StatusCode::CONFLICT, status.as_str(), None),
            Status::BadRequest => (StatusCode::BAD_REQUEST, status.as_str(), None),
            // The gateway's own admin token, or a server it cannot use.
            Status::Unauthorized
            | Status::UnsupportedVersion
            | Status::InternalError
            | Status::Ok => (StatusCode::BAD_GATEWAY, status.as_str(), None),
        },
        // The servers cannot be reached right now: as overloaded as busy.
        ErrorKind::Io | ErrorKind::Timeout | ErrorKind::Closed => UNAVAILABLE,
        ErrorKind::InvalidInput => (StatusCode::BAD_REQUEST, "bad_request", None),
        _ => (StatusCode::BAD_GATEWAY, "bad_gateway", None),
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code, retry_after) = self.parts();
        if status.is_server_error() {
            log::warn!("{code}: {self}");
        }
        let body = json!({ "error": code, "message": self.to_string() });
        let mut response = (status, Json(body)).into_response();
        if let Some(seconds) = retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overload_is_503_or_429_with_retry_after() {
        let busy = ApiError::Client(test_error(Status::Busy));
        assert_eq!(
            busy.parts(),
            (StatusCode::SERVICE_UNAVAILABLE, "busy", Some(1))
        );
        let limited = ApiError::Client(test_error(Status::RateLimited));
        assert_eq!(limited.parts().0, StatusCode::TOO_MANY_REQUESTS);
        let ours = ApiError::RateLimited { retry_after_s: 2 };
        let response = ours.into_response();
        assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(response.headers()[header::RETRY_AFTER], "2");
        let response = busy.into_response();
        assert_eq!(response.headers()[header::RETRY_AFTER], "1");
    }

    /// A client error with a server status.
    fn test_error(status: Status) -> ClientError {
        ClientError::from_status(status, "test")
    }
}
