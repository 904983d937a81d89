//! The JSON API through the gateway's router (in process, no socket), in
//! front of the real seckill server.

mod common;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{header, HeaderName, Request, StatusCode};
use axum::Router;
use http_body_util::BodyExt;
use std::net::SocketAddr;
use std::time::Duration;

use seckill_web::session::{Identity, SessionKey};
use seckill_web::Config;
use serde_json::{json, Value};
use tower::ServiceExt;

use common::{admin_client, config, goods, Server};

/// One answer: status, `Retry-After`, `Set-Cookie` and the JSON body.
struct Answer {
    status: StatusCode,
    retry_after: Option<String>,
    cookie: Option<String>,
    body: Value,
}

async fn call(
    app: &Router,
    method: &str,
    path: &str,
    cookie: Option<&str>,
    body: Option<Value>,
) -> Answer {
    let mut request = Request::builder().method(method).uri(path);
    if let Some(cookie) = cookie {
        request = request.header(header::COOKIE, cookie);
    }
    let request = match body {
        Some(body) => request
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(body.to_string())),
        None => request.body(Body::empty()),
    }
    .unwrap();
    let response = app.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let header_text = |name| {
        response
            .headers()
            .get(name)
            .map(|v: &header::HeaderValue| v.to_str().unwrap().to_owned())
    };
    let retry_after = header_text(header::RETRY_AFTER);
    // name=value, without the attributes: what a browser sends back.
    let cookie =
        header_text(header::SET_COOKIE).map(|c| c.split(';').next().unwrap_or_default().to_owned());
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    Answer {
        status,
        retry_after,
        cookie,
        body,
    }
}

async fn login(app: &Router, name: &str) -> String {
    let answer = call(
        app,
        "POST",
        "/api/login",
        None,
        Some(json!({ "name": name })),
    )
    .await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    answer.cookie.expect("a session cookie")
}

#[tokio::test]
async fn a_buyer_logs_in_buys_once_and_pays() {
    let server = Server::start();
    let phone = admin_client(&server.addr)
        .await
        .add_goods(goods("Phone", 1, 0))
        .await
        .unwrap();
    let app = seckill_web::app(config(&server.addr, 0.0, 1));
    let buy = format!("/api/goods/{}/buy", phone.id);

    // No session: no buying.
    let anonymous = call(&app, "POST", &buy, None, Some(json!({}))).await;
    assert_eq!(anonymous.status, StatusCode::UNAUTHORIZED);

    let listed = call(&app, "GET", "/api/goods", None, None).await;
    assert_eq!(listed.body["goods"][0]["remaining"], 1);
    assert_eq!(listed.body["goods"][0]["id"], phone.id.to_string());

    let alice = login(&app, "alice").await;
    let me = call(&app, "GET", "/api/me", Some(&alice), None).await;
    assert_eq!(me.body["name"], "alice");
    let bought = call(&app, "POST", &buy, Some(&alice), Some(json!({}))).await;
    assert_eq!(bought.status, StatusCode::OK, "{}", bought.body);
    assert_eq!(bought.body["outcome"], "ordered");
    let order_no = bought.body["order_no"].as_str().unwrap().to_owned();

    // Again, with the request id of the first: the same order.
    let retry = json!({ "request_id": bought.body["request_id"] });
    let again = call(&app, "POST", &buy, Some(&alice), Some(retry)).await;
    assert_eq!(again.body["order_no"], order_no.as_str(), "{}", again.body);
    let fresh = call(&app, "POST", &buy, Some(&alice), Some(json!({}))).await;
    assert_eq!(fresh.body["outcome"], "already_bought");

    // Bob finds it sold out.
    let bob = login(&app, "bob").await;
    let sold_out = call(&app, "POST", &buy, Some(&bob), Some(json!({}))).await;
    assert_eq!(sold_out.status, StatusCode::CONFLICT);
    assert_eq!(sold_out.body["outcome"], "sold_out");

    // Alice's orders, and not Bob's; Bob cannot pay Alice's order.
    let orders = call(&app, "GET", "/api/orders", Some(&alice), None).await;
    assert_eq!(orders.body["orders"][0]["order_no"], order_no.as_str());
    let none = call(&app, "GET", "/api/orders", Some(&bob), None).await;
    assert_eq!(none.body["orders"], json!([]));
    let pay = format!("/api/orders/{order_no}/pay");
    let stolen = call(&app, "POST", &pay, Some(&bob), Some(json!({}))).await;
    assert_eq!(stolen.status, StatusCode::NOT_FOUND, "{}", stolen.body);
    let paid = call(&app, "POST", &pay, Some(&alice), Some(json!({}))).await;
    assert_eq!(paid.body["order"]["state"], "paid", "{}", paid.body);
    let cancel = format!("/api/orders/{order_no}/cancel");
    let too_late = call(&app, "POST", &cancel, Some(&alice), Some(json!({}))).await;
    assert_eq!(too_late.body["outcome"], "order_paid");

    let status = format!("/api/goods/{}/order", phone.id);
    let order = call(&app, "GET", &status, Some(&alice), None).await;
    assert_eq!(order.body["order"]["state"], "paid");
}

