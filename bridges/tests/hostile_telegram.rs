//! A Telegram webhook secret token given twice is refused, never read first-wins (issue 19).

use casebridge_bridges::{telegram::TelegramFactory, BridgeFactory};

#[tokio::test]
async fn telegram_refuses_a_secret_token_given_twice() {
    let text = "[homeserver]\nurl = \"http://127.0.0.1:8008\"\nserver_name = \"localhost\"\n\
         [appservice]\nurl = \"http://127.0.0.1:29330\"\nas_token = \"a\"\nhs_token = \"h\"\n\
         [teams.t]\nmembers = [\"@a:localhost\"]\n\
         [bridges.tg]\nkind = \"telegram\"\nteam = \"t\"\ntoken = \"123456:ABC-DEF\"\n\
         mode = \"webhook\"\nwebhook_url = \"https://bridge.example.org/webhook/tg\"\n\
         webhook_secret = \"right-token\"\n";
    let config = casebridge_config::Config::from_toml_str(text).unwrap();
    let bridge = TelegramFactory.build("tg", &config.bridges["tg"]).unwrap();
    let request = http::Request::builder()
        .method("POST")
        .uri("/webhook/tg")
        .header("x-telegram-bot-api-secret-token", "right-token")
        .header("x-telegram-bot-api-secret-token", "guess")
        .body(b"{\"update_id\": 1}".to_vec())
        .unwrap();
    let response = bridge.webhook().unwrap().handle(request).await;
    assert_eq!(response.status().as_u16(), 401);
    assert_eq!(
        String::from_utf8_lossy(response.body()).trim(),
        "X-Telegram-Bot-Api-Secret-Token given more than once"
    );
}
