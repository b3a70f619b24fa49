//! Real parts for the end-to-end suites: a moto server per test, the AWS world in it,
//! a stand-in for the ECS agent, and small HTTP apps that play good and bad releases.
//! The submodules build on them: [`env`] (the environment of an end-to-end test),
//! [`config`] (`deployer.toml`), [`cli`] (the binary), [`rollout`] (the engine against
//! the simulated target), [`kube`] (a local Kubernetes control plane),
//! [`fault_proxy`] (cloud faults in front of moto), [`listener`] (a TCP listener that
//! counts the connections a sandboxed request must not make) and [`prometheus`] (apps
//! with request counters, a real Prometheus scraping them, and a SigV4-checking
//! stand-in for Amazon Managed Service for Prometheus).

pub mod cli;
pub mod config;
pub mod env;
pub mod fault_proxy;
pub mod history;
pub mod kube;
pub mod listener;
pub mod prometheus;
pub mod rollout;

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use aws_sdk_elasticloadbalancingv2::types::TargetDescription;

/// A moto server on a free 127.0.0.1 port, stopped on drop.
pub struct Moto {
    child: Child,
    pub endpoint: String,
}

/// `$VAR`, or `~/.cache/deployer/DEFAULT` where scripts/setup.sh installs the tools.
pub(crate) fn installed(var: &str, default: &str) -> PathBuf {
    std::env::var_os(var).map(PathBuf::from).unwrap_or_else(|| {
        PathBuf::from(std::env::var("HOME").unwrap())
            .join(".cache/deployer")
            .join(default)
    })
}

fn moto_venv() -> PathBuf {
    installed("DEPLOYER_MOTO_VENV", "moto-venv")
}

/// The Python of moto's venv (scripts/setup.sh), which has PyYAML (moto needs it).
pub fn moto_python() -> PathBuf {
    moto_venv().join("bin/python")
}

impl Moto {
    /// Start moto with the ECS deployment controller's progress (`support/moto_ecs.py`);
    /// deployments of the task definitions in `broken` fail.
    pub fn start(broken: &[&str]) -> Moto {
        Self::start_with(broken, &[])
    }

    /// The same with instance refresh, which moto lacks, emulated (`support/moto_ecs.py`).
    pub fn start_with_instance_refresh() -> Moto {
        Self::start_with(&[], &[("MOTO_INSTANCE_REFRESH", "1")])
    }

    pub fn start_with(broken: &[&str], env: &[(&str, &str)]) -> Moto {
        let venv = moto_venv();
        assert!(
            venv.join("bin/moto_server").exists(),
            "moto is not installed at {}: run scripts/setup.sh",
            venv.display()
        );
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new(venv.join("bin/python"))
            .arg(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("support/moto_ecs.py"))
            .arg(port.to_string())
            .env("MOTO_ECS_BROKEN", broken.join(","))
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let endpoint = format!("http://127.0.0.1:{port}");
        let started = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "moto did not start"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Moto { child, endpoint }
    }

    /// Run `support/SCRIPT ENDPOINT`, which builds a world and prints its ARNs as JSON,
    /// and return the ARNs named `keys`.
    fn world<const N: usize>(&self, script: &str, keys: [&str; N]) -> [String; N] {
        self.world_with(script, &[], keys)
    }

    fn world_with<const N: usize>(
        &self,
        script: &str,
        args: &[&str],
        keys: [&str; N],
    ) -> [String; N] {
        let json = self.world_json(script, args);
        keys.map(|k| json[k].as_str().unwrap().to_string())
    }

    /// Run `support/SCRIPT ENDPOINT ARGS…`, which builds a world and prints it as JSON;
    /// the JSON.
    pub fn world_json(&self, script: &str, args: &[&str]) -> serde_json::Value {
        let out = Command::new(moto_venv().join("bin/python"))
            .arg(
                PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                    .join("support")
                    .join(script),
            )
            .arg(&self.endpoint)
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{script}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    }

