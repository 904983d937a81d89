//! The storefront and the admin console in a real browser: headless
//! Chromium driven over WebDriver (chromedriver on a loopback port this
//! test starts and stops), the gateway in process, the real seckill
//! server behind it.
//!
//! Needs Debian's `chromium` and `chromium-driver` (`scripts/browser.sh`
//! installs them; `./test.sh` runs it). Without them the test fails and
//! says so, unless `SECKILL_SKIP_BROWSER=1`. With
//! `SECKILL_WEB_SCREENSHOTS=<dir>` it saves screenshots of both pages there
//! (`web/screenshots/` holds the README's).

mod common;

use std::net::TcpStream;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client as Browser, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::json;

use common::{admin_client, config, goods, Server, TOKEN};

/// chromedriver, killed when dropped.
struct Driver {
    child: Child,
    url: String,
}

impl Driver {
    fn start() -> Option<Driver> {
        let binary = ["chromedriver", "/usr/bin/chromedriver"]
            .into_iter()
            .find(|b| Command::new(b).arg("--version").output().is_ok())?;
        let port = free_port();
        let child = Command::new(binary)
            // A group of its own, with the browsers it starts: all of them
            // are killed together, even after a failed test left a session.
            .process_group(0)
            .arg(format!("--port={port}"))
            .arg("--allowed-ips=127.0.0.1")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .ok()?;
        let driver = Driver {
            child,
            url: format!("http://127.0.0.1:{port}"),
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "chromedriver did not listen");
            std::thread::sleep(Duration::from_millis(50));
        }
        Some(driver)
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let group = format!("-{}", self.child.id());
        let _ = Command::new("kill").args(["-KILL", "--", &group]).status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

async fn open_browser(driver: &Driver) -> Browser {
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        json!({
            "args": [
                "--headless=new",
                // As root (CI) Chromium refuses to start sandboxed.
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--window-size=1100,1400",
            ],
        }),
    );
    ClientBuilder::new(HttpConnector::new())
        .capabilities(caps)
        .connect(&driver.url)
        .await
        .expect("a WebDriver session")
}

/// Waits up to 15 s for `check` to give a value.
async fn until<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The text of the first element `css` matches, if any.
async fn text(browser: &Browser, css: &str) -> Option<String> {
    let element = browser.find(Locator::Css(css)).await.ok()?;
    element.text().await.ok()
}

/// Clicks the element, once it is there and can be clicked: the pages
/// show parts of themselves only once their script has run, and redraw
/// others every second, so an element may be hidden or replaced between
/// finding it and clicking it.
async fn click(browser: &Browser, css: &str) {
    until(css, || async {
        let element = browser.find(Locator::Css(css)).await.ok()?;
        element.click().await.ok()
    })
    .await;
}

/// Types `value` into the input, once it can take it (see [`click`]).
async fn type_into(browser: &Browser, css: &str, value: &str) {
    until(css, || async {
        let element = browser.find(Locator::Css(css)).await.ok()?;
        element.clear().await.ok()?;
        element.send_keys(value).await.ok()
    })
    .await;
}

async fn log_in(browser: &Browser, base: &str, name: &str) {
    browser.delete_all_cookies().await.expect("cookies");
    browser.goto(base).await.expect("storefront");
    type_into(browser, "#login-name", name).await;
    click(browser, "#login-button").await;
    until("the login", || async {
        text(browser, "#whoami").await.filter(|t| t == name)
    })
    .await;
}

