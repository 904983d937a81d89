//! Running the server as an operator does: from a config file and the
//! environment, with the admin token in a file of its own, under a service
//! manager that waits for READY=1, through a SIGHUP; and the admin actions
//! in its log, without the token.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::time::{Duration, Instant};

use seckill_client::{Client, Purchase, SaleAction};

use crate::harness::{free_port, on_sale, Backends, Server};

fn admin(addr: SocketAddr, token: &str) -> Client {
    Client::builder(addr)
        .token(token)
        .read_timeout(Duration::from_secs(30))
        .connect()
        .expect("connect as admin")
}

fn write(dir: &Path, name: &str, text: &str) -> std::path::PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write a test file");
    path
}

/// The listen address and the data file from `--config`, the admin token's
/// file and the worker count from the environment (which beats the file's
/// count): the server serves on the file's address, admin commands take the
/// token from the file, and the start log says where each setting came
/// from.
#[test]
fn a_config_file_and_the_environment_configure_the_server() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let data = dir.path().join("s.db");
    let token = write(dir.path(), "token", "file-token-4711\n");
    let config = write(
        dir.path(),
        "seckill.toml",
        &format!(
            "listen = \"127.0.0.1:{port}\"\ndata = \"{}\"\nworkers = 3\nbuy-burst = 7\n",
            data.display()
        ),
    );
    let mut cmd = Server::bare_command();
    cmd.arg("--config")
        .arg(&config)
        .env("SECKILL_ADMIN_TOKEN_FILE", &token)
        .env("SECKILL_WORKERS", "2")
        .env("RUST_LOG", "info");
    let server = Server::spawn(cmd, &[]);
    assert_eq!(server.addr, SocketAddr::from(([127, 0, 0, 1], port)));

    let goods = admin(server.addr, "file-token-4711")
        .add_goods(on_sale("Lamp", 2))
        .unwrap()
        .id;
    assert!(matches!(
        server.client().buy(1, goods).unwrap(),
        Purchase::Ordered(_)
    ));
    assert!(data.exists(), "the data file named by the config file");

    let log = server.wait_for_log("serving with 2 workers", Duration::from_secs(10));
    for part in [
        &format!("listen=127.0.0.1:{port} (file)"),
        "workers=2 (env)",
        "buy-burst=7 (file)",
        "admin-token=<redacted> (--admin-token-file",
    ] {
        assert!(log.contains(part), "{part:?} not in the log:\n{log}");
    }
    assert!(
        !log.contains("file-token-4711"),
        "the token was logged:\n{log}"
    );
}

/// An unknown key stops the server before it listens, naming the key and
/// the file.
#[test]
fn a_config_file_with_an_unknown_key_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let config = write(
        dir.path(),
        "bad.toml",
        "listen = \"127.0.0.1:0\"\nwokers = 3\n",
    );
    let mut cmd = Server::bare_command();
    cmd.arg("--config").arg(&config).env("RUST_BACKTRACE", "0");
    let out = cmd.output().expect("run seckill-server");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("unknown key `wokers`") && stderr.contains(&*config.to_string_lossy()),
        "{stderr}"
    );
}

/// The token read from a file grants admin commands; each admin action is
/// logged at info with the peer's address and what it did; and the token
/// is in no line of the log, even at debug, even after a HELLO that
/// presents a wrong one.
#[test]
fn admin_actions_are_logged_with_their_peer_and_never_the_token() {
    const SECRET: &str = "tok-8f3e1c-never-logged";
    let dir = tempfile::tempdir().unwrap();
    let token = write(dir.path(), "token", &format!("{SECRET}\n"));
    let mut cmd = Server::bare_command();
    cmd.args(["--listen", "127.0.0.1:0", "--data"])
        .arg(dir.path().join("s.db"))
        .arg("--admin-token-file")
        .arg(&token)
        .env("RUST_LOG", "debug");
    let server = Server::spawn(cmd, &[]);

    let mut admin = admin(server.addr, SECRET);
    let goods = admin.add_goods(on_sale("Phone X", 5)).unwrap().id;
    admin.restock(goods, 3).unwrap();
    admin.sale_control(goods, SaleAction::Pause).unwrap();
    admin.sale_control(goods, SaleAction::Resume).unwrap();
    admin.reconcile(None).unwrap();
    admin.sale_control(goods, SaleAction::End).unwrap();
    // A wrong token: refused, and not logged either. Before the failed
    // restock, whose log line the log is read up to.
    assert!(Client::builder(server.addr)
        .token("wrong-token-also-secret")
        .connect()
        .is_err());
    // A restock refused: logged as failed.
    assert!(admin.restock(goods + 100, 1).is_err());

    let log = server.wait_for_log(
        &format!("restocking goods {} by 1 failed", goods + 100),
        Duration::from_secs(10),
    );
    let admin_lines: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("INFO") && l.contains("] admin 127.0.0.1:"))
        .collect();
    for what in [
        format!("added goods {goods} \"Phone X\" with 5 units"),
        format!("restocked goods {goods} by 3: 8 units in all, 8 left"),
        format!("sale of goods {goods}: paused"),
        format!("sale of goods {goods}: resumed"),
        "reconciled every goods: 1 in step, none repaired".to_owned(),
        format!("sale of goods {goods}: ended"),
        format!(
            "restocking goods {} by 1 failed: unknown_goods",
            goods + 100
        ),
    ] {
        assert!(
            admin_lines.iter().any(|l| l.contains(&what)),
            "no admin line with {what:?}:\n{}",
            admin_lines.join("\n")
        );
    }
    let status = server.terminate();
    assert!(status.success(), "{status:?}");
    // `terminate` consumed the server; its log was read above, and no
    // admin action came after.
    for line in log.lines() {
        assert!(
            !line.contains(SECRET) && !line.contains("wrong-token-also-secret"),
            "a token in the log: {line}"
        );
    }
}

