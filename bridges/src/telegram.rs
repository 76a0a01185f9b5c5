//! The Telegram bridge: clients write to the office's own bot, so no worker uses a personal
//! account. One case per chat.
//!
//! Updates come by long polling (`getUpdates`, the default) or, as an option, by a webhook that
//! Telegram calls with the `X-Telegram-Bot-Api-Secret-Token` header set to the configured
//! secret. Either way an update is confirmed to Telegram only after the gateway committed it: in
//! polling mode by the next call's `offset`, in webhook mode by answering 200. Telegram keeps
//! what is unconfirmed and sends it again, and the message id deduplicates. Files come in through
//! `getFile` and the file download path, and go out with `sendPhoto` and `sendDocument`, within
//! the Bot API's limits. Replies go out as the bot.
//!
//! Built on `teloxide-core`, teloxide's Bot API layer, without its dispatcher: the gateway is
//! the dispatcher here.

use std::{path::PathBuf, sync::Arc, time::Duration};

use async_trait::async_trait;
use casebridge_config::{resolve_secret, BridgeInstance, ConfigError, Secret};
use serde::Deserialize;
use subtle::ConstantTimeEq;
use teloxide_core::{
    net::Download,
    payloads::{GetUpdatesSetters, SendDocumentSetters, SendPhotoSetters, SetWebhookSetters},
    requests::{Request, Requester},
    types::{ChatId, FileMeta, InputFile, Message, Update, UpdateKind},
    ApiError, Bot, RequestError,
};
use tokio::sync::Notify;
use tracing::{debug, info, warn};

use crate::{
    respond, Accepted, Attachment, Bridge, BridgeError, BridgeFactory, Capabilities,
    CredentialCheck, Delivered, DeliveryError, InboundMessage, InboundSink, MediaKinds,
    OutboundMessage, RemoteAddress, RemoteMessageId, Webhook,
};

/// The largest file a bot may fetch with `getFile` from Telegram's own Bot API server.
const GET_FILE_LIMIT: u32 = 20 * 1024 * 1024;
/// The largest photo `sendPhoto` takes; bigger images go as documents.
const SEND_PHOTO_LIMIT: usize = 10 * 1024 * 1024;
/// The largest file `sendDocument` takes (multipart upload).
const SEND_DOCUMENT_LIMIT: usize = 50 * 1024 * 1024;
/// The header Telegram sets on webhook calls to the secret given to `setWebhook`.
const SECRET_HEADER: &str = "x-telegram-bot-api-secret-token";

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
    /// How updates arrive: `polling` (getUpdates) or `webhook`.
    #[serde(default)]
    mode: Mode,
    /// Seconds a `getUpdates` long poll waits for news.
    #[serde(default = "default_poll_seconds")]
    poll_seconds: u32,
    /// Webhook mode: the public HTTPS address of this instance's webhook, i.e. the gateway's
    /// `/webhook/KEY` behind the office's reverse proxy. Given to Telegram with `setWebhook`.
    webhook_url: Option<url::Url>,
    /// Webhook mode: the secret Telegram sends back in every call (1-256 of `A-Z a-z 0-9 _ -`).
    webhook_secret: Option<Secret>,
    /// File holding `webhook_secret`.
    webhook_secret_file: Option<PathBuf>,
    /// Files larger than this are named in the room, not fetched. At most 20 MB, Telegram's
    /// `getFile` limit (a self-hosted Bot API server has none: raise it there).
    max_file_bytes: Option<u32>,
}

#[derive(Debug, Default, Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
enum Mode {
    #[default]
    Polling,
    Webhook,
}

fn default_api_url() -> url::Url {
    "https://api.telegram.org".parse().expect("a valid URL")
}

fn default_poll_seconds() -> u32 {
    25
}

