//! The `casebridge` command as an admin uses it.

use std::process::Command;

use casebridge_bridges::{InboundMessage, RemoteAddress, RemoteMessageId};
use casebridge_gateway::store::{NewInbound, Store};

fn casebridge(config: &std::path::Path, args: &[&str]) -> (bool, String, String) {
    casebridge_in(std::path::Path::new("."), config, args)
}

/// As [`casebridge`], run from the working directory `cwd`.
fn casebridge_in(
    cwd: &std::path::Path,
    config: &std::path::Path,
    args: &[&str],
) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_casebridge"))
        .current_dir(cwd)
        .arg("--config")
        .arg(config)
        .args(args)
        .env_remove("CASEBRIDGE_CONFIG")
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

fn example(dir: &std::path::Path) -> std::path::PathBuf {
    // The example as shipped, with its SMS bridge, on a database of the test's own, and its
    // placeholder secrets filled in as an admin must.
    let example = include_str!("../../casebridge.example.toml");
    let text = example
        .replace(
            "url = \"sqlite://casebridge.db\"",
            &format!("url = \"sqlite://{}\"", dir.join("cb.db").display()),
        )
        .replace("change-me", "test-secret");
    let path = dir.join("casebridge.toml");
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn config_check_summarises_a_good_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = example(dir.path());
    let (ok, out, err) = casebridge(&path, &["config", "check"]);
    assert!(ok, "{err}");
    assert!(out.contains(": OK"), "{out}");
    assert!(
        out.contains("bridge      sms: sms answered by socialtjanst"),
        "{out}"
    );
    assert!(
        out.contains("bridge      mail: email answered by socialtjanst"),
        "{out}"
    );
    assert!(
        out.contains(
            "team        socialtjanst (Socialtjänsten, mottagningen): 2 member(s), 1 on call"
        ),
        "{out}"
    );
}

#[test]
fn hours_say_whether_each_team_is_open_and_until_when() {
    let dir = tempfile::tempdir().unwrap();
    let path = example(dir.path());
    let (ok, out, err) = casebridge(&path, &["hours", "--at", "2026-11-23 22:00"]);
    assert!(ok, "{err}");
    assert_eq!(
        out,
        "socialtjanst (Europe/Stockholm): closed at Mon 2026-11-23 22:00 CET; \
         opens Tue 2026-11-24 08:00 CET (in 10 h 0 min)\n"
    );
    // Christmas Eve is a holiday in the example; lunch is closed.
    let (_, out, _) = casebridge(&path, &["hours", "--at", "2026-12-23T11:30:00Z"]);
    assert!(
        out.contains("closed at Wed 2026-12-23 12:30 CET; opens Wed 2026-12-23 13:00 CET"),
        "{out}"
    );
    let (_, out, _) = casebridge(&path, &["hours", "--at", "2026-12-23T16:00:00Z"]);
    assert!(out.contains("opens Mon 2026-12-28 08:00 CET"), "{out}");
    let (ok, _, err) = casebridge(&path, &["hours", "--at", "tomorrow"]);
    assert!(
        !ok && err.contains("--at: \"tomorrow\" is not a local time"),
        "{err}"
    );
}

/// `casebridge run` with a bridge it cannot build: the reason once (not repeated by each layer
/// that passes it on), and the log lines before it without terminal colour codes (stderr here
/// is a pipe, as under systemd or in a log file).
#[test]
fn run_names_a_broken_bridge_once_in_plain_text() {
    let dir = tempfile::tempdir().unwrap();
    let path = example(dir.path());
    let text = std::fs::read_to_string(&path)
        .unwrap()
        .replace("number = \"+46766860000\"", "number = \"+4676686000x\"");
    std::fs::write(&path, text).unwrap();
    let (ok, _, err) = casebridge(&path, &["run"]);
    assert!(!ok, "{err}");
    let reason = err
        .lines()
        .find(|l| l.starts_with("casebridge: bridges.sms"))
        .unwrap_or_else(|| panic!("no error naming the bridge: {err}"));
    assert_eq!(
        reason,
        "casebridge: bridges.sms.number: \"+4676686000x\" is not a valid phone number (read in \
         region SE); write the office's number in international form, e.g. number = \
         \"+46701234567\"",
        "said once, by its key"
    );
}

