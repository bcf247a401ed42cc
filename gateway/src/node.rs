//! The node: builds one gateway's parts and hands each layer the narrow
//! handles it needs.
//!
//! Nothing calls into the node at run time: the transport gets a
//! [`Server`], every connection a [`ConnectionContext`], every session a
//! [`SessionContext`], and the resume and rebalance services their own
//! parts. The node keeps the parts alive and shows them read-only to the
//! binary (logs, signals, drain) and to tests.

use std::sync::Arc;

use broker_bridge::{
    Broker, BrokerError, Durable, EmbeddedBroker, FleetView, History, PresenceStore, RedisBroker,
    RedisOptions, SessionStore, ShardedRedisBroker,
};
use thiserror::Error;

use crate::{
    config::Config,
    connection::ConnectionContext,
    drain::Lifecycle,
    hub::{ring::RingSettings, Fanout, Membership, Registry},
    metrics::Metrics,
    presence::Presence,
    rebalance::{bounce::Bounces, metrics::RebalanceMetrics, Rebalance, RebalanceParts},
    resume::{metrics::ResumeMetrics, token::TokenKey, Resume, ResumeParts},
    roster::Roster,
    security::{Security, SecurityError},
    session::{MessageIds, SessionContext},
    transport::server::{Server, ServerSettings},
};

