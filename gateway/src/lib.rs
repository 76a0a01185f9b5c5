//! casebridge's gateway: the Matrix application service that gives every client case its own
//! room, relays each channel into it and the case team's replies back out, and keeps every
//! message as a record. `ARCHITECTURE.md` at the repository root draws the layers.

pub mod allocator;
pub mod appservice;
pub mod cache;
mod commands;
pub mod journal;
pub mod matrix;
pub mod metrics;
pub mod policy;
pub mod preflight;
pub mod purge;
pub mod registration;
pub mod relay;
pub mod server;
pub mod store;
pub mod supervisor;
pub mod texts;
pub mod throttle;
pub mod worker;

use std::{collections::BTreeMap, net::SocketAddr, sync::Arc, time::Duration};

use casebridge_bridges::{BridgeError, BridgeFactory, CredentialCheck, InboundSink};
use casebridge_config::{Config, ConfigError};
use tokio::{
    sync::{mpsc, Notify},
    time::Instant,
};
use tracing::{error, info};

use crate::{
    metrics::Metrics,
    policy::Policies,
    relay::{Core, RunningBridge},
    store::{Store, StoreError},
    supervisor::{Backoff, Supervisor},
    worker::{BridgeWorker, Delivery, DisplayNames, HttpServer, InboundConsumer, MatrixRelay},
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
    /// A bridge instance could not be built.
    // `error`, not `source`: the message says it already, and a source would be printed again
    // by every caller that prints the chain of causes (anyhow's `{:#}`).
    #[error("{}", named(&format!("bridges.{instance}"), error))]
    Bridge {
        /// The instance key.
        instance: String,
        /// What went wrong.
        error: BridgeError,
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
    #[error("appservice.listen: cannot listen on {addr}: {error}")]
    Listen {
        /// The address.
        addr: SocketAddr,
        /// Why.
        error: std::io::Error,
    },
}

/// `error`, led by `key` unless it names that key already (`bridges.sms.number: ...`).
fn named(key: &str, error: &impl std::fmt::Display) -> String {
    let text = error.to_string();
    if text.starts_with(key) {
        text
    } else {
        format!("{key}: {text}")
    }
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
            .map_err(|error| StartError::Bridge {
                instance: name.clone(),
                error,
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
                health: std::sync::Mutex::default(),
            },
        );
    }
    Ok(bridges)
}

/// How long [`Gateway::check_bridges`] waits for one channel's answer.
pub const BRIDGE_CHECK_TIMEOUT: Duration = Duration::from_secs(30);

/// How long a stop waits for the work in flight (a delivery and its record, an HTTP request, a
/// relay round, a reader's last batch) before it aborts what is left. A service manager kills
/// the process some time after SIGTERM (systemd after 90 s, Kubernetes after 30 s, by default);
/// 8 s keeps the whole stop within 10 s, and one slow provider call fits in it.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(8);

/// A running gateway.
pub struct Gateway {
    core: Arc<Core>,
    addr: SocketAddr,
    /// Runs every long-running part: see [`worker`] for who they are and when each stops.
    workers: Supervisor,
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
        let listen = config.appservice.listen;
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .map_err(|error| StartError::Listen {
                addr: listen,
                error,
            })?;
        let addr = listener.local_addr().map_err(|error| StartError::Listen {
            addr: listen,
            error,
        })?;
        let metrics = Metrics::new();
        let core = Arc::new(Core::new(
            config,
            secrets,
            store,
            bridges,
            metrics.clone(),
            policies,
        ));
        // Everything that can fail the start is done before the first worker runs.
        let app = appservice::router(core.clone());
        let limits = server::Limits::from_config(&core.config.http);
        let http = HttpServer::new(listener, app, limits)
            .map_err(|error| StartError::Listen { addr, error })?;
        let mut workers = Supervisor::new(metrics, Backoff::default());

