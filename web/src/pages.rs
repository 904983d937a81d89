//! The two pages and their assets, compiled into the binary: HTML rendered
//! here with who is asking, and small scripts that fill it from the JSON
//! API and poll it for live stock. No front-end build step.

use axum::extract::{Path, State as AxumState};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Response};

use crate::session::{self, Identity};
use crate::State;

const STORE_HTML: &str = include_str!("../static/store.html");
const ADMIN_HTML: &str = include_str!("../static/admin.html");

/// The assets under `/static/`: name, content type, content.
const ASSETS: &[(&str, &str, &str)] = &[
    (
        "app.css",
        "text/css; charset=utf-8",
        include_str!("../static/app.css"),
    ),
    (
        "common.js",
        "text/javascript; charset=utf-8",
        include_str!("../static/common.js"),
    ),
    (
        "store.js",
        "text/javascript; charset=utf-8",
        include_str!("../static/store.js"),
    ),
    (
        "admin.js",
        "text/javascript; charset=utf-8",
        include_str!("../static/admin.js"),
    ),
];

/// `GET /`: the storefront, for the buyer of this session if any.
pub async fn storefront(AxumState(state): AxumState<State>, headers: HeaderMap) -> Html<String> {
    let buyer = session::buyer(&state.config.identity, &state.config.key, &headers);
    let login = match state.config.identity {
        Identity::DemoLogin => "demo",
        Identity::TrustedHeader(_) => "proxy",
    };
    let (user, name) = match &buyer {
        Some(b) => (b.user_id.to_string(), b.name.clone()),
        None => (String::new(), String::new()),
    };
    Html(
        STORE_HTML
            .replace("{{LOGIN}}", login)
            .replace("{{USER_ID}}", &escape(&user))
            .replace("{{NAME}}", &escape(&name)),
    )
}

/// `GET /admin`: the console, or its login form.
pub async fn admin(AxumState(state): AxumState<State>, headers: HeaderMap) -> Html<String> {
    let enabled = state.config.admin.is_some();
    let admin = state.config.admin.as_ref().is_some_and(|a| {
        let key = state.config.key.for_admin(&a.token);
        state.admin_sessions.is_admin(&key, &headers)
    });
    Html(
        ADMIN_HTML
            .replace("{{ENABLED}}", if enabled { "true" } else { "false" })
            .replace("{{ADMIN}}", if admin { "true" } else { "false" }),
    )
}

/// `GET /static/{file}`.
pub async fn asset(Path(file): Path<String>) -> Response {
    match ASSETS.iter().find(|(name, _, _)| *name == file) {
        Some((_, content_type, body)) => (
            [
                (header::CONTENT_TYPE, *content_type),
                (header::CACHE_CONTROL, "no-cache"),
            ],
            *body,
        )
            .into_response(),
        None => (StatusCode::NOT_FOUND, "no such file").into_response(),
    }
}

/// Text safe inside an HTML attribute or element.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escape_leaves_no_markup() {
        assert_eq!(
            escape("<a href=\"x\">&'"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
    }
}
