//! `/v1/destinations/{destination}/messages`: history (GET) and server-side
//! publish (POST). The destination is one path segment, percent-encoded
//! (`/topic/chat.room1` → `%2Ftopic%2Fchat.room1`).

use std::{collections::BTreeMap, sync::Arc};

use auth::{
    destination::has_allowed_prefix,
    headers::{RESERVED_HEADERS, USER_ID_HEADER},
    Action, AuthError,
};
use axum::{
    extract::{
        rejection::{BytesRejection, PathRejection, QueryRejection},
        Path, Query, State,
    },
    http::{header::AUTHORIZATION, HeaderMap, StatusCode},
    response::IntoResponse,
    Json,
};
use base64::{engine::general_purpose::STANDARD as BASE64, Engine};
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::{ApiError, AppState};
use crate::{
    auth::Caller,
    db::store::{self, Page, StoredMessage},
    metrics::Dependency,
    position::Position,
};

/// Longest destination accepted, in bytes.
const MAX_DESTINATION: usize = 512;
/// Most application headers on a published message.
const MAX_HEADERS: usize = 32;
/// Longest header name or value, in bytes.
const MAX_HEADER_BYTES: usize = 4096;
/// A page's size when the request names none.
const DEFAULT_PAGE: u32 = 50;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HistoryQuery {
    before: Option<String>,
    after: Option<String>,
    limit: Option<u32>,
}

#[derive(Debug, Serialize)]
pub struct HistoryPage {
    destination: String,
    /// Newest first.
    messages: Vec<MessageView>,
    /// Pass as `before` for the next older page; null when there is none.
    next_before: Option<String>,
    /// Pass as `after` for the next newer page (when paging forward from
    /// `after`); null when there is none.
    next_after: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct MessageView {
    position: String,
    message_id: String,
    /// When Redis appended it (Unix milliseconds).
    timestamp_ms: i64,
    headers: Value,
    /// The body as text, when it is valid UTF-8…
    #[serde(skip_serializing_if = "Option::is_none")]
    body: Option<String>,
    /// …else base64.
    #[serde(skip_serializing_if = "Option::is_none")]
    body_base64: Option<String>,
}

impl From<StoredMessage> for MessageView {
    fn from(m: StoredMessage) -> MessageView {
        let headers = serde_json::from_str(&m.headers).unwrap_or(Value::Object(Map::new()));
        let (body, body_base64) = match String::from_utf8(m.body) {
            Ok(text) => (Some(text), None),
            Err(e) => (None, Some(BASE64.encode(e.as_bytes()))),
        };
        MessageView {
            position: m.position.to_string(),
            message_id: m.message_id,
            timestamp_ms: m.position.ms,
            headers,
            body,
            body_base64,
        }
    }
}

/// `GET`: one page of a durable destination's history, newest first.
pub async fn history(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    destination: Result<Path<String>, PathRejection>,
    query: Result<Query<HistoryQuery>, QueryRejection>,
) -> Result<Json<HistoryPage>, ApiError> {
    let destination = checked_destination(&state, destination)?;
    authorize(&state, &headers, Action::Subscribe, &destination)?;
    if state.limits.durable_named && !state.publisher.is_durable(&destination) {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_durable",
            format!("{destination} is not a durable destination: no history is kept"),
        ));
    }
    let Query(query) = query.map_err(|e| ApiError::bad_request("bad_query", e.body_text()))?;
    let limit = query.limit.unwrap_or(DEFAULT_PAGE);
    if limit == 0 || limit > state.limits.max_page {
        return Err(ApiError::bad_request(
            "bad_limit",
            format!("limit must be between 1 and {}", state.limits.max_page),
        ));
    }
    let cursor = |name: &str, value: &Option<String>| {
        value
            .as_deref()
            .map(|v| {
                v.parse::<Position>()
                    .map_err(|e| ApiError::bad_request("bad_cursor", format!("{name}={v:?}: {e}")))
            })
            .transpose()
    };
    let before = cursor("before", &query.before)?;
    let after = cursor("after", &query.after)?;
    if let (Some(b), Some(a)) = (before, after) {
        if b <= a {
            return Err(ApiError::bad_request(
                "bad_cursor",
                "before must be greater than after",
            ));
        }
    }
    let page = Page {
        before: before.unwrap_or(Position::MAX),
        after: after.unwrap_or(Position::MIN),
        // One more than asked tells whether another page follows.
        limit: limit + 1,
        oldest_first: after.is_some() && before.is_none(),
    };
    let client = state
        .pool
        .get()
        .await
        .map_err(|e| database_down(&state, e))?;
    let mut rows = store::history(&client, &destination, page)
        .await
        .map_err(|e| database_down(&state, e))?;
    state.metrics.succeeded(Dependency::Database);
    let more = rows.len() > limit as usize;
    if more {
        // Rows are newest first: the extra one is the oldest, or (paging
        // forward) the newest.
        if page.oldest_first {
            rows.remove(0);
        } else {
            rows.pop();
        }
    }
    let (next_before, next_after) = match (more, page.oldest_first) {
        (false, _) => (None, None),
        (true, false) => (rows.last().map(|m| m.position.to_string()), None),
        (true, true) => (None, rows.first().map(|m| m.position.to_string())),
    };
    Ok(Json(HistoryPage {
        destination,
        messages: rows.into_iter().map(MessageView::from).collect(),
        next_before,
        next_after,
    }))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewMessage {
    body: Option<String>,
    body_base64: Option<String>,
    content_type: Option<String>,
    #[serde(default)]
    headers: BTreeMap<String, String>,
}

