//! Typed configuration for casebridge: one TOML file, then `CASEBRIDGE__SECTION__KEY`
//! environment overrides, then a [`Config::check`] pass that validates what types cannot.
//!
//! Each bridge instance owns its own schema: this crate only knows a bridge's `kind` and `team`
//! and hands the rest of its table to the bridge through [`BridgeInstance::options`].
//!
//! Relative paths are read from the folder of the configuration file, never from the working
//! directory (an admin runs `casebridge --config /etc/casebridge/casebridge.toml ...` from
//! anywhere). [`Config::load`] rewrites them once, before anything is parsed, by a rule on key
//! names that holds in every section, bridges' own included: the value of every key ending in
//! `_file` is a path, and so is every entry of `holiday_calendars`. Environment overrides are
//! merged first, so a relative path given there is read from the same folder. A relative SQLite
//! file in `database.url` (or in the file `database.url_file` names) is resolved the same way
//! by [`Config::secrets`], where the URL is known whichever way it was given.

use std::{
    collections::BTreeMap,
    fmt,
    net::SocketAddr,
    path::{Path, PathBuf},
};

use figment::{
    providers::{Env, Format, Serialized, Toml},
    value::{Dict, Map, Value},
    Figment, Metadata, Profile, Provider,
};
use ruma::{OwnedServerName, UserId};
use serde::{de::DeserializeOwned, Deserialize, Serialize};
use url::Url;

pub mod problems;
pub mod team;

pub use problems::Problem;
pub use team::{Language, TeamConfig};

/// The prefix of environment overrides: `CASEBRIDGE__APPSERVICE__HS_TOKEN` sets
/// `appservice.hs_token`.
pub const ENV_PREFIX: &str = "CASEBRIDGE__";

/// The whole configuration of one gateway.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The homeserver the gateway is an application service of.
    pub homeserver: HomeserverConfig,
    /// How the gateway registers with the homeserver and where it listens.
    pub appservice: AppserviceConfig,
    /// Where the records live.
    #[serde(default)]
    pub database: DatabaseConfig,
    /// Case teams by their key; a bridge instance names the team that answers it.
    #[serde(default)]
    pub teams: BTreeMap<String, TeamConfig>,
    /// Bridge instances by their key (`[bridges.office-mail]`).
    #[serde(default)]
    pub bridges: BTreeMap<String, BridgeInstance>,
    /// Retry behaviour of the durable queues.
    #[serde(default)]
    pub queue: QueueConfig,
    /// Limits of the HTTP server that `appservice.listen` binds.
    #[serde(default)]
    pub http: HttpConfig,
    /// How long records are kept.
    #[serde(default)]
    pub retention: RetentionConfig,
    /// The folder (absolute) of the file the configuration came from: relative paths in it are
    /// read from there. `None` for a configuration not read from a file.
    #[serde(skip)]
    pub base_dir: Option<PathBuf>,
    /// The file (absolute) the configuration came from, if any.
    #[serde(skip)]
    pub source: Option<PathBuf>,
}

/// `[homeserver]`
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct HomeserverConfig {
    /// The client-server API base URL the gateway talks to, e.g. `http://127.0.0.1:8008`.
    pub url: Url,
    /// The homeserver's server name, the part after the colon in `@user:example.org`.
    pub server_name: OwnedServerName,
    /// Optional: an access token of a Synapse server admin. With it, a retention purge deletes
    /// the purged files from the media repository (Synapse's admin API), not only redacts their
    /// events.
    #[serde(default)]
    pub admin_token: Option<Secret>,
    /// File holding `admin_token`.
    #[serde(default)]
    pub admin_token_file: Option<PathBuf>,
}

