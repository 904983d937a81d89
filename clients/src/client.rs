//! The client, its builder, and one typed method per command.

use std::fmt;
use std::io;
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::Duration;

use seckill_proto::{
    Drift, Goods, NewGoods, Order, Reply, Request, SaleAction, Stat, Status, MAX_REPLY_FRAME,
    NO_TOKEN, VERSION,
};

use crate::connection::Connection;
use crate::error::{Error, Result};
use crate::pipeline::{self, Pipeline};

/// The default connect, read and write timeout.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

/// The default most requests a [`Pipeline`] keeps in flight; under the
/// server's default limit of 256, so that it never stops reading us.
pub const DEFAULT_MAX_IN_FLIGHT: usize = 128;

/// The outcome of a BUY that the server handled. Sold out, not started,
/// ended and paused are answers of a flash sale, not failures, so they are
/// here rather than in [`Error`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Purchase {
    /// A unit was taken; this is the new order's number. It must be paid
    /// within the goods' payment window ([`Order::pay_by_ms`]).
    Ordered(u64),
    /// The user already held as many live orders of this goods as its
    /// per-user limit allows (one, unless the admin set more), or this BUY's
    /// token already made an order they still hold; this is the number of
    /// such an order. A BUY retried after a lost reply lands here when that
    /// is safe: see [`Client::buy`].
    AlreadyBought(u64),
    /// No unit was left.
    SoldOut,
    /// The sale has not opened yet.
    NotStarted,
    /// The sale is over.
    Ended,
    /// The admin paused the sale; it may resume.
    Paused,
}

impl Purchase {
    /// The order the user holds after this BUY, if any.
    pub fn order_no(self) -> Option<u64> {
        match self {
            Purchase::Ordered(no) | Purchase::AlreadyBought(no) => Some(no),
            Purchase::SoldOut | Purchase::NotStarted | Purchase::Ended | Purchase::Paused => None,
        }
    }
}

/// The outcome of a PAY that the server handled. An order whose payment
/// window passed is an everyday answer of a flash sale (its unit went back on
/// sale, and whoever took the money must give it back), so it is here rather
/// than in [`Error`] where it could pass for a failure worth retrying.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Payment {
    /// The order, now paid: it is kept for good.
    Paid(Order),
    /// The order was cancelled, by its buyer or because its payment window
    /// passed, and can no longer be paid.
    OrderCancelled,
}

impl Payment {
    /// The paid order, if the payment went through.
    pub fn order(&self) -> Option<&Order> {
        match self {
            Payment::Paid(order) => Some(order),
            Payment::OrderCancelled => None,
        }
    }
}

/// The outcome of a CANCEL that the server handled: a buyer who cancels just
/// as they pay is racing themselves, so "already paid" is an answer, not an
/// [`Error`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cancellation {
    /// The order, now cancelled: its unit is back on sale.
    Cancelled(Order),
    /// The order is paid and can no longer be cancelled.
    OrderPaid,
}

impl Cancellation {
    /// The cancelled order, if the cancel went through.
    pub fn order(&self) -> Option<&Order> {
        match self {
            Cancellation::Cancelled(order) => Some(order),
            Cancellation::OrderPaid => None,
        }
    }
}

/// A purchase token from [`Client::purchase_token`], for one BUY of one goods
/// by one user with [`Client::buy_with_token`].
///
/// Its `Debug` hides the value: the token is a bearer capability, and log
/// lines travel further than the user it was issued to.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct PurchaseToken {
    /// The token to send with BUY. Never [`NO_TOKEN`].
    pub token: u64,
    /// When it stops being accepted, in Unix milliseconds (server's clock).
    pub expires_ms: u64,
}

impl fmt::Debug for PurchaseToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PurchaseToken")
            .field("token", &"<redacted>")
            .field("expires_ms", &self.expires_ms)
            .finish()
    }
}

/// Options for a connection, made by [`Client::builder`].
#[derive(Clone)]
pub struct ClientBuilder<A> {
    addr: A,
    token: String,
    connect_timeout: Duration,
    read_timeout: Option<Duration>,
    write_timeout: Option<Duration>,
    max_in_flight: usize,
}

impl<A: ToSocketAddrs> ClientBuilder<A> {
    /// The admin token to present in HELLO. Without one (or with an empty
    /// one) the connection has no admin rights.
    pub fn token(mut self, token: impl Into<String>) -> Self {
        self.token = token.into();
        self
    }