#[derive(Debug, Serialize)]
pub struct Accepted {
    destination: String,
    message_id: String,
    /// The stream position (the history cursor), for a durable destination.
    position: Option<String>,
    /// Whether the message will be kept in the history.
    durable: bool,
}

/// `POST`: publishes a message to every subscriber in the cluster; a
/// durable destination's message is also kept.
pub async fn publish(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    destination: Result<Path<String>, PathRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Result<impl IntoResponse, ApiError> {
    let destination = checked_destination(&state, destination)?;
    let caller = authorize(&state, &headers, Action::Send, &destination)?;
    let body = request_body(body)?;
    let message: NewMessage = json_body(&body)?;
    let payload = payload_of(&state, message.body, message.body_base64)?;
    let stomp_headers = message_headers(message.headers, message.content_type, caller.as_ref())?;
    let published = publish_through_redis(&state, &destination, stomp_headers, payload).await?;
    state.metrics.published.inc();
    Ok((
        StatusCode::ACCEPTED,
        Json(Accepted::of(destination, published)),
    ))
}

/// `POST /v1/broadcast`: one message to several destinations, each
/// checked and authorized as a single publish would be, then published in
/// the order given.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewBroadcast {
    destinations: Vec<String>,
    body: Option<String>,
    body_base64: Option<String>,
    content_type: Option<String>,
    #[serde(default)]
    headers: BTreeMap<String, String>,
}

/// The most destinations one broadcast may name.
const MAX_BROADCAST: usize = 100;

pub async fn broadcast(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<impl IntoResponse, ApiError> {
    let body = request_body(body)?;
    let request: NewBroadcast = json_body(&body)?;
    let count = request.destinations.len();
    if count == 0 || count > MAX_BROADCAST {
        return Err(ApiError::bad_request(
            "bad_destination",
            format!("name 1 to {MAX_BROADCAST} destinations, not {count}"),
        ));
    }
    // Everything is checked before anything is published.
    let mut caller = None;
    let mut destinations = Vec::with_capacity(count);
    for destination in request.destinations {
        let destination = check_destination_text(&state, destination)?;
        if destinations.contains(&destination) {
            return Err(ApiError::bad_request(
                "bad_destination",
                format!("{destination:?} is named twice"),
            ));
        }
        caller = authorize(&state, &headers, Action::Send, &destination)?;
        destinations.push(destination);
    }
    let payload = payload_of(&state, request.body, request.body_base64)?;
    let stomp_headers = message_headers(request.headers, request.content_type, caller.as_ref())?;
    let mut messages = Vec::with_capacity(count);
    for destination in destinations {
        // A Redis failure midway answers 503; the destinations before it
        // have their message.
        let published =
            publish_through_redis(&state, &destination, stomp_headers.clone(), payload.clone())
                .await?;
        state.metrics.published.inc();
        messages.push(Accepted::of(destination, published));
    }
    Ok((StatusCode::ACCEPTED, Json(Broadcast { messages })))
}

#[derive(Debug, Serialize)]
pub struct Broadcast {
    messages: Vec<Accepted>,
}

/// A request's JSON body, as `T`.
pub(super) fn json_body<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|e| ApiError::bad_request("bad_json", e.to_string()))
}

/// A request's body, or why it could not be read (413 when over the limit).
pub(super) fn request_body(body: Result<Bytes, BytesRejection>) -> Result<Bytes, ApiError> {
    body.map_err(|e| {
        let code = if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            "too_large"
        } else {
            "bad_body"
        };
        ApiError::new(e.status(), code, e.body_text())
    })
}

/// The message body from exactly one of `body` (text) and `body_base64`,
/// within `--max-body-bytes`.
fn payload_of(
    state: &AppState,
    body: Option<String>,
    body_base64: Option<String>,
) -> Result<Bytes, ApiError> {
    let payload = match (body, body_base64) {
        (Some(text), None) => Bytes::from(text),
        (None, Some(encoded)) => BASE64
            .decode(encoded.as_bytes())
            .map(Bytes::from)
            .map_err(|e| ApiError::bad_request("bad_body", format!("body_base64: {e}")))?,
        _ => {
            return Err(ApiError::bad_request(
                "bad_body",
                "give exactly one of body (text) and body_base64",
            ))
        }
    };
    if payload.len() > state.limits.max_body_bytes {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
            format!(
                "the body has {} bytes; at most {} are accepted",
                payload.len(),
                state.limits.max_body_bytes
            ),
        ));
    }
    Ok(payload)
}

