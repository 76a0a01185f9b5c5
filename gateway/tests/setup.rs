//! `casebridge setup`, as an admin runs it on a new machine: the configuration and the
//! registration it writes, and what it refuses.

use std::{
    io::Write,
    os::unix::fs::PermissionsExt,
    path::Path,
    process::{Command, Stdio},
};

/// Runs `casebridge --config CONFIG ARGS` in `dir` with `input` on standard input; whether it
/// succeeded, its standard output and error.
fn casebridge(dir: &Path, args: &[&str], input: &str) -> (bool, String, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_casebridge"))
        .current_dir(dir)
        .arg("--config")
        .arg("casebridge.toml")
        .args(args)
        .env_remove("CASEBRIDGE_CONFIG")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    (
        out.status.success(),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn non_interactive_setup_writes_a_config_that_checks_and_its_registration() {
    let dir = tempfile::tempdir().unwrap();
    let (ok, out, err) = casebridge(
        dir.path(),
        &[
            "setup",
            "--non-interactive",
            "--server-name",
            "kommun.example",
            "--members",
            "@anna:kommun.example,@bo:kommun.example",
            "--team-name",
            "Socialtjänsten",
        ],
        "",
    );
    assert!(ok, "{out}{err}");
    let config = dir.path().join("casebridge.toml");
    let registration = dir.path().join("casebridge-registration.yaml");
    assert_eq!(mode(&config), 0o600);
    assert_eq!(mode(&registration), 0o600);
    let text = std::fs::read_to_string(&config).unwrap();
    // Two fresh tokens, never shown.
    let tokens: Vec<&str> = text
        .lines()
        .filter_map(|l| {
            l.strip_prefix("as_token = ")
                .or(l.strip_prefix("hs_token = "))
        })
        .map(|t| t.trim_matches('"'))
        .collect();
    assert_eq!(tokens.len(), 2, "{text}");
    assert_ne!(tokens[0], tokens[1]);
    for token in &tokens {
        assert_eq!(token.len(), 64, "{token}");
        assert!(!out.contains(token) && !err.contains(token), "{out}{err}");
    }
    assert!(
        out.contains("app_service_config_files:") && out.contains("config check"),
        "{out}"
    );
    // `config check` takes it, and `registration` prints what setup wrote.
    let (ok, summary, err) = casebridge(dir.path(), &["config", "check"], "");
    assert!(ok, "{summary}{err}");
    let (ok, printed, err) = casebridge(dir.path(), &["registration"], "");
    assert!(ok, "{err}");
    assert_eq!(printed, std::fs::read_to_string(&registration).unwrap());
    assert!(printed.contains(r"@_cb_.*:kommun\.example"), "{printed}");

    // A second setup does not replace the tokens the homeserver knows, unless told to.
    let (ok, _, err) = casebridge(
        dir.path(),
        &[
            "setup",
            "--non-interactive",
            "--server-name",
            "x",
            "--members",
            "@a:x",
        ],
        "",
    );
    assert!(
        !ok && err.contains("casebridge.toml exists already"),
        "{err}"
    );
    assert_eq!(std::fs::read_to_string(&config).unwrap(), text);
}

#[test]
fn interactive_setup_asks_each_value_with_its_default() {
    let dir = tempfile::tempdir().unwrap();
    // Homeserver URL, name, listen, appservice URL, store, team, team name, members, languages;
    // an empty line takes the default.
    let answers = "https://matrix.kommun.example\nkommun.example\n\n\n\nfamilj\nFamiljeenheten\n\
                   @anna:kommun.example\nen,sv\n";
    let (ok, out, err) = casebridge(dir.path(), &["setup"], answers);
    assert!(ok, "{out}{err}");
    assert!(
        err.contains("Homeserver URL [http://127.0.0.1:8008]: "),
        "{err}"
    );
    let text = std::fs::read_to_string(dir.path().join("casebridge.toml")).unwrap();
    for line in [
        "url = \"https://matrix.kommun.example\"",
        "server_name = \"kommun.example\"",
        "listen = \"127.0.0.1:29330\"",
        "url = \"http://127.0.0.1:29330\"",
        "[teams.familj]",
        "name = \"Familjeenheten\"",
        "members = [\"@anna:kommun.example\"]",
        "languages = [\"en\", \"sv\"]",
    ] {
        assert!(text.contains(line), "{line} in {text}");
    }
    let (ok, summary, err) = casebridge(dir.path(), &["config", "check"], "");
    assert!(ok, "{summary}{err}");
}

#[test]
fn setup_names_what_is_missing_or_wrong_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (ok, _, err) = casebridge(
        dir.path(),
        &[
            "setup",
            "--non-interactive",
            "--server-name",
            "kommun.example",
        ],
        "",
    );
    assert!(!ok && err.contains("--members"), "{err}");
    let (ok, _, err) = casebridge(
        dir.path(),
        &[
            "setup",
            "--non-interactive",
            "--server-name",
            "kommun.example",
            "--members",
            "anna",
        ],
        "",
    );
    assert!(
        !ok && err.contains("do not make a valid configuration") && err.contains("members"),
        "{err}"
    );
    assert!(!dir.path().join("casebridge.toml").exists());
    assert!(!dir.path().join("casebridge-registration.yaml").exists());
}
