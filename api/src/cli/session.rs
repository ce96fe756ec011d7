//! Logging in and the contexts: which server a command talks to and with
//! which token. `PGPLANE_SERVER` and `PGPLANE_TOKEN` override the file, so
//! a CI job needs no login.

use std::io::{BufRead, IsTerminal, Write};
use std::process::ExitCode;

use chrono::{Duration as Span, Utc};
use clap::{Args, Subcommand};
use serde_json::{json, Value};

use super::contexts::{self, Context, Contexts};
use super::exit::CliError;
use super::output::{self, Format, Table};
use crate::client::{Call, Client};

/// The server used when nothing names one.
const DEFAULT_SERVER: &str = "http://127.0.0.1:8080";

/// Which server and token a command uses.
#[derive(Args, Clone, Default)]
pub struct Target {
    /// The context to use (default: the current one; see pgplane context list).
    #[arg(long, env = "PGPLANE_CONTEXT", global = true)]
    pub context: Option<String>,
    /// The server, overriding the context's (with PGPLANE_TOKEN, no context is needed).
    #[arg(long, env = "PGPLANE_SERVER", global = true)]
    pub server: Option<String>,
}

impl Target {
    /// A client with the token to use: `PGPLANE_TOKEN`, else the context's
    /// (named, of the server given, or current).
    pub fn client(&self) -> Result<Client, CliError> {
        let env_token = std::env::var("PGPLANE_TOKEN")
            .ok()
            .filter(|t| !t.is_empty());
        // A CI job gives both and may have no home directory: no file then.
        if let (Some(token), Some(server), None) = (&env_token, &self.server, &self.context) {
            return Ok(Client::new(server, Some(token.clone()))?);
        }
        let file = contexts::path()?;
        let all = Contexts::load(&file)?;
        let context = match (&self.context, &self.server) {
            (Some(name), _) => all.chosen(Some(name))?,
            (None, Some(server)) => all.by_server(server),
            (None, None) => all.chosen(None)?,
        };
        if let (Some(c), Some(server)) = (context, &self.server) {
            // A context's token is for its own server only.
            if c.server != server.trim_end_matches('/') {
                return Err(CliError::Usage(format!(
                    "context {} is for {}, not {server}: give one of --context and --server",
                    c.name, c.server
                )));
            }
        }
        let server = self
            .server
            .clone()
            .or_else(|| context.map(|c| c.server.clone()))
            .unwrap_or_else(|| DEFAULT_SERVER.to_owned());
        if let Some(token) = env_token {
            return Ok(Client::new(&server, Some(token))?);
        }
        let Some(context) = context.filter(|c| c.token.is_some()) else {
            return Err(CliError::NotLoggedIn(server));
        };
        if let Some(at) = context.expires_at.filter(|at| *at <= Utc::now()) {
            return Err(CliError::Expired {
                server,
                when: format!("at {}", at.format("%Y-%m-%d %H:%M:%S UTC")),
            });
        }
        Ok(Client::new(&server, context.token.clone())?)
    }
}

#[derive(Args)]
pub struct LoginArgs {
    /// The server (default: PGPLANE_SERVER, the current context's, or http://127.0.0.1:8080).
    #[arg(long, env = "PGPLANE_SERVER")]
    server: Option<String>,
    /// Asked for when standard input is a terminal.
    #[arg(long, short)]
    username: Option<String>,
    /// Name of the context to keep the token in (default: the server's host and port).
    #[arg(long)]
    context: Option<String>,
}

pub async fn login(args: LoginArgs) -> Result<ExitCode, CliError> {
    let file = contexts::path()?;
    let mut all = Contexts::load(&file)?;
    let server = args
        .server
        .or_else(|| all.chosen(None).ok().flatten().map(|c| c.server.clone()))
        .unwrap_or_else(|| DEFAULT_SERVER.to_owned());
    let client = Client::new(&server, None)?;
    let terminal = std::io::stdin().is_terminal();
    let username = match args.username {
        Some(u) => u,
        None if terminal => prompt("Username: ")?,
        None => {
            return Err(CliError::Usage(
                "give --username when standard input is not a terminal".into(),
            ))
        }
    };
    let password = if terminal {
        rpassword::prompt_password(format!("Password for {username} at {}: ", client.server()))
            .map_err(|e| CliError::local("cannot read the password", e))?
    } else {
        let mut line = String::new();
        std::io::stdin()
            .lock()
            .read_line(&mut line)
            .map_err(|e| CliError::local("cannot read the password from standard input", e))?;
        line.trim_end_matches(['\n', '\r']).to_owned()
    };
    if password.is_empty() {
        return Err(CliError::Usage("the password is empty".into()));
    }
    let body = json!({"username": username, "password": password});
    let answer = client
        .send(Call::new(reqwest::Method::POST, "/api/v1/auth/login").body(&body))
        .await?;
    let token = answer.body["access_token"]
        .as_str()
        .ok_or_else(|| {
            CliError::Local(format!(
                "{} answered a login without a token",
                client.server()
            ))
        })?
        .to_owned();
    let expires_in = answer.body["expires_in"].as_i64().unwrap_or(0);
    let me = client
        .with_token(token.clone())
        .get("/api/v1/auth/me")
        .await?;
    let expires_at = Utc::now() + Span::seconds(expires_in);
    let name = args
        .context
        .unwrap_or_else(|| contexts::name_for(client.server()));
    all.put(Context {
        name: name.clone(),
        server: client.server().to_owned(),
        username: username.clone(),
        token: Some(token),
        expires_at: Some(expires_at),
    });
    all.save(&file)?;
    eprintln!(
        "Logged in to {} as {username} ({}) until {}; context {name}.",
        client.server(),
        me["role"].as_str().unwrap_or("?"),
        expires_at.format("%H:%M UTC")
    );
    Ok(ExitCode::SUCCESS)
}

