//! Attachments: presigned S3 URLs, so chat clients put pictures and files
//! straight into the bucket and put the download URL in a message; no file
//! passes through the api or the gateways.
//!
//! * **Scoped keys.** Every object key is
//!   `<prefix><user>/<random>/<file name>`: the user part is the token
//!   subject in unpadded base64url (so no subject can name another's
//!   prefix or climb out of its own with `/` or `..`), the random part 128
//!   bits from the system's secure source (keys never collide, and cannot
//!   be guessed), the file name reduced to `[A-Za-z0-9._-]`.
//! * **Limits signed into the URL.** The PUT URL signs `content-type` and
//!   `content-length`: S3 refuses an upload of another type or size than
//!   the one the api allowed.
//! * **Short lives.** The PUT URL expires after `--upload-url-ttl-ms`, the
//!   GET URL after `--download-url-ttl-ms` (at most 7 days, SigV4's limit).
//!
//! Signing is `aws-sigv4`'s, the AWS SDK's own implementation.

pub mod credentials;

use std::{
    collections::BTreeMap,
    time::{Duration, SystemTime},
};

use aws_sigv4::{
    http_request::{
        sign, PercentEncodingMode, SignableBody, SignableRequest, SignatureLocation,
        SigningSettings, UriPathNormalizationMode,
    },
    sign::v4,
};
use base64::Engine;
use serde::Serialize;
use thiserror::Error;

pub use credentials::Credentials;

/// SigV4's longest presigned lifetime.
pub const MAX_URL_TTL: Duration = Duration::from_secs(7 * 24 * 3600);
/// The longest file name kept in a key.
const MAX_FILE_NAME: usize = 100;

/// Where and how uploads go.
#[derive(Debug, Clone)]
pub struct UploadSettings {
    pub bucket: String,
    pub region: String,
    /// An S3-compatible endpoint (`http://127.0.0.1:9000`), addressed
    /// path-style; `None`: AWS, virtual-hosted style.
    pub endpoint: Option<String>,
    pub prefix: String,
    pub max_bytes: u64,
    pub content_types: Vec<String>,
    pub upload_ttl: Duration,
    pub download_ttl: Duration,
}

/// What a client asked to upload.
#[derive(Debug, Clone)]
pub struct UploadRequest {
    pub file_name: String,
    pub content_type: String,
    pub size: u64,
}

/// Where to PUT the file and where it can be read.
#[derive(Debug, Clone, Serialize)]
pub struct Upload {
    pub key: String,
    pub upload: SignedUrl,
    pub download: SignedUrl,
}

#[derive(Debug, Clone, Serialize)]
pub struct SignedUrl {
    pub method: &'static str,
    pub url: String,
    /// Headers the request must carry exactly (they are signed).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<&'static str, String>,
    /// Unix seconds.
    pub expires_at: u64,
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum UploadError {
    #[error("size must be between 1 and {0} bytes")]
    Size(u64),
    #[error("content type {0:?} is not accepted (allowed: {1})")]
    ContentType(String, String),
    #[error("signing failed: {0}")]
    Signing(String),
    #[error("{0}")]
    Credentials(String),
}

/// Presigns uploads into the configured bucket.
pub struct Uploads {
    settings: UploadSettings,
    credentials: Credentials,
}

impl Uploads {
    pub fn new(settings: UploadSettings, credentials: Credentials) -> Uploads {
        Uploads {
            settings,
            credentials,
        }
    }

    pub fn settings(&self) -> &UploadSettings {
        &self.settings
    }

