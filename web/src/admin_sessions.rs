//! The admin's sessions, revocable. Each admin login draws a random id,
//! which the cookie carries (`a.<id>.<expiry>`, signed under the admin key,
//! [`SessionKey::for_admin`]), and this process keeps the ids it issued. A
//! cookie is an admin session only while its id is kept: logout forgets
//! it, so a copy of the cookie (a shared machine, a proxy's log) is worth
//! nothing after it, rather than for the rest of its 8 hours.
//!
//! The ids are in this process's memory only: a restarted gateway, or
//! another one on the same session secret, knows none of them, and the
//! admin logs in again there. (Buyers' sessions carry all they need in the
//! cookie, and hold across both.) At most [`MAX_ADMIN_SESSIONS`] are kept:
//! a login past them forgets the oldest, so however often the right token
//! logs in, the memory stays bounded.

use std::collections::VecDeque;
use std::sync::{Mutex, PoisonError};

use axum::http::HeaderMap;
use subtle::ConstantTimeEq;

use crate::session::{self, SessionKey, ADMIN_COOKIE, ADMIN_SECONDS};

/// The most admin sessions live at once: an admin or two, on a few
/// browsers each, is the use; past it, the oldest session ends.
pub const MAX_ADMIN_SESSIONS: usize = 64;

/// An admin session's id: 128 bits from the operating system's random
/// source, which nobody guesses. Its `Debug` hides it: with the cookie's
/// MAC it is the session.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct SessionId([u8; 16]);

impl std::fmt::Debug for SessionId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SessionId(<redacted>)")
    }
}

impl SessionId {
    /// A fresh id.
    pub fn random() -> std::io::Result<SessionId> {
        let mut id = [0u8; 16];
        getrandom::fill(&mut id).map_err(|e| std::io::Error::other(e.to_string()))?;
        Ok(SessionId(id))
    }

    fn parse(hex: &str) -> Option<SessionId> {
        session::unhex(hex)?.try_into().ok().map(SessionId)
    }
}

/// An admin cookie whose MAC verified and which has not expired: what it
/// says, not yet whether this process holds its id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AdminCookie {
    /// The session's id.
    pub id: SessionId,
    /// When it expires, Unix seconds.
    pub expires_s: u64,
}

impl AdminCookie {
    /// A new session's cookie: a fresh id, for [`ADMIN_SECONDS`]. Not
    /// public: a cookie is issued with its id kept, by
    /// [`AdminSessions::open`].
    fn fresh() -> std::io::Result<AdminCookie> {
        Ok(AdminCookie {
            id: SessionId::random()?,
            expires_s: session::now_s() + ADMIN_SECONDS,
        })
    }

    /// The signed cookie value, `a.<id>.<expiry>.<mac>`, under the admin
    /// key.
    pub fn sign(&self, key: &SessionKey) -> String {
        key.sign(&format!(
            "a.{}.{}",
            session::hex(&self.id.0),
            self.expires_s
        ))
    }

    /// The request's admin cookie, if its MAC verifies under the admin key
    /// and it has not expired.
    pub fn from_request(key: &SessionKey, headers: &HeaderMap) -> Option<AdminCookie> {
        let payload = key.verify(session::cookie(headers, ADMIN_COOKIE)?)?;
        let mut fields = payload.split('.');
        let (Some("a"), Some(id), Some(expires), None) =
            (fields.next(), fields.next(), fields.next(), fields.next())
        else {
            return None;
        };
        let cookie = AdminCookie {
            id: SessionId::parse(id)?,
            expires_s: expires.parse().ok()?,
        };
        (cookie.expires_s > session::now_s()).then_some(cookie)
    }
}

/// The admin sessions this process issued and has not ended, oldest first.
pub struct AdminSessions {
    // A queue for the order of logins, which the cap drops from; a look-up
    // goes through at most 64 ids, cheaper than a map's upkeep. Locked
    // briefly and never across an await.
    live: Mutex<VecDeque<AdminCookie>>,
}

/// Hand-written: the ids stay out of log lines; how many are live is told.
impl std::fmt::Debug for AdminSessions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminSessions")
            .field("live", &self.lock().len())
            .finish()
    }
}

impl Default for AdminSessions {
    fn default() -> Self {
        AdminSessions::new()
    }
}

impl AdminSessions {
    /// None yet.
    pub fn new() -> AdminSessions {
        AdminSessions {
            live: Mutex::new(VecDeque::with_capacity(MAX_ADMIN_SESSIONS)),
        }
    }

    /// Opens a session, and returns its cookie; the oldest session ends if
    /// [`MAX_ADMIN_SESSIONS`] are live.
    pub fn open(&self) -> std::io::Result<AdminCookie> {
        let cookie = AdminCookie::fresh()?;
        let mut live = self.lock();
        // Expired sessions first: they should not push out live ones.
        let now = session::now_s();
        live.retain(|s| s.expires_s > now);
        while live.len() >= MAX_ADMIN_SESSIONS {
            live.pop_front();
        }
        live.push_back(cookie);
        Ok(cookie)
    }

    /// Whether the request carries the cookie of a live admin session,
    /// under the admin key.
    pub fn is_admin(&self, key: &SessionKey, headers: &HeaderMap) -> bool {
        AdminCookie::from_request(key, headers).is_some_and(|c| self.is_live(c.id))
    }

