//! Office policies end to end, on the real clock: a team whose office time zone puts it at
//! 22:00 right now (on the SMS bridge, against the 46elks double), another at noon; auto-replies,
//! emergency escalation, discreet mode and the case-room commands, seen from real Matrix
//! accounts.

use std::time::Duration;

use casebridge_gateway::store::{Direction, MessageKind, MessageState};
use casebridge_tests::{
    elks::{ElksDouble, API_PASSWORD, API_USERNAME},
    eventually, Spool, Worker, WEBHOOK_SECRET,
};
use chrono::{Timelike, Utc};
use serde_json::Value;

use crate::{Db, Stack};

/// An `Etc/GMT` zone where the local hour is `hour` now, and the local time `seconds` from now
/// in that zone.
fn zone_at(hour: u32) -> (String, i64) {
    let now = Utc::now();
    let mut offset = (hour as i64 - now.hour() as i64).rem_euclid(24);
    if offset > 12 {
        offset -= 24;
    }
    // POSIX-style names: Etc/GMT-2 is two hours *ahead* of UTC.
    let name = match offset {
        0 => "Etc/GMT".to_owned(),
        o if o > 0 => format!("Etc/GMT-{o}"),
        o => format!("Etc/GMT+{}", -o),
    };
    (name, offset)
}

fn local_time(offset_hours: i64, seconds_from_now: i64) -> String {
    (Utc::now()
        + chrono::Duration::hours(offset_hours)
        + chrono::Duration::seconds(seconds_from_now))
    .format("%Y-%m-%dT%H:%M:%S")
    .to_string()
}

/// What a command's answering notice must satisfy.
type Expectation = dyn Fn(&str) -> bool;

/// Bot messages that mention someone (sent as text so that they notify), oldest first.
async fn highlights(worker: &Worker, room: &str) -> Vec<Value> {
    worker
        .messages(room)
        .await
        .into_iter()
        .filter(|e| e["sender"] == "@casebridge:localhost" && e["content"]["msgtype"] == "m.text")
        .collect()
}

