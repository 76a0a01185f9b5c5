//! Recording what clients send: one transaction per batch.

use std::collections::{BTreeSet, HashMap, HashSet};

use casebridge_bridges::{Accepted, InboundMessage};
use casebridge_policies::inbound::Incoming;
use chrono::{DateTime, Datelike, Utc};
use sea_orm::{
    sea_query::{Expr, OnConflict},
    ActiveModelTrait, ColumnTrait, Condition, ConnectionTrait, EntityTrait, QueryFilter,
    QueryOrder, QuerySelect, Set,
};

use super::{
    attachment, attachment_summary, case, chain, enqueue, identity, invitation, mark, message,
    message_row, original, queue_item, CaseId, CaseStatus, Contact, Direction, IdentityId,
    MessageId, MessageKind, MessageState, Store, StoreError, Target,
};
use crate::policy::{self, Policies};

/// An inbound message with what the core knows of where it came from.
#[derive(Debug, Clone)]
pub struct NewInbound {
    /// Bridge instance key.
    pub instance: String,
    /// Channel name (`sms`, `email`).
    pub channel: String,
    /// Team that answers this instance.
    pub team: String,
    /// How the case team names the channel (`SMS`).
    pub label: String,
    /// Ghost localpart for the sender's address.
    pub ghost_localpart: String,
    /// The message itself.
    pub message: InboundMessage,
}

/// What [`Store::record_inbound`] did.
#[derive(Debug, Default)]
pub struct Recorded {
    /// One answer per message of the batch, in order.
    pub answers: Vec<Accepted>,
    /// Bridge instances that got automatic replies to deliver.
    pub wake: BTreeSet<String>,
}

