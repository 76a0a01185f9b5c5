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
pub mod server;
pub mod store;
pub mod throttle;

use std::{collections::BTreeMap, net::SocketAddr, sync::Arc, time::Duration};

use casebridge_bridges::{BridgeError, BridgeFactory, InboundSink};
use casebridge_config::{Config, ConfigError};
use tokio::{
    sync::{mpsc, Notify},
    task::JoinHandle,
    time::Instant,
};
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

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
                delivering: std::sync::Mutex::new(None),
                warnings: throttle::Throttle::new(relay::OUTAGE_LOG_EVERY),
            },
        );
    }
    Ok(bridges)
}

/// How long a stop waits for the work in flight (a delivery and its record, an HTTP request, a
/// relay round, a reader's last batch) before it aborts what is left. A service manager kills
/// the process some time after SIGTERM (systemd after 90 s, Kubernetes after 30 s, by default);
/// 8 s keeps the whole stop within 10 s, and one slow provider call fits in it.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(8);

/// A task of the gateway, named for the log of a stop.
struct Task {
    name: String,
    handle: JoinHandle<()>,
    /// The delivery worker of this bridge instance, if it is one.
    delivers: Option<String>,
}

impl Task {
    fn new(name: impl Into<String>, handle: JoinHandle<()>) -> Self {
        Self {
            name: name.into(),
            handle,
            delivers: None,
        }
    }
}

/// A running gateway.
pub struct Gateway {
    core: Arc<Core>,
    addr: SocketAddr,
    /// Fired when the gateway stops: workers take no new item, the HTTP server no new request.
    stop: CancellationToken,
    /// Fired once nothing can hand in inbound any more: the inbound consumer records what is
    /// left in its channel, then ends.
    inbound_closed: CancellationToken,
    /// The HTTP server (webhooks and appservice transactions hand in work through it).
    server: Task,
    /// The inbound consumer: it must outlive every producer, or their last messages would be
    /// refused instead of recorded.
    inbound: Task,
    /// The Matrix relay worker and the delivery workers.
    workers: Vec<Task>,
    /// Work that holds nothing durable (learning display names): aborted at once.
    helpers: Vec<Task>,
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
        let stop = CancellationToken::new();
        let inbound_closed = CancellationToken::new();

        let names = core.clone();
        let helpers = vec![Task::new(
            "display names",
            tokio::spawn(async move { names.load_display_names().await }),
        )];
        let (tx, rx) = mpsc::channel(1024);
        let inbound = Task::new(
            "inbound consumer",
            tokio::spawn(core.clone().run_inbound(rx, inbound_closed.clone())),
        );
        let mut workers = vec![Task::new(
            "Matrix relay worker",
            tokio::spawn(core.clone().run_matrix_worker(stop.clone())),
        )];
        for name in core.bridges.keys() {
            workers.push(Task {
                name: format!("delivery worker of bridges.{name}"),
                handle: tokio::spawn(core.clone().run_bridge_worker(name.clone(), stop.clone())),
                delivers: Some(name.clone()),
            });
        }

        let app = appservice::router(core.clone());
        let limits = server::Limits::from_config(&core.config.http);
        // Graceful: on stop the listener closes, idle connections close, and requests in
        // progress (a webhook whose message is being committed, a transaction) get their answer.
        let server = Task::new(
            "HTTP server",
            tokio::spawn(server::serve(listener, app, limits, stop.clone())),
        );

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
            stop,
            inbound_closed,
            server,
            inbound,
            workers,
            helpers,
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

    /// Stops within [`SHUTDOWN_GRACE`]; see [`Gateway::shutdown_within`].
    pub async fn shutdown(self) {
        self.shutdown_within(SHUTDOWN_GRACE).await;
    }

    /// Stops taking new work, lets the work in flight finish and be recorded, and returns
    /// within about `grace`. Queued work stays queued for the next start.
    ///
    /// A reply the provider accepted must be marked sent before the process ends, or the next
    /// start sends it again. So the delivery workers finish the delivery in hand and its
    /// record, and take no further item; the Matrix relay worker records the events it sent;
    /// the HTTP server refuses new connections and answers the requests it has; the bridges
    /// stop reading; and the inbound consumer records what they handed in, so their
    /// acknowledgements still go out after the commit. Whatever is still running at the
    /// deadline is aborted, and named in the log.
    pub async fn shutdown_within(mut self, grace: Duration) {
        let started = Instant::now();
        let deadline = started + grace;
        info!(
            ?grace,
            "stopping: no new work; finishing the work in flight"
        );
        self.stop.cancel();
        for helper in &self.helpers {
            helper.handle.abort();
        }

        let core = &self.core;
        let inbound_closed = &self.inbound_closed;
        let (server, inbound) = (&mut self.server.handle, &mut self.inbound.handle);
        let producers = async move {
            // Readers stop while the workers finish their items (each bridge bounds its own stop).
            let bridges =
                futures::future::join_all(core.bridges.iter().map(|(name, running)| async move {
                    running.bridge.stop().await;
                    info!(instance = %name, "bridge stopped");
                }));
            let _ = tokio::join!(bridges, server);
            // Nothing can hand in more: record what is left, answer it, end.
            inbound_closed.cancel();
            let _ = inbound.await;
        };
        let workers =
            futures::future::join_all(self.workers.iter_mut().map(|task| &mut task.handle));
        let in_time = tokio::time::timeout_at(deadline, async {
            tokio::join!(producers, workers);
        })
        .await
        .is_ok();

        // A task awaited to its end must not be awaited again: only the aborted ones are.
        let mut aborted = Vec::new();
        if !in_time {
            let tasks = std::iter::once(self.server)
                .chain(std::iter::once(self.inbound))
                .chain(self.workers);
            for task in tasks.filter(|t| !t.handle.is_finished()) {
                let in_flight = task
                    .delivers
                    .as_ref()
                    .and_then(|instance| Some((instance, self.core.bridges.get(instance)?)))
                    .and_then(|(instance, running)| Some((instance, running.in_flight()?)));
                match in_flight {
                    // The one case a stop cannot make safe: the provider may have taken it.
                    Some((instance, message)) => error!(
                        instance = %instance,
                        message = %message,
                        "stopped in the middle of delivering a reply: if the provider took it, \
                         the next start sends it again (at least once)"
                    ),
                    None => warn!(task = %task.name, ?grace, "did not finish in time; aborted"),
                }
                task.handle.abort();
                aborted.push(task.handle);
            }
        }
        for handle in aborted
            .into_iter()
            .chain(self.helpers.into_iter().map(|t| t.handle))
        {
            let _ = handle.await;
        }
        info!(elapsed = ?started.elapsed(), "gateway stopped");
    }
}
