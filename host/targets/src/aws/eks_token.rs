//! Access to an EKS cluster with AWS credentials, the way `aws eks get-token` and
//! aws-iam-authenticator do it: a presigned STS GetCallerIdentity URL that names the
//! cluster in a signed header, base64url-encoded behind `k8s-aws-v1.`. The cluster's
//! authenticator replays it to learn who is calling.

use std::time::{Duration, SystemTime};

use aws_credential_types::provider::ProvideCredentials;
use aws_sigv4::http_request::{
    SignableBody, SignableRequest, SignatureLocation, SigningSettings, sign,
};
use aws_sigv4::sign::v4;
use base64::Engine;

use super::{Clients, classify};
use deployer_engine::driver::DriverError;

/// How long a token is good for; the authenticator allows up to 15 minutes.
const VALID_FOR: Duration = Duration::from_secs(60);

/// Endpoint, CA bundle (PEM) and a fresh token for EKS cluster `name`.
///
/// # Errors
/// AWS errors (no such cluster, no permission); no credentials or region.
pub async fn cluster_access(
    clients: &Clients,
    name: &str,
) -> Result<(String, Option<Vec<u8>>, String), DriverError> {
    let out = clients
        .eks
        .describe_cluster()
        .name(name)
        .send()
        .await
        .map_err(|e| classify("describing the EKS cluster", e))?;
    let cluster = out
        .cluster()
        .ok_or_else(|| DriverError::Failed(format!("EKS cluster {name} not found")))?;
    let endpoint = cluster
        .endpoint()
        .ok_or_else(|| DriverError::Failed(format!("EKS cluster {name} has no endpoint yet")))?
        .to_string();
    let ca = match cluster.certificate_authority().and_then(|c| c.data()) {
        Some(data) => Some(
            base64::engine::general_purpose::STANDARD
                .decode(data.trim())
                .map_err(|e| {
                    DriverError::Failed(format!("EKS cluster {name}: unreadable CA data: {e}"))
                })?,
        ),
        None => None,
    };
    Ok((endpoint, ca, token(clients, name, SystemTime::now()).await?))
}

/// A bearer token for EKS cluster `cluster`, signed at `now`.
///
/// # Errors
/// No credentials or no region configured.
pub async fn token(
    clients: &Clients,
    cluster: &str,
    now: SystemTime,
) -> Result<String, DriverError> {
    let region = clients
        .config
        .region()
        .ok_or_else(|| {
            DriverError::Failed(
                "no AWS region: set aws.region in deployer.toml or AWS_REGION".into(),
            )
        })?
        .to_string();
    let provider = clients.config.credentials_provider().ok_or_else(|| {
        DriverError::Failed("no AWS credentials to sign an EKS token with".into())
    })?;
    let credentials = provider
        .provide_credentials()
        .await
        .map_err(|e| DriverError::Failed(format!("loading AWS credentials: {e}")))?;
    presign(&credentials.into(), &region, cluster, now)
}

fn presign(
    identity: &aws_smithy_runtime_api::client::identity::Identity,
    region: &str,
    cluster: &str,
    now: SystemTime,
) -> Result<String, DriverError> {
    let host = format!("sts.{region}.amazonaws.com");
    let url = format!("https://{host}/?Action=GetCallerIdentity&Version=2011-06-15");
    let mut settings = SigningSettings::default();
    settings.signature_location = SignatureLocation::QueryParams;
    settings.expires_in = Some(VALID_FOR);
    let params = v4::SigningParams::builder()
        .identity(identity)
        .region(region)
        .name("sts")
        .time(now)
        .settings(settings)
        .build()
        .map_err(|e| DriverError::Failed(format!("signing an EKS token: {e}")))?
        .into();
    let headers = [("host", host.as_str()), ("x-k8s-aws-id", cluster)];
    let request = SignableRequest::new(
        "GET",
        url.as_str(),
        headers.into_iter(),
        SignableBody::Bytes(&[]),
    )
    .map_err(|e| DriverError::Failed(format!("signing an EKS token: {e}")))?;
    let (instructions, _) = sign(request, &params)
        .map_err(|e| DriverError::Failed(format!("signing an EKS token: {e}")))?
        .into_parts();
    let mut http_request = http::Request::get(&url)
        .body(())
        .map_err(|e| DriverError::Failed(format!("signing an EKS token: {e}")))?;
    instructions.apply_to_request_http1x(&mut http_request);
    let signed = http_request.uri().to_string();
    Ok(format!(
        "k8s-aws-v1.{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(signed)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_is_a_presigned_sts_call_naming_the_cluster() {
        let credentials =
            aws_credential_types::Credentials::new("AKIDEXAMPLE", "secret", None, None, "test");
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let token = presign(&credentials.into(), "eu-west-1", "prod", now).unwrap();
        let encoded = token.strip_prefix("k8s-aws-v1.").unwrap();
        assert!(!encoded.contains('='), "unpadded base64url");
        let url = String::from_utf8(
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(encoded)
                .unwrap(),
        )
        .unwrap();
        assert!(url.starts_with(
            "https://sts.eu-west-1.amazonaws.com/?Action=GetCallerIdentity&Version=2011-06-15&"
        ));
        for part in [
            "X-Amz-Algorithm=AWS4-HMAC-SHA256",
            "X-Amz-Credential=AKIDEXAMPLE%2F20231114%2Feu-west-1%2Fsts%2Faws4_request",
            "X-Amz-Date=20231114T221320Z",
            "X-Amz-Expires=60",
            "X-Amz-SignedHeaders=host%3Bx-k8s-aws-id",
            "X-Amz-Signature=",
        ] {
            assert!(url.contains(part), "{part} missing from {url}");
        }
        assert!(!url.contains("secret"));
        // A different cluster signs differently.
        let other = presign(
            &aws_credential_types::Credentials::new("AKIDEXAMPLE", "secret", None, None, "t")
                .into(),
            "eu-west-1",
            "staging",
            now,
        )
        .unwrap();
        assert_ne!(token, other);
    }
}
