//! `casebridge cases` and `casebridge records`: reading, exporting, verifying, anchoring and
//! purging the records store from the command line.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use casebridge_config::Config;
use casebridge_gateway::store::{anchor, chain, OpenMode, Store, StoreError};
use clap::{Subcommand, ValueEnum};

#[derive(Subcommand)]
pub enum CasesCommand {
    /// List every case.
    List,
    /// Show one case with its identities and messages.
    Show {
        /// Case number, e.g. 2026-000123.
        number: String,
    },
}

#[derive(Subcommand)]
pub enum RecordsCommand {
    /// Purge what the [retention] rules make due: the content goes from the records store and
    /// the events are redacted in the case rooms; a purge record keeps the chain verifiable.
    Purge {
        /// Only list what would go.
        #[arg(long)]
        dry_run: bool,
    },
    /// Check every case's hash chain (or one case's): names every changed, deleted or
    /// reordered record, and every purged one no purge record accounts for; exits non-zero if
    /// any.
    Verify {
        /// Case number, e.g. 2026-000123; every case when left out.
        #[arg(long)]
        case: Option<String>,
        /// An anchor file (from `records anchor`): also names records removed from the end of
        /// a case, and chains recomputed, since the anchors were taken.
        #[arg(long)]
        anchors: Option<PathBuf>,
    },
    /// Print each case's last registration number and hash, one line per case, to append to a
    /// file kept outside the records store (`records anchor >> anchors.txt`); `records verify
    /// --anchors` checks against it. Cases whose chain is broken are left out and named.
    Anchor,
    /// Export every message of a case.
    Export {
        /// Case number, e.g. 2026-000123.
        #[arg(long)]
        case: String,
        /// Output format.
        #[arg(long, value_enum, default_value_t = ExportFormat::Json)]
        format: ExportFormat,
    },
}

#[derive(Clone, Copy, ValueEnum)]
pub enum ExportFormat {
    Json,
    Csv,
    /// A readable journal (one HTML page, printable).
    Html,
}

/// `casebridge cases ...`.
pub async fn cases(config: &Config, config_file: &Path, command: CasesCommand) -> Result<()> {
    let store = open_store(config, config_file).await?;
    match command {
        CasesCommand::List => {
            println!(
                "{:<12} {:<7} {:<16} {:<8} room",
                "case", "status", "team", "messages"
            );
            for case in store.cases().await? {
                let count = store.messages(case.id).await?.len();
                println!(
                    "{:<12} {:<7} {:<16} {:<8} {}",
                    case.number,
                    case.status,
                    case.team,
                    count,
                    case.room_id.as_deref().unwrap_or("(not yet created)")
                );
            }
        }
        CasesCommand::Show { number } => {
            let case = find_case(&store, &number).await?;
            println!("case     {}", case.number);
            println!("status   {}", case.status);
            println!("team     {}", case.team);
            println!("opened   {}", case.created_at.to_rfc3339());
            println!(
                "room     {}",
                case.room_id.as_deref().unwrap_or("(not yet created)")
            );
            for identity in store.identities(case.id).await? {
                println!(
                    "contact  {} via {} ({})",
                    identity.display_name, identity.channel, identity.instance
                );
            }
            for m in store.messages(case.id).await? {
                println!(
                    "{} {:<8} {:<9} {}",
                    m.received_at.format("%Y-%m-%d %H:%M:%S"),
                    m.direction,
                    m.state,
                    m.body.replace('\n', " ⏎ ")
                );
            }
        }
    }
    Ok(())
}

/// `casebridge records ...`.
pub async fn records(config: &Config, config_file: &Path, command: RecordsCommand) -> Result<()> {
    let store = open_store(config, config_file).await?;
    match command {
        RecordsCommand::Purge { dry_run } => purge(config, &store, dry_run).await,
        RecordsCommand::Verify { case, anchors } => verify(&store, case, anchors).await,
        RecordsCommand::Anchor => anchor_heads(&store).await,
        RecordsCommand::Export { case, format } => export(config, &store, &case, format).await,
    }
}

