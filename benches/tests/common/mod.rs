//! The real `seckill-server` binary, started for a bench test: an ephemeral
//! port, a SQLite file of its own, the admin token, two reactors.
//!
//! The bench is a client of the server, so it runs the binary the way an
//! operator would rather than linking the server as a library. The binary
//! belongs to another package of the workspace, so Cargo neither builds it
//! for these tests nor tells them where it is (`CARGO_BIN_EXE_<name>` names
//! only a package's own binaries): the first start builds it with the cargo
//! that runs the tests, into the same target directory and profile. That is
//! a no-op when it is up to date, and makes sure the server under test is the
//! one in this checkout, not a stale build.

// Each test binary of this directory uses a part of what is here.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{mpsc, OnceLock};
use std::time::{Duration, Instant};

pub const TOKEN: &str = "bench-test-token";

/// Runs `seckill-bench` with these arguments (the program name comes
/// first), through the library, as the command line would.
pub fn run_bench(args: &[&str]) -> seckill_bench::Output {
    let cli = <seckill_bench::Cli as clap::Parser>::try_parse_from(
        std::iter::once("seckill-bench").chain(args.iter().copied()),
    )
    .expect("flags");
    seckill_bench::run(&cli).expect("the run")
}

/// A running server, its address, and the directory of its data file
/// (removed when this is dropped, after the server).
pub struct Server {
    child: Child,
    pub addr: String,
    /// The metrics endpoint's `127.0.0.1:port`, when started with
    /// `--metrics-listen`.
    pub metrics: Option<String>,
    _dir: tempfile::TempDir,
}

impl Server {
    /// Starts a server with the common flags and `extra` ones, and waits for
    /// the line that names its port. Its log goes to stderr, errors only
    /// unless `RUST_LOG` says otherwise.
    pub fn start(extra: &[&str]) -> Server {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut child = Command::new(binary())
            .args(["--listen", "127.0.0.1:0", "--admin-token", TOKEN, "--data"])
            .arg(dir.path().join("bench.db"))
            .args(["--reactors", "2"])
            .args(extra)
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or("error".into()),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn seckill-server");
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            // The address line, then keep reading so that the server never
            // writes to a closed pipe.
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let Ok(line) = rx.recv_timeout(Duration::from_secs(30)) else {
            let _ = child.kill();
            panic!("seckill-server did not start: {:?}", child.wait());
        };
        let addr = line
            .strip_prefix("seckill-server listening on ")
            .unwrap_or_else(|| panic!("no address in {line:?}"))
            .to_string();
        // The server prints its other listeners' addresses right after.
        let metrics = extra.contains(&"--metrics-listen").then(|| loop {
            let Ok(line) = rx.recv_timeout(Duration::from_secs(30)) else {
                panic!("seckill-server named no metrics address");
            };
            if let Some(addr) = line.strip_prefix("seckill-server metrics listening on ") {
                break addr.to_string();
            }
        });
        Server {
            child,
            addr,
            metrics,
            _dir: dir,
        }
    }

    /// The server's process id, for the bench's `--server-pid`.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGTERM, then waits for the server to finish its work in flight and
    /// exit, which it must do cleanly and within 30 s.
    pub fn stop(mut self) {
        let pid = self.child.id().to_string();
        let sent = Command::new("kill").args(["-TERM", &pid]).status();
        assert!(matches!(sent, Ok(s) if s.success()), "kill -TERM {pid}");
        let deadline = Instant::now() + Duration::from_secs(30);
        let status = loop {
            match self.child.try_wait().expect("wait for seckill-server") {
                Some(status) => break status,
                None if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
                None => panic!("seckill-server did not exit within 30 s of SIGTERM"),
            }
        };
        assert!(status.success(), "seckill-server exited with {status}");
    }
}

impl Drop for Server {
    /// A test that failed before `stop` leaves no server behind. (After
    /// `stop`, the process is already reaped and these do nothing.)
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The `seckill-server` of this checkout, built on first use.
fn binary() -> &'static Path {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY.get_or_init(|| {
        // This test runs from <target dir>/<profile dir>/deps/.
        let exe = std::env::current_exe().expect("the test's own path");
        let profile_dir = exe
            .parent()
            .and_then(Path::parent)
            .expect("the test runs from a target directory");
        let profile = match profile_dir.file_name().and_then(|n| n.to_str()) {
            Some("debug") => "dev",
            Some(name) => name,
            None => panic!("no profile directory above {}", exe.display()),
        };
        let target_dir = profile_dir.parent().expect("a target directory");
        let workspace = concat!(env!("CARGO_MANIFEST_DIR"), "/../Cargo.toml");
        let cargo = std::env::var_os("CARGO").unwrap_or("cargo".into());
        let status = Command::new(cargo)
            .args(["build", "--quiet", "--bin", "seckill-server", "--profile"])
            .arg(profile)
            .arg("--manifest-path")
            .arg(workspace)
            .arg("--target-dir")
            .arg(target_dir)
            .status()
            .expect("run cargo build");
        assert!(status.success(), "cargo build --bin seckill-server failed");
        let binary = profile_dir.join("seckill-server");
        assert!(binary.is_file(), "no {} after the build", binary.display());
        binary
    })
}

/// A MySQL database and a Redis key prefix of one test's own, for servers
/// that share them (`SECKILL_TEST_MYSQL`, `SECKILL_TEST_REDIS`, defaults
/// on 127.0.0.1): dropped and deleted when this is dropped.
pub struct SharedStores {
    pub mysql_url: String,
    mysql_base: String,
    db: String,
    redis_url: String,
    prefix: String,
}

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
