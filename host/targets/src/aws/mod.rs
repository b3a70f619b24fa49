//! AWS access: clients from the standard credential and region chain (with an
//! endpoint override for tests and private endpoints), and the one place where SDK
//! errors are sorted into worth-retrying and not.

pub mod alb;
pub mod asg;
pub mod calls;
pub mod ecs;
pub mod ecs_pair;
pub mod ecs_rolling;
pub mod eks_token;
pub mod images;
pub mod metrics;
pub mod scaling;

use aws_config::BehaviorVersion;
use aws_sdk_ecs::error::{ProvideErrorMetadata, SdkError};
use aws_smithy_runtime_api::http::Response;
pub use calls::CallCounter;

use deployer_engine::driver::DriverError;

/// The AWS clients one deployment uses.
#[derive(Clone, Debug)]
pub struct Clients {
    pub ecs: aws_sdk_ecs::Client,
    pub elb: aws_sdk_elasticloadbalancingv2::Client,
    pub cloudwatch: aws_sdk_cloudwatch::Client,
    pub s3: aws_sdk_s3::Client,
    pub dynamodb: aws_sdk_dynamodb::Client,
    pub autoscaling: aws_sdk_autoscaling::Client,
    pub eks: aws_sdk_eks::Client,
    /// Application Auto Scaling: the scalable targets of ECS services.
    pub app_autoscaling: aws_sdk_applicationautoscaling::Client,
    /// Launch template versions (`--image ami-…`).
    pub ec2: aws_sdk_ec2::Client,
    /// The resolved SDK config (credentials and region), for presigning EKS tokens.
    pub config: aws_config::SdkConfig,
    /// Every call these clients make, counted.
    pub calls: CallCounter,
}

impl Clients {
    /// Clients from the standard chain (env, profile, SSO, IMDS...). `endpoint` overrides
    /// every service's endpoint (tests point it at moto); `AWS_ENDPOINT_URL` does too.
    ///
    /// Every call retries throttling and 5xx answers with exponential backoff and jitter,
    /// and all clients share one retry partition: one token bucket and one adaptive
    /// client-side rate limiter for the account, so a throttled ECS does not get hammered
    /// harder by the ELB calls of the same run.
    pub async fn new(region: Option<&str>, endpoint: Option<&str>) -> Self {
        let mut loader = aws_config::defaults(BehaviorVersion::latest()).retry_config(
            aws_config::retry::RetryConfig::adaptive()
                .with_max_attempts(5)
                .with_initial_backoff(std::time::Duration::from_millis(200)),
        );
        if let Some(region) = region {
            loader = loader.region(aws_config::Region::new(region.to_string()));
        }
        if let Some(endpoint) = endpoint {
            loader = loader.endpoint_url(endpoint);
        }
        let config = loader.load().await;
        let calls = CallCounter::default();
        let account =
            aws_smithy_runtime::client::retries::RetryPartition::custom("deployer-account").build();
        Clients {
            ecs: aws_sdk_ecs::Client::from_conf(
                aws_sdk_ecs::config::Builder::from(&config)
                    .interceptor(calls.clone())
                    .retry_partition(account.clone())
                    .build(),
            ),
            elb: aws_sdk_elasticloadbalancingv2::Client::from_conf(
                aws_sdk_elasticloadbalancingv2::config::Builder::from(&config)
                    .interceptor(calls.clone())
                    .retry_partition(account.clone())
                    .build(),
            ),
            cloudwatch: aws_sdk_cloudwatch::Client::from_conf(
                aws_sdk_cloudwatch::config::Builder::from(&config)
                    .interceptor(calls.clone())
                    .retry_partition(account.clone())
                    .build(),
            ),
            // Path-style addressing works with every S3-compatible endpoint.
            s3: aws_sdk_s3::Client::from_conf(
                aws_sdk_s3::config::Builder::from(&config)
                    .force_path_style(true)
                    .interceptor(calls.clone())
                    .retry_partition(account.clone())
                    .build(),
            ),
            dynamodb: aws_sdk_dynamodb::Client::from_conf(
                aws_sdk_dynamodb::config::Builder::from(&config)
                    .interceptor(calls.clone())
                    .retry_partition(account.clone())
                    .build(),
            ),
            autoscaling: aws_sdk_autoscaling::Client::from_conf(
                aws_sdk_autoscaling::config::Builder::from(&config)
                    .interceptor(calls.clone())
                    .retry_partition(account.clone())
                    .build(),
            ),
            eks: aws_sdk_eks::Client::from_conf(
                aws_sdk_eks::config::Builder::from(&config)
                    .interceptor(calls.clone())
                    .retry_partition(account.clone())
                    .build(),
            ),
            app_autoscaling: aws_sdk_applicationautoscaling::Client::from_conf(
                aws_sdk_applicationautoscaling::config::Builder::from(&config)
                    .interceptor(calls.clone())
                    .retry_partition(account.clone())
                    .build(),
            ),
            ec2: aws_sdk_ec2::Client::from_conf(
                aws_sdk_ec2::config::Builder::from(&config)
                    .interceptor(calls.clone())
                    .retry_partition(account.clone())
                    .build(),
            ),
            config,
            calls,
        }
    }
}

