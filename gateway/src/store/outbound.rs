//! Recording what the office says: replies, notices, held replies, notes and invitations.

use casebridge_config::Language;
use chrono::{DateTime, Utc};
use sea_orm::{
    sea_query::Expr, ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter,
    QueryOrder, QuerySelect, Set,
};

use super::{
    attachment, attachment_summary, case, chain, enqueue, identity, invitation, message,
    message_row, CaseId, Direction, MessageId, MessageKind, MessageState, Store, StoreError,
    Target,
};
use crate::texts::{Languages, TeamNotice, Text};

/// A reply from the case team, ready to queue for a bridge.
#[derive(Debug, Clone)]
pub struct NewOutbound {
    /// The case.
    pub case_id: CaseId,
    /// The identity it goes to.
    pub identity: identity::Model,
    /// The worker's event.
    pub event_id: String,
    /// The worker's Matrix ID (kept internally).
    pub sender: String,
    /// Text after the outbound policies.
    pub body: String,
    /// HTML after the outbound policies.
    pub html: Option<String>,
    /// The messages the channel sends it as, when it is too long for one (each is recorded
    /// and queued on its own, the reply itself is kept whole).
    pub parts: Option<Vec<String>>,
    /// How the case team names the channel, for the notice about parts.
    pub label: String,
    /// The language of the team's notice when the reply goes in parts.
    pub language: Language,
    /// Recorded but not queued: it waits for a worker's `!send`.
    pub held: bool,
    /// Files the worker sent.
    pub attachments: Vec<casebridge_bridges::Attachment>,
}

impl Store {
    /// Records a reply and queues it for its bridge, inside `txn`. False if the event was
    /// recorded before.
    pub async fn record_outbound<C: ConnectionTrait>(
        conn: &C,
        out: NewOutbound,
    ) -> Result<bool, StoreError> {
        let seen = message::Entity::find()
            .filter(message::Column::EventId.eq(&out.event_id))
            .one(conn)
            .await?;
        if seen.is_some() {
            return Ok(false);
        }
        let now = Utc::now();
        let row = |body: &str, state: MessageState| message::ActiveModel {
            identity_id: Set(Some(out.identity.id)),
            instance: Set(out.identity.instance.clone()),
            channel: Set(out.identity.channel.clone()),
            sender: Set(Some(out.sender.clone())),
            ..message_row(out.case_id, Direction::Outbound, state, body, now)
        };
        let state = match (&out.parts, out.held) {
            (_, true) => MessageState::Held,
            (Some(_), false) => MessageState::Split,
            (None, false) => MessageState::Queued,
        };
        let content = chain::Content {
            files: out
                .attachments
                .iter()
                .map(|a| (a.filename.as_str(), a.mime.as_str(), a.data.as_slice()))
                .collect(),
            original: None,
        };
        let whole = chain::append(
            conn,
            vec![(
                message::ActiveModel {
                    event_id: Set(Some(out.event_id.clone())),
                    html: Set(out.html.clone()),
                    attachments: Set(attachment_summary(&out.attachments)),
                    ..row(&out.body, state)
                },
                content,
            )],
        )
        .await?
        .remove(0);
        if !out.attachments.is_empty() {
            attachment::Entity::insert_many(out.attachments.iter().enumerate().map(|(i, a)| {
                attachment::ActiveModel {
                    message_id: Set(whole.id),
                    position: Set(i as i32),
                    filename: Set(a.filename.clone()),
                    mime: Set(a.mime.clone()),
                    size: Set(a.data.len() as i64),
                    data: Set(a.data.clone()),
                    mxc_uri: Set(None),
                    event_id: Set(Some(out.event_id.clone())),
                    ..Default::default()
                }
            }))
            .exec_without_returning(conn)
            .await?;
        }
        if out.held {
            return Ok(true);
        }
        let Some(parts) = &out.parts else {
            enqueue(
                conn,
                Target::Bridge,
                &out.identity.instance,
                whole.id,
                out.case_id,
                now,
            )
            .await?;
            return Ok(true);
        };
        for part in parts {
            let m = chain::append_one(
                conn,
                message::ActiveModel {
                    kind: Set(Some(MessageKind::Part)),
                    ..row(part, MessageState::Queued)
                },
            )
            .await?;
            enqueue(
                conn,
                Target::Bridge,
                &out.identity.instance,
                m.id,
                out.case_id,
                now,
            )
            .await?;
        }
        let notice = Text::SentInParts {
            parts: parts.len(),
            label: out.label.clone(),
        };
        Self::record_notice(conn, out.case_id, &notice.say(out.language)).await?;
        Ok(true)
    }

    /// Records a notice to the case team and queues it for the room, inside `conn`.
    pub async fn record_notice<C: ConnectionTrait>(
        conn: &C,
        case_id: CaseId,
        body: &str,
    ) -> Result<MessageId, StoreError> {
        let now = Utc::now();
        let m = chain::append_one(
            conn,
            message_row(
                case_id,
                Direction::Notice,
                MessageState::Received,
                body,
                now,
            ),
        )
        .await?;
        enqueue(conn, Target::Matrix, "", m.id, case_id, now).await?;
        Ok(m.id)
    }

