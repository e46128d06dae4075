//! afl target: [`kappalog_fuzz::targets::frame`].
fn main() {
    afl::fuzz!(|bytes: &[u8]| kappalog_fuzz::targets::frame(bytes));
}
