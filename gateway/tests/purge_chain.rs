//! Purged records in the chain: a purge is provable, and the mark of one hides nothing.

use casebridge_bridges::{InboundMessage, RemoteAddress, RemoteMessageId};
use casebridge_config::{RetentionConfig, RetentionRule, RetentionStatus};
use casebridge_gateway::store::{case, chain, message, MessageKind, NewInbound, Store};
use sea_orm::ConnectionTrait;

/// A closed case of four client messages, closed three years ago.
async fn closed_case(dir: &std::path::Path) -> (Store, case::Model) {
    let store = Store::connect(&format!("sqlite://{}", dir.join("cb.db").display()), 1)
        .await
        .unwrap();
    let items: Vec<_> = (1..=4)
        .map(|i| NewInbound {
            instance: "sms".into(),
            channel: "sms".into(),
            team: "socialtjanst".into(),
            label: "SMS".into(),
            ghost_localpart: "_cb_sms_x".into(),
            message: InboundMessage {
                message_id: RemoteMessageId::new(format!("m{i}")),
                from: RemoteAddress::new("+46701234567"),
                display_name: "+46 70 123 45 67".into(),
                body: format!("Hemligt {i}"),
                sent_at: chrono::Utc::now(),
                ..Default::default()
            },
        })
        .collect();
    store
        .record_inbound(&items, &Default::default())
        .await
        .unwrap();
    let closed = (chrono::Utc::now() - chrono::Duration::days(3 * 365)).to_rfc3339();
    store
        .connection()
        .execute_unprepared(&format!(
            "UPDATE cases SET status = 'closed', closed_at = '{closed}'"
        ))
        .await
        .unwrap();
    let case = store.cases().await.unwrap().pop().unwrap();
    (store, case)
}

async fn record(store: &Store, case: &case::Model, seq: i32) -> message::Model {
    store
        .messages(case.id)
        .await
        .unwrap()
        .into_iter()
        .find(|m| m.seq == Some(seq))
        .unwrap()
}

async fn sql(store: &Store, statement: String) {
    store
        .connection()
        .execute_unprepared(&statement)
        .await
        .unwrap();
}

/// The problems verify names at each registration number.
async fn problems(store: &Store, case: &case::Model) -> Vec<(i64, String)> {
    chain::verify(store.connection(), case)
        .await
        .unwrap()
        .into_iter()
        .map(|f| (f.seq, f.problem))
        .collect()
}

fn named(found: &[(i64, String)], seq: i64, problem: &str) -> bool {
    found.iter().any(|(s, p)| *s == seq && p.contains(problem))
}

#[tokio::test]
async fn a_purged_mark_does_not_hide_an_edit() {
    let dir = tempfile::tempdir().unwrap();
    let (store, case) = closed_case(dir.path()).await;
    assert_eq!(problems(&store, &case).await, vec![]);
    let second = record(&store, &case, 2).await;
    let now = chrono::Utc::now().to_rfc3339();
    // Record 2's text changed, and the row marked purged so that its content goes unchecked.
    sql(
        &store,
        format!(
            "UPDATE messages SET body = 'Ändrat', purged_at = '{now}' WHERE id = {}",
            second.id
        ),
    )
    .await;
    // Record 3 emptied outside any purge.
    let third = record(&store, &case, 3).await;
    sql(
        &store,
        format!(
            "UPDATE messages SET body = '', purged_at = '{now}' WHERE id = {}",
            third.id
        ),
    )
    .await;
    let found = problems(&store, &case).await;
    assert!(
        named(&found, 2, "marked purged but holds content"),
        "{found:?}"
    );
    assert!(named(&found, 2, "no purge record names it"), "{found:?}");
    assert!(named(&found, 3, "no purge record names it"), "{found:?}");
    assert!(!found.iter().any(|(s, _)| *s == 1 || *s == 4), "{found:?}");
}

#[tokio::test]
async fn a_retention_purge_names_what_it_purged_and_verifies() {
    let dir = tempfile::tempdir().unwrap();
    let (store, case) = closed_case(dir.path()).await;
    let before: Vec<message::Model> = store.messages(case.id).await.unwrap();
    let retention = RetentionConfig {
        rules: vec![RetentionRule {
            records: vec!["inbound".into()],
            status: RetentionStatus::Closed,
            after_days: 730,
        }],
    };
    let due = store
        .retention_due(&retention, chrono::Utc::now())
        .await
        .unwrap();
    assert_eq!(due.len(), 4);
    // Records 1 and 2 now, 3 and 4 by a second purge.
    store.purge(&due[..2]).await.unwrap();
    store.purge(&due[2..]).await.unwrap();
    assert_eq!(problems(&store, &case).await, vec![]);

    let purges: Vec<message::Model> = store
        .messages(case.id)
        .await
        .unwrap()
        .into_iter()
        .filter(|m| m.kind == Some(MessageKind::Purge))
        .collect();
    assert_eq!(purges.len(), 2);
    for (purge, seqs) in purges.iter().zip([[1, 2], [3, 4]]) {
        assert!(
            purge.body.starts_with("Purged under retention rule 1"),
            "{}",
            purge.body
        );
        for seq in seqs {
            let hash = before[seq - 1].content_hash.clone().unwrap();
            assert!(
                purge.body.contains(&format!("record {seq}: {hash}")),
                "purge record {:?} names record {seq} with its content hash:\n{}",
                purge.seq,
                purge.body
            );
        }
    }

    // A purged record's text put back, or changed.
    let first = record(&store, &case, 1).await;
    sql(
        &store,
        format!(
            "UPDATE messages SET body = 'Hemligt 1' WHERE id = {}",
            first.id
        ),
    )
    .await;
    let found = problems(&store, &case).await;
    assert!(
        named(&found, 1, "marked purged but holds content"),
        "{found:?}"
    );
    assert_eq!(found.len(), 1, "{found:?}");
    sql(
        &store,
        format!("UPDATE messages SET body = '' WHERE id = {}", first.id),
    )
    .await;
    assert_eq!(problems(&store, &case).await, vec![]);

    // The mark taken off a purged record.
    sql(
        &store,
        format!(
            "UPDATE messages SET purged_at = NULL WHERE id = {}",
            record(&store, &case, 2).await.id
        ),
    )
    .await;
    let found = problems(&store, &case).await;
    assert!(named(&found, 2, "is not marked purged"), "{found:?}");
}
