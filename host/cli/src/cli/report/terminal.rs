//! The live status line kept under the log when stderr is a terminal: what it shows, and
//! the bytes that draw and wipe it. Pure: the reporter writes those bytes to stderr.

use std::time::{Duration, Instant};

use deployer_contract::Step;
use deployer_engine::describe;
use deployer_engine::events::Event;

/// Back to the start of the line and erase it.
const WIPE: &str = "\r\x1b[2K";

/// What the live status line shows.
#[derive(Debug, Default)]
pub struct Live {
    step: Option<(u32, String)>,
    bake_end: Option<Instant>,
    /// When an approval pause under way gives up waiting.
    approval_end: Option<Instant>,
    /// The line is on screen, so a log line must wipe it first or they would share a row.
    drawn: bool,
}

impl Live {
    /// Follow the run: the step under way, and when a bake ends.
    pub fn apply(&mut self, event: &Event<'_>, now: Instant) {
        match event {
            Event::Step { seq, step } => {
                self.step = Some((*seq, describe::step(step)));
                self.bake_end = match step {
                    Step::Bake(ms) => Some(now + Duration::from_millis(*ms)),
                    _ => None,
                };
                self.approval_end = match step {
                    Step::AwaitApproval(approval) => {
                        Some(now + Duration::from_millis(approval.timeout_ms))
                    }
                    _ => None,
                };
            }
            Event::RollingBack { .. } | Event::Finished { .. } => {
                self.step = None;
                self.bake_end = None;
                self.approval_end = None;
            }
            _ => {}
        }
    }

    /// What to write before a log line: the wipe, if the status line is showing.
    pub fn wipe(&mut self) -> Option<&'static str> {
        std::mem::take(&mut self.drawn).then_some(WIPE)
    }

    /// Stop showing the line (the run's own output follows); what to write to wipe it.
    pub fn clear(&mut self) -> Option<&'static str> {
        self.step = None;
        self.wipe()
    }

    /// What to write to (re)draw the line, if there is one to show.
    pub fn redraw(&mut self, traffic: Option<u8>, now: Instant) -> Option<String> {
        let line = status_line(self, traffic, now)?;
        self.drawn = true;
        Some(format!("{WIPE}{line}"))
    }
}

/// The status line under the log: current step, traffic, and time to the next step.
pub fn status_line(live: &Live, traffic: Option<u8>, now: Instant) -> Option<String> {
    let (seq, step) = live.step.as_ref()?;
    let mut line = format!("▸ step {seq}: {step}");
    if let Some(p) = traffic {
        line += &format!(" · traffic {p}% new / {}% stable", 100 - p);
    }
    if let Some(end) = live.bake_end {
        let left = end.saturating_duration_since(now);
        line += &format!(" · next step in {:.0}s", left.as_secs_f64().ceil());
    }
    if let Some(end) = live.approval_end {
        let left = end.saturating_duration_since(now);
        line += &format!(" · times out in {:.0}s", left.as_secs_f64().ceil());
    }
    Some(line)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_status_line_counts_down_to_the_next_step() {
        let now = Instant::now();
        let live = Live {
            step: Some((7, "bake 2m".into())),
            bake_end: Some(now + Duration::from_millis(90_500)),
            approval_end: None,
            drawn: false,
        };
        assert_eq!(
            status_line(&live, Some(25), now).unwrap(),
            "▸ step 7: bake 2m · traffic 25% new / 75% stable · next step in 91s"
        );
        assert_eq!(status_line(&Live::default(), Some(25), now), None);
    }

    #[test]
    fn an_approval_pause_counts_down_to_its_timeout() {
        let now = Instant::now();
        let mut live = Live::default();
        let pause = Step::AwaitApproval(deployer_contract::Approval {
            timeout_ms: 3_600_000,
            on_timeout: deployer_contract::ApprovalTimeout::RollBack,
        });
        live.apply(
            &Event::Step {
                seq: 9,
                step: &pause,
            },
            now,
        );
        assert_eq!(
            status_line(&live, Some(25), now + Duration::from_secs(600)).unwrap(),
            "▸ step 9: wait for approval (up to 1h, then roll back) · traffic 25% new / 75% stable · times out in 3000s"
        );
    }

    #[test]
    fn a_drawn_line_is_wiped_once() {
        let now = Instant::now();
        let mut live = Live::default();
        assert_eq!(live.redraw(Some(0), now), None);
        assert_eq!(live.wipe(), None);
        live.apply(
            &Event::Step {
                seq: 1,
                step: &Step::Bake(5_000),
            },
            now,
        );
        let drawn = live.redraw(Some(10), now).unwrap();
        assert!(drawn.starts_with("\r\x1b[2K▸ step 1: "), "{drawn:?}");
        assert!(drawn.ends_with(" · next step in 5s"), "{drawn:?}");
        assert_eq!(live.wipe(), Some("\r\x1b[2K"));
        assert_eq!(live.wipe(), None);
        live.redraw(Some(10), now).unwrap();
        assert_eq!(live.clear(), Some("\r\x1b[2K"));
        assert_eq!(live.redraw(Some(10), now), None);
    }
}
