//! One client on two channels, one case: mail through real Dovecot and Postfix, SMS through the
//! 46elks double, the team's notes, and the case's journal exported by the shipped CLI and read
//! with a browser's HTML parser (html5ever, through `scraper`), as the team's records officer
//! reads it: in the team's language and time zone, under the team's name.

use std::time::Duration;

use casebridge_gateway::store::Direction;
use casebridge_tests::{
    elks::{ElksDouble, API_PASSWORD, API_USERNAME},
    eventually,
    mail::{MailServer, CLIENT, OFFICE},
};
use scraper::{Html, Selector};

use crate::{binary::casebridge_cli, Db, Stack};

const SMS_OFFICE: &str = "+46766860000";
const SECRET: &str = "elks-webhook-secret";
const CLIENT_MOBILE: &str = "+46701234567";
/// A Swedish team in Stockholm, open around the clock (so no automatic replies), whose key is
/// not its name: the journal must show the name.
const TEAM: &str = r#"
[teams.adult]
name = "Socialtjänsten, vuxenenheten"
members = ["@anna:localhost", "@bo:localhost"]
languages = ["sv", "en"]

[teams.adult.hours]
time_zone = "Europe/Stockholm"
monday = ["00:00-24:00"]
tuesday = ["00:00-24:00"]
wednesday = ["00:00-24:00"]
thursday = ["00:00-24:00"]
friday = ["00:00-24:00"]
saturday = ["00:00-24:00"]
sunday = ["00:00-24:00"]
"#;

fn select<'a>(page: &'a Html, css: &str) -> Vec<scraper::ElementRef<'a>> {
    page.select(&Selector::parse(css).unwrap()).collect()
}

