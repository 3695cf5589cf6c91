//! The cluster's certificates and keys, generated with rcgen.

use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};

use crate::error::{Error, Result};

/// PEM text of everything the control plane needs.
pub(crate) struct Certificates {
    /// The cluster CA: it signs the serving and client certificates.
    pub ca_cert: String,
    /// The apiserver's serving certificate (`127.0.0.1`, `localhost`, `kubernetes`, ...).
    pub serving_cert: String,
    pub serving_key: String,
    /// The admin client certificate: `CN=admin, O=system:masters`.
    pub admin_cert: String,
    pub admin_key: String,
    /// The service-account token signing key (PKCS#8) and its public key.
    pub sa_key: String,
    pub sa_pub: String,
}

/// Where [`Certificates::write`] put each file.
pub(crate) struct CertificateFiles {
    pub ca_cert: PathBuf,
    pub serving_cert: PathBuf,
    pub serving_key: PathBuf,
    pub sa_key: PathBuf,
    pub sa_pub: PathBuf,
}

impl Certificates {
    /// Generates a fresh CA and the certificates it signs.
    pub fn generate() -> Result<Self> {
        let ca_key = KeyPair::generate()?;
        let mut ca_params = CertificateParams::default();
        ca_params.distinguished_name = name("mizzen-testcluster-ca", None);
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let ca_cert = ca_params.self_signed(&ca_key)?;
        let ca = Issuer::new(ca_params, ca_key);

        let mut serving = leaf("kube-apiserver", None, ExtendedKeyUsagePurpose::ServerAuth);
        serving.subject_alt_names = vec![
            SanType::IpAddress(IpAddr::V4(Ipv4Addr::LOCALHOST)),
            SanType::DnsName("localhost".try_into()?),
            SanType::DnsName("kubernetes".try_into()?),
            SanType::DnsName("kubernetes.default".try_into()?),
            SanType::DnsName("kubernetes.default.svc".try_into()?),
            SanType::DnsName("kubernetes.default.svc.cluster.local".try_into()?),
        ];
        let serving_key = KeyPair::generate()?;
        let serving_cert = serving.signed_by(&serving_key, &ca)?;

        let admin = leaf(
            "admin",
            Some("system:masters"),
            ExtendedKeyUsagePurpose::ClientAuth,
        );
        let admin_key = KeyPair::generate()?;
        let admin_cert = admin.signed_by(&admin_key, &ca)?;

        let sa_key = KeyPair::generate()?;

        Ok(Self {
            ca_cert: ca_cert.pem(),
            serving_cert: serving_cert.pem(),
            serving_key: serving_key.serialize_pem(),
            admin_cert: admin_cert.pem(),
            admin_key: admin_key.serialize_pem(),
            sa_key: sa_key.serialize_pem(),
            sa_pub: sa_key.public_key_pem(),
        })
    }

    /// Writes the files the components read into `dir` (the admin credentials go into the
    /// kubeconfig instead).
    pub fn write(&self, dir: &Path) -> Result<CertificateFiles> {
        let files = CertificateFiles {
            ca_cert: dir.join("ca.crt"),
            serving_cert: dir.join("apiserver.crt"),
            serving_key: dir.join("apiserver.key"),
            sa_key: dir.join("sa.key"),
            sa_pub: dir.join("sa.pub"),
        };
        for (path, pem) in [
            (&files.ca_cert, &self.ca_cert),
            (&files.serving_cert, &self.serving_cert),
            (&files.serving_key, &self.serving_key),
            (&files.sa_key, &self.sa_key),
            (&files.sa_pub, &self.sa_pub),
        ] {
            std::fs::write(path, pem).map_err(Error::io(format!("writing {}", path.display())))?;
        }
        Ok(files)
    }
}

fn name(common_name: &str, organization: Option<&str>) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, common_name);
    if let Some(org) = organization {
        dn.push(DnType::OrganizationName, org);
    }
    dn
}

/// Parameters of an end-entity certificate for one purpose.
fn leaf(
    common_name: &str,
    organization: Option<&str>,
    usage: ExtendedKeyUsagePurpose,
) -> CertificateParams {
    let mut params = CertificateParams::default();
    params.distinguished_name = name(common_name, organization);
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = vec![usage];
    params.use_authority_key_identifier_extension = true;
    params
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generates_pem_material() {
        let certs = Certificates::generate().unwrap();
        for pem in [&certs.ca_cert, &certs.serving_cert, &certs.admin_cert] {
            assert!(pem.starts_with("-----BEGIN CERTIFICATE-----"), "{pem}");
        }
        for pem in [&certs.serving_key, &certs.admin_key, &certs.sa_key] {
            assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----"), "{pem}");
        }
        assert!(certs.sa_pub.starts_with("-----BEGIN PUBLIC KEY-----"));
        assert_ne!(certs.serving_key, certs.admin_key);

        let dir = tempfile::tempdir().unwrap();
        let files = certs.write(dir.path()).unwrap();
        assert_eq!(
            std::fs::read_to_string(files.ca_cert).unwrap(),
            certs.ca_cert
        );
    }
}
