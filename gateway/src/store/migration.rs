//! Schema migrations of the records store (SQLite and PostgreSQL alike).

use sea_orm_migration::{prelude::*, schema::*};

pub struct Migrator;

impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(Initial),
            Box::new(AddAttachments),
            Box::new(AddPolicies),
            Box::new(AddSubjects),
            Box::new(AddChain),
            Box::new(AddLinks),
            Box::new(AddPurgeFollowups),
            Box::new(AddBridgeState),
        ]
    }
}

#[derive(DeriveIden)]
enum Cases {
    Table,
    Id,
    Number,
    Year,
    Seq,
    Team,
    Status,
    RoomId,
    LastIdentityId,
    CreatedAt,
}

#[derive(DeriveIden)]
enum Identities {
    Table,
    Id,
    CaseId,
    Instance,
    Channel,
    Address,
    DisplayName,
    GhostLocalpart,
    JoinedAt,
    CreatedAt,
}

#[derive(DeriveIden)]
enum Messages {
    Table,
    Id,
    CaseId,
    IdentityId,
    Direction,
    Instance,
    Channel,
    UpstreamId,
    EventId,
    Sender,
    Body,
    Html,
    Attachments,
    State,
    Error,
    SentAt,
    ReceivedAt,
    RelayedAt,
    DeliveredAt,
}

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

struct Initial;

impl MigrationName for Initial {
    fn name(&self) -> &str {
        "m2026_11_23_000001_initial"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for Initial {
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

#[derive(DeriveIden)]
enum Attachments {
    Table,
    Id,
    MessageId,
    Position,
    Filename,
    Mime,
    Size,
    Data,
    MxcUri,
}

struct AddAttachments;

impl MigrationName for AddAttachments {
    fn name(&self) -> &str {
        "m2026_11_23_000002_attachments"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for AddAttachments {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table(Attachments::Table)
                .col(
                    ColumnDef::new(Attachments::Id)
                        .big_integer()
                        .not_null()
                        .auto_increment()
                        .primary_key(),
                )
                .col(big_integer(Attachments::MessageId))
                .col(integer(Attachments::Position))
                .col(string(Attachments::Filename))
                .col(string(Attachments::Mime))
                .col(big_integer(Attachments::Size))
                .col(blob(Attachments::Data))
                .col(string_null(Attachments::MxcUri))
                .foreign_key(
                    ForeignKey::create()
                        .from(Attachments::Table, Attachments::MessageId)
                        .to(Messages::Table, Messages::Id),
                )
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("attachments_message")
                .table(Attachments::Table)
                .col(Attachments::MessageId)
                .col(Attachments::Position)
                .unique()
                .to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_table(Table::drop().table(Attachments::Table).to_owned())
            .await
    }
}

/// Office policies: what kind of message a row is (auto-reply, note, alert), who a notice
/// mentions, discreet and blocked cases, their assignee, and the marks of "once per period"
/// replies.
struct AddPolicies;

#[derive(DeriveIden)]
enum Marks {
    Table,
    Key,
    CaseId,
    CreatedAt,
}

#[derive(DeriveIden)]
enum PolicyColumns {
    Kind,
    Mentions,
    Discreet,
    Blocked,
    Assignee,
}

impl MigrationName for AddPolicies {
    fn name(&self) -> &str {
        "m2026_11_23_000003_policies"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for AddPolicies {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        // One column per statement: SQLite alters one at a time.
        let add = |table: Messages, column: ColumnDef| {
            Table::alter().table(table).add_column(column).to_owned()
        };
        m.alter_table(add(Messages::Table, string_null(PolicyColumns::Kind)))
            .await?;
        m.alter_table(add(Messages::Table, json_null(PolicyColumns::Mentions)))
            .await?;
        let add = |column: ColumnDef| {
            Table::alter()
                .table(Cases::Table)
                .add_column(column)
                .to_owned()
        };
        m.alter_table(add(boolean(PolicyColumns::Discreet)
            .default(false)
            .to_owned()))
            .await?;
        m.alter_table(add(boolean(PolicyColumns::Blocked)
            .default(false)
            .to_owned()))
            .await?;
        m.alter_table(add(string_null(PolicyColumns::Assignee)))
            .await?;
        m.create_table(
            Table::create()
                .table(Marks::Table)
                .col(string(Marks::Key).primary_key())
                .col(big_integer(Marks::CaseId))
                .col(timestamp_with_time_zone(Marks::CreatedAt))
                .to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_table(Table::drop().table(Marks::Table).to_owned())
            .await
    }
}

/// Mail: subjects (for threading replies) and the originals of messages, kept whole.
struct AddSubjects;

#[derive(DeriveIden)]
enum SubjectColumn {
    Subject,
}

#[derive(DeriveIden)]
enum Originals {
    Table,
    MessageId,
    Data,
}

impl MigrationName for AddSubjects {
    fn name(&self) -> &str {
        "m2026_11_23_000004_mail"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for AddSubjects {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.alter_table(
            Table::alter()
                .table(Messages::Table)
                .add_column(string_null(SubjectColumn::Subject))
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table(Originals::Table)
                .col(big_integer(Originals::MessageId).primary_key())
                .col(blob(Originals::Data))
                .foreign_key(
                    ForeignKey::create()
                        .from(Originals::Table, Originals::MessageId)
                        .to(Messages::Table, Messages::Id),
                )
                .to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_table(Table::drop().table(Originals::Table).to_owned())
            .await?;
        m.alter_table(
            Table::alter()
                .table(Messages::Table)
                .drop_column(SubjectColumn::Subject)
                .to_owned(),
        )
        .await
    }
}

/// The hash chain of each case's records, the mark of purged content, and what retention needs
/// of a case (when it closed, legal hold).
struct AddChain;

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

/// One client on several channels: invitations that join a new address to a case, cases merged
/// into another, and addresses the client can no longer be reached at.
struct AddLinks;

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

/// What a purge still has to do outside the records store: redact events in the case rooms and
/// delete files from the homeserver's media repository. Written in the purge's transaction, so
/// a homeserver that is down during a purge only delays them.
struct AddPurgeFollowups;

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

/// What bridges keep between runs (an IMAP mailbox's UIDVALIDITY and last UID).
struct AddBridgeState;

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
