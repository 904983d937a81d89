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
//! (`queued`); see [`sale`] for the rules, [`sale::catalog`] for every lock
//! and its order, and [`store`] for the traits the backends implement.
//! [`startup`] says what happens before the first sale, and [`lease`] how
//! servers on one order store keep their order numbers apart.

pub mod admin_worker;
pub mod clock;
pub mod config;
pub mod dispatch;
pub mod drain;
pub mod expiry;
pub mod lease;
pub mod metrics;
mod open_files;
pub mod reactor;
pub mod sale;
pub mod server;
pub mod startup;
pub mod stop;
pub mod store;
pub mod worker;
pub mod writer;

pub use config::Config;
pub use server::{Server, Shutdown};
