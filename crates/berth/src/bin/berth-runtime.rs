//! `berth-runtime`: berth's OCI runtime under runc's command line, for engines
//! (podman, containerd, CRI-O) that expect a runc-like binary.
//!
//! It starts at C's `main`, without Rust's runtime set-up (stack-overflow handlers read
//! `/proc/self/maps` and the code behind them would count in every container's peak memory):
//! the runtime is short-lived and single-threaded, and `berth_runtime_cli::main` does the little it needs.
#![no_main]

use std::io::Write;
use std::os::raw::{c_char, c_int};

#[no_mangle]
extern "C" fn main(_argc: c_int, _argv: *const *const c_char) -> c_int {
    // std reads the arguments on its own (glibc hands them to its init function).
    let code = berth_runtime_cli::main(std::env::args().collect());
    let _ = std::io::stdout().flush();
    u8::try_from(code).map(c_int::from).unwrap_or(1)
}