    /// Whether the session `id` is live.
    pub fn is_live(&self, id: SessionId) -> bool {
        // In constant time, though the MAC already keeps anyone from
        // trying ids of their choosing: it costs nothing here.
        self.lock().iter().any(|s| bool::from(s.id.0.ct_eq(&id.0)))
    }

    /// Ends the session of the request's admin cookie, if it is live: the
    /// cookie, and every copy of it, is no session from now on.
    pub fn close(&self, key: &SessionKey, headers: &HeaderMap) {
        if let Some(cookie) = AdminCookie::from_request(key, headers) {
            self.lock().retain(|s| s.id != cookie.id);
        }
    }

    /// How many sessions are live (expired ones included until the next
    /// login).
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether no session is live.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<AdminCookie>> {
        // A panic under the lock leaves the queue whole (every change is
        // one call on it), so a poisoned lock's data is still good.
        self.live.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::{header, HeaderValue};

    fn with_cookie(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        let cookie = format!("other=1; {ADMIN_COOKIE}={value}");
        headers.insert(header::COOKIE, HeaderValue::from_str(&cookie).unwrap());
        headers
    }

    fn admin_key() -> SessionKey {
        SessionKey::from_secret("a secret of more than thirty-two bytes").for_admin("t1")
    }

    #[test]
    fn a_session_is_live_until_it_is_closed() {
        let (key, sessions) = (admin_key(), AdminSessions::new());
        let cookie = with_cookie(&sessions.open().unwrap().sign(&key));
        assert!(sessions.is_admin(&key, &cookie));
        sessions.close(&key, &cookie);
        // The same cookie, still signed and unexpired, is no session now.
        assert!(AdminCookie::from_request(&key, &cookie).is_some());
        assert!(!sessions.is_admin(&key, &cookie));
        assert!(sessions.is_empty());
    }

    #[test]
    fn a_signed_cookie_of_an_id_not_issued_here_is_no_session() {
        let (key, sessions) = (admin_key(), AdminSessions::new());
        let ours = sessions.open().unwrap();
        // As a restarted gateway on the same secret would see it: the MAC
        // verifies, the id is not kept.
        let stranger = AdminCookie::fresh().unwrap();
        let headers = with_cookie(&stranger.sign(&key));
        assert!(AdminCookie::from_request(&key, &headers).is_some());
        assert!(!sessions.is_admin(&key, &headers));
        // Our id with its expiry pushed back under the old MAC: refused.
        let signed = ours.sign(&key);
        let (_, mac) = signed.rsplit_once('.').unwrap();
        let id = session::hex(&ours.id.0);
        let later = format!("a.{id}.{}.{mac}", ours.expires_s + 3600);
        assert!(!sessions.is_admin(&key, &with_cookie(&later)));
        assert!(sessions.is_admin(&key, &with_cookie(&signed)));
    }

    #[test]
    fn an_expired_session_is_no_session_and_makes_room() {
        let (key, sessions) = (admin_key(), AdminSessions::new());
        let expired = AdminCookie {
            id: SessionId::random().unwrap(),
            expires_s: session::now_s() - 1,
        };
        sessions.lock().push_back(expired);
        assert!(sessions.is_live(expired.id));
        assert!(!sessions.is_admin(&key, &with_cookie(&expired.sign(&key))));
        sessions.open().unwrap();
        assert!(!sessions.is_live(expired.id));
        assert_eq!(sessions.len(), 1);
    }

    #[test]
    fn past_the_cap_a_login_ends_the_oldest_session() {
        let (key, sessions) = (admin_key(), AdminSessions::new());
        let cookies: Vec<HeaderMap> = (0..=MAX_ADMIN_SESSIONS)
            .map(|_| with_cookie(&sessions.open().unwrap().sign(&key)))
            .collect();
        assert_eq!(sessions.len(), MAX_ADMIN_SESSIONS);
        assert!(!sessions.is_admin(&key, &cookies[0]));
        assert!(cookies[1..].iter().all(|c| sessions.is_admin(&key, c)));
    }

    #[test]
    fn an_admin_session_needs_the_admin_token_too() {
        let sessions = AdminSessions::new();
        let key = SessionKey::from_secret("a secret of more than thirty-two bytes");
        let cookie = with_cookie(&sessions.open().unwrap().sign(&key.for_admin("t1")));
        assert!(sessions.is_admin(&key.for_admin("t1"), &cookie));
        // The session secret alone, or another admin token, is not enough.
        assert!(!sessions.is_admin(&key, &cookie));
        assert!(!sessions.is_admin(&key.for_admin("t2"), &cookie));
        let forged = with_cookie(&sessions.open().unwrap().sign(&key));
        assert!(!sessions.is_admin(&key.for_admin("t1"), &forged));
    }

    #[test]
    fn a_buyers_cookie_is_no_admin_session() {
        let (key, sessions) = (admin_key(), AdminSessions::new());
        sessions.open().unwrap();
        let bob = session::Buyer {
            user_id: 5,
            name: "bob".into(),
        };
        let headers = with_cookie(&session::buyer_cookie(&key, &bob));
        assert!(!sessions.is_admin(&key, &headers));
        // Nor is the old form, without an id.
        let old = with_cookie(&key.sign(&format!("a.{}", session::now_s() + 60)));
        assert!(!sessions.is_admin(&key, &old));
    }
}