    /// How long to wait for the TCP connection to each resolved address.
    /// Default 5 s. Zero is refused by [`connect`](Self::connect).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// How long one read may wait for reply bytes; `None` waits forever.
    /// Default 5 s. `Some(Duration::ZERO)` is refused by
    /// [`connect`](Self::connect).
    pub fn read_timeout(mut self, timeout: impl Into<Option<Duration>>) -> Self {
        self.read_timeout = timeout.into();
        self
    }

    /// How long one write may block; `None` waits forever. Default 5 s.
    pub fn write_timeout(mut self, timeout: impl Into<Option<Duration>>) -> Self {
        self.write_timeout = timeout.into();
        self
    }

    /// The most requests of a [`Pipeline`] in flight at once (at least 1).
    /// Default [`DEFAULT_MAX_IN_FLIGHT`].
    pub fn max_in_flight(mut self, requests: usize) -> Self {
        self.max_in_flight = requests.max(1);
        self
    }

    /// Connects to the first address that accepts, sets TCP_NODELAY (every
    /// request is a small frame that should leave at once) and the timeouts,
    /// and says HELLO.
    ///
    /// Fails with [`ErrorKind::Server`](crate::ErrorKind::Server) if HELLO is
    /// refused: `unauthorized` for a wrong token, `unsupported_version` for a
    /// server that does not speak [`VERSION`].
    pub fn connect(self) -> Result<Client> {
        let stream = self.open()?;
        let mut client = Client {
            conn: Connection::new(stream, MAX_REPLY_FRAME),
            next_id: 1,
            admin: false,
            server_version: 0,
            max_in_flight: self.max_in_flight,
        };
        let hello = Request::Hello {
            version: VERSION,
            token: self.token,
        };
        match client.request(&hello)? {
            Reply::Hello { version, admin } => {
                client.server_version = version;
                client.admin = admin;
                Ok(client)
            }
            other => Err(unexpected(other, "HELLO")),
        }
    }

    fn open(&self) -> Result<TcpStream> {
        let addrs = self
            .addr
            .to_socket_addrs()
            .map_err(|e| Error::io("resolving the server address", e))?;
        let mut last_error = None;
        for addr in addrs {
            match TcpStream::connect_timeout(&addr, self.connect_timeout) {
                Ok(stream) => return self.configure(stream, addr),
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

    fn configure(&self, stream: TcpStream, addr: SocketAddr) -> Result<TcpStream> {
        let doing = || format!("setting up the connection to {addr}");
        stream
            .set_nodelay(true)
            .and_then(|()| stream.set_read_timeout(self.read_timeout))
            .and_then(|()| stream.set_write_timeout(self.write_timeout))
            .map_err(|e| Error::io(doing(), e))?;
        Ok(stream)
    }
}

/// Hand-written so that the token never reaches a log line.
impl<A: fmt::Debug> fmt::Debug for ClientBuilder<A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientBuilder")
            .field("addr", &self.addr)
            .field(
                "token",
                &if self.token.is_empty() {
                    ""
                } else {
                    "<redacted>"
                },
            )
            .field("connect_timeout", &self.connect_timeout)
            .field("read_timeout", &self.read_timeout)
            .field("write_timeout", &self.write_timeout)
            .field("max_in_flight", &self.max_in_flight)
            .finish()
    }
}

/// A blocking connection to a seckill server, greeted with HELLO.
///
/// Every method sends its request and waits for the reply. Calls take
/// `&mut self`: one connection serves one caller at a time; open one per
/// thread. After an I/O error, a timeout or a broken frame the client is
/// unusable (every call fails with [`ErrorKind::Closed`]) because a late
/// reply could be mistaken for a later one: connect again.
///
/// [`ErrorKind::Closed`]: crate::ErrorKind::Closed
pub struct Client {
    conn: Connection,
    /// The id of the next request; one counter per connection is all the
    /// protocol asks, and starting at 1 keeps clear of the id 0 of the
    /// server's connection-level error.
    next_id: u64,
    admin: bool,
    server_version: u16,
    max_in_flight: usize,
}

impl Client {
    /// Connects to `addr` with the default options and no admin token.
    pub fn connect<A: ToSocketAddrs>(addr: A) -> Result<Client> {
        Client::builder(addr).connect()
    }

