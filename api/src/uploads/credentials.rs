//! AWS credentials for signing upload URLs: the standard environment
//! variables when set (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, and
//! `AWS_SESSION_TOKEN` for temporary ones), otherwise the EC2 instance
//! role's, read from the instance metadata service (IMDSv2) and cached
//! until five minutes before they expire.
//!
//! A presigned URL is only as valid as the credentials that signed it:
//! with role credentials it stops working when they expire, so the URL
//! lifetimes stay short (minutes for uploads, hours for downloads) next to
//! the hours a role's credentials live.

use std::time::{Duration, SystemTime};

use serde::Deserialize;
use thiserror::Error;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
    sync::Mutex,
};

/// The instance metadata service.
const IMDS: &str = "169.254.169.254:80";
/// Role credentials are refreshed this long before they expire.
const REFRESH_BEFORE: Duration = Duration::from_secs(300);
const IMDS_TIMEOUT: Duration = Duration::from_secs(2);

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Keys {
    pub access_key: String,
    pub secret_key: String,
    pub session_token: Option<String>,
    /// `None`: they do not expire (environment).
    pub expires: Option<SystemTime>,
}

#[derive(Debug, Error)]
pub enum CredentialsError {
    #[error("no AWS credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or run with an instance role ({0})")]
    Unavailable(String),
}

/// Where credentials come from.
pub enum Credentials {
    Static(Keys),
    InstanceRole(Mutex<Option<Keys>>),
}

impl Credentials {
    /// The environment's keys, or the instance role.
    pub fn from_env() -> Credentials {
        let var = |name| std::env::var(name).ok().filter(|v: &String| !v.is_empty());
        match (var("AWS_ACCESS_KEY_ID"), var("AWS_SECRET_ACCESS_KEY")) {
            (Some(access_key), Some(secret_key)) => Credentials::Static(Keys {
                access_key,
                secret_key,
                session_token: var("AWS_SESSION_TOKEN"),
                expires: None,
            }),
            _ => Credentials::InstanceRole(Mutex::new(None)),
        }
    }

    /// Keys valid for at least a few more minutes.
    pub async fn keys(&self) -> Result<Keys, CredentialsError> {
        match self {
            Credentials::Static(keys) => Ok(keys.clone()),
            Credentials::InstanceRole(cache) => {
                let mut cached = cache.lock().await;
                let fresh = cached.as_ref().is_some_and(|k| {
                    k.expires
                        .is_none_or(|e| e > SystemTime::now() + REFRESH_BEFORE)
                });
                if !fresh {
                    *cached = Some(
                        tokio::time::timeout(IMDS_TIMEOUT * 3, instance_role_keys())
                            .await
                            .map_err(|_| {
                                CredentialsError::Unavailable("metadata service timed out".into())
                            })??,
                    );
                }
                Ok(cached.clone().expect("just filled"))
            }
        }
    }
}

/// IMDSv2: a session token, the role's name, then its credentials.
async fn instance_role_keys() -> Result<Keys, CredentialsError> {
    let token = imds(
        "PUT",
        "/latest/api/token",
        "X-aws-ec2-metadata-token-ttl-seconds: 60\r\n",
    )
    .await?;
    let header = format!("X-aws-ec2-metadata-token: {}\r\n", token.trim());
    let path = "/latest/meta-data/iam/security-credentials/";
    let role = imds("GET", path, &header).await?;
    let role = role.lines().next().unwrap_or_default().trim();
    if role.is_empty() {
        return Err(CredentialsError::Unavailable(
            "the instance has no role".into(),
        ));
    }
    let body = imds("GET", &format!("{path}{role}"), &header).await?;
    parse_role_credentials(&body)
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct RoleCredentials {
    access_key_id: String,
    secret_access_key: String,
    token: String,
    expiration: String,
}

/// Reads the metadata service's credentials document.
fn parse_role_credentials(body: &str) -> Result<Keys, CredentialsError> {
    let c: RoleCredentials = serde_json::from_str(body)
        .map_err(|e| CredentialsError::Unavailable(format!("bad credentials document: {e}")))?;
    Ok(Keys {
        access_key: c.access_key_id,
        secret_key: c.secret_access_key,
        session_token: Some(c.token),
        expires: Some(parse_rfc3339_utc(&c.expiration).ok_or_else(|| {
            CredentialsError::Unavailable(format!("bad expiration {:?}", c.expiration))
        })?),
    })
}

/// `2026-12-06T12:00:00Z` as a time.
fn parse_rfc3339_utc(text: &str) -> Option<SystemTime> {
    let t = text.strip_suffix('Z')?;
    let (date, time) = t.split_once('T')?;
    let mut d = date.split('-').map(|p| p.parse::<i64>().ok());
    let (y, m, day) = (d.next()??, d.next()??, d.next()??);
    let mut h = time
        .split(':')
        .map(|p| p.split('.').next()?.parse::<i64>().ok());
    let (hh, mm, ss) = (h.next()??, h.next()??, h.next()??);
    // Days from the civil date (Howard Hinnant's algorithm).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = days * 86_400 + hh * 3600 + mm * 60 + ss;
    SystemTime::UNIX_EPOCH.checked_add(Duration::from_secs(u64::try_from(secs).ok()?))
}

/// One plain HTTP/1.1 request to the metadata service; the body of a 200.
async fn imds(method: &str, path: &str, headers: &str) -> Result<String, CredentialsError> {
    let unavailable = |e: std::io::Error| CredentialsError::Unavailable(e.to_string());
    let mut stream = tokio::time::timeout(IMDS_TIMEOUT, TcpStream::connect(IMDS))
        .await
        .map_err(|_| CredentialsError::Unavailable("metadata service unreachable".into()))?
        .map_err(unavailable)?;
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: 169.254.169.254\r\n{headers}Content-Length: 0\r\nConnection: close\r\n\r\n"
    );
    stream
        .write_all(request.as_bytes())
        .await
        .map_err(unavailable)?;
    let mut response = Vec::new();
    stream
        .take(64 * 1024)
        .read_to_end(&mut response)
        .await
        .map_err(unavailable)?;
    let text = String::from_utf8_lossy(&response);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    if !head.starts_with("HTTP/1.1 200") {
        let status = head.lines().next().unwrap_or_default();
        return Err(CredentialsError::Unavailable(format!(
            "metadata service answered {status}"
        )));
    }
    Ok(body.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn role_credentials_documents_parse() {
        let keys = parse_role_credentials(
            r#"{"Code":"Success","LastUpdated":"2026-12-06T06:00:00Z","Type":"AWS-HMAC",
                "AccessKeyId":"ASIAEXAMPLE","SecretAccessKey":"secret","Token":"token",
                "Expiration":"2026-12-06T12:00:00Z"}"#,
        )
        .unwrap();
        assert_eq!(keys.access_key, "ASIAEXAMPLE");
        assert_eq!(keys.session_token.as_deref(), Some("token"));
        let expires = keys.expires.unwrap();
        let secs = expires
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        assert_eq!(secs, 1_796_558_400);
        assert!(parse_role_credentials("{}").is_err());
        assert_eq!(
            parse_rfc3339_utc("1970-01-01T00:00:00Z"),
            Some(SystemTime::UNIX_EPOCH)
        );
        assert_eq!(parse_rfc3339_utc("2026-12-06 12:00:00"), None);
    }
}