/// Asks on standard error; the line typed, trimmed.
pub(super) fn prompt(question: &str) -> Result<String, CliError> {
    eprint!("{question}");
    let _ = std::io::stderr().flush();
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .map_err(|e| CliError::local("cannot read standard input", e))?;
    Ok(line.trim().to_owned())
}

pub async fn logout(target: Target) -> Result<ExitCode, CliError> {
    let file = contexts::path()?;
    let mut all = Contexts::load(&file)?;
    let name = match (&target.context, &target.server) {
        (Some(name), _) => all.chosen(Some(name))?.map(|c| c.name.clone()),
        (None, Some(server)) => all.by_server(server).map(|c| c.name.clone()),
        (None, None) => all.chosen(None)?.map(|c| c.name.clone()),
    };
    let Some(name) = name else {
        return Err(CliError::Usage("no context to log out of".into()));
    };
    if let Some(c) = all.contexts.iter_mut().find(|c| c.name == name) {
        // The server keeps no sessions: forgetting the token is the logout.
        c.token = None;
        c.expires_at = None;
    }
    all.save(&file)?;
    eprintln!("Logged out of {name}.");
    Ok(ExitCode::SUCCESS)
}

pub async fn whoami(target: Target) -> Result<ExitCode, CliError> {
    let client = target.client()?;
    let me = client.get("/api/v1/auth/me").await?;
    println!(
        "{} ({}) at {}",
        me["username"].as_str().unwrap_or("?"),
        me["role"].as_str().unwrap_or("?"),
        client.server()
    );
    Ok(ExitCode::SUCCESS)
}

#[derive(Subcommand)]
pub enum ContextCommand {
    /// Every context, the current one marked.
    List {
        #[arg(short, long, value_enum, default_value = "table")]
        output: Format,
    },
    /// Make a context the current one.
    Use { name: String },
    /// Forget a context and its token.
    Delete { name: String },
}

pub async fn context(command: ContextCommand) -> Result<ExitCode, CliError> {
    let file = contexts::path()?;
    let mut all = Contexts::load(&file)?;
    match command {
        ContextCommand::List { output } => {
            let now = Utc::now();
            // Never the token itself: a listing is often pasted.
            let items: Vec<Value> = all
                .contexts
                .iter()
                .map(|c| {
                    json!({
                        "name": c.name,
                        "current": all.current.as_deref() == Some(c.name.as_str()),
                        "server": c.server,
                        "username": c.username,
                        "logged_in": c.token.is_some() && c.expires_at.is_none_or(|at| at > now),
                        "expires_at": c.expires_at,
                    })
                })
                .collect();
            output::print(&json!({"items": items}), output, |v| {
                let mut t = Table::new(&["CURRENT", "NAME", "SERVER", "USER", "LOGGED IN"]);
                for c in v["items"].as_array().into_iter().flatten() {
                    t.row(vec![
                        if c["current"] == true {
                            "*".into()
                        } else {
                            String::new()
                        },
                        output::cell(c, "name"),
                        output::cell(c, "server"),
                        output::cell(c, "username"),
                        if c["logged_in"] == true {
                            "yes".into()
                        } else {
                            "no".into()
                        },
                    ]);
                }
                t
            });
        }
        ContextCommand::Use { name } => {
            all.chosen(Some(&name))?;
            all.current = Some(name.clone());
            all.save(&file)?;
            eprintln!("Using context {name}.");
        }
        ContextCommand::Delete { name } => {
            if !all.remove(&name) {
                return Err(CliError::Usage(format!(
                    "no context {name:?}: see pgplane context list"
                )));
            }
            all.save(&file)?;
            eprintln!("Deleted context {name}.");
        }
    }
    Ok(ExitCode::SUCCESS)
}
