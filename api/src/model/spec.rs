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
pub const MAX_LABELS: usize = 32;
pub const MAX_PARAMETERS: usize = 100;
pub const MAX_PARAMETER_VALUE_LEN: usize = 1024;

/// The shapes of what the rules accept, as the OpenAPI document states them
/// (JSON Schema regular expressions; the functions below are the rules).
pub mod patterns {
    /// A database name: a DNS-1123 label (length bounded apart).
    pub const NAME: &str = "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$";
    /// A Kubernetes quantity in every form Kubernetes reads.
    pub const STORAGE: &str =
        r"^\+?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][-+]?[0-9]+|m|k|M|G|T|P|E|Ki|Mi|Gi|Ti|Pi|Ei)?$";
    /// A parameter name as the rules read it (refused names apart).
    pub const PARAMETER_NAME: &str = "^[a-z_][a-z0-9_.]{0,62}$";
    /// A parameter value: no control characters (length bounded apart).
    pub const PARAMETER_VALUE: &str = "^[^\\u0000-\\u001f\\u007f-\\u009f]*$";
    /// A label key: an optional DNS subdomain prefix and a qualified name.
    pub const LABEL_KEY: &str = "^([a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?)*/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$";
    /// A label value: empty, or a qualified name.
    pub const LABEL_VALUE: &str = "^([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?$";
}

/// Label key prefixes the platform sets on what it manages (pgplane, and
/// CloudNativePG and Kubernetes conventions): a user's labels never carry them.
pub const RESERVED_LABEL_PREFIXES: &[&str] = &["pgplane.io/", "cnpg.io/", "app.kubernetes.io/"];

/// The fields of a create body, each parsed by [`parse_create`].
pub const CREATE_FIELDS: &[&str] = &[
    "name",
    "postgres_version",
    "instances",
    "storage",
    "parameters",
    "labels",
];

/// The fields a merge patch may change, each applied by [`apply_patch`];
/// the other create fields are fixed at create.
pub const PATCH_FIELDS: &[&str] = &["instances", "storage", "parameters", "labels"];

/// The fields of a [`Database`](super::Database) beyond its spec: what the
/// backend observes and the control plane keeps, read-only to callers.
pub const OBSERVED_FIELDS: &[&str] = &[
    "owner",
    "state",
    "phase",
    "ready_instances",
    "primary",
    "endpoints",
    "revision",
    "created_at",
    "updated_at",
    "undone",
    "instances_status",
    "source",
    "declared_in",
];

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
    /// Kubernetes quantity, at least 1Gi and at most PGPLANE_MAX_STORAGE. Default 1Gi.
    #[schema(example = "10Gi")]
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
    /// Absent: unchanged (null is not a value: every database has instances).
    #[schema(minimum = 1, maximum = 9, nullable = false)]
    instances: Option<u32>,
    /// May grow, never shrink; a Kubernetes quantity (its pattern is set
    /// from `patterns::STORAGE` when the document is served).
    #[schema(example = "20Gi", nullable = false)]
    storage: Option<String>,
    parameters: Option<BTreeMap<String, Option<String>>>,
    labels: Option<BTreeMap<String, Option<String>>>,
}

/// What the rules need to know about the installation.
#[derive(Debug, Clone)]
pub struct Limits {
    /// The PostgreSQL majors this installation offers, ascending.
    pub postgres_versions: Vec<u32>,
    /// The most storage a database may ask for (`PGPLANE_MAX_STORAGE`).
    pub max_storage_bytes: u128,
}

/// The default of `PGPLANE_MAX_STORAGE`: 64Ti.
pub const DEFAULT_MAX_STORAGE_BYTES: u128 = 64 << 40;