impl Store {
    /// Records a batch of inbound messages in one transaction (group commit). Each answer says
    /// whether the message is new or a duplicate of one recorded before (same instance and
    /// upstream id). Nothing of the batch is recorded if the transaction fails.
    ///
    /// The statements are per batch, not per message: one duplicate check, one look-up of
    /// unknown contacts, one insert of the messages and one of their queue items (plus the
    /// rare new case).
    pub async fn record_inbound(
        &self,
        batch: &[NewInbound],
        policies: &Policies,
    ) -> Result<Recorded, StoreError> {
        if batch.is_empty() {
            return Ok(Recorded::default());
        }
        let txn = self.begin_write().await?;
        let now = Utc::now();

        let mut seen: HashSet<(String, String)> = message::Entity::find()
            .select_only()
            .column(message::Column::Instance)
            .column(message::Column::UpstreamId)
            .filter(message::Column::Direction.eq(Direction::Inbound))
            .filter(
                message::Column::UpstreamId
                    .is_in(batch.iter().map(|i| i.message.message_id.as_str())),
            )
            .into_tuple::<(String, Option<String>)>()
            .all(&txn)
            .await?
            .into_iter()
            .filter_map(|(instance, id)| Some((instance, id?)))
            .collect();

        let mut contacts = self.known_contacts(&txn, batch).await?;
        // Messages of blocked cases are recorded, not relayed.
        // The cases this batch touches, read once: blocked cases are recorded, not relayed,
        // and the policies read the rest. Cases opened by this batch join as they are made.
        let mut cases: HashMap<CaseId, case::Model> = case::Entity::find()
            .filter(case::Column::Id.is_in(contacts.values().map(|c| c.case_id)))
            .all(&txn)
            .await?
            .into_iter()
            .map(|c| (c.id, c))
            .collect();
        let mut fresh = Vec::new();
        let mut answers = Vec::with_capacity(batch.len());
        let mut recorded = Vec::with_capacity(batch.len());
        // Notices about how a message was routed, shown after the message itself.
        let mut notices: Vec<(CaseId, String)> = Vec::new();
        let mut rows = Vec::with_capacity(batch.len());
        let mut last_identity: HashMap<CaseId, IdentityId> = HashMap::new();
        for item in batch {
            let key = (
                item.instance.clone(),
                item.message.message_id.as_str().to_owned(),
            );
            if !seen.insert(key) {
                answers.push(Accepted::Duplicate);
                continue;
            }
            let address = (item.instance.clone(), item.message.from.as_str().to_owned());
            let contact = match contacts.get(&address) {
                Some(c) => c.clone(),
                None => {
                    // An unknown address that answers one of the office's own messages joins
                    // that message's case; anything else is a new client.
                    let invited = match &item.message.invitation {
                        Some(token) => {
                            Some(use_invitation(&txn, &item.instance, token, now).await?)
                        }
                        None => None,
                    };
                    let answered = match invited {
                        Some(Ok(_)) => None,
                        _ => answered_case(&txn, &item.instance, &item.message.references).await?,
                    };
                    let case = match (invited, answered) {
                        (Some(Ok(case)), _) => {
                            notices.push((
                                case.id,
                                format!(
                                    "{} opened the invitation made for this case, so the address joined this case. Replies now go to this address, where the client wrote last.",
                                    item.message.display_name
                                ),
                            ));
                            case
                        }
                        (Some(Err(why)), None) => {
                            let case = new_case(&txn, &item.team, now).await?;
                            notices.push((
                                case.id,
                                format!(
                                    "{} came with an invitation link that {why}, so this is a new case. If the client belongs to another case, !merge this case there, or !invite them again.",
                                    item.message.display_name
                                ),
                            ));
                            case
                        }
                        (_, Some(case)) => {
                            notices.push((
                                case.id,
                                format!(
                                    "{} wrote for the first time, answering the office's message in this case, so the address joined this case. Replies now go to this address, where the client wrote last.",
                                    item.message.display_name
                                ),
                            ));
                            case
                        }
                        (None, None) => {
                            let case = new_case(&txn, &item.team, now).await?;
                            if let Some(named) = &item.message.case_hint {
                                notices.push((
                                    case.id,
                                    format!(
                                        "This message names case {named}, but {} is not an address of that case, so it opened this new case. If it belongs to case {named}, handle it there.",
                                        item.message.display_name
                                    ),
                                ));
                            }
                            case
                        }
                    };
                    cases.insert(case.id, case.clone());
                    let identity = identity::ActiveModel {
                        case_id: Set(case.id),
                        instance: Set(item.instance.clone()),
                        channel: Set(item.channel.clone()),
                        address: Set(item.message.from.as_str().to_owned()),
                        display_name: Set(item.message.display_name.clone()),
                        ghost_localpart: Set(item.ghost_localpart.clone()),
                        joined_at: Set(None),
                        created_at: Set(now),
                        ..Default::default()
                    }
                    .insert(&txn)
                    .await?;
                    let contact = Contact {
                        identity_id: identity.id,
                        case_id: case.id,
                        case_number: case.number,
                    };
                    contacts.insert(address.clone(), contact.clone());
                    fresh.push((address, contact.clone()));
                    contact
                }
            };
            last_identity.insert(contact.case_id, contact.identity_id);
            rows.push(message::ActiveModel {
                identity_id: Set(Some(contact.identity_id)),
                instance: Set(item.instance.clone()),
                channel: Set(item.channel.clone()),
                upstream_id: Set(Some(item.message.message_id.as_str().to_owned())),
                html: Set(item.message.html.clone()),
                subject: Set(item.message.subject.clone()),
                replaces: Set(item
                    .message
                    .replaces
                    .as_ref()
                    .map(|r| r.as_str().to_owned())),
                kind: Set(item.message.replaces.is_some().then_some(MessageKind::Edit)),
                attachments: Set(attachment_summary(&item.message.attachments)),
                sent_at: Set(Some(item.message.sent_at)),
                ..message_row(
                    contact.case_id,
                    Direction::Inbound,
                    if cases.get(&contact.case_id).is_some_and(|c| c.blocked) {
                        MessageState::Blocked
                    } else {
                        MessageState::Received
                    },
                    &item.message.body,
                    now,
                )
            });
            for problem in &item.message.problems {
                notices.push((
                    contact.case_id,
                    format!(
                        "Part of {}'s message could not be read: {problem}. The record keeps the \
                         original whole (casebridge records export).",
                        item.message.display_name
                    ),
                ));
            }
            recorded.push((item, contact.clone()));
            answers.push(Accepted::Recorded {
                case_number: contact.case_number,
            });
        }

        // A client who writes can be reached again where they wrote.
        identity::Entity::update_many()
            .col_expr(
                identity::Column::Unreachable,
                Expr::value(Option::<String>::None),
            )
            .filter(identity::Column::Id.is_in(last_identity.values().copied()))
            .filter(identity::Column::Unreachable.is_not_null())
            .exec(&txn)
            .await?;
        // Replies go out where the client wrote last.
        for (case_id, identity_id) in last_identity {
            case::Entity::update_many()
                .col_expr(case::Column::LastIdentityId, Expr::value(identity_id))
                .filter(case::Column::Id.eq(case_id))
                .filter(
                    Condition::any()
                        .add(case::Column::LastIdentityId.is_null())
                        .add(case::Column::LastIdentityId.ne(identity_id)),
                )
                .exec(&txn)
                .await?;
        }
        if !rows.is_empty() {
            let contents = recorded.iter().map(|(item, _)| chain::Content {
                files: item
                    .message
                    .attachments
                    .iter()
                    .map(|a| (a.filename.as_str(), a.mime.as_str(), a.data.as_slice()))
                    .collect(),
                original: item.message.original.as_deref(),
            });
            let inserted = chain::append(&txn, rows.into_iter().zip(contents).collect()).await?;
            let ids: HashMap<(&str, &str), MessageId> = inserted
                .iter()
                .filter_map(|m| Some(((m.instance.as_str(), m.upstream_id.as_deref()?), m.id)))
                .collect();
            // Only the messages recorded now: a duplicate within the batch has the same id.
            let files: Vec<attachment::ActiveModel> = recorded
                .iter()
                .map(|(item, _)| *item)
                .filter_map(|item| {
                    let id =
                        ids.get(&(item.instance.as_str(), item.message.message_id.as_str()))?;
                    Some(
                        item.message
                            .attachments
                            .iter()
                            .enumerate()
                            .map(move |(i, a)| attachment::ActiveModel {
                                message_id: Set(*id),
                                position: Set(i as i32),
                                filename: Set(a.filename.clone()),
                                mime: Set(a.mime.clone()),
                                size: Set(a.data.len() as i64),
                                data: Set(a.data.clone()),
                                mxc_uri: Set(None),
                                ..Default::default()
                            }),
                    )
                })
                .flatten()
                .collect();
            if !files.is_empty() {
                attachment::Entity::insert_many(files)
                    .exec_without_returning(&txn)
                    .await?;
            }
            let originals: Vec<original::ActiveModel> = recorded
                .iter()
                .map(|(item, _)| *item)
                .filter_map(|item| {
                    let id =
                        ids.get(&(item.instance.as_str(), item.message.message_id.as_str()))?;
                    Some(original::ActiveModel {
                        message_id: Set(*id),
                        data: Set(item.message.original.clone()?),
                    })
                })
                .collect();
            if !originals.is_empty() {
                original::Entity::insert_many(originals)
                    .exec_without_returning(&txn)
                    .await?;
            }
            let relayed: Vec<_> = inserted
                .iter()
                .filter(|m| m.state != MessageState::Blocked)
                .map(|m| queue_item::ActiveModel {
                    target: Set(Target::Matrix),
                    instance: Set(String::new()),
                    message_id: Set(m.id),
                    case_id: Set(m.case_id),
                    attempts: Set(0),
                    next_attempt_at: Set(now),
                    last_error: Set(None),
                    created_at: Set(now),
                    ..Default::default()
                })
                .collect();
            if !relayed.is_empty() {
                queue_item::Entity::insert_many(relayed)
                    .exec_without_returning(&txn)
                    .await?;
            }
        }
        for (case_id, notice) in &notices {
            Self::record_notice(&txn, *case_id, notice).await?;
        }
        let wake = apply_policies(&txn, policies, &recorded, &cases, now).await?;
        txn.commit().await?;
        // Only committed contacts are remembered.
        self.contacts.lock().expect("not poisoned").extend(fresh);
        Ok(Recorded { answers, wake })
    }

