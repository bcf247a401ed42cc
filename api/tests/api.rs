//! The api against real PostgreSQL and Redis servers, with gateways in
//! process and the api as a real child process (so it can be killed).

mod support;

use std::time::Duration;

use serde_json::{json, Value};
use support::{
    gateway, http,
    metric_names::{exported_names, referenced_names},
    path_of, send_numbered, stomp_client, stored, wait_stored, ApiProcess, Postgres, RedisServer,
    WAIT,
};
use tokio::time::sleep;

const ROOM: &str = "/topic/chat.room1";

/// Every page of `destination`'s history, oldest first.
async fn whole_history(api: &ApiProcess, destination: &str, limit: u32) -> Vec<Value> {
    let mut all = Vec::new();
    let mut before: Option<String> = None;
    loop {
        let mut path = format!("{}?limit={limit}", path_of(destination));
        if let Some(b) = &before {
            path.push_str(&format!("&before={b}"));
        }
        let (status, page) = http(api.addr, "GET", &path, &[], None).await;
        assert_eq!(status, 200, "{page}");
        all.extend(page["messages"].as_array().unwrap().iter().cloned());
        match page["next_before"].as_str() {
            Some(next) => before = Some(next.to_string()),
            None => break,
        }
    }
    all.reverse();
    all
}

