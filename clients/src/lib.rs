//! A blocking client for the seckill flash-sale server.
//!
//! It speaks the binary protocol of [`seckill_proto`] over a plain
//! [`std::net::TcpStream`], in the manner of the `redis` crate: a [`Client`]
//! with one typed method per command, a [`Pipeline`] for batches, and one
//! opaque [`Error`] with an [`ErrorKind`] and predicates.
//!
//! ```no_run
//! use seckill_client::{Client, Pipeline, Purchase, Reply};
//!
//! # fn main() -> Result<(), seckill_client::Error> {
//! let mut client = Client::connect("127.0.0.1:7700")?;
//!
//! // A flash-sale outcome is a value; only failures are errors.
//! match client.buy(42, 7) {
//!     Ok(Purchase::Ordered(no) | Purchase::AlreadyBought(no)) => println!("order {no}"),
//!     Ok(other) => println!("no luck: {other:?}"),
//!     Err(e) if e.is_busy() => println!("server busy, retry later"),
//!     Err(e) => return Err(e),
//! }
//!
//! // A batch goes out in one write (up to 128 requests at a time); the
//! // replies come back in request order, whatever order the server used.
//! let mut p = Pipeline::new();
//! p.get_goods(7).order_status(42, 7);
//! let replies: Vec<Reply> = client.execute(&p)?;
//! println!("{replies:?}");
//! # Ok(())
//! # }
//! ```
//!
//! An order must be paid within its goods' payment window, or it is
//! cancelled and its unit goes back on sale. Goods whose rules require it
//! are bought with a purchase token:
//!
//! ```no_run
//! use seckill_client::{Client, Payment, Purchase};
//!
//! # fn main() -> Result<(), seckill_client::Error> {
//! let mut client = Client::connect("127.0.0.1:7700")?;
//! let token = client.purchase_token(42, 8)?;
//! let purchase = match client.buy_with_token(42, 8, token.token) {
//!     // Expired or spent while the user dithered: one fresh try.
//!     Err(e) if e.needs_new_token() => {
//!         let token = client.purchase_token(42, 8)?;
//!         client.buy_with_token(42, 8, token.token)?
//!     }
//!     other => other?,
//! };
//! if let Purchase::Ordered(no) = purchase {
//!     // ... take the money, then:
//!     match client.pay(42, no)? {
//!         Payment::Paid(order) => println!("order {} is paid", order.order_no),
//!         Payment::OrderCancelled => println!("too late: give the money back"),
//!     }
//! }
//! for order in client.list_orders(42)? {
//!     println!("{} {}", order.order_no, order.state.as_str());
//! }
//! # Ok(())
//! # }
//! ```
//!
//! Admin commands need the admin token:
//!
//! ```no_run
//! use std::time::Duration;
//! use seckill_client::{Client, NewGoods, SaleAction, SaleRules};
//!
//! # fn main() -> Result<(), seckill_client::Error> {
//! let mut admin = Client::builder("127.0.0.1:7700")
//!     .token("s3cret")
//!     .read_timeout(Duration::from_secs(2))
//!     .connect()?;
//! assert!(admin.is_admin());
//! // Two per user, 5 minutes to pay, BUY only with a purchase token.
//! let goods = admin.add_goods(NewGoods {
//!     name: "Phone X".into(),
//!     price_cents: 1999,
//!     stock: 100,
//!     start_ms: 1_900_000_000_000,
//!     end_ms: 1_900_003_600_000,
//!     rules: SaleRules {
//!         per_user_limit: 2,
//!         pay_window_ms: 5 * 60 * 1000,
//!         token_required: true,
//!     },
//!     buckets: 1,
//! })?;
//! admin.sale_control(goods.id, SaleAction::Pause)?;
//! for stat in admin.stats()? {
//!     println!("{} = {}", stat.name, stat.value);
//! }
//! // Repair the stock store of every goods from the order store.
//! for d in admin.reconcile(None)? {
//!     println!("goods {}: drift {}", d.goods_id, d.drift());
//! }
//! # Ok(())
//! # }
//! ```
//!
//! A sale served by several servers (on the same stores) is one client with
//! their addresses: it talks to one and moves to the next when a connection
//! fails, sending a request again only where that cannot do it twice (see
//! [`Client`]). Every BUY carries a client request id, which makes it such a
//! request; a caller that retries on its own keeps the id of the purchase:
//!
//! ```no_run
//! use std::time::Duration;
//! use seckill_client::{random_request_id, Client, Purchase};
//!
//! # fn main() -> Result<(), seckill_client::Error> {
//! let mut client = Client::builder("10.0.0.1:7700")
//!     .addrs(["10.0.0.2:7700", "10.0.0.3:7700"])
//!     .connect()?;
//! // Drawn once, when the user asks to buy, and kept with that purchase:
//! // every try below is the same purchase, so it can buy at most once.
//! let id = random_request_id()?;
//! let purchase = loop {
//!     match client.buy_with_request_id(42, 7, id) {
//!         Err(e) if e.is_retryable() || e.is_timeout() || e.is_closed() => {
//!             std::thread::sleep(Duration::from_millis(100));
//!         }
//!         other => break other?,
//!     }
//! };
//! if let Purchase::Ordered(no) = purchase {
//!     println!("order {no}");
//! }
//! # Ok(())
//! # }
//! ```
//!
//! With the cargo feature `tokio`, the module `aio` has an async client with
//! the same typed methods: one multiplexed connection shared by cheap
//! clones, for services on tokio (`seckill-web` is one).
//!
//! The modules follow the data path: [`Client`] turns calls into requests,
//! `servers` says which server a request goes to and whether a failed one
//! may go to the next, the pipeline exchange matches replies to requests by
//! id, and the connection moves frames over the socket.

#![warn(missing_docs)]

#[cfg(feature = "tokio")]
#[cfg_attr(docsrs, doc(cfg(feature = "tokio")))]
pub mod aio;
mod builder;
mod client;
mod connection;
mod error;
#[cfg(feature = "metrics")]
#[cfg_attr(docsrs, doc(cfg(feature = "metrics")))]
pub mod metrics;
mod outcome;
mod pipeline;
pub mod secret_file;
mod servers;

#[cfg(test)]
mod fake_server;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_servers;

pub use builder::ClientBuilder;
pub use client::{
    random_request_id, Cancellation, Client, Payment, Purchase, PurchaseToken,
    DEFAULT_MAX_IN_FLIGHT, DEFAULT_TIMEOUT,
};
pub use error::{Error, ErrorKind, Result};
pub use pipeline::Pipeline;

/// The protocol crate, for callers who want its codec or constants.
pub use seckill_proto as proto;
/// The records and messages of the protocol, re-exported so that callers need
/// not depend on `seckill-proto` themselves.
pub use seckill_proto::{
    Drift, Goods, GoodsState, NewGoods, Order, OrderState, Reply, Request, RequestId, SaleAction,
    SaleRules, Stat, Status, StockParts, NO_TOKEN,
};
