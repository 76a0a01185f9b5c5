//! The loopback bridge: a channel backed by a directory, for tests and the demo only.
//!
//! It behaves like a real upstream: a message waits in `inbox/` as `ID.json` until the gateway
//! has committed it (then the file is removed), and every delivered reply is appended, fsynced,
//! to `outbox.jsonl`. A file `fail-transient` in the spool makes deliveries fail as an outage
//! would; a body containing `PERMANENT-FAIL` is refused for good.
//!
//! It also takes messages as a webhook: `POST /webhook/{instance}` with a JSON body
//! `{"id": ..., "from": ..., "body": ...}` and the header `x-loopback-secret` matching its
//! `secret` option; it answers 200 only after the gateway has recorded the message.

use std::{
    io::Write,
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use async_trait::async_trait;
use casebridge_bridges::{
    Accepted, Attachment, Bridge, BridgeError, BridgeFactory, Capabilities, Delivered,
    DeliveryError, InboundMessage, InboundSink, OutboundMessage, RemoteAddress, RemoteMessageId,
    Webhook,
};
use casebridge_config::BridgeInstance;
use serde::{Deserialize, Serialize};
use tokio::{sync::Notify, task::JoinHandle};

/// A message waiting in the inbox.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SpoolMessage {
    /// The upstream id.
    pub id: String,
    /// The sender's address.
    pub from: String,
    /// The text.
    pub body: String,
    /// Files, their content in base64.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attachments: Vec<SpoolAttachment>,
}

/// A file in a spool message.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SpoolAttachment {
    /// File name.
    pub name: String,
    /// MIME type.
    pub mime: String,
    /// Content, base64.
    pub base64: String,
}

impl SpoolMessage {
    fn into_inbound(self) -> Result<InboundMessage, String> {
        use base64::Engine as _;
        let attachments = self
            .attachments
            .into_iter()
            .map(|a| {
                let data = base64::engine::general_purpose::STANDARD
                    .decode(&a.base64)
                    .map_err(|e| format!("attachment {}: {e}", a.name))?;
                Ok(Attachment {
                    filename: a.name,
                    mime: a.mime,
                    data,
                })
            })
            .collect::<Result<_, String>>()?;
        Ok(InboundMessage {
            message_id: RemoteMessageId::new(self.id),
            from: RemoteAddress::new(self.from.clone()),
            display_name: self.from,
            body: self.body,
            attachments,
            sent_at: chrono::Utc::now(),
            ..Default::default()
        })
    }
}

/// One delivered reply, as the loopback "client" received it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct OutboxLine {
    /// The gateway's record id.
    pub record_id: i64,
    /// The case number.
    pub case_number: String,
    /// The recipient.
    pub to: String,
    /// The text.
    pub body: String,
    /// The HTML, if any.
    pub html: Option<String>,
}

/// The directory behind a loopback bridge, seen from the test.
#[derive(Debug, Clone)]
pub struct Spool {
    root: PathBuf,
}

