//! The admin console's JSON API: login with the admin token, add goods
//! (stock preloaded), restock, pause, resume, end, reconcile, and the
//! counters behind the live chart. Every call but login needs the admin
//! session cookie; the gateway talks to the servers through a client of
//! its own greeted with the admin token.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, Path, State as AxumState};
use axum::http::{header, HeaderMap};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use seckill_client::aio::Client;
use seckill_client::{ErrorKind, NewGoods, SaleAction, SaleRules};
use serde::Deserialize;
use serde_json::json;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::api::{parse_id, request_ids, with_request_id};
use crate::body::JsonBody;
use crate::error::ApiError;
use crate::views::{now_ms, DriftView, GoodsView};
use crate::State;
use crate::{rate_limit, session};

/// `POST /api/admin/login` body.
#[derive(Deserialize)]
pub struct Login {
    /// The admin token.
    pub token: String,
}

/// Hand-written so that a guess at the admin token (the right one too)
/// never reaches a log line through `{:?}`.
impl std::fmt::Debug for Login {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Login")
            .field("token", &"<redacted>")
            .finish()
    }
}

/// `POST /api/admin/login`: an admin session for the right token.
pub async fn login(
    AxumState(state): AxumState<State>,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    JsonBody(login): JsonBody<Login>,
) -> Result<Response, ApiError> {
    let admin = state.config.admin.as_ref().ok_or_else(disabled)?;
    let address = rate_limit::peer_key(peer);
    // Past the allowance of wrong logins, none is looked at (429), the
    // right one neither: guessing in parallel gains nothing. Each login is
    // charged before it is looked at and given back if right, so that
    // logins racing on several threads cannot all see the last one left.
    // Everyone's allowance first: past it, a flood from many addresses
    // adds no bucket per address to the map.
    state.all_wrong_logins.check(0)?;
    if let Err(e) = state.wrong_logins.check(address) {
        state.all_wrong_logins.give_back(0);
        return Err(e);
    }
    if token_matches(&login.token, &admin.token) {
        state.wrong_logins.give_back(address);
        state.all_wrong_logins.give_back(0);
    } else {
        log::warn!("admin login refused: wrong token");
        // A second for every wrong guess, against guessing at HTTP speed
        // (a strong token is still what keeps the console closed).
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
        return Err(ApiError::NotAdmin);
    }
    let opened = state.admin_sessions.open().map_err(|e| {
        ApiError::Internal(format!("no random source for an admin session id: {e}"))
    })?;
    let cookie = session::set_cookie(
        session::ADMIN_COOKIE,
        &opened.sign(&state.config.key.for_admin(&admin.token)),
        session::ADMIN_SECONDS,
        state.config.secure_cookies,
    );
    Ok((
        [(header::SET_COOKIE, cookie)],
        Json(json!({ "admin": true })),
    )
        .into_response())
}

/// Whether `guess` is the admin token, in time that tells nothing of it:
/// the SHA-256 digests are compared, in constant time (a comparison of the
/// strings returns at once on a length that differs, so would tell the
/// token's length).
fn token_matches(guess: &str, token: &str) -> bool {
    Sha256::digest(guess.as_bytes())
        .ct_eq(&Sha256::digest(token.as_bytes()))
        .into()
}

/// `POST /api/admin/logout`: ends the session on the gateway, not only in
/// this browser, so that a copy of its cookie is refused too.
pub async fn logout(AxumState(state): AxumState<State>, headers: HeaderMap) -> Response {
    if let Some(admin) = &state.config.admin {
        let key = state.config.key.for_admin(&admin.token);
        state.admin_sessions.close(&key, &headers);
    }
    let cookie = session::set_cookie(session::ADMIN_COOKIE, "", 0, state.config.secure_cookies);
    ([(header::SET_COOKIE, cookie)], Json(json!({}))).into_response()
}

/// `POST /api/admin/goods` body.
#[derive(Debug, Deserialize)]
pub struct AddGoods {
    /// Its name (at most 200 bytes).
    pub name: String,
    /// Its price in the currency's smallest unit.
    pub price_cents: u64,
    /// Units preloaded for the sale.
    pub stock: u32,
    /// Seconds from now until the sale opens (default 0: now).
    #[serde(default)]
    pub start_in_s: u64,
    /// How long the sale lasts, in seconds (default an hour).
    #[serde(default = "default_duration")]
    pub duration_s: u64,
    /// Live orders one user may hold (default 1).
    #[serde(default = "default_limit")]
    pub per_user_limit: u8,
    /// Time to pay, in seconds (default 15 minutes).
    #[serde(default = "default_pay_window")]
    pub pay_window_s: u64,
    /// Whether BUY needs a purchase token (default no).
    #[serde(default)]
    pub token_required: bool,
    /// Buckets the goods' stock is split over in the server's Redis (default
    /// 1: no split), for a hot goods on a Redis Cluster.
    #[serde(default = "default_buckets")]
    pub buckets: u16,
    /// The addition's client request id, as a BUY's (32 hex digits or a
    /// UUID, top bit clear): an answer whose outcome is unknown names the
    /// one drawn, and the same add sent again under it makes one goods.
    #[serde(default)]
    pub request_id: Option<String>,
    /// This add is a retry of the one named by `request_id`.
    #[serde(default)]
    pub retry: bool,
}

fn default_buckets() -> u16 {
    1
}

fn default_duration() -> u64 {
    3600
}

fn default_limit() -> u8 {
    1
}

fn default_pay_window() -> u64 {
    15 * 60
}

