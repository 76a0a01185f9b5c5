//! The e-mail bridge against real Dovecot (IMAP) and Postfix (SMTP) and a real Synapse.

use std::time::{Duration, Instant};

use casebridge_gateway::store::Direction;
use casebridge_tests::{
    eventually,
    mail::{MailServer, CLIENT, OFFICE},
};
use mail_parser::{MessageParser, MimeHeaders};

use crate::{Db, Stack};

async fn mail_stack(name: &str, team_extra: &str) -> (Stack, MailServer) {
    let mail = MailServer::start().await;
    let mut stack = Stack::new(Db::Sqlite, name).await;
    stack.setup.extra = mail.bridge_toml("mailteam")
        + &format!(
            "\n[teams.mailteam]\nname = \"Socialtjänsten\"\n\
             members = [\"@anna:localhost\", \"@bo:localhost\"]\n{team_extra}\n"
        );
    (stack, mail)
}

fn client_mail(id: &str, subject: &str, body: &str, extra_headers: &str) -> Vec<u8> {
    format!(
        "From: Klara Klient <{client}>\r\nTo: {office}\r\nSubject: {subject}\r\n\
         Message-ID: <{id}>\r\nDate: Mon, 23 Nov 2026 21:00:00 +0100\r\nMIME-Version: 1.0\r\n\
         Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n{extra_headers}\r\n{body}\r\n",
        client = CLIENT.0,
        office = OFFICE.0,
    )
    .into_bytes()
}

