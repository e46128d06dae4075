//! The one reply type of the store's requests: [`Pending`], the writer's answer to come.
//!
//! Every request to the writer ([`super::Store`]) is sent when the method is called and
//! answered on a oneshot channel once what it wrote is durable. A [`Pending`] is the
//! receiving end: an async caller `.await`s it, a caller on a plain thread (the CLI, an
//! import, tests) calls [`Pending::wait`]. One method per operation, whoever calls it.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::sync::oneshot;

use super::AppendError;

/// The writer's answer to one request, still to come. Dropping it does not cancel the
/// request (the writer still does it); only the answer is lost.
#[must_use = "the request is sent; wait for or await its answer to learn whether it is durable"]
pub struct Pending<T, R = T> {
    answer: oneshot::Receiver<Result<R, AppendError>>,
    /// Turns the writer's answer into the caller's (an unkeyed own append is always
    /// `Added`, see [`super::Store::append_own`]). A plain `fn`, so `Pending` stays `Unpin`.
    finish: fn(R) -> Result<T, AppendError>,
}

impl<T> Pending<T> {
    /// Waits on `answer`, whose sender the writer holds.
    pub(super) fn new(answer: oneshot::Receiver<Result<T, AppendError>>) -> Pending<T> {
        Pending { answer, finish: Ok }
    }

    /// A request answered before it reached the writer (refused by a check, or nothing to
    /// do).
    pub(super) fn ready(result: Result<T, AppendError>) -> Pending<T> {
        let (reply, answer) = oneshot::channel();
        let _ = reply.send(result);
        Pending::new(answer)
    }
}

impl<T, R> Pending<T, R> {
    /// As [`Pending::new`], with the writer's answer `R` turned into `T` by `finish`.
    pub(super) fn mapped(
        answer: oneshot::Receiver<Result<R, AppendError>>,
        finish: fn(R) -> Result<T, AppendError>,
    ) -> Pending<T, R> {
        Pending { answer, finish }
    }

    /// Blocks the calling thread until the writer answers. For callers off the async
    /// workers: inside a runtime it does not panic (unlike `oneshot::Receiver::blocking_recv`,
    /// which refuses to run there), but it holds the worker for an `fsync`.
    pub fn wait(self) -> Result<T, AppendError> {
        wait_blocking(self)
    }
}

impl<T, R> Future for Pending<T, R> {
    type Output = Result<T, AppendError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let finish = self.finish;
        Pin::new(&mut self.answer).poll(cx).map(|answer| {
            // A dropped sender: the writer stopped before it answered.
            answer.map_err(|_| AppendError::Closed)?.and_then(finish)
        })
    }
}

/// Waits for `future` on the calling thread, parking it in between (for [`Pending::wait`]
/// and [`super::StoreOwner::shutdown_blocking`]; the futures here are reply channels the
/// writer thread completes, which need no runtime to make progress). Hand-written rather than
/// `blocking_recv` because that one panics when called from within a runtime, and a blocking
/// wait is reached on runtime threads too (tests on a runtime wait for appends this way).
pub(super) fn wait_blocking<F: Future>(future: F) -> F::Output {
    struct Unpark(std::thread::Thread);
    impl std::task::Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = std::task::Waker::from(Arc::new(Unpark(std::thread::current())));
    let mut cx = Context::from_waker(&waker);
    let mut future = std::pin::pin!(future);
    loop {
        if let Poll::Ready(output) = future.as_mut().poll(&mut cx) {
            return output;
        }
        // A wake-up before the park makes the park return at once, so none is missed.
        std::thread::park();
    }
}
