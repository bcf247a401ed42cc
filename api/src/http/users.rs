//! Commands about one user, carried out by every gateway node:
//!
//! * `POST /v1/users/{user}/disconnect` closes every connection of the
//!   user (a banned user, a revoked token) with ERROR `disconnected` and
//!   the reason, and parks nothing (no resume);
//! * `POST /v1/users/{user}/unsubscribe` ends the user's subscriptions to
//!   one destination with a last MESSAGE carrying `unsubscribed:true` and
//!   the reason; the connections stay.
//!
//! The api publishes the command to the gateways' reserved control
//! destination, which every node subscribes to. Allowed to a caller whose
//! token grants SEND on the control destination.

use std::sync::Arc;

use auth::Action;
use axum::{
    extract::{
        rejection::{BytesRejection, PathRejection},
        Path, State,
    },
    http::{HeaderMap, StatusCode},
    response::IntoResponse,
    Json,
};
use broker_bridge::control::{ControlCommand, CONTROL_DESTINATION};
use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::{
    messages::{authorize, check_destination_text, json_body, publish_through_redis, request_body},
    ApiError, AppState,
};

/// The longest user id or reason accepted (both end up in STOMP headers).
const MAX_TEXT: usize = 256;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Disconnect {
    /// Shown to the client in the ERROR frame's `reason` header.
    #[serde(default)]
    reason: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Unsubscribe {
    /// As the user's clients subscribed to it.
    destination: String,
    /// Shown to the client in the last MESSAGE's `reason` header.
    #[serde(default)]
    reason: String,
}

#[derive(Debug, Serialize)]
struct Unsubscribing {
    user: String,
    destination: String,
    reason: String,
    message_id: String,
}

#[derive(Debug, Serialize)]
struct Disconnecting {
    user: String,
    reason: String,
    /// The command's message id on the control destination.
    message_id: String,
}

pub async fn disconnect(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    user: Result<Path<String>, PathRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Result<impl IntoResponse, ApiError> {
    let user = commanded_user(&state, &headers, user)?;
    let body = request_body(body)?;
    let request: Disconnect = if body.is_empty() {
        Disconnect::default()
    } else {
        json_body(&body)?
    };
    check_text("reason", &request.reason, true)?;
    let message_id = publish_command(
        &state,
        &ControlCommand::DisconnectUser {
            user: user.clone(),
            reason: request.reason.clone(),
        },
    )
    .await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(Disconnecting {
            user,
            reason: request.reason,
            message_id,
        }),
    ))
}

pub async fn unsubscribe(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    user: Result<Path<String>, PathRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Result<impl IntoResponse, ApiError> {
    let user = commanded_user(&state, &headers, user)?;
    let request: Unsubscribe = json_body(&request_body(body)?)?;
    let destination = check_destination_text(&state, request.destination)?;
    check_text("reason", &request.reason, true)?;
    let message_id = publish_command(
        &state,
        &ControlCommand::UnsubscribeUser {
            user: user.clone(),
            destination: destination.clone(),
            reason: request.reason.clone(),
        },
    )
    .await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(Unsubscribing {
            user,
            destination,
            reason: request.reason,
            message_id,
        }),
    ))
}

/// The user a command is about, checked, for a caller allowed to command
/// the gateways.
fn commanded_user(
    state: &AppState,
    headers: &HeaderMap,
    user: Result<Path<String>, PathRejection>,
) -> Result<String, ApiError> {
    let Path(user) = user.map_err(|e| ApiError::bad_request("bad_user", e.body_text()))?;
    check_text("user", &user, false)?;
    authorize(state, headers, Action::Send, CONTROL_DESTINATION)?;
    Ok(user)
}

/// Publishes `command` to every gateway; returns its message id.
async fn publish_command(state: &AppState, command: &ControlCommand) -> Result<String, ApiError> {
    let published =
        publish_through_redis(state, CONTROL_DESTINATION, Vec::new(), command.to_body()).await?;
    Ok(published.message_id)
}

fn check_text(what: &'static str, text: &str, may_be_empty: bool) -> Result<(), ApiError> {
    let why = if text.is_empty() && !may_be_empty {
        "is empty"
    } else if text.len() > MAX_TEXT {
        "is too long"
    } else if text.chars().any(char::is_control) {
        "holds control characters"
    } else {
        return Ok(());
    };
    Err(ApiError::bad_request(
        if what == "user" {
            "bad_user"
        } else {
            "bad_body"
        },
        format!("the {what} {why} (at most {MAX_TEXT} bytes, no control characters)"),
    ))
}
