//! What the relay learns of the homeserver: a case's room, a ghost that joined, a file's copies.

use chrono::Utc;
use sea_orm::{sea_query::Expr, ColumnTrait, EntityTrait, QueryFilter};

use super::{attachment, case, identity, CaseId, IdentityId, Store, StoreError};

impl Store {
    /// Records the room of a case.
    pub async fn set_room(&self, case_id: CaseId, room_id: &str) -> Result<(), StoreError> {
        case::Entity::update_many()
            .col_expr(case::Column::RoomId, Expr::value(room_id))
            .filter(case::Column::Id.eq(case_id))
            .exec(&self.db)
            .await?;
        Ok(())
    }

    /// Records that an identity's ghost is in the case room.
    pub async fn set_joined(&self, identity_id: IdentityId) -> Result<(), StoreError> {
        identity::Entity::update_many()
            .col_expr(identity::Column::JoinedAt, Expr::value(Utc::now()))
            .filter(identity::Column::Id.eq(identity_id))
            .exec(&self.db)
            .await?;
        Ok(())
    }

    /// Records where the homeserver keeps its copy of a file.
    pub async fn set_attachment_uri(&self, id: i64, mxc: &str) -> Result<(), StoreError> {
        attachment::Entity::update_many()
            .col_expr(attachment::Column::MxcUri, Expr::value(mxc))
            .filter(attachment::Column::Id.eq(id))
            .exec(&self.db)
            .await?;
        Ok(())
    }

    /// Records the event that shows a file in its case room.
    pub async fn set_attachment_event(&self, id: i64, event_id: &str) -> Result<(), StoreError> {
        attachment::Entity::update_many()
            .col_expr(attachment::Column::EventId, Expr::value(event_id))
            .filter(attachment::Column::Id.eq(id))
            .exec(&self.db)
            .await?;
        Ok(())
    }
}
