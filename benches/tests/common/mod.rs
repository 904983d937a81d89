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
