//! What a client command can fail with, and the exit code and the lines
//! each failure is told in. The codes are documented in `pgplane --help`
//! ([`CODES`]); scripts branch on them.

use std::process::ExitCode;

use crate::client::ClientError;

/// The exit codes, as `--help` lists them.
pub const CODES: &str = "\
Exit codes:
  0   done
  1   any other failure (a server error, a file that cannot be read or written)
  2   bad usage, or a request the server refused as invalid (400, 413, 415, 422)
  3   the server cannot be reached
  4   TLS with the server failed
  5   not logged in, or the token expired or was refused (401): run pgplane login
  6   not allowed for your role (403)
  7   no such database, revision or record (404, 410)
  8   a conflict: it exists already, is busy, or changed since you read it (409, 412)
  9   rate limited or overloaded (429, 503): try again after the time given
  10  --wait: the database failed, or the change could not be applied
  11  --wait: the wanted state was not reached within --timeout";

#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error(transparent)]
    Client(#[from] ClientError),
    #[error("{0}")]
    Usage(String),
    #[error("not logged in to {0}: run pgplane login")]
    NotLoggedIn(String),
    #[error("the token for {server} expired {when}: run pgplane login")]
    Expired { server: String, when: String },
    #[error("{0}")]
    Local(String),
    #[error("{0}")]
    Failed(String),
    #[error("{0}")]
    Timeout(String),
}

impl CliError {
    pub fn local(what: impl std::fmt::Display, e: impl std::fmt::Display) -> CliError {
        CliError::Local(format!("{what}: {e}"))
    }

    pub fn code(&self) -> u8 {
        match self {
            CliError::Usage(_) => 2,
            CliError::NotLoggedIn(_) | CliError::Expired { .. } => 5,
            CliError::Local(_) => 1,
            CliError::Failed(_) => 10,
            CliError::Timeout(_) => 11,
            CliError::Client(e) => match e {
                ClientError::Unreachable { .. } => 3,
                ClientError::Tls { .. } => 4,
                ClientError::Unexpected { .. } | ClientError::Silent { .. } => 1,
                ClientError::BadServer { .. } => 2,
                ClientError::Problem(p) => match p.status {
                    400 | 413 | 415 | 422 => 2,
                    401 => 5,
                    403 => 6,
                    404 | 410 => 7,
                    409 | 412 => 8,
                    429 | 503 => 9,
                    _ => 1,
                },
            },
        }
    }

    /// The first line (after `pgplane: `) and any lines under it.
    pub fn lines(&self) -> Vec<String> {
        let ClientError::Problem(p) = (match self {
            CliError::Client(e) => e,
            other => return vec![other.to_string()],
        }) else {
            return vec![self.to_string()];
        };
        let mut first = format!("{} {}", p.status, p.title.to_lowercase());
        if !p.detail.is_empty() && p.errors.is_empty() {
            first.push_str(": ");
            first.push_str(&p.detail);
        }
        match (p.status, p.retry_after) {
            (401, _) => first.push_str("; run pgplane login"),
            (429 | 503, Some(after)) => {
                first.push_str(&format!("; retry in {} s", after.as_secs().max(1)))
            }
            _ => {}
        }
        let mut lines = vec![first];
        lines.extend(field_lines(
            p.errors
                .iter()
                .map(|e| (e.field.as_str(), e.message.as_str())),
        ));
        lines
    }

    /// Tells the failure on standard error; the exit code to end with.
    pub fn report(&self) -> ExitCode {
        let mut lines = self.lines().into_iter();
        if let Some(first) = lines.next() {
            eprintln!("pgplane: {first}");
        }
        for line in lines {
            eprintln!("{line}");
        }
        ExitCode::from(self.code())
    }
}

/// One line per bad field, as every command prints them: `  field: message`.
pub fn field_lines<'a>(errors: impl Iterator<Item = (&'a str, &'a str)>) -> Vec<String> {
    errors
        .map(|(field, message)| {
            let field = if field.is_empty() { "(body)" } else { field };
            format!("  {field}: {message}")
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::client::{FieldProblem, Problem};

    fn problem(status: u16, errors: &[(&str, &str)], retry: Option<u64>) -> CliError {
        CliError::Client(ClientError::Problem(Problem {
            status,
            title: "Unprocessable Entity".into(),
            detail: "the detail".into(),
            errors: errors
                .iter()
                .map(|(f, m)| FieldProblem {
                    field: f.to_string(),
                    message: m.to_string(),
                })
                .collect(),
            retry_after: retry.map(Duration::from_secs),
        }))
    }

    #[test]
    fn a_problem_is_one_line_and_a_line_per_field() {
        let e = problem(
            422,
            &[("instances", "must be from 1 to 9"), ("", "x")],
            None,
        );
        assert_eq!(
            e.lines(),
            [
                "422 unprocessable entity",
                "  instances: must be from 1 to 9",
                "  (body): x"
            ]
        );
        assert_eq!(e.code(), 2);
        let e = problem(429, &[], Some(7));
        assert_eq!(
            e.lines(),
            ["429 unprocessable entity: the detail; retry in 7 s"]
        );
        assert_eq!(e.code(), 9);
    }

    #[test]
    fn every_kind_of_failure_has_its_own_code() {
        let codes = [
            CliError::Usage(String::new()).code(),
            CliError::Client(ClientError::Unreachable {
                server: String::new(),
                reason: String::new(),
            })
            .code(),
            CliError::Client(ClientError::Tls {
                server: String::new(),
                reason: String::new(),
            })
            .code(),
            CliError::NotLoggedIn(String::new()).code(),
            problem(403, &[], None).code(),
            problem(404, &[], None).code(),
            problem(412, &[], None).code(),
            problem(429, &[], None).code(),
            CliError::Failed(String::new()).code(),
            CliError::Timeout(String::new()).code(),
        ];
        let distinct: std::collections::BTreeSet<_> = codes.iter().collect();
        assert_eq!(distinct.len(), codes.len(), "{codes:?}");
        for code in codes {
            assert!(
                CODES.contains(&format!("\n  {code} ")),
                "{code} is not documented"
            );
        }
    }
}