    /// Records `text` as a notice to case `case_id`'s team, in the team's language, and queues
    /// it, inside `conn`.
    pub async fn record_text<C: ConnectionTrait>(
        conn: &C,
        case_id: CaseId,
        text: &Text,
        languages: &Languages,
    ) -> Result<MessageId, StoreError> {
        let team = case::Entity::find_by_id(case_id)
            .select_only()
            .column(case::Column::Team)
            .into_tuple::<String>()
            .one(conn)
            .await?
            .ok_or_else(|| StoreError::Missing(format!("case {case_id}")))?;
        Self::record_notice(conn, case_id, &languages.say(&team, text)).await
    }

    /// Records a notice with markup and mentions (or, as [`Direction::Alert`], an alert for the
    /// team's on-call room) and queues it, inside `conn`.
    pub async fn record_team_notice<C: ConnectionTrait>(
        conn: &C,
        case_id: CaseId,
        direction: Direction,
        kind: MessageKind,
        notice: &TeamNotice,
    ) -> Result<MessageId, StoreError> {
        let now = Utc::now();
        let m = chain::append_one(
            conn,
            message::ActiveModel {
                html: Set(notice.html.clone()),
                kind: Set(Some(kind)),
                mentions: Set(
                    (!notice.mentions.is_empty()).then(|| serde_json::json!(notice.mentions))
                ),
                ..message_row(
                    case_id,
                    direction,
                    MessageState::Received,
                    &notice.body,
                    now,
                )
            },
        )
        .await?;
        enqueue(conn, Target::Matrix, "", m.id, case_id, now).await?;
        Ok(m.id)
    }

    /// Releases the latest held reply of a case (a worker's `!send`), inside `conn`: it is
    /// queued for its bridge. Returns its instance and body, or `None` if nothing is held.
    pub async fn release_held<C: ConnectionTrait>(
        conn: &C,
        case_id: CaseId,
    ) -> Result<Option<(String, String)>, StoreError> {
        let Some(held) = message::Entity::find()
            .filter(message::Column::CaseId.eq(case_id))
            .filter(message::Column::Direction.eq(Direction::Outbound))
            .filter(message::Column::State.eq(MessageState::Held))
            .order_by_desc(message::Column::Id)
            .one(conn)
            .await?
        else {
            return Ok(None);
        };
        message::Entity::update_many()
            .col_expr(message::Column::State, Expr::value(MessageState::Queued))
            .filter(message::Column::Id.eq(held.id))
            .exec(conn)
            .await?;
        enqueue(
            conn,
            Target::Bridge,
            &held.instance,
            held.id,
            case_id,
            Utc::now(),
        )
        .await?;
        Ok(Some((held.instance, held.body)))
    }

    /// Records a worker's message that is for the record only (a note, a command), inside
    /// `conn`. False if the event was recorded before.
    pub async fn record_internal<C: ConnectionTrait>(
        conn: &C,
        case_id: CaseId,
        kind: MessageKind,
        event_id: &str,
        sender: &str,
        body: &str,
    ) -> Result<bool, StoreError> {
        let seen = message::Entity::find()
            .filter(message::Column::EventId.eq(event_id))
            .one(conn)
            .await?;
        if seen.is_some() {
            return Ok(false);
        }
        chain::append_one(
            conn,
            message::ActiveModel {
                event_id: Set(Some(event_id.to_owned())),
                sender: Set(Some(sender.to_owned())),
                kind: Set(Some(kind)),
                relayed_at: Set(Some(Utc::now())),
                ..message_row(
                    case_id,
                    Direction::Internal,
                    MessageState::Recorded,
                    body,
                    Utc::now(),
                )
            },
        )
        .await?;
        Ok(true)
    }

    /// Stores an invitation to `case_id` on `instance`, valid for `days`; returns the token to
    /// hand out (only its hash is kept).
    pub async fn create_invitation<C: ConnectionTrait>(
        conn: &C,
        case_id: CaseId,
        instance: &str,
        created_by: &str,
        days: i64,
    ) -> Result<(String, DateTime<Utc>), StoreError> {
        let token = invitation_token();
        let now = Utc::now();
        let expires_at = now + chrono::Duration::days(days);
        invitation::ActiveModel {
            token_hash: Set(chain::hex(&token)),
            case_id: Set(case_id),
            instance: Set(instance.to_owned()),
            created_by: Set(created_by.to_owned()),
            created_at: Set(now),
            expires_at: Set(expires_at),
            used_at: Set(None),
        }
        .insert(conn)
        .await?;
        Ok((token, expires_at))
    }
}

/// A new invitation token: 24 lowercase letters (about 113 bits), which no phone-number or
/// address check mistakes for a private number in the worker's reply that carries it.
pub fn invitation_token() -> String {
    use rand::Rng;
    let mut rng = rand::thread_rng();
    (0..24)
        .map(|_| char::from(rng.gen_range(b'a'..=b'z')))
        .collect()
}
