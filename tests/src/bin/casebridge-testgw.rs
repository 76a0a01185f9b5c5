//! The gateway with the loopback bridge added, as its own process: for tests that kill it.

use std::path::PathBuf;

use clap::Parser;

#[derive(Parser)]
struct Args {
    #[arg(long)]
    config: PathBuf,
}

fn main() -> anyhow::Result<()> {
    casebridge_gateway::allocator::tune();
    tokio::runtime::Runtime::new()?.block_on(testgw_main())
}

async fn testgw_main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,sqlx=warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    let config = casebridge_config::Config::load(&args.config)?;
    let gateway =
        casebridge_gateway::Gateway::start(config, &casebridge_tests::loopback::test_factories())
            .await?;
    tokio::signal::ctrl_c().await?;
    gateway.shutdown().await;
    Ok(())
}