impl Spool {
    /// A spool at `root` (created).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        let root = root.into();
        std::fs::create_dir_all(root.join("inbox")).unwrap();
        Self { root }
    }

    /// The directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Puts a client's message into the inbox (atomically).
    pub fn put(&self, id: &str, from: &str, body: &str) {
        self.put_with_files(id, from, body, &[]);
    }

    /// Puts a client's message with files (name, MIME type, content) into the inbox.
    pub fn put_with_files(&self, id: &str, from: &str, body: &str, files: &[(&str, &str, &[u8])]) {
        use base64::Engine as _;
        let attachments = files
            .iter()
            .map(|(name, mime, data)| SpoolAttachment {
                name: (*name).into(),
                mime: (*mime).into(),
                base64: base64::engine::general_purpose::STANDARD.encode(data),
            })
            .collect();
        let message = SpoolMessage {
            id: id.into(),
            from: from.into(),
            body: body.into(),
            attachments,
        };
        let tmp = self.root.join(format!(".{id}.tmp"));
        std::fs::write(&tmp, serde_json::to_vec(&message).unwrap()).unwrap();
        std::fs::rename(tmp, self.root.join("inbox").join(format!("{id}.json"))).unwrap();
    }

    /// Messages not yet taken by the gateway.
    pub fn inbox_len(&self) -> usize {
        std::fs::read_dir(self.root.join("inbox"))
            .map(|d| {
                d.filter_map(Result::ok)
                    .filter(|e| e.path().extension().is_some_and(|x| x == "json"))
                    .count()
            })
            .unwrap_or(0)
    }

    /// Every reply delivered so far.
    pub fn outbox(&self) -> Vec<OutboxLine> {
        std::fs::read_to_string(self.root.join("outbox.jsonl"))
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).expect("outbox lines are JSON"))
            .collect()
    }

    /// Makes deliveries fail transiently (an outage) or work again.
    pub fn set_failing(&self, failing: bool) {
        let flag = self.root.join("fail-transient");
        if failing {
            std::fs::write(flag, b"").unwrap();
        } else {
            let _ = std::fs::remove_file(flag);
        }
    }
}

/// `[bridges.X] kind = "loopback"`: its own option is `spool`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct LoopbackOptions {
    spool: PathBuf,
    /// Shared secret of the webhook; without it the webhook refuses everything.
    secret: Option<String>,
}

/// Builds loopback bridges.
pub struct LoopbackFactory;

impl BridgeFactory for LoopbackFactory {
    fn kind(&self) -> &'static str {
        "loopback"
    }

    fn build(&self, name: &str, config: &BridgeInstance) -> Result<Arc<dyn Bridge>, BridgeError> {
        let options: LoopbackOptions = config.options(name)?;
        Ok(Arc::new(Loopback {
            spool: Spool::new(options.spool),
            secret: options.secret,
            sink: std::sync::Mutex::new(None),
            stop: Arc::new(Notify::new()),
            task: std::sync::Mutex::new(None),
        }))
    }
}

/// All factories a test gateway uses: the built-in ones plus loopback.
pub fn test_factories() -> Vec<Arc<dyn BridgeFactory>> {
    let mut factories = casebridge_bridges::builtin_factories();
    factories.push(Arc::new(LoopbackFactory));
    factories
}

struct Loopback {
    spool: Spool,
    secret: Option<String>,
    sink: std::sync::Mutex<Option<InboundSink>>,
    stop: Arc<Notify>,
    task: std::sync::Mutex<Option<JoinHandle<()>>>,
}

#[async_trait]
impl Bridge for Loopback {
    fn capabilities(&self) -> Capabilities {
        Capabilities::new("loopback", "Loopback").with_html()
    }

    async fn start(&self, inbound: InboundSink) -> Result<(), BridgeError> {
        *self.sink.lock().unwrap() = Some(inbound.clone());
        let inbox = self.spool.root.join("inbox");
        let stop = self.stop.clone();
        let task = tokio::spawn(async move {
            loop {
                take_inbox(&inbox, &inbound).await;
                tokio::select! {
                    () = tokio::time::sleep(Duration::from_millis(20)) => {}
                    () = stop.notified() => return,
                }
            }
        });
        *self.task.lock().unwrap() = Some(task);
        Ok(())
    }

    async fn stop(&self) {
        // One waiter, which may be busy right now: a stored permit is not lost.
        self.stop.notify_one();
        let task = self.task.lock().unwrap().take();
        if let Some(task) = task {
            let _ = task.await;
        }
    }

    fn webhook(&self) -> Option<&dyn Webhook> {
        Some(self)
    }

