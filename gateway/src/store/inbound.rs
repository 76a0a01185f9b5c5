//! Recording what clients send: one transaction per batch, which reads the facts, asks
//! `store::plan` what they cause and applies the answer.

use std::collections::{BTreeSet, HashMap, HashSet};

use casebridge_bridges::{Accepted, InboundMessage};
use chrono::{DateTime, Datelike, Utc};
use sea_orm::{
    sea_query::{Expr, OnConflict},
    ActiveModelTrait, ColumnTrait, Condition, ConnectionTrait, EntityTrait, QueryFilter,
    QueryOrder, QuerySelect, Set,
};

use super::InvitationProblem;
use super::{
    attachment, attachment_summary, case, chain, enqueue, identity, invitation, mark, message,
    message_row, original,
    plan::{self, Address, CaseRef, Contact, InboundPlan, Lead, PolicyStep, Record, Upstream},
    queue_item, CaseId, CaseStatus, Direction, MessageId, MessageKind, MessageState, Store,
    StoreError, Target,
};
use crate::policy::Policies;

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
    /// rare new case). What the batch causes is decided by `store::plan` from what
    /// these read; this only applies it.
    pub async fn record_inbound(
        &self,
        batch: &[NewInbound],
        policies: &Policies,
    ) -> Result<Recorded, StoreError> {
        if batch.is_empty() {
            return Ok(Recorded::default());
        }
        let (txn, _turn) = self.begin_write().await?;
        let now = Utc::now();

        let fresh = plan::fresh(batch, &recorded_before(&txn, batch).await?);
        let mut contacts = self.known_contacts(&txn, batch).await?;
        // The cases this batch touches, read once: blocked cases are recorded, not relayed,
        // and the policies read the rest. Cases opened or joined by this batch join them.
        let mut cases: HashMap<CaseId, case::Model> = case::Entity::find()
            .filter(case::Column::Id.is_in(contacts.values().map(|c| c.case_id)))
            .all(&txn)
            .await?
            .into_iter()
            .map(|c| (c.id, c))
            .collect();
        let unknown = plan::unknown_senders(batch, &fresh, &contacts);
        let leads = read_leads(&txn, batch, &unknown, now).await?;
        let last_seq = if leads.iter().any(|(_, lead)| lead.joins().is_none()) {
            last_seq(&txn, now.year()).await?
        } else {
            0
        };
        let admission = plan::admit(batch, &leads, last_seq, now);
        let (added, routed) = apply_admission(&txn, batch, admission, &mut cases, now).await?;
        contacts.extend(added.iter().cloned());

        let plan = plan::plan(&plan::Facts {
            batch,
            fresh: &fresh,
            contacts: &contacts,
            cases: &cases,
            routed: &routed,
            policies,
            now,
        })?;
        let wake = apply(&txn, batch, &plan, now).await?;
        txn.commit().await?;
        // Only committed contacts are remembered.
        self.contacts.extend(added);
        Ok(Recorded {
            answers: plan.answers,
            wake,
        })
    }

    /// The case and identity of every address in `batch` that has one, from memory or the store.
    async fn known_contacts<C: ConnectionTrait>(
        &self,
        conn: &C,
        batch: &[NewInbound],
    ) -> Result<HashMap<(String, String), Contact>, StoreError> {
        let mut found = HashMap::new();
        let mut missing = Vec::new();
        for item in batch {
            let key = (item.instance.clone(), item.message.from.as_str().to_owned());
            match self.contacts.get(&key) {
                Some(c) => {
                    found.insert(key, c);
                }
                None => missing.push(key),
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
            self.contacts.put(key.clone(), contact.clone());
            found.insert(key, contact);
        }
        Ok(found)
    }
}

/// The messages of `batch` recorded before (instance and upstream id).
async fn recorded_before<C: ConnectionTrait>(
    conn: &C,
    batch: &[NewInbound],
) -> Result<HashSet<Upstream>, StoreError> {
    Ok(message::Entity::find()
        .select_only()
        .column(message::Column::Instance)
        .column(message::Column::UpstreamId)
        .filter(message::Column::Direction.eq(Direction::Inbound))
        .filter(
            message::Column::UpstreamId.is_in(batch.iter().map(|i| i.message.message_id.as_str())),
        )
        .into_tuple::<(String, Option<String>)>()
        .all(conn)
        .await?
        .into_iter()
        .filter_map(|(instance, id)| Some((instance, id?)))
        .collect())
}

