//! `pgplane db …` and `pgplane audit`: every database operation of the
//! API, printed as a table, JSON or YAML.

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use chrono::Utc;
use clap::{Args, Subcommand, ValueEnum};
use reqwest::Method;
use serde_json::{json, Map, Value};

use super::exit::CliError;
use super::output::{self, Format, Table};
use super::session::Target;
use super::wait::{self, Goal};
use crate::client::{Backoff, Call, Client};

/// Databases per page when listing them all (the API's largest page).
const PAGE: usize = 500;

#[derive(Args)]
pub struct DbArgs {
    #[command(flatten)]
    target: Target,
    /// How to print resources: a table, or the API's own objects as JSON or YAML.
    #[arg(short, long, value_enum, default_value = "table", global = true)]
    output: Format,
    #[command(subcommand)]
    command: DbCommand,
}

#[derive(Args, Clone, Copy)]
struct WaitArgs {
    /// Follow the database's changes until the change is done (healthy, or gone).
    #[arg(long)]
    wait: bool,
    /// With --wait: give up after this long (90s, 10m, 1h).
    #[arg(long, default_value = "10m", value_parser = wait::parse_timeout)]
    timeout: Duration,
}

#[derive(Subcommand)]
enum DbCommand {
    /// Every database (with --watch, then each change as it happens).
    List {
        /// Only databases with this label (k=v; repeat for all of several).
        #[arg(long = "label", value_parser = pair)]
        labels: Vec<(String, String)>,
        #[arg(long, short)]
        watch: bool,
    },
    /// One database.
    Get { name: String },
    /// Create a database, from flags or a spec file (the file `pgplane render` reads).
    Create(CreateArgs),
    /// Change a database: only what is given changes.
    Update(UpdateArgs),
    /// Delete a database and its data (asks first on a terminal, unless --yes).
    Delete {
        name: String,
        #[arg(long, short)]
        yes: bool,
        #[command(flatten)]
        wait: WaitArgs,
    },
    /// The application role's connection details (an audited read).
    Credentials {
        name: String,
        /// Print the password too (hidden otherwise).
        #[arg(long)]
        show_password: bool,
        /// Print one form instead of the whole object.
        #[arg(long, value_enum)]
        format: Option<CredentialsFormat>,
    },
    /// Run psql connected to the database (the password goes through the environment).
    Psql {
        name: String,
        /// Arguments for psql, after `--`.
        #[arg(last = true)]
        args: Vec<String>,
    },
    /// The database's state transitions (with --follow, then each new one).
    Events {
        name: String,
        #[arg(long, short)]
        follow: bool,
        /// Only events at or after this RFC 3339 time.
        #[arg(long)]
        since: Option<String>,
        /// At most this many of the stored ones (1 to 1000).
        #[arg(long)]
        limit: Option<u32>,
    },
    /// Every instance: role, state, readiness, timeline, lag.
    Instances { name: String },
    /// Every revision of the database's spec, newest first.
    Revisions { name: String },
    /// Take an existing CloudNativePG Cluster under management (admin; kubernetes backend).
    Adopt { name: String },
    /// Give a database back: pgplane's marks go, the Cluster stays (admin; kubernetes backend).
    Release { name: String },
    /// Make an earlier revision's spec the next revision (storage is kept).
    Rollback {
        name: String,
        revision: u64,
        /// Only if the database is still at this revision.
        #[arg(long)]
        if_match: Option<u64>,
        #[command(flatten)]
        wait: WaitArgs,
    },
}

