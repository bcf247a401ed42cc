//! Wildcard destinations, as RabbitMQ's topic destinations have them.
//!
//! A destination is a base ending in `/` and a routing key of
//! dot-separated segments: `/topic/chat.room42` is base `/topic/`, key
//! `chat.room42`. In a subscription, a key segment `*` matches exactly one
//! segment and `#` matches zero or more: `/topic/chat.*` matches
//! `/topic/chat.room42` but not `/topic/chat.a.b`; `/topic/user.alice.#`
//! matches `/topic/user.alice` and `/topic/user.alice.inbox.new`.

/// A parsed subscription destination that contains wildcards.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pattern {
    base: String,
    segments: Vec<Segment>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Literal(String),
    One,
    Any,
}

/// Whether a destination contains a wildcard segment.
pub fn is_wildcard(destination: &str) -> bool {
    let (_, key) = split(destination);
    key.split('.').any(|s| s == "*" || s == "#")
}

fn split(destination: &str) -> (&str, &str) {
    match destination.rfind('/') {
        Some(i) => destination.split_at(i + 1),
        None => ("", destination),
    }
}

impl Pattern {
    /// Parses a destination; `None` when it has no wildcard segment.
    pub fn parse(destination: &str) -> Option<Pattern> {
        if !is_wildcard(destination) {
            return None;
        }
        let (base, key) = split(destination);
        let segments = key.split('.').map(Segment::parse).collect();
        Some(Pattern {
            base: base.to_string(),
            segments,
        })
    }

    /// Whether a concrete destination matches.
    pub fn matches(&self, destination: &str) -> bool {
        let (base, key) = split(destination);
        if base != self.base {
            return false;
        }
        match_segments(&self.segments, key.split('.'))
    }

    /// A Redis glob (for PSUBSCRIBE) that matches at least every channel
    /// `<prefix><destination>` this pattern matches. It may match more
    /// (a glob `*` also spans dots); the receiving node filters exactly.
    pub fn redis_glob(&self, prefix: &str) -> String {
        let mut glob = String::new();
        escape_glob(prefix, &mut glob);
        escape_glob(&self.base, &mut glob);
        for (i, segment) in self.segments.iter().enumerate() {
            match segment {
                Segment::Literal(text) => {
                    // After a wildcard the separator is left to the glob's
                    // `*` (a `#` may match zero segments, and then no dot).
                    if i > 0 && matches!(self.segments[i - 1], Segment::Literal(_)) {
                        glob.push('.');
                    }
                    escape_glob(text, &mut glob);
                }
                Segment::One | Segment::Any => {
                    if !glob.ends_with('*') {
                        glob.push('*');
                    }
                }
            }
        }
        glob
    }
}

/// A set of destinations given as concrete names or wildcard patterns, as
/// the `--durable` and `--history` flags take them.
#[derive(Debug, Clone, Default)]
pub struct DestinationSet {
    exact: std::collections::HashSet<Box<str>>,
    patterns: Vec<Pattern>,
}

impl DestinationSet {
    pub fn new(destinations: &[String]) -> DestinationSet {
        let mut set = DestinationSet::default();
        for destination in destinations {
            match Pattern::parse(destination) {
                Some(pattern) => set.patterns.push(pattern),
                None => {
                    set.exact.insert(destination.as_str().into());
                }
            }
        }
        set
    }

    pub fn is_empty(&self) -> bool {
        self.exact.is_empty() && self.patterns.is_empty()
    }

    /// Whether the set names `destination`. An empty set answers with one
    /// length check: the publish path asks for every message.
    pub fn contains(&self, destination: &str) -> bool {
        !self.is_empty()
            && (self.exact.contains(destination)
                || self.patterns.iter().any(|p| p.matches(destination)))
    }
}

