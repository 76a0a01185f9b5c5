//! What a purge still has to do outside the records store: redact events in the case rooms and
//! delete files from the homeserver's media repository. Written in the purge's transaction, so
//! a homeserver that is down during a purge only delays them.

use sea_orm_migration::{prelude::*, schema::*};

use super::Cases;

pub(super) struct AddPurgeFollowups;

#[derive(DeriveIden)]
enum PurgeFollowups {
    Table,
    Id,
    CaseId,
    RoomId,
    EventId,
    MxcUri,
    Attempts,
    LastError,
    CreatedAt,
    DoneAt,
}

impl MigrationName for AddPurgeFollowups {
    fn name(&self) -> &str {
        "m2026_11_23_000007_purge_followups"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for AddPurgeFollowups {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table(PurgeFollowups::Table)
                .col(
                    ColumnDef::new(PurgeFollowups::Id)
                        .big_integer()
                        .not_null()
                        .auto_increment()
                        .primary_key(),
                )
                .col(big_integer(PurgeFollowups::CaseId))
                .col(string_null(PurgeFollowups::RoomId))
                .col(string_null(PurgeFollowups::EventId))
                .col(string_null(PurgeFollowups::MxcUri))
                .col(integer(PurgeFollowups::Attempts).default(0))
                .col(string_null(PurgeFollowups::LastError))
                .col(timestamp_with_time_zone(PurgeFollowups::CreatedAt))
                .col(timestamp_with_time_zone_null(PurgeFollowups::DoneAt))
                .foreign_key(
                    ForeignKey::create()
                        .from(PurgeFollowups::Table, PurgeFollowups::CaseId)
                        .to(Cases::Table, Cases::Id),
                )
                .to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_table(Table::drop().table(PurgeFollowups::Table).to_owned())
            .await
    }
}
