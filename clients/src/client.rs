//! The client and one typed method per command.

use std::fmt;
use std::io;
use std::net::{SocketAddr, ToSocketAddrs};
use std::time::Duration;

use seckill_proto::{
    Drift, Goods, NewGoods, Order, Reply, Request, RequestId, SaleAction, ServerInfo, Stat, Status,
    StockParts, MAX_REPLY_FRAME, MIN_VERSION, NO_TOKEN, VERSION,
};

use crate::builder::ClientBuilder;
use crate::connection::Connection;
use crate::error::{Error, Result};
use crate::outcome;
use crate::pipeline::{self, Pipeline};
use crate::servers::{
    as_repeat, connection_failed, dial_failed, gave_up, safe_to_resend, Options, Server,
};

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

/// A blocking client of a seckill server, or of several that sell from the
/// same stores, greeted with HELLO.
///
/// Every method sends its request and waits for the reply. Calls take
/// `&mut self`: one connection serves one caller at a time; open one per
/// thread.
///
/// **One server** ([`Client::connect`], or [`Client::builder`] without
/// [`addrs`](ClientBuilder::addrs)): after an I/O error, a timeout or a
/// broken frame the client is unusable (every call fails with
/// [`ErrorKind::Closed`]) because a late reply could be mistaken for a later
/// one: connect again.
///
/// **Several servers**: the client talks to one at a time, starting with
/// the first that accepts. When a connection fails (refused, reset, closed
/// by the server) it moves to the next server in the list, round and
/// round, each at most once per call:
///
/// - A request is sent again to the next server when doing it twice can do
///   no more than doing it once: reads, PAY, CANCEL, TOKEN, the sale
///   controls, RECONCILE, and a BUY that carries a client request id (as
///   [`buy`](Client::buy) and [`buy_with_token`](Client::buy_with_token)
///   do by default). ADD_GOODS, RESTOCK and a BUY without an id are not (a
///   purchase token alone is not enough: a server restarted in between may
///   have forgotten it): their error is returned, and the next call starts
///   on the next server. A batch is sent again only if all its requests
///   may be.
/// - A timeout is returned as it is, since the caller's deadline has passed;
///   so are a broken frame and the server's error statuses (`busy`
///   included). The next call connects to the next server.
///
/// [`ErrorKind::Closed`]: crate::ErrorKind::Closed
pub struct Client {
    conn: Connection,
    servers: Vec<Server>,
    /// The server `conn` is (or was) connected to, in `servers`.
    current: usize,
    options: Options,
    /// The id of the next request; one counter per client is more than the
    /// protocol asks (one per connection), and starting at 1 keeps clear of
    /// the id 0 of the server's connection-level error.
    next_id: u64,
    admin: bool,
    server_version: u16,
    /// What a server of version 2 or more said of itself in HELLO.
    server_info: Option<ServerInfo>,
}

impl Client {
    /// Connects to `addr` with the default options and no admin token.
    pub fn connect<A: ToSocketAddrs>(addr: A) -> Result<Client> {
        Client::builder(addr).connect()
    }

    /// Options for a client of the server at `addr` (more with
    /// [`addrs`](ClientBuilder::addrs)); finish with
    /// [`connect`](ClientBuilder::connect).
    pub fn builder<A: ToSocketAddrs>(addr: A) -> ClientBuilder<A> {
        ClientBuilder::new(addr)
    }

    /// Connects to the first of `servers` that greets, in order.
    pub(crate) fn open(servers: Vec<Server>, options: Options) -> Result<Client> {
        let mut last_error = None;
        for (index, server) in servers.iter().enumerate() {
            let stream = match server.open(&options) {
                Ok(stream) => stream,
                Err(e) => {
                    last_error = Some(e);
                    continue;
                }
            };
            let mut client = Client {
                conn: Connection::new(stream, MAX_REPLY_FRAME, options.read_timeout),
                servers: servers.clone(),
                current: index,
                options: options.clone(),
                next_id: 1,
                admin: false,
                server_version: 0,
                server_info: None,
            };
            match client.greet() {
                Ok(()) => return Ok(client),
                Err(e) if servers.len() > 1 && dial_failed(&e) => last_error = Some(e),
                Err(e) => return Err(e),
            }
        }
        Err(last_error.unwrap_or_else(|| Error::invalid_input("no server address given")))
    }

