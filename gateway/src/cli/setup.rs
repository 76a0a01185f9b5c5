//! `casebridge setup`: a first configuration with generated tokens, and the registration file
//! the homeserver loads, each readable by its owner only; then what to do on the homeserver.
//!
//! Interactive by default: each value is asked for on standard input with its default shown
//! (answers can be piped in: the prompts go to standard error). `--non-interactive` asks
//! nothing and takes the flags, their `CASEBRIDGE_SETUP_*` environment variables and the
//! defaults. The tokens are written to the two files only, never printed.

use std::{
    io::{BufRead, Write},
    os::unix::fs::OpenOptionsExt,
    path::{Path, PathBuf},
};

use anyhow::{bail, Context, Result};
use casebridge_config::Config;
use casebridge_gateway::registration::registration_yaml;
use rand::RngCore;

/// `casebridge setup`.
#[derive(clap::Args)]
pub struct SetupArgs {
    /// Ask nothing: take every value from the flags, the environment and the defaults.
    #[arg(long)]
    non_interactive: bool,
    /// The homeserver's client-server URL, as the gateway reaches it.
    #[arg(
        long,
        env = "CASEBRIDGE_SETUP_HOMESERVER_URL",
        default_value = "http://127.0.0.1:8008"
    )]
    homeserver_url: String,
    /// The homeserver's name: the part after the colon in its users' ids (`@anna:NAME`).
    #[arg(long, env = "CASEBRIDGE_SETUP_SERVER_NAME")]
    server_name: Option<String>,
    /// Where the gateway listens for the homeserver and the channels' webhooks.
    #[arg(
        long,
        env = "CASEBRIDGE_SETUP_LISTEN",
        default_value = "127.0.0.1:29330"
    )]
    listen: String,
    /// The URL the homeserver reaches the gateway at (default: http:// and the listen address).
    #[arg(long, env = "CASEBRIDGE_SETUP_APPSERVICE_URL")]
    appservice_url: Option<String>,
    /// The records store: `sqlite://FILE` (beside the configuration) or `postgres://...`.
    #[arg(
        long,
        env = "CASEBRIDGE_SETUP_DATABASE_URL",
        default_value = "sqlite://casebridge.db"
    )]
    database_url: String,
    /// The first team's key.
    #[arg(long, env = "CASEBRIDGE_SETUP_TEAM", default_value = "social")]
    team: String,
    /// The first team's name, as clients read it in automatic replies.
    #[arg(long, env = "CASEBRIDGE_SETUP_TEAM_NAME")]
    team_name: Option<String>,
    /// The workers who answer the team's cases: Matrix ids, separated by commas.
    #[arg(long, env = "CASEBRIDGE_SETUP_MEMBERS", value_delimiter = ',')]
    members: Vec<String>,
    /// The team's languages, first the one it reads itself: sv, en, hu, uk.
    #[arg(
        long,
        env = "CASEBRIDGE_SETUP_LANGUAGES",
        value_delimiter = ',',
        default_value = "sv,en"
    )]
    languages: Vec<String>,
    /// Where to write the registration file the homeserver loads.
    #[arg(
        long,
        env = "CASEBRIDGE_SETUP_REGISTRATION",
        default_value = "casebridge-registration.yaml"
    )]
    registration: PathBuf,
    /// Replace files that exist (their tokens change: the homeserver must load the new
    /// registration).
    #[arg(long)]
    force: bool,
}

/// What the answers make: the configuration's text.
struct Answers {
    homeserver_url: String,
    server_name: String,
    listen: String,
    appservice_url: String,
    database_url: String,
    team: String,
    team_name: String,
    members: Vec<String>,
    languages: Vec<String>,
}

/// A TOML basic string (JSON's escapes are TOML's).
fn quoted(value: &str) -> String {
    serde_json::to_string(value).expect("a string serialises")
}

fn quoted_list(values: &[String]) -> String {
    let items: Vec<String> = values.iter().map(|v| quoted(v)).collect();
    format!("[{}]", items.join(", "))
}

/// 32 random bytes as hex: a token the homeserver and the gateway share.
fn token() -> String {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    hex::encode(bytes)
}

impl Answers {
    fn toml(&self, as_token: &str, hs_token: &str) -> String {
        format!(
            "# Written by `casebridge setup`. It holds the appservice tokens: keep it readable by\n\
             # casebridge only. Every key is explained in casebridge.example.toml.\n\
             \n\
             [homeserver]\n\
             url = {homeserver_url}\n\
             server_name = {server_name}\n\
             \n\
             [appservice]\n\
             id = \"casebridge\"\n\
             listen = {listen}\n\
             url = {appservice_url}\n\
             as_token = {as_token}\n\
             hs_token = {hs_token}\n\
             \n\
             [database]\n\
             url = {database_url}\n\
             \n\
             [teams.{team}]\n\
             name = {team_name}\n\
             members = {members}\n\
             languages = {languages}\n\
             \n\
             # The office's channels: copy a [bridges.NAME] table from casebridge.example.toml\n\
             # (e-mail, SMS, Telegram) with team = {team_quoted}, then run `casebridge config check`.\n",
            homeserver_url = quoted(&self.homeserver_url),
            server_name = quoted(&self.server_name),
            listen = quoted(&self.listen),
            appservice_url = quoted(&self.appservice_url),
            as_token = quoted(as_token),
            hs_token = quoted(hs_token),
            database_url = quoted(&self.database_url),
            team = self.team,
            team_quoted = quoted(&self.team),
            team_name = quoted(&self.team_name),
            members = quoted_list(&self.members),
            languages = quoted_list(&self.languages),
        )
    }
}

