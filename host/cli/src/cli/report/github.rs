//! Inside GitHub Actions: workflow-command annotations for the run's result (or for each
//! bad config field) and the Markdown step summary. Pure: the reporter decides where the
//! lines go and appends the summary to `$GITHUB_STEP_SUMMARY`.

use crate::config::ConfigErrors;

use super::summary::{GateSummary, GateWord, Summary, SummaryResult};

/// The annotation lines for the end of a run: one per config problem when bad config
/// ended it (so each lands on its file and line), else one for the result.
pub fn annotations(
    summary: &Summary,
    config_errors: Option<&ConfigErrors>,
    scrub: &dyn Fn(&str) -> String,
) -> Vec<String> {
    let mut lines = Vec::new();
    let service = summary.service.as_deref().unwrap_or("?");
    if let Some(errors) = config_errors {
        for problem in &errors.0 {
            let mut props = format!(
                "file={}",
                escape_property(&problem.file.display().to_string())
            );
            if let Some((line, col)) = problem.position {
                props += &format!(",line={line},col={col}");
            }
            props += ",title=deployer: bad config";
            let message = if problem.field.is_empty() {
                problem.message.clone()
            } else {
                format!("{}: {}", problem.field, problem.message)
            };
            lines.push(format!(
                "::error {props}::{}",
                escape_data(&scrub(&message))
            ));
        }
    } else {
        let (level, title) = match summary.result {
            SummaryResult::Promoted => ("notice", format!("deployer: {service} promoted")),
            SummaryResult::Unchanged => ("notice", format!("deployer: {service} unchanged")),
            SummaryResult::RolledBack => ("error", format!("deployer: {service} rolled back")),
            SummaryResult::RollbackFailed => {
                ("error", format!("deployer: {service} ROLLBACK FAILED"))
            }
            SummaryResult::BadInput => ("error", "deployer: bad input".to_string()),
            SummaryResult::Error => ("error", "deployer: error".to_string()),
        };
        let message = summary
            .rollback_reason
            .as_deref()
            .unwrap_or(&summary.detail);
        lines.push(format!(
            "::{level} title={}::{}",
            escape_property(&title),
            escape_data(message)
        ));
    }
    lines
}

/// Workflow command data: `%`, CR and LF escaped as the runner unescapes them; any
/// other control character (a terminal escape, a bell) or line separator shown
/// escaped, as it would be anywhere else in the log.
fn escape_data(text: &str) -> String {
    let escaped = text
        .replace('%', "%25")
        .replace('\r', "%0D")
        .replace('\n', "%0A");
    deployer_engine::redact::printable(&escaped).into_owned()
}

/// Workflow command properties: also `:` and `,`.
fn escape_property(text: &str) -> String {
    escape_data(text).replace(':', "%3A").replace(',', "%2C")
}

/// Text from outside (plugin details, releases, names) as literal Markdown in a table
/// cell: every ASCII punctuation character backslash-escaped (CommonMark renders it as
/// itself), so no `|` ends the cell, no `<` opens HTML (`</details>`, `<img>`), no
/// `![..](url)` makes the viewer's browser fetch a URL, no backtick or `*` formats;
/// line breaks of every kind become spaces.
fn cell(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if c.is_ascii_punctuation() {
            out.push('\\');
            out.push(c);
        } else if c.is_control() || matches!(c, '\u{2028}' | '\u{2029}') {
            out.push(' ');
        } else {
            out.push(c);
        }
    }
    out
}

/// The GitHub Actions step summary, in Markdown.
/// The workflow command that shows a run waiting for approval in the job's log.
pub fn approval_notice(text: &str) -> String {
    format!(
        "::notice title={}::{}",
        escape_property("deployer: waiting for approval"),
        escape_data(text)
    )
}

/// The step-summary note of a run of `service` waiting for approval until `until_ms`.
/// Service names are letters, digits and `-_.` (checked with the config), so they sit in
/// a code span as they are: the commands can be copied.
pub fn approval_summary(service: &str, until_ms: u64, continues: bool) -> String {
    format!(
        "> **Waiting for approval** until {}. Continue: `deployer promote --service {service}`; \
         roll back: `deployer abort --service {service}`. Unanswered, it {}.\n\n",
        deployer_engine::describe::utc(until_ms),
        if continues { "goes on" } else { "rolls back" }
    )
}

