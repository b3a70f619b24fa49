//! Plugin host costs of an example hook (`plugins/examples/webhook-notify`): loading it
//! from the on-disk compile cache, instantiating it, and one `run` as a deployment makes
//! it (fresh store and instance, one HTTP capability call through the host's allow-list
//! check, answered in-process so the network is not what is measured). Results:
//! BENCHMARKS.md.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use deployer_contract::{GateStatus, LifecyclePoint};
use deployer_plugin_host::bindings::http;
use deployer_plugin_host::bindings::types::CapabilityError;
use deployer_plugin_host::capabilities::{BoxFuture, HttpTransport, Resolver};
use deployer_plugin_host::egress::Destination;
use deployer_plugin_host::hook::HookContext;
use deployer_plugin_host::hook::HookPlugin;
use deployer_plugin_host::{Grants, HostServices, Limits, PluginHost};
use deployer_tests::{components, source};

/// The chat service's name, resolved without a network.
struct ChatName;

impl Resolver for ChatName {
    fn resolve(&self, _: String, port: u16) -> BoxFuture<'_, std::io::Result<Vec<SocketAddr>>> {
        Box::pin(async move { Ok(vec![SocketAddr::from(([93, 184, 216, 34], port))]) })
    }
}

/// A chat service that answers at once.
struct InstantChat;

impl HttpTransport for InstantChat {
    fn send(
        &self,
        _: Destination,
        _: http::Request,
    ) -> BoxFuture<'_, Result<http::Response, CapabilityError>> {
        Box::pin(async {
            Ok(http::Response {
                status: 200,
                headers: vec![],
                body: b"ok".to_vec(),
            })
        })
    }
}

fn hook_host(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let cache = tempfile::tempdir().unwrap();
    let services = HostServices {
        http: Some(Arc::new(InstantChat)),
        resolver: Arc::new(ChatName),
        ..HostServices::default()
    };
    let host = PluginHost::with_services(Some(cache.path().to_path_buf()), services).unwrap();
    let grants = Grants {
        http_allow: vec!["chat.example.com".into()],
        ..Grants::default()
    };
    let src = source("notify", components::EXAMPLE_WEBHOOK_NOTIFY);
    let hook = HookPlugin::load(&host, &src, Limits::hook(), grants.clone()).unwrap();
    let ctx = HookContext {
        point: LifecyclePoint::PostDeploy,
        deployment_id: "d-1".into(),
        service: "web".into(),
        new_release: "web:2".into(),
        stable_release: Some("web:1".into()),
        new_traffic_percent: 100,
        params: r##"{"webhook":"https://chat.example.com/hooks/T1","channel":"#deploys"}"##.into(),
    };
    let result = rt.block_on(hook.run(&ctx)).unwrap();
    assert_eq!(result.status, GateStatus::Pass, "{}", result.detail);

    let mut group = c.benchmark_group("hook_host");
    group.bench_function("cached_load/webhook-notify", |b| {
        b.iter(|| {
            host.forget_compiled();
            HookPlugin::load(&host, &src, Limits::hook(), grants.clone()).unwrap()
        })
    });
    group.bench_function("instantiate/webhook-notify", |b| {
        b.iter(|| rt.block_on(hook.instantiate()).unwrap())
    });
    group.bench_function("call_run/webhook-notify", |b| {
        b.iter(|| rt.block_on(hook.run(&ctx)).unwrap())
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(Duration::from_secs(3)).warm_up_time(Duration::from_secs(1));
    targets = hook_host
}
criterion_main!(benches);
