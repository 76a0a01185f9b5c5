//! The Telegram bridge against a Bot API double and a real Synapse.

use std::time::Duration;

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
            (sent.len() == 2).then_some(sent)
        },
    )
    .await;
    assert_eq!(sent[1]["text"], "Друга відповідь.");
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