/// Where the first message of each unknown sender (`unknown`, batch indexes) leads: an
/// unknown address that answers one of the office's own messages, or brings an invitation,
/// joins that case.
async fn read_leads<C: ConnectionTrait>(
    conn: &C,
    batch: &[NewInbound],
    unknown: &[usize],
    now: DateTime<Utc>,
) -> Result<Vec<(usize, Lead)>, StoreError> {
    let mut used = HashSet::new();
    let mut leads = Vec::with_capacity(unknown.len());
    for &i in unknown {
        let item = &batch[i];
        let mut lead = Lead::default();
        if let Some(token) = &item.message.invitation {
            let found = invitation_lead(conn, &item.instance, token, &used, now).await?;
            if let Ok((token_hash, _)) = &found {
                used.insert(token_hash.clone());
            }
            lead.invitation = Some(found);
        }
        if lead.joins().is_none() {
            lead.answered = answered_case(conn, &item.instance, &item.message.references).await?;
        }
        leads.push((i, lead));
    }
    Ok(leads)
}

/// The case a token invites to on `instance`, with the token's hash; or why not. `used`: the
/// hashes of the tokens used earlier in the batch.
async fn invitation_lead<C: ConnectionTrait>(
    conn: &C,
    instance: &str,
    token: &str,
    used: &HashSet<String>,
    now: DateTime<Utc>,
) -> Result<Result<(String, case::Model), InvitationProblem>, StoreError> {
    let token_hash = chain::hex(token);
    let found = invitation::Entity::find_by_id(token_hash.clone())
        .one(conn)
        .await?;
    let case_id =
        match plan::check_invitation(found.as_ref(), instance, used.contains(&token_hash), now) {
            Ok(case_id) => case_id,
            Err(why) => return Ok(Err(why)),
        };
    Ok(match case::Entity::find_by_id(case_id).one(conn).await? {
        Some(case) => Ok((token_hash, case)),
        None => Err(InvitationProblem::CaseGone),
    })
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

/// The highest case number of `year` so far (0 if none).
async fn last_seq<C: ConnectionTrait>(conn: &C, year: i32) -> Result<i32, StoreError> {
    Ok(case::Entity::find()
        .select_only()
        .column_as(case::Column::Seq.max(), "max_seq")
        .filter(case::Column::Year.eq(year))
        .into_tuple::<Option<i32>>()
        .one(conn)
        .await?
        .flatten()
        .unwrap_or(0))
}

/// Marks the admission's invitations used, opens its cases (adding them to `cases`, with the
/// cases its identities join) and makes its identities. Returns the new contacts, and how
/// each was routed by the index of its first message.
async fn apply_admission<C: ConnectionTrait>(
    conn: &C,
    batch: &[NewInbound],
    admission: plan::Admission,
    cases: &mut HashMap<CaseId, case::Model>,
    now: DateTime<Utc>,
) -> Result<(Vec<(Address, Contact)>, HashMap<usize, crate::texts::Text>), StoreError> {
    for token_hash in &admission.invitations {
        invitation::Entity::update_many()
            .col_expr(invitation::Column::UsedAt, Expr::value(now))
            .filter(invitation::Column::TokenHash.eq(token_hash.as_str()))
            .exec(conn)
            .await?;
    }
    let mut opened = Vec::with_capacity(admission.cases.len());
    for new in admission.cases {
        let case = case::ActiveModel {
            number: Set(new.number),
            year: Set(new.year),
            seq: Set(new.seq),
            team: Set(new.team),
            status: Set(CaseStatus::Open),
            room_id: Set(None),
            last_identity_id: Set(None),
            created_at: Set(now),
            ..Default::default()
        }
        .insert(conn)
        .await?;
        opened.push(case);
    }
    let mut added = Vec::with_capacity(admission.identities.len());
    let mut routed = HashMap::new();
    for new in admission.identities {
        let item = &batch[new.first];
        let case = match new.case {
            CaseRef::Known(case) => case,
            CaseRef::New(n) => opened[n].clone(),
        };
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
        .insert(conn)
        .await?;
        added.push((
            plan::address(item),
            Contact {
                identity_id: identity.id,
                case_id: case.id,
                case_number: case.number.clone(),
            },
        ));
        if let Some(notice) = new.notice {
            routed.insert(new.first, notice);
        }
        cases.insert(case.id, case);
    }
    Ok((added, routed))
}

/// Applies what the batch causes, in order: where replies go, the messages, the notices, the
/// policies' replies and alerts. Returns the bridge instances with replies to deliver.
async fn apply<C: ConnectionTrait>(
    conn: &C,
    batch: &[NewInbound],
    plan: &InboundPlan,
    now: DateTime<Utc>,
) -> Result<BTreeSet<String>, StoreError> {
    // A client who writes can be reached again where they wrote.
    identity::Entity::update_many()
        .col_expr(
            identity::Column::Unreachable,
            Expr::value(Option::<String>::None),
        )
        .filter(identity::Column::Id.is_in(plan.wrote_from.values().copied()))
        .filter(identity::Column::Unreachable.is_not_null())
        .exec(conn)
        .await?;
    // Replies go out where the client wrote last.
    for (case_id, identity_id) in &plan.replies_move {
        case::Entity::update_many()
            .col_expr(case::Column::LastIdentityId, Expr::value(*identity_id))
            .filter(case::Column::Id.eq(*case_id))
            .filter(
                Condition::any()
                    .add(case::Column::LastIdentityId.is_null())
                    .add(case::Column::LastIdentityId.ne(*identity_id)),
            )
            .exec(conn)
            .await?;
    }
    record_messages(conn, batch, &plan.records, now).await?;
    for (case_id, notice) in &plan.notices {
        Store::record_notice(conn, *case_id, notice).await?;
    }
    let mut wake = BTreeSet::new();
    for step in &plan.policy {
        if apply_policy(conn, batch, step, now).await? {
            wake.insert(batch[step.item].instance.clone());
        }
    }
    Ok(wake)
}

/// Inserts the client's messages (one statement), their files, originals and queue items (one
/// each).
async fn record_messages<C: ConnectionTrait>(
    conn: &C,
    batch: &[NewInbound],
    records: &[Record],
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    if records.is_empty() {
        return Ok(());
    }
    let rows = records.iter().map(|record| {
        let item = &batch[record.item];
        let row = message::ActiveModel {
            identity_id: Set(Some(record.identity_id)),
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
                record.case_id,
                Direction::Inbound,
                record.state,
                &item.message.body,
                now,
            )
        };
        let content = chain::Content {
            files: item
                .message
                .attachments
                .iter()
                .map(|a| (a.filename.as_str(), a.mime.as_str(), a.data.as_slice()))
                .collect(),
            original: item.message.original.as_deref(),
        };
        (row, content)
    });
    let inserted = chain::append(conn, rows.collect()).await?;
    let ids: HashMap<(&str, &str), MessageId> = inserted
        .iter()
        .filter_map(|m| Some(((m.instance.as_str(), m.upstream_id.as_deref()?), m.id)))
        .collect();
    let recorded = || {
        records.iter().filter_map(|record| {
            let item = &batch[record.item];
            let id = ids.get(&(item.instance.as_str(), item.message.message_id.as_str()))?;
            Some((*id, item))
        })
    };
    let files: Vec<attachment::ActiveModel> = recorded()
        .flat_map(|(id, item)| {
            item.message
                .attachments
                .iter()
                .enumerate()
                .map(move |(i, a)| attachment::ActiveModel {
                    message_id: Set(id),
                    position: Set(i as i32),
                    filename: Set(a.filename.clone()),
                    mime: Set(a.mime.clone()),
                    size: Set(a.data.len() as i64),
                    data: Set(a.data.clone()),
                    mxc_uri: Set(None),
                    ..Default::default()
                })
        })
        .collect();
    if !files.is_empty() {
        attachment::Entity::insert_many(files)
            .exec_without_returning(conn)
            .await?;
    }
    let originals: Vec<original::ActiveModel> = recorded()
        .filter_map(|(id, item)| {
            Some(original::ActiveModel {
                message_id: Set(id),
                data: Set(item.message.original.clone()?),
            })
        })
        .collect();
    if !originals.is_empty() {
        original::Entity::insert_many(originals)
            .exec_without_returning(conn)
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
            .exec_without_returning(conn)
            .await?;
    }
    Ok(())
}

