//! Conformance suites: one set of tests per store trait, written once
//! against the trait and run against every backend (memory and Redis for
//! the stock store, SQLite and MySQL for the order store and its registry of
//! node ids), so that the backends cannot drift apart in what the trait
//! promises. What only one
//! backend does (Redis's epoch fence, its key layout, a lost connection;
//! MySQL's locking reads) is tested beside that backend.

/// Runs each named test, generic over a `Backend` of the module it is used
/// in, once per SQL backend: `<module>::{sqlite,mysql}::<test>`.
macro_rules! per_backend {
    ($($test:ident),* $(,)?) => {
        mod sqlite {
            $(#[test]
            fn $test() {
                super::$test::<super::Sqlite>()
            })*
        }

        mod mysql {
            $(#[test]
            fn $test() {
                super::$test::<super::Mysql>()
            })*
        }
    };
}

mod backend;
mod lifecycle;
pub(super) mod nodes;
pub(super) mod orders;
mod request_ids;
pub(super) mod stock;
mod stock_agree;
mod stock_retries;
