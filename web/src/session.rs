//! Who is asking: the buyer's identity and the admin's session.
//!
//! The buyer's user id never comes from a request's body or query: a web
//! user must not be able to act for another. It comes from one of:
//!
//! - **a signed session cookie** (`seckill_session`), which the demo login
//!   (`POST /api/login`) issues. Its value is `b.<user id>.<expiry>.<name>`
//!   and an HMAC-SHA256 of that under the gateway's session key; a cookie
//!   whose MAC does not verify, or that has expired, is no session.
//! - **a trusted header** (`--user-header X-User-Id`): an application with
//!   its own login puts seckill-web behind its proxy, which authenticates
//!   the user and sets the header to their numeric user id. The proxy must
//!   remove the header from every client request, or anyone could set it;
//!   in this mode cookies are ignored and the demo login is off.
//!
//! The admin session (`seckill_admin`) is a cookie of the same make,
//! `a.<id>.<expiry>`, issued for the admin token and ended by logout
//! ([`crate::admin_sessions`]); the token itself is never put in a cookie
//! or logged.

use std::time::{SystemTime, UNIX_EPOCH};

use axum::http::{header, HeaderMap, HeaderName};
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

use crate::error::ApiError;

type HmacSha256 = Hmac<Sha256>;

/// The buyer's session cookie.
pub const SESSION_COOKIE: &str = "seckill_session";
/// The admin's session cookie.
pub const ADMIN_COOKIE: &str = "seckill_admin";
/// How long a buyer's session lasts.
pub const SESSION_SECONDS: u64 = 24 * 3600;
/// How long an admin session lasts.
pub const ADMIN_SECONDS: u64 = 8 * 3600;
/// The longest demo login name.
pub const MAX_NAME_LEN: usize = 32;

/// The key session cookies are signed with. Its `Debug` hides it.
#[derive(Clone)]
pub struct SessionKey([u8; 32]);

impl std::fmt::Debug for SessionKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SessionKey(<redacted>)")
    }
}

impl SessionKey {
    /// A key from the operating system's random source: sessions last as
    /// long as the process.
    pub fn random() -> std::io::Result<SessionKey> {
        let mut key = [0u8; 32];
        getrandom::fill(&mut key).map_err(|e| std::io::Error::other(e.to_string()))?;
        Ok(SessionKey(key))
    }

    /// A key derived from a secret, so that several gateways (or a
    /// restarted one) accept each other's sessions. The caller makes sure
    /// it is long enough to resist guessing ([`MIN_SECRET_LEN`]).
    pub fn from_secret(secret: &str) -> SessionKey {
        SessionKey(Sha256::digest(secret.as_bytes()).into())
    }

    /// The key of admin sessions: this key and the admin token together, so
    /// that a leaked or guessed session secret alone forges no admin
    /// cookie, and a new admin token ends every admin session.
    pub fn for_admin(&self, admin_token: &str) -> SessionKey {
        let mut hash = Sha256::new();
        hash.update(b"seckill-web admin session\0");
        hash.update(self.0);
        hash.update(admin_token.as_bytes());
        SessionKey(hash.finalize().into())
    }

    fn mac(&self) -> HmacSha256 {
        // HMAC takes a key of any length: this cannot fail.
        match HmacSha256::new_from_slice(&self.0) {
            Ok(mac) => mac,
            Err(_) => unreachable!("HMAC accepts 32-byte keys"),
        }
    }

    /// `payload` with its MAC appended: `<payload>.<hex mac>`.
    pub fn sign(&self, payload: &str) -> String {
        let mut mac = self.mac();
        mac.update(payload.as_bytes());
        format!("{payload}.{}", hex(&mac.finalize().into_bytes()))
    }

    /// The payload of a signed value, if its MAC verifies (in constant
    /// time).
    pub fn verify<'a>(&self, signed: &'a str) -> Option<&'a str> {
        let (payload, sig) = signed.rsplit_once('.')?;
        let sig = unhex(sig)?;
        let mut mac = self.mac();
        mac.update(payload.as_bytes());
        mac.verify_slice(&sig).ok()?;
        Some(payload)
    }
}

/// A buyer, as the session or the trusted header says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Buyer {
    /// Their user id on the seckill server.
    pub user_id: u64,
    /// What to call them on the page.
    pub name: String,
}

/// Where buyers' identities come from.
#[derive(Debug, Clone)]
pub enum Identity {
    /// Signed session cookies, issued by the demo login.
    DemoLogin,
    /// A header set by a trusted proxy, holding the numeric user id.
    TrustedHeader(HeaderName),
}

