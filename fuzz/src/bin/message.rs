//! afl target: [`kappalog_fuzz::targets::message`].
fn main() {
    afl::fuzz!(|bytes: &[u8]| kappalog_fuzz::targets::message(bytes));
}
