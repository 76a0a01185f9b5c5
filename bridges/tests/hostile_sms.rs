//! Hostile input on the SMS webhooks (issue 19): every provider is driven through its public
//! webhook with the right credentials, and what is not an SMS to this office from a sender is
//! refused with a 4xx naming the field, and never reaches the core.
//!
//! Only the crate's public API is used, so these run unchanged against older code.

use std::sync::{Arc, Mutex};

use base64::Engine as _;
use casebridge_bridges::{
    sms::SmsFactory, Accepted, Bridge, BridgeFactory, Inbound, InboundMessage, InboundSink,
};
use hmac::{Hmac, Mac};
use tokio::sync::mpsc;

const OFFICE: &str = "+46766860000";
const CREATED: &str = "2018-07-13T13:57:23.741000";
const ELKS_ID: &str = "sf8425555e5d8db61dda7a7b3f1b91bdb";

fn config(extra: &str) -> casebridge_config::BridgeInstance {
    let text = format!(
        "[homeserver]\nurl = \"http://127.0.0.1:8008\"\nserver_name = \"localhost\"\n\
         [appservice]\nurl = \"http://127.0.0.1:29330\"\nas_token = \"a\"\nhs_token = \"h\"\n\
         [teams.t]\nmembers = [\"@a:localhost\"]\n\
         [bridges.sms]\nkind = \"sms\"\nteam = \"t\"\n{extra}"
    );
    casebridge_config::Config::from_toml_str(&text)
        .unwrap()
        .bridges["sms"]
        .clone()
}

/// A started bridge and every message it handed to the core.
struct Harness {
    bridge: Arc<dyn Bridge>,
    recorded: Arc<Mutex<Vec<InboundMessage>>>,
}

impl Harness {
    async fn start(extra: &str) -> Self {
        let bridge = SmsFactory.build("sms", &config(extra)).unwrap();
        let (tx, mut rx) = mpsc::channel(8);
        let recorded = Arc::new(Mutex::new(Vec::new()));
        let core = recorded.clone();
        tokio::spawn(async move {
            while let Some(inbound) = rx.recv().await {
                match inbound {
                    Inbound::Message(env) => {
                        core.lock().unwrap().push(env.message);
                        let _ = env.reply.send(Ok(Accepted::Recorded {
                            case_number: "2026-000001".into(),
                        }));
                    }
                    Inbound::Report(env) => {
                        let _ = env.reply.send(Ok(true));
                    }
                }
            }
        });
        bridge
            .start(InboundSink::new("sms", bridge.capabilities(), tx))
            .await
            .unwrap();
        Self { bridge, recorded }
    }

    async fn post(&self, uri: &str, headers: &[(&str, &str)], body: Vec<u8>) -> (u16, String) {
        let mut request = http::Request::builder().method("POST").uri(uri);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let response = self
            .bridge
            .webhook()
            .unwrap()
            .handle(request.body(body).unwrap())
            .await;
        (
            response.status().as_u16(),
            String::from_utf8_lossy(response.body()).trim().to_owned(),
        )
    }

    fn recorded(&self) -> usize {
        self.recorded.lock().unwrap().len()
    }
}

fn form(fields: &[(&str, &str)]) -> Vec<u8> {
    serde_urlencoded::to_string(fields).unwrap().into_bytes()
}

const ELKS: &str = "number = \"0766 86 00 00\"\nwebhook_secret = \"s3cret\"\n\
    [bridges.sms.provider]\nkind = \"46elks\"\napi_username = \"u\"\napi_password = \"p\"\n";

