//! Prometheus's HTTP query API, for gates and for the `metrics` capability of hooks:
//! one instant or range query, its series with their points.
//!
//! The server is the one `[prometheus]` in deployer.toml names: a self-run Prometheus
//! (no auth, or a bearer token read from an environment variable, never from the file),
//! or an Amazon Managed Service for Prometheus workspace, whose requests are signed
//! with SigV4 (service `aps`) from the run's own AWS credentials, fresh per request
//! because role credentials expire during a long bake.
//!
//! Queries go as a POST form, as Prometheus and AMP both take them: a long PromQL query
//! never meets a URL length limit, and what SigV4 signs is the exact body sent. Answers
//! are read up to [`MAX_ANSWER_BYTES`], so a runaway query cannot exhaust the host.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_credential_types::provider::ProvideCredentials;
use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
use aws_sigv4::sign::v4;
use deployer_engine::describe::error_chain;
use reqwest::Url;
use serde::Deserialize;

/// The largest answer read: past this the query is refused as too large. Parsed, an
/// answer takes several times its size in memory; 16 MiB holds the 250,000 points a
/// plugin may be handed, with room.
pub const MAX_ANSWER_BYTES: usize = 16 << 20;

/// How requests to the server are authorised.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PrometheusAuth {
    /// None: a server on a private network.
    None,
    /// `Authorization: Bearer <token>`, the token read from this environment variable
    /// at each request (CI injects secrets as variables; a file would leak it).
    Bearer { env: String },
    /// AWS SigV4 for Amazon Managed Service for Prometheus, in this region (`None`: the
    /// run's AWS region).
    SigV4 { region: Option<String> },
}

/// The configured server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PrometheusSpec {
    /// The server's base URL: `http://prometheus:9090`, or an AMP workspace
    /// `https://aps-workspaces.REGION.amazonaws.com/workspaces/ws-ID`.
    pub url: Url,
    pub auth: PrometheusAuth,
    /// The longest one query may take.
    pub timeout: Duration,
}

/// The region of an AMP workspace URL (`aps-workspaces.REGION.amazonaws.com`).
pub fn amp_region(url: &Url) -> Option<String> {
    let host = url.host_str()?;
    let rest = host.strip_prefix("aps-workspaces.")?;
    let region = rest
        .strip_suffix(".amazonaws.com")
        .or_else(|| rest.strip_suffix(".amazonaws.com.cn"))?;
    (!region.is_empty() && !region.contains('.')).then(|| region.to_string())
}

/// A range query: the last `window`, one point every `step`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Range {
    pub window: Duration,
    pub step: Duration,
}

/// One series of an answer: its labels, and its points as (ms since the epoch, value),
/// oldest first.
#[derive(Clone, Debug, PartialEq)]
pub struct Series {
    pub labels: BTreeMap<String, String>,
    pub points: Vec<(u64, f64)>,
}

/// Why a query has no answer.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum QueryError {
    /// Prometheus refused the query itself (`bad_data`): it will never work as written.
    #[error("Prometheus refused the query: {0}")]
    Refused(String),
    /// The answer is larger than the host reads.
    #[error("{0}")]
    TooLarge(String),
    /// The server, the network or the credentials failed; asking again may work.
    #[error("{0}")]
    Unavailable(String),
}

/// A client for the configured server.
#[derive(Clone, Debug)]
pub struct Prometheus {
    spec: PrometheusSpec,
    http: reqwest::Client,
    /// The run's AWS config: credentials for SigV4.
    aws: Option<aws_config::SdkConfig>,
}

impl Prometheus {
    /// A client for `spec`; `aws` gives the credentials SigV4 signs with.
    ///
    /// # Errors
    /// The HTTP client cannot be created (no TLS roots).
    pub fn new(
        spec: PrometheusSpec,
        aws: Option<aws_config::SdkConfig>,
    ) -> Result<Self, reqwest::Error> {
        let http = reqwest::Client::builder()
            .timeout(spec.timeout)
            // A redirect would carry the bearer token or an AWS signature elsewhere.
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        Ok(Prometheus { spec, http, aws })
    }