pub fn step_summary(summary: &Summary) -> String {
    let service = summary.service.as_deref().unwrap_or("?");
    let word = match summary.result {
        SummaryResult::Promoted => "✅ promoted",
        SummaryResult::RolledBack => "↩️ rolled back",
        SummaryResult::RollbackFailed => "🛑 rollback failed",
        SummaryResult::Unchanged => "unchanged",
        SummaryResult::BadInput => "❌ bad input",
        SummaryResult::Error => "❌ error",
    };
    let mut md = format!(
        "### deployer {} {}: {word}\n\n",
        summary.command,
        cell(service)
    );
    md += "| | |\n|---|---|\n";
    if let Some(id) = &summary.deployment {
        md += &format!("| deployment | {} |\n", cell(id));
    }
    if let Some(new) = &summary.new_release {
        md += &format!(
            "| release | {} → **{}** ({}) |\n",
            cell(summary.stable_release.as_deref().unwrap_or("-")),
            cell(new),
            cell(summary.strategy.as_deref().unwrap_or("?"))
        );
    }
    if let Some(made) = &summary.image_release
        && let Some(how) = made.made.verb()
    {
        md += &format!(
            "| image | {how} {} from {} with image {} |\n",
            cell(&made.release),
            cell(&made.from),
            cell(&made.images)
        );
    }
    md += &format!("| result | {word} (exit {}) |\n", summary.exit_code);
    // A rollback's detail quotes its reason ("rolled back to web:2: gate … failed"):
    // the reason gets a row of its own only when the detail does not say it.
    if let Some(reason) = &summary.rollback_reason
        && !summary.detail.contains(reason.as_str())
    {
        md += &format!("| reason | {} |\n", cell(reason));
    }
    md += &format!("| detail | {} |\n", cell(&summary.detail));
    md += &format!(
        "| duration | {:.1}s |\n",
        summary.duration_ms as f64 / 1000.0
    );
    if let Some(chart) = traffic_chart(summary) {
        md += &chart;
    }
    if !summary.steps.is_empty() {
        md += &format!(
            "\n<details><summary>{} steps</summary>\n\n| # | step | traffic new | gates |\n|---|---|---|---|\n",
            summary.steps.len()
        );
        for step in &summary.steps {
            let gates: Vec<String> = step
                .gates
                .iter()
                .map(|g| format!("{}: {:?}", g.name, g.status).to_lowercase())
                .collect();
            md += &format!(
                "| {} | {} | {}% | {} |\n",
                step.seq,
                cell(&step.step),
                step.traffic_new_percent,
                cell(&gates.join(", "))
            );
        }
        md += "\n</details>\n";
    }
    md + "\n"
}

