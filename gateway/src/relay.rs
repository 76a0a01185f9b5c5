//! The relay: inbound messages into records and case rooms, case-team replies into records and
//! out through their bridge, each step taken from the durable queue.

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    sync::{Arc, Mutex},
    time::Duration,
};

use futures::{stream::FuturesUnordered, StreamExt};

use casebridge_bridges::{
    Accepted, Bridge, Capabilities, DeliveryReport, DeliveryStatus, Discretion, Inbound,
    OutboundMessage, SubmitError,
};
use casebridge_config::{Config, Secrets};
use casebridge_policies::{media::Cleaned, outbound::strip_reply_fallback, privacy::Outcome};
use chrono::Utc;
use ruma::{
    events::{
        room::message::{MessageType, OriginalRoomMessageEvent, Relation, RoomMessageEventContent},
        AnyMessageLikeEvent, AnyStateEvent, AnyTimelineEvent, Mentions, MessageLikeEvent,
        StateEvent,
    },
    serde::Raw,
    OwnedEventId, OwnedMxcUri, OwnedRoomAliasId, OwnedRoomId, OwnedTransactionId, OwnedUserId,
    RoomAliasId, UserId,
};
use sea_orm::ConnectionTrait;
use tokio::sync::{mpsc, Notify};
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

use crate::{
    matrix::{MatrixClient, MatrixError},
    metrics::Metrics,
    policy::Policies,
    store::{
        attachment, message, queue_item, CaseId, Direction, IdentityId, MessageId, MessageKind,
        MessageState, NewInbound, NewOutbound, Recorded, Store, StoreError, Target,
    },
    throttle::Throttle,
};

/// A bridge instance the gateway runs.
pub struct RunningBridge {
    /// The bridge.
    pub bridge: Arc<dyn Bridge>,
    /// Its capabilities, read once at start.
    pub capabilities: Capabilities,
    /// Wakes its delivery worker when a reply is queued.
    pub wake: Notify,
    /// The message its delivery worker has handed to the bridge and not yet recorded: what a
    /// stop that has to abort the worker names in the log.
    pub delivering: Mutex<Option<MessageId>>,
    /// Its delivery worker's outage warnings: one line per interval however many fail.
    pub warnings: Throttle,
}

impl RunningBridge {
    /// The message being delivered right now, if any.
    pub fn in_flight(&self) -> Option<MessageId> {
        *self.delivering.lock().expect("not poisoned")
    }
}

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

/// Everything the relay tasks share.
pub struct Core {
    /// The configuration.
    pub config: Config,
    /// Resolved secrets.
    pub secrets: Secrets,
    /// The records store.
    pub store: Store,
    /// The homeserver client.
    pub matrix: MatrixClient,
    /// Running bridge instances by key.
    pub bridges: BTreeMap<String, RunningBridge>,
    /// Wakes the Matrix relay worker.
    pub matrix_wake: Notify,
    /// Counters and histograms.
    pub metrics: Metrics,
    /// Every team's policy.
    pub policies: Policies,
    /// The bot user.
    pub bot: OwnedUserId,
    bot_ready: tokio::sync::OnceCell<()>,
    /// Rooms of cases, once known (a case's room never changes).
    rooms: Mutex<HashMap<CaseId, OwnedRoomId>>,
    /// Ghosts known to be in their case room, by identity.
    ghosts: Mutex<HashMap<IdentityId, OwnedUserId>>,
    /// Alert rooms the bot is in, by team.
    alert_rooms: Mutex<HashMap<String, OwnedRoomId>>,
    /// Display names of workers, as the homeserver last told (profiles, member events).
    display_names: Mutex<HashMap<String, String>>,
    /// Outage warnings: one line per interval however many items fail.
    relay_warnings: Throttle,
}

/// How often an outage that fails every queued item is logged.
pub const OUTAGE_LOG_EVERY: Duration = Duration::from_secs(30);

/// Items a worker takes from the queue per round.
const BATCH: u64 = 64;
/// Items of the queue's head the Matrix worker looks at per round.
const HEAD: u64 = 512;
/// Pause after the records store failed, before trying again.
const STORE_PAUSE: Duration = Duration::from_secs(1);
/// The longest a worker sleeps with nothing to do (it is woken for new work).
const IDLE: Duration = Duration::from_secs(60);
/// Failed attempts at delivering a reply before the case team is told it is delayed.
const DELAYED_NOTICE_AFTER: i32 = 5;
/// Attempts after which a request the homeserver refuses for good is given up (the record
/// keeps the message, marked failed).
const MAX_PERMANENT_ATTEMPTS: i32 = 5;

impl Core {
    /// Assembles the core.
    pub fn new(
        config: Config,
        secrets: Secrets,
        store: Store,
        bridges: BTreeMap<String, RunningBridge>,
        metrics: Metrics,
        policies: Policies,
    ) -> Self {
        let matrix = MatrixClient::new(config.homeserver.url.as_str(), secrets.as_token.expose());
        let bot = UserId::parse(format!(
            "@{}:{}",
            config.appservice.bot_localpart, config.homeserver.server_name
        ))
        .expect("bot_localpart and server_name are checked at load");
        Self {
            config,
            secrets,
            store,
            matrix,
            bridges,
            matrix_wake: Notify::new(),
            metrics,
            policies,
            bot,
            bot_ready: tokio::sync::OnceCell::new(),
            rooms: Mutex::new(HashMap::new()),
            ghosts: Mutex::new(HashMap::new()),
            alert_rooms: Mutex::new(HashMap::new()),
            display_names: Mutex::new(HashMap::new()),
            relay_warnings: Throttle::new(OUTAGE_LOG_EVERY),
        }
    }

    /// The ghost localpart that speaks for `address` on `instance`: see [`ghost_localpart`].
    pub fn ghost_localpart(&self, instance: &str, address: &str) -> String {
        ghost_localpart(
            &self.config.appservice.ghost_prefix,
            instance,
            address,
            self.config.homeserver.server_name.as_str(),
        )
    }

    fn user_id(&self, localpart: &str) -> Result<OwnedUserId, MatrixError> {
        UserId::parse(format!(
            "@{localpart}:{}",
            self.config.homeserver.server_name
        ))
        .map_err(|e| MatrixError::local("user id", format!("@{localpart}: {e}")))
    }

    fn case_alias(&self, number: &str) -> (String, Result<OwnedRoomAliasId, MatrixError>) {
        let localpart = format!("{}case_{number}", self.config.appservice.ghost_prefix);
        let alias = RoomAliasId::parse(format!(
            "#{localpart}:{}",
            self.config.homeserver.server_name
        ))
        .map_err(|e| MatrixError::local("alias", e.to_string()));
        (localpart, alias)
    }

    pub(crate) fn label(&self, instance: &str, channel: &str) -> String {
        self.bridges
            .get(instance)
            .map_or_else(|| channel.to_owned(), |b| b.capabilities.label.to_owned())
    }