fn numbers(messages: &[Value]) -> Vec<usize> {
    messages
        .iter()
        .map(|m| m["headers"]["x-n"].as_str().unwrap().parse().unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_sent_through_a_gateway_appear_in_history_in_order() {
    let (pg, redis) = (Postgres::start().await, RedisServer::start().await);
    let gw = gateway(&redis, "/topic/chat.#", &[]).await;
    let api = ApiProcess::start(&pg, &redis, &["--durable", "/topic/chat.#"]).await;
    let db = pg.client().await;
    let mut client = stomp_client(&gw).await;
    send_numbered(&mut client, ROOM, 0, 120).await;
    send_numbered(&mut client, "/topic/typing.room1", 0, 5).await;
    assert_eq!(wait_stored(&db, ROOM, 120).await, 120);

    let history = whole_history(&api, ROOM, 50).await;
    assert_eq!(
        numbers(&history),
        (0..120).collect::<Vec<_>>(),
        "all, in order, once"
    );
    let first = &history[0];
    assert_eq!(first["body"], "message 0");
    assert!(first["message_id"].as_str().unwrap().contains('-'));
    assert!(first["timestamp_ms"].as_i64().unwrap() > 1_600_000_000_000);

    // Paging forward from a cursor: the messages right after it.
    let cursor = history[9]["position"].as_str().unwrap();
    let path = format!("{}?after={cursor}&limit=5", path_of(ROOM));
    let (status, page) = http(api.addr, "GET", &path, &[], None).await;
    assert_eq!(status, 200);
    let forward = page["messages"].as_array().unwrap();
    assert_eq!(numbers(forward), [14, 13, 12, 11, 10], "newest first");
    assert_eq!(page["next_after"], history[14]["position"]);
    assert_eq!(page["next_before"], Value::Null);

    // Non-durable destinations are neither stored nor served.
    assert_eq!(stored(&db, "/topic/typing.room1").await, 0);
    let (status, body) = http(api.addr, "GET", &path_of("/topic/typing.room1"), &[], None).await;
    assert_eq!((status, body["error"].as_str()), (404, Some("not_durable")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_api_mid_stream_loses_and_duplicates_nothing() {
    let (pg, redis) = (Postgres::start().await, RedisServer::start().await);
    let gw = gateway(&redis, "/topic/chat.#", &[]).await;
    let flags = ["--consumer", "c1", "--batch-size", "20"];
    let mut api = ApiProcess::start(&pg, &redis, &flags).await;
    let db = pg.client().await;
    let total = 3_000;
    let sender = {
        let mut client = stomp_client(&gw).await;
        tokio::spawn(async move {
            for chunk in 0..30 {
                send_numbered(&mut client, ROOM, chunk * 100, 100).await;
                sleep(Duration::from_millis(20)).await;
            }
        })
    };
    // Kill it once some, but not all, messages are stored.
    let mut seen = 0;
    for _ in 0..400 {
        seen = stored(&db, ROOM).await;
        if seen >= 300 {
            break;
        }
        sleep(Duration::from_millis(5)).await;
    }
    api.kill();
    assert!(
        seen > 0 && seen < total,
        "killed mid-stream ({seen} stored)"
    );
    sleep(Duration::from_millis(300)).await;
    api.restart().await;
    sender.await.unwrap();
    assert_eq!(wait_stored(&db, ROOM, total).await, total);
    sleep(Duration::from_millis(300)).await;
    let row = db
        .query_one(
            "SELECT count(*), count(DISTINCT message_id), count(DISTINCT headers->>'x-n') \
             FROM messages WHERE destination = $1",
            &[&ROOM],
        )
        .await
        .unwrap();
    let (rows, ids, numbers): (i64, i64, i64) = (row.get(0), row.get(1), row.get(2));
    assert_eq!(
        (rows, ids, numbers),
        (total, total, total),
        "none lost, none doubled"
    );
    let pending = redis.cli(&["XPENDING", "stomp:durable", "api"]);
    assert!(pending.starts_with("0\n"), "all acknowledged: {pending}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redelivered_entries_are_skipped_not_stored_twice() {
    let (pg, redis) = (Postgres::start().await, RedisServer::start().await);
    let gw = gateway(&redis, "/topic/chat.#", &[]).await;
    let mut api = ApiProcess::start(&pg, &redis, &["--consumer", "c1"]).await;
    let db = pg.client().await;
    let mut client = stomp_client(&gw).await;
    send_numbered(&mut client, ROOM, 0, 200).await;
    assert_eq!(wait_stored(&db, ROOM, 200).await, 200);
    assert_eq!(api.terminate(), Some(0), "SIGTERM exits cleanly");
    // As after a crash between COMMIT and XACK: the group hands every
    // entry out again.
    assert_eq!(
        redis
            .cli(&["XGROUP", "SETID", "stomp:durable", "api", "0"])
            .trim(),
        "OK"
    );
    api.restart().await;
    let deadline = tokio::time::Instant::now() + WAIT;
    while api.metric("api_duplicate_messages_total").await < 200.0
        && tokio::time::Instant::now() < deadline
    {
        sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(api.metric("api_duplicate_messages_total").await, 200.0);
    assert_eq!(api.metric("api_persisted_messages_total").await, 0.0);
    assert_eq!(stored(&db, ROOM).await, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_split_the_stream() {
    let (pg, redis) = (Postgres::start().await, RedisServer::start().await);
    let gw = gateway(&redis, "/topic/chat.#", &[]).await;
    let flags = |name| ["--consumer", name, "--batch-size", "10"];
    let a = ApiProcess::start(&pg, &redis, &flags("a")).await;
    let b = ApiProcess::start(&pg, &redis, &flags("b")).await;
    let db = pg.client().await;
    let mut client = stomp_client(&gw).await;
    for chunk in 0..20 {
        send_numbered(&mut client, ROOM, chunk * 100, 100).await;
        sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(wait_stored(&db, ROOM, 2_000).await, 2_000);
    sleep(Duration::from_millis(200)).await;
    let (by_a, by_b) = (
        a.metric("api_persisted_messages_total").await,
        b.metric("api_persisted_messages_total").await,
    );
    assert!(by_a > 0.0 && by_b > 0.0, "both did work: {by_a} + {by_b}");
    assert_eq!(by_a + by_b, 2_000.0, "and no entry was stored by both");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entries_left_pending_by_a_dead_consumer_are_claimed() {
    let (pg, redis) = (Postgres::start().await, RedisServer::start().await);
    let gw = gateway(&redis, "/topic/chat.#", &[]).await;
    let mut client = stomp_client(&gw).await;
    send_numbered(&mut client, ROOM, 0, 50).await;
    // A consumer reads everything and dies without acknowledging.
    redis.cli(&["XGROUP", "CREATE", "stomp:durable", "api", "0"]);
    let read = redis.cli(&[
        "XREADGROUP",
        "GROUP",
        "api",
        "ghost",
        "COUNT",
        "100",
        "STREAMS",
        "stomp:durable",
        ">",
    ]);
    assert!(read.contains(ROOM));
    let flags = ["--consumer", "survivor", "--claim-idle-ms", "300"];
    let api = ApiProcess::start(&pg, &redis, &flags).await;
    let db = pg.client().await;
    assert_eq!(wait_stored(&db, ROOM, 50).await, 50);
    assert_eq!(api.metric("api_claimed_messages_total").await, 50.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_outage_gives_503_and_the_consumer_catches_up_after() {
    let (mut pg, redis) = (Postgres::start().await, RedisServer::start().await);
    let gw = gateway(&redis, "/topic/chat.#", &[]).await;
    let api = ApiProcess::start(&pg, &redis, &[]).await;
    let (status, _) = http(api.addr, "GET", "/readyz", &[], None).await;
    assert_eq!(status, 200);
    pg.stop();

    let (status, body) = http(api.addr, "GET", &path_of(ROOM), &[], None).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (503, Some("unavailable")),
        "{body}"
    );
    let (status, body) = http(api.addr, "GET", "/readyz", &[], None).await;
    assert_eq!((status, body["database"].as_str()), (503, Some("down")));
    // Messages keep flowing meanwhile; the stream holds them.
    let mut client = stomp_client(&gw).await;
    send_numbered(&mut client, ROOM, 0, 100).await;
    sleep(Duration::from_millis(500)).await;
    assert!(api.metric("api_errors_total{kind=\"database\"}").await > 0.0);

    pg.restart().await;
    let db = pg.client().await;
    assert_eq!(wait_stored(&db, ROOM, 100).await, 100, "nothing lost");
    let (status, _) = http(api.addr, "GET", "/readyz", &[], None).await;
    assert_eq!(status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_post_reaches_gateway_subscribers_and_the_history() {
    let (pg, redis) = (Postgres::start().await, RedisServer::start().await);
    let gw = gateway(&redis, "/topic/chat.#", &[]).await;
    let api = ApiProcess::start(&pg, &redis, &["--durable", "/topic/chat.#"]).await;
    let mut subscriber = stomp_client(&gw).await;
    let subscribe = stomp::Frame::new(stomp::Command::Subscribe)
        .with_header("id", "s")
        .with_header("destination", ROOM)
        .with_header("receipt", "live");
    subscriber.send(&subscribe).await.unwrap();
    assert_eq!(
        subscriber.frame_within(WAIT).await.unwrap().command,
        stomp::Command::Receipt
    );

    let request = json!({"body": "from the server", "content_type": "text/plain", "headers": {"x-kind": "notice"}});
    let body = serde_json::to_vec(&request).unwrap();
    let (status, reply) = http(api.addr, "POST", &path_of(ROOM), &[], Some(&body)).await;
    assert_eq!(status, 202, "{reply}");
    assert_eq!(reply["durable"], true);
    let message = subscriber.frame_within(WAIT).await.unwrap();
    assert_eq!(message.command, stomp::Command::Message);
    assert_eq!(&message.body[..], b"from the server");
    assert_eq!(message.header("x-kind"), Some("notice"));
    assert_eq!(message.header("content-type"), Some("text/plain"));
    assert_eq!(message.header("message-id"), reply["message_id"].as_str());

    let db = pg.client().await;
    assert_eq!(wait_stored(&db, ROOM, 1).await, 1);
    let history = whole_history(&api, ROOM, 10).await;
    assert_eq!(history[0]["position"], reply["position"]);
    assert_eq!(history[0]["body"], "from the server");

    // Binary bodies travel as base64 both ways.
    let request = json!({"body_base64": "AAEC/w=="});
    let body = serde_json::to_vec(&request).unwrap();
    let (status, _) = http(api.addr, "POST", &path_of(ROOM), &[], Some(&body)).await;
    assert_eq!(status, 202);
    assert_eq!(
        &subscriber.frame_within(WAIT).await.unwrap().body[..],
        [0, 1, 2, 255]
    );
    assert_eq!(wait_stored(&db, ROOM, 2).await, 2);
    let history = whole_history(&api, ROOM, 10).await;
    assert_eq!(history[1]["body_base64"], "AAEC/w==");
    assert_eq!(history[1].get("body"), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrate_applies_the_schema_once() {
    let pg = Postgres::start().await;
    let run = || {
        std::process::Command::new(env!("CARGO_BIN_EXE_api"))
            .args(["migrate", "--database-url", &pg.url()])
            .output()
            .unwrap()
    };
    let first = run();
    assert!(
        first.status.success(),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&first.stdout).trim(),
        "migrations applied: [1]"
    );
    let second = run();
    assert_eq!(
        String::from_utf8_lossy(&second.stdout).trim(),
        "migrations applied: []"
    );
    let db = pg.client().await;
    let row = db
        .query_one("SELECT count(*) FROM messages", &[])
        .await
        .unwrap();
    assert_eq!(row.get::<_, i64>(0), 0);
}

const SECRET: &str = "an-api-test-secret-of-at-least-32-bytes";

fn token(user: &str, subscribe: &[&str], send: &[&str], exp_offset: i64) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let claims = json!({
        "sub": user,
        "exp": now + exp_offset,
        "stomp": {"sub": subscribe, "send": send},
    });
    jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_bad_request_gets_a_json_4xx() {
    let (pg, redis) = (Postgres::start().await, RedisServer::start().await);
    let dir = std::env::temp_dir().join(format!("api-4xx-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let secret = dir.join("secret");
    std::fs::write(&secret, SECRET).unwrap();
    let flags = [
        "--jwt-secret-file",
        secret.to_str().unwrap(),
        "--durable",
        "/topic/chat.#",
        "--max-body-bytes",
        "1024",
        "--max-page",
        "100",
    ];
    let api = ApiProcess::start(&pg, &redis, &flags).await;
    let alice = token(
        "alice",
        &["/topic/chat.room1"],
        &["/topic/chat.room1"],
        3600,
    );
    let good = format!("Bearer {alice}");
    let expired = format!("Bearer {}", token("alice", &["/topic/chat.#"], &[], -3600));
    let room = path_of(ROOM);
    let ok_body = br#"{"body":"hi"}"#.to_vec();
    let big = serde_json::to_vec(&json!({"body": "x".repeat(1025)})).unwrap();
    let auth = [("Authorization", good.as_str())];
    type Case<'a> = (
        &'a str,
        &'a str,
        String,
        Vec<(&'a str, &'a str)>,
        Option<Vec<u8>>,
        u16,
        &'a str,
    );
    let cases: Vec<Case> = vec![
        (
            "no token",
            "GET",
            room.clone(),
            vec![],
            None,
            401,
            "unauthorized",
        ),
        (
            "expired token",
            "GET",
            room.clone(),
            vec![("Authorization", &expired)],
            None,
            401,
            "unauthorized",
        ),
        (
            "garbage token",
            "GET",
            room.clone(),
            vec![("Authorization", "Bearer x.y.z")],
            None,
            401,
            "unauthorized",
        ),
        (
            "not granted",
            "GET",
            path_of("/topic/chat.room2"),
            auth.to_vec(),
            None,
            403,
            "forbidden",
        ),
        (
            "send not granted",
            "POST",
            path_of("/topic/chat.room2"),
            auth.to_vec(),
            Some(ok_body.clone()),
            403,
            "forbidden",
        ),
        (
            "outside the prefixes",
            "GET",
            path_of("/queue/x"),
            auth.to_vec(),
            None,
            400,
            "bad_destination",
        ),
        (
            "wildcard",
            "GET",
            path_of("/topic/chat.*"),
            auth.to_vec(),
            None,
            400,
            "bad_destination",
        ),
        (
            "control character",
            "GET",
            path_of("/topic/chat.a\u{1}"),
            auth.to_vec(),
            None,
            400,
            "bad_destination",
        ),
        (
            "bad cursor",
            "GET",
            format!("{room}?before=yesterday"),
            auth.to_vec(),
            None,
            400,
            "bad_cursor",
        ),
        (
            "empty range",
            "GET",
            format!("{room}?before=1-0&after=2-0"),
            auth.to_vec(),
            None,
            400,
            "bad_cursor",
        ),
        (
            "limit too big",
            "GET",
            format!("{room}?limit=101"),
            auth.to_vec(),
            None,
            400,
            "bad_limit",
        ),
        (
            "limit zero",
            "GET",
            format!("{room}?limit=0"),
            auth.to_vec(),
            None,
            400,
            "bad_limit",
        ),
        (
            "limit not a number",
            "GET",
            format!("{room}?limit=lots"),
            auth.to_vec(),
            None,
            400,
            "bad_query",
        ),
        (
            "unknown query field",
            "GET",
            format!("{room}?since=1"),
            auth.to_vec(),
            None,
            400,
            "bad_query",
        ),
        (
            "unknown body field",
            "POST",
            room.clone(),
            auth.to_vec(),
            Some(br#"{"body":"x","colour":"red"}"#.to_vec()),
            400,
            "bad_json",
        ),
        (
            "not json",
            "POST",
            room.clone(),
            auth.to_vec(),
            Some(b"hello".to_vec()),
            400,
            "bad_json",
        ),
        (
            "no body",
            "POST",
            room.clone(),
            auth.to_vec(),
            Some(b"{}".to_vec()),
            400,
            "bad_body",
        ),
        (
            "both bodies",
            "POST",
            room.clone(),
            auth.to_vec(),
            Some(br#"{"body":"a","body_base64":"YQ=="}"#.to_vec()),
            400,
            "bad_body",
        ),
        (
            "bad base64",
            "POST",
            room.clone(),
            auth.to_vec(),
            Some(br#"{"body_base64":"***"}"#.to_vec()),
            400,
            "bad_body",
        ),
        (
            "oversize body",
            "POST",
            room.clone(),
            auth.to_vec(),
            Some(big),
            413,
            "too_large",
        ),
        (
            "reserved header",
            "POST",
            room.clone(),
            auth.to_vec(),
            Some(br#"{"body":"x","headers":{"user-id":"bob"}}"#.to_vec()),
            400,
            "bad_header",
        ),
        (
            "header with newline",
            "POST",
            room.clone(),
            auth.to_vec(),
            Some(br#"{"body":"x","headers":{"a":"1\n2"}}"#.to_vec()),
            400,
            "bad_header",
        ),
        (
            "unknown route",
            "GET",
            "/v2/anything".to_string(),
            auth.to_vec(),
            None,
            404,
            "not_found",
        ),
        (
            "wrong method",
            "DELETE",
            room.clone(),
            auth.to_vec(),
            None,
            405,
            "method_not_allowed",
        ),
    ];
    for (name, method, path, headers, body, status, code) in cases {
        let (got, reply) = http(api.addr, method, &path, &headers, body.as_deref()).await;
        assert_eq!(got, status, "{name}: {reply}");
        assert_eq!(reply["error"].as_str(), Some(code), "{name}: {reply}");
        assert!(
            reply["message"].as_str().is_some_and(|m| !m.is_empty()),
            "{name}"
        );
    }
    // A far too large request is cut off by the body limit itself.
    let huge = vec![b'x'; 200 * 1024];
    let (got, reply) = http(api.addr, "POST", &room, &auth, Some(&huge)).await;
    assert_eq!(
        (got, reply["error"].as_str()),
        (413, Some("too_large")),
        "{reply}"
    );

    // And the granted requests succeed, the publish named by its token.
    let (status, _) = http(api.addr, "POST", &room, &auth, Some(&ok_body)).await;
    assert_eq!(status, 202);
    let db = pg.client().await;
    assert_eq!(wait_stored(&db, ROOM, 1).await, 1);
    let (status, page) = http(api.addr, "GET", &room, &auth, None).await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(page["messages"][0]["headers"]["user-id"], "alice");
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_over_tls_is_verified_against_the_configured_ca() {
    let (pg, ca_pem) = Postgres::start_tls().await;
    let dir = std::env::temp_dir().join(format!("api-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let ca = dir.join("ca.pem");
    std::fs::write(&ca, &ca_pem).unwrap();
    let other = dir.join("other-ca.pem");
    let other_key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    std::fs::write(&other, params.self_signed(&other_key).unwrap().pem()).unwrap();
    let migrate = |ca: Option<&std::path::Path>| {
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_api"));
        command.args(["migrate", "--database-url", &pg.tls_url()]);
        if let Some(ca) = ca {
            command.arg("--database-ca-file").arg(ca);
        }
        command.output().unwrap()
    };
    let trusted = migrate(Some(&ca));
    assert!(
        trusted.status.success(),
        "{}",
        String::from_utf8_lossy(&trusted.stderr)
    );
    assert!(String::from_utf8_lossy(&trusted.stdout).contains("[1]"));

    let untrusted = migrate(Some(&other));
    assert!(
        !untrusted.status.success(),
        "a certificate from another CA is refused"
    );
    let no_ca = migrate(None);
    assert!(!no_ca.status.success());
    let stderr = String::from_utf8_lossy(&no_ca.stderr);
    assert!(stderr.contains("--database-ca-file"), "{stderr}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboards_and_alerts_use_only_metrics_the_api_exports() {
    let (pg, redis) = (Postgres::start().await, RedisServer::start().await);
    let gw = gateway(&redis, "/topic/chat.#", &[]).await;
    let api = ApiProcess::start(&pg, &redis, &["--durable", "/topic/chat.#"]).await;
    let mut client = stomp_client(&gw).await;
    send_numbered(&mut client, ROOM, 0, 3).await;
    let db = pg.client().await;
    assert_eq!(wait_stored(&db, ROOM, 3).await, 3);
    let (status, _) = http(api.addr, "GET", &path_of(ROOM), &[], None).await;
    assert_eq!(status, 200);
    let body = br#"{"body":"x"}"#;
    http(api.addr, "POST", &path_of(ROOM), &[], Some(body)).await;
    sleep(Duration::from_millis(2_500)).await; // one backlog poll
    let (_, exposition) = http(api.addr, "GET", "/metrics", &[], None).await;
    let exported = exported_names(exposition.as_str().unwrap());
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../dashboards");
    let mut referenced = std::collections::BTreeSet::new();
    let mut files = vec![root.join("api.json")];
    for entry in std::fs::read_dir(root.join("alerts")).unwrap() {
        files.push(entry.unwrap().path());
    }
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        referenced.extend(referenced_names(&text, "api_"));
    }
    assert!(
        referenced.len() >= 10,
        "the api dashboard uses its metrics: {referenced:?}"
    );
    let missing: Vec<&String> = referenced
        .iter()
        .filter(|n| !exported.contains(*n))
        .collect();
    assert!(missing.is_empty(), "used but not exported: {missing:?}");
}

/// `POST /v1/users/{user}/disconnect`: with a token granting SEND on the
/// gateways' control destination, the api closes every connection of that
/// user on both gateways (ERROR `disconnected` with the reason); another user
/// stays; a token without the grant gets 403.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disconnect_user_closes_that_users_connections_on_the_gateways() {
    let (pg, redis) = (Postgres::start().await, RedisServer::start().await);
    let dir = std::env::temp_dir().join(format!("api-disconnect-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let secret = dir.join("secret");
    std::fs::write(&secret, SECRET).unwrap();
    let secret = secret.to_str().unwrap();
    let gw = gateway(&redis, "/topic/chat.#", &["--jwt-secret-file", secret]).await;
    let gw2 = gateway(&redis, "/topic/chat.#", &["--jwt-secret-file", secret]).await;
    let api = ApiProcess::start(&pg, &redis, &["--jwt-secret-file", secret]).await;
    let connect = |user: &str, addr: std::net::SocketAddr| {
        let mut target = loadtest::client::Target::parse(&format!("ws://{addr}/ws")).unwrap();
        target.token = Some(token(user, &[ROOM], &[], 3600));
        async move {
            loadtest::client::Client::connect(&target, None)
                .await
                .expect("stomp connect")
        }
    };
    // Alice has a connection on each node.
    let mut alice = connect("alice", gw.addr).await;
    let mut alice2 = connect("alice", gw2.addr).await;
    let mut bob = connect("bob", gw2.addr).await;
    sleep(Duration::from_millis(300)).await;

    let path = "/v1/users/alice/disconnect";
    let body = br#"{"reason":"account suspended"}"#;
    let plain = format!("Bearer {}", token("ops", &[], &[ROOM], 3600));
    let (status, reply) = http(
        api.addr,
        "POST",
        path,
        &[("Authorization", &plain)],
        Some(body),
    )
    .await;
    assert_eq!(status, 403, "{reply}");
    let admin = format!("Bearer {}", token("ops", &[], &["/gateway/control"], 3600));
    let (status, reply) = http(
        api.addr,
        "POST",
        path,
        &[("Authorization", &admin)],
        Some(body),
    )
    .await;
    assert_eq!(status, 202, "{reply}");
    assert_eq!(reply["user"], "alice");

    for alice in [&mut alice, &mut alice2] {
        let error = alice.frame_within(WAIT).await.expect("ERROR");
        assert_eq!(error.command, stomp::Command::Error, "{error:?}");
        assert_eq!(error.header("message"), Some("disconnected"));
        assert_eq!(error.header("reason"), Some("account suspended"));
    }
    assert!(
        bob.frame_within(Duration::from_millis(500)).await.is_err(),
        "bob was disconnected too"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// `POST /v1/broadcast`: one message to several destinations, each
/// published as a single POST would be; a bad or repeated destination
/// refuses the whole request before anything is published.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broadcast_reaches_every_named_destination_or_none() {
    let (pg, redis) = (Postgres::start().await, RedisServer::start().await);
    let gw = gateway(&redis, "/topic/chat.#", &[]).await;
    let api = ApiProcess::start(&pg, &redis, &["--durable", "/topic/chat.#"]).await;
    let rooms = ["/topic/chat.a", "/topic/chat.b"];
    let mut subscribers = Vec::new();
    for room in rooms {
        let mut c = stomp_client(&gw).await;
        let subscribe = stomp::Frame::new(stomp::Command::Subscribe)
            .with_header("id", "s")
            .with_header("destination", room)
            .with_header("receipt", "live");
        c.send(&subscribe).await.unwrap();
        assert_eq!(
            c.frame_within(WAIT).await.unwrap().command,
            stomp::Command::Receipt
        );
        subscribers.push(c);
    }

    let refused = [
        json!({"destinations": [rooms[0], rooms[0]], "body": "x"}),
        json!({"destinations": [rooms[0], "/elsewhere/x"], "body": "x"}),
        json!({"destinations": [], "body": "x"}),
    ];
    for request in refused {
        let body = serde_json::to_vec(&request).unwrap();
        let (status, reply) = http(api.addr, "POST", "/v1/broadcast", &[], Some(&body)).await;
        assert_eq!(status, 400, "{request} -> {reply}");
    }
    let request =
        json!({"destinations": rooms, "body": "to both", "headers": {"x-kind": "notice"}});
    let body = serde_json::to_vec(&request).unwrap();
    let (status, reply) = http(api.addr, "POST", "/v1/broadcast", &[], Some(&body)).await;
    assert_eq!(status, 202, "{reply}");
    assert_eq!(reply["messages"].as_array().unwrap().len(), 2);
    for (c, room) in subscribers.iter_mut().zip(rooms) {
        let m = c.frame_within(WAIT).await.unwrap();
        assert_eq!(m.command, stomp::Command::Message);
        assert_eq!(m.header("destination"), Some(room));
        assert_eq!(
            &m.body[..],
            b"to both",
            "nothing refused earlier arrived first"
        );
        assert_eq!(m.header("x-kind"), Some("notice"));
    }
}

/// The rest of the server API: a destination's presence, the cluster's
/// nodes, and ending one user's subscriptions to a destination on the
/// gateways (a last MESSAGE with `unsubscribed:true` and the reason, then
/// nothing; the connection and other users stay).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presence_cluster_and_unsubscribe_user_through_the_api() {
    let (pg, redis) = (Postgres::start().await, RedisServer::start().await);
    let dir = std::env::temp_dir().join(format!("api-presence-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let secret = dir.join("secret");
    std::fs::write(&secret, SECRET).unwrap();
    let secret = secret.to_str().unwrap();
    let gw = gateway(
        &redis,
        "/topic/none",
        &[
            "--jwt-secret-file",
            secret,
            "--presence-prefix",
            "/topic/chat.",
            "--fleet-report-ms",
            "200",
        ],
    )
    .await;
    let api = ApiProcess::start(&pg, &redis, &["--jwt-secret-file", secret]).await;
    let connect = |user: &str| {
        let mut target = loadtest::client::Target::parse(&format!("ws://{}/ws", gw.addr)).unwrap();
        target.token = Some(token(user, &[ROOM], &[ROOM], 3600));
        async move {
            let mut c = loadtest::client::Client::connect(&target, None)
                .await
                .expect("stomp connect");
            let subscribe = stomp::Frame::new(stomp::Command::Subscribe)
                .with_header("id", "7")
                .with_header("destination", ROOM)
                .with_header("receipt", "s");
            c.send(&subscribe).await.unwrap();
            let r = c.frame_within(WAIT).await.unwrap();
            assert_eq!(r.command, stomp::Command::Receipt, "{r:?}");
            c
        }
    };
    let mut alice = connect("alice").await;
    let mut bob = connect("bob").await;
    let presence_path = path_of(ROOM).replace("/messages", "/presence");
    let reader = format!("Bearer {}", token("reader", &[ROOM], &[], 3600));
    let admin = format!("Bearer {}", token("ops", &[], &["/gateway/control"], 3600));
    let presence = |auth: String| {
        let path = presence_path.clone();
        async move { http(api.addr, "GET", &path, &[("Authorization", &auth)], None).await }
    };
    let mut seen = Value::Null;
    for _ in 0..50 {
        let (status, reply) = presence(reader.clone()).await;
        assert_eq!(status, 200, "{reply}");
        seen = reply;
        if seen["users"] == 2 {
            break;
        }
        sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        seen["members"],
        json!([{"user": "alice", "connections": 1}, {"user": "bob", "connections": 1}])
    );
    let (status, _) = presence(format!("Bearer {}", token("eve", &["/topic/x"], &[], 3600))).await;
    assert_eq!(status, 403, "presence needs the grant to subscribe");

    // The cluster: one node, two connections and two subscriptions.
    let mut cluster = Value::Null;
    for _ in 0..50 {
        let (status, reply) = http(
            api.addr,
            "GET",
            "/v1/cluster",
            &[("Authorization", &admin)],
            None,
        )
        .await;
        assert_eq!(status, 200, "{reply}");
        cluster = reply;
        if cluster["subscriptions"] == 2 {
            break;
        }
        sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(cluster["nodes"].as_array().unwrap().len(), 1, "{cluster}");
    assert_eq!(cluster["connections"], 2, "{cluster}");
    assert_eq!(cluster["nodes"][0]["destinations"], 1, "{cluster}");
    let (status, _) = http(
        api.addr,
        "GET",
        "/v1/cluster",
        &[("Authorization", &reader)],
        None,
    )
    .await;
    assert_eq!(status, 403);

    // Alice is unsubscribed from the room: her last MESSAGE says so, and
    // a message sent afterwards reaches bob only.
    let body = json!({"destination": ROOM, "reason": "muted"}).to_string();
    let (status, reply) = http(
        api.addr,
        "POST",
        "/v1/users/alice/unsubscribe",
        &[("Authorization", &admin)],
        Some(body.as_bytes()),
    )
    .await;
    assert_eq!(status, 202, "{reply}");
    let notice = alice.frame_within(WAIT).await.expect("notice");
    assert_eq!(notice.command, stomp::Command::Message, "{notice:?}");
    assert_eq!(notice.header("unsubscribed"), Some("true"));
    assert_eq!(notice.header("reason"), Some("muted"));
    assert_eq!(notice.header("subscription"), Some("7"));
    assert_eq!(notice.header("destination"), Some(ROOM));
    let mut sender = connect("carol").await;
    send_numbered(&mut sender, ROOM, 0, 1).await;
    let m = bob.frame_within(WAIT).await.expect("bob still receives");
    assert_eq!(m.command, stomp::Command::Message);
    assert_eq!(m.header("x-n"), Some("0"));
    assert!(
        alice
            .frame_within(Duration::from_millis(500))
            .await
            .is_err(),
        "alice still receives the room"
    );
    // Her presence ended with the subscription.
    for _ in 0..50 {
        let (_, reply) = presence(reader.clone()).await;
        if reply["members"]
            .as_array()
            .is_some_and(|m| !m.iter().any(|u| u["user"] == "alice"))
        {
            let _ = std::fs::remove_dir_all(&dir);
            return;
        }
        sleep(Duration::from_millis(100)).await;
    }
    panic!("alice is still present after her unsubscription");
}
