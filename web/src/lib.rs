//! `seckill-web`: an HTTP gateway in front of seckill servers, with a JSON
//! API for browsers and mobile apps, a storefront (`/`) and an admin
//! console (`/admin`).
//!
//! ```text
//!  browser ──HTTP──▶ axum router ──▶ handlers ──▶ aio::Client (one multiplexed
//!    │  cookie        │ JSON-only POSTs  │ buyer from the session,   connection per
//!    │  (signed)      │ rate limit 429   │ never from the body       server list)
//!    ◀── JSON / HTML ─┘ busy → 503       └─ admin client (admin token) ──▶ seckill-server(s)
//! ```
//!
//! Every page is HTML and a little JavaScript and CSS compiled into the
//! binary (`static/`): no front-end build step. The pages poll the JSON
//! API once a second for live stock.

#![warn(missing_docs)]

pub mod admin;
pub mod admin_sessions;
pub mod api;
pub mod body;
pub mod catalog;
pub mod error;
pub mod pages;
pub mod rate_limit;
pub mod serve;
pub mod session;
pub mod views;

use std::net::IpAddr;
use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, Request};
use axum::http::{header, Method};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use seckill_client::aio::Client;

use crate::admin_sessions::AdminSessions;
use crate::error::ApiError;
use crate::rate_limit::RateLimiter;
use crate::session::{Identity, SessionKey};

/// What the gateway runs with.
#[derive(Debug)]
pub struct Config {
    /// The client of the seckill servers, for buyers' requests.
    pub client: Client,
    /// A client that greeted with the admin token, if one was given: the
    /// admin console is off without it.
    pub admin: Option<AdminConfig>,
    /// Where buyers' identities come from.
    pub identity: Identity,
    /// The key that signs session cookies.
    pub key: SessionKey,
    /// Requests per second per buyer (0: no limit) and the burst.
    pub rate_limit: (f64, u32),
    /// Demo logins per second per client address (0: no limit) and the
    /// burst ([`DEMO_LOGINS_PER_S`]).
    pub login_limit: (f64, u32),
    /// Mark cookies `Secure` (the gateway is served over HTTPS).
    pub secure_cookies: bool,
    /// How long the goods read from the servers answer the storefront's
    /// reads before they are read again ([`catalog`]).
    pub goods_fresh_for: std::time::Duration,
}

/// The admin console's side: the admin token and a client that uses it.
pub struct AdminConfig {
    /// The token an admin logs in with (the server's admin token).
    pub token: String,
    /// A client greeted with that token.
    pub client: Client,
}

/// Hand-written so that the token never reaches a log line.
impl std::fmt::Debug for AdminConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminConfig")
            .field("token", &"<redacted>")
            .field("client", &self.client)
            .finish()
    }
}

/// Wrong admin logins the console takes from one address (an IPv6 /64)
/// before it refuses every login from there for a while: ten, then one
/// every six seconds, however many requests at once.
const WRONG_LOGINS_BURST: u32 = 10;
const WRONG_LOGINS_PER_S: f64 = 1.0 / 6.0;

/// ... and from every address together: a guesser with many addresses gets
/// a hundred, then one a second. Past it every login is refused, so one
/// with that many addresses can keep the console shut meanwhile (never the
/// sale); one with a single address cannot. Behind a reverse proxy every
/// login comes from the proxy's address, and the first limit is the one.
const WRONG_LOGINS_ALL_BURST: u32 = 100;
const WRONG_LOGINS_ALL_PER_S: f64 = 1.0;

/// Demo logins from one address (an IPv6 /64), by default: thirty at
/// once, then two a second. Every new name is a new buyer with a full
/// BUY allowance of its own, so without this a client could buy past its
/// rate by logging in under endless new names; with it, one address makes
/// buyers no faster than this. A room behind one NAT trying the storefront
/// together stays well within it; behind a reverse proxy every login comes
/// from the proxy's address, and the limit is everyone's together
/// (`--login-rate`, `--login-burst` raise it).
pub const DEMO_LOGINS_BURST: u32 = 30;
/// ... see [`DEMO_LOGINS_BURST`].
pub const DEMO_LOGINS_PER_S: f64 = 2.0;