    async fn deliver(&self, message: &OutboundMessage) -> Result<Delivered, DeliveryError> {
        if self.spool.root.join("fail-transient").exists() {
            return Err(DeliveryError::transient(
                "loopback upstream is down (fail-transient)",
            ));
        }
        if message.body.contains("PERMANENT-FAIL") {
            return Err(DeliveryError::permanent(
                "loopback upstream refused the message",
            ));
        }
        let line = OutboxLine {
            record_id: message.record_id,
            case_number: message.case_number.clone(),
            to: message.to.to_string(),
            body: message.body.clone(),
            html: message.html.clone(),
        };
        let path = self.spool.root.join("outbox.jsonl");
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(|e| DeliveryError::transient(format!("{}: {e}", path.display())))?;
        let mut bytes = serde_json::to_vec(&line).expect("serialisable");
        bytes.push(b'\n');
        file.write_all(&bytes)
            .and_then(|()| file.sync_data())
            .map_err(|e| DeliveryError::transient(format!("{}: {e}", path.display())))?;
        Ok(Delivered {
            remote_id: Some(RemoteMessageId::new(format!("loop-{}", message.record_id))),
        })
    }
}

#[async_trait]
impl Webhook for Loopback {
    async fn handle(&self, request: http::Request<Vec<u8>>) -> http::Response<Vec<u8>> {
        let answer = |status: u16, text: &str| {
            http::Response::builder()
                .status(status)
                .body(format!("{text}\n").into_bytes())
                .unwrap()
        };
        if request.method() != http::Method::POST {
            return answer(405, "use POST");
        }
        let presented = request
            .headers()
            .get("x-loopback-secret")
            .and_then(|v| v.to_str().ok());
        match (&self.secret, presented) {
            (_, None) => return answer(401, "missing x-loopback-secret"),
            (Some(secret), Some(p)) if p == secret => {}
            _ => return answer(403, "wrong x-loopback-secret"),
        }
        let message: SpoolMessage = match serde_json::from_slice(request.body()) {
            Ok(m) => m,
            Err(e) => return answer(400, &format!("body: {e}")),
        };
        let Some(sink) = self.sink.lock().unwrap().clone() else {
            return answer(503, "not started");
        };
        let inbound = match message.into_inbound() {
            Ok(m) => m,
            Err(e) => return answer(400, &e),
        };
        let submitted = sink.submit(inbound).await;
        match submitted {
            Ok(Accepted::Recorded { case_number }) => {
                answer(200, &format!("recorded in {case_number}"))
            }
            Ok(Accepted::Duplicate) => answer(200, "duplicate"),
            // The provider retries: nothing is lost.
            Err(e) => answer(503, &e.to_string()),
        }
    }
}

/// Submits every inbox file, oldest name first; removes a file only once the gateway has it.
async fn take_inbox(inbox: &Path, sink: &InboundSink) {
    let Ok(dir) = std::fs::read_dir(inbox) else {
        return;
    };
    let mut files: Vec<PathBuf> = dir
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    let mut pending = Vec::new();
    for path in files {
        let parsed = std::fs::read(&path)
            .map_err(|e| e.to_string())
            .and_then(|b| serde_json::from_slice::<SpoolMessage>(&b).map_err(|e| e.to_string()));
        let message = match parsed {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!(file = %path.display(), error = %e, "malformed spool file set aside");
                let _ = std::fs::rename(&path, path.with_extension("bad"));
                continue;
            }
        };
        // Enqueued in name order (the upstream's order); acknowledged once all are committed.
        let inbound = match message.into_inbound() {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!(file = %path.display(), error = %e, "malformed spool file set aside");
                let _ = std::fs::rename(&path, path.with_extension("bad"));
                continue;
            }
        };
        let ack = sink.enqueue(inbound).await;
        pending.push((path, ack));
    }
    for (path, ack) in pending {
        let result = match ack {
            Ok(ack) => ack.recorded().await,
            Err(e) => Err(e),
        };
        match result {
            Ok(_) => {
                let _ = std::fs::remove_file(&path);
            }
            Err(e) => {
                tracing::warn!(file = %path.display(), error = %e, "not accepted; kept for a retry")
            }
        }
    }
}
