//! The README's backup, tested as an admin would do it: an online SQLite backup taken while the
//! store is open, restored elsewhere, and shown whole by `records verify` against the anchors
//! taken before.

use std::{path::Path, process::Command};

use casebridge_bridges::{InboundMessage, RemoteAddress, RemoteMessageId};
use casebridge_gateway::store::{NewInbound, Store};

fn config(dir: &Path, database: &Path) -> std::path::PathBuf {
    let path = dir.join(format!(
        "{}.toml",
        database.file_stem().unwrap().to_string_lossy()
    ));
    std::fs::write(
        &path,
        format!(
            "[homeserver]\nurl = \"http://127.0.0.1:9\"\nserver_name = \"example.org\"\n\
             [appservice]\nlisten = \"127.0.0.1:0\"\nurl = \"http://127.0.0.1:1\"\n\
             as_token = \"as-test-token\"\nhs_token = \"hs-test-token\"\n\
             [database]\nurl = \"sqlite://{}\"\n\
             [teams.social]\nmembers = [\"@anna:example.org\"]\n",
            database.display()
        ),
    )
    .unwrap();
    path
}

fn casebridge(config: &Path, args: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_casebridge"))
        .arg("--config")
        .arg(config)
        .args(args)
        .env_remove("CASEBRIDGE_CONFIG")
        .output()
        .unwrap();
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn an_online_sqlite_backup_restores_whole() {
    let dir = tempfile::tempdir().unwrap();
    let live = dir.path().join("casebridge.db");
    let store = Store::connect(&format!("sqlite://{}", live.display()), 2)
        .await
        .unwrap();
    let message = |id: &str, from: &str| NewInbound {
        instance: "sms".into(),
        channel: "sms".into(),
        team: "social".into(),
        label: "SMS".into(),
        ghost_localpart: format!("_cb_sms_{id}"),
        message: InboundMessage {
            message_id: RemoteMessageId::new(id),
            from: RemoteAddress::new(from),
            display_name: from.into(),
            body: format!("message {id}"),
            sent_at: chrono::Utc::now(),
            ..Default::default()
        },
    };
    store
        .record_inbound(
            &[
                message("a", "+46701234567"),
                message("b", "+46701234567"),
                message("c", "+46709876543"),
            ],
            &Default::default(),
        )
        .await
        .unwrap();
    let live_config = config(dir.path(), &live);
    // The anchors, kept elsewhere.
    let (ok, anchors) = casebridge(&live_config, &["records", "anchor"]);
    assert!(ok, "{anchors}");
    let anchors_file = dir.path().join("anchors.txt");
    std::fs::write(&anchors_file, &anchors).unwrap();

    // The README's command, while the store is open (a running gateway holds it so).
    let backup = dir.path().join("backup.db");
    let out = Command::new("sqlite3")
        .arg(&live)
        .arg(format!(".backup '{}'", backup.display()))
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    drop(store);

    // Restored on another machine: verify shows it whole, and the anchors hold.
    let restored = dir.path().join("restored.db");
    std::fs::copy(&backup, &restored).unwrap();
    let restored_config = config(dir.path(), &restored);
    let (ok, verified) = casebridge(
        &restored_config,
        &[
            "records",
            "verify",
            "--anchors",
            anchors_file.to_str().unwrap(),
        ],
    );
    assert!(ok, "{verified}");
    assert!(
        verified.contains("3 records in 2 case(s): every chain is intact")
            && verified.contains("2 anchor(s) hold"),
        "{verified}"
    );
}