/// The log of a running gateway written to a pipe (systemd's journal, a file) has no terminal
/// colour codes; and a homeserver that does not answer is an ERROR at start naming the key to
/// check, while the gateway keeps running.
#[test]
fn logs_to_a_pipe_are_plain_text_and_name_an_unreachable_homeserver() {
    use std::io::BufRead;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("casebridge.toml");
    std::fs::write(
        &path,
        format!(
            "[homeserver]\nurl = \"http://127.0.0.1:9\"\nserver_name = \"example.org\"\n\
             [appservice]\nlisten = \"127.0.0.1:0\"\nurl = \"http://127.0.0.1:1\"\n\
             as_token = \"as-test-token\"\nhs_token = \"hs-test-token\"\n\
             [database]\nurl = \"sqlite://{}\"\n\
             [teams.social]\nmembers = [\"@anna:example.org\"]\n\
             [bridges.tg]\nkind = \"telegram\"\nteam = \"social\"\ntoken = \"123:abc\"\n\
             api_url = \"http://127.0.0.1:9\"\n",
            dir.path().join("cb.db").display()
        ),
    )
    .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_casebridge"))
        .arg("--config")
        .arg(&path)
        .arg("run")
        .env_remove("CASEBRIDGE_CONFIG")
        .env_remove("NO_COLOR")
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = std::io::BufReader::new(child.stderr.take().unwrap());
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in stderr.lines() {
            if tx.send(line.unwrap()).is_err() {
                break;
            }
        }
    });
    let mut seen: Vec<String> = Vec::new();
    let checked = |seen: &[String], what: &str| seen.iter().any(|l| l.contains(what));
    while let Ok(line) = rx.recv_timeout(std::time::Duration::from_secs(30)) {
        seen.push(line);
        if checked(&seen, "homeserver.url") && checked(&seen, "credentials not checked") {
            break;
        }
    }
    let still_running = child.try_wait().unwrap().is_none();
    // /health and /metrics show the broken link; the gateway itself is up.
    let addr = seen
        .iter()
        .find_map(|l| l.split("addr=").nth(1))
        .and_then(|rest| rest.split_whitespace().next())
        .expect("the address in the start line")
        .to_owned();
    let get = |path: &str| {
        use std::io::{Read, Write};
        let mut stream = std::net::TcpStream::connect(&addr).unwrap();
        write!(
            stream,
            "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut answer = String::new();
        stream.read_to_string(&mut answer).unwrap();
        answer
    };
    let health = get("/health");
    assert!(health.starts_with("HTTP/1.1 200"), "{health}");
    assert!(
        health.contains("\"status\":\"degraded\"")
            && health.contains("\"link\":\"broken\"")
            && health.contains("homeserver.url"),
        "{health}"
    );
    let metrics = get("/metrics");
    assert!(
        metrics.contains("casebridge_homeserver_linked 0"),
        "{metrics}"
    );
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(
        seen.iter().any(|l| l.contains("gateway running")),
        "{seen:#?}"
    );
    let check = seen
        .iter()
        .find(|l| l.contains("homeserver.url"))
        .expect("the homeserver check");
    assert!(
        check.contains("ERROR")
            && check
                .contains("homeserver.url: the homeserver at http://127.0.0.1:9/ does not answer"),
        "{seen:#?}"
    );
    // A bridge whose channel cannot be asked is a WARN naming it; the gateway runs on.
    let bridge = seen
        .iter()
        .find(|l| l.contains("credentials not checked"))
        .expect("the bridge check");
    assert!(
        bridge.contains("WARN")
            && bridge.contains("bridge=bridges.tg")
            && bridge.contains("Telegram getMe"),
        "{seen:#?}"
    );
    assert!(still_running, "the gateway keeps running: {seen:#?}");
    assert!(
        seen.iter().all(|l| !l.contains('\u{1b}')),
        "colour codes in a pipe: {seen:#?}"
    );
}

