//! The durable queue: what is due, and what became of each item.

use chrono::{DateTime, Utc};
use sea_orm::{sea_query::Expr, ColumnTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect};

use super::{identity, message, queue_item, MessageState, Store, StoreError, Target};
use crate::texts::{Languages, Text};

impl Store {
    /// Queue items for `target`/`instance` that are due, oldest first.
    pub async fn due(
        &self,
        target: Target,
        instance: &str,
        limit: u64,
    ) -> Result<Vec<queue_item::Model>, StoreError> {
        Ok(queue_item::Entity::find()
            .filter(queue_item::Column::Target.eq(target))
            .filter(queue_item::Column::Instance.eq(instance))
            .filter(queue_item::Column::NextAttemptAt.lte(Utc::now()))
            .order_by_asc(queue_item::Column::Id)
            .limit(limit)
            .all(&self.db)
            .await?)
    }

    /// The oldest `limit` items for `target`/`instance`, due or not: a worker keeps each case's
    /// order by taking a case's items only while its first one is due.
    pub async fn head(
        &self,
        target: Target,
        instance: &str,
        limit: u64,
    ) -> Result<Vec<queue_item::Model>, StoreError> {
        Ok(queue_item::Entity::find()
            .filter(queue_item::Column::Target.eq(target))
            .filter(queue_item::Column::Instance.eq(instance))
            .order_by_asc(queue_item::Column::Id)
            .limit(limit)
            .all(&self.db)
            .await?)
    }

    /// When the next item for `target`/`instance` falls due, if any is queued.
    pub async fn next_due(
        &self,
        target: Target,
        instance: &str,
    ) -> Result<Option<DateTime<Utc>>, StoreError> {
        Ok(queue_item::Entity::find()
            .filter(queue_item::Column::Target.eq(target))
            .filter(queue_item::Column::Instance.eq(instance))
            .order_by_asc(queue_item::Column::NextAttemptAt)
            .one(&self.db)
            .await?
            .map(|q| q.next_attempt_at))
    }

    /// Items waiting in the queue for `target`.
    pub async fn queue_depth(&self, target: Target) -> Result<u64, StoreError> {
        use sea_orm::PaginatorTrait;
        Ok(queue_item::Entity::find()
            .filter(queue_item::Column::Target.eq(target))
            .count(&self.db)
            .await?)
    }

    /// Puts an item back with a later due time after a transient failure.
    pub async fn retry_later(
        &self,
        item: &queue_item::Model,
        error: &str,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        self.retry_later_telling(item, error, at, None).await
    }

    /// [`Store::retry_later`], and tells the case team `notice` in the same transaction.
    pub async fn retry_later_telling(
        &self,
        item: &queue_item::Model,
        error: &str,
        at: DateTime<Utc>,
        notice: Option<(&Text, &Languages)>,
    ) -> Result<(), StoreError> {
        let (txn, _turn) = self.begin_write().await?;
        queue_item::Entity::update_many()
            .col_expr(queue_item::Column::Attempts, Expr::value(item.attempts + 1))
            .col_expr(queue_item::Column::NextAttemptAt, Expr::value(at))
            .col_expr(queue_item::Column::LastError, Expr::value(error))
            .filter(queue_item::Column::Id.eq(item.id))
            .exec(&txn)
            .await?;
        if let Some((text, languages)) = notice {
            Self::record_text(&txn, item.case_id, text, languages).await?;
        }
        txn.commit().await?;
        Ok(())
    }

    /// Messages were relayed into their rooms: record their events and drop the queue items,
    /// in one transaction.
    pub async fn relayed(&self, done: &[&(queue_item::Model, String)]) -> Result<(), StoreError> {
        if done.is_empty() {
            return Ok(());
        }
        let (txn, _turn) = self.begin_write().await?;
        // One statement for the whole round: each message gets its own event id.
        let mut event_ids = sea_orm::sea_query::CaseStatement::new();
        for (item, event_id) in done {
            event_ids = event_ids.case(message::Column::Id.eq(item.message_id), event_id.as_str());
        }
        message::Entity::update_many()
            .col_expr(message::Column::EventId, event_ids.into())
            .col_expr(message::Column::RelayedAt, Expr::value(Utc::now()))
            .col_expr(message::Column::State, Expr::value(MessageState::Relayed))
            .filter(message::Column::Id.is_in(done.iter().map(|(item, _)| item.message_id)))
            .exec(&txn)
            .await?;
        queue_item::Entity::delete_many()
            .filter(queue_item::Column::Id.is_in(done.iter().map(|(item, _)| item.id)))
            .exec(&txn)
            .await?;
        txn.commit().await?;
        Ok(())
    }

    /// A bridge accepted a reply: record it and drop the queue item.
    pub async fn sent(
        &self,
        item: &queue_item::Model,
        remote_id: Option<&str>,
    ) -> Result<(), StoreError> {
        let (txn, _turn) = self.begin_write().await?;
        message::Entity::update_many()
            .col_expr(
                message::Column::UpstreamId,
                Expr::value(remote_id.map(str::to_owned)),
            )
            .col_expr(message::Column::RelayedAt, Expr::value(Utc::now()))
            .col_expr(message::Column::State, Expr::value(MessageState::Sent))
            .filter(message::Column::Id.eq(item.message_id))
            .exec(&txn)
            .await?;
        queue_item::Entity::delete_by_id(item.id).exec(&txn).await?;
        txn.commit().await?;
        Ok(())
    }

    /// A message cannot be delivered for good: record why, tell the team (unless `notice` is
    /// empty), drop the queue item.
    pub async fn failed(
        &self,
        item: &queue_item::Model,
        error: &str,
        notice: Option<(&Text, &Languages)>,
        unreachable: bool,
    ) -> Result<(), StoreError> {
        let (txn, _turn) = self.begin_write().await?;
        message::Entity::update_many()
            .col_expr(message::Column::Error, Expr::value(error))
            .col_expr(message::Column::State, Expr::value(MessageState::Failed))
            .filter(message::Column::Id.eq(item.message_id))
            .exec(&txn)
            .await?;
        if unreachable {
            // The case is flagged at the address until the client writes from it again.
            let reply = message::Entity::find_by_id(item.message_id)
                .one(&txn)
                .await?;
            if let Some(identity) = reply.and_then(|m| m.identity_id) {
                identity::Entity::update_many()
                    .col_expr(identity::Column::Unreachable, Expr::value(error))
                    .filter(identity::Column::Id.eq(identity))
                    .exec(&txn)
                    .await?;
            }
        }
        queue_item::Entity::delete_by_id(item.id).exec(&txn).await?;
        if let Some((text, languages)) = notice {
            Self::record_text(&txn, item.case_id, text, languages).await?;
        }
        txn.commit().await?;
        Ok(())
    }
}
