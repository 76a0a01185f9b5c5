//! The Telegram bridge against a Bot API double and a real Synapse.

use std::time::Duration;

use casebridge_gateway::store::CaseStatus;
use casebridge_tests::{
    eventually,
    telegram::{TelegramDouble, TOKEN},
};

use crate::{Db, Stack};

async fn telegram_stack(name: &str) -> (Stack, TelegramDouble) {
    let mut stack = Stack::new(Db::Sqlite, name).await;
    let double = TelegramDouble::start().await;
    stack.setup.extra = format!(
        "[bridges.tg]\nkind = \"telegram\"\nteam = \"social\"\ntoken = \"{TOKEN}\"\napi_url = \"{}\"\npoll_seconds = 1\n",
        double.url
    );
    (stack, double)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn telegram_text_in_reply_out_edits_blocks_and_rate_limits() {
    let (mut stack, telegram) = telegram_stack("telegram").await;
    let gateway = stack.start_gateway().await;

    let chat = 777_000_111;
    let first = telegram.client_writes(
        chat,
        "Olena",
        "olena_k",
        "Добрий день! Мені потрібна допомога.",
    );
    let room = stack.join_case_room().await;
    let messages = stack
        .ghost_messages(&room, 1, Duration::from_secs(20))
        .await;
    assert_eq!(
        messages[0]["content"]["body"],
        "Добрий день! Мені потрібна допомога."
    );
    let ghost = messages[0]["sender"].as_str().unwrap().to_owned();
    assert_eq!(
        stack.worker.display_name(&ghost).await.as_deref(),
        Some("Olena (@olena_k) (Telegram)")
    );
    // Confirmed to Telegram only once recorded.
    eventually(Duration::from_secs(10), "the update confirmed", || async {
        (telegram.unconfirmed() == 0).then_some(())
    })
    .await;

    // The reply: one sendMessage to the right chat, from the bot, naming no worker.
    stack
        .worker
        .send_text(&room, "Добрий день! Ми зателефонуємо завтра.")
        .await;
    let sent = eventually(Duration::from_secs(20), "the reply at Telegram", || async {
        let sent = telegram.sent();
        (!sent.is_empty()).then_some(sent)
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(telegram.sent().len(), 1);
    assert_eq!(sent[0]["chat_id"], chat);
    assert_eq!(sent[0]["text"], "Добрий день! Ми зателефонуємо завтра.");

    // A reply longer than Telegram carries (4,096 characters) goes as consecutive messages,
    // cut between words, nothing lost; the double refuses anything longer, as Telegram does.
    let long = (1..=700)
        .map(|i| format!("ord{i:03}"))
        .collect::<Vec<_>>()
        .join(" ");
    assert!(long.chars().count() > 4096);
    stack.worker.send_text(&room, &long).await;
    let parts = eventually(Duration::from_secs(20), "the long reply", || async {
        let sent = telegram.sent();
        (sent.len() == 3).then_some(sent[1..].to_vec())
    })
    .await;
    let texts: Vec<&str> = parts.iter().map(|p| p["text"].as_str().unwrap()).collect();
    assert!(texts.iter().all(|t| t.chars().count() <= 4096), "{texts:?}");
    assert!(texts[0].ends_with(' '), "cut after a word");
    assert_eq!(texts.concat(), long);

    // An edit reaches the room as an edit (m.replace) of the client's message.
    telegram.client_edits(
        chat,
        first,
        "Olena",
        "olena_k",
        "Добрий день! Потрібна допомога з житлом.",
    );
    let messages = stack
        .ghost_messages(&room, 2, Duration::from_secs(20))
        .await;
    let edit = &messages[1]["content"];
    assert_eq!(edit["m.relates_to"]["rel_type"], "m.replace", "{edit}");
    assert_eq!(edit["m.relates_to"]["event_id"], messages[0]["event_id"]);
    assert_eq!(
        edit["m.new_content"]["body"],
        "Добрий день! Потрібна допомога з житлом."
    );

    // Rate limited: the reply waits retry_after and goes once.
    telegram.rate_limit_next(2);
    stack.worker.send_text(&room, "Друга відповідь.").await;
    let sent = eventually(
        Duration::from_secs(20),
        "the reply after the rate limit",
        || async {
            let sent = telegram.sent();
            (sent.len() == 4).then_some(sent)
        },
    )
    .await;
    assert_eq!(sent[3]["text"], "Друга відповідь.");
    assert!(telegram
        .refused()
        .contains(&("sendmessage".to_owned(), 429)));

    // The client blocked the bot: a notice, nothing retried.
    telegram.block(chat);
    stack.worker.send_text(&room, "Ви тут?").await;
    stack
        .wait_for_notice(&room, "the blocked notice", |n| {
            n.starts_with(
                "Not delivered to the client (Telegram): the client has blocked the office's bot",
            )
        })
        .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        telegram.refused().iter().filter(|(_, s)| *s == 403).count(),
        1,
        "a blocked bot is not retried"
    );
    // The case is flagged until the client writes again.
    stack.worker.send_text(&room, "!case").await;
    stack
        .wait_for_notice(&room, "the flag in !case", |n| {
            n.starts_with("Case ") && n.contains("⚠ unreachable: the client has blocked")
        })
        .await;
    telegram.client_writes(chat, "Olena", "olena_k", "Вибачте, я розблокувала.");
    stack
        .ghost_messages(&room, 3, Duration::from_secs(20))
        .await;
    let case = gateway.store().cases().await.unwrap().remove(0);
    let identities = gateway.store().identities(case.id).await.unwrap();
    assert_eq!(
        identities[0].unreachable, None,
        "writing again clears the flag"
    );
    gateway.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_in_the_middle_of_100_updates() {
    let (mut stack, telegram) = telegram_stack("telegramrestart").await;
    let gateway = stack.start_gateway().await;
    telegram.client_writes(900, "Ivan", "ivan", "0");
    let room = stack.join_case_room().await;
    stack
        .ghost_messages(&room, 1, Duration::from_secs(20))
        .await;
    for i in 1..=50 {
        telegram.client_writes(900, "Ivan", "ivan", &i.to_string());
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    gateway.shutdown().await;
    for i in 51..=100 {
        telegram.client_writes(900, "Ivan", "ivan", &i.to_string());
    }
    let gateway = stack.start_gateway().await;
    let messages = stack
        .ghost_messages(&room, 101, Duration::from_secs(60))
        .await;
    let got: Vec<u32> = messages
        .iter()
        .map(|m| m["content"]["body"].as_str().unwrap().parse().unwrap())
        .collect();
    assert_eq!(
        got,
        (0..=100).collect::<Vec<_>>(),
        "each update once, in order"
    );
    gateway.shutdown().await;
}

/// The link in an `!invite` notice.
fn invitation_link(notice: &str) -> String {
    notice
        .split_whitespace()
        .find(|w| w.starts_with("https://t.me/"))
        .expect("a t.me link")
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_both_ways_invitations_and_merged_cases() {
    let (mut stack, telegram) = telegram_stack("telegramfiles").await;
    let gateway = stack.start_gateway().await;

    // A client on another channel; the worker invites them to Telegram.
    stack
        .spool
        .put("l1", "klara", "Hej, kan vi ta det på Telegram?");
    let room = stack.join_case_room().await;
    stack
        .ghost_messages(&room, 1, Duration::from_secs(20))
        .await;
    stack.worker.send_text(&room, "!invite telegram").await;
    let notice = stack
        .wait_for_notice(&room, "the invitation", |n| {
            n.starts_with("Invitation for the client on Telegram: ")
        })
        .await;
    let link = invitation_link(&notice);
    let token = link
        .strip_prefix("https://t.me/office_bot?start=")
        .unwrap_or_else(|| panic!("{link}"));
    assert!(token.len() >= 20 && token.bytes().all(|b| b.is_ascii_lowercase()));

    // The client opens the link: /start TOKEN from a new chat joins this case.
    let chat = 555_000_001;
    telegram.client_writes(chat, "Klara", "klara_k", &format!("/start {token}"));
    let messages = stack
        .ghost_messages(&room, 2, Duration::from_secs(20))
        .await;
    assert_eq!(
        messages[1]["content"]["body"],
        format!("[the client started the bot with the office's link: {token}]")
    );
    stack
        .wait_for_notice(&room, "the joined chat", |n| {
            n.starts_with("Klara (@klara_k) opened the invitation made for this case")
        })
        .await;

    // A photo with its location: in the room as an image, without the location.
    let photo = casebridge_tests::jpeg_with_gps();
    telegram.client_sends_photo(chat, "Klara", &photo, "");
    let messages = stack
        .ghost_messages(&room, 3, Duration::from_secs(20))
        .await;
    assert_eq!(
        messages[2]["content"]["msgtype"], "m.image",
        "{}",
        messages[2]
    );
    let mxc = messages[2]["content"]["url"].as_str().unwrap();
    let shown = stack.worker.download(mxc).await;
    assert!(
        shown.starts_with(&[0xFF, 0xD8]) && shown.ends_with(&[0x12, 0x34, 0x56, 0x78, 0xFF, 0xD9])
    );
    assert!(
        !String::from_utf8_lossy(&shown).contains("GPS"),
        "no location"
    );

    // A document over what a bot may fetch (20 MB) is named, not carried.
    let big = vec![b'x'; 21 * 1024 * 1024];
    telegram.client_sends_document(chat, "Klara", "kontoutdrag.pdf", "application/pdf", &big);
    let messages = stack
        .ghost_messages(&room, 4, Duration::from_secs(20))
        .await;
    let body = messages[3]["content"]["body"].as_str().unwrap();
    assert!(
        body.starts_with(
            "[the client sent a file (kontoutdrag.pdf): 21.0 MB, larger than the 20 MB"
        ),
        "{body}"
    );
    // A small one is carried whole.
    telegram.client_sends_document(
        chat,
        "Klara",
        "intyg.pdf",
        "application/pdf",
        b"%PDF-1.4 intyg",
    );
    let messages = stack
        .ghost_messages(&room, 5, Duration::from_secs(20))
        .await;
    assert_eq!(messages[4]["content"]["msgtype"], "m.file");
    assert_eq!(messages[4]["content"]["body"], "intyg.pdf");

    // Files from the worker: a photo with sendPhoto (no location), a PDF with sendDocument.
    let mxc = stack
        .worker
        .upload(photo.clone(), "image/jpeg", "karta.jpg")
        .await;
    stack
        .worker
        .send(
            &room,
            serde_json::json!({
                "msgtype": "m.image", "body": "karta.jpg", "url": mxc,
                "info": {"mimetype": "image/jpeg"},
            }),
        )
        .await;
    let mxc = stack
        .worker
        .upload(
            b"%PDF-1.4 blankett".to_vec(),
            "application/pdf",
            "blankett.pdf",
        )
        .await;
    stack
        .worker
        .send(
            &room,
            serde_json::json!({
                "msgtype": "m.file", "body": "blankett.pdf", "url": mxc,
                "info": {"mimetype": "application/pdf"},
            }),
        )
        .await;
    let files = eventually(Duration::from_secs(20), "two files at Telegram", || async {
        let files = telegram.sent_files();
        (files.len() == 2).then_some(files)
    })
    .await;
    assert_eq!(
        (files[0].method.as_str(), files[0].chat_id),
        ("sendphoto", chat)
    );
    assert!(files[0]
        .data
        .ends_with(&[0x12, 0x34, 0x56, 0x78, 0xFF, 0xD9]));
    assert!(!String::from_utf8_lossy(&files[0].data).contains("GPS"));
    assert_eq!(files[1].method, "senddocument");
    assert_eq!(files[1].filename.as_deref(), Some("blankett.pdf"));
    assert_eq!(files[1].data, b"%PDF-1.4 blankett");

    // An invitation works once: a second chat with the same token opens a case of its own.
    telegram.client_writes(555_000_002, "Mallory", "m", &format!("/start {token}"));
    let other_room = stack.join_case_room().await;
    stack
        .wait_for_notice(&other_room, "the used invitation", |n| {
            n.starts_with("Mallory (@m) came with an invitation link that was used already")
        })
        .await;

    // The same client wrote from another address, which opened its own case: !merge joins it.
    stack
        .spool
        .put("l2", "klara-work", "Det är Klara igen, från jobbet.");
    let work_room = stack.join_case_room().await;
    stack
        .ghost_messages(&work_room, 1, Duration::from_secs(20))
        .await;
    let cases = gateway.store().cases().await.unwrap();
    let first = cases
        .iter()
        .find(|c| c.room_id.as_deref() == Some(room.as_str()))
        .unwrap();
    let work = cases
        .iter()
        .find(|c| c.room_id.as_deref() == Some(work_room.as_str()))
        .unwrap();
    stack
        .worker
        .send_text(&room, &format!("!merge {}", work.number))
        .await;
    stack
        .wait_for_notice(&room, "the merge", |n| {
            n.starts_with(&format!(
                "Case {} merged into this case by @anna:localhost: klara-work",
                work.number
            ))
        })
        .await;
    stack
        .wait_for_notice(&work_room, "the merged case's notice", |n| {
            n.starts_with(&format!("Merged into case {}", first.number))
        })
        .await;
    stack.spool.put("l3", "klara-work", "Och en sak till.");
    let messages = stack
        .ghost_messages(&room, 6, Duration::from_secs(20))
        .await;
    assert_eq!(messages[5]["content"]["body"], "Och en sak till.");
    let work_case = gateway.store().case(work.id).await.unwrap();
    assert_eq!(work_case.status, CaseStatus::Closed);
    assert_eq!(
        work_case.merged_into.as_deref(),
        Some(first.number.as_str())
    );
    // The merged case's journal still names its client, and says where they went.
    let config = stack.setup.config();
    let journal = casebridge_gateway::journal::render(
        &work_case,
        &casebridge_gateway::journal::Team::of(&work_case.team, config.teams.get(&work_case.team)),
        &gateway.store().identities(work.id).await.unwrap(),
        &gateway.store().messages(work.id).await.unwrap(),
        chrono::Utc::now(),
    );
    assert!(
        journal.contains(&format!("merged into case {}", first.number))
            && journal.contains("klara-work — loopback (loop), first written")
            && journal.contains(&format!("now in case {}", first.number)),
        "{journal}"
    );
    gateway.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_mode_checks_the_secret_token_and_survives_a_restart() {
    let mut stack = Stack::new(Db::Sqlite, "telegramwebhook").await;
    let telegram = TelegramDouble::start().await;
    let hook = format!("http://127.0.0.1:{}/webhook/tg", stack.setup.port);
    stack.setup.extra = format!(
        "[bridges.tg]\nkind = \"telegram\"\nteam = \"social\"\ntoken = \"{TOKEN}\"\napi_url = \"{}\"\n\
         mode = \"webhook\"\nwebhook_url = \"{hook}\"\nwebhook_secret = \"s3cret_Token-1\"\n",
        telegram.url
    );
    let gateway = stack.start_gateway().await;
    assert_eq!(
        telegram.webhook(),
        Some((hook.clone(), Some("s3cret_Token-1".to_owned())))
    );
    let chat = 666_000_001;
    telegram.client_writes(chat, "Ivan", "ivan", "Привіт");
    let room = stack.join_case_room().await;
    let messages = stack
        .ghost_messages(&room, 1, Duration::from_secs(20))
        .await;
    assert_eq!(messages[0]["content"]["body"], "Привіт");
    assert!(telegram.webhook_answers().contains(&200));

    // Forged calls: no secret, a wrong one. Refused; nothing reaches the room.
    let client = reqwest::Client::new();
    let update = serde_json::json!({
        "update_id": 1, "message": {
            "message_id": 9, "date": 1_790_000_000,
            "chat": {"id": chat, "type": "private", "first_name": "Ivan"},
            "from": {"id": chat, "is_bot": false, "first_name": "Ivan"},
            "text": "підробка",
        }
    });
    for secret in [None, Some("guess")] {
        let mut request = client.post(&hook).json(&update);
        if let Some(s) = secret {
            request = request.header("X-Telegram-Bot-Api-Secret-Token", s);
        }
        assert_eq!(request.send().await.unwrap().status(), 401, "{secret:?}");
    }
    let malformed = client
        .post(&hook)
        .header("X-Telegram-Bot-Api-Secret-Token", "s3cret_Token-1")
        .body("{\"update_id\": ")
        .send()
        .await
        .unwrap();
    assert_eq!(malformed.status(), 400);

    // Down for a while: Telegram keeps calling; each update arrives once after the restart.
    gateway.shutdown().await;
    for i in 1..=5 {
        telegram.client_writes(chat, "Ivan", "ivan", &format!("{i}"));
    }
    tokio::time::sleep(Duration::from_millis(800)).await;
    let gateway = stack.start_gateway().await;
    let messages = stack
        .ghost_messages(&room, 6, Duration::from_secs(30))
        .await;
    let bodies: Vec<&str> = messages
        .iter()
        .map(|m| m["content"]["body"].as_str().unwrap())
        .collect();
    assert_eq!(bodies, ["Привіт", "1", "2", "3", "4", "5"]);
    assert!(
        telegram.webhook_answers().iter().any(|s| *s != 200),
        "calls failed while down"
    );
    eventually(
        Duration::from_secs(10),
        "every update confirmed",
        || async { (telegram.unconfirmed() == 0).then_some(()) },
    )
    .await;
    gateway.shutdown().await;
}

/// A client's images of every type, as documents (a file sent "without compression") and as a
/// photo, reach the room without their GPS position; a worker's TIFF and HEIC reach the client
/// without theirs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn images_of_every_type_lose_their_location_both_ways() {
    let (mut stack, telegram) = telegram_stack("telegramimages").await;
    let gateway = stack.start_gateway().await;
    let chat = 555_000_077;
    let images = casebridge_tests::images_with_gps();
    telegram.client_writes(chat, "Klara", "klara_k", "Bilder kommer.");
    let room = stack.join_case_room().await;
    stack
        .ghost_messages(&room, 1, Duration::from_secs(20))
        .await;
    for (i, (name, mime, data)) in images.iter().enumerate() {
        telegram.client_sends_document(chat, "Klara", name, mime, data);
        stack
            .ghost_messages(&room, 2 + i, Duration::from_secs(20))
            .await;
    }
    // A photo is a JPEG with its EXIF when the client's app keeps it.
    telegram.client_sends_photo(chat, "Klara", images[0].2, "");
    let messages = stack
        .ghost_messages(&room, 2 + images.len(), Duration::from_secs(20))
        .await;
    let sent = images.iter().map(|(name, _, data)| (*name, *data));
    let sent = sent.chain([("photo", images[0].2)]);
    for (event, (name, original)) in messages[1..].iter().zip(sent) {
        let shown = stack
            .worker
            .download(
                event["content"]["url"]
                    .as_str()
                    .unwrap_or_else(|| panic!("{event}")),
            )
            .await;
        assert_eq!(
            casebridge_tests::location_traces(&shown),
            Vec::<String>::new(),
            "{name} in the room"
        );
        assert_eq!(shown[..4], original[..4], "{name}: still the same type");
    }
    let case = gateway.store().cases().await.unwrap().remove(0);
    let mut kept = Vec::new();
    for message in gateway.store().messages(case.id).await.unwrap() {
        kept.extend(gateway.store().attachments(message.id).await.unwrap());
    }
    for (name, _, original) in &images {
        assert!(
            kept.iter().any(|f| f.data == *original),
            "the record keeps {name} whole"
        );
    }

    // The worker's TIFF and HEIC, as files.
    for (name, mime, data) in [&images[4], &images[5]] {
        let mxc = stack.worker.upload(data.to_vec(), mime, name).await;
        stack
            .worker
            .send(
                &room,
                serde_json::json!({
                    "msgtype": "m.file", "body": name, "url": mxc,
                    "info": {"mimetype": mime},
                }),
            )
            .await;
    }
    let files = eventually(Duration::from_secs(20), "two files at Telegram", || async {
        let files = telegram.sent_files();
        (files.len() == 2).then_some(files)
    })
    .await;
    for file in files {
        assert_eq!(
            casebridge_tests::location_traces(&file.data),
            Vec::<String>::new(),
            "{:?} to the client",
            file.filename
        );
    }
    gateway.shutdown().await;
}
