//! RBAC building blocks: policy rules and role/binding pairs bound to one ServiceAccount.

use k8s_openapi::api::rbac::v1::{
    ClusterRole, ClusterRoleBinding, PolicyRule, Role, RoleBinding, RoleRef, Subject,
};

use crate::RenderError;
use crate::labels::Labels;
use crate::object::{Object, Stamp, cluster, namespaced};

/// A rule over `resources` of `groups` (`""` is the core group).
pub(crate) fn rule(groups: &[&str], resources: &[&str], verbs: &[&str]) -> PolicyRule {
    PolicyRule {
        api_groups: Some(strings(groups)),
        resources: Some(strings(resources)),
        verbs: strings(verbs),
        ..PolicyRule::default()
    }
}

/// A rule restricted to named objects.
pub(crate) fn named_rule(
    groups: &[&str],
    resources: &[&str],
    names: &[&str],
    verbs: &[&str],
) -> PolicyRule {
    PolicyRule {
        resource_names: Some(strings(names)),
        ..rule(groups, resources, verbs)
    }
}

/// OpenShift: permission to run pods under the `privileged` SecurityContextConstraints
/// (hostPath volumes, root, added capabilities, SELinux `spc_t`).
pub(crate) fn privileged_scc() -> PolicyRule {
    named_rule(
        &["security.openshift.io"],
        &["securitycontextconstraints"],
        &["privileged"],
        &["use"],
    )
}

/// A ServiceAccount to bind roles to.
pub(crate) struct Account<'a> {
    pub name: &'a str,
    pub namespace: &'a str,
}

impl Account<'_> {
    fn subject(&self) -> Subject {
        Subject {
            kind: "ServiceAccount".to_owned(),
            name: self.name.to_owned(),
            namespace: Some(self.namespace.to_owned()),
            api_group: None,
        }
    }
}

/// A ClusterRole and a ClusterRoleBinding granting it to `account`.
pub(crate) fn cluster_role(
    stamp: &Stamp,
    (role, role_labels): (&str, &Labels),
    (binding, binding_labels): (&str, &Labels),
    rules: Vec<PolicyRule>,
    account: &Account<'_>,
) -> Result<[Object; 2], RenderError> {
    let role_object = ClusterRole {
        metadata: cluster(role, role_labels.clone()),
        rules: Some(rules),
        aggregation_rule: None,
    };
    let binding_object = ClusterRoleBinding {
        metadata: cluster(binding, binding_labels.clone()),
        role_ref: role_ref("ClusterRole", role),
        subjects: Some(vec![account.subject()]),
    };
    Ok([stamp.object(&role_object)?, stamp.object(&binding_object)?])
}

/// A Role and a RoleBinding of the same name in the account's namespace.
pub(crate) fn role(
    stamp: &Stamp,
    name: &str,
    labels: &Labels,
    rules: Vec<PolicyRule>,
    account: &Account<'_>,
) -> Result<[Object; 2], RenderError> {
    let role_object = Role {
        metadata: namespaced(name, account.namespace, labels.clone()),
        rules: Some(rules),
    };
    let binding_object = RoleBinding {
        metadata: namespaced(name, account.namespace, labels.clone()),
        role_ref: role_ref("Role", name),
        subjects: Some(vec![account.subject()]),
    };
    Ok([stamp.object(&role_object)?, stamp.object(&binding_object)?])
}

fn role_ref(kind: &str, name: &str) -> RoleRef {
    RoleRef {
        api_group: Some("rbac.authorization.k8s.io".to_owned()),
        kind: kind.to_owned(),
        name: name.to_owned(),
    }
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| (*s).to_owned()).collect()
}
