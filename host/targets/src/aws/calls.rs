//! Counting the AWS API calls a run makes, every attempt (retries included): the
//! summary reports them, and the overhead benchmark checks calls per traffic step.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use aws_sdk_ecs::config::interceptors::BeforeTransmitInterceptorContextRef;
use aws_sdk_ecs::config::{ConfigBag, Intercept, RuntimeComponents};
use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::orchestrator::Metadata;

/// Calls by `Service.Operation`, shared by every client of one [`super::Clients`].
///
/// A release deploys many services at once through one set of clients per region (one
/// shared request budget): each service's calls are made inside [`scoped`], and
/// [`CallCounter::scope`] gives the view of one service's calls for its summary.
/// Calls by (scope, operation); the scope is "" outside any [`scoped`].
type Counts = BTreeMap<(Arc<str>, String), u32>;

#[derive(Clone, Debug, Default)]
pub struct CallCounter {
    calls: Arc<Mutex<Counts>>,
    /// `None`: every call; `Some(name)`: only calls made inside `scoped(name, …)`.
    only: Option<Arc<str>>,
}

tokio::task_local! {
    /// The scope the calls of the future being polled count under.
    static SCOPE: Arc<str>;
}

/// Run `work` with its AWS calls counted under `name` (the service a release deploys):
/// per future, not per task, so services joined in one task are still told apart.
pub async fn scoped<F: std::future::Future>(name: &str, work: F) -> F::Output {
    SCOPE.scope(Arc::from(name), work).await
}

impl CallCounter {
    /// The same counter, seeing only the calls made inside `scoped(name, …)`.
    pub fn scope(&self, name: &str) -> CallCounter {
        CallCounter {
            calls: self.calls.clone(),
            only: Some(Arc::from(name)),
        }
    }

    fn seen(&self, scope: &str) -> bool {
        self.only.as_deref().is_none_or(|only| only == scope)
    }

    /// Calls so far, by operation.
    pub fn snapshot(&self) -> BTreeMap<String, u32> {
        let mut by_operation = BTreeMap::new();
        for ((scope, operation), count) in
            self.calls.lock().unwrap_or_else(|e| e.into_inner()).iter()
        {
            if self.seen(scope) {
                *by_operation.entry(operation.clone()).or_default() += count;
            }
        }
        by_operation
    }

    pub fn total(&self) -> u32 {
        self.calls
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .filter(|((scope, _), _)| self.seen(scope))
            .map(|(_, count)| count)
            .sum()
    }
}

impl Intercept for CallCounter {
    fn name(&self) -> &'static str {
        "deployer-call-counter"
    }

    fn read_before_transmit(
        &self,
        _context: &BeforeTransmitInterceptorContextRef<'_>,
        _components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let operation = cfg.load::<Metadata>().map_or_else(
            || "unknown".to_string(),
            |m| format!("{}.{}", m.service(), m.name()),
        );
        let scope = SCOPE.try_with(Arc::clone).unwrap_or_else(|_| Arc::from(""));
        *self
            .calls
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry((scope, operation))
            .or_default() += 1;
        Ok(())
    }
}
