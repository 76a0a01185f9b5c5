//! Every file of a message, whole, and its `mxc://` copy once uploaded.

use sea_orm_migration::{prelude::*, schema::*};

use super::{Attachments, Messages};

pub(super) struct AddAttachments;

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
