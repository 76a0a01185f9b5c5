//! Benchmarks of the gateway; prints figures, asserts nothing. Run in release:
//!   cargo run --release -p casebridge-tests --bin casebridge-bench
//!
//! 1. The gateway's own cost per inbound message (record in SQLite, relay worker, send request)
//!    against an in-process stub homeserver, with the gateway on one thread (a current-thread
//!    runtime; sqlx's SQLite connections and the stub run on threads of their own): messages/s
//!    under a burst, and p50/p99 latency of single messages. `taskset -c 0` puts the whole
//!    process, stub included, on one CPU.
//! 2. End to end through a real Synapse: the gateway as its own process, SMS webhooks from 10
//!    numbers, 8 at a time, landed in the case rooms, beside Synapse's own direct client-send
//!    rate into as many rooms at the same concurrency (measured before and after, in the same
//!    run); the gateway process's CPU time per message, and its resident memory idle and after
//!    each of two phases of 10,000 messages.
//! 3. Resident memory of an idle gateway process (`--no-synapse`: part 2 measures it).
//! 4. Mail (`--email N`): Postfix's own SMTP acceptance rate, mails through IMAP into case
//!    rooms (real Dovecot, Postfix and Synapse), and the e-mail bridge's SMTP sends.
//! 5. Telegram (`--telegram N`): updates per second from the Bot API double into case rooms
//!    (real Synapse), by long polling and by webhook, and the bridge's sendMessage rate.
//! 6. Memory under a flood of new senders (`--senders N`, default 20,000; 0 skips it): see
//!    [`memory`].

mod memory;

use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use async_trait::async_trait;
use axum::{body::Bytes, extract::Request, http::StatusCode, response::IntoResponse, Json, Router};
use casebridge_bridges::{
    Bridge, BridgeError, BridgeFactory, Capabilities, Delivered, DeliveryError, InboundMessage,
    InboundSink, OutboundMessage, RemoteAddress, RemoteMessageId,
};
use casebridge_config::BridgeInstance;
use casebridge_gateway::Gateway;
use casebridge_tests::{free_port, GatewaySetup, Synapse, Worker};
use clap::Parser;
use futures::StreamExt;
use serde_json::{json, Value};

#[derive(Parser)]
struct Args {
    /// Messages in the burst of the gateway-only benchmark.
    #[arg(long, default_value_t = 20_000)]
    burst: usize,
    /// Messages per phase end to end through Synapse (two phases; Synapse's direct rate is
    /// measured with as many, at most 2,000).
    #[arg(long, default_value_t = 10_000)]
    e2e: usize,
    /// Cases (client numbers, rooms) in the end-to-end run.
    #[arg(long, default_value_t = 10)]
    cases: usize,
    /// Concurrent senders in the end-to-end, mail and Telegram runs.
    #[arg(long, default_value_t = 8)]
    concurrency: usize,
    /// Skip the Synapse part.
    #[arg(long)]
    no_synapse: bool,
    /// Mails for the e-mail part (0 skips it).
    #[arg(long, default_value_t = 0)]
    email: usize,
    /// Only the e-mail part.
    #[arg(long)]
    email_only: bool,
    /// Updates for the Telegram part (0 skips it).
    #[arg(long, default_value_t = 0)]
    telegram: usize,
    /// Only the Telegram part.
    #[arg(long)]
    telegram_only: bool,
    /// Messages for the memory part, from that many new senders and from 10 (0 skips it).
    #[arg(long, default_value_t = 20_000)]
    senders: usize,
    /// Only the memory part.
    #[arg(long)]
    memory_only: bool,
}

// ----- a bridge whose sink the benchmark drives directly -----

static SINK: Mutex<Option<InboundSink>> = Mutex::new(None);

fn sink() -> InboundSink {
    SINK.lock()
        .unwrap()
        .clone()
        .expect("the bench bridge started")
}

struct BenchFactory;
struct BenchBridge;

impl BridgeFactory for BenchFactory {
    fn kind(&self) -> &'static str {
        "loopback"
    }
    fn build(&self, _: &str, _: &BridgeInstance) -> Result<Arc<dyn Bridge>, BridgeError> {
        Ok(Arc::new(BenchBridge))
    }
}