/// `[appservice]`
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AppserviceConfig {
    /// The registration id, unique on the homeserver.
    #[serde(default = "default_appservice_id")]
    pub id: String,
    /// The address the gateway's HTTP server binds (appservice API, webhooks, health, metrics).
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// The URL the homeserver uses to reach the gateway; written into the registration.
    pub url: Url,
    /// Token the gateway presents to the homeserver.
    pub as_token: Option<Secret>,
    /// File holding `as_token` (instead of the value).
    pub as_token_file: Option<PathBuf>,
    /// Token the homeserver presents to the gateway.
    pub hs_token: Option<Secret>,
    /// File holding `hs_token` (instead of the value).
    pub hs_token_file: Option<PathBuf>,
    /// Localpart of the bot user that owns the case rooms.
    #[serde(default = "default_bot_localpart")]
    pub bot_localpart: String,
    /// Display name of the bot user.
    #[serde(default = "default_bot_displayname")]
    pub bot_displayname: String,
    /// Prefix of every ghost localpart and room alias in the appservice namespace.
    #[serde(default = "default_ghost_prefix")]
    pub ghost_prefix: String,
}

fn default_appservice_id() -> String {
    "casebridge".to_owned()
}
fn default_listen() -> SocketAddr {
    ([127, 0, 0, 1], 29330).into()
}
fn default_bot_localpart() -> String {
    "casebridge".to_owned()
}
fn default_bot_displayname() -> String {
    "Case desk".to_owned()
}
fn default_ghost_prefix() -> String {
    "_cb_".to_owned()
}

/// `[database]`
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseConfig {
    /// `sqlite://casebridge.db` (the default; a relative file is in the configuration file's
    /// folder, created by `casebridge run` when missing) or `postgres://...`.
    #[serde(default = "default_database_url")]
    pub url: Option<Secret>,
    /// File holding the URL (it may carry a password).
    pub url_file: Option<PathBuf>,
    /// Maximum connections in the pool.
    #[serde(default = "default_max_connections")]
    pub max_connections: u32,
}

fn default_database_url() -> Option<Secret> {
    Some(Secret::new("sqlite://casebridge.db"))
}
fn default_max_connections() -> u32 {
    8
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        Self {
            url: default_database_url(),
            url_file: None,
            max_connections: default_max_connections(),
        }
    }
}

/// `[bridges.KEY]`: the keys every bridge instance has, plus its own options.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct BridgeInstance {
    /// Which bridge implements this instance (`email`, `sms`, `telegram`, ...).
    pub kind: String,
    /// The team (a key of `[teams]`) that answers this instance's cases.
    pub team: String,
    /// Everything else in the table, parsed by the bridge itself.
    #[serde(flatten)]
    pub options: Dict,
}

impl BridgeInstance {
    /// Parses this instance's own options into the bridge's typed config. Errors name the key
    /// as `bridges.NAME.KEY`.
    pub fn options<T: DeserializeOwned>(&self, name: &str) -> Result<T, ConfigError> {
        let mut dict = Dict::new();
        dict.insert(name.to_owned(), Value::from(self.options.clone()));
        let mut bridges = Dict::new();
        bridges.insert("bridges".to_owned(), Value::from(dict));
        Figment::from(Serialized::defaults(bridges))
            .extract_inner::<T>(&format!("bridges.{name}"))
            .map_err(|e| ConfigError::Problems {
                file: None,
                problems: problems::from_figment(e, &format!("bridges.{name}")),
            })
    }
}

/// `[retention]`: when the content of records is purged. Nothing is purged without a rule;
/// a case on legal hold (`!hold on`) keeps everything.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RetentionConfig {
    /// The rules; a record goes when any rule says so.
    #[serde(default, rename = "rule")]
    pub rules: Vec<RetentionRule>,
}

/// `[[retention.rule]]`
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RetentionRule {
    /// Which records: `inbound`, `outbound`, `notice`, `alert`, `internal`, or a kind
    /// (`auto-reply`, `note`, `incident`, ...); empty means every record.
    #[serde(default)]
    pub records: Vec<String>,
    /// Which cases: `closed` (counted from closing), `open` or `any` (counted from the record).
    pub status: RetentionStatus,
    /// Days after which the content goes.
    pub after_days: u32,
}