    /// `query` now (instant), or over `range` up to now.
    ///
    /// Nothing returned holds the bearer token: a server that echoes the Authorization
    /// header into an error or a label (a proxy's error page, a misconfigured relabel)
    /// must not hand it to a plugin, the journal or CI's log.
    ///
    /// # Errors
    /// See [`QueryError`].
    pub async fn query(
        &self,
        query: &str,
        range: Option<Range>,
    ) -> Result<Vec<Series>, QueryError> {
        let token = match &self.spec.auth {
            PrometheusAuth::Bearer { env } => Some(bearer_token(env).map_err(QueryError::Refused)?),
            _ => None,
        };
        let answer = self.query_with(query, range, token.as_deref()).await;
        match token {
            Some(token) => scrub_answer(answer, &token),
            None => answer,
        }
    }

    async fn query_with(
        &self,
        query: &str,
        range: Option<Range>,
        token: Option<&str>,
    ) -> Result<Vec<Series>, QueryError> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        let seconds = |d: Duration| format!("{:.3}", d.as_secs_f64());
        let (endpoint, form): (&str, Vec<(&str, String)>) = match range {
            None => (
                "query",
                vec![("query", query.to_string()), ("time", seconds(now))],
            ),
            Some(range) => (
                "query_range",
                vec![
                    ("query", query.to_string()),
                    ("start", seconds(now.saturating_sub(range.window))),
                    ("end", seconds(now)),
                    ("step", seconds(range.step.max(Duration::from_millis(1)))),
                ],
            ),
        };
        let url = self.endpoint(endpoint)?;
        let body = serde_urlencoded(&form);
        let mut request = self
            .http
            .post(url.clone())
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body.clone());
        for (name, value) in self.authorization(&url, &body, token).await? {
            request = request.header(name, value);
        }
        let response = request.send().await.map_err(|e| {
            QueryError::Unavailable(format!("cannot reach Prometheus: {}", error_chain(&e)))
        })?;
        let status = response.status();
        let bytes = read_capped(response).await?;
        let answer: Answer = match serde_json::from_slice(&bytes) {
            Ok(answer) => answer,
            Err(_) => {
                return Err(QueryError::Unavailable(format!(
                    "Prometheus answered {status} with {}",
                    preview(&bytes)
                )));
            }
        };
        if answer.status != "success" {
            let why = answer
                .error
                .or(answer.message)
                .unwrap_or_else(|| format!("status {status}"));
            // Only a query Prometheus cannot parse or type-check (`bad_data`, or a bare
            // 400) will never pass as written; an execution error (422: too many samples,
            // a timeout), refused credentials or a 5xx may pass when asked again.
            let refused = match answer.error_type.as_deref() {
                Some(kind) => kind == "bad_data",
                None => status.as_u16() == 400,
            };
            return Err(if refused {
                QueryError::Refused(why)
            } else {
                QueryError::Unavailable(format!("Prometheus answered {status}: {why}"))
            });
        }
        let Some(data) = answer.data else {
            return Err(QueryError::Unavailable(format!(
                "Prometheus answered {status} without data"
            )));
        };
        data.into_series()
    }

    /// `BASE/api/v1/<endpoint>`.
    fn endpoint(&self, endpoint: &str) -> Result<Url, QueryError> {
        let mut url = self.spec.url.clone();
        url.path_segments_mut()
            .map_err(|()| QueryError::Unavailable("the Prometheus URL cannot have a path".into()))?
            .pop_if_empty()
            .extend(["api", "v1", endpoint]);
        Ok(url)
    }

    /// The headers that authorise a POST of `body` to `url` (with `token` for bearer
    /// auth).
    async fn authorization(
        &self,
        url: &Url,
        body: &str,
        token: Option<&str>,
    ) -> Result<Vec<(String, String)>, QueryError> {
        match &self.spec.auth {
            PrometheusAuth::None => Ok(Vec::new()),
            PrometheusAuth::Bearer { .. } => Ok(token
                .map(|token| vec![("authorization".into(), format!("Bearer {token}"))])
                .unwrap_or_default()),
            PrometheusAuth::SigV4 { region } => {
                let provider = self
                    .aws
                    .as_ref()
                    .and_then(aws_config::SdkConfig::credentials_provider)
                    .ok_or_else(|| {
                        QueryError::Unavailable(
                            "no AWS credentials to sign the Prometheus query with".into(),
                        )
                    })?;
                let region = region
                    .clone()
                    .or_else(|| {
                        self.aws
                            .as_ref()
                            .and_then(|aws| aws.region().map(ToString::to_string))
                    })
                    .ok_or_else(|| {
                        QueryError::Unavailable(
                            "no AWS region to sign the Prometheus query for: set \
                             prometheus.region or aws.region"
                                .into(),
                        )
                    })?;
                let credentials = provider.provide_credentials().await.map_err(|e| {
                    QueryError::Unavailable(format!("loading AWS credentials: {e}"))
                })?;
                sigv4_headers(&credentials.into(), &region, url, body, SystemTime::now())
                    .map_err(QueryError::Unavailable)
            }
        }
    }
}

