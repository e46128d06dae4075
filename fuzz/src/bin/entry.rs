//! afl target: [`kappalog_fuzz::targets::entry`].
fn main() {
    afl::fuzz!(|bytes: &[u8]| kappalog_fuzz::targets::entry(bytes));
}
