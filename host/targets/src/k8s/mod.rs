//! Kubernetes access for EKS targets: a client from an EKS cluster name (describe-cluster
//! and a token signed with the run's AWS credentials), from a kubeconfig file, or from
//! the usual lookup (`KUBECONFIG`, `~/.kube/config`, in-cluster).

pub mod deployments;

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::aws::Clients;
use deployer_engine::driver::DriverError;
use deployer_engine::files::Kind;

/// How to reach the cluster.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Access {
    Eks(String),
    Kubeconfig {
        path: std::path::PathBuf,
        context: Option<String>,
    },
    Infer {
        context: Option<String>,
    },
}

/// EKS accepts a token for 15 minutes after it was signed; a deployment can run longer
/// (bakes), so clients are made anew with a fresh token well before that.
const EKS_TOKEN_REFRESH: Duration = Duration::from_secs(10 * 60);

/// A cluster connection that stays valid for a whole deployment.
pub struct Cluster {
    clients: Clients,
    access: Access,
    current: tokio::sync::Mutex<(Instant, kube::Client)>,
}

impl Cluster {
    /// Connect to the cluster `access` names.
    ///
    /// # Errors
    /// What could not be read or reached, naming the cluster or file.
    pub async fn connect(clients: &Clients, access: &Access) -> Result<Arc<Cluster>, DriverError> {
        let client = connect(clients, access).await?;
        Ok(Arc::new(Cluster {
            clients: clients.clone(),
            access: access.clone(),
            current: tokio::sync::Mutex::new((Instant::now(), client)),
        }))
    }

    /// A client whose credentials are good now.
    ///
    /// # Errors
    /// A fresh EKS token could not be had.
    pub async fn client(&self) -> Result<kube::Client, DriverError> {
        let mut current = self.current.lock().await;
        if matches!(self.access, Access::Eks(_)) && current.0.elapsed() >= EKS_TOKEN_REFRESH {
            *current = (Instant::now(), connect(&self.clients, &self.access).await?);
        }
        Ok(current.1.clone())
    }
}

/// A Kubernetes client for `access`.
///
/// # Errors
/// What could not be read or reached, naming the cluster or file.
pub async fn connect(clients: &Clients, access: &Access) -> Result<kube::Client, DriverError> {
    let options = |context: &Option<String>| kube::config::KubeConfigOptions {
        context: context.clone(),
        ..Default::default()
    };
    let config = match access {
        Access::Eks(name) => {
            let (endpoint, ca, token) =
                crate::aws::eks_token::cluster_access(clients, name).await?;
            let url = endpoint.parse().map_err(|e| {
                DriverError::Failed(format!("EKS cluster {name}: bad endpoint {endpoint}: {e}"))
            })?;
            let mut config = kube::Config::new(url);
            config.root_cert = ca.as_deref().map(pem_certificates).transpose()?;
            let mut bearer = http::HeaderValue::from_str(&format!("Bearer {token}"))
                .map_err(|e| DriverError::Failed(format!("EKS token: {e}")))?;
            bearer.set_sensitive(true);
            config.headers.push((http::header::AUTHORIZATION, bearer));
            config
        }
        Access::Kubeconfig { path, context } => {
            // Read bounded and as a regular file (`read_from` would read a FIFO or
            // /dev/zero without end), then parsed by kube.
            let file = deployer_engine::files::read_text(path, Kind::Kubeconfig)
                .map_err(|e| e.to_string())
                .and_then(|text| {
                    kube::config::Kubeconfig::from_yaml(&text).map_err(|e| e.to_string())
                })
                .map_err(|e| {
                    DriverError::Failed(format!("reading kubeconfig {}: {e}", path.display()))
                })?;
            kube::Config::from_custom_kubeconfig(file, &options(context))
                .await
                .map_err(|e| DriverError::Failed(format!("kubeconfig {}: {e}", path.display())))?
        }
        Access::Infer { context: None } => kube::Config::infer()
            .await
            .map_err(|e| DriverError::Failed(format!("finding cluster access: {e}")))?,
        Access::Infer { context } => kube::Config::from_kubeconfig(&options(context))
            .await
            .map_err(|e| DriverError::Failed(format!("kubeconfig: {e}")))?,
    };
    // Every call deployer makes is short (no watches): a silent apiserver is an error to
    // retry, not a hang.
    let mut config = config;
    config.read_timeout = Some(Duration::from_secs(30));
    install_crypto();
    kube::Client::try_from(config)
        .map_err(|e| DriverError::Failed(format!("building the Kubernetes client: {e}")))
}

/// TLS for the Kubernetes client uses the same provider as the AWS SDK.
fn install_crypto() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}

/// DER certificates of a PEM bundle.
fn pem_certificates(pem: &[u8]) -> Result<Vec<Vec<u8>>, DriverError> {
    use base64::Engine;
    let text = String::from_utf8_lossy(pem);
    let mut certs = Vec::new();
    let mut body: Option<String> = None;
    for line in text.lines().map(str::trim) {
        match (line, &mut body) {
            ("-----BEGIN CERTIFICATE-----", None) => body = Some(String::new()),
            ("-----END CERTIFICATE-----", Some(b64)) => {
                certs.push(
                    base64::engine::general_purpose::STANDARD
                        .decode(b64.as_bytes())
                        .map_err(|e| DriverError::Failed(format!("cluster CA: {e}")))?,
                );
                body = None;
            }
            (line, Some(b64)) => b64.push_str(line),
            _ => {}
        }
    }
    if certs.is_empty() {
        return Err(DriverError::Failed(
            "cluster CA holds no certificate".into(),
        ));
    }
    Ok(certs)
}

/// Sort a Kubernetes API error: throttling, server errors, conflicts and connection
/// failures are worth retrying; the rest (not found, forbidden, invalid) are not.
pub fn classify(what: &str, err: kube::Error) -> DriverError {
    match err {
        kube::Error::Api(status) => {
            let message = format!("{what}: {} ({})", status.message, status.code);
            if status.code == 429 || status.code == 409 || status.code >= 500 {
                DriverError::Transient(message)
            } else {
                DriverError::Failed(message)
            }
        }
        kube::Error::HyperError(_) | kube::Error::Service(_) | kube::Error::ReadEvents(_) => {
            DriverError::Transient(format!("{what}: {err}"))
        }
        other => DriverError::Failed(format!("{what}: {other}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pem_bundles_become_der() {
        let pem = b"-----BEGIN CERTIFICATE-----\nAAEC\nAw==\n-----END CERTIFICATE-----\n-----BEGIN CERTIFICATE-----\nBAU=\n-----END CERTIFICATE-----\n";
        assert_eq!(
            pem_certificates(pem).unwrap(),
            vec![vec![0, 1, 2, 3], vec![4, 5]]
        );
        assert!(pem_certificates(b"nothing").is_err());
    }
}
