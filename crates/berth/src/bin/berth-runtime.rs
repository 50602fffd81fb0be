//! `berth-runtime`: berth's OCI runtime under runc's command line, for engines
//! (podman, containerd, CRI-O) that expect a runc-like binary.

use std::process::ExitCode;

fn main() -> ExitCode {
    let code = berth_runtime::cli::main(std::env::args().collect());
    ExitCode::from(u8::try_from(code).unwrap_or(1))
}
