//! The hash chain of each case's records, the mark of purged content, and what retention needs
//! of a case (when it closed, legal hold).

use sea_orm_migration::{prelude::*, schema::*};

use super::{Attachments, Cases, Messages};

pub(super) struct AddChain;

#[derive(DeriveIden)]
enum CaseRetention {
    ClosedAt,
    LegalHold,
    EventId,
}

#[derive(DeriveIden)]
enum ChainColumns {
    Seq,
    PrevHash,
    ContentHash,
    Hash,
    PurgedAt,
    Replaces,
}

impl MigrationName for AddChain {
    fn name(&self) -> &str {
        "m2026_11_23_000005_chain"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for AddChain {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        for column in [
            integer_null(ChainColumns::Seq),
            string_null(ChainColumns::PrevHash),
            string_null(ChainColumns::ContentHash),
            string_null(ChainColumns::Hash),
            timestamp_with_time_zone_null(ChainColumns::PurgedAt),
            string_null(ChainColumns::Replaces),
        ] {
            let mut column = column;
            m.alter_table(
                Table::alter()
                    .table(Messages::Table)
                    .add_column(&mut column)
                    .to_owned(),
            )
            .await?;
        }
        m.alter_table(
            Table::alter()
                .table(Attachments::Table)
                .add_column(string_null(CaseRetention::EventId))
                .to_owned(),
        )
        .await?;
        m.alter_table(
            Table::alter()
                .table(Cases::Table)
                .add_column(timestamp_with_time_zone_null(CaseRetention::ClosedAt))
                .to_owned(),
        )
        .await?;
        m.alter_table(
            Table::alter()
                .table(Cases::Table)
                .add_column(boolean(CaseRetention::LegalHold).default(false))
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("messages_case_seq")
                .table(Messages::Table)
                .col(Messages::CaseId)
                .col(ChainColumns::Seq)
                .unique()
                .to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_index(Index::drop().name("messages_case_seq").to_owned())
            .await
    }
}
