use super::*;

const MINIMAL: &str = r#"
    [homeserver]
    url = "http://127.0.0.1:8008"
    server_name = "localhost"

    [appservice]
    url = "http://127.0.0.1:29330"
    as_token = "as-secret"
    hs_token = "hs-secret"

    [teams.social]
    members = ["@anna:localhost", "@bo:localhost"]
    on_call = ["@anna:localhost"]

    [bridges.sms-office]
    kind = "loopback"
    team = "social"
    greeting = "hej"
"#;

#[test]
fn minimal_config_parses_with_defaults() {
    let config = Config::from_toml_str(MINIMAL).unwrap();
    assert_eq!(config.appservice.bot_localpart, "casebridge");
    assert_eq!(
        config.secrets().unwrap().database_url.expose(),
        "sqlite://casebridge.db"
    );
    assert_eq!(config.teams["social"].members.len(), 2);
    assert_eq!(config.bridges["sms-office"].kind, "loopback");
}

#[test]
fn the_example_config_is_complete_but_for_its_placeholder_secrets() {
    let text = include_str!("../../casebridge.example.toml");
    let problems = Config::from_toml_str(text).unwrap_err().problems();
    let keys: Vec<&str> = problems.iter().map(|p| p.key.as_str()).collect();
    assert_eq!(
        keys,
        [
            "appservice.as_token",
            "appservice.hs_token",
            "bridges.mail.imap.password",
            "bridges.mail.smtp.password",
            "bridges.sms.provider.api_password",
            "bridges.sms.webhook_secret",
            "bridges.telegram.token"
        ]
    );
    assert!(problems
        .iter()
        .all(|p| p.message.starts_with("still the example's placeholder")));
    let config = Config::from_toml_str(&text.replace("change-me", "s3cret")).unwrap();
    assert!(!config.bridges.is_empty());
    assert!(!config.teams.is_empty());
}

#[test]
fn every_mistake_is_reported_at_once_with_its_key_and_a_hint() {
    let text = MINIMAL
        .replace("[homeserver]", "[homserver]\nx = 1\n\n[homeserver]")
        .replace("[appservice]", "[appservice]\nlisten = \"localhost\"")
        .replace(
            "[teams.social]",
            "[queue]\nmax_backoff_ms = \"soon\"\n\n[teams.social]\non_cal = 1",
        )
        .replace(
            "greeting = \"hej\"",
            "greeting = \"hej\"\n\n[database]\nurl = \"mysql://u@h/db\"",
        )
        .replace("team = \"social\"", "team = \"socail\"");
    let err = Config::from_toml_str(&text).unwrap_err();
    let problems: Vec<String> = err.problems().iter().map(ToString::to_string).collect();
    assert_eq!(
        problems,
        [
            "homserver: unknown key; did you mean \"homeserver\"?",
            "appservice.listen: invalid socket address syntax; e.g. listen = \"127.0.0.1:29330\"",
            "queue.max_backoff_ms: expected a whole number, e.g. max_backoff_ms = 1000 (found \"soon\")",
            "teams.social.on_cal: unknown key; did you mean \"on_call\"?",
        ],
        "{err}"
    );
    let text = MINIMAL.replace(
        "on_call = [\"@anna:localhost\"]",
        "on_call = [\"@anna:localhost\"]\n[teams.social.hours]\ntime_zone = \"Europe/Stokholm\"",
    );
    assert_eq!(
        Config::from_toml_str(&text).unwrap_err().to_string(),
        "teams.social.hours.time_zone: \"Europe/Stokholm\" is no IANA time zone; did you mean \"Europe/Stockholm\"?"
    );
    // Once the file's shape is right, what only the whole can tell, again all at once.
    let text = MINIMAL
        .replace(
            "greeting = \"hej\"",
            "greeting = \"hej\"\n\n[database]\nurl = \"mysql://u@h/db\"",
        )
        .replace("team = \"social\"", "team = \"socail\"")
        .replace(
            "hs_token = \"hs-secret\"",
            "hs_token = \"change-me-hs-token\"",
        );
    let err = Config::from_toml_str(&text).unwrap_err();
    let keys: Vec<String> = err.problems().into_iter().map(|p| p.key).collect();
    assert_eq!(
        keys,
        [
            "database.url",
            "bridges.sms-office.team",
            "appservice.hs_token"
        ],
        "{err}"
    );
    let text = err.to_string();
    assert!(
        text.starts_with("3 problems:\n  database.url: \"mysql\" is not a database"),
        "{text}"
    );
    assert!(text.contains("did you mean \"social\"?"), "{text}");
    assert!(
        !text.contains("casebridge_config") && !text.contains("lib.rs"),
        "{text}"
    );
}

