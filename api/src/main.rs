//! `api`: serve (default) or `api migrate`.

use anyhow::Context;
use api::config::LogFormat;
use api::{config::Command, Api, Config};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    let config = match Config::load() {
        Ok(config) => config,
        // --help and --version on stdout with status 0, usage errors with 2.
        Err(api::config::ConfigError::Args(e)) => e.exit(),
        Err(e) => cli::usage_error(e),
    };
    init_logging(config.log_format);
    cli::run(|| {
        tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .context("starting the tokio runtime")?
            .block_on(run(config))
            .map_err(|e| anyhow::anyhow!("{e:#}"))
    });
}

async fn run(config: Config) -> anyhow::Result<()> {
    if config.command == Some(Command::Migrate) {
        let pool = api::db::pool(
            config.database_url(),
            1,
            config.database_timeout(),
            config.database_ca_file.as_deref(),
        )?;
        let applied = api::db::migrate(&pool)
            .await
            .context("applying migrations")?;
        println!("migrations applied: {applied:?}");
        return Ok(());
    }
    let api = Api::start(&config).await.context("starting the api")?;
    shutdown_signal().await;
    tracing::info!("shutting down: finishing the batch in hand");
    api.shutdown().await;
    Ok(())
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,tokio_postgres=warn"));
    // Logs go to stderr: stdout carries command output (`api migrate`).
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}

async fn shutdown_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("installing the SIGTERM handler");
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}
