//! A throwaway CA and server certificates for the TLS tests.

use std::path::PathBuf;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

/// A throwaway CA and a server certificate signed by it.
pub struct TestPki {
    /// The CA certificate, as a PEM file.
    pub ca_pem_path: PathBuf,
    /// The server certificate chain and key, for rustls servers.
    pub chain: Vec<CertificateDer<'static>>,
    pub key: PrivateKeyDer<'static>,
    /// The server certificate and its key in PEM, for other servers.
    pub cert_pem: String,
    pub key_pem: String,
}

impl TestPki {
    /// A server certificate for 127.0.0.1 and localhost.
    pub fn new(tag: &str) -> TestPki {
        Self::for_names(tag, &["127.0.0.1", "localhost"])
    }

    pub fn for_names(tag: &str, names: &[&str]) -> TestPki {
        let ca_key = KeyPair::generate().unwrap();
        let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        ca.distinguished_name
            .push(DnType::CommonName, "portway test CA");
        let ca_cert = ca.self_signed(&ca_key).unwrap();
        let issuer = Issuer::new(ca, &ca_key);

        let leaf_key = KeyPair::generate().unwrap();
        let mut leaf =
            CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
                .unwrap();
        leaf.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let leaf_cert = leaf.signed_by(&leaf_key, &issuer).unwrap();

        let ca_pem_path =
            std::env::temp_dir().join(format!("portway-test-ca-{}-{tag}.pem", std::process::id()));
        std::fs::write(&ca_pem_path, ca_cert.pem()).unwrap();
        TestPki {
            ca_pem_path,
            chain: vec![leaf_cert.der().clone()],
            key: PrivatePkcs8KeyDer::from(leaf_key.serialize_der()).into(),
            cert_pem: leaf_cert.pem(),
            key_pem: leaf_key.serialize_pem(),
        }
    }
}

impl Drop for TestPki {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.ca_pem_path);
    }
}