/// SIGHUP neither stops the server nor disturbs it: it logs that there is
/// nothing to reload, and goes on selling on the connections it had and on
/// new ones; SIGTERM still stops it cleanly afterwards.
#[test]
fn sighup_leaves_the_server_serving() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_logging(&dir.path().join("s.db"), &[], "info");
    let goods = server.admin().add_goods(on_sale("Kettle", 10)).unwrap().id;
    let mut before = server.client();
    assert!(matches!(
        before.buy(1, goods).unwrap(),
        Purchase::Ordered(_)
    ));

    server.signal("-HUP");
    server.wait_for_log("SIGHUP: nothing to reload", Duration::from_secs(10));
    server.signal("-HUP");
    std::thread::sleep(Duration::from_millis(200));

    assert!(matches!(
        before.buy(2, goods).unwrap(),
        Purchase::Ordered(_)
    ));
    assert!(matches!(
        server.client().buy(3, goods).unwrap(),
        Purchase::Ordered(_)
    ));
    assert_eq!(server.client().get_goods(goods).unwrap().remaining, 7);
    let status = server.terminate();
    assert!(status.success(), "{status:?}");
}

/// A socket standing in for systemd's notify socket.
struct NotifySocket {
    socket: UnixDatagram,
    _dir: tempfile::TempDir,
    path: std::path::PathBuf,
}

impl NotifySocket {
    fn new() -> NotifySocket {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify");
        let socket = UnixDatagram::bind(&path).expect("bind the notify socket");
        NotifySocket {
            socket,
            _dir: dir,
            path,
        }
    }

    /// The next datagram within `within`, if any.
    fn next(&self, within: Duration) -> Option<String> {
        self.socket.set_read_timeout(Some(within)).unwrap();
        let mut buf = [0u8; 4096];
        match self.socket.recv(&mut buf) {
            Ok(n) => Some(String::from_utf8_lossy(&buf[..n]).into_owned()),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                None
            }
            Err(e) => panic!("reading the notify socket: {e}"),
        }
    }

    /// Waits up to `within` for a datagram with `what` in it; returns it.
    fn wait_for(&self, what: &str, within: Duration) -> String {
        let deadline = Instant::now() + within;
        let mut seen = Vec::new();
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match self.next(left) {
                Some(msg) if msg.contains(what) => return msg,
                Some(msg) => seen.push(msg),
                None => break,
            }
        }
        panic!("no {what:?} within {within:?}; got {seen:?}");
    }
}

/// On the embedded store the goods are loaded before the server listens:
/// READY=1 comes at once, and STOPPING=1 at SIGTERM.
#[test]
fn ready_and_stopping_are_told_to_the_notify_socket() {
    let notify = NotifySocket::new();
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = Server::bare_command();
    cmd.args(["--listen", "127.0.0.1:0", "--data"])
        .arg(dir.path().join("s.db"))
        .env("NOTIFY_SOCKET", &notify.path);
    let server = Server::spawn(cmd, &[]);
    let ready = notify.wait_for("READY=1", Duration::from_secs(10));
    assert!(
        ready.contains(&format!("STATUS=serving on {}", server.addr)),
        "{ready}"
    );
    server.client().ping().unwrap();
    let status = server.terminate();
    assert!(status.success(), "{status:?}");
    notify.wait_for("STOPPING=1", Duration::from_secs(5));
}

/// Forwards every connection to `127.0.0.1:port` to `to`, from a thread of
/// its own: a Redis that comes up when the test says.
fn forward(port: u16, to: SocketAddr) {
    let listener = TcpListener::bind(("127.0.0.1", port)).expect("bind the forwarder");
    std::thread::spawn(move || {
        for inbound in listener.incoming().map_while(Result::ok) {
            let Ok(outbound) = TcpStream::connect(to) else {
                continue;
            };
            let pipe = |mut from: TcpStream, mut into: TcpStream| {
                std::thread::spawn(move || {
                    let mut buf = [0u8; 16 * 1024];
                    while let Ok(n) = from.read(&mut buf) {
                        if n == 0 || into.write_all(&buf[..n]).is_err() {
                            break;
                        }
                    }
                    let _ = into.shutdown(std::net::Shutdown::Write);
                });
            };
            pipe(inbound.try_clone().unwrap(), outbound.try_clone().unwrap());
            pipe(outbound, inbound);
        }
    });
}

