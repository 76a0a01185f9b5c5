//! The first schema: cases, identities, messages, the queue and appservice transactions.

use sea_orm_migration::{prelude::*, schema::*};

use super::{Cases, Identities, Messages};

#[derive(DeriveIden)]
enum Queue {
    Table,
    Id,
    Target,
    Instance,
    MessageId,
    CaseId,
    Attempts,
    NextAttemptAt,
    LastError,
    CreatedAt,
}

#[derive(DeriveIden)]
enum Transactions {
    Table,
    TxnId,
    ReceivedAt,
}

pub(super) struct Initial;

impl MigrationName for Initial {
    fn name(&self) -> &str {
        "m2026_11_23_000001_initial"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for Initial {
    // The first schema, every table in one function as it was released: a migration is never
    // edited, so it is not split either.
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table(Cases::Table)
                .col(
                    ColumnDef::new(Cases::Id)
                        .big_integer()
                        .not_null()
                        .auto_increment()
                        .primary_key(),
                )
                .col(string_uniq(Cases::Number))
                .col(integer(Cases::Year))
                .col(integer(Cases::Seq))
                .col(string(Cases::Team))
                .col(string(Cases::Status))
                .col(string_null(Cases::RoomId))
                .col(big_integer_null(Cases::LastIdentityId))
                .col(timestamp_with_time_zone(Cases::CreatedAt))
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("cases_year_seq")
                .table(Cases::Table)
                .col(Cases::Year)
                .col(Cases::Seq)
                .unique()
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("cases_room")
                .table(Cases::Table)
                .col(Cases::RoomId)
                .to_owned(),
        )
        .await?;

        m.create_table(
            Table::create()
                .table(Identities::Table)
                .col(
                    ColumnDef::new(Identities::Id)
                        .big_integer()
                        .not_null()
                        .auto_increment()
                        .primary_key(),
                )
                .col(big_integer(Identities::CaseId))
                .col(string(Identities::Instance))
                .col(string(Identities::Channel))
                .col(string(Identities::Address))
                .col(string(Identities::DisplayName))
                .col(string(Identities::GhostLocalpart))
                .col(timestamp_with_time_zone_null(Identities::JoinedAt))
                .col(timestamp_with_time_zone(Identities::CreatedAt))
                .foreign_key(
                    ForeignKey::create()
                        .from(Identities::Table, Identities::CaseId)
                        .to(Cases::Table, Cases::Id),
                )
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("identities_address")
                .table(Identities::Table)
                .col(Identities::Instance)
                .col(Identities::Address)
                .unique()
                .to_owned(),
        )
        .await?;

        m.create_table(
            Table::create()
                .table(Messages::Table)
                .col(
                    ColumnDef::new(Messages::Id)
                        .big_integer()
                        .not_null()
                        .auto_increment()
                        .primary_key(),
                )
                .col(big_integer(Messages::CaseId))
                .col(big_integer_null(Messages::IdentityId))
                .col(string(Messages::Direction))
                .col(string(Messages::Instance))
                .col(string(Messages::Channel))
                .col(string_null(Messages::UpstreamId))
                .col(string_null(Messages::EventId))
                .col(string_null(Messages::Sender))
                .col(text(Messages::Body))
                .col(text_null(Messages::Html))
                .col(json_null(Messages::Attachments))
                .col(string(Messages::State))
                .col(text_null(Messages::Error))
                .col(timestamp_with_time_zone_null(Messages::SentAt))
                .col(timestamp_with_time_zone(Messages::ReceivedAt))
                .col(timestamp_with_time_zone_null(Messages::RelayedAt))
                .col(timestamp_with_time_zone_null(Messages::DeliveredAt))
                .foreign_key(
                    ForeignKey::create()
                        .from(Messages::Table, Messages::CaseId)
                        .to(Cases::Table, Cases::Id),
                )
                .to_owned(),
        )
        .await?;
        // The upstream's id deduplicates retries of the same message.
        m.create_index(
            Index::create()
                .name("messages_upstream")
                .table(Messages::Table)
                .col(Messages::Direction)
                .col(Messages::Instance)
                .col(Messages::UpstreamId)
                .unique()
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("messages_event")
                .table(Messages::Table)
                .col(Messages::EventId)
                .unique()
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("messages_case")
                .table(Messages::Table)
                .col(Messages::CaseId)
                .col(Messages::Id)
                .to_owned(),
        )
        .await?;

        m.create_table(
            Table::create()
                .table(Queue::Table)
                .col(
                    ColumnDef::new(Queue::Id)
                        .big_integer()
                        .not_null()
                        .auto_increment()
                        .primary_key(),
                )
                .col(string(Queue::Target))
                .col(string(Queue::Instance))
                .col(big_integer(Queue::MessageId))
                .col(big_integer(Queue::CaseId))
                .col(integer(Queue::Attempts))
                .col(timestamp_with_time_zone(Queue::NextAttemptAt))
                .col(text_null(Queue::LastError))
                .col(timestamp_with_time_zone(Queue::CreatedAt))
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("queue_due")
                .table(Queue::Table)
                .col(Queue::Target)
                .col(Queue::Instance)
                .col(Queue::NextAttemptAt)
                .to_owned(),
        )
        .await?;

        m.create_table(
            Table::create()
                .table(Transactions::Table)
                .col(string(Transactions::TxnId).primary_key())
                .col(timestamp_with_time_zone(Transactions::ReceivedAt))
                .to_owned(),
        )
        .await?;
        Ok(())
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            Transactions::Table.into_iden(),
            Queue::Table.into_iden(),
            Messages::Table.into_iden(),
            Identities::Table.into_iden(),
            Cases::Table.into_iden(),
        ] {
            m.drop_table(Table::drop().table(table).to_owned()).await?;
        }
        Ok(())
    }
}
