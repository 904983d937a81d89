//! A throwaway MySQL/MariaDB database per test.
//!
//! The server is `SECKILL_TEST_MYSQL` (default `mysql://root@127.0.0.1:3306`;
//! `scripts/services.sh` starts one). Each [`TestDb`] names a database of its
//! own, `seckill_test_<pid>_<counter>_<random>`, which the code under test
//! creates (as `MysqlStore::open` does) and the guard drops when it goes out
//! of scope, the test failing or not. A missing server fails the test with a
//! message saying so: store tests are never skipped.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use ::mysql::prelude::Queryable;
use ::mysql::{Conn, Opts, OptsBuilder};

const DEFAULT_SERVER: &str = "mysql://root@127.0.0.1:3306";

pub struct TestDb {
    name: String,
    url: String,
    server: Opts,
}

impl TestDb {
    /// Names a fresh database after checking that the server answers.
    /// Panics, saying why, if it does not.
    pub fn new() -> TestDb {
        let server_url =
            std::env::var("SECKILL_TEST_MYSQL").unwrap_or_else(|_| DEFAULT_SERVER.to_string());
        TestDb::on(&server_url)
    }

    /// A fresh database on the server at `server_url` (a Galera node: the
    /// database is the cluster's).
    pub fn on(server_url: &str) -> TestDb {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let server_url = server_url.to_string();
        let server = Opts::from_url(&server_url)
            .unwrap_or_else(|e| panic!("SECKILL_TEST_MYSQL={server_url:?} is no MySQL URL: {e}"));
        let server: Opts = OptsBuilder::from_opts(server)
            .db_name(None::<String>)
            .tcp_connect_timeout(Some(Duration::from_secs(2)))
            .read_timeout(Some(Duration::from_secs(10)))
            .into();
        if let Err(e) = Conn::new(server.clone()) {
            panic!(
                "the MySQL/MariaDB server for the store tests does not answer at {server_url} \
                 ({e}); start it with scripts/services.sh or point SECKILL_TEST_MYSQL at one"
            );
        }
        let random = RandomState::new().build_hasher().finish() as u32;
        let name = format!(
            "seckill_test_{}_{}_{random:08x}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        TestDb {
            url: url_with_db(&server_url, &name),
            name,
            server,
        }
    }

    /// The database's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The server's URL with this database in it.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// A connection to the server, in this database if it exists.
    pub fn conn(&self) -> Conn {
        let mut conn = Conn::new(self.server.clone()).expect("connect to the test server");
        let _ = conn.select_db(&self.name);
        conn
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let dropped = Conn::new(self.server.clone()).and_then(|mut conn| {
            conn.query_drop(format!("DROP DATABASE IF EXISTS `{}`", self.name))
        });
        if let Err(e) = dropped {
            // Never panic here: the test may be unwinding already.
            eprintln!("test database {} not dropped: {e}", self.name);
        }
    }
}

/// The base URLs (no database) of the 3-node Galera cluster of
/// `scripts/cluster/galera.sh`, brought up by it once per test binary (the
/// script is idempotent and takes a lock, so the test binaries may race).
/// Panics, with the script's output, if it fails.
pub fn galera() -> [&'static str; 3] {
    static UP: std::sync::OnceLock<Result<(), String>> = std::sync::OnceLock::new();
    let up = UP.get_or_init(|| {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/cluster/galera.sh");
        let out = std::process::Command::new(script)
            .arg("up")
            .output()
            .map_err(|e| format!("run {script}: {e}"))?;
        if out.status.success() {
            return Ok(());
        }
        Err(format!(
            "{script} up failed ({}):\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    });
    if let Err(e) = up {
        panic!("{e}");
    }
    [
        "mysql://root@127.0.0.1:33061",
        "mysql://root@127.0.0.1:33062",
        "mysql://root@127.0.0.1:33063",
    ]
}

/// `mysql://user@host:port[/db][?params]` with `/name` as its database.
fn url_with_db(server_url: &str, name: &str) -> String {
    let (base, params) = match server_url.split_once('?') {
        Some((base, params)) => (base, Some(params)),
        None => (server_url, None),
    };
    // The path starts at the first '/' after the scheme's "//".
    let authority_start = base.find("://").map_or(0, |i| i + 3);
    let base = match base[authority_start..].find('/') {
        Some(i) => &base[..authority_start + i],
        None => base,
    };
    match params {
        Some(params) => format!("{base}/{name}?{params}"),
        None => format!("{base}/{name}"),
    }
}

#[cfg(test)]
mod tests {
    use super::url_with_db;

    #[test]
    fn a_test_database_goes_into_any_server_url() {
        assert_eq!(
            url_with_db("mysql://root@127.0.0.1:3306", "t1"),
            "mysql://root@127.0.0.1:3306/t1"
        );
        assert_eq!(
            url_with_db("mysql://u:p@h/other?prefer_socket=false", "t1"),
            "mysql://u:p@h/t1?prefer_socket=false"
        );
        assert_eq!(url_with_db("mysql://h:1/", "t1"), "mysql://h:1/t1");
    }
}
