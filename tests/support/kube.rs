//! A real Kubernetes control plane for the EKS suite: etcd, kube-apiserver and
//! kube-controller-manager (built by `scripts/k8s-local.sh`), started once per test
//! process on free 127.0.0.1 ports with a static admin token. There is no scheduler or
//! kubelet: [`Kubelet`] plays the node and marks pods Ready.

use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Namespace, Pod};
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};

/// The running control plane.
pub struct Cluster {
    /// A kubeconfig with the admin token and the apiserver's CA.
    pub kubeconfig: PathBuf,
}

fn bin_dir() -> PathBuf {
    crate::support::installed("DEPLOYER_K8S_BIN", "k8s/bin")
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Start `program`, killed when this test process dies (however it dies).
fn spawn(program: &Path, args: &[String], log: &Path) -> Child {
    let log = std::fs::File::create(log).unwrap();
    let mut cmd = Command::new(program);
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log);
    // SAFETY: prctl is async-signal-safe; it only asks the kernel to kill the child
    // when the thread that spawned it (parked for the process's life) goes away.
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
    cmd.spawn()
        .unwrap_or_else(|e| panic!("starting {}: {e}", program.display()))
}

fn run(program: &str, args: &[&str]) {
    let status = Command::new(program)
        .args(args)
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success(), "{program} {args:?} failed");
}

/// The shared control plane, started on first use.
pub fn cluster() -> &'static Cluster {
    static CLUSTER: OnceLock<Cluster> = OnceLock::new();
    CLUSTER.get_or_init(|| {
        let (tx, rx) = std::sync::mpsc::channel();
        // Children die with this thread (PDEATHSIG), so it lives as long as the process.
        std::thread::spawn(move || {
            let mut children = Vec::new();
            tx.send(start(&mut children)).unwrap();
            loop {
                std::thread::park();
            }
        });
        rx.recv().unwrap()
    })
}

fn start(children: &mut Vec<Child>) -> Cluster {
    let bin = bin_dir();
    for name in ["etcd", "kube-apiserver", "kube-controller-manager"] {
        assert!(
            bin.join(name).exists(),
            "{} is missing: run scripts/setup.sh --kubernetes (it builds the local Kubernetes binaries)",
            bin.join(name).display()
        );
    }
    let tmp = std::env::temp_dir();
    // Clusters of test processes that are gone leave their etcd data behind.
    for entry in std::fs::read_dir(&tmp).unwrap().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if let Some(pid) = name.strip_prefix("deployer-k8s-")
            && !Path::new("/proc").join(pid).exists()
        {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
    let dir = tmp.join(format!("deployer-k8s-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("certs")).unwrap();
    let path = |name: &str| dir.join(name).display().to_string();
    let (etcd_port, peer_port, api_port) = (free_port(), free_port(), free_port());
    let token = format!("deployer-test-{}", std::process::id());
    std::fs::write(
        dir.join("tokens.csv"),
        format!("{token},admin,admin,system:masters\n"),
    )
    .unwrap();
    run("openssl", &["genrsa", "-out", &path("sa.key"), "2048"]);
    run(
        "openssl",
        &[
            "rsa",
            "-in",
            &path("sa.key"),
            "-pubout",
            "-out",
            &path("sa.pub"),
        ],
    );

    let etcd_url = format!("http://127.0.0.1:{etcd_port}");
    let peer_url = format!("http://127.0.0.1:{peer_port}");
    children.push(spawn(
        &bin.join("etcd"),
        &[
            format!("--data-dir={}", path("etcd")),
            format!("--listen-client-urls={etcd_url}"),
            format!("--advertise-client-urls={etcd_url}"),
            format!("--listen-peer-urls={peer_url}"),
            format!("--initial-advertise-peer-urls={peer_url}"),
            format!("--initial-cluster=default={peer_url}"),
        ],
        &dir.join("etcd.log"),
    ));
    children.push(spawn(
        &bin.join("kube-apiserver"),
        &[
            format!("--etcd-servers={etcd_url}"),
            "--bind-address=127.0.0.1".into(),
            "--advertise-address=127.0.0.1".into(),
            format!("--secure-port={api_port}"),
            "--insecure-port=0".into(),
            format!("--cert-dir={}", path("certs")),
            format!("--token-auth-file={}", path("tokens.csv")),
            "--authorization-mode=RBAC".into(),
            format!("--service-account-key-file={}", path("sa.pub")),
            format!("--service-account-signing-key-file={}", path("sa.key")),
            "--service-account-issuer=https://kubernetes.default.svc".into(),
            "--service-cluster-ip-range=10.96.0.0/16".into(),
            // No service account tokens to mount: pods need not wait for one.
            "--disable-admission-plugins=ServiceAccount".into(),
        ],
        &dir.join("apiserver.log"),
    ));
    let server = format!("https://127.0.0.1:{api_port}");
    // The apiserver writes its self-signed certificate on start.
    let started = Instant::now();
    let ca = dir.join("certs/apiserver.crt");
    while !ca.exists() {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "kube-apiserver did not start; see {}",
            dir.join("apiserver.log").display()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let kubeconfig = dir.join("kubeconfig");
    std::fs::write(
        &kubeconfig,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: local\n  cluster:\n    server: {server}\n    certificate-authority: {ca}\n\
             users:\n- name: admin\n  user:\n    token: {token}\ncontexts:\n- name: local\n  context:\n    cluster: local\n    user: admin\n\
             current-context: local\n",
            ca = ca.display()
        ),
    )
    .unwrap();
    children.push(spawn(
        &bin.join("kube-controller-manager"),
        &[
            format!("--kubeconfig={}", kubeconfig.display()),
            "--leader-elect=false".into(),
            "--controllers=deployment,replicaset,garbagecollector".into(),
            format!("--service-account-private-key-file={}", path("sa.key")),
            format!("--root-ca-file={}", ca.display()),
            "--bind-address=127.0.0.1".into(),
            "--port=0".into(),
            "--secure-port=0".into(),
        ],
        &dir.join("controller-manager.log"),
    ));
    let cluster = Cluster { kubeconfig };
    // Ready when the API answers with the admin token.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        loop {
            if let Ok(client) = cluster.client().await
                && Api::<Namespace>::all(client)
                    .list(&ListParams::default())
                    .await
                    .is_ok()
            {
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(90),
                "the Kubernetes API did not come up; see {}",
                dir.display()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    });
    cluster
}

impl Cluster {
    /// A client on the caller's runtime (clients do not outlive the runtime they were
    /// made on, and every test has its own).
    pub async fn client(&self) -> Result<kube::Client, String> {
        let access = deployer_targets::k8s::Access::Kubeconfig {
            path: self.kubeconfig.clone(),
            context: None,
        };
        let clients = crate::support::test_clients().await;
        deployer_targets::k8s::connect(&clients, &access)
            .await
            .map_err(|e| e.to_string())
    }

    /// A fresh namespace named `name`.
    pub async fn namespace(&self, name: &str) -> kube::Client {
        let client = self.client().await.unwrap();
        let ns: Namespace =
            serde_json::from_value(serde_json::json!({"metadata": {"name": name}})).unwrap();
        Api::<Namespace>::all(client.clone())
            .create(&PostParams::default(), &ns)
            .await
            .unwrap();
        client
    }
}

/// A Deployment of `replicas` pods running `image` in a container named `web`.
pub fn deployment(name: &str, image: &str, replicas: i32) -> Deployment {
    serde_json::from_value(serde_json::json!({
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "web", "image": image}]}
            }
        }
    }))
    .unwrap()
}

