//! Runs the real `seckill-server` binary on an ephemeral port and talks to
//! it over TCP, as a deployment would.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use bytes::BytesMut;
use seckill_client::{Client, NewGoods};
use seckill_proto::{Frame, Opcode, Reply, Request, SaleRules, Status, MAX_REPLY_FRAME, VERSION};

pub const TOKEN: &str = "test-admin-token";

pub struct Server {
    child: Child,
    pub addr: SocketAddr,
    /// With `--admin-listen`.
    pub admin_addr: Option<SocketAddr>,
    /// With `--metrics-listen`.
    pub metrics_addr: Option<SocketAddr>,
    pid: u32,
    /// What the server logged (the first 64 KiB).
    log: std::sync::Arc<std::sync::Mutex<String>>,
}

impl Server {
    /// Starts a server on `data` with the admin token and `extra` flags, and
    /// waits for the line that names its port.
    pub fn start(data: &Path, extra: &[&str]) -> Server {
        let level = std::env::var("RUST_LOG").unwrap_or("warn".into());
        Server::start_logging(data, extra, &level)
    }

    /// [`start`](Self::start) with the server's log at `level`.
    pub fn start_logging(data: &Path, extra: &[&str], level: &str) -> Server {
        Server::launch(
            Command::new(env!("CARGO_BIN_EXE_seckill-server")),
            data,
            extra,
            level,
        )
    }

    /// [`start`](Self::start) from a shell whose soft open-files limit is
    /// `limit`, as an ordinary user's shell hands down.
    pub fn start_with_open_files(data: &Path, extra: &[&str], limit: u64) -> Server {
        let mut cmd = Command::new("bash");
        cmd.args(["-c", &format!("ulimit -Sn {limit} && exec \"$0\" \"$@\"")])
            .arg(env!("CARGO_BIN_EXE_seckill-server"));
        Server::launch(cmd, data, extra, "info")
    }

    /// Starts a server on `data` with `extra` flags that must refuse to
    /// start: waits for it to exit, checks that it failed, and returns its
    /// log.
    pub fn refused(data: &Path, extra: &[&str]) -> String {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_seckill-server"));
        Server::command(&mut cmd, data, extra, "info");
        // The error as one message, without a backtrace.
        cmd.env_remove("RUST_BACKTRACE")
            .env_remove("RUST_LIB_BACKTRACE");
        let mut child = cmd.spawn().expect("spawn seckill-server");
        let (tx, rx) = mpsc::channel();
        let stderr = child.stderr.take().expect("piped stderr");
        let stdout = child.stdout.take().expect("piped stdout");
        std::thread::spawn(move || {
            let mut log = String::new();
            let _ = BufReader::new(stderr).read_to_string(&mut log);
            let mut out = String::new();
            let _ = BufReader::new(stdout).read_to_string(&mut out);
            let _ = tx.send((log, out));
        });
        let Ok((log, out)) = rx.recv_timeout(Duration::from_secs(30)) else {
            let _ = child.kill();
            let _ = child.wait();
            panic!("seckill-server {extra:?} did not exit within 30 s");
        };
        let status = child.wait().expect("wait");
        assert!(
            !status.success(),
            "seckill-server {extra:?} should have refused to start; stdout:\n{out}\nlog:\n{log}"
        );
        log
    }

    fn command(cmd: &mut Command, data: &Path, extra: &[&str], level: &str) {
        raise_open_files_limit();
        cmd.args(["--listen", "127.0.0.1:0", "--admin-token", TOKEN, "--data"])
            .arg(data)
            .args(extra)
            .env("RUST_LOG", level)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
    }

    fn launch(mut cmd: Command, data: &Path, extra: &[&str], level: &str) -> Server {
        Server::command(&mut cmd, data, extra, level);
        Server::spawn(cmd, extra)
    }

    /// The server binary with no flag and none of the `SECKILL_*`
    /// variables of this process (a developer may have exported the admin
    /// token), its output piped: for the tests of the configuration itself.
    pub fn bare_command() -> Command {
        raise_open_files_limit();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_seckill-server"));
        for (name, _) in std::env::vars_os() {
            if name.to_string_lossy().starts_with("SECKILL_") {
                cmd.env_remove(name);
            }
        }
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        cmd
    }

