//! The async client, on tokio (cargo feature `tokio`).
//!
//! One multiplexed connection per client, in the manner of the `redis`
//! crate's multiplexed connection: every call from every task goes down
//! the same socket without waiting for the calls before it, and each reply
//! finds its caller by its request id, whatever order the server answers
//! in. [`Client`] is a cheap handle (an `Arc`): clone it into every task.
//!
//! ```text
//!  task A ─┐                                  ┌─▶ server 1 (one connection at a time)
//!  task B ─┼─▶ Client (clone) ─▶ connection ──┤
//!  task C ─┘     │ dial next on failure       └ ─ ▶ server 2, 3 … (after a failure)
//!                └ backoff when every server failed
//! ```
//!
//! It has the blocking [`Client`](crate::Client)'s typed methods and
//! answers, and its retry rules: a request that met a failed connection is
//! sent again on a new one (to the next server of the list) only where that
//! cannot do it twice, and every [`buy`](Client::buy) carries a client
//! request id, so that its retries are safe.
//!
//! ```no_run
//! use seckill_client::aio::Client;
//! use seckill_client::Purchase;
//!
//! # async fn demo() -> Result<(), seckill_client::Error> {
//! let client = Client::builder("10.0.0.1:7700")
//!     .addrs(["10.0.0.2:7700"])
//!     .connect()
//!     .await?;
//! // Many buyers at once, on one connection.
//! let mut buyers = Vec::new();
//! for user_id in 1..=100 {
//!     let client = client.clone();
//!     buyers.push(tokio::spawn(async move { client.buy(user_id, 7).await }));
//! }
//! for buyer in buyers {
//!     match buyer.await.expect("buyer task") {
//!         Ok(Purchase::Ordered(no)) => println!("order {no}"),
//!         Ok(other) => println!("{other:?}"),
//!         Err(e) if e.is_retryable() => println!("busy: try again"),
//!         Err(e) => return Err(e),
//!     }
//! }
//! # Ok(())
//! # }
//! ```

mod builder;
mod dial;
mod link;

use std::sync::Arc;

use seckill_proto::{
    Drift, Goods, NewGoods, Order, Reply, Request, RequestId, SaleAction, ServerInfo, Stat,
    StockParts, NO_TOKEN,
};
use tokio::sync::Mutex;
use tokio::time::Instant;

pub use builder::{ClientBuilder, DEFAULT_BACKOFF_MAX, DEFAULT_BACKOFF_MIN};

use crate::client::{random_request_id, Cancellation, Payment, Purchase, PurchaseToken};
use crate::error::{Error, Result};
use crate::outcome;
use crate::pipeline::{self, check_request, Pipeline};
use crate::servers::{as_repeat, connection_failed, dial_failed, gave_up, safe_to_resend};
use builder::Options;
use link::{Failure, Link};

/// An async client of a seckill server, or of several that sell from the
/// same stores: one multiplexed connection, shared by every clone.
///
/// Calls take `&self` and may run concurrently from any number of tasks;
/// they are pipelined on the one connection. Each call has a deadline (the
/// builder's [`request_timeout`](ClientBuilder::request_timeout)), past
/// which it fails with [`ErrorKind::Timeout`](crate::ErrorKind::Timeout)
/// and its late reply, if any, is dropped: unlike the blocking client, a
/// timeout does not break the connection, since replies are matched by id.
/// A server that has sent nothing at all for that long while requests
/// waited is another matter: its connection is taken for dead, and every
/// request on it fails.
///
/// When the connection fails, the next call dials again: the next server
/// of the list, round and round. A request that was in flight on the failed
/// connection is sent again at once on the new one only if that is safe
/// (the rules of the blocking [`Client`](crate::Client): reads, PAY,
/// CANCEL, TOKEN, the sale controls, RECONCILE, and BUY or ADD_GOODS under
/// a client request id, which goes as a repeat); a request that never left
/// the process is always sent. When every server refuses, calls fail at
/// once with [`ErrorKind::Closed`](crate::ErrorKind::Closed) until the
/// backoff has passed.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

struct Inner {
    addrs: Vec<String>,
    options: Options,
    /// Held while dialling, so that concurrent calls share one new
    /// connection rather than open one each.
    state: Mutex<State>,
}

struct State {
    link: Option<Link>,
    /// The server the next dial tries first.
    next_server: usize,
    /// Rounds in a row in which no server could be dialled.
    failed_rounds: u32,
    /// No dial before this, after a failed round.
    retry_at: Option<Instant>,
    /// Dials in a row, over calls, that failed: refused, or cut by a
    /// call's deadline after half its timeout (a server that accepts and
    /// never greets). As many as there are servers make a failed round,
    /// though no one call saw them all fail.
    failed_dials: usize,
}