/// The cases a retention rule applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RetentionStatus {
    /// Closed cases, counted from closing.
    Closed,
    /// Open cases, counted from each record.
    Open,
    /// Every case, counted from each record.
    Any,
}

/// `[queue]`
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct QueueConfig {
    /// First retry delay after a transient failure, in milliseconds.
    #[serde(default = "default_initial_backoff_ms")]
    pub initial_backoff_ms: u64,
    /// Longest retry delay, in milliseconds.
    #[serde(default = "default_max_backoff_ms")]
    pub max_backoff_ms: u64,
    /// Case rooms the Matrix relay sends to at once (each case's messages stay in order).
    #[serde(default = "default_relay_concurrency")]
    pub relay_concurrency: std::num::NonZeroUsize,
}

fn default_relay_concurrency() -> std::num::NonZeroUsize {
    std::num::NonZeroUsize::new(8).expect("not zero")
}

fn default_initial_backoff_ms() -> u64 {
    500
}
fn default_max_backoff_ms() -> u64 {
    30_000
}

impl Default for QueueConfig {
    fn default() -> Self {
        Self {
            initial_backoff_ms: default_initial_backoff_ms(),
            max_backoff_ms: default_max_backoff_ms(),
            relay_concurrency: default_relay_concurrency(),
        }
    }
}

/// `[http]`: limits of the gateway's HTTP server against slow and numerous clients.
///
/// Its callers are the homeserver (short requests on a few pooled connections) and the channel
/// providers' webhooks (small forms and JSON), all on fast links: anything slower than these
/// limits is a broken or hostile client, and each one it holds open costs a task and buffers.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct HttpConfig {
    /// How long a connection may take to send a request's headers, in milliseconds. The clock
    /// starts when the server waits for a request, so it also bounds how long an idle
    /// keep-alive connection stays open.
    #[serde(default = "default_header_timeout_ms")]
    pub header_timeout_ms: u64,
    /// How long a request may take to send its whole body, from the end of its headers, in
    /// milliseconds.
    #[serde(default = "default_body_timeout_ms")]
    pub body_timeout_ms: u64,
    /// How long writing an answer may stall because the client does not read it, in
    /// milliseconds (nginx's `send_timeout`): the clock restarts whenever the client takes some.
    #[serde(default = "default_send_timeout_ms")]
    pub send_timeout_ms: u64,
    /// The most connections served at once; further ones wait in the listen backlog until one
    /// closes.
    #[serde(default = "default_http_max_connections")]
    pub max_connections: usize,
}

fn default_header_timeout_ms() -> u64 {
    10_000
}
fn default_body_timeout_ms() -> u64 {
    30_000
}
fn default_send_timeout_ms() -> u64 {
    30_000
}
fn default_http_max_connections() -> usize {
    512
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            header_timeout_ms: default_header_timeout_ms(),
            body_timeout_ms: default_body_timeout_ms(),
            send_timeout_ms: default_send_timeout_ms(),
            max_connections: default_http_max_connections(),
        }
    }
}

/// A secret string: never printed by `Debug` or `Display`.
#[derive(Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// Wraps a value.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }
    /// The secret itself; call only where it is used.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// Everything that can be wrong with a configuration.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The named file does not exist.
    #[error("config file {0} not found (give another with --config)")]
    NotFound(PathBuf),
    /// Every mistake found in the file at once, each with its key.
    #[error("{}", problems_text(.file.as_deref(), .problems))]
    Problems {
        /// Where the configuration came from (a file, the environment), when known.
        file: Option<String>,
        /// The mistakes, in the order of the file's sections.
        problems: Vec<Problem>,
    },
    /// A value has the right type but is not acceptable.
    #[error("{key}: {message}")]
    Invalid {
        /// The dotted key, e.g. `bridges.sms.team`.
        key: String,
        /// What is wrong and what is expected.
        message: String,
    },
    /// A `*_file` secret could not be read.
    #[error("{key}: cannot read {path}: {source}")]
    SecretFile {
        /// The dotted key of the `*_file` setting.
        key: String,
        /// The file named there.
        path: PathBuf,
        /// Why reading failed.
        source: std::io::Error,
    },
}

