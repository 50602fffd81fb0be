//! `berth`: the command line. Thin: parses flags, sets up logging and hands each
//! command to the crate that owns it. Exit codes follow Docker: 125 when berth
//! itself fails, otherwise what the command (or the container) returned.

mod cli;

use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    // `berth runtime ARGS` is runc's command line, parsed by berth-runtime-cli
    // as-is so that engines can point at `berth runtime` or `berth-runtime`.
    let args: Vec<String> = std::env::args().collect();
    if let Some(pos) = runtime_position(&args) {
        let mut rt_args = vec!["berth-runtime".to_string()];
        rt_args.extend(args[pos + 1..].iter().cloned());
        return exit(berth_runtime_cli::main(rt_args));
    }
    // Docker exits 125 on a bad flag; clap's own code is 2. Help and version stay 0.
    let cli = match cli::Cli::try_parse() {
        Ok(cli) => cli,
        Err(err) => {
            let _ = err.print();
            return if err.use_stderr() {
                ExitCode::from(125)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    cli::init_logging(&cli.global);
    match cli::dispatch(cli) {
        Ok(code) => exit(code),
        Err(err) if cli::is_broken_pipe(&err) => cli::die_of_sigpipe(),
        Err(err) => {
            eprintln!("berth: {}", cli::format_error(&err));
            ExitCode::from(125)
        }
    }
}

/// Index of a `runtime` subcommand that comes after nothing but global flags.
fn runtime_position(args: &[String]) -> Option<usize> {
    let mut i = 1;
    while i < args.len() {
        let a = args[i].as_str();
        match a {
            "runtime" => return Some(i),
            "--root" | "--runroot" | "--log-level" => i += 2,
            _ if ["--root=", "--runroot=", "--log-level="]
                .iter()
                .any(|p| a.starts_with(p)) =>
            {
                i += 1
            }
            _ => return None,
        }
    }
    None
}

fn exit(code: i32) -> ExitCode {
    ExitCode::from(u8::try_from(code).unwrap_or(125))
}
