//! Generated hostile input at every webhook and at the appservice API (issue 19): for each
//! channel, genuine requests as the provider sends them, and the same requests spoilt in one
//! way that makes them certainly not the provider's (a wrong secret or signature, a sender that
//! is no address, another office's number, a missing, repeated or oversized field, bytes that
//! are no form or JSON). Genuine ones are taken and recorded once; spoilt ones get the 4xx
//! their fault calls for and leave nothing behind; nothing panics, the server keeps answering,
//! and every request costs at most a couple of bounded log lines. No Synapse: the homeserver
//! is not needed to take or refuse a request.

mod appservice;

use casebridge_gateway::Gateway;
use casebridge_tests::{
    free_port, loopback::test_factories, sms_gateway, telegram::TelegramDouble, twilio,
    CapturedLog, GatewaySetup, Spool,
};
use proptest::{
    prelude::*,
    test_runner::{Config, TestCaseError, TestRunner},
};
use serde_json::{json, Value};
use tokio::runtime::Runtime;

const ELKS_SECRET: &str = "elks-webhook-secret";
const TWILIO_SID: &str = "AC0123456789abcdef0123456789abcdef";
const TWILIO_TOKEN: &str = "twilio-auth-token";
const TG_SECRET: &str = "tg-webhook-secret_1";
const ELKS_NUMBER: &str = "+46766860000";
const TWILIO_NUMBER: &str = "+14155550100";
const GENERIC_NUMBER: &str = "+46766860001";

/// The gateway with one bridge of every webhook kind, its folder and the Telegram double.
struct Target {
    rt: Runtime,
    gateway: Gateway,
    base: String,
    http: reqwest::Client,
    _telegram: TelegramDouble,
    _dir: tempfile::TempDir,
}

impl Target {
    fn start() -> Self {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let base = format!("http://127.0.0.1:{port}");
        // Nothing listens here: replies are never sent in this test.
        let dead = format!("http://127.0.0.1:{}", free_port());
        let (gateway, telegram) = rt.block_on(async {
            let telegram = TelegramDouble::start().await;
            let extra = format!(
                r#"
[bridges.elks]
kind = "sms"
team = "social"
number = "{ELKS_NUMBER}"
public_url = "{base}/"
webhook_secret = "{ELKS_SECRET}"

[bridges.elks.provider]
kind = "46elks"
api_url = "{dead}"
api_username = "u"
api_password = "p"

[bridges.tw]
kind = "sms"
team = "social"
number = "{TWILIO_NUMBER}"
default_region = "US"
public_url = "{base}"

[bridges.tw.provider]
kind = "twilio"
api_url = "{dead}"
account_sid = "{TWILIO_SID}"
auth_token = "{TWILIO_TOKEN}"

[bridges.gw]
kind = "sms"
team = "social"
number = "{GENERIC_NUMBER}"
public_url = "{base}"

[bridges.gw.provider]
kind = "webhook"
send_url = "{dead}/send"
signing_secret = "{signing}"

[bridges.tg]
kind = "telegram"
team = "social"
token = "{tg_token}"
api_url = "{tg}"
mode = "webhook"
webhook_url = "{base}/webhook/tg"
webhook_secret = "{TG_SECRET}"
"#,
                signing = sms_gateway::SECRET,
                tg = telegram.url,
                tg_token = casebridge_tests::telegram::TOKEN,
            );
            let setup = GatewaySetup {
                homeserver_url: dead.clone(),
                port,
                database_url: format!("sqlite://{}", dir.path().join("cb.db").display()),
                spool: Spool::new(dir.path().join("spool")).root().to_owned(),
                members: vec!["@anna:localhost".into()],
                max_backoff_ms: 60_000,
                extra,
            };
            let gateway = Gateway::start(setup.config(), &test_factories())
                .await
                .unwrap();
            (gateway, telegram)
        });
        Self {
            rt,
            gateway,
            base,
            http: reqwest::Client::new(),
            _telegram: telegram,
            _dir: dir,
        }
    }