    /// A worker's display name, if known.
    fn display_name(&self, user: &UserId) -> Option<String> {
        self.display_names
            .lock()
            .expect("not poisoned")
            .get(user.as_str())
            .cloned()
    }

    /// Every known display name of a worker.
    fn known_names(&self) -> Vec<String> {
        self.display_names
            .lock()
            .expect("not poisoned")
            .values()
            .cloned()
            .collect()
    }

    /// Remembers the display name a homeserver reports for a (non-appservice) user.
    fn learn_display_name(&self, user: &UserId, name: Option<&str>) {
        if self.config.is_appservice_user(user) {
            return;
        }
        let mut names = self.display_names.lock().expect("not poisoned");
        match name.map(str::trim).filter(|n| !n.is_empty()) {
            Some(name) => {
                names.insert(user.to_string(), name.to_owned());
            }
            None => {
                names.remove(user.as_str());
            }
        }
    }

    /// Asks the homeserver for every configured worker's display name (at start; member events
    /// keep them current after).
    pub async fn load_display_names(&self) {
        let users: Vec<OwnedUserId> = self
            .config
            .teams
            .values()
            .flat_map(|t| t.members.iter().chain(&t.on_call))
            .cloned()
            .collect();
        for user in users {
            match self.matrix.display_name(&user).await {
                Ok(name) => self.learn_display_name(&user, name.as_deref()),
                Err(e) => debug!(%user, error = %e, "no display name"),
            }
        }
    }

