//! The async client's builder and the options its connections get.

use std::fmt;
use std::time::Duration;

use crate::aio::Client;
use crate::client::{DEFAULT_MAX_IN_FLIGHT, DEFAULT_TIMEOUT};
use crate::error::{Error, Result};

/// The shortest wait before dialling again after every server failed.
pub const DEFAULT_BACKOFF_MIN: Duration = Duration::from_millis(50);
/// The longest wait before dialling again after every server failed.
pub const DEFAULT_BACKOFF_MAX: Duration = Duration::from_secs(2);

/// What every connection of an async client is opened with.
#[derive(Clone)]
pub(crate) struct Options {
    pub(crate) token: String,
    pub(crate) connect_timeout: Duration,
    pub(crate) request_timeout: Duration,
    pub(crate) max_in_flight: usize,
    pub(crate) request_ids: bool,
    pub(crate) backoff_min: Duration,
    pub(crate) backoff_max: Duration,
}

/// Hand-written so that the token never reaches a log line.
impl fmt::Debug for Options {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Options")
            .field("token", &crate::servers::shown_token(&self.token))
            .field("connect_timeout", &self.connect_timeout)
            .field("request_timeout", &self.request_timeout)
            .field("max_in_flight", &self.max_in_flight)
            .field("request_ids", &self.request_ids)
            .field("backoff_min", &self.backoff_min)
            .field("backoff_max", &self.backoff_max)
            .finish()
    }
}

/// Options for an async [`Client`], made by [`Client::builder`].
#[derive(Debug, Clone)]
pub struct ClientBuilder {
    addrs: Vec<String>,
    options: Options,
}

impl ClientBuilder {
    pub(crate) fn new(addr: impl Into<String>) -> ClientBuilder {
        ClientBuilder {
            addrs: vec![addr.into()],
            options: Options {
                token: String::new(),
                connect_timeout: DEFAULT_TIMEOUT,
                request_timeout: DEFAULT_TIMEOUT,
                max_in_flight: DEFAULT_MAX_IN_FLIGHT,
                request_ids: true,
                backoff_min: DEFAULT_BACKOFF_MIN,
                backoff_max: DEFAULT_BACKOFF_MAX,
            },
        }
    }

    /// Adds servers after those given so far (`host:port` each), to move to
    /// in this order when a connection fails. All must sell from the same
    /// stores: a retry may land on any of them.
    pub fn addrs<S: Into<String>>(mut self, more: impl IntoIterator<Item = S>) -> Self {
        self.addrs.extend(more.into_iter().map(Into::into));
        self
    }

    /// The admin token to present in HELLO; none (or empty) for no admin
    /// rights.
    pub fn token(mut self, token: impl Into<String>) -> Self {
        self.options.token = token.into();
        self
    }

    /// How long connecting to one server and greeting it may take; with
    /// several servers, at most half the request timeout (so that a call
    /// has time left to try the next one). Default 5 s.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.options.connect_timeout = timeout;
        self
    }

    /// How long one call may take in all, connecting and retries included;
    /// also how long a server may stay silent with requests in flight
    /// before its connection is taken for dead. Default 5 s.
    pub fn request_timeout(mut self, timeout: Duration) -> Self {
        self.options.request_timeout = timeout;
        self
    }

    /// The most requests unanswered on the connection at once (at least
    /// 1); more calls wait their turn. Default
    /// [`DEFAULT_MAX_IN_FLIGHT`](crate::DEFAULT_MAX_IN_FLIGHT), under the
    /// server's limit so that it never stops reading us.
    pub fn max_in_flight(mut self, requests: usize) -> Self {
        self.options.max_in_flight = requests.max(1);
        self
    }

    /// Whether [`Client::buy`] and [`Client::buy_with_token`] give each BUY
    /// a fresh client request id, which makes their retries safe. Default
    /// on; off only for servers that predate request ids.
    pub fn request_ids(mut self, on: bool) -> Self {
        self.options.request_ids = on;
        self
    }

    /// How long to wait before dialling again after every server failed:
    /// `min` after the first round, doubling up to `max`. Calls in the
    /// meantime fail at once with [`ErrorKind::Closed`](crate::ErrorKind::Closed)
    /// rather than pile up on a dead address. Default 50 ms to 2 s.
    pub fn backoff(mut self, min: Duration, max: Duration) -> Self {
        self.options.backoff_min = min;
        self.options.backoff_max = max.max(min);
        self
    }

    /// The client, not yet connected: it dials at its first call, and
    /// again whenever its connection fails. For a service that may start
    /// before the seckill servers do.
    ///
    /// Fails with [`ErrorKind::InvalidInput`](crate::ErrorKind::InvalidInput)
    /// for a zero timeout.
    pub fn build(self) -> Result<Client> {
        if self.options.connect_timeout.is_zero() || self.options.request_timeout.is_zero() {
            return Err(Error::invalid_input("a timeout of zero"));
        }
        Ok(Client::new(self.addrs, self.options))
    }

    /// The client, connected to the first server that greets it: fails as
    /// [`Client::ping`] does when none can be reached or HELLO is refused
    /// (`unauthorized` for a wrong token).
    pub async fn connect(self) -> Result<Client> {
        let client = self.build()?;
        client.ping().await?;
        Ok(client)
    }
}