/// `POST /api/admin/goods`: adds a goods with its stock preloaded. It
/// carries a fresh request id, so the client's retry after a lost reply
/// never makes a second goods.
pub async fn add_goods(
    AxumState(state): AxumState<State>,
    headers: HeaderMap,
    JsonBody(add): JsonBody<AddGoods>,
) -> Result<Response, ApiError> {
    let client = admin_client(&state, &headers)?;
    if add.name.trim().is_empty() {
        return Err(ApiError::BadRequest("a goods needs a name".into()));
    }
    let (request_id, sent) = request_ids(add.request_id.as_deref(), add.retry, "add")?;
    let start_ms = now_ms().saturating_add(add.start_in_s.saturating_mul(1000));
    let goods = NewGoods {
        name: add.name,
        price_cents: add.price_cents,
        stock: add.stock,
        start_ms,
        end_ms: start_ms.saturating_add(add.duration_s.max(1).saturating_mul(1000)),
        rules: SaleRules {
            per_user_limit: add.per_user_limit.max(1),
            pay_window_ms: add.pay_window_s.max(1).saturating_mul(1000),
            token_required: add.token_required,
        },
        buckets: add.buckets,
    };
    match client.add_goods_with_request_id(goods, sent).await {
        Ok(goods) => Ok(Json(json!({ "goods": GoodsView::from(&goods) })).into_response()),
        // The outcome may be unknown: the answer names the id that retries
        // it without adding a second goods.
        Err(e) => Ok(with_request_id(ApiError::from(e).into_response(), request_id).await),
    }
}

/// `POST /api/admin/goods/{id}/restock` body.
#[derive(Debug, Deserialize)]
pub struct Restock {
    /// Units to add.
    pub amount: u32,
}

/// `POST /api/admin/goods/{id}/restock`.
pub async fn restock(
    AxumState(state): AxumState<State>,
    headers: HeaderMap,
    Path(id): Path<String>,
    JsonBody(restock): JsonBody<Restock>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let client = admin_client(&state, &headers)?;
    let goods_id = parse_id(&id)?;
    let goods = client
        .restock(goods_id, restock.amount)
        .await
        .map_err(|e| match e.kind() {
            // Sent, perhaps done: a RESTOCK sent again would add the units
            // twice, so not the 503 that says "nothing done, retry".
            ErrorKind::Timeout | ErrorKind::Closed | ErrorKind::Io => ApiError::InDoubt(format!(
                "{e}; the restock may have been applied: check goods {goods_id}'s total before restocking again"
            )),
            _ => ApiError::from(e),
        })?;
    Ok(Json(json!({ "goods": GoodsView::from(&goods) })))
}

/// `POST /api/admin/goods/{id}/{pause|resume|end}` (body `{}`).
pub async fn sale_control(
    AxumState(state): AxumState<State>,
    headers: HeaderMap,
    Path((id, action)): Path<(String, String)>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let client = admin_client(&state, &headers)?;
    let action = match action.as_str() {
        "pause" => SaleAction::Pause,
        "resume" => SaleAction::Resume,
        "end" => SaleAction::End,
        other => return Err(ApiError::NotFound(format!("no sale action {other:?}"))),
    };
    let goods = client.sale_control(parse_id(&id)?, action).await?;
    Ok(Json(json!({ "goods": GoodsView::from(&goods) })))
}

/// `POST /api/admin/reconcile` body.
#[derive(Debug, Default, Deserialize)]
pub struct Reconcile {
    /// One goods, or every goods when absent.
    pub goods_id: Option<String>,
}

/// `POST /api/admin/reconcile`: repairs the stock store from the order
/// store, and shows what each goods was off by.
pub async fn reconcile(
    AxumState(state): AxumState<State>,
    headers: HeaderMap,
    JsonBody(body): JsonBody<Reconcile>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let client = admin_client(&state, &headers)?;
    let goods = body.goods_id.as_deref().map(parse_id).transpose()?;
    let drifts = client.reconcile(goods).await?;
    let drifts: Vec<DriftView> = drifts.iter().map(DriftView::from).collect();
    Ok(Json(json!({ "drifts": drifts })))
}

/// `GET /api/admin/stats`: the server's counters, the BUYs answered so far
/// (`buys`, the chart's rate is its slope) and every goods' stock.
pub async fn stats(
    AxumState(state): AxumState<State>,
    headers: HeaderMap,
) -> Result<Json<serde_json::Value>, ApiError> {
    let client = admin_client(&state, &headers)?;
    let (stats, goods) = tokio::join!(client.stats(), client.list_goods());
    let (stats, goods) = (stats?, goods?);
    // Every BUY the server answered, whatever the answer.
    let buys: u64 = stats
        .iter()
        .filter(|s| {
            matches!(
                s.name.as_str(),
                "buy_ok"
                    | "buy_already_bought"
                    | "buy_sold_out"
                    | "buy_outside_window"
                    | "buy_rate_limited"
                    | "buy_token_refused"
            )
        })
        .map(|s| s.value)
        .sum();
    let counters: serde_json::Map<String, serde_json::Value> = stats
        .iter()
        .map(|s| (s.name.clone(), json!(s.value)))
        .collect();
    let goods: Vec<GoodsView> = goods.iter().map(GoodsView::from).collect();
    Ok(Json(json!({
        "time_ms": now_ms(),
        "buys": buys,
        "stats": counters,
        "goods": goods,
    })))
}

/// The admin client, for a request with a live admin session.
fn admin_client<'a>(state: &'a State, headers: &HeaderMap) -> Result<&'a Client, ApiError> {
    let admin = state.config.admin.as_ref().ok_or_else(disabled)?;
    let key = state.config.key.for_admin(&admin.token);
    if !state.admin_sessions.is_admin(&key, headers) {
        return Err(ApiError::NotAdmin);
    }
    Ok(&admin.client)
}

fn disabled() -> ApiError {
    ApiError::Disabled("the admin console is off: start seckill-web with an admin token".into())
}