    // ----- inbound: channel -> record -----

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
            match self.store.record_inbound(&batch, &self.policies).await {
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
    }

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
                Some(format!(
                    "Delivered to the client ({label}) at {}.",
                    report.at.format("%Y-%m-%d %H:%M UTC")
                )),
            ),
            DeliveryStatus::Failed { reason } => (
                MessageState::Failed,
                Some(reason.clone()),
                Some(format!("Not delivered to the client ({label}): {reason}")),
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
                notice.as_deref(),
            )
            .await?;
        if matched {
            self.matrix_wake.notify_one();
        } else {
            warn!(instance, remote_id = %report.remote_id, "delivery report for no reply of ours");
        }
        Ok(matched)
    }

    // ----- record -> case room -----

    /// Relays queued messages into their case rooms until `stop` fires. A pool of up to
    /// `[queue] relay_concurrency` cases is in flight at once, refilled as each finishes (no
    /// rounds: one slow room never holds the others back); a case is never in flight twice, so
    /// its messages keep their order, and a case whose head failed waits for its backoff while
    /// the others go on. A stop lets the cases in flight send their current item and record
    /// what they sent.
    pub async fn run_matrix_worker(self: Arc<Self>, stop: CancellationToken) {
        let capacity = self.config.queue.relay_concurrency.get();
        let mut in_flight = FuturesUnordered::new();
        let mut busy: HashSet<CaseId> = HashSet::new();
        loop {
            let mut pause = IDLE;
            if !stop.is_cancelled() && in_flight.len() < capacity {
                match self.due_cases(&busy, capacity - in_flight.len()).await {
                    Ok((groups, next_due)) => {
                        pause = next_due.unwrap_or(IDLE);
                        for group in groups {
                            busy.insert(group[0].case_id);
                            in_flight.push(self.relay_case(group, &stop));
                        }
                    }
                    Err(p) => pause = p,
                }
            }
            if in_flight.is_empty() && stop.is_cancelled() {
                return;
            }
            let full = in_flight.len() >= capacity;
            tokio::select! {
                Some(case) = in_flight.next(), if !in_flight.is_empty() => {
                    busy.remove(&case);
                }
                () = self.matrix_wake.notified(), if !full => {}
                () = tokio::time::sleep(pause), if !full => {}
                () = stop.cancelled(), if !stop.is_cancelled() => {}
            }
        }
    }

    /// Up to `room` cases at the head of the queue whose first item is due and that are not
    /// `busy`, and how long until the earliest head that is not due yet; on a store failure,
    /// the pause before trying again.
    async fn due_cases(
        &self,
        busy: &HashSet<CaseId>,
        room: usize,
    ) -> Result<(Vec<Vec<queue_item::Model>>, Option<Duration>), Duration> {
        let items = match self.store.head(Target::Matrix, "", HEAD).await {
            Ok(items) => items,
            Err(e) => {
                error!(error = %e, "reading the Matrix queue");
                return Err(STORE_PAUSE);
            }
        };
        let items = items
            .into_iter()
            .filter(|item| !busy.contains(&item.case_id))
            .collect();
        let (mut groups, next_due) = due_groups(items);
        groups.truncate(room);
        Ok((groups, next_due))
    }

    /// Relays one case's due items and records what went; returns the case.
    async fn relay_case(&self, group: Vec<queue_item::Model>, stop: &CancellationToken) -> CaseId {
        let case = group[0].case_id;
        let messages = match self
            .store
            .messages_by_id(group.iter().map(|item| item.message_id))
            .await
        {
            Ok(m) => m,
            Err(e) => {
                error!(error = %e, "reading queued messages");
                tokio::time::sleep(STORE_PAUSE).await;
                return case;
            }
        };
        let done = self.relay_group(group, &messages, stop).await;
        if let Err(e) = self.store.relayed(&done).await {
            // Sent but not marked: the retry reuses each send's transaction id, so the
            // homeserver answers with the same event instead of a second one.
            error!(error = %e, "recording relayed messages");
            tokio::time::sleep(STORE_PAUSE).await;
        }
        case
    }

    /// Relays one case's due items in order; stops at the first failure, which waits for its
    /// backoff and keeps the case's later items behind it. Returns what was relayed.
    async fn relay_group(
        &self,
        group: Vec<queue_item::Model>,
        messages: &HashMap<MessageId, message::Model>,
        stop: &CancellationToken,
    ) -> Vec<(queue_item::Model, String)> {
        let mut done = Vec::with_capacity(group.len());
        for item in group {
            // Stopping: what is sent gets recorded; the rest stays queued for the next start.
            if stop.is_cancelled() {
                return done;
            }
            let Some(message) = messages.get(&item.message_id) else {
                error!(
                    queue_item = item.id,
                    "queued message is missing from the records"
                );
                // Not retried at once: the case is taken again after the pause.
                tokio::time::sleep(STORE_PAUSE).await;
                return done;
            };
            match self.relay(&item, message).await {
                Ok(event_id) => done.push((item, event_id)),
                Err(RelayError::Store(e)) => {
                    error!(error = %e, queue_item = item.id, "records store failed while relaying");
                    tokio::time::sleep(STORE_PAUSE).await;
                    return done;
                }
                Err(RelayError::Matrix(e)) => {
                    self.metrics.errors.with_label_values(&["matrix"]).inc();
                    if !e.is_transient() && item.attempts + 1 >= MAX_PERMANENT_ATTEMPTS {
                        error!(error = %e, message = %item.message_id, "homeserver refuses this message for good");
                        if let Err(e) = self.store.failed(&item, &e.to_string(), "", false).await {
                            error!(error = %e, "recording a failed relay");
                        }
                        return done;
                    }
                    let pause = e.retry_after.unwrap_or_else(|| self.backoff(item.attempts));
                    if let Some(left_out) = self.relay_warnings.allow() {
                        warn!(error = %e, attempt = item.attempts + 1, retry_in = ?pause, left_out, "relay to the homeserver failed");
                    }
                    let at = Utc::now() + chrono::Duration::from_std(pause).unwrap_or_default();
                    if let Err(e) = self.store.retry_later(&item, &e.to_string(), at).await {
                        error!(error = %e, "recording a retry");
                    }
                    return done;
                }
            }
        }
        done
    }

    async fn relay(
        &self,
        item: &queue_item::Model,
        message: &message::Model,
    ) -> Result<String, RelayError> {
        let room = self.ensure_room(item.case_id).await?;
        let txn_id: OwnedTransactionId = format!("cb-m{}", message.id).into();
        let event = match message.direction {
            Direction::Inbound => {
                let identity_id = message.identity_id.ok_or_else(|| {
                    StoreError::Missing(format!("identity of message {}", message.id))
                })?;
                let ghost = self.ensure_ghost_in_room(identity_id, &room).await?;
                let files = match message.attachments {
                    Some(_) => self.store.attachments(message.id).await?,
                    None => Vec::new(),
                };
                let mut first = None;
                if !message.body.is_empty() || files.is_empty() {
                    let mut content = match &message.html {
                        Some(html) => RoomMessageEventContent::text_html(&message.body, html),
                        None => RoomMessageEventContent::text_plain(&message.body),
                    };
                    // A client's edit shows as an edit of their message, once that is in the
                    // room (edits come after what they edit, in the same case's order).
                    if let Some(edited) = &message.replaces {
                        if let Some(original) =
                            self.store.inbound_event(&message.instance, edited).await?
                        {
                            if let Ok(original) = OwnedEventId::try_from(original) {
                                content = content.make_replacement(
                                    ruma::events::room::message::ReplacementMetadata::new(
                                        original, None,
                                    ),
                                );
                            }
                        }
                    }
                    first = Some(
                        self.matrix
                            .send_message(&room, &txn_id, &content, Some(&ghost))
                            .await?,
                    );
                }
                for file in files {
                    let id = file.id;
                    let event = self
                        .relay_attachment(&room, &ghost, message.id, file)
                        .await?;
                    // Each file is its own event: retention must find it to redact it.
                    self.store.set_attachment_event(id, event.as_str()).await?;
                    first.get_or_insert(event);
                }
                first.expect("a text or at least one file was sent")
            }
            Direction::Alert => {
                let case = self.store.case(item.case_id).await?;
                let alert_room = self.alert_room(&case.team).await?;
                self.matrix
                    .send_message(&alert_room, &txn_id, &team_message(message), None)
                    .await?
            }
            _ => {
                self.matrix
                    .send_message(&room, &txn_id, &team_message(message), None)
                    .await?
            }
        };
        let latency = (Utc::now() - message.received_at)
            .to_std()
            .unwrap_or_default();
        self.metrics.relay_latency.observe(latency.as_secs_f64());
        debug!(message = %message.id, %event, "relayed into the case room");
        Ok(event.to_string())
    }

    /// Uploads one file (once) and posts it as the ghost. A file the homeserver refuses for its
    /// size becomes a notice naming it: the record keeps it whole.
    async fn relay_attachment(
        &self,
        room: &OwnedRoomId,
        ghost: &UserId,
        message_id: MessageId,
        file: attachment::Model,
    ) -> Result<OwnedEventId, RelayError> {
        let txn_id: OwnedTransactionId = format!("cb-m{message_id}-a{}", file.position).into();
        // Images lose EXIF/GPS and the like first (by their bytes, whatever type was declared);
        // the record keeps the original.
        let data = match casebridge_policies::media::clean(&file.mime, &file.data) {
            Cleaned::Unchanged => file.data.clone(),
            Cleaned::Clean(bytes) => bytes,
            Cleaned::Withheld { reason } => {
                let notice = RoomMessageEventContent::notice_plain(format!(
                    "The client sent {} ({}), an image that could not be cleaned of hidden data \
                     such as a location: {reason}. It is kept in the case records and not shown \
                     here.",
                    file.filename, file.mime
                ));
                return Ok(self
                    .matrix
                    .send_message(room, &txn_id, &notice, None)
                    .await?);
            }
        };
        let size = data.len() as i64;
        let uri = match &file.mxc_uri {
            Some(uri) => OwnedMxcUri::from(uri.as_str()),
            None => match self
                .matrix
                .upload(data, &file.mime, &file.filename, Some(ghost))
                .await
            {
                Ok(uri) => {
                    self.store.set_attachment_uri(file.id, uri.as_str()).await?;
                    uri
                }
                Err(e) if e.status == Some(413) => {
                    let notice = RoomMessageEventContent::notice_plain(format!(
                        "The client sent {} ({}, {} bytes), larger than the homeserver accepts. \
                         It is kept in the case records.",
                        file.filename, file.mime, file.size
                    ));
                    return Ok(self
                        .matrix
                        .send_message(room, &txn_id, &notice, None)
                        .await?);
                }
                Err(e) => return Err(e.into()),
            },
        };
        let content =
            RoomMessageEventContent::new(media_message(&file.filename, &file.mime, size, uri));
        Ok(self
            .matrix
            .send_message(room, &txn_id, &content, Some(ghost))
            .await?)
    }

    /// Team `team`'s alert room, with the bot in it (it must have been invited, or the room
    /// be public).
    async fn alert_room(&self, team: &str) -> Result<OwnedRoomId, RelayError> {
        if let Some(room) = self.alert_rooms.lock().expect("not poisoned").get(team) {
            return Ok(room.clone());
        }
        let configured = self
            .policies
            .team(team)
            .and_then(|p| p.alert_room.clone())
            .ok_or_else(|| {
                MatrixError::local(
                    "alert room",
                    format!("teams.{team}.emergency.alert_room is not set"),
                )
            })?;
        let room = match OwnedRoomId::try_from(configured.as_str()) {
            Ok(room) => room,
            Err(_) => {
                let alias = OwnedRoomAliasId::try_from(configured.as_str())
                    .map_err(|e| MatrixError::local("alert room", e.to_string()))?;
                self.matrix.resolve_alias(&alias).await?.ok_or_else(|| {
                    MatrixError::local(
                        "alert room",
                        format!("teams.{team}.emergency.alert_room: no room has alias {alias}"),
                    )
                })?
            }
        };
        self.ensure_bot().await?;
        if let Err(e) = self.matrix.join(&room, &self.bot).await {
            error!(error = %e, %room, team, "the bot cannot join the alert room: invite it there");
            return Err(e.into());
        }
        self.alert_rooms
            .lock()
            .expect("not poisoned")
            .insert(team.to_owned(), room.clone());
        Ok(room)
    }

    async fn ensure_bot(&self) -> Result<(), MatrixError> {
        self.bot_ready
            .get_or_try_init(|| async {
                self.matrix
                    .ensure_registered(&self.config.appservice.bot_localpart)
                    .await?;
                self.matrix
                    .set_display_name(&self.bot, &self.config.appservice.bot_displayname)
                    .await
            })
            .await
            .map(|_| ())
    }

    /// The case's room, created (with the team invited) on its first message.
    async fn ensure_room(&self, case_id: CaseId) -> Result<OwnedRoomId, RelayError> {
        if let Some(room) = self.rooms.lock().expect("not poisoned").get(&case_id) {
            return Ok(room.clone());
        }
        let case = self.store.case(case_id).await?;
        if let Some(room) = &case.room_id {
            let room = OwnedRoomId::try_from(room.as_str())
                .map_err(|e| MatrixError::local("room id", e.to_string()))?;
            self.rooms
                .lock()
                .expect("not poisoned")
                .insert(case_id, room.clone());
            return Ok(room);
        }
        self.ensure_bot().await?;
        let identities = self.store.identities(case_id).await?;
        let first = identities.first();
        let label = first
            .map(|i| self.label(&i.instance, &i.channel))
            .unwrap_or_default();
        let name = match first {
            Some(i) => format!("{} ({label})", i.display_name),
            None => format!("Case {}", case.number),
        };
        let topic = format!(
            "Case {} · {label} · answered by team {}",
            case.number, case.team
        );
        let invite = self
            .config
            .teams
            .get(&case.team)
            .map(|t| t.members.clone())
            .unwrap_or_default();
        let (alias_localpart, alias) = self.case_alias(&case.number);
        let room = self
            .matrix
            .create_case_room(&alias_localpart, &alias?, &name, &topic, invite)
            .await?;
        self.store.set_room(case_id, room.as_str()).await?;
        self.rooms
            .lock()
            .expect("not poisoned")
            .insert(case_id, room.clone());
        info!(case = %case.number, %room, "case room created");
        Ok(room)
    }

    /// The identity's ghost, registered, named and joined to `room`.
    async fn ensure_ghost_in_room(
        &self,
        identity_id: IdentityId,
        room: &OwnedRoomId,
    ) -> Result<OwnedUserId, RelayError> {
        if let Some(ghost) = self.ghosts.lock().expect("not poisoned").get(&identity_id) {
            return Ok(ghost.clone());
        }
        let identity = Store::identity(self.store.connection(), identity_id).await?;
        let ghost = self.user_id(&identity.ghost_localpart)?;
        if identity.joined_at.is_none() {
            self.matrix
                .ensure_registered(&identity.ghost_localpart)
                .await?;
            let label = self.label(&identity.instance, &identity.channel);
            self.matrix
                .set_display_name(&ghost, &format!("{} ({label})", identity.display_name))
                .await?;
            self.matrix.invite(room, &ghost).await?;
            self.matrix.join(room, &ghost).await?;
            self.store.set_joined(identity.id).await?;
        }
        self.ghosts
            .lock()
            .expect("not poisoned")
            .insert(identity_id, ghost.clone());
        Ok(ghost)
    }

    fn backoff(&self, attempts: i32) -> Duration {
        let q = &self.config.queue;
        let factor = 1u64 << attempts.clamp(0, 16);
        Duration::from_millis(
            q.initial_backoff_ms
                .saturating_mul(factor)
                .min(q.max_backoff_ms),
        )
    }

    async fn until_next_due(&self, target: Target, instance: &str) -> Duration {
        match self.store.next_due(target, instance).await {
            Ok(Some(at)) => (at - Utc::now())
                .to_std()
                .unwrap_or(Duration::ZERO)
                .max(Duration::from_millis(10)),
            _ => Duration::from_secs(60),
        }
    }

    // ----- record -> channel -----

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
                return Err(Duration::from_secs(1));
            }
        };
        let (groups, next_due) = due_groups(items);
        if groups.is_empty() {
            return match next_due {
                Some(wait) => Err(wait.max(Duration::from_millis(10))),
                None => Ok(false),
            };
        }
        let channel = running.capabilities.channel;
        let mut retry_in: Option<Duration> = None;
        let mut failed_cases = HashSet::new();
        for item in groups.into_iter().flatten() {
            if stop.is_cancelled() {
                return Ok(false);
            }
            if failed_cases.contains(&item.case_id) {
                continue;
            }
            let outbound = match self.outbound_message(&item).await {
                Ok(m) => m,
                Err(e) => {
                    error!(error = %e, queue_item = item.id, "reading a queued reply");
                    return Err(Duration::from_secs(1));
                }
            };
            let delivering = Delivering::new(running, item.message_id);
            let result = running.bridge.deliver(&outbound).await;
            let stored = match result {
                Ok(delivered) => {
                    self.metrics
                        .messages_out
                        .with_label_values(&[channel])
                        .inc();
                    self.store
                        .sent(&item, delivered.remote_id.as_ref().map(|id| id.as_str()))
                        .await
                }
                Err(e) if e.is_permanent() => {
                    self.metrics.errors.with_label_values(&[channel]).inc();
                    warn!(error = %e, message = %item.message_id, "channel refused a reply");
                    let notice = format!(
                        "Not delivered to the client ({}): {e}",
                        running.capabilities.label
                    );
                    let notice = if e.is_unreachable() {
                        format!(
                            "{notice}\nThe case is flagged: the client cannot be reached on {} until they write from there again. !via another channel, if they have one.",
                            running.capabilities.label
                        )
                    } else {
                        notice
                    };
                    let stored = self
                        .store
                        .failed(&item, &e.to_string(), &notice, e.is_unreachable())
                        .await;
                    self.matrix_wake.notify_one();
                    stored
                }
                Err(e) => {
                    self.metrics.errors.with_label_values(&[channel]).inc();
                    let pause = e
                        .retry_after()
                        .unwrap_or_else(|| self.backoff(item.attempts));
                    if let Some(left_out) = running.warnings.allow() {
                        warn!(error = %e, attempt = item.attempts + 1, retry_in = ?pause, left_out, "channel delivery failed");
                    }
                    let at = Utc::now() + chrono::Duration::from_std(pause).unwrap_or_default();
                    // A reply that keeps failing (the channel is down, or refuses the office's
                    // credentials) is news for the team, once: they may want to call instead.
                    let notice = (item.attempts + 1 == DELAYED_NOTICE_AFTER).then(|| {
                        format!(
                            "Delivery to the client ({}) is delayed: {e}. casebridge keeps \
                             trying and nothing is lost; the replies after it wait their turn.",
                            running.capabilities.label
                        )
                    });
                    let _ = self
                        .store
                        .retry_later_telling(&item, &e.to_string(), at, notice.as_deref())
                        .await;
                    if notice.is_some() {
                        self.matrix_wake.notify_one();
                    }
                    failed_cases.insert(item.case_id);
                    retry_in = Some(retry_in.map_or(pause, |r| r.min(pause)));
                    continue;
                }
            };
            drop(delivering);
            if let Err(e) = stored {
                error!(error = %e, "recording a delivery");
                return Err(Duration::from_secs(1));
            }
        }
        match retry_in {
            Some(pause) => Err(pause),
            None => Ok(true),
        }
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

    // ----- case room -> record -----

    /// Processes one appservice transaction exactly once: a replay is acknowledged only.
    pub async fn handle_transaction(
        &self,
        txn_id: &str,
        events: &[Raw<AnyTimelineEvent>],
    ) -> Result<(), StoreError> {
        // Files workers send are fetched before the transaction: no network wait holds the
        // records store.
        let files = self.fetch_worker_files(events).await;
        let txn = self.store.begin_write().await?;
        if !Store::claim_transaction(&txn, txn_id).await? {
            debug!(txn_id, "transaction replayed; acknowledged again");
            return Ok(());
        }
        let mut queued = Vec::new();
        let mut invites = Vec::new();
        let mut moved = Vec::new();
        let mut unreadable = Unreadable::default();
        for raw in events {
            match raw.deserialize() {
                Ok(AnyTimelineEvent::MessageLike(AnyMessageLikeEvent::RoomMessage(
                    MessageLikeEvent::Original(event),
                ))) => {
                    let handled = self.handle_room_message(&txn, &event, &files).await?;
                    queued.extend(handled.instance);
                    invites.extend(handled.invite);
                    moved.extend(handled.moved);
                }
                Ok(AnyTimelineEvent::State(AnyStateEvent::RoomMember(StateEvent::Original(
                    member,
                )))) => {
                    if let Ok(user) = UserId::parse(member.state_key.as_str()) {
                        self.learn_display_name(&user, member.content.displayname.as_deref());
                    }
                }
                Ok(_) => {}
                Err(e) => unreadable.add(raw, &e),
            }
        }
        txn.commit().await.map_err(StoreError::from)?;
        unreadable.log(txn_id);
        if !moved.is_empty() {
            // Their next messages go to the case they joined, by a ghost that joins its room.
            self.store.forget_contacts();
            self.ghosts
                .lock()
                .expect("not poisoned")
                .retain(|identity, _| !moved.contains(identity));
        }
        self.matrix_wake.notify_one();
        for (room, user) in invites {
            // Already in the room is fine; anything else is worth a line in the log (the
            // assignment itself is recorded).
            let room = match OwnedRoomId::try_from(room.as_str()) {
                Ok(room) => room,
                Err(e) => {
                    warn!(error = %e, "case room id");
                    continue;
                }
            };
            if let Err(e) = self.matrix.invite(&room, &user).await {
                warn!(error = %e, %room, %user, "inviting an assignee");
            }
        }
        for instance in queued {
            if let Some(b) = self.bridges.get(&instance) {
                b.wake.notify_one();
            }
        }
        Ok(())
    }

    /// Downloads the files case-team members post in case rooms, images without their
    /// metadata; a file that cannot be fetched is left out (the message gets a notice).
    async fn fetch_worker_files(
        &self,
        events: &[Raw<AnyTimelineEvent>],
    ) -> HashMap<OwnedEventId, casebridge_bridges::Attachment> {
        use ruma::events::room::MediaSource;
        let mut out = HashMap::new();
        for raw in events {
            let Ok(AnyTimelineEvent::MessageLike(AnyMessageLikeEvent::RoomMessage(
                MessageLikeEvent::Original(event),
            ))) = raw.deserialize()
            else {
                continue;
            };
            if self.config.is_appservice_user(&event.sender) {
                continue;
            }
            let (name, source, mime) = match &event.content.msgtype {
                MessageType::Image(m) => (
                    m.filename().to_owned(),
                    &m.source,
                    m.info.as_ref().and_then(|i| i.mimetype.clone()),
                ),
                MessageType::File(m) => (
                    m.filename().to_owned(),
                    &m.source,
                    m.info.as_ref().and_then(|i| i.mimetype.clone()),
                ),
                MessageType::Audio(m) => (
                    m.filename().to_owned(),
                    &m.source,
                    m.info.as_ref().and_then(|i| i.mimetype.clone()),
                ),
                MessageType::Video(m) => (
                    m.filename().to_owned(),
                    &m.source,
                    m.info.as_ref().and_then(|i| i.mimetype.clone()),
                ),
                _ => continue,
            };
            let MediaSource::Plain(uri) = source else {
                continue;
            };
            match Store::case_by_room(self.store.connection(), event.room_id.as_str()).await {
                Ok(Some(_)) => {}
                _ => continue,
            }
            let mime = mime.unwrap_or_else(|| "application/octet-stream".to_owned());
            match self.matrix.download(uri).await {
                Ok(data) => {
                    // A worker's photo must not carry where it was taken either: the same rule.
                    let data = match casebridge_policies::media::clean(&mime, &data) {
                        Cleaned::Unchanged => data,
                        Cleaned::Clean(bytes) => bytes,
                        Cleaned::Withheld { reason } => {
                            warn!(event = %event.event_id, %reason, "a worker's image is not sent");
                            continue;
                        }
                    };
                    out.insert(
                        event.event_id.clone(),
                        casebridge_bridges::Attachment {
                            filename: name,
                            mime,
                            data,
                        },
                    );
                }
                Err(e) => {
                    warn!(event = %event.event_id, error = %e, "cannot fetch a worker's file")
                }
            }
        }
        out
    }

    /// A message in a room: a reply to queue, a refusal to note, or nothing of ours. Returns the
    /// bridge instance a reply was queued for.
    async fn handle_room_message<C: ConnectionTrait>(
        &self,
        conn: &C,
        event: &OriginalRoomMessageEvent,
        files: &HashMap<OwnedEventId, casebridge_bridges::Attachment>,
    ) -> Result<Handled, StoreError> {
        // Our own bot and ghosts: never echoed back.
        if self.config.is_appservice_user(&event.sender) {
            return Ok(Handled::default());
        }
        let Some(case) = Store::case_by_room(conn, event.room_id.as_str()).await? else {
            return Ok(Handled::default());
        };
        let members = self
            .config
            .teams
            .get(&case.team)
            .map(|t| t.members.as_slice())
            .unwrap_or(&[]);
        let command = match &event.content.msgtype {
            MessageType::Text(text) => {
                casebridge_policies::commands::parse(&command_text(text, &event.content))
            }
            _ => None,
        };
        if let Some(command) = command {
            if !members.contains(&event.sender) {
                Store::record_notice(
                    conn,
                    case.id,
                    &format!(
                        "Only members of team {} can use commands in a case room. Nothing was done.",
                        case.team
                    ),
                )
                .await?;
                return Ok(Handled::default());
            }
            let body = event.content.body();
            return match command {
                Ok(command) => {
                    let after = self
                        .run_command(
                            conn,
                            &case,
                            event.event_id.as_str(),
                            event.sender.as_str(),
                            body,
                            command,
                        )
                        .await?;
                    Ok(Handled {
                        instance: after.wake,
                        invite: after.invite,
                        moved: after.moved,
                    })
                }
                Err(refusal) => {
                    if Store::record_internal(
                        conn,
                        case.id,
                        MessageKind::Command,
                        event.event_id.as_str(),
                        event.sender.as_str(),
                        body,
                    )
                    .await?
                    {
                        Store::record_notice(conn, case.id, &refusal).await?;
                    }
                    Ok(Handled::default())
                }
            };
        }
        if !members.contains(&event.sender) {
            Store::record_notice(
                conn,
                case.id,
                &format!(
                    "Only members of team {} can write to the client. This message was not sent.",
                    case.team
                ),
            )
            .await?;
            return Ok(Handled::default());
        }
        if matches!(event.content.relates_to, Some(Relation::Replacement(_))) {
            Store::record_notice(
                conn,
                case.id,
                "Edits are not sent to the client: the first version was sent. Send a new message to correct it.",
            )
            .await?;
            return Ok(Handled::default());
        }
        let mut attachments = Vec::new();
        let (body, html) = match &event.content.msgtype {
            MessageType::Text(text) => (
                text.body.clone(),
                text.formatted.as_ref().map(|f| f.body.clone()),
            ),
            MessageType::Emote(emote) => (
                emote.body.clone(),
                emote.formatted.as_ref().map(|f| f.body.clone()),
            ),
            // Notices are the convention for bot output, never client-facing text.
            MessageType::Notice(_) => return Ok(Handled::default()),
            MessageType::Image(_)
            | MessageType::File(_)
            | MessageType::Audio(_)
            | MessageType::Video(_) => {
                let Some(file) = files.get(&event.event_id) else {
                    Store::record_notice(
                        conn,
                        case.id,
                        "The file could not be fetched from the homeserver (or is encrypted, or an \
                         image that cannot be read). Nothing was sent.",
                    )
                    .await?;
                    return Ok(Handled::default());
                };
                attachments.push(file.clone());
                (String::new(), None)
            }
            other => {
                Store::record_notice(
                    conn,
                    case.id,
                    &format!(
                        "Messages of type {} cannot be sent to the client yet. Nothing was sent.",
                        other.msgtype()
                    ),
                )
                .await?;
                return Ok(Handled::default());
            }
        };
        let Some(identity_id) = case.last_identity_id else {
            return Ok(Handled::default());
        };
        let identity = Store::identity(conn, identity_id).await?;
        if !self.bridges.contains_key(&identity.instance) {
            Store::record_notice(
                conn,
                case.id,
                &format!(
                    "The client's channel ({}) is not running on this gateway. Nothing was sent.",
                    identity.instance
                ),
            )
            .await?;
            return Ok(Handled::default());
        }
        if !attachments.is_empty()
            && !self
                .bridges
                .get(&identity.instance)
                .is_some_and(|b| b.capabilities.attachments)
        {
            Store::record_notice(
                conn,
                case.id,
                &format!(
                    "Files cannot be sent to the client on {}. Nothing was sent.",
                    self.label(&identity.instance, &identity.channel)
                ),
            )
            .await?;
            return Ok(Handled::default());
        }
        let sender_name = self.display_name(&event.sender);
        let known_names = self.known_names();
        let outcome = match self.policies.privacy(&case.team) {
            Some(rules) => {
                rules.prepare_with(&body, html.as_deref(), sender_name.as_deref(), &known_names)
            }
            None => Outcome::Send(strip_reply_fallback(&body, html.as_deref())),
        };
        let (text, held) = match outcome {
            Outcome::Send(text) => (text, None),
            Outcome::Hold { text, found } => (text, Some(found)),
        };
        let instance = identity.instance.clone();
        let parts = self
            .bridges
            .get(&instance)
            .and_then(|b| b.bridge.split(&text.body));
        let label = self.label(&identity.instance, &identity.channel);
        let queued = Store::record_outbound(
            conn,
            NewOutbound {
                case_id: case.id,
                identity,
                event_id: event.event_id.to_string(),
                sender: event.sender.to_string(),
                body: text.body,
                html: text.html,
                parts,
                label,
                held: held.is_some(),
                attachments,
            },
        )
        .await?;
        if let (true, Some(found)) = (queued, &held) {
            Store::record_notice(
                conn,
                case.id,
                &format!(
                    "Held, not sent: this reply contains {}, which is not one of the office's \
                     numbers or addresses. A private number or address must not reach a client. \
                     Type !send to send it as written, or write the reply again.",
                    found.join(", ")
                ),
            )
            .await?;
            return Ok(Handled::default());
        }
        Ok(Handled {
            instance: queued.then_some(instance),
            invite: None,
            moved: Vec::new(),
        })
    }
}

