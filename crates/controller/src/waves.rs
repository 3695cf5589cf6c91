//! The waves of a `DrainWaves` rollout (pure): which nodes go together, in which order, and how
//! many at once (`docs/rollout.md`).

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use mizzen_api::rollout::DrainWaves;

/// What the planner reads of a node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeInfo {
    /// Name.
    pub name: String,
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// Being deleted: skipped (its pods go with it).
    pub deleting: bool,
}

/// The plan: waves of node names, the nodes drained first, then (without draining) the nodes
/// the selector leaves out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Waves {
    /// Waves of drained nodes, in order.
    pub drained: Vec<Vec<String>>,
    /// Nodes outside the selector: their agent pods are replaced without draining, after the
    /// drained waves, one at a time.
    pub undrained: Vec<String>,
    /// Nodes drained at once within a wave.
    pub max_unavailable: usize,
}

impl Waves {
    /// Every wave, the undrained nodes as the last one.
    pub fn all(&self) -> Vec<Vec<String>> {
        let mut all = self.drained.clone();
        if !self.undrained.is_empty() {
            all.push(self.undrained.clone());
        }
        all
    }
}

/// The spec cannot be acted on: the condition reason and a message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Invalid {
    /// Condition reason.
    pub reason: &'static str,
    /// What is wrong and what would be valid.
    pub message: String,
}

fn invalid(reason: &'static str, message: String) -> Invalid {
    Invalid { reason, message }
}

/// `value` of `total`: a count, or a percentage (`"20%"`) rounded up or down.
fn scaled(
    field: &str,
    value: &IntOrString,
    total: usize,
    round_up: bool,
) -> Result<usize, Invalid> {
    let bad = |why: &str| {
        invalid(
            "InvalidSpec",
            format!(
                "{field} {value:?} {why}; give a count of 1 or more, or a percentage from 1% to 100%"
            ),
        )
    };
    match value {
        IntOrString::Int(n) if *n >= 1 => Ok(*n as usize),
        IntOrString::Int(_) => Err(bad("is less than 1")),
        IntOrString::String(s) => {
            let pct: u32 = s
                .strip_suffix('%')
                .and_then(|p| p.parse().ok())
                .ok_or_else(|| bad("is neither a number nor a percentage"))?;
            if !(1..=100).contains(&pct) {
                return Err(bad("is out of range"));
            }
            let n = total * pct as usize;
            Ok(if round_up { n.div_ceil(100) } else { n / 100 })
        }
    }
}

/// Whether `labels` match `selector` (matchLabels and matchExpressions, as the API server
/// evaluates them).
pub fn matches(selector: &LabelSelector, labels: &BTreeMap<String, String>) -> bool {
    let by_labels = selector
        .match_labels
        .iter()
        .flatten()
        .all(|(k, v)| labels.get(k) == Some(v));
    let by_expressions = selector.match_expressions.iter().flatten().all(|e| {
        let values = e.values.clone().unwrap_or_default();
        let value = labels.get(&e.key);
        match e.operator.as_str() {
            "In" => value.is_some_and(|v| values.contains(v)),
            "NotIn" => value.is_none_or(|v| !values.contains(v)),
            "Exists" => value.is_some(),
            "DoesNotExist" => value.is_none(),
            _ => false,
        }
    });
    by_labels && by_expressions
}

