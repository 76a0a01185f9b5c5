//! Opening the records store: the URL, the pool, the migrations, and what goes wrong.

use std::{path::PathBuf, sync::Arc, time::Duration};

use sea_orm::{
    sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous},
    ConnectOptions, Database, DbErr, SqlxSqliteConnector,
};
use sea_orm_migration::{MigratorTrait, SchemaManager};

use super::{chain, migration, Store};

/// A store error, with what was being done.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database refused or failed.
    #[error("records store: {0}")]
    Db(#[from] DbErr),
    /// The database URL is not one the store supports.
    #[error("database.url: {0}")]
    Url(String),
    /// A row that must exist does not.
    #[error("records store: {0} not found")]
    Missing(String),
    /// There is no SQLite file to open, and the command may not create one.
    #[error(
        "database.url: no database at {}: check the path; `casebridge run` creates it",
        .0.display()
    )]
    NoDatabase(PathBuf),
    /// The database has none of casebridge's tables, and the command may not create them.
    #[error(
        "database.url: {0} holds no casebridge records store (no table `cases`): check the \
         URL; `casebridge run` creates it"
    )]
    NotAStore(String),
}

/// Whether [`Store::connect_with`] may create what is missing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OpenMode {
    /// Create a missing SQLite file and the tables (the gateway itself).
    Create,
    /// Open a records store that exists: a missing SQLite file or a database without the
    /// tables is an error. For the commands that read (and `records purge`): one pointed at the
    /// wrong place must say so, not report on a new empty store it created.
    Existing,
}

/// `url` for a message: an SQLite file's path, other URLs without their password.
fn describe(url: &str) -> String {
    if url.starts_with("sqlite:") {
        if let Ok(options) = url.parse::<SqliteConnectOptions>() {
            return options.get_filename().display().to_string();
        }
    }
    match url::Url::parse(url) {
        Ok(mut parsed) => {
            if parsed.password().is_some() {
                let _ = parsed.set_password(Some("***"));
            }
            parsed.to_string()
        }
        Err(_) => "the database".to_owned(),
    }
}

impl Store {
    /// Connects to `url` (`sqlite://FILE`, `sqlite::memory:`, `postgres://...`), creating an
    /// SQLite file when missing, and runs pending migrations.
    pub async fn connect(url: &str, max_connections: u32) -> Result<Self, StoreError> {
        Self::connect_with(url, max_connections, OpenMode::Create).await
    }

    /// Connects to `url` as [`Store::connect`] does, creating what is missing only in
    /// [`OpenMode::Create`]. A store that exists is brought up to date by pending migrations in
    /// either mode (the queries need the current schema).
    pub async fn connect_with(
        url: &str,
        max_connections: u32,
        mode: OpenMode,
    ) -> Result<Self, StoreError> {
        let create = mode == OpenMode::Create;
        let db = if url.starts_with("sqlite:") {
            let options: SqliteConnectOptions = url
                .parse()
                .map_err(|e| StoreError::Url(format!("cannot parse {url:?}: {e}")))?;
            let in_memory = url.contains(":memory:") || url.contains("mode=memory");
            // Checked here, not left to SQLite, whose "unable to open database file" names
            // no path.
            if !create && !in_memory && !options.get_filename().is_file() {
                return Err(StoreError::NoDatabase(options.get_filename().to_owned()));
            }
            // WAL with FULL sync: a committed record survives a crash of the process and of
            // the machine; busy_timeout lets the pool's writers wait for each other.
            let options = options
                .create_if_missing(create)
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Full)
                .foreign_keys(true)
                .busy_timeout(Duration::from_secs(30));
            let pool = SqlitePoolOptions::new()
                .max_connections(if in_memory { 1 } else { max_connections.max(1) })
                .connect_with(options)
                .await
                .map_err(|e| StoreError::Db(DbErr::Conn(sea_orm::RuntimeErr::SqlxError(e))))?;
            SqlxSqliteConnector::from_sqlx_sqlite_pool(pool)
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            let mut options = ConnectOptions::new(url.to_owned());
            options
                .max_connections(max_connections.max(1))
                .sqlx_logging(false);
            Database::connect(options).await?
        } else {
            return Err(StoreError::Url(format!(
                "unsupported scheme in {:?}: use sqlite://FILE or postgres://...",
                url.split(':').next().unwrap_or_default()
            )));
        };
        if !create && !SchemaManager::new(&db).has_table("cases").await? {
            return Err(StoreError::NotAStore(describe(url)));
        }
        migration::Migrator::up(&db, None).await?;
        let chained = chain::backfill(&db).await?;
        if chained > 0 {
            tracing::info!(
                records = chained,
                "records from before the hash chain are chained now"
            );
        }
        let writer = (sea_orm::ConnectionTrait::get_database_backend(&db)
            == sea_orm::DbBackend::Sqlite)
            .then(|| Arc::new(tokio::sync::Mutex::new(())));
        Ok(Self {
            db,
            contacts: Arc::new(crate::cache::Cache::new(crate::cache::ENTRIES)),
            writer,
        })
    }
}
