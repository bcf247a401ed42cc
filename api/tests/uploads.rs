//! `POST /v1/uploads` against a real S3-compatible server that checks
//! SigV4 signatures (s3s-fs, installed by scripts/install-s3): presign, PUT
//! the file with the URL, GET it back; expired, tampered and
//! other-than-signed requests refused; a user's keys stay in its prefix.
//! See docs/api.md, "Attachments".

mod support;

use std::{
    net::SocketAddr,
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::Duration,
};

use base64::Engine;
use serde_json::{json, Value};
use support::{free_port, http, ApiProcess, Postgres, RedisServer};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
    time::sleep,
};

const SECRET: &str = "test-secret-of-reasonable-length-0123456789";
const ACCESS_KEY: &str = "AKIDLOCALTEST";
const SECRET_KEY: &str = "local-test-secret-key";

/// s3s-fs serving a temporary directory, with one bucket, `media`.
struct S3Server {
    addr: SocketAddr,
    child: Child,
    root: PathBuf,
}

impl S3Server {
    async fn start() -> S3Server {
        let binary = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../.tools/s3s-fs");
        assert!(
            binary.exists(),
            "{} is missing: run scripts/install-s3 (scripts/test does)",
            binary.display()
        );
        let root = std::env::temp_dir().join(format!("s3s-{}-{}", std::process::id(), free_port()));
        std::fs::create_dir_all(root.join("media")).unwrap();
        let port = free_port();
        let child = Command::new(binary)
            .args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .args(["--access-key", ACCESS_KEY, "--secret-key", SECRET_KEY])
            .arg(&root)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("s3s-fs starts");
        let server = S3Server {
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            child,
            root,
        };
        for _ in 0..100 {
            if TcpStream::connect(server.addr).await.is_ok() {
                return server;
            }
            sleep(Duration::from_millis(50)).await;
        }
        panic!("s3s-fs did not listen");
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

fn token(user: &str) -> String {
    let claims = json!({"sub": user, "exp": unix_now() + 3600, "stomp": {"sub": [], "send": []}});
    jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap()
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// One HTTP/1.1 request to a presigned URL: (status, body).
async fn send(method: &str, url: &str, headers: &[(&str, &str)], body: &[u8]) -> (u16, Vec<u8>) {
    let rest = url.strip_prefix("http://").expect("http URL");
    let (authority, target) = rest.split_at(rest.find('/').unwrap());
    let mut stream = TcpStream::connect(authority).await.unwrap();
    let mut request =
        format!("{method} {target} HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\n");
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    if method == "PUT"
        && !headers
            .iter()
            .any(|(n, _)| n.eq_ignore_ascii_case("content-length"))
    {
        request.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    stream.write_all(body).await.unwrap();
    let mut reply = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut reply)).await;
    let split = reply
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or(reply.len());
    let head = String::from_utf8_lossy(&reply[..split]).to_string();
    let status = head
        .split_whitespace()
        .nth(1)
        .unwrap_or("0")
        .parse()
        .unwrap_or(0);
    let body = reply.get(split + 4..).unwrap_or_default().to_vec();
    (status, body)
}

/// The body of a (possibly chunked) response, as text.
fn text(body: &[u8]) -> String {
    String::from_utf8_lossy(body).to_string()
}

async fn presign(api: &ApiProcess, user: &str, request: Value) -> (u16, Value) {
    let auth = format!("Bearer {}", token(user));
    http(
        api.addr,
        "POST",
        "/v1/uploads",
        &[("Authorization", &auth)],
        Some(request.to_string().as_bytes()),
    )
    .await
}

fn put_headers(upload: &Value) -> Vec<(String, String)> {
    upload["upload"]["headers"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string()))
        .collect()
}

async fn put(upload: &Value, url: &str, content_type: Option<&str>, body: &[u8]) -> (u16, Vec<u8>) {
    let mut headers = put_headers(upload);
    if let Some(ct) = content_type {
        for (name, value) in headers.iter_mut() {
            if name == "Content-Type" {
                *value = ct.to_string();
            }
        }
    }
    headers.retain(|(n, _)| n != "Content-Length");
    let headers: Vec<(&str, &str)> = headers
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    send("PUT", url, &headers, body).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presigned_uploads_go_in_and_come_back_and_nothing_else_does() {
    let (pg, redis, s3) = (
        Postgres::start().await,
        RedisServer::start().await,
        S3Server::start().await,
    );
    let dir = std::env::temp_dir().join(format!("api-uploads-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let secret = dir.join("secret");
    std::fs::write(&secret, SECRET).unwrap();
    let endpoint = format!("http://{}", s3.addr);
    let api = ApiProcess::start_with_env(
        &pg,
        &redis,
        &[
            "--jwt-secret-file",
            secret.to_str().unwrap(),
            "--upload-bucket",
            "media",
            "--upload-endpoint",
            &endpoint,
            "--upload-max-bytes",
            "1000",
            "--upload-content-type",
            "image/png,text/plain",
            "--upload-url-ttl-ms",
            "3000",
        ],
        &[
            ("AWS_ACCESS_KEY_ID", ACCESS_KEY),
            ("AWS_SECRET_ACCESS_KEY", SECRET_KEY),
        ],
    )
    .await;

    // Presign, PUT with the URL, GET it back with the download URL.
    let file = b"\x89PNG pretend picture bytes";
    let (status, upload) = presign(
        &api,
        "alice",
        json!({"file_name": "../../cat picture.png", "content_type": "image/png", "size": file.len()}),
    )
    .await;
    assert_eq!(status, 201, "{upload}");
    let key = upload["key"].as_str().unwrap().to_string();
    let alice = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode("alice");
    assert!(key.starts_with(&format!("uploads/{alice}/")), "{key}");
    assert!(key.ends_with("/cat_picture.png"), "{key}");
    let put_url = upload["upload"]["url"].as_str().unwrap().to_string();
    let (status, body) = put(&upload, &put_url, None, file).await;
    assert_eq!(status, 200, "{}", text(&body));
    let get_url = upload["download"]["url"].as_str().unwrap();
    let (status, body) = send("GET", get_url, &[], b"").await;
    assert_eq!(status, 200, "{}", text(&body));
    assert_eq!(&body[..], file);

    // Another key under the same signature (alice's URL pointed at bob's
    // prefix), another type or size than signed, a forged signature: refused.
    let bob = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode("bob");
    let (_, fresh) = presign(
        &api,
        "alice",
        json!({"file_name": "a.txt", "content_type": "text/plain", "size": 5}),
    )
    .await;
    let url = fresh["upload"]["url"].as_str().unwrap().to_string();
    let into_bob = url.replacen(
        &format!("/uploads/{alice}/"),
        &format!("/uploads/{bob}/"),
        1,
    );
    assert_ne!(into_bob, url);
    let (status, body) = put(&fresh, &into_bob, None, b"hello").await;
    assert_eq!(status, 403, "{}", text(&body));
    let (status, body) = put(&fresh, &url, Some("image/png"), b"hello").await;
    assert_eq!(status, 403, "another content type: {}", text(&body));
    let (status, body) = put(&fresh, &url, None, b"hello, longer").await;
    assert_eq!(status, 403, "another size: {}", text(&body));
    let signature_at = url.find("X-Amz-Signature=").unwrap() + "X-Amz-Signature=".len();
    let mut forged = url.clone();
    let flipped = if &url[signature_at..signature_at + 1] == "0" {
        "1"
    } else {
        "0"
    };
    forged.replace_range(signature_at..signature_at + 1, flipped);
    let (status, body) = put(&fresh, &forged, None, b"hello").await;
    assert_eq!(status, 403, "{}", text(&body));
    // The request as signed still works.
    let (status, body) = put(&fresh, &url, None, b"hello").await;
    assert_eq!(status, 200, "{}", text(&body));

    // Expired: the PUT URL lives 3 s here.
    let (_, late) = presign(
        &api,
        "alice",
        json!({"file_name": "late.txt", "content_type": "text/plain", "size": 4}),
    )
    .await;
    sleep(Duration::from_millis(4_200)).await;
    let late_url = late["upload"]["url"].as_str().unwrap().to_string();
    let (status, body) = put(&late, &late_url, None, b"late").await;
    assert_eq!(status, 403, "{}", text(&body));
    assert!(text(&body).contains("expired"), "{}", text(&body));

    // The api's own limits, and no way to name a key or a user.
    let (status, reply) = presign(
        &api,
        "alice",
        json!({"file_name": "big.png", "content_type": "image/png", "size": 1001}),
    )
    .await;
    assert_eq!(
        (status, reply["error"].as_str()),
        (413, Some("bad_size")),
        "{reply}"
    );
    let (status, reply) = presign(
        &api,
        "alice",
        json!({"file_name": "page.html", "content_type": "text/html", "size": 10}),
    )
    .await;
    assert_eq!(
        (status, reply["error"].as_str()),
        (415, Some("bad_content_type")),
        "{reply}"
    );
    let (status, reply) = presign(
        &api,
        "alice",
        json!({"content_type": "text/plain", "size": 1, "key": format!("uploads/{bob}/x")}),
    )
    .await;
    assert_eq!(
        (status, reply["error"].as_str()),
        (400, Some("bad_json")),
        "{reply}"
    );
    let (status, _) = http(
        api.addr,
        "POST",
        "/v1/uploads",
        &[],
        Some(br#"{"content_type":"text/plain","size":1}"#),
    )
    .await;
    assert_eq!(status, 401);
    let _ = std::fs::remove_dir_all(&dir);
}
