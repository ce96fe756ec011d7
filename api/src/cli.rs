//! The command line: `serve`, `hash-password`, `render` and `rbac`.

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
    /// Print the CloudNativePG Cluster the kubernetes backend would apply for
    /// a database spec (the create body, JSON or YAML; `-` reads standard input).
    Render(RenderArgs),
    /// Print the namespaced Role the kubernetes backend needs.
    Rbac {
        /// Namespace of the databases.
        #[arg(long, env = "PGPLANE_NAMESPACE", default_value = "databases")]
        namespace: String,
    },
}

#[derive(clap::Args)]
struct RenderArgs {
    /// The database spec: a file, or `-` for standard input.
    file: std::path::PathBuf,
    /// Namespace of the databases.
    #[arg(long, env = "PGPLANE_NAMESPACE", default_value = "databases")]
    namespace: String,
    /// Recorded as the database's owner.
    #[arg(long, default_value = "git")]
    owner: String,
    /// PostgreSQL majors offered, comma separated (default: those of the kubernetes backend).
    #[arg(long, env = "PGPLANE_POSTGRES_VERSIONS")]
    postgres_versions: Option<String>,
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
                    eprintln!("pgplane: {}", crate::http::problem::chain(&e));
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
        Command::Render(args) => match render(&args) {
            Ok(yaml) => {
                print!("{yaml}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("pgplane: {e}");
                ExitCode::from(2)
            }
        },
        Command::Rbac { namespace } => {
            if crate::model::check_name(&namespace).is_err() {
                eprintln!("pgplane: {namespace:?} is not a Kubernetes namespace name");
                return ExitCode::from(2);
            }
            print!(
                "{}",
                crate::backend::kubernetes::rbac::role_yaml(&namespace)
            );
            ExitCode::SUCCESS
        }
    }
}

/// `pgplane render`: the spec through the same rules as `POST /databases`,
/// then [`crate::backend::kubernetes::cluster::render`].
fn render(args: &RenderArgs) -> Result<String, String> {
    use crate::backend::kubernetes::cluster;
    let text = if args.file.as_os_str() == "-" {
        let mut t = String::new();
        std::io::stdin()
            .read_to_string(&mut t)
            .map_err(|e| format!("cannot read standard input: {e}"))?;
        t
    } else {
        std::fs::read_to_string(&args.file)
            .map_err(|e| format!("cannot read {}: {e}", args.file.display()))?
    };
    // YAML is a superset of JSON: one parser reads both.
    let body: serde_json::Value = serde_yaml::from_str(&text)
        .map_err(|e| format!("{} is not JSON or YAML: {e}", args.file.display()))?;
    let versions = match &args.postgres_versions {
        Some(v) => crate::config::parse_versions(v)
            .map_err(|e| format!("bad setting PGPLANE_POSTGRES_VERSIONS: {e}"))?,
        None => crate::serve::KUBERNETES_POSTGRES_VERSIONS.to_vec(),
    };
    if crate::model::check_name(&args.namespace).is_err() {
        return Err(format!(
            "{:?} is not a Kubernetes namespace name",
            args.namespace
        ));
    }
    let limits = crate::model::Limits {
        postgres_versions: versions,
        max_storage_bytes: crate::model::DEFAULT_MAX_STORAGE_BYTES,
    };
    let spec =
        crate::model::parse_create(&body, &limits).map_err(|crate::model::Invalid(errors)| {
            let lines: Vec<String> = errors
                .iter()
                .map(|e| {
                    format!(
                        "  {}: {}",
                        if e.field.is_empty() {
                            "(body)"
                        } else {
                            &e.field
                        },
                        e.message
                    )
                })
                .collect();
            format!("the spec is invalid:\n{}", lines.join("\n"))
        })?;
    let object = cluster::render(
        &spec,
        &args.namespace,
        &cluster::Stamp {
            owner: args.owner.clone(),
            revision: 1,
            updated_at: None,
        },
    );
    serde_yaml::to_string(&object).map_err(|e| format!("cannot print the Cluster: {e}"))
}