fn header(raw: &[u8], name: &str) -> String {
    let mail = MessageParser::default().parse(raw).unwrap();
    mail.header_raw(name).unwrap_or_default().trim().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mail_in_reply_out_threaded_and_machines_unanswered() {
    let (mut stack, mail) = mail_stack(
        "email",
        "auto_reply.acknowledge = true\nauto_reply.repeat = \"every-message\"\n\
         discreet.sender_name = \"Information\"\ndiscreet.subject = \"Meddelande\"",
    )
    .await;
    let gateway = stack.start_gateway().await;

    // A client writes to the office mailbox.
    let sent = Instant::now();
    mail.send_raw(
        CLIENT.0,
        OFFICE.0,
        &client_mail(
            "c1@client.test",
            "Fråga om hyran",
            "Hej! Kan ni hjälpa mig med hyran?",
            "",
        ),
    )
    .await;
    let room = stack.join_case_room().await;
    let first = stack
        .ghost_messages(&room, 1, Duration::from_secs(20))
        .await;
    eprintln!("mail to room: {:?} after the SMTP submit", sent.elapsed());
    assert_eq!(
        first[0]["content"]["body"],
        "Fråga om hyran\n\nHej! Kan ni hjälpa mig med hyran?"
    );
    let ghost = first[0]["sender"].as_str().unwrap().to_owned();
    assert_eq!(
        stack.worker.display_name(&ghost).await.as_deref(),
        Some("Klara Klient <client@client.test> (E-mail)")
    );

    // The acknowledgement is marked as automatic and threaded.
    let mails = mail.wait_for_mail(CLIENT, 1, Duration::from_secs(20)).await;
    assert_eq!(header(&mails[0], "Auto-Submitted"), "auto-replied");
    assert_eq!(header(&mails[0], "In-Reply-To"), "<c1@client.test>");

    // A worker's reply: from the office, threaded, the case number in the subject, no worker.
    stack
        .worker
        .send_text(&room, "Hej Klara! Vi ringer dig i morgon förmiddag.")
        .await;
    let mails = mail.wait_for_mail(CLIENT, 2, Duration::from_secs(20)).await;
    let reply = &mails[1];
    let parsed = MessageParser::default().parse(reply.as_slice()).unwrap();
    let case = gateway.store().cases().await.unwrap().remove(0);
    assert_eq!(
        parsed.subject(),
        Some(format!("Re: Fråga om hyran [{}]", case.number).as_str())
    );
    let from = parsed.from().unwrap().first().unwrap();
    assert_eq!(from.address(), Some(OFFICE.0));
    assert_eq!(from.name(), Some("Socialtjänsten"));
    assert_eq!(header(reply, "In-Reply-To"), "<c1@client.test>");
    assert!(header(reply, "References").contains("<c1@client.test>"));
    assert_eq!(header(reply, "Auto-Submitted"), "");
    assert_eq!(
        parsed.body_text(0).unwrap().trim(),
        "Hej Klara! Vi ringer dig i morgon förmiddag."
    );
    let raw = String::from_utf8_lossy(reply);
    assert!(
        !raw.contains("anna") && !raw.contains("@anna:localhost"),
        "{raw}"
    );
    let our_id = parsed.message_id().unwrap().to_owned();

    // The client answers in the thread: same case, same room.
    mail.send_raw(
        CLIENT.0,
        OFFICE.0,
        &client_mail(
            "c2@client.test",
            &format!("Re: Fråga om hyran [{}]", case.number),
            "Tack, det passar bra.\r\n\r\nOn Mon, Office wrote:\r\n> Hej Klara!",
            &format!("In-Reply-To: <{our_id}>\r\nReferences: <c1@client.test> <{our_id}>\r\n"),
        ),
    )
    .await;
    let messages = stack
        .ghost_messages(&room, 2, Duration::from_secs(20))
        .await;
    assert_eq!(
        messages[1]["content"]["body"],
        format!(
            "Re: Fråga om hyran [{}]\n\nTack, det passar bra.",
            case.number
        )
    );
    assert_eq!(gateway.store().cases().await.unwrap().len(), 1);
    // The room shows the new text; the record keeps the mail whole, quote included.
    let recorded = gateway.store().messages(case.id).await.unwrap();
    let c2 = recorded
        .iter()
        .find(|m| m.upstream_id.as_deref() == Some("c2@client.test"))
        .unwrap();
    let original = gateway.store().original(c2.id).await.unwrap().unwrap();
    assert!(String::from_utf8_lossy(&original).contains("> Hej Klara!"));
    let mails = mail.wait_for_mail(CLIENT, 3, Duration::from_secs(20)).await;
    assert_eq!(
        mails.len(),
        3,
        "the client's own reply is acknowledged once"
    );

    // A photo from the worker goes out as an attachment, without where it was taken.
    let jpeg = casebridge_tests::jpeg_with_gps();
    let mxc = stack.worker.upload(jpeg, "image/jpeg", "karta.jpg").await;
    stack
        .worker
        .send(
            &room,
            serde_json::json!({
                "msgtype": "m.image",
                "body": "karta.jpg",
                "url": mxc,
                "info": {"mimetype": "image/jpeg"},
            }),
        )
        .await;
    let mails = mail.wait_for_mail(CLIENT, 4, Duration::from_secs(20)).await;
    let photo_mail = MessageParser::default().parse(mails[3].as_slice()).unwrap();
    let photo = photo_mail
        .attachments()
        .next()
        .expect("the photo is attached");
    assert_eq!(photo.attachment_name(), Some("karta.jpg"));
    let bytes = photo.contents();
    assert!(
        bytes.starts_with(&[0xFF, 0xD8]) && bytes.ends_with(&[0x12, 0x34, 0x56, 0x78, 0xFF, 0xD9])
    );
    assert!(
        !String::from_utf8_lossy(bytes).contains("GPS"),
        "no location in the photo"
    );

    // Another address answering the office's mail joins the case; an unknown address that
    // only names the case number in its subject opens a new case, and the team is told.
    let other = format!(
        "From: {other}\r\nTo: {office}\r\nSubject: Re: Fråga om hyran [{number}]\r\n\
         Message-ID: <o1@client.test>\r\nIn-Reply-To: <{our_id}>\r\n\r\nDet är Klaras sambo.\r\n",
        other = "other@client.test",
        office = OFFICE.0,
        number = case.number,
    );
    mail.send_raw("other@client.test", OFFICE.0, other.as_bytes())
        .await;
    stack
        .wait_for_notice(&room, "the joined address", |n| {
            n == "other@client.test wrote for the first time, answering the office's message \
                  in this case, so the address joined this case. Replies now go to this address, \
                  where the client wrote last."
        })
        .await;
    let stranger = format!(
        "From: stranger@elsewhere.test\r\nTo: {office}\r\nSubject: Om [{number}]\r\n\
         Message-ID: <x1@elsewhere.test>\r\n\r\nJag vet något om ärendet.\r\n",
        office = OFFICE.0,
        number = case.number,
    );
    mail.send_raw("stranger@elsewhere.test", OFFICE.0, stranger.as_bytes())
        .await;
    let stranger_room = stack.join_case_room().await;
    assert_ne!(stranger_room, room);
    stack
        .wait_for_notice(&stranger_room, "the case-number notice", |n| {
            n == format!(
                "This message names case {number}, but stranger@elsewhere.test is not an address \
                 of that case, so it opened this new case. If it belongs to case {number}, handle \
                 it there.",
                number = case.number
            )
        })
        .await;
    // The acknowledgement to the stranger is refused at once (the test bed delivers nowhere
    // outside it): a failed delivery in the stranger's room.
    stack
        .wait_for_notice(&stranger_room, "the refusal", |n| {
            n.starts_with("Not delivered to the client (E-mail): the mail server refused the reply: permanent error (550)")
        })
        .await;
    assert_eq!(gateway.store().cases().await.unwrap().len(), 2);
    // Acknowledgements, the reply and the photo.
    let expected_in_client_box = 4;

    // A client whose mailbox is gone: Postfix accepts the acknowledgement, then Dovecot refuses
    // it, and Postfix's bounce (a real DSN) comes back to the office mailbox. It is shown as a
    // failed delivery in that case, never as a new case.
    mail.send_raw(
        "gone@client.test",
        OFFICE.0,
        b"From: gone@client.test\r\nTo: office@office.test\r\nSubject: Hej\r\nMessage-ID: <g1@client.test>\r\n\r\nHej!\r\n",
    )
    .await;
    let gone_room = stack.join_case_room().await;
    let bounced = stack
        .wait_for_notice(&gone_room, "the bounce", |n| {
            n.starts_with("Not delivered to the client (E-mail): the mail server answered:")
        })
        .await;
    assert!(bounced.contains("gone@client.test"), "{bounced}");
    assert_eq!(gateway.store().cases().await.unwrap().len(), 3);

    // The client's auto-responder and a bounce: recorded, shown, never answered.
    mail.send_raw(
        CLIENT.0,
        OFFICE.0,
        &client_mail(
            "c3@client.test",
            "Frånvaro",
            "Jag är bortrest till måndag.",
            "Auto-Submitted: auto-replied\r\n",
        ),
    )
    .await;
    stack
        .ghost_messages(&room, 4, Duration::from_secs(20))
        .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        mail.inbox(CLIENT).await.len(),
        expected_in_client_box,
        "no answer to an auto-reply"
    );
    // A bounce from the client's side (not of the office's mail, no Auto-Submitted): recorded
    // and shown in a case of its own, and never answered.
    mail.send_raw(
        "mailer-daemon@client.test",
        OFFICE.0,
        b"From: Mail Delivery System <MAILER-DAEMON@client.test>\r\nTo: office@office.test\r\n\
          Subject: Undelivered Mail Returned to Sender\r\nMessage-ID: <md1@client.test>\r\n\r\n\
          This is the mail system at host client.test. Your message could not be delivered.\r\n",
    )
    .await;
    let daemon_room = stack.join_case_room().await;
    stack
        .ghost_messages(&daemon_room, 1, Duration::from_secs(20))
        .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let daemon_case =
        casebridge_gateway::store::Store::case_by_room(gateway.store().connection(), &daemon_room)
            .await
            .unwrap()
            .unwrap();
    let answers: Vec<_> = gateway
        .store()
        .messages(daemon_case.id)
        .await
        .unwrap()
        .into_iter()
        .filter(|m| m.direction == Direction::Outbound)
        .collect();
    assert!(
        answers.is_empty(),
        "a mailer daemon is never answered: {answers:?}"
    );

    // Tracking pixel, script and a 30 MB file over the 10 MB limit.
    let big = "QUFB".repeat(30 * 1024 * 1024 / 3);
    let html_mail = format!(
        "From: {client}\r\nTo: {office}\r\nSubject: Bilaga\r\nMessage-ID: <c4@client.test>\r\n\
         MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b1\r\n\r\n--b1\r\n\
         Content-Type: text/html; charset=utf-8\r\n\r\n<p>Se bilagan<img src=\"http://tracker.invalid/p.gif\" width=1 height=1></p>\
         <script>alert('x')</script>\r\n--b1\r\nContent-Type: application/pdf; name=stor.pdf\r\n\
         Content-Disposition: attachment; filename=stor.pdf\r\nContent-Transfer-Encoding: base64\r\n\r\n{big}\r\n--b1--\r\n",
        client = CLIENT.0,
        office = OFFICE.0,
    );
    mail.send_raw(CLIENT.0, OFFICE.0, html_mail.as_bytes())
        .await;
    let messages = stack
        .ghost_messages(&room, 5, Duration::from_secs(60))
        .await;
    let html = messages[4]["content"]["formatted_body"].as_str().unwrap();
    assert!(
        !html.contains("<img") && !html.contains("tracker.invalid") && !html.contains("script"),
        "{html}"
    );
    let body = messages[4]["content"]["body"].as_str().unwrap();
    assert!(
        body.contains(
            "The attachment stor.pdf (30.0 MB) is larger than this office accepts (10.0 MB)"
        ),
        "{body}"
    );

    // The attachment's mail was acknowledged (the auto-responder's was not).
    // A discreet case: the neutral sender and subject, and neither the office's name nor the
    // case number anywhere in the mail, headers included.
    stack.worker.send_text(&room, "!discreet on").await;
    stack
        .wait_for_notice(&room, "discreet on", |n| n.starts_with("Discreet mode on"))
        .await;
    stack.worker.send_text(&room, "Vi hörs som vanligt.").await;
    let mails = mail
        .wait_for_mail(CLIENT, expected_in_client_box + 2, Duration::from_secs(20))
        .await;
    let discreet = mails.last().unwrap();
    let parsed = MessageParser::default().parse(discreet.as_slice()).unwrap();
    assert_eq!(parsed.subject(), Some("Meddelande"));
    let from = parsed.from().unwrap().first().unwrap();
    assert_eq!(
        (from.name(), from.address()),
        (Some("Information"), Some(OFFICE.0))
    );
    let raw = String::from_utf8_lossy(discreet);
    let digits = case.number.split('-').nth(1).unwrap();
    assert!(
        !raw.contains(&case.number) && !raw.contains(digits) && !raw.contains("Socialtj"),
        "{raw}"
    );
    gateway.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dovecot_restart_in_the_middle_of_100_mails() {
    let (mut stack, mail) = mail_stack("emailrestart", "").await;
    let gateway = stack.start_gateway().await;
    mail.send_raw(
        CLIENT.0,
        OFFICE.0,
        &client_mail("r0@client.test", "Start", "mail 0", ""),
    )
    .await;
    let room = stack.join_case_room().await;
    stack
        .ghost_messages(&room, 1, Duration::from_secs(20))
        .await;
    for i in 1..=100 {
        if i == 30 {
            mail.stop_imap().await;
        }
        if i == 60 {
            mail.start_imap().await;
        }
        mail.send_raw(
            CLIENT.0,
            OFFICE.0,
            &client_mail(
                &format!("r{i}@client.test"),
                "Många",
                &format!("mail {i}"),
                "",
            ),
        )
        .await;
    }
    let messages = stack
        .ghost_messages(&room, 101, Duration::from_secs(150))
        .await;
    let mut seen: Vec<u32> = messages
        .iter()
        .map(|m| {
            let body = m["content"]["body"].as_str().unwrap();
            body.rsplit(' ').next().unwrap().parse().unwrap()
        })
        .collect();
    seen.sort_unstable();
    assert_eq!(seen, (0..=100).collect::<Vec<_>>(), "each mail once");
    let case = gateway.store().cases().await.unwrap().remove(0);
    let inbound = gateway
        .store()
        .messages(case.id)
        .await
        .unwrap()
        .into_iter()
        .filter(|m| m.direction == Direction::Inbound)
        .count();
    assert_eq!(inbound, 101);

    // The mailbox is restored with a new UIDVALIDITY: the reader notices on reconnecting,
    // reads nothing twice (the mails are marked), and its cursor follows the new mailbox.
    mail.set_uid_validity(OFFICE.0, 12345).await;
    mail.stop_imap().await;
    mail.start_imap().await;
    mail.send_raw(
        CLIENT.0,
        OFFICE.0,
        &client_mail("r101@client.test", "Efter", "mail 101", ""),
    )
    .await;
    let messages = stack
        .ghost_messages(&room, 102, Duration::from_secs(60))
        .await;
    assert_eq!(messages[101]["content"]["body"], "Efter\n\nmail 101");
    let cursor = eventually(Duration::from_secs(10), "the cursor", || async {
        use casebridge_bridges::BridgeState;
        let kept = gateway.store().get("mail", "imap:INBOX").await.unwrap();
        (kept.as_deref() == Some("12345:102")).then_some(kept)
    })
    .await;
    assert_eq!(cursor.as_deref(), Some("12345:102"));
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        stack
            .worker
            .messages(&room)
            .await
            .iter()
            .filter(|e| e["sender"].as_str().is_some_and(|s| s.starts_with("@_cb_")))
            .count(),
        102,
        "nothing read twice"
    );
    gateway.shutdown().await;
}