    /// The case and identity of every address in `batch` that has one, from memory or the store.
    async fn known_contacts<C: ConnectionTrait>(
        &self,
        conn: &C,
        batch: &[NewInbound],
    ) -> Result<HashMap<(String, String), Contact>, StoreError> {
        let mut found = HashMap::new();
        let mut missing = Vec::new();
        {
            let cache = self.contacts.lock().expect("not poisoned");
            for item in batch {
                let key = (item.instance.clone(), item.message.from.as_str().to_owned());
                match cache.get(&key) {
                    Some(c) => {
                        found.insert(key, c.clone());
                    }
                    None => missing.push(key),
                }
            }
        }
        if missing.is_empty() {
            return Ok(found);
        }
        let identities = identity::Entity::find()
            .filter(identity::Column::Address.is_in(missing.iter().map(|(_, a)| a.as_str())))
            .all(conn)
            .await?;
        let cases: HashMap<CaseId, String> = case::Entity::find()
            .filter(case::Column::Id.is_in(identities.iter().map(|i| i.case_id)))
            .all(conn)
            .await?
            .into_iter()
            .map(|c| (c.id, c.number))
            .collect();
        let mut cache = self.contacts.lock().expect("not poisoned");
        for identity in identities {
            let Some(number) = cases.get(&identity.case_id) else {
                continue;
            };
            let contact = Contact {
                identity_id: identity.id,
                case_id: identity.case_id,
                case_number: number.clone(),
            };
            let key = (identity.instance, identity.address);
            cache.insert(key.clone(), contact.clone());
            found.insert(key, contact);
        }
        Ok(found)
    }
}

