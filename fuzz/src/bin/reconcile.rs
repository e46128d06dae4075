//! afl target: [`kappalog_fuzz::targets::reconcile`].
fn main() {
    afl::fuzz!(|bytes: &[u8]| kappalog_fuzz::targets::reconcile(bytes));
}
