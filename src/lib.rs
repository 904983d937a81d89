//! seckill: a flash-sale server.
//!
//! Every thread role, and what travels between them:
//!
//! ```text
//!              ┌──────────┐  TcpStream + wake   ┌─────────────┐
//! clients ───▶ │ acceptor │ ──────────────────▶ │ reactor 0…N │ ◀── mio::Poll, Slab<Connection>
//!              └──────────┘                     └─────────────┘
//!   decode frames; answer HELLO, PING, LIST,    │    │      ▲  replies written to the socket
//!   GET, STATS and BUY's fast answers (window,  │    │      │
//!   pause, sold-out flag, known order) at once  │    │      │  completions + one coalesced
//!                    bounded job queues ────────┘    │      │  mio::Waker per reactor (Mailbox)
//!                    (full → `busy`)                 │      │
//!          ┌─────────────────────────┐   ┌───────────▼──┐   │
//!          │ admin worker            │   │ worker pool  │───┤ answers at once: refusals; in the
//!          │ ADD_GOODS, RESTOCK,     │   │ BUY, PAY,    │   │ `queued` mode also "ok", the order
//!          │ SALE_CONTROL, RECONCILE,│   │ CANCEL, …    │   │ queued in Redis with its deduction
//!          │ repairs of goods in     │   └──────────────┘   │
//!          │ doubt                   │          │ PendingOrder (`durable` mode)
//!          └─────────────────────────┘          ▼           │
//!                                        ┌──────────────┐   │
//!                                        │ order writer │───┘ "ok" once the batch is committed
//!                                        │ group commit │
//!                                        └──────────────┘
//!   ┌─────────────┐ `queued` mode: writes the      ┌────────┐ cancels unpaid orders past their
//!   │ queue drain │ orders queued in Redis to the  │ expiry │ window, returns their units;
//!   └─────────────┘ order store, then acks them    └────────┘ refreshes and repairs the stock
//!   ┌─────────┐
//!   │ signals │ (the binary) SIGINT/SIGTERM → Shutdown::trigger
//!   └─────────┘
//! ```
//!
//! Stores: the worker pool, the admin worker, the order writer, the queue
//! drain and the expiry sweep call the stock store (memory or Redis) and the
//! order store (SQLite or MySQL); reactors never do. A BUY is answered "ok"
//! only once its order is committed (`durable`) or queued with its deduction
//! (`queued`); see [`sale`] for the rules, [`sale::catalog`] for every lock
//! and its order, and [`store`] for the traits the backends implement.

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
pub mod stop;
pub mod store;
pub mod worker;
pub mod writer;

pub use config::Config;
pub use server::{Server, Shutdown};