impl Limits {
    /// The major a create body that names none gets: the newest offered.
    pub fn default_version(&self) -> u32 {
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
        if !CREATE_FIELDS.contains(&key.as_str()) {
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
        Some(v) => match whole_number(v).and_then(|n| u32::try_from(n).ok()) {
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
        Some(v) => parse_storage(v, limits).unwrap_or_else(|e| {
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
pub fn apply_patch(
    current: &DatabaseSpec,
    patch: &Value,
    limits: &Limits,
) -> Result<DatabaseSpec, Invalid> {
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
            "storage" => match parse_storage(value, limits) {
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
            other if CREATE_FIELDS.contains(&other) => {
                errors.push(FieldError::new(key.clone(), "cannot be changed"))
            }
            other if OBSERVED_FIELDS.contains(&other) => {
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

/// A JSON number that is a whole number (`2` or `2.0`, as JSON Schema's
/// `integer` allows), if it is one.
fn whole_number(v: &Value) -> Option<u64> {
    v.as_u64().or_else(|| {
        let f = v.as_f64()?;
        (f.fract() == 0.0 && (0.0..=u32::MAX as f64).contains(&f)).then_some(f as u64)
    })
}

fn parse_instances(v: &Value) -> Result<u32, FieldError> {
    match whole_number(v) {
        Some(n) if (MIN_INSTANCES as u64..=MAX_INSTANCES as u64).contains(&n) => Ok(n as u32),
        _ => Err(FieldError::new(
            "instances",
            format!("must be an integer from {MIN_INSTANCES} to {MAX_INSTANCES}"),
        )),
    }
}

fn parse_storage(v: &Value, limits: &Limits) -> Result<String, FieldError> {
    let bad = |m: &str| FieldError::new("storage", m);
    let Value::String(s) = v else {
        return Err(bad("must be a Kubernetes quantity string such as \"10Gi\""));
    };
    match quantity_bytes(s) {
        None => Err(bad(
            "must be a Kubernetes quantity such as \"10Gi\", \"500G\" or \"1e12\"",
        )),
        Some(b) if b < MIN_STORAGE_BYTES => Err(bad("must be at least 1Gi")),
        Some(b) if b > limits.max_storage_bytes => Err(bad(&format!(
            "must be at most {} (PGPLANE_MAX_STORAGE)",
            format_bytes(limits.max_storage_bytes)
        ))),
        Some(_) => Ok(s.clone()),
    }
}

/// Bytes in a Kubernetes quantity, rounded up to a whole byte: every form
/// Kubernetes reads (`10Gi`, `1.5T`, `500M`, `1e12`, `+2E3`, `.5Ki`,
/// `1500m`). `None` when the text is not a quantity, or is negative;
/// `u128::MAX` stands for anything larger.
pub fn quantity_bytes(s: &str) -> Option<u128> {
    let s = s.strip_prefix('+').unwrap_or(s);
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (number, suffix) = s.split_at(split);
    let (int, frac) = number.split_once('.').unwrap_or((number, ""));
    if (int.is_empty() && frac.is_empty()) || frac.contains('.') {
        return None;
    }
    // Multiply by 10^ten_exp and by `factor`.
    let (ten_exp, factor): (i64, u128) = match suffix {
        "" => (0, 1),
        "m" => (-3, 1),
        "k" => (3, 1),
        "M" => (6, 1),
        "G" => (9, 1),
        "T" => (12, 1),
        "P" => (15, 1),
        "E" => (18, 1),
        "Ki" => (0, 1 << 10),
        "Mi" => (0, 1 << 20),
        "Gi" => (0, 1 << 30),
        "Ti" => (0, 1 << 40),
        "Pi" => (0, 1 << 50),
        "Ei" => (0, 1 << 60),
        exponent => {
            let digits = exponent.strip_prefix(['e', 'E'])?;
            let unsigned = digits.strip_prefix(['+', '-']).unwrap_or(digits);
            if unsigned.is_empty() || !unsigned.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            // Beyond a few hundred, the value is 0 or larger than anything.
            (
                digits
                    .parse::<i64>()
                    .unwrap_or(if digits.starts_with('-') { -400 } else { 400 }),
                1,
            )
        }
    };
    let digits = format!("{int}{frac}");
    let digits = digits.trim_start_matches('0');
    if digits.is_empty() {
        return Some(0);
    }
    if digits.len() > 38 {
        return Some(u128::MAX);
    }
    let mantissa: u128 = digits.parse().ok()?;
    let exponent = ten_exp - frac.len() as i64;
    let value = if exponent >= 0 {
        10u128
            .checked_pow(u32::try_from(exponent).ok()?)
            .and_then(|p| mantissa.checked_mul(p))
            .and_then(|v| v.checked_mul(factor))
    } else {
        let divisor = u32::try_from(-exponent)
            .ok()
            .and_then(|e| 10u128.checked_pow(e));
        match divisor {
            // Less than one byte of a positive amount is one byte, rounded up.
            None => return Some(1),
            Some(d) => mantissa.checked_mul(factor).map(|v| v.div_ceil(d)),
        }
    };
    Some(value.unwrap_or(u128::MAX))
}

/// A quantity of bytes as the API writes it: the largest binary unit that
/// divides it (`64Ti`), or bytes.
pub fn format_bytes(bytes: u128) -> String {
    for (suffix, shift) in [
        ("Ei", 60),
        ("Pi", 50),
        ("Ti", 40),
        ("Gi", 30),
        ("Mi", 20),
        ("Ki", 10),
    ] {
        if bytes >= 1 << shift && bytes.is_multiple_of(1 << shift) {
            return format!("{}{suffix}", bytes >> shift);
        }
    }
    bytes.to_string()
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
            max_storage_bytes: DEFAULT_MAX_STORAGE_BYTES,
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
            (json!({"name": "ok", "instances": 1e300}), &["instances"]),
            (json!({"name": "ok", "storage": "512Mi"}), &["storage"]),
            (json!({"name": "ok", "storage": "ten"}), &["storage"]),
            (json!({"name": "ok", "storage": 10}), &["storage"]),
            (json!({"name": "ok", "storage": "999Ei"}), &["storage"]),
            (json!({"name": "ok", "storage": "65Ti"}), &["storage"]),
            (json!({"name": "ok", "storage": "1e100"}), &["storage"]),
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
            ("1e9", Some(1_000_000_000)),
            ("1e12", Some(1_000_000_000_000)),
            ("1E12", Some(1_000_000_000_000)),
            ("1T", Some(1_000_000_000_000)),
            ("1Ti", Some(1 << 40)),
            ("1024Gi", Some(1 << 40)),
            ("+2Gi", Some(2 << 30)),
            (".5Gi", Some(1 << 29)),
            ("1.Gi", Some(1 << 30)),
            ("1500m", Some(2)),
            ("12e-1", Some(2)),
            ("1e-100", Some(1)),
            ("0.0", Some(0)),
            ("999Ei", Some(999 << 60)),
            ("99999999999999999999Gi", Some(99999999999999999999 << 30)),
            ("1e100000", Some(u128::MAX)),
            (
                "99999999999999999999999999999999999999999999999999",
                Some(u128::MAX),
            ),
            ("-1Gi", None),
            ("Gi", None),
            (".", None),
            ("1gi", None),
            ("1e", None),
            ("1e+", None),
            ("1.2.3", None),
            ("1 Gi", None),
            ("", None),
        ];
        for (text, bytes) in cases {
            assert_eq!(quantity_bytes(text), bytes, "{text}");
        }
    }

    fn apply_patch_(current: &DatabaseSpec, patch: &Value) -> Result<DatabaseSpec, Invalid> {
        apply_patch(current, patch, &limits())
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
        let next = apply_patch_(
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
            let Invalid(errors) = apply_patch_(&spec(), patch).expect_err(&patch.to_string());
            assert_eq!(&fields(&errors), expected, "{patch}");
        }
        // The same size in other units is not a shrink; every form is read,
        // up to the maximum.
        assert!(apply_patch_(&spec(), &json!({"storage": "10240Mi"})).is_ok());
        for grown in ["1e12", "1T", "1Ti", "1024Gi", "64Ti"] {
            let next = apply_patch_(&spec(), &json!({"storage": grown})).expect(grown);
            assert_eq!(next.storage, grown);
        }
        let Invalid(errors) = apply_patch_(&spec(), &json!({"storage": "999Ei"})).unwrap_err();
        assert_eq!(
            errors[0].message,
            "must be at most 64Ti (PGPLANE_MAX_STORAGE)"
        );
    }

    /// The property names of a type's OpenAPI schema.
    fn properties<T: utoipa::PartialSchema>() -> Vec<String> {
        let schema = serde_json::to_value(T::schema()).unwrap();
        let mut names: Vec<String> = schema["properties"]
            .as_object()
            .unwrap()
            .keys()
            .cloned()
            .collect();
        names.sort();
        names
    }

    fn sorted(fields: &[&[&str]]) -> Vec<String> {
        let mut all: Vec<String> = fields.concat().iter().map(|f| f.to_string()).collect();
        all.sort();
        all
    }

    #[test]
    fn the_field_lists_are_the_documented_fields() {
        assert_eq!(properties::<CreateDatabaseDoc>(), sorted(&[CREATE_FIELDS]));
        assert_eq!(properties::<DatabasePatchDoc>(), sorted(&[PATCH_FIELDS]));
        assert_eq!(
            properties::<crate::model::Database>(),
            sorted(&[CREATE_FIELDS, OBSERVED_FIELDS])
        );
        assert!(PATCH_FIELDS.iter().all(|f| CREATE_FIELDS.contains(f)));
    }
}
