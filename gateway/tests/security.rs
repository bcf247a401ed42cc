//! Security controls against real attacks, end to end over sockets:
//! authentication with every key type and every way a token can be wrong,
//! per-destination authorization (including wildcard escalation), the
//! origin check, frame-rate and per-IP limits, token expiry, and TLS with a
//! certificate reload. See docs/security.md.

mod support;

use std::time::Duration;

use auth::Action;
use gateway::metrics::UpgradeRejection;
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use serde_json::{json, Value};
use stomp::Command;
use support::{
    pki::{hs256, replace_file, tls_connect, unix_now, TempDir, TestCa},
    Client, TestGateway,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const SECRET: &str = "test-secret-of-reasonable-length-0123456789";
const RSA_PRIVATE: &str = include_str!("fixtures/jwt-test-rsa.key");
const RSA_PUBLIC: &str = include_str!("fixtures/jwt-test-rsa.pub");

/// Claims for `user` valid for an hour, with the given `stomp` grants.
fn claims(user: &str, subscribe: &[&str], send: &[&str]) -> Value {
    json!({
        "sub": user,
        "exp": unix_now() + 3600,
        "iat": unix_now(),
        "stomp": { "sub": subscribe, "send": send },
    })
}

fn rs256(claims: &Value) -> String {
    encode(
        &Header::new(Algorithm::RS256),
        claims,
        &EncodingKey::from_rsa_pem(RSA_PRIVATE.as_bytes()).unwrap(),
    )
    .unwrap()
}

fn base64url(data: &[u8]) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in data.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |acc, (i, b)| acc | (*b as u32) << (16 - 8 * i));
        for i in 0..=chunk.len() {
            out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
        }
    }
    out
}

/// A gateway that requires HS256 tokens signed with [`SECRET`].
async fn hs256_gateway(dir: &TempDir, extra: &[&str]) -> TestGateway {
    let secret = dir.write("jwt.secret", format!("{SECRET}\n"));
    let mut flags = vec!["--jwt-secret-file", secret.as_str(), "--jwt-leeway-s", "0"];
    flags.extend_from_slice(extra);
    support::start(&flags).await
}

/// CONNECTs with `passcode` and returns the reply (CONNECTED or ERROR).
async fn connect_with(gw: &TestGateway, passcode: &str) -> (Client, stomp::Frame) {
    let mut c = Client::open(gw.addr, &["v12.stomp"]).await;
    let reply = c
        .connect(&[
            ("accept-version", "1.2"),
            ("heart-beat", "0,0"),
            ("login", "ignored-for-jwt"),
            ("passcode", passcode),
        ])
        .await;
    (c, reply)
}