fn invalid(name: &str, key: &str, message: impl Into<String>) -> BridgeError {
    BridgeError::Config(ConfigError::Invalid {
        key: format!("bridges.{name}.{key}"),
        message: message.into(),
    })
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
            return Err(invalid(
                name,
                "token",
                "a bot token looks like 123456:ABC-DEF… (from @BotFather)",
            ));
        }
        let webhook = match options.mode {
            Mode::Polling => {
                if options.webhook_url.is_some() {
                    return Err(invalid(
                        name,
                        "webhook_url",
                        "is only used with mode = \"webhook\"",
                    ));
                }
                None
            }
            Mode::Webhook => {
                let url = options.webhook_url.clone().ok_or_else(|| {
                    invalid(
                        name,
                        "webhook_url",
                        "mode = \"webhook\" needs the public address Telegram calls",
                    )
                })?;
                let secret = resolve_secret(
                    &format!("bridges.{name}.webhook_secret"),
                    &options.webhook_secret,
                    &options.webhook_secret_file,
                )?;
                let s = secret.expose();
                if s.len() > 256
                    || !s
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
                {
                    return Err(invalid(
                        name,
                        "webhook_secret",
                        "Telegram takes 1-256 characters of A-Z, a-z, 0-9, _ and -",
                    ));
                }
                Some((url, secret))
            }
        };
        let max_file_bytes = options.max_file_bytes.unwrap_or(GET_FILE_LIMIT);
        // teloxide joins paths onto the URL: no trailing slash.
        let mut api_url = options.api_url.clone();
        let trimmed = api_url.path().trim_end_matches('/').to_owned();
        api_url.set_path(&trimmed);
        // teloxide's default client gives up after 17 s: too short for a 50 MB upload.
        let client = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(300))
            .tcp_nodelay(true)
            .build()
            .map_err(|e| BridgeError::Failed(format!("bridges.{name}: HTTP client: {e}")))?;
        let bot = Bot::with_client(token.expose(), client).set_api_url(api_url);
        let updates = Arc::new(Updates {
            instance: name.to_owned(),
            bot: bot.clone(),
            max_file_bytes,
        });
        Ok(Arc::new(TelegramBridge {
            reader: Arc::new(Reader {
                updates: updates.clone(),
                poll: options.poll_seconds.clamp(1, 50),
                stop: Notify::new(),
            }),
            updates,
            bot,
            webhook,
            sink: std::sync::Mutex::new(None),
            task: std::sync::Mutex::new(None),
            username: std::sync::Mutex::new(None),
        }))
    }
}

struct TelegramBridge {
    bot: Bot,
    updates: Arc<Updates>,
    reader: Arc<Reader>,
    /// Webhook mode: the public URL and the secret Telegram sends back.
    webhook: Option<(url::Url, Secret)>,
    sink: std::sync::Mutex<Option<InboundSink>>,
    task: std::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
    /// The bot's @username, from getMe: invitation links name it.
    username: std::sync::Mutex<Option<String>>,
}

/// Turns Telegram updates into inbound messages, fetching their files.
struct Updates {
    instance: String,
    bot: Bot,
    max_file_bytes: u32,
}

struct Reader {
    updates: Arc<Updates>,
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

/// A file a message carries, as Telegram describes it.
struct Media<'a> {
    file: &'a FileMeta,
    filename: String,
    mime: String,
    what: &'static str,
}

fn mime_or(mime: Option<&impl ToString>, default: &str) -> String {
    mime.map_or_else(|| default.to_owned(), ToString::to_string)
}

