//! The API's extractors: axum's, with their rejections answered in the API's JSON error shape
//! (axum's own answer plain text).

use crate::error::ApiError;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::StatusCode;
use serde::de::DeserializeOwned;

/// The query string as `T`; a malformed one is 400 `InvalidQuery`.
#[derive(Debug, Clone, Copy, Default)]
pub struct Query<T>(pub T);

impl<T, S> FromRequestParts<S> for Query<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Query(v)| Query(v))
            .map_err(|e: QueryRejection| {
                ApiError::InvalidQuery(format!(
                    "the query string is not valid for this route ({}): see /openapi.json",
                    e.body_text().to_lowercase()
                ))
            })
    }
}

/// Path parameters as `T`; ones that cannot be read (e.g. not UTF-8) are 404 `NotFound`.
#[derive(Debug, Clone, Copy, Default)]
pub struct Path<T>(pub T);

impl<T, S> FromRequestParts<S> for Path<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Path(v)| Path(v))
            .map_err(|e: PathRejection| {
                ApiError::NotFound(format!(
                    "no such resource: the path cannot be read ({})",
                    e.body_text().to_lowercase()
                ))
            })
    }
}

/// The raw body; one larger than [`super::MAX_BODY_BYTES`] is 413 `PayloadTooLarge`.
#[derive(Debug, Clone, Default)]
pub struct Body(pub Bytes);

impl<S> FromRequest<S> for Body
where
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        Bytes::from_request(req, state)
            .await
            .map(Body)
            .map_err(|e: BytesRejection| {
                if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                    ApiError::PayloadTooLarge(format!(
                        "the body is larger than {} bytes: send less",
                        super::MAX_BODY_BYTES
                    ))
                } else {
                    ApiError::InvalidBody(format!(
                        "the body could not be read ({})",
                        e.body_text().to_lowercase()
                    ))
                }
            })
    }
}