/// The case a token invites to on `instance`, marking the invitation used; or why not.
async fn use_invitation<C: ConnectionTrait>(
    conn: &C,
    instance: &str,
    token: &str,
    now: DateTime<Utc>,
) -> Result<Result<case::Model, &'static str>, StoreError> {
    let Some(found) = invitation::Entity::find_by_id(chain::hex(token))
        .one(conn)
        .await?
    else {
        return Ok(Err("the office does not know"));
    };
    if found.instance != instance {
        return Ok(Err("was made for another channel"));
    }
    if found.used_at.is_some() {
        return Ok(Err("was used already"));
    }
    if found.expires_at < now {
        return Ok(Err("has expired"));
    }
    let Some(case) = case::Entity::find_by_id(found.case_id).one(conn).await? else {
        return Ok(Err("belongs to a case that is gone"));
    };
    invitation::Entity::update_many()
        .col_expr(invitation::Column::UsedAt, Expr::value(now))
        .filter(invitation::Column::TokenHash.eq(found.token_hash))
        .exec(conn)
        .await?;
    Ok(Ok(case))
}

/// The case of the office's own message among `references` on `instance`, if any.
async fn answered_case<C: ConnectionTrait>(
    conn: &C,
    instance: &str,
    references: &[String],
) -> Result<Option<case::Model>, StoreError> {
    if references.is_empty() {
        return Ok(None);
    }
    let ours = message::Entity::find()
        .filter(message::Column::Direction.eq(Direction::Outbound))
        .filter(message::Column::Instance.eq(instance))
        .filter(message::Column::UpstreamId.is_in(references.iter().map(String::as_str)))
        .order_by_desc(message::Column::Id)
        .one(conn)
        .await?;
    match ours {
        Some(m) => Ok(case::Entity::find_by_id(m.case_id).one(conn).await?),
        None => Ok(None),
    }
}

