//! Placeholders in gate settings (alarm names, metric dimension values, HTTP URLs),
//! resolved per run: the sides of a side-by-side service alternate between two target
//! groups, so a gate that names a fixed one watches the new release only every other
//! deployment. `{new-target-group}` names the one the new release is behind this run.
//!
//! Syntax: `{name}` is replaced; `{{` and `}}` are literal braces. Config checking
//! parses every templated value with [`Template::parse`], so a run never meets an
//! unknown name.
//!
//! PromQL is full of braces (`http_requests_total{code="500"}`), so a query is read
//! with [`Syntax::PromQl`]: only `{name}` with a placeholder's name is replaced, every
//! other brace is PromQL's. No valid query holds `{new-release}` as PromQL (a label
//! matcher needs an operator), so the two never mix up; values are escaped for a PromQL
//! string ([`promql_escape`]), so a release cannot end the string it is put in.

use std::collections::HashMap;

use deployer_engine::gates::GateContext;
use tokio::sync::Mutex;

/// One value a placeholder stands for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Placeholder {
    NewTargetGroup,
    StableTargetGroup,
    NewTargetGroupName,
    StableTargetGroupName,
    LoadBalancer,
    Service,
    NewRelease,
    StableRelease,
}

/// Every placeholder: its name as written between braces, and what it becomes.
pub const PLACEHOLDERS: [(Placeholder, &str, &str); 8] = [
    (
        Placeholder::NewTargetGroup,
        "new-target-group",
        "the new side's target group as CloudWatch names it (`targetgroup/NAME/ID`, the `TargetGroup` dimension of AWS/ApplicationELB)",
    ),
    (
        Placeholder::StableTargetGroup,
        "stable-target-group",
        "the stable side's target group, as CloudWatch names it",
    ),
    (
        Placeholder::NewTargetGroupName,
        "new-target-group-name",
        "the new side's target group name (`web-green`)",
    ),
    (
        Placeholder::StableTargetGroupName,
        "stable-target-group-name",
        "the stable side's target group name",
    ),
    (
        Placeholder::LoadBalancer,
        "load-balancer",
        "the load balancer of the new side's target group as CloudWatch names it (`app/NAME/ID`, the `LoadBalancer` dimension)",
    ),
    (
        Placeholder::Service,
        "service",
        "the service's name in deployer.toml",
    ),
    (
        Placeholder::NewRelease,
        "new-release",
        "the release being deployed",
    ),
    (
        Placeholder::StableRelease,
        "stable-release",
        "the release serving before the run",
    ),
];

impl Placeholder {
    /// The placeholder written `{name}`, if there is one.
    pub fn named(name: &str) -> Option<Placeholder> {
        PLACEHOLDERS
            .iter()
            .find(|(_, n, _)| *n == name)
            .map(|(p, ..)| *p)
    }

    pub fn name(self) -> &'static str {
        PLACEHOLDERS
            .iter()
            .find(|(p, _, _)| *p == self)
            .map_or("", |(_, name, _)| name)
    }

    /// Whether it names a side's target group or load balancer: only a service with a
    /// traffic table (two sides behind a load balancer) has one.
    pub fn needs_sides(self) -> bool {
        matches!(
            self,
            Placeholder::NewTargetGroup
                | Placeholder::StableTargetGroup
                | Placeholder::NewTargetGroupName
                | Placeholder::StableTargetGroupName
                | Placeholder::LoadBalancer
        )
    }
}

/// Every placeholder as written, for messages: `{new-target-group}, {stable-target-group}, …`.
pub fn list() -> String {
    PLACEHOLDERS
        .iter()
        .map(|(_, name, _)| format!("{{{name}}}"))
        .collect::<Vec<_>>()
        .join(", ")
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Piece {
    Text(String),
    Value(Placeholder),
}

/// A setting with placeholders in it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Template {
    pieces: Vec<Piece>,
}

/// How a setting writes placeholders.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Syntax {
    /// `{name}`; `{{` and `}}` for literal braces; any other brace is an error.
    Setting,
    /// PromQL: `{name}` for a placeholder's name; every other brace is literal.
    PromQl,
}

