//! The `casebridge` command: set up a first configuration, run the gateway, check the config,
//! print the registration, and read the records.

use std::{
    path::{Path, PathBuf},
    process::ExitCode,
};

use anyhow::Result;
use casebridge_bridges::BridgeError;
use casebridge_config::{Config, Problem};
use casebridge_gateway::{
    policy::Policies, preflight::HomeserverCheck, registration::registration_yaml, Gateway,
};
use clap::{Parser, Subcommand, ValueEnum};

use records::{CasesCommand, RecordsCommand};

mod records;
mod setup;

#[derive(Parser)]
#[command(
    name = "casebridge",
    version,
    about = "One Matrix inbox for every client channel"
)]
struct Cli {
    /// The configuration file.
    #[arg(
        long,
        short,
        global = true,
        default_value = "casebridge.toml",
        env = "CASEBRIDGE_CONFIG"
    )]
    config: PathBuf,
    /// Log format on standard error.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Write a first configuration (with fresh tokens) and the homeserver's registration file.
    Setup(setup::SetupArgs),
    /// Run the gateway until interrupted.
    Run,
    /// Configuration commands.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Print the appservice registration YAML for the homeserver.
    Registration,
    /// Read the cases.
    #[command(subcommand)]
    Cases(CasesCommand),
    /// Read the records.
    #[command(subcommand)]
    Records(RecordsCommand),
    /// Whether each team is open now (or at --at) and when that changes.
    Hours {
        /// An instant: RFC 3339 (`2026-11-23T22:00:00+01:00`) or a local time in each team's
        /// zone (`2026-11-23 22:00`).
        #[arg(long)]
        at: Option<String>,
    },
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Validate the configuration and print a summary.
    Check,
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| "info,sqlx=warn,sea_orm=warn".into());
    // Colour only on a terminal: a pipe is systemd's journal or a file, where the codes
    // are noise (and NO_COLOR, https://no-color.org, turns it off there too).
    let colour = std::io::IsTerminal::is_terminal(&std::io::stderr())
        && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(colour)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

fn main() -> ExitCode {
    casebridge_gateway::allocator::tune();
    tokio::runtime::Runtime::new()
        .expect("the async runtime starts")
        .block_on(gateway_main())
}

async fn gateway_main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.log_format);
    match run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("casebridge: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> Result<()> {
    if let Command::Config(ConfigCommand::Check) = cli.command {
        return check(&cli.config);
    }
    if let Command::Setup(args) = &cli.command {
        return setup::setup(&cli.config, args);
    }
    let config = Config::load(&cli.config)?;
    match cli.command {
        Command::Run => {
            let factories = casebridge_bridges::builtin_factories();
            let gateway = Gateway::start(config.clone(), &factories).await?;
            // Serving now: the homeserver can call back. The watch runs until the signal.
            tokio::select! {
                () = shutdown_signal() => {}
                () = watch_homeserver(&gateway) => {}
                () = watch_bridges(&gateway) => {}
            }
            tracing::info!("shutting down");
            // The stop lets deliveries in flight be recorded (bounded); a second signal is an
            // operator who does not want to wait.
            tokio::select! {
                () = gateway.shutdown() => {}
                () = shutdown_signal() => {
                    anyhow::bail!("stopped by a second signal before the work in flight finished");
                }
            }
        }
        Command::Config(ConfigCommand::Check) | Command::Setup(_) => {
            unreachable!("handled above")
        }
        Command::Registration => print!("{}", registration_yaml(&config)?),
        Command::Hours { at } => print!("{}", hours_report(&config, at.as_deref())?),
        Command::Cases(command) => records::cases(&config, &cli.config, command).await?,
        Command::Records(command) => records::records(&config, &cli.config, command).await?,
    }
    Ok(())
}

