//! The records form a hash chain per case: each record has a registration number (1, 2, 3, …
//! within its case), the hash of its content (text, HTML, subject, every file, the original), and
//! a hash over what it is (case, number, direction, kind, actor, channel, times, content hash)
//! and the previous record's hash. Changing a byte, deleting a record or reordering two breaks
//! the chain where it happened, and [`verify`] names the record.
//!
//! What a record *is* never changes; how far it got (relayed, sent, delivered) does, and each
//! such step that matters is a record of its own (a notice).
//!
//! A purge empties records but keeps their hashes; the mark of a purged row is not hashed, so
//! the purge record (which is) names every record it emptied with the content hash it had, and
//! [`verify`] holds each purged row to that list. What the chain cannot show by itself (records
//! removed from the end of a case, or a chain rewritten as a whole) needs its heads anchored
//! outside the store: see [`super::anchor`].

use std::collections::HashMap;

use chrono::{DateTime, SubsecRound, Utc};
use sea_orm::{
    sea_query::Expr, ActiveValue, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter,
    QueryOrder, QuerySelect, Set,
};
use serde_json::json;
use sha2::{Digest, Sha256};

use super::{
    attachment, case, message, original, CaseId, Direction, IdentityId, MessageId, MessageKind,
    MessageState, StoreError,
};

/// What a record holds besides its row: the bytes of its files and its original.
#[derive(Default)]
pub struct Content<'a> {
    /// Files: name, type, bytes.
    pub files: Vec<(&'a str, &'a str, &'a [u8])>,
    /// The message as its channel delivered it.
    pub original: Option<&'a [u8]>,
}

/// SHA-256, as lowercase hex.
pub(crate) fn hex(bytes: impl AsRef<[u8]>) -> String {
    ::hex::encode(Sha256::digest(bytes))
}

fn value<T: Clone + Default + Into<sea_orm::Value>>(v: &ActiveValue<T>) -> T {
    set(v).unwrap_or_default()
}

fn set<T: Clone + Into<sea_orm::Value>>(v: &ActiveValue<T>) -> Option<T> {
    match v {
        ActiveValue::Set(x) | ActiveValue::Unchanged(x) => Some(x.clone()),
        ActiveValue::NotSet => None,
    }
}

fn micros(t: &DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
}

/// The content hash: what was said, in every form the record keeps.
pub fn content_hash(
    body: &str,
    html: Option<&str>,
    subject: Option<&str>,
    content: &Content<'_>,
) -> String {
    let files: Vec<_> = content
        .files
        .iter()
        .map(|(name, mime, data)| json!([name, mime, hex(data)]))
        .collect();
    let canonical = json!([body, html, subject, files, content.original.map(hex),]);
    hex(canonical.to_string())
}

/// What the record hash covers.
struct Fields<'a> {
    case_id: CaseId,
    seq: Option<i32>,
    prev_hash: Option<&'a str>,
    direction: Direction,
    kind: Option<MessageKind>,
    identity_id: Option<IdentityId>,
    instance: &'a str,
    channel: &'a str,
    upstream_id: Option<&'a str>,
    sender: Option<&'a str>,
    received_at: &'a DateTime<Utc>,
    sent_at: Option<&'a DateTime<Utc>>,
    content_hash: Option<&'a str>,
}

impl<'a> From<&'a message::Model> for Fields<'a> {
    fn from(m: &'a message::Model) -> Self {
        Self {
            case_id: m.case_id,
            seq: m.seq,
            prev_hash: m.prev_hash.as_deref(),
            direction: m.direction,
            kind: m.kind,
            identity_id: m.identity_id,
            instance: &m.instance,
            channel: &m.channel,
            upstream_id: m.upstream_id.as_deref(),
            sender: m.sender.as_deref(),
            received_at: &m.received_at,
            sent_at: m.sent_at.as_ref(),
            content_hash: m.content_hash.as_deref(),
        }
    }
}

/// The record hash: what the record is, its content hash, and the previous record's hash.
fn record_hash(f: &Fields<'_>) -> String {
    let canonical = json!([
        "casebridge-record-1",
        f.case_id,
        f.seq,
        f.prev_hash,
        // The stored words: the hashed bytes are those of the strings written before the enums.
        f.direction.as_str(),
        f.kind.map(MessageKind::as_str),
        f.identity_id,
        f.instance,
        f.channel,
        // The client's message id is known when it is recorded; ours only once it is sent.
        if f.direction == Direction::Inbound {
            f.upstream_id
        } else {
            None
        },
        f.sender,
        micros(f.received_at),
        f.sent_at.map(micros),
        f.content_hash,
    ]);
    hex(canonical.to_string())
}