/// Runs the team policies over newly recorded client messages, inside the transaction that
/// records them: an emergency notice and alert, an automatic reply (once per period: the mark
/// and the reply commit together). Returns the bridge instances with replies to deliver.
async fn apply_policies<C: ConnectionTrait>(
    conn: &C,
    policies: &Policies,
    recorded: &[(&NewInbound, Contact)],
    cases: &HashMap<CaseId, case::Model>,
    now: DateTime<Utc>,
) -> Result<BTreeSet<String>, StoreError> {
    let mut wake = BTreeSet::new();
    for (item, contact) in recorded {
        let (Some(policy), Some(case)) = (policies.team(&item.team), cases.get(&contact.case_id))
        else {
            continue;
        };
        let decision = policy.decide(&Incoming {
            at: now,
            text: &item.message.body,
            channel: &item.channel,
            automated: item.message.automated,
            discreet: case.discreet,
            blocked: case.blocked,
            case_number: &case.number,
            contact: &contact.identity_id.to_string(),
        });
        let mut replied = false;
        if let Some(reply) = &decision.reply {
            let fresh = match &reply.once_key {
                Some(key) => {
                    mark::Entity::insert(mark::ActiveModel {
                        key: Set(key.clone()),
                        case_id: Set(case.id),
                        created_at: Set(now),
                    })
                    .on_conflict(
                        OnConflict::column(mark::Column::Key)
                            .do_nothing()
                            .to_owned(),
                    )
                    .exec_without_returning(conn)
                    .await?
                        == 1
                }
                None => true,
            };
            if fresh {
                let m = chain::append_one(
                    conn,
                    message::ActiveModel {
                        identity_id: Set(Some(contact.identity_id)),
                        instance: Set(item.instance.clone()),
                        channel: Set(item.channel.clone()),
                        kind: Set(Some(reply.kind.into())),
                        ..message_row(
                            case.id,
                            Direction::Outbound,
                            MessageState::Queued,
                            &reply.text,
                            now,
                        )
                    },
                )
                .await?;
                enqueue(conn, Target::Bridge, &item.instance, m.id, case.id, now).await?;
                wake.insert(item.instance.clone());
                replied = true;
            }
        }
        if let Some(keyword) = &decision.emergency {
            let notice = policy::emergency_notice(policy, keyword, replied);
            Store::record_team_notice(
                conn,
                case.id,
                Direction::Notice,
                MessageKind::Emergency,
                &notice,
            )
            .await?;
            if policy.alert_room.is_some() {
                let alert =
                    policy::emergency_alert(policies, policy, &case.number, &item.label, keyword);
                Store::record_team_notice(
                    conn,
                    case.id,
                    Direction::Alert,
                    MessageKind::Emergency,
                    &alert,
                )
                .await?;
            }
        }
        // Every automatic reply is shown, so the team knows what the client was told; a
        // blocked client's (at most once a day) without their message, which stays unshown.
        if let (true, Some(reply)) = (replied, &decision.reply) {
            Store::record_notice(
                conn,
                case.id,
                &policy::auto_reply_notice(reply, &item.label),
            )
            .await?;
        }
    }
    Ok(wake)
}

async fn new_case<C: ConnectionTrait>(
    conn: &C,
    team: &str,
    now: DateTime<Utc>,
) -> Result<case::Model, StoreError> {
    let year = now.year();
    let last: Option<i32> = case::Entity::find()
        .select_only()
        .column_as(case::Column::Seq.max(), "max_seq")
        .filter(case::Column::Year.eq(year))
        .into_tuple::<Option<i32>>()
        .one(conn)
        .await?
        .flatten();
    let seq = last.unwrap_or(0) + 1;
    Ok(case::ActiveModel {
        number: Set(format!("{year}-{seq:06}")),
        year: Set(year),
        seq: Set(seq),
        team: Set(team.to_owned()),
        status: Set(CaseStatus::Open),
        room_id: Set(None),
        last_identity_id: Set(None),
        created_at: Set(now),
        ..Default::default()
    }
    .insert(conn)
    .await?)
}