#[async_trait]
impl Bridge for BenchBridge {
    fn capabilities(&self) -> Capabilities {
        Capabilities::new("bench", "Bench")
    }
    async fn start(&self, inbound: InboundSink) -> Result<(), BridgeError> {
        *SINK.lock().unwrap() = Some(inbound);
        Ok(())
    }
    async fn stop(&self) {}
    async fn deliver(&self, _: &OutboundMessage) -> Result<Delivered, DeliveryError> {
        Ok(Delivered::default())
    }
}

fn message(seq: usize, contact: usize) -> InboundMessage {
    InboundMessage {
        message_id: RemoteMessageId::new(format!("bench-{seq}")),
        from: RemoteAddress::new(format!("+4670{contact:07}")),
        display_name: format!("+4670{contact:07}"),
        body: format!("b{seq}"),
        sent_at: chrono::Utc::now(),
        ..Default::default()
    }
}

// ----- a stub homeserver that answers what the gateway calls, and notes each send -----

#[derive(Default)]
struct StubState {
    rooms: usize,
    events: usize,
    sent: BTreeMap<usize, Instant>,
}

async fn stub(state: Arc<Mutex<StubState>>, request: Request) -> axum::response::Response {
    let path = request.uri().path().to_owned();
    let method = request.method().clone();
    let body: Bytes = axum::body::to_bytes(request.into_body(), 1 << 20)
        .await
        .unwrap_or_default();
    let ok = |v: Value| (StatusCode::OK, Json(v)).into_response();
    if path.ends_with("/register") {
        return ok(json!({"user_id": "@x:localhost"}));
    }
    if path.contains("/directory/room/") {
        return (
            StatusCode::NOT_FOUND,
            Json(json!({"errcode": "M_NOT_FOUND", "error": "no"})),
        )
            .into_response();
    }
    if path.ends_with("/createRoom") {
        let mut s = state.lock().unwrap();
        s.rooms += 1;
        return ok(json!({"room_id": format!("!room{}:localhost", s.rooms)}));
    }
    if path.contains("/send/m.room.message/") && method == "PUT" {
        let v: Value = serde_json::from_slice(&body).unwrap_or_default();
        let mut s = state.lock().unwrap();
        if let Some(seq) = v["body"]
            .as_str()
            .and_then(|b| b.strip_prefix('b'))
            .and_then(|n| n.parse().ok())
        {
            s.sent.insert(seq, Instant::now());
        }
        s.events += 1;
        return ok(json!({"event_id": format!("$e{}", s.events)}));
    }
    if path.ends_with("/join") {
        return ok(json!({"room_id": "!r:localhost"}));
    }
    ok(json!({}))
}

fn start_stub() -> (String, Arc<Mutex<StubState>>) {
    let state = Arc::new(Mutex::new(StubState::default()));
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let app_state = state.clone();
    // The homeserver runs on its own thread: only the gateway is on the measured core.
    std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                let app = Router::new().fallback(move |r: Request| stub(app_state.clone(), r));
                axum::serve(listener, app).await.unwrap();
            });
    });
    (url, state)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1]
}

const SMS_SECRET: &str = "bench-webhook-secret";

/// The SMS bridge (46elks) for the webhook benchmarks; its API is never called.
fn sms_bridge() -> String {
    format!(
        "[bridges.sms]\nkind = \"sms\"\nteam = \"social\"\nnumber = \"+46766860000\"\n\
         webhook_secret = \"{SMS_SECRET}\"\n[bridges.sms.provider]\nkind = \"46elks\"\n\
         api_url = \"http://127.0.0.1:9\"\napi_username = \"u\"\napi_password = \"p\"\n"
    )
}

/// Posts `n` inbound SMS webhooks from `numbers` senders, `concurrency` at a time, from a
/// thread of their own; returns each request's latency and the total time.
fn post_webhooks(
    url: String,
    first: usize,
    n: usize,
    numbers: usize,
    concurrency: usize,
) -> (Vec<Duration>, Duration) {
    std::thread::spawn(move || {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap()
            .block_on(async move {
                let http = reqwest::Client::new();
                let t0 = Instant::now();
                let latencies = futures::stream::iter(first..first + n)
                    .map(|seq| {
                        let (http, url) = (http.clone(), url.clone());
                        async move {
                            let from = format!("+4670{:07}", 9000 + seq % numbers);
                            let id = format!("sms-{seq}");
                            let text = format!("b{seq}");
                            let form = [
                                ("direction", "incoming"),
                                ("id", id.as_str()),
                                ("from", from.as_str()),
                                ("to", "+46766860000"),
                                ("created", "2026-11-23T21:57:23.741000"),
                                ("message", text.as_str()),
                            ];
                            let t = Instant::now();
                            let r = http.post(&url).form(&form).send().await.unwrap();
                            assert_eq!(r.status().as_u16(), 204, "webhook refused");
                            t.elapsed()
                        }
                    })
                    .buffer_unordered(concurrency)
                    .collect::<Vec<_>>()
                    .await;
                (latencies, t0.elapsed())
            })
    })
    .join()
    .unwrap()
}

