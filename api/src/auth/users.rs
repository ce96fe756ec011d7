//! Who may log in, with which role: the users file, or the one bootstrap
//! `admin` whose password is set or generated on first start.

use std::collections::HashMap;
use std::path::Path;

use serde::Deserialize;

use super::password;
use crate::config::UsersSource;
use crate::model::Role;
use crate::secret::{random_token, Secret};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct User {
    pub username: String,
    pub password_hash: String,
    pub role: Role,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct UsersFile {
    users: Vec<User>,
}

/// The users, by name.
#[derive(Debug, Clone)]
pub struct Users {
    by_name: HashMap<String, User>,
}

#[derive(Debug, thiserror::Error)]
pub enum UsersError {
    #[error("cannot read {path}")]
    Read {
        path: String,
        #[source]
        cause: std::io::Error,
    },
    #[error("cannot write {path}")]
    Write {
        path: String,
        #[source]
        cause: std::io::Error,
    },
    #[error("{path} is not a users file: {cause}")]
    Parse { path: String, cause: String },
    #[error("{0}")]
    Invalid(String),
}

/// The bootstrap admin's password, when this start generated it: shown once.
pub struct Generated(pub Secret<String>);

impl Users {
    pub fn get(&self, username: &str) -> Option<&User> {
        self.by_name.get(username)
    }

    pub fn from_yaml(text: &str, path: &str) -> Result<Users, UsersError> {
        let file: UsersFile = serde_yaml::from_str(text).map_err(|e| UsersError::Parse {
            path: path.to_owned(),
            cause: e.to_string().lines().next().unwrap_or_default().to_owned(),
        })?;
        let mut by_name = HashMap::new();
        for user in file.users {
            if user.username.is_empty()
                || user.username.len() > 64
                || user
                    .username
                    .chars()
                    .any(|c| c.is_control() || c.is_whitespace())
            {
                return Err(UsersError::Invalid(format!(
                    "{path}: username {:?} is empty, too long or has spaces",
                    user.username
                )));
            }
            if !password::is_valid_hash(&user.password_hash) {
                return Err(UsersError::Invalid(format!(
                    "{path}: user {} has a password_hash that is not an argon2 hash (make one with `pgplane hash-password`)",
                    user.username
                )));
            }
            if by_name
                .insert(user.username.clone(), user.clone())
                .is_some()
            {
                return Err(UsersError::Invalid(format!(
                    "{path}: user {} appears twice",
                    user.username
                )));
            }
        }
        if by_name.is_empty() {
            return Err(UsersError::Invalid(format!("{path}: has no users")));
        }
        Ok(Users { by_name })
    }

    /// Loads the users the settings name. For the bootstrap admin without a
    /// set password, the hash is kept in `data_dir/admin-password.hash`; a
    /// first start generates the password and returns it to be shown once.
    pub fn load(
        source: &UsersSource,
        data_dir: &Path,
    ) -> Result<(Users, Option<Generated>), UsersError> {
        match source {
            UsersSource::File(path) => {
                let shown = path.display().to_string();
                let text = std::fs::read_to_string(path).map_err(|cause| UsersError::Read {
                    path: shown.clone(),
                    cause,
                })?;
                Ok((Users::from_yaml(&text, &shown)?, None))
            }
            UsersSource::BootstrapAdmin(Some(pw)) => {
                Ok((Users::admin(password::hash(pw.expose())), None))
            }
            UsersSource::BootstrapAdmin(None) => {
                let path = data_dir.join("admin-password.hash");
                let shown = path.display().to_string();
                match std::fs::read_to_string(&path) {
                    Ok(hash) if password::is_valid_hash(hash.trim()) => Ok((Users::admin(hash.trim().to_owned()), None)),
                    Ok(_) => Err(UsersError::Invalid(format!("{shown} does not hold an argon2 hash; remove it to generate a new admin password"))),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                        let pw = random_token(24);
                        let hash = password::hash(&pw);
                        crate::files::write_private(&path, hash.as_bytes()).map_err(|cause| UsersError::Write {
                            path: shown,
                            cause,
                        })?;
                        Ok((Users::admin(hash), Some(Generated(Secret::new(pw)))))
                    }
                    Err(cause) => Err(UsersError::Read { path: shown, cause }),
                }
            }
        }
    }

    fn admin(password_hash: String) -> Users {
        let user = User {
            username: "admin".into(),
            password_hash,
            role: Role::Admin,
        };
        Users {
            by_name: HashMap::from([("admin".to_owned(), user)]),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_are_ordered() {
        assert!(Role::Viewer < Role::Editor && Role::Editor < Role::Admin);
    }

    #[test]
    fn users_file_rules() {
        let h = password::hash("pw");
        let ok = format!("users:\n- {{username: alice, password_hash: '{h}', role: editor}}\n");
        let users = Users::from_yaml(&ok, "f").unwrap();
        assert_eq!(users.get("alice").unwrap().role, Role::Editor);
        assert!(users.get("bob").is_none());

        let bad = [
            "users: []".to_owned(),
            "nonsense".to_owned(),
            format!("users:\n- {{username: a, password_hash: '{h}', role: root}}\n"),
            "users:\n- {username: a, password_hash: plain, role: admin}\n".to_owned(),
            format!("users:\n- {{username: a, password_hash: '{h}', role: admin}}\n- {{username: a, password_hash: '{h}', role: viewer}}\n"),
            format!("users:\n- {{username: 'a b', password_hash: '{h}', role: admin}}\n"),
            format!("users:\n- {{username: a, password_hash: '{h}', role: admin, password: x}}\n"),
        ];
        for text in bad {
            assert!(Users::from_yaml(&text, "f").is_err(), "{text}");
        }
    }

    #[test]
    fn bootstrap_admin_password_is_generated_once() {
        let dir = tempfile::tempdir().unwrap();
        let (users, generated) =
            Users::load(&UsersSource::BootstrapAdmin(None), dir.path()).unwrap();
        let pw = generated.expect("first start generates").0;
        assert!(password::verify(
            pw.expose(),
            &users.get("admin").unwrap().password_hash
        ));
        let (again, generated) =
            Users::load(&UsersSource::BootstrapAdmin(None), dir.path()).unwrap();
        assert!(generated.is_none());
        assert!(password::verify(
            pw.expose(),
            &again.get("admin").unwrap().password_hash
        ));
    }
}