impl Template {
    /// Read `text` written in `syntax`.
    ///
    /// # Errors
    /// As [`Template::parse`] for settings; PromQL templates always parse.
    pub fn parse_as(syntax: Syntax, text: &str) -> Result<Template, String> {
        match syntax {
            Syntax::Setting => Template::parse(text),
            Syntax::PromQl => Ok(Template::parse_promql(text)),
        }
    }

    fn parse_promql(text: &str) -> Template {
        let mut pieces = Vec::new();
        let mut literal = String::new();
        let mut rest = text;
        while let Some(at) = rest.find('{') {
            literal.push_str(&rest[..at]);
            let brace = &rest[at..];
            let known = brace
                .find('}')
                .and_then(|end| Placeholder::named(&brace[1..end]).map(|p| (p, end)));
            match known {
                Some((placeholder, end)) => {
                    if !literal.is_empty() {
                        pieces.push(Piece::Text(std::mem::take(&mut literal)));
                    }
                    pieces.push(Piece::Value(placeholder));
                    rest = &brace[end + 1..];
                }
                None => {
                    literal.push('{');
                    rest = &brace[1..];
                }
            }
        }
        literal.push_str(rest);
        if !literal.is_empty() {
            pieces.push(Piece::Text(literal));
        }
        Template { pieces }
    }

    /// Read `text`.
    ///
    /// # Errors
    /// An unknown placeholder, or a brace that opens or closes nothing, with the list
    /// of placeholders.
    pub fn parse(text: &str) -> Result<Template, String> {
        let mut pieces = Vec::new();
        let mut literal = String::new();
        let mut rest = text;
        let help = || {
            format!(
                "the placeholders are {}; write {{{{ and }}}} for literal braces",
                list()
            )
        };
        while let Some(at) = rest.find(['{', '}']) {
            literal.push_str(&rest[..at]);
            let brace = &rest[at..];
            if brace.starts_with("{{") || brace.starts_with("}}") {
                literal.push_str(&brace[..1]);
                rest = &brace[2..];
                continue;
            }
            if brace.starts_with('}') {
                return Err(format!(
                    "`{text}` has a `}}` that closes nothing; {}",
                    help()
                ));
            }
            let Some(end) = brace.find('}') else {
                return Err(format!(
                    "`{text}` has a `{{` that is never closed; {}",
                    help()
                ));
            };
            let name = &brace[1..end];
            let Some(placeholder) = Placeholder::named(name) else {
                return Err(format!(
                    "`{text}`: unknown placeholder `{{{name}}}`; {}",
                    help()
                ));
            };
            if !literal.is_empty() {
                pieces.push(Piece::Text(std::mem::take(&mut literal)));
            }
            pieces.push(Piece::Value(placeholder));
            rest = &brace[end + 1..];
        }
        literal.push_str(rest);
        if !literal.is_empty() {
            pieces.push(Piece::Text(literal));
        }
        Ok(Template { pieces })
    }

    /// The placeholders it uses.
    pub fn placeholders(&self) -> impl Iterator<Item = Placeholder> + '_ {
        self.pieces.iter().filter_map(|p| match p {
            Piece::Value(p) => Some(*p),
            Piece::Text(_) => None,
        })
    }

    /// The text with each placeholder replaced by `value(placeholder)`, passed through
    /// `encode` (URLs percent-encode, other settings take values as they are).
    ///
    /// # Errors
    /// The first value that cannot be given.
    pub fn render(
        &self,
        values: &Values,
        encode: impl Fn(&str) -> String,
    ) -> Result<String, Unresolved> {
        let mut out = String::new();
        for piece in &self.pieces {
            match piece {
                Piece::Text(text) => out.push_str(text),
                Piece::Value(p) => out.push_str(&encode(values.get(*p)?)),
            }
        }
        Ok(out)
    }
}

