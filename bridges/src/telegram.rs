//! The Telegram bridge: clients write to the office's own bot, so no worker uses a personal
//! account. One case per chat. Long polling with `getUpdates`; an update is confirmed to
//! Telegram (the next call's `offset`) only after the gateway committed it, so a restart
//! re-reads what was not, and the message id deduplicates. Replies go out as the bot.
//!
//! Built on `teloxide-core`, teloxide's Bot API layer, without its dispatcher: the gateway is
//! the dispatcher here.

use std::{path::PathBuf, sync::Arc, time::Duration};

use async_trait::async_trait;
use casebridge_config::{resolve_secret, BridgeInstance, ConfigError, Secret};
use serde::Deserialize;
use teloxide_core::{
    payloads::GetUpdatesSetters,
    requests::{Request, Requester},
    types::{ChatId, Message, UpdateKind},
    ApiError, Bot, RequestError,
};
use tokio::sync::Notify;
use tracing::{debug, info, warn};

use crate::{
    Bridge, BridgeError, BridgeFactory, Capabilities, Delivered, DeliveryError, InboundMessage,
    InboundSink, OutboundMessage, RemoteAddress, RemoteMessageId,
};

/// `[bridges.KEY]` with `kind = "telegram"`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TelegramOptions {
    /// The bot's token from @BotFather.
    token: Option<Secret>,
    /// File holding `token`.
    token_file: Option<PathBuf>,
    /// The Bot API server (a self-hosted one, or a test double).
    #[serde(default = "default_api_url")]
    api_url: url::Url,
    /// Seconds a `getUpdates` long poll waits for news.
    #[serde(default = "default_poll_seconds")]
    poll_seconds: u32,
}

fn default_api_url() -> url::Url {
    "https://api.telegram.org".parse().expect("a valid URL")
}

fn default_poll_seconds() -> u32 {
    25
}

/// Builds `kind = "telegram"` instances.
pub struct TelegramFactory;

impl BridgeFactory for TelegramFactory {
    fn kind(&self) -> &'static str {
        "telegram"
    }

    fn build(&self, name: &str, config: &BridgeInstance) -> Result<Arc<dyn Bridge>, BridgeError> {
        let options: TelegramOptions = config.options(name)?;
        let token = resolve_secret(
            &format!("bridges.{name}.token"),
            &options.token,
            &options.token_file,
        )?;
        if !token.expose().contains(':') {
            return Err(BridgeError::Config(ConfigError::Invalid {
                key: format!("bridges.{name}.token"),
                message: "a bot token looks like 123456:ABC-DEF… (from @BotFather)".into(),
            }));
        }
        // teloxide joins paths onto the URL: no trailing slash.
        let mut api_url = options.api_url.clone();
        let trimmed = api_url.path().trim_end_matches('/').to_owned();
        api_url.set_path(&trimmed);
        let bot = Bot::new(token.expose()).set_api_url(api_url);
        Ok(Arc::new(TelegramBridge {
            reader: Arc::new(Reader {
                instance: name.to_owned(),
                bot: bot.clone(),
                poll: options.poll_seconds.clamp(1, 50),
                stop: Notify::new(),
            }),
            bot,
            task: std::sync::Mutex::new(None),
        }))
    }
}

struct TelegramBridge {
    bot: Bot,
    reader: Arc<Reader>,
    task: std::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
}

struct Reader {
    instance: String,
    bot: Bot,
    poll: u32,
    stop: Notify,
}

/// How the case team sees the client: "Olena Kovalenko (@olena_k)".
fn display_name(message: &Message) -> String {
    match &message.from {
        Some(user) => {
            let mut name = user.first_name.clone();
            if let Some(last) = &user.last_name {
                name.push(' ');
                name.push_str(last);
            }
            match &user.username {
                Some(u) => format!("{name} (@{u})"),
                None => name,
            }
        }
        None => format!("Telegram chat {}", message.chat.id),
    }
}

/// The text of a message, or a description of what it carries.
fn text_of(message: &Message) -> String {
    if let Some(t) = message.text() {
        t.to_owned()
    } else if let Some(sticker) = message.sticker() {
        format!("[sticker {}]", sticker.emoji.as_deref().unwrap_or(""))
    } else if let Some(location) = message.location() {
        format!(
            "[location: https://www.openstreetmap.org/?mlat={:.5}&mlon={:.5}]",
            location.latitude, location.longitude
        )
    } else {
        let what = if message.photo().is_some() {
            "a photo"
        } else if message.voice().is_some() {
            "a voice message"
        } else if message.document().is_some() {
            "a file"
        } else {
            "a message this bridge cannot show yet"
        };
        match message.caption() {
            Some(c) => format!("{c}\n[the client sent {what}]"),
            None => format!("[the client sent {what}]"),
        }
    }
}