/// Inserts `rows` at the ends of their cases' chains, in order, in one statement. The case
/// rows are locked first (PostgreSQL) so that concurrent writers to one case take turns; SQLite
/// has one writer.
pub async fn append<C: ConnectionTrait>(
    conn: &C,
    rows: Vec<(message::ActiveModel, Content<'_>)>,
) -> Result<Vec<message::Model>, StoreError> {
    if rows.is_empty() {
        return Ok(Vec::new());
    }
    let mut case_ids = Vec::with_capacity(rows.len());
    for (row, _) in &rows {
        case_ids.push(set(&row.case_id).ok_or_else(|| {
            StoreError::Missing("a record's case (a bug: every row sets one)".into())
        })?);
    }
    let mut heads = chain_heads(conn, case_ids.clone()).await?;
    let mut ready = Vec::with_capacity(rows.len());
    for ((mut row, content), case_id) in rows.into_iter().zip(case_ids) {
        let (seq, prev) = heads.get(&case_id).cloned().unwrap_or((0, None));
        // Stored times are microseconds (PostgreSQL); hash what will be read back.
        let received_at = value(&row.received_at).trunc_subsecs(6);
        let sent_at = value(&row.sent_at).map(|t| t.trunc_subsecs(6));
        let body = value(&row.body);
        let html = value(&row.html);
        let subject = value(&row.subject);
        let content_hash = content_hash(&body, html.as_deref(), subject.as_deref(), &content);
        let direction = set(&row.direction).ok_or_else(|| {
            StoreError::Missing("a record's direction (a bug: every row sets one)".into())
        })?;
        let kind = value(&row.kind);
        let instance = value(&row.instance);
        let channel = value(&row.channel);
        let upstream_id = value(&row.upstream_id);
        let sender = value(&row.sender);
        let hash = record_hash(&Fields {
            case_id,
            seq: Some(seq + 1),
            prev_hash: prev.as_deref(),
            direction,
            kind,
            identity_id: value(&row.identity_id),
            instance: &instance,
            channel: &channel,
            upstream_id: upstream_id.as_deref(),
            sender: sender.as_deref(),
            received_at: &received_at,
            sent_at: sent_at.as_ref(),
            content_hash: Some(&content_hash),
        });
        row.received_at = Set(received_at);
        row.sent_at = Set(sent_at);
        row.seq = Set(Some(seq + 1));
        row.prev_hash = Set(prev);
        row.content_hash = Set(Some(content_hash));
        row.hash = Set(Some(hash.clone()));
        row.purged_at = Set(None);
        heads.insert(case_id, (seq + 1, Some(hash)));
        ready.push(row);
    }
    let mut inserted = message::Entity::insert_many(ready)
        .exec_with_returning_many(conn)
        .await?;
    inserted.sort_by_key(|m| m.id);
    Ok(inserted)
}

/// The last registration number and hash of each of `cases` that has records, with the
/// cases locked (PostgreSQL; in id order, so that writers never wait for each other in a
/// circle) so that concurrent writers to one case take turns. Two statements whatever the
/// number of cases (SQLite's one writer needs no lock).
async fn chain_heads<C: ConnectionTrait>(
    conn: &C,
    mut cases: Vec<CaseId>,
) -> Result<HashMap<CaseId, (i32, Option<String>)>, StoreError> {
    cases.sort_unstable();
    cases.dedup();
    if conn.get_database_backend() != sea_orm::DbBackend::Sqlite {
        case::Entity::find()
            .select_only()
            .column(case::Column::Id)
            .filter(case::Column::Id.is_in(cases.iter().copied()))
            .order_by_asc(case::Column::Id)
            .lock_exclusive()
            .into_tuple::<CaseId>()
            .all(conn)
            .await?;
    }
    let last: Vec<(CaseId, Option<i32>)> = message::Entity::find()
        .select_only()
        .column(message::Column::CaseId)
        .column_as(message::Column::Seq.max(), "seq")
        .filter(message::Column::CaseId.is_in(cases))
        .filter(message::Column::Seq.is_not_null())
        .group_by(message::Column::CaseId)
        .into_tuple()
        .all(conn)
        .await?;
    let mut which = sea_orm::Condition::any();
    let mut any = false;
    for (case_id, seq) in last {
        if let Some(seq) = seq {
            which = which.add(
                message::Column::CaseId
                    .eq(case_id)
                    .and(message::Column::Seq.eq(seq)),
            );
            any = true;
        }
    }
    if !any {
        return Ok(HashMap::new());
    }
    let rows: Vec<(CaseId, Option<i32>, Option<String>)> = message::Entity::find()
        .select_only()
        .column(message::Column::CaseId)
        .column(message::Column::Seq)
        .column(message::Column::Hash)
        .filter(which)
        .into_tuple()
        .all(conn)
        .await?;
    Ok(rows
        .into_iter()
        .map(|(case_id, seq, hash)| (case_id, (seq.unwrap_or(0), hash)))
        .collect())
}

/// Gives records written before the chain existed their place in it (oldest first, after any
/// chained ones), so that an upgraded store verifies. Returns how many it chained.
pub async fn backfill<C: ConnectionTrait>(conn: &C) -> Result<usize, StoreError> {
    let rows = message::Entity::find()
        .filter(message::Column::Seq.is_null())
        .order_by_asc(message::Column::Id)
        .all(conn)
        .await?;
    let mut heads: HashMap<CaseId, (i32, Option<String>)> = HashMap::new();
    for m in &rows {
        let (seq, prev) = match heads.get(&m.case_id) {
            Some(h) => h.clone(),
            None => chain_heads(conn, vec![m.case_id])
                .await?
                .remove(&m.case_id)
                .unwrap_or((0, None)),
        };
        let files = attachment::Entity::find()
            .filter(attachment::Column::MessageId.eq(m.id))
            .order_by_asc(attachment::Column::Position)
            .all(conn)
            .await?;
        let original = original::Entity::find_by_id(m.id).one(conn).await?;
        let content = Content {
            files: files
                .iter()
                .map(|a| (a.filename.as_str(), a.mime.as_str(), a.data.as_slice()))
                .collect(),
            original: original.as_ref().map(|o| o.data.as_slice()),
        };
        let mut chained = m.clone();
        chained.seq = Some(seq + 1);
        chained.prev_hash = prev;
        chained.content_hash = Some(content_hash(
            &m.body,
            m.html.as_deref(),
            m.subject.as_deref(),
            &content,
        ));
        let hash = record_hash(&Fields::from(&chained));
        message::Entity::update_many()
            .col_expr(message::Column::Seq, Expr::value(chained.seq))
            .col_expr(
                message::Column::PrevHash,
                Expr::value(chained.prev_hash.clone()),
            )
            .col_expr(
                message::Column::ContentHash,
                Expr::value(chained.content_hash.clone()),
            )
            .col_expr(message::Column::Hash, Expr::value(hash.clone()))
            .filter(message::Column::Id.eq(m.id))
            .exec(conn)
            .await?;
        heads.insert(m.case_id, (seq + 1, Some(hash)));
    }
    Ok(rows.len())
}

/// Appends one row.
pub async fn append_one<C: ConnectionTrait>(
    conn: &C,
    row: message::ActiveModel,
) -> Result<message::Model, StoreError> {
    let mut inserted = append(conn, vec![(row, Content::default())]).await?;
    Ok(inserted.remove(0))
}

/// The line of a purge record's text that opens its list of what it emptied: one
/// `record N: HASH` line per record, HASH the content hash the record had.
const PURGED_LIST: &str = "Content hashes (SHA-256) of what was removed:";

/// The text of a purge record: what went under which rules, for the reader, and the list
/// [`verify`] holds purged rows to. It is the record's body, so its content hash covers it.
pub(crate) fn purge_text(rules: &[usize], purged: &[(i32, Option<&str>)]) -> String {
    let join = |items: Vec<String>| items.join(", ");
    let mut text = format!(
        "Purged under retention rule {}: the content of record(s) {} was removed; their \
         registration data and hashes are kept.\n{PURGED_LIST}",
        join(rules.iter().map(usize::to_string).collect()),
        join(purged.iter().map(|(seq, _)| seq.to_string()).collect()),
    );
    for (seq, hash) in purged {
        text.push_str(&format!("\nrecord {seq}: {}", hash.unwrap_or("-")));
    }
    text
}

/// What a purge record says it emptied.
#[derive(Debug, PartialEq, Eq)]
enum PurgeList {
    /// Registration numbers with the content hash each had.
    Hashes(Vec<(i64, String)>),
    /// A purge record written before purge records listed content hashes: its sentence names
    /// the registration numbers only.
    NumbersOnly(Vec<i64>),
    /// Neither: nothing can be taken from it.
    Unreadable,
}

fn purge_list(text: &str) -> PurgeList {
    if let Some((_, list)) = text.split_once(PURGED_LIST) {
        let entries: Option<Vec<(i64, String)>> = list
            .lines()
            .filter(|l| !l.is_empty())
            .map(|l| {
                let (seq, hash) = l.strip_prefix("record ")?.split_once(": ")?;
                Some((seq.parse().ok()?, hash.to_owned()))
            })
            .collect();
        return entries.map_or(PurgeList::Unreadable, PurgeList::Hashes);
    }
    // The one sentence the earlier versions wrote.
    let numbers = text
        .split_once("the content of record(s) ")
        .and_then(|(_, rest)| rest.split_once(" was removed"))
        .and_then(|(list, _)| {
            list.split(", ")
                .map(|n| n.parse().ok())
                .collect::<Option<Vec<i64>>>()
        });
    numbers.map_or(PurgeList::Unreadable, PurgeList::NumbersOnly)
}

mod verify;

pub use verify::{verify, Finding, Severity};

#[cfg(test)]
mod tests;
