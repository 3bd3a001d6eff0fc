//! The rustls client configuration: the platform's trust store and the bundled web PKI roots
//! (or the bundled ones only), an optional extra CA bundle, ALPN, and the explicitly named way
//! to turn verification off.

use std::path::Path;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, verify_tls12_signature, verify_tls13_signature};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};

use super::options::HttpOptions;
use crate::error::{Error, Result};

/// Builds the client configuration for `opts` (ring provider, TLS 1.2 and 1.3).
pub(crate) fn client_config(opts: &HttpOptions) -> Result<Arc<ClientConfig>> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Internal(format!("cannot configure TLS: {e}")))?;
    let mut config = if opts.danger_accept_invalid_certs {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAnyCertificate(provider)))
            .with_no_client_auth()
    } else {
        let mut roots = RootCertStore::empty();
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        if !opts.bundled_roots_only {
            // The platform store: on Linux the file and directory OpenSSL would use, or
            // SSL_CERT_FILE / SSL_CERT_DIR when set. Unreadable entries are skipped, as
            // OpenSSL does; the bundled roots still apply.
            let native = rustls_native_certs::load_native_certs();
            roots.add_parsable_certificates(native.certs);
        }
        if let Some(path) = &opts.extra_ca_pem_path {
            add_pem_bundle(&mut roots, path)?;
        }
        builder.with_root_certificates(roots).with_no_client_auth()
    };
    config.alpn_protocols = if opts.http2_prior_knowledge {
        vec![b"h2".to_vec()]
    } else if opts.http1_only {
        vec![b"http/1.1".to_vec()]
    } else {
        vec![b"h2".to_vec(), b"http/1.1".to_vec()]
    };
    Ok(Arc::new(config))
}

/// Adds every certificate of a PEM file to `roots`; a file without one is an error.
fn add_pem_bundle(roots: &mut RootCertStore, path: &Path) -> Result<()> {
    let shown = path.display();
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| Error::invalid(format!("extra_ca_pem_path {shown}: {e}")))?;
    let mut added = 0;
    for cert in certs {
        let cert = cert.map_err(|e| Error::invalid(format!("extra_ca_pem_path {shown}: {e}")))?;
        roots.add(cert).map_err(|e| {
            Error::invalid(format!(
                "extra_ca_pem_path {shown}: a certificate cannot be used as a CA: {e}"
            ))
        })?;
        added += 1;
    }
    if added == 0 {
        return Err(Error::invalid(format!(
            "extra_ca_pem_path {shown} holds no PEM CERTIFICATE block"
        )));
    }
    Ok(())
}

/// Accepts every certificate; still checks handshake signatures so the session is at least
/// bound to the presented key. Used only with `danger_accept_invalid_certs`.
#[derive(Debug)]
struct AcceptAnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AcceptAnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> std::result::Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_ca_files_are_named() {
        let mut o = HttpOptions {
            extra_ca_pem_path: Some("/nonexistent/ca.pem".into()),
            ..HttpOptions::default()
        };
        let e = client_config(&o).unwrap_err().to_string();
        assert!(e.contains("/nonexistent/ca.pem"), "{e}");

        let empty = std::env::temp_dir().join(format!("portway-empty-{}.pem", std::process::id()));
        std::fs::write(&empty, "not a certificate\n").unwrap();
        o.extra_ca_pem_path = Some(empty.clone());
        let e = client_config(&o).unwrap_err().to_string();
        std::fs::remove_file(&empty).ok();
        assert!(e.contains("no PEM CERTIFICATE"), "{e}");
    }
}
