//! Looking up cases, identities, messages and files.

use sea_orm::{
    ColumnTrait, Condition, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect,
};

use super::{
    attachment, case, identity, message, original, CaseId, Direction, IdentityId, MessageId, Store,
    StoreError,
};

impl Store {
    /// The case whose room is `room_id`.
    pub async fn case_by_room<C: ConnectionTrait>(
        conn: &C,
        room_id: &str,
    ) -> Result<Option<case::Model>, StoreError> {
        Ok(case::Entity::find()
            .filter(case::Column::RoomId.eq(room_id))
            .one(conn)
            .await?)
    }

    /// When the client last wrote from `identity` (when it was recorded): a channel's reply
    /// window counts from there.
    pub async fn last_heard_from<C: ConnectionTrait>(
        conn: &C,
        identity: IdentityId,
    ) -> Result<Option<chrono::DateTime<chrono::Utc>>, StoreError> {
        Ok(message::Entity::find()
            .filter(message::Column::IdentityId.eq(identity))
            .filter(message::Column::Direction.eq(Direction::Inbound))
            .order_by_desc(message::Column::ReceivedAt)
            .one(conn)
            .await?
            .map(|m| m.received_at))
    }

    /// One message by id.
    pub async fn message(&self, id: MessageId) -> Result<message::Model, StoreError> {
        message::Entity::find_by_id(id)
            .one(&self.db)
            .await?
            .ok_or_else(|| StoreError::Missing(format!("message {id}")))
    }

    /// Messages by id.
    pub async fn messages_by_id(
        &self,
        ids: impl IntoIterator<Item = MessageId>,
    ) -> Result<std::collections::HashMap<MessageId, message::Model>, StoreError> {
        Ok(message::Entity::find()
            .filter(message::Column::Id.is_in(ids))
            .all(&self.db)
            .await?
            .into_iter()
            .map(|m| (m.id, m))
            .collect())
    }

    /// The files of a message, in order, with their content.
    pub async fn attachments(
        &self,
        message_id: MessageId,
    ) -> Result<Vec<attachment::Model>, StoreError> {
        Ok(attachment::Entity::find()
            .filter(attachment::Column::MessageId.eq(message_id))
            .order_by_asc(attachment::Column::Position)
            .all(&self.db)
            .await?)
    }

    /// One case by id.
    pub async fn case(&self, id: CaseId) -> Result<case::Model, StoreError> {
        case::Entity::find_by_id(id)
            .one(&self.db)
            .await?
            .ok_or_else(|| StoreError::Missing(format!("case {id}")))
    }

    /// One case by its number (`2026-000123`).
    pub async fn case_by_number(&self, number: &str) -> Result<Option<case::Model>, StoreError> {
        Ok(case::Entity::find()
            .filter(case::Column::Number.eq(number))
            .one(&self.db)
            .await?)
    }

    /// One identity by id.
    pub async fn identity<C: ConnectionTrait>(
        conn: &C,
        id: IdentityId,
    ) -> Result<identity::Model, StoreError> {
        identity::Entity::find_by_id(id)
            .one(conn)
            .await?
            .ok_or_else(|| StoreError::Missing(format!("identity {id}")))
    }

    /// All cases, newest first.
    pub async fn cases(&self) -> Result<Vec<case::Model>, StoreError> {
        Ok(case::Entity::find()
            .order_by_desc(case::Column::Id)
            .all(&self.db)
            .await?)
    }

    /// The identities of a case: its addresses, and those its records name that `!merge` moved
    /// to another case since.
    pub async fn identities(&self, case_id: CaseId) -> Result<Vec<identity::Model>, StoreError> {
        let named = sea_orm::sea_query::Query::select()
            .column(message::Column::IdentityId)
            .from(message::Entity)
            .and_where(message::Column::CaseId.eq(case_id))
            .and_where(message::Column::IdentityId.is_not_null())
            .to_owned();
        Ok(identity::Entity::find()
            .filter(
                Condition::any()
                    .add(identity::Column::CaseId.eq(case_id))
                    .add(identity::Column::Id.in_subquery(named)),
            )
            .order_by_asc(identity::Column::Id)
            .all(&self.db)
            .await?)
    }

    /// The conversation with one identity so far: the latest subject and upstream id of the
    /// client's messages, and every upstream id (theirs and ours), oldest first.
    pub async fn conversation(
        &self,
        identity_id: IdentityId,
    ) -> Result<casebridge_bridges::Conversation, StoreError> {
        let rows: Vec<(Direction, Option<String>, Option<String>)> = message::Entity::find()
            .select_only()
            .column(message::Column::Direction)
            .column(message::Column::UpstreamId)
            .column(message::Column::Subject)
            .filter(message::Column::IdentityId.eq(identity_id))
            .filter(message::Column::UpstreamId.is_not_null())
            .order_by_asc(message::Column::Id)
            .into_tuple()
            .all(&self.db)
            .await?;
        let mut conversation = casebridge_bridges::Conversation::default();
        for (direction, upstream, subject) in rows {
            if direction == Direction::Inbound {
                conversation.in_reply_to.clone_from(&upstream);
                if subject.is_some() {
                    conversation.subject = subject;
                }
            }
            conversation.references.extend(upstream);
        }
        // Mail clients cut long reference lists too; the first and the latest matter most.
        let n = conversation.references.len();
        if n > 20 {
            conversation.references.drain(1..n - 19);
        }
        Ok(conversation)
    }

    /// A message as its channel delivered it, if the channel gave the original.
    pub async fn original(&self, message_id: MessageId) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(original::Entity::find_by_id(message_id)
            .one(&self.db)
            .await?
            .map(|o| o.data))
    }

    /// The room event of a client's message on `instance` with channel id `upstream_id`.
    pub async fn inbound_event(
        &self,
        instance: &str,
        upstream_id: &str,
    ) -> Result<Option<String>, StoreError> {
        Ok(message::Entity::find()
            .filter(message::Column::Direction.eq(Direction::Inbound))
            .filter(message::Column::Instance.eq(instance))
            .filter(message::Column::UpstreamId.eq(upstream_id))
            .one(&self.db)
            .await?
            .and_then(|m| m.event_id))
    }

    /// The messages of a case in the order they were recorded.
    pub async fn messages(&self, case_id: CaseId) -> Result<Vec<message::Model>, StoreError> {
        Ok(message::Entity::find()
            .filter(message::Column::CaseId.eq(case_id))
            .order_by_asc(message::Column::Id)
            .all(&self.db)
            .await?)
    }
}