/// What a message in a case room led to, beyond the transaction.
#[derive(Debug, Default)]
struct Handled {
    /// A bridge instance with a reply to deliver.
    instance: Option<String>,
    /// Someone to invite to the case room.
    invite: Option<(String, OwnedUserId)>,
    /// Identities `!merge` moved to another case.
    moved: Vec<IdentityId>,
}

/// The text of a possible command. Clients write a mention as the user's display name in
/// `body` (`!assign Bo`); the Matrix ID is in `m.mentions`, which this puts back.
fn command_text(
    text: &ruma::events::room::message::TextMessageEventContent,
    content: &RoomMessageEventContent,
) -> String {
    let body = text.body.trim();
    let is_assign = body
        .get(..7)
        .is_some_and(|w| w.eq_ignore_ascii_case("!assign"));
    match content.mentions.as_ref().and_then(|m| m.user_ids.first()) {
        Some(user) if is_assign && !body.contains(user.as_str()) => format!("!assign {user}"),
        _ => body.to_owned(),
    }
}

/// What the bot posts for a notice or alert. One that mentions people is sent as text, not as
/// a notice: the default push rules never notify for notices (`.m.rule.suppress_notices` comes
/// before `.m.rule.is_user_mention`), and an emergency must reach the people on call.
fn team_message(message: &message::Model) -> RoomMessageEventContent {
    let mentions: Vec<OwnedUserId> = message
        .mentions
        .as_ref()
        .and_then(|m| serde_json::from_value::<Vec<OwnedUserId>>(m.clone()).ok())
        .unwrap_or_default();
    match (&message.html, mentions.is_empty()) {
        (Some(html), false) => RoomMessageEventContent::text_html(&message.body, html)
            .add_mentions(Mentions::with_user_ids(mentions)),
        (None, false) => RoomMessageEventContent::text_plain(&message.body)
            .add_mentions(Mentions::with_user_ids(mentions)),
        (Some(html), true) => RoomMessageEventContent::notice_html(&message.body, html),
        (None, true) => RoomMessageEventContent::notice_plain(&message.body),
    }
}

