//! HTTP smoke tests against a release: N requests, each must answer the expected
//! status (and body text) within the latency bound; the gate passes when the share of
//! good answers reaches `min-success`.

use std::time::{Duration, Instant};

use deployer_contract::{GateResult, GateStatus};
use deployer_engine::describe::error_chain;

/// What an HTTP smoke test checks.
#[derive(Clone, Debug, PartialEq)]
pub struct HttpCheck {
    pub url: String,
    pub expect_status: u16,
    pub body_contains: Option<String>,
    pub max_latency: Option<Duration>,
    pub requests: u32,
    pub min_success: f64,
    /// Pause between requests.
    pub interval: Duration,
}

#[derive(Clone, Debug)]
pub struct HttpGate {
    pub client: reqwest::Client,
    pub check: HttpCheck,
}

impl HttpGate {
    pub async fn run(&self, name: &str) -> GateResult {
        if self.check.requests == 0 {
            return GateResult {
                name: name.to_string(),
                status: GateStatus::NoData,
                detail: "no requests configured".into(),
                observed: None,
            };
        }
        let mut good = 0;
        let mut last_problem = String::new();
        for i in 0..self.check.requests {
            if i > 0 && !self.check.interval.is_zero() {
                tokio::time::sleep(self.check.interval).await;
            }
            match self.probe().await {
                Ok(()) => good += 1,
                Err(problem) => last_problem = problem,
            }
        }
        let ratio = f64::from(good) / f64::from(self.check.requests);
        let status = if ratio >= self.check.min_success {
            GateStatus::Pass
        } else {
            GateStatus::Fail
        };
        let mut detail = format!(
            "{good}/{} requests to {} succeeded",
            self.check.requests,
            deployer_engine::redact::url(&self.check.url)
        );
        if !last_problem.is_empty() {
            detail += &format!(" (last problem: {last_problem})");
        }
        GateResult {
            name: name.to_string(),
            status,
            detail,
            observed: Some(ratio),
        }
    }

    async fn probe(&self) -> Result<(), String> {
        let started = Instant::now();
        let timeout =
            self.check.max_latency.unwrap_or(Duration::from_secs(10)) + Duration::from_secs(1);
        let response = self
            .client
            .get(&self.check.url)
            .timeout(timeout)
            .send()
            .await
            // The URL may carry credentials; the error text must not.
            .map_err(|e| error_chain(&e.without_url()))?;
        let status = response.status().as_u16();
        let body = response
            .text()
            .await
            .map_err(|e| format!("reading the body: {}", error_chain(&e.without_url())))?;
        let latency = started.elapsed();
        if status != self.check.expect_status {
            return Err(format!(
                "status {status}, expected {}",
                self.check.expect_status
            ));
        }
        if let Some(text) = &self.check.body_contains
            && !body.contains(text.as_str())
        {
            return Err(format!("body does not contain {text:?}"));
        }
        if let Some(max) = self.check.max_latency
            && latency > max
        {
            return Err(format!("took {latency:?}, more than {max:?}"));
        }
        Ok(())
    }
}
