//! The real `seckill-server` binary, started for a test: an ephemeral port,
//! a SQLite file of its own (the embedded store: no other server needed),
//! the admin token.
//!
//! The binary belongs to the root package, so Cargo neither builds it for
//! this package's tests nor says where it is (`CARGO_BIN_EXE_<name>` names
//! only a package's own binaries): the first start builds it with the cargo
//! that runs the tests, into the same target directory and profile, as the
//! bench's tests do. Shared by the client's and the web gateway's tests.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{mpsc, OnceLock};
use std::time::Duration;

/// The admin token every test server is started with.
pub const TOKEN: &str = "client-test-token";

/// A running server; killed, and its data removed, when dropped.
pub struct Server {
    child: Child,
    /// `127.0.0.1:port`.
    pub addr: String,
    /// The metrics endpoint's `127.0.0.1:port`, when started with
    /// `--metrics-listen`.
    #[allow(dead_code)] // only the tests of `top` scrape
    pub metrics: Option<String>,
    dir: tempfile::TempDir,
}

impl Server {
    /// Starts a server and waits for the line that names its port.
    #[allow(dead_code)] // not every test binary starts a plain one
    pub fn start() -> Server {
        Server::start_with(&[])
    }

    /// Starts a server with `extra` flags.
    pub fn start_with(extra: &[&str]) -> Server {
        let dir = tempfile::tempdir().expect("tempdir");
        Server::start_in(dir, "127.0.0.1:0", extra)
    }

    /// Starts a server on `listen` with its data in `dir`: a restart keeps
    /// its goods and orders.
    pub fn start_in(dir: tempfile::TempDir, listen: &str, extra: &[&str]) -> Server {
        let mut child = Command::new(binary())
            .args(["--listen", listen, "--admin-token", TOKEN, "--data"])
            .arg(dir.path().join("test.db"))
            .args(["--reactors", "1"])
            .args(extra)
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or("error".into()),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn seckill-server");
        let (addr, rx) = announced(&mut child, "seckill-server listening on ");
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
            dir,
        }
    }

    /// Kills the server (SIGKILL) and hands back its data directory.
    #[allow(dead_code)] // not every test restarts a server
    pub fn kill(mut self) -> tempfile::TempDir {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let dir = tempfile::tempdir().expect("tempdir");
        std::mem::replace(&mut self.dir, dir)
    }

    /// The server's process id.
    #[allow(dead_code)] // only the measurements read it
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Server {
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

/// Reads `child`'s piped stdout in a thread of its own (to its end, so that
/// the child never writes to a closed pipe) and waits 30 s at most for its
/// first line, which must start with `prefix`: what follows it (the
/// address a binary says it listens on), and the lines after it. Kills the
/// child if none comes.
pub fn announced(child: &mut Child, prefix: &str) -> (String, mpsc::Receiver<String>) {
    let stdout = child.stdout.take().expect("piped stdout");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let Ok(line) = rx.recv_timeout(Duration::from_secs(30)) else {
        let _ = child.kill();
        panic!("no {prefix:?} line: {:?}", child.wait());
    };
    let said = line
        .strip_prefix(prefix)
        .unwrap_or_else(|| panic!("{line:?} is not {prefix:?} and an address"))
        .to_string();
    (said, rx)
}