/// The bearer token in environment variable `env`, trimmed.
///
/// # Errors
/// The variable is unset or empty, or holds what no HTTP header can carry (a line
/// break, a control or non-ASCII character): a setting to fix, not a failure to retry.
pub fn bearer_token(env: &str) -> Result<String, String> {
    let token = match std::env::var(env) {
        Ok(token) => token,
        Err(std::env::VarError::NotPresent) => String::new(),
        Err(std::env::VarError::NotUnicode(_)) => {
            return Err(format!(
                "environment variable {env} (prometheus.bearer-token-env) is not valid UTF-8, \
                 which no HTTP header can carry"
            ));
        }
    };
    let token = token.trim();
    if token.is_empty() {
        return Err(format!(
            "environment variable {env} (prometheus.bearer-token-env) is not set or empty: \
             set it to the Prometheus token"
        ));
    }
    if !token
        .bytes()
        .all(|b| (0x21..=0x7e).contains(&b) || b == b' ')
    {
        return Err(format!(
            "environment variable {env} (prometheus.bearer-token-env) holds a line break, \
             control or non-ASCII character, which no HTTP header can carry"
        ));
    }
    Ok(token.to_string())
}

/// `answer` with the token masked in its texts and labels (see [`mask_token`]).
fn scrub_answer(
    answer: Result<Vec<Series>, QueryError>,
    token: &str,
) -> Result<Vec<Series>, QueryError> {
    let scrub = |text: String| mask_token(&text, token);
    match answer {
        Ok(series) => Ok(series
            .into_iter()
            .map(|s| Series {
                labels: s
                    .labels
                    .into_iter()
                    .map(|(k, v)| (scrub(k), scrub(v)))
                    .collect(),
                points: s.points,
            })
            .collect()),
        Err(QueryError::Refused(why)) => Err(QueryError::Refused(scrub(why))),
        Err(QueryError::TooLarge(why)) => Err(QueryError::TooLarge(scrub(why))),
        Err(QueryError::Unavailable(why)) => Err(QueryError::Unavailable(scrub(why))),
    }
}

/// The shortest piece of a token that is masked on its own.
const TOKEN_PIECE: usize = 8;

/// `text` with every run that matches the token, or any piece of it of at least
/// [`TOKEN_PIECE`] characters, ignoring ASCII case, replaced by `***`: a server that
/// echoes the token upper-cased, cut in two or truncated gives none of it away. (One
/// that encodes it cannot be stopped; it is the server the token is for.) Linear in
/// `text`: each position is looked up among the token's pieces.
pub fn mask_token(text: &str, token: &str) -> String {
    let token = token.to_ascii_lowercase();
    let lower = text.to_ascii_lowercase();
    let (token, lower) = (token.as_bytes(), lower.as_bytes());
    if token.is_empty() {
        return text.to_string();
    }
    let piece = TOKEN_PIECE.min(token.len());
    let pieces: std::collections::HashSet<&[u8]> = token.windows(piece).collect();
    let mut masked = vec![false; lower.len()];
    for (at, window) in lower.windows(piece).enumerate() {
        if pieces.contains(window) {
            masked[at..at + piece].fill(true);
        }
    }
    if !masked.contains(&true) {
        return text.to_string();
    }
    // The token is ASCII, so a masked run starts and ends on character boundaries.
    let mut out = String::with_capacity(text.len());
    let mut at = 0;
    while at < text.len() {
        if masked[at] {
            out.push_str("***");
            while at < text.len() && masked[at] {
                at += 1;
            }
        } else {
            let end = (at + 1..=text.len())
                .find(|&i| text.is_char_boundary(i) && (i == text.len() || masked[i]))
                .unwrap_or(text.len());
            out.push_str(&text[at..end]);
            at = end;
        }
    }
    out
}

