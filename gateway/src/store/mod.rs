//! The records store: cases, identities, every message, the durable outbound queue and the
//! processed appservice transactions, on SQLite (default) or PostgreSQL through sea-orm.

pub mod anchor;
pub mod chain;
mod connect;
pub mod entities;
mod inbound;
mod migration;
mod outbound;
mod plan;
mod queue;
mod reads;
mod reports;
pub mod retention;
mod rooms;
mod values;

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

use chrono::{DateTime, Utc};
use sea_orm::{
    sea_query::OnConflict, ActiveModelTrait, ConnectionTrait, DatabaseConnection, DbBackend,
    EntityTrait, Set, TransactionTrait,
};

pub use self::connect::{OpenMode, StoreError};
pub use self::entities::{
    attachment, bridge_state, case, identity, invitation, mark, message, original, purge_followup,
    queue_item, transaction,
};
pub use self::inbound::{NewInbound, Recorded};
pub use self::outbound::{invitation_token, NewOutbound};
use self::plan::Contact;
pub use self::values::{
    CaseId, CaseStatus, Direction, IdentityId, MessageId, MessageKind, MessageState, Target,
};

#[async_trait::async_trait]
impl casebridge_bridges::BridgeState for Store {
    async fn get(
        &self,
        instance: &str,
        key: &str,
    ) -> Result<Option<String>, casebridge_bridges::SubmitError> {
        bridge_state::Entity::find_by_id((instance.to_owned(), key.to_owned()))
            .one(self.connection())
            .await
            .map(|row| row.map(|r| r.value))
            .map_err(|e| casebridge_bridges::SubmitError(format!("records store: {e}")))
    }

    async fn set(
        &self,
        instance: &str,
        key: &str,
        value: &str,
    ) -> Result<(), casebridge_bridges::SubmitError> {
        bridge_state::Entity::insert(bridge_state::ActiveModel {
            instance: Set(instance.to_owned()),
            key: Set(key.to_owned()),
            value: Set(value.to_owned()),
            updated_at: Set(Utc::now()),
        })
        .on_conflict(
            OnConflict::columns([bridge_state::Column::Instance, bridge_state::Column::Key])
                .update_columns([bridge_state::Column::Value, bridge_state::Column::UpdatedAt])
                .to_owned(),
        )
        .exec_without_returning(self.connection())
        .await
        .map(|_| ())
        .map_err(|e| casebridge_bridges::SubmitError(format!("records store: {e}")))
    }
}

/// Handle to the records store; cheap to clone.
#[derive(Clone, Debug)]
pub struct Store {
    db: DatabaseConnection,
    contacts: Arc<Mutex<HashMap<(String, String), Contact>>>,
}

impl Store {
    /// The connection, for queries the store has no method for.
    pub fn connection(&self) -> &DatabaseConnection {
        &self.db
    }

    /// Marks an appservice transaction as processed inside `txn`; false if it was before.
    pub async fn claim_transaction<C: ConnectionTrait>(
        conn: &C,
        txn_id: &str,
    ) -> Result<bool, StoreError> {
        let inserted = transaction::Entity::insert(transaction::ActiveModel {
            txn_id: Set(txn_id.to_owned()),
            received_at: Set(Utc::now()),
        })
        .on_conflict(
            OnConflict::column(transaction::Column::TxnId)
                .do_nothing()
                .to_owned(),
        )
        .exec_without_returning(conn)
        .await?;
        Ok(inserted == 1)
    }

    /// Starts a transaction that reads and then writes, and must commit as one.
    ///
    /// On SQLite it takes the write lock at once, as `BEGIN IMMEDIATE` would: a deferred
    /// transaction that reads first cannot upgrade to a writer once another connection has
    /// committed (SQLITE_BUSY_SNAPSHOT, which no busy timeout waits out).
    pub async fn begin_write(&self) -> Result<sea_orm::DatabaseTransaction, StoreError> {
        let txn = self.db.begin().await?;
        if self.db.get_database_backend() == DbBackend::Sqlite {
            txn.execute_unprepared("UPDATE transactions SET txn_id = txn_id WHERE 0")
                .await?;
        }
        Ok(txn)
    }

