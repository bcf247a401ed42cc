//! TLS served by the gateway itself (rustls), for deployments without a
//! TLS-terminating load balancer. The certificate is reloaded from its files
//! when they change (checked periodically) or on SIGHUP, without a restart
//! and without touching open connections.

use std::{
    path::{Path, PathBuf},
    sync::Arc,
    time::{Duration, SystemTime},
};

use parking_lot::{Mutex, RwLock};
use rustls::{
    crypto::CryptoProvider,
    server::{ClientHello, ResolvesServerCert},
    sign::CertifiedKey,
    ServerConfig,
};
use rustls_pki_types::{pem::PemObject, CertificateDer, PrivateKeyDer};
use thiserror::Error;
use tokio_rustls::TlsAcceptor;

use crate::metrics::Metrics;

/// Why a certificate could not be loaded.
#[derive(Debug, Error)]
pub enum TlsError {
    #[error("reading {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {reason}")]
    Pem { path: PathBuf, reason: String },
    #[error("certificate and key do not form a usable pair: {0}")]
    Key(#[from] rustls::Error),
}

/// The certificate in use, swapped in place on reload.
#[derive(Debug)]
pub struct CertificateStore {
    cert_path: PathBuf,
    key_path: PathBuf,
    provider: Arc<CryptoProvider>,
    current: RwLock<Arc<CertifiedKey>>,
    /// Modification times of (cert, key) at the last load.
    loaded: Mutex<(Option<SystemTime>, Option<SystemTime>)>,
}

impl CertificateStore {
    /// Loads the pair now; a server must not start with a broken one.
    pub fn load(cert_path: &Path, key_path: &Path) -> Result<Arc<CertificateStore>, TlsError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let stamps = (modified(cert_path), modified(key_path));
        let key = read_pair(cert_path, key_path, &provider)?;
        Ok(Arc::new(CertificateStore {
            cert_path: cert_path.to_path_buf(),
            key_path: key_path.to_path_buf(),
            provider,
            current: RwLock::new(Arc::new(key)),
            loaded: Mutex::new(stamps),
        }))
    }

    /// The rustls acceptor that serves whatever certificate is current.
    pub fn acceptor(self: &Arc<Self>) -> Result<TlsAcceptor, TlsError> {
        let mut config = ServerConfig::builder_with_provider(self.provider.clone())
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_cert_resolver(self.clone());
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(TlsAcceptor::from(Arc::new(config)))
    }

    /// Reloads the files if either changed since the last load (or always,
    /// with `force`). On failure the previous certificate stays in use.
    /// Returns whether a new certificate was installed.
    pub fn reload(&self, force: bool, metrics: &Metrics) -> bool {
        let stamps = (modified(&self.cert_path), modified(&self.key_path));
        let mut loaded = self.loaded.lock();
        if !force && *loaded == stamps {
            return false;
        }
        match read_pair(&self.cert_path, &self.key_path, &self.provider) {
            Ok(key) => {
                *self.current.write() = Arc::new(key);
                *loaded = stamps;
                metrics.tls_reloads.inc();
                tracing::info!(cert = %self.cert_path.display(), "TLS certificate reloaded");
                true
            }
            Err(e) => {
                // Remember the stamps so a half-written file is retried only
                // once it changes again, not logged every period.
                *loaded = stamps;
                metrics.tls_reload_failures.inc();
                tracing::warn!(error = %e, "TLS certificate reload failed; keeping the previous one");
                false
            }
        }
    }

    /// Checks the files every `period` until the process ends.
    pub fn watch(self: Arc<Self>, period: Duration, metrics: Arc<Metrics>) {
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(period);
            ticks.tick().await;
            loop {
                ticks.tick().await;
                self.reload(false, &metrics);
            }
        });
    }
}

impl ResolvesServerCert for CertificateStore {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.read().clone())
    }
}

fn modified(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

fn read_pair(
    cert_path: &Path,
    key_path: &Path,
    provider: &CryptoProvider,
) -> Result<CertifiedKey, TlsError> {
    let read = |path: &Path| {
        std::fs::read(path).map_err(|source| TlsError::Read {
            path: path.to_path_buf(),
            source,
        })
    };
    let pem_error = |path: &Path, reason: String| TlsError::Pem {
        path: path.to_path_buf(),
        reason,
    };
    let cert_pem = read(cert_path)?;
    let chain = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem_error(cert_path, e.to_string()))?;
    if chain.is_empty() {
        return Err(pem_error(cert_path, "no CERTIFICATE block".into()));
    }
    let key_pem = read(key_path)?;
    let key = PrivateKeyDer::from_pem_slice(&key_pem)
        .map_err(|e| pem_error(key_path, format!("no usable private key: {e}")))?;
    Ok(CertifiedKey::from_der(chain, key, provider)?)
}