fn auth_count(gw: &TestGateway, result: &str) -> u64 {
    let text = gw.node.metrics().render(0, 0);
    let needle = format!("gateway_authentications_total{{result=\"{result}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(needle.as_str()))
        .map_or(0, |v| v.trim().parse().unwrap())
}

#[tokio::test]
async fn hs256_token_as_connect_passcode_is_accepted() {
    let dir = TempDir::new("hs256");
    let gw = hs256_gateway(&dir, &[]).await;
    let token = hs256(&claims("alice", &["/topic/chat.lobby"], &[]), SECRET);
    let (mut c, reply) = connect_with(&gw, &token).await;
    assert_eq!(reply.command, Command::Connected, "{reply:?}");
    c.subscribe("s", "/topic/chat.lobby", "auto").await;
    assert_eq!(auth_count(&gw, "accepted"), 1);
}

#[tokio::test]
async fn short_or_empty_hmac_secrets_are_refused_at_start() {
    let dir = TempDir::new("weak");
    for secret in ["", "\n", "short-secret"] {
        let path = dir.write("weak.secret", secret);
        let config = gateway::Config::load_from([
            "gateway",
            "--listen",
            "127.0.0.1:0",
            "--jwt-secret-file",
            &path,
        ])
        .unwrap();
        let err = gateway::Gateway::bind(config).await.err().expect("refused");
        assert!(err.to_string().contains("at least 32"), "{err}");
    }
}

#[tokio::test]
async fn rs256_token_verified_with_a_pem_public_key() {
    let dir = TempDir::new("rs256");
    let key = dir.write("rsa.pub", RSA_PUBLIC);
    let gw = support::start(&["--jwt-public-key", &key]).await;
    let (_c, reply) = connect_with(&gw, &rs256(&claims("bob", &[], &[]))).await;
    assert_eq!(reply.command, Command::Connected, "{reply:?}");
}

#[tokio::test]
async fn es256_token_verified_with_a_jwks_key_chosen_by_kid() {
    let dir = TempDir::new("es256");
    let pair = rcgen::KeyPair::generate().unwrap();
    let point = pair.public_key_raw();
    assert_eq!(point.len(), 65, "uncompressed P-256 point");
    let jwks = json!({ "keys": [{
        "kty": "EC", "crv": "P-256", "kid": "key-2026", "use": "sig", "alg": "ES256",
        "x": base64url(&point[1..33]), "y": base64url(&point[33..]),
    }]});
    let path = dir.write("jwks.json", jwks.to_string());
    let gw = support::start(&["--jwt-public-key", &path]).await;
    let signing = EncodingKey::from_ec_pem(pair.serialize_pem().as_bytes()).unwrap();
    let sign = |kid: &str| {
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some(kid.to_string());
        encode(&header, &claims("carol", &[], &[]), &signing).unwrap()
    };
    let (_c, reply) = connect_with(&gw, &sign("key-2026")).await;
    assert_eq!(reply.command, Command::Connected, "{reply:?}");
    let (mut c, reply) = connect_with(&gw, &sign("unknown-kid")).await;
    assert_eq!(reply.command, Command::Error, "a kid the JWKS lacks");
    c.expect_closed().await;
}

/// Every way a token can be wrong gets ERROR "authentication failed" naming
/// the check, then the close, and is counted by result.
#[tokio::test]
async fn bad_tokens_are_refused_with_the_reason() {
    let dir = TempDir::new("bad-tokens");
    let key = dir.write("rsa.pub", RSA_PUBLIC);
    let gw = hs256_gateway(
        &dir,
        &[
            "--jwt-public-key",
            &key,
            "--jwt-issuer",
            "https://auth.example.com",
            "--jwt-audience",
            "chat",
        ],
    )
    .await;
    let good = |extra: Value| {
        let mut c = json!({
            "sub": "mallory", "exp": unix_now() + 3600,
            "iss": "https://auth.example.com", "aud": "chat",
        });
        for (k, v) in extra.as_object().unwrap() {
            c[k] = v.clone();
        }
        c
    };
    let good_token = hs256(&good(json!({})), SECRET);
    let (_ok, reply) = connect_with(&gw, &good_token).await;
    assert_eq!(
        reply.command,
        Command::Connected,
        "the baseline token is valid"
    );

    let unsigned = format!(
        "{}.{}.",
        base64url(br#"{"alg":"none","typ":"JWT"}"#),
        base64url(good(json!({})).to_string().as_bytes())
    );
    // Swap the payload to claim another user, keeping the old signature.
    let parts: Vec<&str> = good_token.split('.').collect();
    let forged_payload = base64url(good(json!({"sub": "admin"})).to_string().as_bytes());
    let tampered = good_token.replace(parts[1], &forged_payload);
    // Algorithm confusion: HS256 "signed" with the server's RSA public key.
    let confused = hs256(&good(json!({})), RSA_PUBLIC);
    let cases: Vec<(&str, String, &str)> = vec![
        (
            "expired",
            hs256(&good(json!({"exp": unix_now() - 60})), SECRET),
            "expired",
        ),
        (
            "not yet valid",
            hs256(&good(json!({"nbf": unix_now() + 3600})), SECRET),
            "not_yet_valid",
        ),
        (
            "wrong issuer",
            hs256(&good(json!({"iss": "https://evil.example"})), SECRET),
            "wrong_issuer",
        ),
        (
            "wrong audience",
            hs256(&good(json!({"aud": "billing"})), SECRET),
            "wrong_audience",
        ),
        (
            "bad signature",
            hs256(&good(json!({})), "some-other-secret"),
            "bad_signature",
        ),
        ("tampered payload", tampered, "bad_signature"),
        ("alg none", unsigned, "malformed"),
        ("algorithm confusion", confused, "bad_signature"),
        (
            "no exp",
            hs256(&json!({"sub": "x"}), SECRET),
            "missing_claim",
        ),
        ("garbage", "not-a-token".to_string(), "malformed"),
    ];
    for (name, token, result) in cases {
        let before = auth_count(&gw, result);
        let (mut c, reply) = connect_with(&gw, &token).await;
        assert_eq!(reply.command, Command::Error, "{name}: {reply:?}");
        assert_eq!(
            reply.header("message"),
            Some("authentication failed"),
            "{name}"
        );
        c.expect_closed().await;
        assert_eq!(
            auth_count(&gw, result),
            before + 1,
            "{name} counted as {result}"
        );
    }
    // No credentials at all.
    let mut c = Client::open(gw.addr, &["v12.stomp"]).await;
    let reply = c.connect(&[("accept-version", "1.2")]).await;
    assert_eq!(reply.command, Command::Error);
    assert!(String::from_utf8_lossy(&reply.body).contains("credentials required"));
    c.expect_closed().await;
    assert_eq!(
        gw.node
            .metrics()
            .closed(gateway::metrics::CloseReason::Unauthorized),
        11
    );
}

#[tokio::test]
async fn bearer_token_on_the_upgrade() {
    let dir = TempDir::new("bearer");
    let gw = hs256_gateway(&dir, &[]).await;
    let token = hs256(&claims("dave", &["/topic/a"], &[]), SECRET);
    let mut c =
        Client::open_with_headers(gw.addr, &[("Authorization", &format!("Bearer {token}"))])
            .await
            .expect("valid bearer token upgrades");
    let reply = c.connect(&[("accept-version", "1.2")]).await;
    assert_eq!(reply.command, Command::Connected, "no passcode needed");
    c.subscribe("s", "/topic/a", "auto").await;

    let expired = hs256(&json!({"sub": "dave", "exp": unix_now() - 10}), SECRET);
    let refused =
        Client::open_with_headers(gw.addr, &[("Authorization", &format!("Bearer {expired}"))])
            .await
            .err()
            .expect("expired bearer token is refused");
    assert!(refused.starts_with("HTTP/1.1 401"), "{refused}");
    assert!(
        refused
            .to_ascii_lowercase()
            .contains("www-authenticate: bearer"),
        "{refused}"
    );
    assert_eq!(
        gw.node
            .metrics()
            .upgrades_rejected(UpgradeRejection::Unauthorized),
        1
    );
}

#[tokio::test]
async fn users_file_logins() {
    let dir = TempDir::new("users");
    let digest: String = ring::digest::digest(&ring::digest::SHA256, b"bot-passcode-9f8e7d")
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let users = dir.write(
        "users.toml",
        format!(
            "[[user]]\nlogin = \"alerts-bot\"\npasscode_sha256 = \"{digest}\"\n\
             send = [\"/topic/alerts.{{sub}}\"]\n"
        ),
    );
    let gw = support::start(&["--users-file", &users]).await;
    let mut c = Client::open(gw.addr, &["v12.stomp"]).await;
    let reply = c
        .connect(&[
            ("accept-version", "1.2"),
            ("login", "alerts-bot"),
            ("passcode", "bot-passcode-9f8e7d"),
        ])
        .await;
    assert_eq!(reply.command, Command::Connected, "{reply:?}");
    c.send(
        Command::Send,
        &[
            ("destination", "/topic/alerts.alerts-bot"),
            ("receipt", "r"),
        ],
        b"disk full",
    )
    .await;
    assert_eq!(c.frame().await.command, Command::Receipt);

    for (login, passcode) in [("alerts-bot", "wrong"), ("nobody", "bot-passcode-9f8e7d")] {
        let mut c = Client::open(gw.addr, &["v12.stomp"]).await;
        let reply = c
            .connect(&[
                ("accept-version", "1.2"),
                ("login", login),
                ("passcode", passcode),
            ])
            .await;
        assert_eq!(reply.command, Command::Error, "{login}/{passcode}");
        assert!(String::from_utf8_lossy(&reply.body).contains("unknown login or wrong passcode"));
        c.expect_closed().await;
    }
}

/// Claims decide destinations; a denied frame gets ERROR naming the
/// destination, the connection closes, and the decision is counted.
#[tokio::test]
async fn destinations_outside_the_grants_are_denied() {
    let dir = TempDir::new("authz");
    let gw = hs256_gateway(&dir, &[]).await;
    let token = hs256(
        &claims(
            "alice",
            &["/topic/chat.room42", "/topic/user.{sub}.#"],
            &["/topic/chat.room42"],
        ),
        SECRET,
    );
    // Allowed: the room, own per-user destinations (literal and wildcard).
    let (mut c, _) = connect_with(&gw, &token).await;
    c.subscribe("room", "/topic/chat.room42", "auto").await;
    c.subscribe("inbox", "/topic/user.alice.inbox", "auto")
        .await;
    c.subscribe("mine", "/topic/user.alice.#", "auto").await;
    c.send(
        Command::Send,
        &[("destination", "/topic/chat.room42"), ("receipt", "sent")],
        b"hi",
    )
    .await;
    let mut got_receipt = false;
    for _ in 0..3 {
        let f = c.frame().await;
        if f.command == Command::Receipt {
            got_receipt = true;
            break;
        }
    }
    assert!(got_receipt, "SEND to the granted room succeeds");

    let denied: [(&str, Command, &str); 7] = [
        ("other room", Command::Subscribe, "/topic/chat.room43"),
        ("room wildcard #", Command::Subscribe, "/topic/chat.#"),
        ("room wildcard *", Command::Subscribe, "/topic/chat.*"),
        ("everything", Command::Subscribe, "/topic/#"),
        ("other user", Command::Subscribe, "/topic/user.bob.inbox"),
        ("every user", Command::Subscribe, "/topic/user.*.inbox"),
        ("send elsewhere", Command::Send, "/topic/chat.room43"),
    ];
    for (name, command, destination) in denied {
        let (mut c, _) = connect_with(&gw, &token).await;
        let headers: Vec<(&str, &str)> = match command {
            Command::Subscribe => vec![("id", "x"), ("destination", destination)],
            _ => vec![("destination", destination)],
        };
        c.send(command, &headers, b"").await;
        let e = c.expect_error().await;
        assert_eq!(e.header("message"), Some("access denied"), "{name}");
        assert_eq!(e.header("destination"), Some(destination), "{name}");
    }
    // A SEND inside a transaction is checked when sent, not at COMMIT.
    let (mut c, _) = connect_with(&gw, &token).await;
    c.send(Command::Begin, &[("transaction", "t1")], b"").await;
    c.send(
        Command::Send,
        &[("destination", "/topic/chat.room43"), ("transaction", "t1")],
        b"sneaky",
    )
    .await;
    assert_eq!(
        c.expect_error().await.header("message"),
        Some("access denied")
    );

    let metrics = &gw.node.metrics();
    assert_eq!(metrics.authorizations(Action::Subscribe, false), 6);
    assert_eq!(metrics.authorizations(Action::Send, false), 2);
    assert_eq!(metrics.authorizations(Action::Subscribe, true), 3);
    assert_eq!(metrics.authorizations(Action::Send, true), 1);
    assert_eq!(metrics.closed(gateway::metrics::CloseReason::Forbidden), 8);
}

#[tokio::test]
async fn tokens_without_a_stomp_claim_get_the_default_grants() {
    let dir = TempDir::new("defaults");
    let gw = hs256_gateway(&dir, &["--default-subscribe", "/topic/user.{sub}.#"]).await;
    let token = hs256(&json!({"sub": "erin", "exp": unix_now() + 600}), SECRET);
    let (mut c, _) = connect_with(&gw, &token).await;
    c.subscribe("own", "/topic/user.erin.#", "auto").await;
    c.send(Command::Send, &[("destination", "/topic/user.erin.x")], b"")
        .await;
    assert_eq!(
        c.expect_error().await.header("message"),
        Some("access denied"),
        "no default SEND grant"
    );
}

#[tokio::test]
async fn expired_token_closes_the_connection_unless_allowed() {
    let dir = TempDir::new("expiry");
    let gw = hs256_gateway(&dir, &[]).await;
    let short = hs256(&json!({"sub": "frank", "exp": unix_now() + 2}), SECRET);
    let (mut c, reply) = connect_with(&gw, &short).await;
    assert_eq!(reply.command, Command::Connected);
    let e = c.expect_error().await;
    assert_eq!(e.header("message"), Some("token expired"));
    assert_eq!(
        gw.node
            .metrics()
            .closed(gateway::metrics::CloseReason::TokenExpired),
        1
    );

    let lenient = hs256_gateway(&dir, &["--token-expiry", "allow"]).await;
    let mut short = claims("frank", &["/topic/x"], &[]);
    short["exp"] = json!(unix_now() + 2);
    let short = hs256(&short, SECRET);
    let (mut c, reply) = connect_with(&lenient, &short).await;
    assert_eq!(reply.command, Command::Connected);
    tokio::time::sleep(Duration::from_secs(4)).await;
    c.send(
        Command::Subscribe,
        &[
            ("id", "s"),
            ("destination", "/topic/x"),
            ("receipt", "alive"),
        ],
        b"",
    )
    .await;
    let f = c.frame().await;
    assert_eq!(f.command, Command::Receipt, "still open after exp: {f:?}");
}

/// A SEND of a fresh token to `/gateway/token` keeps a connection past
/// its first token's expiry, with its subscriptions; a token for another
/// user, or one whose grants no longer cover a held subscription, ends the
/// connection with an ERROR; without a refresh the expiry still closes it.
#[tokio::test]
async fn a_token_refreshed_in_place_keeps_the_connection_and_its_subscriptions() {
    let dir = TempDir::new("refresh");
    let gw = hs256_gateway(&dir, &[]).await;
    let short = |user: &str, subscribe: &[&str], send: &[&str], secs: u64| {
        let mut c = claims(user, subscribe, send);
        c["exp"] = json!(unix_now() + secs);
        hs256(&c, SECRET)
    };
    let room = ["/topic/refresh.room"];
    let (mut c, reply) = connect_with(&gw, &short("grace", &room, &room, 2)).await;
    assert_eq!(reply.command, Command::Connected);
    c.subscribe("0", "/topic/refresh.room", "auto").await;
    c.send(
        Command::Send,
        &[("destination", "/gateway/token"), ("receipt", "refreshed")],
        short("grace", &room, &room, 3600).as_bytes(),
    )
    .await;
    let r = c.frame().await;
    assert_eq!(r.command, Command::Receipt, "{r:?}");
    assert_eq!(r.header("receipt-id"), Some("refreshed"));
    // Past the first token's expiry: still open, still subscribed.
    tokio::time::sleep(Duration::from_secs(3)).await;
    c.send(
        Command::Send,
        &[("destination", "/topic/refresh.room")],
        b"after the old expiry",
    )
    .await;
    let m = c.frame().await;
    assert_eq!(m.command, Command::Message, "{m:?}");
    assert_eq!(&m.body[..], b"after the old expiry");
    let text = gw.node.metrics().render(0, 0);
    assert!(
        text.contains("gateway_token_refreshes_total 1"),
        "refresh not counted"
    );

    // Another user's token: refused, the connection ends.
    c.send(
        Command::Send,
        &[("destination", "/gateway/token")],
        short("mallory", &room, &room, 3600).as_bytes(),
    )
    .await;
    let e = c.expect_error().await;
    assert_eq!(e.header("message"), Some("authentication failed"), "{e:?}");
    c.expect_closed().await;

    // A token that no longer allows a held subscription: ERROR naming it.
    let (mut c, _) = connect_with(&gw, &short("grace", &room, &room, 3600)).await;
    c.subscribe("0", "/topic/refresh.room", "auto").await;
    c.send(
        Command::Send,
        &[("destination", "/gateway/token")],
        short("grace", &["/topic/other"], &[], 3600).as_bytes(),
    )
    .await;
    let e = c.expect_error().await;
    assert_eq!(e.header("message"), Some("access denied"), "{e:?}");
    assert_eq!(e.header("destination"), Some("/topic/refresh.room"));

    // Without a refresh, the expiry still closes the connection.
    let (mut c, _) = connect_with(&gw, &short("grace", &room, &room, 2)).await;
    let e = c.expect_error().await;
    assert_eq!(e.header("message"), Some("token expired"));
}

#[tokio::test]
async fn origin_allow_list_blocks_cross_site_upgrades() {
    // Default: only the gateway's own host.
    let gw = support::start(&[]).await;
    let own = format!("http://{}", gw.addr);
    assert!(Client::open_with_headers(gw.addr, &[("Origin", &own)])
        .await
        .is_ok());
    assert!(
        Client::open_with_headers(gw.addr, &[]).await.is_ok(),
        "non-browser"
    );
    let refused = Client::open_with_headers(gw.addr, &[("Origin", "https://evil.example")])
        .await
        .err()
        .expect("cross-site upgrade refused");
    assert!(refused.starts_with("HTTP/1.1 403"), "{refused}");
    assert_eq!(
        gw.node
            .metrics()
            .upgrades_rejected(UpgradeRejection::Origin),
        1
    );

    let listed = support::start(&["--allowed-origin", "https://chat.example.com"]).await;
    assert!(
        Client::open_with_headers(listed.addr, &[("Origin", "https://chat.example.com")])
            .await
            .is_ok()
    );
    for origin in [
        "https://chat.example.com.evil.io",
        "http://chat.example.com",
        "null",
    ] {
        assert!(
            Client::open_with_headers(listed.addr, &[("Origin", origin)])
                .await
                .is_err(),
            "{origin}"
        );
    }
    let any = support::start(&["--allowed-origin", "*"]).await;
    assert!(
        Client::open_with_headers(any.addr, &[("Origin", "https://x.example")])
            .await
            .is_ok()
    );
}

#[tokio::test]
async fn frame_flood_is_cut_off_by_the_rate_limit() {
    let gw = support::start(&["--max-frame-rate", "5", "--frame-burst", "5"]).await;
    // Within the burst: fine.
    let mut polite = Client::connected(gw.addr).await;
    polite
        .send(
            Command::Send,
            &[("destination", "/topic/a"), ("receipt", "1")],
            b"",
        )
        .await;
    assert_eq!(polite.frame().await.command, Command::Receipt);
    // 20 frames at once: over the bucket.
    let mut flood = Client::connected(gw.addr).await;
    let frame = stomp::Frame::new(Command::Send)
        .with_header("destination", "/topic/a")
        .to_bytes(stomp::Version::V1_2);
    flood.send_raw(&frame.repeat(20)).await;
    let e = flood.expect_error().await;
    assert_eq!(e.header("message"), Some("rate limit exceeded"));
    assert_eq!(
        gw.node
            .metrics()
            .closed(gateway::metrics::CloseReason::RateLimited),
        1
    );
}

/// A reconnect storm meets the node's new-connection rate: the burst is
/// accepted, the rest get 503 with `Retry-After` (counted), and the
/// connections already held are untouched.
#[tokio::test]
async fn new_connections_beyond_the_connect_rate_get_503_with_retry_after() {
    let gw = support::start(&["--max-connect-rate", "1", "--connect-burst", "3"]).await;
    let mut held = Client::connected(gw.addr).await;
    held.subscribe("s", "/topic/held", "auto").await;
    let mut accepted = Vec::new();
    let mut refused = Vec::new();
    for _ in 0..10 {
        match Client::open_with_headers(gw.addr, &[]).await {
            Ok(c) => accepted.push(c),
            Err(head) => refused.push(head),
        }
    }
    // The held client took one token of the burst of 3; 1/s refills one a
    // second, so at most one more may have come back meanwhile.
    assert!(
        (2..=3).contains(&accepted.len()),
        "{} accepted",
        accepted.len()
    );
    for head in &refused {
        assert!(head.starts_with("HTTP/1.1 503"), "{head}");
        assert!(
            head.to_ascii_lowercase().contains("retry-after: 1"),
            "{head}"
        );
    }
    assert_eq!(
        gw.node
            .metrics()
            .upgrades_rejected(gateway::metrics::UpgradeRejection::ConnectRate),
        refused.len() as u64
    );
    // The connection the node already held still works.
    held.send(
        Command::Send,
        &[("destination", "/topic/held"), ("receipt", "r")],
        b"still here",
    )
    .await;
    let mut got = Vec::new();
    for _ in 0..2 {
        got.push(held.frame().await.command);
    }
    got.sort_by_key(|c| c.to_string());
    assert_eq!(got, [Command::Message, Command::Receipt]);
    // Retrying after a moment succeeds.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert!(Client::open_with_headers(gw.addr, &[]).await.is_ok());
}

#[tokio::test]
async fn connections_per_ip_are_capped_behind_trusted_proxies_only() {
    let gw = support::start(&["--max-connections-per-ip", "2"]).await;
    let a = Client::open_with_headers(gw.addr, &[]).await.unwrap();
    let _b = Client::open_with_headers(gw.addr, &[]).await.unwrap();
    // X-Forwarded-For from an untrusted peer changes nothing.
    let refused = Client::open_with_headers(gw.addr, &[("X-Forwarded-For", "198.51.100.1")])
        .await
        .err()
        .expect("third connection from 127.0.0.1 refused");
    assert!(refused.starts_with("HTTP/1.1 429"), "{refused}");
    drop(a);
    // The slot frees when the connection ends.
    let mut reopened = None;
    for _ in 0..50 {
        if let Ok(c) = Client::open_with_headers(gw.addr, &[]).await {
            reopened = Some(c);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(reopened.is_some(), "a closed connection frees its slot");

    // Behind a trusted proxy (loopback here), each forwarded client counts.
    let proxied = support::start(&[
        "--max-connections-per-ip",
        "2",
        "--trusted-proxy",
        "127.0.0.0/8",
    ])
    .await;
    let via = |ip: &'static str| {
        let addr = proxied.addr;
        async move {
            // A forged left-most entry must not matter.
            let header = format!("6.6.6.6, {ip}");
            Client::open_with_headers(addr, &[("X-Forwarded-For", &header)]).await
        }
    };
    let _c1 = via("198.51.100.1").await.unwrap();
    let _c2 = via("198.51.100.1").await.unwrap();
    assert!(via("198.51.100.1").await.is_err(), "third from one client");
    assert!(
        via("198.51.100.2").await.is_ok(),
        "another client is unaffected"
    );
    assert_eq!(
        proxied
            .node
            .metrics()
            .upgrades_rejected(UpgradeRejection::PerIp),
        1
    );
}

#[tokio::test]
async fn tls_serves_wss_and_reloads_the_certificate_without_restart() {
    let dir = TempDir::new("tls");
    let ca = TestCa::new();
    let first = ca.issue("server one");
    let cert = dir.write("server.crt", &first.cert_pem);
    let key = dir.write("server.key", &first.key_pem);
    let gw = support::start(&[
        "--tls-cert",
        &cert,
        "--tls-key",
        &key,
        "--tls-reload-ms",
        "100",
    ])
    .await;

    // wss:// end to end: handshake, upgrade, CONNECT.
    let (tls, presented) = tls_connect(&ca, gw.addr).await.expect("TLS handshake");
    assert_eq!(presented, first.der);
    let mut client = Client::upgrade(
        Box::new(tls),
        "localhost",
        &[("Sec-WebSocket-Protocol", "v12.stomp")],
    )
    .await
    .expect("upgrade over TLS");
    let reply = client.connect(&[("accept-version", "1.2")]).await;
    assert_eq!(reply.command, Command::Connected);

    // A plaintext client on the TLS port fails its handshake; nothing else does.
    let mut plain = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    plain
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut sink = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), plain.read_to_end(&mut sink)).await;
    assert!(!String::from_utf8_lossy(&sink).contains("200 OK"));
    assert_eq!(gw.node.metrics().tls_handshake_failures.get(), 1);

    // Renewal: new key and certificate replace the files.
    let second = ca.issue("server two");
    replace_file(&dir.path("server.key"), &second.key_pem);
    replace_file(&dir.path("server.crt"), &second.cert_pem);
    let mut served = None;
    for _ in 0..100 {
        let (_, presented) = tls_connect(&ca, gw.addr).await.expect("TLS handshake");
        if presented == second.der {
            served = Some(presented);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(served.is_some(), "the renewed certificate is served");
    // The connection opened before the reload is untouched.
    client
        .send(
            Command::Subscribe,
            &[("id", "s"), ("destination", "/topic/t"), ("receipt", "r")],
            b"",
        )
        .await;
    assert_eq!(client.frame().await.command, Command::Receipt);
    assert!(gw.node.metrics().tls_reloads.get() >= 1);

    // A broken file is refused and the current certificate stays.
    replace_file(&dir.path("server.crt"), "not a certificate");
    tokio::time::sleep(Duration::from_millis(400)).await;
    let (_, presented) = tls_connect(&ca, gw.addr).await.expect("still serving");
    assert_eq!(presented, second.der);
    assert!(gw.node.metrics().tls_reload_failures.get() >= 1);
}

#[tokio::test]
async fn an_authenticated_sender_is_named_by_the_server_not_by_itself() {
    let dir = TempDir::new("user-id");
    let gw = hs256_gateway(&dir, &[]).await;
    let token = hs256(
        &claims("alice", &["/topic/chat.room1"], &["/topic/chat.room1"]),
        SECRET,
    );
    let (mut c, _) = connect_with(&gw, &token).await;
    c.subscribe("s", "/topic/chat.room1", "auto").await;
    c.send(
        Command::Send,
        &[
            ("destination", "/topic/chat.room1"),
            ("user-id", "mallory"),
            ("user-id", "eve"),
        ],
        b"who am i",
    )
    .await;
    let m = c.frame().await;
    assert_eq!(m.command, Command::Message);
    let named: Vec<&str> = m
        .headers
        .iter()
        .filter(|h| h.name() == "user-id")
        .map(|h| h.value())
        .collect();
    assert_eq!(named, ["alice"], "only the verified subject, once");
}