impl From<figment::Error> for ConfigError {
    fn from(e: figment::Error) -> Self {
        let file = source_of(&e);
        Self::Problems {
            file,
            problems: problems::from_figment(e, ""),
        }
    }
}

/// The file (or the environment) a figment error's value came from.
fn source_of(e: &figment::Error) -> Option<String> {
    let metadata = e.metadata.as_ref()?;
    Some(match &metadata.source {
        Some(figment::Source::File(path)) => path.display().to_string(),
        _ if metadata.name.contains("environment") => {
            format!("the environment ({ENV_PREFIX}* variables)")
        }
        _ => return None,
    })
}

fn problems_text(file: Option<&str>, problems: &[Problem]) -> String {
    match (file, problems) {
        (None, [one]) => one.to_string(),
        (Some(file), [one]) => format!("{file}: {one}"),
        (file, many) => {
            let mut text = match file {
                Some(file) => format!("{} problems in {file}:", many.len()),
                None => format!("{} problems:", many.len()),
            };
            for p in many {
                text.push_str(&format!("\n  {p}"));
            }
            text
        }
    }
}

impl ConfigError {
    /// The mistakes this error stands for, each with its key.
    pub fn problems(&self) -> Vec<Problem> {
        match self {
            Self::Problems { problems, .. } => problems.clone(),
            Self::Invalid { key, message } => vec![Problem::new(key.clone(), message.clone())],
            other => vec![Problem::new("", other.to_string())],
        }
    }
}

fn invalid(key: impl Into<String>, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key: key.into(),
        message: message.into(),
    }
}

/// Secrets resolved from values or files, ready to use.
#[derive(Debug, Clone)]
pub struct Secrets {
    /// `appservice.as_token`
    pub as_token: Secret,
    /// `appservice.hs_token`
    pub hs_token: Secret,
    /// `database.url`, a relative SQLite file resolved against the configuration's folder.
    pub database_url: Secret,
    /// `database.url` as given, before that, for messages about it.
    pub database_url_given: Secret,
    /// `homeserver.admin_token`, if given.
    pub admin_token: Option<Secret>,
}

