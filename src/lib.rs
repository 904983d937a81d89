//! seckill: a flash-sale server.
//!
//! ```text
//!                 ┌──────────┐  TcpStream + wake   ┌─────────────┐
//!   clients ────▶ │ acceptor │ ──────────────────▶ │ reactor 0…N │ ◀─── mio::Poll, Slab<Connection>
//!                 └──────────┘                     └─────────────┘
//!                                 decode frame; HELLO, PING, LIST, GET,   │   ▲ replies written
//!                                 STATS and BUY's fast answers (window,   │   │ to the socket
//!                                 sold-out flag, known order) on the spot │   │
//!                                                     bounded job channel │   │ completions + coalesced
//!                                                     (full → `busy`)     ▼   │ mio::Waker (Mailbox)
//!                                                             ┌──────────────────┐
//!                                                             │  worker pool     │ ── StockStore: one merged
//!                                                             │  (may block)     │    reserve per goods
//!                                                             └──────────────────┘
//!                                                                     │ reserved orders
//!                                                                     ▼
//!                                                             ┌──────────────────┐
//!                                                             │  order writer    │ ── OrderStore: one
//!                                                             │  (group commit)  │    transaction per batch
//!                                                             └──────────────────┘
//! ```
//!
//! A BUY is answered "ok" only after its order is committed; see [`sale`]
//! for the rules and [`store`] for the traits the backends implement.

pub mod admin_worker;
pub mod clock;
pub mod config;
pub mod dispatch;
pub mod drain;
pub mod expiry;
pub mod metrics;
pub mod reactor;
pub mod sale;
pub mod server;
pub mod store;
pub mod worker;
pub mod writer;

pub use config::Config;
pub use server::{Server, Shutdown};