/// Part 4: inbound SMS webhooks into rooms, gateway on one thread, stub homeserver.
fn sms_webhooks_gateway_only(n: usize) {
    let dir = tempfile::tempdir().unwrap();
    let (url, state) = start_stub();
    let mut s = setup(dir.path(), &url);
    s.extra = sms_bridge();
    let webhook = format!(
        "http://127.0.0.1:{}/webhook/sms?secret={SMS_SECRET}",
        s.port
    );
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let factories = casebridge_tests::loopback::test_factories();
        let gateway = Gateway::start(s.config(), &factories).await.unwrap();
        let contacts = 100;
        // Warm up: every case and room exists.
        let hook = webhook.clone();
        tokio::task::spawn_blocking(move || post_webhooks(hook, 0, contacts, contacts, 8)).await.unwrap();
        wait_until("warm-up", Duration::from_secs(60), || state.lock().unwrap().sent.len() == contacts).await;
        let t0 = Instant::now();
        let hook = webhook.clone();
        let (mut latencies, posted) =
            tokio::task::spawn_blocking(move || post_webhooks(hook, contacts, n, contacts, 32)).await.unwrap();
        wait_until("relay", Duration::from_secs(600), || state.lock().unwrap().sent.len() == contacts + n).await;
        let relayed = t0.elapsed();
        latencies.sort();
        println!("inbound SMS webhooks (46elks form, gateway runtime on one thread, SQLite, stub homeserver):");
        println!("  {n} webhooks, 32 at a time: answered in {:.2} s ({:.0}/s), in rooms in {:.2} s ({:.0}/s)",
            posted.as_secs_f64(), n as f64 / posted.as_secs_f64(), relayed.as_secs_f64(), n as f64 / relayed.as_secs_f64());
        println!("  webhook latency until 204 (recorded): p50 {} µs, p99 {} µs",
            percentile(&latencies, 0.50).as_micros(), percentile(&latencies, 0.99).as_micros());
        gateway.shutdown().await;
    });
}

fn setup(dir: &std::path::Path, homeserver: &str) -> GatewaySetup {
    GatewaySetup {
        homeserver_url: homeserver.to_owned(),
        port: free_port(),
        database_url: format!("sqlite://{}", dir.join("bench.db").display()),
        spool: dir.join("spool"),
        members: vec!["@anna:localhost".into()],
        max_backoff_ms: 1000,
        extra: String::new(),
    }
}

async fn wait_until(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !f() {
        assert!(Instant::now() < deadline, "{what}: timed out");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// Part 1, on a current-thread runtime: the gateway uses one core.
fn gateway_only(burst: usize) {
    let dir = tempfile::tempdir().unwrap();
    let (url, state) = start_stub();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let gateway = Gateway::start(setup(dir.path(), &url).config(), &[Arc::new(BenchFactory) as Arc<dyn BridgeFactory>])
            .await
            .unwrap();
        let sink = sink();
        let contacts = 100;
        // Warm up: every case and room exists before measuring.
        for c in 0..contacts {
            sink.submit(message(c, c)).await.unwrap();
        }
        wait_until("warm-up", Duration::from_secs(60), || state.lock().unwrap().sent.len() == contacts).await;

        // Latency of single messages, one at a time.
        let mut latencies = Vec::new();
        for i in 0..500 {
            let seq = contacts + i;
            let t0 = Instant::now();
            sink.submit(message(seq, i % contacts)).await.unwrap();
            wait_until("single", Duration::from_secs(10), || state.lock().unwrap().sent.contains_key(&seq)).await;
            latencies.push(state.lock().unwrap().sent[&seq] - t0);
        }
        latencies.sort();

        // Throughput under a burst.
        let first = contacts + 500;
        let t0 = Instant::now();
        let mut acks = Vec::with_capacity(burst);
        for i in 0..burst {
            acks.push(sink.enqueue(message(first + i, i % contacts)).await.unwrap());
        }
        for ack in acks {
            ack.recorded().await.unwrap();
        }
        let recorded = t0.elapsed();
        let total = first + burst;
        wait_until("burst", Duration::from_secs(600), || state.lock().unwrap().sent.len() == total).await;
        let elapsed = t0.elapsed();
        println!("gateway only (gateway runtime on one thread, SQLite, stub homeserver):");
        println!("  burst of {burst}: recorded in {:.2} s ({:.0}/s), relayed in {:.2} s ({:.0} messages/s)",
            recorded.as_secs_f64(), burst as f64 / recorded.as_secs_f64(),
            elapsed.as_secs_f64(), burst as f64 / elapsed.as_secs_f64());
        println!("  single-message latency, record -> send request: p50 {} µs, p99 {} µs",
            percentile(&latencies, 0.50).as_micros(), percentile(&latencies, 0.99).as_micros());
        gateway.shutdown().await;
    });
}

