//! `seckill-web` run as a process, as systemd starts it: the admin token
//! and the session secret read from files (`LoadCredential=`), in front of
//! the real seckill server.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use seckill_web::session::{self, Buyer, SessionKey};

use common::{Server, TOKEN};

/// The session secret the files hold.
const SECRET: &str = "a session secret of more than thirty-two bytes";

/// A running gateway, killed when dropped.
struct Gateway {
    child: Child,
    /// `127.0.0.1:port`.
    addr: String,
}

impl Gateway {
    /// Starts the binary with `args` and none of its secrets from the
    /// environment of whoever runs the tests.
    fn start(server: &Server, args: &[&Path]) -> Gateway {
        let mut child = gateway(server, args)
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn seckill-web");
        let (addr, _) = common::server::announced(&mut child, "seckill-web listening on http://");
        Gateway { child, addr }
    }

    /// One request on a connection of its own: the status and the
    /// `Set-Cookie` (name=value) of the answer.
    fn call(&self, method: &str, path: &str, cookie: Option<&str>, body: &str) -> (u16, String) {
        let mut stream = TcpStream::connect(&self.addr).expect("connect to the gateway");
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let cookie = cookie
            .map(|c| format!("Cookie: {c}\r\n"))
            .unwrap_or_default();
        let request = format!(
            "{method} {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n{cookie}\
             Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        stream.write_all(request.as_bytes()).unwrap();
        let mut answer = String::new();
        stream.read_to_string(&mut answer).unwrap();
        let status = answer
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("no status in {answer:?}"));
        let set_cookie = answer
            .lines()
            .find(|l| l.to_ascii_lowercase().starts_with("set-cookie: "))
            .and_then(|l| l.split_once(": "))
            .map(|(_, c)| c)
            .and_then(|c| c.split(';').next())
            .unwrap_or_default()
            .to_owned();
        (status, set_cookie)
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The gateway's command: `--server` the test server, on an ephemeral
/// port, with `args`.
fn gateway(server: &Server, args: &[&Path]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_seckill-web"));
    command
        .args(["--listen", "127.0.0.1:0", "--server", &server.addr])
        .args(args)
        .env("RUST_LOG", "error")
        .env_remove("SECKILL_ADMIN_TOKEN")
        .env_remove("SECKILL_ADMIN_TOKEN_FILE")
        .env_remove("SECKILL_WEB_SESSION_SECRET")
        .env_remove("SECKILL_WEB_SESSION_SECRET_FILE")
        .stdin(Stdio::null());
    command
}

/// Starts the gateway with `args`, expecting it to refuse them: what it
/// said on stderr. One that starts instead is killed, not waited for.
fn refused(server: &Server, args: &[&Path]) -> String {
    let mut child = gateway(server, args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn seckill-web");
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        match child.try_wait().expect("wait for seckill-web") {
            Some(status) => break status,
            None if Instant::now() > deadline => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("seckill-web started with {args:?}");
            }
            None => std::thread::sleep(Duration::from_millis(20)),
        }
    };
    assert!(!status.success(), "{args:?}");
    let mut said = String::new();
    let mut stderr = child.stderr.take().expect("piped stderr");
    stderr.read_to_string(&mut said).unwrap();
    said
}

#[test]
fn the_admin_token_and_the_session_secret_come_from_files() {
    let server = Server::start();
    let dir = tempfile::tempdir().unwrap();
    let (token_file, secret_file) = (dir.path().join("token"), dir.path().join("secret"));
    // As an editor or `echo` leaves them: a line end each.
    std::fs::write(&token_file, format!("{TOKEN}\n")).unwrap();
    std::fs::write(&secret_file, format!("{SECRET}\r\n")).unwrap();
    let gateway = Gateway::start(
        &server,
        &[
            Path::new("--admin-token-file"),
            &token_file,
            Path::new("--session-secret-file"),
            &secret_file,
        ],
    );

    // The token from the file logs the admin in, and the gateway's admin
    // client greeted the server with it: the admin call gets through.
    let token = format!(r#"{{"token":"{TOKEN}"}}"#);
    let (status, admin) = gateway.call("POST", "/api/admin/login", None, &token);
    assert_eq!(status, 200);
    assert!(admin.starts_with("seckill_admin="), "{admin:?}");
    assert_eq!(
        gateway.call("GET", "/api/admin/stats", Some(&admin), "").0,
        200
    );

    // Sessions are signed with the secret from the file: a buyer's cookie
    // signed with it here is taken.
    let alice = Buyer {
        user_id: session::demo_user_id("alice"),
        name: "alice".into(),
    };
    let cookie = session::buyer_cookie(&SessionKey::from_secret(SECRET), &alice);
    let me = gateway.call(
        "GET",
        "/api/me",
        Some(&format!("seckill_session={cookie}")),
        "",
    );
    assert_eq!(me.0, 200);
    let other = SessionKey::from_secret("another secret, of thirty-two bytes or more");
    let cookie = session::buyer_cookie(&other, &alice);
    let me = gateway.call(
        "GET",
        "/api/me",
        Some(&format!("seckill_session={cookie}")),
        "",
    );
    assert_eq!(me.0, 401);

    // Logout ends the admin session in the process itself.
    assert_eq!(
        gateway
            .call("POST", "/api/admin/logout", Some(&admin), "{}")
            .0,
        200
    );
    assert_eq!(
        gateway.call("GET", "/api/admin/stats", Some(&admin), "").0,
        401
    );
}

#[test]
fn a_secret_file_that_gives_no_secret_stops_the_start() {
    let server = Server::start();
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, format!("{TOKEN}\n")).unwrap();

    // A secret and its file together.
    let said = refused(
        &server,
        &[
            Path::new("--admin-token"),
            Path::new(TOKEN),
            Path::new("--admin-token-file"),
            &token_file,
        ],
    );
    assert!(said.contains("cannot be used with"), "{said}");
    assert!(!said.contains(TOKEN), "{said}");

    // A file that is not there, or of two lines: named, never shown.
    let missing = dir.path().join("no-such-secret");
    let said = refused(&server, &[Path::new("--session-secret-file"), &missing]);
    assert!(said.contains(&*missing.to_string_lossy()), "{said}");
    std::fs::write(&token_file, format!("{TOKEN}\nleaked-word\n")).unwrap();
    let said = refused(&server, &[Path::new("--admin-token-file"), &token_file]);
    assert!(said.contains("more than one line"), "{said}");
    assert!(
        !said.contains(TOKEN) && !said.contains("leaked-word"),
        "{said}"
    );

    // A session secret too short, from a file as from the flag.
    std::fs::write(&token_file, "tiny-secret\n").unwrap();
    let said = refused(&server, &[Path::new("--session-secret-file"), &token_file]);
    assert!(said.contains("at least 32 bytes"), "{said}");
    assert!(!said.contains("tiny-secret"), "{said}");
}
