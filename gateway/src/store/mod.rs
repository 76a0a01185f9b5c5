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

use std::sync::Arc;

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
pub use self::plan::InvitationProblem;
pub use self::values::{
    CaseId, CaseStatus, Direction, IdentityId, MessageId, MessageKind, MessageState, Target,
};
use crate::cache::Cache;

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
    /// Who a sender is, by (instance, address), for senders recently seen.
    contacts: Arc<Cache<(String, String), Contact>>,
    /// On SQLite, the turn to write: writers wait for it here, first come first served,
    /// instead of in SQLite's busy handler, which sleeps up to 100 ms between tries and lets
    /// a busy writer starve the others for seconds. None on PostgreSQL (row locks).
    writer: Option<Arc<tokio::sync::Mutex<()>>>,
}

/// A writer's turn on SQLite ([`Store::begin_write`]): keep it until the transaction is
/// committed or dropped.
#[must_use = "the turn must be held until the transaction ends"]
pub struct WriteTurn(#[allow(dead_code)] Option<tokio::sync::OwnedMutexGuard<()>>);

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

    /// Starts a transaction that writes, and must commit as one, with the writer's turn to
    /// hold until it ends: `let (txn, _turn) = store.begin_write().await?;`.
    ///
    /// On SQLite it waits for the store's turn to write (in order, see [`Store::writer`]),
    /// then takes SQLite's write lock at once, as `BEGIN IMMEDIATE` would: a deferred
    /// transaction that reads first cannot upgrade to a writer once another connection has
    /// committed (SQLITE_BUSY_SNAPSHOT, which no busy timeout waits out).
    pub async fn begin_write(
        &self,
    ) -> Result<(sea_orm::DatabaseTransaction, WriteTurn), StoreError> {
        let turn = match &self.writer {
            Some(writer) => Some(writer.clone().lock_owned().await),
            None => None,
        };
        let txn = self.db.begin().await?;
        if self.db.get_database_backend() == DbBackend::Sqlite {
            txn.execute_unprepared("UPDATE transactions SET txn_id = txn_id WHERE 0")
                .await?;
        }
        Ok((txn, WriteTurn(turn)))
    }

    /// Forgets which case each address belongs to (after `!merge` moved some): the next
    /// message of each reads it from the store.
    pub fn forget_contacts(&self) {
        self.contacts.clear();
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
mod tests;
