//! The records store: cases, identities, every message, the durable outbound queue and the
//! processed appservice transactions, on SQLite (default) or PostgreSQL through sea-orm.

pub mod anchor;
pub mod chain;
pub mod entities;
mod migration;
pub mod retention;
mod values;

use std::{
    collections::{BTreeSet, HashMap, HashSet},
    path::PathBuf,
    sync::{Arc, Mutex},
    time::Duration,
};

use casebridge_bridges::{Accepted, InboundMessage};
use casebridge_policies::inbound::Incoming;
use chrono::{DateTime, Datelike, Utc};
use sea_orm::{
    sea_query::{Expr, OnConflict},
    sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous},
    ActiveModelTrait, ColumnTrait, Condition, ConnectOptions, ConnectionTrait, Database,
    DatabaseConnection, DbBackend, DbErr, EntityTrait, QueryFilter, QueryOrder, QuerySelect, Set,
    SqlxSqliteConnector, TransactionTrait,
};
use sea_orm_migration::{MigratorTrait, SchemaManager};

use crate::policy::{self, Policies, TeamNotice};

pub use self::entities::{
    attachment, bridge_state, case, identity, invitation, mark, message, original, purge_followup,
    queue_item, transaction,
};
pub use self::values::{
    CaseId, CaseStatus, Direction, IdentityId, MessageId, MessageKind, MessageState, Target,
};

#[async_trait::async_trait]
impl casebridge_bridges::BridgeState for Store {
    async fn get(
        &self,
        instance: &str,
        key: &str,
    ) -> Result<Option<String>, casebridge_bridges::SubmitError> {
        bridge_state::Entity::find_by_id((instance.to_owned(), key.to_owned()))
            .one(self.connection())
            .await
            .map(|row| row.map(|r| r.value))
            .map_err(|e| casebridge_bridges::SubmitError(format!("records store: {e}")))
    }

    async fn set(
        &self,
        instance: &str,
        key: &str,
        value: &str,
    ) -> Result<(), casebridge_bridges::SubmitError> {
        bridge_state::Entity::insert(bridge_state::ActiveModel {
            instance: Set(instance.to_owned()),
            key: Set(key.to_owned()),
            value: Set(value.to_owned()),
            updated_at: Set(Utc::now()),
        })
        .on_conflict(
            OnConflict::columns([bridge_state::Column::Instance, bridge_state::Column::Key])
                .update_columns([bridge_state::Column::Value, bridge_state::Column::UpdatedAt])
                .to_owned(),
        )
        .exec_without_returning(self.connection())
        .await
        .map(|_| ())
        .map_err(|e| casebridge_bridges::SubmitError(format!("records store: {e}")))
    }
}

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

/// An inbound message with what the core knows of where it came from.
#[derive(Debug, Clone)]
pub struct NewInbound {
    /// Bridge instance key.
    pub instance: String,
    /// Channel name (`sms`, `email`).
    pub channel: String,
    /// Team that answers this instance.
    pub team: String,
    /// How the case team names the channel (`SMS`).
    pub label: String,
    /// Ghost localpart for the sender's address.
    pub ghost_localpart: String,
    /// The message itself.
    pub message: InboundMessage,
}

/// What [`Store::record_inbound`] did.
#[derive(Debug, Default)]
pub struct Recorded {
    /// One answer per message of the batch, in order.
    pub answers: Vec<Accepted>,
    /// Bridge instances that got automatic replies to deliver.
    pub wake: BTreeSet<String>,
}

/// A reply from the case team, ready to queue for a bridge.
#[derive(Debug, Clone)]
pub struct NewOutbound {
    /// The case.
    pub case_id: CaseId,
    /// The identity it goes to.
    pub identity: identity::Model,
    /// The worker's event.
    pub event_id: String,
    /// The worker's Matrix ID (kept internally).
    pub sender: String,
    /// Text after the outbound policies.
    pub body: String,
    /// HTML after the outbound policies.
    pub html: Option<String>,
    /// The messages the channel sends it as, when it is too long for one (each is recorded
    /// and queued on its own, the reply itself is kept whole).
    pub parts: Option<Vec<String>>,
    /// How the case team names the channel, for the notice about parts.
    pub label: String,
    /// Recorded but not queued: it waits for a worker's `!send`.
    pub held: bool,
    /// Files the worker sent.
    pub attachments: Vec<casebridge_bridges::Attachment>,
}

/// Where a known client address leads. An identity never moves to another case, so this is
/// safe to remember.
#[derive(Clone, Debug)]
struct Contact {
    identity_id: IdentityId,
    case_id: CaseId,
    case_number: String,
}

