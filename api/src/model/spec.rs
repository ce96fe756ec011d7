//! The rules a request must satisfy: parsing and checking create bodies and
//! merge patches field by field, names, quantities, labels and parameters.
//! Pure functions only: no I/O, no HTTP, no backend.
//!
//! Request bodies are parsed field by field from JSON (not by `serde` derive)
//! so that a bad request gets one precise entry per field in `errors`, and
//! every problem is reported at once rather than the first one serde meets.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::{Map, Value};
use utoipa::ToSchema;

use super::database::DatabaseSpec;
use super::invalid::{FieldError, Invalid};
use super::parameters;

/// Longest database name: CNPG derives pod, Service and Secret names from it.
pub const MAX_NAME_LEN: usize = 50;
pub const MIN_INSTANCES: u32 = 1;
pub const MAX_INSTANCES: u32 = 9;
pub const MIN_STORAGE_BYTES: u128 = 1 << 30;
pub const DEFAULT_STORAGE: &str = "1Gi";
const MAX_LABELS: usize = 32;
const MAX_PARAMETERS: usize = 100;
const MAX_PARAMETER_VALUE_LEN: usize = 1024;

/// Label keys the control plane sets on what it manages.
const RESERVED_LABEL_PREFIXES: &[&str] = &["pgplane.io/", "cnpg.io/", "app.kubernetes.io/"];

/// The body of `POST /databases`, for the OpenAPI document. Parsing goes
/// through [`parse_create`], which reports every bad field at once.
#[derive(Debug, Deserialize, ToSchema)]
#[schema(as = CreateDatabase)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
pub struct CreateDatabaseDoc {
    /// DNS-1123 label, 1 to 50 characters.
    #[schema(
        example = "orders",
        pattern = "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$",
        min_length = 1,
        max_length = 50
    )]
    name: String,
    /// One of the configured PostgreSQL majors; the newest when omitted.
    postgres_version: Option<u32>,
    /// Number of instances: one primary and `instances - 1` standbys. Default 1.
    #[schema(minimum = 1, maximum = 9)]
    instances: Option<u32>,
    /// Kubernetes quantity, at least 1Gi. Default 1Gi.
    #[schema(
        example = "10Gi",
        pattern = r"^[0-9]+(\.[0-9]+)?(k|M|G|T|P|E|Ki|Mi|Gi|Ti|Pi|Ei)?$"
    )]
    storage: Option<String>,
    parameters: Option<BTreeMap<String, String>>,
    labels: Option<BTreeMap<String, String>>,
}

/// The body of `PATCH /databases/{name}` (JSON merge patch), for the OpenAPI
/// document. `null` in `parameters` or `labels` removes that key.
#[derive(Debug, Deserialize, ToSchema)]
#[schema(as = DatabasePatch)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
pub struct DatabasePatchDoc {
    #[schema(minimum = 1, maximum = 9)]
    instances: Option<u32>,
    /// May grow, never shrink.
    #[schema(
        example = "20Gi",
        pattern = r"^[0-9]+(\.[0-9]+)?(k|M|G|T|P|E|Ki|Mi|Gi|Ti|Pi|Ei)?$"
    )]
    storage: Option<String>,
    parameters: Option<BTreeMap<String, Option<String>>>,
    labels: Option<BTreeMap<String, Option<String>>>,
}

/// What the rules need to know about the installation.
#[derive(Debug, Clone)]
pub struct Limits {
    /// The PostgreSQL majors this installation offers, ascending.
    pub postgres_versions: Vec<u32>,
}

impl Limits {
    fn default_version(&self) -> u32 {
        *self
            .postgres_versions
            .last()
            .expect("settings refuse an empty version list")
    }
}