fn text(e: &scraper::ElementRef<'_>) -> String {
    e.text().collect::<String>()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn journal_of_a_case_with_mail_sms_and_notes() {
    let mail = MailServer::start().await;
    let elks = ElksDouble::start().await;
    let mut stack = Stack::new(Db::Sqlite, "journal").await;
    let base = format!("http://127.0.0.1:{}", stack.setup.port);
    stack.setup.extra = mail.bridge_toml("adult")
        + TEAM
        + &format!(
            r#"
[bridges.sms]
kind = "sms"
team = "adult"
number = "{SMS_OFFICE}"
public_url = "{base}/"
webhook_secret = "{SECRET}"

[bridges.sms.provider]
kind = "46elks"
api_url = "{elks}"
api_username = "{API_USERNAME}"
api_password = "{API_PASSWORD}"
"#,
            elks = elks.url
        );
    let gateway = stack.start_gateway().await;
    let webhook = format!("{base}/webhook/sms?secret={SECRET}");

    // The client writes by mail; the team answers by mail and notes a call.
    mail.send_raw(
        CLIENT.0,
        OFFICE.0,
        format!(
            "From: Klara Klient <{client}>\r\nTo: {office}\r\nSubject: Tid hos er\r\n\
             Message-ID: <j1@client.test>\r\nDate: Mon, 23 Nov 2026 09:00:00 +0100\r\n\
             MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\
             Content-Transfer-Encoding: 8bit\r\n\r\nHej, kan jag få en tid?\r\n",
            client = CLIENT.0,
            office = OFFICE.0
        )
        .as_bytes(),
    )
    .await;
    let room = stack.join_case_room().await;
    stack
        .ghost_messages(&room, 1, Duration::from_secs(20))
        .await;
    stack
        .worker
        .send_text(&room, "Hej Klara! Passar torsdag kl. 10?")
        .await;
    eventually(Duration::from_secs(20), "the reply mail", || async {
        let inbox = mail.inbox(CLIENT).await;
        inbox
            .iter()
            .any(|m| String::from_utf8_lossy(m).contains("Passar torsdag"))
            .then_some(())
    })
    .await;
    stack
        .worker
        .send_text(&room, "!note Klara ringde och bad om sms i stället")
        .await;

    // She texts from her mobile, which opens a case of its own; the team merges it.
    assert_eq!(
        ElksDouble::incoming(
            &webhook,
            "j-s1",
            CLIENT_MOBILE,
            SMS_OFFICE,
            "Det är Klara, sms går bättre"
        )
        .await,
        204
    );
    let sms_room = stack.join_case_room().await;
    stack
        .ghost_messages(&sms_room, 1, Duration::from_secs(20))
        .await;
    let cases = gateway.store().cases().await.unwrap();
    let case = cases
        .iter()
        .find(|c| c.room_id.as_deref() == Some(room.as_str()))
        .unwrap()
        .clone();
    let sms_case = cases
        .iter()
        .find(|c| c.room_id.as_deref() == Some(sms_room.as_str()))
        .unwrap()
        .clone();
    stack
        .worker
        .send_text(&room, &format!("!merge {}", sms_case.number))
        .await;
    stack
        .wait_for_notice(&room, "the merge", |n| {
            n.starts_with(&format!(
                "Ärende {} sammanslaget med det här ärendet",
                sms_case.number
            ))
        })
        .await;

    // Her next text lands in this case, and the answer goes back by SMS and is delivered.
    assert_eq!(
        ElksDouble::incoming(
            &webhook,
            "j-s2",
            CLIENT_MOBILE,
            SMS_OFFICE,
            "Torsdag & kl. 10 <3 går bra"
        )
        .await,
        204
    );
    let inbound = stack
        .ghost_messages(&room, 2, Duration::from_secs(20))
        .await;
    assert_eq!(inbound[1]["content"]["body"], "Torsdag & kl. 10 <3 går bra");
    stack
        .worker
        .send_text(&room, "Välkommen på torsdag kl. 10.")
        .await;
    let sent = eventually(Duration::from_secs(20), "the SMS at 46elks", || async {
        let sent = elks.sent();
        (!sent.is_empty()).then_some(sent)
    })
    .await;
    assert_eq!(sent[0]["to"], CLIENT_MOBILE);
    let store = gateway.store();
    let sms_id = eventually(Duration::from_secs(20), "the SMS's id", || async {
        store
            .messages(case.id)
            .await
            .unwrap()
            .into_iter()
            .find(|m| m.direction == Direction::Outbound && m.channel == "sms")
            .and_then(|m| m.upstream_id)
    })
    .await;
    assert_eq!(
        ElksDouble::report(&sent[0]["whendelivered"], &sms_id, "delivered").await,
        204
    );
    stack
        .wait_for_notice(&room, "the delivery notice", |n| {
            n.starts_with("Levererat till klienten (SMS)")
        })
        .await;
    let records = store.messages(case.id).await.unwrap();
    gateway.shutdown().await;

    // The journal, as an admin exports it.
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("casebridge.toml");
    std::fs::write(&config, stack.setup.toml()).unwrap();
    let run = |args: &[&str]| {
        let (ok, out, err) = casebridge_cli(&config, args);
        assert!(ok, "casebridge {args:?}: {err}");
        out
    };
    let html = run(&[
        "records",
        "export",
        "--case",
        &case.number,
        "--format",
        "html",
    ]);
    std::fs::write(dir.path().join("journal.html"), &html).unwrap();
    let page = Html::parse_document(&html);
    assert!(page.errors.is_empty(), "{:?}\n{html}", page.errors);
    // In the team's first language, Swedish.
    assert_eq!(select(&page, "html[lang=sv]").len(), 1, "{html}");
    assert_eq!(
        text(&select(&page, "title")[0]),
        format!("Ärende {} — journal", case.number)
    );
    assert_eq!(
        text(&select(&page, "h1")[0]),
        format!("Ärende {}", case.number)
    );
    // The team by its name, not its configuration key; the time zone named once.
    let meta = text(&select(&page, "p.meta")[0]);
    assert!(
        meta.starts_with("Enhet: Socialtjänsten, vuxenenheten · status: öppet · öppnat "),
        "{meta}"
    );
    assert!(!meta.contains("adult"), "{meta}");
    let zone = text(&select(&page, "p.zone")[0]);
    assert_eq!(
        zone,
        "Tider i Europe/Stockholm, med skillnaden mot UTC efter varje tid."
    );
    let heads: Vec<String> = select(&page, "thead th").iter().map(text).collect();
    assert_eq!(
        heads,
        ["Nr", "Tid (Europe/Stockholm)", "Post", "Text", "Status"]
    );
    // Self-contained: nothing to fetch and nothing to run when it opens.
    assert!(select(&page, "script, img, iframe, link, object").is_empty());
    assert!(select(&page, "[src], [href]").is_empty());

    let contacts: Vec<String> = select(&page, "ul li").iter().map(text).collect();
    assert_eq!(contacts.len(), 2, "{contacts:?}");
    assert!(
        contacts[0].starts_with("Klara Klient <client@client.test> — email (mail), skrev först "),
        "{contacts:?}"
    );
    assert!(
        contacts[1].starts_with("070-123 45 67 — sms (sms), skrev först "),
        "{contacts:?}"
    );

    // One row per record, in registration order, each with its hash.
    let rows: Vec<Vec<String>> = select(&page, "tbody tr")
        .iter()
        .map(|row| {
            row.select(&Selector::parse("td").unwrap())
                .map(|td| text(&td))
                .collect()
        })
        .collect();
    assert_eq!(rows.len(), records.len());
    let stockholm = stack.setup.config().teams["adult"]
        .hours
        .as_ref()
        .unwrap()
        .time_zone;
    for (i, (row, record)) in rows.iter().zip(&records).enumerate() {
        assert_eq!(row.len(), 5, "{row:?}");
        assert_eq!(row[0], (i + 1).to_string(), "{rows:#?}");
        let hash = record.hash.as_deref().unwrap();
        assert!(row[3].ends_with(hash), "{row:?}");
        // Local time, with its offset from UTC (which tells the two autumn 02:30s apart).
        let local = record.received_at.with_timezone(&stockholm);
        assert_eq!(
            row[1],
            local.format("%Y-%m-%d %H:%M:%S %:z").to_string(),
            "{row:?}"
        );
    }
    let entry = |wanted: &str, text: &str| {
        rows.iter()
            .position(|r| r[2].starts_with(wanted) && r[3].contains(text))
            .unwrap_or_else(|| panic!("no {wanted:?} with {text:?} in {rows:#?}"))
    };
    let mail_in = entry(
        "Från klienten (email)Klara Klient",
        "Hej, kan jag få en tid?",
    );
    let mail_out = entry(
        "Svar till klienten (email)av @anna:localhost",
        "Passar torsdag",
    );
    let note = entry(
        "Intern anteckningav @anna:localhost",
        "Klara ringde och bad om sms",
    );
    // The gateway's notices are recorded as they were written (in the team's Swedish).
    let merge = entry(
        "Meddelande till handläggarna",
        &format!(
            "Ärende {} sammanslaget med det här ärendet",
            sms_case.number
        ),
    );
    let sms_in = entry(
        "Från klienten (sms)070-123 45 67",
        "Torsdag & kl. 10 <3 går bra",
    );
    let sms_out = entry(
        "Svar till klienten (sms)av @anna:localhost",
        "Välkommen på torsdag",
    );
    let report = entry(
        "Meddelande till handläggarna",
        "Levererat till klienten (SMS)",
    );
    assert!(mail_in < mail_out && mail_out < note && note < merge && merge < sms_in);
    assert!(sms_in < sms_out && sms_out < report);
    // The mail reply under the subject of the client's mail it answered.
    assert!(
        rows[mail_out][3].starts_with("I tråden: Tid hos er\nHej Klara! Passar torsdag kl. 10?"),
        "{:?}",
        rows[mail_out]
    );
    // The note as its text, not as the command that made it.
    assert!(
        rows[note][3].starts_with("Klara ringde och bad om sms i stället"),
        "{:?}",
        rows[note]
    );
    assert!(!html.contains("!note"), "{html}");
    assert!(
        rows[mail_out][4].starts_with("skickat"),
        "{:?}",
        rows[mail_out]
    );
    // 22:01 UTC, as 46elks reported it, is 23:01 in Stockholm in November.
    assert!(
        rows[sms_out][4].starts_with("levererat2026-11-23 23:01 +01:00"),
        "{:?}",
        rows[sms_out]
    );
    // The client's text is shown as text, not markup.
    assert!(html.contains("Torsdag &amp; kl. 10 &lt;3 går bra"));

    // The JSON export holds the same records, and the chain verifies.
    let json: serde_json::Value = serde_json::from_str(&run(&[
        "records",
        "export",
        "--case",
        &case.number,
        "--format",
        "json",
    ]))
    .unwrap();
    assert_eq!(json.as_array().unwrap().len(), records.len());
    let verified = run(&["records", "verify", "--case", &case.number]);
    assert!(verified.contains("every chain is intact"), "{verified}");
}
