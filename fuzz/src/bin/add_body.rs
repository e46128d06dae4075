//! afl target: [`kappalog_fuzz::targets::add_body`].
fn main() {
    afl::fuzz!(|bytes: &[u8]| kappalog_fuzz::targets::add_body(bytes));
}