impl Config {
    /// Loads `path` (which must exist), then the environment, then checks the result.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let (config, problems) = Self::load_with_problems(path)?;
        if problems.is_empty() {
            Ok(config)
        } else {
            Err(ConfigError::Problems {
                file: Some(config.source_name()),
                problems,
            })
        }
    }

    /// Loads `path` as [`Config::load`] does, but returns a configuration whose shape is right
    /// together with what is still wrong in it (references, secrets, placeholders), so that a
    /// check can add what only building the bridges tells and report everything at once.
    pub fn load_with_problems(path: &Path) -> Result<(Self, Vec<Problem>), ConfigError> {
        if !path.is_file() {
            return Err(ConfigError::NotFound(path.to_owned()));
        }
        // Absolute, so that what is resolved against its folder stays right whatever the
        // working directory, and messages name the real place.
        let path = std::path::absolute(path).unwrap_or_else(|_| path.to_owned());
        let base = path.parent().unwrap_or(Path::new("/")).to_owned();
        let figment = Figment::from(Toml::file_exact(&path)).merge(env_provider());
        let figment = resolve_relative_paths(figment, &base)?;
        let mut config = Self::extract_all(&figment).map_err(|problems| ConfigError::Problems {
            file: Some(path.display().to_string()),
            problems,
        })?;
        config.base_dir = Some(base);
        config.source = Some(path);
        let problems = config.problems(&figment);
        Ok((config, problems))
    }

    /// The file the configuration came from, for messages.
    pub fn source_name(&self) -> String {
        self.source.as_ref().map_or_else(
            || "the configuration".to_owned(),
            |p| p.display().to_string(),
        )
    }

    /// `path` as written in the configuration: relative ones from the file's folder. Paths
    /// [`Config::load`] read are absolute already; this is for configurations built otherwise.
    pub fn resolve_path(&self, path: &Path) -> PathBuf {
        match &self.base_dir {
            Some(base) if path.is_relative() => base.join(path),
            _ => path.to_owned(),
        }
    }

    /// Parses a TOML string (and no environment): for tests and examples.
    pub fn from_toml_str(toml: &str) -> Result<Self, ConfigError> {
        Self::from_figment(Figment::from(Toml::string(toml)))
    }

    /// Extracts and checks a configuration from any figment.
    pub fn from_figment(figment: Figment) -> Result<Self, ConfigError> {
        let config = Self::extract_all(&figment).map_err(|problems| ConfigError::Problems {
            file: None,
            problems,
        })?;
        let problems = config.problems(&figment);
        if problems.is_empty() {
            Ok(config)
        } else {
            Err(ConfigError::Problems {
                file: None,
                problems,
            })
        }
    }

    /// The top-level sections, in the order they are checked.
    const SECTIONS: [&'static str; 8] = [
        "homeserver",
        "appservice",
        "database",
        "teams",
        "bridges",
        "queue",
        "http",
        "retention",
    ];

    /// Extracts each section, team and bridge instance on its own, so that every mistake is
    /// found in one pass, not only the first (serde stops at the first of a value).
    fn extract_all(figment: &Figment) -> Result<Self, Vec<Problem>> {
        let raw: Dict = figment
            .extract()
            .map_err(|e| problems::from_figment(e, ""))?;
        let mut problems = Vec::new();
        for key in raw.keys() {
            if !Self::SECTIONS.contains(&key.as_str()) {
                problems.push(Problem::new(
                    key.clone(),
                    problems::unknown_key(key, &Self::SECTIONS),
                ));
            }
        }
        let homeserver = required::<HomeserverConfig>(figment, &raw, "homeserver", &mut problems);
        let appservice = required::<AppserviceConfig>(figment, &raw, "appservice", &mut problems);
        let database = optional::<DatabaseConfig>(figment, &raw, "database", &mut problems);
        let queue = optional::<QueueConfig>(figment, &raw, "queue", &mut problems);
        let http = optional::<HttpConfig>(figment, &raw, "http", &mut problems);
        let retention = optional::<RetentionConfig>(figment, &raw, "retention", &mut problems);
        let teams = entries::<TeamConfig>(figment, &raw, "teams", &mut problems);
        let bridges = entries::<BridgeInstance>(figment, &raw, "bridges", &mut problems);
        match (homeserver, appservice, database, queue, http, retention) {
            (
                Some(homeserver),
                Some(appservice),
                Some(database),
                Some(queue),
                Some(http),
                Some(retention),
            ) if problems.is_empty() => Ok(Self {
                homeserver,
                appservice,
                database,
                teams,
                bridges,
                queue,
                http,
                retention,
                base_dir: None,
                source: None,
            }),
            _ => Err(problems),
        }
    }

    /// Validates what the types cannot: references between sections, ids, secrets. Reports
    /// every mistake at once.
    pub fn check(&self) -> Result<(), ConfigError> {
        let problems = self.semantic_problems();
        if problems.is_empty() {
            Ok(())
        } else {
            Err(ConfigError::Problems {
                file: None,
                problems,
            })
        }
    }

    /// [`Config::check`]'s problems, and the example's placeholder secrets anywhere in the
    /// file (bridges' own options included).
    fn problems(&self, figment: &Figment) -> Vec<Problem> {
        let mut problems = self.semantic_problems();
        if let Ok(raw) = figment.extract::<Dict>() {
            problems::placeholders(&raw, "", &mut problems);
        }
        problems
    }

    fn semantic_problems(&self) -> Vec<Problem> {
        let mut problems = Vec::new();
        let mut problem = |key: String, message: String| problems.push(Problem::new(key, message));
        let prefix = &self.appservice.ghost_prefix;
        if prefix.is_empty() || !prefix.bytes().all(is_localpart_byte) {
            problem(
                "appservice.ghost_prefix".into(),
                "must be a non-empty run of a-z, 0-9, '.', '_', '=', '-', '/', e.g. \"_cb_\""
                    .into(),
            );
        }
        let bot = &self.appservice.bot_localpart;
        if bot.is_empty() || !bot.bytes().all(is_localpart_byte) {
            problem(
                "appservice.bot_localpart".into(),
                "must be a valid Matrix localpart (a-z, 0-9, '.', '_', '=', '-', '/'), e.g. \"casebridge\"".into(),
            );
        } else if !prefix.is_empty() && bot.starts_with(prefix.as_str()) {
            problem(
                "appservice.bot_localpart".into(),
                format!("must not start with the ghost prefix {prefix:?}"),
            );
        }
        if self.appservice.id.is_empty() {
            problem(
                "appservice.id".into(),
                "must not be empty, e.g. \"casebridge\"".into(),
            );
        }
        // Zero would mean no limit at all in the server, or no request ever served.
        for (key, value) in [
            ("http.header_timeout_ms", self.http.header_timeout_ms),
            ("http.body_timeout_ms", self.http.body_timeout_ms),
            ("http.max_connections", self.http.max_connections as u64),
        ] {
            if value == 0 {
                problem(key.into(), "must be at least 1".into());
            }
        }
        if let Some(url) = &self.database.url {
            let scheme = url.expose().split(':').next().unwrap_or_default();
            if !["sqlite", "postgres", "postgresql"].contains(&scheme) {
                problem(
                    "database.url".into(),
                    format!(
                        "{scheme:?} is not a database casebridge keeps records in; use \
                         \"sqlite://casebridge.db\" or \"postgres://user:password@host/db\""
                    ),
                );
            }
        }
        for (key, team) in &self.teams {
            if team.members.is_empty() {
                problem(
                    format!("teams.{key}.members"),
                    "needs at least one member, e.g. members = [\"@anna:example.org\"]".into(),
                );
            }
            for user in &team.on_call {
                if !team.members.contains(user) {
                    problem(
                        format!("teams.{key}.on_call"),
                        format!("{user} is on call but not in teams.{key}.members"),
                    );
                }
            }
            for user in team.members.iter().chain(&team.on_call) {
                if self.is_appservice_user(user) {
                    problem(
                        format!("teams.{key}.members"),
                        format!("{user} is in the appservice's own namespace"),
                    );
                }
            }
        }
        for (key, bridge) in &self.bridges {
            if !self.teams.contains_key(&bridge.team) {
                let known: Vec<_> = self.teams.keys().map(String::as_str).collect();
                let near = problems::nearest(&bridge.team, known.iter().copied())
                    .map(|n| format!("; did you mean {n:?}?"))
                    .unwrap_or_default();
                problem(
                    format!("bridges.{key}.team"),
                    format!(
                        "no team {:?} in [teams] (known: {}){near}",
                        bridge.team,
                        known.join(", ")
                    ),
                );
            }
            if key.is_empty() || !key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
                problem(
                    format!("bridges.{key}"),
                    "an instance key may hold only a-z, A-Z, 0-9 and '-'".into(),
                );
            }
        }
        if let Err(e) = self.secrets() {
            problems.extend(e.problems());
        }
        problems
    }

    /// Resolves every secret from its value or its `*_file`.
    pub fn secrets(&self) -> Result<Secrets, ConfigError> {
        let a = &self.appservice;
        let database_url_given = resolve_secret(
            "database.url",
            &self
                .database
                .url_file
                .as_ref()
                .map_or(self.database.url.clone(), |_| None),
            &self.database.url_file,
        )?;
        Ok(Secrets {
            as_token: resolve_secret("appservice.as_token", &a.as_token, &a.as_token_file)?,
            hs_token: resolve_secret("appservice.hs_token", &a.hs_token, &a.hs_token_file)?,
            database_url: match &self.base_dir {
                Some(base) => Secret::new(resolve_sqlite_url(database_url_given.expose(), base)),
                None => database_url_given.clone(),
            },
            database_url_given,
            admin_token: match (
                &self.homeserver.admin_token,
                &self.homeserver.admin_token_file,
            ) {
                (None, None) => None,
                (value, file) => Some(resolve_secret("homeserver.admin_token", value, file)?),
            },
        })
    }

    /// Whether `user` is the bot or a ghost of this appservice.
    pub fn is_appservice_user(&self, user: &UserId) -> bool {
        user.server_name() == self.homeserver.server_name
            && (user.localpart() == self.appservice.bot_localpart
                || user.localpart().starts_with(&self.appservice.ghost_prefix))
    }
}

