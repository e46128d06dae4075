//! afl target: [`kappalog_fuzz::targets::csv`].
fn main() {
    afl::fuzz!(|bytes: &[u8]| kappalog_fuzz::targets::csv(bytes));
}