impl Reader {
    async fn run(self: Arc<Self>, sink: InboundSink) {
        let mut offset: i32 = 0;
        let mut backoff = Duration::from_secs(1);
        loop {
            let request = self
                .bot
                .get_updates()
                .offset(offset)
                .timeout(self.poll)
                .send();
            let updates = tokio::select! {
                r = request => r,
                () = self.stop.notified() => return,
            };
            let updates = match updates {
                Ok(u) => {
                    backoff = Duration::from_secs(1);
                    u
                }
                Err(e) => {
                    let pause = match &e {
                        RequestError::RetryAfter(s) => Duration::from_secs(s.seconds().into()),
                        _ => backoff,
                    };
                    warn!(instance = %self.instance, error = %e, retry_in = ?pause, "getUpdates failed");
                    tokio::select! {
                        () = tokio::time::sleep(pause) => {}
                        () = self.stop.notified() => return,
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(60));
                    continue;
                }
            };
            let mut pending = Vec::new();
            let mut last = None;
            for update in updates {
                last = Some(update.id.0);
                let (message, edited) = match update.kind {
                    UpdateKind::Message(m) => (m, false),
                    UpdateKind::EditedMessage(m) => (m, true),
                    _ => continue,
                };
                let id = if edited {
                    format!(
                        "{}:{}:edit:{}",
                        message.chat.id,
                        message.id.0,
                        message.edit_date().map_or(0, |d| d.timestamp())
                    )
                } else {
                    format!("{}:{}", message.chat.id, message.id.0)
                };
                let inbound = InboundMessage {
                    message_id: RemoteMessageId::new(id),
                    from: RemoteAddress::new(message.chat.id.to_string()),
                    display_name: display_name(&message),
                    body: text_of(&message),
                    sent_at: message.date,
                    automated: message.from.as_ref().is_some_and(|u| u.is_bot),
                    replaces: edited.then(|| {
                        RemoteMessageId::new(format!("{}:{}", message.chat.id, message.id.0))
                    }),
                    ..Default::default()
                };
                match sink.enqueue(inbound).await {
                    Ok(ack) => pending.push(ack),
                    Err(e) => {
                        warn!(instance = %self.instance, error = %e, "the gateway is not taking messages");
                        return;
                    }
                }
            }
            let mut all_recorded = true;
            for ack in pending {
                if let Err(e) = ack.recorded().await {
                    warn!(instance = %self.instance, error = %e, "an update was not recorded; it is read again");
                    all_recorded = false;
                }
            }
            // Confirm to Telegram only what is committed: the next call's offset does it.
            if let (true, Some(last)) = (all_recorded, last) {
                offset = last as i32 + 1;
                debug!(instance = %self.instance, offset, "updates recorded");
            } else if !all_recorded {
                tokio::time::sleep(backoff).await;
            }
        }
    }
}

#[async_trait]
impl Bridge for TelegramBridge {
    fn capabilities(&self) -> Capabilities {
        Capabilities {
            channel: "telegram",
            label: "Telegram",
            attachments: false,
            max_length: Some(4096),
            delivery_reports: false,
            html: false,
        }
    }

    async fn start(&self, inbound: InboundSink) -> Result<(), BridgeError> {
        match self.bot.get_me().send().await {
            Ok(me) => {
                info!(instance = %self.reader.instance, bot = ?me.user.username, "Telegram bot ready")
            }
            Err(RequestError::Api(ApiError::InvalidToken)) => {
                return Err(BridgeError::Failed(format!(
                    "bridges.{}.token: Telegram does not know this bot token",
                    self.reader.instance
                )))
            }
            // Telegram unreachable now: the reader retries.
            Err(e) => warn!(instance = %self.reader.instance, error = %e, "getMe failed"),
        }
        let reader = self.reader.clone();
        let handle = tokio::spawn(async move { reader.run(inbound).await });
        *self.task.lock().expect("not poisoned") = Some(handle);
        Ok(())
    }

    async fn stop(&self) {
        // One waiter, which may be busy right now: a stored permit is not lost.
        self.reader.stop.notify_one();
        let handle = self.task.lock().expect("not poisoned").take();
        if let Some(handle) = handle {
            let _ = tokio::time::timeout(Duration::from_secs(5), handle).await;
        }
    }

    async fn deliver(&self, message: &OutboundMessage) -> Result<Delivered, DeliveryError> {
        let chat: i64 = message.to.as_str().parse().map_err(|_| {
            DeliveryError::permanent(format!("{} is not a Telegram chat id", message.to.as_str()))
        })?;
        match self
            .bot
            .send_message(ChatId(chat), &message.body)
            .send()
            .await
        {
            Ok(sent) => Ok(Delivered {
                remote_id: Some(RemoteMessageId::new(format!("{chat}:{}", sent.id.0))),
            }),
            Err(RequestError::RetryAfter(s)) => Err(DeliveryError::transient(format!(
                "Telegram asks to wait {} s (rate limit)",
                s.seconds()
            ))
            .with_retry_after(Duration::from_secs(s.seconds().into()))),
            Err(RequestError::Api(ApiError::BotBlocked)) => Err(DeliveryError::permanent(
                "the client has blocked the office's bot; they get nothing until they unblock it",
            )),
            Err(RequestError::Api(ApiError::InvalidToken)) => Err(DeliveryError::transient(
                "Telegram does not accept the bot token (check bridges.*.token)",
            )),
            Err(RequestError::Api(e)) => Err(DeliveryError::permanent(format!(
                "Telegram refused the message: {e}"
            ))),
            Err(e) => Err(DeliveryError::transient(format!(
                "sending to Telegram: {e}"
            ))),
        }
    }
}
