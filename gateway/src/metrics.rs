//! Prometheus metrics of the gateway, served at `GET /metrics`.

use prometheus::{
    Encoder, Histogram, HistogramOpts, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
    TextEncoder,
};

/// The gateway's metrics, registered in their own registry.
#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    /// Messages recorded from clients, per channel.
    pub messages_in: IntCounterVec,
    /// Replies accepted by a channel, per channel.
    pub messages_out: IntCounterVec,
    /// Failures, per place (`store`, `matrix`, or a channel).
    pub errors: IntCounterVec,
    /// Items waiting in the durable queue, per target (set when scraped).
    pub queue_depth: IntGaugeVec,
    /// Seconds from recording an inbound message to its event in the case room.
    pub relay_latency: Histogram,
    /// Workers run again after they failed, per worker (`crate::supervisor`).
    pub worker_restarts: IntCounterVec,
    /// 0 when the last appservice ping through the homeserver showed the link broken, else 1
    /// (a homeserver without the ping counts as linked); absent until one was made
    /// (`crate::preflight`).
    homeserver_linked: IntGauge,
    /// 1 while a bridge instance runs with credentials its channel has not refused.
    pub bridge_up: IntGaugeVec,
    homeserver_checked: std::sync::Arc<std::sync::Once>,
}

impl Metrics {
    /// Creates and registers every metric.
    pub fn new() -> Self {
        let registry = Registry::new_custom(Some("casebridge".into()), None).expect("valid prefix");
        let messages_in = IntCounterVec::new(
            Opts::new("messages_in_total", "Messages recorded from clients"),
            &["channel"],
        )
        .expect("valid metric");
        let messages_out = IntCounterVec::new(
            Opts::new("messages_out_total", "Replies accepted by a channel"),
            &["channel"],
        )
        .expect("valid metric");
        let errors = IntCounterVec::new(Opts::new("errors_total", "Failures by place"), &["place"])
            .expect("valid metric");
        let worker_restarts = IntCounterVec::new(
            Opts::new(
                "worker_restarts_total",
                "Workers run again after they failed",
            ),
            &["worker"],
        )
        .expect("valid metric");
        let queue_depth = IntGaugeVec::new(
            Opts::new("queue_depth", "Items waiting in the durable queue"),
            &["target"],
        )
        .expect("valid metric");
        let homeserver_linked = IntGauge::new(
            "homeserver_linked",
            "0 when the last appservice ping through the homeserver showed the link broken, else 1",
        )
        .expect("valid metric");
        let bridge_up = IntGaugeVec::new(
            Opts::new(
                "bridge_up",
                "1 while a bridge instance has started and its channel has not refused its \
                 credentials, else 0",
            ),
            &["instance"],
        )
        .expect("valid metric");
        let relay_latency = Histogram::with_opts(
            HistogramOpts::new(
                "relay_latency_seconds",
                "Seconds from recording an inbound message to its event in the case room",
            )
            .buckets(vec![
                0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
            ]),
        )
        .expect("valid metric");
        for c in [&messages_in, &messages_out, &errors, &worker_restarts] {
            registry
                .register(Box::new(c.clone()))
                .expect("registered once");
        }
        for g in [&queue_depth, &bridge_up] {
            registry
                .register(Box::new(g.clone()))
                .expect("registered once");
        }
        registry
            .register(Box::new(relay_latency.clone()))
            .expect("registered once");
        Self {
            registry,
            messages_in,
            messages_out,
            errors,
            queue_depth,
            relay_latency,
            worker_restarts,
            homeserver_linked,
            bridge_up,
            homeserver_checked: std::sync::Arc::new(std::sync::Once::new()),
        }
    }

    /// Sets `casebridge_homeserver_linked`, shown from the first check on.
    pub fn set_homeserver_linked(&self, linked: bool) {
        self.homeserver_checked.call_once(|| {
            self.registry
                .register(Box::new(self.homeserver_linked.clone()))
                .expect("registered once");
        });
        self.homeserver_linked.set(i64::from(linked));
    }

    /// The text exposition format.
    pub fn render(&self) -> String {
        let mut out = Vec::new();
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut out)
            .expect("text encoding");
        String::from_utf8(out).expect("the text format is UTF-8")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