/// The first placeholder of PromQL `text` that sits in a backtick (raw) string, where no
/// escape works, so a value holding a backtick would end the string.
pub fn promql_raw_placeholder(text: &str) -> Option<Placeholder> {
    let mut quote: Option<char> = None;
    let mut chars = text.char_indices().peekable();
    while let Some((at, c)) = chars.next() {
        match (quote, c) {
            (Some('`'), '`') => quote = None,
            (Some('`'), '{') => {
                let rest = &text[at..];
                if let Some(end) = rest.find('}')
                    && let Some(p) = Placeholder::named(&rest[1..end])
                {
                    return Some(p);
                }
            }
            (Some('`'), _) => {}
            (Some(_), '\\') => {
                chars.next();
            }
            (Some(q), c) if c == q => quote = None,
            (Some(_), _) => {}
            (None, '"' | '\'' | '`') => quote = Some(c),
            (None, _) => {}
        }
    }
    None
}

/// Whether any of `texts` uses a side placeholder (texts that do not parse use none:
/// config checking has refused them).
pub fn any_need_sides<'a>(syntax: Syntax, texts: impl IntoIterator<Item = &'a str>) -> bool {
    texts.into_iter().any(|text| {
        Template::parse_as(syntax, text)
            .is_ok_and(|t| t.placeholders().any(Placeholder::needs_sides))
    })
}

/// Why a placeholder has no value this run. `transient` when asking again may help
/// (AWS throttled the describe call).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unresolved {
    pub message: String,
    pub transient: bool,
}

impl Unresolved {
    fn failed(message: impl Into<String>) -> Self {
        Unresolved {
            message: message.into(),
            transient: false,
        }
    }
}

/// The values of one run's placeholders.
#[derive(Clone, Debug, Default)]
pub struct Values {
    values: HashMap<Placeholder, Result<String, Unresolved>>,
}

impl Values {
    /// A value of the right shape for every placeholder, for checking what a template
    /// renders to before any run (a PromQL query must parse with real values in it).
    pub fn example() -> Values {
        let values = [
            (
                Placeholder::NewTargetGroup,
                "targetgroup/web-green/0123456789abcdef",
            ),
            (
                Placeholder::StableTargetGroup,
                "targetgroup/web-blue/0123456789abcdef",
            ),
            (Placeholder::NewTargetGroupName, "web-green"),
            (Placeholder::StableTargetGroupName, "web-blue"),
            (Placeholder::LoadBalancer, "app/web/0123456789abcdef"),
            (Placeholder::Service, "web"),
            (
                Placeholder::NewRelease,
                "arn:aws:ecs:eu-west-1:123456789012:task-definition/web:2",
            ),
            (
                Placeholder::StableRelease,
                "arn:aws:ecs:eu-west-1:123456789012:task-definition/web:1",
            ),
        ];
        Values {
            values: values
                .into_iter()
                .map(|(p, v)| (p, Ok(v.to_string())))
                .collect(),
        }
    }

    pub fn get(&self, placeholder: Placeholder) -> Result<&str, Unresolved> {
        match self.values.get(&placeholder) {
            Some(Ok(value)) => Ok(value),
            Some(Err(why)) => Err(why.clone()),
            None => Err(Unresolved::failed(format!(
                "{{{}}} has no value",
                placeholder.name()
            ))),
        }
    }
}

/// `targetgroup/NAME/ID` (CloudWatch's `TargetGroup` dimension) of a target group ARN.
pub fn target_group_dimension(arn: &str) -> Option<&str> {
    arn.find(":targetgroup/").map(|at| &arn[at + 1..])
}

/// `app/NAME/ID` (CloudWatch's `LoadBalancer` dimension) of a load balancer ARN.
pub fn load_balancer_dimension(arn: &str) -> Option<&str> {
    arn.find(":loadbalancer/")
        .map(|at| &arn[at + ":loadbalancer/".len()..])
}

/// A target group's name, the second part of `targetgroup/NAME/ID`.
fn target_group_name(arn: &str) -> Option<&str> {
    target_group_dimension(arn)?.split('/').nth(1)
}

/// Resolves placeholders for a run. The load balancer of the new side's target group
/// is described once per run (DescribeTargetGroups) and kept, not asked per gate check.
#[derive(Debug)]
pub struct Resolver {
    elb: aws_sdk_elasticloadbalancingv2::Client,
    /// Target group ARN → its load balancer's `app/NAME/ID`.
    load_balancers: Mutex<HashMap<String, String>>,
}

impl Resolver {
    pub fn new(elb: aws_sdk_elasticloadbalancingv2::Client) -> Self {
        Resolver {
            elb,
            load_balancers: Mutex::new(HashMap::new()),
        }
    }

