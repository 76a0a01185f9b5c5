//! Schema migrations of the records store (SQLite and PostgreSQL alike), one file each, in the
//! order they run.
//!
//! A migration's name is the key every store has recorded in `seaql_migrations`, so it never
//! changes: each file writes its name out (`MigrationName`) rather than deriving it from the
//! module path, and is named after it. A new migration is a new file, listed last below.

use sea_orm_migration::prelude::*;

mod m2026_11_23_000001_initial;
mod m2026_11_23_000002_attachments;
mod m2026_11_23_000003_policies;
mod m2026_11_23_000004_mail;
mod m2026_11_23_000005_chain;
mod m2026_11_23_000006_links;
mod m2026_11_23_000007_purge_followups;
mod m2026_11_23_000008_bridge_state;

pub struct Migrator;

impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m2026_11_23_000001_initial::Initial),
            Box::new(m2026_11_23_000002_attachments::AddAttachments),
            Box::new(m2026_11_23_000003_policies::AddPolicies),
            Box::new(m2026_11_23_000004_mail::AddSubjects),
            Box::new(m2026_11_23_000005_chain::AddChain),
            Box::new(m2026_11_23_000006_links::AddLinks),
            Box::new(m2026_11_23_000007_purge_followups::AddPurgeFollowups),
            Box::new(m2026_11_23_000008_bridge_state::AddBridgeState),
        ]
    }
}

// The tables later migrations alter or refer to.

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

#[cfg(test)]
mod tests {
    use sea_orm::{ConnectionTrait, DatabaseConnection, Statement};

    use super::*;
    use crate::store::{OpenMode, Store};

    /// A store as offices have it: made by the gateway before the migrations were files of
    /// their own, with the names it recorded then.
    const OLD_STORE: &str = include_str!("testdata/store_e85777e.sql");

    /// The names stores have recorded, in order. Never edit one: a store that recorded the old
    /// name would refuse to start, or run the migration again.
    const RECORDED: [&str; 8] = [
        "m2026_11_23_000001_initial",
        "m2026_11_23_000002_attachments",
        "m2026_11_23_000003_policies",
        "m2026_11_23_000004_mail",
        "m2026_11_23_000005_chain",
        "m2026_11_23_000006_links",
        "m2026_11_23_000007_purge_followups",
        "m2026_11_23_000008_bridge_state",
    ];

    #[test]
    fn names_are_the_recorded_ones() {
        let names: Vec<String> = Migrator::migrations()
            .iter()
            .map(|m| m.name().to_owned())
            .collect();
        assert_eq!(names[..RECORDED.len()], RECORDED);
    }

    async fn strings(db: &DatabaseConnection, sql: &str) -> Vec<String> {
        db.query_all(Statement::from_string(db.get_database_backend(), sql))
            .await
            .unwrap()
            .iter()
            .map(|row| row.try_get_by_index::<String>(0).unwrap())
            .collect()
    }

    async fn recorded(db: &DatabaseConnection) -> Vec<String> {
        strings(
            db,
            "SELECT version || ' ' || applied_at FROM seaql_migrations ORDER BY version",
        )
        .await
    }

    async fn schema(db: &DatabaseConnection) -> Vec<String> {
        strings(
            db,
            "SELECT type || ' ' || name || ': ' || COALESCE(sql, '') FROM sqlite_master \
             WHERE name NOT LIKE 'sqlite_%' ORDER BY type, name",
        )
        .await
    }

    #[tokio::test]
    async fn a_store_made_before_opens_without_running_a_migration_again() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("old.db").display());
        let old = sea_orm::Database::connect(format!("{url}?mode=rwc"))
            .await
            .unwrap();
        old.execute_unprepared(OLD_STORE).await.unwrap();
        let before = recorded(&old).await;
        assert_eq!(before.len(), RECORDED.len(), "the fixture loaded");
        old.close().await.unwrap();

        let store = Store::connect_with(&url, 1, OpenMode::Existing)
            .await
            .expect("a store made before opens");
        let db = store.connection();
        let after = recorded(db).await;
        assert_eq!(
            after[..before.len()],
            before,
            "the migrations it had run are recorded as they were, none again"
        );
        assert_eq!(after.len(), Migrator::migrations().len());
        assert_eq!(
            strings(db, "SELECT txn_id FROM transactions").await,
            ["before-the-split"]
        );
        let fresh = Store::connect("sqlite::memory:", 1).await.unwrap();
        assert_eq!(
            schema(db).await,
            schema(fresh.connection()).await,
            "the old store has the schema a new one gets"
        );
    }
}