/// A section the file must have.
fn required<T: DeserializeOwned>(
    figment: &Figment,
    raw: &Dict,
    key: &str,
    problems: &mut Vec<Problem>,
) -> Option<T> {
    if !raw.contains_key(key) {
        problems.push(Problem::new(
            key,
            format!("missing section [{key}] (casebridge.example.toml shows one)"),
        ));
        return None;
    }
    extract(figment, key, problems)
}

fn extract<T: DeserializeOwned>(
    figment: &Figment,
    key: &str,
    problems: &mut Vec<Problem>,
) -> Option<T> {
    figment
        .extract_inner(key)
        .map_err(|e| problems.extend(problems::from_figment(e, key)))
        .ok()
}

/// A section with defaults for everything.
fn optional<T: DeserializeOwned + Default>(
    figment: &Figment,
    raw: &Dict,
    key: &str,
    problems: &mut Vec<Problem>,
) -> Option<T> {
    if !raw.contains_key(key) {
        return Some(T::default());
    }
    extract(figment, key, problems)
}

/// A table of named entries (`[teams.KEY]`, `[bridges.KEY]`), each extracted on its own.
fn entries<T: DeserializeOwned>(
    figment: &Figment,
    raw: &Dict,
    key: &str,
    problems: &mut Vec<Problem>,
) -> BTreeMap<String, T> {
    let mut out = BTreeMap::new();
    match raw.get(key) {
        None => {}
        Some(Value::Dict(_, dict)) => {
            for name in dict.keys() {
                let path = format!("{key}.{name}");
                if let Some(v) = extract(figment, &path, problems) {
                    out.insert(name.clone(), v);
                }
            }
        }
        Some(_) => problems.push(Problem::new(
            key,
            format!("expected tables [{key}.NAME], one per entry"),
        )),
    }
    out
}

