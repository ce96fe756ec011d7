//! The commands that run beside the server rather than against it:
//! `serve`, `hash-password`, `render` and `rbac`.

use std::io::Read;
use std::process::ExitCode;

use crate::config::{ServeArgs, Settings};

#[derive(clap::Args)]
pub struct RenderArgs {
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

pub fn serve(args: ServeArgs) -> ExitCode {
    let settings = match Settings::from_args(args) {
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

pub fn hash_password() -> ExitCode {
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

pub fn render_command(args: &RenderArgs) -> ExitCode {
    match render(args) {
        Ok(yaml) => {
            print!("{yaml}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("pgplane: {e}");
            ExitCode::from(2)
        }
    }
}

pub fn rbac(namespace: &str) -> ExitCode {
    if crate::model::check_name(namespace).is_err() {
        eprintln!("pgplane: {namespace:?} is not a Kubernetes namespace name");
        return ExitCode::from(2);
    }
    print!("{}", crate::backend::kubernetes::rbac::role_yaml(namespace));
    ExitCode::SUCCESS
}

/// A spec file (JSON or YAML, `-` for standard input) as the create body.
pub fn read_spec(file: &std::path::Path) -> Result<serde_json::Value, String> {
    let text = if file.as_os_str() == "-" {
        let mut t = String::new();
        std::io::stdin()
            .read_to_string(&mut t)
            .map_err(|e| format!("cannot read standard input: {e}"))?;
        t
    } else {
        std::fs::read_to_string(file).map_err(|e| format!("cannot read {}: {e}", file.display()))?
    };
    // YAML is a superset of JSON: one parser reads both.
    serde_yaml::from_str(&text).map_err(|e| format!("{} is not JSON or YAML: {e}", file.display()))
}

/// `pgplane render`: the spec through the same rules as `POST /databases`,
/// then [`crate::backend::kubernetes::cluster::render`].
fn render(args: &RenderArgs) -> Result<String, String> {
    use crate::backend::kubernetes::cluster;
    let body = read_spec(&args.file)?;
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