    /// Says HELLO on the current connection, in the newest version this
    /// crate speaks. A server that speaks only older ones answers
    /// `unsupported_version` and closes; the client then connects again and
    /// says HELLO in the oldest, which every server speaks (PROTOCOL.md,
    /// section 6). A refusal leaves the connection ungreeted, so it is
    /// broken: no request could be served on it.
    fn greet(&mut self) -> Result<()> {
        match self.greet_in(VERSION) {
            Err(e) if e.status() == Some(Status::UnsupportedVersion) && VERSION > MIN_VERSION => {
                let stream = self.servers[self.current].open(&self.options)?;
                self.conn = Connection::new(stream, MAX_REPLY_FRAME, self.options.read_timeout);
                self.greet_in(MIN_VERSION)
            }
            done => done,
        }
    }

    fn greet_in(&mut self, version: u16) -> Result<()> {
        let hello = Request::Hello {
            version,
            token: self.options.token.clone(),
        };
        // HELLO goes under an id that holds two line ends. A seckill server
        // never reads ids, but a line-based server on the wrong port may
        // then see whole lines and answer at once with an error, which the
        // connection shows, instead of waiting out the timeout for a line
        // end that would never come.
        let result = pipeline::exchange(
            &mut self.conn,
            HELLO_ID,
            std::slice::from_ref(&hello),
            self.options.max_in_flight,
        );
        let result = match result {
            Ok(mut replies) => match replies.pop() {
                Some(Reply::Hello {
                    version,
                    admin,
                    server,
                }) => {
                    self.server_version = version;
                    self.admin = admin;
                    self.server_info = server;
                    return Ok(());
                }
                Some(other) => Err(outcome::unexpected(other, "HELLO")),
                None => Err(Error::protocol("no reply to HELLO")),
            },
            Err(e) => Err(e),
        };
        result.map_err(|e| self.conn.break_with(e))
    }

    /// Connects to the server after the current one and greets it. The
    /// client moves on even if that fails, so that the next try is the one
    /// after.
    fn dial_next(&mut self) -> Result<()> {
        self.current = (self.current + 1) % self.servers.len();
        let stream = self.servers[self.current].open(&self.options)?;
        self.conn = Connection::new(stream, MAX_REPLY_FRAME, self.options.read_timeout);
        self.admin = false;
        self.server_version = 0;
        self.server_info = None;
        self.greet()
    }

    /// Whether HELLO granted admin rights.
    pub fn is_admin(&self) -> bool {
        self.admin
    }

    /// The protocol version this connection speaks, as HELLO agreed it.
    pub fn server_version(&self) -> u16 {
        self.server_version
    }

    /// What the server said of itself in HELLO: the versions it speaks, its
    /// limits, its clock and its capabilities. `None` from a server that
    /// speaks only version 1.
    pub fn server_info(&self) -> Option<&ServerInfo> {
        self.server_info.as_ref()
    }

    /// The address of the server the client is talking to (or was, if its
    /// connection failed).
    pub fn peer_addr(&self) -> Result<SocketAddr> {
        self.conn
            .stream()
            .peer_addr()
            .map_err(|e| Error::io("reading the peer address", e))
    }

    /// How many servers the client knows.
    pub fn server_count(&self) -> usize {
        self.servers.len()
    }

    /// Whether the current connection can still be used (no earlier error
    /// broke it). A client of several servers whose connection broke
    /// connects to the next server at its next call.
    pub fn is_open(&self) -> bool {
        !self.conn.is_broken()
    }

    /// Changes the read timeout, of this connection and the next ones;
    /// `None` waits forever.
    pub fn set_read_timeout(&mut self, timeout: Option<Duration>) -> Result<()> {
        self.options.read_timeout = timeout;
        self.conn.set_read_timeout(timeout)
    }