fn is_localpart_byte(b: u8) -> bool {
    matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'.' | b'_' | b'=' | b'-' | b'/')
}

/// Resolves a secret given as a value or as a file (`KEY` or `KEY_file`), naming `key` in errors.
pub fn resolve_secret(
    key: &str,
    value: &Option<Secret>,
    file: &Option<PathBuf>,
) -> Result<Secret, ConfigError> {
    match (value, file) {
        (Some(_), Some(_)) => Err(invalid(
            key,
            format!("give either {key} or {key}_file, not both"),
        )),
        (Some(v), None) if v.expose().is_empty() => Err(invalid(key, "must not be empty")),
        (Some(v), None) => Ok(v.clone()),
        (None, Some(path)) => {
            let text = std::fs::read_to_string(path).map_err(|source| ConfigError::SecretFile {
                key: format!("{key}_file"),
                path: path.clone(),
                source,
            })?;
            let text = text.trim();
            if text.is_empty() {
                return Err(invalid(
                    format!("{key}_file"),
                    format!("{} is empty", path.display()),
                ));
            }
            Ok(Secret::new(text))
        }
        (None, None) => Err(invalid(key, format!("missing: set {key} or {key}_file"))),
    }
}

/// `url` with a relative SQLite file (`sqlite://casebridge.db`, `sqlite:data/cb.db`) made
/// absolute against `base`; an absolute file, an in-memory database and any other URL are
/// returned as they are.
pub fn resolve_sqlite_url(url: &str, base: &Path) -> String {
    let Some(rest) = url.strip_prefix("sqlite:") else {
        return url.to_owned();
    };
    // As sqlx reads it: `sqlite://FILE?PARAMS` or `sqlite:FILE?PARAMS`.
    let rest = rest.strip_prefix("//").unwrap_or(rest);
    let (file, params) = match rest.split_once('?') {
        Some((file, params)) => (file, Some(params)),
        None => (rest, None),
    };
    if file.is_empty() || file == ":memory:" || file.starts_with('/') {
        return url.to_owned();
    }
    // sqlx percent-decodes the file part, so the folder's own '%', '?' and '#' are encoded to
    // stay themselves; the part written in the URL is already in URL form.
    let base = base
        .to_string_lossy()
        .replace('%', "%25")
        .replace('?', "%3F")
        .replace('#', "%23");
    let mut out = format!("sqlite://{}/{file}", base.trim_end_matches('/'));
    if let Some(params) = params {
        out.push('?');
        out.push_str(params);
    }
    out
}