    /// The load balancer (`app/NAME/ID`) in front of target group `arn`.
    ///
    /// # Errors
    /// The target group is behind none, or describing it failed.
    pub async fn load_balancer(&self, arn: &str) -> Result<String, Unresolved> {
        let mut known = self.load_balancers.lock().await;
        if let Some(lb) = known.get(arn) {
            return Ok(lb.clone());
        }
        let out = self
            .elb
            .describe_target_groups()
            .target_group_arns(arn)
            .send()
            .await
            .map_err(|err| {
                let err = crate::aws::classify("describing the new side's target group", err);
                Unresolved {
                    transient: matches!(err, deployer_engine::driver::DriverError::Transient(_)),
                    message: err.to_string(),
                }
            })?;
        // A target group of an ALB belongs to one load balancer; take the first named.
        let lb = out
            .target_groups()
            .iter()
            .flat_map(|tg| tg.load_balancer_arns())
            .find_map(|lb| load_balancer_dimension(lb))
            .ok_or_else(|| {
                Unresolved::failed(format!(
                    "target group {arn} is behind no load balancer, so {{load-balancer}} has no value"
                ))
            })?
            .to_string();
        known.insert(arn.to_string(), lb.clone());
        Ok(lb)
    }

    /// The values of this run's placeholders; the load balancer only when `load_balancer`
    /// (it costs a call the first time).
    pub async fn values(&self, ctx: &GateContext, load_balancer: bool) -> Values {
        let mut values = HashMap::new();
        values.insert(Placeholder::Service, Ok(ctx.service.clone()));
        values.insert(Placeholder::NewRelease, Ok(ctx.new_release.clone()));
        values.insert(
            Placeholder::StableRelease,
            ctx.stable_release
                .clone()
                .ok_or_else(|| Unresolved::failed("there is no stable release this run")),
        );
        let sides = match &ctx.target_groups {
            Ok(Some(groups)) => Ok(groups),
            Ok(None) => Err(Unresolved::failed(format!(
                "service {} has no second side this run (updated in place), so it has no target groups to name",
                ctx.service
            ))),
            Err(why) => Err(Unresolved::failed(why.clone())),
        };
        let side = |arn: fn(&deployer_engine::gates::TargetGroups) -> &str,
                    part: fn(&str) -> Option<&str>| {
            sides.clone().and_then(|groups| {
                let arn = arn(groups);
                part(arn)
                    .map(str::to_string)
                    .ok_or_else(|| Unresolved::failed(format!("`{arn}` is not a target group ARN")))
            })
        };
        values.insert(
            Placeholder::NewTargetGroup,
            side(|g| &g.new, target_group_dimension),
        );
        values.insert(
            Placeholder::StableTargetGroup,
            side(|g| &g.stable, target_group_dimension),
        );
        values.insert(
            Placeholder::NewTargetGroupName,
            side(|g| &g.new, target_group_name),
        );
        values.insert(
            Placeholder::StableTargetGroupName,
            side(|g| &g.stable, target_group_name),
        );
        if load_balancer {
            let lb = match &sides {
                Ok(groups) => self.load_balancer(&groups.new).await,
                Err(why) => Err(why.clone()),
            };
            values.insert(Placeholder::LoadBalancer, lb);
        }
        Values { values }
    }
}

/// `value` escaped for a PromQL string literal, whichever quotes it sits in: a release
/// such as `web"} or up{x="` stays one string. Quotes and backticks become hex escapes
/// (`\x22`), which Prometheus reads in both `"…"` and `'…'` strings (where `\'` in
/// double quotes, or `\"` in single ones, would be a syntax error).
pub fn promql_escape(value: &str) -> String {
    let mut out = String::new();
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\x22"),
            '\'' => out.push_str("\\x27"),
            '`' => out.push_str("\\x60"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c => out.push(c),
        }
    }
    out
}