impl Client {
    /// Connects to `addr` with the default options and no admin token.
    pub async fn connect(addr: impl Into<String>) -> Result<Client> {
        Client::builder(addr).connect().await
    }

    /// Options for a client of the server at `addr` (`host:port`; more
    /// with [`addrs`](ClientBuilder::addrs)).
    pub fn builder(addr: impl Into<String>) -> ClientBuilder {
        ClientBuilder::new(addr)
    }

    fn new(addrs: Vec<String>, options: Options) -> Client {
        Client {
            inner: Arc::new(Inner {
                addrs,
                options,
                state: Mutex::new(State {
                    link: None,
                    next_server: 0,
                    failed_rounds: 0,
                    retry_at: None,
                    failed_dials: 0,
                }),
            }),
        }
    }

    /// How many servers the client knows.
    pub fn server_count(&self) -> usize {
        self.inner.addrs.len()
    }

    /// Whether HELLO granted admin rights on the current connection
    /// (dialling one if there is none).
    pub async fn is_admin(&self) -> Result<bool> {
        Ok(self.deadline_link().await?.greeting.admin)
    }

    /// What the current server said of itself in HELLO (`None` from a
    /// server of protocol version 1), dialling one if need be.
    pub async fn server_info(&self) -> Result<Option<ServerInfo>> {
        Ok(self.deadline_link().await?.greeting.server)
    }

    /// The protocol version the current connection speaks.
    pub async fn server_version(&self) -> Result<u16> {
        Ok(self.deadline_link().await?.greeting.version)
    }

    async fn deadline_link(&self) -> Result<Link> {
        let deadline = Instant::now() + self.inner.options.request_timeout;
        self.link(deadline).await
    }

    /// The live connection, dialled anew if there is none.
    async fn link(&self, deadline: Instant) -> Result<Link> {
        let timed_out = || Error::timeout("timed out waiting for a connection to a server");
        let mut state = tokio::time::timeout_at(deadline, self.inner.state.lock())
            .await
            .map_err(|_| timed_out())?;
        if let Some(link) = &state.link {
            if link.is_alive() {
                return Ok(link.clone());
            }
            // It failed: the next dial starts after it.
            state.next_server = (link.server + 1) % self.inner.addrs.len().max(1);
            state.link = None;
        }
        if let Some(at) = state.retry_at {
            let now = Instant::now();
            if now < at {
                return Err(Error::closed(format!(
                    "no server could be reached; dialling again in {} ms",
                    (at - now).as_millis()
                )));
            }
        }
        let servers = self.inner.addrs.len();
        let mut last_error = None;
        for _ in 0..servers {
            let index = state.next_server;
            state.next_server = (index + 1) % servers;
            let options = &self.inner.options;
            let limit = dial::dial_limit(options, servers);
            let began = Instant::now();
            let dialled = match tokio::time::timeout_at(
                deadline,
                dial::dial(index, &self.inner.addrs[index], options, limit),
            )
            .await
            {
                Ok(dialled) => dialled,
                Err(_) => {
                    // Cut by the call's deadline. A dial given half the
                    // request timeout (or its whole limit) found a server
                    // that accepts and never greets: a failed dial, or
                    // every call would open a connection to it and wait
                    // out its timeout. One that began late says nothing of
                    // the server.
                    if began.elapsed() >= limit.min(options.request_timeout / 2) {
                        state.failed_dials += 1;
                        if state.failed_dials >= servers {
                            self.failed_round(&mut state);
                        }
                    }
                    return Err(timed_out());
                }
            };
            match dialled {
                Ok(link) => {
                    state.next_server = index;
                    state.failed_rounds = 0;
                    state.failed_dials = 0;
                    state.retry_at = None;
                    state.link = Some(link.clone());
                    return Ok(link);
                }
                Err(e) if dial_failed(&e) => {
                    state.failed_dials += 1;
                    last_error = Some(e);
                    // With the dials of calls before, every server failed.
                    if state.failed_dials >= servers {
                        break;
                    }
                }
                // A refusal every server would repeat (a wrong token).
                Err(e) => return Err(e),
            }
        }
        self.failed_round(&mut state);
        Err(last_error.unwrap_or_else(|| Error::invalid_input("no server address given")))
    }

    /// Every server failed its dial: no dial again before the backoff.
    fn failed_round(&self, state: &mut State) {
        state.failed_dials = 0;
        state.failed_rounds = state.failed_rounds.saturating_add(1);
        state.retry_at = Some(Instant::now() + self.backoff(state.failed_rounds));
    }