/// A 46elks inbound SMS as documented, with `change` applied: `Some` replaces or adds a field,
/// `None` drops it.
fn elks_sms(change: &[(&'static str, Option<&str>)]) -> Vec<(&'static str, String)> {
    let mut fields: Vec<(&'static str, String)> = [
        ("direction", "incoming"),
        ("id", ELKS_ID),
        ("from", "+46701234567"),
        ("to", OFFICE),
        ("created", CREATED),
        ("message", "Hej, kan ni ringa mig?"),
    ]
    .into_iter()
    .map(|(k, v)| (k, v.to_owned()))
    .collect();
    for &(name, value) in change {
        fields.retain(|(k, _)| *k != name);
        if let Some(value) = value {
            fields.push((name, value.to_owned()));
        }
    }
    fields
}

async fn post_elks(h: &Harness, fields: &[(&'static str, String)]) -> (u16, String) {
    let fields: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (*k, v.as_str())).collect();
    h.post("/webhook/sms?secret=s3cret", &[], form(&fields))
        .await
}

#[tokio::test]
async fn elks_refuses_senders_that_are_no_sender() {
    let h = Harness::start(ELKS).await;
    let zeros = "0".repeat(10_000);
    for from in [
        "",
        "+",
        "../../etc/passwd",
        "<script>",
        "@anna:localhost",
        "+46701234567\n+46701234568",
        zeros.as_str(),
    ] {
        let (status, text) = post_elks(&h, &elks_sms(&[("from", Some(from))])).await;
        assert_eq!(status, 400, "{from:?}: {text}");
        assert!(
            text.starts_with("from: ")
                && text.ends_with("is neither a phone number nor an alphanumeric sender id"),
            "{from:?}: {text}"
        );
        // Never the whole hostile value back.
        assert!(text.len() < 150, "{text}");
    }
    assert_eq!(h.recorded(), 0);
    // What 46elks does deliver: E.164 numbers and alphanumeric sender ids ("SMSElk" in their
    // documentation).
    for (n, from) in ["+46701234567", "SMSElk", "abc"].into_iter().enumerate() {
        let id = format!("s{n}");
        let sms = elks_sms(&[("from", Some(from)), ("id", Some(&id))]);
        assert_eq!(post_elks(&h, &sms).await, (204, String::new()), "{from}");
    }
    assert_eq!(h.recorded(), 3);
}

#[tokio::test]
async fn elks_refuses_what_is_not_addressed_to_this_office() {
    let h = Harness::start(ELKS).await;
    let (status, text) = post_elks(&h, &elks_sms(&[("to", Some("+46766860001"))])).await;
    assert_eq!(
        (status, text.as_str()),
        (403, "to: \"+46766860001\" is not this office's number")
    );
    for field in ["to", "created", "direction"] {
        let (status, text) = post_elks(&h, &elks_sms(&[(field, None)])).await;
        assert_eq!((status, text), (400, format!("missing field {field:?}")));
    }
    let (status, text) = post_elks(&h, &elks_sms(&[("created", Some("yesterday"))])).await;
    assert_eq!(
        (status, text.as_str()),
        (400, "created: \"yesterday\" is not a 46elks time")
    );
    assert_eq!(h.recorded(), 0);
    // The office's number as 46elks writes it is taken.
    assert_eq!(post_elks(&h, &elks_sms(&[])).await.0, 204);
    assert_eq!(h.recorded(), 1);
}

#[tokio::test]
async fn elks_refuses_fields_no_sms_carries() {
    let h = Harness::start(ELKS).await;
    let body = "a".repeat(900_000);
    let (status, text) = post_elks(&h, &elks_sms(&[("message", Some(&body))])).await;
    assert_eq!(status, 400, "{text}");
    assert!(text.starts_with("message: longer than 255 parts"), "{text}");
    // Just over 255 parts of GSM-7 (255 × 153 characters).
    let body = "a".repeat(255 * 153 + 1);
    let (status, text) = post_elks(&h, &elks_sms(&[("message", Some(&body))])).await;
    assert_eq!(
        (status, text.as_str()),
        (
            400,
            "message: longer than 255 parts (256 parts); no SMS carries that"
        )
    );
    let id = "s".repeat(500_000);
    let (status, text) = post_elks(&h, &elks_sms(&[("id", Some(&id))])).await;
    assert_eq!(status, 400, "{text}");
    assert!(
        text.starts_with("id: \"ssss") && text.ends_with("is no message id (1 to 64 characters)"),
        "{text}"
    );
    let (status, text) = post_elks(&h, &elks_sms(&[("id", Some("s1/../x"))])).await;
    assert_eq!(
        (status, text.as_str()),
        (
            400,
            "id: \"s1/../x\" is no message id (letters, digits and -_.: only)"
        )
    );
    // A field given twice: which one counts would be a guess.
    let mut twice = elks_sms(&[]);
    twice.push(("from", "+46701234568".into()));
    let (status, text) = post_elks(&h, &twice).await;
    assert_eq!((status, text.as_str()), (400, "from: given more than once"));
    assert_eq!(h.recorded(), 0);
    // The longest SMS there is still goes through.
    let body = "a".repeat(255 * 153);
    assert_eq!(
        post_elks(&h, &elks_sms(&[("message", Some(&body))]))
            .await
            .0,
        204
    );
    assert_eq!(h.recorded(), 1);
}

#[tokio::test]
async fn elks_refuses_a_secret_given_more_than_once() {
    let h = Harness::start(ELKS).await;
    let sms = elks_sms(&[]);
    let fields: Vec<(&str, &str)> = sms.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let basic = |password: &str| {
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("casebridge:{password}"))
        )
    };
    let refused =
        "webhook secret given more than once; give it once, in the URL's password or as ?secret=";
    for (uri, headers) in [
        ("/webhook/sms?secret=s3cret&secret=guess", vec![]),
        ("/webhook/sms?secret=guess&secret=s3cret", vec![]),
        ("/webhook/sms?secret=s3cret", vec![basic("guess")]),
    ] {
        let headers: Vec<(&str, &str)> = headers
            .iter()
            .map(|v| ("authorization", v.as_str()))
            .collect();
        let (status, text) = h.post(uri, &headers, form(&fields)).await;
        assert_eq!((status, text.as_str()), (401, refused), "{uri}");
    }
    let twice = [
        ("authorization", basic("s3cret")),
        ("authorization", basic("guess")),
    ];
    let headers: Vec<(&str, &str)> = twice.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let (status, text) = h.post("/webhook/sms", &headers, form(&fields)).await;
    assert_eq!((status, text.as_str()), (401, refused));
    assert_eq!(h.recorded(), 0);
    let one = basic("s3cret");
    let (status, _) = h
        .post(
            "/webhook/sms",
            &[("authorization", one.as_str())],
            form(&fields),
        )
        .await;
    assert_eq!(status, 204);
    assert_eq!(h.recorded(), 1);
}

const TWILIO_SID: &str = "AC0123456789abcdef0123456789abcdef";
const TWILIO_TOKEN: &str = "twilio-auth-token";
const TWILIO_URL: &str = "https://bridge.example.org/webhook/sms";

fn twilio_config() -> String {
    format!(
        "number = \"+14155550100\"\ndefault_region = \"US\"\npublic_url = \"https://bridge.example.org/\"\n\
         [bridges.sms.provider]\nkind = \"twilio\"\naccount_sid = \"{TWILIO_SID}\"\nauth_token = \"{TWILIO_TOKEN}\"\n"
    )
}

/// Twilio's signature as its documentation and its own libraries compute it, written out
/// independently of the bridge: the URL, then for each parameter name in sorted order the name
/// and each of its distinct values, the values in sorted order; HMAC-SHA1 with the auth token,
/// base64.
fn twilio_signature(url: &str, params: &[(&str, &str)]) -> String {
    let mut names: Vec<&str> = params.iter().map(|(k, _)| *k).collect();
    names.sort_unstable();
    names.dedup();
    let mut data = url.to_owned();
    for name in names {
        let mut values: Vec<&str> = params
            .iter()
            .filter(|(k, _)| *k == name)
            .map(|(_, v)| *v)
            .collect();
        values.sort_unstable();
        values.dedup();
        for value in values {
            data.push_str(name);
            data.push_str(value);
        }
    }
    let mut mac = Hmac::<sha1::Sha1>::new_from_slice(TWILIO_TOKEN.as_bytes()).unwrap();
    mac.update(data.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

fn twilio_sms(change: &[(&'static str, &str)]) -> Vec<(&'static str, String)> {
    let mut fields: Vec<(&'static str, String)> = [
        ("MessageSid", "SM0123456789abcdef0123456789abcdef"),
        ("AccountSid", TWILIO_SID),
        ("From", "+14155550123"),
        ("To", "+14155550100"),
        ("Body", "Hi, I need to talk to someone."),
        ("NumMedia", "0"),
    ]
    .into_iter()
    .map(|(k, v)| (k, v.to_owned()))
    .collect();
    for &(name, value) in change {
        fields.retain(|(k, _)| *k != name);
        fields.push((name, value.to_owned()));
    }
    fields
}

async fn post_twilio(h: &Harness, fields: &[(&'static str, String)]) -> (u16, String) {
    let fields: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let signature = twilio_signature(TWILIO_URL, &fields);
    h.post(
        "/webhook/sms",
        &[("x-twilio-signature", signature.as_str())],
        form(&fields),
    )
    .await
}

#[tokio::test]
async fn twilio_refuses_hostile_fields_signed_with_the_right_token() {
    let h = Harness::start(&twilio_config()).await;
    for from in ["", "../../etc", "+", "<script>"] {
        let (status, text) = post_twilio(&h, &twilio_sms(&[("From", from)])).await;
        assert_eq!(status, 400, "{from:?}: {text}");
        assert!(text.starts_with("from: "), "{text}");
    }
    let (status, text) = post_twilio(&h, &twilio_sms(&[("To", "+14155550199")])).await;
    assert_eq!(
        (status, text.as_str()),
        (403, "to: \"+14155550199\" is not this office's number")
    );
    let mut no_to = twilio_sms(&[]);
    no_to.retain(|(k, _)| *k != "To");
    assert_eq!(
        post_twilio(&h, &no_to).await,
        (400, "missing field \"To\"".to_owned())
    );
    let body = "a".repeat(1601);
    let (status, text) = post_twilio(&h, &twilio_sms(&[("Body", &body)])).await;
    assert_eq!(
        (status, text.as_str()),
        (
            400,
            "Body: longer than 1600 characters; no SMS carries that"
        )
    );
    let sid = format!("SM{}", "a".repeat(500_000));
    let (status, text) = post_twilio(&h, &twilio_sms(&[("MessageSid", &sid)])).await;
    assert_eq!(status, 400, "{text}");
    assert!(text.starts_with("MessageSid: \"SMaaa"), "{text}");
    assert_eq!(h.recorded(), 0);
    assert_eq!(post_twilio(&h, &twilio_sms(&[])).await.0, 200);
    assert_eq!(h.recorded(), 1);
}

#[tokio::test]
async fn twilio_signature_covers_every_value_of_a_repeated_parameter() {
    let h = Harness::start(&twilio_config()).await;
    // A genuine request may repeat a parameter (Twilio's libraries sign each value); one we do
    // not read, so it is taken.
    let mut sms = twilio_sms(&[]);
    sms.push(("AddOns", "b".into()));
    sms.push(("AddOns", "a".into()));
    assert_eq!(post_twilio(&h, &sms).await.0, 200);
    assert_eq!(h.recorded(), 1);
    // Signed over only the last value: not what Twilio signs.
    let fields: Vec<(&str, &str)> = sms.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let last_only: Vec<(&str, &str)> = fields
        .iter()
        .copied()
        .filter(|&(k, v)| !(k == "AddOns" && v == "b"))
        .collect();
    let signature = twilio_signature(TWILIO_URL, &last_only);
    let (status, _) = h
        .post(
            "/webhook/sms",
            &[("x-twilio-signature", signature.as_str())],
            form(&fields),
        )
        .await;
    assert_eq!(status, 403);
    // A repeated field we read, even correctly signed, is refused: which one counts?
    let mut twice = twilio_sms(&[("MessageSid", "SM0123456789abcdef0123456789abcdee")]);
    twice.push(("From", "+14155550124".into()));
    assert_eq!(
        post_twilio(&h, &twice).await,
        (400, "From: given more than once".to_owned())
    );
    // Two signature headers: refused, not read first-wins.
    let sms = twilio_sms(&[("MessageSid", "SM0123456789abcdef0123456789abcded")]);
    let fields: Vec<(&str, &str)> = sms.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let good = twilio_signature(TWILIO_URL, &fields);
    let (status, text) = h
        .post(
            "/webhook/sms",
            &[
                ("x-twilio-signature", good.as_str()),
                ("x-twilio-signature", "x"),
            ],
            form(&fields),
        )
        .await;
    assert_eq!(
        (status, text.as_str()),
        (401, "X-Twilio-Signature given more than once")
    );
    assert_eq!(h.recorded(), 1);
}

const GENERIC_SECRET: &str = "generic-secret";

fn generic_config() -> String {
    format!(
        "number = \"+46766860001\"\n\
         [bridges.sms.provider]\nkind = \"webhook\"\nsend_url = \"http://127.0.0.1:9/send\"\n\
         signing_secret = \"{GENERIC_SECRET}\"\n"
    )
}

fn hmac_hex(body: &[u8]) -> String {
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(GENERIC_SECRET.as_bytes()).unwrap();
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

async fn post_generic(h: &Harness, value: &serde_json::Value) -> (u16, String) {
    let body = serde_json::to_vec(value).unwrap();
    let signature = hmac_hex(&body);
    h.post("/webhook/sms", &[("x-signature", signature.as_str())], body)
        .await
}

#[tokio::test]
async fn generic_webhook_refuses_hostile_fields_signed_with_the_right_secret() {
    let h = Harness::start(&generic_config()).await;
    let sms = |change: serde_json::Value| {
        let mut v = serde_json::json!({"id": "g-1", "from": "0701234567", "to": "+46766860001", "text": "Hej"});
        for (k, x) in change.as_object().unwrap() {
            if x.is_null() {
                v.as_object_mut().unwrap().remove(k);
            } else {
                v[k] = x.clone();
            }
        }
        v
    };
    for from in [
        "",
        "../../etc",
        "@anna:localhost",
        "+46701234567\n+46701234568",
    ] {
        let (status, text) = post_generic(&h, &sms(serde_json::json!({"from": from}))).await;
        assert_eq!(status, 400, "{from:?}: {text}");
        assert!(text.starts_with("from: "), "{text}");
    }
    assert_eq!(
        post_generic(&h, &sms(serde_json::json!({"to": "+46766860000"}))).await,
        (
            403,
            "to: \"+46766860000\" is not this office's number".to_owned()
        )
    );
    assert_eq!(
        post_generic(&h, &sms(serde_json::json!({"to": null}))).await,
        (400, "missing string field \"to\"".to_owned())
    );
    let id = "x".repeat(500_000);
    let (status, text) = post_generic(&h, &sms(serde_json::json!({"id": id}))).await;
    assert_eq!(status, 400, "{text}");
    assert!(
        text.ends_with("is no message id (1 to 128 characters)"),
        "{text}"
    );
    let text = "ä".repeat(900_000);
    let (status, answer) = post_generic(&h, &sms(serde_json::json!({"text": text}))).await;
    assert_eq!(status, 400, "{answer}");
    assert!(
        answer.starts_with("text: longer than 255 parts"),
        "{answer}"
    );
    // Two signature headers: refused, not read first-wins.
    let body = serde_json::to_vec(&sms(serde_json::json!({}))).unwrap();
    let good = hmac_hex(&body);
    let (status, answer) = h
        .post(
            "/webhook/sms",
            &[("x-signature", good.as_str()), ("x-signature", "00")],
            body,
        )
        .await;
    assert_eq!(
        (status, answer.as_str()),
        (401, "X-Signature given more than once")
    );
    assert_eq!(h.recorded(), 0);
    assert_eq!(post_generic(&h, &sms(serde_json::json!({}))).await.0, 200);
    assert_eq!(h.recorded(), 1);
}
