//! The buyers' JSON API: goods, BUY, orders, PAY, CANCEL, purchase tokens,
//! and the demo login.
//!
//! A BUY's answer is a sale outcome, not an error: `200` with
//! `{"outcome": "ordered" | "already_bought", "order_no": "..."}`, or `409`
//! with `{"outcome": "sold_out" | "not_started" | "ended" | "paused"}`.
//! Failures are [`ApiError`]s: `503` + `Retry-After` when the server is busy
//! or cannot be reached (the answer then names the BUY's `request_id`: send
//! it again with the same id and it cannot buy twice), `429` past the
//! buyer's rate, or past the demo logins an address may make.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, Path, State as AxumState};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use seckill_client::{random_request_id, Cancellation, Payment, Purchase, RequestId};
use serde::Deserialize;
use serde_json::json;

use crate::body::JsonBody;
use crate::error::ApiError;
use crate::rate_limit;
use crate::session::{self, Buyer, Identity};
use crate::views::{now_ms, GoodsView, OrderView};
use crate::State;

/// `POST /api/login` body.
#[derive(Debug, Deserialize)]
pub struct Login {
    /// A name of 1 to 32 letters, digits, `_` or `-`; the same name is
    /// always the same user.
    pub name: String,
}

/// `POST /api/login`: the demo login. It trusts the name it is given, so
/// it is for trying the storefront, not for a real sale: see
/// [`session`] for plugging in an application's own login. Logins are
/// limited per client address (429 past it): each name is a buyer with a
/// BUY allowance of its own, so unlimited logins would lift the buyers'
/// rate limit for anyone willing to make up names.
pub async fn login(
    AxumState(state): AxumState<State>,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    JsonBody(login): JsonBody<Login>,
) -> Result<Response, ApiError> {
    if !matches!(state.config.identity, Identity::DemoLogin) {
        return Err(ApiError::Disabled(
            "buyers log in through the application's own login".into(),
        ));
    }
    // Every attempt counts, a refused name too: what is limited is the
    // address's logins, not its successes.
    state.logins.check(rate_limit::peer_key(peer))?;
    if !session::valid_name(&login.name) {
        return Err(ApiError::BadRequest(format!(
            "a name is 1 to {} letters, digits, '_' or '-'",
            session::MAX_NAME_LEN
        )));
    }
    let buyer = Buyer {
        user_id: session::demo_user_id(&login.name),
        name: login.name,
    };
    let cookie = session::set_cookie(
        session::SESSION_COOKIE,
        &session::buyer_cookie(&state.config.key, &buyer),
        session::SESSION_SECONDS,
        state.config.secure_cookies,
    );
    Ok((
        [(header::SET_COOKIE, cookie)],
        Json(json!({ "user_id": buyer.user_id.to_string(), "name": buyer.name })),
    )
        .into_response())
}

/// `POST /api/logout`: forgets the session cookie.
pub async fn logout(AxumState(state): AxumState<State>) -> Response {
    let cookie = session::set_cookie(session::SESSION_COOKIE, "", 0, state.config.secure_cookies);
    ([(header::SET_COOKIE, cookie)], Json(json!({}))).into_response()
}

/// `GET /api/me`: the buyer of this session, or 401.
pub async fn me(
    AxumState(state): AxumState<State>,
    headers: HeaderMap,
) -> Result<Json<serde_json::Value>, ApiError> {
    let buyer = buyer(&state, &headers)?;
    Ok(Json(
        json!({ "user_id": buyer.user_id.to_string(), "name": buyer.name }),
    ))
}

/// `GET /api/goods`: every goods with its live stock, and the gateway's
/// clock to count down against. Read from the servers at most once a
/// moment, whoever asks ([`crate::catalog`]).
pub async fn list_goods(
    AxumState(state): AxumState<State>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let goods = goods(&state).await?;
    let goods: Vec<GoodsView> = goods.iter().map(GoodsView::from).collect();
    Ok(Json(json!({ "server_time_ms": now_ms(), "goods": goods })))
}

/// `GET /api/goods/{id}`: one goods, from the same reading. A goods the
/// reading does not have is `unknown_goods`, an empty reading included.
///
/// Only the reading answers, never a GET_GOODS of the servers: were they
/// asked whenever the reading lacks the goods, even only while it is
/// empty, a flood of GETs for some id would be a flood on the servers,
/// which the reading is there to stop. Nothing is lost by it: a
/// goods added after a reading is in the next one, at most `--goods-cache`
/// later, as it is in `GET /api/goods`. What an empty reading hides is a
/// server still starting, which lists no goods but answers `busy` for one:
/// its goods read as unknown, as the list reads empty, until it is up.
pub async fn get_goods(
    AxumState(state): AxumState<State>,
    Path(id): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let id = parse_id(&id)?;
    let listed = goods(&state).await?;
    let goods = listed
        .iter()
        .find(|g| g.id == id)
        .ok_or(ApiError::UnknownGoods(id))?;
    Ok(Json(
        json!({ "server_time_ms": now_ms(), "goods": GoodsView::from(goods) }),
    ))
}