/// Whether every destination that `requested` names (a concrete
/// destination or a wildcard subscription) is also named by `grant`, under
/// the same wildcard rules. Authorization uses it so that a wildcard
/// subscription cannot reach further than the grant it claims to fall under:
/// `/topic/chat.#` is not covered by a grant of `/topic/chat.room42`.
///
/// Sound, not complete: it never says yes wrongly, and answers yes for every
/// practical grant (a literal, or one with `*`/`#` segments).
pub fn covers(grant: &str, requested: &str) -> bool {
    let (grant_base, grant_key) = split(grant);
    let (base, key) = split(requested);
    if grant_base != base {
        return false;
    }
    let grant: Vec<Segment> = grant_key.split('.').map(Segment::parse).collect();
    let requested: Vec<Segment> = key.split('.').map(Segment::parse).collect();
    // covered[i][j]: grant[i..] covers requested[j..]; filled from the end,
    // so the cost is |grant| × |requested| whatever the wildcards.
    let (n, m) = (grant.len(), requested.len());
    let mut covered = vec![vec![false; m + 1]; n + 1];
    covered[n][m] = true;
    for i in (0..n).rev() {
        for j in (0..=m).rev() {
            let next = requested.get(j);
            covered[i][j] = match &grant[i] {
                // `#` matches nothing more here, or absorbs the requested
                // segment (a `#` there too: any number of them) and stays.
                Segment::Any => covered[i + 1][j] || (next.is_some() && covered[i][j + 1]),
                // `*` is exactly one segment: the requested one must be
                // exactly one segment as well.
                Segment::One => {
                    matches!(next, Some(Segment::Literal(_) | Segment::One))
                        && covered[i + 1][j + 1]
                }
                Segment::Literal(text) => {
                    matches!(next, Some(Segment::Literal(t)) if t == text) && covered[i + 1][j + 1]
                }
            };
        }
    }
    covered[0][0]
}

impl Segment {
    fn parse(text: &str) -> Segment {
        match text {
            "*" => Segment::One,
            "#" => Segment::Any,
            literal => Segment::Literal(literal.to_string()),
        }
    }
}

/// Matches over the key's segments as they are split, so matching a
/// message (once per wildcard subscription it may reach) allocates nothing.
fn match_segments(pattern: &[Segment], mut keys: std::str::Split<'_, char>) -> bool {
    match pattern.split_first() {
        None => keys.next().is_none(),
        Some((Segment::Any, rest)) => loop {
            if match_segments(rest, keys.clone()) {
                return true;
            }
            if keys.next().is_none() {
                return false;
            }
        },
        Some((Segment::One, rest)) => keys.next().is_some() && match_segments(rest, keys),
        Some((Segment::Literal(text), rest)) => {
            keys.next() == Some(text.as_str()) && match_segments(rest, keys)
        }
    }
}

