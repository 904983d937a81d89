//! What the web gateway's tests share: the real seckill server, and a
//! gateway configured in front of it.

#![allow(dead_code)] // each test binary uses part of it

/// The seckill server binary, started as the client crate's tests start it.
#[path = "../../../clients/tests/common/server.rs"]
pub mod server;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use seckill_client::aio::Client;
use seckill_client::{NewGoods, SaleRules};
use seckill_web::session::{Identity, SessionKey};
use seckill_web::{AdminConfig, Config};

#[allow(unused_imports)] // as above
pub use server::{Server, TOKEN};

/// A gateway's configuration for `addr`, with the admin console on and a
/// rate limit of `rate` per second (burst `burst`), and the default limit
/// of demo logins.
pub fn config(addr: &str, rate: f64, burst: u32) -> Config {
    let client = Client::builder(addr)
        .request_timeout(Duration::from_secs(3))
        .build()
        .expect("client");
    let admin = Client::builder(addr)
        .token(TOKEN)
        .request_timeout(Duration::from_secs(3))
        .build()
        .expect("admin client");
    Config {
        client,
        admin: Some(AdminConfig {
            token: TOKEN.into(),
            client: admin,
        }),
        identity: Identity::DemoLogin,
        key: SessionKey::random().expect("key"),
        rate_limit: (rate, burst),
        login_limit: (
            seckill_web::DEMO_LOGINS_PER_S,
            seckill_web::DEMO_LOGINS_BURST,
        ),
        secure_cookies: false,
        goods_fresh_for: std::time::Duration::ZERO,
    }
}

/// Now, Unix ms.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_millis() as u64
}

/// A goods of `stock` units whose sale opens in `start_in_ms`.
pub fn goods(name: &str, stock: u32, start_in_ms: u64) -> NewGoods {
    let start_ms = now_ms() + start_in_ms;
    NewGoods {
        name: name.into(),
        price_cents: 4999,
        stock,
        start_ms,
        end_ms: start_ms + 3_600_000,
        rules: SaleRules::default(),
        buckets: 1,
    }
}

/// The admin's own client of `addr`, for setting a sale up.
pub async fn admin_client(addr: &str) -> Client {
    Client::builder(addr)
        .token(TOKEN)
        .connect()
        .await
        .expect("admin client")
}