    /// Options for a connection to `addr`; finish with
    /// [`connect`](ClientBuilder::connect).
    pub fn builder<A: ToSocketAddrs>(addr: A) -> ClientBuilder<A> {
        ClientBuilder {
            addr,
            token: String::new(),
            connect_timeout: DEFAULT_TIMEOUT,
            read_timeout: Some(DEFAULT_TIMEOUT),
            write_timeout: Some(DEFAULT_TIMEOUT),
            max_in_flight: DEFAULT_MAX_IN_FLIGHT,
        }
    }

    /// Whether HELLO granted admin rights.
    pub fn is_admin(&self) -> bool {
        self.admin
    }

    /// The protocol version the server said it speaks.
    pub fn server_version(&self) -> u16 {
        self.server_version
    }

    /// The server's address.
    pub fn peer_addr(&self) -> Result<SocketAddr> {
        self.conn
            .stream()
            .peer_addr()
            .map_err(|e| Error::io("reading the peer address", e))
    }

    /// Whether the client can still be used (no earlier error broke it).
    pub fn is_open(&self) -> bool {
        !self.conn.is_broken()
    }

    /// Changes the read timeout; `None` waits forever.
    pub fn set_read_timeout(&self, timeout: Option<Duration>) -> Result<()> {
        self.conn
            .stream()
            .set_read_timeout(timeout)
            .map_err(|e| Error::io("setting the read timeout", e))
    }

    /// Changes the write timeout; `None` waits forever.
    pub fn set_write_timeout(&self, timeout: Option<Duration>) -> Result<()> {
        self.conn
            .stream()
            .set_write_timeout(timeout)
            .map_err(|e| Error::io("setting the write timeout", e))
    }

    /// Sends one request and returns its reply as it came, error statuses
    /// included as [`Reply::Error`]. The typed methods are built on this.
    pub fn request(&mut self, request: &Request) -> Result<Reply> {
        let mut replies = self.exchange(std::slice::from_ref(request))?;
        replies
            .pop()
            .ok_or_else(|| Error::protocol("no reply to a request"))
    }

    /// Sends every request of `pipeline` without waiting, and returns their
    /// replies in the order of the requests, whatever order the server
    /// answered in. Error statuses are replies here ([`Reply::Error`]), so one
    /// refused request does not hide the others' answers.
    ///
    /// Fails with [`ErrorKind::InvalidInput`](crate::ErrorKind::InvalidInput),
    /// sending nothing, if a builder method of `pipeline` was given something
    /// the protocol cannot carry.
    pub fn execute(&mut self, pipeline: &Pipeline) -> Result<Vec<Reply>> {
        pipeline.check()?;
        self.exchange(pipeline.requests())
    }

    fn exchange(&mut self, requests: &[Request]) -> Result<Vec<Reply>> {
        let first = self.next_id;
        // Ids are reserved before sending, so a failed batch never lets a
        // later one reuse an id that may still be answered.
        self.next_id = self.next_id.wrapping_add(requests.len() as u64);
        pipeline::exchange(&mut self.conn, first, requests, self.max_in_flight)
    }

    /// PING: checks the server answers.
    pub fn ping(&mut self) -> Result<()> {
        match self.request(&Request::Ping)? {
            Reply::Pong => Ok(()),
            other => Err(unexpected(other, "PING")),
        }
    }

    /// LIST_GOODS: every goods, with its state at this moment.
    pub fn list_goods(&mut self) -> Result<Vec<Goods>> {
        match self.request(&Request::ListGoods)? {
            Reply::GoodsList(list) => Ok(list),
            other => Err(unexpected(other, "LIST_GOODS")),
        }
    }

    /// GET_GOODS: one goods; `unknown_goods` is an error.
    pub fn get_goods(&mut self, goods_id: u64) -> Result<Goods> {
        match self.request(&Request::GetGoods { goods_id })? {
            Reply::Goods(goods) => Ok(goods),
            other => Err(unexpected(other, "GET_GOODS")),
        }
    }

