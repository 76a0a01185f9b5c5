//! The SMS bridge with the 46elks provider, against the 46elks double and a real Synapse.

use std::time::Duration;

use casebridge_gateway::store::{Direction, MessageKind, MessageState};
use casebridge_tests::{
    elks::{ElksDouble, API_PASSWORD, API_USERNAME},
    eventually,
};

use crate::{Db, Stack};

pub(crate) const OFFICE: &str = "+46766860000";
pub(crate) const SECRET: &str = "elks-webhook-secret";

pub(crate) async fn sms_stack(name: &str) -> (Stack, ElksDouble, String) {
    let mut stack = Stack::new(Db::Sqlite, name).await;
    let elks = ElksDouble::start().await;
    let gateway = format!("http://127.0.0.1:{}", stack.setup.port);
    stack.setup.extra = format!(
        r#"
[bridges.sms]
kind = "sms"
team = "social"
number = "0766-86 00 00"
max_segments = 2
public_url = "{gateway}/"
webhook_secret = "{SECRET}"

[bridges.sms.provider]
kind = "46elks"
api_url = "{elks}"
api_username = "{API_USERNAME}"
api_password = "{API_PASSWORD}"
"#,
        elks = elks.url
    );
    (stack, elks, gateway)
}

/// Client messages recorded in every case.
async fn inbound_records(gateway: &casebridge_gateway::Gateway) -> usize {
    crate::count_records(gateway, |m| m.direction == Direction::Inbound).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sms_in_reply_out_delivery_report() {
    let (mut stack, elks, base) = sms_stack("sms").await;
    let gateway = stack.start_gateway().await;
    let webhook = format!("{base}/webhook/sms?secret={SECRET}");

    // Forged or unauthenticated webhooks are refused, and nothing reaches any room.
    let no_auth = format!("{base}/webhook/sms");
    assert_eq!(
        ElksDouble::incoming(&no_auth, "sx1", "+46701234567", OFFICE, "forged").await,
        401
    );
    let wrong = format!("{base}/webhook/sms?secret=guess");
    assert_eq!(
        ElksDouble::incoming(&wrong, "sx2", "+46701234567", OFFICE, "forged").await,
        403
    );
    let basic = format!(
        "http://casebridge:{SECRET}@127.0.0.1:{}/webhook/sms",
        stack.setup.port
    );

    // A client texts the office; 46elks retries the same id: one message.
    assert_eq!(
        ElksDouble::incoming(
            &basic,
            "s1",
            "+46701234567",
            OFFICE,
            "Hej, kan ni ringa mig?"
        )
        .await,
        204
    );
    assert_eq!(
        ElksDouble::incoming(
            &webhook,
            "s1",
            "+46701234567",
            OFFICE,
            "Hej, kan ni ringa mig?"
        )
        .await,
        204
    );
    let room = stack.join_case_room().await;
    let inbound = stack
        .ghost_messages(&room, 1, Duration::from_secs(20))
        .await;
    let ghost = inbound[0]["sender"].as_str().unwrap().to_owned();
    assert_eq!(
        stack.worker.display_name(&ghost).await.as_deref(),
        Some("070-123 45 67 (SMS)")
    );
    assert_eq!(inbound[0]["content"]["body"], "Hej, kan ni ringa mig?");

    // The reply: exactly one provider request, from the office number, no worker in it.
    stack
        .worker
        .send_text(&room, "Hej! Vi ringer dig i dag före kl. 15.")
        .await;
    let sent = eventually(Duration::from_secs(20), "the SMS at 46elks", || async {
        let sent = elks.sent();
        (!sent.is_empty()).then_some(sent)
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(elks.sent().len(), 1);
    assert_eq!(sent[0]["from"], OFFICE);
    assert_eq!(sent[0]["to"], "+46701234567");
    assert_eq!(sent[0]["message"], "Hej! Vi ringer dig i dag före kl. 15.");
    let whendelivered = sent[0]["whendelivered"].clone();
    assert_eq!(
        whendelivered,
        format!("{base}/webhook/sms/dlr?secret={SECRET}")
    );

    // 46elks reports delivery (twice, as it may): recorded once, shown once.
    let id = format!("s{:032x}", 0x3633fa8eu128);
    assert_eq!(
        ElksDouble::report(&whendelivered, &id, "delivered").await,
        204
    );
    assert_eq!(
        ElksDouble::report(&whendelivered, &id, "delivered").await,
        204
    );
    let forged = format!("{base}/webhook/sms/dlr?secret=nope");
    assert_eq!(ElksDouble::report(&forged, &id, "failed").await, 403);
    stack
        .wait_for_notice(&room, "the delivery notice", |n| {
            n.starts_with("Delivered to the client (SMS) at 2026-11-23 22:01 UTC")
        })
        .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let n = stack.notices(&room).await;
    assert_eq!(
        n.iter().filter(|n| n.starts_with("Delivered")).count(),
        1,
        "{n:?}"
    );

    // Too long for two parts: refused with how much to cut, nothing sent.
    stack
        .worker
        .send_text(&room, &"Vi har fått ditt brev. ".repeat(20))
        .await;
    stack
        .wait_for_notice(&room, "the too-long notice", |n| {
            n.contains(
                "too long for SMS: 4 parts (GSM-7); this office allows 2. Cut about 154 characters",
            )
        })
        .await;
    assert_eq!(elks.sent().len(), 1);

    let store = gateway.store();
    let case = store.cases().await.unwrap().remove(0);
    let states: Vec<_> = store
        .messages(case.id)
        .await
        .unwrap()
        .into_iter()
        .filter(|m| m.direction != Direction::Notice)
        .map(|m| (m.direction, m.state, m.upstream_id))
        .collect();
    assert_eq!(
        states,
        [
            (
                Direction::Inbound,
                MessageState::Relayed,
                Some("s1".to_owned())
            ),
            (Direction::Outbound, MessageState::Delivered, Some(id)),
            (Direction::Outbound, MessageState::Failed, None),
        ]
    );

    // A text from a sender id (a pharmacy's reminder, forwarded by the network) cannot be
    // answered: 46elks refuses the number, and the team sees why; nothing is retried.
    assert_eq!(
        ElksDouble::incoming(
            &webhook,
            "s2",
            "Apoteket",
            OFFICE,
            "Din medicin finns att hämta"
        )
        .await,
        204
    );
    let pharmacy_room = stack.join_case_room().await;
    stack
        .ghost_messages(&pharmacy_room, 1, Duration::from_secs(20))
        .await;
    stack.worker.send_text(&pharmacy_room, "Tack!").await;
    stack
        .wait_for_notice(&pharmacy_room, "the refusal", |n| {
            n.starts_with(
                "Not delivered to the client (SMS): 46elks answered 403: Invalid to number",
            )
        })
        .await;
    let pharmacy = store.cases().await.unwrap().remove(0);
    let reply = store
        .messages(pharmacy.id)
        .await
        .unwrap()
        .into_iter()
        .find(|m| m.direction == Direction::Outbound)
        .unwrap();
    assert_eq!(reply.state, MessageState::Failed);
    assert_eq!(elks.sent().len(), 1, "nothing more was sent");
    gateway.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn provider_down_for_60_seconds() {
    let (mut stack, elks, base) = sms_stack("smsdown").await;
    stack.setup.max_backoff_ms = 2000;
    let gateway = stack.start_gateway().await;
    let webhook = format!("{base}/webhook/sms?secret={SECRET}");
    assert_eq!(
        ElksDouble::incoming(&webhook, "s1", "+46701234567", OFFICE, "Hallå?").await,
        204
    );
    let room = stack.join_case_room().await;
    stack
        .ghost_messages(&room, 1, Duration::from_secs(20))
        .await;

    elks.go_down_for(Duration::from_secs(60));
    let replies: Vec<String> = (1..=5).map(|i| format!("Svar nummer {i}.")).collect();
    for reply in &replies {
        stack.worker.send_text(&room, reply).await;
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    assert!(
        elks.sent().is_empty(),
        "nothing gets through while 46elks is down"
    );
    // The team hears of it once, not once per attempt or per reply.
    stack
        .wait_for_notice(&room, "the delay notice", |n| {
            n.starts_with("Delivery to the client (SMS) is delayed: 46elks answered 503")
        })
        .await;
    let sent = eventually(
        Duration::from_secs(90),
        "every reply after the outage",
        || async {
            let sent = elks.sent();
            (sent.len() >= replies.len()).then_some(sent)
        },
    )
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let messages: Vec<String> = elks.sent().iter().map(|f| f["message"].clone()).collect();
    assert_eq!(messages, replies, "each reply once, in order");
    let notices = stack.notices(&room).await;
    let delayed = notices
        .iter()
        .filter(|n| n.starts_with("Delivery to the client (SMS) is delayed"))
        .count();
    assert_eq!(delayed, 1, "{notices:#?}");
    assert_eq!(sent.len(), replies.len());
    gateway.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twilio_signed_webhooks_reply_and_status_callback() {
    use casebridge_tests::twilio::{TwilioDouble, ACCOUNT_SID, AUTH_TOKEN};
    let mut stack = Stack::new(Db::Sqlite, "twilio").await;
    let twilio = TwilioDouble::start().await;
    let base = format!("http://127.0.0.1:{}", stack.setup.port);
    stack.setup.extra = format!(
        r#"
[bridges.tw]
kind = "sms"
team = "social"
number = "+14155550100"
default_region = "US"
public_url = "{base}"

[bridges.tw.provider]
kind = "twilio"
api_url = "{api}"
account_sid = "{ACCOUNT_SID}"
auth_token = "{AUTH_TOKEN}"
"#,
        api = twilio.url
    );
    let gateway = stack.start_gateway().await;
    let webhook = format!("{base}/webhook/tw");
    let sms = [
        ("MessageSid", "SMaaaa0001"),
        ("AccountSid", ACCOUNT_SID),
        ("From", "+14155550123"),
        ("To", "+14155550100"),
        ("Body", "Hi, I need to talk to someone."),
        ("NumMedia", "0"),
    ];

    // Unsigned, signed with another token, or with a parameter changed after signing: refused.
    // (Ids and texts of their own, so one let through would show as a message of its own.)
    let forged_sms = |sid: &'static str| {
        let mut forged = sms;
        forged[0].1 = sid;
        forged[4].1 = "forged";
        forged
    };
    assert_eq!(
        TwilioDouble::post_signed(&webhook, &forged_sms("SMffff0001"), None)
            .await
            .0,
        401
    );
    assert_eq!(
        TwilioDouble::post_signed(&webhook, &forged_sms("SMffff0002"), Some("not-the-token"))
            .await
            .0,
        403
    );
    let other_url = format!("{base}/webhook/tw?x=1");
    let forged = forged_sms("SMffff0003");
    let forged = reqwest::Client::new()
        .post(&other_url)
        .header(
            "X-Twilio-Signature",
            casebridge_tests::twilio::signature(AUTH_TOKEN, &webhook, &forged),
        )
        .form(&forged)
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status().as_u16(), 403, "a signature for another URL");

    // Signed: recorded once, even when Twilio retries; the answer is empty TwiML.
    let (status, body) = TwilioDouble::post_signed(&webhook, &sms, Some(AUTH_TOKEN)).await;
    assert_eq!(
        (status, body.as_str()),
        (
            200,
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Response></Response>"
        )
    );
    assert_eq!(
        TwilioDouble::post_signed(&webhook, &sms, Some(AUTH_TOKEN))
            .await
            .0,
        200
    );
    let room = stack.join_case_room().await;
    let inbound = stack
        .ghost_messages(&room, 1, Duration::from_secs(20))
        .await;
    assert_eq!(
        inbound[0]["content"]["body"],
        "Hi, I need to talk to someone."
    );
    let ghost = inbound[0]["sender"].as_str().unwrap().to_owned();
    assert_eq!(
        stack.worker.display_name(&ghost).await.as_deref(),
        Some("(415) 555-0123 (SMS)")
    );
    assert_eq!(
        inbound_records(&gateway).await,
        1,
        "nothing forged recorded"
    );

    // The reply: one Messages request with the documented fields.
    stack
        .worker
        .send_text(&room, "We will call you within the hour.")
        .await;
    let sent = eventually(Duration::from_secs(20), "the message at Twilio", || async {
        let sent = twilio.sent();
        (!sent.is_empty()).then_some(sent)
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(twilio.sent().len(), 1);
    assert_eq!(sent[0]["To"], "+14155550123");
    assert_eq!(sent[0]["From"], "+14155550100");
    assert_eq!(sent[0]["Body"], "We will call you within the hour.");
    assert_eq!(sent[0]["StatusCallback"], format!("{webhook}/dlr"));

    // The status callback, signed over the StatusCallback URL: undelivered with its error code.
    let callback = [
        ("MessageSid", "SM00000000000000000000000000000001"),
        ("MessageStatus", "undelivered"),
        ("ErrorCode", "30003"),
        ("AccountSid", ACCOUNT_SID),
    ];
    let dlr = format!("{webhook}/dlr");
    assert_eq!(
        TwilioDouble::post_signed(&dlr, &callback, None).await.0,
        401
    );
    assert_eq!(
        TwilioDouble::post_signed(&dlr, &callback, Some(AUTH_TOKEN))
            .await
            .0,
        200
    );
    let notice = stack
        .wait_for_notice(&room, "the failure notice", |n| {
            n.starts_with("Not delivered to the client (SMS)")
        })
        .await;
    assert_eq!(
        notice,
        "Not delivered to the client (SMS): undelivered (Twilio error 30003)"
    );
    let case = gateway.store().cases().await.unwrap().remove(0);
    let reply = gateway
        .store()
        .messages(case.id)
        .await
        .unwrap()
        .into_iter()
        .find(|m| m.direction == Direction::Outbound)
        .unwrap();
    assert_eq!(
        (reply.state, reply.error.as_deref()),
        (
            MessageState::Failed,
            Some("undelivered (Twilio error 30003)")
        )
    );
    gateway.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generic_json_gateway_with_custom_fields() {
    use casebridge_tests::sms_gateway::{GatewayDouble, SECRET as SIGNING};
    use serde_json::json;
    let mut stack = Stack::new(Db::Sqlite, "generic").await;
    let double = GatewayDouble::start().await;
    let base = format!("http://127.0.0.1:{}", stack.setup.port);
    stack.setup.extra = format!(
        r#"
[bridges.gw]
kind = "sms"
team = "social"
number = "+46766860001"
public_url = "{base}"

[bridges.gw.provider]
kind = "webhook"
send_url = "{send}"
send_token = "gateway-token"
signing_secret = "{SIGNING}"

[bridges.gw.provider.fields]
from = "sender"
text = "message"
"#,
        send = double.send_url
    );
    let gateway = stack.start_gateway().await;
    let webhook = format!("{base}/webhook/gw");
    let sms = json!({"id": "g-in-1", "sender": "0701234567", "to": "+46766860001", "message": "Hej från en annan operatör"});
    let forged = |id: &str| json!({"id": id, "sender": "0701234567", "to": "+46766860001", "message": "forged"});
    assert_eq!(
        GatewayDouble::post(&webhook, &forged("g-f-1"), None).await,
        401
    );
    assert_eq!(
        GatewayDouble::post(&webhook, &forged("g-f-2"), Some("wrong")).await,
        403
    );
    assert_eq!(
        GatewayDouble::post(&webhook, &sms, Some(SIGNING)).await,
        200
    );
    assert_eq!(
        GatewayDouble::post(&webhook, &sms, Some(SIGNING)).await,
        200
    );
    let room = stack.join_case_room().await;
    let inbound = stack
        .ghost_messages(&room, 1, Duration::from_secs(20))
        .await;
    assert_eq!(inbound[0]["content"]["body"], "Hej från en annan operatör");
    // A national number is read in the default region and kept in E.164.
    assert_eq!(inbound[0]["sender"], "@_cb_gw_=2b46701234567:localhost");
    assert_eq!(
        inbound_records(&gateway).await,
        1,
        "nothing forged, nothing twice"
    );

    stack
        .worker
        .send_text(&room, "Hej! Vi hörs i morgon.")
        .await;
    let sent = eventually(
        Duration::from_secs(20),
        "the reply at the gateway",
        || async {
            let sent = double.sent();
            (!sent.is_empty()).then_some(sent)
        },
    )
    .await;
    assert_eq!(
        sent[0],
        json!({"sender": "+46766860001", "to": "+46701234567", "message": "Hej! Vi hörs i morgon.",
               "callback_url": format!("{webhook}/dlr")})
    );
    let report = json!({"id": "g-1", "status": "delivered"});
    assert_eq!(
        GatewayDouble::post(&format!("{webhook}/dlr"), &report, Some(SIGNING)).await,
        200
    );
    stack
        .wait_for_notice(&room, "the delivery notice", |n| {
            n.starts_with("Delivered to the client (SMS)")
        })
        .await;
    assert_eq!(double.sent().len(), 1);
    gateway.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_replies_split_into_numbered_sms_each_sent_once() {
    let (mut stack, elks, base) = sms_stack("smssplit").await;
    stack.setup.extra = stack.setup.extra.replace(
        "max_segments = 2",
        "max_segments = 1\nlong_replies = \"split\"\nmax_messages = 4",
    );
    let gateway = stack.start_gateway().await;
    let webhook = format!("{base}/webhook/sms?secret={SECRET}");
    assert_eq!(
        ElksDouble::incoming(
            &webhook,
            "s1",
            "+46701234567",
            OFFICE,
            "Hur går det med ansökan?"
        )
        .await,
        204
    );
    let room = stack.join_case_room().await;
    stack
        .ghost_messages(&room, 1, Duration::from_secs(20))
        .await;

    // 46elks is down when the reply is written: the parts wait in the queue, then each goes
    // exactly once, in order.
    elks.go_down_for(Duration::from_secs(4));
    let reply = "Hej! Vi har gått igenom din ansökan och behöver ett läkarintyg och dina \
                 kontoutdrag för de tre senaste månaderna innan vi kan fatta beslut. Du kan \
                 lämna dem i receptionen på Storgatan 4 eller skicka dem med post. Hör av dig \
                 om något är oklart, så hjälper vi dig gärna. Kom ihåg att ta med legitimation \
                 när du kommer till oss nästa gång. Vänliga hälsningar, mottagningen.";
    assert!(casebridge_policies::sms::Segments::of(reply).parts >= 3);
    stack.worker.send_text(&room, reply).await;
    stack
        .wait_for_notice(&room, "the split notice", |n| {
            n.starts_with("Sent as ")
                && n.ends_with(" messages (SMS): the reply is longer than one message may be here.")
        })
        .await;
    let sent = eventually(Duration::from_secs(30), "every part at 46elks", || async {
        let sent = elks.sent();
        (sent.len() >= 3).then_some(sent)
    })
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let sent_again = elks.sent();
    assert_eq!(sent_again.len(), sent.len(), "no part twice");
    let n = sent.len();
    let mut words = Vec::new();
    for (i, sms) in sent.iter().enumerate() {
        let text = sms["message"].as_str();
        let prefix = format!("({}/{n}) ", i + 1);
        assert!(text.starts_with(&prefix), "{text}");
        assert_eq!(
            casebridge_policies::sms::Segments::of(text).parts,
            1,
            "{text}"
        );
        assert_eq!(sms["to"], "+46701234567");
        words.extend(text[prefix.len()..].split_whitespace().map(str::to_owned));
    }
    assert_eq!(words, reply.split_whitespace().collect::<Vec<_>>());

    let store = gateway.store();
    let case = store.cases().await.unwrap().remove(0);
    let outbound: Vec<_> = store
        .messages(case.id)
        .await
        .unwrap()
        .into_iter()
        .filter(|m| m.direction == Direction::Outbound)
        .map(|m| (m.kind, m.state))
        .collect();
    assert_eq!(outbound[0], (None, MessageState::Split));
    assert_eq!(outbound.len(), n + 1);
    assert!(outbound[1..]
        .iter()
        .all(|(kind, state)| *kind == Some(MessageKind::Part) && *state == MessageState::Sent));
    gateway.shutdown().await;
}

/// Posts an inbound-SMS form to `webhook` with the fields 46elks sends, `change` applied
/// (`None` drops a field); returns the status and the answer.
async fn post_elks_form(webhook: &str, change: &[(&str, Option<&str>)]) -> (u16, String) {
    let mut form: Vec<(&str, &str)> = vec![
        ("direction", "incoming"),
        ("id", "sh1"),
        ("from", "+46701234567"),
        ("to", OFFICE),
        ("created", "2026-11-23T21:57:23.741000"),
        ("message", "hostile"),
    ];
    for &(name, value) in change {
        form.retain(|(k, _)| *k != name);
        if let Some(value) = value {
            form.push((name, value));
        }
    }
    let response = reqwest::Client::new()
        .post(webhook)
        .form(&form)
        .send()
        .await
        .unwrap();
    (
        response.status().as_u16(),
        response.text().await.unwrap().trim().to_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_sms_is_refused_and_nothing_recorded() {
    let (mut stack, _elks, base) = sms_stack("sms-hostile").await;
    let gateway = stack.start_gateway().await;
    let webhook = format!("{base}/webhook/sms?secret={SECRET}");

    // With the right secret, still nothing that is no SMS from a sender to this office.
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
        let (status, text) = post_elks_form(&webhook, &[("from", Some(from))]).await;
        assert_eq!(status, 400, "{from:?}: {text}");
        assert!(
            text.ends_with("is neither a phone number nor an alphanumeric sender id"),
            "{from:?}: {text}"
        );
    }
    assert_eq!(
        post_elks_form(&webhook, &[("to", Some("+46766860001"))]).await,
        (
            403,
            "to: \"+46766860001\" is not this office's number".to_owned()
        )
    );
    for field in ["to", "created"] {
        assert_eq!(
            post_elks_form(&webhook, &[(field, None)]).await,
            (400, format!("missing field {field:?}"))
        );
    }
    let body = "a".repeat(900_000);
    let (status, text) = post_elks_form(&webhook, &[("message", Some(&body))]).await;
    assert_eq!(status, 400, "{text}");
    assert!(text.starts_with("message: longer than 255 parts"), "{text}");
    let id = "s".repeat(500_000);
    let (status, text) = post_elks_form(&webhook, &[("id", Some(&id))]).await;
    assert_eq!(status, 400, "{text}");
    assert!(text.starts_with("id: "), "{text}");
    let twice = format!("{webhook}&secret=guess");
    assert_eq!(post_elks_form(&twice, &[]).await.0, 401);

    // Nothing of it was recorded: no case, no record.
    let store = gateway.store();
    assert!(store.cases().await.unwrap().is_empty());
    assert_eq!(inbound_records(&gateway).await, 0);

    // A genuine SMS still goes through, to its room.
    assert_eq!(
        ElksDouble::incoming(&webhook, "s1", "+46701234567", OFFICE, "Hej, efteråt").await,
        204
    );
    let room = stack.join_case_room().await;
    let inbound = stack
        .ghost_messages(&room, 1, Duration::from_secs(20))
        .await;
    assert_eq!(inbound[0]["content"]["body"], "Hej, efteråt");
    assert_eq!(store.cases().await.unwrap().len(), 1);
    assert_eq!(inbound_records(&gateway).await, 1);
}