        workers.spawn(Arc::new(DisplayNames(core.clone())));
        // Less than the inbound consumer takes ahead: together they hold what one channel did.
        let (tx, rx) = mpsc::channel(1024 - worker::INBOUND_AHEAD);
        workers.spawn(Arc::new(InboundConsumer::new(core.clone(), rx)));
        workers.spawn(Arc::new(MatrixRelay(core.clone())));
        for name in core.bridges.keys() {
            workers.spawn(Arc::new(Delivery::new(core.clone(), name.clone())));
        }
        workers.spawn(Arc::new(http));

        for (name, running) in &core.bridges {
            core.metrics.bridge_up.with_label_values(&[name]).set(0);
            let sink = InboundSink::new(name.as_str(), running.capabilities.clone(), tx.clone())
                .with_state(Arc::new(core.store.clone()));
            let bridge = BridgeWorker::new(core.clone(), name.clone(), sink);
            // Started here, so that the log says at once which bridge cannot start. One that
            // cannot is an ERROR and is started again with a backoff by the supervisor; the
            // others run, and /health and /metrics show it.
            if let Err(error) = bridge.start().await {
                error!(
                    "{}; the other bridges run, and this one is started again",
                    named(&format!("bridges.{name}"), &error)
                );
            }
            workers.spawn(Arc::new(bridge));
        }
        info!(%addr, bridges = core.bridges.len(), "gateway running");
        Ok(Self {
            core,
            addr,
            workers,
        })
    }

    /// Where the HTTP server listens.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Checks the homeserver link (see [`preflight`]); shows the result in `/health` and
    /// `/metrics` and returns it.
    pub async fn check_homeserver(&self) -> preflight::HomeserverCheck {
        let check = preflight::homeserver(&self.core.matrix, &self.core.config).await;
        self.core
            .metrics
            .set_homeserver_linked(!matches!(check, preflight::HomeserverCheck::Broken(_)));
        *self.core.homeserver_link.lock().expect("not poisoned") = Some(check.clone());
        check
    }

    /// Shows each bridge's credentials to its channel (see
    /// [`casebridge_bridges::Bridge::check_credentials`]), all at once and each within
    /// [`BRIDGE_CHECK_TIMEOUT`]; shows the results in `/health` and `/metrics` and returns them
    /// by instance.
    pub async fn check_bridges(&self) -> BTreeMap<String, CredentialCheck> {
        let checks = self.core.bridges.iter().map(|(name, running)| async move {
            let check = match tokio::time::timeout(
                BRIDGE_CHECK_TIMEOUT,
                running.bridge.check_credentials(),
            )
            .await
            {
                Ok(check) => check,
                Err(_) => CredentialCheck::Unreachable(format!(
                    "no answer within {} s",
                    BRIDGE_CHECK_TIMEOUT.as_secs()
                )),
            };
            running.record_health(name, &self.core.metrics, |health| {
                health.credentials = Some(check.clone());
            });
            (name.clone(), check)
        });
        futures::future::join_all(checks)
            .await
            .into_iter()
            .collect()
    }

    /// Tells the teams, in their alert rooms, of the channels in `checks` that newly refuse the
    /// office's credentials or work again (see [`relay::channel_news`]). `refused` holds the
    /// bridge instances whose teams were told that they refuse; a team that could not be told
    /// (no alert room, the homeserver down) is tried again with the next checks.
    pub async fn tell_teams(
        &self,
        checks: &BTreeMap<String, CredentialCheck>,
        refused: &mut std::collections::BTreeSet<String>,
    ) {
        for (instance, check) in checks {
            if let Err(e) = self
                .core
                .tell_team_of_channel(instance, check, refused)
                .await
            {
                tracing::warn!(bridge = %format!("bridges.{instance}"), error = %e, "cannot tell the team in its alert room that its channel changed");
            }
        }
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
    pub async fn shutdown_within(self, grace: Duration) {
        let started = Instant::now();
        info!(
            ?grace,
            "stopping: no new work; finishing the work in flight"
        );
        self.workers.stop_by(started + grace, grace).await;
        info!(elapsed = ?started.elapsed(), "gateway stopped");
    }
}