/// The user id the demo login gives `name`: the same name is always the
/// same user. 53 bits, so that JavaScript numbers could hold it too.
pub fn demo_user_id(name: &str) -> u64 {
    let digest = Sha256::digest(name.as_bytes());
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    (u64::from_be_bytes(first) & ((1 << 53) - 1)).max(1)
}

/// Whether `name` may be a demo login name: what fits a cookie unescaped.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// The shortest `--session-secret` taken: a shorter one could be guessed
/// offline from any cookie the demo login hands out.
pub const MIN_SECRET_LEN: usize = 32;

/// The signed cookie value of a buyer's session.
pub fn buyer_cookie(key: &SessionKey, buyer: &Buyer) -> String {
    let expires = now_s() + SESSION_SECONDS;
    key.sign(&format!("b.{}.{expires}.{}", buyer.user_id, buyer.name))
}

/// The buyer making this request, if any.
pub fn buyer(identity: &Identity, key: &SessionKey, headers: &HeaderMap) -> Option<Buyer> {
    match identity {
        Identity::TrustedHeader(name) => {
            let user_id: u64 = headers.get(name)?.to_str().ok()?.trim().parse().ok()?;
            (user_id != 0).then(|| Buyer {
                user_id,
                name: format!("user {user_id}"),
            })
        }
        Identity::DemoLogin => {
            let payload = key.verify(cookie(headers, SESSION_COOKIE)?)?;
            let mut fields = payload.splitn(4, '.');
            let (Some("b"), Some(id), Some(expires), Some(name)) =
                (fields.next(), fields.next(), fields.next(), fields.next())
            else {
                return None;
            };
            if expires.parse::<u64>().ok()? <= now_s() {
                return None;
            }
            Some(Buyer {
                user_id: id.parse().ok()?,
                name: name.to_owned(),
            })
        }
    }
}

/// The buyer, or 401.
pub fn require_buyer(
    identity: &Identity,
    key: &SessionKey,
    headers: &HeaderMap,
) -> Result<Buyer, ApiError> {
    buyer(identity, key, headers).ok_or(ApiError::Unauthenticated)
}

/// The `Set-Cookie` value for a cookie of `value` (empty to remove it).
pub fn set_cookie(name: &str, value: &str, max_age_s: u64, secure: bool) -> String {
    let secure = if secure { "; Secure" } else { "" };
    // Strict: a page of another site can never make the browser send it,
    // which, with JSON-only POSTs, keeps cross-site requests out.
    format!("{name}={value}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age_s}{secure}")
}

/// The value of cookie `name` in the request's `Cookie` headers.
pub(crate) fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

pub(crate) fn now_s() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub(crate) fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn with_cookie(name: &str, value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        let cookie = format!("other=1; {name}={value}");
        headers.insert(header::COOKIE, HeaderValue::from_str(&cookie).unwrap());
        headers
    }

    #[test]
    fn a_signed_session_names_its_buyer_and_a_forged_one_nobody() {
        let key = SessionKey::random().unwrap();
        let alice = Buyer {
            user_id: demo_user_id("alice"),
            name: "alice".into(),
        };
        let value = buyer_cookie(&key, &alice);
        let headers = with_cookie(SESSION_COOKIE, &value);
        assert_eq!(buyer(&Identity::DemoLogin, &key, &headers), Some(alice));

        // Another user id under the same MAC does not verify.
        let forged = value.replacen(&demo_user_id("alice").to_string(), "42", 1);
        let headers = with_cookie(SESSION_COOKIE, &forged);
        assert_eq!(buyer(&Identity::DemoLogin, &key, &headers), None);

        // Nor does a cookie signed with another key.
        let other = SessionKey::random().unwrap();
        let headers = with_cookie(SESSION_COOKIE, &value);
        assert_eq!(buyer(&Identity::DemoLogin, &other, &headers), None);
    }

    #[test]
    fn the_trusted_header_gives_the_user_id_and_ignores_cookies() {
        let key = SessionKey::random().unwrap();
        let identity = Identity::TrustedHeader(HeaderName::from_static("x-user-id"));
        let mut headers = with_cookie(SESSION_COOKIE, "anything");
        assert_eq!(buyer(&identity, &key, &headers), None);
        headers.insert("x-user-id", HeaderValue::from_static("77"));
        assert_eq!(
            buyer(&identity, &key, &headers).map(|b| b.user_id),
            Some(77)
        );
    }

    #[test]
    fn names_are_checked_and_ids_stable() {
        assert!(valid_name("alice_1-x"));
        assert!(!valid_name("") && !valid_name("a.b") && !valid_name("a b"));
        assert_eq!(demo_user_id("alice"), demo_user_id("alice"));
        assert_ne!(demo_user_id("alice"), demo_user_id("bob"));
        assert!(demo_user_id("alice") < 1 << 53);
    }
}
