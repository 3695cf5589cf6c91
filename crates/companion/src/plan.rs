//! What an upgrade (or a rollback) does, step by step, and the rule every state it passes
//! through is checked against (pure: no cluster).
//!
//! The rules are the operator's own (`mizzen_catalog`'s, `docs/DESIGN.md` decision 2):
//! - an InPlace control plane moves at most one minor version at a time, so a longer move
//!   passes through the newest patch of every minor in between (`vX.Y-latest`);
//! - istio-cni and ztunnel are never newer (by minor) than the control plane they serve, and
//!   at most one minor older. They serve the active revision, so during a RevisionBased
//!   update the old revision does not count.
//!
//! The order is the documented one (seed §1.5.2 and §1.6.2): control plane, then istio-cni,
//! then ztunnel. A rollback that crosses a minor goes the other way (data plane first), so
//! that the data plane is never newer than the control plane; within a minor it keeps the
//! documented order (seed §1.6.3). A data-plane component that would fall more than one minor
//! behind the next control-plane version is first brought to the current one.
//!
//! A component already at a step's version gets no step, so a plan computed again halfway
//! through an upgrade holds only what is left to do.

use mizzen_catalog::{
    Catalog, CatalogError, Component, Version, check_dataplane, check_inplace_move,
};
use serde::Serialize;

/// How an Istio moves to a new version (`spec.updateStrategy.type`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum Strategy {
    /// One revision, replaced.
    InPlace,
    /// A new revision beside the old one.
    RevisionBased,
}

/// Forward or back.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    /// To a newer version (`mizzen upgrade`).
    Upgrade,
    /// To an older one (`mizzen rollback`).
    Rollback,
}

/// The versions that run now, which a plan starts from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Current {
    /// The Istio's name.
    pub istio: String,
    /// Its update strategy.
    pub strategy: Strategy,
    /// The version of its active revision.
    pub control_plane: Version,
    /// The IstioCNI's version, when there is one.
    pub cni: Option<Version>,
    /// The ZTunnel's version, when there is one.
    pub ztunnel: Option<Version>,
}

/// The resource a step changes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum StepKind {
    /// The Istio (its control plane).
    ControlPlane,
    /// The IstioCNI.
    IstioCni,
    /// The ZTunnel.
    Ztunnel,
    /// The operator prunes the revisions a RevisionBased update left unused (nothing is
    /// patched: the step waits for it).
    Prune,
}

impl StepKind {
    /// The kind of the resource the step patches.
    pub fn kind(self) -> &'static str {
        match self {
            Self::ControlPlane => "Istio",
            Self::IstioCni => "IstioCNI",
            Self::Ztunnel => "ZTunnel",
            Self::Prune => "Istio",
        }
    }

    /// The step's name on the command line (`--pause-after`).
    pub fn name(self) -> &'static str {
        match self {
            Self::ControlPlane => "control-plane",
            Self::IstioCni => "istio-cni",
            Self::Ztunnel => "ztunnel",
            Self::Prune => "prune",
        }
    }
}

/// One rule, checked against the state a step leaves the mesh in.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Check {
    /// The rule, in words.
    pub rule: &'static str,
    /// Whether the state keeps it.
    pub ok: bool,
    /// What was compared, or why it breaks.
    pub detail: String,
}

/// One change of one resource's `spec.version`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Step {
    /// What it changes.
    pub kind: StepKind,
    /// The resource's name.
    pub name: String,
    /// The version it runs before the step.
    pub from: String,
    /// The version it asks for.
    pub to: String,
    /// The rules, checked for the state after the step.
    pub checks: Vec<Check>,
    /// What the step does to the cluster: objects, pods, nodes (filled in from the live
    /// cluster by the commands; empty from [`plan`] alone).
    pub effects: Vec<String>,
}

/// Every step of an upgrade or rollback, in order.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Plan {
    /// The Istio's name.
    pub istio: String,
    /// Its update strategy.
    pub strategy: Strategy,
    /// Forward or back.
    pub direction: Direction,
    /// The control plane's version now.
    pub from: String,
    /// The version everything ends at.
    pub to: String,
    /// The control-plane versions passed through, the target last.
    pub hops: Vec<String>,
    /// Why the plan passes through more than one version, when it does.
    pub why_hops: Option<String>,
    /// The steps; empty when everything already runs the target.
    pub steps: Vec<Step>,
}