/// A mail that arrives while the reader is still handing earlier ones to the gateway is
/// announced in the answer to one of the reader's own commands (here the STORE that marks the
/// first mail), not later during IDLE. The reader must notice that announcement; IDLE alone would
/// wait for the next mail, or minutes. No Synapse: the test holds the gateway's side itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mail_announced_while_catching_up_is_read_without_waiting() {
    use casebridge_bridges::{Accepted, BridgeFactory, InboundSink};
    let mail = MailServer::start().await;
    let toml: serde_json::Value = serde_json::json!({
        "kind": "email",
        "team": "social",
        "address": OFFICE.0,
        "name": "Socialtjänsten",
        "imap": {
            "host": "127.0.0.1", "port": mail.imap_port, "security": "plain",
            "username": OFFICE.0, "password": OFFICE.1,
        },
        "smtp": { "host": "127.0.0.1", "port": mail.smtp_port, "security": "plain" },
    });
    let instance = serde_json::from_value(toml).unwrap();
    let bridge = casebridge_bridges::email::EmailFactory
        .build("mail", &instance)
        .unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::channel(16);
    bridge
        .start(InboundSink::new("mail", bridge.capabilities(), tx))
        .await
        .unwrap();

    mail.send_raw(
        CLIENT.0,
        OFFICE.0,
        &client_mail("c1@client.test", "Ett", "first", ""),
    )
    .await;
    let first = next_mail(&mut rx, 30).await;
    assert!(
        first.message.body.contains("first"),
        "{:?}",
        first.message.body
    );
    // The reader waits for the first mail's commit; the second lands in the mailbox meanwhile.
    mail.send_raw(
        CLIENT.0,
        OFFICE.0,
        &client_mail("c2@client.test", "Två", "second", ""),
    )
    .await;
    eventually(
        Duration::from_secs(20),
        "the second mail in the mailbox",
        || async { (mail.inbox(OFFICE).await.len() == 2).then_some(()) },
    )
    .await;
    first
        .reply
        .send(Ok(Accepted::Recorded {
            case_number: "2026-000001".into(),
        }))
        .unwrap();
    let second = next_mail(&mut rx, 20).await;
    assert!(
        second.message.body.contains("second"),
        "{:?}",
        second.message.body
    );
    bridge.stop().await;
}

