//! PostgreSQL: the connection pool, the embedded migrations and the
//! message store.

pub mod migrations;
pub mod store;

use std::{path::Path, sync::Arc, time::Duration};

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use rustls_pki_types::{pem::PemObject, CertificateDer};
use thiserror::Error;
use tokio_postgres::{config::SslMode, NoTls};
use tokio_postgres_rustls::MakeRustlsConnect;

/// Why the database could not be used.
#[derive(Debug, Error)]
pub enum DbError {
    #[error("invalid database url: {0}")]
    Url(tokio_postgres::Error),
    #[error("database pool: {0}")]
    Build(#[from] deadpool_postgres::BuildError),
    #[error("database unavailable: {0}")]
    Pool(#[from] deadpool_postgres::PoolError),
    #[error("database: {0}")]
    Query(#[from] tokio_postgres::Error),
    #[error("database TLS: {0}")]
    Tls(String),
}

/// A pool of `size` connections; waiting for one, opening one and checking a
/// returned one each give up after `timeout`, so a request against a dead
/// database fails fast (503) instead of hanging.
///
/// TLS: with `ca_file` (PEM CA certificates, e.g. the RDS bundle) the
/// connection is encrypted whenever the URL's `sslmode` allows, and the
/// server's certificate and host name are verified against those CAs.
/// `sslmode=require` without a CA file is refused: an unverified TLS
/// connection can be intercepted.
pub fn pool(
    url: &str,
    size: usize,
    timeout: Duration,
    ca_file: Option<&Path>,
) -> Result<Pool, DbError> {
    let mut config: tokio_postgres::Config = url.parse().map_err(DbError::Url)?;
    config.application_name("stomp-api");
    config.connect_timeout(timeout);
    let manager_config = ManagerConfig {
        recycling_method: RecyclingMethod::Fast,
    };
    let manager = match (ca_file, config.get_ssl_mode()) {
        (_, SslMode::Disable) | (None, SslMode::Prefer) => {
            Manager::from_config(config, NoTls, manager_config)
        }
        (Some(ca_file), _) => Manager::from_config(config, tls(ca_file)?, manager_config),
        (None, _) => {
            return Err(DbError::Tls(
                "sslmode=require needs --database-ca-file to verify the server".to_string(),
            ))
        }
    };
    Ok(Pool::builder(manager)
        .max_size(size)
        .runtime(Runtime::Tokio1)
        .wait_timeout(Some(timeout))
        .create_timeout(Some(timeout))
        .recycle_timeout(Some(timeout))
        .build()?)
}

/// A TLS connector that trusts exactly the CAs of `ca_file`.
fn tls(ca_file: &Path) -> Result<MakeRustlsConnect, DbError> {
    let fail = |e: &dyn std::fmt::Display| DbError::Tls(format!("{}: {e}", ca_file.display()));
    let mut roots = rustls::RootCertStore::empty();
    for certificate in CertificateDer::pem_file_iter(ca_file).map_err(|e| fail(&e))? {
        roots
            .add(certificate.map_err(|e| fail(&e))?)
            .map_err(|e| fail(&e))?;
    }
    if roots.is_empty() {
        return Err(fail(&"no certificate in the file"));
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| fail(&e))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(MakeRustlsConnect::new(config))
}

/// Applies the migrations through one pooled connection.
pub async fn migrate(pool: &Pool) -> Result<Vec<i32>, DbError> {
    let mut client = pool.get().await?;
    Ok(migrations::apply(&mut client).await?)
}