/// No plan can be made.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    /// The target is not an installable version.
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    /// An upgrade to an older version.
    #[error(
        "{to} is older than the control plane's {from}; to go back, run `mizzen rollback --to {to}`"
    )]
    Downgrade {
        /// The control plane's version.
        from: Version,
        /// The target.
        to: Version,
    },
    /// A rollback to a newer version.
    #[error(
        "{to} is newer than the control plane's {from}; to go forward, run `mizzen upgrade --to {to}`"
    )]
    NotOlder {
        /// The control plane's version.
        from: Version,
        /// The target.
        to: Version,
    },
    /// No order of steps keeps the rules.
    #[error("no valid plan from {from} to {to}: {reason}")]
    NoPath {
        /// The control plane's version.
        from: Version,
        /// The target.
        to: Version,
        /// The rule that cannot be kept.
        reason: String,
    },
}

/// The rule that data-plane components are compared with the control plane by.
pub const DATA_PLANE_RULE: &str =
    "istio-cni and ztunnel: not newer than the control plane, at most one minor older";
/// The rule that InPlace control-plane moves are checked by.
pub const INPLACE_RULE: &str = "InPlace: at most one minor version per step";

/// The plan that moves `current` to `target` (a version or alias of `catalog`).
pub fn plan(
    catalog: &Catalog,
    current: &Current,
    target: &str,
    direction: Direction,
) -> Result<Plan, PlanError> {
    let to = catalog.resolve(target)?.version;
    let from = current.control_plane.clone();
    match direction {
        Direction::Upgrade if to < from => return Err(PlanError::Downgrade { from, to }),
        Direction::Rollback if to > from => return Err(PlanError::NotOlder { from, to }),
        _ => {}
    }
    let no_path = |reason: String| PlanError::NoPath {
        from: from.clone(),
        to: to.clone(),
        reason,
    };
    if from.major != to.major {
        return Err(no_path(format!(
            "mizzen moves within one major version; {from} and {to} differ"
        )));
    }
    let stepwise = minor_hops(catalog, &from, &to).map_err(no_path)?;
    let direct = vec![to.clone()];
    let (hops, why_hops) = match current.strategy {
        Strategy::InPlace if stepwise.len() > 1 => (
            stepwise,
            Some(format!(
                "InPlace moves one minor version at a time: {from} to {to} passes through {}; \
                 a RevisionBased Istio can go in fewer steps",
                list(&stepwise_between(&from, &to, catalog))
            )),
        ),
        Strategy::InPlace => (stepwise, None),
        Strategy::RevisionBased => {
            let broken = first_broken(&steps(current, &direct, direction));
            match broken {
                Some(why) if stepwise.len() > 1 => (
                    stepwise,
                    Some(format!(
                        "going straight to {to} would break a rule ({why}); the plan goes one minor version at a time"
                    )),
                ),
                _ => (direct, None),
            }
        }
    };
    let steps = steps(current, &hops, direction);
    if let Some(why) = first_broken(&steps) {
        return Err(no_path(why));
    }
    Ok(Plan {
        istio: current.istio.clone(),
        strategy: current.strategy,
        direction,
        from: from.to_string(),
        to: to.to_string(),
        hops: hops.iter().map(ToString::to_string).collect(),
        why_hops,
        steps,
    })
}

/// The newest patch of every minor strictly between `from` and `to`, then `to`.
fn minor_hops(catalog: &Catalog, from: &Version, to: &Version) -> Result<Vec<Version>, String> {
    let mut hops = Vec::new();
    for minor in minors_between(from, to) {
        let alias = format!("v{}.{minor}-latest", from.major);
        let hop = catalog.resolve(&alias).map_err(|e| {
            format!("the path passes through {alias}, which cannot be installed: {e}")
        })?;
        hops.push(hop.version);
    }
    hops.push(to.clone());
    Ok(hops)
}

