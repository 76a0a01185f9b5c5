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
    sea_query::Expr, ActiveEnum, ActiveValue, ColumnTrait, ConnectionTrait, EntityTrait,
    QueryFilter, QueryOrder, QuerySelect, Set,
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
    let mut heads: HashMap<CaseId, (i32, Option<String>)> = HashMap::new();
    let mut ready = Vec::with_capacity(rows.len());
    for (mut row, content) in rows {
        let case_id = set(&row.case_id).ok_or_else(|| {
            StoreError::Missing("a record's case (a bug: every row sets one)".into())
        })?;
        let (seq, prev) = match heads.get(&case_id) {
            Some(head) => head.clone(),
            None => head(conn, case_id).await?,
        };
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

/// The last registration number and hash of a case, with the case locked (PostgreSQL) so that
/// concurrent writers to one case take turns.
async fn head<C: ConnectionTrait>(
    conn: &C,
    case_id: CaseId,
) -> Result<(i32, Option<String>), StoreError> {
    case::Entity::find_by_id(case_id)
        .lock_exclusive()
        .one(conn)
        .await?;
    let head: Option<(Option<i32>, Option<String>)> = message::Entity::find()
        .select_only()
        .column(message::Column::Seq)
        .column(message::Column::Hash)
        .filter(message::Column::CaseId.eq(case_id))
        .filter(message::Column::Seq.is_not_null())
        .order_by_desc(message::Column::Seq)
        .into_tuple()
        .one(conn)
        .await?;
    Ok(head.map_or((0, None), |(seq, hash)| (seq.unwrap_or(0), hash)))
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
            None => head(conn, m.case_id).await?,
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

/// How much a finding says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    /// The records were changed, deleted, reordered or emptied outside a purge.
    Break,
    /// Nothing is shown to be wrong, but the chain cannot prove it right either (a purge from
    /// before purge records listed content hashes).
    Unproven,
}

/// A break in a case's chain, or what it cannot prove.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// The case number.
    pub case: String,
    /// The registration number where it breaks.
    pub seq: i64,
    /// What is wrong.
    pub problem: String,
    /// A break, or only unproven.
    pub severity: Severity,
}

impl Finding {
    /// Whether the records were shown to be tampered with.
    pub fn is_break(&self) -> bool {
        self.severity == Severity::Break
    }
}

impl std::fmt::Display for Finding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let unproven = match self.severity {
            Severity::Break => "",
            Severity::Unproven => "cannot be proven: ",
        };
        write!(
            f,
            "case {} record {}: {unproven}{}",
            self.case, self.seq, self.problem
        )
    }
}

/// A row's id, registration number, and its direction, kind and state as stored.
type StoredWords = (MessageId, Option<i32>, String, Option<String>, String);

/// Rows of case `case` holding a direction, kind or state that casebridge never writes: such a
/// row was altered by hand and cannot be read as a record, so it is reported as a break (and
/// left out of the rest of the check, where its absence breaks the chain too) instead of
/// stopping the check. Returns the rows' ids and the findings.
async fn altered_words<C: ConnectionTrait>(
    conn: &C,
    case: CaseId,
    finding: &impl Fn(i64, String) -> Finding,
) -> Result<(Vec<MessageId>, Vec<Finding>), StoreError> {
    let words: Vec<StoredWords> = message::Entity::find()
        .select_only()
        .columns([
            message::Column::Id,
            message::Column::Seq,
            message::Column::Direction,
            message::Column::Kind,
            message::Column::State,
        ])
        .filter(message::Column::CaseId.eq(case))
        .into_tuple()
        .all(conn)
        .await?;
    let mut ids = Vec::new();
    let mut found = Vec::new();
    for (id, seq, direction, kind, state) in words {
        let unknown = [
            (
                "direction",
                Some(direction.as_str()),
                Direction::try_from_value(&direction).is_err(),
            ),
            (
                "kind",
                kind.as_deref(),
                kind.as_ref()
                    .is_some_and(|k| MessageKind::try_from_value(k).is_err()),
            ),
            (
                "state",
                Some(state.as_str()),
                MessageState::try_from_value(&state).is_err(),
            ),
        ];
        let problems: Vec<String> = unknown
            .iter()
            .filter(|(_, _, bad)| *bad)
            .map(|(field, word, _)| {
                let word: String = word.unwrap_or_default().chars().take(40).collect();
                format!("its {field} {word:?} is no word casebridge writes")
            })
            .collect();
        if !problems.is_empty() {
            ids.push(id);
            found.push(finding(
                seq.map_or(0, i64::from),
                format!("{}: the row was altered", problems.join(", ")),
            ));
        }
    }
    Ok((ids, found))
}