/// Parses and checks a create body; every problem becomes one [`FieldError`].
pub fn parse_create(body: &Value, limits: &Limits) -> Result<DatabaseSpec, Invalid> {
    let mut errors = Vec::new();
    let Some(obj) = body.as_object() else {
        return Err(Invalid::field("", "the body must be a JSON object"));
    };
    for key in obj.keys() {
        if ![
            "name",
            "postgres_version",
            "instances",
            "storage",
            "parameters",
            "labels",
        ]
        .contains(&key.as_str())
        {
            errors.push(FieldError::new(key.clone(), "unknown field"));
        }
    }
    let name = match obj.get("name") {
        None | Some(Value::Null) => {
            errors.push(FieldError::new("name", "is required"));
            String::new()
        }
        Some(Value::String(s)) => {
            if let Err(m) = check_name(s) {
                errors.push(FieldError::new("name", m));
            }
            s.clone()
        }
        Some(_) => {
            errors.push(FieldError::new("name", "must be a string"));
            String::new()
        }
    };
    let postgres_version = match obj.get("postgres_version") {
        None | Some(Value::Null) => limits.default_version(),
        Some(v) => match v.as_u64().and_then(|n| u32::try_from(n).ok()) {
            Some(n) if limits.postgres_versions.contains(&n) => n,
            _ => {
                errors.push(FieldError::new(
                    "postgres_version",
                    format!("must be one of {}", join(&limits.postgres_versions)),
                ));
                0
            }
        },
    };
    let instances = match obj.get("instances") {
        None | Some(Value::Null) => MIN_INSTANCES,
        Some(v) => parse_instances(v).unwrap_or_else(|e| {
            errors.push(e);
            0
        }),
    };
    let storage = match obj.get("storage") {
        None | Some(Value::Null) => DEFAULT_STORAGE.to_owned(),
        Some(v) => parse_storage(v).unwrap_or_else(|e| {
            errors.push(e);
            String::new()
        }),
    };
    let parameters = match obj.get("parameters") {
        None | Some(Value::Null) => BTreeMap::new(),
        Some(v) => parse_parameters(v, false, &mut errors)
            .into_iter()
            .filter_map(|(k, v)| v.map(|v| (k, v)))
            .collect(),
    };
    let labels = match obj.get("labels") {
        None | Some(Value::Null) => BTreeMap::new(),
        Some(v) => parse_labels(v, false, &mut errors)
            .into_iter()
            .filter_map(|(k, v)| v.map(|v| (k, v)))
            .collect(),
    };
    check_counts(&parameters, &labels, &mut errors);
    if errors.is_empty() {
        Ok(DatabaseSpec {
            name,
            postgres_version,
            instances,
            storage,
            parameters,
            labels,
        })
    } else {
        Err(Invalid(errors))
    }
}

/// Applies a JSON merge patch (RFC 7396) of the mutable fields to `current`
/// and checks the result. A patch that changes nothing is valid.
pub fn apply_patch(current: &DatabaseSpec, patch: &Value) -> Result<DatabaseSpec, Invalid> {
    let mut errors = Vec::new();
    let Some(obj) = patch.as_object() else {
        return Err(Invalid(vec![FieldError::new(
            "",
            "the body must be a JSON object (a JSON merge patch)",
        )]));
    };
    let mut next = current.clone();
    for (key, value) in obj {
        match key.as_str() {
            "instances" => match parse_instances(value) {
                Ok(n) => next.instances = n,
                Err(e) => errors.push(e),
            },
            "storage" => match parse_storage(value) {
                Ok(s) => {
                    let (old, new) = (quantity_bytes(&current.storage), quantity_bytes(&s));
                    if matches!((old, new), (Some(o), Some(n)) if n < o) {
                        errors.push(FieldError::new(
                            "storage",
                            format!("may grow but never shrink (now {})", current.storage),
                        ));
                    } else {
                        next.storage = s;
                    }
                }
                Err(e) => errors.push(e),
            },
            "parameters" => merge(
                &mut next.parameters,
                parse_parameters(value, true, &mut errors),
            ),
            "labels" => merge(&mut next.labels, parse_labels(value, true, &mut errors)),
            "name" | "postgres_version" => {
                errors.push(FieldError::new(key.clone(), "cannot be changed"))
            }
            "owner" | "state" | "phase" | "ready_instances" | "primary" | "endpoints"
            | "revision" | "created_at" | "updated_at" => {
                errors.push(FieldError::new(key.clone(), "is read-only"))
            }
            _ => errors.push(FieldError::new(key.clone(), "unknown field")),
        }
    }
    check_counts(&next.parameters, &next.labels, &mut errors);
    if errors.is_empty() {
        Ok(next)
    } else {
        Err(Invalid(errors))
    }
}