/// The message type for a file: image, audio, video, or any other file.
fn media_message(filename: &str, mime: &str, size: i64, uri: OwnedMxcUri) -> MessageType {
    use ruma::events::room::{
        message::{
            AudioInfo, AudioMessageEventContent, FileInfo, FileMessageEventContent,
            ImageMessageEventContent, VideoInfo, VideoMessageEventContent,
        },
        ImageInfo,
    };
    let name = filename.to_owned();
    let size = ruma::UInt::new(size.max(0) as u64);
    let mimetype = Some(mime.to_owned());
    match mime.split('/').next().unwrap_or_default() {
        "image" => {
            let mut info = ImageInfo::new();
            (info.mimetype, info.size) = (mimetype, size);
            MessageType::Image(
                ImageMessageEventContent::plain(name, uri).info(Some(Box::new(info))),
            )
        }
        "audio" => {
            let mut info = AudioInfo::new();
            (info.mimetype, info.size) = (mimetype, size);
            MessageType::Audio(
                AudioMessageEventContent::plain(name, uri).info(Some(Box::new(info))),
            )
        }
        "video" => {
            let mut info = VideoInfo::new();
            (info.mimetype, info.size) = (mimetype, size);
            MessageType::Video(
                VideoMessageEventContent::plain(name, uri).info(Some(Box::new(info))),
            )
        }
        _ => {
            let mut info = FileInfo::new();
            (info.mimetype, info.size) = (mimetype, size);
            MessageType::File(FileMessageEventContent::plain(name, uri).info(Some(Box::new(info))))
        }
    }
}

