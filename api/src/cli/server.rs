//! The commands that run beside the server rather than against it:
//! `serve`, `hash-password`, `render` and `rbac`.

use std::io::Read;
use std::process::ExitCode;

use crate::config::{ServeArgs, Settings};

#[derive(clap::Args)]
pub struct RenderArgs {
    /// A database spec file, a directory of them (each *.yaml, *.yml and
    /// *.json in it, one database a file), or `-` for standard input.
    file: std::path::PathBuf,
    /// Where the spec is declared, recorded on the Cluster (default: the
    /// file's path in its git repository, else as given).
    #[arg(long)]
    declared_in: Option<String>,
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

/// Why a spec file gave no create body.
#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    #[error("cannot read {0}: {1}")]
    Read(String, #[source] std::io::Error),
    #[error("{0} is not JSON or YAML: {1}")]
    Parse(String, #[source] serde_yaml::Error),
}

/// A spec file (JSON or YAML, `-` for standard input) as the create body.
pub fn read_spec(file: &std::path::Path) -> Result<serde_json::Value, SpecError> {
    let text = if file.as_os_str() == "-" {
        let mut t = String::new();
        std::io::stdin()
            .read_to_string(&mut t)
            .map_err(|e| SpecError::Read("standard input".into(), e))?;
        t
    } else {
        std::fs::read_to_string(file).map_err(|e| SpecError::Read(file.display().to_string(), e))?
    };
    // YAML is a superset of JSON: one parser reads both.
    serde_yaml::from_str(&text).map_err(|e| SpecError::Parse(file.display().to_string(), e))
}

/// `pgplane render`: each spec through the same rules as `POST
/// /databases`, then [`crate::backend::kubernetes::cluster::render`],
/// marked as declared in git at the spec's path; one YAML document each.
fn render(args: &RenderArgs) -> Result<String, String> {
    use crate::backend::kubernetes::cluster;
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
    let files = spec_files(&args.file)?;
    if files.len() > 1 && args.declared_in.is_some() {
        return Err("--declared-in names one file's place: give a file, not a directory".into());
    }
    let mut problems = Vec::new();
    let mut seen: std::collections::BTreeMap<String, std::path::PathBuf> = Default::default();
    let mut documents = Vec::new();
    for file in &files {
        let body = match read_spec(file) {
            Ok(body) => body,
            Err(e) => {
                problems.push(e.to_string());
                continue;
            }
        };
        let declared_in = match &args.declared_in {
            Some(path) => Some(path.clone()),
            None if file.as_os_str() == "-" => None,
            None => Some(repository_path(file)),
        };
        let stamp = cluster::Stamp {
            source: crate::model::Source::Git,
            declared_in,
            ..cluster::Stamp::api(args.owner.clone(), 1, None)
        };
        let rendered = match crate::app::render::render(&body, &limits, &args.namespace, &stamp) {
            Ok(rendered) => rendered,
            Err(crate::model::Invalid(errors)) => {
                let lines = super::exit::field_lines(
                    errors
                        .iter()
                        .map(|e| (e.field.as_str(), e.message.as_str())),
                );
                problems.push(format!(
                    "{} is invalid:\n{}",
                    file.display(),
                    lines.join("\n")
                ));
                continue;
            }
        };
        if let Some(first) = seen.get(&rendered.name) {
            problems.push(format!(
                "database {} is declared twice: in {} and in {}",
                rendered.name,
                first.display(),
                file.display()
            ));
            continue;
        }
        seen.insert(rendered.name.clone(), file.clone());
        documents.push(rendered.yaml);
    }
    if !problems.is_empty() {
        return Err(problems.join("\n"));
    }
    Ok(documents.join("---\n"))
}

/// The spec files `path` names: itself, or each spec file in the directory,
/// by name.
fn spec_files(path: &std::path::Path) -> Result<Vec<std::path::PathBuf>, String> {
    if path.as_os_str() == "-" || !path.is_dir() {
        return Ok(vec![path.to_owned()]);
    }
    let entries =
        std::fs::read_dir(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let mut files = Vec::new();
    for entry in entries {
        let file = entry
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?
            .path();
        let spec = file
            .extension()
            .is_some_and(|e| e == "yaml" || e == "yml" || e == "json");
        if spec && file.is_file() {
            files.push(file);
        }
    }
    files.sort();
    if files.is_empty() {
        return Err(format!(
            "{} holds no spec file (*.yaml, *.yml, *.json)",
            path.display()
        ));
    }
    Ok(files)
}

/// A file's path from the root of the git repository it is in (the
/// nearest directory above it holding `.git`), else the path as given.
fn repository_path(file: &std::path::Path) -> String {
    let Ok(absolute) = file.canonicalize() else {
        return file.display().to_string();
    };
    let mut dir = absolute.parent();
    while let Some(d) = dir {
        if d.join(".git").exists() {
            if let Ok(relative) = absolute.strip_prefix(d) {
                return relative.display().to_string();
            }
        }
        dir = d.parent();
    }
    file.display().to_string()
}