/// Handle to the records store; cheap to clone.
#[derive(Clone, Debug)]
pub struct Store {
    db: DatabaseConnection,
    contacts: Arc<Mutex<HashMap<(String, String), Contact>>>,
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
        Ok(Self {
            db,
            contacts: Arc::default(),
        })
    }

    /// The connection, for queries the store has no method for.
    pub fn connection(&self) -> &DatabaseConnection {
        &self.db
    }

    /// Records a batch of inbound messages in one transaction (group commit). Each answer says
    /// whether the message is new or a duplicate of one recorded before (same instance and
    /// upstream id). Nothing of the batch is recorded if the transaction fails.
    ///
    /// The statements are per batch, not per message: one duplicate check, one look-up of
    /// unknown contacts, one insert of the messages and one of their queue items (plus the
    /// rare new case).
    pub async fn record_inbound(
        &self,
        batch: &[NewInbound],
        policies: &Policies,
    ) -> Result<Recorded, StoreError> {
        if batch.is_empty() {
            return Ok(Recorded::default());
        }
        let txn = self.begin_write().await?;
        let now = Utc::now();

        let mut seen: HashSet<(String, String)> = message::Entity::find()
            .select_only()
            .column(message::Column::Instance)
            .column(message::Column::UpstreamId)
            .filter(message::Column::Direction.eq(Direction::Inbound))
            .filter(
                message::Column::UpstreamId
                    .is_in(batch.iter().map(|i| i.message.message_id.as_str())),
            )
            .into_tuple::<(String, Option<String>)>()
            .all(&txn)
            .await?
            .into_iter()
            .filter_map(|(instance, id)| Some((instance, id?)))
            .collect();

        let mut contacts = self.known_contacts(&txn, batch).await?;
        // Messages of blocked cases are recorded, not relayed.
        // The cases this batch touches, read once: blocked cases are recorded, not relayed,
        // and the policies read the rest. Cases opened by this batch join as they are made.
        let mut cases: HashMap<CaseId, case::Model> = case::Entity::find()
            .filter(case::Column::Id.is_in(contacts.values().map(|c| c.case_id)))
            .all(&txn)
            .await?
            .into_iter()
            .map(|c| (c.id, c))
            .collect();
        let mut fresh = Vec::new();
        let mut answers = Vec::with_capacity(batch.len());
        let mut recorded = Vec::with_capacity(batch.len());
        // Notices about how a message was routed, shown after the message itself.
        let mut notices: Vec<(CaseId, String)> = Vec::new();
        let mut rows = Vec::with_capacity(batch.len());
        let mut last_identity: HashMap<CaseId, IdentityId> = HashMap::new();
        for item in batch {
            let key = (
                item.instance.clone(),
                item.message.message_id.as_str().to_owned(),
            );
            if !seen.insert(key) {
                answers.push(Accepted::Duplicate);
                continue;
            }
            let address = (item.instance.clone(), item.message.from.as_str().to_owned());
            let contact = match contacts.get(&address) {
                Some(c) => c.clone(),
                None => {
                    // An unknown address that answers one of the office's own messages joins
                    // that message's case; anything else is a new client.
                    let invited = match &item.message.invitation {
                        Some(token) => {
                            Some(use_invitation(&txn, &item.instance, token, now).await?)
                        }
                        None => None,
                    };
                    let answered = match invited {
                        Some(Ok(_)) => None,
                        _ => answered_case(&txn, &item.instance, &item.message.references).await?,
                    };
                    let case = match (invited, answered) {
                        (Some(Ok(case)), _) => {
                            notices.push((
                                case.id,
                                format!(
                                    "{} opened the invitation made for this case, so the address joined this case. Replies now go to this address, where the client wrote last.",
                                    item.message.display_name
                                ),
                            ));
                            case
                        }
                        (Some(Err(why)), None) => {
                            let case = new_case(&txn, &item.team, now).await?;
                            notices.push((
                                case.id,
                                format!(
                                    "{} came with an invitation link that {why}, so this is a new case. If the client belongs to another case, !merge this case there, or !invite them again.",
                                    item.message.display_name
                                ),
                            ));
                            case
                        }
                        (_, Some(case)) => {
                            notices.push((
                                case.id,
                                format!(
                                    "{} wrote for the first time, answering the office's message in this case, so the address joined this case. Replies now go to this address, where the client wrote last.",
                                    item.message.display_name
                                ),
                            ));
                            case
                        }
                        (None, None) => {
                            let case = new_case(&txn, &item.team, now).await?;
                            if let Some(named) = &item.message.case_hint {
                                notices.push((
                                    case.id,
                                    format!(
                                        "This message names case {named}, but {} is not an address of that case, so it opened this new case. If it belongs to case {named}, handle it there.",
                                        item.message.display_name
                                    ),
                                ));
                            }
                            case
                        }
                    };
                    cases.insert(case.id, case.clone());
                    let identity = identity::ActiveModel {
                        case_id: Set(case.id),
                        instance: Set(item.instance.clone()),
                        channel: Set(item.channel.clone()),
                        address: Set(item.message.from.as_str().to_owned()),
                        display_name: Set(item.message.display_name.clone()),
                        ghost_localpart: Set(item.ghost_localpart.clone()),
                        joined_at: Set(None),
                        created_at: Set(now),
                        ..Default::default()
                    }
                    .insert(&txn)
                    .await?;
                    let contact = Contact {
                        identity_id: identity.id,
                        case_id: case.id,
                        case_number: case.number,
                    };
                    contacts.insert(address.clone(), contact.clone());
                    fresh.push((address, contact.clone()));
                    contact
                }
            };
            last_identity.insert(contact.case_id, contact.identity_id);
            rows.push(message::ActiveModel {
                identity_id: Set(Some(contact.identity_id)),
                instance: Set(item.instance.clone()),
                channel: Set(item.channel.clone()),
                upstream_id: Set(Some(item.message.message_id.as_str().to_owned())),
                html: Set(item.message.html.clone()),
                subject: Set(item.message.subject.clone()),
                replaces: Set(item
                    .message
                    .replaces
                    .as_ref()
                    .map(|r| r.as_str().to_owned())),
                kind: Set(item.message.replaces.is_some().then_some(MessageKind::Edit)),
                attachments: Set(attachment_summary(&item.message.attachments)),
                sent_at: Set(Some(item.message.sent_at)),
                ..message_row(
                    contact.case_id,
                    Direction::Inbound,
                    if cases.get(&contact.case_id).is_some_and(|c| c.blocked) {
                        MessageState::Blocked
                    } else {
                        MessageState::Received
                    },
                    &item.message.body,
                    now,
                )
            });
            for problem in &item.message.problems {
                notices.push((
                    contact.case_id,
                    format!(
                        "Part of {}'s message could not be read: {problem}. The record keeps the \
                         original whole (casebridge records export).",
                        item.message.display_name
                    ),
                ));
            }
            recorded.push((item, contact.clone()));
            answers.push(Accepted::Recorded {
                case_number: contact.case_number,
            });
        }

        // A client who writes can be reached again where they wrote.
        identity::Entity::update_many()
            .col_expr(
                identity::Column::Unreachable,
                Expr::value(Option::<String>::None),
            )
            .filter(identity::Column::Id.is_in(last_identity.values().copied()))
            .filter(identity::Column::Unreachable.is_not_null())
            .exec(&txn)
            .await?;
        // Replies go out where the client wrote last.
        for (case_id, identity_id) in last_identity {
            case::Entity::update_many()
                .col_expr(case::Column::LastIdentityId, Expr::value(identity_id))
                .filter(case::Column::Id.eq(case_id))
                .filter(
                    Condition::any()
                        .add(case::Column::LastIdentityId.is_null())
                        .add(case::Column::LastIdentityId.ne(identity_id)),
                )
                .exec(&txn)
                .await?;
        }
        if !rows.is_empty() {
            let contents = recorded.iter().map(|(item, _)| chain::Content {
                files: item
                    .message
                    .attachments
                    .iter()
                    .map(|a| (a.filename.as_str(), a.mime.as_str(), a.data.as_slice()))
                    .collect(),
                original: item.message.original.as_deref(),
            });
            let inserted = chain::append(&txn, rows.into_iter().zip(contents).collect()).await?;
            let ids: HashMap<(&str, &str), MessageId> = inserted
                .iter()
                .filter_map(|m| Some(((m.instance.as_str(), m.upstream_id.as_deref()?), m.id)))
                .collect();
            // Only the messages recorded now: a duplicate within the batch has the same id.
            let files: Vec<attachment::ActiveModel> = recorded
                .iter()
                .map(|(item, _)| *item)
                .filter_map(|item| {
                    let id =
                        ids.get(&(item.instance.as_str(), item.message.message_id.as_str()))?;
                    Some(
                        item.message
                            .attachments
                            .iter()
                            .enumerate()
                            .map(move |(i, a)| attachment::ActiveModel {
                                message_id: Set(*id),
                                position: Set(i as i32),
                                filename: Set(a.filename.clone()),
                                mime: Set(a.mime.clone()),
                                size: Set(a.data.len() as i64),
                                data: Set(a.data.clone()),
                                mxc_uri: Set(None),
                                ..Default::default()
                            }),
                    )
                })
                .flatten()
                .collect();
            if !files.is_empty() {
                attachment::Entity::insert_many(files)
                    .exec_without_returning(&txn)
                    .await?;
            }
            let originals: Vec<original::ActiveModel> = recorded
                .iter()
                .map(|(item, _)| *item)
                .filter_map(|item| {
                    let id =
                        ids.get(&(item.instance.as_str(), item.message.message_id.as_str()))?;
                    Some(original::ActiveModel {
                        message_id: Set(*id),
                        data: Set(item.message.original.clone()?),
                    })
                })
                .collect();
            if !originals.is_empty() {
                original::Entity::insert_many(originals)
                    .exec_without_returning(&txn)
                    .await?;
            }
            let relayed: Vec<_> = inserted
                .iter()
                .filter(|m| m.state != MessageState::Blocked)
                .map(|m| queue_item::ActiveModel {
                    target: Set(Target::Matrix),
                    instance: Set(String::new()),
                    message_id: Set(m.id),
                    case_id: Set(m.case_id),
                    attempts: Set(0),
                    next_attempt_at: Set(now),
                    last_error: Set(None),
                    created_at: Set(now),
                    ..Default::default()
                })
                .collect();
            if !relayed.is_empty() {
                queue_item::Entity::insert_many(relayed)
                    .exec_without_returning(&txn)
                    .await?;
            }
        }
        for (case_id, notice) in &notices {
            Self::record_notice(&txn, *case_id, notice).await?;
        }
        let wake = apply_policies(&txn, policies, &recorded, &cases, now).await?;
        txn.commit().await?;
        // Only committed contacts are remembered.
        self.contacts.lock().expect("not poisoned").extend(fresh);
        Ok(Recorded { answers, wake })
    }

    /// The case and identity of every address in `batch` that has one, from memory or the store.
    async fn known_contacts<C: ConnectionTrait>(
        &self,
        conn: &C,
        batch: &[NewInbound],
    ) -> Result<HashMap<(String, String), Contact>, StoreError> {
        let mut found = HashMap::new();
        let mut missing = Vec::new();
        {
            let cache = self.contacts.lock().expect("not poisoned");
            for item in batch {
                let key = (item.instance.clone(), item.message.from.as_str().to_owned());
                match cache.get(&key) {
                    Some(c) => {
                        found.insert(key, c.clone());
                    }
                    None => missing.push(key),
                }
            }
        }
        if missing.is_empty() {
            return Ok(found);
        }
        let identities = identity::Entity::find()
            .filter(identity::Column::Address.is_in(missing.iter().map(|(_, a)| a.as_str())))
            .all(conn)
            .await?;
        let cases: HashMap<CaseId, String> = case::Entity::find()
            .filter(case::Column::Id.is_in(identities.iter().map(|i| i.case_id)))
            .all(conn)
            .await?
            .into_iter()
            .map(|c| (c.id, c.number))
            .collect();
        let mut cache = self.contacts.lock().expect("not poisoned");
        for identity in identities {
            let Some(number) = cases.get(&identity.case_id) else {
                continue;
            };
            let contact = Contact {
                identity_id: identity.id,
                case_id: identity.case_id,
                case_number: number.clone(),
            };
            let key = (identity.instance, identity.address);
            cache.insert(key.clone(), contact.clone());
            found.insert(key, contact);
        }
        Ok(found)
    }

    /// Marks an appservice transaction as processed inside `txn`; false if it was before.
    pub async fn claim_transaction<C: ConnectionTrait>(
        conn: &C,
        txn_id: &str,
    ) -> Result<bool, StoreError> {
        let inserted = transaction::Entity::insert(transaction::ActiveModel {
            txn_id: Set(txn_id.to_owned()),
            received_at: Set(Utc::now()),
        })
        .on_conflict(
            OnConflict::column(transaction::Column::TxnId)
                .do_nothing()
                .to_owned(),
        )
        .exec_without_returning(conn)
        .await?;
        Ok(inserted == 1)
    }

    /// Starts a transaction that reads and then writes, and must commit as one.
    ///
    /// On SQLite it takes the write lock at once, as `BEGIN IMMEDIATE` would: a deferred
    /// transaction that reads first cannot upgrade to a writer once another connection has
    /// committed (SQLITE_BUSY_SNAPSHOT, which no busy timeout waits out).
    pub async fn begin_write(&self) -> Result<sea_orm::DatabaseTransaction, StoreError> {
        let txn = self.db.begin().await?;
        if self.db.get_database_backend() == DbBackend::Sqlite {
            txn.execute_unprepared("UPDATE transactions SET txn_id = txn_id WHERE 0")
                .await?;
        }
        Ok(txn)
    }

    /// The case whose room is `room_id`.
    pub async fn case_by_room<C: ConnectionTrait>(
        conn: &C,
        room_id: &str,
    ) -> Result<Option<case::Model>, StoreError> {
        Ok(case::Entity::find()
            .filter(case::Column::RoomId.eq(room_id))
            .one(conn)
            .await?)
    }

    /// Records a reply and queues it for its bridge, inside `txn`. False if the event was
    /// recorded before.
    pub async fn record_outbound<C: ConnectionTrait>(
        conn: &C,
        out: NewOutbound,
    ) -> Result<bool, StoreError> {
        let seen = message::Entity::find()
            .filter(message::Column::EventId.eq(&out.event_id))
            .one(conn)
            .await?;
        if seen.is_some() {
            return Ok(false);
        }
        let now = Utc::now();
        let row = |body: &str, state: MessageState| message::ActiveModel {
            identity_id: Set(Some(out.identity.id)),
            instance: Set(out.identity.instance.clone()),
            channel: Set(out.identity.channel.clone()),
            sender: Set(Some(out.sender.clone())),
            ..message_row(out.case_id, Direction::Outbound, state, body, now)
        };
        let state = match (&out.parts, out.held) {
            (_, true) => MessageState::Held,
            (Some(_), false) => MessageState::Split,
            (None, false) => MessageState::Queued,
        };
        let content = chain::Content {
            files: out
                .attachments
                .iter()
                .map(|a| (a.filename.as_str(), a.mime.as_str(), a.data.as_slice()))
                .collect(),
            original: None,
        };
        let whole = chain::append(
            conn,
            vec![(
                message::ActiveModel {
                    event_id: Set(Some(out.event_id.clone())),
                    html: Set(out.html.clone()),
                    attachments: Set(attachment_summary(&out.attachments)),
                    ..row(&out.body, state)
                },
                content,
            )],
        )
        .await?
        .remove(0);
        if !out.attachments.is_empty() {
            attachment::Entity::insert_many(out.attachments.iter().enumerate().map(|(i, a)| {
                attachment::ActiveModel {
                    message_id: Set(whole.id),
                    position: Set(i as i32),
                    filename: Set(a.filename.clone()),
                    mime: Set(a.mime.clone()),
                    size: Set(a.data.len() as i64),
                    data: Set(a.data.clone()),
                    mxc_uri: Set(None),
                    event_id: Set(Some(out.event_id.clone())),
                    ..Default::default()
                }
            }))
            .exec_without_returning(conn)
            .await?;
        }
        if out.held {
            return Ok(true);
        }
        let Some(parts) = &out.parts else {
            enqueue(
                conn,
                Target::Bridge,
                &out.identity.instance,
                whole.id,
                out.case_id,
                now,
            )
            .await?;
            return Ok(true);
        };
        for part in parts {
            let m = chain::append_one(
                conn,
                message::ActiveModel {
                    kind: Set(Some(MessageKind::Part)),
                    ..row(part, MessageState::Queued)
                },
            )
            .await?;
            enqueue(
                conn,
                Target::Bridge,
                &out.identity.instance,
                m.id,
                out.case_id,
                now,
            )
            .await?;
        }
        Self::record_notice(
            conn,
            out.case_id,
            &format!(
                "Sent as {} messages ({}): the reply is longer than one message may be here.",
                parts.len(),
                out.label
            ),
        )
        .await?;
        Ok(true)
    }

    /// Records a notice to the case team and queues it for the room, inside `conn`.
    pub async fn record_notice<C: ConnectionTrait>(
        conn: &C,
        case_id: CaseId,
        body: &str,
    ) -> Result<MessageId, StoreError> {
        let now = Utc::now();
        let m = chain::append_one(
            conn,
            message_row(
                case_id,
                Direction::Notice,
                MessageState::Received,
                body,
                now,
            ),
        )
        .await?;
        enqueue(conn, Target::Matrix, "", m.id, case_id, now).await?;
        Ok(m.id)
    }

    /// Records a notice with markup and mentions (or, as [`Direction::Alert`], an alert for the
    /// team's on-call room) and queues it, inside `conn`.
    pub async fn record_team_notice<C: ConnectionTrait>(
        conn: &C,
        case_id: CaseId,
        direction: Direction,
        kind: MessageKind,
        notice: &TeamNotice,
    ) -> Result<MessageId, StoreError> {
        let now = Utc::now();
        let m = chain::append_one(
            conn,
            message::ActiveModel {
                html: Set(notice.html.clone()),
                kind: Set(Some(kind)),
                mentions: Set(
                    (!notice.mentions.is_empty()).then(|| serde_json::json!(notice.mentions))
                ),
                ..message_row(
                    case_id,
                    direction,
                    MessageState::Received,
                    &notice.body,
                    now,
                )
            },
        )
        .await?;
        enqueue(conn, Target::Matrix, "", m.id, case_id, now).await?;
        Ok(m.id)
    }

    /// Releases the latest held reply of a case (a worker's `!send`), inside `conn`: it is
    /// queued for its bridge. Returns its instance and body, or `None` if nothing is held.
    pub async fn release_held<C: ConnectionTrait>(
        conn: &C,
        case_id: CaseId,
    ) -> Result<Option<(String, String)>, StoreError> {
        let Some(held) = message::Entity::find()
            .filter(message::Column::CaseId.eq(case_id))
            .filter(message::Column::Direction.eq(Direction::Outbound))
            .filter(message::Column::State.eq(MessageState::Held))
            .order_by_desc(message::Column::Id)
            .one(conn)
            .await?
        else {
            return Ok(None);
        };
        message::Entity::update_many()
            .col_expr(message::Column::State, Expr::value(MessageState::Queued))
            .filter(message::Column::Id.eq(held.id))
            .exec(conn)
            .await?;
        enqueue(
            conn,
            Target::Bridge,
            &held.instance,
            held.id,
            case_id,
            Utc::now(),
        )
        .await?;
        Ok(Some((held.instance, held.body)))
    }

    /// Records a worker's message that is for the record only (a note, a command), inside
    /// `conn`. False if the event was recorded before.
    pub async fn record_internal<C: ConnectionTrait>(
        conn: &C,
        case_id: CaseId,
        kind: MessageKind,
        event_id: &str,
        sender: &str,
        body: &str,
    ) -> Result<bool, StoreError> {
        let seen = message::Entity::find()
            .filter(message::Column::EventId.eq(event_id))
            .one(conn)
            .await?;
        if seen.is_some() {
            return Ok(false);
        }
        chain::append_one(
            conn,
            message::ActiveModel {
                event_id: Set(Some(event_id.to_owned())),
                sender: Set(Some(sender.to_owned())),
                kind: Set(Some(kind)),
                relayed_at: Set(Some(Utc::now())),
                ..message_row(
                    case_id,
                    Direction::Internal,
                    MessageState::Recorded,
                    body,
                    Utc::now(),
                )
            },
        )
        .await?;
        Ok(true)
    }

    /// Queue items for `target`/`instance` that are due, oldest first.
    pub async fn due(
        &self,
        target: Target,
        instance: &str,
        limit: u64,
    ) -> Result<Vec<queue_item::Model>, StoreError> {
        Ok(queue_item::Entity::find()
            .filter(queue_item::Column::Target.eq(target))
            .filter(queue_item::Column::Instance.eq(instance))
            .filter(queue_item::Column::NextAttemptAt.lte(Utc::now()))
            .order_by_asc(queue_item::Column::Id)
            .limit(limit)
            .all(&self.db)
            .await?)
    }

    /// The oldest `limit` items for `target`/`instance`, due or not: a worker keeps each case's
    /// order by taking a case's items only while its first one is due.
    pub async fn head(
        &self,
        target: Target,
        instance: &str,
        limit: u64,
    ) -> Result<Vec<queue_item::Model>, StoreError> {
        Ok(queue_item::Entity::find()
            .filter(queue_item::Column::Target.eq(target))
            .filter(queue_item::Column::Instance.eq(instance))
            .order_by_asc(queue_item::Column::Id)
            .limit(limit)
            .all(&self.db)
            .await?)
    }

    /// Messages by id.
    pub async fn messages_by_id(
        &self,
        ids: impl IntoIterator<Item = MessageId>,
    ) -> Result<std::collections::HashMap<MessageId, message::Model>, StoreError> {
        Ok(message::Entity::find()
            .filter(message::Column::Id.is_in(ids))
            .all(&self.db)
            .await?
            .into_iter()
            .map(|m| (m.id, m))
            .collect())
    }

    /// When the next item for `target`/`instance` falls due, if any is queued.
    pub async fn next_due(
        &self,
        target: Target,
        instance: &str,
    ) -> Result<Option<DateTime<Utc>>, StoreError> {
        Ok(queue_item::Entity::find()
            .filter(queue_item::Column::Target.eq(target))
            .filter(queue_item::Column::Instance.eq(instance))
            .order_by_asc(queue_item::Column::NextAttemptAt)
            .one(&self.db)
            .await?
            .map(|q| q.next_attempt_at))
    }

    /// Items waiting in the queue for `target`.
    pub async fn queue_depth(&self, target: Target) -> Result<u64, StoreError> {
        use sea_orm::PaginatorTrait;
        Ok(queue_item::Entity::find()
            .filter(queue_item::Column::Target.eq(target))
            .count(&self.db)
            .await?)
    }

    /// Puts an item back with a later due time after a transient failure.
    pub async fn retry_later(
        &self,
        item: &queue_item::Model,
        error: &str,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        self.retry_later_telling(item, error, at, None).await
    }

    /// [`Store::retry_later`], and tells the case team `notice` in the same transaction.
    pub async fn retry_later_telling(
        &self,
        item: &queue_item::Model,
        error: &str,
        at: DateTime<Utc>,
        notice: Option<&str>,
    ) -> Result<(), StoreError> {
        let txn = self.db.begin().await?;
        queue_item::Entity::update_many()
            .col_expr(queue_item::Column::Attempts, Expr::value(item.attempts + 1))
            .col_expr(queue_item::Column::NextAttemptAt, Expr::value(at))
            .col_expr(queue_item::Column::LastError, Expr::value(error))
            .filter(queue_item::Column::Id.eq(item.id))
            .exec(&txn)
            .await?;
        if let Some(notice) = notice {
            Self::record_notice(&txn, item.case_id, notice).await?;
        }
        txn.commit().await?;
        Ok(())
    }

    /// Messages were relayed into their rooms: record their events and drop the queue items,
    /// in one transaction.
    pub async fn relayed(&self, done: &[(queue_item::Model, String)]) -> Result<(), StoreError> {
        if done.is_empty() {
            return Ok(());
        }
        let txn = self.db.begin().await?;
        // One statement for the whole round: each message gets its own event id.
        let mut event_ids = sea_orm::sea_query::CaseStatement::new();
        for (item, event_id) in done {
            event_ids = event_ids.case(message::Column::Id.eq(item.message_id), event_id.as_str());
        }
        message::Entity::update_many()
            .col_expr(message::Column::EventId, event_ids.into())
            .col_expr(message::Column::RelayedAt, Expr::value(Utc::now()))
            .col_expr(message::Column::State, Expr::value(MessageState::Relayed))
            .filter(message::Column::Id.is_in(done.iter().map(|(item, _)| item.message_id)))
            .exec(&txn)
            .await?;
        queue_item::Entity::delete_many()
            .filter(queue_item::Column::Id.is_in(done.iter().map(|(item, _)| item.id)))
            .exec(&txn)
            .await?;
        txn.commit().await?;
        Ok(())
    }

    /// A bridge accepted a reply: record it and drop the queue item.
    pub async fn sent(
        &self,
        item: &queue_item::Model,
        remote_id: Option<&str>,
    ) -> Result<(), StoreError> {
        let txn = self.db.begin().await?;
        message::Entity::update_many()
            .col_expr(
                message::Column::UpstreamId,
                Expr::value(remote_id.map(str::to_owned)),
            )
            .col_expr(message::Column::RelayedAt, Expr::value(Utc::now()))
            .col_expr(message::Column::State, Expr::value(MessageState::Sent))
            .filter(message::Column::Id.eq(item.message_id))
            .exec(&txn)
            .await?;
        queue_item::Entity::delete_by_id(item.id).exec(&txn).await?;
        txn.commit().await?;
        Ok(())
    }

    /// A message cannot be delivered for good: record why, tell the team (unless `notice` is
    /// empty), drop the queue item.
    pub async fn failed(
        &self,
        item: &queue_item::Model,
        error: &str,
        notice: &str,
        unreachable: bool,
    ) -> Result<(), StoreError> {
        let txn = self.db.begin().await?;
        message::Entity::update_many()
            .col_expr(message::Column::Error, Expr::value(error))
            .col_expr(message::Column::State, Expr::value(MessageState::Failed))
            .filter(message::Column::Id.eq(item.message_id))
            .exec(&txn)
            .await?;
        if unreachable {
            // The case is flagged at the address until the client writes from it again.
            let reply = message::Entity::find_by_id(item.message_id)
                .one(&txn)
                .await?;
            if let Some(identity) = reply.and_then(|m| m.identity_id) {
                identity::Entity::update_many()
                    .col_expr(identity::Column::Unreachable, Expr::value(error))
                    .filter(identity::Column::Id.eq(identity))
                    .exec(&txn)
                    .await?;
            }
        }
        queue_item::Entity::delete_by_id(item.id).exec(&txn).await?;
        if !notice.is_empty() {
            Self::record_notice(&txn, item.case_id, notice).await?;
        }
        txn.commit().await?;
        Ok(())
    }

    /// Stores an invitation to `case_id` on `instance`, valid for `days`; returns the token to
    /// hand out (only its hash is kept).
    pub async fn create_invitation<C: ConnectionTrait>(
        conn: &C,
        case_id: CaseId,
        instance: &str,
        created_by: &str,
        days: i64,
    ) -> Result<(String, DateTime<Utc>), StoreError> {
        let token = invitation_token();
        let now = Utc::now();
        let expires_at = now + chrono::Duration::days(days);
        invitation::ActiveModel {
            token_hash: Set(chain::hex(&token)),
            case_id: Set(case_id),
            instance: Set(instance.to_owned()),
            created_by: Set(created_by.to_owned()),
            created_at: Set(now),
            expires_at: Set(expires_at),
            used_at: Set(None),
        }
        .insert(conn)
        .await?;
        Ok((token, expires_at))
    }

    /// Forgets which case each address belongs to (after `!merge` moved some): the next
    /// message of each reads it from the store.
    pub fn forget_contacts(&self) {
        self.contacts.lock().expect("not poisoned").clear();
    }

    /// Records a channel's delivery report for the reply it accepted as `remote_id`, with a
    /// notice for the team when the state changes. False if no reply matches.
    pub async fn record_delivery(
        &self,
        instance: &str,
        remote_id: &str,
        state: MessageState,
        error: Option<&str>,
        at: DateTime<Utc>,
        notice: Option<&str>,
    ) -> Result<bool, StoreError> {
        let txn = self.begin_write().await?;
        let Some(reply) = message::Entity::find()
            .filter(message::Column::Direction.eq(Direction::Outbound))
            .filter(message::Column::Instance.eq(instance))
            .filter(message::Column::UpstreamId.eq(remote_id))
            .one(&txn)
            .await?
        else {
            return Ok(false);
        };
        // A report the channel repeats, or one older than what is known, changes nothing.
        let rank = |s: MessageState| match s {
            MessageState::Sent => 1,
            MessageState::Delivered | MessageState::Failed => 2,
            _ => 0,
        };
        if rank(state) > rank(reply.state) {
            message::Entity::update_many()
                .col_expr(message::Column::State, Expr::value(state))
                .col_expr(
                    message::Column::Error,
                    Expr::value(error.map(str::to_owned)),
                )
                .col_expr(
                    message::Column::DeliveredAt,
                    Expr::value((state == MessageState::Delivered).then_some(at)),
                )
                .filter(message::Column::Id.eq(reply.id))
                .exec(&txn)
                .await?;
            if let Some(notice) = notice {
                Self::record_notice(&txn, reply.case_id, notice).await?;
            }
        }
        txn.commit().await?;
        Ok(true)
    }

    /// Records the room of a case.
    pub async fn set_room(&self, case_id: CaseId, room_id: &str) -> Result<(), StoreError> {
        case::Entity::update_many()
            .col_expr(case::Column::RoomId, Expr::value(room_id))
            .filter(case::Column::Id.eq(case_id))
            .exec(&self.db)
            .await?;
        Ok(())
    }

    /// Records that an identity's ghost is in the case room.
    pub async fn set_joined(&self, identity_id: IdentityId) -> Result<(), StoreError> {
        identity::Entity::update_many()
            .col_expr(identity::Column::JoinedAt, Expr::value(Utc::now()))
            .filter(identity::Column::Id.eq(identity_id))
            .exec(&self.db)
            .await?;
        Ok(())
    }

    /// One message by id.
    pub async fn message(&self, id: MessageId) -> Result<message::Model, StoreError> {
        message::Entity::find_by_id(id)
            .one(&self.db)
            .await?
            .ok_or_else(|| StoreError::Missing(format!("message {id}")))
    }

    /// The files of a message, in order, with their content.
    pub async fn attachments(
        &self,
        message_id: MessageId,
    ) -> Result<Vec<attachment::Model>, StoreError> {
        Ok(attachment::Entity::find()
            .filter(attachment::Column::MessageId.eq(message_id))
            .order_by_asc(attachment::Column::Position)
            .all(&self.db)
            .await?)
    }

    /// Records where the homeserver keeps its copy of a file.
    pub async fn set_attachment_uri(&self, id: i64, mxc: &str) -> Result<(), StoreError> {
        attachment::Entity::update_many()
            .col_expr(attachment::Column::MxcUri, Expr::value(mxc))
            .filter(attachment::Column::Id.eq(id))
            .exec(&self.db)
            .await?;
        Ok(())
    }

    /// Records the event that shows a file in its case room.
    pub async fn set_attachment_event(&self, id: i64, event_id: &str) -> Result<(), StoreError> {
        attachment::Entity::update_many()
            .col_expr(attachment::Column::EventId, Expr::value(event_id))
            .filter(attachment::Column::Id.eq(id))
            .exec(&self.db)
            .await?;
        Ok(())
    }

    /// One case by id.
    pub async fn case(&self, id: CaseId) -> Result<case::Model, StoreError> {
        case::Entity::find_by_id(id)
            .one(&self.db)
            .await?
            .ok_or_else(|| StoreError::Missing(format!("case {id}")))
    }

    /// One case by its number (`2026-000123`).
    pub async fn case_by_number(&self, number: &str) -> Result<Option<case::Model>, StoreError> {
        Ok(case::Entity::find()
            .filter(case::Column::Number.eq(number))
            .one(&self.db)
            .await?)
    }

    /// One identity by id.
    pub async fn identity<C: ConnectionTrait>(
        conn: &C,
        id: IdentityId,
    ) -> Result<identity::Model, StoreError> {
        identity::Entity::find_by_id(id)
            .one(conn)
            .await?
            .ok_or_else(|| StoreError::Missing(format!("identity {id}")))
    }

    /// All cases, newest first.
    pub async fn cases(&self) -> Result<Vec<case::Model>, StoreError> {
        Ok(case::Entity::find()
            .order_by_desc(case::Column::Id)
            .all(&self.db)
            .await?)
    }

    /// The identities of a case: its addresses, and those its records name that `!merge` moved
    /// to another case since.
    pub async fn identities(&self, case_id: CaseId) -> Result<Vec<identity::Model>, StoreError> {
        let named = sea_orm::sea_query::Query::select()
            .column(message::Column::IdentityId)
            .from(message::Entity)
            .and_where(message::Column::CaseId.eq(case_id))
            .and_where(message::Column::IdentityId.is_not_null())
            .to_owned();
        Ok(identity::Entity::find()
            .filter(
                Condition::any()
                    .add(identity::Column::CaseId.eq(case_id))
                    .add(identity::Column::Id.in_subquery(named)),
            )
            .order_by_asc(identity::Column::Id)
            .all(&self.db)
            .await?)
    }

    /// The conversation with one identity so far: the latest subject and upstream id of the
    /// client's messages, and every upstream id (theirs and ours), oldest first.
    pub async fn conversation(
        &self,
        identity_id: IdentityId,
    ) -> Result<casebridge_bridges::Conversation, StoreError> {
        let rows: Vec<(Direction, Option<String>, Option<String>)> = message::Entity::find()
            .select_only()
            .column(message::Column::Direction)
            .column(message::Column::UpstreamId)
            .column(message::Column::Subject)
            .filter(message::Column::IdentityId.eq(identity_id))
            .filter(message::Column::UpstreamId.is_not_null())
            .order_by_asc(message::Column::Id)
            .into_tuple()
            .all(&self.db)
            .await?;
        let mut conversation = casebridge_bridges::Conversation::default();
        for (direction, upstream, subject) in rows {
            if direction == Direction::Inbound {
                conversation.in_reply_to.clone_from(&upstream);
                if subject.is_some() {
                    conversation.subject = subject;
                }
            }
            conversation.references.extend(upstream);
        }
        // Mail clients cut long reference lists too; the first and the latest matter most.
        let n = conversation.references.len();
        if n > 20 {
            conversation.references.drain(1..n - 19);
        }
        Ok(conversation)
    }

    /// A message as its channel delivered it, if the channel gave the original.
    pub async fn original(&self, message_id: MessageId) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(original::Entity::find_by_id(message_id)
            .one(&self.db)
            .await?
            .map(|o| o.data))
    }

    /// The room event of a client's message on `instance` with channel id `upstream_id`.
    pub async fn inbound_event(
        &self,
        instance: &str,
        upstream_id: &str,
    ) -> Result<Option<String>, StoreError> {
        Ok(message::Entity::find()
            .filter(message::Column::Direction.eq(Direction::Inbound))
            .filter(message::Column::Instance.eq(instance))
            .filter(message::Column::UpstreamId.eq(upstream_id))
            .one(&self.db)
            .await?
            .and_then(|m| m.event_id))
    }

    /// The messages of a case in the order they were recorded.
    pub async fn messages(&self, case_id: CaseId) -> Result<Vec<message::Model>, StoreError> {
        Ok(message::Entity::find()
            .filter(message::Column::CaseId.eq(case_id))
            .order_by_asc(message::Column::Id)
            .all(&self.db)
            .await?)
    }
}

