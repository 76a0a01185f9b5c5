//! Runs the gateway's [`Worker`]s: starts each, runs again one that failed (with a backoff, and
//! says so), and stops them in phases within a deadline, naming what it had to abort.

use std::{any::Any, panic::AssertUnwindSafe, sync::Arc, time::Duration};

use futures::FutureExt;
use tokio::{task::JoinHandle, time::Instant};
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, warn};

use crate::{
    metrics::Metrics,
    worker::{Phase, Worker},
};

/// How long the supervisor waits before it runs a failed worker again: `first`, doubled at
/// each failure in a row, at most `cap`. A run that lasted `cap` or more starts the count
/// again, so a worker that fails once a day waits `first`, not `cap`.
#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    /// The first wait.
    pub first: Duration,
    /// The longest wait.
    pub cap: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            first: Duration::from_secs(1),
            cap: Duration::from_secs(60),
        }
    }
}

/// A worker and the task that runs it.
struct Supervised {
    worker: Arc<dyn Worker>,
    handle: JoinHandle<()>,
}

/// Starts workers, runs again those that fail, and stops them in phases.
pub struct Supervisor {
    metrics: Metrics,
    backoff: Backoff,
    /// Tells the [`Phase::Intake`] and [`Phase::Finish`] workers to stop.
    stop: CancellationToken,
    /// Tells the [`Phase::Drain`] workers to stop.
    drain: CancellationToken,
    helpers: Vec<Supervised>,
    intake: Vec<Supervised>,
    drainers: Vec<Supervised>,
    finishers: Vec<Supervised>,
}

impl Supervisor {
    /// A supervisor with no workers yet, counting restarts in `metrics`.
    pub fn new(metrics: Metrics, backoff: Backoff) -> Self {
        Self {
            metrics,
            backoff,
            stop: CancellationToken::new(),
            drain: CancellationToken::new(),
            helpers: Vec::new(),
            intake: Vec::new(),
            drainers: Vec::new(),
            finishers: Vec::new(),
        }
    }

    /// Starts `worker` in a task of its own.
    pub fn spawn(&mut self, worker: Arc<dyn Worker>) {
        let phase = worker.phase();
        let stop = match phase {
            // A helper is aborted, never told; its token only ends a backoff.
            Phase::Helper | Phase::Intake | Phase::Finish => self.stop.clone(),
            Phase::Drain => self.drain.clone(),
        };
        let handle = tokio::spawn(supervise(
            worker.clone(),
            stop,
            self.metrics.clone(),
            self.backoff,
        ));
        let supervised = Supervised { worker, handle };
        match phase {
            Phase::Helper => self.helpers.push(supervised),
            Phase::Intake => self.intake.push(supervised),
            Phase::Drain => self.drainers.push(supervised),
            Phase::Finish => self.finishers.push(supervised),
        }
    }

    /// Stops every worker and returns by `deadline`. Helpers are aborted at once; intake and
    /// finish workers are told to stop; once every intake worker has ended, the drain workers
    /// are told too. Whatever still runs at `deadline` is aborted and named in the log (`grace`
    /// is only reported there), with what it held if it says so.
    pub async fn stop_by(mut self, deadline: Instant, grace: Duration) {
        for helper in &self.helpers {
            helper.handle.abort();
        }
        self.stop.cancel();

        let drain = &self.drain;
        let (intake, drainers) = (&mut self.intake, &mut self.drainers);
        let producers = async move {
            futures::future::join_all(intake.iter_mut().map(|s| &mut s.handle)).await;
            // Nothing can hand in more: the consumers record what is left, and end.
            drain.cancel();
            futures::future::join_all(drainers.iter_mut().map(|s| &mut s.handle)).await;
        };
        let finishers = futures::future::join_all(self.finishers.iter_mut().map(|s| &mut s.handle));
        let in_time = tokio::time::timeout_at(deadline, async {
            tokio::join!(producers, finishers);
        })
        .await
        .is_ok();

        // A task awaited to its end must not be awaited again: only the aborted ones are.
        let mut aborted = Vec::new();
        if !in_time {
            let late = self
                .intake
                .into_iter()
                .chain(self.drainers)
                .chain(self.finishers)
                .filter(|s| !s.handle.is_finished());
            for supervised in late {
                // Asked before the abort, which ends what it holds.
                match supervised.worker.in_flight() {
                    Some(what) => error!(
                        worker = %supervised.worker.name(),
                        in_flight = %what,
                        ?grace,
                        "did not finish in time; aborted in the middle of its work"
                    ),
                    None => warn!(
                        worker = %supervised.worker.name(),
                        ?grace,
                        "did not finish in time; aborted"
                    ),
                }
                supervised.handle.abort();
                aborted.push(supervised.handle);
            }
        }
        for handle in aborted
            .into_iter()
            .chain(self.helpers.into_iter().map(|s| s.handle))
        {
            let _ = handle.await;
        }
    }
}

