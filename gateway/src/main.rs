//! The gateway binary: configuration, logging, serve, drain on SIGTERM,
//! reload the TLS certificate on SIGHUP.

use anyhow::Context;
use gateway::{
    config::{ConfigError, LogFormat},
    drain, Config, Gateway,
};
use tokio::signal::unix::{signal, Signal, SignalKind};
use tracing_subscriber::EnvFilter;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    let config = match Config::load() {
        Ok(config) => config,
        // --help and --version on stdout with status 0, usage errors with 2.
        Err(ConfigError::Args(e)) => e.exit(),
        Err(e) => cli::usage_error(e),
    };
    init_logging(&config);
    cli::run(|| {
        tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .context("starting the tokio runtime")?
            .block_on(serve(config))
            .map_err(|e| anyhow::anyhow!("{e:#}"))
    });
}

async fn serve(config: Config) -> anyhow::Result<()> {
    let mut signals = Signals::install()?;
    let listen = config.listen;
    let gateway = Gateway::bind(config)
        .await
        .with_context(|| format!("binding {listen}"))?;
    let node = gateway.node().clone();
    if let Some(certificates) = gateway.certificates().cloned() {
        let mut hangups = signal(SignalKind::hangup()).context("installing the SIGHUP handler")?;
        let metrics = node.metrics().clone();
        tokio::spawn(async move {
            while hangups.recv().await.is_some() {
                certificates.reload(true, &metrics);
            }
        });
    }
    tracing::info!(
        addr = %gateway.local_addr(),
        tls = gateway.certificates().is_some(),
        auth = node.security().required(),
        node = %node.id(),
        broker = if node.config().cluster.redis_url.is_some() { "redis" } else { "embedded" },
        "gateway listening; WebSocket endpoint /ws"
    );
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(gateway.run_until(async {
        let _ = stop_rx.await;
    }));

    signals.next().await;
    tracing::info!("shutdown signal received: draining (a second signal exits at once)");
    tokio::select! {
        () = drain::drain(
            node.lifecycle(),
            node.roster(),
            &node.config().drain,
            move || { let _ = stop_tx.send(()); },
        ) => {}
        () = signals.next() => {
            tracing::warn!("second signal: exiting without finishing the drain");
            std::process::exit(1);
        }
    }
    server.abort();
    Ok(())
}

/// SIGTERM and SIGINT, installed before serving so none is missed.
struct Signals {
    term: Signal,
    int: Signal,
}

impl Signals {
    fn install() -> anyhow::Result<Signals> {
        Ok(Signals {
            term: signal(SignalKind::terminate()).context("installing the SIGTERM handler")?,
            int: signal(SignalKind::interrupt()).context("installing the SIGINT handler")?,
        })
    }

    async fn next(&mut self) {
        tokio::select! {
            _ = self.term.recv() => {}
            _ = self.int.recv() => {}
        }
    }
}

fn init_logging(config: &Config) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(&config.log));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match config.log_format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}
