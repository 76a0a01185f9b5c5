//! The store end to end on SQLite: batches, duplicates, routing, policies, the chain.

use casebridge_bridges::{Accepted, InboundMessage, RemoteAddress, RemoteMessageId};
use chrono::Datelike;

use std::collections::BTreeSet;

use super::*;
use crate::policy::Policies;

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
async fn the_policies_act_in_the_batch_and_a_once_reply_goes_once() {
    let config = casebridge_config::Config::from_toml_str(
        r#"
        [homeserver]
        url = "http://127.0.0.1:8008"
        server_name = "example.org"
        [appservice]
        id = "cb"
        listen = "127.0.0.1:0"
        url = "http://127.0.0.1:1"
        as_token = "a"
        hs_token = "h"
        [teams.social]
        members = ["@anna:example.org"]
        auto_reply = { acknowledge = true }
        emergency = { keywords = ["help me now"], alert_room = "!alerts:example.org" }
        "#,
    )
    .unwrap();
    let policies = Policies::load(&config).unwrap();
    let store = Store::connect("sqlite::memory:", 1).await.unwrap();
    let mut urgent = inbound("m3", "a");
    urgent.message.body = "please help me now".into();
    let recorded = store
        .record_inbound(&[inbound("m1", "a"), inbound("m2", "a"), urgent], &policies)
        .await
        .unwrap();
    assert_eq!(recorded.wake, BTreeSet::from(["sms".to_owned()]));
    let case = store.cases().await.unwrap().remove(0);
    let records: Vec<_> = store
        .messages(case.id)
        .await
        .unwrap()
        .into_iter()
        .map(|m| (m.direction, m.kind, m.state))
        .collect();
    use {Direction as D, MessageKind as K, MessageState as S};
    assert_eq!(
        records,
        [
            (D::Inbound, None, S::Received),
            (D::Inbound, None, S::Received),
            (D::Inbound, None, S::Received),
            // m1: acknowledged once for the period; m2's mark is taken already.
            (D::Outbound, Some(K::Acknowledgement), S::Queued),
            (D::Notice, None, S::Received),
            // m3: the emergency numbers, the notice that says they went, the alert.
            (D::Outbound, Some(K::EmergencyReply), S::Queued),
            (D::Notice, Some(K::Emergency), S::Received),
            (D::Alert, Some(K::Emergency), S::Received),
            (D::Notice, None, S::Received),
        ]
    );
    let messages = store.messages(case.id).await.unwrap();
    assert!(messages[6]
        .body
        .contains("The client was sent the emergency numbers."));
    assert_eq!(
        chain::verify(store.connection(), &case).await.unwrap(),
        vec![]
    );
    // The mark outlives the batch.
    store
        .record_inbound(&[inbound("m4", "a")], &policies)
        .await
        .unwrap();
    assert_eq!(store.messages(case.id).await.unwrap().len(), 10);
}

#[tokio::test]
async fn new_addresses_join_by_invitation_or_answer_and_open_cases_otherwise() {
    let store = Store::connect("sqlite::memory:", 1).await.unwrap();
    store
        .record_inbound(&[inbound("m1", "a")], &Policies::default())
        .await
        .unwrap();
    let first = store.cases().await.unwrap().remove(0);
    let (token, _) = Store::create_invitation(store.connection(), first.id, "sms", "@anna:x", 7)
        .await
        .unwrap();
    let identity = store.identities(first.id).await.unwrap().remove(0);
    Store::record_outbound(
        store.connection(),
        NewOutbound {
            case_id: first.id,
            identity,
            event_id: "$reply".into(),
            sender: "@anna:x".into(),
            body: "hello".into(),
            html: None,
            parts: None,
            label: "SMS".into(),
            language: casebridge_config::Language::En,
            held: false,
            attachments: Vec::new(),
        },
    )
    .await
    .unwrap();
    let item = store.due(Target::Bridge, "sms", 1).await.unwrap().remove(0);
    store.sent(&item, Some("out-1")).await.unwrap();

    let mut invited = inbound("m2", "x");
    invited.message.invitation = Some(token.clone());
    let mut again = inbound("m3", "y");
    again.message.invitation = Some(token);
    let mut answering = inbound("m4", "w");
    answering.message.references = vec!["out-1".into()];
    let mut naming = inbound("m5", "z");
    naming.message.case_hint = Some("2026-000009".into());
    let answers = store
        .record_inbound(
            &[invited, again, answering, naming, inbound("m6", "x")],
            &Policies::default(),
        )
        .await
        .unwrap()
        .answers;
    let year = Utc::now().year();
    let number = |n: u32| Accepted::Recorded {
        case_number: format!("{year}-{n:06}"),
    };
    assert_eq!(
        answers,
        [number(1), number(2), number(1), number(3), number(1)]
    );
    let mut notices = Vec::new();
    for case in store.cases().await.unwrap().into_iter().rev() {
        assert_eq!(
            chain::verify(store.connection(), &case).await.unwrap(),
            vec![]
        );
        for m in store.messages(case.id).await.unwrap() {
            if m.direction == Direction::Notice {
                notices.push((case.number.clone(), m.body));
            }
        }
    }
    let short: Vec<_> = notices
        .iter()
        .map(|(case, body)| (case.as_str(), &body[..body.find(',').unwrap()]))
        .collect();
    let (one, two, three) = (
        format!("{year}-000001"),
        format!("{year}-000002"),
        format!("{year}-000003"),
    );
    assert_eq!(
        short,
        [
            (one.as_str(), "x opened the invitation made for this case"),
            (one.as_str(), "w wrote for the first time"),
            (
                two.as_str(),
                "y came with an invitation link that was used already"
            ),
            (three.as_str(), "This message names case 2026-000009"),
        ]
    );
    // Replies go where the client wrote last: x, the batch's last message to case 1.
    let first = store.case(first.id).await.unwrap();
    let last = Store::identity(store.connection(), first.last_identity_id.unwrap())
        .await
        .unwrap();
    assert_eq!(last.address, "x");
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

/// The contacts cache holds only the senders seen last; one that fell out is found in the
/// store again, in the same case.
#[tokio::test]
async fn senders_past_the_contacts_cache_keep_their_cases() {
    let mut store = Store::connect("sqlite::memory:", 1).await.unwrap();
    store.contacts = Arc::new(Cache::new(2));
    let policies = Policies::default();
    let number = |recorded: Recorded| match &recorded.answers[..] {
        [Accepted::Recorded { case_number }] => case_number.clone(),
        other => panic!("{other:?}"),
    };
    let mut first = Vec::new();
    for (i, from) in ["a", "b", "c", "d"].into_iter().enumerate() {
        let id = format!("first-{i}");
        first.push(number(
            store
                .record_inbound(&[inbound(&id, from)], &policies)
                .await
                .unwrap(),
        ));
    }
    assert_eq!(store.contacts.len(), 2, "bounded");
    for (i, from) in ["a", "b", "c", "d"].into_iter().enumerate() {
        let id = format!("again-{i}");
        let again = number(
            store
                .record_inbound(&[inbound(&id, from)], &policies)
                .await
                .unwrap(),
        );
        assert_eq!(again, first[i], "{from} stays in its case");
    }
    assert_eq!(store.cases().await.unwrap().len(), 4);
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