/// The SigV4 headers (`authorization`, `x-amz-date`, and `x-amz-security-token` for
/// temporary credentials) of a form POST of `body` to `url`, signed for AMP (`aps`).
///
/// # Errors
/// The request cannot be signed (a message saying why).
pub fn sigv4_headers(
    identity: &aws_smithy_runtime_api::client::identity::Identity,
    region: &str,
    url: &Url,
    body: &str,
    now: SystemTime,
) -> Result<Vec<(String, String)>, String> {
    let params = v4::SigningParams::builder()
        .identity(identity)
        .region(region)
        .name("aps")
        .time(now)
        .settings(SigningSettings::default())
        .build()
        .map_err(|e| format!("signing the Prometheus query: {e}"))?
        .into();
    let host = match (url.host_str(), url.port()) {
        (Some(host), Some(port)) => format!("{host}:{port}"),
        (Some(host), None) => host.to_string(),
        (None, _) => return Err("the Prometheus URL has no host".into()),
    };
    let headers = [
        ("host", host.as_str()),
        ("content-type", "application/x-www-form-urlencoded"),
    ];
    let request = SignableRequest::new(
        "POST",
        url.as_str(),
        headers.into_iter(),
        SignableBody::Bytes(body.as_bytes()),
    )
    .map_err(|e| format!("signing the Prometheus query: {e}"))?;
    let (instructions, _) = sign(request, &params)
        .map_err(|e| format!("signing the Prometheus query: {e}"))?
        .into_parts();
    let (headers, _) = instructions.into_parts();
    Ok(headers
        .into_iter()
        .map(|h| (h.name().to_string(), h.value().to_string()))
        .collect())
}

/// `pairs` as an `application/x-www-form-urlencoded` body.
fn serde_urlencoded(pairs: &[(&str, String)]) -> String {
    let mut url = Url::parse("http://form.invalid/").expect("a fixed URL parses");
    url.query_pairs_mut().extend_pairs(pairs);
    url.query().unwrap_or_default().to_string()
}

/// The response body, at most [`MAX_ANSWER_BYTES`].
async fn read_capped(mut response: reqwest::Response) -> Result<Vec<u8>, QueryError> {
    let mut bytes = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(|e| {
        QueryError::Unavailable(format!("reading Prometheus's answer: {}", error_chain(&e)))
    })? {
        if bytes.len() + chunk.len() > MAX_ANSWER_BYTES {
            return Err(QueryError::TooLarge(format!(
                "Prometheus's answer is over {} MiB; narrow the query (fewer series, a shorter \
                 window or a longer step)",
                MAX_ANSWER_BYTES >> 20
            )));
        }
        bytes.extend_from_slice(&chunk);
    }
    Ok(bytes)
}

/// The start of a body that is not JSON, printable, for an error message.
fn preview(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(&bytes[..bytes.len().min(200)]);
    let text = deployer_engine::redact::printable(text.trim());
    if text.is_empty() {
        "an empty body".into()
    } else {
        format!("`{text}`")
    }
}

/// Prometheus's answer envelope (AMP's errors carry `message` instead).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Answer {
    #[serde(default)]
    status: String,
    data: Option<Data>,
    error_type: Option<String>,
    error: Option<String>,
    message: Option<String>,
}

#[derive(Deserialize)]
#[serde(tag = "resultType", content = "result", rename_all = "lowercase")]
enum Data {
    Vector(Vec<Instant>),
    Matrix(Vec<Ranged>),
    Scalar(Point),
    String(serde::de::IgnoredAny),
}

