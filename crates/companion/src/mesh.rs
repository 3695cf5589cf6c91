//! A snapshot of the mesh, read through the public API: one LIST per kind of mizzen's API and
//! a GET of each data-plane DaemonSet.

use k8s_openapi::api::apps::v1::DaemonSet;
use kube::api::{Api, ListParams};
use kube::{Client, Resource, ResourceExt};
use mizzen_api::{Istio, IstioCNI, IstioRevision, IstioRevisionTag, RolloutPolicy, ZTunnel};
use serde::de::DeserializeOwned;

/// Everything `status`, `plan` and `upgrade` read.
#[derive(Clone, Debug, Default)]
pub struct Mesh {
    /// Every Istio.
    pub istios: Vec<Istio>,
    /// Every IstioRevision.
    pub revisions: Vec<IstioRevision>,
    /// Every IstioRevisionTag.
    pub tags: Vec<IstioRevisionTag>,
    /// The IstioCNI (a singleton named `default`), when it exists.
    pub cni: Option<IstioCNI>,
    /// The ZTunnel (a singleton named `default`), when it exists.
    pub ztunnel: Option<ZTunnel>,
    /// The IstioCNI's DaemonSet, when it exists.
    pub cni_daemonset: Option<DaemonSet>,
    /// The ZTunnel's DaemonSet, when it exists.
    pub ztunnel_daemonset: Option<DaemonSet>,
    /// Every RolloutPolicy (none where mizzen.io is not served).
    pub policies: Vec<RolloutPolicy>,
}

/// Why the mesh could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// mizzen's CRDs are not installed.
    #[error(
        "this cluster does not serve {kind} (sailoperator.io/v1): mizzen's CRDs are not installed; \
         install them with `mizzen crds | kubectl apply --server-side -f -` and run the operator"
    )]
    NoCrds {
        /// The kind that was asked for.
        kind: String,
    },
    /// The user may not read something.
    #[error("forbidden to list {resource}: {message}")]
    Forbidden {
        /// What was asked for.
        resource: String,
        /// The API server's answer.
        message: String,
    },
    /// Any other failure.
    #[error("reading {resource}: {source}")]
    Api {
        /// What was asked for.
        resource: String,
        /// The error.
        source: kube::Error,
    },
}

fn classify<K: Resource<DynamicType = ()>>(e: kube::Error) -> ReadError {
    let resource = K::plural(&()).into_owned();
    match e {
        kube::Error::Api(s) if s.code == 404 => ReadError::NoCrds {
            kind: K::kind(&()).into_owned(),
        },
        kube::Error::Api(s) if s.code == 403 => ReadError::Forbidden {
            resource,
            message: s.message,
        },
        source => ReadError::Api { resource, source },
    }
}

async fn list<K>(client: &Client) -> Result<Vec<K>, ReadError>
where
    K: Resource<DynamicType = (), Scope = k8s_openapi::ClusterResourceScope>
        + Clone
        + DeserializeOwned
        + std::fmt::Debug,
{
    Api::<K>::all(client.clone())
        .list(&ListParams::default())
        .await
        .map(|l| l.items)
        .map_err(classify::<K>)
}

async fn daemonset(
    client: &Client,
    namespace: &str,
    name: &str,
) -> Result<Option<DaemonSet>, ReadError> {
    Api::<DaemonSet>::namespaced(client.clone(), namespace)
        .get_opt(name)
        .await
        .map_err(classify::<DaemonSet>)
}

/// Whether revision `rev` belongs to the Istio named `istio` (its owner reference).
pub fn owned_by(rev: &IstioRevision, istio: &str) -> bool {
    rev.owner_references()
        .iter()
        .any(|o| o.kind == "Istio" && o.name == istio)
}

impl Mesh {
    /// The revisions of the Istio named `istio`.
    pub fn revisions_of<'a>(&'a self, istio: &'a str) -> impl Iterator<Item = &'a IstioRevision> {
        self.revisions.iter().filter(move |r| owned_by(r, istio))
    }

    /// Reads the mesh from the cluster of `client`.
    pub async fn read(client: &Client) -> Result<Self, ReadError> {
        let istios = list::<Istio>(client).await?;
        let revisions = list::<IstioRevision>(client).await?;
        let tags = list::<IstioRevisionTag>(client).await?;
        let cni = list::<IstioCNI>(client).await?.into_iter().next();
        let ztunnel = list::<ZTunnel>(client).await?.into_iter().next();
        let cni_daemonset = match &cni {
            Some(c) => {
                daemonset(client, &c.spec.namespace, mizzen_controller::cni::DAEMONSET).await?
            }
            None => None,
        };
        let ztunnel_daemonset = match &ztunnel {
            Some(z) => {
                let name = mizzen_controller::ztunnel::daemonset_name(z);
                daemonset(client, &z.spec.namespace, &name).await?
            }
            None => None,
        };
        // An install older than RolloutPolicy serves no mizzen.io: no policies.
        let policies = match list::<RolloutPolicy>(client).await {
            Err(ReadError::NoCrds { .. }) => Vec::new(),
            other => other?,
        };
        Ok(Self {
            policies,
            istios,
            revisions,
            tags,
            cni,
            ztunnel,
            cni_daemonset,
            ztunnel_daemonset,
        })
    }
}