/// The fields that differ between two specs, as `{field: [old, new]}`: the
/// `changes` of an audit record and the kind of work a backend has to do.
pub fn spec_changes(old: &DatabaseSpec, new: &DatabaseSpec) -> Map<String, Value> {
    let mut changes = Map::new();
    if old.instances != new.instances {
        changes.insert(
            "instances".into(),
            serde_json::json!([old.instances, new.instances]),
        );
    }
    if old.storage != new.storage {
        changes.insert(
            "storage".into(),
            serde_json::json!([old.storage, new.storage]),
        );
    }
    if old.parameters != new.parameters {
        changes.insert(
            "parameters".into(),
            serde_json::json!([old.parameters, new.parameters]),
        );
    }
    if old.labels != new.labels {
        changes.insert("labels".into(), serde_json::json!([old.labels, new.labels]));
    }
    changes
}

fn merge(target: &mut BTreeMap<String, String>, patch: BTreeMap<String, Option<String>>) {
    for (k, v) in patch {
        match v {
            Some(v) => {
                target.insert(k, v);
            }
            None => {
                target.remove(&k);
            }
        }
    }
}

fn check_counts(
    parameters: &BTreeMap<String, String>,
    labels: &BTreeMap<String, String>,
    errors: &mut Vec<FieldError>,
) {
    if parameters.len() > MAX_PARAMETERS {
        errors.push(FieldError::new(
            "parameters",
            format!("at most {MAX_PARAMETERS} parameters"),
        ));
    }
    if labels.len() > MAX_LABELS {
        errors.push(FieldError::new(
            "labels",
            format!("at most {MAX_LABELS} labels"),
        ));
    }
}

/// A DNS-1123 label of 1 to [`MAX_NAME_LEN`] characters.
pub fn check_name(name: &str) -> Result<(), String> {
    let ok_chars = name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    let ends_ok = name
        .bytes()
        .next()
        .is_some_and(|b| b.is_ascii_alphanumeric())
        && name
            .bytes()
            .last()
            .is_some_and(|b| b.is_ascii_alphanumeric());
    if name.is_empty() || name.len() > MAX_NAME_LEN || !ok_chars || !ends_ok {
        return Err(format!(
            "must be 1 to {MAX_NAME_LEN} lowercase letters, digits or '-', starting and ending with a letter or digit"
        ));
    }
    Ok(())
}

fn parse_instances(v: &Value) -> Result<u32, FieldError> {
    match v.as_u64() {
        Some(n) if (MIN_INSTANCES as u64..=MAX_INSTANCES as u64).contains(&n) => Ok(n as u32),
        _ => Err(FieldError::new(
            "instances",
            format!("must be an integer from {MIN_INSTANCES} to {MAX_INSTANCES}"),
        )),
    }
}

fn parse_storage(v: &Value) -> Result<String, FieldError> {
    let bad = |m: &str| FieldError::new("storage", m);
    let Value::String(s) = v else {
        return Err(bad("must be a Kubernetes quantity string such as \"10Gi\""));
    };
    match quantity_bytes(s) {
        None => Err(bad(
            "must be a Kubernetes quantity such as \"10Gi\" or \"500G\"",
        )),
        Some(b) if b < MIN_STORAGE_BYTES => Err(bad("must be at least 1Gi")),
        Some(_) => Ok(s.clone()),
    }
}

