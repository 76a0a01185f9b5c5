//! Retention: which records' content is due to go, and purging it. A purge empties a record
//! (text, HTML, subject, files, original) but keeps its registration data and hashes, so the
//! chain still verifies, and appends a purge record to the case saying what went and why, with
//! the content hash of each record it emptied (the purged mark itself is not hashed; that list
//! is what proves a purged row was purged).
//! The purge also writes what the homeserver still has to forget (redactions, media deletions)
//! as follow-ups in the same transaction; [`crate::purge`] carries them out.

use casebridge_config::{RetentionConfig, RetentionRule, RetentionStatus};
use chrono::{DateTime, Duration, Utc};
use sea_orm::{sea_query::Expr, ColumnTrait, EntityTrait, QueryFilter, QueryOrder, Set};

use super::{
    attachment, case, chain, message, message_row, original, purge_followup, CaseStatus, Direction,
    MessageId, MessageKind, MessageState, Store, StoreError,
};

/// A record due to be purged, and the rule that says so.
#[derive(Debug, Clone)]
pub struct Due {
    /// The case.
    pub case: case::Model,
    /// The record.
    pub record: message::Model,
    /// Which `[[retention.rule]]` (from 1).
    pub rule: usize,
}

/// What a purge did to one case.
#[derive(Debug, Clone)]
pub struct Purged {
    /// The case.
    pub case: case::Model,
    /// Registration numbers purged.
    pub seqs: Vec<i32>,
    /// Events in the case room to redact.
    pub events: Vec<String>,
    /// Files in the homeserver's media repository that carried purged content.
    pub media: Vec<String>,
}

fn applies(rule: &RetentionRule, m: &message::Model) -> bool {
    rule.records.is_empty()
        || rule.records.iter().any(|r| {
            r == m.direction.as_str() || Some(r.as_str()) == m.kind.map(MessageKind::as_str)
        })
}

/// The rule (from 1) that makes `m` of `case` due at `now`, if any.
fn due_by(
    rules: &[RetentionRule],
    case: &case::Model,
    m: &message::Model,
    now: DateTime<Utc>,
) -> Option<usize> {
    if case.legal_hold || m.purged_at.is_some() || m.kind == Some(MessageKind::Purge) {
        return None;
    }
    rules
        .iter()
        .position(|rule| {
            let after = Duration::days(rule.after_days.into());
            applies(rule, m)
                && match rule.status {
                    RetentionStatus::Closed => {
                        case.status == CaseStatus::Closed
                            && case.closed_at.is_some_and(|t| t + after <= now)
                    }
                    RetentionStatus::Open => {
                        case.status == CaseStatus::Open && m.received_at + after <= now
                    }
                    RetentionStatus::Any => m.received_at + after <= now,
                }
        })
        .map(|i| i + 1)
}

impl Store {
    /// Every record the rules make due at `now`, case by case in registration order.
    pub async fn retention_due(
        &self,
        retention: &RetentionConfig,
        now: DateTime<Utc>,
    ) -> Result<Vec<Due>, StoreError> {
        if retention.rules.is_empty() {
            return Ok(Vec::new());
        }
        let mut out = Vec::new();
        for case in self.cases().await?.into_iter().rev() {
            if case.legal_hold {
                continue;
            }
            let records = message::Entity::find()
                .filter(message::Column::CaseId.eq(case.id))
                .filter(message::Column::PurgedAt.is_null())
                .order_by_asc(message::Column::Seq)
                .all(self.connection())
                .await?;
            for record in records {
                if let Some(rule) = due_by(&retention.rules, &case, &record, now) {
                    out.push(Due {
                        case: case.clone(),
                        record,
                        rule,
                    });
                }
            }
        }
        Ok(out)
    }