/// `records purge [--dry-run]`.
async fn purge(config: &Config, store: &Store, dry_run: bool) -> Result<()> {
    let due = store
        .retention_due(&config.retention, chrono::Utc::now())
        .await?;
    for d in &due {
        println!(
            "case {} record {} ({}{}, {}): rule {}",
            d.case.number,
            d.record.seq.unwrap_or_default(),
            d.record.direction,
            d.record.kind.map(|k| format!(" {k}")).unwrap_or_default(),
            d.record.received_at.format("%Y-%m-%d"),
            d.rule
        );
    }
    if dry_run {
        println!(
            "{} record(s) would be purged (dry run: nothing changed)",
            due.len()
        );
        return Ok(());
    }
    let purged = store.purge(&due).await?;
    let records: usize = purged.iter().map(|p| p.seqs.len()).sum();
    println!("purged {records} record(s) in {} case(s)", purged.len());
    // The redactions and file deletions of this purge and of any earlier one whose
    // homeserver did not answer.
    let secrets = config.secrets()?;
    let matrix = casebridge_gateway::matrix::MatrixClient::new(
        config.homeserver.url.as_str(),
        secrets.as_token.expose(),
    );
    let bot = ruma::UserId::parse(format!(
        "@{}:{}",
        config.appservice.bot_localpart, config.homeserver.server_name
    ))?;
    let admin = secrets.admin_token.as_ref().map(|t| t.expose());
    let languages = casebridge_gateway::texts::Languages::of(config);
    let done =
        casebridge_gateway::purge::carry_out(store, &matrix, &bot, admin, &languages).await?;
    println!(
        "redacted {} event(s); deleted {} file(s) from the media repository",
        done.redacted, done.deleted
    );
    if done.media_waiting > 0 {
        eprintln!(
            "{} file(s) stay in the homeserver's media repository (their events are \
         redacted): set homeserver.admin_token (a Synapse server admin's token) to \
         delete them with the next purge, or let the homeserver's media_retention do it",
            done.media_waiting
        );
    }
    for e in &done.failed {
        eprintln!("{e}");
    }
    if !done.failed.is_empty() {
        anyhow::bail!(
            "{} redaction(s) or file deletion(s) failed: the content is gone from the \
         records store, and they stay queued; the next `casebridge records purge` \
         tries them again",
            done.failed.len()
        );
    }

    Ok(())
}

/// `records verify [--case N] [--anchors FILE]`.
async fn verify(
    store: &Store,
    case: Option<String>,
    anchors: Option<std::path::PathBuf>,
) -> Result<()> {
    let cases = match &case {
        Some(number) => vec![find_case(store, number).await?],
        None => store.cases().await?.into_iter().rev().collect(),
    };
    let mut findings = Vec::new();
    let mut records = 0;
    for case in &cases {
        records += store.messages(case.id).await?.len();
        findings.extend(chain::verify(store.connection(), case).await?);
    }
    let anchored = match &anchors {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?;
            let mut list =
                anchor::parse(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
            list.retain(|a| case.as_ref().is_none_or(|n| *n == a.case));
            findings.extend(anchor::check(store.connection(), &list).await?);
            Some(list)
        }
        None => None,
    };
    for finding in &findings {
        println!("{finding}");
    }
    let broken = findings.iter().filter(|f| f.is_break()).count();
    if broken > 0 {
        anyhow::bail!(
            "{broken} break(s) in the records of {} case(s)",
            cases.len()
        );
    }
    println!(
        "{records} records in {} case(s): every chain is intact",
        cases.len()
    );
    // Say what the check could not see, so "intact" is not read as more than it is.
    let unproven = findings.len();
    if unproven > 0 {
        println!(
            "{unproven} purge record(s) above predate purge records that list content \
         hashes: what their records held when purged cannot be proven"
        );
    }
    match anchored {
        None => println!(
            "not checked against anchors: records removed from the end of a case, or a \
         chain recomputed after a change, cannot be seen from the store alone (see \
         `casebridge records anchor` and `records verify --anchors`)"
        ),
        Some(list) => {
            let named: std::collections::HashSet<&str> =
                list.iter().map(|a| a.case.as_str()).collect();
            let unanchored = cases
                .iter()
                .filter(|c| !named.contains(c.number.as_str()))
                .count();
            println!(
                "{} anchor(s) hold; records after a case's last anchor, and the {} \
             case(s) with no anchor yet, rest on the chain alone",
                list.len(),
                unanchored
            );
        }
    }

    Ok(())
}

/// `records anchor`.
async fn anchor_heads(store: &Store) -> Result<()> {
    let mut intact = Vec::new();
    let mut broken = 0;
    for case in store.cases().await?.into_iter().rev() {
        // An anchor vouches for what it names: a broken chain is not to be vouched for.
        let findings = chain::verify(store.connection(), &case).await?;
        if findings.iter().any(chain::Finding::is_break) {
            eprintln!(
                "case {}: not anchored, its chain is broken (see `casebridge records \
             verify --case {}`)",
                case.number, case.number
            );
            broken += 1;
        } else {
            intact.push(case);
        }
    }
    for a in anchor::heads(store.connection(), &intact, chrono::Utc::now()).await? {
        println!("{a}");
    }
    if broken > 0 {
        anyhow::bail!("{broken} case(s) not anchored: their chains are broken");
    }

    Ok(())
}