/// Part 2: through a real Synapse, beside Synapse's own rate.
/// Synapse's own client-send rate: one user sends `n` messages into `rooms` rooms,
/// `concurrency` requests at a time (each sender takes the next message, round the rooms).
async fn direct_sends(
    synapse: &str,
    token: &str,
    rooms: &[String],
    n: usize,
    concurrency: usize,
) -> f64 {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let http = reqwest::Client::new();
    let next = Arc::new(AtomicUsize::new(0));
    let t0 = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let (http, next, rooms) = (http.clone(), next.clone(), rooms.to_vec());
        let (base, token) = (synapse.to_owned(), token.to_owned());
        tasks.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n {
                    break;
                }
                let room = &rooms[i % rooms.len()];
                let txn = format!("d{}-{i}", t0.elapsed().as_nanos());
                let r = http
                    .put(format!(
                        "{base}/_matrix/client/v3/rooms/{room}/send/m.room.message/{txn}"
                    ))
                    .bearer_auth(&token)
                    .json(&json!({"msgtype": "m.text", "body": "direct"}))
                    .send()
                    .await
                    .unwrap();
                assert!(r.status().is_success(), "direct send: {}", r.status());
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    n as f64 / t0.elapsed().as_secs_f64()
}

/// The gateway as its own process (the release build of `casebridge-testgw`, a
/// multi-threaded runtime as `casebridge run` has), for figures of a real process: its CPU
/// time and resident memory.
struct GatewayProcess {
    child: std::process::Child,
    base: String,
    http: reqwest::Client,
    ticks_per_second: f64,
}