/// The run as a picture GitHub draws (a Mermaid `xychart-beta`): the share of traffic on
/// the new side after each step as a line, a full-height bar where a gate failed (an
/// xychart cannot annotate a point, so the failure is a series of its own), and each
/// step's gate verdict in its axis label. A rollback ends the line where it left traffic.
/// `None` when no step ran.
fn traffic_chart(summary: &Summary) -> Option<String> {
    if summary.steps.is_empty() {
        return None;
    }
    let mut labels = Vec::new();
    let mut traffic = Vec::new();
    let mut failed = Vec::new();
    for step in &summary.steps {
        let verdict = verdict(&step.gates);
        labels.push(match verdict {
            Some(mark) => format!("\"{} {mark}\"", step.seq),
            None => format!("\"{}\"", step.seq),
        });
        traffic.push(step.traffic_new_percent);
        failed.push(if verdict == Some(FAILED) { 100 } else { 0 });
    }
    if matches!(
        summary.result,
        SummaryResult::RolledBack | SummaryResult::RollbackFailed
    ) {
        labels.push("\"rollback\"".into());
        traffic.push(summary.traffic_new_percent.unwrap_or(0));
        failed.push(0);
    }
    let new = summary
        .new_release
        .as_deref()
        .map_or_else(|| "the new side".to_string(), chart_text);
    let join = |values: &[u8]| {
        values
            .iter()
            .map(u8::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut chart = String::from("\n```mermaid\nxychart-beta\n");
    chart += &format!("    title \"Traffic on {new} by step\"\n");
    chart += &format!("    x-axis \"step\" [{}]\n", labels.join(", "));
    chart += &format!("    y-axis \"% of traffic on {new}\" 0 --> 100\n");
    if failed.contains(&100) {
        chart += &format!("    bar [{}]\n", join(&failed));
    }
    chart += &format!("    line [{}]\n```\n\n", join(&traffic));
    chart += &format!(
        "Line: the share of traffic on {} after each step{}. \
         {PASSED} gates passed, {FAILED} a gate failed, {UNCLEAR} a gate was inconclusive or had no data.\n",
        cell(summary.new_release.as_deref().unwrap_or("the new side")),
        if failed.contains(&100) {
            "; bar: a gate failed there"
        } else {
            ""
        }
    );
    Some(chart)
}

const PASSED: &str = "✓";
const FAILED: &str = "✗";
const UNCLEAR: &str = "?";

/// A step's gates in one mark: any failure fails it; `None` when no gate ran.
fn verdict(gates: &[GateSummary]) -> Option<&'static str> {
    if gates.iter().any(|g| g.status == GateWord::Fail) {
        Some(FAILED)
    } else if gates
        .iter()
        .any(|g| matches!(g.status, GateWord::Inconclusive | GateWord::NoData))
    {
        Some(UNCLEAR)
    } else if gates.is_empty() {
        None
    } else {
        Some(PASSED)
    }
}

/// Text from outside (a release) inside a Mermaid string: Mermaid has no escapes there,
/// so anything that could end the string, start a comment or directive (`%%`), or close
/// the code fence becomes `_`; long names are cut.
fn chart_text(text: &str) -> String {
    const MAX: usize = 60;
    let mut out: String = text
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric()
                || matches!(c, ' ' | ':' | '.' | '_' | '-' | '/' | '@' | '+')
            {
                c
            } else {
                '_'
            }
        })
        .take(MAX)
        .collect();
    if text.chars().count() > MAX {
        out.push_str("...");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::super::summary::{GateSummary, GateWord, StepSummary};
    use super::*;

    #[test]
    fn workflow_commands_are_escaped() {
        assert_eq!(escape_data("50% done\nnext"), "50%25 done%0Anext");
        assert_eq!(escape_property("a: b, c"), "a%3A b%2C c");
    }

    #[test]
    fn the_step_summary_names_the_result_and_each_step() {
        let summary = Summary {
            schema_version: 1,
            command: "run".into(),
            service: Some("web".into()),
            result: SummaryResult::RolledBack,
            exit_code: 1,
            detail: "rolled back to web:2: gate smoke failed".into(),
            deployment: Some("d1".into()),
            strategy: Some("canary".into()),
            stable_release: Some("web:2".into()),
            new_release: Some("web:3".into()),
            rollback_reason: Some("gate smoke failed | 0/5".into()),
            image_release: Some(super::super::summary::ImageReleaseSummary {
                made: super::super::summary::ImageMade::Registered,
                release: "web:3".into(),
                from: "web:2".into(),
                images: "app=shop/web:sha-3".into(),
            }),
            steps: vec![StepSummary {
                seq: 4,
                step: "run pre-traffic gates".into(),
                traffic_new_percent: 0,
                aws_api_calls: None,
                gates: vec![GateSummary {
                    name: "smoke".into(),
                    status: GateWord::Fail,
                    detail: String::new(),
                }],
            }],
            ..Summary::default()
        };
        let md = step_summary(&summary);
        let html = render(&md);
        assert!(
            html.contains("<h3>deployer run web: ↩️ rolled back</h3>"),
            "{html}"
        );
        assert!(
            html.contains("<td>release</td><td>web:2 → <strong>web:3</strong> (canary)</td>"),
            "{html}"
        );
        assert!(
            html.contains("<td>reason</td><td>gate smoke failed | 0/5</td>"),
            "{html}"
        );
        assert!(
            html.contains(
                "<td>image</td><td>registered web:3 from web:2 with image app=shop/web:sha-3</td>"
            ),
            "{html}"
        );
        assert!(
            html.contains(
                "<td>4</td><td>run pre-traffic gates</td><td>0%</td><td>smoke: fail</td>"
            ),
            "{html}"
        );
    }

    fn gates(statuses: &[GateWord]) -> Vec<GateSummary> {
        statuses
            .iter()
            .map(|&status| GateSummary {
                name: "g".into(),
                status,
                detail: String::new(),
            })
            .collect()
    }

    fn step(seq: u32, step: &str, traffic: u8, statuses: &[GateWord]) -> StepSummary {
        StepSummary {
            seq,
            step: step.into(),
            traffic_new_percent: traffic,
            aws_api_calls: None,
            gates: gates(statuses),
        }
    }

    /// A canary that passed its first bake and failed its second: the chart is a line
    /// of the traffic on web:3 step by step, back to 0 at the rollback, with a bar where
    /// the gate failed and each step's verdict in its label.
    #[test]
    fn the_step_summary_draws_the_traffic_and_marks_the_gates() {
        let summary = Summary {
            command: "run".into(),
            service: Some("web".into()),
            result: SummaryResult::RolledBack,
            exit_code: 1,
            new_release: Some("web:3".into()),
            stable_release: Some("web:2".into()),
            traffic_new_percent: Some(0),
            steps: vec![
                step(1, "run pre-traffic gates", 0, &[GateWord::Pass]),
                step(2, "shift traffic: 10% new / 90% stable", 10, &[]),
                step(3, "bake 5m", 10, &[GateWord::Pass, GateWord::NoData]),
                step(4, "shift traffic: 50% new / 50% stable", 50, &[]),
                step(5, "bake 5m", 50, &[GateWord::Pass, GateWord::Fail]),
            ],
            ..Summary::default()
        };
        let md = step_summary(&summary);
        let charts = mermaid_blocks(&md);
        assert_eq!(
            charts,
            [concat!(
                "xychart-beta\n",
                "    title \"Traffic on web:3 by step\"\n",
                "    x-axis \"step\" [\"1 ✓\", \"2\", \"3 ?\", \"4\", \"5 ✗\", \"rollback\"]\n",
                "    y-axis \"% of traffic on web:3\" 0 --> 100\n",
                "    bar [0, 0, 0, 0, 100, 0]\n",
                "    line [0, 10, 10, 50, 50, 0]\n",
            )]
        );
        assert_eq!(check_xychart(&charts[0]), Ok(6));
        // The key to the picture, under it.
        assert!(
            render(&md).contains(
                "Line: the share of traffic on web:3 after each step; bar: a gate failed there. \
                 ✓ gates passed, ✗ a gate failed, ? a gate was inconclusive or had no data."
            ),
            "{md}"
        );

        // A promotion draws no failure bar; a run with no step draws nothing.
        let promoted = Summary {
            result: SummaryResult::Promoted,
            steps: vec![
                step(1, "shift traffic: 50% new / 50% stable", 50, &[]),
                step(2, "promote", 100, &[GateWord::Pass]),
            ],
            ..summary.clone()
        };
        let charts = mermaid_blocks(&step_summary(&promoted));
        assert_eq!(check_xychart(&charts[0]), Ok(2));
        assert!(!charts[0].contains("bar ["), "{}", charts[0]);
        assert!(charts[0].contains("    line [50, 100]\n"), "{}", charts[0]);
        let nothing = Summary {
            steps: Vec::new(),
            ..summary
        };
        assert_eq!(
            mermaid_blocks(&step_summary(&nothing)),
            Vec::<String>::new()
        );
    }

    /// The reason a run rolled back is said once: in the detail that quotes it.
    #[test]
    fn a_reason_the_detail_quotes_has_no_row_of_its_own() {
        let summary = Summary {
            command: "run".into(),
            service: Some("web".into()),
            result: SummaryResult::RolledBack,
            detail: "rolled back to web:2: gate `smoke` failed: 0/5".into(),
            rollback_reason: Some("gate `smoke` failed: 0/5".into()),
            ..Summary::default()
        };
        let html = render(&step_summary(&summary));
        assert_eq!(html.matches("gate <code>smoke</code>").count(), 0, "{html}");
        assert_eq!(
            html.matches("gate `smoke` failed: 0/5").count(),
            1,
            "{html}"
        );
        assert!(!html.contains("<td>reason</td>"), "{html}");
    }

    /// The contents of each ```mermaid block, as a CommonMark reader (GitHub's) finds them.
    fn mermaid_blocks(md: &str) -> Vec<String> {
        use pulldown_cmark::{CodeBlockKind, Event, Tag, TagEnd};
        let mut blocks = Vec::new();
        let mut open: Option<String> = None;
        for event in pulldown_cmark::Parser::new_ext(md, pulldown_cmark::Options::ENABLE_TABLES) {
            match event {
                Event::Start(Tag::CodeBlock(CodeBlockKind::Fenced(info)))
                    if &*info == "mermaid" =>
                {
                    open = Some(String::new());
                }
                Event::Text(text) => {
                    if let Some(block) = &mut open {
                        block.push_str(&text);
                    }
                }
                Event::End(TagEnd::CodeBlock) => blocks.extend(open.take()),
                _ => {}
            }
        }
        blocks
    }

    /// Whether `chart` is an `xychart-beta` of the shape Mermaid's grammar accepts
    /// (`title "…"`, `x-axis "…" ["…", …]`, `y-axis "…" MIN --> MAX`, `bar`/`line`
    /// `[N, …]`), every series as long as the axis and within it; the number of points.
    /// No Mermaid parser is at hand offline, so the grammar's rules are checked here.
    fn check_xychart(chart: &str) -> Result<usize, String> {
        /// A Mermaid string: quoted, no quote inside, no comment or directive.
        fn quoted(text: &str) -> Result<(&str, &str), String> {
            let inner = text
                .strip_prefix('"')
                .ok_or_else(|| format!("not a string: {text}"))?;
            let end = inner
                .find('"')
                .ok_or_else(|| format!("unterminated: {text}"))?;
            let (value, rest) = (&inner[..end], &inner[end + 1..]);
            if value.contains("%%") || value.contains('`') {
                return Err(format!("comment or fence in a string: {value}"));
            }
            Ok((value, rest))
        }
        fn list(text: &str) -> Result<Vec<&str>, String> {
            let inner = text
                .strip_prefix('[')
                .and_then(|t| t.strip_suffix(']'))
                .ok_or_else(|| format!("not a [list]: {text}"))?;
            Ok(inner.split(", ").collect())
        }
        let mut lines = chart.lines();
        if lines.next() != Some("xychart-beta") {
            return Err(format!("not an xychart: {chart}"));
        }
        let (mut points, mut y_range, mut series) = (None, None, Vec::new());
        for line in lines {
            let line = line
                .strip_prefix("    ")
                .ok_or_else(|| format!("not indented: {line}"))?;
            let (keyword, rest) = line.split_once(' ').unwrap_or((line, ""));
            match keyword {
                "title" => {
                    let (_, after) = quoted(rest)?;
                    if !after.is_empty() {
                        return Err(format!("after the title: {after}"));
                    }
                }
                "x-axis" => {
                    let (_, after) = quoted(rest)?;
                    let labels = list(after.trim_start())?;
                    for label in &labels {
                        if !quoted(label)?.1.is_empty() {
                            return Err(format!("bad label {label}"));
                        }
                    }
                    points = Some(labels.len());
                }
                "y-axis" => {
                    let (_, after) = quoted(rest)?;
                    let (min, max) = after
                        .trim_start()
                        .split_once(" --> ")
                        .ok_or_else(|| format!("no range: {after}"))?;
                    let parse = |n: &str| n.parse::<f64>().map_err(|e| format!("{n}: {e}"));
                    y_range = Some((parse(min)?, parse(max)?));
                }
                "bar" | "line" => {
                    let values = list(rest)?
                        .into_iter()
                        .map(|n| n.parse::<f64>().map_err(|e| format!("{n}: {e}")))
                        .collect::<Result<Vec<_>, _>>()?;
                    series.push(values);
                }
                _ => return Err(format!("not xychart syntax: {line}")),
            }
        }
        let points = points.ok_or("no x-axis")?;
        let (min, max) = y_range.ok_or("no y-axis")?;
        if series.is_empty() {
            return Err("no series".into());
        }
        for values in &series {
            if values.len() != points || values.iter().any(|v| *v < min || *v > max) {
                return Err(format!(
                    "{values:?} does not fit {points} points in {min}..{max}"
                ));
            }
        }
        Ok(points)
    }

    /// The summary as GitHub shows it: CommonMark with tables, rendered to HTML.
    fn render(md: &str) -> String {
        let parser = pulldown_cmark::Parser::new_ext(md, pulldown_cmark::Options::ENABLE_TABLES);
        let mut html = String::new();
        pulldown_cmark::html::push_html(&mut html, parser);
        html.replace('\n', "")
    }

    /// Plugin text in the summary (a gate detail, a rollback reason, a release) renders
    /// as that text: no image a viewer's browser would fetch (carrying data to a host
    /// the plugin may not reach), no link, no HTML that closes our `<details>`, no
    /// formatting, no extra cell or row.
    #[test]
    fn plugin_text_in_the_step_summary_renders_literally() {
        let hostile = [
            "<details>![img](http://attacker.example/p.png) `code` </details> # H1",
            "<img src=http://attacker.example/x>",
            "[click](http://attacker.example/) and <http://attacker.example/auto>",
            "![ref][r]\n\n[r]: http://attacker.example/ref.png",
            "a | b | c\n| --- |\n| row |",
            "**bold** _em_ ~~del~~ &lt;script&gt; &#60;img&#62; \\| \\",
            "line\rbreak\u{2028}sep\u{85}next\0nul",
        ];
        for text in hostile {
            let summary = Summary {
                command: "run".into(),
                service: Some(text.into()),
                result: SummaryResult::RolledBack,
                detail: text.into(),
                deployment: Some(text.into()),
                strategy: Some(text.into()),
                stable_release: Some(text.into()),
                new_release: Some(text.into()),
                rollback_reason: Some(text.into()),
                steps: vec![StepSummary {
                    seq: 1,
                    step: text.into(),
                    traffic_new_percent: 0,
                    aws_api_calls: None,
                    gates: vec![GateSummary {
                        name: text.into(),
                        status: GateWord::Fail,
                        detail: String::new(),
                    }],
                }],
                ..Summary::default()
            };
            let html = render(&step_summary(&summary));
            for forbidden in [
                "<img",
                "<a ",
                "<em>",
                "<strong>ev",
                "<code>",
                "<del>",
                "<h1",
                "<script",
            ] {
                assert!(
                    !html.contains(forbidden),
                    "{text:?} made {forbidden}: {html}"
                );
            }
            assert_eq!(html.matches("<details>").count(), 1, "{text:?}: {html}");
            // The chart stays one valid chart, its release name defused.
            let charts = mermaid_blocks(&step_summary(&summary));
            assert_eq!(charts.len(), 1, "{text:?}: {charts:?}");
            assert_eq!(check_xychart(&charts[0]), Ok(2), "{text:?}: {}", charts[0]);
            assert_eq!(html.matches("</details>").count(), 1, "{text:?}: {html}");
            // Two tables with as many rows as we wrote (header rows included; the
            // reason has none, the detail quoting it).
            assert_eq!(html.matches("<table>").count(), 2, "{text:?}: {html}");
            assert_eq!(html.matches("<tr>").count(), 6 + 2, "{text:?}: {html}");
        }
    }

    #[test]
    fn the_result_annotation_prefers_the_rollback_reason() {
        let summary = Summary {
            service: Some("web".into()),
            result: SummaryResult::RolledBack,
            detail: "rolled back".into(),
            rollback_reason: Some("gate smoke: fail (5% errors)".into()),
            ..Summary::default()
        };
        assert_eq!(
            annotations(&summary, None, &str::to_string),
            ["::error title=deployer%3A web rolled back::gate smoke: fail (5%25 errors)"]
        );
    }

    #[test]
    fn bad_config_is_annotated_on_each_file_and_line() {
        let errors = ConfigErrors(vec![
            crate::config::ConfigError {
                file: "deploy, prod.toml".into(),
                position: Some((3, 7)),
                field: "services.web.token".into(),
                message: "not a string: hunter2".into(),
            },
            crate::config::ConfigError {
                file: "deployer.toml".into(),
                position: None,
                field: String::new(),
                message: "50% of nothing".into(),
            },
        ]);
        let scrub = |text: &str| text.replace("hunter2", "***");
        assert_eq!(
            annotations(&Summary::default(), Some(&errors), &scrub),
            [
                "::error file=deploy%2C prod.toml,line=3,col=7,title=deployer: bad config::services.web.token: not a string: ***",
                "::error file=deployer.toml,title=deployer: bad config::50%25 of nothing",
            ]
        );
    }
}