    /// Changes the write timeout, of this connection and the next ones;
    /// `None` waits forever.
    pub fn set_write_timeout(&mut self, timeout: Option<Duration>) -> Result<()> {
        self.options.write_timeout = timeout;
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

    /// Sends `requests` and reads their replies, moving to the next server
    /// after a connection failure as the type's documentation says.
    fn exchange(&mut self, requests: &[Request]) -> Result<Vec<Reply>> {
        if self.servers.len() < 2 {
            return self.exchange_here(requests);
        }
        let resend = requests.iter().all(safe_to_resend);
        // Each server is asked at most once: the current one if its
        // connection is up, then the others in turn.
        let mut left = self.servers.len();
        let mut last_error = None;
        // The failure of a connection with the requests in flight: from then
        // on they may have been done, and only a reply says whether; a
        // server that then cannot be reached, or refuses to be (`busy`),
        // says nothing of them, and this is the error returned.
        let mut in_doubt = None;
        if !self.conn.is_broken() {
            left -= 1;
            match self.exchange_here(requests) {
                Err(e) if resend && connection_failed(&e) => in_doubt = Some(e),
                done => return done,
            }
        }
        while left > 0 {
            left -= 1;
            match self.dial_next() {
                Ok(()) => {}
                // Nothing of this call reached that server: on to the next.
                Err(e) if dial_failed(&e) => {
                    last_error = Some(e);
                    continue;
                }
                Err(e) => return Err(gave_up(in_doubt, Some(e))),
            }
            // Sent again: a BUY under a request id goes as a repeat, which
            // the server answers with the first answer, not from a cache.
            let again: Vec<Request> = requests.iter().map(as_repeat).collect();
            match self.exchange_here(&again) {
                Err(e) if resend && connection_failed(&e) => in_doubt = Some(e),
                done => return done,
            }
        }
        Err(gave_up(in_doubt, last_error))
    }

    /// One exchange on the current connection, without moving on.
    fn exchange_here(&mut self, requests: &[Request]) -> Result<Vec<Reply>> {
        let first = self.next_id;
        // Ids are reserved before sending, so a failed batch never lets a
        // later one reuse an id that may still be answered.
        self.next_id = self.next_id.wrapping_add(requests.len() as u64);
        pipeline::exchange(&mut self.conn, first, requests, self.options.max_in_flight)
    }

    /// PING: checks the server answers.
    pub fn ping(&mut self) -> Result<()> {
        outcome::pong(self.request(&Request::Ping)?)
    }

    /// LIST_GOODS: every goods, with its state at this moment.
    pub fn list_goods(&mut self) -> Result<Vec<Goods>> {
        outcome::goods_list(self.request(&Request::ListGoods)?)
    }

    /// GET_GOODS: one goods; `unknown_goods` is an error.
    pub fn get_goods(&mut self, goods_id: u64) -> Result<Goods> {
        outcome::goods(self.request(&Request::GetGoods { goods_id })?)
    }

    /// BUY without a purchase token, for goods that require none: takes one
    /// unit for `user_id`, up to the goods' per-user limit. `unknown_goods`,
    /// `busy`, `rate_limited` and the like are errors, and so is
    /// `token_required` (see [`Error::needs_new_token`]).
    ///
    /// The BUY carries a fresh client request id (unless the builder turned
    /// [`request_ids`](ClientBuilder::request_ids) off), the same on every
    /// send the client makes of it: when a connection fails with the BUY in
    /// flight, a client of several servers sends it again to the next, and
    /// the server answers the repeat with the first answer, never with a
    /// second unit. If the call still fails (a timeout, every server down),
    /// the outcome is unknown: to try again without risk of buying twice,
    /// send the same id with [`buy_with_request_id`](Client::buy_with_request_id).
    ///
    /// Without a request id, retrying a BUY whose reply was lost is safe
    /// when the per-user limit is 1: the retry answers
    /// [`Purchase::AlreadyBought`] with the order. With a higher limit a
    /// retry may take a second unit, so look at
    /// [`list_orders`](Client::list_orders) first.
    pub fn buy(&mut self, user_id: u64, goods_id: u64) -> Result<Purchase> {
        let request_id = self.fresh_request_id()?;
        self.send_buy(user_id, goods_id, NO_TOKEN, request_id)
    }

    /// BUY with a purchase token from [`purchase_token`](Client::purchase_token),
    /// for goods whose rules require one. A token the server does not take
    /// (`token_invalid`, `token_expired`, `token_used`) is an error for which
    /// [`Error::needs_new_token`] is true. It carries a fresh client request
    /// id, as [`buy`](Client::buy) does.
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
        let request_id = self.fresh_request_id()?;
        self.send_buy(user_id, goods_id, token, request_id)
    }

    /// BUY without a purchase token, named by `request_id`: the purchase
    /// the caller means, the same for every call that tries it again.
    ///
    /// Draw the id once per purchase the user asks for
    /// ([`random_request_id`](crate::random_request_id), or a UUID of the
    /// caller's own), keep it with that purchase, and pass it to every try:
    /// a try after a lost reply, a timeout or a restart of the caller gets
    /// the first try's answer, on whichever server it lands. Never use one
    /// id for two purchases.
    pub fn buy_with_request_id(
        &mut self,
        user_id: u64,
        goods_id: u64,
        request_id: RequestId,
    ) -> Result<Purchase> {
        self.send_buy(user_id, goods_id, NO_TOKEN, Some(request_id))
    }