#[test]
fn unknown_key_is_named() {
    let text = MINIMAL.replace("[appservice]", "[appservice]\nlisten_port = 1");
    let err = Config::from_toml_str(&text).unwrap_err().to_string();
    assert!(err.contains("listen_port"), "{err}");
    assert!(err.contains("appservice"), "{err}");
}

#[test]
fn wrong_type_names_key_and_expectation() {
    let text = MINIMAL.replace(
        "members = [\"@anna:localhost\", \"@bo:localhost\"]",
        "members = 3",
    );
    let err = Config::from_toml_str(&text).unwrap_err().to_string();
    assert_eq!(
        err,
        "teams.social.members: expected a list in [ ], e.g. members = [\"@anna:example.org\"] (found 3)"
    );
}

#[test]
fn bad_user_id_is_refused() {
    let text = MINIMAL.replace("@bo:localhost", "bo");
    let err = Config::from_toml_str(&text).unwrap_err().to_string();
    assert!(err.contains("teams.social.members"), "{err}");
}

#[test]
fn bridge_with_unknown_team_is_refused() {
    let text = MINIMAL.replace("team = \"social\"", "team = \"nobody\"");
    let err = Config::from_toml_str(&text).unwrap_err().to_string();
    assert_eq!(
        err,
        "bridges.sms-office.team: no team \"nobody\" in [teams] (known: social)"
    );
}

#[test]
fn on_call_must_be_a_member() {
    let text = MINIMAL.replace(
        "on_call = [\"@anna:localhost\"]",
        "on_call = [\"@eve:localhost\"]",
    );
    let err = Config::from_toml_str(&text).unwrap_err().to_string();
    assert!(
        err.starts_with("teams.social.on_call: @eve:localhost"),
        "{err}"
    );
}

#[test]
fn secrets_come_from_files() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("hs");
    std::fs::write(&path, "from-file\n").unwrap();
    let text = MINIMAL.replace(
        "hs_token = \"hs-secret\"",
        &format!("hs_token_file = {:?}", path.display().to_string()),
    );
    let config = Config::from_toml_str(&text).unwrap();
    assert_eq!(config.secrets().unwrap().hs_token.expose(), "from-file");

    let missing = MINIMAL.replace(
        "hs_token = \"hs-secret\"",
        "hs_token_file = \"/nonexistent/hs\"",
    );
    let err = Config::from_toml_str(&missing).unwrap_err().to_string();
    assert!(
        err.starts_with("appservice.hs_token_file: cannot read /nonexistent/hs"),
        "{err}"
    );

    let neither = MINIMAL.replace("hs_token = \"hs-secret\"", "");
    let err = Config::from_toml_str(&neither).unwrap_err().to_string();
    assert_eq!(
        err,
        "appservice.hs_token: missing: set appservice.hs_token or appservice.hs_token_file"
    );
}

#[test]
fn secrets_are_not_printed() {
    let config = Config::from_toml_str(MINIMAL).unwrap();
    let debug = format!("{config:?}");
    assert!(!debug.contains("hs-secret"), "{debug}");
}

#[test]
#[allow(clippy::result_large_err)] // figment's Jail API
fn environment_overrides_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("casebridge.toml");
    std::fs::write(&path, MINIMAL).unwrap();
    figment::Jail::expect_with(|jail| {
        jail.set_env("CASEBRIDGE__APPSERVICE__HS_TOKEN", "from-env");
        jail.set_env("CASEBRIDGE__DATABASE__URL", "postgres://u@127.0.0.1/db");
        let config = Config::load(&path).unwrap();
        let secrets = config.secrets().unwrap();
        assert_eq!(secrets.hs_token.expose(), "from-env");
        assert_eq!(secrets.database_url.expose(), "postgres://u@127.0.0.1/db");
        Ok(())
    });
}