    /// BUY without a purchase token, for goods that require none: takes one
    /// unit for `user_id`, up to the goods' per-user limit. `unknown_goods`,
    /// `busy`, `rate_limited` and the like are errors, and so is
    /// `token_required` (see [`Error::needs_new_token`]).
    ///
    /// Retrying a BUY whose reply was lost is safe when the per-user limit is
    /// 1: the retry answers [`Purchase::AlreadyBought`] with the order. With
    /// a higher limit a retry may take a second unit, so look at
    /// [`list_orders`](Client::list_orders) first. (A BUY with a token is
    /// safe to retry with the same token until it expires.)
    pub fn buy(&mut self, user_id: u64, goods_id: u64) -> Result<Purchase> {
        self.send_buy(user_id, goods_id, NO_TOKEN)
    }

    /// BUY with a purchase token from [`purchase_token`](Client::purchase_token),
    /// for goods whose rules require one. A token the server does not take
    /// (`token_invalid`, `token_expired`, `token_used`) is an error for which
    /// [`Error::needs_new_token`] is true.
    ///
    /// `token` 0 is [`NO_TOKEN`]: on the wire it would be a BUY without a
    /// token, so it is refused with
    /// [`ErrorKind::InvalidInput`](crate::ErrorKind::InvalidInput) and nothing
    /// is sent; call [`buy`](Client::buy) for goods that need no token.
    ///
    /// A token is spent only by a BUY that makes an order: after `sold_out`
    /// or `busy` it can be sent again, and a retry with it after a lost
    /// reply answers [`Purchase::AlreadyBought`] with its order until the
    /// token expires.
    pub fn buy_with_token(&mut self, user_id: u64, goods_id: u64, token: u64) -> Result<Purchase> {
        let token = pipeline::buy_token(token).map_err(Error::invalid_input)?;
        self.send_buy(user_id, goods_id, token)
    }

    fn send_buy(&mut self, user_id: u64, goods_id: u64, token: u64) -> Result<Purchase> {
        let request = Request::Buy {
            user_id,
            goods_id,
            token,
            request_id: None,
        };
        match self.request(&request)? {
            Reply::Bought { order_no } => Ok(Purchase::Ordered(order_no)),
            Reply::AlreadyBought { order_no } => Ok(Purchase::AlreadyBought(order_no)),
            Reply::Error { status, message } => match status {
                Status::SoldOut => Ok(Purchase::SoldOut),
                Status::NotStarted => Ok(Purchase::NotStarted),
                Status::Ended => Ok(Purchase::Ended),
                Status::Paused => Ok(Purchase::Paused),
                _ => Err(Error::server(status, message)),
            },
            other => Err(unexpected(other, "BUY")),
        }
    }

    /// TOKEN: a short-lived, single-use token for one BUY of `goods_id` by
    /// `user_id`, for goods whose rules require one. Tokens are issued only
    /// while the sale is open: `not_started`, `ended` and `paused` are error
    /// statuses here, as are `unknown_goods` and `busy`. A token reserves no
    /// unit: a BUY with it can still find the goods sold out.
    pub fn purchase_token(&mut self, user_id: u64, goods_id: u64) -> Result<PurchaseToken> {
        match self.request(&Request::Token { user_id, goods_id })? {
            Reply::Token { token, expires_ms } => Ok(PurchaseToken { token, expires_ms }),
            other => Err(unexpected(other, "TOKEN")),
        }
    }

    /// PAY: pays an order of `user_id`'s, which keeps it for good.
    /// [`Payment::OrderCancelled`] if it was cancelled first (by its buyer,
    /// or because its payment window passed); `no_order`, for an order
    /// number that is not this user's, is an error. Safe to retry: paying a
    /// paid order answers [`Payment::Paid`] again and changes nothing.
    pub fn pay(&mut self, user_id: u64, order_no: u64) -> Result<Payment> {
        match self.request(&Request::Pay { user_id, order_no })? {
            Reply::Paid(order) => Ok(Payment::Paid(order)),
            Reply::Error {
                status: Status::OrderCancelled,
                ..
            } => Ok(Payment::OrderCancelled),
            other => Err(unexpected(other, "PAY")),
        }
    }

    /// CANCEL: cancels an unpaid order of `user_id`'s and puts its unit back
    /// on sale. [`Cancellation::OrderPaid`] if it was paid first; `no_order`
    /// is an error, as for [`pay`](Client::pay). Safe to retry: the unit goes
    /// back on sale once, however many times the order is cancelled.
    pub fn cancel(&mut self, user_id: u64, order_no: u64) -> Result<Cancellation> {
        match self.request(&Request::Cancel { user_id, order_no })? {
            Reply::Cancelled(order) => Ok(Cancellation::Cancelled(order)),
            Reply::Error {
                status: Status::OrderPaid,
                ..
            } => Ok(Cancellation::OrderPaid),
            other => Err(unexpected(other, "CANCEL")),
        }
    }