fn escape_glob(text: &str, out: &mut String) {
    for c in text.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(pattern: &str, destination: &str) -> bool {
        Pattern::parse(pattern).unwrap().matches(destination)
    }

    #[test]
    fn star_is_exactly_one_segment() {
        assert!(m("/topic/chat.*", "/topic/chat.room42"));
        assert!(!m("/topic/chat.*", "/topic/chat"));
        assert!(!m("/topic/chat.*", "/topic/chat.a.b"));
        assert!(m("/topic/*.b", "/topic/a.b"));
        assert!(!m("/topic/chat.*", "/queue/chat.x"));
    }

    #[test]
    fn hash_is_zero_or_more_segments() {
        assert!(m("/topic/user.alice.#", "/topic/user.alice"));
        assert!(m("/topic/user.alice.#", "/topic/user.alice.inbox.new"));
        assert!(!m("/topic/user.alice.#", "/topic/user.bob"));
        assert!(m("/topic/#", "/topic/anything.at.all"));
        assert!(m("/topic/a.#.z", "/topic/a.z"));
        assert!(m("/topic/a.#.z", "/topic/a.b.c.z"));
        assert!(!m("/topic/a.#.z", "/topic/a.b.c"));
    }

    #[test]
    fn only_whole_segments_are_wildcards() {
        assert!(!is_wildcard("/topic/chat.room*"));
        assert!(!is_wildcard("/topic/a#b"));
        assert!(is_wildcard("/topic/*"));
    }

    #[test]
    fn covers_allows_what_the_grant_names_and_nothing_more() {
        assert!(covers("/topic/chat.room42", "/topic/chat.room42"));
        assert!(!covers("/topic/chat.room42", "/topic/chat.room43"));
        assert!(!covers("/topic/chat.room42", "/queue/chat.room42"));
        // Wildcard escalation: a subscription wider than the grant.
        assert!(!covers("/topic/chat.room42", "/topic/chat.*"));
        assert!(!covers("/topic/chat.room42", "/topic/chat.#"));
        assert!(!covers("/topic/chat.room42", "/topic/#"));
        assert!(!covers("/topic/chat.*", "/topic/chat.#"));
        assert!(!covers("/topic/chat.*", "/topic/#"));
        assert!(!covers("/topic/user.alice.#", "/topic/user.*.#"));
        assert!(!covers("/topic/user.alice.#", "/topic/user.#"));
        assert!(!covers("/topic/a.#.z", "/topic/a.#"));
        // Subscriptions within the grant.
        assert!(covers("/topic/chat.*", "/topic/chat.room42"));
        assert!(covers("/topic/chat.*", "/topic/chat.*"));
        assert!(covers("/topic/user.alice.#", "/topic/user.alice"));
        assert!(covers("/topic/user.alice.#", "/topic/user.alice.inbox.*"));
        assert!(covers("/topic/user.alice.#", "/topic/user.alice.#"));
        assert!(covers("/topic/#", "/topic/a.*.#"));
        assert!(covers("/topic/a.#.z", "/topic/a.*.z"));
        assert!(covers("/topic/a.#.z", "/topic/a.#.z"));
        // Not segments: a literal `room*` is only itself.
        assert!(!covers("/topic/chat.room*", "/topic/chat.room42"));
    }

    #[test]
    fn covers_agrees_with_matching_on_concrete_destinations() {
        let grants = ["/topic/chat.*", "/topic/a.#.z", "/topic/#", "/topic/*.b.#"];
        let destinations = [
            "/topic/chat.x",
            "/topic/a.z",
            "/topic/a.q.r.z",
            "/topic/x.b",
            "/topic/x.b.c.d",
            "/topic/chat",
        ];
        for grant in grants {
            for destination in destinations {
                assert_eq!(
                    covers(grant, destination),
                    Pattern::parse(grant).unwrap().matches(destination),
                    "{grant} vs {destination}"
                );
            }
        }
    }

    #[test]
    fn redis_glob_covers_every_match() {
        let cases = [
            ("/topic/chat.*", "/topic/chat.room42"),
            ("/topic/user.alice.#", "/topic/user.alice"),
            ("/topic/a.#.z", "/topic/a.z"),
            ("/topic/#", "/topic/x.y"),
            ("/topic/*.b", "/topic/a.b"),
            ("/topic/#.b", "/topic/b"),
            ("/topic/a.#.z", "/topic/a.b.c.z"),
        ];
        for (pattern, destination) in cases {
            let glob = Pattern::parse(pattern).unwrap().redis_glob("stomp:");
            assert!(
                glob_match(&glob, &format!("stomp:{destination}")),
                "{glob} should match {destination}"
            );
        }
        assert_eq!(
            Pattern::parse("/topic/a?.*").unwrap().redis_glob("p:"),
            "p:/topic/a\\?*"
        );
    }

    /// Redis glob semantics for `*`, `?` and `\` escapes (enough for tests).
    fn glob_match(glob: &str, text: &str) -> bool {
        fn go(g: &[char], t: &[char]) -> bool {
            match g.split_first() {
                None => t.is_empty(),
                Some(('*', rest)) => (0..=t.len()).any(|i| go(rest, &t[i..])),
                Some(('?', rest)) => !t.is_empty() && go(rest, &t[1..]),
                Some(('\\', rest)) => match rest.split_first() {
                    Some((c, rest)) => t.first() == Some(c) && go(rest, &t[1..]),
                    None => false,
                },
                Some((c, rest)) => t.first() == Some(c) && go(rest, &t[1..]),
            }
        }
        go(
            &glob.chars().collect::<Vec<_>>(),
            &text.chars().collect::<Vec<_>>(),
        )
    }
}
