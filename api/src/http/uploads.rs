//! `POST /v1/uploads`: a presigned S3 PUT URL for one attachment, and the
//! GET URL to put in a message (see [`crate::uploads`]). Any authenticated
//! user may upload into their own prefix; without authentication there is
//! no user to scope the key to, so uploads are refused.

use std::sync::Arc;

use axum::{
    extract::{rejection::JsonRejection, State},
    http::{HeaderMap, StatusCode},
    response::IntoResponse,
    Json,
};
use serde::Deserialize;

use super::{messages::authenticate, ApiError, AppState};
use crate::uploads::{UploadError, UploadRequest};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewUpload {
    /// The file's name, kept (made safe) at the end of the key.
    #[serde(default)]
    file_name: String,
    content_type: String,
    /// Exactly the number of bytes the PUT will carry.
    size: u64,
}

pub async fn create(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Result<Json<NewUpload>, JsonRejection>,
) -> Result<impl IntoResponse, ApiError> {
    let Some(uploads) = &state.uploads else {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "uploads_off",
            "attachments are not configured on this api (--upload-bucket)",
        ));
    };
    let caller = authenticate(&state, &headers)?.ok_or_else(|| {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "uploads need an authenticated user: configure JWT keys on the api",
        )
    })?;
    let Json(request) = body.map_err(|e| ApiError::bad_request("bad_json", e.body_text()))?;
    let upload = uploads
        .presign(
            &caller.user,
            &UploadRequest {
                file_name: request.file_name,
                content_type: request.content_type,
                size: request.size,
            },
        )
        .await
        .map_err(|e| match e {
            UploadError::Size(_) => {
                ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "bad_size", e.to_string())
            }
            UploadError::ContentType(..) => ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "bad_content_type",
                e.to_string(),
            ),
            UploadError::Signing(_) | UploadError::Credentials(_) => {
                ApiError::unavailable("S3 signing", e)
            }
        })?;
    state.metrics.uploads_presigned.inc();
    tracing::debug!(user = %caller.user, key = %upload.key, "upload presigned");
    Ok((StatusCode::CREATED, Json(upload)))
}