/// With its stock store down at start, the server listens (and answers
/// `busy`) but is not ready: no READY=1 until the store comes up and the
/// goods are loaded, then READY=1, and it sells.
#[test]
fn ready_waits_for_the_goods_to_be_loaded() {
    // Its database and key prefix, removed when it drops.
    let stores = Backends::new();
    let redis_addr = redis_addr(&stores.redis_url);
    let notify = NotifySocket::new();
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut cmd = Server::bare_command();
    cmd.args(["--listen", "127.0.0.1:0", "--admin-token", "t", "--data"])
        .arg(dir.path().join("s.db"))
        .args(["--redis", &format!("redis://127.0.0.1:{port}")])
        .args(["--redis-prefix", &stores.prefix])
        .env("NOTIFY_SOCKET", &notify.path);
    let server = Server::spawn(cmd, &[]);

    let waiting = notify.wait_for("STATUS=", Duration::from_secs(10));
    assert!(!waiting.contains("READY=1"), "{waiting}");
    assert!(
        notify.next(Duration::from_millis(1500)).is_none(),
        "told something more while the stock store is down"
    );
    assert!(
        server.client().buy(1, 1).is_err(),
        "a BUY before the goods are loaded is refused (busy)"
    );

    forward(port, redis_addr);
    notify.wait_for("READY=1", Duration::from_secs(15));
    let goods = admin(server.addr, "t")
        .add_goods(on_sale("Clock", 1))
        .unwrap()
        .id;
    assert!(matches!(
        server.client().buy(1, goods).unwrap(),
        Purchase::Ordered(_)
    ));
    let status = server.terminate();
    assert!(status.success(), "{status:?}");
}

/// Where the Redis of `url` listens (`redis://[user:pass@]host:port[/db]`).
fn redis_addr(url: &str) -> SocketAddr {
    use std::net::ToSocketAddrs;
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let rest = rest.rsplit_once('@').map_or(rest, |(_, host)| host);
    let host = rest.split('/').next().unwrap_or(rest);
    host.to_socket_addrs()
        .ok()
        .and_then(|mut addrs| addrs.next())
        .unwrap_or_else(|| panic!("no address for the Redis at {url}"))
}

/// Every `seckill_*` name in the expressions of the Grafana dashboard
/// (`deploy/grafana-seckill.json`).
fn dashboard_metric_names() -> Vec<String> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/grafana-seckill.json");
    let text = std::fs::read_to_string(&path).expect("read the dashboard");
    let dashboard: serde_json::Value = serde_json::from_str(&text).expect("the dashboard is JSON");
    let mut exprs: Vec<String> = Vec::new();
    for panel in dashboard["panels"].as_array().expect("panels") {
        for target in panel["targets"].as_array().expect("targets") {
            exprs.push(target["expr"].as_str().expect("expr").to_owned());
        }
    }
    for var in dashboard["templating"]["list"]
        .as_array()
        .expect("variables")
    {
        exprs.push(var["query"]["query"].as_str().expect("query").to_owned());
    }
    let mut names = Vec::new();
    for expr in &exprs {
        let mut rest = expr.as_str();
        while let Some(at) = rest.find("seckill_") {
            let tail = &rest[at..];
            let end = tail
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(tail.len());
            names.push(tail[..end].to_owned());
            rest = &tail[end..];
        }
    }
    names.sort();
    names.dedup();
    names
}

/// The dashboard asks only for series a real server serves: started with
/// `--metrics-listen` on Redis and MySQL in the queued mode (whose drain lag
/// the dashboard shows), one goods on sale and a BUY made, every metric
/// name of the dashboard's expressions has samples in its /metrics.
#[test]
fn every_metric_of_the_dashboard_is_served() {
    let dir = tempfile::tempdir().unwrap();
    // Its database and key prefix, removed when it drops.
    let stores = Backends::new();
    let mut args = stores.args("queued");
    args.extend(["--metrics-listen".to_owned(), "127.0.0.1:0".to_owned()]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let server = Server::start(&dir.path().join("s.db"), &args);
    let goods = server.admin().add_goods(on_sale("Desk", 3)).unwrap().id;
    assert!(matches!(
        server.client().buy(1, goods).unwrap(),
        Purchase::Ordered(_)
    ));
    let (status, body) = server.http_get("/metrics");
    assert_eq!(status, 200, "{body}");
    let names = dashboard_metric_names();
    assert!(names.len() >= 10, "{names:?}");
    for name in names {
        let served = body.lines().any(|line| {
            line.strip_prefix(name.as_str())
                .is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' '))
        });
        assert!(
            served,
            "the dashboard asks for {name}, which /metrics does not serve:\n{body}"
        );
    }
}
