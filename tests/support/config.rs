//! `deployer.toml` from one builder, for every suite and the overhead benchmark:
//! [`ConfigBuilder`] writes the `[state]` backend, the `[aws]` header, `[prometheus]`, services (their
//! settings, target, traffic, gates, hooks and strategy parameters) and `[plugins.*]`.
//!
//! It writes text, not a parsed document, in a fixed order: state, aws, prometheus, then each
//! service's settings, target, traffic, gates, hooks and strategies, then plugins, one
//! `key = value` a line and a blank line between tables. Tests that assert the line and
//! column of a config error rely on that layout, and values the tests spell out in TOML
//! (canary steps, hook parameters) go in as written.
//!
//! The worlds the end-to-end suites deploy into (ECS task sets, ECS in place, Auto
//! Scaling and EKS pairs and single targets) are composed from it in
//! [`super::env`].

use std::path::{Path, PathBuf};

/// One table, or one element of an array of tables: `key = value` lines in order.
/// Setting a key that is already there replaces its value where it stands.
#[derive(Clone, Debug, Default)]
pub struct Table {
    entries: Vec<(String, String)>,
}

impl Table {
    /// `key = value`, with `value` TOML as written (arrays and inline tables).
    pub fn raw(mut self, key: &str, value: &str) -> Self {
        match self.entries.iter_mut().find(|(k, _)| k == key) {
            Some(entry) => entry.1 = value.to_string(),
            None => self.entries.push((key.to_string(), value.to_string())),
        }
        self
    }

    /// `key = "value"`.
    pub fn str(self, key: &str, value: &str) -> Self {
        self.raw(key, &quote(value))
    }

    pub fn int(self, key: &str, value: i64) -> Self {
        self.raw(key, &value.to_string())
    }

    pub fn bool(self, key: &str, value: bool) -> Self {
        self.raw(key, &value.to_string())
    }

    /// `key = ["a", "b"]`.
    pub fn strs(self, key: &str, values: &[&str]) -> Self {
        let items: Vec<String> = values.iter().map(|v| quote(v)).collect();
        self.raw(key, &format!("[{}]", items.join(", ")))
    }

    pub fn remove(mut self, key: &str) -> Self {
        self.entries.retain(|(k, _)| k != key);
        self
    }