/// `value` percent-encoded for a URL (everything but RFC 3986's unreserved characters),
/// so a release such as `arn:…/web:2` cannot change the URL's structure.
pub fn url_encode(value: &str) -> String {
    let mut out = String::new();
    for byte in value.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values() -> Values {
        let mut values = Values::default();
        values.values.insert(
            Placeholder::NewTargetGroup,
            Ok("targetgroup/web-green/2".into()),
        );
        values
            .values
            .insert(Placeholder::NewRelease, Ok("arn:x/web:2".into()));
        values
    }

    #[test]
    fn promql_keeps_its_braces_and_a_hostile_release_stays_one_string() {
        use promql_parser::parser::{Expr, parse};
        let t = Template::parse_as(
            Syntax::PromQl,
            r#"sum(rate(x{code=~"5..",release="{new-release}"}[1m])) / sum(rate(x{release='{new-release}'}[1m])) + {unknown}"#,
        )
        .unwrap();
        assert_eq!(t.placeholders().count(), 2);
        // Releases that would end the string, start a new selector or break the quotes.
        for release in [
            r#"web"} or up{x=""#,
            "web'} or up{x='",
            r"web",
            "web`x",
            "web\x22",
            "a
b	c",
            "arn:aws:ecs:eu-west-1:1:task-definition/web:2",
        ] {
            let mut values = Values::default();
            values
                .values
                .insert(Placeholder::NewRelease, Ok(release.into()));
            let query = t
                .render(&values, promql_escape)
                .unwrap()
                .replace(" + {unknown}", "");
            let expr = parse(&query).unwrap_or_else(|e| panic!("{release:?}: {query}: {e}"));
            let Expr::Binary(binary) = expr else {
                panic!("{query}")
            };
            for side in [&binary.lhs, &binary.rhs] {
                let text = side.to_string();
                let Expr::Aggregate(agg) = side.as_ref() else {
                    panic!("{text}")
                };
                let Expr::Call(call) = agg.expr.as_ref() else {
                    panic!("{text}")
                };
                let Expr::MatrixSelector(ms) = call.args.args[0].as_ref() else {
                    panic!("{text}")
                };
                let got: Vec<&str> = ms
                    .vs
                    .matchers
                    .matchers
                    .iter()
                    .filter(|m| m.name == "release")
                    .map(|m| m.value.as_str())
                    .collect();
                assert_eq!(got, vec![release], "{query}");
            }
        }
    }

    #[test]
    fn placeholders_are_replaced_and_double_braces_are_literal() {
        let t = Template::parse("{{x}} {new-target-group}-5xx").unwrap();
        assert_eq!(
            t.render(&values(), str::to_string).unwrap(),
            "{x} targetgroup/web-green/2-5xx"
        );
        let t = Template::parse("http://h/r?v={new-release}").unwrap();
        assert_eq!(
            t.render(&values(), url_encode).unwrap(),
            "http://h/r?v=arn%3Ax%2Fweb%3A2"
        );
        assert_eq!(
            Template::parse("plain")
                .unwrap()
                .render(&values(), str::to_string),
            Ok("plain".into())
        );
    }

    #[test]
    fn unknown_names_and_stray_braces_are_refused_with_the_list() {
        for (text, says) in [
            ("web-{new-tg}", "unknown placeholder `{new-tg}`"),
            ("web-{new-target-group", "never closed"),
            ("web}", "closes nothing"),
            ("{}", "unknown placeholder `{}`"),
        ] {
            let err = Template::parse(text).unwrap_err();
            assert!(err.contains(says), "{text}: {err}");
            assert!(
                err.contains("{new-target-group}, {stable-target-group}"),
                "{err}"
            );
            assert!(err.contains("{stable-release}"), "{err}");
        }
    }

    #[test]
    fn cloudwatch_names_come_from_the_arns() {
        let tg = "arn:aws:elasticloadbalancing:us-east-1:1:targetgroup/web-green/2453ed029918f21f";
        assert_eq!(
            target_group_dimension(tg),
            Some("targetgroup/web-green/2453ed029918f21f")
        );
        assert_eq!(target_group_name(tg), Some("web-green"));
        assert_eq!(
            load_balancer_dimension(
                "arn:aws:elasticloadbalancing:us-east-1:1:loadbalancer/app/shop/50dc6c495c0c9188"
            ),
            Some("app/shop/50dc6c495c0c9188")
        );
        assert_eq!(target_group_dimension("web-green"), None);
    }
}
