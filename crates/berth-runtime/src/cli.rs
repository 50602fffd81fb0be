//! runc's command line.

/// Runs the runtime CLI with `args` (args[0] is the program name); returns the exit code.
pub fn main(args: Vec<String>) -> i32 {
    eprintln!("berth-runtime: {:?}: not implemented yet", &args[1..]);
    1
}
