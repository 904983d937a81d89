//! The builder: one server or several, and the options every connection to
//! them gets.

use std::fmt;
use std::io;
use std::net::ToSocketAddrs;
use std::time::Duration;

use crate::client::{Client, DEFAULT_MAX_IN_FLIGHT, DEFAULT_TIMEOUT};
use crate::error::{Error, Result};
use crate::servers::{Options, Server};

/// Options for a client, made by [`Client::builder`].
///
/// A client knows one server, or several with [`addrs`](Self::addrs): it
/// talks to one at a time and moves to the next when a connection to it
/// fails (see [`Client`] for when a request is sent again).
#[derive(Clone)]
pub struct ClientBuilder<A> {
    addrs: Vec<A>,
    options: Options,
}

impl<A: ToSocketAddrs> ClientBuilder<A> {
    pub(crate) fn new(addr: A) -> ClientBuilder<A> {
        ClientBuilder {
            addrs: vec![addr],
            options: Options {
                token: String::new(),
                connect_timeout: DEFAULT_TIMEOUT,
                read_timeout: Some(DEFAULT_TIMEOUT),
                write_timeout: Some(DEFAULT_TIMEOUT),
                max_in_flight: DEFAULT_MAX_IN_FLIGHT,
                request_ids: true,
            },
        }
    }

    /// Adds servers after those given so far, to move to in this order when
    /// a connection fails: `Client::builder(a).addrs([b, c])` knows a, b
    /// and c, and starts with a.
    ///
    /// All of them must sell from the same stores (the same sale): a retry
    /// may land on any of them.
    pub fn addrs(mut self, more: impl IntoIterator<Item = A>) -> Self {
        self.addrs.extend(more);
        self
    }

    /// The admin token to present in HELLO. Without one (or with an empty
    /// one) the connection has no admin rights.
    pub fn token(mut self, token: impl Into<String>) -> Self {
        self.options.token = token.into();
        self
    }

    /// How long to wait for the TCP connection to each resolved address.
    /// Default 5 s. Zero is refused by [`connect`](Self::connect).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.options.connect_timeout = timeout;
        self
    }

    /// How long a reply may take to arrive whole, once the client waits
    /// for it (a server that sends it a byte at a time times out too);
    /// `None` waits forever. Default 5 s. `Some(Duration::ZERO)` is
    /// refused by [`connect`](Self::connect). In a [`Pipeline`](crate::Pipeline)
    /// each reply has its own: a server that answers, slowly, within it
    /// every time keeps a batch of N requests waiting up to N times it
    /// (a server that stops answering fails the batch after one).
    pub fn read_timeout(mut self, timeout: impl Into<Option<Duration>>) -> Self {
        self.options.read_timeout = timeout.into();
        self
    }

    /// How long one write may block; `None` waits forever. Default 5 s.
    pub fn write_timeout(mut self, timeout: impl Into<Option<Duration>>) -> Self {
        self.options.write_timeout = timeout.into();
        self
    }

    /// The most requests of a [`Pipeline`](crate::Pipeline) in flight at
    /// once (at least 1). Default [`DEFAULT_MAX_IN_FLIGHT`].
    pub fn max_in_flight(mut self, requests: usize) -> Self {
        self.options.max_in_flight = requests.max(1);
        self
    }

    /// Whether [`Client::buy`] and [`Client::buy_with_token`] give each BUY
    /// a fresh client request id, which makes their retries safe. Default
    /// on. Turn it off only for servers that predate request ids: they
    /// refuse a BUY that carries one (`bad_request`, nothing done).
    pub fn request_ids(mut self, on: bool) -> Self {
        self.options.request_ids = on;
        self
    }

    /// Resolves every address, connects to the first server that accepts
    /// (trying its resolved addresses in order), sets TCP_NODELAY (every
    /// request is a small frame that should leave at once) and the
    /// timeouts, and says HELLO.
    ///
    /// Fails with [`ErrorKind::Server`](crate::ErrorKind::Server) if HELLO is
    /// refused: `unauthorized` for a wrong token, `unsupported_version` for a
    /// server that does not speak [`VERSION`](crate::proto::VERSION). With
    /// several servers, one that cannot be reached is passed over, and the
    /// error is the last server's when none can.
    pub fn connect(self) -> Result<Client> {
        let single = self.addrs.len() == 1;
        let mut servers = Vec::with_capacity(self.addrs.len());
        for (i, addr) in self.addrs.iter().enumerate() {
            match addr.to_socket_addrs() {
                Ok(resolved) => servers.push(Server::Resolved(resolved.collect())),
                // One server: its error is the answer, as it always was.
                Err(e) if single => return Err(Error::io("resolving the server address", e)),
                Err(e) => servers.push(Server::Unresolved(unresolved(i, &e))),
            }
        }
        Client::open(servers, self.options)
    }
}

/// Why server `index` of a list could not be resolved, kept to be told when
/// its turn comes.
fn unresolved(index: usize, e: &io::Error) -> String {
    format!(
        "server address {} of the list did not resolve: {e}",
        index + 1
    )
}

/// Hand-written so that the token never reaches a log line.
impl<A: fmt::Debug> fmt::Debug for ClientBuilder<A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientBuilder")
            .field("addrs", &self.addrs)
            .field("options", &self.options)
            .finish()
    }
}
