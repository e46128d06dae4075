//! Lowering a thread's CPU priority: for work that must yield the cores to the log's
//! writers (appends, sync, `/health`) when they are busy, and use them when they are not.
//!
//! Two strengths:
//! - [`lower_current_thread`], nice 19: the query statement threads. A nice-19 thread still
//!   gets a share of a busy core (about 1.5% against one nice-0 thread) and its slice once it
//!   runs.
//! - [`idle_current_thread`], Linux's `SCHED_IDLE`: the SQL indexer's threads. Such a thread
//!   runs on a core no normal thread wants (it is preempted by any that wakes). The
//!   difference is not small on a 2-core machine: beside a thread that only spins,
//!   replication ran at 0.70 of its rate with the spinner at nice 19 and at 0.93 with it at
//!   `SCHED_IDLE` (docs/BENCHMARKS.md). The index is a cache that catches up: under a load
//!   that keeps every core busy it falls behind (its lag is in `/health`), and it catches up
//!   when the load eases. The statements stay at nice 19: idle, they too would starve under
//!   such a load, and a read-your-writes query would wait for an idle core (tried, measured,
//!   not kept: docs/BENCHMARKS.md).
//!
//! On Linux a thread's nice value and policy are its own (set on the calling task), and an
//! unprivileged process may lower its priority but never raise it back: so only threads
//! that do nothing else are lowered, never a pool's.

/// Lowers the calling thread's priority as far as an unprivileged process may (nice 19 on
/// Linux); a platform that refuses leaves it as it is, with a note in the log.
pub fn lower_current_thread() {
    if let Err(e) =
        thread_priority::set_current_thread_priority(thread_priority::ThreadPriority::Min)
    {
        tracing::debug!(error = ?e, "could not lower a thread's priority");
    }
}

/// Makes the calling thread run only when a core is otherwise idle (`SCHED_IDLE` on Linux;
/// elsewhere, as [`lower_current_thread`]); a platform that refuses leaves it as it is, with
/// a note in the log.
pub fn idle_current_thread() {
    #[cfg(target_os = "linux")]
    {
        use thread_priority::{
            set_thread_priority_and_policy, thread_native_id, NormalThreadSchedulePolicy,
            ThreadPriority, ThreadSchedulePolicy,
        };
        let idle = ThreadSchedulePolicy::Normal(NormalThreadSchedulePolicy::Idle);
        if let Err(e) =
            set_thread_priority_and_policy(thread_native_id(), ThreadPriority::Min, idle)
        {
            tracing::debug!(error = ?e, "could not make a thread idle-priority");
        }
    }
    #[cfg(not(target_os = "linux"))]
    lower_current_thread();
}

/// Whether the calling thread runs under `SCHED_IDLE` (Linux, from
/// `/proc/thread-self/sched`); `None` elsewhere.
pub fn current_is_idle() -> Option<bool> {
    let sched = std::fs::read_to_string("/proc/thread-self/sched").ok()?;
    // `policy : N`, where SCHED_IDLE is 5.
    let policy = sched.lines().find(|l| l.starts_with("policy"))?;
    Some(policy.split(':').nth(1)?.trim() == "5")
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

    #[test]
    fn an_idle_thread_is_sched_idle_and_its_caller_is_not() {
        let idle = std::thread::spawn(|| {
            idle_current_thread();
            current_is_idle()
        })
        .join()
        .unwrap();
        if cfg!(target_os = "linux") {
            assert_eq!(idle, Some(true));
            assert_eq!(
                current_is_idle(),
                Some(false),
                "only the idle thread changes"
            );
        }
    }
}
