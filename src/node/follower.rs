//! A thread that follows the node's log, as the SQL indexer ([`crate::index`]) and the tree
//! cache ([`crate::tree`]) do, and the small task that wakes it.
//!
//! The thread runs under `SCHED_IDLE` ([`crate::priority::idle_current_thread`]): the log's
//! writers, sync and HTTP come first, and it takes the cores they leave. The task turns the
//! node's events into wake-ups: every [`super::NodeEvent`] and a lagged receiver alike mean
//! "look at the log again", since the thread reads the log, never the events' contents; a
//! missed event is only a missed wake-up, and wake-ups coalesce (one pending at most). The
//! subscription is taken before the thread starts, so a commit after its first read of the
//! log wakes it. When the node stops, the task sets the stop flag, wakes the thread one last
//! time and waits for it to return (the node's shutdown waits for the task), so the thread
//! can finish its batch and close its files before the store goes.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};

use tokio::sync::broadcast::error::RecvError;
use tokio::sync::{oneshot, watch};

use super::Node;

/// A log follower about to start: its stop flag exists first, for the follower's state to
/// hold before the thread runs.
pub struct LogFollower {
    stop: Arc<AtomicBool>,
}

impl Default for LogFollower {
    fn default() -> Self {
        LogFollower::new()
    }
}

impl LogFollower {
    /// A follower not started yet.
    pub fn new() -> LogFollower {
        LogFollower {
            stop: Arc::new(AtomicBool::new(false)),
        }
    }

    /// True once the node is stopping: the thread's loop checks it after each wake-up.
    pub fn stop_flag(&self) -> Arc<AtomicBool> {
        Arc::clone(&self.stop)
    }

    /// Starts `run` on a thread named `name`, woken through its receiver by each node event
    /// and each change `also` announces (a follower's own configuration, e.g. the views).
    /// The thread's spawn error is returned, and nothing is started then.
    pub fn start<T: Send + Sync + 'static>(
        self,
        node: &Node,
        name: &str,
        also: Option<watch::Receiver<T>>,
        run: impl FnOnce(&mpsc::Receiver<()>) + Send + 'static,
    ) -> std::io::Result<()> {
        let mut events = node.subscribe();
        let mut stopping = node.stopping();
        let (wake, woken) = mpsc::sync_channel::<()>(1);
        let (done, finished) = oneshot::channel::<()>();
        std::thread::Builder::new()
            .name(name.to_owned())
            .spawn(move || {
                crate::priority::idle_current_thread();
                run(&woken);
                let _ = done.send(());
            })?;
        let stop = self.stop;
        let mut also = also;
        node.spawn(async move {
            loop {
                tokio::select! {
                    event = events.recv() => match event {
                        // Full means a wake-up is pending already: they coalesce.
                        Ok(_) | Err(RecvError::Lagged(_)) => { let _ = wake.try_send(()); }
                        Err(RecvError::Closed) => break,
                    },
                    Ok(()) = changed(&mut also) => { let _ = wake.try_send(()); }
                    _ = stopping.wait_for(|stopping| *stopping) => break,
                }
            }
            stop.store(true, Ordering::Relaxed);
            let _ = wake.try_send(());
            drop(wake);
            // The thread finishes its batch; the node's shutdown waits for this task.
            let _ = finished.await;
        });
        Ok(())
    }
}

/// The next change `also` announces; never, without one (or once its sender is gone).
async fn changed<T>(also: &mut Option<watch::Receiver<T>>) -> Result<(), watch::error::RecvError> {
    match also {
        Some(receiver) => receiver.changed().await,
        None => std::future::pending().await,
    }
}