/// `records export --case N --format F`.
async fn export(config: &Config, store: &Store, case: &str, format: ExportFormat) -> Result<()> {
    let case = find_case(store, case).await?;
    let messages = store.messages(case.id).await?;
    if let ExportFormat::Html = format {
        let identities = store.identities(case.id).await?;
        let team = casebridge_gateway::journal::Team::of(&case.team, config.teams.get(&case.team));
        print!(
            "{}",
            casebridge_gateway::journal::render(
                &case,
                &team,
                &identities,
                &messages,
                chrono::Utc::now()
            )
        );
        return Ok(());
    }
    let rows: Vec<ExportRow> = messages
        .into_iter()
        .map(|m| ExportRow::new(&case.number, m))
        .collect();
    match format {
        ExportFormat::Json => println!("{}", serde_json::to_string_pretty(&rows)?),
        ExportFormat::Csv => print!("{}", to_csv(&rows)),
        ExportFormat::Html => unreachable!("rendered above"),
    }

    Ok(())
}

/// The records store for a command other than `run`: these read it (`records purge` also
/// changes it), and none may create one, so a wrong path is an error rather than a new, empty
/// store that reports nothing wrong.
async fn open_store(config: &Config, config_file: &Path) -> Result<Store> {
    let secrets = config.secrets()?;
    let url = secrets.database_url.expose();
    let given = secrets.database_url_given.expose();
    match Store::connect_with(url, 1, OpenMode::Existing).await {
        Ok(store) => Ok(store),
        // A relative path was resolved: show it as written and where, so that the admin sees
        // why the store was looked for there.
        Err(StoreError::NoDatabase(path)) if given != url => {
            let written_in = match &config.database.url_file {
                Some(file) => file.clone(),
                None => std::path::absolute(config_file).unwrap_or_else(|_| config_file.into()),
            };
            bail!(
                "database.url: no database at {} (from {given} in {}): check the path; \
                 `casebridge run` creates it",
                path.display(),
                written_in.display(),
            )
        }
        Err(e @ (StoreError::NoDatabase(_) | StoreError::NotAStore(_))) => Err(e.into()),
        Err(e) => Err(e).context("opening the records store"),
    }
}

async fn find_case(store: &Store, number: &str) -> Result<casebridge_gateway::store::case::Model> {
    match store.case_by_number(number).await? {
        Some(case) => Ok(case),
        None => bail!("no case {number} (see `casebridge cases list`)"),
    }
}

#[derive(serde::Serialize)]
struct ExportRow {
    case: String,
    seq: Option<i32>,
    id: casebridge_gateway::store::MessageId,
    direction: &'static str,
    kind: Option<&'static str>,
    sender: Option<String>,
    subject: Option<String>,
    channel: String,
    instance: String,
    upstream_id: Option<String>,
    event_id: Option<String>,
    body: String,
    state: &'static str,
    error: Option<String>,
    sent_at: Option<String>,
    received_at: String,
    relayed_at: Option<String>,
    delivered_at: Option<String>,
    content_hash: Option<String>,
    hash: Option<String>,
}

impl ExportRow {
    fn new(case: &str, m: casebridge_gateway::store::message::Model) -> Self {
        Self {
            case: case.to_owned(),
            seq: m.seq,
            id: m.id,
            direction: m.direction.as_str(),
            kind: m.kind.map(|k| k.as_str()),
            sender: m.sender,
            subject: m.subject,
            channel: m.channel,
            instance: m.instance,
            upstream_id: m.upstream_id,
            event_id: m.event_id,
            body: m.body,
            state: m.state.as_str(),
            error: m.error,
            sent_at: m.sent_at.map(|t| t.to_rfc3339()),
            received_at: m.received_at.to_rfc3339(),
            relayed_at: m.relayed_at.map(|t| t.to_rfc3339()),
            delivered_at: m.delivered_at.map(|t| t.to_rfc3339()),
            content_hash: m.content_hash,
            hash: m.hash,
        }
    }
}

/// RFC 4180 CSV: every field quoted, quotes doubled.
fn to_csv(rows: &[ExportRow]) -> String {
    let value = serde_json::to_value(rows).expect("rows serialise");
    let header = [
        "case",
        "seq",
        "id",
        "direction",
        "kind",
        "sender",
        "subject",
        "channel",
        "instance",
        "upstream_id",
        "event_id",
        "body",
        "state",
        "error",
        "sent_at",
        "received_at",
        "relayed_at",
        "delivered_at",
        "content_hash",
        "hash",
    ];
    let mut out = header.join(",") + "\r\n";
    for row in value.as_array().into_iter().flatten() {
        let fields: Vec<String> = header
            .iter()
            .map(|k| {
                let v = match &row[*k] {
                    serde_json::Value::Null => String::new(),
                    serde_json::Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                format!("\"{}\"", v.replace('"', "\"\""))
            })
            .collect();
        out += &(fields.join(",") + "\r\n");
    }
    out
}
