//! The command line: `serve` and `hash-password`.

use std::io::Read;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::config::{ServeArgs, Settings};

#[derive(Parser)]
#[command(name = "pgplane", version, about = "Managed PostgreSQL control plane")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the API (and the databases' reconcilers).
    Serve(Box<ServeArgs>),
    /// Read a password on standard input and print its argon2 hash for the users file.
    HashPassword,
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(args) => {
            let settings = match Settings::from_args(*args) {
                Ok(s) => s,
                Err(e) => {
                    eprintln!("pgplane: {e}");
                    return ExitCode::from(2);
                }
            };
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .expect("a tokio runtime starts");
            match runtime.block_on(crate::serve::run(settings)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("pgplane: {e}");
                    match e {
                        crate::serve::StartError::Setting(..) => ExitCode::from(2),
                        _ => ExitCode::FAILURE,
                    }
                }
            }
        }
        Command::HashPassword => {
            let mut input = String::new();
            if let Err(e) = std::io::stdin().read_to_string(&mut input) {
                eprintln!("pgplane: cannot read standard input: {e}");
                return ExitCode::FAILURE;
            }
            let password = input
                .strip_suffix('\n')
                .map_or(input.as_str(), |p| p.strip_suffix('\r').unwrap_or(p));
            if password.is_empty() {
                eprintln!("pgplane: the password on standard input is empty");
                return ExitCode::FAILURE;
            }
            println!("{}", crate::auth::password::hash(password));
            ExitCode::SUCCESS
        }
    }
}
