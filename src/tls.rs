//! How HTTPS checks the server: applied once, before any request, to minreq's rustls.

use crate::config::Trust;

/// Sets up certificate checking for every later HTTPS request. Must run before any
/// thread is started (it may set an environment variable).
pub fn install(trust: &Trust) {
    match trust {
        Trust::SystemStore => {}
        // minreq loads its roots through rustls-native-certs, which reads SSL_CERT_FILE
        // instead of the system bundle when it is set.
        Trust::CaFile(ca) => std::env::set_var("SSL_CERT_FILE", ca),
        Trust::Insecure => install_no_verification(),
    }
}

/// The warning an insecure setup logs at every start, so it cannot be forgotten on a box.
pub const INSECURE_WARNING: &str = "--cacert insecure: the QueueMetrics server's certificate is NOT checked; anyone on the network path can pose as the server and read its password and every row. Give the CA file instead as soon as you can";

#[cfg(feature = "https")]
fn install_no_verification() {
    use rustls::client::{ServerCertVerified, ServerCertVerifier};
    use std::sync::Arc;

    struct AcceptAnyCertificate;
    impl ServerCertVerifier for AcceptAnyCertificate {
        fn verify_server_cert(
            &self,
            _end_entity: &rustls::Certificate,
            _intermediates: &[rustls::Certificate],
            _server_name: &rustls::ServerName,
            _scts: &mut dyn Iterator<Item = &[u8]>,
            _ocsp_response: &[u8],
            _now: std::time::SystemTime,
        ) -> Result<ServerCertVerified, rustls::Error> {
            Ok(ServerCertVerified::assertion())
        }
    }
    let config = rustls::ClientConfig::builder()
        .with_safe_defaults()
        .with_custom_certificate_verifier(Arc::new(AcceptAnyCertificate))
        .with_no_client_auth();
    minreq::set_tls_config(Arc::new(config));
}

#[cfg(not(feature = "https"))]
fn install_no_verification() {}
