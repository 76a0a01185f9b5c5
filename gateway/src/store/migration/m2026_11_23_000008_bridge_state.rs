//! What bridges keep between runs (an IMAP mailbox's UIDVALIDITY and last UID).

use sea_orm_migration::{prelude::*, schema::*};

pub(super) struct AddBridgeState;

#[derive(DeriveIden)]
enum BridgeState {
    Table,
    Instance,
    Key,
    Value,
    UpdatedAt,
}

impl MigrationName for AddBridgeState {
    fn name(&self) -> &str {
        "m2026_11_23_000008_bridge_state"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for AddBridgeState {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table(BridgeState::Table)
                .col(string(BridgeState::Instance))
                .col(string(BridgeState::Key))
                .col(text(BridgeState::Value))
                .col(timestamp_with_time_zone(BridgeState::UpdatedAt))
                .primary_key(
                    Index::create()
                        .col(BridgeState::Instance)
                        .col(BridgeState::Key),
                )
                .to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_table(Table::drop().table(BridgeState::Table).to_owned())
            .await
    }
}
