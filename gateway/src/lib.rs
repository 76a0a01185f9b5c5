//! casebridge's gateway: the Matrix application service that gives every client case its own
//! room, relays each channel into it and the case team's replies back out, and keeps every
//! message as a record. `ARCHITECTURE.md` at the repository root draws the layers.

pub mod appservice;
mod commands;
pub mod journal;
pub mod matrix;
pub mod metrics;
pub mod policy;
pub mod purge;
pub mod registration;
pub mod relay;
pub mod store;

use std::{collections::BTreeMap, net::SocketAddr, sync::Arc};

use casebridge_bridges::{BridgeError, BridgeFactory, InboundSink};
use casebridge_config::{Config, ConfigError};
use tokio::{
    sync::{mpsc, Notify},
    task::JoinHandle,
};
use tracing::info;

use crate::{
    metrics::Metrics,
    policy::Policies,
    relay::{Core, RunningBridge},
    store::{Store, StoreError},
};

/// Why the gateway could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The configuration is wrong.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The records store is unreachable or its migrations failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A bridge instance could not be built or started.
    #[error("bridges.{instance}: {source}")]
    Bridge {
        /// The instance key.
        instance: String,
        /// What went wrong.
        source: BridgeError,
    },
    /// A bridge kind no factory answers to.
    #[error("bridges.{instance}.kind: unknown bridge kind {kind:?} (this build knows: {known})")]
    UnknownKind {
        /// The instance key.
        instance: String,
        /// The kind asked for.
        kind: String,
        /// The kinds this build has.
        known: String,
    },
    /// The HTTP listener could not bind.
    #[error("appservice.listen: cannot listen on {addr}: {source}")]
    Listen {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
}

/// Builds the bridge instances of `config` with `factories`, without starting them.
pub fn build_bridges(
    config: &Config,
    factories: &[Arc<dyn BridgeFactory>],
) -> Result<BTreeMap<String, RunningBridge>, StartError> {
    let mut bridges = BTreeMap::new();
    for (name, instance) in &config.bridges {
        let factory = factories
            .iter()
            .find(|f| f.kind() == instance.kind)
            .ok_or_else(|| StartError::UnknownKind {
                instance: name.clone(),
                kind: instance.kind.clone(),
                known: if factories.is_empty() {
                    "none".to_owned()
                } else {
                    factories
                        .iter()
                        .map(|f| f.kind())
                        .collect::<Vec<_>>()
                        .join(", ")
                },
            })?;
        let bridge = factory
            .build(name, instance)
            .map_err(|source| StartError::Bridge {
                instance: name.clone(),
                source,
            })?;
        let capabilities = bridge.capabilities();
        bridges.insert(
            name.clone(),
            RunningBridge {
                bridge,
                capabilities,
                wake: Notify::new(),
            },
        );
    }
    Ok(bridges)
}

/// A running gateway.
pub struct Gateway {
    core: Arc<Core>,
    addr: SocketAddr,
    shutdown: Arc<Notify>,
    tasks: Vec<JoinHandle<()>>,
}

impl Gateway {
    /// Starts everything: store, HTTP server, relay workers, bridges.
    pub async fn start(
        config: Config,
        factories: &[Arc<dyn BridgeFactory>],
    ) -> Result<Self, StartError> {
        let secrets = config.secrets()?;
        let store = Store::connect(
            secrets.database_url.expose(),
            config.database.max_connections,
        )
        .await?;
        let policies = Policies::load(&config)?;
        let bridges = build_bridges(&config, factories)?;
        let listener = tokio::net::TcpListener::bind(config.appservice.listen)
            .await
            .map_err(|source| StartError::Listen {
                addr: config.appservice.listen,
                source,
            })?;
        let addr = listener.local_addr().map_err(|source| StartError::Listen {
            addr: config.appservice.listen,
            source,
        })?;
        let core = Arc::new(Core::new(
            config,
            secrets,
            store,
            bridges,
            Metrics::new(),
            policies,
        ));
        let shutdown = Arc::new(Notify::new());
        let mut tasks = Vec::new();

        let names = core.clone();
        tasks.push(tokio::spawn(
            async move { names.load_display_names().await },
        ));
        let (tx, rx) = mpsc::channel(1024);
        tasks.push(tokio::spawn(core.clone().run_inbound(rx)));
        tasks.push(tokio::spawn(
            core.clone().run_matrix_worker(shutdown.clone()),
        ));
        for name in core.bridges.keys() {
            tasks.push(tokio::spawn(
                core.clone()
                    .run_bridge_worker(name.clone(), shutdown.clone()),
            ));
        }

        let app = appservice::router(core.clone());
        let stop = shutdown.clone();
        tasks.push(tokio::spawn(async move {
            let serve = axum::serve(listener, app).with_graceful_shutdown(async move {
                stop.notified().await;
            });
            if let Err(e) = serve.await {
                tracing::error!(error = %e, "HTTP server stopped");
            }
        }));

        for (name, running) in &core.bridges {
            let sink = InboundSink::new(name.as_str(), running.capabilities.clone(), tx.clone())
                .with_state(Arc::new(core.store.clone()));
            running
                .bridge
                .start(sink)
                .await
                .map_err(|source| StartError::Bridge {
                    instance: name.clone(),
                    source,
                })?;
        }
        info!(%addr, bridges = core.bridges.len(), "gateway running");
        Ok(Self {
            core,
            addr,
            shutdown,
            tasks,
        })
    }

    /// Where the HTTP server listens.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The records store.
    pub fn store(&self) -> &Store {
        &self.core.store
    }

    /// Stops the bridges, then the workers and the HTTP server. Queued work stays queued.
    pub async fn shutdown(self) {
        for running in self.core.bridges.values() {
            running.bridge.stop().await;
        }
        self.shutdown.notify_waiters();
        for task in self.tasks {
            task.abort();
            let _ = task.await;
        }
    }
}
