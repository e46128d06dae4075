//! The threads statements run on: one per query connection, started with the engine and
//! lowered to the lowest scheduling priority the OS grants without privileges (nice 19 on
//! Linux), so statements use the CPU that appends, sync and `/health` leave over. Eight
//! statements running to their deadline on a 2-core machine would otherwise take the cores
//! from `POST /add` (docs/BENCHMARKS.md, "/add beside hostile queries").
//!
//! Their own threads, not tokio's blocking pool: a pool thread lowered for a statement could
//! not be raised again without privileges, and would carry the low priority into whatever
//! blocking work it ran next (the store's, sync's).

use std::sync::mpsc;
use std::sync::{Arc, Mutex};

use crate::poison::lock;

type Job = Box<dyn FnOnce() + Send + 'static>;

/// The statement threads (see the module docs). Cloning shares them; they end when the last
/// clone is dropped.
#[derive(Clone)]
pub struct Workers {
    jobs: mpsc::Sender<Job>,
}

impl std::fmt::Debug for Workers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Workers").finish_non_exhaustive()
    }
}

impl Workers {
    /// Starts `count` threads (at least one) named `query-N`.
    pub fn start(count: usize) -> std::io::Result<Workers> {
        let (jobs, queue) = mpsc::channel::<Job>();
        let queue = Arc::new(Mutex::new(queue));
        for n in 0..count.max(1) {
            let queue = Arc::clone(&queue);
            std::thread::Builder::new()
                .name(format!("query-{n}"))
                .spawn(move || {
                    crate::priority::lower_current_thread();
                    loop {
                        // One waiting thread holds the lock; the others wait for it.
                        let job = lock(&queue).recv();
                        match job {
                            Ok(job) => job(),
                            Err(_) => break,
                        }
                    }
                })?;
        }
        Ok(Workers { jobs })
    }

    /// Runs `work` on a statement thread and waits for its result; inline under a
    /// deterministic simulation ([`crate::determinism`]). `Err` when the threads are gone.
    pub async fn run<F, R>(&self, work: F) -> Result<R, String>
    where
        F: FnOnce() -> R + Send + 'static,
        R: Send + 'static,
    {
        if crate::determinism::active() {
            return Ok(work());
        }
        let (done, result) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move || {
            let _ = done.send(work());
        });
        self.jobs
            .send(job)
            .map_err(|_| "the query threads are gone".to_owned())?;
        result
            .await
            .map_err(|_| "a query thread ended without an answer".to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn work_runs_on_a_lowered_thread_of_its_own() {
        let workers = Workers::start(2).unwrap();
        let (name, nice) = workers
            .run(|| {
                let name = std::thread::current().name().map(String::from);
                let nice = crate::priority::current_nice();
                (name, nice)
            })
            .await
            .unwrap();
        assert!(name.is_some_and(|n| n.starts_with("query-")));
        if cfg!(target_os = "linux") {
            assert_eq!(nice, Some(19));
        }
    }
}