impl Accepted {
    fn of(destination: String, published: crate::publish::Published) -> Accepted {
        let durable = published.position.is_some();
        Accepted {
            destination,
            message_id: published.message_id,
            position: published.position.map(|p| p.to_string()),
            durable,
        }
    }
}

/// Publishes through Redis, counting Redis's health either way.
pub(super) async fn publish_through_redis(
    state: &AppState,
    destination: &str,
    headers: Vec<(String, String)>,
    body: Bytes,
) -> Result<crate::publish::Published, ApiError> {
    let published = state
        .publisher
        .publish(destination, headers, body)
        .await
        .map_err(|e| {
            state.metrics.failed(Dependency::Redis);
            ApiError::unavailable("redis", e)
        })?;
    state.metrics.succeeded(Dependency::Redis);
    Ok(published)
}

/// The STOMP headers of a published message: the caller's, checked, plus
/// `content-type` and the server-set `user-id`.
fn message_headers(
    requested: BTreeMap<String, String>,
    content_type: Option<String>,
    caller: Option<&Caller>,
) -> Result<Vec<(String, String)>, ApiError> {
    if requested.len() > MAX_HEADERS {
        return Err(ApiError::bad_request(
            "bad_header",
            format!("at most {MAX_HEADERS} headers"),
        ));
    }
    let mut headers = Vec::with_capacity(requested.len() + 2);
    for (name, value) in requested {
        let lower = name.to_ascii_lowercase();
        if RESERVED_HEADERS.contains(&lower.as_str())
            || lower == USER_ID_HEADER
            || lower == "content-type"
        {
            return Err(ApiError::bad_request(
                "bad_header",
                format!("header {name:?} is set by the server (content-type: use content_type)"),
            ));
        }
        check_header_text("name", &name)?;
        check_header_text("value", &value)?;
        if name.is_empty() || name.contains(':') {
            return Err(ApiError::bad_request(
                "bad_header",
                format!("header name {name:?} must be non-empty and hold no ':'"),
            ));
        }
        headers.push((name, value));
    }
    if let Some(content_type) = content_type {
        check_header_text("value", &content_type)?;
        headers.push(("content-type".to_string(), content_type));
    }
    if let Some(caller) = caller {
        headers.push((USER_ID_HEADER.to_string(), caller.user.clone()));
    }
    Ok(headers)
}

fn check_header_text(what: &str, text: &str) -> Result<(), ApiError> {
    if text.len() > MAX_HEADER_BYTES || text.chars().any(char::is_control) {
        return Err(ApiError::bad_request(
            "bad_header",
            format!("a header {what} must be at most {MAX_HEADER_BYTES} bytes, without control characters"),
        ));
    }
    Ok(())
}

/// The destination of the path, if it is one clients could use.
pub(super) fn checked_destination(
    state: &AppState,
    destination: Result<Path<String>, PathRejection>,
) -> Result<String, ApiError> {
    let Path(destination) =
        destination.map_err(|e| ApiError::bad_request("bad_destination", e.body_text()))?;
    check_destination_text(state, destination)
}

/// `destination`, if it is one clients could use.
pub(super) fn check_destination_text(
    state: &AppState,
    destination: String,
) -> Result<String, ApiError> {
    let prefixes = &state.limits.destination_prefixes;
    let invalid = |why: String| {
        Err(ApiError::bad_request(
            "bad_destination",
            format!("{destination:?}: {why}"),
        ))
    };
    if destination.len() > MAX_DESTINATION {
        return invalid(format!("longer than {MAX_DESTINATION} bytes"));
    }
    if destination.chars().any(char::is_control) {
        return invalid("holds control characters".to_string());
    }
    if !has_allowed_prefix(prefixes, &destination) {
        return invalid(format!("must start with one of {prefixes:?}"));
    }
    if broker_bridge::pattern::is_wildcard(&destination) {
        return invalid("must be concrete: * and # are for subscriptions".to_string());
    }
    Ok(destination)
}

/// The caller of a request: `None` where the api runs without
/// authentication.
pub(super) fn authenticate(
    state: &AppState,
    headers: &HeaderMap,
) -> Result<Option<Caller>, ApiError> {
    let authorization = headers.get(AUTHORIZATION).and_then(|v| v.to_str().ok());
    state.auth.authenticate(authorization).map_err(|e| {
        let message = match e {
            AuthError::Missing => "send a JWT as Authorization: Bearer <token>".to_string(),
            other => other.to_string(),
        };
        ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
    })
}

/// The caller, if it may do `action` on `destination`.
pub(super) fn authorize(
    state: &AppState,
    headers: &HeaderMap,
    action: Action,
    destination: &str,
) -> Result<Option<Caller>, ApiError> {
    let caller = authenticate(state, headers)?;
    if let Some(caller) = &caller {
        if !caller.may(action, destination) {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "forbidden",
                format!("the token grants no {action} on {destination}"),
            ));
        }
    }
    Ok(caller)
}

fn database_down(state: &AppState, e: impl Into<crate::db::DbError>) -> ApiError {
    let e = e.into();
    tracing::warn!(error = %e, "database request failed");
    state.metrics.failed(Dependency::Database);
    ApiError::unavailable("the database", e)
}