    /// Purges `due` (from [`Store::retention_due`]), one transaction per case, each with its
    /// purge record.
    pub async fn purge(&self, due: &[Due]) -> Result<Vec<Purged>, StoreError> {
        let mut out = Vec::new();
        let mut start = 0;
        while start < due.len() {
            let case = &due[start].case;
            let end = due[start..]
                .iter()
                .position(|d| d.case.id != case.id)
                .map_or(due.len(), |n| start + n);
            let group = &due[start..end];
            start = end;
            let (txn, _turn) = self.begin_write().await?;
            let ids: Vec<MessageId> = group.iter().map(|d| d.record.id).collect();
            let now = Utc::now();
            message::Entity::update_many()
                .col_expr(message::Column::Body, Expr::value(""))
                .col_expr(message::Column::Html, Expr::value(Option::<String>::None))
                .col_expr(
                    message::Column::Subject,
                    Expr::value(Option::<String>::None),
                )
                .col_expr(
                    message::Column::Attachments,
                    Expr::value(Option::<serde_json::Value>::None),
                )
                .col_expr(message::Column::PurgedAt, Expr::value(now))
                .filter(message::Column::Id.is_in(ids.clone()))
                .exec(&txn)
                .await?;
            // Files are events of their own in the room, and files in the media repository:
            // collect both before the rows go.
            let files = attachment::Entity::find()
                .filter(attachment::Column::MessageId.is_in(ids.clone()))
                .all(&txn)
                .await?;
            let media: Vec<String> = files.iter().filter_map(|a| a.mxc_uri.clone()).collect();
            let file_events: Vec<String> = files.into_iter().filter_map(|a| a.event_id).collect();
            attachment::Entity::delete_many()
                .filter(attachment::Column::MessageId.is_in(ids.clone()))
                .exec(&txn)
                .await?;
            original::Entity::delete_many()
                .filter(original::Column::MessageId.is_in(ids))
                .exec(&txn)
                .await?;
            let seqs: Vec<i32> = group.iter().filter_map(|d| d.record.seq).collect();
            let mut rules: Vec<usize> = group.iter().map(|d| d.rule).collect();
            rules.sort_unstable();
            rules.dedup();
            let log = chain::purge_text(
                &rules,
                &group
                    .iter()
                    .filter_map(|d| Some((d.record.seq?, d.record.content_hash.as_deref())))
                    .collect::<Vec<_>>(),
            );
            chain::append_one(
                &txn,
                message::ActiveModel {
                    kind: Set(Some(MessageKind::Purge)),
                    ..message_row(
                        case.id,
                        Direction::Internal,
                        MessageState::Recorded,
                        &log,
                        now,
                    )
                },
            )
            .await?;
            let mut events: Vec<String> = group
                .iter()
                .filter_map(|d| d.record.event_id.clone())
                .chain(file_events)
                .collect();
            events.sort();
            events.dedup();
            // What the homeserver still has to forget, owed in the same transaction.
            let owed = events
                .iter()
                .filter(|_| case.room_id.is_some())
                .map(|e| (Some(e.clone()), None))
                .chain(media.iter().map(|m| (None, Some(m.clone()))))
                .map(|(event_id, mxc_uri)| purge_followup::ActiveModel {
                    case_id: Set(case.id),
                    room_id: Set(case.room_id.clone()),
                    event_id: Set(event_id),
                    mxc_uri: Set(mxc_uri),
                    attempts: Set(0),
                    last_error: Set(None),
                    created_at: Set(now),
                    done_at: Set(None),
                    ..Default::default()
                })
                .collect::<Vec<_>>();
            if !owed.is_empty() {
                purge_followup::Entity::insert_many(owed).exec(&txn).await?;
            }
            txn.commit().await?;
            out.push(Purged {
                case: case.clone(),
                seqs,
                events,
                media,
            });
        }
        Ok(out)
    }

    /// The redactions and media deletions purges still owe the homeserver, oldest first.
    pub async fn purge_followups(&self) -> Result<Vec<purge_followup::Model>, StoreError> {
        Ok(purge_followup::Entity::find()
            .filter(purge_followup::Column::DoneAt.is_null())
            .order_by_asc(purge_followup::Column::Id)
            .all(self.connection())
            .await?)
    }

