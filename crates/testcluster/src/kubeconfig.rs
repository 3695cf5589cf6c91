//! The admin kubeconfig, with everything inline so the file can be copied elsewhere.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

/// The name used for the kubeconfig's cluster, user and context.
pub(crate) const CONTEXT: &str = "mizzen-testcluster";

/// Renders a kubeconfig for `https://127.0.0.1:<port>` with inline CA and client credentials.
pub(crate) fn render(
    port: u16,
    ca_pem: &str,
    client_cert_pem: &str,
    client_key_pem: &str,
) -> String {
    let ca = STANDARD.encode(ca_pem);
    let cert = STANDARD.encode(client_cert_pem);
    let key = STANDARD.encode(client_key_pem);
    format!(
        "apiVersion: v1
kind: Config
clusters:
- name: {CONTEXT}
  cluster:
    server: https://127.0.0.1:{port}
    certificate-authority-data: {ca}
users:
- name: {CONTEXT}
  user:
    client-certificate-data: {cert}
    client-key-data: {key}
contexts:
- name: {CONTEXT}
  context:
    cluster: {CONTEXT}
    user: {CONTEXT}
current-context: {CONTEXT}
"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kube_reads_the_rendered_kubeconfig() {
        let text = render(6443, "CA", "CERT", "KEY");
        let config = kube::config::Kubeconfig::from_yaml(&text).unwrap();
        assert_eq!(config.current_context.as_deref(), Some(CONTEXT));
        let cluster = config.clusters[0].cluster.as_ref().unwrap();
        assert_eq!(cluster.server.as_deref(), Some("https://127.0.0.1:6443"));
        assert_eq!(
            cluster.certificate_authority_data.as_deref(),
            Some(STANDARD.encode("CA").as_str())
        );
    }
}
