//! The publisher task: turns queued publishes into pipelines.

use std::{
    sync::{atomic::Ordering, Arc},
    time::Duration,
};

use redis::aio::MultiplexedConnection;
use tokio::{sync::mpsc, time::Instant};

use super::{next_backoff, sequencer::PublishScript, Shared, BACKOFF_START};
use crate::{envelope, Publication, Route};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a publish pipeline may take before Redis counts as down.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(10);

pub(super) async fn run(
    client: redis::Client,
    shared: Arc<Shared>,
    mut queue: mpsc::Receiver<Publication>,
) {
    let mut backoff = BACKOFF_START;
    let mut first = true;
    let mut batch: Vec<Publication> = Vec::new();
    let script = PublishScript::classic();
    loop {
        let mut connection = match connect(&client, &script).await {
            Ok(connection) => connection,
            Err(_) => {
                // Anything queued meanwhile still reaches local subscribers.
                while let Ok(p) = queue.try_recv() {
                    shared.metrics.local_only.inc();
                    shared.sink.deliver(p, Route::All);
                }
                if queue.is_closed() {
                    return;
                }
                tokio::time::sleep(backoff).await;
                backoff = next_backoff(backoff);
                continue;
            }
        };
        if !first {
            shared.metrics.reconnects.inc();
        }
        first = false;
        backoff = BACKOFF_START;
        // The subscriber's losses before this connection are not this
        // connection's concern.
        shared.publisher_stale.store(false, Ordering::Release);
        shared.set_up(&shared.publisher_up, true);

        loop {
            let Some(p) = queue.recv().await else { return };
            batch.push(p);
            while batch.len() < shared.options.max_pipeline {
                match queue.try_recv() {
                    Ok(p) => batch.push(p),
                    Err(_) => break,
                }
            }
            let pipe = pipeline(&shared, &script, &batch);
            // The subscriber lost its connection since this one opened:
            // Redis may have restarted, and an idle connection does not
            // know it is dead until used. Open a fresh one first.
            if shared.publisher_stale.swap(false, Ordering::AcqRel) {
                replace(&mut connection, &client, &script, &shared).await;
            }
            let started = Instant::now();
            let mut result = pipe.query_async::<()>(&mut connection).await;
            if let Err(e) = &result {
                if retriable(e) {
                    // The connection died under us: one more try on a fresh
                    // one before counting Redis as down. (Redis never
                    // answered, so it almost surely never ran the batch; if
                    // it did and died right after, the batch is published
                    // twice rather than lost.)
                    tracing::info!(error = %e, "redis publish connection lost; retrying on a new one");
                    if replace(&mut connection, &client, &script, &shared).await {
                        shared.metrics.publish_retries.inc();
                        result = pipe.query_async::<()>(&mut connection).await;
                    }
                }
            }
            match result {
                Ok(()) => {
                    shared
                        .metrics
                        .publish_latency
                        .observe(started.elapsed().as_secs_f64());
                    shared.metrics.published.inc_by(batch.len() as u64);
                    batch.clear();
                }
                Err(e) => {
                    tracing::warn!(error = %e, "redis publish failed; delivering locally and reconnecting");
                    shared.metrics.publish_errors.inc();
                    shared.set_up(&shared.publisher_up, false);
                    for p in batch.drain(..) {
                        shared.metrics.local_only.inc();
                        shared.sink.deliver(p, Route::All);
                    }
                    break;
                }
            }
        }
    }
}

/// A new connection with the publish script loaded (Redis may have
/// restarted with an empty script cache).
async fn connect(
    client: &redis::Client,
    script: &PublishScript,
) -> Result<MultiplexedConnection, ()> {
    // The default response timeout (0.5 s) is shorter than a big pipeline
    // can take on a loaded Redis; a timed-out pipeline may still run, so
    // treating it as failed would deliver its messages twice.
    let config = redis::AsyncConnectionConfig::new()
        .set_connection_timeout(Some(CONNECT_TIMEOUT))
        .set_response_timeout(Some(RESPONSE_TIMEOUT));
    let connected = tokio::time::timeout(CONNECT_TIMEOUT, async {
        let mut connection = client
            .get_multiplexed_async_connection_with_config(&config)
            .await?;
        script.load().query_async::<()>(&mut connection).await?;
        Ok::<_, redis::RedisError>(connection)
    })
    .await;
    match connected {
        Ok(Ok(connection)) => Ok(connection),
        _ => Err(()),
    }
}

/// Swaps `connection` for a new one, if one opens; says whether it did.
async fn replace(
    connection: &mut MultiplexedConnection,
    client: &redis::Client,
    script: &PublishScript,
    shared: &Shared,
) -> bool {
    match connect(client, script).await {
        Ok(fresh) => {
            *connection = fresh;
            shared.metrics.reconnects.inc();
            true
        }
        Err(()) => false,
    }
}

/// The publish pipeline of a batch.
fn pipeline(shared: &Shared, script: &PublishScript, batch: &[Publication]) -> redis::Pipeline {
    let mut pipe = redis::pipe();
    let (durable, history) = (&shared.options.durable, &shared.options.history);
    for p in batch {
        match envelope::encode(&shared.options.node_id, p) {
            Ok(bytes) => {
                let channel = shared.channel(&p.destination);
                script
                    .add(
                        &mut pipe,
                        &channel,
                        &p.destination,
                        durable,
                        history,
                        &bytes,
                    )
                    .ignore();
            }
            Err(e) => tracing::warn!(error = %e, "message cannot be enveloped; dropped"),
        }
    }
    pipe
}

/// Whether a publish failed because its connection is gone (worth one
/// retry on a new connection), not because Redis refused it.
fn retriable(e: &redis::RedisError) -> bool {
    // Not a timeout: the pipeline may still be running.
    e.is_io_error() || e.is_connection_dropped() || e.is_connection_refusal()
}
