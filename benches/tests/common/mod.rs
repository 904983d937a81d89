//! The real server, started in-process for a bench test: an ephemeral port,
//! a SQLite file of its own, the admin token, two reactors.

use clap::Parser;
use seckill::{Config, Server};

pub const TOKEN: &str = "bench-test-token";

/// A running server, its address, and the directory of its data file
/// (removed when this is dropped, after the server).
pub struct InProcess {
    server: Option<Server>,
    pub addr: String,
    _dir: tempfile::TempDir,
}

impl InProcess {
    /// Starts a server with the common flags and `extra` ones.
    pub fn start(extra: &[&str]) -> InProcess {
        let dir = tempfile::tempdir().expect("tempdir");
        let data = dir.path().join("bench.db");
        let mut args = vec![
            "seckill-server",
            "--listen",
            "127.0.0.1:0",
            "--admin-token",
            TOKEN,
            "--data",
            data.to_str().expect("utf-8 path"),
            "--reactors",
            "2",
        ];
        args.extend_from_slice(extra);
        let server = Server::start(&Config::parse_from(args)).expect("start the server");
        InProcess {
            addr: server.local_addr().to_string(),
            server: Some(server),
            _dir: dir,
        }
    }

    /// Stops the server as SIGTERM would, and waits for it.
    pub fn stop(mut self) {
        if let Some(server) = self.server.take() {
            server.shutdown_handle().trigger();
            server.join();
        }
    }
}

/// A MySQL database and a Redis key prefix of one test's own, for servers
/// that share them (`SECKILL_TEST_MYSQL`, `SECKILL_TEST_REDIS`, defaults
/// on 127.0.0.1): dropped and deleted when this is dropped.
#[allow(dead_code)] // Not every test binary of this directory shares stores.
pub struct SharedStores {
    pub mysql_url: String,
    mysql_base: String,
    db: String,
    redis_url: String,
    prefix: String,
}

#[allow(dead_code)]
impl SharedStores {
    pub fn new() -> SharedStores {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let tag = format!("{}_{nanos}", std::process::id());
        let mysql_base = std::env::var("SECKILL_TEST_MYSQL")
            .unwrap_or_else(|_| "mysql://root@127.0.0.1:3306".into());
        let db = format!("seckill_bench_{tag}");
        SharedStores {
            mysql_url: format!("{}/{db}", mysql_base.trim_end_matches('/')),
            mysql_base,
            db,
            redis_url: std::env::var("SECKILL_TEST_REDIS")
                .unwrap_or_else(|_| "redis://127.0.0.1:6379".into()),
            prefix: format!("seckill-bench-test:{tag}:"),
        }
    }

    /// Server flags for these stores, in the `durable` ack mode.
    pub fn args(&self) -> Vec<String> {
        [
            "--mysql",
            &self.mysql_url,
            "--redis",
            &self.redis_url,
            "--redis-prefix",
            &self.prefix,
            "--ack",
            "durable",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    }
}

impl Drop for SharedStores {
    fn drop(&mut self) {
        use mysql::prelude::Queryable;
        if let Ok(mut conn) = mysql::Conn::new(mysql::Opts::from_url(&self.mysql_base).unwrap()) {
            let _ = conn.query_drop(format!("DROP DATABASE IF EXISTS `{}`", self.db));
        }
        if let Ok(mut redis) =
            redis::Client::open(self.redis_url.as_str()).and_then(|c| c.get_connection())
        {
            let keys: Vec<String> = redis::cmd("KEYS")
                .arg(format!("{}*", self.prefix))
                .query(&mut redis)
                .unwrap_or_default();
            if !keys.is_empty() {
                let _: redis::RedisResult<()> = redis::cmd("DEL").arg(keys).query(&mut redis);
            }
        }
    }
}