    /// [`buy_with_token`](Client::buy_with_token) named by `request_id`, as
    /// [`buy_with_request_id`](Client::buy_with_request_id) is. Every try of
    /// one purchase carries the same token and the same id.
    pub fn buy_with_token_and_request_id(
        &mut self,
        user_id: u64,
        goods_id: u64,
        token: u64,
        request_id: RequestId,
    ) -> Result<Purchase> {
        let token = pipeline::buy_token(token).map_err(Error::invalid_input)?;
        self.send_buy(user_id, goods_id, token, Some(request_id))
    }

    /// A new request id for a BUY, if the client gives them.
    fn fresh_request_id(&self) -> Result<Option<RequestId>> {
        if self.options.request_ids {
            random_request_id().map(Some)
        } else {
            Ok(None)
        }
    }

    /// Sends one BUY. Built once, so every send of it (the client's own
    /// retries included) carries the same request id.
    fn send_buy(
        &mut self,
        user_id: u64,
        goods_id: u64,
        token: u64,
        request_id: Option<RequestId>,
    ) -> Result<Purchase> {
        let request = Request::Buy {
            user_id,
            goods_id,
            token,
            request_id,
        };
        outcome::purchase(self.request(&request)?)
    }

    /// TOKEN: a short-lived, single-use token for one BUY of `goods_id` by
    /// `user_id`, for goods whose rules require one. Tokens are issued only
    /// while the sale is open: `not_started`, `ended` and `paused` are error
    /// statuses here, as are `unknown_goods` and `busy`. A token reserves no
    /// unit: a BUY with it can still find the goods sold out.
    pub fn purchase_token(&mut self, user_id: u64, goods_id: u64) -> Result<PurchaseToken> {
        outcome::purchase_token(self.request(&Request::Token { user_id, goods_id })?)
    }

    /// PAY: pays an order of `user_id`'s, which keeps it for good.
    /// [`Payment::OrderCancelled`] if it was cancelled first (by its buyer,
    /// or because its payment window passed); `no_order`, for an order
    /// number that is not this user's, is an error. Safe to retry: paying a
    /// paid order answers [`Payment::Paid`] again and changes nothing.
    pub fn pay(&mut self, user_id: u64, order_no: u64) -> Result<Payment> {
        outcome::payment(self.request(&Request::Pay { user_id, order_no })?)
    }

    /// CANCEL: cancels an unpaid order of `user_id`'s and puts its unit back
    /// on sale. [`Cancellation::OrderPaid`] if it was paid first; `no_order`
    /// is an error, as for [`pay`](Client::pay). Safe to retry: the unit goes
    /// back on sale once, however many times the order is cancelled.
    pub fn cancel(&mut self, user_id: u64, order_no: u64) -> Result<Cancellation> {
        outcome::cancellation(self.request(&Request::Cancel { user_id, order_no })?)
    }

    /// LIST_ORDERS: every order of `user_id`, of every goods and in every
    /// state, newest first; empty if they have none.
    pub fn list_orders(&mut self, user_id: u64) -> Result<Vec<Order>> {
        outcome::orders(self.request(&Request::ListOrders { user_id })?)
    }

    /// ORDER_STATUS: the user's newest order for this goods, in whatever
    /// state, `None` if they have none. [`list_orders`](Client::list_orders)
    /// shows all of a user's orders.
    pub fn order_status(&mut self, user_id: u64, goods_id: u64) -> Result<Option<Order>> {
        outcome::order_status(self.request(&Request::OrderStatus { user_id, goods_id })?)
    }

    /// ADD_GOODS (admin): puts a goods on sale under `goods.rules` (per-user
    /// limit, payment window, whether BUY needs a token; see
    /// [`SaleRules`](crate::SaleRules)); returns it with its new id. It
    /// carries no request id, so a call whose reply was lost may have made
    /// the goods: [`add_goods_with_request_id`](Client::add_goods_with_request_id)
    /// is safe to call again.
    pub fn add_goods(&mut self, goods: NewGoods) -> Result<Goods> {
        self.send_add_goods(goods, None)
    }