/// A message row: its case, direction, state and body, received now, and nothing else known yet.
fn message_row(
    case_id: CaseId,
    direction: Direction,
    state: MessageState,
    body: &str,
    now: DateTime<Utc>,
) -> message::ActiveModel {
    message::ActiveModel {
        case_id: Set(case_id),
        identity_id: Set(None),
        direction: Set(direction),
        instance: Set(String::new()),
        channel: Set(String::new()),
        upstream_id: Set(None),
        event_id: Set(None),
        sender: Set(None),
        body: Set(body.to_owned()),
        html: Set(None),
        attachments: Set(None),
        state: Set(state),
        error: Set(None),
        sent_at: Set(None),
        received_at: Set(now),
        relayed_at: Set(None),
        delivered_at: Set(None),
        ..Default::default()
    }
}

/// What the export and the room need to know of a message's files, without their content.
fn attachment_summary(files: &[casebridge_bridges::Attachment]) -> Option<serde_json::Value> {
    (!files.is_empty()).then(|| {
        serde_json::Value::Array(
            files
                .iter()
                .map(|a| serde_json::json!({"filename": a.filename, "mime": a.mime, "size": a.data.len()}))
                .collect(),
        )
    })
}

/// A new invitation token: 24 lowercase letters (about 113 bits), which no phone-number or
/// address check mistakes for a private number in the worker's reply that carries it.
pub fn invitation_token() -> String {
    use rand::Rng;
    let mut rng = rand::thread_rng();
    (0..24)
        .map(|_| char::from(rng.gen_range(b'a'..=b'z')))
        .collect()
}