/// The minors strictly between `from` and `to`, in the order of travel.
fn minors_between(from: &Version, to: &Version) -> Vec<u32> {
    if to.minor > from.minor {
        (from.minor + 1..to.minor).collect()
    } else {
        (to.minor + 1..from.minor).rev().collect()
    }
}

/// The intermediate versions of [`minor_hops`], for messages.
fn stepwise_between(from: &Version, to: &Version, catalog: &Catalog) -> Vec<Version> {
    minor_hops(catalog, from, to)
        .map(|mut h| {
            h.pop();
            h
        })
        .unwrap_or_default()
}

fn list(versions: &[Version]) -> String {
    versions
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// The detail of the first check a step breaks.
fn first_broken(steps: &[Step]) -> Option<String> {
    steps
        .iter()
        .flat_map(|s| &s.checks)
        .find(|c| !c.ok)
        .map(|c| c.detail.clone())
}

/// The versions running while the plan is carried out.
#[derive(Clone)]
struct State {
    cp: Version,
    cni: Option<Version>,
    zt: Option<Version>,
}

impl State {
    fn version(&self, kind: StepKind) -> Option<&Version> {
        match kind {
            StepKind::ControlPlane => Some(&self.cp),
            StepKind::IstioCni => self.cni.as_ref(),
            StepKind::Ztunnel => self.zt.as_ref(),
            StepKind::Prune => None,
        }
    }

    fn set(&mut self, kind: StepKind, v: Version) {
        match kind {
            StepKind::ControlPlane => self.cp = v,
            StepKind::IstioCni => self.cni = Some(v),
            StepKind::Ztunnel => self.zt = Some(v),
            StepKind::Prune => {}
        }
    }

    /// The data-plane rule for every data-plane component that exists.
    fn data_plane_checks(&self) -> Vec<Check> {
        [
            (Component::IstioCni, "IstioCNI", &self.cni),
            (Component::ZTunnel, "ZTunnel", &self.zt),
        ]
        .into_iter()
        .filter_map(|(component, kind, v)| {
            let v = v.as_ref()?;
            let result = check_dataplane(component, &self.cp, v);
            let relation = if (v.major, v.minor) == (self.cp.major, self.cp.minor) {
                "the same minor as"
            } else {
                "one minor older than"
            };
            Some(Check {
                rule: DATA_PLANE_RULE,
                ok: result.is_ok(),
                detail: match result {
                    Ok(()) => format!("{kind} {v} is {relation} the control plane {}", self.cp),
                    Err(e) => e.to_string(),
                },
            })
        })
        .collect()
    }
}

/// The steps that carry `current` through `hops`.
fn steps(current: &Current, hops: &[Version], direction: Direction) -> Vec<Step> {
    let mut state = State {
        cp: current.control_plane.clone(),
        cni: current.cni.clone(),
        zt: current.ztunnel.clone(),
    };
    let mut steps = Vec::new();
    let step = |state: &mut State, kind: StepKind, to: &Version, steps: &mut Vec<Step>| {
        let Some(from) = state.version(kind).cloned() else {
            return;
        };
        if &from == to {
            return;
        }
        state.set(kind, to.clone());
        let mut checks = Vec::new();
        if kind == StepKind::ControlPlane && current.strategy == Strategy::InPlace {
            let result = check_inplace_move(&from, to);
            checks.push(Check {
                rule: INPLACE_RULE,
                ok: result.is_ok(),
                detail: match result {
                    Ok(()) => format!("InPlace {from} to {to}: at most one minor"),
                    Err(e) => e.to_string(),
                },
            });
        }
        checks.extend(state.data_plane_checks());
        steps.push(Step {
            kind,
            name: match kind {
                StepKind::ControlPlane => current.istio.clone(),
                _ => "default".to_string(),
            },
            from: from.to_string(),
            to: to.to_string(),
            checks,
            effects: Vec::new(),
        });
    };
    for hop in hops {
        let crosses_minor = (hop.major, hop.minor) != (state.cp.major, state.cp.minor);
        if direction == Direction::Rollback && crosses_minor {
            for kind in [
                StepKind::Ztunnel,
                StepKind::IstioCni,
                StepKind::ControlPlane,
            ] {
                step(&mut state, kind, hop, &mut steps);
            }
            continue;
        }
        // A data-plane component that the next control plane would leave more than one minor
        // behind first catches up with the current control plane.
        let cp = state.cp.clone();
        for (kind, component) in [
            (StepKind::IstioCni, Component::IstioCni),
            (StepKind::Ztunnel, Component::ZTunnel),
        ] {
            if let Some(v) = state.version(kind)
                && check_dataplane(component, hop, v).is_err()
            {
                step(&mut state, kind, &cp, &mut steps);
            }
        }
        for kind in [
            StepKind::ControlPlane,
            StepKind::IstioCni,
            StepKind::Ztunnel,
        ] {
            step(&mut state, kind, hop, &mut steps);
        }
    }
    // A RevisionBased control-plane move leaves the old revisions to the operator's pruning.
    if current.strategy == Strategy::RevisionBased
        && steps.iter().any(|s| s.kind == StepKind::ControlPlane)
    {
        steps.push(Step {
            kind: StepKind::Prune,
            name: current.istio.clone(),
            from: current.control_plane.to_string(),
            to: state.cp.to_string(),
            checks: Vec::new(),
            effects: Vec::new(),
        });
    }
    steps
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &str) -> Version {
        s.parse().unwrap()
    }

    fn current(strategy: Strategy, cp: &str, cni: &str, zt: &str) -> Current {
        Current {
            istio: "default".into(),
            strategy,
            control_plane: v(cp),
            cni: Some(v(cni)),
            ztunnel: Some(v(zt)),
        }
    }

    fn catalog() -> Catalog {
        Catalog::embedded().unwrap()
    }

    /// `kind from->to` of every step.
    fn outline(p: &Plan) -> Vec<String> {
        p.steps
            .iter()
            .map(|s| format!("{} {}->{}", s.kind.name(), s.from, s.to))
            .collect()
    }

    #[test]
    fn a_patch_update_is_the_documented_three_steps() {
        for strategy in [Strategy::InPlace, Strategy::RevisionBased] {
            let c = current(strategy, "v1.26.3", "v1.26.3", "v1.26.3");
            let p = plan(&catalog(), &c, "v1.26.4", Direction::Upgrade).unwrap();
            let mut expected = vec![
                "control-plane v1.26.3->v1.26.4",
                "istio-cni v1.26.3->v1.26.4",
                "ztunnel v1.26.3->v1.26.4",
            ];
            if strategy == Strategy::RevisionBased {
                // Then the operator prunes the old revision once nothing uses it.
                expected.push("prune v1.26.3->v1.26.4");
            }
            assert_eq!(outline(&p), expected);
            assert_eq!(p.hops, ["v1.26.4"]);
            assert!(p.why_hops.is_none());
            assert!(p.steps.iter().flat_map(|s| &s.checks).all(|c| c.ok));
        }
    }

    #[test]
    fn inplace_across_two_minors_passes_through_the_newest_patch_between() {
        let cat = catalog();
        let middle = cat.resolve("v1.27-latest").unwrap().version.to_string();
        let c = current(Strategy::InPlace, "v1.26.3", "v1.26.3", "v1.26.3");
        let p = plan(&cat, &c, "v1.28.1", Direction::Upgrade).unwrap();
        assert_eq!(p.hops, [middle.as_str(), "v1.28.1"]);
        assert_eq!(
            outline(&p),
            [
                format!("control-plane v1.26.3->{middle}"),
                format!("istio-cni v1.26.3->{middle}"),
                format!("ztunnel v1.26.3->{middle}"),
                format!("control-plane {middle}->v1.28.1"),
                format!("istio-cni {middle}->v1.28.1"),
                format!("ztunnel {middle}->v1.28.1"),
            ]
        );
        let why = p.why_hops.unwrap();
        assert!(why.contains("one minor version at a time"), "{why}");
        // Every step is checked: the InPlace rule on control-plane steps, the data-plane
        // rule for both components everywhere.
        assert_eq!(p.steps[0].checks.len(), 3);
        assert_eq!(p.steps[0].checks[0].rule, INPLACE_RULE);
        assert_eq!(p.steps[1].checks.len(), 2);
        assert!(p.steps.iter().flat_map(|s| &s.checks).all(|c| c.ok));
    }

    #[test]
    fn revision_based_goes_straight_within_one_minor_and_steps_across_two() {
        let cat = catalog();
        let c = current(Strategy::RevisionBased, "v1.26.3", "v1.26.3", "v1.26.3");
        let p = plan(&cat, &c, "v1.27.2", Direction::Upgrade).unwrap();
        assert_eq!(p.hops, ["v1.27.2"]);
        let p = plan(&cat, &c, "v1.28.1", Direction::Upgrade).unwrap();
        assert_eq!(p.hops.len(), 2, "{p:?}");
        let why = p.why_hops.unwrap();
        assert!(why.contains("more than one minor"), "{why}");
    }

    #[test]
    fn a_plan_computed_halfway_holds_only_what_is_left() {
        let c = current(Strategy::InPlace, "v1.26.4", "v1.26.4", "v1.26.3");
        let p = plan(&catalog(), &c, "v1.26.4", Direction::Upgrade).unwrap();
        assert_eq!(outline(&p), ["ztunnel v1.26.3->v1.26.4"]);
        let done = current(Strategy::InPlace, "v1.26.4", "v1.26.4", "v1.26.4");
        assert!(
            plan(&catalog(), &done, "v1.26.4", Direction::Upgrade)
                .unwrap()
                .steps
                .is_empty()
        );
    }

    #[test]
    fn a_lagging_data_plane_catches_up_before_the_control_plane_moves_on() {
        let c = current(Strategy::InPlace, "v1.27.2", "v1.26.3", "v1.27.2");
        let p = plan(&catalog(), &c, "v1.28.1", Direction::Upgrade).unwrap();
        assert_eq!(
            outline(&p),
            [
                "istio-cni v1.26.3->v1.27.2",
                "control-plane v1.27.2->v1.28.1",
                "istio-cni v1.27.2->v1.28.1",
                "ztunnel v1.27.2->v1.28.1",
            ]
        );
    }

    #[test]
    fn a_rollback_across_a_minor_moves_the_data_plane_first() {
        let c = current(Strategy::RevisionBased, "v1.27.2", "v1.27.2", "v1.27.2");
        let p = plan(&catalog(), &c, "v1.26.4", Direction::Rollback).unwrap();
        assert_eq!(
            outline(&p),
            [
                "ztunnel v1.27.2->v1.26.4",
                "istio-cni v1.27.2->v1.26.4",
                "control-plane v1.27.2->v1.26.4",
                "prune v1.27.2->v1.26.4",
            ]
        );
        assert!(p.steps.iter().flat_map(|s| &s.checks).all(|c| c.ok));
        // Within a minor: the documented order (seed §1.6.3).
        let c = current(Strategy::RevisionBased, "v1.26.4", "v1.26.4", "v1.26.4");
        let p = plan(&catalog(), &c, "v1.26.3", Direction::Rollback).unwrap();
        assert_eq!(p.steps[0].kind, StepKind::ControlPlane);
    }

    #[test]
    fn bad_targets_name_the_value_and_what_would_be_valid() {
        let c = current(Strategy::InPlace, "v1.26.4", "v1.26.4", "v1.26.4");
        let e = plan(&catalog(), &c, "v1.26.3", Direction::Upgrade)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("v1.26.3") && e.contains("mizzen rollback --to v1.26.3"),
            "{e}"
        );
        let e = plan(&catalog(), &c, "v1.99.0", Direction::Upgrade)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("v1.99.0") && e.contains("installable versions are"),
            "{e}"
        );
        let e = plan(&catalog(), &c, "v1.25-latest", Direction::Upgrade)
            .unwrap_err()
            .to_string();
        assert!(e.contains("end-of-life"), "{e}");
        let e = plan(&catalog(), &c, "v1.27.2", Direction::Rollback)
            .unwrap_err()
            .to_string();
        assert!(e.contains("mizzen upgrade --to v1.27.2"), "{e}");
    }
}
