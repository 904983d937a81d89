//! The goods as the storefront reads them: one LIST_GOODS to the servers
//! at a time, its answer shared by every request for a moment.
//!
//! Every open page polls the stock once a second, and anyone may ask,
//! logged in or not. Asked of the servers each time, a flood of
//! `GET /api/goods` would be a flood of requests on the connection that
//! the buyers' BUYs share, and fill its queue. Here a burst of any size
//! costs one request a moment; what it answers is at most that moment old
//! (the server's own figure of what is left lags by up to its refresh
//! interval anyway). A failure is answered again for the same moment, so
//! that while the servers cannot be reached the requests waiting behind a
//! fetch do not each wait out a fetch of their own.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use tokio::sync::Mutex;

use crate::error::{ApiError, UNAVAILABLE};

/// A value fetched at most once every `fresh_for`, shared by everyone who
/// asks meanwhile (requests that come while a fetch is under way wait for
/// it).
#[derive(Debug)]
pub struct Recent<T> {
    fresh_for: Duration,
    last: Arc<Mutex<Option<Fetched<T>>>>,
}

#[derive(Debug)]
struct Fetched<T> {
    at: Instant,
    value: Result<Arc<T>, Failure>,
}

/// What a failed fetch answered, to answer it again.
#[derive(Debug, Clone)]
pub struct Failure {
    /// The HTTP status, code and `Retry-After` seconds of the failure.
    pub parts: (StatusCode, &'static str, Option<u64>),
    /// Its message.
    pub message: String,
}

impl<T> Recent<T> {
    /// Fetched again once the last fetch is `fresh_for` old (zero: every
    /// time).
    pub fn new(fresh_for: Duration) -> Recent<T> {
        Recent {
            fresh_for,
            last: Arc::new(Mutex::new(None)),
        }
    }
}

impl<T: Send + Sync + 'static> Recent<T> {
    /// The value of the last fetch if it is fresh, else of a new one made
    /// with `fetch`. The fetch runs in a task of its own, which keeps what
    /// it got for the others even if this request goes away meanwhile (its
    /// client hung up), rather than leave the next one to fetch again.
    pub async fn get<F, Fut>(&self, fetch: F) -> Result<Arc<T>, ApiError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, ApiError>> + Send + 'static,
    {
        if self.fresh_for.is_zero() {
            // Nothing to share: fetched for each request, side by side.
            return fetch().await.map(Arc::new);
        }
        let mut last = self.last.clone().lock_owned().await;
        if let Some(fetched) = last.as_ref().filter(|f| f.at.elapsed() < self.fresh_for) {
            return fetched.value.clone().map_err(ApiError::Again);
        }
        let fetching = fetch();
        let task = tokio::spawn(async move {
            let value = fetching.await.map(Arc::new);
            let kept = match &value {
                Ok(value) => Ok(value.clone()),
                Err(e) => Err(Failure {
                    parts: e.parts(),
                    message: e.to_string(),
                }),
            };
            *last = Some(Fetched {
                at: Instant::now(),
                value: kept,
            });
            value
        });
        match task.await {
            Ok(value) => value,
            // The fetch panicked: as a server that could not be reached.
            // What it panicked with is for the log: a JoinError's text
            // (task id, panic message) tells a client only our internals.
            Err(e) => {
                log::error!("reading the goods: the fetch failed: {e}");
                Err(ApiError::Again(Failure {
                    parts: UNAVAILABLE,
                    message: "the servers cannot be reached; retry in a moment".into(),
                }))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    /// A fetch that takes a moment, numbered from 0, failing if `fail`.
    async fn fetch(fetches: Arc<AtomicUsize>, fail: bool) -> Result<usize, ApiError> {
        let n = fetches.fetch_add(1, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(20)).await;
        match fail {
            true => Err(ApiError::NotFound(format!("fetch {n} failed"))),
            false => Ok(n),
        }
    }

    /// A burst of requests costs one fetch; a request a moment later, one
    /// more; a failure is answered again for its moment, as it was.
    #[tokio::test]
    async fn a_burst_costs_one_fetch_and_a_failure_is_answered_again() {
        let recent = Arc::new(Recent::new(Duration::from_millis(200)));
        let fetches = Arc::new(AtomicUsize::new(0));
        let mut burst = tokio::task::JoinSet::new();
        for _ in 0..50 {
            let (recent, fetches) = (recent.clone(), fetches.clone());
            burst.spawn(async move { recent.get(|| fetch(fetches, false)).await });
        }
        while let Some(got) = burst.join_next().await {
            assert_eq!(*got.unwrap().unwrap(), 0);
        }
        assert_eq!(fetches.load(Ordering::SeqCst), 1);

        tokio::time::sleep(Duration::from_millis(250)).await;
        let failed = recent
            .get(|| fetch(fetches.clone(), true))
            .await
            .unwrap_err();
        let again = recent
            .get(|| fetch(fetches.clone(), false))
            .await
            .unwrap_err();
        assert_eq!(fetches.load(Ordering::SeqCst), 2);
        assert_eq!(failed.parts(), again.parts());
        assert_eq!(again.to_string(), "fetch 1 failed");

        tokio::time::sleep(Duration::from_millis(250)).await;
        let later = recent.get(|| fetch(fetches.clone(), false)).await;
        assert_eq!(*later.unwrap(), 2);
    }

    /// A fetch that panics with what a client must not see.
    async fn panicking() -> Result<usize, ApiError> {
        panic!("internal detail at src/secret.rs")
    }

    /// A fetch that panicked is answered as servers that cannot be reached
    /// (503 `unavailable`, `Retry-After`), with nothing of the panic in the
    /// answer; the next request fetches again.
    #[tokio::test]
    async fn a_panicking_fetch_is_unavailable_and_tells_nothing() {
        let recent = Recent::new(Duration::from_secs(60));
        let failed = recent.get(panicking).await.unwrap_err();
        assert_eq!(
            failed.parts(),
            (StatusCode::SERVICE_UNAVAILABLE, "unavailable", Some(1))
        );
        let message = failed.to_string();
        assert!(
            !message.contains("secret") && !message.contains("panic") && !message.contains("task"),
            "{message}"
        );
        let fetches = Arc::new(AtomicUsize::new(0));
        let next = recent.get(|| fetch(fetches.clone(), false)).await;
        assert_eq!(*next.unwrap(), 0);
    }
}