/// Why a node could not start.
#[derive(Debug, Error)]
pub enum NodeError {
    #[error(transparent)]
    Broker(#[from] BrokerError),
    #[error(transparent)]
    Security(#[from] SecurityError),
}

/// One gateway's parts, wired together.
pub struct Node {
    id: Arc<str>,
    config: Config,
    metrics: Arc<Metrics>,
    registry: Arc<Registry>,
    broker: Arc<dyn Broker>,
    security: Arc<Security>,
    lifecycle: Arc<Lifecycle>,
    roster: Arc<Roster>,
    resume: Arc<Resume>,
    rebalance: Arc<Rebalance>,
    presence: Option<Arc<Presence>>,
    connections: Arc<ConnectionContext>,
    server: Arc<Server>,
}

/// The cluster engine a node runs on, seen through its three interfaces.
struct Engine {
    broker: Arc<dyn Broker>,
    store: Arc<dyn SessionStore>,
    /// `None` where no fleet view is kept (embedded, sharded pub/sub).
    fleet: Option<Arc<dyn FleetView>>,
    /// `None` where presence cannot be kept (sharded pub/sub).
    presence: Option<Arc<dyn PresenceStore>>,
}

impl Node {
    /// A node with the embedded in-process broker.
    pub fn embedded(config: Config) -> Result<Arc<Node>, NodeError> {
        let registry = Arc::new(Registry::new(ring_settings(&config)));
        let metrics = Arc::new(Metrics::default());
        let fanout = Arc::new(fanout(&config, &registry, &metrics));
        let broker = Arc::new(EmbeddedBroker::new(fanout));
        let engine = Engine {
            broker: broker.clone(),
            store: broker.clone(),
            fleet: None,
            presence: Some(broker),
        };
        Node::assemble(config, registry, metrics, engine)
    }

    /// A cluster member bridged through Redis (`redis_url`). Must be called
    /// inside a tokio runtime: the broker's tasks start at once and connect
    /// in the background.
    pub fn clustered(mut config: Config, redis_url: &str) -> Result<Arc<Node>, NodeError> {
        // Fix the id now: the broker stamps it on every envelope.
        let node_id = node_id(&config);
        config.node_id = Some(node_id.to_string());
        let registry = Arc::new(Registry::new(ring_settings(&config)));
        let metrics = Arc::new(Metrics::default());
        let fanout = Arc::new(fanout(&config, &registry, &metrics));
        let cluster = &config.cluster;
        let mut options = RedisOptions::new(redis_url, node_id);
        options.channel_prefix = cluster.redis_channel_prefix.clone();
        options.durable = Arc::new(
            Durable::new(
                &cluster.durable,
                cluster.durable_stream.as_str(),
                cluster.durable_max_len,
            )
            .with_recent_len(config.resume.resume_stream_len),
        );
        options.history = Arc::new(History::new(
            &cluster.history,
            format!("{}history:", cluster.redis_channel_prefix),
            cluster.history_len,
            std::time::Duration::from_millis(cluster.history_ttl_ms),
        ));
        let engine = if cluster.redis_sharded {
            let broker = Arc::new(ShardedRedisBroker::start(
                options,
                fanout,
                metrics.registry(),
            )?);
            Engine {
                broker: broker.clone(),
                store: broker,
                fleet: None,
                presence: None,
            }
        } else {
            let broker = Arc::new(RedisBroker::start(options, fanout, metrics.registry())?);
            Engine {
                broker: broker.clone(),
                store: broker.clone(),
                fleet: Some(broker.clone()),
                presence: Some(broker),
            }
        };
        Node::assemble(config, registry, metrics, engine)
    }

    /// Builds every part over `engine`, whose deliveries reach `registry`.
    fn assemble(
        config: Config,
        registry: Arc<Registry>,
        metrics: Arc<Metrics>,
        engine: Engine,
    ) -> Result<Arc<Node>, NodeError> {
        let Engine {
            broker,
            store,
            fleet,
            presence,
        } = engine;
        let id = node_id(&config);
        let security = Arc::new(Security::from_config(&config)?);
        registry.attach_broker(&broker);
        let presence = presence
            .filter(|_| !config.presence.presence_prefixes.is_empty())
            .map(|store| Arc::new(Presence::new(&config.presence, store, metrics.registry())));
        if let Some(presence) = &presence {
            let membership: Arc<dyn Membership> = presence.clone();
            registry.attach_membership(&membership);
        }
        metrics
            .max_connections
            .set(config.security.max_connections as i64);
        let lifecycle = Arc::new(Lifecycle::new(metrics.draining.clone()));
        let roster = Arc::new(Roster::default());
        let bounces = Arc::new(Bounces::default());
        let resume = Arc::new(Resume::new(
            resume_key(&config)?,
            config.resume.window(),
            ResumeParts {
                node_id: id.clone(),
                registry: registry.clone(),
                broker: broker.clone(),
                store,
                metrics: ResumeMetrics::register(metrics.registry()),
            },
        ));
        let rebalance = Arc::new(Rebalance::new(
            &config.fleet,
            RebalanceParts {
                node_id: id.clone(),
                capacity: config.security.max_connections as u64,
                roster: roster.clone(),
                registry: registry.clone(),
                fleet,
                lifecycle: lifecycle.clone(),
                node_metrics: metrics.clone(),
                bounces: bounces.clone(),
            },
            RebalanceMetrics::register(metrics.registry(), &id),
        ));
        let session = Arc::new(SessionContext {
            settings: config.session.clone(),
            message_frames: config.connection.message_frames,
            message_ids: MessageIds::new(id.clone()),
            registry: registry.clone(),
            broker: broker.clone(),
            security: security.clone(),
            resume: resume.clone(),
            presence: presence.clone(),
            metrics: metrics.clone(),
        });
        let connections = Arc::new(ConnectionContext {
            settings: config.connection.clone(),
            max_frame_rate: config.security.max_frame_rate,
            frame_burst: config.security.frame_burst,
            decoder_limits: config.session.decoder_limits(),
            session,
            roster: roster.clone(),
            bounces,
            metrics: metrics.clone(),
        });
        let server = Arc::new(Server {
            settings: ServerSettings {
                max_connections: config.security.max_connections,
                socket_send_buffer: config.connection.socket_send_buffer,
                affinity_cookie: config.resume.affinity_cookie.clone(),
                tls: config.tls.tls_cert.is_some(),
                broker_grace: std::time::Duration::from_millis(config.cluster.redis_grace_ms),
                demo_presence: presence
                    .as_ref()
                    .is_some_and(|p| p.tracks("/topic/chat.lobby")),
            },
            lifecycle: lifecycle.clone(),
            security: security.clone(),
            rebalance: rebalance.clone(),
            resume: resume.clone(),
            registry: registry.clone(),
            broker: broker.clone(),
            metrics: metrics.clone(),
            connections: connections.clone(),
        });
        Ok(Arc::new(Node {
            id,
            config,
            metrics,
            registry,
            broker,
            security,
            lifecycle,
            roster,
            resume,
            rebalance,
            presence,
            connections,
            server,
        }))
    }

    /// The node's id (message ids, session ids, the fleet view).
    pub fn id(&self) -> &Arc<str> {
        &self.id
    }

    /// The configuration the node was built from.
    pub fn config(&self) -> &Config {
        &self.config
    }

    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    pub fn registry(&self) -> &Arc<Registry> {
        &self.registry
    }

    pub fn broker(&self) -> &Arc<dyn Broker> {
        &self.broker
    }

    pub fn security(&self) -> &Arc<Security> {
        &self.security
    }

    /// Draining state and upgrades in flight.
    pub fn lifecycle(&self) -> &Arc<Lifecycle> {
        &self.lifecycle
    }

    /// Every live connection.
    pub fn roster(&self) -> &Arc<Roster> {
        &self.roster
    }

    pub fn resume(&self) -> &Arc<Resume> {
        &self.resume
    }

    pub fn rebalance(&self) -> &Arc<Rebalance> {
        &self.rebalance
    }

    /// Presence, when `--presence-prefix` names destinations.
    pub fn presence(&self) -> Option<&Arc<Presence>> {
        self.presence.as_ref()
    }

    /// What each connection task runs with.
    pub fn connection_context(&self) -> &Arc<ConnectionContext> {
        &self.connections
    }

    /// What the transport serves with.
    pub fn server(&self) -> &Arc<Server> {
        &self.server
    }
}

/// The resume-token key: configured (every node of a cluster the same), or
/// a random one that resumes only on this node.
fn resume_key(config: &Config) -> Result<TokenKey, SecurityError> {
    Ok(
        match (&config.resume.resume_key, &config.resume.resume_key_file) {
            (Some(secret), _) => TokenKey::new(secret.0.trim().as_bytes()),
            (None, Some(path)) => TokenKey::new(auth::read_secret_file(path)?.trim().as_bytes()),
            (None, None) => TokenKey::random(),
        },
    )
}

/// Replay rings as configured; off with resume.
fn ring_settings(config: &Config) -> RingSettings {
    RingSettings {
        per_destination: if config.resume.resume_window_ms == 0 {
            0
        } else {
            config.resume.resume_ring
        },
        max_bytes: config.resume.resume_ring_bytes,
        // Nobody resuming can need a message older than the window (plus
        // the time it may have waited in a queue before the disconnect).
        max_age: config.resume.window() + std::time::Duration::from_secs(60),
    }
}

/// The node's fan-out, compressing at fan-out when permessage-deflate is on.
fn fanout(config: &Config, registry: &Arc<Registry>, metrics: &Arc<Metrics>) -> Fanout {
    let fanout = Fanout::new(registry.clone(), metrics.clone());
    if config.connection.permessage_deflate {
        fanout.with_deflate(config.connection.deflate_threshold)
    } else {
        fanout
    }
}

/// The configured node id, or a new random one.
fn node_id(config: &Config) -> Arc<str> {
    match &config.node_id {
        Some(id) => id.as_str().into(),
        None => crate::random_hex(4).into(),
    }
}
