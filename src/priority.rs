//! Lowering a thread's CPU priority: for work that must yield the cores to the log's
//! writers (appends, sync, `/health`) when they are busy, and use them when they are not.
//! The query statement threads run this way. (The SQL indexer does not: lowered, it fell
//! behind under `/add` load by up to 1.8 s and gained replication 2%, docs/BENCHMARKS.md.)
//!
//! On Linux a thread's nice value is its own (`setpriority` on the calling task), and an
//! unprivileged process may raise it (lower the priority) but never lower it back: so only
//! threads that do nothing else are lowered, never a pool's.

/// Lowers the calling thread's priority as far as an unprivileged process may (nice 19 on
/// Linux); a platform that refuses leaves it as it is, with a note in the log.
pub fn lower_current_thread() {
    if let Err(e) =
        thread_priority::set_current_thread_priority(thread_priority::ThreadPriority::Min)
    {
        tracing::debug!(error = ?e, "could not lower a thread's priority");
    }
}

/// The calling thread's nice value (Linux, from `/proc/thread-self/stat`); `None` elsewhere.
pub fn current_nice() -> Option<i64> {
    let stat = std::fs::read_to_string("/proc/thread-self/stat").ok()?;
    // Field 19 (nice), counted after the parenthesised command name, which may hold spaces.
    let rest = stat.rsplit(')').next()?;
    rest.split_whitespace().nth(16)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lowered_thread_is_nice_19_and_its_caller_is_not() {
        let before = current_nice();
        let lowered = std::thread::spawn(|| {
            lower_current_thread();
            current_nice()
        })
        .join()
        .unwrap();
        if cfg!(target_os = "linux") {
            assert_eq!(lowered, Some(19));
            assert_eq!(current_nice(), before, "only the lowered thread changes");
        }
    }
}
