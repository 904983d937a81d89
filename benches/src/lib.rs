//! seckill-bench: the load generator that proves a seckill deployment
//! before a flash sale.
//!
//! ```text
//!   cli ──▶ scenario ──setup──▶ ADD_GOODS (seckill-client) / load (seckill-redis-scripts)
//!              │
//!              ├──▶ servers: every server of --addr shows the goods (before); what is left
//!              │      once they all agree (after)
//!              ├──▶ engine::run ── T threads × mio::Poll ── C connections ──▶ servers (round robin) or Redis
//!              │        Workload: what to send      Target: how (seckill_proto / RESP)
//!              │        Recorder: outcomes, HDR latency, per-second buckets; acks, per server
//!              │
//!              ├──▶ verify (pure) ◀── checks: GET_GOODS, ORDER_STATUS (at the server that acked), MySQL, Redis
//!              ├──▶ attack: phases of hostile traffic beside a normal client (engine::run)
//!              ├──▶ sweep: the flash crowd, open loop, once per offered rate
//!              ├──▶ lifecycle: BUY, then PAY / CANCEL at their instants (engine::run), then
//!              │      every order paid or cancelled, every unit paid or back on sale
//!              ├──▶ server_view (--metrics): the servers' /metrics before and after the engine
//!              └──▶ report: text, --json, --plot (plotters SVG)
//! ```
//!
//! The binary is a thin shell around [`run`]: a test (or another tool) can
//! build a [`Cli`] and run a scenario in-process.
//!
//! ```no_run
//! use clap::Parser;
//!
//! let cli = seckill_bench::Cli::parse_from([
//!     "seckill-bench", "flash-crowd", "--addr", "127.0.0.1:7700", "--token", "t",
//!     "--connections", "100", "--users", "10000", "--attempts", "20000", "--stock", "1000",
//! ]);
//! let output = seckill_bench::run(&cli)?;
//! assert!(output.passed(), "{}", output.text());
//! # Ok::<(), seckill_bench::Error>(())
//! ```

pub mod attack;
pub mod checks;
pub mod cli;
pub mod cost;
pub mod engine;
pub mod error;
pub mod lifecycle;
pub mod plot;
pub mod redis_goods;
pub mod report;
pub mod scenario;
pub mod schedule;
pub mod server_view;
pub mod servers;
pub mod stats;
pub mod storm;
pub mod sweep;
pub mod users;
pub mod verify;
pub mod workload;

pub use cli::Cli;
pub use error::Error;
pub use report::{Comparison, Output, Report};
pub use scenario::run;