/// The file in `message`, if any; of a photo, the largest size within `limit`.
fn media_of(message: &Message, limit: u32) -> Option<Media<'_>> {
    let id = message.id.0;
    if let Some(sizes) = message.photo() {
        let best = sizes
            .iter()
            .filter(|s| s.file.size <= limit)
            .max_by_key(|s| s.file.size)
            .or_else(|| sizes.iter().min_by_key(|s| s.file.size))?;
        return Some(Media {
            file: &best.file,
            filename: format!("photo-{id}.jpg"),
            mime: "image/jpeg".into(),
            what: "a photo",
        });
    }
    if let Some(d) = message.document() {
        return Some(Media {
            file: &d.file,
            filename: d.file_name.clone().unwrap_or_else(|| format!("file-{id}")),
            mime: mime_or(d.mime_type.as_ref(), "application/octet-stream"),
            what: "a file",
        });
    }
    if let Some(v) = message.voice() {
        return Some(Media {
            file: &v.file,
            filename: format!("voice-{id}.ogg"),
            mime: mime_or(v.mime_type.as_ref(), "audio/ogg"),
            what: "a voice message",
        });
    }
    if let Some(a) = message.audio() {
        return Some(Media {
            file: &a.file,
            filename: a
                .file_name
                .clone()
                .unwrap_or_else(|| format!("audio-{id}.mp3")),
            mime: mime_or(a.mime_type.as_ref(), "audio/mpeg"),
            what: "an audio file",
        });
    }
    if let Some(v) = message.video() {
        return Some(Media {
            file: &v.file,
            filename: v
                .file_name
                .clone()
                .unwrap_or_else(|| format!("video-{id}.mp4")),
            mime: mime_or(v.mime_type.as_ref(), "video/mp4"),
            what: "a video",
        });
    }
    if let Some(v) = message.video_note() {
        return Some(Media {
            file: &v.file,
            filename: format!("video-note-{id}.mp4"),
            mime: "video/mp4".into(),
            what: "a video message",
        });
    }
    if let Some(a) = message.animation() {
        return Some(Media {
            file: &a.file,
            filename: a
                .file_name
                .clone()
                .unwrap_or_else(|| format!("animation-{id}.mp4")),
            mime: mime_or(a.mime_type.as_ref(), "video/mp4"),
            what: "an animation",
        });
    }
    None
}

/// The text of a message without its file, or a description of what it carries.
fn text_of(message: &Message) -> String {
    if let Some(t) = message.text() {
        match start_payload(t) {
            Some(None) => "[the client started the bot]".to_owned(),
            Some(Some(p)) => format!("[the client started the bot with the office's link: {p}]"),
            None => t.to_owned(),
        }
    } else if let Some(sticker) = message.sticker() {
        format!("[sticker {}]", sticker.emoji.as_deref().unwrap_or(""))
    } else if let Some(location) = message.location() {
        format!(
            "[location: https://www.openstreetmap.org/?mlat={:.5}&mlon={:.5}]",
            location.latitude, location.longitude
        )
    } else if let Some(contact) = message.contact() {
        format!(
            "[contact: {} {} {}]",
            contact.first_name,
            contact.last_name.as_deref().unwrap_or(""),
            contact.phone_number
        )
        .replace("  ", " ")
    } else if let Some(c) = message.caption() {
        c.to_owned()
    } else if media_of(message, u32::MAX).is_some() {
        String::new()
    } else {
        "[the client sent a message this bridge cannot show yet]".to_owned()
    }
}

/// `/start` (`Some(None)`) or `/start PAYLOAD` from a deep link `t.me/BOT?start=PAYLOAD`
/// (`Some(Some(payload))`); `None` for any other text.
fn start_payload(text: &str) -> Option<Option<&str>> {
    let rest = text.strip_prefix("/start")?;
    // `/start@office_bot` is the same command addressed by name.
    let rest = match rest.strip_prefix('@') {
        Some(r) => r.split_once(' ').map_or("", |(_, p)| p),
        None if rest.is_empty() || rest.starts_with(' ') => rest,
        None => return None,
    };
    let payload = rest.trim();
    Some((!payload.is_empty()).then_some(payload))
}

/// Most characters (UTF-16 code units, as Telegram counts) of a message's text, and of a
/// caption (Telegram Premium's limit; others get 1,024).
const MAX_TEXT_UNITS: usize = 4096;