    /// Checks `request` and presigns its PUT and GET for `user`.
    pub async fn presign(
        &self,
        user: &str,
        request: &UploadRequest,
    ) -> Result<Upload, UploadError> {
        let s = &self.settings;
        if request.size == 0 || request.size > s.max_bytes {
            return Err(UploadError::Size(s.max_bytes));
        }
        let content_type = request.content_type.trim().to_ascii_lowercase();
        if !s.content_types.contains(&content_type) {
            return Err(UploadError::ContentType(
                request.content_type.clone(),
                s.content_types.join(", "),
            ));
        }
        let key = object_key(&s.prefix, user, &random_hex(16), &request.file_name);
        let keys = self
            .credentials
            .keys()
            .await
            .map_err(|e| UploadError::Credentials(e.to_string()))?;
        let now = SystemTime::now();
        let url = self.object_url(&key);
        let length = request.size.to_string();
        let put_headers = [
            ("content-type", content_type.as_str()),
            ("content-length", length.as_str()),
        ];
        let upload = SignedUrl {
            method: "PUT",
            url: self.presign_url("PUT", &url, &put_headers, s.upload_ttl, now, &keys)?,
            headers: BTreeMap::from([
                ("Content-Type", content_type.clone()),
                ("Content-Length", length.clone()),
            ]),
            expires_at: unix(now + s.upload_ttl),
        };
        let download = SignedUrl {
            method: "GET",
            url: self.presign_url("GET", &url, &[], s.download_ttl, now, &keys)?,
            headers: BTreeMap::new(),
            expires_at: unix(now + s.download_ttl),
        };
        Ok(Upload {
            key,
            upload,
            download,
        })
    }

    /// The object's URL without a query.
    fn object_url(&self, key: &str) -> String {
        let s = &self.settings;
        match &s.endpoint {
            Some(endpoint) => format!("{}/{}/{key}", endpoint.trim_end_matches('/'), s.bucket),
            None => format!("https://{}.s3.{}.amazonaws.com/{key}", s.bucket, s.region),
        }
    }

    fn presign_url(
        &self,
        method: &str,
        url: &str,
        headers: &[(&str, &str)],
        ttl: Duration,
        now: SystemTime,
        keys: &credentials::Keys,
    ) -> Result<String, UploadError> {
        let signing = |e: &dyn std::fmt::Display| UploadError::Signing(e.to_string());
        let mut settings = SigningSettings::default();
        settings.signature_location = SignatureLocation::QueryParams;
        settings.expires_in = Some(ttl);
        // S3's own rules: keys are escaped once and never normalized.
        settings.percent_encoding_mode = PercentEncodingMode::Single;
        settings.uri_path_normalization_mode = UriPathNormalizationMode::Disabled;
        let identity = aws_credential_types::Credentials::new(
            &keys.access_key,
            &keys.secret_key,
            keys.session_token.clone(),
            keys.expires,
            "api",
        )
        .into();
        let params = v4::SigningParams::builder()
            .identity(&identity)
            .region(&self.settings.region)
            .name("s3")
            .time(now)
            .settings(settings)
            .build()
            .map_err(|e| signing(&e))?
            .into();
        let request = SignableRequest::new(
            method,
            url,
            headers.iter().copied(),
            SignableBody::UnsignedPayload,
        )
        .map_err(|e| signing(&e))?;
        let (instructions, _signature) = sign(request, &params)
            .map_err(|e| signing(&e))?
            .into_parts();
        let mut signed = format!("{url}?");
        for (i, (name, value)) in instructions.params().iter().enumerate() {
            if i > 0 {
                signed.push('&');
            }
            signed.push_str(&query_escape(name));
            signed.push('=');
            signed.push_str(&query_escape(value));
        }
        Ok(signed)
    }
}

/// `<prefix><base64url(user)>/<random>/<file name>`.
pub fn object_key(prefix: &str, user: &str, random: &str, file_name: &str) -> String {
    let user = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(user.as_bytes());
    format!("{prefix}{user}/{random}/{}", safe_file_name(file_name))
}

/// The file name with every byte outside `[A-Za-z0-9._-]` replaced by `_`,
/// a leading dot too (no `.` or `..` segment a URL could resolve), at most
/// 100 bytes; `file` when nothing is left.
pub fn safe_file_name(name: &str) -> String {
    let base = name.rsplit(['/', '\\']).next().unwrap_or_default();
    let mut out: String = base
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '_'
            }
        })
        .take(MAX_FILE_NAME)
        .collect();
    if out.starts_with('.') {
        out.replace_range(..1, "_");
    }
    if out.is_empty() {
        out.push_str("file");
    }
    out
}