    /// LIST_ORDERS: every order of `user_id`, of every goods and in every
    /// state, newest first; empty if they have none.
    pub fn list_orders(&mut self, user_id: u64) -> Result<Vec<Order>> {
        match self.request(&Request::ListOrders { user_id })? {
            Reply::Orders(orders) => Ok(orders),
            other => Err(unexpected(other, "LIST_ORDERS")),
        }
    }

    /// ORDER_STATUS: the user's newest order for this goods, in whatever
    /// state, `None` if they have none. [`list_orders`](Client::list_orders)
    /// shows all of a user's orders.
    pub fn order_status(&mut self, user_id: u64, goods_id: u64) -> Result<Option<Order>> {
        match self.request(&Request::OrderStatus { user_id, goods_id })? {
            Reply::Order(order) => Ok(Some(order)),
            Reply::Error {
                status: Status::NoOrder,
                ..
            } => Ok(None),
            other => Err(unexpected(other, "ORDER_STATUS")),
        }
    }

    /// ADD_GOODS (admin): puts a goods on sale under `goods.rules` (per-user
    /// limit, payment window, whether BUY needs a token; see
    /// [`SaleRules`](crate::SaleRules)); returns it with its new id.
    pub fn add_goods(&mut self, goods: NewGoods) -> Result<Goods> {
        match self.request(&Request::AddGoods(goods))? {
            Reply::GoodsAdded(goods) => Ok(goods),
            other => Err(unexpected(other, "ADD_GOODS")),
        }
    }

    /// RESTOCK (admin): adds `amount` units; returns the goods after.
    pub fn restock(&mut self, goods_id: u64, amount: u32) -> Result<Goods> {
        match self.request(&Request::Restock { goods_id, amount })? {
            Reply::Restocked(goods) => Ok(goods),
            other => Err(unexpected(other, "RESTOCK")),
        }
    }

    /// SALE_CONTROL (admin): pauses, resumes or ends the sale of `goods_id`,
    /// or moves its window; returns the goods after the change.
    /// `unknown_goods` is an error.
    pub fn sale_control(&mut self, goods_id: u64, action: SaleAction) -> Result<Goods> {
        match self.request(&Request::SaleControl { goods_id, action })? {
            Reply::SaleChanged(goods) => Ok(goods),
            other => Err(unexpected(other, "SALE_CONTROL")),
        }
    }

    /// STATS (admin): the server's counters. Their names are the server's
    /// choice and may grow.
    pub fn stats(&mut self) -> Result<Vec<Stat>> {
        match self.request(&Request::Stats)? {
            Reply::Stats(stats) => Ok(stats),
            other => Err(unexpected(other, "STATS")),
        }
    }

    /// RECONCILE (admin): repairs the stock store's entry of one goods, or of
    /// every goods with `None`, from the order store, and returns each goods
    /// as it was found and as it was left. Goods ids start at 1: `Some(0)` is
    /// refused with [`ErrorKind::InvalidInput`](crate::ErrorKind::InvalidInput)
    /// and nothing is sent. `unknown_goods` is an error.
    pub fn reconcile(&mut self, goods: Option<u64>) -> Result<Vec<Drift>> {
        let goods_id = pipeline::reconcile_target(goods).map_err(Error::invalid_input)?;
        match self.request(&Request::Reconcile { goods_id })? {
            Reply::Reconciled(drifts) => Ok(drifts),
            other => Err(unexpected(other, "RECONCILE")),
        }
    }
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("peer", &self.conn.stream().peer_addr().ok())
            .field("admin", &self.admin)
            .field("server_version", &self.server_version)
            .field("next_id", &self.next_id)
            .field("open", &self.is_open())
            .finish()
    }
}

/// Turns a reply a typed method did not expect into its error: the server's
/// error status, or a protocol error for a reply of the wrong kind.
fn unexpected(reply: Reply, command: &str) -> Error {
    match reply {
        Reply::Error { status, message } => Error::server(status, message),
        other => Error::protocol(format!("unexpected {} reply to {command}", other.status())),
    }
}
