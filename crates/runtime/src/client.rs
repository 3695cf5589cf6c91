//! The API client, counting every request it sends by verb, resource and answer code
//! (`mizzen_kube_requests_total`): what the operator costs the API server, and proof, in
//! tests, that it never met a `forbidden`.

use std::sync::Arc;
use std::task::{Context as TaskContext, Poll};

use futures::FutureExt;
use futures::future::BoxFuture;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

type Labels = Vec<(&'static str, String)>;

/// Requests sent, by verb, API group, resource, subresource and HTTP answer code.
#[derive(Clone, Debug, Default)]
pub struct RequestMetrics(Family<Labels, Counter>);

impl RequestMetrics {
    /// New counters, registered in `registry`.
    pub fn new(registry: &mut Registry) -> Self {
        let m = Self::default();
        registry.register(
            "kube_requests",
            "Requests sent to the API server, by verb, group, resource, subresource and code",
            m.0.clone(),
        );
        m
    }
}

/// What an API request does, as the RBAC authorizer names it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestInfo {
    /// `get`, `list`, `watch`, `create`, `update`, `patch`, `delete`, `deletecollection`.
    pub verb: &'static str,
    /// API group (`""`: core).
    pub group: String,
    /// Resource (plural); empty for non-resource paths such as discovery.
    pub resource: String,
    /// Subresource, empty if none.
    pub subresource: String,
}

/// Parses a request's method, path and query.
pub fn request_info(method: &http::Method, path: &str, query: Option<&str>) -> RequestInfo {
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let rest: &[&str] = match segments.as_slice() {
        ["api", _version, rest @ ..] => rest,
        ["apis", _group, _version, rest @ ..] => rest,
        _ => &[],
    };
    let group = match segments.as_slice() {
        ["apis", group, _, ..] => (*group).to_owned(),
        _ => String::new(),
    };
    let (resource, name, sub) = match rest {
        ["namespaces", _, resource, more @ ..] => (*resource, more.first(), more.get(1)),
        [resource, more @ ..] => (*resource, more.first(), more.get(1)),
        [] => ("", None, None),
    };
    let watch = query.is_some_and(|q| q.split('&').any(|kv| kv == "watch=true" || kv == "watch=1"));
    let verb = match *method {
        http::Method::GET if watch => "watch",
        http::Method::GET if name.is_some() || resource.is_empty() => "get",
        http::Method::GET => "list",
        http::Method::POST => "create",
        http::Method::PUT => "update",
        http::Method::PATCH => "patch",
        http::Method::DELETE if name.is_some() => "delete",
        http::Method::DELETE => "deletecollection",
        _ => "other",
    };
    RequestInfo {
        verb,
        group,
        resource: resource.to_owned(),
        subresource: sub.map(|s| (*s).to_owned()).unwrap_or_default(),
    }
}

/// A tower layer that counts requests into [`RequestMetrics`].
#[derive(Clone)]
pub struct CountLayer(pub Arc<RequestMetrics>);

impl<S> tower::Layer<S> for CountLayer {
    type Service = Count<S>;
    fn layer(&self, inner: S) -> Self::Service {
        Count {
            inner,
            metrics: self.0.clone(),
        }
    }
}

/// The service of [`CountLayer`].
#[derive(Clone)]
pub struct Count<S> {
    inner: S,
    metrics: Arc<RequestMetrics>,
}

impl<S, B, R> tower::Service<http::Request<B>> for Count<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<R>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<S::Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut TaskContext<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let info = request_info(req.method(), req.uri().path(), req.uri().query());
        let metrics = self.metrics.clone();
        self.inner
            .call(req)
            .map(move |result| {
                let code = match &result {
                    Ok(r) => r.status().as_u16().to_string(),
                    Err(_) => "error".to_owned(),
                };
                metrics
                    .0
                    .get_or_create(&vec![
                        ("verb", info.verb.to_owned()),
                        ("group", info.group),
                        ("resource", info.resource),
                        ("subresource", info.subresource),
                        ("code", code),
                    ])
                    .inc();
                result
            })
            .boxed()
    }
}

/// A client for `config` that counts its requests.
pub fn client(config: kube::Config, metrics: Arc<RequestMetrics>) -> kube::Result<kube::Client> {
    Ok(kube::client::ClientBuilder::try_from(config)?
        .with_layer(&CountLayer(metrics))
        .build())
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::Method;

    fn info(m: Method, path: &str, q: Option<&str>) -> (String, String, String, String) {
        let i = request_info(&m, path, q);
        (i.verb.into(), i.group, i.resource, i.subresource)
    }

    #[test]
    fn paths_map_to_rbac_attributes() {
        let t = |a: &str, b: &str, c: &str, d: &str| (a.into(), b.into(), c.into(), d.into());
        assert_eq!(
            info(
                Method::GET,
                "/api/v1/pods",
                Some("watch=true&fieldSelector=x")
            ),
            t("watch", "", "pods", "")
        );
        assert_eq!(
            info(Method::GET, "/api/v1/namespaces", None),
            t("list", "", "namespaces", "")
        );
        assert_eq!(
            info(Method::GET, "/api/v1/namespaces/istio-system", None),
            t("get", "", "namespaces", "")
        );
        assert_eq!(
            info(
                Method::PATCH,
                "/apis/apps/v1/namespaces/ztunnel/daemonsets/ztunnel",
                None
            ),
            t("patch", "apps", "daemonsets", "")
        );
        assert_eq!(
            info(
                Method::PATCH,
                "/apis/sailoperator.io/v1/istios/default/status",
                None
            ),
            t("patch", "sailoperator.io", "istios", "status")
        );
        assert_eq!(
            info(
                Method::POST,
                "/apis/events.k8s.io/v1/namespaces/default/events",
                None
            ),
            t("create", "events.k8s.io", "events", "")
        );
        assert_eq!(
            info(Method::GET, "/apis/apps/v1", None),
            t("get", "apps", "", "")
        );
        assert_eq!(
            info(
                Method::DELETE,
                "/apis/sailoperator.io/v1/istiorevisions/x",
                None
            ),
            t("delete", "sailoperator.io", "istiorevisions", "")
        );
    }
}