/// Error codes AWS uses for throttling and momentary unavailability.
const TRANSIENT_CODES: [&str; 8] = [
    "Throttling",
    "ThrottlingException",
    "ThrottledException",
    "RequestLimitExceeded",
    "TooManyRequestsException",
    "ServiceUnavailable",
    "ServerException",
    "InternalFailure",
];

/// An SDK error in words: a service's code and message (`AccessDenied: User … is not
/// authorized`), otherwise its causes, each once. Never `DisplayErrorContext`, which ends
/// with the whole error's `Debug` dump, nor the bare chain of a service error, which
/// ends in the error metadata's `Error { code: …, … }`.
pub fn sdk_error<E>(err: &SdkError<E, Response>) -> String
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    match err.as_service_error() {
        Some(service) => format!(
            "{}{}",
            service.code().unwrap_or("error"),
            service
                .message()
                .map(|m| format!(": {m}"))
                .unwrap_or_default()
        ),
        None => deployer_engine::describe::error_chain(err),
    }
}

/// Sort an SDK error: throttling, 5xx, timeouts and connection failures are transient.
///
/// Every operation of the AWS SDKs fails with an `SdkError` over the raw HTTP response
/// (`aws_smithy_runtime_api::http::Response`), whose status code decides 5xx.
pub fn classify<E>(what: &str, err: SdkError<E, Response>) -> DriverError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let transient = match &err {
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => {
            true
        }
        SdkError::ServiceError(service) => {
            let code = service.err().code().unwrap_or_default();
            TRANSIENT_CODES.contains(&code) || service.raw().status().is_server_error()
        }
        _ => false,
    };
    let message = format!("{what}: {}", sdk_error(&err));
    if transient {
        DriverError::Transient(message)
    } else {
        DriverError::Failed(message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_smithy_runtime_api::http::StatusCode;
    use aws_smithy_types::body::SdkBody;
    use aws_smithy_types::error::ErrorMetadata;

    /// A service error with `code` (none when empty) answered with HTTP `status`.
    fn service_error(code: &str, status: u16) -> SdkError<ErrorMetadata, Response> {
        let mut meta = ErrorMetadata::builder().message("it went wrong");
        if !code.is_empty() {
            meta = meta.code(code);
        }
        let raw = Response::new(StatusCode::try_from(status).unwrap(), SdkBody::empty());
        SdkError::service_error(meta.build(), raw)
    }

    #[test]
    fn server_errors_are_transient_by_their_status_whatever_their_code() {
        for (code, status) in [("InternalError", 500), ("", 503), ("SlowDown", 503)] {
            let err = classify("updating", service_error(code, status));
            assert!(
                matches!(err, DriverError::Transient(_)),
                "{code} {status}: {err:?}"
            );
        }
    }

    #[test]
    fn client_errors_fail_unless_their_code_is_throttling() {
        let err = classify("updating", service_error("ValidationException", 400));
        assert!(
            matches!(&err, DriverError::Failed(m) if m.contains("ValidationException")),
            "{err:?}"
        );
        let err = classify("updating", service_error("ThrottlingException", 400));
        assert!(matches!(err, DriverError::Transient(_)), "{err:?}");
    }
}
