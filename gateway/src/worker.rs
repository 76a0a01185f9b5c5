//! The lifecycle every long-running part of the gateway shares, and the gateway's workers: the
//! HTTP server, the bridges, the inbound consumer, the Matrix relay worker, one delivery worker
//! per bridge instance and the display-name loader. [`crate::supervisor`] runs them.

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use axum::Router;
use casebridge_bridges::{BridgeError, Inbound, InboundSink};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::info;

use crate::{relay::Core, server};

/// When a worker is told to stop, and what a stop waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Phase {
    /// Holds nothing durable (learning display names): aborted as the stop begins.
    Helper,
    /// Hands work in (the bridges' readers, the HTTP server): told to stop as the stop begins.
    Intake,
    /// Consumes what intake hands in (the inbound consumer): told to stop once every intake
    /// worker has ended, so that nothing handed in is refused instead of recorded.
    Drain,
    /// Works through the durable queue (the Matrix relay worker, the delivery workers): told to
    /// stop as the stop begins, it finishes the item in hand and its record and takes no
    /// further one. Whatever it would take next stays queued for the next start.
    Finish,
}

/// Why a worker's run ended before it was told to stop. The supervisor logs it and restarts the
/// worker.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct WorkerError(Box<dyn std::error::Error + Send + Sync>);

impl WorkerError {
    /// A failure described by `error`.
    pub fn new(error: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        Self(error.into())
    }
}

impl From<BridgeError> for WorkerError {
    fn from(error: BridgeError) -> Self {
        Self::new(error)
    }
}

impl From<std::io::Error> for WorkerError {
    fn from(error: std::io::Error) -> Self {
        Self::new(error)
    }
}

/// A long-running part of the gateway, run by [`crate::supervisor::Supervisor`].
///
/// `run` works until `stop` fires, then finishes what it must and returns `Ok(())`. A run
/// that fails (an error or a panic) before `stop` fires is run again after a backoff; one that
/// returns `Ok(())` before `stop` has done its job and is not run again.
#[async_trait]
pub trait Worker: Send + Sync + 'static {
    /// Its name in the log (and in the `worker_restarts_total` metric).
    fn name(&self) -> &str;

    /// When it is told to stop.
    fn phase(&self) -> Phase;

    /// Works until `stop` fires.
    async fn run(self: Arc<Self>, stop: CancellationToken) -> Result<(), WorkerError>;

    /// What it holds right now that an abort would cut short, for the log of a stop that runs
    /// out of time; `None` when an abort loses nothing.
    fn in_flight(&self) -> Option<String> {
        None
    }
}

/// The HTTP server (appservice transactions, webhooks, health, metrics).
pub(crate) struct HttpServer {
    /// The bound listener; each run serves a copy of it, so a restart keeps the port. Closed at
    /// the stop, so that new connections are refused while the requests in progress finish.
    listener: Mutex<Option<std::net::TcpListener>>,
    app: Router,
    limits: server::Limits,
}

impl HttpServer {
    pub(crate) fn new(
        listener: tokio::net::TcpListener,
        app: Router,
        limits: server::Limits,
    ) -> std::io::Result<Self> {
        Ok(Self {
            listener: Mutex::new(Some(listener.into_std()?)),
            app,
            limits,
        })
    }
}

#[async_trait]
impl Worker for HttpServer {
    fn name(&self) -> &str {
        "HTTP server"
    }

    fn phase(&self) -> Phase {
        Phase::Intake
    }

    async fn run(self: Arc<Self>, stop: CancellationToken) -> Result<(), WorkerError> {
        let copy = self
            .listener
            .lock()
            .expect("not poisoned")
            .as_ref()
            .map(std::net::TcpListener::try_clone)
            .ok_or_else(|| WorkerError::new("the listener is closed"))??;
        let listener = tokio::net::TcpListener::from_std(copy)?;
        // Graceful: on stop the listener closes, idle connections close, and requests in
        // progress (a webhook whose message is being committed, a transaction) get their answer.
        let close = async {
            stop.cancelled().await;
            self.listener.lock().expect("not poisoned").take();
        };
        tokio::join!(
            server::serve(listener, self.app.clone(), self.limits, stop.clone()),
            close
        );
        Ok(())
    }
}

/// A bridge instance: started, left to its own loops until the stop, then stopped (each bridge
/// bounds its own stop).
pub(crate) struct BridgeWorker {
    core: Arc<Core>,
    instance: String,
    name: String,
    /// Kept only until the bridge has started: the inbound consumer ends when every sender is
    /// gone, as at a stop.
    sink: Mutex<Option<InboundSink>>,
}

impl BridgeWorker {
    pub(crate) fn new(core: Arc<Core>, instance: String, sink: InboundSink) -> Self {
        Self {
            core,
            name: format!("bridges.{instance}"),
            instance,
            sink: Mutex::new(Some(sink)),
        }
    }