#[tokio::test]
async fn forged_sessions_and_cross_site_forms_are_refused() {
    let server = Server::start();
    let app = seckill_web::app(config(&server.addr, 0.0, 1));
    let alice = login(&app, "alice").await;
    // Another user's id under Alice's MAC.
    let (payload, mac) = alice.rsplit_once('.').unwrap();
    let mut fields: Vec<&str> = payload.split('.').collect();
    fields[1] = "42";
    let forged = format!("{}.{mac}", fields.join("."));
    let answer = call(&app, "GET", "/api/orders", Some(&forged), None).await;
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED);

    // A form post (what another site can send without asking).
    let request = Request::builder()
        .method("POST")
        .uri("/api/goods/1/buy")
        .header(header::COOKIE, &alice)
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(Body::from("x=1"))
        .unwrap();
    let response = app.clone().oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);

    // A name that could break the cookie.
    let bad = call(
        &app,
        "POST",
        "/api/login",
        None,
        Some(json!({ "name": "a.b" })),
    )
    .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn a_body_that_is_not_the_json_asked_for_is_answered_in_json() {
    let app = seckill_web::app(config("127.0.0.1:1", 0.0, 1));
    let post = |body: Vec<u8>| {
        Request::builder()
            .method("POST")
            .uri("/api/login")
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(body))
            .unwrap()
    };
    let too_large = format!(r#"{{"name": "{}"}}"#, "a".repeat(100 * 1024));
    for (body, status, code) in [
        (
            b"{not json".to_vec(),
            StatusCode::BAD_REQUEST,
            "bad_request",
        ),
        (
            br#"{"nome": "alice"}"#.to_vec(),
            StatusCode::BAD_REQUEST,
            "bad_request",
        ),
        (
            too_large.into_bytes(),
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
        ),
    ] {
        let response = app.clone().oneshot(post(body)).await.unwrap();
        assert_eq!(response.status(), status);
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        let answer: Value = serde_json::from_slice(&bytes).expect("a JSON answer");
        assert_eq!(answer["error"], code, "{answer}");
        assert!(answer["message"].as_str().is_some_and(|m| !m.is_empty()));
    }
}

#[tokio::test]
async fn past_its_rate_a_session_gets_429_with_retry_after() {
    let server = Server::start();
    // One call per five seconds after a burst of three: no token comes back
    // during the four calls on a loaded machine.
    let app = seckill_web::app(config(&server.addr, 0.2, 3));
    let alice = login(&app, "alice").await;
    for _ in 0..3 {
        let ok = call(&app, "GET", "/api/orders", Some(&alice), None).await;
        assert_eq!(ok.status, StatusCode::OK);
    }
    let limited = call(&app, "GET", "/api/orders", Some(&alice), None).await;
    assert_eq!(limited.status, StatusCode::TOO_MANY_REQUESTS);
    // Until the next token: at most five seconds, rounded up.
    let wait: u64 = limited.retry_after.as_deref().unwrap().parse().unwrap();
    assert!((1..=5).contains(&wait), "Retry-After {wait}");
    assert_eq!(limited.body["error"], "rate_limited");
    // Another session is not slowed down.
    let bob = login(&app, "bob").await;
    let ok = call(&app, "GET", "/api/orders", Some(&bob), None).await;
    assert_eq!(ok.status, StatusCode::OK);
}

