//! Mail: subjects (for threading replies) and the originals of messages, kept whole.

use sea_orm_migration::{prelude::*, schema::*};

use super::Messages;

pub(super) struct AddSubjects;

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
