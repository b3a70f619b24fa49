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
pub mod lambda;
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
    /// Lambda functions: aliases, versions, provisioned concurrency.
    pub lambda: aws_sdk_lambda::Client,
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
    /// and all clients of one region share one retry partition: one token bucket and one
    /// adaptive client-side rate limiter for the account in that region, so a throttled
    /// ECS does not get hammered harder by the ELB calls of the same run, nor by the
    /// other services of a release (whose clients of one region are these).
    pub async fn new(region: Option<&str>, endpoint: Option<&str>) -> Self {
        Clients::counted(region, endpoint, CallCounter::default()).await
    }

    /// [`Clients::new`], counting calls in `calls` (a release's clients of several
    /// regions count into one).
    pub async fn counted(region: Option<&str>, endpoint: Option<&str>, calls: CallCounter) -> Self {
        let mut loader = aws_config::defaults(BehaviorVersion::latest())
            .retry_config(
                aws_config::retry::RetryConfig::adaptive()
                    .with_max_attempts(5)
                    .with_initial_backoff(std::time::Duration::from_millis(200)),
            )
            // An endpoint that accepts a request and never answers would hold a bake past
            // its end and a rollback forever: each attempt gives up, and is retried.
            .timeout_config(
                aws_config::timeout::TimeoutConfig::builder()
                    .connect_timeout(std::time::Duration::from_secs(5))
                    .operation_attempt_timeout(ATTEMPT_TIMEOUT)
                    .build(),
            );
        if let Some(region) = region {
            loader = loader.region(aws_config::Region::new(region.to_string()));
        }
        if let Some(endpoint) = endpoint {
            loader = loader.endpoint_url(endpoint);
        }
        let config = loader.load().await;
        // Named by region: the account is the one credential chain's, and AWS limits
        // requests per account and region, so services of a release in one region share
        // one budget and another region's do not slow them.
        let account = aws_smithy_runtime::client::retries::RetryPartition::custom(format!(
            "deployer-{}",
            config.region().map_or("default", |r| r.as_ref())
        ))
        .build();
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
            lambda: aws_sdk_lambda::Client::from_conf(
                aws_sdk_lambda::config::Builder::from(&config)
                    .interceptor(calls.clone())
                    .retry_partition(account.clone())
                    .build(),
            ),
            config,
            calls,
        }
    }
}

/// The longest one attempt of an AWS call may take. AWS answers control-plane calls in
/// well under a second; 30 s leaves room for a slow S3 upload of a journal.
pub const ATTEMPT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// Error codes AWS uses for throttling and momentary unavailability.
const TRANSIENT_CODES: [&str; 9] = [
    // Lambda: another change to the function (an update, a provisioned concurrency
    // allocation) is in progress; it passes.
    "ResourceConflictException",
    "Throttling",
    "ThrottlingException",
    "ThrottledException",
    "RequestLimitExceeded",
    "TooManyRequestsException",
    "ServiceUnavailable",
    "ServerException",
    "InternalFailure",
];

/// An SDK error in words, on one line: a service's code and message (`AccessDenied: User
/// … is not authorized`); missing credentials as where the SDK looked and how to give
/// it some; a connection that failed as that, with its cause; otherwise its causes, each
/// once. Never `DisplayErrorContext`, which ends with the whole error's `Debug` dump, nor
/// the bare chain of a service error, which ends in the error metadata's `Error { code:
/// …, … }`.
pub fn sdk_error<E>(err: &SdkError<E, Response>) -> String
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    if let Some(service) = err.as_service_error() {
        let code = service.code().unwrap_or("error");
        return one_line(&format!(
            "{code}{}{}",
            service
                .message()
                .map(|m| format!(": {m}"))
                .unwrap_or_default(),
            fix_for(code)
                .map(|fix| format!(" (fix: {fix})"))
                .unwrap_or_default()
        ));
    }
    if let Some(credentials) = credentials_error(err) {
        return credentials_words(credentials);
    }
    let text = match err {
        SdkError::DispatchFailure(failure) if failure.is_io() => {
            format!("cannot connect to AWS: {}", root_cause(err))
        }
        SdkError::DispatchFailure(failure) if failure.is_timeout() => {
            format!("AWS did not answer in time: {}", root_cause(err))
        }
        SdkError::TimeoutError(_) => "AWS did not answer in time".to_string(),
        _ => deployer_engine::describe::error_chain(err),
    };
    one_line(&text)
}

/// What to do about an AWS error code, where the code says it.
fn fix_for(code: &str) -> Option<&'static str> {
    Some(match code {
        "ClusterNotFoundException" => {
            "check the service's `cluster` in deployer.toml, and that the region is the cluster's"
        }
        "ServiceNotFoundException" => {
            "check the service's `cluster` and `service` in deployer.toml, and the region"
        }
        "AccessDenied" | "AccessDeniedException" | "UnauthorizedOperation" => {
            "allow this call in the IAM policy of the credentials deployer runs with"
        }
        "ExpiredToken" | "ExpiredTokenException" | "RequestExpired" => {
            "the credentials expired: refresh them (`aws sso login`, or the CI job's role)"
        }
        "InvalidClientTokenId" | "UnrecognizedClientException" | "SignatureDoesNotMatch" => {
            "these credentials are not valid here: check AWS_ACCESS_KEY_ID and \
             AWS_SECRET_ACCESS_KEY or the profile, and the account and region"
        }
        _ => return None,
    })
}

/// The innermost cause of `err` (`Connection refused (os error 111)`): what the SDK's
/// layers (`dispatch failure`, `io error`, `client error (Connect)`) wrap.
fn root_cause(err: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = err;
    while let Some(next) = cause.source() {
        cause = next;
    }
    cause.to_string()
}