/// Why `update` is no update Telegram could have sent: a text or caption longer than Telegram
/// carries. Checked on the webhook, where only the secret token vouches for the sender.
fn beyond_limits(update: &Update) -> Option<String> {
    let (UpdateKind::Message(message) | UpdateKind::EditedMessage(message)) = &update.kind else {
        return None;
    };
    [("text", message.text()), ("caption", message.caption())]
        .into_iter()
        .find_map(|(what, text)| {
            let units = text?.encode_utf16().count();
            (units > MAX_TEXT_UNITS).then(|| {
                format!("a {what} of {units} characters; Telegram carries at most {MAX_TEXT_UNITS}")
            })
        })
}

/// Why an update cannot be taken now; it is read again later.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct Retry(String);

impl Updates {
    /// The inbound message of one update, its file fetched; `None` for updates that carry no
    /// client message (a channel post, a poll answer, …).
    async fn inbound(&self, update: Update) -> Result<Option<InboundMessage>, Retry> {
        let (message, edited) = match update.kind {
            UpdateKind::Message(m) => (m, false),
            UpdateKind::EditedMessage(m) => (m, true),
            _ => return Ok(None),
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
        let mut body = text_of(&message);
        let mut attachments = Vec::new();
        if let Some(media) = media_of(&message, self.max_file_bytes) {
            match self.fetch(&media).await? {
                Ok(data) => attachments.push(Attachment {
                    filename: media.filename,
                    mime: media.mime,
                    data,
                }),
                Err(why) => {
                    let note = format!(
                        "[the client sent {} ({}): {why}]",
                        media.what, media.filename
                    );
                    body = if body.is_empty() {
                        note
                    } else {
                        format!("{body}\n{note}")
                    };
                }
            }
        }
        let invitation = message
            .text()
            .and_then(start_payload)
            .flatten()
            .map(str::to_owned);
        Ok(Some(InboundMessage {
            message_id: RemoteMessageId::new(id),
            from: RemoteAddress::new(message.chat.id.to_string()),
            display_name: display_name(&message),
            body,
            attachments,
            sent_at: message.date,
            automated: message.from.as_ref().is_some_and(|u| u.is_bot),
            replaces: edited
                .then(|| RemoteMessageId::new(format!("{}:{}", message.chat.id, message.id.0))),
            invitation,
            ..Default::default()
        }))
    }

    /// The file's bytes, or why it is not carried (too big, gone at Telegram). A network
    /// failure is a `Retry`: the update is read again.
    async fn fetch(&self, media: &Media<'_>) -> Result<Result<Vec<u8>, String>, Retry> {
        let size = media.file.size;
        if size > self.max_file_bytes {
            return Ok(Err(format!(
                "{:.1} MB, larger than the {:.0} MB this bridge fetches from Telegram; ask the \
                 client for it another way",
                f64::from(size) / 1_048_576.0,
                f64::from(self.max_file_bytes) / 1_048_576.0
            )));
        }
        let file = match self.bot.get_file(media.file.id.clone()).send().await {
            Ok(f) => f,
            Err(RequestError::Api(e)) => {
                return Ok(Err(format!("Telegram would not give the file: {e}")))
            }
            Err(e) => return Err(Retry(format!("getFile: {e}"))),
        };
        let mut data = Vec::with_capacity(size as usize);
        match self.bot.download_file(&file.path, &mut data).await {
            Ok(()) => Ok(Ok(data)),
            // Telegram answered, and no: asking again will not help.
            Err(teloxide_core::DownloadError::Network(e))
                if e.status().is_some_and(|s| s.is_client_error()) =>
            {
                Ok(Err(format!("Telegram would not give the file: {e}")))
            }
            Err(e) => Err(Retry(format!("downloading a file: {e}"))),
        }
    }
}

impl Reader {
    async fn run(self: Arc<Self>, sink: InboundSink) {
        let instance = &self.updates.instance;
        let mut offset: i32 = 0;
        let mut backoff = Duration::from_secs(1);
        loop {
            let request = self
                .updates
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
                    warn!(%instance, error = %e, retry_in = ?pause, "getUpdates failed");
                    if !self.pause(pause).await {
                        return;
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(60));
                    continue;
                }
            };
            let mut pending = Vec::new();
            let mut confirmed = None;
            let mut complete = true;
            for update in updates {
                let update_id = update.id.0;
                match self.updates.inbound(update).await {
                    Ok(Some(inbound)) => match sink.enqueue(inbound).await {
                        Ok(ack) => pending.push((update_id, ack.into())),
                        Err(e) => {
                            warn!(%instance, error = %e, "the gateway is not taking messages");
                            return;
                        }
                    },
                    Ok(None) => pending.push((update_id, PendingAckOr::Nothing)),
                    Err(e) => {
                        // Later updates wait too: their order is the chat's order.
                        warn!(%instance, error = %e, "an update is read again later");
                        complete = false;
                        break;
                    }
                }
            }
            for (update_id, ack) in pending {
                if let Err(e) = ack.recorded().await {
                    warn!(%instance, error = %e, "an update was not recorded; it is read again");
                    complete = false;
                    break;
                }
                confirmed = Some(update_id);
            }
            // Confirm to Telegram only what is committed: the next call's offset does it.
            if let Some(last) = confirmed {
                offset = last as i32 + 1;
                debug!(%instance, offset, "updates recorded");
            }
            if !complete {
                if !self.pause(backoff).await {
                    return;
                }
                backoff = (backoff * 2).min(Duration::from_secs(60));
            }
        }
    }

    /// Waits, unless told to stop (false).
    async fn pause(&self, pause: Duration) -> bool {
        tokio::select! {
            () = tokio::time::sleep(pause) => true,
            () = self.stop.notified() => false,
        }
    }
}

