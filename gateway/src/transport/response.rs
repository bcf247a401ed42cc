//! Building plain HTTP responses: the ops endpoints, the demo assets and
//! the refusals of an upgrade all answer with a status, a content type and
//! a small body.

use bytes::Bytes;
use http_body_util::Full;
use hyper::{header::HeaderValue, Response, StatusCode};

pub(super) type Body = Full<Bytes>;

/// A response with a status, a content type and a body.
pub(super) fn respond(
    status: StatusCode,
    content_type: &'static str,
    body: impl Into<Bytes>,
) -> Response<Body> {
    let mut response = Response::new(Full::new(body.into()));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert("content-type", HeaderValue::from_static(content_type));
    response
}

pub(super) fn json(status: StatusCode, body: String) -> Response<Body> {
    respond(status, "application/json", body)
}

pub(super) fn text(status: StatusCode, body: &'static str) -> Response<Body> {
    respond(status, "text/plain; charset=utf-8", body)
}
