//! The Matrix relay pool: queued messages into their case rooms, each case in order.

use std::{
    collections::{HashMap, HashSet},
    sync::Arc,
    time::Duration,
};

use casebridge_policies::media::Cleaned;
use chrono::Utc;
use ruma::{
    events::{
        room::message::{MessageType, RoomMessageEventContent},
        Mentions,
    },
    OwnedEventId, OwnedMxcUri, OwnedRoomId, OwnedTransactionId, OwnedUserId, UserId,
};
use tokio::{
    sync::{mpsc, oneshot},
    task::JoinSet,
};
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, warn};

use super::{Core, RelayError, STORE_PAUSE};
use crate::store::{
    attachment, message, queue_item, CaseId, Direction, MessageId, StoreError, Target,
};
use crate::texts::Text;

/// Items of the queue's head the Matrix worker looks at per round.
const HEAD: u64 = 512;
/// The longest a worker sleeps with nothing to do (it is woken for new work).
const IDLE: Duration = Duration::from_secs(60);
/// How long cases read from the queue's head may wait to be started before the head is read
/// again (new work is seen by then at the latest).
const FRESH: Duration = Duration::from_secs(1);
/// Attempts after which a request the homeserver refuses for good is given up (the record
/// keeps the message, marked failed).
const MAX_PERMANENT_ATTEMPTS: i32 = 5;

impl Core {
    /// Relays queued messages into their case rooms until `stop` fires. A pool of up to
    /// `[queue] relay_concurrency` cases is in flight at once, refilled as each finishes (no
    /// rounds: one slow room never holds the others back); a case is never in flight twice, so
    /// its messages keep their order, and a case whose head failed waits for its backoff while
    /// the others go on. A stop lets the cases in flight send their current item and record
    /// what they sent.
    ///
    /// Each case in flight is a task of its own: it goes on while this loop reads the queue.
    /// (Polled from this loop alone, a case in the middle of recording what it sent held the
    /// records' write lock and its connection while the loop waited for a connection of its
    /// own: with the pool spent, everything stood still for the pool's 30 s timeout.)
    pub async fn run_matrix_worker(self: Arc<Self>, stop: CancellationToken) {
        let capacity = self.config.queue.relay_concurrency.get();
        // Aborted with their worker (the JoinSet aborts its tasks when dropped).
        let mut in_flight: JoinSet<CaseId> = JoinSet::new();
        let mut cases: HashMap<tokio::task::Id, CaseId> = HashMap::new();
        // Cases read from the queue's head and not started yet. The head is read again once
        // they are all started or they are older than `FRESH`: reading 512 items each time a
        // case finished cost more than relaying (about 50 rows read per message relayed).
        let mut waiting = Waiting::default();
        // What the cases sent is recorded by one writer, many cases per transaction.
        let (marks, to_mark) = mpsc::channel(capacity);
        let marker = tokio::spawn(write_marks(self.store.clone(), to_mark));
        let marker = AbortOnDrop(marker);
        loop {
            let mut pause = IDLE;
            if !stop.is_cancelled() && in_flight.len() < capacity {
                if waiting.stale() {
                    let busy: HashSet<CaseId> = cases.values().copied().collect();
                    match self.due_cases(&busy).await {
                        Ok((groups, next_due)) => waiting.refill(groups, next_due),
                        Err(p) => pause = p,
                    }
                }
                pause = pause.min(waiting.pause());
                while in_flight.len() < capacity {
                    let Some(group) = waiting.groups.pop_front() else {
                        break;
                    };
                    let case = group[0].case_id;
                    let (core, stop, marks) = (self.clone(), stop.clone(), marks.clone());
                    let task =
                        in_flight.spawn(async move { core.relay_case(group, &marks, &stop).await });
                    cases.insert(task.id(), case);
                }
            }
            if in_flight.is_empty() && stop.is_cancelled() {
                // Every case task waited for its marks: the writer has nothing left.
                drop(marker);
                return;
            }
            let full = in_flight.len() >= capacity;
            tokio::select! {
                Some(done) = in_flight.join_next_with_id(), if !in_flight.is_empty() => {
                    let id = match done {
                        Ok((id, _)) => id,
                        Err(e) => {
                            // The case is free again: its items stay queued and are taken anew.
                            error!(error = %e, case = ?cases.get(&e.id()), "relaying a case failed");
                            e.id()
                        }
                    };
                    cases.remove(&id);
                }
                () = self.matrix_wake.notified(), if !full => waiting.wake(),
                () = tokio::time::sleep(pause), if !full => waiting.wake(),
                () = stop.cancelled(), if !stop.is_cancelled() => {}
            }
        }
    }

    /// The cases at the head of the queue whose first item is due and that are not `busy`, and
    /// how long until the earliest head that is not due yet; on a store failure, the pause
    /// before trying again.
    async fn due_cases(
        &self,
        busy: &HashSet<CaseId>,
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
        Ok(due_groups(items))
    }

