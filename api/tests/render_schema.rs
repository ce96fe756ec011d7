//! Every Cluster pgplane renders passes the upstream CloudNativePG v1.30.0
//! CRD schema (`../shared/upstream/cnpg-v1.30.0/postgresql.cnpg.io_clusters.yaml`),
//! with unknown fields refused: wherever the schema lists `properties` and
//! does not keep unknown fields (`x-kubernetes-preserve-unknown-fields`),
//! `additionalProperties: false` is added, as the API server prunes or (with
//! strict field validation) refuses them.
//!
//! The schema's CEL rules (`x-kubernetes-validations`) are not evaluated by
//! the validator; those on fields pgplane sets are about `imageCatalogRef`
//! (never set, so `imageName` is alone) and the locale providers of
//! `bootstrap.initdb` (never set), so they hold for every rendered object.

use std::collections::BTreeMap;
use std::path::PathBuf;

use pgplane::backend::kubernetes::cluster::{render, Stamp};
use pgplane::model::{parse_create, Limits};
use serde_json::{json, Value};

fn upstream_crd() -> PathBuf {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared/upstream/cnpg-v1.30.0/postgresql.cnpg.io_clusters.yaml");
    assert!(
        path.is_file(),
        "the upstream CNPG CRD is missing: {} (the repository expects ../shared next to it)",
        path.display()
    );
    path
}

/// Adds `additionalProperties: false` where unknown fields are not kept.
fn refuse_unknown(node: &mut Value) {
    match node {
        Value::Object(map) => {
            let keeps_unknown = map
                .get("x-kubernetes-preserve-unknown-fields")
                .and_then(Value::as_bool)
                .unwrap_or(false);
            if map.contains_key("properties")
                && !keeps_unknown
                && !map.contains_key("additionalProperties")
            {
                map.insert("additionalProperties".into(), Value::Bool(false));
            }
            for v in map.values_mut() {
                refuse_unknown(v);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(refuse_unknown),
        _ => {}
    }
}

fn validator() -> jsonschema::Validator {
    let text = std::fs::read_to_string(upstream_crd()).unwrap();
    let crd: Value = serde_yaml::from_str(&text).unwrap();
    let version = crd["spec"]["versions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == "v1")
        .expect("the CRD serves v1");
    let mut schema = version["schema"]["openAPIV3Schema"].clone();
    refuse_unknown(&mut schema);
    // The CRD leaves `metadata` to the API server: check what pgplane sets.
    schema["properties"]["metadata"] = json!({
        "type": "object",
        "additionalProperties": false,
        "required": ["name", "namespace", "labels", "annotations"],
        "properties": {
            "name": {"type": "string", "maxLength": 50, "pattern": "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"},
            "namespace": {"type": "string", "maxLength": 63, "pattern": "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"},
            "labels": {"type": "object", "additionalProperties": {"type": "string", "maxLength": 63}},
            "annotations": {"type": "object", "additionalProperties": {"type": "string"}}
        }
    });
    schema["properties"]["apiVersion"] = json!({"const": "postgresql.cnpg.io/v1"});
    schema["properties"]["kind"] = json!({"const": "Cluster"});
    jsonschema::validator_for(&schema).expect("the upstream schema compiles")
}

fn limits() -> Limits {
    Limits {
        postgres_versions: vec![14, 15, 16, 17, 18],
        max_storage_bytes: pgplane::model::DEFAULT_MAX_STORAGE_BYTES,
    }
}

#[test]
fn every_rendered_cluster_passes_the_upstream_schema() {
    let validator = validator();
    let specs = [
        json!({"name": "a"}),
        json!({"name": "orders", "instances": 3, "storage": "10Gi"}),
        json!({"name": "x".repeat(50), "instances": 9, "storage": "1Ti", "postgres_version": 14}),
        json!({"name": "p-1", "storage": "1.5Gi", "postgres_version": 15,
               "parameters": {"max_connections": 200, "work_mem": "8MB", "jit": false,
                              "shared_buffers": "256MB", "log_min_duration_statement": "250ms"}}),
        json!({"name": "labelled", "labels": {"team": "payments", "example.com/tier": "gold", "empty": ""}}),
        json!({"name": "big", "instances": 5, "storage": "500G", "postgres_version": 17,
               "parameters": {"random_page_cost": 1.1, "search_path": "\"$user\", public"},
               "labels": {"a": "b", "c.d/e_f": "G-h.i"}}),
        json!({"name": "q", "storage": "2048Mi", "postgres_version": 16, "parameters": {}, "labels": {}}),
    ];
    // And every combination of the fields' kinds of values.
    let mut sweep = Vec::new();
    for instances in [1, 2, 9] {
        for version in [14, 15, 16, 17, 18] {
            for storage in ["1Gi", "1536Mi", "3T", "0.5Ti"] {
                for parameters in [
                    json!({}),
                    json!({"max_connections": 500, "huge_pages": "off", "synchronous_commit": true, "cpu_tuple_cost": 0.02}),
                ] {
                    for labels in [
                        json!({}),
                        json!({"env": "prod", "team.example.com/owner": "x"}),
                    ] {
                        sweep.push(json!({
                            "name": format!("s-{instances}-{version}-{}", sweep.len()),
                            "instances": instances, "postgres_version": version,
                            "storage": storage, "parameters": parameters, "labels": labels,
                        }));
                    }
                }
            }
        }
    }
    assert_eq!(sweep.len(), 240);
    for body in specs.into_iter().chain(sweep) {
        let spec = parse_create(&body, &limits()).expect("a valid spec");
        for stamp in [
            Stamp::api("git".into(), 1, None),
            Stamp::api("alice@example.com".into(), 42, Some(chrono::Utc::now())),
        ] {
            let object = serde_json::to_value(render(&spec, "databases", &stamp)).unwrap();
            let errors: Vec<String> = validator
                .iter_errors(&object)
                .map(|e| format!("{} at {}", e, e.instance_path))
                .collect();
            assert!(errors.is_empty(), "{body}: {errors:#?}\n{object:#}");
        }
    }
}

#[test]
fn the_check_refuses_unknown_and_wrong_fields() {
    let validator = validator();
    let spec = parse_create(&json!({"name": "orders"}), &limits()).unwrap();
    let good =
        serde_json::to_value(render(&spec, "databases", &Stamp::api("a".into(), 1, None))).unwrap();
    assert!(validator.is_valid(&good));
    let broken: BTreeMap<&str, Value> = BTreeMap::from([
        ("unknown spec field", json!({"spec": {"instancez": 1}})),
        (
            "unknown nested field",
            json!({"spec": {"storage": {"sise": "1Gi"}}}),
        ),
        ("wrong type", json!({"spec": {"instances": "three"}})),
        ("below minimum", json!({"spec": {"instances": 0}})),
        (
            "non-string parameter",
            json!({"spec": {"postgresql": {"parameters": {"a": 1}}}}),
        ),
        ("unknown metadata", json!({"metadata": {"uid": "x"}})),
    ]);
    for (what, patch) in broken {
        let mut object = good.clone();
        merge(&mut object, &patch);
        assert!(!validator.is_valid(&object), "{what} passed: {object}");
    }
}

fn merge(target: &mut Value, patch: &Value) {
    match (target, patch) {
        (Value::Object(t), Value::Object(p)) => {
            for (k, v) in p {
                merge(t.entry(k.clone()).or_insert(Value::Null), v);
            }
        }
        (t, p) => *t = p.clone(),
    }
}
