//! Appservice transactions: what the homeserver pushes (case-team messages, member events),
//! each transaction processed exactly once.

use std::collections::{BTreeMap, HashMap};

use casebridge_bridges::MediaKinds;
use casebridge_policies::{
    channel::Author, media::Cleaned, outbound::strip_reply_fallback, privacy::Outcome,
};
use ruma::{
    events::{
        room::message::{MessageType, OriginalRoomMessageEvent, Relation, RoomMessageEventContent},
        AnyMessageLikeEvent, AnyStateEvent, AnyTimelineEvent, MessageLikeEvent, StateEvent,
    },
    serde::Raw,
    OwnedEventId, OwnedRoomId, OwnedUserId, UserId,
};
use sea_orm::ConnectionTrait;
use tracing::{debug, warn};

use super::{
    room_plan::{plan, CaseFacts, ClientChannel, Content, Reply, RoomFacts, RoomPlan},
    Core,
};
use crate::{
    store::{case, identity, IdentityId, MessageKind, NewOutbound, Store, StoreError},
    texts::Text,
};

impl Core {
    /// Processes one appservice transaction exactly once: a replay is acknowledged only.
    pub async fn handle_transaction(
        &self,
        txn_id: &str,
        events: &[Raw<AnyTimelineEvent>],
    ) -> Result<(), StoreError> {
        if !self.needs_the_store(events) {
            // Only the gateway's own messages coming back, member events and such: nothing to
            // record, so no write (and a replay does nothing either). Under load this is most
            // transactions: each message the relay posts is pushed back to it.
            self.learn_display_names(events);
            return Ok(());
        }
        // Files workers send are fetched before the transaction: no network wait holds the
        // records store.
        let files = self.fetch_worker_files(events).await;
        let (txn, _turn) = self.store.begin_write().await?;
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
            for identity in &moved {
                self.ghosts.remove(identity);
            }
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

    /// Whether a transaction holds a room message from someone other than the appservice's
    /// own users (a case team's message, or a command): only those are recorded.
    fn needs_the_store(&self, events: &[Raw<AnyTimelineEvent>]) -> bool {
        events.iter().any(|raw| {
            // What cannot be read is logged by the full path, in its summary.
            match raw.deserialize() {
                Ok(AnyTimelineEvent::MessageLike(AnyMessageLikeEvent::RoomMessage(
                    MessageLikeEvent::Original(event),
                ))) => !self.config.is_appservice_user(&event.sender),
                Ok(_) => false,
                Err(_) => true,
            }
        })
    }

    /// The display names of the members in `events` (see [`Core::learn_display_name`]).
    fn learn_display_names(&self, events: &[Raw<AnyTimelineEvent>]) {
        for raw in events {
            if let Ok(AnyTimelineEvent::State(AnyStateEvent::RoomMember(StateEvent::Original(
                member,
            )))) = raw.deserialize()
            {
                if let Ok(user) = UserId::parse(member.state_key.as_str()) {
                    self.learn_display_name(&user, member.content.displayname.as_deref());
                }
            }
        }
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

    /// A message in a room: the facts are read, [`plan`] decides what it causes, and that is
    /// recorded. Returns what must happen once the transaction has committed.
    async fn handle_room_message<C: ConnectionTrait>(
        &self,
        conn: &C,
        event: &OriginalRoomMessageEvent,
        files: &HashMap<OwnedEventId, casebridge_bridges::Attachment>,
    ) -> Result<Handled, StoreError> {
        let from_appservice = self.config.is_appservice_user(&event.sender);
        // Our own output needs no read: the plan ignores it whatever the room.
        let case = match from_appservice {
            true => None,
            false => Store::case_by_room(conn, event.room_id.as_str()).await?,
        };
        let identity = match case.as_ref().and_then(|c| c.last_identity_id) {
            Some(id) => Some(Store::identity(conn, id).await?),
            None => None,
        };
        let label = identity
            .as_ref()
            .map(|i| self.label(&i.instance, &i.channel));
        // A channel with a reply window (Meta's): when the client last wrote there.
        let rule = identity.as_ref().and_then(|i| {
            self.bridges
                .get(&i.instance)
                .and_then(|b| b.capabilities.reply_window)
                .map(|rule| (rule, i.id))
        });
        let window = match rule {
            Some((rule, id)) => Some((rule, Store::last_heard_from(conn, id).await?)),
            None => None,
        };
        let (content, body, html) = room_content(event, files);
        let facts = RoomFacts {
            from_appservice,
            case: case.as_ref().map(|case| CaseFacts {
                team: &case.team,
                on_team: self
                    .config
                    .teams
                    .get(&case.team)
                    .is_some_and(|t| t.members.contains(&event.sender)),
                client: identity.as_ref().zip(label.as_deref()).map(|(i, label)| {
                    let bridge = self.bridges.get(&i.instance);
                    ClientChannel {
                        instance: &i.instance,
                        label,
                        running: bridge.is_some(),
                        media: bridge.map_or(MediaKinds::NONE, |b| b.capabilities.media),
                        window: window.map(|(rule, last)| {
                            rule.verdict(last, chrono::Utc::now(), Author::Person)
                        }),
                    }
                }),
                verdict: self.privacy_verdict(&case.team, &event.sender, body, html),
            }),
            command: match &event.content.msgtype {
                MessageType::Text(text) => {
                    casebridge_policies::commands::parse(&command_text(text, &event.content))
                }
                _ => None,
            },
            edit: matches!(event.content.relates_to, Some(Relation::Replacement(_))),
            content,
        };
        let decided = plan(facts);
        match case {
            Some(case) => {
                self.apply_room_plan(conn, event, &case, identity, decided)
                    .await
            }
            // Outside a case room the plan is always to ignore it.
            None => Ok(Handled::default()),
        }
    }

    /// What team `team`'s privacy policy makes of a reply `sender` wrote.
    fn privacy_verdict(
        &self,
        team: &str,
        sender: &UserId,
        body: &str,
        html: Option<&str>,
    ) -> Outcome {
        match self.policies.privacy(team) {
            Some(rules) => {
                let sender_name = self.display_name(sender);
                rules.prepare_with(body, html, sender_name.as_deref(), &self.known_names())
            }
            None => Outcome::Send(strip_reply_fallback(body, html)),
        }
    }

    /// Records what `plan` says a message in `case`'s room causes.
    async fn apply_room_plan<C: ConnectionTrait>(
        &self,
        conn: &C,
        event: &OriginalRoomMessageEvent,
        case: &case::Model,
        identity: Option<identity::Model>,
        plan: RoomPlan,
    ) -> Result<Handled, StoreError> {
        let body = event.content.body();
        match plan {
            RoomPlan::Ignore => {}
            RoomPlan::Notice(notice) => {
                Store::record_notice(conn, case.id, &self.policies.say(&case.team, &notice))
                    .await?;
            }
            RoomPlan::Command(command) => {
                let after = self
                    .run_command(
                        conn,
                        case,
                        event.event_id.as_str(),
                        event.sender.as_str(),
                        body,
                        command,
                    )
                    .await?;
                return Ok(Handled {
                    instance: after.wake,
                    invite: after.invite,
                    moved: after.moved,
                });
            }
            RoomPlan::RefuseCommand(refusal) => {
                let recorded = Store::record_internal(
                    conn,
                    case.id,
                    MessageKind::Command,
                    event.event_id.as_str(),
                    event.sender.as_str(),
                    body,
                )
                .await?;
                if recorded {
                    let refusal = Text::CommandRefused(refusal);
                    Store::record_notice(conn, case.id, &self.policies.say(&case.team, &refusal))
                        .await?;
                }
            }
            RoomPlan::Reply(reply) => {
                let identity = identity.ok_or_else(|| {
                    StoreError::Missing(format!("the client of case {}", case.number))
                })?;
                return self.record_reply(conn, event, case, identity, reply).await;
            }
        }
        Ok(Handled::default())
    }

    /// Records a reply to the client: queued for its bridge, or held with a notice saying why.
    async fn record_reply<C: ConnectionTrait>(
        &self,
        conn: &C,
        event: &OriginalRoomMessageEvent,
        case: &case::Model,
        identity: identity::Model,
        reply: Reply,
    ) -> Result<Handled, StoreError> {
        // A reply longer than the channel carries goes as several (Bridge::split).
        let parts = self
            .bridges
            .get(&reply.instance)
            .and_then(|b| b.bridge.split(&reply.text.body));
        let label = self.label(&identity.instance, &identity.channel);
        let queued = Store::record_outbound(
            conn,
            NewOutbound {
                case_id: case.id,
                identity,
                event_id: event.event_id.to_string(),
                sender: event.sender.to_string(),
                body: reply.text.body,
                html: reply.text.html,
                parts,
                label,
                language: self.policies.language(&case.team),
                held: reply.held.is_some(),
                attachments: reply.attachments,
            },
        )
        .await?;
        if let (true, Some(notice)) = (queued, &reply.held) {
            Store::record_notice(conn, case.id, &self.policies.say(&case.team, notice)).await?;
            return Ok(Handled::default());
        }
        Ok(Handled {
            instance: queued.then_some(reply.instance),
            invite: None,
            moved: Vec::new(),
        })
    }
}

/// What kind a room message is, and the text a reply would carry (a file's is empty).
fn room_content<'a>(
    event: &'a OriginalRoomMessageEvent,
    files: &'a HashMap<OwnedEventId, casebridge_bridges::Attachment>,
) -> (Content<'a>, &'a str, Option<&'a str>) {
    match &event.content.msgtype {
        MessageType::Text(text) => (
            Content::Text,
            &text.body,
            text.formatted.as_ref().map(|f| f.body.as_str()),
        ),
        MessageType::Emote(emote) => (
            Content::Text,
            &emote.body,
            emote.formatted.as_ref().map(|f| f.body.as_str()),
        ),
        MessageType::Notice(_) => (Content::Notice, "", None),
        MessageType::Image(_)
        | MessageType::File(_)
        | MessageType::Audio(_)
        | MessageType::Video(_) => (Content::File(files.get(&event.event_id)), "", None),
        other => (Content::Other(other.msgtype()), "", None),
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
