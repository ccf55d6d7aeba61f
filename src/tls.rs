//! TLS for the API (rustls): the server's certificate and key, and optionally a CA
//! whose client certificates authenticate machines.

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};

/// The subject common name of a client certificate the server verified: the user a
/// request on that connection authenticates as.
#[derive(Clone, Debug)]
pub struct ClientCert(pub String);

/// What `--tls-cert`, `--tls-key` and `--tls-client-ca` name.
#[derive(Clone, Debug)]
pub struct TlsFiles<'a> {
    pub cert: &'a Path,
    pub key: &'a Path,
    pub client_ca: Option<&'a Path>,
    /// Whether a connection without a client certificate is refused (no other way to
    /// authenticate is configured).
    pub require_client_cert: bool,
}

/// The *ring* provider, the backend this workspace builds rustls with (its deprecation
/// is about post-quantum key exchange, which the other backend, aws-lc-rs, would add at
/// the cost of a C/cmake build).
#[allow(deprecated)]
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Reads the PEM certificates of `path`; at least one.
pub fn read_certs(path: &Path, what: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("cannot read {what} {}: {}", path.display(), pem_reason(e)))?;
    if certs.is_empty() {
        return Err(format!(
            "cannot read {what} {}: no PEM certificate (BEGIN CERTIFICATE) in it",
            path.display()
        ));
    }
    Ok(certs)
}

fn pem_reason(e: rustls::pki_types::pem::Error) -> String {
    match e {
        rustls::pki_types::pem::Error::Io(io) => io.to_string(),
        rustls::pki_types::pem::Error::NoItemsFound => "no PEM item in it".to_owned(),
        other => format!("not valid PEM ({other:?})"),
    }
}

/// The rustls server configuration for these files, with clear errors naming the file.
pub fn server_config(files: &TlsFiles<'_>) -> Result<Arc<ServerConfig>, String> {
    let certs = read_certs(files.cert, "the certificate (--tls-cert)")?;
    let key = PrivateKeyDer::from_pem_file(files.key).map_err(|e| {
        format!(
            "cannot read the private key (--tls-key) {}: {}",
            files.key.display(),
            pem_reason(e)
        )
    })?;
    let builder = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS: {e}"))?;
    let builder = match files.client_ca {
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let mut roots = RootCertStore::empty();
            for c in read_certs(ca, "the client CA (--tls-client-ca)")? {
                roots.add(c).map_err(|e| {
                    format!("the client CA (--tls-client-ca) {}: {e}", ca.display())
                })?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider());
            let verifier = if files.require_client_cert {
                verifier
            } else {
                verifier.allow_unauthenticated()
            };
            builder.with_client_cert_verifier(
                verifier.build().map_err(|e| {
                    format!("the client CA (--tls-client-ca) {}: {e}", ca.display())
                })?,
            )
        }
    };
    let mut config = builder.with_single_cert(certs, key).map_err(|e| {
        format!(
            "the certificate {} and key {} do not make a TLS identity: {e}",
            files.cert.display(),
            files.key.display()
        )
    })?;
    // HTTP/2 when the client offers it; HTTP/1.1 for the others and for WebSocket
    // upgrades (clients open those on a connection of their own, without `h2`).
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// The subject common name of a (verified) client certificate.
pub fn common_name(cert: &CertificateDer<'_>) -> Option<String> {
    let (_, parsed) = x509_parser::parse_x509_certificate(cert.as_ref()).ok()?;
    let cn = parsed
        .subject()
        .iter_common_name()
        .next()?
        .as_str()
        .ok()?
        .trim()
        .to_owned();
    (!cn.is_empty()).then_some(cn)
}