/// `[seconds, "value"]`.
#[derive(Deserialize)]
struct Point(f64, String);

impl Point {
    /// (ms, value); a value that is not a number is an answer nobody can judge.
    fn point(&self) -> Result<(u64, f64), QueryError> {
        let value = parse_value(&self.1).ok_or_else(|| {
            QueryError::Unavailable(format!(
                "Prometheus answered a sample value that is not a number: `{}`",
                deployer_engine::redact::printable(&self.1.chars().take(40).collect::<String>())
            ))
        })?;
        Ok(((self.0 * 1000.0).max(0.0) as u64, value))
    }
}

#[derive(Deserialize)]
struct Instant {
    #[serde(default)]
    metric: BTreeMap<String, String>,
    /// Absent for native histograms, which have `histogram` instead: not a number.
    value: Option<Point>,
}

#[derive(Deserialize)]
struct Ranged {
    #[serde(default)]
    metric: BTreeMap<String, String>,
    #[serde(default)]
    values: Vec<Point>,
}

/// A sample value as Prometheus writes it: a number, `NaN`, `+Inf` or `-Inf`.
fn parse_value(text: &str) -> Option<f64> {
    text.parse().ok()
}

impl Data {
    fn into_series(self) -> Result<Vec<Series>, QueryError> {
        match self {
            Data::Vector(samples) => samples
                .into_iter()
                .map(|s| {
                    Ok(Series {
                        labels: s.metric,
                        points: s
                            .value
                            .as_ref()
                            .map(Point::point)
                            .transpose()?
                            .into_iter()
                            .collect(),
                    })
                })
                .collect(),
            Data::Matrix(series) => series
                .into_iter()
                .map(|s| {
                    Ok(Series {
                        labels: s.metric,
                        points: s
                            .values
                            .iter()
                            .map(Point::point)
                            .collect::<Result<_, _>>()?,
                    })
                })
                .collect(),
            Data::Scalar(point) => Ok(vec![Series {
                labels: BTreeMap::new(),
                points: vec![point.point()?],
            }]),
            // A string is no measurement: nothing to judge.
            Data::String(_) => Ok(Vec::new()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(json: &str) -> Vec<Series> {
        let answer: Answer = serde_json::from_str(json).unwrap();
        answer.data.unwrap().into_series().unwrap()
    }

    #[test]
    fn vectors_matrices_and_scalars_become_series() {
        let vector = data(
            r#"{"status":"success","data":{"resultType":"vector","result":[
                {"metric":{"release":"a"},"value":[1700000000.5,"0.25"]},
                {"metric":{"release":"b"},"value":[1700000000.5,"NaN"]},
                {"metric":{"release":"c"},"value":[1700000000.5,"+Inf"]}]}}"#,
        );
        assert_eq!(vector.len(), 3);
        assert_eq!(vector[0].labels["release"], "a");
        assert_eq!(vector[0].points, vec![(1_700_000_000_500, 0.25)]);
        assert!(vector[1].points[0].1.is_nan());
        assert_eq!(vector[2].points[0].1, f64::INFINITY);
        let matrix = data(
            r#"{"status":"success","data":{"resultType":"matrix","result":[
                {"metric":{},"values":[[1,"1"],[2,"2"],[3,"-Inf"]]}]}}"#,
        );
        assert_eq!(matrix[0].points.len(), 3);
        assert_eq!(matrix[0].points[2].1, f64::NEG_INFINITY);
        let scalar =
            data(r#"{"status":"success","data":{"resultType":"scalar","result":[5,"3"]}}"#);
        assert_eq!(scalar[0].points, vec![(5000, 3.0)]);
        let histogram = data(
            r#"{"status":"success","data":{"resultType":"vector","result":[
                {"metric":{},"histogram":[1,{"count":"2","sum":"3","buckets":[]}]}]}}"#,
        );
        assert!(histogram[0].points.is_empty());
    }

    #[test]
    fn a_value_that_is_no_number_makes_the_answer_unusable() {
        let answer: Answer = serde_json::from_str(
            r#"{"status":"success","data":{"resultType":"vector","result":[
                {"metric":{},"value":[1,"0"]},{"metric":{},"value":[1,"bogus"]}]}}"#,
        )
        .unwrap();
        assert!(matches!(
            answer.data.unwrap().into_series(),
            Err(QueryError::Unavailable(why)) if why.contains("`bogus`")
        ));
    }

    #[test]
    fn an_echoed_token_is_masked_in_errors_and_labels() {
        let token = "s3cr3t-T0KEN-xyz";
        let series = vec![Series {
            labels: [("tok".to_string(), format!("Bearer {token}"))].into(),
            points: vec![(1, 1.0)],
        }];
        let scrubbed = scrub_answer(Ok(series), token).unwrap();
        assert_eq!(scrubbed[0].labels["tok"], "Bearer ***");
        let error = scrub_answer(
            Err(QueryError::Unavailable(format!(
                "500: auth was Bearer {token}"
            ))),
            token,
        );
        assert_eq!(
            error,
            Err(QueryError::Unavailable("500: auth was Bearer ***".into()))
        );
    }

    #[test]
    fn a_token_echoed_in_another_case_cut_in_two_or_in_part_is_masked() {
        let token = "Tok3nSECRETvalue9876zz";
        assert_eq!(
            mask_token("auth: tok3nsecretvalue9876zz!", token),
            "auth: ***!"
        );
        assert_eq!(mask_token("TOK3NSECRETVALUE9876ZZ", token), "***");
        assert_eq!(
            mask_token("a=Tok3nSECRET b=value9876zz", token),
            "a=*** b=***"
        );
        assert_eq!(mask_token("first Tok3nSECRETva…", token), "first ***…");
        assert_eq!(mask_token("é Tok3nSECRETvalue ü", token), "é *** ü");
        assert_eq!(
            mask_token("nothing secret here", token),
            "nothing secret here"
        );
        // Seven characters of it say too little to mask every word that shares them.
        assert_eq!(mask_token("see Tok3nSE.", token), "see Tok3nSE.");
    }

    #[test]
    fn a_token_no_header_can_carry_is_refused_saying_why() {
        use std::os::unix::ffi::OsStrExt;
        let var = "DEPLOYER_UNIT_PROM_TOKEN";
        let set = |value: &std::ffi::OsStr| {
            // SAFETY: a variable of this test's own; no other test reads or writes it.
            unsafe { std::env::set_var(var, value) }
        };
        set(std::ffi::OsStr::from_bytes(b"abc\xff"));
        assert!(bearer_token(var).unwrap_err().contains("not valid UTF-8"));
        for (value, says) in [
            ("", "not set or empty"),
            ("  ", "not set or empty"),
            ("a\r\nb", "line break"),
        ] {
            set(value.as_ref());
            assert!(bearer_token(var).unwrap_err().contains(says), "{value:?}");
        }
        set(" tok-123\n".as_ref());
        assert_eq!(bearer_token(var).unwrap(), "tok-123");
    }

    #[test]
    fn amp_urls_give_their_region() {
        let url =
            Url::parse("https://aps-workspaces.eu-west-1.amazonaws.com/workspaces/ws-1").unwrap();
        assert_eq!(amp_region(&url).as_deref(), Some("eu-west-1"));
        let url = Url::parse("http://prometheus:9090").unwrap();
        assert_eq!(amp_region(&url), None);
        let url = Url::parse("https://aps-workspaces.evil.example.com/x").unwrap();
        assert_eq!(amp_region(&url), None);
    }

    #[test]
    fn forms_encode_promql_exactly() {
        let body = serde_urlencoded(&[("query", r#"sum(rate(x{a="b c",d=~"5.."}[1m]))+1"#.into())]);
        let decoded: Vec<(String, String)> = Url::parse(&format!("http://x/?{body}"))
            .unwrap()
            .query_pairs()
            .into_owned()
            .collect();
        assert_eq!(decoded[0].1, r#"sum(rate(x{a="b c",d=~"5.."}[1m]))+1"#);
    }
}
