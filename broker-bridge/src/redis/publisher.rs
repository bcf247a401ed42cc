//! The publisher task: turns queued publishes into pipelines.

use std::{sync::Arc, time::Duration};

use tokio::{sync::mpsc, time::Instant};

use super::{next_backoff, sequencer::PublishScript, Shared, BACKOFF_START};
use crate::{envelope, Publication, Route};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

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
        let connected = tokio::time::timeout(CONNECT_TIMEOUT, async {
            let mut connection = client.get_multiplexed_async_connection().await?;
            // Every (re)connection loads the script: Redis may have restarted
            // with an empty script cache.
            script.load().query_async::<()>(&mut connection).await?;
            Ok::<_, redis::RedisError>(connection)
        })
        .await;
        let mut connection = match connected {
            Ok(Ok(connection)) => connection,
            _ => {
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
            let mut pipe = redis::pipe();
            let (durable, history) = (&shared.options.durable, &shared.options.history);
            for p in &batch {
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
            let started = Instant::now();
            match pipe.query_async::<()>(&mut connection).await {
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