    /// Create the Auto Scaling world (see `support/moto_asg_world.py`).
    pub fn asg_world(&self) -> AsgWorld {
        self.asg_world_in("us-east-1")
    }

    /// The Auto Scaling world in `region`.
    pub fn asg_world_in(&self, region: &str) -> AsgWorld {
        let [listener, blue, green, api] = self.world_with(
            "moto_asg_world.py",
            &[region],
            ["listener", "blue", "green", "api"],
        );
        AsgWorld {
            listener,
            blue,
            green,
            api,
        }
    }

    /// Create the ECS world (see `support/moto_world.py`).
    pub fn ecs_world(&self) -> World {
        let keys = ["rule", "listener", "test_listener", "blue", "green"];
        let [rule, listener, test_listener, blue, green] = self.world("moto_world.py", keys);
        World {
            rule,
            listener,
            test_listener,
            blue,
            green,
        }
    }

    /// Create a team's ECS service pair (see `support/moto_pair_world.py`).
    pub fn pair_world(&self) -> PairWorld {
        let [listener, blue, green, lb] =
            self.world("moto_pair_world.py", ["listener", "blue", "green", "lb"]);
        PairWorld {
            listener,
            blue,
            green,
            lb,
        }
    }

    /// Create the Lambda world (see `support/moto_lambda_world.py`): function `api`,
    /// versions 1–3, alias `live` on 1 with `provisioned` concurrency (0: none).
    pub fn lambda_world(&self, provisioned: u32) -> LambdaWorld {
        let [function, alias] = self.world_with(
            "moto_lambda_world.py",
            &[&provisioned.to_string()],
            ["function", "alias"],
        );
        LambdaWorld { function, alias }
    }

    pub async fn clients(&self) -> deployer_targets::aws::Clients {
        self.clients_in("us-east-1").await
    }

