//! Anchors: each case's last registration number and hash, written somewhere the records store
//! cannot rewrite (an append-only file the office keeps elsewhere, which
//! `casebridge records anchor >> FILE` adds to). The chain shows a record changed, deleted or moved inside a case, but not records
//! removed from its end, nor a chain recomputed from the point of a change on: whoever can
//! write the store can compute the hashes too. An anchor can be checked against: the record it
//! names must still be there with the same hash, which holds only if nothing up to it changed.
//!
//! One anchor a line: `CASE SEQ HASH ANCHORED_AT` (RFC 3339); blank lines and lines starting
//! with `#` are skipped, so the file can be annotated.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, SecondsFormat, Utc};
use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect};

use super::{
    case,
    chain::{Finding, Severity},
    message, StoreError,
};

/// A case's head as it was at a moment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Anchor {
    /// The case number.
    pub case: String,
    /// Its last registration number then.
    pub seq: i64,
    /// That record's hash.
    pub hash: String,
    /// When it was taken.
    pub at: DateTime<Utc>,
}

impl std::fmt::Display for Anchor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {} {} {}",
            self.case,
            self.seq,
            self.hash,
            self.at.to_rfc3339_opts(SecondsFormat::Secs, true)
        )
    }
}

/// Reads an anchor file; an unreadable line is an error naming it, not skipped: a file that
/// cannot be read in full must not pass for one that checks out.
pub fn parse(text: &str) -> Result<Vec<Anchor>, String> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let fields: Vec<&str> = line.split_whitespace().collect();
        let anchor = match fields[..] {
            [case, seq, hash, at] => (|| {
                Some(Anchor {
                    case: case.to_owned(),
                    seq: seq.parse().ok()?,
                    hash: hash.to_owned(),
                    at: DateTime::parse_from_rfc3339(at).ok()?.with_timezone(&Utc),
                })
            })(),
            _ => None,
        };
        out.push(anchor.ok_or_else(|| {
            format!(
                "line {}: expected `CASE SEQ HASH ANCHORED_AT`, found {line:?}",
                i + 1
            )
        })?);
    }
    Ok(out)
}

/// The head of every case with records, taken at `at`, oldest case first.
pub async fn heads<C: ConnectionTrait>(
    conn: &C,
    cases: &[case::Model],
    at: DateTime<Utc>,
) -> Result<Vec<Anchor>, StoreError> {
    let mut out = Vec::new();
    for case in cases {
        let head: Option<(Option<i32>, Option<String>)> = message::Entity::find()
            .select_only()
            .column(message::Column::Seq)
            .column(message::Column::Hash)
            .filter(message::Column::CaseId.eq(case.id))
            .filter(message::Column::Seq.is_not_null())
            .order_by_desc(message::Column::Seq)
            .into_tuple()
            .one(conn)
            .await?;
        if let Some((Some(seq), Some(hash))) = head {
            out.push(Anchor {
                case: case.number.clone(),
                seq: seq.into(),
                hash,
                at,
            });
        }
    }
    Ok(out)
}

/// Checks the store against `anchors`: every anchored record must still be there with the
/// anchored hash. A case the anchors name that is gone is named too.
pub async fn check<C: ConnectionTrait>(
    conn: &C,
    anchors: &[Anchor],
) -> Result<Vec<Finding>, StoreError> {
    let mut by_case: BTreeMap<&str, Vec<&Anchor>> = BTreeMap::new();
    for a in anchors {
        by_case.entry(&a.case).or_default().push(a);
    }
    let mut out = Vec::new();
    for (number, mut anchors) in by_case {
        anchors.sort_by_key(|a| (a.seq, a.at));
        // A daily anchor of a quiet case repeats the same head.
        anchors.dedup_by(|a, b| a.seq == b.seq && a.hash == b.hash);
        let last = anchors[anchors.len() - 1];
        let finding = |seq: i64, problem: String| Finding {
            case: number.to_owned(),
            seq,
            problem,
            severity: Severity::Break,
        };
        let Some(case) = case::Entity::find()
            .filter(case::Column::Number.eq(number))
            .one(conn)
            .await?
        else {
            out.push(finding(
                last.seq,
                format!(
                    "the case is missing (deleted): it was anchored with {} record(s) on {}",
                    last.seq,
                    day(last)
                ),
            ));
            continue;
        };
        let hashes: HashMap<i64, Option<String>> = message::Entity::find()
            .select_only()
            .column(message::Column::Seq)
            .column(message::Column::Hash)
            .filter(message::Column::CaseId.eq(case.id))
            .filter(message::Column::Seq.is_not_null())
            .into_tuple::<(Option<i32>, Option<String>)>()
            .all(conn)
            .await?
            .into_iter()
            .filter_map(|(seq, hash)| Some((i64::from(seq?), hash)))
            .collect();
        let end = hashes.keys().copied().max().unwrap_or(0);
        if end < last.seq {
            let first = end + 1;
            let which = if first == last.seq {
                format!("record {first} is missing")
            } else {
                format!("records {first} to {} are missing", last.seq)
            };
            out.push(finding(
                first,
                format!(
                    "{which} (deleted from the end of the case): the anchor of {} names record \
                     {} as its last, the store ends at record {end}",
                    day(last),
                    last.seq
                ),
            ));
        }
        for a in anchors.iter().filter(|a| a.seq <= end) {
            match hashes.get(&a.seq) {
                None => out.push(finding(
                    a.seq,
                    format!("the record anchored on {} is missing (deleted)", day(a)),
                )),
                Some(hash) if hash.as_deref() != Some(a.hash.as_str()) => out.push(finding(
                    a.seq,
                    format!(
                        "its hash is not the one anchored on {}: this record or one before it \
                         was changed and the chain recomputed",
                        day(a)
                    ),
                )),
                Some(_) => {}
            }
        }
    }
    Ok(out)
}

fn day(a: &Anchor) -> String {
    a.at.format("%Y-%m-%d %H:%M UTC").to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_anchor_line_reads_back_and_a_bad_line_is_named() {
        let a = Anchor {
            case: "2026-000001".into(),
            seq: 6,
            hash: "ab".repeat(32),
            at: DateTime::parse_from_rfc3339("2026-11-29T14:30:00Z")
                .unwrap()
                .with_timezone(&Utc),
        };
        let text = format!("# daily, kept on the archive share\n\n{a}\n");
        assert_eq!(parse(&text).unwrap(), vec![a.clone()]);
        let err = parse(&format!("{a}\n2026-000002 six x 2026-11-29T14:30:00Z\n")).unwrap_err();
        assert!(err.starts_with("line 2:"), "{err}");
    }
}