    /// Client messages recorded, in every case.
    fn inbound(&self) -> usize {
        self.rt.block_on(crate::count_records(&self.gateway, |m| {
            m.direction == casebridge_gateway::store::Direction::Inbound
        }))
    }

    /// Sends `request`; its status and text.
    fn send(&self, request: Request) -> (u16, String) {
        let mut builder = self.http.request(
            request.method.clone(),
            format!("{}{}", self.base, request.path),
        );
        for (name, value) in &request.headers {
            builder = builder.header(name.as_str(), value.as_str());
        }
        self.rt.block_on(async {
            let response = builder.body(request.body).send().await.unwrap();
            let status = response.status().as_u16();
            (status, response.text().await.unwrap_or_default())
        })
    }

    fn health(&self) -> u16 {
        self.send(Request {
            method: reqwest::Method::GET,
            path: "/health".into(),
            headers: vec![],
            body: vec![],
        })
        .0
    }
}

/// One HTTP request.
#[derive(Clone)]
struct Request {
    method: reqwest::Method,
    path: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl std::fmt::Debug for Request {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let body = String::from_utf8_lossy(&self.body);
        let body: String = body.chars().take(300).collect();
        write!(
            f,
            "{} {} {:?} {body:?}",
            self.method,
            &self.path[..self.path.len().min(200)],
            self.headers
        )
    }
}

/// How a genuine request is spoilt, and the statuses that fault may be answered with.
#[derive(Debug, Clone)]
enum Spoil {
    /// Left as the provider sends it.
    None,
    /// A wrong secret, token or signature.
    WrongAuth,
    /// No secret, token or signature at all.
    NoAuth,
    /// A sender that is no phone number or sender id.
    Sender(String),
    /// Addressed to another number.
    OtherNumber(String),
    /// A required field left out (its index among the fields).
    Missing(usize),
    /// A field given twice (its index), with this second value.
    Repeated(usize, String),
    /// A body or text longer than the channel carries.
    Oversized,
    /// A message id far longer than any provider's.
    LongId,
    /// The body replaced by these bytes.
    Garbage(Vec<u8>),
}

impl Spoil {
    /// The statuses this fault may be answered with.
    fn expected(&self) -> &'static [u16] {
        match self {
            Spoil::None => &[200, 204],
            Spoil::WrongAuth | Spoil::NoAuth => &[401, 403],
            Spoil::OtherNumber(_) => &[403],
            _ => &[400],
        }
    }
}

/// Senders no SMS provider delivers: empty, a lone `+`, paths, markup, Matrix ids, two numbers
/// on two lines, numbers longer than E.164 allows, sender ids with a character operators never
/// take or longer than 11.
fn bad_sender() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        Just("+".to_owned()),
        "[a-z]{0,4}[<>/@.:;!\"'\\\\\n\t%&=?][a-z0-9]{0,6}",
        "\\+[0-9]{16,40}",
        "\\+467[0-9]{8}\n\\+467[0-9]{8}",
        "[A-Za-z][A-Za-z0-9]{11,60}",
        "[A-Za-z]{1,5}[äöåéß€😀][A-Za-z]{0,4}",
        "0{200,2000}",
    ]
}

/// What a client may write in an SMS: any text, in any script, up to a few hundred characters.
fn sms_text() -> impl Strategy<Value = String> {
    prop_oneof![
        "[ -~]{1,300}",
        "[a-zåäöA-ZÅÄÖ0-9 ,.!?\n]{1,200}",
        "\\PC{1,120}",
        "[😀🙏❤️]{1,40}",
    ]
}

