//! The local stack in one command: a real Synapse, the gateway on SQLite, a worker account,
//! and one client message travelling into a case room and a reply coming back out.
//!
//! The client's channel is the loopback bridge (a spool directory), until the e-mail, SMS and
//! Telegram bridges land. `--keep-running` leaves everything up for a Matrix client such as
//! Element (log in as anna / anna-password on the printed homeserver URL).

use std::time::Duration;

use casebridge_gateway::Gateway;
use casebridge_tests::{free_port, loopback::test_factories, GatewaySetup, Spool, Synapse, Worker};
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

    step("A client writes from +46 70 123 45 67 on the loopback channel");
    spool.put(
        "demo-1",
        "+46701234567",
        "Hej! Kan jag få en tid hos er den här veckan?",
    );
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

    step("anna replies in the case room");
    anna.send_text(&room, "Hej! Ja, torsdag kl. 10 går bra. Välkommen!")
        .await;
    let out = wait_for(|| async { spool.outbox().into_iter().next() }).await;
    println!("    the client receives on their channel: {:?}", out.body);
    println!(
        "    (to {}, case {}; no worker name or Matrix ID in it)",
        out.to, out.case_number
    );

    step("The records (casebridge cases show / records export)");
    let case = gateway
        .store()
        .case_by_number(&out.case_number)
        .await?
        .expect("the case exists");
    for m in gateway.store().messages(case.id).await? {
        println!(
            "    {} {:<8} {:<8} {}",
            m.received_at.format("%H:%M:%S"),
            m.direction,
            m.state,
            m.body
        );
    }

    if args.keep_running {
        step(
            "Running. Log in with a Matrix client at the homeserver above as anna / anna-password.",
        );
        println!("    Write as the client:  put a JSON file {{\"id\":\"2\",\"from\":\"+46701234567\",\"body\":\"...\"}} into {}/inbox/", spool.root().display());
        println!(
            "    Replies appear in:    {}/outbox.jsonl",
            spool.root().display()
        );
        println!("    Ctrl-C stops everything.");
        tokio::signal::ctrl_c().await?;
    }
    gateway.shutdown().await;
    drop(synapse);
    println!("\nDemo finished: one message in, one reply out, both recorded.");
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