/// Checks the homeserver link now and then (see [`preflight`]), and logs what changed: the
/// admin learns of a broken link at start, not from a client's message that never reaches its
/// room, and learns when it works again. A broken link is checked again every 30 s, a good one
/// every 5 minutes (a homeserver restarted without the registration breaks it).
async fn watch_homeserver(gateway: &Gateway) {
    let mut last: Option<HomeserverCheck> = None;
    loop {
        let check = gateway.check_homeserver().await;
        let changed = match (&last, &check) {
            (Some(HomeserverCheck::Linked { .. }), HomeserverCheck::Linked { .. }) => false,
            (Some(before), now) => before != now,
            (None, _) => true,
        };
        if changed {
            match &check {
                HomeserverCheck::Linked { round_trip } => tracing::info!(
                    round_trip_ms = round_trip.as_millis() as u64,
                    "homeserver link checked: the homeserver holds this registration and \
                     reaches the gateway"
                ),
                HomeserverCheck::Unchecked(why) => tracing::warn!("{why}"),
                HomeserverCheck::Broken(what) => tracing::error!("{what}"),
            }
        }
        let again = match check {
            HomeserverCheck::Broken(_) => std::time::Duration::from_secs(30),
            _ => std::time::Duration::from_secs(300),
        };
        last = Some(check);
        tokio::time::sleep(again).await;
    }
}

/// Shows each bridge's credentials to its channel now and then, and logs what changed: a wrong
/// password or token is an ERROR naming the key to fix as soon as the gateway runs (and while it
/// runs: a password changed at the provider), a channel that cannot be asked is a WARN. The
/// other bridges keep running either way. A bridge that is not fine is checked again every
/// 30 s, the others every 5 minutes. The team of a channel that refuses is told in its alert
/// room, and told again when it works.
async fn watch_bridges(gateway: &Gateway) {
    use casebridge_bridges::CredentialCheck;
    let mut last = std::collections::BTreeMap::new();
    let mut told_refused = std::collections::BTreeSet::new();
    loop {
        let checks = gateway.check_bridges().await;
        gateway.tell_teams(&checks, &mut told_refused).await;
        let mut all_fine = true;
        for (instance, check) in checks {
            let key = format!("bridges.{instance}");
            let fine = matches!(
                check,
                CredentialCheck::Accepted(_) | CredentialCheck::Unchecked(_)
            );
            all_fine &= fine;
            if last.get(&instance) == Some(&check) {
                continue;
            }
            match &check {
                CredentialCheck::Accepted(who) => {
                    tracing::info!(bridge = %key, "credentials accepted: {who}");
                }
                CredentialCheck::Unchecked(why) => {
                    tracing::info!(bridge = %key, "credentials not checked: {why}");
                }
                CredentialCheck::Unreachable(what) => tracing::warn!(
                    bridge = %key,
                    "credentials not checked now, the channel cannot be asked: {what}; \
                     checked again in 30 s"
                ),
                CredentialCheck::Refused(what) => tracing::error!(
                    bridge = %key,
                    "{what}. Until it is fixed, what this bridge does with these credentials \
                     fails (replies wait in the queue); the other bridges run"
                ),
            }
            last.insert(instance, check);
        }
        let again = if all_fine { 300 } else { 30 };
        tokio::time::sleep(std::time::Duration::from_secs(again)).await;
    }
}