/// Fields as a provider posts them (`name`, `value`), and which are required.
struct Form {
    fields: Vec<(&'static str, String)>,
    required: usize,
}

/// A genuine request's fields for channel `channel` (`elks`, `tw`, `gw`); `n` keeps ids unique.
fn genuine(channel: &str, n: u64, text: &str, sender: &str) -> Form {
    match channel {
        "elks" => Form {
            fields: vec![
                ("id", format!("s{n:032x}")),
                ("from", sender.to_owned()),
                ("to", ELKS_NUMBER.to_owned()),
                ("message", text.to_owned()),
                ("direction", "incoming".to_owned()),
                ("created", "2026-11-29T10:00:00.123000".to_owned()),
            ],
            required: 6,
        },
        "tw" => Form {
            fields: vec![
                ("MessageSid", format!("SM{n:032x}")),
                ("From", sender.to_owned()),
                ("To", TWILIO_NUMBER.to_owned()),
                ("Body", text.to_owned()),
                ("AccountSid", TWILIO_SID.to_owned()),
                ("NumSegments", "1".to_owned()),
            ],
            required: 4,
        },
        _ => Form {
            fields: vec![
                ("id", format!("gw-{n}")),
                ("from", sender.to_owned()),
                ("to", GENERIC_NUMBER.to_owned()),
                ("text", text.to_owned()),
            ],
            required: 4,
        },
    }
}

/// `form` as channel `channel`'s provider would post it to the gateway at `base`, spoilt by
/// `spoil`.
fn sms_request(base: &str, channel: &str, mut form: Form, spoil: &Spoil) -> Request {
    let (from, to, text) = (1, 2, 3);
    match spoil {
        Spoil::Sender(s) => form.fields[from].1 = s.clone(),
        Spoil::OtherNumber(number) => form.fields[to].1 = number.clone(),
        Spoil::Missing(i) => {
            form.fields.remove(i % form.required);
        }
        Spoil::Repeated(i, value) => {
            let name = form.fields[i % form.required].0;
            form.fields.push((name, value.clone()));
        }
        Spoil::Oversized => form.fields[text].1 = "a".repeat(40_000),
        Spoil::LongId => form.fields[0].1 = format!("SM{}", "a".repeat(600)),
        _ => {}
    }
    let mut path = format!("/webhook/{channel}");
    let mut headers = Vec::new();
    let body = if channel == "gw" {
        // Written field by field: a repeated field stays repeated, as a sender could write it.
        let fields: Vec<String> = form
            .fields
            .iter()
            .map(|(k, v)| format!("{}:{}", Value::from(*k), Value::from(v.as_str())))
            .collect();
        headers.push(("content-type".to_owned(), "application/json".to_owned()));
        format!("{{{}}}", fields.join(",")).into_bytes()
    } else {
        headers.push((
            "content-type".to_owned(),
            "application/x-www-form-urlencoded".to_owned(),
        ));
        serde_urlencoded::to_string(&form.fields)
            .unwrap()
            .into_bytes()
    };
    let body = match spoil {
        Spoil::Garbage(bytes) => bytes.clone(),
        _ => body,
    };
    match (channel, spoil) {
        (_, Spoil::NoAuth) => {}
        ("elks", Spoil::WrongAuth) => path.push_str("?secret=elks-webhook-secreT"),
        ("elks", _) => path.push_str(&format!("?secret={ELKS_SECRET}")),
        ("tw", _) => {
            let token = match spoil {
                Spoil::WrongAuth => "another-token",
                _ => TWILIO_TOKEN,
            };
            // Signed as Twilio signs: every parameter of the body, repeats included (garbage
            // that still parses as a form, as that form).
            let params: Vec<(String, String)> =
                serde_urlencoded::from_bytes(&body).unwrap_or_default();
            let params: Vec<(&str, &str)> = params
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            let url = format!("{base}{path}");
            headers.push((
                "x-twilio-signature".to_owned(),
                twilio::signature(token, &url, &params),
            ));
        }
        _ => {
            let secret = match spoil {
                Spoil::WrongAuth => "another-secret",
                _ => sms_gateway::SECRET,
            };
            headers.push((
                "x-signature".to_owned(),
                format!(
                    "sha256={}",
                    casebridge_bridges::sms::generic::sign(secret, &body)
                ),
            ));
        }
    }
    Request {
        method: reqwest::Method::POST,
        path,
        headers,
        body,
    }
}

/// A spoilt or genuine SMS request of one of the three providers, and how it was spoilt.
fn sms_case() -> impl Strategy<Value = (&'static str, String, String, Spoil)> {
    let channel = prop_oneof![Just("elks"), Just("tw"), Just("gw")];
    let sender = prop_oneof![
        "\\+4670[0-9]{7}",
        "\\+1415555[0-9]{4}",
        "[A-Z][A-Za-z0-9]{0,10}",
    ];
    let spoil = prop_oneof![
        3 => Just(Spoil::None),
        1 => Just(Spoil::WrongAuth),
        1 => Just(Spoil::NoAuth),
        2 => bad_sender().prop_map(Spoil::Sender),
        1 => "\\+4676686[1-9][0-9]{3}".prop_map(Spoil::OtherNumber),
        1 => any::<usize>().prop_map(Spoil::Missing),
        1 => (any::<usize>(), "[a-z0-9]{0,8}").prop_map(|(i, v)| Spoil::Repeated(i, v)),
        1 => Just(Spoil::Oversized),
        1 => Just(Spoil::LongId),
        1 => prop::collection::vec(any::<u8>(), 0..300).prop_map(Spoil::Garbage),
    ];
    (channel, sender, sms_text(), spoil)
}

/// A Telegram webhook call: a private message as Telegram sends it, spoilt by `spoil`
/// (`Sender`, `OtherNumber`, `Missing` and `Repeated` do not apply: Telegram's ids are typed).
fn telegram_request(n: u64, text: &str, spoil: &Spoil) -> Request {
    let chat = 1_000_000 + i64::try_from(n).unwrap();
    let text = match spoil {
        Spoil::Oversized => "ж".repeat(4097),
        _ => text.to_owned(),
    };
    let update = json!({
        "update_id": 500_000 + n,
        "message": {
            "message_id": n, "date": 1_764_400_000,
            "chat": {"id": chat, "type": "private", "first_name": "Olena"},
            "from": {"id": chat, "is_bot": false, "first_name": "Olena"},
            "text": text,
        }
    });
    let body = match spoil {
        Spoil::Garbage(bytes) => bytes.clone(),
        _ => update.to_string().into_bytes(),
    };
    let mut headers = vec![("content-type".to_owned(), "application/json".to_owned())];
    match spoil {
        Spoil::NoAuth => {}
        Spoil::WrongAuth => headers.push((
            "x-telegram-bot-api-secret-token".to_owned(),
            "tg-webhook-secret_2".to_owned(),
        )),
        _ => headers.push((
            "x-telegram-bot-api-secret-token".to_owned(),
            TG_SECRET.to_owned(),
        )),
    }
    Request {
        method: reqwest::Method::POST,
        path: "/webhook/tg".to_owned(),
        headers,
        body,
    }
}

fn telegram_case() -> impl Strategy<Value = (String, Spoil)> {
    let spoil = prop_oneof![
        3 => Just(Spoil::None),
        1 => Just(Spoil::WrongAuth),
        1 => Just(Spoil::NoAuth),
        1 => Just(Spoil::Oversized),
        // Bytes that are no JSON object at all (a JSON object would be an update of a kind
        // the bridge ignores, and is answered 200).
        1 => prop::collection::vec(any::<u8>(), 0..300)
            .prop_filter("no JSON", |b| serde_json::from_slice::<Value>(b).is_err())
            .prop_map(Spoil::Garbage),
    ];
    (sms_text(), spoil)
}

/// Every request runs against one gateway; the log of the whole run is kept.
struct Run {
    target: Target,
    captured: CapturedLog,
    requests: usize,
    _guard: tracing::subscriber::DefaultGuard,
}

impl Run {
    fn start() -> Self {
        let captured = CapturedLog::default();
        // One thread: the gateway's tasks run where this subscriber is the default.
        let guard = tracing::subscriber::set_default(captured.subscriber(tracing::Level::INFO));
        Self {
            target: Target::start(),
            captured,
            requests: 0,
            _guard: guard,
        }
    }

