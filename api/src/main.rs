//! The `pgplane` binary: parse the command line, run the command.

fn main() -> std::process::ExitCode {
    pgplane::cli::main()
}