    /// Relays one case's due items and records what went (through `marks`, waiting until it
    /// is committed, so that the case is not taken again before); returns the case.
    async fn relay_case(
        &self,
        group: Vec<queue_item::Model>,
        marks: &mpsc::Sender<Marks>,
        stop: &CancellationToken,
    ) -> CaseId {
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
        if done.is_empty() {
            return case;
        }
        let (ack, committed) = oneshot::channel();
        let marked = match marks.send(Marks { done, ack }).await {
            Ok(()) => committed
                .await
                .unwrap_or_else(|_| Err("the writer of relay marks stopped".into())),
            Err(_) => Err("the writer of relay marks stopped".into()),
        };
        if let Err(e) = marked {
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
                        if let Err(e) = self.store.failed(&item, &e.to_string(), None, false).await
                        {
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
                    let event = self.relay_attachment(&room, &ghost, message, file).await?;
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
        message: &message::Model,
        file: attachment::Model,
    ) -> Result<OwnedEventId, RelayError> {
        let message_id = message.id;
        let txn_id: OwnedTransactionId = format!("cb-m{message_id}-a{}", file.position).into();
        // Images lose EXIF/GPS and the like first (by their bytes, whatever type was declared);
        // the record keeps the original.
        let data = match casebridge_policies::media::clean(&file.mime, &file.data) {
            Cleaned::Unchanged => file.data.clone(),
            Cleaned::Clean(bytes) => bytes,
            Cleaned::Withheld { reason } => {
                let text = Text::ImageWithheld {
                    filename: file.filename,
                    mime: file.mime,
                    reason,
                };
                let notice = RoomMessageEventContent::notice_plain(
                    self.say_in_case(message.case_id, &text).await?,
                );
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
                    let text = Text::FileTooLarge {
                        filename: file.filename,
                        mime: file.mime,
                        size: file.size,
                    };
                    let notice = RoomMessageEventContent::notice_plain(
                        self.say_in_case(message.case_id, &text).await?,
                    );
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
}

/// What one case relayed, to be recorded; `ack` is answered once it is committed.
struct Marks {
    done: Vec<(queue_item::Model, String)>,
    ack: oneshot::Sender<Result<(), String>>,
}

/// Most messages recorded as relayed in one transaction (each is two values of the statement).
const MARKS_PER_COMMIT: usize = 1024;

/// Records what the cases relayed, as one transaction for what has come in meanwhile: while a
/// commit runs, the next cases' marks gather. (Each case committing its own marks made many
/// small write transactions that waited for each other and for the client's messages.)
async fn write_marks(store: crate::store::Store, mut to_mark: mpsc::Receiver<Marks>) {
    while let Some(first) = to_mark.recv().await {
        let mut count = first.done.len();
        let mut batch = vec![first];
        while count < MARKS_PER_COMMIT {
            let Ok(more) = to_mark.try_recv() else {
                break;
            };
            count += more.done.len();
            batch.push(more);
        }
        let done: Vec<&(queue_item::Model, String)> =
            batch.iter().flat_map(|marks| &marks.done).collect();
        let result = store.relayed(&done).await.map_err(|e| e.to_string());
        for marks in batch {
            // A case task that is gone (aborted) no longer waits.
            let _ = marks.ack.send(result.clone());
        }
    }
}

/// Aborts a task when dropped (the relay's mark writer ends with its worker).
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Cases read from the queue's head, due and not in flight, waiting for room in the pool.
#[derive(Default)]
struct Waiting {
    groups: std::collections::VecDeque<Vec<queue_item::Model>>,
    /// When the head was read; None: read it (at start, or new work was announced and
    /// nothing waits).
    read_at: Option<tokio::time::Instant>,
    /// How long after `read_at` the earliest head that was not due falls due.
    next_due: Option<Duration>,
}

impl Waiting {
    /// Whether the head must be read again: nothing waits, or what waits is too old to trust.
    fn stale(&self) -> bool {
        match self.read_at {
            None => true,
            Some(at) => self.groups.is_empty() || at.elapsed() >= FRESH,
        }
    }

    fn refill(&mut self, groups: Vec<Vec<queue_item::Model>>, next_due: Option<Duration>) {
        self.groups = groups.into();
        self.read_at = Some(tokio::time::Instant::now());
        self.next_due = next_due;
    }

    /// New work may be queued (or a wait ran out): read the head when nothing waits.
    fn wake(&mut self) {
        if self.groups.is_empty() {
            self.read_at = None;
        }
    }

    /// The longest the loop may sleep: until the next head falls due, and while cases wait,
    /// until they are too old.
    fn pause(&self) -> Duration {
        let Some(at) = self.read_at else {
            return IDLE;
        };
        let mut pause = self
            .next_due
            .map_or(IDLE, |due| due.saturating_sub(at.elapsed()));
        if !self.groups.is_empty() {
            pause = pause.min(FRESH.saturating_sub(at.elapsed()));
        }
        pause
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
pub(super) fn due_groups(
    items: Vec<queue_item::Model>,
) -> (Vec<Vec<queue_item::Model>>, Option<Duration>) {
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

#[cfg(test)]
mod tests {
    use chrono::Utc;

    use super::due_groups;
    use crate::store::{queue_item, CaseId, MessageId, Target};

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
}