#[derive(Args)]
struct CreateArgs {
    /// The database's name (or the spec file's).
    name: Option<String>,
    /// A spec file, JSON or YAML (`-` for standard input); flags override its fields.
    #[arg(short = 'f', long = "file")]
    file: Option<PathBuf>,
    #[arg(long)]
    instances: Option<u32>,
    /// Like 10Gi.
    #[arg(long)]
    storage: Option<String>,
    /// The PostgreSQL major.
    #[arg(long = "version", id = "postgres_version")]
    postgres_version: Option<u32>,
    /// A PostgreSQL parameter, k=v (repeat).
    #[arg(long = "param", value_parser = pair)]
    params: Vec<(String, String)>,
    /// A label, k=v (repeat).
    #[arg(long = "label", value_parser = pair)]
    labels: Vec<(String, String)>,
    #[command(flatten)]
    wait: WaitArgs,
}

#[derive(Args)]
struct UpdateArgs {
    name: String,
    #[arg(long)]
    instances: Option<u32>,
    /// Like 20Gi (storage only grows).
    #[arg(long)]
    storage: Option<String>,
    /// Set a PostgreSQL parameter, k=v (repeat).
    #[arg(long = "param", value_parser = pair)]
    params: Vec<(String, String)>,
    /// Remove a parameter (back to PostgreSQL's default).
    #[arg(long = "unset-param")]
    unset_params: Vec<String>,
    /// Set a label, k=v (repeat).
    #[arg(long = "label", value_parser = pair)]
    labels: Vec<(String, String)>,
    #[arg(long = "unset-label")]
    unset_labels: Vec<String>,
    /// Only if the database is still at this revision (else exit 8).
    #[arg(long)]
    if_match: Option<u64>,
    #[command(flatten)]
    wait: WaitArgs,
}

#[derive(Clone, Copy, ValueEnum)]
enum CredentialsFormat {
    Uri,
    Jdbc,
    Env,
}

fn pair(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_owned(), v.to_owned())),
        _ => Err(format!("{text:?} is not key=value")),
    }
}

fn path(name: &str, tail: &str) -> String {
    // A name with characters a URL path cannot carry is refused by the
    // server anyway; encoding keeps it from naming another route.
    let name: String = name
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect();
    format!("/api/v1/databases/{name}{tail}")
}