/// Asks `question` on standard error with `default`; the answer, or the default for an empty
/// line (or the end of the input).
fn ask(input: &mut dyn BufRead, question: &str, default: &str) -> Result<String> {
    let mut err = std::io::stderr();
    if default.is_empty() {
        write!(err, "{question}: ")?;
    } else {
        write!(err, "{question} [{default}]: ")?;
    }
    err.flush()?;
    let mut line = String::new();
    input.read_line(&mut line)?;
    let answer = line.trim();
    Ok(if answer.is_empty() {
        default.to_owned()
    } else {
        answer.to_owned()
    })
}

fn list(text: &str) -> Vec<String> {
    text.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

impl SetupArgs {
    /// The answers: asked for, or taken as given.
    fn answers(&self, input: &mut dyn BufRead) -> Result<Answers> {
        let interactive = !self.non_interactive;
        let value = |input: &mut dyn BufRead, question: &str, given: &str| -> Result<String> {
            if interactive {
                ask(input, question, given)
            } else {
                Ok(given.to_owned())
            }
        };
        let homeserver_url = value(input, "Homeserver URL", &self.homeserver_url)?;
        let server_name = value(
            input,
            "Homeserver name (the part after the colon in @anna:NAME)",
            self.server_name.as_deref().unwrap_or_default(),
        )?;
        if server_name.is_empty() {
            bail!(
                "the homeserver's name is needed: --server-name example.org (or \
                 CASEBRIDGE_SETUP_SERVER_NAME)"
            );
        }
        let listen = value(input, "Listen address of the gateway", &self.listen)?;
        let appservice_url = value(
            input,
            "URL the homeserver reaches the gateway at",
            &self
                .appservice_url
                .clone()
                .unwrap_or_else(|| format!("http://{listen}")),
        )?;
        let database_url = value(input, "Records store", &self.database_url)?;
        let team = value(input, "The first team's key", &self.team)?;
        let team_name = value(
            input,
            "The team's name, as clients read it",
            self.team_name.as_deref().unwrap_or(&team),
        )?;
        let members = list(&value(
            input,
            "Its members, Matrix ids separated by commas",
            &self.members.join(","),
        )?);
        if members.is_empty() {
            bail!(
                "the team needs its members: --members @anna:{server_name},@bo:{server_name} (or \
                 CASEBRIDGE_SETUP_MEMBERS)"
            );
        }
        let languages = list(&value(
            input,
            "Its languages (sv, en, hu, uk), first the one it reads",
            &self.languages.join(","),
        )?);
        Ok(Answers {
            homeserver_url,
            server_name,
            listen,
            appservice_url,
            database_url,
            team,
            team_name,
            members,
            languages,
        })
    }
}

/// The refusal to replace `path`.
fn exists(path: &Path) -> anyhow::Error {
    anyhow::anyhow!(
        "{} exists already: nothing was written (--force replaces it, and with it the tokens \
         the homeserver knows)",
        path.display()
    )
}

/// Writes `text` to `path`, readable and writable by its owner only; a file there is an error
/// unless `force`.
fn write_private(path: &Path, text: &str, force: bool) -> Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).mode(0o600);
    if force {
        options.create(true).truncate(true);
    } else {
        options.create_new(true);
    }
    let mut file = options.open(path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::AlreadyExists {
            exists(path)
        } else {
            anyhow::anyhow!("writing {}: {e}", path.display())
        }
    })?;
    // A file replaced with --force keeps the mode it had: set it.
    std::fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(0o600))?;
    file.write_all(text.as_bytes())
        .with_context(|| format!("writing {}", path.display()))
}

/// `casebridge setup`: writes the configuration at `config_path` and the registration.
pub fn setup(config_path: &Path, args: &SetupArgs) -> Result<()> {
    for path in [config_path, args.registration.as_path()] {
        if path.exists() && !args.force {
            return Err(exists(path));
        }
    }
    let stdin = std::io::stdin();
    let answers = args.answers(&mut stdin.lock())?;
    let text = answers.toml(&token(), &token());
    // What `config check` would refuse is refused before anything is written.
    let config = Config::from_toml_str(&text)
        .map_err(|e| anyhow::anyhow!("these answers do not make a valid configuration: {e}"))?;
    let registration = registration_yaml(&config)?;
    write_private(config_path, &text, args.force)?;
    write_private(&args.registration, &registration, args.force)?;
    println!(
        "Wrote {config} and {registration} (both readable by their owner only: they hold the \
         tokens).\n\
         \n\
         Next:\n\
         1. On the homeserver, copy {registration} where Synapse reads it (e.g. \
         /etc/matrix-synapse/) and list it in homeserver.yaml:\n\
         \x20     app_service_config_files:\n\
         \x20       - /etc/matrix-synapse/{file}\n\
         \x20  then restart Synapse (systemctl restart matrix-synapse).\n\
         2. Add the office's channels to {config}: copy [bridges.NAME] tables from \
         casebridge.example.toml.\n\
         3. casebridge --config {config} config check\n\
         4. casebridge --config {config} run  (it checks the homeserver link and each \
         channel's credentials, and says what to fix)",
        config = config_path.display(),
        registration = args.registration.display(),
        file = args.registration.file_name().map_or_else(
            || "casebridge-registration.yaml".into(),
            |f| f.to_string_lossy()
        ),
    );
    Ok(())
}