/// Groups the queue's head by case, in id order, keeping only cases whose first item is due;
/// also returns how long until the earliest head that is not due yet.
fn due_groups(items: Vec<queue_item::Model>) -> (Vec<Vec<queue_item::Model>>, Option<Duration>) {
    let now = Utc::now();
    let mut order = Vec::new();
    let mut groups: HashMap<CaseId, Vec<queue_item::Model>> = HashMap::new();
    for item in items {
        let group = groups.entry(item.case_id).or_insert_with(|| {
            order.push(item.case_id);
            Vec::new()
        });
        group.push(item);
    }
    let mut due = Vec::new();
    let mut next: Option<Duration> = None;
    for case in order {
        let group = groups
            .remove(&case)
            .expect("every case in order has a group");
        let head = group[0].next_attempt_at;
        if head <= now {
            due.push(group);
        } else {
            let wait = (head - now).to_std().unwrap_or_default();
            next = Some(next.map_or(wait, |n| n.min(wait)));
        }
    }
    (due, next)
}

#[derive(Debug, thiserror::Error)]
enum RelayError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Matrix(#[from] MatrixError),
}

/// Longest Matrix user id, `@localpart:server_name`, in bytes (the spec's limit; homeservers
/// refuse longer ones, so a ghost with a longer id could never join its case room).
pub const MAX_USER_ID: usize = 255;