/// An update's answer from the core, or nothing to wait for.
enum PendingAckOr {
    Ack(crate::PendingAck),
    Nothing,
}

impl From<crate::PendingAck> for PendingAckOr {
    fn from(ack: crate::PendingAck) -> Self {
        Self::Ack(ack)
    }
}

impl PendingAckOr {
    async fn recorded(self) -> Result<(), crate::SubmitError> {
        match self {
            Self::Ack(ack) => ack.recorded().await.map(drop),
            Self::Nothing => Ok(()),
        }
    }
}

/// What Telegram's answer to a send means for the queue.
fn delivery_error(e: RequestError) -> DeliveryError {
    match e {
        RequestError::RetryAfter(s) => DeliveryError::transient(format!(
            "Telegram asks to wait {} s (rate limit)",
            s.seconds()
        ))
        .with_retry_after(Duration::from_secs(s.seconds().into())),
        RequestError::Api(ApiError::BotBlocked) => DeliveryError::unreachable(
            "the client has blocked the office's bot; they get nothing until they unblock it",
        ),
        RequestError::Api(ApiError::InvalidToken) => DeliveryError::transient(
            "Telegram does not accept the bot token (check bridges.*.token)",
        ),
        RequestError::Api(e) => {
            DeliveryError::permanent(format!("Telegram refused the message: {e}"))
        }
        e => DeliveryError::transient(format!("sending to Telegram: {e}")),
    }
}

#[async_trait]
impl Bridge for TelegramBridge {
    fn capabilities(&self) -> Capabilities {
        Capabilities::new("telegram", "Telegram")
            .with_media(MediaKinds::ALL)
            .with_max_length(MAX_TEXT_UNITS)
    }

    async fn check_credentials(&self) -> CredentialCheck {
        let instance = &self.updates.instance;
        match self.bot.get_me().send().await {
            Ok(me) => CredentialCheck::Accepted(match &me.user.username {
                Some(name) => format!("Telegram bot @{name}"),
                None => format!("Telegram bot {}", me.user.id),
            }),
            Err(RequestError::Api(ApiError::InvalidToken)) => CredentialCheck::Refused(format!(
                "bridges.{instance}.token: Telegram does not know this bot token; copy the \
                 token @BotFather gave for the office's bot"
            )),
            Err(e) => CredentialCheck::Unreachable(format!("Telegram getMe: {e}")),
        }
    }