/// `text` on one line: an error that lists things on lines of its own (the credential
/// chain's `Attempted:` list) is joined with `; `.
fn one_line(text: &str) -> String {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join("; ")
}

/// The credentials error behind `err`, if resolving credentials is what failed.
fn credentials_error<'a>(
    err: &'a (dyn std::error::Error + 'static),
) -> Option<&'a aws_credential_types::provider::error::CredentialsError> {
    let mut cause = Some(err);
    while let Some(error) = cause {
        if let Some(found) = error.downcast_ref() {
            return Some(found);
        }
        cause = error.source();
    }
    None
}

/// Where the SDK's default credential chain looks (`aws_config`'s
/// `DefaultCredentialsChain`, in its order), in words.
const CREDENTIAL_SOURCES: &str = "environment variables (AWS_ACCESS_KEY_ID and \
     AWS_SECRET_ACCESS_KEY), the shared config and credentials files (~/.aws/config, \
     ~/.aws/credentials: keys, SSO, credential_process or an assumed role of the profile), \
     a web identity token (AWS_WEB_IDENTITY_TOKEN_FILE and AWS_ROLE_ARN), ECS container \
     credentials and EC2 instance metadata";

/// A credentials failure as a person can act on it.
fn credentials_words(err: &aws_credential_types::provider::error::CredentialsError) -> String {
    use aws_credential_types::provider::error::CredentialsError;
    let profile = std::env::var("AWS_PROFILE").unwrap_or_else(|_| "default".into());
    match err {
        CredentialsError::CredentialsNotLoaded(_) => format!(
            "no AWS credentials found: tried {CREDENTIAL_SOURCES} (profile `{profile}`); \
             fix: export AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or set AWS_PROFILE to a \
             profile in ~/.aws/config (`aws configure`, or `aws sso login --profile NAME` \
             for SSO), or in CI give the job a role (GitHub Actions: \
             aws-actions/configure-aws-credentials)"
        ),
        CredentialsError::InvalidConfiguration(_) => format!(
            "the AWS credentials configuration is invalid (profile `{profile}`): {}",
            one_line(&deployer_engine::describe::error_chain(err))
        ),
        _ => format!(
            "loading AWS credentials (profile `{profile}`) failed: {}; if the SSO session \
             expired, run `aws sso login --profile {profile}`",
            one_line(&deployer_engine::describe::error_chain(err))
        ),
    }
}

/// Sort an SDK error: throttling, 5xx, timeouts and connection failures are transient.
/// Missing or broken credentials are not: retrying finds the same nothing (only a
/// credential provider that timed out is tried again).
///
/// Every operation of the AWS SDKs fails with an `SdkError` over the raw HTTP response
/// (`aws_smithy_runtime_api::http::Response`), whose status code decides 5xx.
pub fn classify<E>(what: &str, err: SdkError<E, Response>) -> DriverError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    use aws_credential_types::provider::error::CredentialsError;
    let transient = match credentials_error(&err) {
        Some(credentials) => matches!(credentials, CredentialsError::ProviderTimedOut(_)),
        None => match &err {
            SdkError::TimeoutError(_)
            | SdkError::DispatchFailure(_)
            | SdkError::ResponseError(_) => true,
            SdkError::ServiceError(service) => {
                let code = service.err().code().unwrap_or_default();
                TRANSIENT_CODES.contains(&code) || service.raw().status().is_server_error()
            }
            _ => false,
        },
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

    fn dispatch(
        source: aws_smithy_runtime_api::client::result::ConnectorError,
    ) -> SdkError<ErrorMetadata, Response> {
        SdkError::dispatch_failure(source)
    }

    /// Missing credentials fail at once, in one line naming where the SDK looked and how
    /// to set some; a refused connection stays transient and says so plainly.
    #[test]
    fn missing_credentials_are_not_transient_and_say_how_to_set_some() {
        use aws_credential_types::provider::error::CredentialsError;
        use aws_smithy_runtime_api::client::result::ConnectorError;
        let chain =
            "no credentials found in chain. Attempted:\n  Environment: not set\n  Profile: not set";
        let err = classify(
            "finding task definition `web:2`",
            dispatch(ConnectorError::other(
                Box::new(CredentialsError::not_loaded(chain)),
                None,
            )),
        );
        let DriverError::Failed(message) = &err else {
            panic!("not a plain failure: {err:?}");
        };
        assert!(!message.contains('\n'), "{message}");
        assert!(
            message.starts_with("finding task definition `web:2`: no AWS credentials found: tried environment variables"),
            "{message}"
        );
        for source in [
            "~/.aws/config",
            "SSO",
            "AWS_WEB_IDENTITY_TOKEN_FILE",
            "ECS container",
            "EC2 instance metadata",
            "fix: export AWS_ACCESS_KEY_ID",
        ] {
            assert!(message.contains(source), "{source}: {message}");
        }
        let timed_out = classify(
            "x",
            dispatch(ConnectorError::other(
                Box::new(CredentialsError::provider_timed_out(
                    std::time::Duration::from_secs(5),
                )),
                None,
            )),
        );
        assert!(
            matches!(timed_out, DriverError::Transient(_)),
            "{timed_out:?}"
        );

        let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        let err = classify(
            "describing",
            dispatch(ConnectorError::io(Box::new(refused))),
        );
        assert!(
            matches!(&err, DriverError::Transient(m) if m == "describing: cannot connect to AWS: connection refused"),
            "{err:?}"
        );
    }
}