/// Bytes in a Kubernetes quantity (`10Gi`, `1.5T`, `500M`), rounded up;
/// `None` when the text is not a quantity this API accepts.
pub fn quantity_bytes(s: &str) -> Option<u128> {
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (number, suffix) = s.split_at(split);
    let multiplier: u128 = match suffix {
        "" => 1,
        "k" => 1000,
        "M" => 1000u128.pow(2),
        "G" => 1000u128.pow(3),
        "T" => 1000u128.pow(4),
        "P" => 1000u128.pow(5),
        "E" => 1000u128.pow(6),
        "Ki" => 1 << 10,
        "Mi" => 1 << 20,
        "Gi" => 1 << 30,
        "Ti" => 1 << 40,
        "Pi" => 1 << 50,
        "Ei" => 1 << 60,
        _ => return None,
    };
    let (int, frac) = number.split_once('.').unwrap_or((number, ""));
    if int.is_empty()
        || int.len() > 18
        || frac.len() > 9
        || (number.contains('.') && frac.is_empty())
    {
        return None;
    }
    let scale = 10u128.pow(frac.len() as u32);
    let mantissa: u128 = format!("{int}{frac}").parse().ok()?;
    Some((mantissa * multiplier).div_ceil(scale))
}

fn parse_parameters(
    v: &Value,
    allow_null: bool,
    errors: &mut Vec<FieldError>,
) -> BTreeMap<String, Option<String>> {
    let mut out = BTreeMap::new();
    let Value::Object(map) = v else {
        errors.push(FieldError::new(
            "parameters",
            "must be an object of name to value",
        ));
        return out;
    };
    for (name, value) in map {
        let field = format!("parameters.{name}");
        let valid_name = !name.is_empty()
            && name.len() <= 63
            && name
                .bytes()
                .next()
                .is_some_and(|b| b.is_ascii_lowercase() || b == b'_')
            && name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'.');
        if !valid_name {
            errors.push(FieldError::new(field, "is not a PostgreSQL parameter name"));
            continue;
        }
        if let Some(refusal) = parameters::refusal(name) {
            errors.push(FieldError::new(field, refusal.reason()));
            continue;
        }
        let value = match value {
            Value::Null if allow_null => None,
            Value::String(s) => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            Value::Bool(b) => Some(if *b { "on" } else { "off" }.to_owned()),
            _ => {
                errors.push(FieldError::new(
                    field,
                    "must be a string, a number or a boolean",
                ));
                continue;
            }
        };
        if let Some(s) = &value {
            if s.len() > MAX_PARAMETER_VALUE_LEN || s.chars().any(|c| c.is_control()) {
                errors.push(FieldError::new(
                    field,
                    format!("must be at most {MAX_PARAMETER_VALUE_LEN} characters without control characters"),
                ));
                continue;
            }
        }
        out.insert(name.clone(), value);
    }
    out
}

fn parse_labels(
    v: &Value,
    allow_null: bool,
    errors: &mut Vec<FieldError>,
) -> BTreeMap<String, Option<String>> {
    let mut out = BTreeMap::new();
    let Value::Object(map) = v else {
        errors.push(FieldError::new(
            "labels",
            "must be an object of key to value",
        ));
        return out;
    };
    for (key, value) in map {
        let field = format!("labels.{key}");
        if let Err(m) = check_label_key(key) {
            errors.push(FieldError::new(field, m));
            continue;
        }
        match value {
            Value::Null if allow_null => {
                out.insert(key.clone(), None);
            }
            Value::String(s) => match check_label_value(s) {
                Ok(()) => {
                    out.insert(key.clone(), Some(s.clone()));
                }
                Err(m) => errors.push(FieldError::new(field, m)),
            },
            _ => errors.push(FieldError::new(field, "must be a string")),
        }
    }
    out
}

/// A Kubernetes label key: an optional DNS subdomain prefix and a name.
pub fn check_label_key(key: &str) -> Result<(), String> {
    if RESERVED_LABEL_PREFIXES.iter().any(|p| key.starts_with(p)) {
        return Err(format!(
            "is reserved (keys starting with {} are set by the platform)",
            RESERVED_LABEL_PREFIXES.join(", ")
        ));
    }
    let (prefix, name) = match key.rsplit_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, key),
    };
    if let Some(p) = prefix {
        let subdomain_ok = !p.is_empty()
            && p.len() <= 253
            && p.split('.').all(|part| check_name_like(part, 63, false));
        if !subdomain_ok {
            return Err("has a prefix that is not a DNS subdomain".into());
        }
    }
    if !check_name_like(name, 63, true) {
        return Err("must be 1 to 63 letters, digits, '-', '_' or '.', starting and ending with a letter or digit".into());
    }
    Ok(())
}