    async fn start(&self, inbound: InboundSink) -> Result<(), BridgeError> {
        let instance = &self.updates.instance;
        match self.bot.get_me().send().await {
            Ok(me) => {
                info!(%instance, bot = ?me.user.username, "Telegram bot ready");
                *self.username.lock().expect("not poisoned") = me.user.username.clone();
            }
            Err(RequestError::Api(ApiError::InvalidToken)) => {
                return Err(BridgeError::Failed(format!(
                    "bridges.{instance}.token: Telegram does not know this bot token"
                )))
            }
            // Telegram unreachable now: the reader (or Telegram's webhook retries) carry on.
            Err(e) => warn!(%instance, error = %e, "getMe failed"),
        }
        match &self.webhook {
            Some((url, secret)) => {
                *self.sink.lock().expect("not poisoned") = Some(inbound);
                // Updates already waiting at Telegram are kept: they come to the webhook.
                self.bot
                    .set_webhook(url.clone())
                    .secret_token(secret.expose())
                    .send()
                    .await
                    .map_err(|e| {
                        BridgeError::Failed(format!(
                            "bridges.{instance}.webhook_url: Telegram did not take the webhook {url}: {e}"
                        ))
                    })?;
                info!(%instance, %url, "Telegram calls the webhook");
            }
            None => {
                // getUpdates answers 409 while a webhook is set: polling mode removes it, and
                // keeps the updates waiting.
                if let Err(e) = self.bot.delete_webhook().send().await {
                    warn!(%instance, error = %e, "deleteWebhook failed");
                }
                let reader = self.reader.clone();
                let what = format!("bridges.{instance} update reader");
                let handle = crate::task::spawn_restarting(what, move || {
                    let (reader, inbound) = (reader.clone(), inbound.clone());
                    async move { reader.run(inbound).await }
                });
                *self.task.lock().expect("not poisoned") = Some(handle);
            }
        }
        Ok(())
    }

    async fn stop(&self) {
        self.sink.lock().expect("not poisoned").take();
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
        let chat = ChatId(chat);
        // The gateway sends a worker's file as a message of its own, without text.
        let sent = match message.attachments.first() {
            None => self.bot.send_message(chat, &message.body).send().await,
            Some(file) => {
                let size = file.data.len();
                if size > SEND_DOCUMENT_LIMIT {
                    return Err(DeliveryError::permanent(format!(
                        "{} is {:.1} MB; a bot can send at most 50 MB",
                        file.filename,
                        size as f64 / 1_048_576.0
                    )));
                }
                let input = InputFile::memory(file.data.clone()).file_name(file.filename.clone());
                let photo = matches!(
                    file.mime.as_str(),
                    "image/jpeg" | "image/png" | "image/webp"
                ) && size <= SEND_PHOTO_LIMIT;
                let caption = (!message.body.is_empty()).then(|| message.body.clone());
                match (photo, caption) {
                    (true, Some(c)) => self.bot.send_photo(chat, input).caption(c).send().await,
                    (true, None) => self.bot.send_photo(chat, input).send().await,
                    (false, Some(c)) => self.bot.send_document(chat, input).caption(c).send().await,
                    (false, None) => self.bot.send_document(chat, input).send().await,
                }
            }
        };
        match sent {
            Ok(sent) => Ok(Delivered {
                remote_id: Some(RemoteMessageId::new(format!("{}:{}", chat.0, sent.id.0))),
            }),
            Err(e) => Err(delivery_error(e)),
        }
    }

    fn webhook(&self) -> Option<&dyn Webhook> {
        self.webhook.is_some().then_some(self as &dyn Webhook)
    }

