//! afl target: [`kappalog_fuzz::targets::handshake`].
fn main() {
    afl::fuzz!(|bytes: &[u8]| kappalog_fuzz::targets::handshake(bytes));
}
