//! Inside GitHub Actions: workflow-command annotations for the run's result (or for each
//! bad config field) and the Markdown step summary. Pure: the reporter decides where the
//! lines go and appends the summary to `$GITHUB_STEP_SUMMARY`.

use crate::config::ConfigErrors;

use super::summary::{Summary, SummaryResult};

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
    if let Some(reason) = &summary.rollback_reason {
        md += &format!("| reason | {} |\n", cell(reason));
    }
    md += &format!("| detail | {} |\n", cell(&summary.detail));
    md += &format!(
        "| duration | {:.1}s |\n",
        summary.duration_ms as f64 / 1000.0
    );
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
            assert_eq!(html.matches("</details>").count(), 1, "{text:?}: {html}");
            // Two tables with as many rows as we wrote (header rows included).
            assert_eq!(html.matches("<table>").count(), 2, "{text:?}: {html}");
            assert_eq!(html.matches("<tr>").count(), 7 + 2, "{text:?}: {html}");
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
