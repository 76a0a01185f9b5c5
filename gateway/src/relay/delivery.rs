//! Delivery: queued replies handed to their bridge, in order per case, one worker per bridge.

use std::{collections::HashSet, sync::Arc, time::Duration};

use casebridge_bridges::{DeliveryError, Discretion, OutboundMessage};
use chrono::Utc;
use tokio_util::sync::CancellationToken;
use tracing::{error, warn};

use super::{matrix_relay::due_groups, Core, RunningBridge, STORE_PAUSE};
use crate::{
    store::{queue_item, MessageId, MessageKind, Store, StoreError, Target},
    texts::Text,
};

/// Items a worker takes from the queue per round.
const BATCH: u64 = 64;
/// Failed attempts at delivering a reply before the case team is told it is delayed.
const DELAYED_NOTICE_AFTER: i32 = 5;

/// Marks a message as in the bridge's hands until it is dropped: after its record is
/// written, or when the worker is aborted.
struct Delivering<'a>(&'a RunningBridge);

impl<'a> Delivering<'a> {
    fn new(running: &'a RunningBridge, message: MessageId) -> Self {
        *running.delivering.lock().expect("not poisoned") = Some(message);
        Self(running)
    }
}

impl Drop for Delivering<'_> {
    fn drop(&mut self) {
        *self.0.delivering.lock().expect("not poisoned") = None;
    }
}

impl Core {
    /// Delivers queued replies through bridge `instance`, in order, until `stop` fires. A stop
    /// lets the delivery in hand finish and be recorded (a reply the provider took but the
    /// records do not show as sent would go out again after the restart); no new one starts.
    pub async fn run_bridge_worker(self: Arc<Self>, instance: String, stop: CancellationToken) {
        let Some(running) = self.bridges.get(&instance) else {
            return;
        };
        while !stop.is_cancelled() {
            let pause = match self.bridge_round(&instance, running, &stop).await {
                Ok(true) => continue,
                Ok(false) => self.until_next_due(Target::Bridge, &instance).await,
                Err(pause) => pause,
            };
            tokio::select! {
                () = running.wake.notified() => {}
                () = tokio::time::sleep(pause) => {}
                () = stop.cancelled() => {}
            }
        }
    }

    /// One round over the head of the queue: `Ok(true)` when all went (more may be waiting),
    /// `Ok(false)` when nothing is due or a stop came, `Err(pause)` when a case waits for its
    /// retry or the records store failed.
    async fn bridge_round(
        &self,
        instance: &str,
        running: &RunningBridge,
        stop: &CancellationToken,
    ) -> Result<bool, Duration> {
        // The head of the queue, by case: a reply never overtakes an earlier one of its case
        // that waits for a retry; other cases go on.
        let items = match self.store.head(Target::Bridge, instance, BATCH).await {
            Ok(items) => items,
            Err(e) => {
                error!(error = %e, "reading the bridge queue");
                return Err(STORE_PAUSE);
            }
        };
        let (groups, next_due) = due_groups(items);
        if groups.is_empty() {
            return match next_due {
                Some(wait) => Err(wait.max(Duration::from_millis(10))),
                None => Ok(false),
            };
        }
        let mut retry_in: Option<Duration> = None;
        let mut failed_cases = HashSet::new();
        for item in groups.into_iter().flatten() {
            if stop.is_cancelled() {
                return Ok(false);
            }
            if failed_cases.contains(&item.case_id) {
                continue;
            }
            if let Attempt::Retry(pause) = self.deliver_one(running, &item).await? {
                failed_cases.insert(item.case_id);
                retry_in = Some(retry_in.map_or(pause, |r| r.min(pause)));
            }
        }
        match retry_in {
            Some(pause) => Err(pause),
            None => Ok(true),
        }
    }

    /// Hands one queued reply to the bridge and records what became of it; `Err` is the pause
    /// after the records store failed.
    async fn deliver_one(
        &self,
        running: &RunningBridge,
        item: &queue_item::Model,
    ) -> Result<Attempt, Duration> {
        let outbound = match self.outbound_message(item).await {
            Ok(m) => m,
            Err(e) => {
                error!(error = %e, queue_item = item.id, "reading a queued reply");
                return Err(STORE_PAUSE);
            }
        };
        let channel = running.capabilities.channel;
        let delivering = Delivering::new(running, item.message_id);
        let stored = match running.bridge.deliver(&outbound).await {
            Ok(delivered) => {
                self.metrics
                    .messages_out
                    .with_label_values(&[channel])
                    .inc();
                self.store
                    .sent(item, delivered.remote_id.as_ref().map(|id| id.as_str()))
                    .await
            }
            Err(e) if e.is_permanent() => self.refused(running, item, &e).await,
            Err(e) => return Ok(Attempt::Retry(self.retry_delivery(running, item, &e).await)),
        };
        drop(delivering);
        if let Err(e) = stored {
            error!(error = %e, "recording a delivery");
            return Err(STORE_PAUSE);
        }
        Ok(Attempt::Done)
    }

