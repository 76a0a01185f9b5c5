//! The path of a message: channel -> case room -> reply -> channel, on SQLite and PostgreSQL.

use std::time::Duration;

use casebridge_gateway::store::{Direction, MessageState};
use casebridge_tests::eventually;
use serde_json::json;

use crate::{Db, Stack};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_trip_on_sqlite() {
    round_trip(Db::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_trip_on_postgres() {
    round_trip(Db::Postgres).await;
}

async fn round_trip(db: Db) {
    let mut stack = Stack::new(db, "roundtrip").await;
    let gateway = stack.start_gateway().await;

    // A client we have never heard from writes.
    stack
        .spool
        .put("sms-1", "+46701234567", "Hej, jag behöver hjälp med hyran.");
    let room = stack.join_case_room().await;
    let inbound = stack
        .ghost_messages(&room, 1, Duration::from_secs(10))
        .await;

    // The room is the case's: named after the contact and channel, case number in the topic,
    // the team invited, the ghost joined and speaking.
    let name = stack.worker.state(&room, "m.room.name", "").await.unwrap();
    assert_eq!(name["name"], "+46701234567 (Loopback)");
    let topic = stack.worker.state(&room, "m.room.topic", "").await.unwrap();
    let year = chrono::Utc::now().format("%Y").to_string();
    assert!(
        topic["topic"]
            .as_str()
            .unwrap()
            .contains(&format!("Case {year}-000001")),
        "{topic}"
    );
    let members = stack.worker.members(&room).await;
    let ghost = "@_cb_loop_=2b46701234567:localhost";
    assert!(
        members.contains(&(ghost.to_owned(), "join".to_owned())),
        "{members:?}"
    );
    assert!(
        members.contains(&("@bo:localhost".to_owned(), "invite".to_owned())),
        "{members:?}"
    );
    assert_eq!(
        stack.worker.display_name(ghost).await.as_deref(),
        Some("+46701234567 (Loopback)")
    );
    assert_eq!(inbound[0]["sender"], ghost);
    assert_eq!(
        inbound[0]["content"]["body"],
        "Hej, jag behöver hjälp med hyran."
    );

    // A second message from the same client lands in the same room.
    stack.spool.put("sms-2", "+46701234567", "Är ni där?");
    stack
        .ghost_messages(&room, 2, Duration::from_secs(10))
        .await;

    // The worker answers as a reply (whose fallback quotes the client and names the worker's
    // client's view) with a formatted body.
    let original = inbound[0]["event_id"].as_str().unwrap();
    stack
        .worker
        .send(
            &room,
            json!({
                "msgtype": "m.text",
                "body": format!("> <{ghost}> Hej, jag behöver hjälp med hyran.\n\nVi ringer dig i morgon kl. 10."),
                "format": "org.matrix.custom.html",
                "formatted_body": format!(
                    "<mx-reply><blockquote><a href=\"https://matrix.to/#/{room}/{original}\">In reply to</a> \
                     <a href=\"https://matrix.to/#/@anna:localhost\">@anna:localhost</a><br>Hej</blockquote></mx-reply>\
                     Vi ringer dig i morgon kl. 10."
                ),
                "m.relates_to": {"m.in_reply_to": {"event_id": original}},
            }),
        )
        .await;
    let delivered = eventually(
        Duration::from_secs(10),
        "the reply at the loopback client",
        || async {
            let outbox = stack.spool.outbox();
            (!outbox.is_empty()).then_some(outbox)
        },
    )
    .await;
    assert_eq!(delivered.len(), 1, "{delivered:?}");
    assert_eq!(delivered[0].to, "+46701234567");
    assert_eq!(delivered[0].body, "Vi ringer dig i morgon kl. 10.");
    assert_eq!(
        delivered[0].html.as_deref(),
        Some("Vi ringer dig i morgon kl. 10.")
    );
    for line in &delivered {
        let all = format!("{} {:?}", line.body, line.html);
        assert!(
            !all.contains("anna") && !all.contains("@") && !all.contains("localhost"),
            "{all}"
        );
    }

    // Someone who is not on the team is refused with a notice, and nothing goes out.
    let mut eve = casebridge_tests::Worker::login(&stack.synapse.url, "eve", "eve-password").await;
    // Eve is invited by a team member (e.g. by mistake) and joins.
    stack.worker.invite(&room, &eve.user_id).await;
    eve.join(&room).await;
    eve.send_text(&room, "Ring mig privat på 070-000 00 00")
        .await;
    stack
        .wait_for_notice(&room, "a refusal notice", |n| {
            n.contains("Only members of team social")
        })
        .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        stack.spool.outbox().len(),
        1,
        "a non-member's message went out"
    );

    // Both directions are in the records.
    let store = gateway.store().clone();
    let case = store
        .case_by_number(&format!("{year}-000001"))
        .await
        .unwrap()
        .unwrap();
    let messages = store.messages(case.id).await.unwrap();
    let kinds: Vec<_> = messages.iter().map(|m| (m.direction, m.state)).collect();
    assert_eq!(
        kinds,
        [
            (Direction::Inbound, MessageState::Relayed),
            (Direction::Inbound, MessageState::Relayed),
            (Direction::Outbound, MessageState::Sent),
            (Direction::Notice, MessageState::Relayed)
        ],
        "{messages:#?}"
    );
    assert_eq!(messages[2].sender.as_deref(), Some("@anna:localhost"));

    // What bridges keep between runs (an IMAP cursor), replaced in place, on either store.
    {
        use casebridge_bridges::BridgeState;
        let store = gateway.store();
        assert_eq!(store.get("loop", "imap:INBOX").await.unwrap(), None);
        store.set("loop", "imap:INBOX", "7:1").await.unwrap();
        store.set("loop", "imap:INBOX", "7:2").await.unwrap();
        store.set("other", "imap:INBOX", "9:9").await.unwrap();
        assert_eq!(
            store.get("loop", "imap:INBOX").await.unwrap().as_deref(),
            Some("7:2")
        );
    }
    gateway.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_reach_the_room_and_the_record() {
    let mut stack = Stack::new(Db::Sqlite, "files").await;
    let gateway = stack.start_gateway().await;
    // A PNG whose text chunk says where it was taken, and a PDF-ish document, with text.
    let chunk = |kind: &[u8; 4], data: Vec<u8>| {
        img_parts::png::PngChunk::new(*kind, img_parts::Bytes::from(data))
            .encoder()
            .bytes()
            .to_vec()
    };
    let mut clean_png = b"\x89PNG\r\n\x1a\n".to_vec();
    clean_png.extend(chunk(b"IHDR", vec![0, 0, 0, 1, 0, 0, 0, 1, 8, 6, 0, 0, 0]));
    let idat = chunk(b"IDAT", (0..2048u32).map(|i| (i * 7 % 251) as u8).collect());
    let iend = chunk(b"IEND", Vec::new());
    let mut png = clean_png.clone();
    png.extend(chunk(
        b"tEXt",
        b"GPSLatitude\x00 59.3293 N, Storgatan 4".to_vec(),
    ));
    png.extend(&idat);
    png.extend(&iend);
    clean_png.extend(&idat);
    clean_png.extend(&iend);
    let pdf = b"%PDF-1.4 beslut om bistand".to_vec();
    stack.spool.put_with_files(
        "f-1",
        "+46700000009",
        "Här är beslutet och en bild.",
        &[
            ("bild.png", "image/png", &png),
            ("beslut.pdf", "application/pdf", &pdf),
        ],
    );
    let room = stack.join_case_room().await;
    let events = stack
        .ghost_messages(&room, 3, Duration::from_secs(20))
        .await;
    assert_eq!(events[0]["content"]["body"], "Här är beslutet och en bild.");
    assert_eq!(events[1]["content"]["msgtype"], "m.image");
    assert_eq!(events[1]["content"]["body"], "bild.png");
    assert_eq!(events[1]["content"]["info"]["mimetype"], "image/png");
    assert_eq!(events[1]["content"]["info"]["size"], clean_png.len());
    assert_eq!(events[2]["content"]["msgtype"], "m.file");
    assert_eq!(events[2]["content"]["body"], "beslut.pdf");
    let image = stack
        .worker
        .download(events[1]["content"]["url"].as_str().unwrap())
        .await;
    assert_eq!(image, clean_png, "the room's copy has no location data");
    let doc = stack
        .worker
        .download(events[2]["content"]["url"].as_str().unwrap())
        .await;
    assert_eq!(doc, pdf);

    // A file alone, with no text, is one event.
    stack.spool.put_with_files(
        "f-2",
        "+46700000009",
        "",
        &[("röst.ogg", "audio/ogg", b"OggS....")],
    );
    let events = stack
        .ghost_messages(&room, 4, Duration::from_secs(20))
        .await;
    assert_eq!(events[3]["content"]["msgtype"], "m.audio");

    // The record keeps both files whole, and the summary the export shows.
    let store = gateway.store();
    let case = store.cases().await.unwrap().remove(0);
    let message = store.messages(case.id).await.unwrap().remove(0);
    let summary = message.attachments.clone().unwrap();
    assert_eq!(summary[0]["filename"], "bild.png");
    assert_eq!(summary[1]["size"], pdf.len());
    let files = store.attachments(message.id).await.unwrap();
    assert_eq!(files.len(), 2);
    assert_eq!(files[0].data, png);
    assert!(files.iter().all(|f| f
        .mxc_uri
        .as_deref()
        .is_some_and(|u| u.starts_with("mxc://localhost/"))));
    gateway.shutdown().await;
}