pub async fn run(args: DbArgs) -> Result<ExitCode, CliError> {
    let client = args.target.client()?;
    let out = args.output;
    match args.command {
        DbCommand::List { labels, watch } => list(&client, &labels, watch, out).await,
        DbCommand::Get { name } => {
            let db = client.get(&path(&name, "")).await?;
            print_database(&db, out);
            Ok(ExitCode::SUCCESS)
        }
        DbCommand::Create(c) => create(&client, c, out).await,
        DbCommand::Update(u) => update(&client, u, out).await,
        DbCommand::Delete { name, yes, wait } => delete(&client, &name, yes, wait).await,
        DbCommand::Credentials {
            name,
            show_password,
            format,
        } => credentials(&client, &name, show_password, format, out).await,
        DbCommand::Psql { name, args } => psql(&client, &name, &args).await,
        DbCommand::Events {
            name,
            follow,
            since,
            limit,
        } => events(&client, &name, follow, since, limit, out).await,
        DbCommand::Instances { name } => {
            let list = client.get(&path(&name, "/instances")).await?;
            output::print(&list, out, instances_table);
            Ok(ExitCode::SUCCESS)
        }
        DbCommand::Revisions { name } => {
            let items = client
                .list_all(&path(&name, "/revisions"), &[], 100)
                .await?;
            output::print(&json!({ "items": items }), out, revisions_table);
            Ok(ExitCode::SUCCESS)
        }
        DbCommand::Rollback {
            name,
            revision,
            if_match,
            wait,
        } => rollback(&client, &name, revision, if_match, wait, out).await,
        DbCommand::Adopt { name } => {
            let at = path(&name, "/adopt");
            let answer = client.send(Call::new(Method::POST, &at)).await?;
            for field in answer.body["left_alone"].as_array().into_iter().flatten() {
                eprintln!("left alone: {}", field.as_str().unwrap_or_default());
            }
            print_database(&answer.body, out);
            Ok(ExitCode::SUCCESS)
        }
        DbCommand::Release { name } => {
            let at = path(&name, "/release");
            client.send(Call::new(Method::POST, &at)).await?;
            eprintln!("{name} is released: pgplane no longer manages it");
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn print_database(db: &Value, out: Format) {
    output::print(db, out, |db| {
        let mut t = Table::new(output::DATABASE_HEADERS);
        t.row(output::database_row(db, Utc::now()));
        t
    });
}

async fn list(
    client: &Client,
    labels: &[(String, String)],
    watch: bool,
    out: Format,
) -> Result<ExitCode, CliError> {
    let query: Vec<(&str, String)> = labels
        .iter()
        .map(|(k, v)| ("label", format!("{k}={v}")))
        .collect();
    if !watch {
        let items = client.list_all("/api/v1/databases", &query, PAGE).await?;
        output::print(&json!({ "items": items }), out, |v| {
            output::databases(v["items"].as_array().map_or(&[], Vec::as_slice))
        });
        return Ok(ExitCode::SUCCESS);
    }
    let mut query = query;
    query.push(("watch", "true".into()));
    let mut stream = client.stream("/api/v1/databases", &query, None).await?;
    // The first rows (the snapshot) set the columns' widths; later rows
    // widen them only when they must.
    let mut widths: Option<Vec<usize>> = None;
    // One line per change: a table row (header once), or one JSON object
    // per line (`{"type": …, "object": …}`, as a Kubernetes watch prints).
    while let Some(event) = stream.next().await? {
        let body: Value = serde_json::from_str(&event.data).unwrap_or_default();
        let (kind, items) = match event.name.as_str() {
            "snapshot" => (
                "snapshot",
                body["items"].as_array().cloned().unwrap_or_default(),
            ),
            "changed" => ("changed", vec![body]),
            "deleted" => ("deleted", vec![body]),
            "expired" => {
                return Err(CliError::Expired {
                    server: client.server().to_owned(),
                    when: "during the watch".into(),
                })
            }
            "end" => {
                return Err(CliError::Local(
                    "the server is shutting down: the watch ended".into(),
                ))
            }
            "resync" => {
                return Err(CliError::Local(
                    "this watch fell behind the changes and was cut off: run it again".into(),
                ))
            }
            _ => continue,
        };
        match out {
            Format::Table => {
                let mut headers = vec!["EVENT"];
                headers.extend_from_slice(output::DATABASE_HEADERS);
                let mut t = Table::new(&headers);
                let now = Utc::now();
                for db in &items {
                    let mut row = vec![kind.to_owned()];
                    row.extend(output::database_row(db, now));
                    t.row(row);
                }
                let first = widths.is_none();
                let w = t.widths(widths.as_deref().unwrap_or_default());
                let text = t.render_in(w.clone(), None);
                widths = Some(w);
                for line in text.lines().skip(usize::from(!first)) {
                    println!("{line}");
                }
            }
            Format::Json | Format::Yaml => {
                for db in items {
                    let line = json!({"type": kind, "object": db});
                    if out == Format::Json {
                        println!("{line}");
                    } else {
                        print!(
                            "---\n{}",
                            serde_yaml::to_string(&line).expect("YAML prints")
                        );
                    }
                }
            }
        }
        let _ = std::io::stdout().flush();
    }
    Err(CliError::Local(format!(
        "{} closed the watch",
        client.server()
    )))
}

async fn create(client: &Client, c: CreateArgs, out: Format) -> Result<ExitCode, CliError> {
    let mut body = match &c.file {
        Some(file) => super::server::read_spec(file).map_err(|e| match e {
            super::server::SpecError::Read(..) => CliError::Local(e.to_string()),
            super::server::SpecError::Parse(..) => CliError::Usage(e.to_string()),
        })?,
        None => json!({}),
    };
    let Some(spec) = body.as_object_mut() else {
        return Err(CliError::Usage("the spec file must hold an object".into()));
    };
    match (&c.name, spec.get("name").and_then(Value::as_str)) {
        (Some(a), Some(b)) if a != b => {
            return Err(CliError::Usage(format!(
                "the name {a:?} differs from the spec file's {b:?}"
            )))
        }
        (Some(name), _) => {
            spec.insert("name".into(), json!(name));
        }
        (None, Some(_)) => {}
        (None, None) => return Err(CliError::Usage("give the database's name".into())),
    }
    if let Some(n) = c.instances {
        spec.insert("instances".into(), json!(n));
    }
    if let Some(s) = &c.storage {
        spec.insert("storage".into(), json!(s));
    }
    if let Some(v) = c.postgres_version {
        spec.insert("postgres_version".into(), json!(v));
    }
    put_pairs(spec, "parameters", &c.params);
    put_pairs(spec, "labels", &c.labels);
    let started = Instant::now();
    let answer = client
        .send(Call::new(Method::POST, "/api/v1/databases").body(&body))
        .await?;
    finish(client, answer.body, c.wait, started, out).await
}

fn put_pairs(spec: &mut Map<String, Value>, key: &str, pairs: &[(String, String)]) {
    if pairs.is_empty() {
        return;
    }
    let map = spec.entry(key).or_insert_with(|| json!({})).as_object_mut();
    if let Some(map) = map {
        for (k, v) in pairs {
            map.insert(k.clone(), json!(v));
        }
    }
}

/// After a change: waits when asked, then prints the database.
async fn finish(
    client: &Client,
    db: Value,
    w: WaitArgs,
    started: Instant,
    out: Format,
) -> Result<ExitCode, CliError> {
    let name = db["name"].as_str().unwrap_or_default().to_owned();
    let db = if w.wait {
        let revision = db["revision"].as_u64().unwrap_or(0);
        let reached = wait::wait(client, &name, Goal::Healthy { revision }, w.timeout)
            .await?
            .unwrap_or(db);
        eprintln!(
            "{name} is healthy, {}/{} ready, after {}",
            reached["ready_instances"],
            reached["instances"],
            wait::humanize(started.elapsed())
        );
        reached
    } else {
        db
    };
    print_database(&db, out);
    Ok(ExitCode::SUCCESS)
}

async fn update(client: &Client, u: UpdateArgs, out: Format) -> Result<ExitCode, CliError> {
    let mut patch = Map::new();
    if let Some(n) = u.instances {
        patch.insert("instances".into(), json!(n));
    }
    if let Some(s) = &u.storage {
        patch.insert("storage".into(), json!(s));
    }
    for (key, set, unset) in [
        ("parameters", &u.params, &u.unset_params),
        ("labels", &u.labels, &u.unset_labels),
    ] {
        let mut map: BTreeMap<&str, Value> = BTreeMap::new();
        for (k, v) in set {
            map.insert(k, json!(v));
        }
        for k in unset {
            // null removes the key in a merge patch.
            map.insert(k, Value::Null);
        }
        if !map.is_empty() {
            patch.insert(key.into(), json!(map));
        }
    }
    if patch.is_empty() {
        return Err(CliError::Usage(
            "nothing to change: give --instances, --storage, --param, --unset-param, --label or --unset-label".into(),
        ));
    }
    let patch = Value::Object(patch);
    let started = Instant::now();
    let db_path = path(&u.name, "");
    let answer = client
        .send(
            Call::new(Method::PATCH, &db_path)
                .merge_patch(&patch)
                .if_match(u.if_match),
        )
        .await?;
    finish(client, answer.body, u.wait, started, out).await
}

async fn rollback(
    client: &Client,
    name: &str,
    revision: u64,
    if_match: Option<u64>,
    w: WaitArgs,
    out: Format,
) -> Result<ExitCode, CliError> {
    let body = json!({ "revision": revision });
    let started = Instant::now();
    let at = path(name, "/rollback");
    let answer = client
        .send(Call::new(Method::POST, &at).body(&body).if_match(if_match))
        .await?;
    if let Some(storage) = answer.body["kept"]["storage"].as_str() {
        eprintln!("kept storage {storage}: storage never shrinks");
    }
    finish(client, answer.body, w, started, out).await
}

async fn delete(client: &Client, name: &str, yes: bool, w: WaitArgs) -> Result<ExitCode, CliError> {
    if !yes && std::io::stdin().is_terminal() {
        let typed = super::session::prompt(&format!(
            "Delete database {name} and all its data? Type its name to confirm: "
        ))?;
        if typed != name {
            return Err(CliError::Usage(format!(
                "not deleted: {typed:?} is not {name:?}"
            )));
        }
    }
    let started = Instant::now();
    let answer = client
        .send(Call::new(Method::DELETE, &path(name, "")))
        .await?;
    if answer.status == reqwest::StatusCode::NO_CONTENT {
        eprintln!("{name} was already gone");
        return Ok(ExitCode::SUCCESS);
    }
    if w.wait {
        wait::wait(client, name, Goal::Gone, w.timeout).await?;
        eprintln!(
            "{name} is gone, after {}",
            wait::humanize(started.elapsed())
        );
    } else {
        eprintln!("{name} is being deleted");
    }
    Ok(ExitCode::SUCCESS)
}

/// The URI without its password.
fn uri_without_password(uri: &str) -> String {
    match uri.split_once("://") {
        Some((scheme, rest)) => match rest.split_once('@') {
            Some((userinfo, host)) => {
                let user = userinfo.split(':').next().unwrap_or_default();
                format!("{scheme}://{user}@{host}")
            }
            None => uri.to_owned(),
        },
        None => uri.to_owned(),
    }
}

/// The JDBC URI without its `password` parameter.
fn jdbc_without_password(uri: &str) -> String {
    match uri.split_once('?') {
        Some((base, query)) => {
            let kept: Vec<&str> = query
                .split('&')
                .filter(|p| !p.starts_with("password="))
                .collect();
            if kept.is_empty() {
                base.to_owned()
            } else {
                format!("{base}?{}", kept.join("&"))
            }
        }
        None => uri.to_owned(),
    }
}

/// A value for a POSIX shell, single-quoted.
fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

async fn credentials(
    client: &Client,
    name: &str,
    show: bool,
    format: Option<CredentialsFormat>,
    out: Format,
) -> Result<ExitCode, CliError> {
    let mut c = client.get(&path(name, "/credentials")).await?;
    if !show {
        let uri = uri_without_password(c["uri"].as_str().unwrap_or_default());
        let jdbc = jdbc_without_password(c["jdbc_uri"].as_str().unwrap_or_default());
        c["uri"] = json!(uri);
        c["jdbc_uri"] = json!(jdbc);
        if let Some(map) = c.as_object_mut() {
            map.remove("password");
        }
    }
    let text = |key: &str| c[key].as_str().unwrap_or_default().to_owned();
    match format {
        Some(CredentialsFormat::Uri) => println!("{}", text("uri")),
        Some(CredentialsFormat::Jdbc) => println!("{}", text("jdbc_uri")),
        Some(CredentialsFormat::Env) => {
            println!("PGHOST={}", shell_quote(&text("host")));
            println!("PGPORT={}", c["port"]);
            println!("PGDATABASE={}", shell_quote(&text("dbname")));
            println!("PGUSER={}", shell_quote(&text("username")));
            if show {
                println!("PGPASSWORD={}", shell_quote(&text("password")));
            }
        }
        None => output::print(&c, out, |c| {
            let mut t = Table::new(&["HOST", "PORT", "DBNAME", "USERNAME", "PASSWORD"]);
            t.row(vec![
                output::cell(c, "host"),
                output::cell(c, "port"),
                output::cell(c, "dbname"),
                output::cell(c, "username"),
                if show {
                    output::cell(c, "password")
                } else {
                    "(hidden: --show-password)".into()
                },
            ]);
            t
        }),
    }
    Ok(ExitCode::SUCCESS)
}

async fn psql(client: &Client, name: &str, args: &[String]) -> Result<ExitCode, CliError> {
    let c = client.get(&path(name, "/credentials")).await?;
    let text = |key: &str| c[key].as_str().unwrap_or_default().to_owned();
    let program = std::env::var_os("PGPLANE_PSQL").unwrap_or_else(|| "psql".into());
    // The password only in the environment: a command line is visible to
    // every user of the machine.
    let error = std::process::Command::new(&program)
        .env("PGHOST", text("host"))
        .env("PGPORT", c["port"].to_string())
        .env("PGDATABASE", text("dbname"))
        .env("PGUSER", text("username"))
        .env("PGPASSWORD", text("password"))
        .args(args)
        .exec();
    Err(CliError::local(
        format!("cannot run {}", program.to_string_lossy()),
        error,
    ))
}

fn event_row(e: &Value) -> Vec<String> {
    vec![
        output::cell(e, "ts"),
        format!("{} -> {}", output::cell(e, "from"), output::cell(e, "to")),
        format!(
            "{}/{}",
            output::cell(e, "ready_instances"),
            output::cell(e, "instances")
        ),
        output::cell(e, "phase"),
    ]
}

const EVENT_HEADERS: &[&str] = &["TIME", "STATE", "READY", "PHASE"];

async fn events(
    client: &Client,
    name: &str,
    follow: bool,
    since: Option<String>,
    limit: Option<u32>,
    out: Format,
) -> Result<ExitCode, CliError> {
    let at = path(name, "/events");
    let mut query: Vec<(&str, String)> = Vec::new();
    if let Some(s) = since {
        query.push(("since", s));
    }
    if let Some(l) = limit {
        query.push(("limit", l.to_string()));
    }
    if !follow {
        let mut call = Call::get(&at);
        for (k, v) in &query {
            call = call.query(k, v.clone());
        }
        let page = client.send(call).await?.body;
        output::print(&page, out, |p| {
            let mut t = Table::new(EVENT_HEADERS);
            for e in p["items"].as_array().into_iter().flatten() {
                t.row(event_row(e));
            }
            t
        });
        return Ok(ExitCode::SUCCESS);
    }
    query.push(("follow", "true".into()));
    if out == Format::Table {
        println!("{}", Table::new(EVENT_HEADERS).render(None).trim_end());
    }
    // Followed until interrupted; a dropped stream resumes after the last
    // event shown, so none is shown twice or missed.
    let mut last_id: Option<String> = None;
    let mut backoff = Backoff::default();
    loop {
        let resume: Vec<(&str, String)> = if last_id.is_some() {
            vec![("follow", "true".into())]
        } else {
            query.clone()
        };
        match client.stream(&at, &resume, last_id.as_deref()).await {
            Ok(mut stream) => {
                backoff.reset();
                while let Ok(Some(event)) = stream.next().await {
                    match event.name.as_str() {
                        "service_event" => {
                            let e: Value = serde_json::from_str(&event.data).unwrap_or_default();
                            match out {
                                Format::Table => {
                                    let mut t = Table::new(EVENT_HEADERS);
                                    t.row(event_row(&e));
                                    let text = t.render(None);
                                    println!("{}", text.lines().nth(1).unwrap_or_default());
                                }
                                Format::Json => println!("{e}"),
                                Format::Yaml => {
                                    print!(
                                        "---\n{}",
                                        serde_yaml::to_string(&e).expect("YAML prints")
                                    )
                                }
                            }
                            let _ = std::io::stdout().flush();
                            if event.id.is_some() {
                                last_id = event.id;
                            }
                        }
                        "expired" => {
                            return Err(CliError::Expired {
                                server: client.server().to_owned(),
                                when: "while following".into(),
                            })
                        }
                        _ => break,
                    }
                }
            }
            Err(e) if !e.retriable() => return Err(e.into()),
            Err(_) => {}
        }
        backoff.wait().await;
    }
}

fn instances_table(list: &Value) -> Table {
    let mut t = Table::new(&["NAME", "ROLE", "STATE", "READY", "TIMELINE", "LAG"]);
    for i in list["items"].as_array().into_iter().flatten() {
        t.row(vec![
            output::cell(i, "name"),
            output::cell(i, "role"),
            output::cell(i, "state"),
            if i["ready"] == true { "yes" } else { "no" }.into(),
            output::cell(i, "timeline"),
            match i["lag_bytes"].as_u64() {
                Some(b) => format!("{b} B"),
                None => "-".into(),
            },
        ]);
    }
    t
}

fn revisions_table(list: &Value) -> Table {
    let mut t = Table::new(&["REVISION", "KIND", "FROM", "BY", "AT", "CHANGES"]);
    for r in list["items"].as_array().into_iter().flatten() {
        let changes = r["changes"]
            .as_object()
            .map(|m| m.keys().cloned().collect::<Vec<_>>().join(","))
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| "-".into());
        t.row(vec![
            output::cell(r, "revision"),
            output::cell(r, "kind"),
            output::cell(r, "from"),
            output::cell(r, "by"),
            output::cell(r, "at"),
            changes,
        ]);
    }
    t
}

#[derive(Args)]
pub struct AuditArgs {
    #[command(flatten)]
    target: Target,
    #[arg(short, long, value_enum, default_value = "table")]
    output: Format,
    /// Only this database's records (editors may read these; the whole trail is for admins).
    #[arg(long)]
    database: Option<String>,
    /// Only this username.
    #[arg(long)]
    actor: Option<String>,
    /// Only this action, such as database.create.
    #[arg(long)]
    action: Option<String>,
    /// Records at or after this RFC 3339 time.
    #[arg(long)]
    since: Option<String>,
    /// Records before this RFC 3339 time.
    #[arg(long)]
    until: Option<String>,
    /// At most this many, newest first.
    #[arg(long, default_value = "100")]
    limit: usize,
}

pub async fn audit(a: AuditArgs) -> Result<ExitCode, CliError> {
    let client = a.target.client()?;
    let at = match &a.database {
        Some(name) => path(name, "/audit"),
        None => "/api/v1/audit".into(),
    };
    let mut query: Vec<(&str, String)> = Vec::new();
    for (key, value) in [
        ("actor", &a.actor),
        ("action", &a.action),
        ("since", &a.since),
        ("until", &a.until),
    ] {
        if let Some(v) = value {
            query.push((key, v.clone()));
        }
    }
    // Pages of the API's largest size, newest first, up to --limit.
    let items = client.list_up_to(&at, &query, 1000, a.limit).await?;
    output::print(&json!({ "items": items }), a.output, |v| {
        let mut t = Table::new(&["TIME", "ACTOR", "ACTION", "DATABASE", "OUTCOME", "STATUS"]);
        for r in v["items"].as_array().into_iter().flatten() {
            t.row(vec![
                output::cell(r, "ts"),
                output::cell(r, "actor"),
                output::cell(r, "action"),
                output::cell(r, "database"),
                output::cell(r, "outcome"),
                output::cell(r, "status"),
            ]);
        }
        t
    });
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_leave_the_uris() {
        assert_eq!(
            uri_without_password("postgresql://app:p%40ss@127.0.0.1:5432/app"),
            "postgresql://app@127.0.0.1:5432/app"
        );
        assert_eq!(
            jdbc_without_password("jdbc:postgresql://h:5432/app?user=app&password=p%26"),
            "jdbc:postgresql://h:5432/app?user=app"
        );
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
    }
}