    /// Marks a follow-up done (`Ok`) or counts a failed attempt with its reason.
    pub async fn purge_followup_result(
        &self,
        id: i64,
        result: Result<(), String>,
    ) -> Result<(), StoreError> {
        let update = purge_followup::Entity::update_many()
            .col_expr(
                purge_followup::Column::Attempts,
                Expr::col(purge_followup::Column::Attempts).add(1),
            )
            .filter(purge_followup::Column::Id.eq(id));
        let update = match result {
            Ok(()) => update.col_expr(purge_followup::Column::DoneAt, Expr::value(Utc::now())),
            Err(e) => update.col_expr(purge_followup::Column::LastError, Expr::value(e)),
        };
        update.exec(self.connection()).await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use casebridge_config::{RetentionRule, RetentionStatus};
    use chrono::{Duration, Utc};

    use super::due_by;
    use crate::store::{
        case, message, CaseId, CaseStatus, Direction, MessageId, MessageKind, MessageState,
    };

    fn case(status: CaseStatus, closed_days_ago: Option<i64>, hold: bool) -> case::Model {
        case::Model {
            id: CaseId(1),
            number: "2026-000001".into(),
            year: 2026,
            seq: 1,
            team: "t".into(),
            status,
            room_id: None,
            last_identity_id: None,
            created_at: Utc::now(),
            discreet: false,
            blocked: false,
            assignee: None,
            closed_at: closed_days_ago.map(|d| Utc::now() - Duration::days(d)),
            legal_hold: hold,
            merged_into: None,
        }
    }

    fn record(direction: Direction, kind: Option<MessageKind>, days_ago: i64) -> message::Model {
        message::Model {
            id: MessageId(1),
            case_id: CaseId(1),
            identity_id: None,
            direction,
            instance: String::new(),
            channel: String::new(),
            upstream_id: None,
            event_id: None,
            sender: None,
            body: "x".into(),
            html: None,
            attachments: None,
            state: MessageState::Relayed,
            error: None,
            sent_at: None,
            received_at: Utc::now() - Duration::days(days_ago),
            relayed_at: None,
            delivered_at: None,
            kind,
            mentions: None,
            subject: None,
            seq: Some(1),
            prev_hash: None,
            content_hash: None,
            hash: None,
            purged_at: None,
            replaces: None,
        }
    }

    #[test]
    fn two_years_after_closing_unless_on_hold() {
        let rules = [
            RetentionRule {
                records: vec![],
                status: RetentionStatus::Closed,
                after_days: 730,
            },
            RetentionRule {
                records: vec!["notice".into()],
                status: RetentionStatus::Any,
                after_days: 90,
            },
        ];
        let now = Utc::now();
        let old = record(Direction::Inbound, None, 1000);
        assert_eq!(
            due_by(
                &rules,
                &case(CaseStatus::Closed, Some(731), false),
                &old,
                now
            ),
            Some(1)
        );
        assert_eq!(
            due_by(
                &rules,
                &case(CaseStatus::Closed, Some(700), false),
                &old,
                now
            ),
            None
        );
        assert_eq!(
            due_by(
                &rules,
                &case(CaseStatus::Closed, Some(731), true),
                &old,
                now
            ),
            None,
            "legal hold"
        );
        assert_eq!(
            due_by(&rules, &case(CaseStatus::Open, None, false), &old, now),
            None
        );
        let notice = record(Direction::Notice, None, 100);
        assert_eq!(
            due_by(&rules, &case(CaseStatus::Open, None, false), &notice, now),
            Some(2)
        );
        let purge_log = record(Direction::Internal, Some(MessageKind::Purge), 5000);
        assert_eq!(
            due_by(
                &rules,
                &case(CaseStatus::Closed, Some(731), false),
                &purge_log,
                now
            ),
            None
        );
    }
}