/// The waves for `nodes` under `spec`.
pub fn plan(nodes: &[NodeInfo], spec: &DrainWaves) -> Result<Waves, Invalid> {
    let mut live: Vec<&NodeInfo> = nodes.iter().filter(|n| !n.deleting).collect();
    let group = |n: &NodeInfo| {
        spec.group_by_label
            .as_ref()
            .and_then(|l| n.labels.get(l).cloned())
            .unwrap_or_default()
    };
    live.sort_by_key(|n| (group(n), n.name.clone()));
    let (selected, undrained): (Vec<&NodeInfo>, Vec<&NodeInfo>) = live.into_iter().partition(|n| {
        spec.node_selector
            .as_ref()
            .is_none_or(|s| matches(s, &n.labels))
    });
    if selected.is_empty() && spec.node_selector.is_some() {
        return Err(invalid(
            "NoMatchingNodes",
            "spec.drainWaves.nodeSelector matches no node; change it, or remove it to drain \
             every node"
                .into(),
        ));
    }
    let size = scaled(
        "spec.drainWaves.waveSize",
        spec.wave_size
            .as_ref()
            .unwrap_or(&IntOrString::String("10%".into())),
        selected.len(),
        true,
    )?
    .max(1);
    let max_unavailable = scaled(
        "spec.drainWaves.maxUnavailable",
        spec.max_unavailable
            .as_ref()
            .unwrap_or(&IntOrString::Int(1)),
        size,
        false,
    )?
    .clamp(1, size);
    // Cut waves within each group, so that a wave never mixes two groups.
    let mut drained: Vec<Vec<String>> = Vec::new();
    let mut current: Vec<String> = Vec::new();
    let mut current_group = None;
    for n in selected {
        let g = group(n);
        if current.len() == size || (current_group.as_ref().is_some_and(|c| *c != g)) {
            drained.push(std::mem::take(&mut current));
        }
        current_group = Some(g);
        current.push(n.name.clone());
    }
    if !current.is_empty() {
        drained.push(current);
    }
    Ok(Waves {
        drained,
        undrained: undrained.into_iter().map(|n| n.name.clone()).collect(),
        max_unavailable,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement;

    fn node(name: &str, zone: &str) -> NodeInfo {
        NodeInfo {
            name: name.into(),
            labels: [("zone".to_string(), zone.to_string())].into(),
            deleting: false,
        }
    }

    fn nodes(n: usize) -> Vec<NodeInfo> {
        (1..=n)
            .map(|i| node(&format!("node-{i:02}"), "a"))
            .collect()
    }

    fn spec(size: IntOrString) -> DrainWaves {
        DrainWaves {
            wave_size: Some(size),
            ..Default::default()
        }
    }

    #[test]
    fn twenty_percent_of_thirty_nodes_is_five_waves_of_six() {
        let w = plan(&nodes(30), &spec(IntOrString::String("20%".into()))).unwrap();
        assert_eq!(w.drained.len(), 5);
        assert!(w.drained.iter().all(|wave| wave.len() == 6));
        assert_eq!(w.drained[0][0], "node-01");
        assert_eq!(w.max_unavailable, 1);
        assert!(w.undrained.is_empty());
    }

    #[test]
    fn percentages_round_up_and_counts_are_counts() {
        let w = plan(&nodes(7), &spec(IntOrString::String("50%".into()))).unwrap();
        assert_eq!(w.drained.iter().map(Vec::len).collect::<Vec<_>>(), [4, 3]);
        let w = plan(&nodes(7), &spec(IntOrString::Int(3))).unwrap();
        assert_eq!(
            w.drained.iter().map(Vec::len).collect::<Vec<_>>(),
            [3, 3, 1]
        );
    }

    #[test]
    fn a_wave_never_mixes_two_groups_and_groups_go_in_order() {
        let mut ns = vec![
            node("b1", "b"),
            node("a1", "a"),
            node("a2", "a"),
            node("b2", "b"),
        ];
        ns.push(node("a3", "a"));
        let w = plan(
            &ns,
            &DrainWaves {
                wave_size: Some(IntOrString::Int(2)),
                group_by_label: Some("zone".into()),
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(w.drained, [vec!["a1", "a2"], vec!["a3"], vec!["b1", "b2"]]);
    }

    #[test]
    fn the_selector_picks_the_drained_nodes_the_others_go_last_and_deleting_ones_not_at_all() {
        let mut ns = nodes(4);
        ns[1].labels.insert("pool".into(), "apps".into());
        ns[2].labels.insert("pool".into(), "apps".into());
        ns[3].deleting = true;
        let selector = LabelSelector {
            match_expressions: Some(vec![LabelSelectorRequirement {
                key: "pool".into(),
                operator: "In".into(),
                values: Some(vec!["apps".into()]),
            }]),
            ..Default::default()
        };
        let w = plan(
            &ns,
            &DrainWaves {
                node_selector: Some(selector),
                wave_size: Some(IntOrString::String("100%".into())),
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(w.drained, [vec!["node-02", "node-03"]]);
        assert_eq!(w.undrained, ["node-01"]);
        assert_eq!(w.all().len(), 2);
    }

    #[test]
    fn bad_sizes_and_empty_selectors_are_named() {
        for bad in [
            IntOrString::Int(0),
            IntOrString::String("0%".into()),
            IntOrString::String("150%".into()),
            IntOrString::String("lots".into()),
        ] {
            let e = plan(&nodes(3), &spec(bad.clone())).unwrap_err();
            assert_eq!(e.reason, "InvalidSpec", "{bad:?}");
            assert!(
                e.message.contains("spec.drainWaves.waveSize"),
                "{}",
                e.message
            );
        }
        let e = plan(
            &nodes(3),
            &DrainWaves {
                node_selector: Some(LabelSelector {
                    match_labels: Some([("pool".to_string(), "gpu".to_string())].into()),
                    ..Default::default()
                }),
                ..Default::default()
            },
        )
        .unwrap_err();
        assert_eq!(e.reason, "NoMatchingNodes");
    }
}
