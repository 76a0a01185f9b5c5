use casebridge_bridges::{InboundMessage, RemoteAddress, RemoteMessageId};
use sea_orm::{ConnectionTrait, Set};

use super::*;
use crate::store::{message_row, MessageState, NewInbound, Store};

/// The record hash is over the words stored before the enums existed, byte for byte: a
/// chain written by an earlier version still verifies.
#[test]
fn the_record_hash_covers_the_stored_words_byte_for_byte() {
    use chrono::TimeZone;
    let at = Utc.with_ymd_and_hms(2026, 11, 29, 12, 0, 0).unwrap();
    let sent = at - chrono::Duration::milliseconds(1750);
    let inbound = Fields {
        case_id: CaseId(7),
        seq: Some(3),
        prev_hash: Some("ab"),
        direction: Direction::Inbound,
        kind: Some(MessageKind::Edit),
        identity_id: Some(IdentityId(2)),
        instance: "sms-1",
        channel: "sms",
        upstream_id: Some("m1"),
        sender: None,
        received_at: &at,
        sent_at: Some(&sent),
        content_hash: Some("cd"),
    };
    let canonical = r#"["casebridge-record-1",7,3,"ab","inbound","edit",2,"sms-1","sms","m1",null,"2026-11-29T12:00:00.000000Z","2026-11-29T11:59:58.250000Z","cd"]"#;
    assert_eq!(record_hash(&inbound), hex(canonical));
    assert_eq!(
        record_hash(&inbound),
        "9616de7d986f9f2a2298fb6a19b059d7204a394cc32e7d2b35d2263ac18a3f6b"
    );
    let outbound = Fields {
        seq: Some(4),
        direction: Direction::Outbound,
        kind: Some(MessageKind::AutoReply),
        upstream_id: Some("m2"),
        sender: Some("@anna:localhost"),
        sent_at: None,
        ..inbound
    };
    assert_eq!(
        record_hash(&outbound),
        "b7e1b78d15d97066252237477334e6e3f135b69a18b42c1bd9970614d1150c1e"
    );
}

#[test]
fn a_purge_record_lists_what_it_emptied_and_an_old_one_reads_as_numbers() {
    let text = purge_text(&[1, 3], &[(2, Some("aa")), (5, Some("bb"))]);
    assert!(
        text.starts_with(
            "Purged under retention rule 1, 3: the content of record(s) 2, 5 was removed;"
        ),
        "{text}"
    );
    assert_eq!(
        purge_list(&text),
        PurgeList::Hashes(vec![(2, "aa".into()), (5, "bb".into())])
    );
    let old = "Purged under retention rule 1: the content of record(s) 1, 2, 3 was removed; \
               their registration data and hashes are kept.";
    assert_eq!(purge_list(old), PurgeList::NumbersOnly(vec![1, 2, 3]));
    assert_eq!(purge_list("Purged, somehow"), PurgeList::Unreadable);
    assert_eq!(
        purge_list(&format!("{text}\nrecord two: cc")),
        PurgeList::Unreadable
    );
}

#[tokio::test]
async fn a_purge_from_before_the_lists_is_unproven_not_a_break() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("t.db").display());
    let store = Store::connect(&url, 1).await.unwrap();
    let items: Vec<_> = (1..=3)
        .map(|i| NewInbound {
            instance: "sms".into(),
            channel: "sms".into(),
            team: "social".into(),
            label: "SMS".into(),
            ghost_localpart: "_cb_sms_a".into(),
            message: InboundMessage {
                message_id: RemoteMessageId::new(format!("m{i}")),
                from: RemoteAddress::new("a"),
                display_name: "a".into(),
                body: format!("text {i}"),
                sent_at: Utc::now(),
                ..Default::default()
            },
        })
        .collect();
    store
        .record_inbound(&items, &Default::default())
        .await
        .unwrap();
    let case = store.cases().await.unwrap().pop().unwrap();
    // A purge of records 1 and 2 as the earlier versions wrote it.
    let db = store.connection();
    db.execute_unprepared(&format!(
        "UPDATE messages SET body = '', purged_at = '{}' WHERE seq IN (1, 2)",
        Utc::now().to_rfc3339()
    ))
    .await
    .unwrap();
    append_one(
        db,
        message::ActiveModel {
            kind: Set(Some(MessageKind::Purge)),
            ..message_row(
                case.id,
                Direction::Internal,
                MessageState::Recorded,
                "Purged under retention rule 1: the content of record(s) 1, 2 was removed; \
                 their registration data and hashes are kept.",
                Utc::now(),
            )
        },
    )
    .await
    .unwrap();
    let found = verify(db, &case).await.unwrap();
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!((found[0].seq, found[0].severity), (4, Severity::Unproven));
    assert!(
        found[0]
            .to_string()
            .contains("record 4: cannot be proven: this purge predates"),
        "{}",
        found[0]
    );
    // A word casebridge never writes is a break of that record, not a failed check.
    db.execute_unprepared("UPDATE messages SET direction = 'outgoing' WHERE seq = 2")
        .await
        .unwrap();
    let found = verify(db, &case).await.unwrap();
    assert!(
        found.iter().any(|f| f.seq == 2
            && f.is_break()
            && f.problem
                == "its direction \"outgoing\" is no word casebridge writes: the row was altered"),
        "{found:?}"
    );
    db.execute_unprepared("UPDATE messages SET direction = 'inbound' WHERE seq = 2")
        .await
        .unwrap();
    // What it cannot prove is what the content was; that a purged row is empty it can.
    db.execute_unprepared("UPDATE messages SET body = 'ändrat' WHERE seq = 1")
        .await
        .unwrap();
    let found = verify(db, &case).await.unwrap();
    assert!(
        found
            .iter()
            .any(|f| f.seq == 1 && f.is_break() && f.problem.contains("holds content")),
        "{found:?}"
    );
}
