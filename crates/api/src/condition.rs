//! Status conditions shared by every kind, and the `state` derivation rule.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Status of a condition: `True`, `False` or `Unknown`.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema, Default)]
pub enum ConditionStatus {
    /// The condition holds.
    True,
    /// The condition does not hold.
    False,
    /// It could not be determined.
    #[default]
    Unknown,
}

impl ConditionStatus {
    /// `True` for `true`, `False` for `false`.
    pub fn from_bool(b: bool) -> Self {
        if b { Self::True } else { Self::False }
    }
}

/// One status condition, as upstream's `StatusCondition` plus `observedGeneration`, so that
/// `kubectl wait --for=condition=…` never returns on a condition computed for an older spec.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema, Default)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    /// Condition type, e.g. `Ready`.
    #[serde(rename = "type")]
    pub type_: String,
    /// `True`, `False` or `Unknown`.
    pub status: ConditionStatus,
    /// Machine-readable reason in PascalCase; equals the type when the status is `True`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Human-readable explanation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// When the status last changed (RFC 3339, whole seconds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_transition_time: Option<String>,
    /// The `metadata.generation` this condition was computed for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

impl Condition {
    /// A condition with a reason and message.
    pub fn new(
        type_: &str,
        status: ConditionStatus,
        reason: &str,
        message: impl Into<String>,
    ) -> Self {
        Self {
            type_: type_.to_string(),
            status,
            reason: Some(reason.to_string()),
            message: Some(message.into()),
            ..Default::default()
        }
    }

    /// A `True` condition whose reason is the type itself, as upstream does.
    pub fn healthy(type_: &str, message: impl Into<String>) -> Self {
        Self::new(type_, ConditionStatus::True, type_, message)
    }
}

/// Helpers on a list of conditions.
pub trait Conditions {
    /// The condition of the given type, if present.
    fn get_condition(&self, type_: &str) -> Option<&Condition>;

    /// Inserts or replaces the condition of `c.type_`. Keeps the previous `lastTransitionTime`
    /// when the status did not change, otherwise uses `now`.
    fn set_condition(&mut self, c: Condition, now: &str);
}

impl Conditions for Vec<Condition> {
    fn get_condition(&self, type_: &str) -> Option<&Condition> {
        self.iter().find(|c| c.type_ == type_)
    }

    fn set_condition(&mut self, mut c: Condition, now: &str) {
        match self.iter_mut().find(|old| old.type_ == c.type_) {
            Some(old) => {
                c.last_transition_time = if old.status == c.status {
                    old.last_transition_time.clone()
                } else {
                    Some(now.to_string())
                };
                *old = c;
            }
            None => {
                c.last_transition_time = Some(now.to_string());
                self.push(c);
            }
        }
    }
}

/// The `state` of a status: the reason of the first condition (in the given order) that is not
/// `True`, or `Healthy` when all are. A missing condition counts as `Unknown` with no reason.
pub fn derive_state(conditions: &[Condition], order: &[&str]) -> String {
    for t in order {
        match conditions.iter().find(|c| c.type_ == *t) {
            Some(c) if c.status == ConditionStatus::True => {}
            Some(c) => return c.reason.clone().unwrap_or_else(|| format!("{t}Unknown")),
            None => return format!("{t}Unknown"),
        }
    }
    "Healthy".to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transition_time_kept_when_status_unchanged() {
        let mut cs = Vec::new();
        cs.set_condition(Condition::healthy("Ready", "ok"), "t1");
        cs.set_condition(Condition::healthy("Ready", "still ok"), "t2");
        assert_eq!(cs.len(), 1);
        assert_eq!(cs[0].last_transition_time.as_deref(), Some("t1"));
        assert_eq!(cs[0].message.as_deref(), Some("still ok"));
        cs.set_condition(
            Condition::new("Ready", ConditionStatus::False, "DaemonSetNotReady", "x"),
            "t3",
        );
        assert_eq!(cs[0].last_transition_time.as_deref(), Some("t3"));
        assert_eq!(
            cs.get_condition("Ready").unwrap().status,
            ConditionStatus::False
        );
    }

    #[test]
    fn state_is_first_non_true_reason() {
        let cs = vec![
            Condition::healthy("Reconciled", ""),
            Condition::new("Ready", ConditionStatus::False, "IstiodNotReady", ""),
            Condition::new(
                "DependenciesHealthy",
                ConditionStatus::False,
                "ZTunnelNotFound",
                "",
            ),
        ];
        assert_eq!(
            derive_state(&cs, &["Reconciled", "Ready", "DependenciesHealthy"]),
            "IstiodNotReady"
        );
        assert_eq!(derive_state(&cs, &["Reconciled"]), "Healthy");
        assert_eq!(derive_state(&cs, &["InUse"]), "InUseUnknown");
    }

    #[test]
    fn status_serializes_as_kubernetes_strings() {
        let c = Condition::new("Ready", ConditionStatus::Unknown, "R", "m");
        let v = serde_json::to_value(&c).unwrap();
        assert_eq!(v["status"], "Unknown");
        assert_eq!(v["type"], "Ready");
        assert!(v.get("observedGeneration").is_none());
    }
}