/// (image, spec replicas, ready replicas) of a Deployment.
pub async fn state(client: &kube::Client, namespace: &str, name: &str) -> (String, i32, i32) {
    let d = Api::<Deployment>::namespaced(client.clone(), namespace)
        .get(name)
        .await
        .unwrap();
    let spec = d.spec.unwrap();
    (
        spec.template.spec.unwrap().containers[0]
            .image
            .clone()
            .unwrap(),
        spec.replicas.unwrap_or(1),
        d.status.and_then(|s| s.ready_replicas).unwrap_or(0),
    )
}

/// Plays the kubelet of a namespace: marks every pod Running and Ready, except pods of
/// the images in `broken` (a crash-looping release), which stay Pending.
pub struct Kubelet {
    stop: Arc<AtomicBool>,
}

impl Kubelet {
    pub fn start(client: kube::Client, namespace: &str, broken: &[&str]) -> Kubelet {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let pods: Api<Pod> = Api::namespaced(client, namespace);
        let broken: Vec<String> = broken.iter().map(|s| s.to_string()).collect();
        tokio::spawn(async move {
            let mut ip = 0u32;
            while !flag.load(Ordering::Relaxed) {
                if let Ok(list) = pods.list(&ListParams::default()).await {
                    for pod in list {
                        let ready = pod
                            .status
                            .as_ref()
                            .and_then(|s| s.conditions.as_ref())
                            .is_some_and(|c| {
                                c.iter().any(|c| c.type_ == "Ready" && c.status == "True")
                            });
                        let image = pod
                            .spec
                            .as_ref()
                            .and_then(|s| s.containers.first())
                            .and_then(|c| c.image.clone())
                            .unwrap_or_default();
                        if ready || broken.contains(&image) {
                            continue;
                        }
                        ip += 1;
                        let now = k8s_openapi::jiff::Timestamp::now().to_string();
                        let condition = |kind: &str| serde_json::json!({"type": kind, "status": "True", "lastTransitionTime": now});
                        let status = serde_json::json!({"status": {
                            "phase": "Running",
                            "podIP": format!("10.244.{}.{}", ip / 250, ip % 250 + 1),
                            "conditions": [condition("PodScheduled"), condition("Initialized"),
                                           condition("ContainersReady"), condition("Ready")],
                        }});
                        let name = pod.metadata.name.unwrap_or_default();
                        let _ = pods
                            .patch_status(&name, &PatchParams::default(), &Patch::Merge(&status))
                            .await;
                    }
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        });
        Kubelet { stop }
    }
}

impl Drop for Kubelet {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}