async fn screenshot(browser: &Browser, name: &str) {
    let Some(dir) = std::env::var_os("SECKILL_WEB_SCREENSHOTS") else {
        return;
    };
    let png = browser.screenshot().await.expect("screenshot");
    let path = PathBuf::from(dir).join(name);
    std::fs::write(&path, png).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn buyers_and_an_admin_in_a_real_browser() {
    let Some(driver) = Driver::start() else {
        if std::env::var_os("SECKILL_SKIP_BROWSER").is_some() {
            eprintln!("no chromedriver: skipped (SECKILL_SKIP_BROWSER)");
            return;
        }
        panic!("no chromedriver: run scripts/browser.sh (or set SECKILL_SKIP_BROWSER=1)");
    };
    let server = Server::start();
    let admin = admin_client(&server.addr).await;
    // The browser first: its start can take seconds (the first on a fresh
    // machine most), which must not eat the countdown below.
    let browser = open_browser(&driver).await;
    // One unit, on sale in 6 s: the page counts down, then sells it.
    let phone = admin.add_goods(goods("Phone X", 1, 6000)).await.unwrap();
    let spare = admin.add_goods(goods("Charger", 50, 0)).await.unwrap();

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let app = seckill_web::app(config(&server.addr, 20.0, 40));
    // Served as seckill-web serves it, with its limits.
    let limits = seckill_web::serve::Limits::default();
    tokio::spawn(seckill_web::serve::serve(
        listener,
        app,
        limits,
        std::future::pending(),
    ));

    let card = format!(".goods[data-id='{}']", phone.id);

    // Alice waits for the start, buys, sees her order and pays it.
    log_in(&browser, &base, "alice").await;
    let countdown = until("the countdown", || async {
        text(&browser, &format!("{card} .state")).await
    })
    .await;
    assert!(
        countdown.starts_with("starts in") || countdown.starts_with("starting"),
        "{countdown}"
    );
    let buy = format!("{card} .buy");
    until("the sale to open", || async {
        let button = browser.find(Locator::Css(&buy)).await.ok()?;
        button.is_enabled().await.ok()?.then_some(())
    })
    .await;
    click(&browser, &buy).await;
    let outcome = until("the outcome", || async {
        text(&browser, &format!("{card} .outcome"))
            .await
            .filter(|t| !t.is_empty())
    })
    .await;
    assert!(outcome.starts_with("Ordered!"), "{outcome}");
    until("the order", || async {
        text(&browser, ".order .order-state")
            .await
            .filter(|t| t == "awaiting payment")
    })
    .await;
    click(&browser, ".order .pay").await;
    until("the payment", || async {
        text(&browser, ".order .order-state")
            .await
            .filter(|t| t == "paid")
    })
    .await;
    let spare_buy = format!(".goods[data-id='{}'] .buy", spare.id);
    click(&browser, &spare_buy).await;
    until("a second order", || async {
        let rows = browser.find_all(Locator::Css(".order")).await.ok()?;
        (rows.len() == 2).then_some(())
    })
    .await;
    browser.set_window_size(1100, 640).await.unwrap();
    screenshot(&browser, "storefront.png").await;
    browser.set_window_size(1100, 1300).await.unwrap();

    // Bob sees it sold out, and cannot buy.
    log_in(&browser, &base, "bob").await;
    until("sold out", || async {
        text(&browser, &format!("{card} .state"))
            .await
            .filter(|t| t == "sold out")
    })
    .await;
    let button = browser.find(Locator::Css(&buy)).await.unwrap();
    assert!(!button.is_enabled().await.unwrap());

    // The admin logs in, adds a goods and pauses it.
    browser.goto(&format!("{base}/admin")).await.unwrap();
    type_into(&browser, "#admin-token", TOKEN).await;
    click(&browser, "#admin-login").await;
    type_into(&browser, "#add-name", "Desk Lamp").await;
    type_into(&browser, "#add-stock", "25").await;
    click(&browser, "#add-submit").await;
    let added = until("the goods added", || async {
        text(&browser, "#add-result")
            .await
            .filter(|t| t.starts_with("Added goods"))
    })
    .await;
    let lamp_id: u64 = added
        .split_whitespace()
        .nth(2)
        .and_then(|id| id.parse().ok())
        .unwrap_or_else(|| panic!("no id in {added:?}"));
    let row = format!("#admin-goods tr[data-id='{lamp_id}']");
    click(&browser, &format!("{row} .pause")).await;
    until("the pause", || async {
        text(&browser, &format!("{row} .state"))
            .await
            .filter(|t| t == "paused")
    })
    .await;
    // A restock amount typed, then left over a few of the table's
    // once-a-second redraws before the click: the amount typed is sent.
    type_into(&browser, &format!("{row} .restock-amount"), "7").await;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    click(&browser, &format!("{row} .restock")).await;
    until("the restock of 7", || async {
        text(&browser, &format!("{row} .stock"))
            .await
            .filter(|t| t == "32 / 32")
    })
    .await;
    // An add whose reply is lost (the page's fetch made to fail once the
    // gateway has answered): the page says the outcome is unknown, and the
    // same form submitted again retries it under its request id: one goods.
    // And a restock in flight (held back until the test lets it go) keeps
    // its button off through the table's redraws: a second click sends
    // nothing.
    browser
        .execute(
            r#"
            const realFetch = window.fetch;
            let lostAdds = 1;
            window.heldRestocks = [];
            window.slowStats = false;
            window.fetch = async (url, options) => {
              if (url === "/api/admin/stats" && window.slowStats) {
                await new Promise((done) => setTimeout(done, 1500));
              }
              const reply = realFetch(url, options);
              if (options && options.method === "POST") {
                if (url === "/api/admin/goods" && lostAdds > 0) {
                  lostAdds -= 1;
                  await reply;
                  throw new TypeError("connection lost (test)");
                }
                if (url.endsWith("/restock") && window.heldRestocks) {
                  await new Promise((done) => window.heldRestocks.push(done));
                }
              }
              return reply;
            };
            "#,
            vec![],
        )
        .await
        .unwrap();
    type_into(&browser, "#add-name", "Desk Fan").await;
    type_into(&browser, "#add-stock", "3").await;
    click(&browser, "#add-submit").await;
    until("the add's unknown outcome", || async {
        text(&browser, "#add-result")
            .await
            .filter(|t| t.starts_with("Not known whether it was added"))
    })
    .await;
    click(&browser, "#add-submit").await;
    let added = until("the add retried", || async {
        text(&browser, "#add-result")
            .await
            .filter(|t| t.starts_with("Added goods"))
    })
    .await;
    let fans: Vec<u64> = admin
        .list_goods()
        .await
        .unwrap()
        .iter()
        .filter(|g| g.name == "Desk Fan")
        .map(|g| g.id)
        .collect();
    assert_eq!(fans.len(), 1, "one goods for the add and its retry");
    assert!(
        added.starts_with(&format!("Added goods {} ", fans[0])),
        "{added}"
    );
    type_into(&browser, &format!("{row} .restock-amount"), "1").await;
    let restock = format!("{row} .restock");
    // The table's answer slow to come (a loaded gateway): the button is off
    // from the click, not from the redraw after it.
    browser
        .execute("window.slowStats = true;", vec![])
        .await
        .unwrap();
    click(&browser, &restock).await;
    for _ in 0..3 {
        let button = browser.find(Locator::Css(&restock)).await.unwrap();
        assert!(!button.is_enabled().await.unwrap(), "a restock in flight");
        let _ = button.click().await;
        tokio::time::sleep(Duration::from_millis(400)).await;
    }
    // Let go: exactly one restock was sent, and any later one goes at once.
    let held = browser
        .execute(
            "window.slowStats = false; \
             const held = window.heldRestocks; window.heldRestocks = null; \
             held.forEach((done) => done()); return held.length;",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(
        held.as_u64(),
        Some(1),
        "restocks sent while one was in flight"
    );
    until("the restock of 1", || async {
        text(&browser, &format!("{row} .stock"))
            .await
            .filter(|t| t == "33 / 33")
    })
    .await;
    tokio::time::sleep(Duration::from_millis(2000)).await;
    assert_eq!(
        text(&browser, &format!("{row} .stock")).await.as_deref(),
        Some("33 / 33"),
        "restocked once"
    );
    click(&browser, "#reconcile").await;
    until("the drifts", || async {
        text(&browser, "#drifts .drift").await
    })
    .await;
    // A few seconds of the live chart, with buyers on the binary protocol.
    let crowd = tokio::spawn(async move {
        for user_id in 1000..1040 {
            let _ = admin.buy(user_id, spare.id).await;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    crowd.await.unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    browser
        .execute("window.scrollTo(0, 0)", vec![])
        .await
        .unwrap();
    screenshot(&browser, "admin.png").await;

    // The storefront shows it paused.
    browser.goto(&base).await.unwrap();
    until("the lamp paused on the storefront", || async {
        text(&browser, &format!(".goods[data-id='{lamp_id}'] .state"))
            .await
            .filter(|t| t == "paused")
    })
    .await;

    browser.close().await.unwrap();
}