impl GatewayProcess {
    fn spawn(s: &GatewaySetup, dir: &std::path::Path) -> Self {
        std::fs::create_dir_all(&s.spool).unwrap();
        let config = dir.join("casebridge.toml");
        std::fs::write(&config, s.toml()).unwrap();
        let exe = std::env::current_exe()
            .unwrap()
            .with_file_name("casebridge-testgw");
        let child = std::process::Command::new(&exe)
            .arg("--config")
            .arg(&config)
            .env("RUST_LOG", "warn")
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "{}: {e} (cargo build --release -p casebridge-tests --bins)",
                    exe.display()
                )
            });
        let ticks_per_second = std::process::Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok()?.trim().parse().ok())
            .unwrap_or(100.0);
        Self {
            child,
            base: format!("http://127.0.0.1:{}", s.port),
            http: reqwest::Client::new(),
            ticks_per_second,
        }
    }

    async fn wait_healthy(&self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(r) = self.http.get(format!("{}/health", self.base)).send().await {
                if r.status().is_success() {
                    return;
                }
            }
            assert!(
                Instant::now() < deadline,
                "the gateway process did not start"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Resident memory in MiB.
    fn rss_mib(&self) -> f64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        let kib: f64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .expect("VmRSS in /proc/PID/status");
        kib / 1024.0
    }

    /// CPU time used so far (user and system), in seconds.
    fn cpu_seconds(&self) -> f64 {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.child.id())).unwrap();
        // Fields after the command name, which is in parentheses and may hold spaces.
        let fields: Vec<&str> = stat[stat.rfind(')').unwrap() + 2..].split(' ').collect();
        let ticks: f64 = fields[11].parse::<f64>().unwrap() + fields[12].parse::<f64>().unwrap();
        ticks / self.ticks_per_second
    }

    /// Waits until `recorded` SMS are recorded and nothing waits for the Matrix relay; polls
    /// the gateway's metrics twice a second (each poll costs it one count query).
    async fn wait_landed(&self, recorded: usize) {
        let deadline = Instant::now() + Duration::from_secs(1800);
        loop {
            let text = self
                .http
                .get(format!("{}/metrics", self.base))
                .send()
                .await
                .unwrap()
                .text()
                .await
                .unwrap();
            let value = |name: &str| -> Option<f64> {
                text.lines()
                    .find(|l| l.starts_with(name))
                    .and_then(|l| l.rsplit(' ').next()?.parse().ok())
            };
            let done = value("casebridge_messages_in_total{channel=\"sms\"}").unwrap_or(0.0)
                >= recorded as f64
                && value("casebridge_queue_depth{target=\"matrix\"}") == Some(0.0);
            if done {
                return;
            }
            assert!(Instant::now() < deadline, "messages did not land in time");
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
}

impl Drop for GatewayProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Part 2: end to end through a real Synapse. SMS webhooks from `cases` numbers, `concurrency`
/// at a time, into a gateway process, landed in the case rooms; beside Synapse's own direct
/// client-send rate into as many rooms at the same concurrency, measured before and after in
/// the same run. Two phases of `per_phase` messages each give the gateway's CPU time per
/// message and its memory idle, after the first and after the second phase.
async fn through_synapse(per_phase: usize, cases: usize, concurrency: usize) {
    let dir = tempfile::tempdir().unwrap();
    let mut s = setup(dir.path(), "http://127.0.0.1:1");
    s.extra = sms_bridge();
    let synapse = Synapse::start(&[s.registration_yaml()]).await;
    s.homeserver_url = synapse.url.clone();
    synapse.register_user("anna", "anna-password").await;

    let http = reqwest::Client::new();
    let anna = Worker::login(&synapse.url, "anna", "anna-password").await;
    let token = anna.access_token().to_owned();
    let mut rooms = Vec::new();
    for _ in 0..cases {
        let r: Value = http
            .post(format!("{}/_matrix/client/v3/createRoom", synapse.url))
            .bearer_auth(&token)
            .json(&json!({}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        rooms.push(r["room_id"].as_str().unwrap().to_owned());
    }
    let direct_n = per_phase.clamp(1, 2000);
    let direct_before = direct_sends(&synapse.url, &token, &rooms, direct_n, concurrency).await;

    let gateway = GatewayProcess::spawn(&s, dir.path());
    gateway.wait_healthy().await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let idle = gateway.rss_mib();
    let webhook = format!(
        "http://127.0.0.1:{}/webhook/sms?secret={SMS_SECRET}",
        s.port
    );
    // Warm up: every case and its room exist before measuring.
    let hook = webhook.clone();
    tokio::task::spawn_blocking(move || post_webhooks(hook, 0, cases, cases, concurrency))
        .await
        .unwrap();
    gateway.wait_landed(cases).await;

    let mut phases = Vec::new();
    for phase in 0..2 {
        let first = cases + phase * per_phase;
        let (cpu0, t0) = (gateway.cpu_seconds(), Instant::now());
        let hook = webhook.clone();
        tokio::task::spawn_blocking(move || {
            post_webhooks(hook, first, per_phase, cases, concurrency)
        })
        .await
        .unwrap();
        gateway.wait_landed(first + per_phase).await;
        let rate = per_phase as f64 / t0.elapsed().as_secs_f64();
        let cpu_ms = (gateway.cpu_seconds() - cpu0) * 1000.0 / per_phase as f64;
        phases.push((rate, cpu_ms, gateway.rss_mib()));
    }
    let direct_after = direct_sends(&synapse.url, &token, &rooms, direct_n, concurrency).await;
    drop(gateway);
    drop(anna);

    let direct = (direct_before + direct_after) / 2.0;
    println!(
        "end to end through Synapse (gateway process, SMS webhooks from {cases} numbers, \
         {concurrency} at a time, 2 x {per_phase} messages):"
    );
    println!(
        "  Synapse direct client sends, {cases} rooms, {concurrency} at a time: \
         {direct_before:.1} before, {direct_after:.1} after (mean {direct:.1}) messages/s"
    );
    for (k, (rate, cpu_ms, _)) in phases.iter().enumerate() {
        println!(
            "  phase {}: landed in rooms {rate:.1} messages/s ({:.2} x direct; goal >= 0.95), \
             gateway CPU {cpu_ms:.3} ms per message (goal <= 0.5)",
            k + 1,
            rate / direct
        );
    }
    let (after_first, after_second) = (phases[0].2, phases[1].2);
    println!(
        "  gateway RSS: idle {idle:.1} MiB (goal <= 20 MB), after {} messages {after_first:.1} MiB, \
         after {} {after_second:.1} MiB (growth {:.1} MiB; goal <= 5 MB)",
        cases + per_phase,
        cases + 2 * per_phase,
        after_second - after_first
    );
}

/// Sends `n` mails to `to` over SMTP from `senders` clients at once (each its own address and
/// connection pool); returns mails/s as Postfix accepted them.
async fn smtp_burst(port: u16, to: &'static str, n: usize, senders: usize, tag: &str) -> f64 {
    use lettre::{address::Envelope, AsyncSmtpTransport, AsyncTransport, Tokio1Executor};
    let t0 = Instant::now();
    let mut tasks = Vec::new();
    for k in 0..senders {
        let tag = tag.to_owned();
        tasks.push(tokio::spawn(async move {
            let smtp = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous("127.0.0.1")
                .port(port)
                .tls(lettre::transport::smtp::client::Tls::None)
                .build();
            let from = format!("client{k}@client.test");
            let envelope =
                Envelope::new(Some(from.parse().unwrap()), vec![to.parse().unwrap()]).unwrap();
            for i in (k..n).step_by(senders) {
                let raw = format!(
                    "From: {from}\r\nTo: {to}\r\nSubject: Bench {i}\r\n\
                     Message-ID: <{tag}-{i}@client.test>\r\n\r\nMail number {i} of the benchmark.\r\n"
                );
                smtp.send_raw(&envelope, raw.as_bytes()).await.unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    n as f64 / t0.elapsed().as_secs_f64()
}

/// Client messages in `state` (`received`, `relayed`) in the whole store.
async fn inbound_in_state(store: &casebridge_gateway::store::Store, state: &str) -> usize {
    use casebridge_gateway::store::message;
    use sea_orm::{ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter};
    message::Entity::find()
        .filter(message::Column::Direction.eq("inbound"))
        .filter(message::Column::State.eq(state))
        .count(store.connection())
        .await
        .unwrap() as usize
}

/// Part 4: mail, through real Dovecot, Postfix and Synapse.
async fn email(n: usize, senders: usize) {
    use casebridge_tests::mail::{MailServer, OFFICE};

    let mail = MailServer::start().await;
    // Postfix alone: SMTP submissions to a mailbox nobody reads.
    let postfix = smtp_burst(mail.smtp_port, "other@client.test", n, senders, "p").await;

    let dir = tempfile::tempdir().unwrap();
    let mut s = setup(dir.path(), "http://127.0.0.1:1");
    s.extra = mail.bridge_toml("social");
    let synapse = Synapse::start(&[s.registration_yaml()]).await;
    s.homeserver_url = synapse.url.clone();
    synapse.register_user("anna", "anna-password").await;
    let gateway = Gateway::start(s.config(), &casebridge_tests::loopback::test_factories())
        .await
        .unwrap();
    let store = gateway.store().clone();
    let count = |state: &'static str| inbound_in_state(&store, state);
    // Warm up: one mail per sender, so that the cases and rooms exist.
    smtp_burst(mail.smtp_port, OFFICE.0, senders, senders, "w").await;
    let deadline = Instant::now() + Duration::from_secs(120);
    while count("relayed").await < senders {
        assert!(
            Instant::now() < deadline,
            "warm-up mails did not reach the rooms"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Latency: single mails, one at a time, from Postfix accepting the SMTP submission to the
    // message in the case room (Postfix, LMTP, Dovecot, IDLE push, the gateway, Synapse).
    let mut latencies = Vec::new();
    for i in 0..20 {
        smtp_burst(mail.smtp_port, OFFICE.0, 1, 1, &format!("l{i}")).await;
        let accepted = Instant::now();
        while count("relayed").await < senders + i + 1 {
            assert!(
                accepted.elapsed() < Duration::from_secs(60),
                "a single mail took a minute"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        latencies.push(accepted.elapsed());
    }
    latencies.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let latency = format!(
        "p50 {:.0} ms, p95 {:.0} ms, max {:.0} ms",
        ms(latencies[9]),
        ms(latencies[18]),
        ms(latencies[19])
    );
    let warm = senders + latencies.len();

    let t0 = Instant::now();
    let submitted = smtp_burst(mail.smtp_port, OFFICE.0, n, senders, "b").await;
    let mut recorded_at = None;
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        if recorded_at.is_none() && count("received").await + count("relayed").await >= n + warm {
            recorded_at = Some(t0.elapsed());
        }
        if count("relayed").await >= n + warm {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "mails did not reach the rooms in 10 minutes"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let into_rooms = n as f64 / t0.elapsed().as_secs_f64();
    let recorded = n as f64 / recorded_at.unwrap_or_else(|| t0.elapsed()).as_secs_f64();

    // The bridge's own SMTP sends, one after another as its delivery worker sends them.
    let instance = s.config().bridges["mail"].clone();
    let bridge = casebridge_bridges::email::EmailFactory
        .build("mail", &instance)
        .unwrap();
    let t0 = Instant::now();
    for i in 0..n {
        bridge
            .deliver(&OutboundMessage {
                record_id: i as i64,
                case_number: "2026-000001".into(),
                to: RemoteAddress::new("client@client.test"),
                body: format!("Svar nummer {i}."),
                html: Some(format!("<p>Svar nummer <b>{i}</b>.</p>")),
                discreet: None,
                automatic: false,
                attachments: Vec::new(),
                conversation: casebridge_bridges::Conversation {
                    subject: Some("Fråga".into()),
                    in_reply_to: Some("c1@client.test".into()),
                    references: vec!["c1@client.test".into()],
                },
            })
            .await
            .unwrap();
    }
    let outbound = n as f64 / t0.elapsed().as_secs_f64();
    println!("mail ({n} mails, {senders} senders; Dovecot, Postfix and Synapse on this machine):");
    println!("  Postfix accepting SMTP submissions:        {postfix:.1} mails/s");
    println!("  submitted to the office mailbox:           {submitted:.1} mails/s");
    println!("  recorded by the gateway (IMAP, committed): {recorded:.1} mails/s");
    println!("  in the case rooms (through Synapse):       {into_rooms:.1} mails/s");
    println!("  one mail, Postfix acceptance to the room:  {latency} (20 mails, one at a time)");
    println!("  bridge sending replies over SMTP:          {outbound:.1} mails/s (one at a time)");
    gateway.shutdown().await;
}

/// Part 5: Telegram updates into case rooms, from the Bot API double through a real Synapse.
async fn telegram(n: usize, chats: usize) {
    use casebridge_tests::telegram::{TelegramDouble, TOKEN};

    println!("telegram ({n} updates from {chats} chats; Bot API double, Synapse on this machine):");
    for mode in ["polling", "webhook"] {
        let double = TelegramDouble::start().await;
        let dir = tempfile::tempdir().unwrap();
        let mut s = setup(dir.path(), "http://127.0.0.1:1");
        let hook = format!("http://127.0.0.1:{}/webhook/tg", s.port);
        s.extra = format!(
            "[bridges.tg]\nkind = \"telegram\"\nteam = \"social\"\ntoken = \"{TOKEN}\"\n\
             api_url = \"{}\"\npoll_seconds = 1\n{}",
            double.url,
            if mode == "webhook" {
                format!(
                    "mode = \"webhook\"\nwebhook_url = \"{hook}\"\nwebhook_secret = \"bench\"\n"
                )
            } else {
                String::new()
            }
        );
        let synapse = Synapse::start(&[s.registration_yaml()]).await;
        s.homeserver_url = synapse.url.clone();
        synapse.register_user("anna", "anna-password").await;
        let gateway = Gateway::start(s.config(), &casebridge_tests::loopback::test_factories())
            .await
            .unwrap();
        let store = gateway.store().clone();
        let relayed = || inbound_in_state(&store, "relayed");
        // Warm up: one message per chat, so that cases and rooms exist.
        for c in 0..chats {
            double.client_writes(1000 + c as i64, "Klient", "k", "hej");
        }
        wait_until_async(
            "warm-up updates in rooms",
            Duration::from_secs(120),
            || async { relayed().await >= chats },
        )
        .await;
        let t0 = Instant::now();
        for i in 0..n {
            double.client_writes(
                1000 + (i % chats) as i64,
                "Klient",
                "k",
                &format!("meddelande {i}"),
            );
        }
        let mut confirmed_at = None;
        let deadline = Instant::now() + Duration::from_secs(600);
        while relayed().await < n + chats {
            if confirmed_at.is_none() && double.unconfirmed() == 0 {
                confirmed_at = Some(t0.elapsed());
            }
            assert!(
                Instant::now() < deadline,
                "updates did not reach the rooms in 10 minutes"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let into_rooms = n as f64 / t0.elapsed().as_secs_f64();
        let confirmed = n as f64 / confirmed_at.unwrap_or_else(|| t0.elapsed()).as_secs_f64();
        let how = if mode == "webhook" {
            "webhook (the double calls one at a time)"
        } else {
            "long polling"
        };
        println!("  {how}:");
        println!("    recorded and confirmed to Telegram:  {confirmed:.1} updates/s");
        println!("    in the case rooms (through Synapse): {into_rooms:.1} updates/s");
        if mode == "polling" {
            let instance = s.config().bridges["tg"].clone();
            let bridge = casebridge_bridges::telegram::TelegramFactory
                .build("tg", &instance)
                .unwrap();
            let t0 = Instant::now();
            for i in 0..n {
                bridge
                    .deliver(&OutboundMessage {
                        record_id: i as i64,
                        case_number: "2026-000001".into(),
                        to: RemoteAddress::new("1000"),
                        body: format!("Svar nummer {i}."),
                        html: None,
                        discreet: None,
                        automatic: false,
                        attachments: Vec::new(),
                        conversation: Default::default(),
                    })
                    .await
                    .unwrap();
            }
            let outbound = n as f64 / t0.elapsed().as_secs_f64();
            println!(
                "    bridge sendMessage to the double:    {outbound:.1} messages/s (one at a time)"
            );
        }
        gateway.shutdown().await;
    }
}

async fn wait_until_async<F: std::future::Future<Output = bool>>(
    what: &str,
    timeout: Duration,
    mut f: impl FnMut() -> F,
) {
    let deadline = Instant::now() + timeout;
    while !f().await {
        assert!(Instant::now() < deadline, "{what}: not within {timeout:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Part 3: RSS of the gateway binary, idle.
fn idle_rss() {
    let dir = tempfile::tempdir().unwrap();
    let s = setup(dir.path(), &format!("http://127.0.0.1:{}", free_port()));
    let gateway = GatewayProcess::spawn(&s, dir.path());
    std::thread::sleep(Duration::from_secs(3));
    println!(
        "idle gateway process (with the loopback bridge): {:.1} MiB",
        gateway.rss_mib()
    );
}

fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    if args.telegram_only {
        tokio::runtime::Runtime::new()
            .unwrap()
            .block_on(telegram(args.telegram.max(1), args.concurrency));
        return;
    }
    if args.memory_only {
        tokio::runtime::Runtime::new()
            .unwrap()
            .block_on(memory::new_senders(args.senders.max(2)));
        return;
    }
    if args.email_only {
        tokio::runtime::Runtime::new()
            .unwrap()
            .block_on(email(args.email.max(1), args.concurrency));
        return;
    }
    gateway_only(args.burst);
    sms_webhooks_gateway_only(args.burst / 4);
    if !args.no_synapse {
        tokio::runtime::Runtime::new()
            .unwrap()
            .block_on(through_synapse(args.e2e, args.cases, args.concurrency));
    }
    if args.email > 0 {
        tokio::runtime::Runtime::new()
            .unwrap()
            .block_on(email(args.email, args.concurrency));
    }
    if args.telegram > 0 {
        tokio::runtime::Runtime::new()
            .unwrap()
            .block_on(telegram(args.telegram, args.concurrency));
    }
    if args.senders > 0 {
        tokio::runtime::Runtime::new()
            .unwrap()
            .block_on(memory::new_senders(args.senders));
    }
    if args.no_synapse {
        // The end-to-end part measures it beside its other memory figures.
        idle_rss();
    }
}
