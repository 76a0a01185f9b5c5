//! The local stack in one command: a real Synapse, real Dovecot and Postfix, the gateway on
//! SQLite, a worker account, and one client e-mail travelling into a case room, the office's
//! automatic acknowledgement and a worker's reply going back out as ordinary, threaded mail.
//!
//! `--keep-running` leaves everything up for a Matrix client such as Element (log in as
//! anna / anna-password on the printed homeserver URL) and a mail client.

use std::time::Duration;

use casebridge_gateway::Gateway;
use casebridge_tests::{
    free_port,
    loopback::test_factories,
    mail::{MailServer, CLIENT, OFFICE},
    GatewaySetup, Spool, Synapse, Worker,
};
use clap::Parser;

#[derive(Parser)]
struct Args {
    /// Keep Synapse and the gateway running until Ctrl-C.
    #[arg(long)]
    keep_running: bool,
    /// Where the demo keeps its records, spool and config.
    #[arg(long, default_value = ".local/demo")]
    dir: std::path::PathBuf,
}

fn step(text: &str) {
    println!("\n==> {text}");
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "warn,casebridge_gateway=info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    let _ = std::fs::remove_dir_all(&args.dir);
    std::fs::create_dir_all(&args.dir)?;
    let dir = std::fs::canonicalize(&args.dir)?;
    let spool = Spool::new(dir.join("spool"));
    let mut setup = GatewaySetup {
        homeserver_url: "http://127.0.0.1:1".into(),
        port: free_port(),
        database_url: format!("sqlite://{}", dir.join("casebridge.db").display()),
        spool: spool.root().to_owned(),
        members: vec!["@anna:localhost".into(), "@bo:localhost".into()],
        max_backoff_ms: 5000,
        extra: String::new(),
    };

    step("Starting Dovecot (IMAP) and Postfix (SMTP) for office.test and client.test");
    let mail = MailServer::start().await;
    println!(
        "    mail        IMAP 127.0.0.1:{}  SMTP 127.0.0.1:{}  (office@office.test / office-password, client@client.test / client-password)",
        mail.imap_port, mail.smtp_port
    );
    setup.extra = r#"
[teams.office]
name = "Socialtjänsten"
members = ["@anna:localhost", "@bo:localhost"]
languages = ["sv", "en"]
auto_reply.acknowledge = true
emergency.numbers = "112 eller socialjouren 08-123 456 78"

"#
    .to_string()
        + &mail.bridge_toml("office");

    step("Starting Synapse with the casebridge appservice registration");
    let synapse = Synapse::start(&[setup.registration_yaml()]).await;
    setup.homeserver_url = synapse.url.clone();
    std::fs::write(dir.join("casebridge.toml"), setup.toml())?;
    println!("    homeserver  {}", synapse.url);
    for (user, password) in [("anna", "anna-password"), ("bo", "bo-password")] {
        let id = synapse.register_user(user, password).await;
        println!("    worker      {id} (password {password})");
    }

    step("Starting the gateway (records in SQLite)");
    let gateway = Gateway::start(setup.config(), &test_factories()).await?;
    println!(
        "    gateway     http://{}  (config {})",
        gateway.local_addr(),
        dir.join("casebridge.toml").display()
    );

    step("A client e-mails the office: client@client.test -> office@office.test");
    mail.send_raw(
        CLIENT.0,
        OFFICE.0,
        "From: Klara Klient <client@client.test>\r\nTo: office@office.test\r\n\
         Subject: Tid hos er?\r\nMessage-ID: <demo-1@client.test>\r\n\
         Content-Type: text/plain; charset=utf-8\r\n\r\n\
         Hej! Kan jag få en tid hos er den här veckan?\r\n"
            .as_bytes(),
    )
    .await;
    let mut anna = Worker::login(&synapse.url, "anna", "anna-password").await;
    let room = loop {
        if let Some(room) = anna.invites().await.into_iter().next() {
            break room;
        }
    };
    anna.join(&room).await;
    let name = anna
        .state(&room, "m.room.name", "")
        .await
        .unwrap_or_default();
    let topic = anna
        .state(&room, "m.room.topic", "")
        .await
        .unwrap_or_default();
    println!("    anna is invited to the case room {room}");
    println!(
        "    name        {}",
        name["name"].as_str().unwrap_or_default()
    );
    println!(
        "    topic       {}",
        topic["topic"].as_str().unwrap_or_default()
    );
    let first = wait_for(|| async {
        anna.messages(&room)
            .await
            .into_iter()
            .find(|e| e["sender"].as_str().is_some_and(|s| s.starts_with("@_cb_")))
    })
    .await;
    println!(
        "    {} says: {}",
        first["sender"].as_str().unwrap(),
        first["content"]["body"].as_str().unwrap()
    );

    let show = |raw: &[u8]| {
        let m = mail_parser::MessageParser::default()
            .parse(raw)
            .expect("a mail");
        for h in ["From", "Subject", "In-Reply-To", "Auto-Submitted"] {
            if let Some(v) = m.header_raw(h) {
                println!("      {h}: {}", v.trim());
            }
        }
        println!(
            "      | {}",
            m.body_text(0)
                .unwrap_or_default()
                .trim()
                .replace('\n', "\n      | ")
        );
    };
    step("The office acknowledges automatically (a team policy), as ordinary mail");
    let mails = mail.wait_for_mail(CLIENT, 1, Duration::from_secs(30)).await;
    show(&mails[0]);

    step("anna replies in the case room");
    anna.send_text(&room, "Hej Klara! Ja, torsdag kl. 10 går bra. Välkommen!")
        .await;
    let mails = mail.wait_for_mail(CLIENT, 2, Duration::from_secs(30)).await;
    println!("    the client's mailbox receives (no worker name or Matrix ID in it):");
    show(&mails[1]);

    step("The records (casebridge cases show / records export)");
    let case = gateway.store().cases().await?.remove(0);
    for m in gateway.store().messages(case.id).await? {
        println!(
            "    {} {:<8} {:<8} {}",
            m.received_at.format("%H:%M:%S"),
            m.direction,
            m.state,
            m.body.replace("\n\n", " ⏎ ").replace('\n', " ⏎ ")
        );
    }

    if args.keep_running {
        step(
            "Running. Log in with a Matrix client at the homeserver above as anna / anna-password.",
        );
        println!(
            "    Write as the client:  any mail program, SMTP 127.0.0.1:{} to office@office.test",
            mail.smtp_port
        );
        println!(
            "    Read as the client:   IMAP 127.0.0.1:{} as client@client.test / client-password",
            mail.imap_port
        );
        println!("    Ctrl-C stops everything.");
        tokio::signal::ctrl_c().await?;
    }
    gateway.shutdown().await;
    drop(synapse);
    drop(mail);
    println!(
        "\nDemo finished: one mail in, an automatic acknowledgement and a reply out, all recorded."
    );
    Ok(())
}

async fn wait_for<T, F, Fut>(mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the demo stalled for 30 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