#[test]
fn missing_file_is_named() {
    let err = Config::load(Path::new("/nonexistent/casebridge.toml")).unwrap_err();
    assert_eq!(
        err.to_string(),
        "config file /nonexistent/casebridge.toml not found (give another with --config)"
    );
}

/// [`Config::load`] while no other test sets `CASEBRIDGE__` variables (they hold figment's
/// Jail lock while they do; `cargo test` runs tests side by side in one process).
#[allow(clippy::result_large_err)] // figment's Jail API
fn load_alone(path: &Path) -> Result<Config, ConfigError> {
    let mut loaded = None;
    figment::Jail::expect_with(|_| {
        loaded = Some(Config::load(path));
        Ok(())
    });
    loaded.expect("the jail ran")
}

/// A configuration file in `DIR/etc` with `secrets/hs` beside it.
fn config_in_a_folder(dir: &Path, text: &str) -> PathBuf {
    let etc = dir.join("etc");
    std::fs::create_dir_all(etc.join("secrets")).unwrap();
    std::fs::write(etc.join("secrets/hs"), "hs-from-folder\n").unwrap();
    let path = etc.join("casebridge.toml");
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn relative_paths_are_read_from_the_config_folder() {
    let dir = tempfile::tempdir().unwrap();
    let admin = dir.path().join("admin");
    std::fs::write(&admin, "admin-token").unwrap();
    let text = MINIMAL
        .replace("hs_token = \"hs-secret\"", "hs_token_file = \"secrets/hs\"")
        .replace(
            "[homeserver]",
            &format!(
                "[database]\nurl = \"sqlite://data/cb.db?mode=rwc\"\n[homeserver]\n\
                 admin_token_file = {:?}",
                admin.display().to_string()
            ),
        )
        .replace(
            "greeting = \"hej\"",
            "greeting = \"hej\"\ntoken_file = \"secrets/tg\"\n\
             [bridges.sms-office.imap]\npassword_file = \"imap/pw\"",
        )
        .replace(
            "on_call = [\"@anna:localhost\"]",
            "on_call = [\"@anna:localhost\"]\n[teams.social.hours]\n\
             time_zone = \"Europe/Stockholm\"\n\
             holiday_calendars = [\"se.ics\", \"/usr/share/cal/dk.ics\"]",
        );
    let path = config_in_a_folder(dir.path(), &text);
    // The test's working directory is the crate's, not the configuration's folder.
    assert_ne!(std::env::current_dir().unwrap(), dir.path().join("etc"));
    let config = load_alone(&path).unwrap();
    let etc = dir.path().join("etc");
    assert_eq!(config.base_dir.as_deref(), Some(etc.as_path()));

    let secrets = config.secrets().unwrap();
    assert_eq!(secrets.hs_token.expose(), "hs-from-folder");
    assert_eq!(
        secrets.database_url.expose(),
        format!("sqlite://{}/data/cb.db?mode=rwc", etc.display())
    );
    assert_eq!(
        secrets.database_url_given.expose(),
        "sqlite://data/cb.db?mode=rwc"
    );
    // Absolute paths stay as they are.
    assert_eq!(
        config.homeserver.admin_token_file.as_deref(),
        Some(admin.as_path())
    );
    assert_eq!(
        config.teams["social"]
            .hours
            .as_ref()
            .unwrap()
            .holiday_calendars,
        [etc.join("se.ics"), PathBuf::from("/usr/share/cal/dk.ics")]
    );

    // A bridge's own `*_file` options, at any depth, by the key-name rule.
    #[derive(Debug, Deserialize)]
    struct Imap {
        password_file: PathBuf,
    }
    #[derive(Debug, Deserialize)]
    struct Options {
        token_file: PathBuf,
        imap: Imap,
        greeting: String,
    }
    let options: Options = config.bridges["sms-office"].options("sms-office").unwrap();
    assert_eq!(options.token_file, etc.join("secrets/tg"));
    assert_eq!(options.imap.password_file, etc.join("imap/pw"));
    assert_eq!(options.greeting, "hej", "other keys are left alone");
}

#[test]
fn sqlite_urls_resolve_against_the_folder() {
    let base = Path::new("/etc/casebridge");
    for (given, resolved) in [
        (
            "sqlite://casebridge.db",
            "sqlite:///etc/casebridge/casebridge.db",
        ),
        (
            "sqlite:casebridge.db",
            "sqlite:///etc/casebridge/casebridge.db",
        ),
        (
            "sqlite://db/cb.db?mode=rwc",
            "sqlite:///etc/casebridge/db/cb.db?mode=rwc",
        ),
        ("sqlite:///var/lib/cb.db", "sqlite:///var/lib/cb.db"),
        ("sqlite::memory:", "sqlite::memory:"),
        ("sqlite://:memory:", "sqlite://:memory:"),
        ("sqlite://?mode=memory", "sqlite://?mode=memory"),
        ("postgres://u@db/cb", "postgres://u@db/cb"),
    ] {
        assert_eq!(resolve_sqlite_url(given, base), resolved, "{given}");
    }
    // sqlx decodes the file part: the folder's own '%' and '?' must survive that.
    assert_eq!(
        resolve_sqlite_url("sqlite://cb.db", Path::new("/srv/50%?")),
        "sqlite:///srv/50%25%3F/cb.db"
    );
}

#[test]
fn a_configuration_not_from_a_file_keeps_its_paths() {
    let config = Config::from_toml_str(MINIMAL).unwrap();
    assert_eq!(
        config.secrets().unwrap().database_url.expose(),
        "sqlite://casebridge.db"
    );
}

#[test]
#[allow(clippy::result_large_err)] // figment's Jail API
fn relative_paths_from_the_environment_are_read_from_the_config_folder() {
    let dir = tempfile::tempdir().unwrap();
    let path = config_in_a_folder(dir.path(), MINIMAL);
    // The jail runs in a working directory of its own.
    figment::Jail::expect_with(|jail| {
        jail.set_env("CASEBRIDGE__APPSERVICE__HS_TOKEN_FILE", "secrets/hs");
        jail.set_env("CASEBRIDGE__DATABASE__URL", "sqlite:cb.db");
        jail.set_env("CASEBRIDGE__BRIDGES__SMS-OFFICE__TOKEN_FILE", "secrets/tg");
        let text = MINIMAL.replace("hs_token = \"hs-secret\"", "");
        std::fs::write(&path, text).unwrap();
        let config = Config::load(&path).unwrap();
        let etc = dir.path().join("etc");
        let secrets = config.secrets().unwrap();
        assert_eq!(secrets.hs_token.expose(), "hs-from-folder");
        assert_eq!(
            secrets.database_url.expose(),
            format!("sqlite://{}/cb.db", etc.display())
        );
        assert_eq!(
            config.bridges["sms-office"].options.get("token_file"),
            Some(&Value::from(etc.join("secrets/tg").display().to_string()))
        );
        Ok(())
    });
}

#[test]
fn errors_still_name_the_file_when_paths_were_resolved() {
    let dir = tempfile::tempdir().unwrap();
    let text = MINIMAL
        .replace("hs_token = \"hs-secret\"", "hs_token_file = \"secrets/hs\"")
        .replace("[appservice]", "[appservice]\nlisten_port = 1");
    let path = config_in_a_folder(dir.path(), &text);
    let err = load_alone(&path).unwrap_err().to_string();
    assert!(err.contains("listen_port"), "{err}");
    assert!(err.contains(&path.display().to_string()), "{err}");
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct LoopbackOptions {
    greeting: String,
}

#[test]
fn bridge_options_are_parsed_by_the_bridge() {
    let config = Config::from_toml_str(MINIMAL).unwrap();
    let options: LoopbackOptions = config.bridges["sms-office"].options("sms-office").unwrap();
    assert_eq!(options.greeting, "hej");

    let text = MINIMAL.replace("greeting = \"hej\"", "greting = \"hej\"");
    let config = Config::from_toml_str(&text).unwrap();
    let err = config.bridges["sms-office"]
        .options::<LoopbackOptions>("sms-office")
        .unwrap_err()
        .to_string();
    assert_eq!(
        err,
        "bridges.sms-office.greting: unknown key; did you mean \"greeting\"?"
    );
}