    /// ADD_GOODS named by `request_id`, drawn once per goods the caller
    /// means to add ([`random_request_id`](crate::random_request_id)): a call
    /// with the id of an earlier one (after a lost reply, a timeout, a
    /// restart of either side) gets the goods that one made, never a second
    /// goods. A client of several servers sends it to the next server when
    /// its connection fails.
    pub fn add_goods_with_request_id(
        &mut self,
        goods: NewGoods,
        request_id: RequestId,
    ) -> Result<Goods> {
        self.send_add_goods(goods, Some(request_id))
    }

    fn send_add_goods(&mut self, goods: NewGoods, request_id: Option<RequestId>) -> Result<Goods> {
        outcome::goods_added(self.request(&Request::AddGoods { goods, request_id })?)
    }

    /// RESTOCK (admin): adds `amount` units; returns the goods after.
    pub fn restock(&mut self, goods_id: u64, amount: u32) -> Result<Goods> {
        outcome::restocked(self.request(&Request::Restock { goods_id, amount })?)
    }

    /// SALE_CONTROL (admin): pauses, resumes or ends the sale of `goods_id`,
    /// or moves its window; returns the goods after the change.
    /// `unknown_goods` is an error.
    pub fn sale_control(&mut self, goods_id: u64, action: SaleAction) -> Result<Goods> {
        outcome::sale_changed(self.request(&Request::SaleControl { goods_id, action })?)
    }

    /// STATS (admin): the server's counters. Their names are the server's
    /// choice and may grow.
    pub fn stats(&mut self) -> Result<Vec<Stat>> {
        outcome::stats(self.request(&Request::Stats)?)
    }

    /// RECONCILE (admin): repairs the stock store's entry of one goods, or of
    /// every goods with `None`, from the order store, and returns each goods
    /// as it was found and as it was left. Goods ids start at 1: `Some(0)` is
    /// refused with [`ErrorKind::InvalidInput`](crate::ErrorKind::InvalidInput)
    /// and nothing is sent. `unknown_goods` is an error.
    pub fn reconcile(&mut self, goods: Option<u64>) -> Result<Vec<Drift>> {
        let goods_id = pipeline::reconcile_target(goods).map_err(Error::invalid_input)?;
        outcome::reconciled(self.request(&Request::Reconcile { goods_id })?)
    }

    /// Where a goods' units are in the server's stock store (admin): its
    /// pool, its buckets, units on their way between them, and orders
    /// holding one; [`StockParts::balanced`] says whether they add up to
    /// the goods' total. Servers that predate it answer `bad_request` (see
    /// [`Client::server_info`]'s capabilities).
    pub fn stock(&mut self, goods: u64) -> Result<StockParts> {
        outcome::stock(self.request(&Request::Stock { goods_id: goods })?)
    }
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("peer", &self.conn.stream().peer_addr().ok())
            .field("servers", &self.servers)
            .field("current", &self.current)
            .field("admin", &self.admin)
            .field("server_version", &self.server_version)
            .field("server_info", &self.server_info)
            .field("next_id", &self.next_id)
            .field("open", &self.is_open())
            .finish()
    }
}

/// The request id of HELLO: the bytes `\r\nseck\r\n` (see
/// `Client::greet_in`). A line-based server that reads past NUL bytes takes
/// the frame's start for a bad line and `seck` for an unknown command, and
/// answers at once. (Redis does not: it looks for a line end with `strchr`,
/// which stops at the length prefix's first NUL, so it waits in silence;
/// `seckill-cli` gives HELLO a short timeout of its own for such a peer.)
pub(crate) const HELLO_ID: u64 = u64::from_be_bytes(*b"\r\nseck\r\n");

/// A fresh client request id for a BUY or an ADD_GOODS, drawn from the operating system's
/// random source: 128 random bits, so that no two purchases of any clients
/// share one (PROTOCOL.md, section 5.1).
///
/// Fails with [`ErrorKind::Io`](crate::ErrorKind::Io) only if the system
/// has no random source to give.
pub fn random_request_id() -> Result<RequestId> {
    loop {
        let mut bytes = [0u8; 16];
        getrandom::fill(&mut bytes)
            .map_err(|e| Error::io("drawing a request id", io::Error::other(e.to_string())))?;
        // Bit 127 is the repeat mark, clear on a first send (PROTOCOL.md,
        // section 9); 0 is no id: one draw in 2^127 is, and is drawn again.
        bytes[0] &= 0x7f;
        if let Some(id) = RequestId::from_bytes(bytes) {
            return Ok(id);
        }
    }
}