/// Runs `worker` until it ends well or `stop` fires, running it again after each failure.
async fn supervise(
    worker: Arc<dyn Worker>,
    stop: CancellationToken,
    metrics: Metrics,
    backoff: Backoff,
) {
    let name = worker.name().to_owned();
    let mut wait = backoff.first;
    loop {
        let began = Instant::now();
        let outcome = AssertUnwindSafe(worker.clone().run(stop.clone()))
            .catch_unwind()
            .await;
        let reason = match outcome {
            Ok(Ok(())) => {
                if !stop.is_cancelled() {
                    debug!(worker = %name, "worker done");
                }
                return;
            }
            Ok(Err(e)) => e.to_string(),
            Err(panic) => format!("panicked: {}", panic_message(panic.as_ref())),
        };
        if stop.is_cancelled() {
            error!(worker = %name, %reason, "worker failed while stopping");
            return;
        }
        if began.elapsed() >= backoff.cap {
            wait = backoff.first;
        }
        metrics.worker_restarts.with_label_values(&[&name]).inc();
        error!(worker = %name, %reason, restart_in = ?wait, "worker failed; running it again");
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = stop.cancelled() => return,
        }
        wait = (wait * 2).min(backoff.cap);
    }
}

fn panic_message(panic: &(dyn Any + Send)) -> &str {
    panic
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| panic.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("(no message)")
}

#[cfg(test)]
mod tests {
    use std::{
        io::Write,
        sync::{
            atomic::{AtomicUsize, Ordering},
            Mutex,
        },
    };

    use async_trait::async_trait;

    use super::*;
    use crate::worker::WorkerError;

    /// What one run of a [`Fake`] does.
    #[derive(Clone, Copy)]
    enum Step {
        Panic,
        Fail,
        /// Works this long, then fails.
        FailAfter(Duration),
        Done,
        /// Works until told to stop, then takes this long to finish.
        UntilStop(Duration),
        /// Never stops by itself.
        IgnoreStop,
    }

    /// What happened, and when (seconds since the test began, on the paused clock).
    type Events = Arc<Mutex<Vec<(String, f64)>>>;

    struct Fake {
        name: String,
        phase: Phase,
        /// One step per run; the last one repeats.
        steps: Vec<Step>,
        runs: AtomicUsize,
        in_flight: Option<String>,
        events: Events,
        began: Instant,
    }

    impl Fake {
        fn new(name: &str, phase: Phase, steps: &[Step], events: &Events) -> Arc<Self> {
            Arc::new(Self {
                name: name.to_owned(),
                phase,
                steps: steps.to_vec(),
                runs: AtomicUsize::new(0),
                in_flight: None,
                events: events.clone(),
                began: Instant::now(),
            })
        }

        fn note(&self, what: &str) {
            let at = self.began.elapsed().as_secs_f64();
            self.events
                .lock()
                .unwrap()
                .push((format!("{} {what}", self.name), at));
        }
    }