/// Applies a team policy's answer to one message: the automatic reply (once per period: its
/// mark commits with it, and a mark another message set first means no reply), the
/// emergency notice and alert, and the notice of the reply. True if a reply went out.
async fn apply_policy<C: ConnectionTrait>(
    conn: &C,
    batch: &[NewInbound],
    step: &PolicyStep,
    now: DateTime<Utc>,
) -> Result<bool, StoreError> {
    let item = &batch[step.item];
    let mut replied = false;
    if let Some(reply) = &step.reply {
        let fresh = match &reply.once_key {
            Some(key) => {
                mark::Entity::insert(mark::ActiveModel {
                    key: Set(key.clone()),
                    case_id: Set(step.case_id),
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
                    identity_id: Set(Some(step.identity_id)),
                    instance: Set(item.instance.clone()),
                    channel: Set(item.channel.clone()),
                    kind: Set(Some(reply.kind)),
                    ..message_row(
                        step.case_id,
                        Direction::Outbound,
                        MessageState::Queued,
                        &reply.text,
                        now,
                    )
                },
            )
            .await?;
            enqueue(
                conn,
                Target::Bridge,
                &item.instance,
                m.id,
                step.case_id,
                now,
            )
            .await?;
            replied = true;
        }
    }
    if let Some(emergency) = &step.emergency {
        let notice = if replied {
            &emergency.replied
        } else {
            &emergency.unreplied
        };
        Store::record_team_notice(
            conn,
            step.case_id,
            Direction::Notice,
            MessageKind::Emergency,
            notice,
        )
        .await?;
        if let Some(alert) = &emergency.alert {
            Store::record_team_notice(
                conn,
                step.case_id,
                Direction::Alert,
                MessageKind::Emergency,
                alert,
            )
            .await?;
        }
    }
    if let (true, Some(reply)) = (replied, &step.reply) {
        Store::record_notice(conn, step.case_id, &reply.notice).await?;
    }
    Ok(replied)
}
