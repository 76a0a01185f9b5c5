//! The HTTP server under the routes of [`crate::appservice`]: HTTP/1.1 with limits against
//! slow and numerous clients, and a graceful stop.
//!
//! `axum::serve` sets no timer, so a client that sends its headers or its body a byte at a time
//! holds a connection (a task and its buffers) as long as it likes, and it accepts every
//! connection it is offered. Here each connection must send a request's headers within
//! [`Limits::header_timeout`] (which also closes idle keep-alive connections), its body within
//! [`Limits::body_timeout`], read its answers without stalling longer than
//! [`Limits::send_timeout`], and at most [`Limits::max_connections`] are served at once.

use std::{
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::Duration,
};

use axum::{
    body::{Body, Bytes},
    extract::Request,
    http::{header, StatusCode},
    response::{IntoResponse, Response},
    Router,
};
use hyper_util::{
    rt::{TokioIo, TokioTimer},
    service::TowerToHyperService,
};
use tokio::{net::TcpListener, sync::Semaphore, task::JoinSet, time::Sleep};
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, warn};

/// The limits of the HTTP server; see `[http]` in the configuration.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// How long a connection may take to send a request's headers. Hyper starts the clock when
    /// it waits for the next request, so an idle keep-alive connection is closed after it too.
    /// A homeserver whose pooled connection was just closed opens another; at worst a
    /// transaction sent on it in that instant fails and the homeserver sends it again.
    pub header_timeout: Duration,
    /// How long a request may take to send its whole body, counted from the end of its
    /// headers: one deadline, not a pause between reads, which a client trickling a byte every
    /// few seconds would never exceed.
    pub body_timeout: Duration,
    /// How long writing to a connection may stall because its client does not read (a client
    /// that sends requests ahead and never reads the answers would otherwise hold its
    /// connection, once the kernel's buffers are full, as long as it likes). Each write that
    /// makes progress restarts the clock, as nginx's `send_timeout` does.
    pub send_timeout: Duration,
    /// The most connections served at once. Further ones are not accepted until one closes:
    /// they wait in the kernel's listen backlog, and no task or buffer is spent on them.
    pub max_connections: usize,
}

impl Limits {
    /// The limits `[http]` configures.
    pub fn from_config(http: &casebridge_config::HttpConfig) -> Self {
        Self {
            header_timeout: Duration::from_millis(http.header_timeout_ms),
            body_timeout: Duration::from_millis(http.body_timeout_ms),
            send_timeout: Duration::from_millis(http.send_timeout_ms),
            max_connections: http.max_connections,
        }
    }
}

impl Default for Limits {
    fn default() -> Self {
        Self::from_config(&casebridge_config::HttpConfig::default())
    }
}

/// Serves `app` on `listener` until `stop` fires; then accepts nothing more, lets each
/// connection finish the request it is answering, closes the idle ones, and returns once every
/// connection is closed. Dropping the future (aborting its task) drops every connection.
pub async fn serve(listener: TcpListener, app: Router, limits: Limits, stop: CancellationToken) {
    let body_timeout = limits.body_timeout;
    let app = app.layer(axum::middleware::map_request(move |request: Request| {
        std::future::ready(request.map(|body| Body::new(DeadlineBody::new(body, body_timeout))))
    }));
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let mut connections = JoinSet::new();
    loop {
        // Finished connections leave the set here, so it never holds more than the cap.
        while connections.try_join_next().is_some() {}
        let slot = tokio::select! {
            biased;
            () = stop.cancelled() => break,
            slot = slots.clone().acquire_owned() => slot.expect("the semaphore is never closed"),
        };
        let (stream, remote) = tokio::select! {
            biased;
            () = stop.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    accept_failed(&e, &stop).await;
                    continue;
                }
            },
        };
        let service = TowerToHyperService::new(app.clone());
        let stop = stop.clone();
        connections.spawn(async move {
            let _slot = slot;
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder
                .timer(TokioTimer::new())
                .header_read_timeout(limits.header_timeout);
            let mut stream = tokio_io_timeout::TimeoutStream::new(stream);
            stream.set_write_timeout(Some(limits.send_timeout));
            let connection = builder.serve_connection(TokioIo::new(Box::pin(stream)), service);
            let mut connection = std::pin::pin!(connection);
            let mut stopping = false;
            let result = loop {
                tokio::select! {
                    result = connection.as_mut() => break result,
                    () = stop.cancelled(), if !stopping => {
                        // Answers the request in progress, if any, then closes.
                        connection.as_mut().graceful_shutdown();
                        stopping = true;
                    }
                }
            };
            if let Err(e) = result {
                // Header timeouts, resets, malformed requests: the client's problem.
                debug!(%remote, error = %e, "HTTP connection ended with an error");
            }
        });
    }
    drop(listener);
    while connections.join_next().await.is_some() {}
}

