//! The command line. Beside the server (`serve`, `hash-password`, `render`,
//! `rbac`: [`server`]) the same binary is the API's client: `login`,
//! `context`, `db …`, `audit` ([`session`], [`db`]) over the REST API
//! through [`crate::client`], and `completion`.

mod contexts;
mod db;
mod exit;
mod output;
mod server;
mod session;
mod wait;

use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand};

use crate::config::ServeArgs;
pub use exit::CliError;

#[derive(Parser)]
#[command(
    name = "pgplane",
    version,
    about = "Managed PostgreSQL: the control plane, and its client",
    after_long_help = exit::CODES
)]
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
    /// Print the CloudNativePG Cluster the kubernetes backend would apply for
    /// a database spec (the create body, JSON or YAML; `-` reads standard input).
    Render(server::RenderArgs),
    /// Print the namespaced Role the kubernetes backend needs.
    Rbac {
        /// Namespace of the databases.
        #[arg(long, env = "PGPLANE_NAMESPACE", default_value = "databases")]
        namespace: String,
    },
    /// Log in to a pgplane server and keep its token (a context).
    Login(session::LoginArgs),
    /// Forget the token of a context.
    Logout(session::Target),
    /// Show who the token is for, and until when.
    Whoami(session::Target),
    /// The servers logged in to: list, use or delete one.
    #[command(subcommand)]
    Context(session::ContextCommand),
    /// Databases: list, get, create, update, delete, connect, follow.
    Db(db::DbArgs),
    /// The audit trail: every change, by whom, with what outcome (admin).
    Audit(db::AuditArgs),
    /// Print a completion script for a shell.
    Completion {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(args) => server::serve(*args),
        Command::HashPassword => server::hash_password(),
        Command::Render(args) => server::render_command(&args),
        Command::Rbac { namespace } => server::rbac(&namespace),
        Command::Completion { shell } => {
            clap_complete::generate(
                shell,
                &mut Cli::command(),
                "pgplane",
                &mut std::io::stdout(),
            );
            ExitCode::SUCCESS
        }
        Command::Login(args) => client(session::login(args)),
        Command::Logout(target) => client(session::logout(target)),
        Command::Whoami(target) => client(session::whoami(target)),
        Command::Context(command) => client(session::context(command)),
        Command::Db(args) => client(db::run(args)),
        Command::Audit(args) => client(db::audit(args)),
    }
}

/// Runs a client command on a small runtime; its failure becomes one line
/// and an exit code.
fn client(command: impl std::future::Future<Output = Result<ExitCode, CliError>>) -> ExitCode {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime starts");
    match runtime.block_on(command) {
        Ok(code) => code,
        Err(e) => e.report(),
    }
}
