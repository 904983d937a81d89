//! Conformance suites: one set of tests per store trait, written once
//! against the trait and run against every backend (memory and Redis for
//! the stock store, SQLite and MySQL for the order store and its registry of
//! node ids), so that the backends cannot drift apart in what the trait
//! promises. What only one
//! backend does (Redis's epoch fence, its key layout, a lost connection;
//! MySQL's locking reads) is tested beside that backend.

pub(super) mod nodes;
pub(super) mod orders;
pub(super) mod stock;
