//! `seckill-web`: the HTTP gateway, storefront and admin console.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use axum::http::HeaderName;
use clap::Parser;
use seckill_client::aio::Client;
use seckill_client::secret_file;
use seckill_web::serve::{serve, Limits};
use seckill_web::session::{self, Identity, SessionKey};
use seckill_web::{AdminConfig, Config};

/// Serves a JSON API, a storefront (`/`) and an admin console (`/admin`)
/// in front of seckill servers.
// No `Debug`: the admin token and the session secret are plain strings here.
#[derive(Parser)]
#[command(version)]
struct Args {
    /// Where to listen for HTTP.
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: String,
    /// The seckill servers of the sale, comma-separated.
    #[arg(long, default_value = "127.0.0.1:7700", value_delimiter = ',')]
    server: Vec<String>,
    /// The servers' admin token: turns the admin console on. Better given
    /// in the environment than on the command line, where `ps` shows it.
    #[arg(long, env = "SECKILL_ADMIN_TOKEN", hide_env_values = true)]
    admin_token: Option<String>,
    /// Read the admin token from this file instead (one trailing newline is
    /// dropped; at most 4 KiB), e.g. a systemd credential. Not with
    /// --admin-token.
    #[arg(long, value_name = "PATH", env = "SECKILL_ADMIN_TOKEN_FILE")]
    #[arg(conflicts_with = "admin_token")]
    admin_token_file: Option<PathBuf>,
    /// Take buyers' user ids from this header, set by a trusted proxy that
    /// authenticates them (and strips it from clients' requests), instead of
    /// the demo login's session cookie.
    #[arg(long)]
    user_header: Option<String>,
    /// A secret (at least 32 bytes) that session cookies are signed with,
    /// so that buyers' sessions outlive a restart and hold on several
    /// gateways; random by default. Admin sessions are this process's own
    /// whatever the secret.
    #[arg(long, env = "SECKILL_WEB_SESSION_SECRET", hide_env_values = true)]
    session_secret: Option<String>,
    /// Read the session secret from this file instead (one trailing newline
    /// is dropped; at most 4 KiB). Not with --session-secret.
    #[arg(long, value_name = "PATH", env = "SECKILL_WEB_SESSION_SECRET_FILE")]
    #[arg(conflicts_with = "session_secret")]
    session_secret_file: Option<PathBuf>,
    /// Requests per second per buyer (0: no limit).
    #[arg(long, default_value_t = 5.0)]
    rate_limit: f64,
    /// Requests a buyer may make at once before the rate applies.
    #[arg(long, default_value_t = 10)]
    rate_burst: u32,
    /// Demo logins (POST /api/login) per second per client address (0: no
    /// limit); each new name is a buyer with a BUY allowance of its own.
    #[arg(long, default_value_t = seckill_web::DEMO_LOGINS_PER_S)]
    login_rate: f64,
    /// Demo logins an address may make at once before the rate applies.
    #[arg(long, default_value_t = seckill_web::DEMO_LOGINS_BURST)]
    login_burst: u32,
    /// Mark cookies Secure (the gateway is served over HTTPS, by a proxy).
    #[arg(long)]
    secure_cookies: bool,
    /// How long the goods read from the servers answer the storefront's
    /// reads (GET /api/goods, /api/goods/{id}) before they are read again; 0 reads them for
    /// every request.
    #[arg(long, default_value = "250ms", value_parser = humantime::parse_duration)]
    goods_cache: Duration,
    /// How long one call to the servers may take, e.g. "2s".
    #[arg(long, default_value = "3s", value_parser = humantime::parse_duration)]
    timeout: Duration,
    /// HTTP connections open at once; past it, new ones wait to be
    /// accepted until one closes.
    #[arg(long, default_value_t = Limits::default().max_connections)]
    max_connections: usize,
    /// How long a client may take to send a request's head; also how long
    /// an idle keep-alive connection stays open.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    header_timeout: Duration,
    /// How long a client may take to send a request's body.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    body_timeout: Duration,
    /// How long a client may leave an answer unread before its connection
    /// is closed.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    send_timeout: Duration,
    /// How long a connection is served before it is closed, after its
    /// request in flight (a client that keeps sending requests meets no
    /// other deadline): its client reconnects, and its place is free.
    #[arg(long, default_value = "10m", value_parser = humantime::parse_duration)]
    max_connection_age: Duration,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let args = Args::parse();
    anyhow::ensure!(
        args.max_connections > 0,
        "--max-connections must be at least 1"
    );
    let client = builder(&args, None).build()?;
    let admin_token = secret(
        args.admin_token.as_deref(),
        args.admin_token_file.as_deref(),
        "reading the admin token (--admin-token-file)",
    )?;
    // An empty --admin-token turns the console off, as none does; an empty
    // file is refused by the reader instead: it is a mistake, not a choice.
    let admin = match admin_token.filter(|t| !t.is_empty()) {
        Some(token) => Some(AdminConfig {
            client: builder(&args, Some(&token)).build()?,
            token,
        }),
        None => None,
    };
    let identity = match &args.user_header {
        Some(name) => Identity::TrustedHeader(
            HeaderName::try_from(name.as_str()).context("--user-header is no header name")?,
        ),
        None => Identity::DemoLogin,
    };
    let session_secret = secret(
        args.session_secret.as_deref(),
        args.session_secret_file.as_deref(),
        "reading the session secret (--session-secret-file)",
    )?;
    let key = match &session_secret {
        Some(secret) if secret.len() < session::MIN_SECRET_LEN => anyhow::bail!(
            "the session secret (--session-secret or its file) must be at least {} bytes (a short one can be guessed from any cookie)",
            session::MIN_SECRET_LEN
        ),
        Some(secret) => SessionKey::from_secret(secret),
        None => SessionKey::random().context("no random source for the session key")?,
    };
    let config = Config {
        client,
        admin,
        identity,
        key,
        rate_limit: (args.rate_limit, args.rate_burst),
        login_limit: (args.login_rate, args.login_burst),
        secure_cookies: args.secure_cookies,
        goods_fresh_for: args.goods_cache,
    };
    let listener = tokio::net::TcpListener::bind(&args.listen)
        .await
        .with_context(|| format!("listening on {}", args.listen))?;
    // The first line of stdout, for scripts and tests that start it.
    println!("seckill-web listening on http://{}", listener.local_addr()?);
    log::info!("selling from {}", args.server.join(", "));
    let limits = Limits {
        max_connections: fit_connections(args.max_connections),
        header_timeout: args.header_timeout,
        body_timeout: args.body_timeout,
        send_timeout: args.send_timeout,
        max_age: args.max_connection_age,
        // A request whose head just came: its body, then a call to the
        // servers and one more if the client moves to the next server.
        drain_timeout: args.body_timeout + 2 * args.timeout + Duration::from_secs(1),
    };
    serve(listener, seckill_web::app(config), limits, stopped()).await;
    Ok(())
}