/// A demo login from `peer`, as `serve` hands it to the router.
async fn login_from(app: &Router, name: &str, peer: &str) -> (StatusCode, Option<String>, Value) {
    let mut request = Request::builder()
        .method("POST")
        .uri("/api/login")
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(json!({ "name": name }).to_string()))
        .unwrap();
    let peer: SocketAddr = peer.parse().unwrap();
    request.extensions_mut().insert(ConnectInfo(peer));
    let response = app.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let retry_after = response
        .headers()
        .get(header::RETRY_AFTER)
        .map(|v| v.to_str().unwrap().to_owned());
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        retry_after,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

/// Demo logins are limited per address, whatever the names: past the
/// burst, 429 `rate_limited` with `Retry-After` and no session, so that new
/// names cannot buy past a buyer's rate. Another address has its own.
#[tokio::test]
async fn past_its_demo_logins_an_address_gets_429() {
    let server = Server::start();
    // One login per five seconds after a burst of three: no token comes
    // back during the four logins on a loaded machine.
    let app = seckill_web::app(Config {
        login_limit: (0.2, 3),
        ..config(&server.addr, 0.0, 1)
    });
    for name in ["a1", "a2", "a3"] {
        let (status, _, body) = login_from(&app, name, "192.0.2.7:40000").await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    // Another port of the same host is the same address.
    let (status, retry_after, body) = login_from(&app, "a4", "192.0.2.7:40001").await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
    assert_eq!(body["error"], "rate_limited");
    assert!(body["message"].is_string(), "{body}");
    let wait: u64 = retry_after.as_deref().unwrap().parse().unwrap();
    assert!((1..=5).contains(&wait), "Retry-After {wait}");
    let (status, _, body) = login_from(&app, "b1", "192.0.2.8:40000").await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

/// An empty reading of the goods answers `GET /api/goods/{id}` too, for
/// its moment (`unknown_goods`), rather than send each GET to the servers:
/// a goods added meanwhile shows from the next reading on, no later.
#[tokio::test]
async fn an_empty_reading_answers_every_goods_for_its_moment() {
    let server = Server::start();
    let admin = admin_client(&server.addr).await;
    // Long enough that the steps within the moment fit in it on a loaded
    // machine.
    let fresh_for = Duration::from_secs(10);
    let app = seckill_web::app(Config {
        goods_fresh_for: fresh_for,
        ..config(&server.addr, 0.0, 1)
    });
    let none = call(&app, "GET", "/api/goods", None, None).await;
    assert_eq!(none.body["goods"], json!([]), "{}", none.body);
    let lamp = admin.add_goods(goods("Lamp", 5, 0)).await.unwrap();
    let one = format!("/api/goods/{}", lamp.id);
    // A flood of GETs for it within the moment: every one answered from
    // the empty reading, none asked of the servers (which would know it).
    let mut flood = tokio::task::JoinSet::new();
    for _ in 0..20 {
        let (app, one) = (app.clone(), one.clone());
        flood.spawn(async move {
            let request = Request::get(one).body(Body::empty()).unwrap();
            let response = app.oneshot(request).await.unwrap();
            let status = response.status();
            let bytes = response.into_body().collect().await.unwrap().to_bytes();
            (status, serde_json::from_slice::<Value>(&bytes).unwrap())
        });
    }
    while let Some(answer) = flood.join_next().await {
        let (status, body) = answer.unwrap();
        assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
        assert_eq!(body["error"], "unknown_goods");
    }
    tokio::time::sleep(fresh_for).await;
    let shown = call(&app, "GET", &one, None, None).await;
    assert_eq!(shown.status, StatusCode::OK, "{}", shown.body);
    assert_eq!(shown.body["goods"]["name"], "Lamp");
}

/// The storefront's reads of the goods share one reading of the servers
/// for `goods_fresh_for`: a goods added meanwhile shows from the next
/// reading on, in the list and on its own; one no reading has is
/// `unknown_goods`.
#[tokio::test]
async fn the_goods_are_read_from_the_servers_once_a_moment() {
    let server = Server::start();
    let admin = admin_client(&server.addr).await;
    admin.add_goods(goods("Phone", 1, 0)).await.unwrap();
    // Long enough that the steps within the moment fit in it on a loaded
    // machine.
    let fresh_for = Duration::from_secs(10);
    let app = seckill_web::app(Config {
        goods_fresh_for: fresh_for,
        ..config(&server.addr, 0.0, 1)
    });
    let listed = |app| async move {
        let answer = call(app, "GET", "/api/goods", None, None).await;
        assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
        answer.body["goods"].as_array().unwrap().len()
    };
    assert_eq!(listed(&app).await, 1);
    let lamp = admin.add_goods(goods("Lamp", 5, 0)).await.unwrap();
    let one = format!("/api/goods/{}", lamp.id);
    assert_eq!(listed(&app).await, 1, "read again within the moment");
    let unknown = call(&app, "GET", &one, None, None).await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
    assert_eq!(unknown.body["error"], "unknown_goods");
    tokio::time::sleep(fresh_for).await;
    assert_eq!(listed(&app).await, 2);
    let one = call(&app, "GET", &one, None, None).await;
    assert_eq!(one.status, StatusCode::OK, "{}", one.body);
    assert_eq!(one.body["goods"]["name"], "Lamp");
}

#[tokio::test]
async fn an_unreachable_server_is_503_with_retry_after() {
    // Nothing listens there.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    drop(listener);
    let app = seckill_web::app(config(&addr, 0.0, 1));
    let answer = call(&app, "GET", "/api/goods", None, None).await;
    assert_eq!(answer.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(answer.retry_after.as_deref(), Some("1"));
    assert_eq!(answer.body["error"], "unavailable");

    // A BUY names its request id, to retry without buying twice.
    let alice = login(&app, "alice").await;
    let buy = call(
        &app,
        "POST",
        "/api/goods/1/buy",
        Some(&alice),
        Some(json!({})),
    )
    .await;
    assert_eq!(buy.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(buy.body["request_id"].as_str().map(str::len), Some(32));
}

/// The console's wrong admin logins: ten, from everyone together (here all
/// at once), then every login is refused without a look at its token, the
/// right one too (429, with when to come back), until the allowance refills.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_admin_logins_past_ten_shut_the_console_for_a_while() {
    let server = Server::start();
    let app = seckill_web::app(config(&server.addr, 0.0, 1));
    // Right logins use up none of the ten.
    for _ in 0..15 {
        let token = json!({ "token": common::TOKEN });
        let right = call(&app, "POST", "/api/admin/login", None, Some(token)).await;
        assert_eq!(right.status, StatusCode::OK, "{}", right.body);
    }
    // Thirty guesses at once, on every runtime thread: ten are looked at.
    let mut guesses = tokio::task::JoinSet::new();
    for guess in 0..30 {
        let app = app.clone();
        guesses.spawn(async move {
            let token = json!({ "token": format!("guess {guess}") });
            let request = Request::builder()
                .method("POST")
                .uri("/api/admin/login")
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from(token.to_string()))
                .unwrap();
            app.oneshot(request).await.unwrap().status()
        });
    }
    let mut statuses = Vec::new();
    while let Some(status) = guesses.join_next().await {
        statuses.push(status.unwrap());
    }
    let wrong = statuses
        .iter()
        .filter(|&&s| s == StatusCode::UNAUTHORIZED)
        .count();
    let refused = statuses
        .iter()
        .filter(|&&s| s == StatusCode::TOO_MANY_REQUESTS)
        .count();
    assert_eq!((wrong, refused), (10, 20), "{statuses:?}");
    let token = json!({ "token": common::TOKEN });
    let right = call(&app, "POST", "/api/admin/login", None, Some(token)).await;
    assert_eq!(
        right.status,
        StatusCode::TOO_MANY_REQUESTS,
        "{}",
        right.body
    );
    assert!(right.cookie.is_none());
    assert!(right.retry_after.is_some());
}

/// A UUID whose top bit is set (half of random ones) names a purchase as
/// well, without that bit; and the API's answers are kept by no cache.
#[tokio::test]
async fn any_uuid_is_a_request_id_and_answers_are_not_stored() {
    let server = Server::start();
    let app = seckill_web::app(config(&server.addr, 0.0, 1));
    let alice = login(&app, "alice").await;
    let id = admin_client(&server.addr)
        .await
        .add_goods(goods("Mug", 5, 0))
        .await
        .unwrap()
        .id;
    let uuid = "f47ac10b-58cc-4372-a567-0e02b2c3d479";
    let path = format!("/api/goods/{id}/buy");
    let body = json!({ "request_id": uuid });
    let mut answers = Vec::new();
    for _ in 0..2 {
        let answer = call(&app, "POST", &path, Some(&alice), Some(body.clone())).await;
        assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
        // The purchase's own id: the UUID without its top bit.
        assert_eq!(
            answer.body["request_id"],
            "747ac10b58cc4372a5670e02b2c3d479"
        );
        answers.push(answer);
    }
    assert_eq!(answers[1].body["order_no"], answers[0].body["order_no"]);
    let request = Request::builder()
        .uri("/api/goods")
        .body(Body::empty())
        .unwrap();
    let response = app.clone().oneshot(request).await.unwrap();
    assert_eq!(
        response
            .headers()
            .get(header::CACHE_CONTROL)
            .map(|v| v.to_str().unwrap()),
        Some("no-store")
    );
}

/// An add whose answer was lost is sent again under its request id (with
/// `retry`), and finds the goods the first made instead of adding a second.
#[tokio::test]
async fn an_add_sent_again_under_its_request_id_makes_one_goods() {
    let server = Server::start();
    let app = seckill_web::app(config(&server.addr, 0.0, 1));
    let token = json!({ "token": common::TOKEN });
    let admin = call(&app, "POST", "/api/admin/login", None, Some(token)).await;
    let admin = admin.cookie.expect("an admin cookie");
    let id = "0123456789abcdef0123456789abcdef";
    let add = |retry: bool| {
        json!({ "name": "Kettle", "price_cents": 900, "stock": 3,
                "request_id": id, "retry": retry })
    };
    let mut answers = Vec::new();
    for retry in [false, true] {
        let answer = call(
            &app,
            "POST",
            "/api/admin/goods",
            Some(&admin),
            Some(add(retry)),
        )
        .await;
        assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
        answers.push(answer);
    }
    let (first, again) = (&answers[0], &answers[1]);
    assert_eq!(again.body["goods"]["id"], first.body["goods"]["id"]);
    let listed = call(&app, "GET", "/api/goods", None, None).await;
    let kettles = listed.body["goods"]
        .as_array()
        .expect("a list")
        .iter()
        .filter(|g| g["name"] == "Kettle")
        .count();
    assert_eq!(kettles, 1, "{}", listed.body);
}

#[tokio::test]
async fn the_admin_logs_in_adds_pauses_and_reconciles() {
    let server = Server::start();
    let app = seckill_web::app(config(&server.addr, 0.0, 1));
    let add = json!({ "name": "Lamp", "price_cents": 500, "stock": 7 });

    let refused = call(&app, "POST", "/api/admin/goods", None, Some(add.clone())).await;
    assert_eq!(refused.status, StatusCode::UNAUTHORIZED);
    let wrong = call(
        &app,
        "POST",
        "/api/admin/login",
        None,
        Some(json!({ "token": "no" })),
    )
    .await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    assert!(wrong.cookie.is_none());
    // A buyer's session is no admin session.
    let alice = login(&app, "alice").await;
    let as_buyer = call(&app, "GET", "/api/admin/stats", Some(&alice), None).await;
    assert_eq!(as_buyer.status, StatusCode::UNAUTHORIZED);

    let token = json!({ "token": common::TOKEN });
    let admin = call(&app, "POST", "/api/admin/login", None, Some(token)).await;
    let admin = admin.cookie.expect("an admin cookie");
    let added = call(&app, "POST", "/api/admin/goods", Some(&admin), Some(add)).await;
    assert_eq!(added.status, StatusCode::OK, "{}", added.body);
    assert_eq!(added.body["goods"]["total"], 7);
    let id = added.body["goods"]["id"].as_str().unwrap().to_owned();

    let path = format!("/api/admin/goods/{id}/pause");
    let paused = call(&app, "POST", &path, Some(&admin), Some(json!({}))).await;
    assert_eq!(paused.body["goods"]["state"], "paused");
    let buy = call(
        &app,
        "POST",
        &format!("/api/goods/{id}/buy"),
        Some(&alice),
        Some(json!({})),
    )
    .await;
    assert_eq!(buy.body["outcome"], "paused");

    let path = format!("/api/admin/goods/{id}/restock");
    let restocked = call(
        &app,
        "POST",
        &path,
        Some(&admin),
        Some(json!({ "amount": 3 })),
    )
    .await;
    assert_eq!(restocked.body["goods"]["total"], 10);

    let drifts = call(
        &app,
        "POST",
        "/api/admin/reconcile",
        Some(&admin),
        Some(json!({})),
    )
    .await;
    assert_eq!(drifts.body["drifts"][0]["drift"], 0, "{}", drifts.body);
    let stats = call(&app, "GET", "/api/admin/stats", Some(&admin), None).await;
    assert_eq!(stats.body["buys"], 1, "{}", stats.body);
}

/// The admin's session cookie, logged in with the admin token.
async fn admin_login(app: &Router) -> String {
    let token = json!({ "token": common::TOKEN });
    let answer = call(app, "POST", "/api/admin/login", None, Some(token)).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    answer.cookie.expect("an admin cookie")
}

/// The status of an admin call made with `cookie`.
async fn admin_stats(app: &Router, cookie: &str) -> StatusCode {
    call(app, "GET", "/api/admin/stats", Some(cookie), None)
        .await
        .status
}

/// Logout ends the session on the gateway: the cookie it was (kept, or
/// copied before) is refused from then on, not only dropped by the browser.
#[tokio::test]
async fn after_an_admin_logout_the_same_cookie_is_refused() {
    let server = Server::start();
    let app = seckill_web::app(config(&server.addr, 0.0, 1));
    let (kept, other) = (admin_login(&app).await, admin_login(&app).await);
    assert_eq!(admin_stats(&app, &kept).await, StatusCode::OK);

    let out = call(
        &app,
        "POST",
        "/api/admin/logout",
        Some(&kept),
        Some(json!({})),
    )
    .await;
    assert_eq!(out.status, StatusCode::OK);
    assert_eq!(out.cookie.as_deref(), Some("seckill_admin="));
    let refused = call(&app, "GET", "/api/admin/stats", Some(&kept), None).await;
    assert_eq!(refused.status, StatusCode::UNAUTHORIZED);
    assert_eq!(refused.body["error"], "not_admin");
    let page = app
        .clone()
        .oneshot(
            Request::builder()
                .uri("/admin")
                .header(header::COOKIE, &kept)
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    let page = page.into_body().collect().await.unwrap().to_bytes();
    let page = String::from_utf8_lossy(&page);
    assert!(page.contains(r#"data-admin="false""#), "the login form");
    // The admin's other session is its own.
    assert_eq!(admin_stats(&app, &other).await, StatusCode::OK);
}

/// An admin cookie that verifies but whose id this gateway did not issue,
/// as after a restart or on another gateway with the same session secret,
/// is no session; nor is one signed for an id made up.
#[tokio::test]
async fn an_admin_cookie_of_an_id_not_issued_here_is_refused() {
    let server = Server::start();
    let secret = "one session secret for both gateways, 32+ bytes";
    let gateway = |server: &Server| {
        let mut config = config(&server.addr, 0.0, 1);
        config.key = SessionKey::from_secret(secret);
        seckill_web::app(config)
    };
    let (first, second) = (gateway(&server), gateway(&server));
    let cookie = admin_login(&first).await;
    assert_eq!(admin_stats(&first, &cookie).await, StatusCode::OK);
    assert_eq!(
        admin_stats(&second, &cookie).await,
        StatusCode::UNAUTHORIZED
    );
    // Buyers' sessions still hold on both.
    let alice = login(&first, "alice").await;
    let me = call(&second, "GET", "/api/me", Some(&alice), None).await;
    assert_eq!(me.body["name"], "alice", "{}", me.body);

    let expires = common::now_ms() / 1000 + 3600;
    let made_up = SessionKey::from_secret(secret)
        .for_admin(common::TOKEN)
        .sign(&format!("a.{}.{expires}", "ab".repeat(16)));
    let forged = format!("seckill_admin={made_up}");
    assert_eq!(admin_stats(&first, &forged).await, StatusCode::UNAUTHORIZED);
}

/// At most 64 admin sessions at once: the 65th login ends the first.
#[tokio::test]
async fn past_64_admin_sessions_a_login_ends_the_oldest() {
    let server = Server::start();
    let app = seckill_web::app(config(&server.addr, 0.0, 1));
    let mut cookies = Vec::new();
    for _ in 0..=seckill_web::admin_sessions::MAX_ADMIN_SESSIONS {
        cookies.push(admin_login(&app).await);
    }
    assert_eq!(
        admin_stats(&app, &cookies[0]).await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(admin_stats(&app, &cookies[1]).await, StatusCode::OK);
    assert_eq!(admin_stats(&app, &cookies[64]).await, StatusCode::OK);
}

#[tokio::test]
async fn behind_a_trusted_proxy_the_user_comes_from_its_header_only() {
    let server = Server::start();
    let lamp = admin_client(&server.addr)
        .await
        .add_goods(goods("Lamp", 5, 0))
        .await
        .unwrap();
    let mut config = config(&server.addr, 0.0, 1);
    config.identity = Identity::TrustedHeader(HeaderName::from_static("x-user-id"));
    let app = seckill_web::app(config);

    // No demo login, and a cookie is nobody.
    let login = call(
        &app,
        "POST",
        "/api/login",
        None,
        Some(json!({ "name": "eve" })),
    )
    .await;
    assert_eq!(login.status, StatusCode::NOT_FOUND);
    let orders = call(&app, "GET", "/api/orders", Some("seckill_session=x"), None).await;
    assert_eq!(orders.status, StatusCode::UNAUTHORIZED);

    let request = Request::builder()
        .method("POST")
        .uri(format!("/api/goods/{}/buy", lamp.id))
        .header("x-user-id", "4242")
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from("{}"))
        .unwrap();
    let response = app.clone().oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let order = admin_client(&server.addr)
        .await
        .order_status(4242, lamp.id)
        .await
        .unwrap();
    assert!(order.is_some(), "the order is user 4242's");
}

#[tokio::test]
async fn the_servers_own_rate_limit_is_429_with_retry_after() {
    // One BUY per user per second at the server (a burst of 2); no limit
    // at the gateway.
    let server = Server::start_with(&["--buy-rate", "1", "--buy-burst", "2"]);
    let lamp = admin_client(&server.addr)
        .await
        .add_goods(goods("Lamp", 100, 0))
        .await
        .unwrap();
    let app = seckill_web::app(config(&server.addr, 0.0, 1));
    let alice = login(&app, "alice").await;
    let buy = format!("/api/goods/{}/buy", lamp.id);
    let mut statuses = Vec::new();
    for _ in 0..5 {
        let answer = call(&app, "POST", &buy, Some(&alice), Some(json!({}))).await;
        if answer.status == StatusCode::TOO_MANY_REQUESTS {
            assert_eq!(answer.retry_after.as_deref(), Some("1"));
            assert_eq!(answer.body["error"], "rate_limited");
        }
        statuses.push(answer.status);
    }
    assert!(
        statuses.contains(&StatusCode::TOO_MANY_REQUESTS),
        "{statuses:?}"
    );
}

/// A retry of a BUY whose answer the page never got, on goods of a limit of
/// two with its last unit just sold to that very BUY: sent as a retry (the
/// repeat mark), it gets the first send's order, where a plain resend would
/// meet the server's sold-out flag and be told "sold out".
#[tokio::test]
async fn a_retry_gets_the_first_answer_not_a_cached_one() {
    let server = Server::start();
    let mut two_each = goods("Lamp", 1, 0);
    two_each.rules.per_user_limit = 2;
    let lamp = admin_client(&server.addr)
        .await
        .add_goods(two_each)
        .await
        .unwrap();
    let app = seckill_web::app(config(&server.addr, 0.0, 1));
    let buy = format!("/api/goods/{}/buy", lamp.id);
    let alice = login(&app, "alice").await;
    let first = call(&app, "POST", &buy, Some(&alice), Some(json!({}))).await;
    assert_eq!(first.body["outcome"], "ordered", "{}", first.body);
    let id = first.body["request_id"].clone();
    let plain = json!({ "request_id": id });
    let resent = call(&app, "POST", &buy, Some(&alice), Some(plain)).await;
    assert_eq!(resent.body["outcome"], "sold_out", "{}", resent.body);
    let retry = json!({ "request_id": id, "retry": true });
    let again = call(&app, "POST", &buy, Some(&alice), Some(retry)).await;
    assert_eq!(again.body["outcome"], "ordered", "{}", again.body);
    assert_eq!(again.body["order_no"], first.body["order_no"]);
    assert_eq!(again.body["request_id"], id, "the purchase's own id");
    let nameless = json!({ "retry": true });
    let refused = call(&app, "POST", &buy, Some(&alice), Some(nameless)).await;
    assert_eq!(refused.status, StatusCode::BAD_REQUEST);
}