/// The case a token invites to on `instance`, marking the invitation used; or why not.
async fn use_invitation<C: ConnectionTrait>(
    conn: &C,
    instance: &str,
    token: &str,
    now: DateTime<Utc>,
) -> Result<Result<case::Model, &'static str>, StoreError> {
    let Some(found) = invitation::Entity::find_by_id(chain::hex(token))
        .one(conn)
        .await?
    else {
        return Ok(Err("the office does not know"));
    };
    if found.instance != instance {
        return Ok(Err("was made for another channel"));
    }
    if found.used_at.is_some() {
        return Ok(Err("was used already"));
    }
    if found.expires_at < now {
        return Ok(Err("has expired"));
    }
    let Some(case) = case::Entity::find_by_id(found.case_id).one(conn).await? else {
        return Ok(Err("belongs to a case that is gone"));
    };
    invitation::Entity::update_many()
        .col_expr(invitation::Column::UsedAt, Expr::value(now))
        .filter(invitation::Column::TokenHash.eq(found.token_hash))
        .exec(conn)
        .await?;
    Ok(Ok(case))
}

/// The case of the office's own message among `references` on `instance`, if any.
async fn answered_case<C: ConnectionTrait>(
    conn: &C,
    instance: &str,
    references: &[String],
) -> Result<Option<case::Model>, StoreError> {
    if references.is_empty() {
        return Ok(None);
    }
    let ours = message::Entity::find()
        .filter(message::Column::Direction.eq(Direction::Outbound))
        .filter(message::Column::Instance.eq(instance))
        .filter(message::Column::UpstreamId.is_in(references.iter().map(String::as_str)))
        .order_by_desc(message::Column::Id)
        .one(conn)
        .await?;
    match ours {
        Some(m) => Ok(case::Entity::find_by_id(m.case_id).one(conn).await?),
        None => Ok(None),
    }
}

