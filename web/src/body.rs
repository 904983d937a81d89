//! Reading a request's JSON body, with its failures in the API's error
//! shape: axum's own `Json` answers them in plain text, which a page or an
//! app expecting `{"error", "message"}` cannot read.

use axum::extract::{FromRequest, Request};
use axum::Json;
use serde::de::DeserializeOwned;

use crate::error::ApiError;

/// The largest body any call takes (a goods' name and figures, a login
/// name): past it, 413 without reading further.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// A JSON body, deserialized into `T`; a body that is not JSON, does not
/// fit `T`, is too large or does not arrive in time is an [`ApiError`].
#[derive(Debug)]
pub struct JsonBody<T>(pub T);

impl<T, S> FromRequest<S> for JsonBody<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, ApiError> {
        match Json::<T>::from_request(request, state).await {
            Ok(Json(value)) => Ok(JsonBody(value)),
            Err(rejection) => Err(ApiError::Body(rejection)),
        }
    }
}
