//! The S3 backend's history index (issue #19, item 6): `history`, `status` and
//! `rollback` read a bounded amount of state however many deployments came before, give
//! the answers reading the whole history gave, read state an earlier version wrote (and
//! index it once, under the lock, saying so), and report a damaged index with its key and
//! the fix. Against moto with the real binary; long histories are seeded straight into
//! S3 (`support::history`).

use deployer_tests::support::App;
use deployer_tests::support::env::EcsEnv;
use deployer_tests::support::fault_proxy::FaultProxy;
use deployer_tests::support::history::{self, Layout, Newest};

use super::faults::through_proxy;

const BUCKET: &str = "deployer-state";
const SERVICE: &str = "shop/services/web";

/// The ECS world with `web` on task sets smoke-tested against `app`, its state in S3
/// and DynamoDB, and `count` past deployments of `web` already there as `layout`.
async fn world_with_history(app: &App, count: u64, layout: Layout, newest: Newest) -> EcsEnv {
    let env = EcsEnv::start(&[]).await;
    env.write(&config(&env, app));
    history::seed(&env.clients.s3, BUCKET, "shop/", count, layout, newest).await;
    env
}

fn config(env: &EcsEnv, app: &App) -> deployer_tests::support::config::ConfigBuilder {
    env.task_sets(&app.url, r#"[{ weight = 50 }]"#)
        .aws_state(BUCKET, "deployer-locks", "shop/")
        .lease("5s")
}

/// `deployer ARGS --output json`, which must succeed: its stdout as JSON, and stderr.
async fn json(env: &EcsEnv, args: &[&str]) -> (serde_json::Value, String) {
    let mut args = args.to_vec();
    args.extend(["--output", "json"]);
    let (code, out, err) = env.deployer(&args).await;
    assert_eq!(code, 0, "{args:?}: {out}\n{err}");
    (serde_json::from_str(&out).unwrap(), err)
}

/// Keys of the service's history index.
async fn index_keys(env: &EcsEnv) -> Vec<String> {
    env.s3_keys()
        .await
        .into_iter()
        .filter(|k| k.starts_with(&format!("{SERVICE}/index/")) || k.ends_with("/latest.json"))
        .collect()
}

/// (number, deployment, result, new release) of each row.
fn rows(history: &serde_json::Value) -> Vec<(u64, String, String, String)> {
    history
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["number"].as_u64().unwrap_or(0),
                r["deployment"].as_str().unwrap().to_string(),
                r["result"].as_str().unwrap().to_string(),
                r["new-release"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// State an earlier deployer wrote (journals and markers, no index), 30 deployments:
/// `history` and `status` read it as before — every row, in order, the live release —
/// and say the index is missing, writing nothing (they hold no lock). `tidy` takes the
/// lock, builds the index and says so. Afterwards both give exactly the same answers
/// without the warning, and `history` pages through the same rows with `--before`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn state_of_an_earlier_version_is_read_then_indexed_once_under_the_lock() {
    let good = App::start(200, "ok");
    let env = world_with_history(&good, 30, Layout::Markers, Newest::Promoted).await;

    let (before, err) = json(&env, &["history", "--all"]).await;
    assert!(err.contains("has no index yet"), "{err}");
    let (status_before, _) = json(&env, &["status"]).await;
    assert!(
        index_keys(&env).await.is_empty(),
        "nothing written without the lock"
    );
    let expected: Vec<_> = (1..=30u64)
        .rev()
        .map(|n| {
            let (result, new, _) = history::shape(n, 30);
            let result = serde_json::to_value(result).unwrap();
            (
                n,
                history::id(n),
                result.as_str().unwrap().to_string(),
                new.to_string(),
            )
        })
        .collect();
    assert_eq!(rows(&before), expected);
    assert_eq!(status_before["live"], "web:1");
    assert_eq!(status_before["live-deployment"], history::id(30).as_str());

    let (code, out, err) = env.deployer(&["tidy", "--service", "web"]).await;
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(
        err.contains("built the history index of `web`") && err.contains("30 past deployments"),
        "{err}"
    );
    assert_eq!(index_keys(&env).await.len(), 31, "30 entries and the head");

    let (after, err) = json(&env, &["history", "--all"]).await;
    assert!(!err.contains("index"), "{err}");
    assert_eq!(after, before);
    let (status_after, err) = json(&env, &["status"]).await;
    assert!(!err.contains("index"), "{err}");
    assert_eq!(status_after, status_before);

    // Page by page, newest first, to the first: the same rows.
    let mut paged = Vec::new();
    let mut args = vec!["history".to_string(), "--limit".into(), "7".into()];
    loop {
        let argv: Vec<&str> = args.iter().map(String::as_str).collect();
        let (page, err) = json(&env, &argv).await;
        let page = rows(&page);
        assert!(page.len() <= 7);
        paged.extend(page.clone());
        let Some(hint) = err
            .lines()
            .find_map(|l| l.split("--before ").nth(1).map(|n| n.trim_end_matches('`')))
        else {
            break;
        };
        assert_eq!(hint, page.last().unwrap().0.to_string(), "{err}");
        args = vec![
            "history".into(),
            "--limit".into(),
            "7".into(),
            "--before".into(),
            hint.into(),
        ];
    }
    assert_eq!(paged, expected);
}

/// A damaged index is reported — exit 3, the key, what is wrong and the fix — never
/// read as a shorter history: an entry deleted, an entry garbled, the head garbled.
/// Deleting the head, as the fix says, has the next locked command build it again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_or_garbled_index_entry_is_reported_with_its_key_and_the_fix() {
    let good = App::start(200, "ok");
    let env = world_with_history(&good, 30, Layout::Indexed, Newest::Promoted).await;
    let s3 = &env.clients.s3;
    let head = format!("s3://{BUCKET}/{SERVICE}/latest.json");
    let fix = format!("fix: delete {head}");
    let reported = async |args: &[&str], key: &str, what: &str| {
        let (code, out, err) = env.deployer(args).await;
        assert_eq!(code, 3, "{args:?}: {out}\n{err}");
        assert!(
            err.contains(&format!("s3://{BUCKET}/{key}"))
                && err.contains(what)
                && err.contains(&fix),
            "{args:?}: {err}"
        );
    };

    let entry = |n: u64| format!("{SERVICE}/index/{n:012}.json");
    s3.delete_object()
        .bucket(BUCKET)
        .key(entry(25))
        .send()
        .await
        .unwrap();
    reported(&["history"], &entry(25), "entry 25 is missing").await;
    // The first page does not reach it.
    let (page, _) = json(&env, &["history", "--limit", "5"]).await;
    assert_eq!(rows(&page).len(), 5);

    s3.put_object()
        .bucket(BUCKET)
        .key(entry(28))
        .body(b"{\"number\": 28, \"id\": \"../../other\"".to_vec().into())
        .send()
        .await
        .unwrap();
    reported(
        &["history", "--limit", "5"],
        &entry(28),
        "not a history entry",
    )
    .await;

    s3.put_object()
        .bucket(BUCKET)
        .key(format!("{SERVICE}/latest.json"))
        .body(b"garbage".to_vec().into())
        .send()
        .await
        .unwrap();
    reported(
        &["status"],
        &format!("{SERVICE}/latest.json"),
        "not an index head",
    )
    .await;
    reported(
        &["rollback"],
        &format!("{SERVICE}/latest.json"),
        "not an index head",
    )
    .await;
    assert_eq!(
        env.weights().await,
        (100, 0),
        "the rollback changed nothing"
    );

    s3.delete_object()
        .bucket(BUCKET)
        .key(format!("{SERVICE}/latest.json"))
        .send()
        .await
        .unwrap();
    let (code, out, err) = env.deployer(&["tidy"]).await;
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(err.contains("built the history index"), "{err}");
    let (all, _) = json(&env, &["history", "--all"]).await;
    let numbers: Vec<u64> = rows(&all).iter().map(|r| r.0).collect();
    assert_eq!(numbers, (1..=30).rev().collect::<Vec<_>>());
}

/// S3 requests of `deployer ARGS` through `proxy`, but those for the person's signals
/// (`abort`, `promote`), which a running deployment polls by the clock: (operation,
/// request line) each.
async fn s3_requests(env: &EcsEnv, proxy: &FaultProxy, args: &[&str]) -> Vec<(String, String)> {
    let before = proxy.requests().len();
    let (code, out, err) = env.deployer(args).await;
    assert_eq!(code, 0, "{args:?}: {out}\n{err}");
    proxy.requests()[before..]
        .iter()
        .filter(|(op, line)| {
            [
                "GetObject",
                "PutObject",
                "ListObjectsV2",
                "DeleteObject",
                "HeadObject",
            ]
            .contains(&op.as_str())
                && !line.contains("/signals/")
        })
        .cloned()
        .collect()
}

/// What `status`, the first page of `history` and a `rollback` (a real one: traffic back
/// to web:2) cost in S3 requests with `count` deployments before them.
async fn costs(count: u64) -> [usize; 3] {
    let good = App::start(200, "ok");
    let env = world_with_history(&good, count, Layout::Indexed, Newest::Promoted).await;
    let proxy = through_proxy(&env, config(&env, &good)).await;
    let status = s3_requests(&env, &proxy, &["status"]).await;
    let history = s3_requests(&env, &proxy, &["history"]).await;
    let rollback = s3_requests(&env, &proxy, &["rollback", "--output", "json"]).await;
    assert_eq!(
        env.weights().await,
        (0, 100),
        "rolled back onto web:2 (green)"
    );
    assert_eq!(env.primary().await, ("web:2".to_string(), 1));
    // The reads of the history are a fixed set: the head, one page of entries, the
    // journal of the deployment undone.
    let read_index = |requests: &[(String, String)]| {
        requests
            .iter()
            .filter(|(_, line)| line.contains("/index/"))
            .count()
    };
    assert_eq!(read_index(&status), 0, "{status:?}");
    assert_eq!(read_index(&history), 20, "one default page: {history:?}");
    [status.len(), history.len(), rollback.len()]
}

/// The issue's promise, counted: `status`, `history` and `rollback` make exactly as
/// many S3 requests after 200 deployments as after 20.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_history_and_rollback_make_as_many_s3_requests_after_200_deployments_as_after_20() {
    let few = costs(20).await;
    let many = costs(200).await;
    assert_eq!(few, many, "[status, history, rollback] S3 requests");
}