/// Runs the team policies over newly recorded client messages, inside the transaction that
/// records them: an emergency notice and alert, an automatic reply (once per period: the mark
/// and the reply commit together). Returns the bridge instances with replies to deliver.
async fn apply_policies<C: ConnectionTrait>(
    conn: &C,
    policies: &Policies,
    recorded: &[(&NewInbound, Contact)],
    cases: &HashMap<CaseId, case::Model>,
    now: DateTime<Utc>,
) -> Result<BTreeSet<String>, StoreError> {
    let mut wake = BTreeSet::new();
    for (item, contact) in recorded {
        let (Some(policy), Some(case)) = (policies.team(&item.team), cases.get(&contact.case_id))
        else {
            continue;
        };
        let decision = policy.decide(&Incoming {
            at: now,
            text: &item.message.body,
            channel: &item.channel,
            automated: item.message.automated,
            discreet: case.discreet,
            blocked: case.blocked,
            case_number: &case.number,
            contact: &contact.identity_id.to_string(),
        });
        let mut replied = false;
        if let Some(reply) = &decision.reply {
            let fresh = match &reply.once_key {
                Some(key) => {
                    mark::Entity::insert(mark::ActiveModel {
                        key: Set(key.clone()),
                        case_id: Set(case.id),
                        created_at: Set(now),
                    })
                    .on_conflict(
                        OnConflict::column(mark::Column::Key)
                            .do_nothing()
                            .to_owned(),
                    )
                    .exec_without_returning(conn)
                    .await?
                        == 1
                }
                None => true,
            };
            if fresh {
                let m = chain::append_one(
                    conn,
                    message::ActiveModel {
                        identity_id: Set(Some(contact.identity_id)),
                        instance: Set(item.instance.clone()),
                        channel: Set(item.channel.clone()),
                        kind: Set(Some(reply.kind.into())),
                        ..message_row(
                            case.id,
                            Direction::Outbound,
                            MessageState::Queued,
                            &reply.text,
                            now,
                        )
                    },
                )
                .await?;
                enqueue(conn, Target::Bridge, &item.instance, m.id, case.id, now).await?;
                wake.insert(item.instance.clone());
                replied = true;
            }
        }
        if let Some(keyword) = &decision.emergency {
            let notice = policy::emergency_notice(policy, keyword, replied);
            Store::record_team_notice(
                conn,
                case.id,
                Direction::Notice,
                MessageKind::Emergency,
                &notice,
            )
            .await?;
            if policy.alert_room.is_some() {
                let alert =
                    policy::emergency_alert(policies, policy, &case.number, &item.label, keyword);
                Store::record_team_notice(
                    conn,
                    case.id,
                    Direction::Alert,
                    MessageKind::Emergency,
                    &alert,
                )
                .await?;
            }
        }
        // Every automatic reply is shown, so the team knows what the client was told; a
        // blocked client's (at most once a day) without their message, which stays unshown.
        if let (true, Some(reply)) = (replied, &decision.reply) {
            Store::record_notice(
                conn,
                case.id,
                &policy::auto_reply_notice(reply, &item.label),
            )
            .await?;
        }
    }
    Ok(wake)
}