    /// The wait after `rounds` failed rounds: doubling from the minimum.
    fn backoff(&self, rounds: u32) -> std::time::Duration {
        let options = &self.inner.options;
        let factor = 1u32 << rounds.saturating_sub(1).min(16);
        options
            .backoff_min
            .saturating_mul(factor)
            .min(options.backoff_max)
    }

    /// Sends one request and returns its reply as it came, error statuses
    /// included as [`Reply::Error`]. The typed methods are built on this.
    pub async fn request(&self, request: &Request) -> Result<Reply> {
        check_request(request)?;
        let deadline = Instant::now() + self.inner.options.request_timeout;
        tokio::time::timeout_at(deadline, self.request_until(request, deadline))
            .await
            .map_err(|_| {
                Error::timeout(format!(
                    "timed out waiting for the reply to {:?}",
                    request.opcode()
                ))
            })?
    }

    async fn request_until(&self, request: &Request, deadline: Instant) -> Result<Reply> {
        let resend = safe_to_resend(request);
        // Each server once, and a single server twice: a server that
        // restarted between two calls is found again by the next.
        let tries = self.inner.addrs.len().max(2);
        let mut last_error = None;
        // The failure of a connection with the request in flight: from then
        // on it may have been done, and only a reply says whether; a server
        // that then cannot be reached, or refuses to be (`busy`), says
        // nothing of it, and this is the error returned.
        let mut in_doubt: Option<Error> = None;
        for _ in 0..tries {
            let link = match self.link(deadline).await {
                Ok(link) => link,
                Err(e) if (in_doubt.is_some() || last_error.is_some()) && dial_failed(&e) => {
                    last_error = Some(e);
                    break;
                }
                Err(e) => return Err(gave_up(in_doubt, Some(e))),
            };
            let this = if in_doubt.is_some() {
                as_repeat(request)
            } else {
                request.clone()
            };
            match link.call(this).await {
                Ok(reply) => return Ok(reply),
                Err(Failure { error, sent: false }) => last_error = Some(error),
                Err(Failure { error, sent: true }) => {
                    if !(resend && connection_failed(&error)) {
                        return Err(error);
                    }
                    in_doubt = Some(error);
                }
            }
        }
        Err(gave_up(in_doubt, last_error))
    }

    /// Sends every request of `pipeline` at once on the connection and
    /// returns their replies in request order. Error statuses are replies
    /// ([`Reply::Error`]). A batch that meets a failed connection is not
    /// sent again: its error is returned.
    pub async fn execute(&self, pipeline: &Pipeline) -> Result<Vec<Reply>> {
        pipeline.check()?;
        pipeline.requests().iter().try_for_each(check_request)?;
        let deadline = Instant::now() + self.inner.options.request_timeout;
        let work = async {
            let link = self.link(deadline).await?;
            let mut answers = Vec::with_capacity(pipeline.len());
            for request in pipeline.requests() {
                answers.push(link.queue(request.clone()).await.map_err(|f| f.error)?);
            }
            let mut replies = Vec::with_capacity(answers.len());
            for answer in answers {
                replies.push(link::wait(answer).await.map_err(|f| f.error)?);
            }
            Ok(replies)
        };
        tokio::time::timeout_at(deadline, work)
            .await
            .map_err(|_| Error::timeout("timed out waiting for the replies of a pipeline"))?
    }

    /// PING: checks the server answers.
    pub async fn ping(&self) -> Result<()> {
        outcome::pong(self.request(&Request::Ping).await?)
    }

    /// LIST_GOODS: every goods, with its state at this moment.
    pub async fn list_goods(&self) -> Result<Vec<Goods>> {
        outcome::goods_list(self.request(&Request::ListGoods).await?)
    }

    /// GET_GOODS: one goods; `unknown_goods` is an error.
    pub async fn get_goods(&self, goods_id: u64) -> Result<Goods> {
        outcome::goods(self.request(&Request::GetGoods { goods_id }).await?)
    }

    /// BUY without a purchase token, under a fresh client request id: see
    /// the blocking [`Client::buy`](crate::Client::buy).
    pub async fn buy(&self, user_id: u64, goods_id: u64) -> Result<Purchase> {
        let request_id = self.fresh_request_id()?;
        self.send_buy(user_id, goods_id, NO_TOKEN, request_id).await
    }

    /// BUY with a purchase token, under a fresh client request id: see the
    /// blocking [`Client::buy_with_token`](crate::Client::buy_with_token).
    pub async fn buy_with_token(
        &self,
        user_id: u64,
        goods_id: u64,
        token: u64,
    ) -> Result<Purchase> {
        let token = pipeline::buy_token(token).map_err(Error::invalid_input)?;
        let request_id = self.fresh_request_id()?;
        self.send_buy(user_id, goods_id, token, request_id).await
    }