/// The ghost localpart for `address` on `instance`: `{prefix}{instance}_{address}`, both escaped
/// ([`escape_localpart`]), so always in the localpart grammar. When that would make the user id
/// longer than [`MAX_USER_ID`], the address part becomes its escaped head (at most 32
/// characters, for people to recognise) and `=z` and 32 hex digits of the SHA-256 of the whole
/// address. Escaping never writes `=` before anything but two hex digits, so such a part is
/// never another address's plain one; and every address whose plain localpart fits keeps it, so
/// existing ghosts and rooms are unchanged (a longer one never had a ghost: the homeserver
/// refused it).
pub fn ghost_localpart(prefix: &str, instance: &str, address: &str, server_name: &str) -> String {
    use sha2::Digest as _;
    let head = format!("{prefix}{}_", escape_localpart(instance));
    let plain = escape_localpart(address);
    // `@`, `:` and the server name around the localpart.
    let room = MAX_USER_ID.saturating_sub(2 + server_name.len() + head.len());
    if plain.len() <= room {
        return format!("{head}{plain}");
    }
    const DIGEST: usize = 2 + 32;
    let budget = room.saturating_sub(DIGEST).min(32);
    let mut shown = String::new();
    for c in address.chars() {
        let token = escape_localpart(c.encode_utf8(&mut [0; 4]));
        if shown.len() + token.len() > budget {
            break;
        }
        shown.push_str(&token);
    }
    let digest = sha2::Sha256::digest(address.as_bytes());
    format!("{head}{shown}=z{}", hex::encode(&digest[..16]))
}

/// Maps any string into the characters a Matrix localpart allows, one-to-one: `a-z0-9.-` stay,
/// `_` doubles, capitals become `_` plus the small letter, anything else `=xx` per UTF-8 byte
/// (the spec's suggested mapping for other character sets).
pub fn escape_localpart(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 8);
    for byte in s.bytes() {
        match byte {
            b'a'..=b'z' | b'0'..=b'9' | b'.' | b'-' => out.push(byte as char),
            b'_' => out.push_str("__"),
            b'A'..=b'Z' => {
                out.push('_');
                out.push(byte.to_ascii_lowercase() as char);
            }
            _ => out.push_str(&format!("={byte:02x}")),
        }
    }
    out
}

/// The events of one transaction the gateway could not read, summed up for one log line: a
/// transaction may hold thousands of them, and a line for each would drown the log (and fill
/// its disk) for one request.
#[derive(Default)]
struct Unreadable {
    count: usize,
    /// Counts by reason, for the first [`Unreadable::REASONS`] distinct reasons.
    reasons: BTreeMap<String, usize>,
    /// Events with a reason beyond those.
    other_reasons: usize,
    /// The ids of the first [`Unreadable::EXAMPLES`] events, where they have one.
    examples: Vec<String>,
}

impl Unreadable {
    const REASONS: usize = 5;
    const EXAMPLES: usize = 3;
    /// Reasons and ids come from the sender's JSON: cut, so that one line stays short.
    const MAX_CHARS: usize = 120;

