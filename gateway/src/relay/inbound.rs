//! Inbound: what bridges hand in (client messages, delivery reports) into the records.

use std::sync::Arc;

use casebridge_bridges::{Accepted, DeliveryReport, DeliveryStatus, Inbound, SubmitError};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{error, warn};

use super::Core;

/// How a bridge is told what became of a message it handed in.
type Answer = tokio::sync::oneshot::Sender<Result<Accepted, SubmitError>>;
use crate::{
    store::{MessageState, NewInbound, Recorded, StoreError},
    texts::Text,
};

impl Core {
    /// Consumes what bridges hand in: messages are committed a batch per transaction before
    /// they are answered; delivery reports are recorded one by one. Once `closed` fires (at a
    /// stop, after the bridges and the HTTP server), it takes nothing new, records what is
    /// still in the channel and ends.
    pub async fn run_inbound(
        self: Arc<Self>,
        mut rx: mpsc::Receiver<Inbound>,
        closed: CancellationToken,
    ) {
        let mut received = Vec::with_capacity(256);
        let mut closing = false;
        loop {
            let n = tokio::select! {
                n = rx.recv_many(&mut received, 256) => n,
                () = closed.cancelled(), if !closing => {
                    // A bridge that keeps a sender after its stop cannot keep the consumer
                    // alive; what was sent before is still received.
                    rx.close();
                    closing = true;
                    continue;
                }
            };
            if n == 0 {
                break;
            }
            let mut batch = Vec::with_capacity(received.len());
            let mut replies = Vec::with_capacity(received.len());
            let mut reports = Vec::new();
            for inbound in received.drain(..) {
                let envelope = match inbound {
                    Inbound::Message(envelope) => envelope,
                    Inbound::Report(report) => {
                        reports.push(report);
                        continue;
                    }
                };
                let Some(instance) = self.config.bridges.get(&*envelope.instance) else {
                    let _ = envelope.reply.send(Err(SubmitError(format!(
                        "unknown bridge instance {}",
                        envelope.instance
                    ))));
                    continue;
                };
                batch.push(NewInbound {
                    label: envelope.capabilities.label.to_owned(),
                    ghost_localpart: self
                        .ghost_localpart(&envelope.instance, envelope.message.from.as_str()),
                    instance: envelope.instance.to_string(),
                    channel: envelope.capabilities.channel.to_owned(),
                    team: instance.team.clone(),
                    message: envelope.message,
                });
                replies.push(envelope.reply);
            }
            for envelope in reports {
                let result = self
                    .record_report(&envelope.instance, &envelope.report)
                    .await;
                let _ = envelope
                    .reply
                    .send(result.map_err(|e| SubmitError(e.to_string())));
            }
            if batch.is_empty() {
                continue;
            }
            self.record_messages(&batch, replies).await;
        }
    }

    /// Records a batch of client messages in one transaction, then answers each bridge.
    async fn record_messages(&self, batch: &[NewInbound], replies: Vec<Answer>) {
        match self.store.record_inbound(batch, &self.policies).await {
            Ok(Recorded { answers, wake }) => {
                for ((item, answer), reply) in batch.iter().zip(answers).zip(replies) {
                    if matches!(answer, Accepted::Recorded { .. }) {
                        self.metrics
                            .messages_in
                            .with_label_values(&[&item.channel])
                            .inc();
                    }
                    let _ = reply.send(Ok(answer));
                }
                self.matrix_wake.notify_one();
                for instance in wake {
                    if let Some(b) = self.bridges.get(&instance) {
                        b.wake.notify_one();
                    }
                }
            }
            Err(e) => {
                error!(error = %e, count = batch.len(), "could not record inbound messages");
                self.metrics.errors.with_label_values(&["store"]).inc();
                for reply in replies {
                    let _ = reply.send(Err(SubmitError(e.to_string())));
                }
            }
        }
    }

    /// Records what a channel reports of a reply it took, and tells the team when it reached
    /// the client or failed; `Ok(false)`: no reply of ours has that id.
    async fn record_report(
        &self,
        instance: &str,
        report: &DeliveryReport,
    ) -> Result<bool, StoreError> {
        let label = self.label(instance, instance);
        let (state, error, notice) = match &report.status {
            DeliveryStatus::Sent => (MessageState::Sent, None, None),
            DeliveryStatus::Delivered => (
                MessageState::Delivered,
                None,
                Some(Text::Delivered {
                    label,
                    at: report.at,
                }),
            ),
            DeliveryStatus::Failed { reason } => (
                MessageState::Failed,
                Some(reason.clone()),
                Some(Text::NotDelivered {
                    label,
                    reason: reason.clone(),
                    unreachable: false,
                }),
            ),
        };
        let matched = self
            .store
            .record_delivery(
                instance,
                report.remote_id.as_str(),
                state,
                error.as_deref(),
                report.at,
                notice.as_ref().map(|n| (n, self.policies.languages())),
            )
            .await?;
        if matched {
            self.matrix_wake.notify_one();
        } else {
            warn!(instance, remote_id = %report.remote_id, "delivery report for no reply of ours");
        }
        Ok(matched)
    }
}