async fn kinds(gateway: &casebridge_gateway::Gateway, kind: MessageKind) -> usize {
    crate::count_records(gateway, |m| m.kind == Some(kind)).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn office_hours_emergencies_discretion_and_commands() {
    let mut stack = Stack::new(Db::Sqlite, "policies").await;
    let alert_room = stack
        .worker
        .create_room("On call", &["@casebridge:localhost", "@bo:localhost"])
        .await;
    let spools = stack.setup.spool.parent().unwrap().to_owned();
    let elks = ElksDouble::start().await;
    let noon = Spool::new(spools.join("noon"));
    let (night_zone, night_offset) = zone_at(22);
    let (noon_zone, _) = zone_at(12);
    let base = format!("http://127.0.0.1:{}", stack.setup.port);
    let night_sms = format!("{base}/webhook/night?secret=night-secret");
    const NIGHT_NUMBER: &str = "+46766860002";
    let config = |open: &str| {
        format!(
            r#"
[bridges.night]
kind = "sms"
team = "night"
number = "{NIGHT_NUMBER}"
public_url = "{base}/"
webhook_secret = "night-secret"

[bridges.night.provider]
kind = "46elks"
api_url = "{elks}"
api_username = "{API_USERNAME}"
api_password = "{API_PASSWORD}"

[bridges.noon]
kind = "loopback"
team = "noon"
spool = "{noon}"
secret = "{WEBHOOK_SECRET}"

[teams.night]
name = "Nattjouren"
members = ["@anna:localhost", "@bo:localhost"]
on_call = ["@bo:localhost"]
languages = ["sv", "en"]
auto_reply.fit_sms = true

[teams.night.hours]
time_zone = "{night_zone}"
monday = ["08:00-16:30"]
tuesday = ["08:00-16:30"]
wednesday = ["08:00-16:30"]
thursday = ["08:00-16:30"]
friday = ["08:00-16:30"]
{open}

[teams.night.emergency]
numbers = "112 eller socialjouren 08-123 456 78"
alert_room = "{alert_room}"

[teams.noon]
name = "Dagmottagningen"
members = ["@anna:localhost", "@bo:localhost"]
on_call = ["@bo:localhost"]
languages = ["sv"]
incident_room = "{alert_room}"

[teams.noon.hours]
time_zone = "{noon_zone}"
monday = ["00:00-24:00"]
tuesday = ["00:00-24:00"]
wednesday = ["00:00-24:00"]
thursday = ["00:00-24:00"]
friday = ["00:00-24:00"]
saturday = ["00:00-24:00"]
sunday = ["00:00-24:00"]

[teams.noon.emergency]
numbers = "112"
alert_room = "{alert_room}"
"#,
            elks = elks.url,
            noon = noon.root().display(),
        )
    };
    stack.setup.extra = config("");
    let gateway = stack.start_gateway().await;
    let texts = |from: &str| -> Vec<String> {
        elks.sent()
            .iter()
            .filter(|f| f["to"] == from)
            .map(|f| f["message"].clone())
            .collect()
    };

    // 22:00 at the office: the first SMS gets one auto-reply with the emergency numbers, from
    // the office's number.
    const CLIENT: &str = "+46701111111";
    let sms = |id: &'static str, text: &'static str| {
        let url = night_sms.clone();
        async move { ElksDouble::incoming(&url, id, CLIENT, NIGHT_NUMBER, text).await }
    };
    assert_eq!(sms("n1", "Hej, jag behöver hjälp med hyran.").await, 204);
    let night_room = stack.join_case_room().await;
    let notice = stack
        .wait_for_notice(&night_room, "the auto-reply notice", |n| {
            n.starts_with("Automatiskt svar skickat till klienten (SMS, utanför öppettid)")
        })
        .await;
    assert!(
        notice.contains("112 eller socialjouren 08-123 456 78"),
        "{notice}"
    );
    let replies = eventually(
        Duration::from_secs(10),
        "the auto-reply delivered",
        || async {
            let out = texts(CLIENT);
            (!out.is_empty()).then_some(out)
        },
    )
    .await;
    assert_eq!(replies.len(), 1);
    assert_eq!(elks.sent()[0]["from"], NIGHT_NUMBER);
    // fit_sms: the first language's short text, in one SMS part, with the emergency numbers.
    assert!(
        replies[0].starts_with("Vi har stängt och svarar från ")
            && replies[0].ends_with("Akut: ring 112 eller socialjouren 08-123 456 78"),
        "{}",
        replies[0]
    );
    assert_eq!(
        casebridge_policies::sms::Segments::of(&replies[0]).parts,
        1,
        "{}",
        replies[0]
    );

    // A second message the same night, still closed: none.
    assert_eq!(sms("n2", "Är ni där?").await, 204);
    stack
        .ghost_messages(&night_room, 2, Duration::from_secs(20))
        .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(kinds(&gateway, MessageKind::AutoReply).await, 1);
    assert_eq!(texts(CLIENT).len(), 1);

    // The office opens (an evening opening from a minute ago, as the admin adds it and the
    // gateway restarts): a message now gets none either.
    gateway.shutdown().await;
    stack.setup.extra = config(&format!(
        "open = [{{ from = \"{}\", to = \"{}\", reason = \"extra evening hours\" }}]",
        local_time(night_offset, -60),
        local_time(night_offset, 3600)
    ));
    let gateway = stack.start_gateway().await;
    assert_eq!(sms("n3", "God kväll, nu har ni öppet.").await, 204);
    stack
        .ghost_messages(&night_room, 3, Duration::from_secs(20))
        .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(kinds(&gateway, MessageKind::AutoReply).await, 1);
    assert_eq!(texts(CLIENT).len(), 1, "{:?}", elks.sent());

    // `!via sms` names the number as the office writes it; the worker's reply goes by SMS.
    stack.worker.send_text(&night_room, "!via sms").await;
    stack
        .wait_for_notice(&night_room, "!via sms", |n| {
            n == "Svar går nu till 070-111 11 11 (SMS)."
        })
        .await;
    stack
        .worker
        .send_text(&night_room, "Hej! Vi ringer dig i morgon.")
        .await;
    eventually(Duration::from_secs(10), "the worker's SMS", || async {
        (texts(CLIENT).len() == 2).then_some(())
    })
    .await;
    assert_eq!(texts(CLIENT)[1], "Hej! Vi ringer dig i morgon.");

    // Noon, open: an emergency phrase gets the emergency reply at once, a message in the case
    // room that mentions the on-call member, and an alert in the on-call room.
    noon.put(
        "e1",
        "+46702222222",
        "Jag orkar inte mer, jag tänker på självmord",
    );
    let noon_room = stack.join_case_room().await;
    let alert = eventually(Duration::from_secs(20), "the case-room alert", || async {
        highlights(&stack.worker, &noon_room)
            .await
            .into_iter()
            .next()
    })
    .await;
    assert!(
        alert["content"]["body"].as_str().unwrap().starts_with(
            "⚠ Akut: klientens meddelande innehåller «självmord*». Klienten fick larmnumren."
        ),
        "{alert}"
    );
    assert_eq!(
        alert["content"]["m.mentions"]["user_ids"],
        serde_json::json!(["@bo:localhost"])
    );
    let on_call = eventually(
        Duration::from_secs(20),
        "the on-call room alert",
        || async {
            highlights(&stack.worker, &alert_room)
                .await
                .into_iter()
                .next()
        },
    )
    .await;
    let body = on_call["content"]["body"].as_str().unwrap();
    assert!(body.starts_with("⚠ Akut i ärende "), "{body}");
    assert!(body.contains("https://matrix.to/#/#_cb_case_"), "{body}");
    let out = eventually(Duration::from_secs(10), "the emergency reply", || async {
        let out = noon.outbox();
        (!out.is_empty()).then_some(out)
    })
    .await;
    assert!(
        out[0]
            .body
            .contains("Om du eller någon annan är i fara just nu, ring 112"),
        "{}",
        out[0].body
    );

    // Commands from a real account, and refused from a non-member.
    let mut eve = Worker::login(&stack.synapse.url, "eve", "eve-password").await;
    stack.worker.invite(&noon_room, "@eve:localhost").await;
    eve.join(&noon_room).await;
    let refusals = || async {
        stack
            .notices(&noon_room)
            .await
            .iter()
            .filter(|n| {
                *n == "Bara medlemmar i enheten noon kan använda kommandon i ett ärenderum. Inget gjordes."
            })
            .count()
    };
    let every_command = [
        "!help",
        "!case",
        "!note x",
        "!incident x",
        "!assign @eve:localhost",
        "!via loopback",
        "!close",
        "!reopen",
        "!discreet on",
        "!discreet off",
        "!block",
        "!unblock",
        "!send",
        "!hold on",
        "!invite telegram",
        "!merge 2026-000001",
    ];
    for (i, command) in every_command.iter().enumerate() {
        eve.send_text(&noon_room, command).await;
        eventually(Duration::from_secs(20), command, || async {
            (refusals().await == i + 1).then_some(())
        })
        .await;
    }
    eve.send_text(&noon_room, "Hej, det här är Eve").await;
    stack
        .wait_for_notice(&noon_room, "eve's text refused", |n| {
            n.starts_with("Bara medlemmar i enheten noon kan skriva till klienten")
        })
        .await;

    let commands: [(&str, &Expectation); 10] = [
        ("!help", &|n| n.starts_with("Kommandon i ett ärenderum")),
        ("!case", &|n| {
            n.contains("· öppet · enhet noon")
                && n.contains("Kontaktvägar: +46702222222 (Loopback) ← svar går hit")
        }),
        ("!note Ringde klienten, ingen svarade", &|n| {
            n == "Intern anteckning registrerad; den skickas inte till klienten."
        }),
        ("!incident Klienten hotade en kollega", &|n| {
            n == "Incidentrapporten är registrerad och postad i incidentrummet."
        }),
        ("!assign @bo:localhost", &|n| {
            n.ends_with("tilldelat @bo:localhost av @anna:localhost.")
        }),
        ("!via loopback", &|n| {
            n == "Svar går nu till +46702222222 (Loopback)."
        }),
        ("!close", &|n| n.ends_with("stängt av @anna:localhost.")),
        ("!reopen", &|n| {
            n.ends_with("öppnat igen av @anna:localhost.")
        }),
        ("!discreet on", &|n| n.starts_with("Diskret läge på")),
        ("!frobnicate", &|n| {
            n.starts_with("okänt kommando !frobnicate")
        }),
    ];
    for (command, expected) in commands {
        stack.worker.send_text(&noon_room, command).await;
        stack
            .wait_for_notice(&noon_room, command, |n| expected(n))
            .await;
    }
    let incident = eventually(Duration::from_secs(20), "the incident report", || async {
        stack
            .worker
            .messages(&alert_room)
            .await
            .into_iter()
            .find(|e| {
                e["content"]["body"]
                    .as_str()
                    .is_some_and(|b| b.starts_with("Incidentrapport i ärende"))
            })
    })
    .await;
    assert!(incident["content"]["body"]
        .as_str()
        .unwrap()
        .contains("Klienten hotade en kollega"));
    // Commands are records, never texts for the client.
    assert_eq!(noon.outbox().len(), 1);

    // Discreet: an emergency still alerts the team, but nothing automatic reaches the client.
    noon.put(
        "e2",
        "+46702222222",
        "Han slår mig, jag är rädd för mitt liv",
    );
    eventually(Duration::from_secs(20), "the second alert", || async {
        let h = highlights(&stack.worker, &noon_room).await;
        (h.len() == 2).then_some(())
    })
    .await;
    let second = highlights(&stack.worker, &noon_room).await.pop().unwrap();
    assert!(
        second["content"]["body"]
            .as_str()
            .unwrap()
            .contains("Inget skickades automatiskt till klienten."),
        "{second}"
    );
    // A reply the worker writes still goes out.
    stack
        .worker
        .send_text(&noon_room, "Vi ringer dig från ett dolt nummer.")
        .await;
    let out = eventually(Duration::from_secs(10), "the worker's reply", || async {
        let out = noon.outbox();
        (out.len() == 2).then_some(out)
    })
    .await;
    assert_eq!(out[1].body, "Vi ringer dig från ett dolt nummer.");

    // Blocked: the client's messages are recorded, not shown; the client gets the neutral text.
    stack.worker.send_text(&noon_room, "!block").await;
    stack
        .wait_for_notice(&noon_room, "blocked", |n| n.starts_with("Blockerad:"))
        .await;
    stack.worker.send_text(&noon_room, "!discreet off").await;
    stack
        .wait_for_notice(&noon_room, "discreet off", |n| {
            n.starts_with("Diskret läge av")
        })
        .await;
    noon.put("b1", "+46702222222", "Svara mig nu!");
    let out = eventually(Duration::from_secs(10), "the neutral answer", || async {
        let out = noon.outbox();
        (out.len() == 3).then_some(out)
    })
    .await;
    assert!(
        out[2]
            .body
            .starts_with("Ditt meddelande har tagits emot och registrerats."),
        "{}",
        out[2].body
    );
    // The team sees what the client was told, never what the client wrote.
    let told = stack
        .wait_for_notice(&noon_room, "the neutral answer's notice", |n| {
            n.starts_with("Automatiskt svar skickat till klienten (Loopback, blockerad klient)")
        })
        .await;
    assert!(
        told.contains("Ditt meddelande har tagits emot och registrerats.")
            && !told.contains("Svara mig nu!"),
        "{told}"
    );
    let case =
        casebridge_gateway::store::Store::case_by_room(gateway.store().connection(), &noon_room)
            .await
            .unwrap()
            .expect("the noon case");
    let messages = gateway.store().messages(case.id).await.unwrap();
    let blocked = messages
        .iter()
        .find(|m| m.direction == Direction::Inbound && m.body == "Svara mig nu!")
        .expect("the blocked message is recorded");
    assert_eq!(blocked.state, MessageState::Blocked);
    assert!(
        blocked.event_id.is_none(),
        "a blocked message is not relayed"
    );

    // Unblocked: shown again, and no more neutral answers.
    stack.worker.send_text(&noon_room, "!unblock").await;
    stack
        .wait_for_notice(&noon_room, "unblocked", |n| {
            n == "Blockeringen hävd: klientens meddelanden visas här igen."
        })
        .await;
    noon.put("b2", "+46702222222", "Förlåt för förut.");
    let shown = stack
        .ghost_messages(&noon_room, 3, Duration::from_secs(20))
        .await;
    assert_eq!(shown[2]["content"]["body"], "Förlåt för förut.");
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(noon.outbox().len(), 3, "{:?}", noon.outbox());
    assert_eq!(
        messages
            .iter()
            .filter(|m| m.kind == Some(MessageKind::Note))
            .count(),
        1
    );

    gateway.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_worker_identity_or_private_number_reaches_a_client() {
    let mut stack = Stack::new(Db::Sqlite, "privacy").await;
    let gateway = stack.start_gateway().await;
    stack
        .spool
        .put("p1", "+46703333333", "Hej, när kan vi ses?");
    let room = stack.join_case_room().await;
    let first = stack
        .ghost_messages(&room, 1, Duration::from_secs(20))
        .await;
    let client_event = first[0]["event_id"].as_str().unwrap().to_owned();
    // No URL previews in case rooms: no worker's client fetches a URL a client sent.
    let previews = stack
        .worker
        .state(&room, "org.matrix.room.preview_urls", "")
        .await
        .expect("the room sets URL previews");
    assert_eq!(previews["disable"], true);
    let ghost = first[0]["sender"].as_str().unwrap().to_owned();

    // A reply to the client's message that also mentions a colleague: the client gets neither
    // the quote (with its Matrix IDs) nor the mention.
    stack
        .worker
        .send(
            &room,
            serde_json::json!({
                "msgtype": "m.text",
                "body": format!("> <{ghost}> Hej, när kan vi ses?\n\nbo: kan du ta den? Hej! I morgon kl. 10 går bra."),
                "format": "org.matrix.custom.html",
                "formatted_body": format!(
                    "<mx-reply><blockquote><a href=\"https://matrix.to/#/{room}/{client_event}\">In reply to</a> \
                     <a href=\"https://matrix.to/#/{ghost}\">{ghost}</a><br>Hej, när kan vi ses?</blockquote></mx-reply>\
                     <a href=\"https://matrix.to/#/@bo:localhost\">bo</a>: kan du ta den? Hej! I morgon kl. 10 går bra."
                ),
                "m.relates_to": {"m.in_reply_to": {"event_id": client_event}},
                "m.mentions": {"user_ids": ["@bo:localhost"]},
            }),
        )
        .await;
    let out = eventually(
        Duration::from_secs(20),
        "the reply at the client",
        || async { stack.spool.outbox().into_iter().next() },
    )
    .await;
    assert_eq!(out.body, "kan du ta den? Hej! I morgon kl. 10 går bra.");
    let html = out.html.unwrap_or_default();
    for payload in [out.body.as_str(), html.as_str()] {
        for bad in [
            "@bo",
            "bo<",
            ">bo",
            "anna",
            "matrix.to",
            "mx-reply",
            "när kan vi ses",
        ] {
            assert!(!payload.contains(bad), "{bad} in {payload}");
        }
    }

    // A private number is held until a worker confirms it.
    stack
        .worker
        .send_text(&room, "Ring mig hellre privat på 070-123 45 67.")
        .await;
    stack
        .wait_for_notice(&room, "the hold", |n| {
            n.starts_with("Held, not sent: this reply contains 070-123 45 67")
        })
        .await;
    assert_eq!(stack.spool.outbox().len(), 1);
    stack.worker.send_text(&room, "!send").await;
    let out = eventually(Duration::from_secs(20), "the confirmed reply", || async {
        let out = stack.spool.outbox();
        (out.len() == 2).then_some(out)
    })
    .await;
    assert_eq!(out[1].body, "Ring mig hellre privat på 070-123 45 67.");
    stack
        .wait_for_notice(&room, "the confirmation", |n| {
            n == "The held reply is sent as written, confirmed by @anna:localhost."
        })
        .await;
    gateway.shutdown().await;
}