    /// Notes when the run it belongs to is dropped (an abort drops it).
    struct Dropped<'a>(&'a Fake);

    impl Drop for Dropped<'_> {
        fn drop(&mut self) {
            self.0.note("dropped");
        }
    }

    #[async_trait]
    impl Worker for Fake {
        fn name(&self) -> &str {
            &self.name
        }

        fn phase(&self) -> Phase {
            self.phase
        }

        async fn run(self: Arc<Self>, stop: CancellationToken) -> Result<(), WorkerError> {
            let run = self.runs.fetch_add(1, Ordering::SeqCst);
            self.note("runs");
            let _dropped = Dropped(&self);
            match self.steps[run.min(self.steps.len() - 1)] {
                Step::Panic => panic!("boom"),
                Step::Fail => Err(WorkerError::new("it broke")),
                Step::FailAfter(after) => {
                    tokio::time::sleep(after).await;
                    Err(WorkerError::new("it broke"))
                }
                Step::Done => Ok(()),
                Step::UntilStop(finishing) => {
                    stop.cancelled().await;
                    self.note("told");
                    tokio::time::sleep(finishing).await;
                    self.note("ends");
                    Ok(())
                }
                Step::IgnoreStop => std::future::pending().await,
            }
        }

        fn in_flight(&self) -> Option<String> {
            self.in_flight.clone()
        }
    }

    #[derive(Clone, Default)]
    struct Log(Arc<Mutex<Vec<u8>>>);

    impl Write for Log {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl Log {
        /// Captures this thread's log (a paused-clock test runs on one thread).
        fn capture() -> (Self, tracing::subscriber::DefaultGuard) {
            let log = Self::default();
            let writer = log.clone();
            let subscriber = tracing_subscriber::fmt()
                .with_writer(move || writer.clone())
                .with_ansi(false)
                .with_max_level(tracing::Level::DEBUG)
                .finish();
            (log, tracing::subscriber::set_default(subscriber))
        }

        fn lines(&self, containing: &str) -> Vec<String> {
            String::from_utf8(self.0.lock().unwrap().clone())
                .unwrap()
                .lines()
                .filter(|l| l.contains(containing))
                .map(str::to_owned)
                .collect()
        }
    }

    fn times(events: &Events, what: &str) -> Vec<f64> {
        events
            .lock()
            .unwrap()
            .iter()
            .filter(|(e, _)| e == what)
            .map(|(_, at)| *at)
            .collect()
    }

    const BACKOFF: Backoff = Backoff {
        first: Duration::from_secs(1),
        cap: Duration::from_secs(4),
    };

    #[tokio::test(start_paused = true)]
    async fn a_failed_worker_runs_again_after_a_doubling_capped_backoff_and_is_logged() {
        let (log, _guard) = Log::capture();
        let events = Events::default();
        let steps = [
            Step::Panic,
            Step::Fail,
            Step::Panic,
            Step::Panic,
            Step::Panic,
            Step::UntilStop(Duration::ZERO),
        ];
        let metrics = Metrics::new();
        let mut supervisor = Supervisor::new(metrics.clone(), BACKOFF);
        supervisor.spawn(Fake::new("flaky", Phase::Finish, &steps, &events));
        tokio::time::sleep(Duration::from_secs(60)).await;

        // 1, 2, 4, then the cap.
        assert_eq!(
            times(&events, "flaky runs"),
            [0.0, 1.0, 3.0, 7.0, 11.0, 15.0]
        );
        let restarts = log.lines("worker failed; running it again");
        assert_eq!(restarts.len(), 5, "{restarts:#?}");
        assert!(restarts[0].contains("ERROR") && restarts[0].contains("worker=flaky"));
        assert!(restarts[0].contains("panicked: boom"), "{}", restarts[0]);
        assert!(restarts[1].contains("reason=it broke"), "{}", restarts[1]);
        assert_eq!(
            metrics.worker_restarts.with_label_values(&["flaky"]).get(),
            5
        );

        supervisor
            .stop_by(
                Instant::now() + Duration::from_secs(8),
                Duration::from_secs(8),
            )
            .await;
        assert_eq!(times(&events, "flaky told").len(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_run_that_lasted_the_cap_starts_the_backoff_again() {
        let (_log, _guard) = Log::capture();
        let events = Events::default();
        let steps = [
            Step::Fail,
            Step::Fail,
            Step::Fail,
            Step::FailAfter(Duration::from_secs(10)),
            Step::UntilStop(Duration::ZERO),
        ];
        let mut supervisor = Supervisor::new(Metrics::new(), BACKOFF);
        supervisor.spawn(Fake::new("w", Phase::Finish, &steps, &events));
        tokio::time::sleep(Duration::from_secs(60)).await;
        // Waits 1, 2, 4; the fourth run lasts 10 s, so the next wait is 1 s again.
        assert_eq!(times(&events, "w runs"), [0.0, 1.0, 3.0, 7.0, 18.0]);
        supervisor
            .stop_by(
                Instant::now() + Duration::from_secs(1),
                Duration::from_secs(1),
            )
            .await;
    }

    #[tokio::test(start_paused = true)]
    async fn a_worker_done_before_the_stop_or_failing_while_stopping_is_not_run_again() {
        let (log, _guard) = Log::capture();
        let events = Events::default();
        let mut supervisor = Supervisor::new(Metrics::new(), BACKOFF);
        supervisor.spawn(Fake::new("once", Phase::Helper, &[Step::Done], &events));
        supervisor.spawn(Fake::new(
            "late",
            Phase::Finish,
            &[Step::FailAfter(Duration::from_secs(100))],
            &events,
        ));
        tokio::time::sleep(Duration::from_secs(60)).await;
        assert_eq!(times(&events, "once runs"), [0.0]);

        // "late" fails 40 s into the stop: logged, not run again.
        supervisor
            .stop_by(
                Instant::now() + Duration::from_secs(90),
                Duration::from_secs(90),
            )
            .await;
        assert_eq!(times(&events, "late runs"), [0.0]);
        assert_eq!(log.lines("worker failed while stopping").len(), 1);
        assert!(log.lines("running it again").is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn phases_stop_in_order() {
        let (_log, _guard) = Log::capture();
        let events = Events::default();
        let began = Instant::now();
        let mut supervisor = Supervisor::new(Metrics::new(), BACKOFF);
        let s = Duration::from_secs;
        supervisor.spawn(Fake::new(
            "helper",
            Phase::Helper,
            &[Step::IgnoreStop],
            &events,
        ));
        supervisor.spawn(Fake::new(
            "reader",
            Phase::Intake,
            &[Step::UntilStop(s(2))],
            &events,
        ));
        supervisor.spawn(Fake::new(
            "http",
            Phase::Intake,
            &[Step::UntilStop(s(3))],
            &events,
        ));
        supervisor.spawn(Fake::new(
            "inbound",
            Phase::Drain,
            &[Step::UntilStop(s(1))],
            &events,
        ));
        supervisor.spawn(Fake::new(
            "relay",
            Phase::Finish,
            &[Step::UntilStop(s(5))],
            &events,
        ));
        tokio::time::sleep(s(10)).await;
        supervisor.stop_by(Instant::now() + s(8), s(8)).await;

        // The stop begins at 10 s: the helper is aborted, intake and finish workers are told;
        // the drain worker is told once the last intake worker (3 s) has ended.
        assert_eq!(times(&events, "helper dropped"), [10.0]);
        assert_eq!(times(&events, "reader told"), [10.0]);
        assert_eq!(times(&events, "http told"), [10.0]);
        assert_eq!(times(&events, "relay told"), [10.0]);
        assert_eq!(times(&events, "http ends"), [13.0]);
        assert_eq!(times(&events, "inbound told"), [13.0]);
        assert_eq!(times(&events, "inbound ends"), [14.0]);
        assert_eq!(times(&events, "relay ends"), [15.0]);
        assert_eq!(Instant::now() - began, s(15));
    }

    #[tokio::test(start_paused = true)]
    async fn a_worker_that_ignores_the_stop_is_aborted_at_the_deadline_and_named() {
        let (log, _guard) = Log::capture();
        let events = Events::default();
        let began = Instant::now();
        let mut supervisor = Supervisor::new(Metrics::new(), BACKOFF);
        let s = Duration::from_secs;
        supervisor.spawn(Fake::new(
            "reader",
            Phase::Intake,
            &[Step::IgnoreStop],
            &events,
        ));
        supervisor.spawn(Fake::new(
            "inbound",
            Phase::Drain,
            &[Step::UntilStop(s(1))],
            &events,
        ));
        let delivering = Arc::new(Fake {
            in_flight: Some("reply 7".to_owned()),
            ..Arc::into_inner(Fake::new(
                "delivery",
                Phase::Finish,
                &[Step::IgnoreStop],
                &events,
            ))
            .unwrap()
        });
        supervisor.spawn(delivering);
        supervisor.spawn(Fake::new(
            "relay",
            Phase::Finish,
            &[Step::UntilStop(s(1))],
            &events,
        ));
        tokio::task::yield_now().await;
        supervisor.stop_by(began + s(8), s(8)).await;

        assert_eq!(Instant::now() - began, s(8));
        assert_eq!(times(&events, "relay ends"), [1.0]);
        // The reader never ended, so the inbound consumer was never told: aborted, named.
        assert!(times(&events, "inbound told").is_empty());
        for name in ["reader", "inbound", "delivery"] {
            assert_eq!(times(&events, &format!("{name} dropped")), [8.0], "{name}");
        }
        let aborted = log.lines("did not finish in time; aborted");
        assert_eq!(aborted.len(), 3, "{aborted:#?}");
        assert!(aborted[0].contains("WARN") && aborted[0].contains("worker=reader"));
        assert!(aborted[1].contains("WARN") && aborted[1].contains("worker=inbound"));
        assert!(aborted[2].contains("ERROR") && aborted[2].contains("worker=delivery"));
        assert!(aborted[2].contains("in_flight=reply 7"), "{}", aborted[2]);
        assert!(aborted[2].contains("in the middle of its work"));
    }
}