fn check_label_value(value: &str) -> Result<(), String> {
    if value.is_empty() || check_name_like(value, 63, true) {
        Ok(())
    } else {
        Err("must be at most 63 letters, digits, '-', '_' or '.', starting and ending with a letter or digit".into())
    }
}

/// Kubernetes' "qualified name" shape; `mixed` allows upper case, `_` and `.`.
fn check_name_like(s: &str, max: usize, mixed: bool) -> bool {
    let inner_ok = |b: u8| {
        if mixed {
            b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.'
        } else {
            b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-'
        }
    };
    let end_ok = |b: u8| {
        if mixed {
            b.is_ascii_alphanumeric()
        } else {
            b.is_ascii_lowercase() || b.is_ascii_digit()
        }
    };
    !s.is_empty()
        && s.len() <= max
        && s.bytes().all(inner_ok)
        && s.bytes().next().is_some_and(end_ok)
        && s.bytes().last().is_some_and(end_ok)
}

fn join(versions: &[u32]) -> String {
    versions
        .iter()
        .map(u32::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn limits() -> Limits {
        Limits {
            postgres_versions: vec![15, 16],
        }
    }

    fn fields(errors: &[FieldError]) -> Vec<&str> {
        errors.iter().map(|e| e.field.as_str()).collect()
    }

    #[test]
    fn create_fills_defaults() {
        let spec = parse_create(&json!({"name": "orders"}), &limits()).unwrap();
        assert_eq!(
            spec,
            DatabaseSpec {
                name: "orders".into(),
                postgres_version: 16,
                instances: 1,
                storage: "1Gi".into(),
                parameters: BTreeMap::new(),
                labels: BTreeMap::new(),
            }
        );
    }

    #[test]
    fn create_reports_every_bad_field() {
        let cases: &[(Value, &[&str])] = &[
            (json!([]), &[""]),
            (json!({}), &["name"]),
            (json!({"name": 5}), &["name"]),
            (json!({"name": "Orders"}), &["name"]),
            (json!({"name": "-orders"}), &["name"]),
            (json!({"name": "orders-"}), &["name"]),
            (json!({"name": "a".repeat(51)}), &["name"]),
            (json!({"name": "a_b"}), &["name"]),
            (json!({"name": "ok", "instances": 0}), &["instances"]),
            (json!({"name": "ok", "instances": 10}), &["instances"]),
            (json!({"name": "ok", "instances": "3"}), &["instances"]),
            (json!({"name": "ok", "instances": 2.5}), &["instances"]),
            (json!({"name": "ok", "storage": "512Mi"}), &["storage"]),
            (json!({"name": "ok", "storage": "ten"}), &["storage"]),
            (json!({"name": "ok", "storage": 10}), &["storage"]),
            (
                json!({"name": "ok", "postgres_version": 12}),
                &["postgres_version"],
            ),
            (
                json!({"name": "ok", "parameters": {"port": "5433"}}),
                &["parameters.port"],
            ),
            (
                json!({"name": "ok", "parameters": {"wal_level": "minimal"}}),
                &["parameters.wal_level"],
            ),
            (
                json!({"name": "ok", "parameters": {"Bad Name": "1"}}),
                &["parameters.Bad Name"],
            ),
            (
                json!({"name": "ok", "parameters": {"work_mem": ["1"]}}),
                &["parameters.work_mem"],
            ),
            (
                json!({"name": "ok", "parameters": {"work_mem": "1\n"}}),
                &["parameters.work_mem"],
            ),
            (json!({"name": "ok", "parameters": "x"}), &["parameters"]),
            (
                json!({"name": "ok", "labels": {"team": 1}}),
                &["labels.team"],
            ),
            (
                json!({"name": "ok", "labels": {"-team": "a"}}),
                &["labels.-team"],
            ),
            (
                json!({"name": "ok", "labels": {"team": "a b"}}),
                &["labels.team"],
            ),
            (
                json!({"name": "ok", "labels": {"cnpg.io/x": "a"}}),
                &["labels.cnpg.io/x"],
            ),
            (json!({"name": "ok", "extra": 1}), &["extra"]),
            (
                json!({"name": "BAD", "instances": 99, "storage": "1Mi", "colour": "red"}),
                &["colour", "name", "instances", "storage"],
            ),
        ];
        for (body, expected) in cases {
            let Invalid(errors) = parse_create(body, &limits()).expect_err(&body.to_string());
            assert_eq!(&fields(&errors), expected, "{body}");
        }
    }

    #[test]
    fn create_accepts_full_spec() {
        let spec = parse_create(
            &json!({"name": "orders-2", "postgres_version": 15, "instances": 9, "storage": "1.5Gi",
                    "parameters": {"max_connections": 200, "jit": false, "work_mem": "8MB"},
                    "labels": {"team": "payments", "example.com/tier": "gold", "empty": ""}}),
            &limits(),
        )
        .unwrap();
        assert_eq!(spec.parameters["max_connections"], "200");
        assert_eq!(spec.parameters["jit"], "off");
        assert_eq!(spec.labels.len(), 3);
    }

    #[test]
    fn quantities() {
        let cases = [
            ("1Gi", Some(1u128 << 30)),
            ("1024Mi", Some(1 << 30)),
            ("1.5Gi", Some(3 << 29)),
            ("2G", Some(2_000_000_000)),
            ("100", Some(100)),
            ("0.5Ki", Some(512)),
            ("1e9", None),
            ("-1Gi", None),
            ("1.Gi", None),
            ("Gi", None),
            ("1gi", None),
            ("", None),
            ("99999999999999999999Gi", None),
        ];
        for (text, bytes) in cases {
            assert_eq!(quantity_bytes(text), bytes, "{text}");
        }
    }

    fn spec() -> DatabaseSpec {
        parse_create(
            &json!({"name": "orders", "instances": 2, "storage": "10Gi",
                    "parameters": {"work_mem": "4MB"}, "labels": {"team": "a"}}),
            &limits(),
        )
        .unwrap()
    }

    #[test]
    fn patch_merges() {
        let next = apply_patch(
            &spec(),
            &json!({"instances": 3, "storage": "20Gi", "parameters": {"work_mem": null, "jit": "off"},
                    "labels": {"team": "b", "tier": "gold"}}),
        )
        .unwrap();
        assert_eq!(next.instances, 3);
        assert_eq!(next.storage, "20Gi");
        assert_eq!(
            next.parameters,
            BTreeMap::from([("jit".into(), "off".into())])
        );
        assert_eq!(next.labels.len(), 2);
        assert_eq!(
            spec_changes(&spec(), &next).keys().collect::<Vec<_>>(),
            ["instances", "labels", "parameters", "storage"]
        );
    }

    #[test]
    fn patch_refusals() {
        let cases: &[(Value, &[&str])] = &[
            (json!({"storage": "5Gi"}), &["storage"]),
            (json!({"storage": null}), &["storage"]),
            (json!({"instances": null}), &["instances"]),
            (json!({"instances": 0}), &["instances"]),
            (json!({"name": "other"}), &["name"]),
            (json!({"postgres_version": 16}), &["postgres_version"]),
            (json!({"state": "healthy"}), &["state"]),
            (json!({"parameters": {"port": "1"}}), &["parameters.port"]),
            (
                json!({"labels": {"app.kubernetes.io/name": "x"}}),
                &["labels.app.kubernetes.io/name"],
            ),
            (json!({"whatever": 1}), &["whatever"]),
            (json!("x"), &[""]),
        ];
        for (patch, expected) in cases {
            let Invalid(errors) = apply_patch(&spec(), patch).expect_err(&patch.to_string());
            assert_eq!(&fields(&errors), expected, "{patch}");
        }
        // The same size in other units is not a shrink.
        assert!(apply_patch(&spec(), &json!({"storage": "10240Mi"})).is_ok());
    }
}
