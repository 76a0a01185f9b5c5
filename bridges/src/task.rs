//! A bridge's own loop (an IMAP reader, a Telegram poller) in a task that is started again when
//! it crashes. The loops handle their errors themselves (a lost connection is retried with a
//! backoff); a panic is what they cannot handle, and without this it would end the bridge's
//! reading for good, silently.

use std::{
    future::Future,
    time::{Duration, Instant},
};

use tokio::task::JoinHandle;
use tracing::error;

/// The first wait before a crashed loop runs again; doubled at each crash in a row.
const FIRST: Duration = Duration::from_secs(1);
/// The longest wait; a run that lasted this long starts the count again.
const LONGEST: Duration = Duration::from_secs(60);

/// Runs `run()` in a task, and again whenever a run panics: after 1 s, doubling to a minute,
/// each crash an ERROR naming `what` and the panic. A run that returns has finished (its
/// bridge stopped), and so has the task.
pub(crate) fn spawn_restarting<F, Fut>(what: String, run: F) -> JoinHandle<()>
where
    F: Fn() -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    tokio::spawn(async move {
        let mut wait = FIRST;
        loop {
            let started = Instant::now();
            let crash = match tokio::spawn(run()).await {
                Ok(()) => return,
                Err(e) if e.is_panic() => e.into_panic(),
                // Aborted from outside: nothing to run again.
                Err(_) => return,
            };
            let why = crash
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| crash.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "a panic without a message".to_owned());
            if started.elapsed() >= LONGEST {
                wait = FIRST;
            }
            error!(task = %what, retry_in = ?wait, "{what} crashed ({why}); it runs again");
            tokio::time::sleep(wait).await;
            wait = (wait * 2).min(LONGEST);
        }
    })
}

#[cfg(test)]
mod tests {
    use std::sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    };

    use super::spawn_restarting;

    #[tokio::test]
    async fn a_loop_that_crashes_runs_again_and_one_that_returns_ends() {
        let runs = Arc::new(AtomicUsize::new(0));
        let counted = runs.clone();
        let task = spawn_restarting("bridges.test reader".into(), move || {
            let runs = counted.clone();
            async move {
                if runs.fetch_add(1, Ordering::SeqCst) == 0 {
                    panic!("a mail the parser could not take");
                }
            }
        });
        tokio::time::timeout(std::time::Duration::from_secs(10), task)
            .await
            .expect("the second run returns, and the task ends")
            .unwrap();
        assert_eq!(runs.load(Ordering::SeqCst), 2);
    }
}