    /// Sends `request` spoilt by `spoil`; checks the answer and that a refusal left nothing.
    fn check(&mut self, request: Request, spoil: &Spoil) -> Result<(), TestCaseError> {
        let before = self.target.inbound();
        let shown = format!("{request:?}");
        let (status, text) = self.target.send(request);
        self.requests += 1;
        let after = self.target.inbound();
        prop_assert!(
            spoil.expected().contains(&status),
            "{spoil:?} answered {status} {text:?}, expected one of {:?}\n{shown}",
            spoil.expected()
        );
        let recorded = if matches!(spoil, Spoil::None) { 1 } else { 0 };
        prop_assert_eq!(
            after - before,
            recorded,
            "{:?} {}: {}",
            spoil,
            status,
            shown
        );
        Ok(())
    }

    /// The log so far: every line bounded, at most a few per request.
    fn check_log(&self) {
        let log = self.captured.since(0);
        let lines = log.lines().count();
        if lines > 2 * self.requests + 100 {
            // Which lines, counted by their shape (digits left out).
            let mut shapes = std::collections::BTreeMap::<String, usize>::new();
            for line in log.lines() {
                let shape: String = line
                    .chars()
                    .skip(28)
                    .filter(|c| !c.is_ascii_digit())
                    .take(150)
                    .collect();
                *shapes.entry(shape).or_default() += 1;
            }
            let mut shapes: Vec<_> = shapes.into_iter().collect();
            shapes.sort_by_key(|(_, n)| std::cmp::Reverse(*n));
            panic!(
                "{lines} log lines for {} requests; the most frequent: {:#?}",
                self.requests,
                &shapes[..shapes.len().min(8)]
            );
        }
        let longest = log.lines().map(str::len).max().unwrap_or(0);
        assert!(
            longest <= 2_000,
            "a log line of {longest} bytes: {:?}",
            log.lines().find(|l| l.len() == longest).map(|l| &l[..300])
        );
    }
}

fn runner(cases: u32) -> TestRunner {
    TestRunner::new(Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    })
}