/// After a failed `accept`: a connection that failed before it was accepted is the client's
/// business; anything else (out of file descriptors, most often) is the server's, and
/// retrying at once would spin, so it pauses a second, as hyper's own servers do.
async fn accept_failed(e: &std::io::Error, stop: &CancellationToken) {
    use std::io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset};
    if matches!(
        e.kind(),
        ConnectionRefused | ConnectionAborted | ConnectionReset
    ) {
        return;
    }
    error!(error = %e, "accepting an HTTP connection failed; retrying in 1 s");
    tokio::select! {
        () = stop.cancelled() => {}
        () = tokio::time::sleep(Duration::from_secs(1)) => {}
    }
}

/// A request body that fails once its deadline passes, however the bytes trickle in.
struct DeadlineBody {
    body: Body,
    deadline: Pin<Box<Sleep>>,
    timeout: Duration,
}

impl DeadlineBody {
    fn new(body: Body, timeout: Duration) -> Self {
        Self {
            body,
            deadline: Box::pin(tokio::time::sleep(timeout)),
            timeout,
        }
    }
}

/// The error a [`DeadlineBody`] fails with; [`read_body`] turns it into a 408.
#[derive(Debug, thiserror::Error)]
#[error("the request body did not arrive within {0:?}")]
pub struct BodyTimedOut(Duration);

impl http_body::Body for DeadlineBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        if self.deadline.as_mut().poll(cx).is_ready() && !self.body.is_end_stream() {
            let timeout = self.timeout;
            return Poll::Ready(Some(Err(axum::Error::new(BodyTimedOut(timeout)))));
        }
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}

/// Reads a whole request body of at most `limit` bytes; the answer to give if it cannot: 408
/// past the body deadline, 413 over `limit`, 400 for a broken body. Each of those answers
/// closes the connection, whose unread rest could not be told from the next request.
pub async fn read_body(body: Body, limit: usize) -> Result<Bytes, Response> {
    let e = match axum::body::to_bytes(body, limit).await {
        Ok(bytes) => return Ok(bytes),
        Err(e) => e,
    };
    let timed_out = caused_by::<BodyTimedOut>(&e);
    let too_large = caused_by::<http_body_util::LengthLimitError>(&e);
    let (status, text) = if timed_out {
        warn!("a request body too slow to arrive was refused");
        (StatusCode::REQUEST_TIMEOUT, "request body too slow\n")
    } else if too_large {
        (StatusCode::PAYLOAD_TOO_LARGE, "request body too large\n")
    } else {
        (StatusCode::BAD_REQUEST, "request body unreadable\n")
    };
    Err((status, [(header::CONNECTION, "close")], text).into_response())
}

/// Whether `E` is somewhere in the chain of `error`'s causes (axum wraps body errors twice).
fn caused_by<E: std::error::Error + 'static>(error: &(dyn std::error::Error + 'static)) -> bool {
    std::iter::successors(Some(error), |e| e.source()).any(|e| e.is::<E>())
}
