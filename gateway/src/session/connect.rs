//! CONNECT (and STOMP): version and heart-beat negotiation, authentication,
//! CONNECTED, and a presented resume token's restore.

use std::sync::Arc;

use auth::Action;
use stomp::{Command, Frame, Version};

use super::{heartbeat, subscribe::JoinGap, write_frame, Flow, Output, Phase, Session, StompError};
use crate::{
    metrics::CloseReason,
    resume::{
        metrics::Outcome,
        positions::{apply_positions, lost_header, parse_positions},
        Plan, Resolution, ResumeRequest, POSITIONS_HEADER, TOKEN_HEADER,
    },
};

const SERVER_NAME: &str = concat!("stomp-gateway/", env!("CARGO_PKG_VERSION"));
const SUPPORTED_VERSIONS: &str = "1.0,1.1,1.2";

impl Session {
    pub(super) fn connect(
        &mut self,
        frame: &Frame,
        out: &mut impl Output,
    ) -> Result<Flow, StompError> {
        let ctx = self.ctx.clone();
        self.version = self.negotiate_version(frame)?;
        let client_hb = match frame.header("heart-beat") {
            None => (0, 0),
            Some(v) => heartbeat::parse(v).ok_or_else(|| {
                StompError::new("invalid heart-beat header").detail(format!(
                    "heart-beat must be two integers 'cx,cy', got {v:?}"
                ))
            })?,
        };
        self.authenticate(frame)?;
        let server_hb = (
            ctx.settings.heartbeat_send_ms,
            ctx.settings.heartbeat_recv_ms,
        );
        self.heartbeat = heartbeat::negotiate(client_hb, server_hb);
        self.session_id = ctx.resume.new_session_id().into();
        let presented = frame
            .header(TOKEN_HEADER)
            .filter(|_| ctx.resume.offered_to(self.version));
        let Some(text) = presented else {
            self.write_connected(out, None);
            return Ok(Flow::Continue);
        };
        let user = self.principal.as_ref().map(|p| &*p.user);
        let token = match ctx.resume.check_token(text, user) {
            Ok(token) => token,
            Err(outcome) => {
                self.resume_failed(outcome, out);
                return Ok(Flow::Continue);
            }
        };
        let positions = frame
            .header(POSITIONS_HEADER)
            .map(parse_positions)
            .unwrap_or_default();
        if let Some((mut state, holds)) = ctx.resume.take(&token.state.session) {
            // Parked here: this node's rings are authoritative.
            apply_positions(&mut state, &positions);
            self.restore(Plan::local(state, holds), out);
            return Ok(Flow::Continue);
        }
        Ok(Flow::AwaitResume(Box::new(ResumeRequest {
            token,
            positions,
        })))
    }

    /// Completes a CONNECT whose resume needed the session store.
    pub fn finish_resume(&mut self, resolution: Resolution, out: &mut impl Output) {
        match resolution {
            Resolution::Restore(plan) => self.restore(plan, out),
            Resolution::Failed(outcome) => self.resume_failed(outcome, out),
        }
        self.publish_movability();
    }

    fn resume_failed(&mut self, outcome: Outcome, out: &mut impl Output) {
        self.ctx.resume.metrics.outcome(outcome);
        self.write_connected(out, Some((false, "", Some(outcome))));
    }

    /// Restores a resumed session's subscriptions, each with what it missed
    /// queued ahead of live messages, then writes CONNECTED saying how it
    /// went. A subscription that may no longer be held (its grant is gone,
    /// its destination is refused here), or that would have a gap, is not
    /// restored and counts as lost: the client SUBSCRIBEs it again, with
    /// `resume-from` to recover what the cluster still keeps (restoring it
    /// live would deliver new messages the client could not tell from a
    /// replay that skipped some).
    fn restore(&mut self, plan: Plan, out: &mut impl Output) {
        let ctx = self.ctx.clone();
        let same_node = ctx.resume.is_this_node(&plan.state.node);
        let mut lost: Vec<String> = Vec::new();
        for planned in plan.subscriptions {
            let saved = &planned.saved;
            let allowed = self.may_subscribe(&saved.destination).is_ok()
                && !self.subscriptions.iter().any(|s| *s.id == *saved.id)
                && self.subscriptions.len() < ctx.settings.max_subscriptions;
            if !allowed {
                lost.push(saved.id.clone());
                continue;
            }
            let id = saved.id.clone();
            if !self.join_planned(planned, same_node, JoinGap::Leave) {
                lost.push(id);
            }
        }
        let outcome = if lost.is_empty() {
            Outcome::Resumed
        } else {
            Outcome::Partial
        };
        ctx.resume.metrics.outcome(outcome);
        let ids: Vec<&str> = lost.iter().map(String::as_str).collect();
        self.write_connected(out, Some((lost.is_empty(), &lost_header(&ids), None)));
    }