    /// Forgets which case each address belongs to (after `!merge` moved some): the next
    /// message of each reads it from the store.
    pub fn forget_contacts(&self) {
        self.contacts.lock().expect("not poisoned").clear();
    }
}

/// A message row: its case, direction, state and body, received now, and nothing else known yet.
fn message_row(
    case_id: CaseId,
    direction: Direction,
    state: MessageState,
    body: &str,
    now: DateTime<Utc>,
) -> message::ActiveModel {
    message::ActiveModel {
        case_id: Set(case_id),
        identity_id: Set(None),
        direction: Set(direction),
        instance: Set(String::new()),
        channel: Set(String::new()),
        upstream_id: Set(None),
        event_id: Set(None),
        sender: Set(None),
        body: Set(body.to_owned()),
        html: Set(None),
        attachments: Set(None),
        state: Set(state),
        error: Set(None),
        sent_at: Set(None),
        received_at: Set(now),
        relayed_at: Set(None),
        delivered_at: Set(None),
        ..Default::default()
    }
}

/// What the export and the room need to know of a message's files, without their content.
fn attachment_summary(files: &[casebridge_bridges::Attachment]) -> Option<serde_json::Value> {
    (!files.is_empty()).then(|| {
        serde_json::Value::Array(
            files
                .iter()
                .map(|a| serde_json::json!({"filename": a.filename, "mime": a.mime, "size": a.data.len()}))
                .collect(),
        )
    })
}

