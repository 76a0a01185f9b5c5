//! Office policies: what kind of message a row is (auto-reply, note, alert), who a notice
//! mentions, discreet and blocked cases, their assignee, and the marks of "once per period"
//! replies.

use sea_orm_migration::{prelude::*, schema::*};

use super::{Cases, Messages};

pub(super) struct AddPolicies;

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