/// The newest finished deployment's rollback failed: `rollback` retries that rollback
/// (as reading the whole history did) rather than redeploying an older release; with
/// the index it finds it in the head alone. `status` shows the newest promoted as live.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_rollback_at_the_head_of_the_index_is_retried() {
    use deployer_engine::state::{DeployResult, Record};
    let good = App::start(200, "ok");
    let env = world_with_history(&good, 12, Layout::Indexed, Newest::Promoted).await;
    // Deployment 13: web:3 over web:1, its rollback failed; written through the store.
    let store = deployer_targets::state::aws::AwsStore::new(
        env.clients.s3.clone(),
        env.clients.dynamodb.clone(),
        BUCKET,
        "deployer-locks",
        "shop/",
        std::time::Duration::from_secs(30),
    );
    let mut journal = history::journal(5, 12, Newest::Promoted);
    let id = "d1796000900000-4242-13";
    if let Record::Started {
        id: started_id,
        new_release,
        stable_release,
        at_ms,
        ..
    } = &mut journal.records[0]
    {
        *started_id = id.into();
        *new_release = "web:3".into();
        *stable_release = Some("web:1".into());
        *at_ms = 1_796_000_900_000;
    }
    let last = journal.records.len() - 1;
    journal.records[last] = Record::Finished {
        result: DeployResult::RollbackFailed,
        detail: "the rollback failed: ModifyListener: AccessDenied".into(),
        at_ms: 1_796_000_900_500,
    };
    store.begin("web", id, &journal.records[0]).await.unwrap();
    for (i, record) in journal.records[1..last].iter().enumerate() {
        store.append("web", id, i + 1, record).await.unwrap();
    }
    store
        .finish("web", id, last, &journal.records[last])
        .await
        .unwrap();

    let (status, _) = json(&env, &["status"]).await;
    assert_eq!(status["live"], "web:1");
    assert_eq!(status["live-deployment"], history::id(12).as_str());
    let (page, _) = json(&env, &["history", "--limit", "2"]).await;
    let page = rows(&page);
    assert_eq!(
        page[0],
        (13, id.to_string(), "rollback-failed".into(), "web:3".into())
    );
    assert_eq!(page[1].0, 12);

    let (summary, err) = json(&env, &["rollback"]).await;
    assert_eq!(summary["result"], "rolled-back", "{summary}\n{err}");
    assert!(
        summary["detail"]
            .as_str()
            .unwrap()
            .contains(&format!("retrying the failed rollback of deployment {id}")),
        "{summary}"
    );
    assert_eq!(env.weights().await, (100, 0));
    let (page, _) = json(&env, &["history", "--limit", "1"]).await;
    assert_eq!(rows(&page)[0].0, 14, "the retry is numbered next");
}