/// `casebridge hours`: each team's state at an instant and its next change.
fn hours_report(config: &Config, at: Option<&str>) -> Result<String> {
    use chrono::TimeZone as _;
    let policies = Policies::load(config)?;
    let mut out = String::new();
    for (key, policy) in policies.teams() {
        let Some(hours) = &policy.hours else {
            out.push_str(&format!("{key}: always open (no [teams.{key}.hours])\n"));
            continue;
        };
        let tz = hours.time_zone();
        let instant = match at {
            None => chrono::Utc::now(),
            Some(text) => match chrono::DateTime::parse_from_rfc3339(text) {
                Ok(t) => t.with_timezone(&chrono::Utc),
                Err(_) => {
                    let local = text
                        .parse::<casebridge_config::team::LocalTime>()
                        .map_err(|e| anyhow::anyhow!("--at: {e}"))?;
                    tz.from_local_datetime(&local.0)
                        .earliest()
                        .ok_or_else(|| anyhow::anyhow!("--at: {text} does not exist in {tz}"))?
                        .with_timezone(&chrono::Utc)
                }
            },
        };
        let local = |t: chrono::DateTime<chrono::Utc>| {
            t.with_timezone(&tz)
                .format("%a %Y-%m-%d %H:%M %Z")
                .to_string()
        };
        let status = hours.status(instant);
        let state = if status.open { "open" } else { "closed" };
        let next = match status.until {
            Some(until) => {
                let minutes = (until - instant).num_minutes();
                format!(
                    "{} {} (in {} h {} min)",
                    if status.open { "closes" } else { "opens" },
                    local(until),
                    minutes / 60,
                    minutes % 60
                )
            }
            None => "no change within a year".to_owned(),
        };
        out.push_str(&format!(
            "{key} ({tz}): {state} at {}; {next}\n",
            local(instant)
        ));
    }
    Ok(out)
}

/// `casebridge config check`: every mistake in the file at once, those only building the
/// bridges and the teams' policies tell included; a summary when there is none.
fn check(path: &Path) -> Result<()> {
    let (config, mut problems) = Config::load_with_problems(path)?;
    problems.extend(deep_problems(&config));
    if !problems.is_empty() {
        return Err(casebridge_config::ConfigError::Problems {
            file: Some(config.source_name()),
            problems,
        }
        .into());
    }
    print_summary(path, &config);
    Ok(())
}

/// What only building each bridge and each team's policies can tell (a bridge's own options,
/// a phone number, a calendar file): every bridge is built on its own, so each one's mistake is
/// reported, not only the first bridge's.
fn deep_problems(config: &Config) -> Vec<Problem> {
    let factories = casebridge_bridges::builtin_factories();
    let mut problems = Vec::new();
    for (name, instance) in &config.bridges {
        let Some(factory) = factories.iter().find(|f| f.kind() == instance.kind) else {
            let known: Vec<&str> = factories.iter().map(|f| f.kind()).collect();
            let near = casebridge_config::problems::nearest(&instance.kind, known.iter().copied())
                .map(|n| format!("; did you mean {n:?}?"))
                .unwrap_or_default();
            problems.push(Problem::new(
                format!("bridges.{name}.kind"),
                format!(
                    "unknown bridge kind {:?} (this build knows: {}){near}",
                    instance.kind,
                    known.join(", ")
                ),
            ));
            continue;
        };
        match factory.build(name, instance) {
            Ok(_) => {}
            Err(BridgeError::Config(e)) => problems.extend(e.problems()),
            Err(BridgeError::Failed(message)) => {
                problems.push(Problem::new(format!("bridges.{name}"), message));
            }
        }
    }
    if let Err(e) = Policies::load(config) {
        problems.extend(e.problems());
    }
    problems
}

fn print_summary(path: &std::path::Path, config: &Config) {
    println!("{}: OK", path.display());
    println!(
        "homeserver  {} ({})",
        config.homeserver.url, config.homeserver.server_name
    );
    println!(
        "appservice  {} listening on {}, reached at {}",
        config.appservice.id, config.appservice.listen, config.appservice.url
    );
    let db = config
        .secrets()
        .map(|s| {
            s.database_url
                .expose()
                .split(':')
                .next()
                .unwrap_or_default()
                .to_owned()
        })
        .unwrap_or_default();
    println!("database    {db}");
    for (key, team) in &config.teams {
        println!(
            "team        {key}{}: {} member(s), {} on call",
            team.name
                .as_deref()
                .map(|n| format!(" ({n})"))
                .unwrap_or_default(),
            team.members.len(),
            team.on_call.len()
        );
    }
    for (key, bridge) in &config.bridges {
        println!(
            "bridge      {key}: {} answered by {}",
            bridge.kind, bridge.team
        );
    }
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("a SIGTERM handler can be installed");
    tokio::select! {
        _ = ctrl_c => {}
        _ = term.recv() => {}
    }
}