async fn enqueue<C: ConnectionTrait>(
    conn: &C,
    target: Target,
    instance: &str,
    message_id: MessageId,
    case_id: CaseId,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    queue_item::ActiveModel {
        target: Set(target),
        instance: Set(instance.to_owned()),
        message_id: Set(message_id),
        case_id: Set(case_id),
        attempts: Set(0),
        next_attempt_at: Set(now),
        last_error: Set(None),
        created_at: Set(now),
        ..Default::default()
    }
    .insert(conn)
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use casebridge_bridges::{Accepted, InboundMessage, RemoteAddress, RemoteMessageId};
    use chrono::Datelike;

    use std::collections::BTreeSet;

    use super::*;
    use crate::policy::Policies;

    fn inbound(id: &str, from: &str) -> NewInbound {
        NewInbound {
            instance: "sms".into(),
            channel: "sms".into(),
            team: "social".into(),
            label: "SMS".into(),
            ghost_localpart: format!("_cb_sms_{from}"),
            message: InboundMessage {
                message_id: RemoteMessageId::new(id),
                from: RemoteAddress::new(from),
                display_name: from.into(),
                body: format!("text of {id}"),
                sent_at: Utc::now(),
                ..Default::default()
            },
        }
    }

    #[tokio::test]
    async fn the_policies_act_in_the_batch_and_a_once_reply_goes_once() {
        let config = casebridge_config::Config::from_toml_str(
            r#"
            [homeserver]
            url = "http://127.0.0.1:8008"
            server_name = "example.org"
            [appservice]
            id = "cb"
            listen = "127.0.0.1:0"
            url = "http://127.0.0.1:1"
            as_token = "a"
            hs_token = "h"
            [teams.social]
            members = ["@anna:example.org"]
            auto_reply = { acknowledge = true }
            emergency = { keywords = ["help me now"], alert_room = "!alerts:example.org" }
            "#,
        )
        .unwrap();
        let policies = Policies::load(&config).unwrap();
        let store = Store::connect("sqlite::memory:", 1).await.unwrap();
        let mut urgent = inbound("m3", "a");
        urgent.message.body = "please help me now".into();
        let recorded = store
            .record_inbound(&[inbound("m1", "a"), inbound("m2", "a"), urgent], &policies)
            .await
            .unwrap();
        assert_eq!(recorded.wake, BTreeSet::from(["sms".to_owned()]));
        let case = store.cases().await.unwrap().remove(0);
        let records: Vec<_> = store
            .messages(case.id)
            .await
            .unwrap()
            .into_iter()
            .map(|m| (m.direction, m.kind, m.state))
            .collect();
        use {Direction as D, MessageKind as K, MessageState as S};
        assert_eq!(
            records,
            [
                (D::Inbound, None, S::Received),
                (D::Inbound, None, S::Received),
                (D::Inbound, None, S::Received),
                // m1: acknowledged once for the period; m2's mark is taken already.
                (D::Outbound, Some(K::Acknowledgement), S::Queued),
                (D::Notice, None, S::Received),
                // m3: the emergency numbers, the notice that says they went, the alert.
                (D::Outbound, Some(K::EmergencyReply), S::Queued),
                (D::Notice, Some(K::Emergency), S::Received),
                (D::Alert, Some(K::Emergency), S::Received),
                (D::Notice, None, S::Received),
            ]
        );
        let messages = store.messages(case.id).await.unwrap();
        assert!(messages[6]
            .body
            .contains("The client was sent the emergency numbers."));
        assert_eq!(
            chain::verify(store.connection(), &case).await.unwrap(),
            vec![]
        );
        // The mark outlives the batch.
        store
            .record_inbound(&[inbound("m4", "a")], &policies)
            .await
            .unwrap();
        assert_eq!(store.messages(case.id).await.unwrap().len(), 10);
    }

    #[tokio::test]
    async fn inbound_creates_cases_and_deduplicates() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("t.db").display());
        let store = Store::connect(&url, 2).await.unwrap();
        let answers = store
            .record_inbound(
                &[
                    inbound("m1", "a"),
                    inbound("m2", "a"),
                    inbound("m1", "a"),
                    inbound("m3", "b"),
                ],
                &Policies::default(),
            )
            .await
            .unwrap()
            .answers;
        let year = Utc::now().year();
        assert_eq!(
            answers,
            vec![
                Accepted::Recorded {
                    case_number: format!("{year}-000001")
                },
                Accepted::Recorded {
                    case_number: format!("{year}-000001")
                },
                Accepted::Duplicate,
                Accepted::Recorded {
                    case_number: format!("{year}-000002")
                },
            ]
        );
        // A retry after a restart is still a duplicate.
        drop(store);
        let store = Store::connect(&url, 2).await.unwrap();
        assert_eq!(
            store
                .record_inbound(&[inbound("m2", "a")], &Policies::default())
                .await
                .unwrap()
                .answers,
            vec![Accepted::Duplicate]
        );
        let cases = store.cases().await.unwrap();
        assert_eq!(cases.len(), 2);
        assert_eq!(store.messages(cases[1].id).await.unwrap().len(), 2);
        assert_eq!(store.due(Target::Matrix, "", 10).await.unwrap().len(), 3);
    }

    #[tokio::test]
    async fn a_duplicate_in_the_same_batch_keeps_one_copy_of_files_and_original() {
        let store = Store::connect("sqlite::memory:", 1).await.unwrap();
        let mut m = inbound("mail-1", "a@client.test");
        m.message.attachments.push(casebridge_bridges::Attachment {
            filename: "a.txt".into(),
            mime: "text/plain".into(),
            data: b"hej".to_vec(),
        });
        m.message.original = Some(b"From: a@client.test\r\n\r\nhej".to_vec());
        let answers = store
            .record_inbound(&[m.clone(), m], &Policies::default())
            .await
            .unwrap()
            .answers;
        assert!(matches!(answers[0], Accepted::Recorded { .. }));
        assert_eq!(answers[1], Accepted::Duplicate);
        let case = store.cases().await.unwrap().remove(0);
        let message = store.messages(case.id).await.unwrap().remove(0);
        assert_eq!(store.attachments(message.id).await.unwrap().len(), 1);
        assert_eq!(
            store.original(message.id).await.unwrap().unwrap(),
            b"From: a@client.test\r\n\r\nhej"
        );
    }

    #[tokio::test]
    async fn records_from_before_the_chain_are_chained_on_start() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("t.db").display());
        let store = Store::connect(&url, 1).await.unwrap();
        store
            .record_inbound(
                &[inbound("o1", "a"), inbound("o2", "a"), inbound("o3", "b")],
                &Policies::default(),
            )
            .await
            .unwrap();
        // As a store written by a version without the chain.
        store
            .connection()
            .execute_unprepared(
                "UPDATE messages SET seq = NULL, prev_hash = NULL, content_hash = NULL, hash = NULL",
            )
            .await
            .unwrap();
        drop(store);
        let store = Store::connect(&url, 1).await.unwrap();
        for case in store.cases().await.unwrap() {
            assert_eq!(
                chain::verify(store.connection(), &case).await.unwrap(),
                vec![]
            );
            let seqs: Vec<_> = store
                .messages(case.id)
                .await
                .unwrap()
                .iter()
                .map(|m| m.seq)
                .collect();
            assert!(
                seqs.iter()
                    .enumerate()
                    .all(|(i, s)| *s == Some(i as i32 + 1)),
                "{seqs:?}"
            );
        }
        // New records continue the chain.
        store
            .record_inbound(&[inbound("o4", "a")], &Policies::default())
            .await
            .unwrap();
        let case = store.cases().await.unwrap().pop().unwrap();
        assert_eq!(
            chain::verify(store.connection(), &case).await.unwrap(),
            vec![]
        );
    }

    #[tokio::test]
    async fn concurrent_writers_do_not_fail_on_sqlite() {
        // A reader-then-writer batch racing single-statement writers on other connections:
        // without taking the write lock first this fails with SQLITE_BUSY_SNAPSHOT.
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("t.db").display());
        let store = Store::connect(&url, 4).await.unwrap();
        let writer = {
            let store = store.clone();
            tokio::spawn(async move {
                for i in 0..300 {
                    Store::claim_transaction(store.connection(), &format!("w{i}"))
                        .await
                        .unwrap();
                }
            })
        };
        for i in 0..150 {
            let batch = [
                inbound(&format!("a{i}"), "a"),
                inbound(&format!("b{i}"), "b"),
            ];
            store
                .record_inbound(&batch, &Policies::default())
                .await
                .unwrap();
        }
        writer.await.unwrap();
    }

    #[tokio::test]
    async fn transactions_are_claimed_once() {
        let store = Store::connect("sqlite::memory:", 1).await.unwrap();
        assert!(Store::claim_transaction(store.connection(), "t1")
            .await
            .unwrap());
        assert!(!Store::claim_transaction(store.connection(), "t1")
            .await
            .unwrap());
        assert!(Store::claim_transaction(store.connection(), "t2")
            .await
            .unwrap());
    }

    #[tokio::test]
    async fn opening_an_existing_store_creates_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("t.db");
        let url = format!("sqlite://{}", file.display());

        let err = Store::connect_with(&url, 1, OpenMode::Existing)
            .await
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "database.url: no database at {}: check the path; `casebridge run` creates it",
                file.display()
            )
        );
        assert!(!file.exists(), "no file is created");

        // A file that is no store (here: empty) gets no tables either.
        std::fs::write(&file, "").unwrap();
        let err = Store::connect_with(&url, 1, OpenMode::Existing)
            .await
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with(&format!(
                "database.url: {} holds no casebridge records store",
                file.display()
            )),
            "{err}"
        );
        std::fs::remove_file(&file).unwrap();

        drop(Store::connect(&url, 1).await.unwrap());
        let store = Store::connect_with(&url, 1, OpenMode::Existing)
            .await
            .unwrap();
        assert!(store.cases().await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn unsupported_url_is_named() {
        let err = Store::connect("mysql://x", 1)
            .await
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "database.url: unsupported scheme in \"mysql\": use sqlite://FILE or postgres://..."
        );
    }
}