    /// Writes CONNECTED; `resume` is (resumed, lost ids, failure) when the
    /// client presented a token.
    fn write_connected(
        &mut self,
        out: &mut impl Output,
        resume: Option<(bool, &str, Option<Outcome>)>,
    ) {
        let settings = &self.ctx.settings;
        let server_hb = (settings.heartbeat_send_ms, settings.heartbeat_recv_ms);
        self.phase = Phase::Connected;
        let mut connected = Frame::new(Command::Connected)
            .with_header("version", self.version.as_str())
            .with_header("heart-beat", format!("{},{}", server_hb.0, server_hb.1))
            .with_header("server", SERVER_NAME)
            .with_header("session", &*self.session_id);
        if self.ctx.resume.offered_to(self.version) {
            let user = self.principal.as_ref().map(|p| &*p.user);
            let token = self.ctx.resume.connected_token(&self.session_id, user);
            connected = connected.with_header(TOKEN_HEADER, token);
        }
        if let Some((resumed, lost, failure)) = resume {
            connected = connected.with_header("resumed", if resumed { "true" } else { "false" });
            if !lost.is_empty() {
                connected = connected.with_header("resume-lost", lost);
            }
            if let Some(outcome) = failure {
                connected = connected.with_header("resume-failure", outcome.as_str());
            }
        }
        self.ctx.metrics.frames_out(Command::Connected, 1);
        write_frame(out, &connected, self.version);
    }

    /// Authenticates, then names the connection's user on its outbound
    /// handle (for disconnect-user and presence) before any subscription
    /// is restored: the authenticated user, or, where authentication is
    /// off, the CONNECT's `login` if it has one.
    fn authenticate(&mut self, frame: &Frame) -> Result<(), StompError> {
        self.check_credentials(frame)?;
        match &self.principal {
            Some(principal) => self.outbound.set_user(&principal.user),
            None => {
                if let Some(login) = frame.header("login").filter(|l| !l.is_empty()) {
                    self.outbound.set_user(login);
                }
            }
        }
        Ok(())
    }

    /// Checks CONNECT's `login`/`passcode` when authentication is required
    /// and the upgrade carried no bearer token.
    fn check_credentials(&mut self, frame: &Frame) -> Result<(), StompError> {
        let security = &self.ctx.security;
        if self.principal.is_some() || !security.required() {
            return Ok(());
        }
        let result = security.authenticate_connect(frame.header("login"), frame.header("passcode"));
        self.ctx.metrics.authentication(&result);
        match result {
            Ok(principal) => {
                self.principal = Some(Arc::new(principal));
                Ok(())
            }
            Err(e) => Err(StompError::new("authentication failed")
                .detail(e.to_string())
                .reason(CloseReason::Unauthorized)),
        }
    }

    /// Picks the highest version both sides speak: from `accept-version`
    /// when present, else from the WebSocket subprotocol, else 1.0 (a CONNECT
    /// without `accept-version` is a 1.0 client).
    fn negotiate_version(&self, frame: &Frame) -> Result<Version, StompError> {
        let Some(accept) = frame.header("accept-version") else {
            return Ok(self.subprotocol.unwrap_or(Version::V1_0));
        };
        accept
            .split(',')
            .filter_map(Version::parse)
            .max()
            .ok_or_else(|| {
                StompError::new("unsupported protocol version")
                    .detail(format!(
                        "supported versions are {SUPPORTED_VERSIONS}; client accepts {accept:?}"
                    ))
                    .header("version", SUPPORTED_VERSIONS)
            })
    }

    /// Whether a restored subscription to `destination` may still be held:
    /// the same checks a SUBSCRIBE passes.
    pub(super) fn may_subscribe(&self, destination: &str) -> Result<(), StompError> {
        let asked = self.subscribed_as(destination)?;
        self.check_destination(&asked)?;
        self.authorize(Action::Subscribe, &asked)?;
        self.check_wildcard_support(destination)
    }
}