    fn invitation_link(&self, token: &str) -> Option<String> {
        let username = self.username.lock().expect("not poisoned").clone()?;
        Some(format!("https://t.me/{username}?start={token}"))
    }
}

#[async_trait]
impl Webhook for TelegramBridge {
    async fn handle(&self, request: http::Request<Vec<u8>>) -> http::Response<Vec<u8>> {
        let instance = &self.updates.instance;
        let Some((_, secret)) = &self.webhook else {
            return respond(404, "this bridge polls");
        };
        if request.method() != http::Method::POST {
            return respond(405, "use POST");
        }
        // A token given twice: which one counts would be a guess, so refused, never first-wins.
        if request.headers().get_all(SECRET_HEADER).iter().count() > 1 {
            warn!(%instance, "Telegram webhook refused: secret token given more than once");
            return respond(401, "X-Telegram-Bot-Api-Secret-Token given more than once");
        }
        let given = request
            .headers()
            .get(SECRET_HEADER)
            .map(http::HeaderValue::as_bytes)
            .unwrap_or_default();
        if !bool::from(given.ct_eq(secret.expose().as_bytes())) {
            warn!(%instance, present = !given.is_empty(), "Telegram webhook refused: wrong secret token");
            return respond(401, "wrong or missing X-Telegram-Bot-Api-Secret-Token");
        }
        let update: Update = match serde_json::from_slice(request.body()) {
            Ok(u) => u,
            Err(e) => {
                warn!(%instance, error = %e, "malformed Telegram update");
                return respond(400, &format!("not a Telegram update: {e}"));
            }
        };
        if let Some(why) = beyond_limits(&update) {
            warn!(%instance, update = update.id.0, %why, "Telegram webhook refused");
            return respond(400, &why);
        }
        let Some(sink) = self.sink.lock().expect("not poisoned").clone() else {
            return respond(503, "not started");
        };
        let inbound = match self.updates.inbound(update).await {
            Ok(Some(m)) => m,
            Ok(None) => return respond(200, "ignored"),
            // Not taken: Telegram calls again.
            Err(e) => return respond(503, &e.to_string()),
        };
        match sink.submit(inbound).await {
            Ok(Accepted::Recorded { .. } | Accepted::Duplicate) => respond(200, "recorded"),
            Err(e) => respond(503, &e.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn texts_longer_than_telegram_carries_are_beyond_its_limits() {
        let update = |field: &str, text: String| -> Update {
            let mut message = serde_json::json!({
                "message_id": 1, "date": 1_700_000_000,
                "chat": {"id": 7, "type": "private", "first_name": "A"},
                "from": {"id": 7, "is_bot": false, "first_name": "A"},
            });
            message[field] = text.into();
            if field == "caption" {
                message["photo"] = serde_json::json!([{"file_id": "f", "file_unique_id": "u",
                    "width": 1, "height": 1, "file_size": 1}]);
            }
            let update = serde_json::json!({"update_id": 1, "message": message});
            serde_json::from_str(&update.to_string()).unwrap()
        };
        for field in ["text", "caption"] {
            // Telegram counts UTF-16 units: an emoji is two.
            assert_eq!(beyond_limits(&update(field, "😀".repeat(2048))), None);
            let why = beyond_limits(&update(field, "😀".repeat(2049))).expect(field);
            assert_eq!(
                why,
                format!("a {field} of 4098 characters; Telegram carries at most 4096")
            );
        }
    }

    #[test]
    fn start_payloads() {
        assert_eq!(start_payload("/start"), Some(None));
        assert_eq!(start_payload("/start  "), Some(None));
        assert_eq!(start_payload("/start abc-123"), Some(Some("abc-123")));
        assert_eq!(start_payload("/start@office_bot abc"), Some(Some("abc")));
        assert_eq!(start_payload("/start@office_bot"), Some(None));
        assert_eq!(start_payload("/starting"), None);
        assert_eq!(start_payload("hej /start"), None);
    }
}
