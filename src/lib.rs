//! seckill: a flash-sale server.
//!
//! Every thread role, and what travels between them:
//!
//! ```text
//!              ┌──────────┐  TcpStream + wake   ┌─────────────┐
//! clients ───▶ │ acceptor │ ──────────────────▶ │ reactor 0…N │ ◀── mio::Poll, Slab<Connection>
//!              └──────────┘                     └─────────────┘
//!   decode frames; answer HELLO, PING, LIST,        │       ▲  replies written to the socket
//!   GET, STATS and BUY's fast answers (window,      │       │
//!   pause, sold-out flag, known order) at once      │       │  completions, one coalesced
//!                                                   │       │  mio::Waker per reactor (Mailbox)
//!              bounded job queues (full → `busy`)   │       │
//!            ┌──────────────────────┬───────────────┘       │
//!            ▼                      ▼                       │
//!  ┌────────────────────┐   ┌──────────────┐                │
//!  │ admin worker       │   │ worker pool  │────────────────┤ refusals at once; in the `queued`
//!  │ ADD_GOODS, RESTOCK,│   │ BUY, PAY,    │                │ mode "ok" at once too (the order is
//!  │ SALE_CONTROL,      │   │ CANCEL, …    │                │ queued in Redis with its deduction)
//!  │ RECONCILE, repairs │   └──────────────┘                │
//!  └────────────────────┘          │ PendingOrder (durable) │
//!            │ replies             ▼                        │
//!            │              ┌──────────────┐                │
//!            │              │ order writer │────────────────┤ "ok" once the batch is committed
//!            │              │ group commit │                │
//!            │              └──────────────┘                │
//!            └──────────────────────────────────────────────┘
//!  ┌─────────────┐ `queued` mode: writes the       ┌────────┐ cancels unpaid orders past their
//!  │ queue drain │ orders queued in Redis to the   │ expiry │ window and returns their units;
//!  └─────────────┘ order store, then acks them     └────────┘ refreshes and repairs the stock
//!  ┌────────────┐ renews this server's node id    ┌─────────┐ only while a store is down at start:
//!  │ node lease │ lease in the order store;       │ startup │ tries again, with backoff, to make
//!  └────────────┘ released at a clean stop        └─────────┘ the tables, lease a node id, load
//!  ┌─────────┐                                                and reconcile the goods; then
//!  │ signals │ (in the binary) SIGINT, SIGTERM    starts the roles above and opens the sale
//!  └─────────┘ → Shutdown::trigger                to reactors (until then: `busy`)
//! ```
//!
//! Stores: the worker pool, the admin worker, the order writer, the queue
//! drain, the expiry sweep, the node lease and start-up call the stock store
//! (memory or Redis) and the order store (SQLite or MySQL); reactors never
//! do. A BUY is answered "ok"
//! only once its order is committed (`durable`) or queued with its deduction
//! (`queued`). The rules are in `sale/`, every lock and its order in
//! `sale/catalog/mod.rs`, and the traits the backends implement in
//! `store/mod.rs`; `startup.rs` says what happens before the first sale,
//! and `lease.rs` how servers on one order store keep their order numbers
//! apart.
//!
//! The crate's public surface is what the binary, the fuzz target and the
//! micro-benchmarks need: [`Server`] started from a [`Config`], and
//! [`testing`]. Everything else is the server's own.

mod admin_log;
mod admin_worker;
mod clock;
mod config;
mod dispatch;
mod drain;
mod expiry;
mod lease;
mod metrics;
mod open_files;
mod panics;
mod reactor;
pub mod readiness;
mod redact;
mod sale;
mod server;
mod startup;
mod stop;
mod store;
mod telemetry;
mod worker;
mod writer;

pub use config::{AckMode, Config, ConfigError, Effective, Loaded, Secret, VERSION};
pub use server::{Server, Shutdown};

/// What the fuzz target and the micro-benchmarks reach in from outside:
/// the clock the server stamps orders with, and the in-memory stock store
/// with what it takes.
pub mod testing {
    pub use crate::clock::now_ms;
    pub use crate::store::{
        Buyer, Loaded, MemoryStock, Reservation, ReserveRules, Reserved, StockStore, StoreError,
        TokenRefusal,
    };
}