/// `bytes` random bytes from the system's secure source, as hex.
fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut buf)
        .expect("system random source");
    buf.iter().map(|b| format!("{b:02x}")).collect()
}

/// RFC 3986 query escaping: unreserved bytes stay, all others `%XX`.
fn query_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 16);
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn unix(at: SystemTime) -> u64 {
    at.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_stay_in_the_users_prefix_whatever_the_names() {
        let key = object_key("uploads/", "alice", "0123", "../../bob/cat.png");
        assert_eq!(key, "uploads/YWxpY2U/0123/cat.png");
        // A subject that looks like a path cannot reach another prefix.
        let sneaky = object_key("uploads/", "alice/../bob", "0123", "x");
        assert!(sneaky.starts_with("uploads/YWxpY2UvLi4vYm9i/"), "{sneaky}");
        assert_ne!(
            object_key("uploads/", "a", "r", "f"),
            object_key("uploads/", "a/", "r", "f")
        );
        for (name, safe) in [
            ("..", "_."),
            (".env", "_env"),
            ("héllo wörld.txt", "h_llo_w_rld.txt"),
            ("", "file"),
            ("a\\b\\c.pdf", "c.pdf"),
        ] {
            assert_eq!(safe_file_name(name), safe, "{name:?}");
        }
        assert_eq!(safe_file_name(&"x".repeat(500)).len(), MAX_FILE_NAME);
        assert_eq!(random_hex(16).len(), 32);
        assert_ne!(random_hex(16), random_hex(16));
    }

    #[tokio::test]
    async fn requests_outside_the_limits_are_refused_and_urls_carry_the_signature() {
        let uploads = Uploads::new(
            UploadSettings {
                bucket: "media".into(),
                region: "eu-west-1".into(),
                endpoint: None,
                prefix: "uploads/".into(),
                max_bytes: 1000,
                content_types: vec!["image/png".into()],
                upload_ttl: Duration::from_secs(300),
                download_ttl: Duration::from_secs(3600),
            },
            Credentials::Static(credentials::Keys {
                access_key: "AKIDEXAMPLE".into(),
                secret_key: "secret".into(),
                session_token: None,
                expires: None,
            }),
        );
        let request = |size, content_type: &str| UploadRequest {
            file_name: "cat.png".into(),
            content_type: content_type.into(),
            size,
        };
        assert_eq!(
            uploads
                .presign("alice", &request(0, "image/png"))
                .await
                .unwrap_err(),
            UploadError::Size(1000)
        );
        assert_eq!(
            uploads
                .presign("alice", &request(1001, "image/png"))
                .await
                .unwrap_err(),
            UploadError::Size(1000)
        );
        assert!(matches!(
            uploads.presign("alice", &request(10, "text/html")).await,
            Err(UploadError::ContentType(..))
        ));
        let upload = uploads
            .presign("alice", &request(10, "IMAGE/PNG"))
            .await
            .unwrap();
        assert!(upload.key.starts_with("uploads/YWxpY2U/"));
        let put = &upload.upload.url;
        assert!(put.starts_with(&format!(
            "https://media.s3.eu-west-1.amazonaws.com/{}?",
            upload.key
        )));
        for part in [
            "X-Amz-Algorithm=AWS4-HMAC-SHA256",
            "X-Amz-Credential=AKIDEXAMPLE%2F",
            "X-Amz-Expires=300",
            "X-Amz-SignedHeaders=content-length%3Bcontent-type%3Bhost",
            "X-Amz-Signature=",
        ] {
            assert!(put.contains(part), "{part} in {put}");
        }
        assert_eq!(upload.upload.headers["Content-Type"], "image/png");
        assert_eq!(upload.upload.headers["Content-Length"], "10");
        assert!(upload.download.url.contains("X-Amz-Expires=3600"));
        assert!(upload.download.url.contains("X-Amz-SignedHeaders=host"));
    }
}
