//! afl target: [`kappalog_fuzz::targets::transport`].
fn main() {
    afl::fuzz!(|bytes: &[u8]| kappalog_fuzz::targets::transport(bytes));
}
