//! afl target: [`kappalog_fuzz::targets::fork_proof`].
fn main() {
    afl::fuzz!(|bytes: &[u8]| kappalog_fuzz::targets::fork_proof(bytes));
}
