//! The client's side of positions: `resume-positions` on CONNECT (what
//! the client says it processed) and `resume-lost` on CONNECTED (what the
//! server could not vouch for).

use broker_bridge::Position;

use super::state::SessionState;

/// Parses `resume-positions`; entries that do not parse are ignored (the
/// server's own view stands for them).
pub fn parse_positions(header: &str) -> Vec<(String, Position)> {
    header
        .split(',')
        .filter_map(|entry| {
            let (id, position) = entry.trim().rsplit_once('=')?;
            Some((percent_decode(id)?, position.parse().ok()?))
        })
        .collect()
}

/// Replaces the saved positions with what the client says it processed:
/// the server counts a message once it is written to the socket, and after
/// an abrupt loss of the network the last ones may never have arrived.
pub fn apply_positions(state: &mut SessionState, positions: &[(String, Position)]) {
    for (id, position) in positions {
        if let Some(saved) = state.subscriptions.iter_mut().find(|s| s.id == *id) {
            if saved.position != Some(*position) {
                saved.position = Some(*position);
                // The ring the old position named cannot vouch for this
                // one unless it holds it.
                saved.ring = 0;
            }
        }
    }
}

fn percent_decode(text: &str) -> Option<String> {
    let mut out = Vec::with_capacity(text.len());
    let mut bytes = text.bytes();
    while let Some(b) = bytes.next() {
        if b == b'%' {
            let hex = [bytes.next()?, bytes.next()?];
            out.push(u8::from_str_radix(std::str::from_utf8(&hex).ok()?, 16).ok()?);
        } else {
            out.push(b);
        }
    }
    String::from_utf8(out).ok()
}

/// `resume-lost`: the ids of subscriptions with a gap, comma-separated, with
/// `%` and `,` in an id percent-encoded.
pub fn lost_header(ids: &[&str]) -> String {
    ids.iter()
        .map(|id| id.replace('%', "%25").replace(',', "%2C"))
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resume::state::SavedSubscription;

    #[test]
    fn lost_header_escapes_separators() {
        assert_eq!(lost_header(&["a", "b,c", "d%"]), "a,b%2Cc,d%25");
    }

    #[test]
    fn client_positions_parse_and_override_the_saved_ones() {
        let parsed = parse_positions("room%2C1=0-7, b=12-3,bad,c=x-1,%zz=1-1");
        let want: Vec<(String, Position)> = vec![
            ("room,1".into(), Position::sequence(7)),
            ("b".into(), "12-3".parse().unwrap()),
        ];
        assert_eq!(parsed, want);
        let mut state = SessionState {
            session: "s".into(),
            node: "n".into(),
            user: None,
            subscriptions: vec![SavedSubscription {
                id: "room,1".into(),
                destination: "/topic/a".into(),
                ack: "auto".into(),
                position: Some(Position::sequence(9)),
                ring: 4,
            }],
        };
        apply_positions(&mut state, &parsed);
        assert_eq!(state.subscriptions[0].position, Some(Position::sequence(7)));
        assert_eq!(state.subscriptions[0].ring, 0);
    }
}