#[test]
fn config_check_names_what_is_wrong() {
    let dir = tempfile::tempdir().unwrap();
    let path = example(dir.path());
    let text = std::fs::read_to_string(&path)
        .unwrap()
        .replace("max_connections = 8", "max_connections = \"many\"");
    std::fs::write(&path, text).unwrap();
    let (ok, _, err) = casebridge(&path, &["config", "check"]);
    assert!(!ok);
    assert!(err.contains("database.max_connections"), "{err}");
    assert!(
        err.contains("casebridge.toml"),
        "the error names the file: {err}"
    );

    let (ok, _, err) = casebridge(&dir.path().join("missing.toml"), &["config", "check"]);
    assert!(!ok);
    assert!(err.contains("missing.toml not found"), "{err}");

    // The example as shipped: each placeholder secret is named, all at once.
    std::fs::write(&path, include_str!("../../casebridge.example.toml")).unwrap();
    let (ok, _, err) = casebridge(&path, &["config", "check"]);
    assert!(!ok);
    assert!(err.contains("7 problems in"), "{err}");
    for key in [
        "appservice.as_token",
        "bridges.mail.imap.password",
        "bridges.telegram.token",
    ] {
        assert!(
            err.contains(&format!("  {key}: still the example's placeholder")),
            "{err}"
        );
    }

    // Mistakes in two bridges' own options: both are named, each once, with its key.
    let two = std::fs::read_to_string(example(dir.path()))
        .unwrap()
        .replace("number = \"+46766860000\"", "number = \"0000\"")
        .replace("mailbox = \"INBOX\"", "mail_box = \"INBOX\"");
    std::fs::write(&path, two).unwrap();
    let (ok, _, err) = casebridge(&path, &["config", "check"]);
    assert!(!ok);
    assert!(err.contains("2 problems in"), "{err}");
    assert!(err.contains("bridges.sms.number: "), "{err}");
    assert!(err.contains("international form"), "{err}");
    assert_eq!(err.matches("mail_box").count(), 1, "{err}");
    assert!(!err.contains("lib.rs") && !err.contains("alloc::"), "{err}");

    // A bridge kind this build does not have.
    let with_bridge = format!(
        "{}\n[bridges.office]\nkind = \"carrier-pigeon\"\nteam = \"socialtjanst\"\n",
        std::fs::read_to_string(example(dir.path())).unwrap()
    );
    std::fs::write(&path, with_bridge).unwrap();
    let (ok, _, err) = casebridge(&path, &["config", "check"]);
    assert!(!ok);
    assert!(
        err.contains("bridges.office.kind: unknown bridge kind \"carrier-pigeon\""),
        "{err}"
    );
}

