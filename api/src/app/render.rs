//! What a create body becomes on Kubernetes: the body through the same
//! rules as `POST /databases` ([`crate::model::parse_create`]), then the
//! CloudNativePG `Cluster` the kubernetes backend would apply
//! ([`crate::backend::kubernetes::cluster::render`]). The console's create
//! form previews it and `pgplane render` prints it; both call [`render`]
//! so that they cannot drift apart. Nothing is created or audited here.

use serde_json::Value;

use crate::backend::kubernetes::cluster::{self, Stamp};
use crate::model::{parse_create, Invalid, Limits};

/// A rendered `Cluster`: the database's name, the object, and the same
/// object as YAML (what `kubectl apply` and a git repository hold).
#[derive(Debug, Clone)]
pub struct Rendered {
    pub name: String,
    pub object: Value,
    pub yaml: String,
}

/// The `Cluster` for the create `body` in `namespace`, with `stamp`'s
/// metadata: for a create through the API (the console's preview),
/// [`Stamp::api`] of its owner at revision 1 with no update time; for
/// `pgplane render`, marked as declared in git.
pub fn render(
    body: &Value,
    limits: &Limits,
    namespace: &str,
    stamp: &Stamp,
) -> Result<Rendered, Invalid> {
    let spec = parse_create(body, limits)?;
    let cluster = cluster::render(&spec, namespace, stamp);
    let object = serde_json::to_value(&cluster).expect("a Cluster always serializes");
    let yaml = serde_yaml::to_string(&cluster).expect("a Cluster always serializes");
    Ok(Rendered {
        name: spec.name,
        object,
        yaml,
    })
}

impl super::App {
    /// What a create through the API by `owner` would apply: the console's
    /// preview of its create form.
    pub fn preview(&self, body: &Value, owner: &str) -> Result<Rendered, Invalid> {
        render(
            body,
            &self.limits,
            &self.namespace,
            &Stamp::api(owner.to_owned(), 1, None),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn limits() -> Limits {
        Limits {
            postgres_versions: vec![16, 17],
            max_storage_bytes: crate::model::DEFAULT_MAX_STORAGE_BYTES,
        }
    }

    #[test]
    fn a_valid_body_becomes_the_cluster_the_backend_applies() {
        let body = json!({"name": "orders", "instances": 2, "storage": "5Gi",
            "parameters": {"max_connections": "150"}, "labels": {"team": "payments"}});
        let r = render(
            &body,
            &limits(),
            "databases",
            &Stamp::api("alice".into(), 1, None),
        )
        .unwrap();
        assert_eq!(r.object["kind"], "Cluster");
        assert_eq!(r.object["metadata"]["name"], "orders");
        assert_eq!(r.object["metadata"]["namespace"], "databases");
        assert_eq!(r.object["metadata"]["labels"]["team"], "payments");
        assert_eq!(r.object["spec"]["instances"], 2);
        assert_eq!(r.object["spec"]["storage"]["size"], "5Gi");
        assert_eq!(
            r.object["spec"]["postgresql"]["parameters"]["max_connections"],
            "150"
        );
        let from_yaml: Value = serde_yaml::from_str(&r.yaml).unwrap();
        assert_eq!(from_yaml, r.object);
    }

    #[test]
    fn an_invalid_body_names_each_bad_field() {
        let body = json!({"name": "Bad_Name", "instances": 0, "postgres_version": 9});
        let Invalid(errors) = render(
            &body,
            &limits(),
            "databases",
            &Stamp::api("alice".into(), 1, None),
        )
        .unwrap_err();
        let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
        assert!(fields.contains(&"name"), "{fields:?}");
        assert!(fields.contains(&"instances"), "{fields:?}");
        assert!(fields.contains(&"postgres_version"), "{fields:?}");
    }
}
