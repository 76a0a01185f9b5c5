//! Delivery reports from the channels.

use chrono::{DateTime, Utc};
use sea_orm::{sea_query::Expr, ColumnTrait, EntityTrait, QueryFilter};

use super::{message, Direction, MessageState, Store, StoreError};
use crate::texts::{Languages, Text};

impl Store {
    /// Records a channel's delivery report for the reply it accepted as `remote_id`, with a
    /// notice for the team when the state changes. False if no reply matches.
    pub async fn record_delivery(
        &self,
        instance: &str,
        remote_id: &str,
        state: MessageState,
        error: Option<&str>,
        at: DateTime<Utc>,
        notice: Option<(&Text, &Languages)>,
    ) -> Result<bool, StoreError> {
        let (txn, _turn) = self.begin_write().await?;
        let Some(reply) = message::Entity::find()
            .filter(message::Column::Direction.eq(Direction::Outbound))
            .filter(message::Column::Instance.eq(instance))
            .filter(message::Column::UpstreamId.eq(remote_id))
            .one(&txn)
            .await?
        else {
            return Ok(false);
        };
        // A report the channel repeats, or one older than what is known, changes nothing.
        let rank = |s: MessageState| match s {
            MessageState::Sent => 1,
            MessageState::Delivered | MessageState::Failed => 2,
            _ => 0,
        };
        if rank(state) > rank(reply.state) {
            message::Entity::update_many()
                .col_expr(message::Column::State, Expr::value(state))
                .col_expr(
                    message::Column::Error,
                    Expr::value(error.map(str::to_owned)),
                )
                .col_expr(
                    message::Column::DeliveredAt,
                    Expr::value((state == MessageState::Delivered).then_some(at)),
                )
                .filter(message::Column::Id.eq(reply.id))
                .exec(&txn)
                .await?;
            if let Some((text, languages)) = notice {
                Self::record_text(&txn, reply.case_id, text, languages).await?;
            }
        }
        txn.commit().await?;
        Ok(true)
    }
}
