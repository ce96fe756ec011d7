//! The CLI's contexts: one entry per server a user logged in to, with its
//! token, in `$XDG_CONFIG_HOME/pgplane/config.yaml` (or
//! `~/.config/pgplane/config.yaml`). The file is written whole to a new
//! file of mode 0600 and renamed over the old one, so it is never readable
//! by others and never half-written.

use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::exit::CliError;

#[derive(Default, Serialize, Deserialize)]
pub struct Contexts {
    /// The context commands use when none is named.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current: Option<String>,
    #[serde(default)]
    pub contexts: Vec<Context>,
}

#[derive(Clone, Serialize, Deserialize)]
pub struct Context {
    pub name: String,
    pub server: String,
    pub username: String,
    /// Absent after `pgplane logout`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<DateTime<Utc>>,
}

impl std::fmt::Debug for Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context")
            .field("name", &self.name)
            .field("server", &self.server)
            .field("username", &self.username)
            .field("token", &self.token.as_ref().map(|_| "***"))
            .finish_non_exhaustive()
    }
}

/// Where the file is: under `XDG_CONFIG_HOME`, else `~/.config`.
pub fn path() -> Result<PathBuf, CliError> {
    let base = match std::env::var_os("XDG_CONFIG_HOME").filter(|v| !v.is_empty()) {
        Some(dir) => PathBuf::from(dir),
        None => match std::env::var_os("HOME").filter(|v| !v.is_empty()) {
            Some(home) => PathBuf::from(home).join(".config"),
            None => {
                return Err(CliError::Local(
                    "neither XDG_CONFIG_HOME nor HOME is set: cannot find the contexts file".into(),
                ))
            }
        },
    };
    Ok(base.join("pgplane").join("config.yaml"))
}

impl Contexts {
    pub fn load(path: &Path) -> Result<Contexts, CliError> {
        match std::fs::read_to_string(path) {
            Ok(text) => serde_yaml::from_str(&text).map_err(|e| {
                CliError::local(format!("{} is not a contexts file", path.display()), e)
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Contexts::default()),
            Err(e) => Err(CliError::local(
                format!("cannot read {}", path.display()),
                e,
            )),
        }
    }

    pub fn save(&self, path: &Path) -> Result<(), CliError> {
        let fail =
            |e: std::io::Error| CliError::local(format!("cannot write {}", path.display()), e);
        let dir = path.parent().expect("the contexts file is in a directory");
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(fail)?;
        let text = serde_yaml::to_string(self).expect("contexts serialize");
        let temporary = dir.join(format!(".config.yaml.{}", std::process::id()));
        let written = (|| {
            let mut file = std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&temporary)?;
            // A file left by an older run keeps its mode through `create`.
            file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
            file.write_all(text.as_bytes())?;
            file.sync_all()?;
            std::fs::rename(&temporary, path)
        })();
        if written.is_err() {
            let _ = std::fs::remove_file(&temporary);
        }
        written.map_err(fail)
    }

    pub fn get(&self, name: &str) -> Option<&Context> {
        self.contexts.iter().find(|c| c.name == name)
    }

    pub fn by_server(&self, server: &str) -> Option<&Context> {
        let server = server.trim_end_matches('/');
        self.contexts.iter().find(|c| c.server == server)
    }

    /// The named context, else the current one.
    pub fn chosen(&self, name: Option<&str>) -> Result<Option<&Context>, CliError> {
        match name {
            Some(name) => self.get(name).map(Some).ok_or_else(|| {
                CliError::Usage(format!("no context {name:?}: see pgplane context list"))
            }),
            None => Ok(self.current.as_deref().and_then(|c| self.get(c))),
        }
    }

    /// Adds or replaces a context and makes it the current one.
    pub fn put(&mut self, context: Context) {
        self.current = Some(context.name.clone());
        match self.contexts.iter_mut().find(|c| c.name == context.name) {
            Some(old) => *old = context,
            None => self.contexts.push(context),
        }
    }

    pub fn remove(&mut self, name: &str) -> bool {
        let before = self.contexts.len();
        self.contexts.retain(|c| c.name != name);
        if self.current.as_deref() == Some(name) {
            self.current = None;
        }
        self.contexts.len() != before
    }
}

/// A context's default name: the server's host and port.
pub fn name_for(server: &str) -> String {
    let rest = server
        .split_once("://")
        .map_or(server, |(_, rest)| rest)
        .trim_end_matches('/');
    rest.replace('/', "_")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_file_is_written_for_its_owner_only_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pgplane").join("config.yaml");
        let mut contexts = Contexts::default();
        contexts.put(Context {
            name: name_for("http://127.0.0.1:8080/"),
            server: "http://127.0.0.1:8080".into(),
            username: "admin".into(),
            token: Some("secret-token".into()),
            expires_at: None,
        });
        contexts.save(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let again = Contexts::load(&path).unwrap();
        assert_eq!(again.current.as_deref(), Some("127.0.0.1:8080"));
        assert_eq!(
            again
                .by_server("http://127.0.0.1:8080/")
                .unwrap()
                .token
                .as_deref(),
            Some("secret-token")
        );
        assert!(!format!("{:?}", again.get("127.0.0.1:8080").unwrap()).contains("secret"));
    }
}
