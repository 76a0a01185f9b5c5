//! One client on several channels: invitations that join a new address to a case, cases merged
//! into another, and addresses the client can no longer be reached at.

use sea_orm_migration::{prelude::*, schema::*};

use super::{Cases, Identities};

pub(super) struct AddLinks;

#[derive(DeriveIden)]
enum Invitations {
    Table,
    TokenHash,
    CaseId,
    Instance,
    CreatedBy,
    CreatedAt,
    ExpiresAt,
    UsedAt,
}

#[derive(DeriveIden)]
enum LinkColumns {
    MergedInto,
    Unreachable,
}

impl MigrationName for AddLinks {
    fn name(&self) -> &str {
        "m2026_11_23_000006_links"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for AddLinks {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.alter_table(
            Table::alter()
                .table(Cases::Table)
                .add_column(string_null(LinkColumns::MergedInto))
                .to_owned(),
        )
        .await?;
        m.alter_table(
            Table::alter()
                .table(Identities::Table)
                .add_column(string_null(LinkColumns::Unreachable))
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table(Invitations::Table)
                .col(string(Invitations::TokenHash).primary_key())
                .col(big_integer(Invitations::CaseId))
                .col(string(Invitations::Instance))
                .col(string(Invitations::CreatedBy))
                .col(timestamp_with_time_zone(Invitations::CreatedAt))
                .col(timestamp_with_time_zone(Invitations::ExpiresAt))
                .col(timestamp_with_time_zone_null(Invitations::UsedAt))
                .foreign_key(
                    ForeignKey::create()
                        .from(Invitations::Table, Invitations::CaseId)
                        .to(Cases::Table, Cases::Id),
                )
                .to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_table(Table::drop().table(Invitations::Table).to_owned())
            .await
    }
}