    fn add(&mut self, raw: &Raw<AnyTimelineEvent>, error: &serde_json::Error) {
        self.count += 1;
        // serde's message ends with the position in that event's JSON: without it, the same
        // fault in many events is one reason.
        let message = error.to_string();
        let reason = match message.rfind(" at line ") {
            Some(at) => shorten(&message[..at]),
            None => shorten(&message),
        };
        if let Some(n) = self.reasons.get_mut(&reason) {
            *n += 1;
        } else if self.reasons.len() < Self::REASONS {
            self.reasons.insert(reason, 1);
        } else {
            self.other_reasons += 1;
        }
        if self.examples.len() < Self::EXAMPLES {
            if let Ok(Some(id)) = raw.get_field::<String>("event_id") {
                self.examples.push(shorten(&id));
            }
        }
    }

    fn log(&self, txn_id: &str) {
        if self.count == 0 {
            return;
        }
        warn!(
            txn_id,
            skipped = self.count,
            reasons = ?self.reasons,
            other_reasons = self.other_reasons,
            examples = ?self.examples,
            "skipping events the gateway cannot read"
        );
    }
}

/// `text` cut to [`Unreadable::MAX_CHARS`] characters.
fn shorten(text: &str) -> String {
    match text.char_indices().nth(Unreadable::MAX_CHARS) {
        Some((end, _)) => format!("{}…", &text[..end]),
        None => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use chrono::Utc;

    use super::{due_groups, escape_localpart, ghost_localpart, queue_item, Target, MAX_USER_ID};
    use crate::store::{CaseId, MessageId};

    fn item(id: i64, case: i64, due_in_ms: i64) -> queue_item::Model {
        queue_item::Model {
            id,
            target: Target::Matrix,
            instance: String::new(),
            message_id: MessageId(id),
            case_id: CaseId(case),
            attempts: 0,
            next_attempt_at: Utc::now() + chrono::Duration::milliseconds(due_in_ms),
            last_error: None,
            created_at: Utc::now(),
        }
    }

    #[test]
    fn a_case_waits_behind_its_first_item() {
        // Case 1's head failed and waits; its second item is due but must not overtake it.
        let items = vec![
            item(1, 1, 5_000),
            item(2, 2, -1),
            item(3, 1, -1),
            item(4, 2, -1),
            item(5, 3, 60_000),
        ];
        let (groups, next) = due_groups(items);
        let ids: Vec<Vec<i64>> = groups
            .iter()
            .map(|g| g.iter().map(|i| i.id).collect())
            .collect();
        assert_eq!(ids, vec![vec![2, 4]]);
        let next = next.unwrap();
        assert!(
            next <= std::time::Duration::from_millis(5_000)
                && next > std::time::Duration::from_millis(4_000),
            "{next:?}"
        );
    }

    #[test]
    fn localpart_escaping_is_valid_and_one_to_one() {
        assert_eq!(escape_localpart("+46701234567"), "=2b46701234567");
        assert_eq!(
            escape_localpart("Anna_B@Example.org"),
            "_anna___b=40_example.org"
        );
        assert_eq!(escape_localpart("Åsa"), "=c3=85sa");
        assert_ne!(escape_localpart("a_b"), escape_localpart("a_B"));
        for s in ["+46 70", "x@y.z", "Zoë", "_", "=2b"] {
            assert!(escape_localpart(s)
                .bytes()
                .all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'.' | b'_' | b'=' | b'-')));
        }
    }

    /// The localpart grammar (`a-z`, `0-9`, `._=-/+`), within the user id limit.
    fn is_valid_ghost(localpart: &str, server_name: &str) -> bool {
        !localpart.is_empty()
            && 2 + localpart.len() + server_name.len() <= MAX_USER_ID
            && localpart.bytes().all(|b| {
                matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'.' | b'_' | b'=' | b'-' | b'/' | b'+')
            })
    }

    #[test]
    fn ghost_localparts_of_valid_addresses_keep_their_form() {
        // What existing ghosts are called: unchanged, so their rooms keep working.
        assert_eq!(
            ghost_localpart("_cb_", "sms", "+46701234567", "localhost"),
            "_cb_sms_=2b46701234567"
        );
        assert_eq!(
            ghost_localpart("_cb_", "office-mail", "Anna_B@Example.org", "localhost"),
            "_cb_office-mail_".to_owned() + &escape_localpart("Anna_B@Example.org")
        );
        assert_eq!(
            ghost_localpart("_cb_", "tg", "123456789", "example.org"),
            "_cb_tg_123456789"
        );
    }

    #[test]
    fn ghost_localparts_of_long_addresses_are_bounded_digests() {
        let zeros = "0".repeat(10_000);
        let ghost = ghost_localpart("_cb_", "sms", &zeros, "localhost");
        assert!(is_valid_ghost(&ghost, "localhost"), "{ghost}");
        assert!(
            ghost.starts_with(&format!("_cb_sms_{}=z", "0".repeat(32))),
            "{ghost}"
        );
        assert_eq!(ghost.len(), "_cb_sms_".len() + 32 + 2 + 32);
        // One character more is another ghost.
        assert_ne!(
            ghost,
            ghost_localpart("_cb_", "sms", &format!("{zeros}0"), "localhost")
        );
        // The longest address that fits keeps its plain form; one byte more is digested.
        let room = MAX_USER_ID - 2 - "localhost".len() - "_cb_sms_".len();
        let fits = "a".repeat(room);
        assert_eq!(
            ghost_localpart("_cb_", "sms", &fits, "localhost"),
            format!("_cb_sms_{fits}")
        );
        let over = ghost_localpart("_cb_", "sms", &format!("{fits}a"), "localhost");
        assert!(
            over.contains("=z") && is_valid_ghost(&over, "localhost"),
            "{over}"
        );
    }

    proptest::proptest! {
        #[test]
        fn any_address_makes_a_valid_bounded_stable_ghost(address in "\\PC{0,400}") {
            let ghost = ghost_localpart("_cb_", "sms", &address, "matrix.example.org");
            proptest::prop_assert!(is_valid_ghost(&ghost, "matrix.example.org"), "{}", ghost);
            proptest::prop_assert_eq!(
                &ghost,
                &ghost_localpart("_cb_", "sms", &address, "matrix.example.org")
            );
        }

        #[test]
        fn long_or_escaped_addresses_stay_within_the_limit(
            address in proptest::collection::vec(proptest::prelude::any::<char>(), 0..3000)
        ) {
            let address: String = address.into_iter().collect();
            let ghost = ghost_localpart("_cb_", "sms", &address, "localhost");
            proptest::prop_assert!(is_valid_ghost(&ghost, "localhost"), "{}", ghost);
        }

        #[test]
        fn e164_numbers_keep_their_plain_ghost(digits in "[1-9][0-9]{1,14}") {
            let number = format!("+{digits}");
            proptest::prop_assert_eq!(
                ghost_localpart("_cb_", "sms", &number, "localhost"),
                format!("_cb_sms_=2b{digits}")
            );
        }
    }
}