    /// Starts the bridge, unless it has started already.
    pub(crate) async fn start(&self) -> Result<(), BridgeError> {
        let Some(sink) = self.sink.lock().expect("not poisoned").take() else {
            return Ok(());
        };
        let running = &self.core.bridges[&self.instance];
        let started = running.bridge.start(sink.clone()).await;
        running.record_health(&self.instance, &self.core.metrics, |health| {
            health.started = started.is_ok();
            health.start_error = started.as_ref().err().map(ToString::to_string);
        });
        if let Err(e) = started {
            *self.sink.lock().expect("not poisoned") = Some(sink);
            return Err(e);
        }
        Ok(())
    }
}

#[async_trait]
impl Worker for BridgeWorker {
    fn name(&self) -> &str {
        &self.name
    }

    fn phase(&self) -> Phase {
        Phase::Intake
    }

    async fn run(self: Arc<Self>, stop: CancellationToken) -> Result<(), WorkerError> {
        self.start().await?;
        stop.cancelled().await;
        self.core.bridges[&self.instance].bridge.stop().await;
        info!(instance = %self.instance, "bridge stopped");
        Ok(())
    }
}

/// Commits what the bridges hand in ([`Core::run_inbound`]).
pub(crate) struct InboundConsumer {
    core: Arc<Core>,
    /// The bridges' channel. It outlives a failed run: a restarted consumer reads on from it.
    rx: tokio::sync::Mutex<mpsc::Receiver<Inbound>>,
}

/// How many items a run of the inbound consumer takes from the bridges' channel ahead of the
/// one it commits: one batch of [`Core::run_inbound`].
pub(crate) const INBOUND_AHEAD: usize = 256;

impl InboundConsumer {
    pub(crate) fn new(core: Arc<Core>, rx: mpsc::Receiver<Inbound>) -> Self {
        Self {
            core,
            rx: tokio::sync::Mutex::new(rx),
        }
    }
}

#[async_trait]
impl Worker for InboundConsumer {
    fn name(&self) -> &str {
        "inbound consumer"
    }

    fn phase(&self) -> Phase {
        Phase::Drain
    }

    async fn run(self: Arc<Self>, stop: CancellationToken) -> Result<(), WorkerError> {
        // `run_inbound` owns its receiver, and a panic would drop it with the bridges' channel:
        // so each run gets a channel of its own, fed from the bridges' one. A failed run loses
        // only what it held (whose senders then see it refused, and do not acknowledge it).
        let mut rx = self.rx.lock().await;
        let (tx, ahead) = mpsc::channel(INBOUND_AHEAD);
        let forward = async move {
            let mut closing = false;
            loop {
                let inbound = tokio::select! {
                    biased;
                    () = stop.cancelled(), if !closing => {
                        // A bridge that keeps a sender after its stop cannot keep the consumer
                        // alive; what was sent before is still received.
                        rx.close();
                        closing = true;
                        continue;
                    }
                    inbound = rx.recv() => inbound,
                };
                let Some(inbound) = inbound else { break };
                if tx.send(inbound).await.is_err() {
                    break;
                }
            }
            // `tx` goes here: the consumer records what is left in its channel, then ends.
        };
        tokio::join!(
            forward,
            self.core
                .clone()
                .run_inbound(ahead, CancellationToken::new())
        );
        Ok(())
    }
}

/// Relays queued messages into their case rooms ([`Core::run_matrix_worker`]).
pub(crate) struct MatrixRelay(pub(crate) Arc<Core>);

#[async_trait]
impl Worker for MatrixRelay {
    fn name(&self) -> &str {
        "Matrix relay worker"
    }

    fn phase(&self) -> Phase {
        Phase::Finish
    }

    async fn run(self: Arc<Self>, stop: CancellationToken) -> Result<(), WorkerError> {
        self.0.clone().run_matrix_worker(stop).await;
        Ok(())
    }
}

/// Delivers queued replies through one bridge instance ([`Core::run_bridge_worker`]).
pub(crate) struct Delivery {
    core: Arc<Core>,
    instance: String,
    name: String,
}

impl Delivery {
    pub(crate) fn new(core: Arc<Core>, instance: String) -> Self {
        Self {
            core,
            name: format!("delivery worker of bridges.{instance}"),
            instance,
        }
    }
}

#[async_trait]
impl Worker for Delivery {
    fn name(&self) -> &str {
        &self.name
    }

    fn phase(&self) -> Phase {
        Phase::Finish
    }

    async fn run(self: Arc<Self>, stop: CancellationToken) -> Result<(), WorkerError> {
        self.core
            .clone()
            .run_bridge_worker(self.instance.clone(), stop)
            .await;
        Ok(())
    }

    fn in_flight(&self) -> Option<String> {
        // The one case a stop cannot make safe: the provider may have taken it.
        let message = self.core.bridges.get(&self.instance)?.in_flight()?;
        Some(format!(
            "delivering reply {message} through bridges.{}: if the provider took it, the next \
             start sends it again (at least once)",
            self.instance
        ))
    }
}

/// Learns the team's display names at start ([`Core::load_display_names`]); done once.
pub(crate) struct DisplayNames(pub(crate) Arc<Core>);

#[async_trait]
impl Worker for DisplayNames {
    fn name(&self) -> &str {
        "display names"
    }

    fn phase(&self) -> Phase {
        Phase::Helper
    }

    async fn run(self: Arc<Self>, _stop: CancellationToken) -> Result<(), WorkerError> {
        self.0.load_display_names().await;
        Ok(())
    }
}
