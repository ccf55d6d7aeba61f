//! TLS for the API (rustls): the server's certificate and key, and optionally a CA
//! whose client certificates authenticate machines.

use std::path::{Path, PathBuf};
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

/// Why TLS cannot be set up from the flags: the flag or file and the reason.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("--tls-client-ca needs --tls-cert and --tls-key")]
    CaWithoutCert,
    #[error("--tls-cert needs --tls-key")]
    CertWithoutKey,
    #[error("--tls-key needs --tls-cert")]
    KeyWithoutCert,
    #[error("cannot read {what} {}: {reason}", path.display())]
    Read {
        what: &'static str,
        path: PathBuf,
        reason: String,
    },
    #[error("cannot read {what} {}: no PEM certificate (BEGIN CERTIFICATE) in it", path.display())]
    NoCertificate { what: &'static str, path: PathBuf },
    #[error("cannot read the private key (--tls-key) {}: {reason}", path.display())]
    Key { path: PathBuf, reason: String },
    #[error("TLS: {0}")]
    Protocols(rustls::Error),
    #[error("the client CA (--tls-client-ca) {}: {reason}", path.display())]
    ClientCa { path: PathBuf, reason: String },
    #[error(
        "the certificate {} and key {} do not make a TLS identity: {error}",
        cert.display(),
        key.display()
    )]
    Identity {
        cert: PathBuf,
        key: PathBuf,
        error: rustls::Error,
    },
}

/// The *ring* provider, the backend this workspace builds rustls with (its deprecation
/// is about post-quantum key exchange, which the other backend, aws-lc-rs, would add at
/// the cost of a C/cmake build).
#[allow(deprecated)]
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Reads the PEM certificates of `path`; at least one.
pub fn read_certs(
    path: &Path,
    what: &'static str,
) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| TlsError::Read {
            what,
            path: path.to_owned(),
            reason: pem_reason(e),
        })?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate {
            what,
            path: path.to_owned(),
        });
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
pub fn server_config(files: &TlsFiles<'_>) -> Result<Arc<ServerConfig>, TlsError> {
    let certs = read_certs(files.cert, "the certificate (--tls-cert)")?;
    let key = PrivateKeyDer::from_pem_file(files.key).map_err(|e| TlsError::Key {
        path: files.key.to_owned(),
        reason: pem_reason(e),
    })?;
    let builder = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(TlsError::Protocols)?;
    let builder = match files.client_ca {
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let mut roots = RootCertStore::empty();
            for c in read_certs(ca, "the client CA (--tls-client-ca)")? {
                roots.add(c).map_err(|e| TlsError::ClientCa {
                    path: ca.to_owned(),
                    reason: e.to_string(),
                })?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider());
            let verifier = if files.require_client_cert {
                verifier
            } else {
                verifier.allow_unauthenticated()
            };
            builder.with_client_cert_verifier(verifier.build().map_err(|e| TlsError::ClientCa {
                path: ca.to_owned(),
                reason: e.to_string(),
            })?)
        }
    };
    let mut config = builder
        .with_single_cert(certs, key)
        .map_err(|error| TlsError::Identity {
            cert: files.cert.to_owned(),
            key: files.key.to_owned(),
            error,
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