    fn get(&self, key: &str) -> Option<&str> {
        self.entries
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    fn render(&self, header: &str, out: &mut String) {
        if !out.is_empty() {
            out.push('\n');
        }
        out.push_str(header);
        out.push('\n');
        for (key, value) in &self.entries {
            out.push_str(&format!("{key} = {value}\n"));
        }
    }
}

/// `value` as a TOML basic string, every control character escaped.
pub fn quote(value: &str) -> String {
    let mut out = String::from('"');
    for c in value.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// One `[services.NAME]` and its sub-tables.
#[derive(Clone, Debug)]
pub struct Service {
    name: String,
    settings: Table,
    target: Table,
    traffic: Option<Table>,
    gates: Vec<Table>,
    hooks: Vec<Table>,
    strategies: Vec<(String, Table)>,
}

impl Service {
    fn new(name: &str) -> Service {
        Service {
            name: name.to_string(),
            settings: Table::default(),
            target: Table::default(),
            traffic: None,
            gates: Vec::new(),
            hooks: Vec::new(),
            strategies: Vec::new(),
        }
    }

    /// Keys of `[services.NAME]` itself.
    pub fn settings(mut self, edit: impl FnOnce(Table) -> Table) -> Self {
        self.settings = edit(self.settings);
        self
    }

    pub fn health_timeout(self, duration: &str) -> Self {
        self.settings(|t| t.str("health-timeout", duration))
    }

    pub fn watch_interval(self, duration: &str) -> Self {
        self.settings(|t| t.str("watch-interval", duration))
    }

    /// `[services.NAME.target]` as `edit` leaves it (for targets no helper below writes).
    pub fn target(mut self, edit: impl FnOnce(Table) -> Table) -> Self {
        self.target = edit(self.target);
        self
    }

    /// An ECS service (task sets, or in place: the service's deployment controller says).
    pub fn ecs(self, cluster: &str, service: &str, desired: i64) -> Self {
        self.target(|t| {
            t.str("kind", "ecs")
                .str("cluster", cluster)
                .str("service", service)
                .int("desired-count", desired)
        })
    }

    /// Two Auto Scaling groups, blue then green, behind the service's target groups.
    pub fn asg_pair(self, groups: [&str; 2], desired: i64) -> Self {
        self.target(|t| {
            t.str("kind", "asg")
                .strs("groups", &groups)
                .int("desired-count", desired)
        })
    }

    /// One Auto Scaling group, updated in place.
    pub fn asg(self, group: &str, desired: i64) -> Self {
        self.target(|t| {
            t.str("kind", "asg")
                .str("group", group)
                .int("desired-count", desired)
        })
    }

    /// Two Deployments, blue then green, in `namespace` of the cluster in `kubeconfig`.
    pub fn eks_pair(
        self,
        namespace: &str,
        deployments: [&str; 2],
        kubeconfig: &str,
        desired: i64,
    ) -> Self {
        self.eks_target(namespace, kubeconfig, desired, |t| {
            t.strs("deployments", &deployments)
        })
    }

    /// One Deployment whose `container` gets the release, rolled by Kubernetes.
    pub fn eks(
        self,
        namespace: &str,
        deployment: &str,
        container: &str,
        kubeconfig: &str,
        desired: i64,
    ) -> Self {
        self.eks_target(namespace, kubeconfig, desired, |t| {
            t.str("deployment", deployment).str("container", container)
        })
    }

    /// An EKS target; `workload` names what is deployed.
    fn eks_target(
        self,
        namespace: &str,
        kubeconfig: &str,
        desired: i64,
        workload: impl FnOnce(Table) -> Table,
    ) -> Self {
        self.target(|t| {
            workload(t.str("kind", "eks").str("namespace", namespace))
                .str("kubeconfig", kubeconfig)
                .int("desired-count", desired)
        })
    }

    /// `[services.NAME.traffic]` as `edit` leaves it.
    pub fn traffic(mut self, edit: impl FnOnce(Table) -> Table) -> Self {
        self.traffic = Some(edit(self.traffic.take().unwrap_or_default()));
        self
    }

    /// Production traffic on `listener`'s default action, split between `target_groups`
    /// (blue, green), with the new side's test traffic on `test_listener` if given.
    /// A listener and blue and green target groups whose ARNs are well formed and name
    /// nothing: for commands that stop before AWS answers (validate, bad input, the
    /// start-up benchmark's first call).
    pub fn unreachable_listener(self) -> Self {
        self.listener(
            "arn:aws:elasticloadbalancing:us-east-1:1:listener/app/a/1/1",
            None,
            [
                "arn:aws:elasticloadbalancing:us-east-1:1:targetgroup/blue/1",
                "arn:aws:elasticloadbalancing:us-east-1:1:targetgroup/green/2",
            ],
        )
    }

    pub fn listener(
        self,
        listener: &str,
        test_listener: Option<&str>,
        target_groups: [&str; 2],
    ) -> Self {
        self.traffic(|t| {
            let t = t.str("listener-arn", listener);
            let t = match test_listener {
                Some(arn) => t.str("test-listener-arn", arn),
                None => t,
            };
            t.strs("target-groups", &target_groups)
        })
    }

    /// A `[[services.NAME.gates]]` of `kind` run `at` those points; `edit` adds its keys.
    pub fn gate(mut self, kind: &str, at: &[&str], edit: impl FnOnce(Table) -> Table) -> Self {
        self.gates
            .push(edit(Table::default().str("kind", kind).strs("at", at)));
        self
    }

    /// An HTTP smoke test of `requests` requests to `url`.
    pub fn http_gate(self, at: &[&str], url: &str, requests: i64) -> Self {
        self.gate("http", at, |g| g.str("url", url).int("requests", requests))
    }

    /// CloudWatch alarms that must not be in ALARM.
    pub fn alarm_gate(self, at: &[&str], alarms: &[&str]) -> Self {
        self.gate("alarm", at, |g| g.strs("alarms", alarms))
    }

    /// Change every gate of `kind` already added.
    pub fn edit_gates(mut self, kind: &str, edit: impl Fn(Table) -> Table) -> Self {
        let quoted = quote(kind);
        self.gates = self
            .gates
            .into_iter()
            .map(|g| {
                if g.get("kind") == Some(&quoted) {
                    edit(g)
                } else {
                    g
                }
            })
            .collect();
        self
    }

    /// A `[[services.NAME.hooks]]` calling hook plugin `plugin` at those points with
    /// `params`, an inline table as written.
    pub fn hook(mut self, plugin: &str, at: &[&str], params: &str) -> Self {
        self.hooks.push(
            Table::default()
                .str("plugin", plugin)
                .strs("at", at)
                .raw("params", params),
        );
        self
    }

    /// `[services.NAME.strategies.STRATEGY]` as `edit` leaves it.
    pub fn strategy(mut self, strategy: &str, edit: impl FnOnce(Table) -> Table) -> Self {
        match self
            .strategies
            .iter_mut()
            .find(|(name, _)| name == strategy)
        {
            Some((_, table)) => *table = edit(std::mem::take(table)),
            None => self
                .strategies
                .push((strategy.to_string(), edit(Table::default()))),
        }
        self
    }

    /// The canary's `steps`, an array of inline tables as written.
    pub fn canary_steps(self, steps: &str) -> Self {
        self.strategy("canary", |p| p.raw("steps", steps))
    }

    fn render(&self, out: &mut String) {
        let prefix = format!("services.{}", self.name);
        if !self.settings.entries.is_empty() {
            self.settings.render(&format!("[{prefix}]"), out);
        }
        if !self.target.entries.is_empty() {
            self.target.render(&format!("[{prefix}.target]"), out);
        }
        if let Some(traffic) = &self.traffic {
            traffic.render(&format!("[{prefix}.traffic]"), out);
        }
        for gate in &self.gates {
            gate.render(&format!("[[{prefix}.gates]]"), out);
        }
        for hook in &self.hooks {
            hook.render(&format!("[[{prefix}.hooks]]"), out);
        }
        for (name, params) in &self.strategies {
            params.render(&format!("[{prefix}.strategies.{name}]"), out);
        }
    }
}

/// A whole `deployer.toml`.
#[derive(Clone, Debug, Default)]
pub struct ConfigBuilder {
    state: Option<Table>,
    aws: Option<Table>,
    prometheus: Option<Table>,
    services: Vec<Service>,
    plugins: Vec<(String, Table)>,
    releases: Vec<(String, Table, Vec<Table>)>,
}

impl ConfigBuilder {
    pub fn new() -> ConfigBuilder {
        ConfigBuilder::default()
    }

    /// `[aws]` in us-east-1 with every call to `endpoint` (moto, or a proxy in front of
    /// it); set again, it replaces the endpoint.
    pub fn aws(mut self, endpoint: &str) -> Self {
        self.aws = Some(
            Table::default()
                .str("region", "us-east-1")
                .str("endpoint-url", endpoint),
        );
        self
    }

    /// Journals and locks in S3 (`bucket`, keys under `prefix`) and DynamoDB (`table`)
    /// instead of local files.
    pub fn aws_state(mut self, bucket: &str, table: &str, prefix: &str) -> Self {
        self.state = Some(
            Table::default()
                .str("backend", "aws")
                .str("bucket", bucket)
                .str("table", table)
                .str("prefix", prefix),
        );
        self
    }

    /// The `aws` backend's lease (`state.lease`), e.g. "5s".
    pub fn lease(mut self, lease: &str) -> Self {
        self.state = Some(self.state.take().unwrap_or_default().str("lease", lease));
        self
    }

    /// `[prometheus]` at `url`; `edit` adds the rest (`auth`, `region`, ...).
    pub fn prometheus(mut self, url: &str, edit: impl FnOnce(Table) -> Table) -> Self {
        self.prometheus = Some(edit(Table::default().str("url", url)));
        self
    }

    /// `[plugins.NAME]`, a built-in hook (`builtin = "judge"`); `grants` adds its
    /// capabilities.
    pub fn builtin_hook(
        mut self,
        name: &str,
        builtin: &str,
        grants: impl FnOnce(Table) -> Table,
    ) -> Self {
        let table = Table::default().str("kind", "hook").str("builtin", builtin);
        self.plugins.push((name.to_string(), grants(table)));
        self
    }

    /// Add service `name`, or change it if it is there.
    pub fn service(mut self, name: &str, edit: impl FnOnce(Service) -> Service) -> Self {
        match self.services.iter().position(|s| s.name == name) {
            Some(i) => {
                let service = self.services.remove(i);
                self.services.insert(i, edit(service));
            }
            None => self.services.push(edit(Service::new(name))),
        }
        self
    }

    /// `[plugins.NAME]`, a hook component at `path` with digest `sha256`; `grants` adds
    /// its capabilities (`kv`, `http-allow`, ...).
    pub fn hook_plugin(
        mut self,
        name: &str,
        path: &str,
        sha256: &str,
        grants: impl FnOnce(Table) -> Table,
    ) -> Self {
        let table = Table::default()
            .str("kind", "hook")
            .str("path", path)
            .str("sha256", sha256);
        self.plugins.push((name.to_string(), grants(table)));
        self
    }

    /// `[releases.NAME]` with these `waves` (service names, wave by wave), the strategy
    /// `strategy` for every service, `edit` for the rest of the table, and `gates` (each
    /// a `[[releases.NAME.gates]]` table).
    pub fn release(
        mut self,
        name: &str,
        waves: &[&[&str]],
        strategy: &str,
        edit: impl FnOnce(Table) -> Table,
        gates: Vec<Table>,
    ) -> Self {
        let waves = waves
            .iter()
            .map(|wave| {
                let names: Vec<String> = wave.iter().map(|s| quote(s)).collect();
                format!("[{}]", names.join(", "))
            })
            .collect::<Vec<_>>()
            .join(", ");
        let table = edit(
            Table::default()
                .raw("waves", &format!("[{waves}]"))
                .str("strategy", strategy),
        );
        // Set again, it replaces the table.
        self.releases.retain(|(n, _, _)| n != name);
        self.releases.push((name.to_string(), table, gates));
        self
    }

    /// The file's text.
    pub fn render(&self) -> String {
        let mut out = String::new();
        if let Some(state) = &self.state {
            state.render("[state]", &mut out);
        }
        if let Some(aws) = &self.aws {
            aws.render("[aws]", &mut out);
        }
        if let Some(prometheus) = &self.prometheus {
            prometheus.render("[prometheus]", &mut out);
        }
        for service in &self.services {
            service.render(&mut out);
        }
        for (name, table) in &self.plugins {
            table.render(&format!("[plugins.{name}]"), &mut out);
        }
        for (name, table, gates) in &self.releases {
            table.render(&format!("[releases.{name}]"), &mut out);
            for gate in gates {
                gate.render(&format!("[[releases.{name}.gates]]"), &mut out);
            }
        }
        out
    }

    /// Write `dir/deployer.toml` and return its path.
    pub fn write(&self, dir: &Path) -> PathBuf {
        let path = dir.join("deployer.toml");
        std::fs::write(&path, self.render()).unwrap();
        path
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_tables_in_order_with_values_as_toml() {
        let text = ConfigBuilder::new()
            .aws("http://127.0.0.1:5000")
            .service("web", |s| {
                s.health_timeout("5s")
                    .ecs("prod", "web", 4)
                    .http_gate(&["post-traffic"], "http://x/\"q\"", 3)
                    .canary_steps("[{ weight = 10 }]")
            })
            .service("web", |s| s.edit_gates("http", |g| g.int("requests", 5)))
            .render();
        assert_eq!(
            text,
            r#"[aws]
region = "us-east-1"
endpoint-url = "http://127.0.0.1:5000"

[services.web]
health-timeout = "5s"

[services.web.target]
kind = "ecs"
cluster = "prod"
service = "web"
desired-count = 4

[[services.web.gates]]
kind = "http"
at = ["post-traffic"]
url = "http://x/\"q\""
requests = 5

[services.web.strategies.canary]
steps = [{ weight = 10 }]
"#
        );
        let parsed: toml::Table = toml::from_str(&text).unwrap();
        assert_eq!(
            parsed["services"]["web"]["gates"][0]["url"].as_str(),
            Some("http://x/\"q\"")
        );
    }
}
