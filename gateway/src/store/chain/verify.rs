//! Checking a chain: every case's records recomputed and held to their hashes, each purged row
//! to the purge record that emptied it, and each stored word to the words casebridge writes.

use std::collections::HashMap;

use sea_orm::{
    ActiveEnum, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect,
};

use super::{
    attachment, case, content_hash, message, original, purge_list, record_hash, CaseId, Content,
    Direction, Fields, MessageId, MessageKind, MessageState, PurgeList, StoreError,
};

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
    let purged_by = purges_named(&rows, &finding, &mut out);
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
        for problem in content_problems(m, &recomputed, &empty, &purges) {
            out.push(finding(seq, problem));
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

/// What a case's purge records say they emptied: registration number → (purge record, content
/// hash, or none from a purge record that names numbers only).
type PurgedBy = HashMap<i64, Vec<(i64, Option<String>)>>;

/// The purge lists of `rows`' purge records; a list that cannot be read, or names numbers only,
/// is a finding in `out`.
fn purges_named(
    rows: &[message::Model],
    finding: &dyn Fn(i64, String) -> Finding,
    out: &mut Vec<Finding>,
) -> PurgedBy {
    let mut purged_by: PurgedBy = HashMap::new();
    for m in rows {
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
    purged_by
}

/// What is wrong with record `m`'s content, recomputed as `recomputed` (`empty`: the hash of no
/// content), given the purge records later in the chain that name it (`purges`).
fn content_problems(
    m: &message::Model,
    recomputed: &str,
    empty: &str,
    purges: &[&(i64, Option<String>)],
) -> Vec<String> {
    let mut problems = Vec::new();
    if m.purged_at.is_none() {
        if m.content_hash.as_deref() != Some(recomputed) {
            problems.push(
                "its content was changed (text, HTML, subject, a file or the original)".into(),
            );
        }
        if let Some((purge_seq, _)) = purges.first() {
            problems.push(format!(
                "purge record {purge_seq} removed its content, but it is not marked purged (its \
                 content was put back, or the mark taken off)"
            ));
        }
        return problems;
    }
    // The mark is not hashed: what makes a purged row a purged one is that it is empty and
    // that a purge record in the chain says so, with the content hash it had.
    if recomputed != empty {
        problems.push(
            "it is marked purged but holds content (text, HTML, subject, a file or the \
             original): a purge leaves none"
                .into(),
        );
    }
    let named = purges
        .iter()
        .any(|(_, hash)| hash.is_some() && hash.as_deref() == m.content_hash.as_deref());
    let other = purges.iter().find(|(_, hash)| hash.is_some());
    match other {
        _ if named => {}
        Some((purge_seq, _)) => problems.push(format!(
            "purge record {purge_seq} names another content hash for it: it was changed before \
             or after the purge"
        )),
        // Named by number only: said once, at that purge record.
        None if !purges.is_empty() => {}
        None => problems.push(
            "it is marked purged, but no purge record names it: its content was removed or \
             changed outside a retention purge"
                .to_owned(),
        ),
    }
    problems
}