/// Descriptors kept for everything but HTTP connections: the listener, the
/// runtime's, the connections to the seckill servers, logs.
const RESERVED_FILES: u64 = 64;

/// `max_connections`, or fewer if the open-files limit, raised to its hard
/// limit first (the soft limit a shell hands down is often 1024), has no
/// room for them: past it, accepts would fail instead of waiting.
fn fit_connections(max_connections: usize) -> usize {
    let limit = match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => limit,
        Err(e) => {
            log::warn!("cannot read or raise the open-files limit ({e}); --max-connections is used as given");
            return max_connections;
        }
    };
    let room = usize::try_from(limit.saturating_sub(RESERVED_FILES).max(1)).unwrap_or(usize::MAX);
    if room < max_connections {
        log::warn!(
            "--max-connections {max_connections} needs more open files than the limit of {limit} allows: serving at most {room}; raise the hard limit (ulimit -Hn, systemd LimitNOFILE=) to serve more"
        );
        return room;
    }
    max_connections
}

/// Resolves on SIGINT or SIGTERM: requests in flight finish, then the
/// gateway exits.
async fn stopped() {
    use tokio::signal::unix::{signal, SignalKind};
    let Ok(mut term) = signal(SignalKind::terminate()) else {
        let _ = tokio::signal::ctrl_c().await;
        return;
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    log::info!("stopping");
}

/// A secret given as itself or in a file (clap refuses both). The file is
/// read once, at start, as the server reads its own: a new secret takes a
/// restart.
fn secret(
    given: Option<&str>,
    file: Option<&Path>,
    what: &'static str,
) -> anyhow::Result<Option<String>> {
    match (given, file) {
        (Some(secret), _) => Ok(Some(secret.to_owned())),
        (None, Some(path)) => secret_file::read(path).map(Some).context(what),
        (None, None) => Ok(None),
    }
}

fn builder(args: &Args, token: Option<&str>) -> seckill_client::aio::ClientBuilder {
    let mut servers = args.server.iter();
    let first = servers.next().cloned().unwrap_or_default();
    let mut builder = Client::builder(first)
        .addrs(servers.cloned())
        .request_timeout(args.timeout)
        .connect_timeout(args.timeout);
    if let Some(token) = token {
        builder = builder.token(token);
    }
    builder
}