/// Genuine and spoilt SMS at the 46elks, Twilio and generic webhooks.
#[test]
fn generated_sms_webhook_requests_are_taken_or_refused_rightly() {
    let run = std::cell::RefCell::new(Run::start());
    let n = std::cell::Cell::new(0u64);
    let base = run.borrow().target.base.clone();
    runner(300)
        .run(&sms_case(), |(channel, sender, text, spoil)| {
            n.set(n.get() + 1);
            let form = genuine(channel, n.get(), &text, &sender);
            let request = sms_request(&base, channel, form, &spoil);
            run.borrow_mut().check(request, &spoil)
        })
        .unwrap();
    let run = run.into_inner();
    assert_eq!(run.target.health(), 200);
    run.check_log();
}

/// Genuine and spoilt updates at the Telegram webhook.
#[test]
fn generated_telegram_webhook_requests_are_taken_or_refused_rightly() {
    let run = std::cell::RefCell::new(Run::start());
    let n = std::cell::Cell::new(0u64);
    runner(200)
        .run(&telegram_case(), |(text, spoil)| {
            n.set(n.get() + 1);
            let request = telegram_request(n.get(), &text, &spoil);
            run.borrow_mut().check(request, &spoil)
        })
        .unwrap();
    let run = run.into_inner();
    assert_eq!(run.target.health(), 200);
    run.check_log();
}