/// The state every handler shares.
#[derive(Debug)]
pub struct AppState {
    /// The configuration.
    pub config: Config,
    /// Buyers' token buckets.
    pub limiter: RateLimiter,
    /// Demo logins per address.
    pub logins: RateLimiter<IpAddr>,
    /// The console's wrong admin logins per address: past them every login
    /// from there is refused unchecked.
    pub wrong_logins: RateLimiter<IpAddr>,
    /// ... and from every address together (key 0).
    pub all_wrong_logins: RateLimiter,
    /// The goods, as the storefront's reads share them.
    pub goods: catalog::Recent<Vec<seckill_client::Goods>>,
    /// The admin sessions of this process: an admin cookie is a session
    /// only while its id is here, and logout takes it out.
    pub admin_sessions: AdminSessions,
}

/// Shared state, as the handlers take it.
pub type State = Arc<AppState>;

/// The gateway's routes.
pub fn app(config: Config) -> Router {
    let limiter = RateLimiter::new(config.rate_limit.0, config.rate_limit.1);
    let state = Arc::new(AppState {
        limiter,
        logins: RateLimiter::new(config.login_limit.0, config.login_limit.1),
        wrong_logins: RateLimiter::new(WRONG_LOGINS_PER_S, WRONG_LOGINS_BURST),
        all_wrong_logins: RateLimiter::new(WRONG_LOGINS_ALL_PER_S, WRONG_LOGINS_ALL_BURST),
        goods: catalog::Recent::new(config.goods_fresh_for),
        admin_sessions: AdminSessions::new(),
        config,
    });
    let api = Router::new()
        .route("/login", post(api::login))
        .route("/logout", post(api::logout))
        .route("/me", get(api::me))
        .route("/goods", get(api::list_goods))
        .route("/goods/{id}", get(api::get_goods))
        .route("/goods/{id}/buy", post(api::buy))
        .route("/goods/{id}/token", post(api::purchase_token))
        .route("/goods/{id}/order", get(api::order_status))
        .route("/orders", get(api::list_orders))
        .route("/orders/{no}/pay", post(api::pay))
        .route("/orders/{no}/cancel", post(api::cancel))
        .route("/admin/login", post(admin::login))
        .route("/admin/logout", post(admin::logout))
        .route("/admin/goods", post(admin::add_goods))
        .route("/admin/goods/{id}/restock", post(admin::restock))
        .route("/admin/goods/{id}/{action}", post(admin::sale_control))
        .route("/admin/reconcile", post(admin::reconcile))
        .route("/admin/stats", get(admin::stats))
        .layer(middleware::from_fn(json_posts_only))
        .layer(DefaultBodyLimit::max(body::MAX_BODY_BYTES))
        .layer(middleware::map_response(not_stored));
    Router::new()
        .route(
            "/",
            get(pages::storefront).layer(middleware::map_response(not_stored)),
        )
        .route("/admin", get(pages::admin))
        .route("/static/{file}", get(pages::asset))
        .nest("/api", api)
        .with_state(state)
}

/// Answers that are one session's own (the storefront names its buyer; the
/// API's answers are their orders, their purchases, live figures) are kept
/// by no cache: a proxy that cached them by URL would serve one buyer's to
/// another (in `--user-header` mode, behind a caching proxy).
async fn not_stored(mut response: Response) -> Response {
    response.headers_mut().insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("no-store"),
    );
    response
}

/// Refuses a POST whose body is not declared JSON. A page of another site
/// can send a form (urlencoded, multipart, text) without asking, but not
/// JSON: the browser asks first (CORS preflight), and this gateway never
/// says yes. With `SameSite=Strict` cookies, that keeps cross-site requests
/// from acting for a logged-in buyer.
async fn json_posts_only(request: Request, next: Next) -> Response {
    if request.method() == Method::POST {
        let json = request
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/json"));
        if !json {
            return ApiError::BadRequest("POST bodies must be application/json".into())
                .into_response();
        }
    }
    next.run(request).await
}