    /// Clients for `region` of this moto.
    pub async fn clients_in(&self, region: &str) -> deployer_targets::aws::Clients {
        set_test_credentials();
        deployer_targets::aws::Clients::new(Some(region), Some(&self.endpoint)).await
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The Lambda world's function name and alias ARN.
#[derive(Clone, Debug)]
pub struct LambdaWorld {
    pub function: String,
    pub alias: String,
}

/// ARNs of the Auto Scaling world.
#[derive(Clone, Debug)]
pub struct AsgWorld {
    pub listener: String,
    pub blue: String,
    pub green: String,
    pub api: String,
}

/// Clients that reach nothing (for code that wants them but, in the test, makes no call).
pub async fn test_clients() -> deployer_targets::aws::Clients {
    set_test_credentials();
    deployer_targets::aws::Clients::new(Some("us-east-1"), Some("http://127.0.0.1:9")).await
}

/// Static test credentials for moto (never real ones).
pub fn set_test_credentials() {
    // SAFETY: set once, before any threads read them, to the same values in every test.
    unsafe {
        std::env::set_var("AWS_ACCESS_KEY_ID", "testing");
        std::env::set_var("AWS_SECRET_ACCESS_KEY", "testing");
        std::env::set_var("AWS_REGION", "us-east-1");
    }
}

/// ARNs of the ECS world.
#[derive(Clone, Debug)]
/// An ECS service pair on the ECS controller behind an ALB, autoscaled (2–10, at 7).
pub struct PairWorld {
    pub listener: String,
    pub blue: String,
    pub green: String,
    pub lb: String,
}

pub struct World {
    pub rule: String,
    pub listener: String,
    pub test_listener: String,
    pub blue: String,
    pub green: String,
}

/// What moto's ECS does not: start the tasks a task set's scale asks for and register
/// them in its target group (and stop the extra ones), as the ECS agent and the ALB do.
/// Releases listed in `broken` never become healthy (a crash-looping image).
pub struct EcsAgent {
    stop: Arc<AtomicBool>,
}

impl EcsAgent {
    pub fn start(clients: deployer_targets::aws::Clients, broken: Vec<String>) -> EcsAgent {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        tokio::spawn(async move {
            while !flag.load(Ordering::Relaxed) {
                let _ = reconcile(&clients, &broken).await;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        });
        EcsAgent { stop }
    }
}

impl Drop for EcsAgent {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Service `name` of the world's cluster `prod`, if there is one.
pub async fn ecs_service(
    clients: &deployer_targets::aws::Clients,
    name: &str,
) -> Result<Option<aws_sdk_ecs::types::Service>, String> {
    let out = clients
        .ecs
        .describe_services()
        .cluster("prod")
        .services(name)
        .send()
        .await
        .map_err(|e| e.to_string())?;
    Ok(out.services().first().cloned())
}

async fn reconcile(
    clients: &deployer_targets::aws::Clients,
    broken: &[String],
) -> Result<(), String> {
    let listed = clients
        .ecs
        .list_services()
        .cluster("prod")
        .send()
        .await
        .map_err(|e| e.to_string())?;
    if listed.service_arns().is_empty() {
        return Ok(());
    }
    let services = clients
        .ecs
        .describe_services()
        .cluster("prod")
        .set_services(Some(listed.service_arns().to_vec()))
        .send()
        .await
        .map_err(|e| e.to_string())?;
    let is_broken = |release: &str| {
        broken
            .iter()
            .any(|b| deployer_targets::aws::ecs::same_task_definition(b, release))
    };
    let revision = |release: &str| release.rsplit(':').next().unwrap_or("0").to_string();
    let mut wanted: std::collections::HashMap<String, Vec<String>> =
        std::collections::HashMap::new();
    for tg in tg_arns(clients).await? {
        wanted.insert(tg, Vec::new());
    }
    for (index, service) in services.services().iter().enumerate() {
        let desired = service.desired_count() as f64;
        // Task sets: the scale of each, as a share of the service's desired count.
        for set in service.task_sets() {
            let Some(tg) = set
                .load_balancers()
                .first()
                .and_then(|l| l.target_group_arn())
            else {
                continue;
            };
            let release = set.task_definition().unwrap_or_default();
            if is_broken(release) {
                continue;
            }
            let percent = set.scale().map(|s| s.value()).unwrap_or(0.0);
            let units = (percent * desired / 100.0).round() as u32;
            let rev = revision(release);
            let ips = (1..=units).map(|i| format!("10.0.{rev}.{i}"));
            wanted.entry(tg.to_string()).or_default().extend(ips);
        }
        // A service on the ECS controller behind a target group: the tasks of its
        // completed PRIMARY deployment (moto_ecs.py plays the deployments).
        let Some(tg) = service
            .load_balancers()
            .first()
            .and_then(|l| l.target_group_arn())
        else {
            continue;
        };
        let primary = service.deployments().iter().find(|d| {
            d.status() == Some("PRIMARY")
                && d.rollout_state().map(|s| s.as_str()) == Some("COMPLETED")
        });
        let Some(primary) = primary else { continue };
        let release = primary.task_definition().unwrap_or_default();
        if is_broken(release) {
            continue;
        }
        let rev = revision(release);
        let ips =
            (1..=primary.running_count().max(0)).map(|i| format!("10.{}.{rev}.{i}", index + 1));
        wanted.entry(tg.to_string()).or_default().extend(ips);
    }
    for (tg, ips) in wanted {
        let health = clients
            .elb
            .describe_target_health()
            .target_group_arn(&tg)
            .send()
            .await
            .map_err(|e| e.to_string())?;
        let present: Vec<String> = health
            .target_health_descriptions()
            .iter()
            .filter_map(|d| d.target().and_then(|t| t.id()).map(str::to_string))
            .collect();
        let add: Vec<&String> = ips.iter().filter(|ip| !present.contains(ip)).collect();
        let remove: Vec<&String> = present.iter().filter(|ip| !ips.contains(ip)).collect();
        if !add.is_empty() {
            let mut req = clients.elb.register_targets().target_group_arn(&tg);
            for ip in add {
                req = req.targets(TargetDescription::builder().id(ip).port(8080).build());
            }
            req.send().await.map_err(|e| e.to_string())?;
        }
        if !remove.is_empty() {
            let mut req = clients.elb.deregister_targets().target_group_arn(&tg);
            for ip in remove {
                req = req.targets(TargetDescription::builder().id(ip).port(8080).build());
            }
            req.send().await.map_err(|e| e.to_string())?;
        }
    }
    Ok(())
}

async fn tg_arns(clients: &deployer_targets::aws::Clients) -> Result<Vec<String>, String> {
    let out = clients
        .elb
        .describe_target_groups()
        .send()
        .await
        .map_err(|e| e.to_string())?;
    Ok(out
        .target_groups()
        .iter()
        .filter_map(|t| t.target_group_arn().map(str::to_string))
        .collect())
}

/// A tiny HTTP app on 127.0.0.1 answering every request with `status` and `body`.
pub struct App {
    pub url: String,
    stop: Arc<AtomicBool>,
    requests: Arc<std::sync::Mutex<Vec<String>>>,
}

impl App {
    pub fn start(status: u16, body: &'static str) -> App {
        Self::scripted(vec![status], body)
    }

    /// Answer the n-th request with `statuses[n]` (the last one repeats).
    pub fn scripted(statuses: Vec<u16>, body: &'static str) -> App {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        listener.set_nonblocking(true).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let requests = Arc::new(std::sync::Mutex::new(Vec::new()));
        let seen = requests.clone();
        std::thread::spawn(move || {
            let mut served = 0;
            while !flag.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((mut stream, _)) => {
                        let _ = stream.set_nonblocking(false);
                        let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
                        seen.lock().unwrap().push(read_request(&mut stream));
                        let status = statuses[served.min(statuses.len() - 1)];
                        served += 1;
                        let reason = if status == 200 { "OK" } else { "Error" };
                        let response = format!(
                            "HTTP/1.1 {status} {reason}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                            body.len()
                        );
                        let _ = stream.write_all(response.as_bytes());
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        App {
            url: format!("http://127.0.0.1:{port}/health"),
            stop,
            requests,
        }
    }

    /// Every request received so far, head and body as text.
    pub fn requests(&self) -> Vec<String> {
        self.requests.lock().unwrap().clone()
    }
}

/// Read one HTTP/1.1 request: the head, then as much body as content-length says.
fn read_request(stream: &mut std::net::TcpStream) -> String {
    let mut data = Vec::new();
    let mut buf = [0u8; 4096];
    while let Ok(n @ 1..) = stream.read(&mut buf) {
        data.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&data);
        if let Some(end) = text.find("\r\n\r\n") {
            let length = text[..end]
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length:")
                        .map(|v| v.trim().parse::<usize>().unwrap_or(0))
                })
                .unwrap_or(0);
            if data.len() >= end + 4 + length {
                break;
            }
        }
    }
    String::from_utf8_lossy(&data).into_owned()
}

impl Drop for App {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// The journal files in `dir`, oldest first by when each deployment began (its `started`
/// record): ids made in the same second sort by their random suffix, not by time. A
/// journal whose first record cannot be read (a kill cut it short) is the newest.
pub fn journals_oldest_first(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let began = |path: &std::path::Path| -> u64 {
        std::fs::read_to_string(path)
            .ok()
            .and_then(|text| {
                let first: serde_json::Value = serde_json::from_str(text.lines().next()?).ok()?;
                first["at_ms"].as_u64()
            })
            .unwrap_or(u64::MAX)
    };
    let mut files: Vec<_> = entries
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "jsonl"))
        .collect();
    files.sort_by_key(|p| (began(p), p.clone()));
    files
}
