//! Handing a stream's frames to its response body: the short queue between the stream's
//! task and the body, and why the task stops. Shared by the replay ([`super::stream`]) and
//! the live part ([`super::live`]) of a stream.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use axum::body::Bytes;
use tokio::sync::mpsc::error::TrySendError;
use tokio::sync::{mpsc, watch};

/// Queues `frame` for the body, waiting at most `deadline` for room, or until `shutdown`
/// completes. Without a wait when there is room, the common case: no timer is set.
pub(super) async fn queue<F: Future<Output = ()>>(
    out: &mpsc::Sender<Bytes>,
    frame: Bytes,
    deadline: Duration,
    shutdown: Pin<&mut F>,
) -> Result<(), Stop> {
    let frame = match out.try_send(frame) {
        Ok(()) => return Ok(()),
        Err(TrySendError::Closed(_)) => return Err(Stop::Gone),
        Err(TrySendError::Full(frame)) => frame,
    };
    tokio::select! {
        biased;
        () = shutdown => Err(Stop::End("the node is shutting down".into())),
        sent = tokio::time::timeout(deadline, out.send(frame)) => match sent {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err(Stop::Gone),
            Err(_) => Err(Stop::End(format!(
                "slow consumer: took nothing for {} ms: resume from the last cursor",
                deadline.as_millis()
            ))),
        },
    }
}

/// Completes when the node ends its streams ([`crate::node::Node::end_streams`]) or is gone.
pub(super) async fn shutdown(mut ending: watch::Receiver<bool>) {
    // An error means the node is gone: the same as ending.
    let _ = ending.wait_for(|ending| *ending).await;
}

/// Why the task stops.
pub(super) enum Stop {
    /// The client went away: nobody to tell.
    Gone,
    /// Ended on purpose; the reason goes out as the `end` frame.
    End(String),
}