/// Whether the value of `key` is a path, by the rule every section follows (bridges' own
/// included, so that a bridge's new `*_file` option is resolved without a change here).
fn is_path_key(key: &str) -> bool {
    key.ends_with("_file") || key == "holiday_calendars"
}

/// Makes every relative path in `figment` (see [`is_path_key`]) absolute against `base`. The
/// values keep their tags, so errors still name the file or variable they came from.
fn resolve_relative_paths(figment: Figment, base: &Path) -> Result<Figment, ConfigError> {
    let mut data = figment.data()?;
    let mut changed = false;
    for dict in data.values_mut() {
        changed |= resolve_dict(dict, base);
    }
    Ok(if changed {
        figment.merge(ResolvedPaths(data))
    } else {
        figment
    })
}

/// Resolves the paths in `dict` and below it; whether any changed.
fn resolve_dict(dict: &mut Dict, base: &Path) -> bool {
    let mut changed = false;
    for (key, value) in dict.iter_mut() {
        changed |= match value {
            Value::Dict(_, inner) => resolve_dict(inner, base),
            Value::String(..) if is_path_key(key) => resolve_value(value, base),
            Value::Array(_, items) if is_path_key(key) => items
                .iter_mut()
                .fold(false, |changed, item| resolve_value(item, base) | changed),
            _ => false,
        };
    }
    changed
}

/// Makes `value` absolute against `base` if it is a relative path; whether it did.
fn resolve_value(value: &mut Value, base: &Path) -> bool {
    match value {
        Value::String(_, text) if !text.is_empty() && Path::new(text.as_str()).is_relative() => {
            *text = base.join(text.as_str()).to_string_lossy().into_owned();
            true
        }
        _ => false,
    }
}

/// The configuration's own data with its paths resolved, merged over it.
struct ResolvedPaths(Map<Profile, Dict>);

impl Provider for ResolvedPaths {
    fn metadata(&self) -> Metadata {
        Metadata::named("relative paths resolved against the configuration file's folder")
    }

    fn data(&self) -> Result<Map<Profile, Dict>, figment::Error> {
        Ok(self.0.clone())
    }
}

/// Environment overrides: `CASEBRIDGE__SECTION__KEY=value`.
pub fn env_provider() -> Env {
    Env::prefixed(ENV_PREFIX).split("__")
}

#[cfg(test)]
mod tests;