/// The next mail the bridge hands to the gateway, within `seconds`.
async fn next_mail(
    rx: &mut tokio::sync::mpsc::Receiver<casebridge_bridges::Inbound>,
    seconds: u64,
) -> casebridge_bridges::InboundEnvelope {
    use casebridge_bridges::Inbound;
    match tokio::time::timeout(Duration::from_secs(seconds), rx.recv()).await {
        Ok(Some(Inbound::Message(envelope))) => envelope,
        Ok(Some(Inbound::Report(_))) => panic!("expected a mail, got a delivery report"),
        Ok(None) => panic!("the bridge closed its sink"),
        Err(_) => panic!("no mail reached the gateway within {seconds} s"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_and_starttls_both_ways() {
    let mail = MailServer::start().await;
    let mut stack = Stack::new(Db::Sqlite, "emailtls").await;
    // Two mailboxes: one read over IMAPS and answered through the submission port (STARTTLS
    // and SMTP AUTH), the other read with IMAP STARTTLS and answered over SMTPS. The servers'
    // CA is the office's own.
    let ca = mail.ca_file();
    let bridge = |key: &str,
                  (address, password): (&str, &str),
                  imap: (u16, &str),
                  smtp: (u16, &str, &str)| {
        format!(
            r#"
[bridges.{key}]
kind = "email"
team = "social"
address = "{address}"
name = "Socialtjänsten"
[bridges.{key}.imap]
host = "localhost"
port = {imap_port}
security = "{imap_security}"
username = "{address}"
password = "{password}"
tls_ca_file = "{ca}"
[bridges.{key}.smtp]
host = "localhost"
port = {smtp_port}
security = "{smtp_security}"
tls_ca_file = "{ca}"
{smtp_auth}
"#,
            imap_port = imap.0,
            imap_security = imap.1,
            smtp_port = smtp.0,
            smtp_security = smtp.1,
            smtp_auth = smtp.2,
            ca = ca.display(),
        )
    };
    stack.setup.extra = bridge(
        "tls",
        OFFICE,
        (mail.imaps_port, "tls"),
        (
            mail.submission_port,
            "starttls",
            &format!("username = \"{}\"\npassword = \"{}\"", OFFICE.0, OFFICE.1),
        ),
    ) + &bridge(
        "starttls",
        ("other@client.test", "other-password"),
        (mail.imap_port, "starttls"),
        (mail.smtps_port, "tls", ""),
    );
    let gateway = stack.start_gateway().await;
    for (to, id) in [
        (OFFICE.0, "t1@client.test"),
        ("other@client.test", "t2@client.test"),
    ] {
        let raw = format!(
            "From: {client}\r\nTo: {to}\r\nSubject: Över TLS\r\nMessage-ID: <{id}>\r\n\r\nHej via {to}\r\n",
            client = CLIENT.0
        );
        mail.send_raw(CLIENT.0, to, raw.as_bytes()).await;
        let room = stack.join_case_room().await;
        let got = stack
            .ghost_messages(&room, 1, Duration::from_secs(30))
            .await;
        assert_eq!(
            got[0]["content"]["body"],
            format!("Över TLS\n\nHej via {to}")
        );
        stack
            .worker
            .send_text(
                &room,
                &format!("Svar via {}", to.split('@').next().unwrap()),
            )
            .await;
    }
    let mails = mail.wait_for_mail(CLIENT, 2, Duration::from_secs(30)).await;
    let mut froms: Vec<String> = mails
        .iter()
        .map(|m| {
            let m = MessageParser::default().parse(m.as_slice()).unwrap();
            m.from()
                .unwrap()
                .first()
                .unwrap()
                .address()
                .unwrap()
                .to_owned()
        })
        .collect();
    froms.sort();
    assert_eq!(froms, ["office@office.test", "other@client.test"]);
    // The office's reply went through submission, logged in as the office's mailbox (the port
    // takes nothing from anyone who has not).
    let log = mail.postfix_log();
    assert!(
        log.lines()
            .any(|l| l.contains("sasl_method=PLAIN")
                && l.contains("sasl_username=office@office.test")),
        "{log}"
    );
    gateway.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_mail_is_kept_whole_and_the_bridge_reads_on_by_polling() {
    let mail = MailServer::start().await;
    let mut stack = Stack::new(Db::Sqlite, "badmail").await;
    // Dovecot offers IDLE; this mailbox polls every second instead, as for a server whose IDLE
    // is broken. Every mail below is sent after the first look, so only polling finds it.
    stack.setup.extra = mail.bridge_toml("social").replace(
        "[bridges.mail.imap]\n",
        "[bridges.mail.imap]\nidle = false\npoll_seconds = 1\n",
    );
    let gateway = stack.start_gateway().await;
    tokio::time::sleep(Duration::from_secs(2)).await;

    let head = |id: &str, extra: &str| {
        format!(
            "From: Bo Klient <bo@client.test>\r\nTo: {office}\r\nMessage-ID: <{id}@client.test>\r\n\
             Date: Mon, 23 Nov 2026 21:00:00 +0100\r\nMIME-Version: 1.0\r\n{extra}",
            office = OFFICE.0
        )
        .into_bytes()
    };
    let mut nested = head("b4", "Subject: Djup\r\n");
    for depth in 0..200 {
        nested.extend(
            format!("Content-Type: multipart/mixed; boundary=\"n{depth}\"\r\n\r\n--n{depth}\r\n")
                .as_bytes(),
        );
    }
    nested.extend(b"Content-Type: text/plain; charset=utf-8\r\n\r\nDjupt inne\r\n");
    for depth in (0..200).rev() {
        nested.extend(format!("--n{depth}--\r\n").as_bytes());
    }
    let folded: String = (0..800)
        .map(|i| format!(" padding-{i:04}-{}\r\n", "x".repeat(50)))
        .collect();
    let mails: Vec<(Vec<u8>, &[u8])> = vec![
        (
            [
                head("b1", "Subject: Trasig\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n"),
                b"Hej \xff\xfe d\xc3\xa5\r\n".to_vec(),
            ]
            .concat(),
            b"Hej \xff\xfe d",
        ),
        (
            [
                head("b2", "Subject: Okänd\r\nContent-Type: text/plain; charset=x-klingon\r\nContent-Transfer-Encoding: 8bit\r\n\r\n"),
                b"qapla\xe4 tlhIngan\r\n".to_vec(),
            ]
            .concat(),
            b"qapla\xe4 tlhIngan",
        ),
        (
            [
                head("b3", &format!("Subject: Lång rubrik\r\nX-Padding:\r\n{folded}Content-Type: text/plain\r\n\r\n")),
                b"Stort huvud\r\n".to_vec(),
            ]
            .concat(),
            b"padding-0799",
        ),
        (nested, b"--n199--"),
        (
            [
                head("b5", "Subject: Trasig MIME\r\nContent-Type: multipart/mixed; boundary=\"aldrig\"\r\nthis line has no colon\r\n\r\n"),
                b"--fel\r\nContent-Type: text/plain\r\n\r\nInget slut\r\n".to_vec(),
            ]
            .concat(),
            b"Inget slut",
        ),
    ];
    for (raw, _) in &mails {
        mail.send_raw("bo@client.test", OFFICE.0, raw).await;
    }
    let room = stack.join_case_room().await;
    // Five mails; the malformed MIME's part comes as a file of its own.
    let shown = stack
        .ghost_messages(&room, mails.len() + 1, Duration::from_secs(30))
        .await;
    let bodies: Vec<&str> = shown
        .iter()
        .map(|e| e["content"]["body"].as_str().unwrap())
        .collect();
    for expected in [
        "Trasig\n\nHej \u{FFFD}\u{FFFD} då",
        "Okänd\n\nqapla",
        "Lång rubrik\n\nStort huvud",
        "Djup\n\nDjupt inne",
        "Trasig MIME",
    ] {
        assert!(
            bodies.iter().any(|b| b.starts_with(expected)),
            "{expected:?} in {bodies:?}"
        );
    }
    stack
        .wait_for_notice(&room, "the charset notice", |n| {
            n == "Part of Bo Klient <bo@client.test>'s message could not be read: its character \
                  set is broken or unknown, so some characters show as \u{FFFD}. The record keeps \
                  the original whole (casebridge records export)."
        })
        .await;
    // Each record keeps the mail as it came, byte for byte.
    let store = gateway.store();
    let case = store
        .cases()
        .await
        .unwrap()
        .into_iter()
        .find(|c| c.room_id.as_deref() == Some(room.as_str()))
        .unwrap();
    let records = store.messages(case.id).await.unwrap();
    for (i, (_, marker)) in mails.iter().enumerate() {
        let id = format!("b{}@client.test", i + 1);
        let record = records
            .iter()
            .find(|m| m.upstream_id.as_deref() == Some(id.as_str()))
            .unwrap_or_else(|| panic!("{id} recorded"));
        let original = store.original(record.id).await.unwrap().unwrap();
        assert!(
            original.windows(marker.len()).any(|w| w == *marker),
            "{id}: the original is kept whole"
        );
    }
    // And the bridge reads on.
    mail.send_raw(
        CLIENT.0,
        OFFICE.0,
        &client_mail("ok1@client.test", "Vanligt", "Ett vanligt brev.", ""),
    )
    .await;
    let ok_room = stack.join_case_room().await;
    let ok = stack
        .ghost_messages(&ok_room, 1, Duration::from_secs(30))
        .await;
    assert_eq!(ok[0]["content"]["body"], "Vanligt\n\nEtt vanligt brev.");
    gateway.shutdown().await;
}

/// Images of every type a phone or mail program sends, each with a GPS position, reach the room
/// without it (a JPEG sent as `application/octet-stream` too); the record keeps them whole. The
/// worker's HEIC and TIFF go out to the client without theirs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn images_of_every_type_lose_their_location_both_ways() {
    use base64::Engine as _;
    let (mut stack, mail) = mail_stack("emailimages", "").await;
    let gateway = stack.start_gateway().await;

    let mut images = casebridge_tests::images_with_gps();
    let jpeg = images[0].2;
    images.push(("karta.bin", "application/octet-stream", jpeg));
    let mut raw = format!(
        "From: Klara Klient <{client}>\r\nTo: {office}\r\nSubject: Bilder\r\n\
         Message-ID: <img1@client.test>\r\nMIME-Version: 1.0\r\n\
         Content-Type: multipart/mixed; boundary=b1\r\n\r\n--b1\r\n\
         Content-Type: text/plain; charset=utf-8\r\n\r\nHär är bilderna.\r\n",
        client = CLIENT.0,
        office = OFFICE.0,
    );
    for (name, mime, data) in &images {
        raw += &format!(
            "--b1\r\nContent-Type: {mime}; name={name}\r\n\
             Content-Disposition: attachment; filename={name}\r\n\
             Content-Transfer-Encoding: base64\r\n\r\n{}\r\n",
            base64::engine::general_purpose::STANDARD.encode(data)
        );
    }
    raw += "--b1--\r\n";
    mail.send_raw(CLIENT.0, OFFICE.0, raw.as_bytes()).await;
    let room = stack.join_case_room().await;
    let messages = stack
        .ghost_messages(&room, 1 + images.len(), Duration::from_secs(60))
        .await;
    for (event, (name, _, original)) in messages[1..].iter().zip(&images) {
        assert_eq!(event["content"]["body"], *name, "{event}");
        let shown = stack
            .worker
            .download(event["content"]["url"].as_str().unwrap())
            .await;
        assert_eq!(
            casebridge_tests::location_traces(&shown),
            Vec::<String>::new(),
            "{name} in the room"
        );
        // Still the same type of image.
        assert_eq!(shown[..4], original[..4], "{name}");
    }
    let case = gateway.store().cases().await.unwrap().remove(0);
    let message = gateway
        .store()
        .messages(case.id)
        .await
        .unwrap()
        .into_iter()
        .find(|m| m.upstream_id.as_deref() == Some("img1@client.test"))
        .unwrap();
    let kept = gateway.store().attachments(message.id).await.unwrap();
    assert_eq!(kept.len(), images.len());
    for (file, (name, _, original)) in kept.iter().zip(&images) {
        assert_eq!(file.data, *original, "the record keeps {name} whole");
    }

    // The worker's HEIC and TIFF go out without their location.
    for (name, mime, data) in [&images[5], &images[4]] {
        let mxc = stack.worker.upload(data.to_vec(), mime, name).await;
        stack
            .worker
            .send(
                &room,
                serde_json::json!({
                    "msgtype": "m.image", "body": name, "url": mxc,
                    "info": {"mimetype": mime},
                }),
            )
            .await;
    }
    let mails = eventually(Duration::from_secs(30), "two mails with a file", || async {
        let mails = mail.wait_for_mail(CLIENT, 1, Duration::from_secs(20)).await;
        let files: Vec<(String, Vec<u8>)> = mails
            .iter()
            .filter_map(|m| {
                let parsed = MessageParser::default().parse(m.as_slice())?;
                let file = parsed.attachments().next()?;
                Some((file.attachment_name()?.to_owned(), file.contents().to_vec()))
            })
            .collect();
        (files.len() == 2).then_some(files)
    })
    .await;
    for (name, data) in mails {
        assert_eq!(
            casebridge_tests::location_traces(&data),
            Vec::<String>::new(),
            "{name} to the client"
        );
    }
    gateway.shutdown().await;
}