/// The goods as the storefront's reads share them.
async fn goods(state: &State) -> Result<std::sync::Arc<Vec<seckill_client::Goods>>, ApiError> {
    let client = state.config.client.clone();
    state
        .goods
        .get(|| async move { Ok(client.list_goods().await?) })
        .await
}

/// `POST /api/goods/{id}/buy` body; both fields optional.
#[derive(Debug, Default, Deserialize)]
pub struct BuyBody {
    /// The purchase's client request id (32 hex digits or a UUID), drawn
    /// once per purchase by the page and sent again on every retry of it.
    /// The gateway draws one when there is none.
    pub request_id: Option<String>,
    /// A purchase token from `POST /api/goods/{id}/token`, for goods that
    /// need one.
    pub purchase_token: Option<String>,
    /// This is a retry of a BUY sent before under `request_id` (its outcome
    /// unknown, or `busy`): sent with the repeat mark, so that no server
    /// answers it from its caches (a sold-out flag, the window) rather
    /// than with what the first send did (PROTOCOL.md, section 9).
    #[serde(default)]
    pub retry: bool,
}

/// `POST /api/goods/{id}/buy`.
pub async fn buy(
    AxumState(state): AxumState<State>,
    headers: HeaderMap,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<BuyBody>,
) -> Result<Response, ApiError> {
    let buyer = limited_buyer(&state, &headers)?;
    let goods_id = parse_id(&id)?;
    // What goes to the server; the answers name the purchase's own id.
    let (request_id, sent) = request_ids(body.request_id.as_deref(), body.retry, "BUY")?;
    let client = &state.config.client;
    let bought = match &body.purchase_token {
        Some(token) => {
            let token = parse_id(token)?;
            client
                .buy_with_token_and_request_id(buyer.user_id, goods_id, token, sent)
                .await
        }
        None => {
            client
                .buy_with_request_id(buyer.user_id, goods_id, sent)
                .await
        }
    };
    let purchase = match bought {
        Ok(purchase) => purchase,
        Err(e) => {
            // The outcome may be unknown: the answer names the id that
            // retries it safely.
            let response = ApiError::from(e).into_response();
            return Ok(with_request_id(response, request_id).await);
        }
    };
    let (status, outcome) = match purchase {
        Purchase::Ordered(_) => (StatusCode::OK, "ordered"),
        Purchase::AlreadyBought(_) => (StatusCode::OK, "already_bought"),
        Purchase::SoldOut => (StatusCode::CONFLICT, "sold_out"),
        Purchase::NotStarted => (StatusCode::CONFLICT, "not_started"),
        Purchase::Ended => (StatusCode::CONFLICT, "ended"),
        Purchase::Paused => (StatusCode::CONFLICT, "paused"),
    };
    let body = json!({
        "outcome": outcome,
        "order_no": purchase.order_no().map(|no| no.to_string()),
        "request_id": request_id.to_string(),
    });
    Ok((status, Json(body)).into_response())
}

/// Adds `"request_id"` to an error's JSON body.
pub(crate) async fn with_request_id(response: Response, request_id: RequestId) -> Response {
    let (mut parts, body) = response.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, 64 * 1024).await else {
        return Response::from_parts(parts, axum::body::Body::empty());
    };
    let mut value: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or(json!({}));
    value["request_id"] = json!(request_id.to_string());
    parts.headers.remove(header::CONTENT_LENGTH);
    let body = serde_json::to_vec(&value).unwrap_or_default();
    Response::from_parts(parts, axum::body::Body::from(body))
}

/// `POST /api/goods/{id}/token`: a purchase token for this buyer.
pub async fn purchase_token(
    AxumState(state): AxumState<State>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let buyer = limited_buyer(&state, &headers)?;
    let token = state
        .config
        .client
        .purchase_token(buyer.user_id, parse_id(&id)?)
        .await?;
    Ok(Json(json!({
        "purchase_token": token.token.to_string(),
        "expires_ms": token.expires_ms,
    })))
}