    /// Records a reply the channel refused for good, and tells the team.
    async fn refused(
        &self,
        running: &RunningBridge,
        item: &queue_item::Model,
        e: &DeliveryError,
    ) -> Result<(), StoreError> {
        self.metrics
            .errors
            .with_label_values(&[running.capabilities.channel])
            .inc();
        warn!(error = %e, message = %item.message_id, "channel refused a reply");
        let notice = Text::NotDelivered {
            label: running.capabilities.label.to_owned(),
            reason: e.to_string(),
            unreachable: e.is_unreachable(),
        };
        let stored = self
            .store
            .failed(
                item,
                &e.to_string(),
                Some((&notice, self.policies.languages())),
                e.is_unreachable(),
            )
            .await;
        self.matrix_wake.notify_one();
        stored
    }

    /// Schedules the retry of a reply whose delivery failed for now; returns how long its case
    /// waits.
    async fn retry_delivery(
        &self,
        running: &RunningBridge,
        item: &queue_item::Model,
        e: &DeliveryError,
    ) -> Duration {
        self.metrics
            .errors
            .with_label_values(&[running.capabilities.channel])
            .inc();
        let pause = e
            .retry_after()
            .unwrap_or_else(|| self.backoff(item.attempts));
        if let Some(left_out) = running.warnings.allow() {
            warn!(error = %e, attempt = item.attempts + 1, retry_in = ?pause, left_out, "channel delivery failed");
        }
        let at = Utc::now() + chrono::Duration::from_std(pause).unwrap_or_default();
        // A reply that keeps failing (the channel is down, or refuses the office's
        // credentials) is news for the team, once: they may want to call instead.
        let notice = (item.attempts + 1 == DELAYED_NOTICE_AFTER).then(|| Text::DeliveryDelayed {
            label: running.capabilities.label.to_owned(),
            reason: e.to_string(),
        });
        let _ = self
            .store
            .retry_later_telling(
                item,
                &e.to_string(),
                at,
                notice.as_ref().map(|n| (n, self.policies.languages())),
            )
            .await;
        if notice.is_some() {
            self.matrix_wake.notify_one();
        }
        pause
    }

    async fn outbound_message(
        &self,
        item: &queue_item::Model,
    ) -> Result<OutboundMessage, StoreError> {
        let message = self.store.message(item.message_id).await?;
        let case = self.store.case(item.case_id).await?;
        let identity_id = message
            .identity_id
            .ok_or_else(|| StoreError::Missing(format!("identity of message {}", message.id)))?;
        let identity = Store::identity(self.store.connection(), identity_id).await?;
        let conversation = self.store.conversation(identity.id).await?;
        let attachments = match message.attachments {
            Some(_) => self
                .store
                .attachments(message.id)
                .await?
                .into_iter()
                .map(|a| casebridge_bridges::Attachment {
                    filename: a.filename,
                    mime: a.mime,
                    data: a.data,
                })
                .collect(),
            None => Vec::new(),
        };
        Ok(OutboundMessage {
            attachments,
            conversation,
            record_id: message.id.0,
            case_number: case.number,
            to: casebridge_bridges::RemoteAddress::new(identity.address),
            automatic: message.kind.is_some_and(MessageKind::is_automatic),
            body: message.body,
            html: message.html,
            discreet: case.discreet.then(|| {
                let team = self.policies.team(&case.team);
                Discretion {
                    sender_name: team
                        .map_or_else(|| "Info".to_owned(), |t| t.discreet.sender_name.clone()),
                    subject: team
                        .map_or_else(|| "Message".to_owned(), |t| t.discreet.subject.clone()),
                }
            }),
        })
    }
}

/// What became of one queued reply handed to its bridge.
enum Attempt {
    /// Its outcome is recorded: sent, or refused for good.
    Done,
    /// It failed for now: its case waits this long.
    Retry(Duration),
}
