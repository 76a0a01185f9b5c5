//! Part 5: the gateway's memory under a flood of new senders (issue 19, point 8). The same
//! number of SMS webhooks goes to two fresh gateway processes: from 10 senders (the baseline:
//! what recording and relaying costs) and from as many senders as messages (each one a new
//! case, a new room, a new ghost and a new entry in every per-sender cache). The difference is
//! what outsiders can make the gateway keep.

use std::time::Duration;

use super::{post_webhooks, setup, sms_bridge, start_stub, GatewayProcess, SMS_SECRET};

/// One run: `n` webhooks from `senders` numbers; RSS before, after the first half, after all.
async fn flood(n: usize, senders: usize) -> (f64, f64, f64) {
    let dir = tempfile::tempdir().unwrap();
    let (url, _state) = start_stub();
    let mut s = setup(dir.path(), &url);
    s.extra = sms_bridge();
    let gateway = GatewayProcess::spawn(&s, dir.path());
    gateway.wait_healthy().await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let idle = gateway.rss_mib();
    let webhook = format!(
        "http://127.0.0.1:{}/webhook/sms?secret={SMS_SECRET}",
        s.port
    );
    let mut after = Vec::new();
    for half in 0..2 {
        let hook = webhook.clone();
        let first = half * n / 2;
        tokio::task::spawn_blocking(move || post_webhooks(hook, first, n / 2, senders, 32))
            .await
            .unwrap();
        gateway.wait_landed(first + n / 2).await;
        after.push(gateway.rss_mib());
    }
    (idle, after[0], after[1])
}

/// Prints the two runs side by side.
pub async fn new_senders(n: usize) {
    let (base_idle, base_half, base_all) = flood(n, 10).await;
    let (idle, half, all) = flood(n, n).await;
    println!(
        "gateway memory under a flood of new senders (SMS webhooks, stub homeserver, SQLite):"
    );
    println!(
        "  baseline, {n} messages from 10 senders: RSS idle {base_idle:.1} MiB, after {} {base_half:.1} MiB, after {n} {base_all:.1} MiB",
        n / 2
    );
    println!(
        "  {n} messages from {n} new senders:      RSS idle {idle:.1} MiB, after {} {half:.1} MiB, after {n} {all:.1} MiB",
        n / 2
    );
    println!(
        "  growth over the baseline: {:.1} MiB after {} senders, {:.1} MiB after {n}",
        (half - idle) - (base_half - base_idle),
        n / 2,
        (all - idle) - (base_all - base_idle)
    );
}
