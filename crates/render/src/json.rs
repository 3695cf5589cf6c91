//! Small operations on `serde_json::Value` trees: the deep merge of the values pipeline,
//! canonical key order, path access, and the pruning of fields the API server stores as
//! absent.

use serde_json::{Map, Value};

/// Merges `overlay` into `base` the way Helm merges values: maps merge key by key,
/// recursively; scalars and lists replace; a `null` in the overlay deletes the key.
pub(crate) fn merge(base: &mut Value, overlay: &Value) {
    let Value::Object(over) = overlay else {
        *base = overlay.clone();
        return;
    };
    if !base.is_object() {
        *base = Value::Object(Map::new());
    }
    let Value::Object(target) = base else {
        return;
    };
    for (key, value) in over {
        match (target.get_mut(key), value) {
            (_, Value::Null) => {
                target.remove(key);
            }
            (Some(existing @ Value::Object(_)), Value::Object(_)) => merge(existing, value),
            (_, Value::Object(_)) => {
                let mut fresh = Value::Object(Map::new());
                merge(&mut fresh, value);
                target.insert(key.clone(), fresh);
            }
            (_, _) => {
                target.insert(key.clone(), value.clone());
            }
        }
    }
}

/// The same tree with every map rebuilt in sorted key order, so that output does not
/// depend on insertion order even when `serde_json` keeps it (feature `preserve_order`).
pub(crate) fn canonical(value: Value) -> Value {
    match value {
        Value::Object(map) => {
            let mut entries: Vec<(String, Value)> = map.into_iter().collect();
            entries.sort_by(|a, b| a.0.cmp(&b.0));
            Value::Object(
                entries
                    .into_iter()
                    .map(|(k, v)| (k, canonical(v)))
                    .collect(),
            )
        }
        Value::Array(items) => Value::Array(items.into_iter().map(canonical).collect()),
        other => other,
    }
}

/// The value at `path` (object keys), if present.
pub(crate) fn get<'a>(value: &'a Value, path: &[&str]) -> Option<&'a Value> {
    path.iter().try_fold(value, |v, key| v.get(key))
}

/// Sets `path` to `new`, creating (or replacing non-object) parents.
pub(crate) fn set(value: &mut Value, path: &[&str], new: Value) {
    let Some((key, rest)) = path.split_first() else {
        *value = new;
        return;
    };
    if !value.is_object() {
        *value = Value::Object(Map::new());
    }
    if let Value::Object(map) = value {
        set(map.entry(key.to_string()).or_insert(Value::Null), rest, new);
    }
}

/// Removes, recursively, fields whose value is `null`, `[]` or `{}`: the API server stores
/// them as absent, so sending them would make every server-side apply a change. Empty
/// objects that mean something are kept: `emptyDir: {}`, label selectors (`{}` selects
/// everything) and a CRD's `subresources.status: {}`. Array elements are never removed.
pub(crate) fn prune(value: &mut Value) {
    prune_in(value, "");
}

fn prune_in(value: &mut Value, key: &str) {
    match value {
        Value::Object(map) => {
            for (child_key, child) in map.iter_mut() {
                prune_in(child, child_key);
            }
            map.retain(|child_key, child| !is_absent(key, child_key, child));
        }
        Value::Array(items) => items.iter_mut().for_each(|item| prune_in(item, "")),
        _ => {}
    }
}

fn is_absent(parent: &str, key: &str, value: &Value) -> bool {
    match value {
        Value::Null => true,
        Value::Array(items) => items.is_empty(),
        Value::Object(map) if map.is_empty() => {
            let meaningful = matches!(
                key,
                "emptyDir" | "labelSelector" | "namespaceSelector" | "podSelector"
            ) || (parent == "subresources" && key == "status");
            !meaningful
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn merge_recurses_into_maps_and_replaces_the_rest() {
        let mut base = json!({"a": {"b": 1, "c": [1, 2]}, "d": "x", "e": {"f": 1}});
        merge(
            &mut base,
            &json!({"a": {"c": [3], "g": {"h": null, "i": 2}}, "d": {"k": 1}, "e": null}),
        );
        assert_eq!(
            base,
            json!({"a": {"b": 1, "c": [3], "g": {"i": 2}}, "d": {"k": 1}})
        );
    }

    #[test]
    fn set_and_get_paths() {
        let mut v = json!({"a": 1});
        set(&mut v, &["a", "b", "c"], json!(true));
        assert_eq!(v, json!({"a": {"b": {"c": true}}}));
        assert_eq!(get(&v, &["a", "b", "c"]), Some(&json!(true)));
        assert_eq!(get(&v, &["a", "x"]), None);
    }

    #[test]
    fn prune_drops_absent_fields_and_keeps_meaningful_empty_objects() {
        let mut v = json!({
            "spec": {"selector": {}, "x": null, "list": [], "sc": {"caps": {"drop": []}},
                     "volumes": [{"name": "t", "emptyDir": {}}],
                     "affinity": {"labelSelector": {}}},
            "subresources": {"status": {}},
            "keep": [{}],
            "s": ""
        });
        prune(&mut v);
        assert_eq!(
            v,
            json!({
                "spec": {"volumes": [{"name": "t", "emptyDir": {}}],
                         "affinity": {"labelSelector": {}}},
                "subresources": {"status": {}},
                "keep": [{}],
                "s": ""
            })
        );
    }

    #[test]
    fn canonical_sorts_keys() {
        let v = canonical(json!({"b": 1, "a": {"d": 1, "c": 2}}));
        assert_eq!(
            serde_json::to_string(&v).unwrap(),
            r#"{"a":{"c":2,"d":1},"b":1}"#
        );
    }
}