    /// Starts `cmd` (piped as [`bare_command`](Self::bare_command) pipes
    /// it) and waits for the line that names its port, and for the admin
    /// and metrics ports' lines too when `extra` (the flags it was given)
    /// has `--admin-listen` or `--metrics-listen`.
    pub fn spawn(mut cmd: Command, extra: &[&str]) -> Server {
        let mut child = cmd.spawn().expect("spawn seckill-server");
        // The log is kept to explain a failed start; SECKILL_TEST_LOG=1
        // shows it as it comes.
        let log = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let stderr = child.stderr.take().expect("piped stderr");
        let kept = log.clone();
        std::thread::spawn(move || {
            let show = std::env::var_os("SECKILL_TEST_LOG").is_some();
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if show {
                    eprintln!("{line}");
                }
                let mut kept = kept.lock().unwrap();
                if kept.len() < 64 * 1024 {
                    kept.push_str(&line);
                    kept.push('\n');
                }
            }
        });
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            // The address lines, then keep reading so that the server never
            // sees a closed stdout.
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let line = match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(line) => line,
            Err(_) => {
                let _ = child.kill();
                let status = child.wait();
                std::thread::sleep(Duration::from_millis(100));
                panic!(
                    "seckill-server did not start ({status:?}); its log:\n{}",
                    log.lock().unwrap()
                );
            }
        };
        let parse = |line: &str| -> SocketAddr {
            line.rsplit(' ')
                .next()
                .and_then(|a| a.parse().ok())
                .unwrap_or_else(|| panic!("no address in {line:?}"))
        };
        let addr = parse(&line);
        let admin_addr = extra.contains(&"--admin-listen").then(|| {
            let line = rx
                .recv_timeout(Duration::from_secs(10))
                .expect("the admin address line");
            assert!(line.contains("admin"), "{line}");
            parse(&line)
        });
        let metrics_addr = extra.contains(&"--metrics-listen").then(|| {
            let line = rx
                .recv_timeout(Duration::from_secs(10))
                .expect("the metrics address line");
            assert!(line.contains("metrics"), "{line}");
            parse(&line)
        });
        Server {
            pid: child.id(),
            child,
            addr,
            admin_addr,
            metrics_addr,
            log,
        }
    }

    pub fn client(&self) -> Client {
        Client::builder(self.addr)
            .read_timeout(Duration::from_secs(30))
            .connect()
            .expect("connect")
    }

    /// An admin client: on the admin listener, if the server has one.
    pub fn admin(&self) -> Client {
        Client::builder(self.admin_addr.unwrap_or(self.addr))
            .token(TOKEN)
            .read_timeout(Duration::from_secs(30))
            .connect()
            .expect("connect as admin")
    }

    /// GET `path` from the `--metrics-listen` listener: the status code and
    /// the body.
    pub fn http_get(&self, path: &str) -> (u16, String) {
        let addr = self.metrics_addr.expect("started with --metrics-listen");
        http_get(addr, path).unwrap_or_else(|| panic!("GET {path} from {addr} failed"))
    }

    /// What the server has logged so far.
    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// The log once it contains `what` (a thread reads the server's output,
    /// so a line written just before a reply may not be in [`log`] yet);
    /// panics with the log after `within`.
    ///
    /// [`log`]: Server::log
    pub fn wait_for_log(&self, what: &str, within: Duration) -> String {
        let deadline = std::time::Instant::now() + within;
        loop {
            let log = self.log();
            if log.contains(what) {
                return log;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{what:?} not logged within {within:?}; the log:\n{log}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits (for 10 s at most) until the STATS counter `name` is 0: the
    /// buffered bytes of closed connections counted out, say; panics
    /// with `why` and its value.
    pub fn wait_for_zero(&self, name: &str, why: &str) {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let now = self.stat(name);
            if now == 0 {
                return;
            }
            assert!(std::time::Instant::now() < deadline, "{why}: {name} {now}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The server's resident memory, in KiB (VmRSS).
    pub fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid))
            .expect("read /proc/<pid>/status");
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmRSS in /proc/<pid>/status")
    }

    /// A STATS counter.
    pub fn stat(&self, name: &str) -> u64 {
        self.admin()
            .stats()
            .expect("stats")
            .into_iter()
            .find(|s| s.name == name)
            .unwrap_or_else(|| panic!("no stat {name}"))
            .value
    }

    /// Sends `sig` (`-STOP`, `-CONT`, ...) to the server process.
    pub fn signal(&self, sig: &str) {
        let status = Command::new("kill")
            .args([sig, &self.pid.to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill {sig} {} failed", self.pid);
    }

    /// SIGKILL: no shutdown path runs.
    pub fn kill(mut self) {
        self.child.kill().expect("kill");
        self.child.wait().expect("wait");
    }

    /// Waits up to `within` for the server to exit by itself; returns how,
    /// and its log.
    pub fn exited(mut self, within: Duration) -> (ExitStatus, String) {
        let deadline = std::time::Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                // The last lines, still on their way from the pipe.
                std::thread::sleep(Duration::from_millis(200));
                return (status, self.log());
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the server did not exit within {within:?}; its log:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGTERM, then waits for the process to exit.
    pub fn terminate(mut self) -> ExitStatus {
        let pid = self.child.id().to_string();
        let status = Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -TERM {pid} failed");
        let (tx, rx) = mpsc::channel();
        let mut child = std::mem::replace(&mut self.child, dummy_child());
        std::thread::spawn(move || {
            let _ = tx.send(child.wait());
        });
        rx.recv_timeout(Duration::from_secs(30))
            .expect("server did not exit within 30 s of SIGTERM")
            .expect("wait")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A child that has already exited, left in place of one that was waited on.
fn dummy_child() -> Child {
    let mut c = Command::new("true").spawn().expect("spawn true");
    let _ = c.wait();
    c
}

/// `call` (a BUY, say) made again while the server answers `busy` (a goods
/// being loaded or reconciled, nothing done) or `rate_limited` (the user's
/// bucket, 10 BUYs a second by default, is empty), for up to 30 s: the
/// first other answer. Tries are 100 ms apart, the default refill rate, so
/// waiting out a long reconciliation does not itself empty the bucket.
pub fn while_busy<T>(
    mut call: impl FnMut() -> seckill_client::Result<T>,
) -> seckill_client::Result<T> {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        match call() {
            Err(e)
                if std::time::Instant::now() < deadline
                    && matches!(e.status(), Some(Status::Busy | Status::RateLimited)) =>
            {
                std::thread::sleep(Duration::from_millis(100))
            }
            other => return other,
        }
    }
}

/// A client connected from a chosen local address (std cannot bind a
/// socket before connecting it).
pub fn connect_from(local: &str, to: SocketAddr) -> TcpStream {
    try_connect_from(local, to, Duration::from_secs(10)).expect("connect")
}

/// A connection to `to` from the IPv4 address `local`, or the connect's
/// error once `timeout` has passed (`TimedOut`: no answer to its SYN).
pub fn try_connect_from(
    local: &str,
    to: SocketAddr,
    timeout: Duration,
) -> std::io::Result<TcpStream> {
    let socket =
        socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).expect("socket");
    let local: SocketAddr = format!("{local}:0").parse().unwrap();
    socket.bind(&local.into()).expect("bind");
    socket.connect_timeout(&to.into(), timeout)?;
    Ok(socket.into())
}

/// A goods on sale from now for an hour.
pub fn on_sale(name: &str, stock: u32) -> NewGoods {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    NewGoods {
        name: name.into(),
        price_cents: 999,
        stock,
        start_ms: now - 1000,
        end_ms: now + 3_600_000,
        rules: SaleRules::default(),
        buckets: 1,
    }
}

/// Orders in the embedded store's SQLite file, read directly: (order number,
/// user, goods) of every live order.
pub fn stored_orders(data: &Path) -> Vec<(u64, u64, u64)> {
    sqlite_orders(data)
        .into_iter()
        .filter(|&(.., state)| state != 2)
        .map(|(order_no, user, goods, _)| (order_no, user, goods))
        .collect()
}

/// Every order in the embedded store's SQLite file, read directly: (order
/// number, user, goods, state), as `Backends::orders` reads MySQL.
pub fn sqlite_orders(data: &Path) -> Vec<(u64, u64, u64, u8)> {
    let conn =
        rusqlite::Connection::open_with_flags(data, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .expect("open data file");
    conn.busy_timeout(Duration::from_secs(5)).unwrap();
    let mut stmt = conn
        .prepare("SELECT order_no, user_id, goods_id, state FROM orders")
        .unwrap();
    let rows = stmt
        .query_map([], |r| {
            Ok((
                r.get::<_, i64>(0)? as u64,
                r.get::<_, i64>(1)? as u64,
                r.get::<_, i64>(2)? as u64,
                r.get::<_, u8>(3)?,
            ))
        })
        .unwrap();
    rows.collect::<Result<_, _>>().unwrap()
}

/// A connection that speaks frames by hand, for what the client refuses to
/// send.
pub struct Raw {
    pub stream: TcpStream,
    buf: BytesMut,
}

/// What came back on a raw connection.
#[derive(Debug, PartialEq)]
pub enum Got {
    Frame {
        opcode: u8,
        id: u64,
        reply: Reply,
    },
    /// The server closed the connection.
    Closed,
}

impl Raw {
    pub fn connect(addr: SocketAddr) -> Raw {
        Raw::from_stream(TcpStream::connect(addr).expect("connect"))
    }

    pub fn from_stream(stream: TcpStream) -> Raw {
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        Raw {
            stream,
            buf: BytesMut::new(),
        }
    }

    /// Connects and says HELLO.
    pub fn greeted(addr: SocketAddr) -> Raw {
        let mut raw = Raw::connect(addr);
        raw.hello();
        raw
    }

    /// Says HELLO without a token.
    pub fn hello(&mut self) {
        let raw = self;
        raw.request(
            1,
            &Request::Hello {
                version: VERSION,
                token: String::new(),
            },
        );
        match raw.next() {
            Got::Frame {
                reply: Reply::Hello { .. },
                ..
            } => {}
            other => panic!("HELLO answered {other:?}"),
        }
    }

    pub fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("write");
    }

    pub fn request(&mut self, id: u64, request: &Request) {
        let mut out = BytesMut::new();
        request.encode(id, &mut out);
        self.send(&out);
    }

    /// The next frame, or `Closed`. Panics on a timeout: a server that
    /// neither answers nor closes is hung, which is what these tests catch.
    pub fn next(&mut self) -> Got {
        loop {
            if let Ok((frame, used)) = Frame::parse(&self.buf, MAX_REPLY_FRAME) {
                let opcode = frame.opcode;
                let id = frame.id;
                let reply = match Reply::decode(&frame) {
                    Ok((_, reply)) => reply,
                    // The reply to an unknown request opcode has an unknown
                    // opcode too; its body is a plain error (PROTOCOL.md 7.2).
                    Err(_) => error_body(frame.body).expect("server sent a valid reply body"),
                };
                let _ = self.buf.split_to(used);
                return Got::Frame { opcode, id, reply };
            }
            let mut chunk = [0u8; 16 * 1024];
            match self.stream.read(&mut chunk) {
                Ok(0) => return Got::Closed,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return Got::Closed,
                Err(e) => panic!("reading from the server: {e}"),
            }
        }
    }

    /// Reads until the server closes, returning the frames before it.
    pub fn until_closed(&mut self) -> Vec<Got> {
        let mut frames = Vec::new();
        loop {
            match self.next() {
                Got::Closed => return frames,
                f => frames.push(f),
            }
        }
    }
}

/// A GET over HTTP/1.0: the status code and the body; `None` when nothing
/// answers (yet).
pub fn http_get(addr: SocketAddr, path: &str) -> Option<(u16, String)> {
    let mut stream = TcpStream::connect(addr).ok()?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .ok()?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let (head, body) = response.split_once("\r\n\r\n")?;
    let status = head.split(' ').nth(1)?.parse().ok()?;
    Some((status, body.to_owned()))
}

/// Raises this test process's soft open-files limit to the hard limit, as
/// the server does for itself: some tests hold thousands of client sockets,
/// more than the 1024 a shell usually hands down.
pub fn raise_open_files_limit() {
    static RAISED: std::sync::Once = std::sync::Once::new();
    RAISED.call_once(|| {
        if let Err(e) = rlimit::increase_nofile_limit(u64::MAX) {
            eprintln!("cannot raise the open-files limit: {e}");
        }
    });
}

/// An error reply body: status, then a u16-prefixed message.
fn error_body(body: &[u8]) -> Option<Reply> {
    let status = Status::from_u8(*body.first()?)?;
    let len = u16::from_be_bytes([*body.get(1)?, *body.get(2)?]) as usize;
    let message = std::str::from_utf8(body.get(3..3 + len)?).ok()?;
    (body.len() == 3 + len && status != Status::Ok).then(|| Reply::Error {
        status,
        message: message.into(),
    })
}

/// The reply opcode for a request opcode.
pub fn reply_to(op: Opcode) -> u8 {
    op as u8 | 0x80
}

/// A MySQL database and a Redis key prefix of this test's own, dropped and
/// deleted when it ends. The servers given `args()` create the database.
/// The stock is in the Redis at `redis_url`, or with [`Backends::on_cluster`]
/// in the local Redis Cluster (`scripts/cluster/redis.sh`).
pub struct Backends {
    pub mysql_base: String,
    pub db: String,
    pub redis_url: String,
    pub prefix: String,
    pub cluster: Option<Vec<String>>,
}

static BACKENDS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

/// The local Redis Cluster's nodes (`scripts/cluster/redis.sh`).
pub const CLUSTER_NODES: [u16; 6] = [30001, 30002, 30003, 30004, 30005, 30006];

impl Backends {
    pub fn new() -> Backends {
        let n = BACKENDS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
        let tag = format!("{}_{n}_{nanos}", std::process::id());
        Backends {
            mysql_base: std::env::var("SECKILL_TEST_MYSQL")
                .unwrap_or("mysql://root@127.0.0.1:3306".into()),
            db: format!("seckill_it_{tag}"),
            redis_url: std::env::var("SECKILL_TEST_REDIS")
                .unwrap_or("redis://127.0.0.1:6379".into()),
            prefix: format!("seckill-it:{tag}:"),
            cluster: None,
        }
    }

    /// Stores with the stock on the local Redis Cluster, formed first if it
    /// is not up.
    pub fn on_cluster() -> Backends {
        cluster_up();
        let mut stores = Backends::new();
        stores.cluster = Some(
            CLUSTER_NODES[..3]
                .iter()
                .map(|p| format!("127.0.0.1:{p}"))
                .collect(),
        );
        stores
    }

    pub fn mysql_url(&self) -> String {
        format!("{}/{}", self.mysql_base.trim_end_matches('/'), self.db)
    }

    /// Server flags for these stores in an ack mode.
    pub fn args(&self, ack: &str) -> Vec<String> {
        let stock = match &self.cluster {
            Some(seeds) => ["--redis-cluster".into(), seeds.join(",")],
            None => ["--redis".into(), self.redis_url.clone()],
        };
        vec![
            "--mysql".into(),
            self.mysql_url(),
            stock[0].clone(),
            stock[1].clone(),
            "--redis-prefix".into(),
            self.prefix.clone(),
            "--ack".into(),
            ack.into(),
        ]
    }

    pub fn mysql(&self) -> mysql::PooledConn {
        let pool = mysql::Pool::new(self.mysql_base.as_str())
            .unwrap_or_else(|e| panic!("MySQL at {} ({e}); run ./test.sh", self.mysql_base));
        pool.get_conn().expect("MySQL connection")
    }

    /// A connection to the Redis of the stock; on the cluster, one that
    /// finds each key's node.
    pub fn redis(&self) -> Box<dyn redis::ConnectionLike> {
        match &self.cluster {
            Some(seeds) => Box::new(
                redis::cluster::ClusterClient::new(
                    seeds
                        .iter()
                        .map(|s| format!("redis://{s}"))
                        .collect::<Vec<_>>(),
                )
                .and_then(|c| c.get_connection())
                .unwrap_or_else(|e| panic!("Redis Cluster at {seeds:?}: {e}")),
            ),
            None => Box::new(
                redis::Client::open(self.redis_url.as_str())
                    .and_then(|c| c.get_connection())
                    .unwrap_or_else(|e| panic!("Redis at {} ({e}); run ./test.sh", self.redis_url)),
            ),
        }
    }

    /// Every order row: (order number, user, goods, state).
    pub fn orders(&self) -> Vec<(u64, u64, u64, u8)> {
        use mysql::prelude::Queryable;
        self.mysql()
            .query(format!(
                "SELECT order_no, user_id, goods_id, state FROM `{}`.orders",
                self.db
            ))
            .expect("read orders")
    }

    /// A goods' units left in Redis: its stock key, or the pool's of a goods
    /// split over buckets (whose buckets the caller reads on its own).
    pub fn redis_stock(&self, goods: u64) -> Option<u32> {
        self.redis_get(&format!("{}{{g{goods}}}:stock", self.prefix))
            .or_else(|| self.redis_get(&format!("{}{{g{goods}.p}}:stock", self.prefix)))
            .map(|n| n.parse().expect("a stock count"))
    }

    /// A Redis key's value.
    pub fn redis_get(&self, key: &str) -> Option<String> {
        redis::cmd("GET")
            .arg(key)
            .query(&mut *self.redis())
            .expect("GET")
    }

    /// Entries still in a goods' order queue.
    pub fn queue_len(&self, goods: u64) -> u64 {
        redis::cmd("XLEN")
            .arg(format!("{}{{g{goods}}}:queue", self.prefix))
            .query(&mut *self.redis())
            .expect("XLEN")
    }

    /// Waits until MySQL holds `count` orders and the queue is empty (the
    /// queued mode writes behind the replies).
    pub fn wait_written(&self, goods: u64, count: usize) {
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        loop {
            let written = self.orders().len();
            if written == count && self.queue_len(goods) == 0 {
                return;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{written} of {count} orders written, {} queued",
                self.queue_len(goods)
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Backends {
    fn drop(&mut self) {
        use mysql::prelude::Queryable;
        if let Ok(pool) = mysql::Pool::new(self.mysql_base.as_str()) {
            if let Ok(mut conn) = pool.get_conn() {
                let _ = conn.query_drop(format!("DROP DATABASE IF EXISTS `{}`", self.db));
            }
        }
        let nodes: Vec<String> = match &self.cluster {
            // Every node (a replica refuses the DEL; its primary does it).
            Some(_) => CLUSTER_NODES
                .iter()
                .map(|p| format!("redis://127.0.0.1:{p}"))
                .collect(),
            None => vec![self.redis_url.clone()],
        };
        for node in nodes {
            let Ok(mut redis) = redis::Client::open(node.as_str()).and_then(|c| c.get_connection())
            else {
                continue;
            };
            let keys: Vec<String> = redis::cmd("KEYS")
                .arg(format!("{}*", self.prefix))
                .query(&mut redis)
                .unwrap_or_default();
            // One DEL a key: on a cluster node the keys are in many slots.
            for key in keys {
                let _: redis::RedisResult<()> = redis::cmd("DEL").arg(key).query(&mut redis);
            }
        }
    }
}

/// Runs `scripts/cluster/redis.sh` with these arguments, panicking if it fails.
pub fn cluster_script(args: &[&str]) {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/cluster/redis.sh");
    let status = std::process::Command::new(script)
        .args(args)
        .status()
        .unwrap_or_else(|e| panic!("running {script}: {e}"));
    assert!(status.success(), "{script} {args:?}: {status}");
}

/// Forms the local Redis Cluster once a test binary (a no-op if it is up).
fn cluster_up() {
    static UP: std::sync::Once = std::sync::Once::new();
    UP.call_once(|| cluster_script(&["up"]));
}

/// Held by every test on the cluster: one of them kills a primary, and the
/// others should not run through its failover.
pub fn cluster_lock() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

/// A free port below the kernel's ephemeral range: a store killed and
/// started again must find its port free, and while it is down the many
/// outgoing connections of the tests around could be given an ephemeral
/// one.
pub fn free_port() -> u16 {
    let ephemeral_low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|r| r.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32768);
    let (low, high) = (10_000u32, u32::from(ephemeral_low.max(20_000)));
    let mut x = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos()
        ^ std::process::id();
    for _ in 0..1000 {
        // xorshift: any spread will do.
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        let port = (low + x % (high - low)) as u16;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port in {low}..{high}");
}