/// Checks every record of `case` against the chain; returns each break found.
pub async fn verify<C: ConnectionTrait>(
    conn: &C,
    case: &case::Model,
) -> Result<Vec<Finding>, StoreError> {
    let finding = |seq: i64, problem: String| Finding {
        case: case.number.clone(),
        seq,
        problem,
        severity: Severity::Break,
    };
    let (altered, mut out) = altered_words(conn, case.id, &finding).await?;
    let rows = message::Entity::find()
        .filter(message::Column::CaseId.eq(case.id))
        .filter(message::Column::Id.is_not_in(altered))
        .order_by_asc(message::Column::Seq)
        .order_by_asc(message::Column::Id)
        .all(conn)
        .await?;
    let ids: Vec<MessageId> = rows.iter().map(|m| m.id).collect();
    let mut files: HashMap<MessageId, Vec<attachment::Model>> = HashMap::new();
    for a in attachment::Entity::find()
        .filter(attachment::Column::MessageId.is_in(ids.clone()))
        .order_by_asc(attachment::Column::Position)
        .all(conn)
        .await?
    {
        files.entry(a.message_id).or_default().push(a);
    }
    let originals: HashMap<MessageId, Vec<u8>> = original::Entity::find()
        .filter(original::Column::MessageId.is_in(ids))
        .all(conn)
        .await?
        .into_iter()
        .map(|o| (o.message_id, o.data))
        .collect();
    // What the case's purge records say they emptied: registration number → (purge record,
    // content hash, or none from a purge record that names numbers only).
    let mut purged_by: HashMap<i64, Vec<(i64, Option<String>)>> = HashMap::new();
    for m in &rows {
        let Some(purge_seq) = m.seq.map(i64::from) else {
            continue;
        };
        if m.kind != Some(MessageKind::Purge) || m.direction != Direction::Internal {
            continue;
        }
        match purge_list(&m.body) {
            PurgeList::Hashes(list) => {
                for (seq, hash) in list {
                    purged_by
                        .entry(seq)
                        .or_default()
                        .push((purge_seq, Some(hash)));
                }
            }
            PurgeList::NumbersOnly(seqs) => {
                out.push(Finding {
                    severity: Severity::Unproven,
                    ..finding(
                        purge_seq,
                        format!(
                            "this purge predates purge records that list content hashes: it \
                             names record(s) {} by number only, so what they held when purged \
                             rests on their own rows",
                            seqs.iter()
                                .map(i64::to_string)
                                .collect::<Vec<_>>()
                                .join(", ")
                        ),
                    )
                });
                for seq in seqs {
                    purged_by.entry(seq).or_default().push((purge_seq, None));
                }
            }
            PurgeList::Unreadable => out.push(finding(
                purge_seq,
                "a purge record whose list of what it removed cannot be read".into(),
            )),
        }
    }
    let empty = content_hash("", None, None, &Content::default());
    let mut expected_seq = 1i64;
    let mut prev: Option<String> = None;
    for m in &rows {
        let Some(seq) = m.seq.map(i64::from) else {
            out.push(finding(
                0,
                format!("row {} has no registration number", m.id),
            ));
            continue;
        };
        if seq > expected_seq {
            let missing = if seq - expected_seq == 1 {
                format!("record {expected_seq} is missing (deleted)")
            } else {
                format!(
                    "records {expected_seq} to {} are missing (deleted)",
                    seq - 1
                )
            };
            out.push(finding(expected_seq, missing));
        } else if seq < expected_seq {
            out.push(finding(seq, "registration number used twice".into()));
        }
        if m.prev_hash != prev {
            out.push(finding(
                seq,
                "does not follow the record before it (deleted, inserted or reordered records)"
                    .into(),
            ));
        }
        let content = Content {
            files: files
                .get(&m.id)
                .map(|v| {
                    v.iter()
                        .map(|a| (a.filename.as_str(), a.mime.as_str(), a.data.as_slice()))
                        .collect()
                })
                .unwrap_or_default(),
            original: originals.get(&m.id).map(Vec::as_slice),
        };
        let recomputed = content_hash(&m.body, m.html.as_deref(), m.subject.as_deref(), &content);
        // Only purge records later in the chain can have emptied it.
        let purges: Vec<&(i64, Option<String>)> = purged_by
            .get(&seq)
            .into_iter()
            .flatten()
            .filter(|(purge_seq, _)| *purge_seq > seq)
            .collect();
        if m.purged_at.is_none() {
            if m.content_hash.as_deref() != Some(recomputed.as_str()) {
                out.push(finding(
                    seq,
                    "its content was changed (text, HTML, subject, a file or the original)".into(),
                ));
            }
            if let Some((purge_seq, _)) = purges.first() {
                out.push(finding(
                    seq,
                    format!(
                        "purge record {purge_seq} removed its content, but it is not marked \
                         purged (its content was put back, or the mark taken off)"
                    ),
                ));
            }
        } else {
            // The mark is not hashed: what makes a purged row a purged one is that it is empty
            // and that a purge record in the chain says so, with the content hash it had.
            if recomputed != empty {
                out.push(finding(
                    seq,
                    "it is marked purged but holds content (text, HTML, subject, a file or the \
                     original): a purge leaves none"
                        .into(),
                ));
            }
            let named = purges
                .iter()
                .any(|(_, hash)| hash.is_some() && hash.as_deref() == m.content_hash.as_deref());
            let other = purges.iter().find(|(_, hash)| hash.is_some());
            let problem = match other {
                _ if named => None,
                Some((purge_seq, _)) => Some(format!(
                    "purge record {purge_seq} names another content hash for it: it was changed \
                     before or after the purge"
                )),
                // Named by number only: said once, at that purge record.
                None if !purges.is_empty() => None,
                None => Some(
                    "it is marked purged, but no purge record names it: its content was removed \
                     or changed outside a retention purge"
                        .to_owned(),
                ),
            };
            if let Some(problem) = problem {
                out.push(finding(seq, problem));
            }
        }
        if m.hash.as_deref() != Some(record_hash(&Fields::from(m)).as_str()) {
            out.push(finding(
                seq,
                "its registration data was changed (who, when, what kind, or its place)".into(),
            ));
        }
        prev = m.hash.clone();
        expected_seq = seq + 1;
    }
    out.sort_by_key(|f| f.seq);
    Ok(out)
}

#[cfg(test)]
mod tests;