/// The seeded history the tests and the benchmark read is what the store itself
/// writes: the same journals finished through `AwsStore` leave byte for byte the same
/// index entries, head and markers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_seeded_layout_is_the_one_the_store_writes() {
    let env = EcsEnv::start(&[]).await;
    let store = deployer_targets::state::aws::AwsStore::new(
        env.clients.s3.clone(),
        env.clients.dynamodb.clone(),
        BUCKET,
        "deployer-locks",
        "written/",
        std::time::Duration::from_secs(30),
    );
    let count = 6;
    for number in 1..=count {
        let journal = history::journal(number, count, Newest::Promoted);
        let id = history::id(number);
        let last = journal.records.len() - 1;
        store.begin("web", &id, &journal.records[0]).await.unwrap();
        for (i, record) in journal.records[1..last].iter().enumerate() {
            store.append("web", &id, i + 1, record).await.unwrap();
        }
        store
            .finish("web", &id, last, &journal.records[last])
            .await
            .unwrap();
    }
    history::seed(
        &env.clients.s3,
        BUCKET,
        "seeded/",
        count,
        Layout::Indexed,
        Newest::Promoted,
    )
    .await;
    let objects = async |prefix: &str| {
        let mut found = Vec::new();
        for key in env.s3_keys().await {
            if let Some(rest) = key.strip_prefix(prefix) {
                let body = env
                    .clients
                    .s3
                    .get_object()
                    .bucket(BUCKET)
                    .key(&key)
                    .send()
                    .await;
                let bytes = body.unwrap().body.collect().await.unwrap().into_bytes();
                found.push((rest.to_string(), String::from_utf8(bytes.to_vec()).unwrap()));
            }
        }
        found.sort();
        found
    };
    let written = objects("written/").await;
    let seeded = objects("seeded/").await;
    let keys =
        |objects: &[(String, String)]| objects.iter().map(|o| o.0.clone()).collect::<Vec<_>>();
    assert_eq!(keys(&written), keys(&seeded));
    assert!(keys(&written).contains(&"services/web/index/000000000006.json".to_string()));
    for (written, seeded) in written.iter().zip(&seeded) {
        assert_eq!(written, seeded);
    }
}