    /// BUY named by the caller's `request_id`, the same on every try of one
    /// purchase: see the blocking
    /// [`Client::buy_with_request_id`](crate::Client::buy_with_request_id).
    pub async fn buy_with_request_id(
        &self,
        user_id: u64,
        goods_id: u64,
        request_id: RequestId,
    ) -> Result<Purchase> {
        self.send_buy(user_id, goods_id, NO_TOKEN, Some(request_id))
            .await
    }

    /// BUY with a purchase token, named by the caller's `request_id`.
    pub async fn buy_with_token_and_request_id(
        &self,
        user_id: u64,
        goods_id: u64,
        token: u64,
        request_id: RequestId,
    ) -> Result<Purchase> {
        let token = pipeline::buy_token(token).map_err(Error::invalid_input)?;
        self.send_buy(user_id, goods_id, token, Some(request_id))
            .await
    }

    fn fresh_request_id(&self) -> Result<Option<RequestId>> {
        if self.inner.options.request_ids {
            random_request_id().map(Some)
        } else {
            Ok(None)
        }
    }

    async fn send_buy(
        &self,
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
        outcome::purchase(self.request(&request).await?)
    }

    /// TOKEN: a short-lived, single-use purchase token for one BUY.
    pub async fn purchase_token(&self, user_id: u64, goods_id: u64) -> Result<PurchaseToken> {
        outcome::purchase_token(self.request(&Request::Token { user_id, goods_id }).await?)
    }

    /// PAY: pays an order of `user_id`'s; safe to retry.
    pub async fn pay(&self, user_id: u64, order_no: u64) -> Result<Payment> {
        outcome::payment(self.request(&Request::Pay { user_id, order_no }).await?)
    }

    /// CANCEL: cancels an unpaid order of `user_id`'s; safe to retry.
    pub async fn cancel(&self, user_id: u64, order_no: u64) -> Result<Cancellation> {
        outcome::cancellation(self.request(&Request::Cancel { user_id, order_no }).await?)
    }

    /// LIST_ORDERS: every order of `user_id`, newest first.
    pub async fn list_orders(&self, user_id: u64) -> Result<Vec<Order>> {
        outcome::orders(self.request(&Request::ListOrders { user_id }).await?)
    }

    /// ORDER_STATUS: the user's newest order of this goods, `None` if none.
    pub async fn order_status(&self, user_id: u64, goods_id: u64) -> Result<Option<Order>> {
        outcome::order_status(
            self.request(&Request::OrderStatus { user_id, goods_id })
                .await?,
        )
    }

    /// ADD_GOODS (admin), without a request id: not sent again after a
    /// connection failure.
    pub async fn add_goods(&self, goods: NewGoods) -> Result<Goods> {
        let request = Request::AddGoods {
            goods,
            request_id: None,
        };
        outcome::goods_added(self.request(&request).await?)
    }

    /// ADD_GOODS (admin) named by `request_id`: a call with the id of an
    /// earlier one gets the goods that one made.
    pub async fn add_goods_with_request_id(
        &self,
        goods: NewGoods,
        request_id: RequestId,
    ) -> Result<Goods> {
        let request = Request::AddGoods {
            goods,
            request_id: Some(request_id),
        };
        outcome::goods_added(self.request(&request).await?)
    }

    /// RESTOCK (admin): adds `amount` units; returns the goods after.
    pub async fn restock(&self, goods_id: u64, amount: u32) -> Result<Goods> {
        outcome::restocked(self.request(&Request::Restock { goods_id, amount }).await?)
    }

    /// SALE_CONTROL (admin): pause, resume, end, or a new window.
    pub async fn sale_control(&self, goods_id: u64, action: SaleAction) -> Result<Goods> {
        outcome::sale_changed(
            self.request(&Request::SaleControl { goods_id, action })
                .await?,
        )
    }

    /// STATS (admin): the server's counters.
    pub async fn stats(&self) -> Result<Vec<Stat>> {
        outcome::stats(self.request(&Request::Stats).await?)
    }

    /// RECONCILE (admin) of one goods, or of every goods with `None`.
    pub async fn reconcile(&self, goods: Option<u64>) -> Result<Vec<Drift>> {
        let goods_id = pipeline::reconcile_target(goods).map_err(Error::invalid_input)?;
        outcome::reconciled(self.request(&Request::Reconcile { goods_id }).await?)
    }

    /// STOCK (admin): where a goods' units are in the server's stock store;
    /// see [`crate::Client::stock`].
    pub async fn stock(&self, goods: u64) -> Result<StockParts> {
        outcome::stock(self.request(&Request::Stock { goods_id: goods }).await?)
    }
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("aio::Client")
            .field("addrs", &self.inner.addrs)
            .field("options", &self.inner.options)
            .finish()
    }
}