#[test]
fn registration_is_yaml_the_homeserver_reads() {
    let dir = tempfile::tempdir().unwrap();
    let path = example(dir.path());
    let (ok, out, err) = casebridge(&path, &["registration"]);
    assert!(ok, "{err}");
    let value: serde_yaml_ng::Value = serde_yaml_ng::from_str(&out).unwrap();
    assert_eq!(value["url"].as_str(), Some("http://127.0.0.1:29330"));
    assert_eq!(value["sender_localpart"].as_str(), Some("casebridge"));
    assert_eq!(
        value["namespaces"]["aliases"][0]["regex"].as_str(),
        Some("#_cb_.*:localhost")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn cases_and_records_export() {
    let dir = tempfile::tempdir().unwrap();
    let path = example(dir.path());
    let store = Store::connect(
        &format!("sqlite://{}", dir.path().join("cb.db").display()),
        1,
    )
    .await
    .unwrap();
    let message = |id: &str, body: &str| NewInbound {
        instance: "sms".into(),
        channel: "sms".into(),
        team: "socialtjanst".into(),
        label: "SMS".into(),
        ghost_localpart: "_cb_sms_x".into(),
        message: InboundMessage {
            message_id: RemoteMessageId::new(id),
            from: RemoteAddress::new("+46701234567"),
            display_name: "+46 70 123 45 67".into(),
            body: body.into(),
            sent_at: chrono::Utc::now(),
            ..Default::default()
        },
    };
    let answers = store
        .record_inbound(
            &[
                message("a", "Hej, \"snälla\" ring mig"),
                message("b", "rad ett\nrad två"),
            ],
            &Default::default(),
        )
        .await
        .unwrap()
        .answers;
    let casebridge_bridges::Accepted::Recorded { case_number } = &answers[0] else {
        panic!()
    };
    drop(store);

    let (ok, out, err) = casebridge(&path, &["cases", "list"]);
    assert!(ok, "{err}");
    assert!(
        out.contains(case_number)
            && out.contains("socialtjanst")
            && out.contains("(not yet created)"),
        "{out}"
    );

    let (ok, out, err) = casebridge(&path, &["cases", "show", case_number]);
    assert!(ok, "{err}");
    assert!(out.contains("contact  +46 70 123 45 67 via sms"), "{out}");

    let (ok, out, err) = casebridge(
        &path,
        &[
            "records",
            "export",
            "--case",
            case_number,
            "--format",
            "json",
        ],
    );
    assert!(ok, "{err}");
    let rows: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(rows.as_array().unwrap().len(), 2);
    assert_eq!(rows[1]["body"], "rad ett\nrad två");
    assert_eq!(rows[0]["upstream_id"], "a");

    let (ok, out, err) = casebridge(
        &path,
        &[
            "records",
            "export",
            "--case",
            case_number,
            "--format",
            "csv",
        ],
    );
    assert!(ok, "{err}");
    assert!(out.starts_with("case,seq,id,direction,kind,"), "{out}");
    assert!(
        out.contains("\"Hej, \"\"snälla\"\" ring mig\""),
        "quotes are doubled: {out}"
    );
    assert_eq!(out.matches("\r\n").count(), 3, "header and two rows: {out}");

    // The journal: one HTML page that reads as a journal, with the text escaped, in the
    // language of the example's team (Swedish first).
    let (ok, out, err) = casebridge(
        &path,
        &[
            "records",
            "export",
            "--case",
            case_number,
            "--format",
            "html",
        ],
    );
    assert!(ok, "{err}");
    assert!(out.starts_with("<!DOCTYPE html>"), "{out}");
    assert!(
        out.contains(&format!("<h1>Ärende {case_number}</h1>")),
        "{out}"
    );
    assert!(out.contains("Från klienten (sms)"), "{out}");
    assert!(out.contains("Hej, &quot;snälla&quot; ring mig"), "{out}");
    assert!(out.contains("+46 70 123 45 67 — sms (sms)"), "{out}");
    assert!(out.contains("2 poster."), "{out}");

    let (ok, _, err) = casebridge(&path, &["records", "export", "--case", "1999-000001"]);
    assert!(!ok);
    assert!(err.contains("no case 1999-000001"), "{err}");
}

#[tokio::test]
async fn records_verify_names_a_changed_byte_a_deleted_row_and_a_swapped_pair() {
    use sea_orm::ConnectionTrait;

    let dir = tempfile::tempdir().unwrap();
    let path = example(dir.path());
    let store = Store::connect(
        &format!("sqlite://{}", dir.path().join("cb.db").display()),
        1,
    )
    .await
    .unwrap();
    let message = |id: &str, from: &str, body: &str| NewInbound {
        instance: "sms".into(),
        channel: "sms".into(),
        team: "socialtjanst".into(),
        label: "SMS".into(),
        ghost_localpart: format!("_cb_sms_{from}"),
        message: InboundMessage {
            message_id: RemoteMessageId::new(id),
            from: RemoteAddress::new(from),
            display_name: from.into(),
            body: body.into(),
            sent_at: chrono::Utc::now(),
            ..Default::default()
        },
    };
    // Three cases of six records each, recorded in two batches.
    for batch in 0..2 {
        let items: Vec<_> = (0..9)
            .map(|i| {
                message(
                    &format!("m{batch}-{i}"),
                    &format!("+4670000000{}", i % 3),
                    &format!("meddelande {batch}-{i}"),
                )
            })
            .collect();
        store
            .record_inbound(&items, &Default::default())
            .await
            .unwrap();
    }
    let cases = store.cases().await.unwrap();
    let numbers: Vec<String> = cases.iter().rev().map(|c| c.number.clone()).collect();
    let (ok, out, err) = casebridge(&path, &["records", "verify"]);
    assert!(ok, "{out}{err}");
    assert!(
        out.starts_with("18 records in 3 case(s): every chain is intact\n"),
        "{out}"
    );
    assert!(
        out.contains("not checked against anchors: records removed from the end of a case"),
        "without anchors, verify says what it cannot see: {out}"
    );

    let db = store.connection();
    let ids = |case: usize| {
        let case_id = cases[cases.len() - 1 - case].id;
        format!("SELECT id FROM messages WHERE case_id = {case_id} ORDER BY seq")
    };
    let id_at =
        |rows: &[sea_orm::QueryResult], i: usize| -> i64 { rows[i].try_get("", "id").unwrap() };
    // Case 1: one changed byte in record 2.
    let rows = db
        .query_all(sea_orm::Statement::from_string(
            db.get_database_backend(),
            ids(0),
        ))
        .await
        .unwrap();
    db.execute_unprepared(&format!(
        "UPDATE messages SET body = 'meddelande 0-X' WHERE id = {}",
        id_at(&rows, 1)
    ))
    .await
    .unwrap();
    // Case 2: record 4 deleted (with its queue item).
    let rows = db
        .query_all(sea_orm::Statement::from_string(
            db.get_database_backend(),
            ids(1),
        ))
        .await
        .unwrap();
    let gone = id_at(&rows, 3);
    db.execute_unprepared(&format!("DELETE FROM queue WHERE message_id = {gone}"))
        .await
        .unwrap();
    db.execute_unprepared(&format!("DELETE FROM messages WHERE id = {gone}"))
        .await
        .unwrap();
    // Case 3: records 2 and 3 swapped.
    let rows = db
        .query_all(sea_orm::Statement::from_string(
            db.get_database_backend(),
            ids(2),
        ))
        .await
        .unwrap();
    let (a, b) = (id_at(&rows, 1), id_at(&rows, 2));
    db.execute_unprepared(&format!("UPDATE messages SET seq = 100 WHERE id = {a}"))
        .await
        .unwrap();
    db.execute_unprepared(&format!("UPDATE messages SET seq = 2 WHERE id = {b}"))
        .await
        .unwrap();
    db.execute_unprepared(&format!("UPDATE messages SET seq = 3 WHERE id = {a}"))
        .await
        .unwrap();
    drop(store);

    let (ok, out, _) = casebridge(&path, &["records", "verify"]);
    assert!(!ok, "tampering must fail the check");
    let expected = [
        format!("case {} record 2: its content was changed", numbers[0]),
        format!(
            "case {} record 4: record 4 is missing (deleted)",
            numbers[1]
        ),
        format!(
            "case {} record 5: does not follow the record before it",
            numbers[1]
        ),
        format!(
            "case {} record 2: does not follow the record before it",
            numbers[2]
        ),
        format!(
            "case {} record 2: its registration data was changed",
            numbers[2]
        ),
        format!(
            "case {} record 3: does not follow the record before it",
            numbers[2]
        ),
        format!(
            "case {} record 3: its registration data was changed",
            numbers[2]
        ),
    ];
    for line in &expected {
        assert!(
            out.lines().any(|l| l.starts_with(line.as_str())),
            "{line:?} not in:\n{out}"
        );
    }
    // Untouched records are not named.
    assert!(
        !out.contains(&format!("case {} record 1:", numbers[0])),
        "{out}"
    );
    let (ok, out, _) = casebridge(&path, &["records", "verify", "--case", &numbers[0]]);
    assert!(!ok);
    assert_eq!(out.lines().count(), 1, "{out}");
}

/// The example as an admin installs it: `DIR/etc/casebridge.toml` with its paths relative to
/// that folder (the database `sqlite://cb.db`, the SMS webhook secret in `secrets/sms`), and
/// `DIR/home`, an empty folder to run the command from. Returns (config, etc, home).
fn installed(
    dir: &std::path::Path,
) -> (std::path::PathBuf, std::path::PathBuf, std::path::PathBuf) {
    let etc = dir.join("etc");
    let home = dir.join("home");
    std::fs::create_dir_all(etc.join("secrets")).unwrap();
    std::fs::create_dir_all(&home).unwrap();
    std::fs::write(etc.join("secrets/sms"), "secret-from-etc\n").unwrap();
    let text = include_str!("../../casebridge.example.toml")
        .replace(
            "url = \"sqlite://casebridge.db\"",
            "url = \"sqlite://cb.db\"",
        )
        .replace(
            "webhook_secret = \"change-me-webhook-secret\"",
            "webhook_secret_file = \"secrets/sms\"",
        )
        .replace("change-me", "test-secret");
    let path = etc.join("casebridge.toml");
    std::fs::write(&path, text).unwrap();
    (path, etc, home)
}

fn files_in(dir: &std::path::Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn records_verify_reads_the_database_beside_the_config_from_anywhere() {
    let dir = tempfile::tempdir().unwrap();
    let (path, etc, home) = installed(dir.path());
    let store = Store::connect(&format!("sqlite://{}", etc.join("cb.db").display()), 1)
        .await
        .unwrap();
    store
        .record_inbound(
            &[NewInbound {
                instance: "sms".into(),
                channel: "sms".into(),
                team: "socialtjanst".into(),
                label: "SMS".into(),
                ghost_localpart: "_cb_sms_x".into(),
                message: InboundMessage {
                    message_id: RemoteMessageId::new("a"),
                    from: RemoteAddress::new("+46701234567"),
                    display_name: "+46 70 123 45 67".into(),
                    body: "Hej".into(),
                    sent_at: chrono::Utc::now(),
                    ..Default::default()
                },
            }],
            &Default::default(),
        )
        .await
        .unwrap();
    drop(store);

    let (ok, out, err) = casebridge_in(&home, &path, &["records", "verify"]);
    assert!(ok, "{out}{err}");
    assert!(
        out.starts_with("1 records in 1 case(s): every chain is intact\n"),
        "{out}"
    );
    let (ok, out, err) = casebridge_in(&home, &path, &["cases", "list"]);
    assert!(ok && out.lines().count() == 2, "{out}{err}");
    assert!(files_in(&home).is_empty(), "{:?}", files_in(&home));
}

#[test]
fn reading_commands_never_create_a_database() {
    let dir = tempfile::tempdir().unwrap();
    let (path, etc, home) = installed(dir.path());
    let expected = format!(
        "casebridge: database.url: no database at {} (from sqlite://cb.db in {}): check the \
         path; `casebridge run` creates it\n",
        etc.join("cb.db").display(),
        path.display()
    );
    for args in [
        &["records", "verify"][..],
        &["records", "export", "--case", "2026-000001"],
        &["records", "purge", "--dry-run"],
        &["records", "purge"],
        &["cases", "list"],
        &["cases", "show", "2026-000001"],
    ] {
        let (ok, out, err) = casebridge_in(&home, &path, args);
        assert!(!ok, "{args:?}: {out}");
        assert_eq!(err, expected, "{args:?}");
        assert!(
            files_in(&home).is_empty(),
            "{args:?}: {:?}",
            files_in(&home)
        );
        assert!(!etc.join("cb.db").exists(), "{args:?}");
    }

    // An absolute path is named as it is.
    let absolute = dir.path().join("nowhere.db");
    let text = std::fs::read_to_string(&path).unwrap().replace(
        "url = \"sqlite://cb.db\"",
        &format!("url = \"sqlite://{}\"", absolute.display()),
    );
    std::fs::write(&path, text).unwrap();
    let (ok, _, err) = casebridge_in(&home, &path, &["records", "verify"]);
    assert!(!ok);
    assert_eq!(
        err,
        format!(
            "casebridge: database.url: no database at {}: check the path; `casebridge run` \
             creates it\n",
            absolute.display()
        )
    );
    assert!(!absolute.exists());
}

#[test]
fn a_secret_file_relative_to_the_config_is_read_from_its_folder() {
    let dir = tempfile::tempdir().unwrap();
    let (path, _, home) = installed(dir.path());
    // `config check` builds every bridge: the SMS bridge reads its webhook_secret_file.
    let (ok, out, err) = casebridge_in(&home, &path, &["config", "check"]);
    assert!(ok, "{out}{err}");

    // And a missing one is named where it was looked for.
    std::fs::remove_file(path.parent().unwrap().join("secrets/sms")).unwrap();
    let (ok, _, err) = casebridge_in(&home, &path, &["config", "check"]);
    assert!(!ok);
    assert!(
        err.contains(
            &path
                .parent()
                .unwrap()
                .join("secrets/sms")
                .display()
                .to_string()
        ),
        "{err}"
    );
}

#[tokio::test]
async fn records_anchor_and_verify_against_it_name_a_removed_last_record() {
    use sea_orm::ConnectionTrait;

    let dir = tempfile::tempdir().unwrap();
    let path = example(dir.path());
    let store = Store::connect(
        &format!("sqlite://{}", dir.path().join("cb.db").display()),
        1,
    )
    .await
    .unwrap();
    let message = |id: &str, from: &str| NewInbound {
        instance: "sms".into(),
        channel: "sms".into(),
        team: "socialtjanst".into(),
        label: "SMS".into(),
        ghost_localpart: format!("_cb_sms_{from}"),
        message: InboundMessage {
            message_id: RemoteMessageId::new(id),
            from: RemoteAddress::new(from),
            display_name: from.into(),
            body: format!("meddelande {id}"),
            sent_at: chrono::Utc::now(),
            ..Default::default()
        },
    };
    // Two cases of three records each.
    let items: Vec<_> = (0..6)
        .map(|i| message(&format!("m{i}"), &format!("+4670000000{}", i % 2)))
        .collect();
    store
        .record_inbound(&items, &Default::default())
        .await
        .unwrap();
    let numbers: Vec<String> = store
        .cases()
        .await
        .unwrap()
        .iter()
        .rev()
        .map(|c| c.number.clone())
        .collect();

    // The office appends the heads to a file kept elsewhere, say daily.
    let anchors = dir.path().join("anchors.txt");
    let (ok, out, err) = casebridge(&path, &["records", "anchor"]);
    assert!(ok, "{err}");
    assert_eq!(out.lines().count(), 2, "{out}");
    assert!(out.starts_with(&format!("{} 3 ", numbers[0])), "{out}");
    std::fs::write(&anchors, &out).unwrap();
    let anchors_arg = anchors.to_str().unwrap();
    let (ok, out, err) = casebridge(&path, &["records", "verify", "--anchors", anchors_arg]);
    assert!(ok, "{out}{err}");
    assert!(out.contains("every chain is intact"), "{out}");
    assert!(out.contains("2 anchor(s) hold"), "{out}");

    // The second case goes on after its anchor: that is no finding.
    store
        .record_inbound(&[message("m6", "+46700000001")], &Default::default())
        .await
        .unwrap();
    // The last record of the first case deleted: the chain before it is still whole.
    let db = store.connection();
    let case_id = store.cases().await.unwrap().last().unwrap().id;
    let last = format!("SELECT id FROM messages WHERE case_id = {case_id} AND seq = 3");
    db.execute_unprepared(&format!("DELETE FROM queue WHERE message_id IN ({last})"))
        .await
        .unwrap();
    db.execute_unprepared(&format!("DELETE FROM messages WHERE id IN ({last})"))
        .await
        .unwrap();
    drop(store);

    let (ok, out, _) = casebridge(&path, &["records", "verify"]);
    assert!(ok, "the chain alone cannot see a removed tail: {out}");
    assert!(out.contains("cannot be seen from the store alone"), "{out}");

    let (ok, out, _) = casebridge(&path, &["records", "verify", "--anchors", anchors_arg]);
    assert!(!ok, "{out}");
    let line = format!(
        "case {} record 3: record 3 is missing (deleted from the end of the case)",
        numbers[0]
    );
    assert!(
        out.lines().any(|l| l.starts_with(&line)),
        "{line:?} not in:\n{out}"
    );
    assert_eq!(out.lines().count(), 1, "{out}");
    let (ok, out, _) = casebridge(
        &path,
        &[
            "records",
            "verify",
            "--case",
            &numbers[1],
            "--anchors",
            anchors_arg,
        ],
    );
    assert!(ok, "{out}");
}