async fn new_case<C: ConnectionTrait>(
    conn: &C,
    team: &str,
    now: DateTime<Utc>,
) -> Result<case::Model, StoreError> {
    let year = now.year();
    let last: Option<i32> = case::Entity::find()
        .select_only()
        .column_as(case::Column::Seq.max(), "max_seq")
        .filter(case::Column::Year.eq(year))
        .into_tuple::<Option<i32>>()
        .one(conn)
        .await?
        .flatten();
    let seq = last.unwrap_or(0) + 1;
    Ok(case::ActiveModel {
        number: Set(format!("{year}-{seq:06}")),
        year: Set(year),
        seq: Set(seq),
        team: Set(team.to_owned()),
        status: Set(CaseStatus::Open),
        room_id: Set(None),
        last_identity_id: Set(None),
        created_at: Set(now),
        ..Default::default()
    }
    .insert(conn)
    .await?)
}

async fn enqueue<C: ConnectionTrait>(
    conn: &C,
    target: Target,
    instance: &str,
    message_id: MessageId,
    case_id: CaseId,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    queue_item::ActiveModel {
        target: Set(target),
        instance: Set(instance.to_owned()),
        message_id: Set(message_id),
        case_id: Set(case_id),
        attempts: Set(0),
        next_attempt_at: Set(now),
        last_error: Set(None),
        created_at: Set(now),
        ..Default::default()
    }
    .insert(conn)
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use casebridge_bridges::{RemoteAddress, RemoteMessageId};

    use super::*;

    fn inbound(id: &str, from: &str) -> NewInbound {
        NewInbound {
            instance: "sms".into(),
            channel: "sms".into(),
            team: "social".into(),
            label: "SMS".into(),
            ghost_localpart: format!("_cb_sms_{from}"),
            message: InboundMessage {
                message_id: RemoteMessageId::new(id),
                from: RemoteAddress::new(from),
                display_name: from.into(),
                body: format!("text of {id}"),
                sent_at: Utc::now(),
                ..Default::default()
            },
        }
    }

    #[tokio::test]
    async fn inbound_creates_cases_and_deduplicates() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("t.db").display());
        let store = Store::connect(&url, 2).await.unwrap();
        let answers = store
            .record_inbound(
                &[
                    inbound("m1", "a"),
                    inbound("m2", "a"),
                    inbound("m1", "a"),
                    inbound("m3", "b"),
                ],
                &Policies::default(),
            )
            .await
            .unwrap()
            .answers;
        let year = Utc::now().year();
        assert_eq!(
            answers,
            vec![
                Accepted::Recorded {
                    case_number: format!("{year}-000001")
                },
                Accepted::Recorded {
                    case_number: format!("{year}-000001")
                },
                Accepted::Duplicate,
                Accepted::Recorded {
                    case_number: format!("{year}-000002")
                },
            ]
        );
        // A retry after a restart is still a duplicate.
        drop(store);
        let store = Store::connect(&url, 2).await.unwrap();
        assert_eq!(
            store
                .record_inbound(&[inbound("m2", "a")], &Policies::default())
                .await
                .unwrap()
                .answers,
            vec![Accepted::Duplicate]
        );
        let cases = store.cases().await.unwrap();
        assert_eq!(cases.len(), 2);
        assert_eq!(store.messages(cases[1].id).await.unwrap().len(), 2);
        assert_eq!(store.due(Target::Matrix, "", 10).await.unwrap().len(), 3);
    }

    #[tokio::test]
    async fn a_duplicate_in_the_same_batch_keeps_one_copy_of_files_and_original() {
        let store = Store::connect("sqlite::memory:", 1).await.unwrap();
        let mut m = inbound("mail-1", "a@client.test");
        m.message.attachments.push(casebridge_bridges::Attachment {
            filename: "a.txt".into(),
            mime: "text/plain".into(),
            data: b"hej".to_vec(),
        });
        m.message.original = Some(b"From: a@client.test\r\n\r\nhej".to_vec());
        let answers = store
            .record_inbound(&[m.clone(), m], &Policies::default())
            .await
            .unwrap()
            .answers;
        assert!(matches!(answers[0], Accepted::Recorded { .. }));
        assert_eq!(answers[1], Accepted::Duplicate);
        let case = store.cases().await.unwrap().remove(0);
        let message = store.messages(case.id).await.unwrap().remove(0);
        assert_eq!(store.attachments(message.id).await.unwrap().len(), 1);
        assert_eq!(
            store.original(message.id).await.unwrap().unwrap(),
            b"From: a@client.test\r\n\r\nhej"
        );
    }

    #[tokio::test]
    async fn records_from_before_the_chain_are_chained_on_start() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("t.db").display());
        let store = Store::connect(&url, 1).await.unwrap();
        store
            .record_inbound(
                &[inbound("o1", "a"), inbound("o2", "a"), inbound("o3", "b")],
                &Policies::default(),
            )
            .await
            .unwrap();
        // As a store written by a version without the chain.
        store
            .connection()
            .execute_unprepared(
                "UPDATE messages SET seq = NULL, prev_hash = NULL, content_hash = NULL, hash = NULL",
            )
            .await
            .unwrap();
        drop(store);
        let store = Store::connect(&url, 1).await.unwrap();
        for case in store.cases().await.unwrap() {
            assert_eq!(
                chain::verify(store.connection(), &case).await.unwrap(),
                vec![]
            );
            let seqs: Vec<_> = store
                .messages(case.id)
                .await
                .unwrap()
                .iter()
                .map(|m| m.seq)
                .collect();
            assert!(
                seqs.iter()
                    .enumerate()
                    .all(|(i, s)| *s == Some(i as i32 + 1)),
                "{seqs:?}"
            );
        }
        // New records continue the chain.
        store
            .record_inbound(&[inbound("o4", "a")], &Policies::default())
            .await
            .unwrap();
        let case = store.cases().await.unwrap().pop().unwrap();
        assert_eq!(
            chain::verify(store.connection(), &case).await.unwrap(),
            vec![]
        );
    }

    #[tokio::test]
    async fn concurrent_writers_do_not_fail_on_sqlite() {
        // A reader-then-writer batch racing single-statement writers on other connections:
        // without taking the write lock first this fails with SQLITE_BUSY_SNAPSHOT.
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("t.db").display());
        let store = Store::connect(&url, 4).await.unwrap();
        let writer = {
            let store = store.clone();
            tokio::spawn(async move {
                for i in 0..300 {
                    Store::claim_transaction(store.connection(), &format!("w{i}"))
                        .await
                        .unwrap();
                }
            })
        };
        for i in 0..150 {
            let batch = [
                inbound(&format!("a{i}"), "a"),
                inbound(&format!("b{i}"), "b"),
            ];
            store
                .record_inbound(&batch, &Policies::default())
                .await
                .unwrap();
        }
        writer.await.unwrap();
    }

    #[tokio::test]
    async fn transactions_are_claimed_once() {
        let store = Store::connect("sqlite::memory:", 1).await.unwrap();
        assert!(Store::claim_transaction(store.connection(), "t1")
            .await
            .unwrap());
        assert!(!Store::claim_transaction(store.connection(), "t1")
            .await
            .unwrap());
        assert!(Store::claim_transaction(store.connection(), "t2")
            .await
            .unwrap());
    }

    #[tokio::test]
    async fn opening_an_existing_store_creates_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("t.db");
        let url = format!("sqlite://{}", file.display());

        let err = Store::connect_with(&url, 1, OpenMode::Existing)
            .await
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "database.url: no database at {}: check the path; `casebridge run` creates it",
                file.display()
            )
        );
        assert!(!file.exists(), "no file is created");

        // A file that is no store (here: empty) gets no tables either.
        std::fs::write(&file, "").unwrap();
        let err = Store::connect_with(&url, 1, OpenMode::Existing)
            .await
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with(&format!(
                "database.url: {} holds no casebridge records store",
                file.display()
            )),
            "{err}"
        );
        std::fs::remove_file(&file).unwrap();

        drop(Store::connect(&url, 1).await.unwrap());
        let store = Store::connect_with(&url, 1, OpenMode::Existing)
            .await
            .unwrap();
        assert!(store.cases().await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn unsupported_url_is_named() {
        let err = Store::connect("mysql://x", 1)
            .await
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "database.url: unsupported scheme in \"mysql\": use sqlite://FILE or postgres://..."
        );
    }
}