/// `GET /api/goods/{id}/order`: the buyer's newest order of this goods.
pub async fn order_status(
    AxumState(state): AxumState<State>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let buyer = limited_buyer(&state, &headers)?;
    let order = state
        .config
        .client
        .order_status(buyer.user_id, parse_id(&id)?)
        .await?
        .ok_or_else(|| ApiError::NotFound("no order of this goods".into()))?;
    Ok(Json(json!({ "order": OrderView::from(&order) })))
}

/// `GET /api/orders`: the buyer's orders, newest first.
pub async fn list_orders(
    AxumState(state): AxumState<State>,
    headers: HeaderMap,
) -> Result<Json<serde_json::Value>, ApiError> {
    let buyer = limited_buyer(&state, &headers)?;
    let orders = state.config.client.list_orders(buyer.user_id).await?;
    let orders: Vec<OrderView> = orders.iter().map(OrderView::from).collect();
    Ok(Json(
        json!({ "server_time_ms": now_ms(), "orders": orders }),
    ))
}

/// `POST /api/orders/{no}/pay`: `200` with the paid order, or `409` with
/// `{"outcome": "order_cancelled"}`.
pub async fn pay(
    AxumState(state): AxumState<State>,
    headers: HeaderMap,
    Path(no): Path<String>,
) -> Result<Response, ApiError> {
    let buyer = limited_buyer(&state, &headers)?;
    let payment = state
        .config
        .client
        .pay(buyer.user_id, parse_id(&no)?)
        .await?;
    Ok(match payment {
        Payment::Paid(order) => Json(json!({
            "outcome": "paid",
            "order": OrderView::from(&order),
        }))
        .into_response(),
        Payment::OrderCancelled => (
            StatusCode::CONFLICT,
            Json(json!({ "outcome": "order_cancelled" })),
        )
            .into_response(),
    })
}

/// `POST /api/orders/{no}/cancel`: `200` with the cancelled order, or
/// `409` with `{"outcome": "order_paid"}`.
pub async fn cancel(
    AxumState(state): AxumState<State>,
    headers: HeaderMap,
    Path(no): Path<String>,
) -> Result<Response, ApiError> {
    let buyer = limited_buyer(&state, &headers)?;
    let cancellation = state
        .config
        .client
        .cancel(buyer.user_id, parse_id(&no)?)
        .await?;
    Ok(match cancellation {
        Cancellation::Cancelled(order) => Json(json!({
            "outcome": "cancelled",
            "order": OrderView::from(&order),
        }))
        .into_response(),
        Cancellation::OrderPaid => (
            StatusCode::CONFLICT,
            Json(json!({ "outcome": "order_paid" })),
        )
            .into_response(),
    })
}

fn buyer(state: &State, headers: &HeaderMap) -> Result<Buyer, ApiError> {
    session::require_buyer(&state.config.identity, &state.config.key, headers)
}

/// The buyer, within their rate.
fn limited_buyer(state: &State, headers: &HeaderMap) -> Result<Buyer, ApiError> {
    let buyer = buyer(state, headers)?;
    state.limiter.check(buyer.user_id)?;
    Ok(buyer)
}

/// A 64-bit id from a path or a field, as the JSON shows them: a decimal
/// string.
pub fn parse_id(text: &str) -> Result<u64, ApiError> {
    text.parse::<u64>()
        .ok()
        .filter(|&id| id != 0)
        .ok_or_else(|| ApiError::BadRequest(format!("{text:?} is not an id")))
}

/// The client request id of a BUY or an add (`what`): the one `given`, or
/// one drawn; and the one to send, marked a repeat for a `retry` (which
/// must name the id it retries).
pub(crate) fn request_ids(
    given: Option<&str>,
    retry: bool,
    what: &str,
) -> Result<(RequestId, RequestId), ApiError> {
    let id = match given {
        Some(text) => parse_request_id(text)?,
        None if retry => {
            return Err(ApiError::BadRequest(format!(
                "a retry names the request_id of the {what} it retries"
            )))
        }
        None => random_request_id()?,
    };
    Ok((id, if retry { id.repeat() } else { id }))
}

fn parse_request_id(text: &str) -> Result<RequestId, ApiError> {
    let id: RequestId = text
        .parse()
        .map_err(|e| ApiError::BadRequest(format!("request_id: {e}")))?;
    // A UUID names the purchase without its top bit, the repeat mark: half
    // of all random UUIDs have it set, and a client that draws them has no
    // way to clear it.
    if text.contains('-') {
        return id
            .purchase()
            .ok_or_else(|| ApiError::BadRequest("request_id: no id but the top bit".into()));
    }
    // The repeat mark is the client's to set on its own resends.
    if id.is_repeat() {
        return Err(ApiError::BadRequest(
            "request_id: the top bit is reserved (clear it)".into(),
        ));
    }
    Ok(id)
}
