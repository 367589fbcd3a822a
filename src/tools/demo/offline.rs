//! `walletguard demo --offline`: the demo's traffic scored in process, without a broker.
//!
//! Every event goes through the same path as production input: the simulator writes its JSON
//! line, [`Engine::process_bytes`] parses and scores it.

use crate::engine::unit::Unit;
use std::collections::HashMap;
use std::io::{self, Write};
use std::time::{Duration, Instant};

use crate::engine::decision::Action;
use crate::engine::pipeline::{CommandKind, Engine};
use crate::engine::time::EpochMs;
use crate::service::shutdown::Shutdown;
use crate::tools::sim::Simulator;

use super::{decision_line, header_line, paint, print_scorecard, summarize, track};
use super::{track_feedback_freeze, DemoOptions, Rechallenges, Responder, Scorecard, UserTrack};

/// Runs the demo until the duration, the last window or `stop`, printing to `out`. Returns the
/// scorecard (also printed).
pub fn run(
    engine: &Engine,
    opts: &DemoOptions,
    stop: &Shutdown,
    out: &mut dyn Write,
) -> io::Result<Scorecard> {
    let mut sim = Simulator::new(&opts.sim).map_err(|e| io::Error::other(e.to_string()))?;
    if opts.windows != Some(1) {
        sim = sim.continuous();
    }
    let live_from = opts.live_from();
    let end_ts = opts.end_ts();
    let mut unit = Unit::new(engine.new_state());
    // The same traffic without the step-up answers: what feedback changes.
    let mut twin = Unit::new(engine.new_state());
    let mut twin_frozen: std::collections::HashSet<u32> = std::collections::HashSet::new();
    let mut responder = Responder::default();
    let window = (engine.config().feedback.trust_hours * 3_600_000.0) as EpochMs;
    let (mut again, mut twin_again) = (Rechallenges::new(window), Rechallenges::new(window));
    let mut users: HashMap<u32, UserTrack> = HashMap::new();
    let mut card = Scorecard::default();
    let mut line = Vec::with_capacity(512);
    let started = Instant::now();
    // Live pacing: (events scored when live began, when it began).
    let mut live: Option<(u64, Instant)> = None;
    let c = opts.color;

    writeln!(
        out,
        "{} {} users, {}-day windows, seed {}; attacks and honest novelties are hidden in the traffic",
        paint(c, "1", "walletguard demo (offline):"),
        opts.sim.users,
        opts.sim.days,
        opts.sim.seed
    )?;
    writeln!(out, "{}", opts.warmup_line())?;

    for ev in sim {
        if stop.is_triggered() || end_ts.is_some_and(|e| ev.ts_ms >= e) {
            break;
        }
        if let Some(d) = opts.duration {
            if started.elapsed() >= d {
                writeln!(out, "(stopped after {d:?})")?;
                break;
            }
        }
        let is_live = ev.ts_ms >= live_from;
        if is_live {
            let (first, at) = *live.get_or_insert_with(|| (card.events, Instant::now()));
            live_header(out, c, first == card.events, started)?;
            if opts.rate > 0 {
                // Pace against wall time so the stream reads like live traffic.
                let n = card.events - first;
                let due = Duration::from_secs_f64(n as f64 / opts.rate as f64);
                if let Some(wait) = due.checked_sub(at.elapsed()) {
                    std::thread::sleep(wait);
                }
            }
        }
        let now = crate::engine::time::now_ms();
        // Answers due before this event go first, in event time.
        while let Some((challenged, answer)) = responder.due(ev.ts_ms) {
            if let Ok((_, o)) = unit.process_bytes(engine, &answer, now) {
                if o.command == Some(CommandKind::FreezeAccount) {
                    track_feedback_freeze(&mut users, &challenged);
                }
                if !challenged.scenario.is_attack() {
                    again.see(&challenged, o.command);
                }
            }
        }
        line.clear();
        ev.write_json(&mut line);
        if let Ok((_, o)) = twin.process_bytes(engine, &line, now) {
            if o.command == Some(CommandKind::FreezeAccount) && !ev.scenario.is_attack() {
                twin_frozen.insert(ev.user);
            }
            if !ev.scenario.is_attack() {
                twin_again.see(&ev, o.command);
            }
        }
        let scored = unit.process_bytes(engine, &line, now);
        // Memory stays bounded as in the service (a long `--duration 0` run).
        unit.upkeep(engine, now, false);
        twin.upkeep(engine, now, false);
        let Ok((_event, outcome)) = scored else {
            // The simulator only writes valid events; count anything else as a bug to see.
            writeln!(
                out,
                "invalid simulated event: {}",
                String::from_utf8_lossy(&line)
            )?;
            continue;
        };
        card.events += 1;
        let action = outcome.decision.action;
        card.by_action[action as usize] += 1;
        track(&mut users, &ev, action, outcome.command);
        if !ev.scenario.is_attack() {
            again.see(&ev, outcome.command);
        }
        if outcome.command == Some(CommandKind::RequireStepUp) {
            responder.challenge(&ev);
        }

        let show = action >= Action::StepUp || (opts.show_reviews && action == Action::Review);
        if show && is_live {
            let reasons: Vec<&str> = outcome
                .decision
                .signals
                .iter()
                .take(3)
                .map(|s| s.code.as_str())
                .collect();
            writeln!(
                out,
                "{}",
                decision_line(
                    c,
                    &ev,
                    action,
                    outcome.decision.score,
                    &reasons,
                    outcome.command == Some(CommandKind::FreezeAccount)
                )
            )?;
        }
    }
    for (challenged, answer) in responder.drain() {
        if let Ok((_, o)) = unit.process_bytes(engine, &answer, crate::engine::time::now_ms()) {
            if o.command == Some(CommandKind::FreezeAccount) {
                track_feedback_freeze(&mut users, &challenged);
            }
        }
    }
    card.seconds = started.elapsed().as_secs_f64();
    card.step_ups_answered = responder.answered;
    // Only users attacked in neither run count as honest (the same rule as `summarize`).
    card.false_freezes_without_results = Some(
        twin_frozen
            .iter()
            .filter(|u| users.get(u).is_none_or(|t| t.attack.is_none()))
            .count() as u32,
    );
    card.rechallenged = Some((again.count(&users), twin_again.count(&users)));
    summarize(&mut card, &users);
    print_scorecard(&card, c, out)?;
    Ok(card)
}

/// Prints the "now live" line and the table header once, when the first live event comes.
fn live_header(out: &mut dyn Write, c: bool, first: bool, started: Instant) -> io::Result<()> {
    if first {
        writeln!(
            out,
            "  live:     baselines warm after {:.1} s; streaming",
            started.elapsed().as_secs_f64()
        )?;
        writeln!(out, "{}", header_line(c))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::service::config::Config;
    use crate::tools::sim::SimParams;

    fn opts(windows: Option<u32>, duration: Option<Duration>) -> DemoOptions {
        DemoOptions {
            sim: SimParams {
                users: 300,
                days: 25,
                seed: 3,
                attack_rate: 0.1,
                ..SimParams::default()
            },
            rate: 0,
            duration,
            windows,
            show_reviews: false,
            color: false,
        }
    }

    #[test]
    fn demo_scores_a_small_world_and_reports_attacks() {
        let engine = Engine::new(Config::default());
        let mut out = Vec::new();
        let card = run(&engine, &opts(Some(1), None), &Shutdown::new(), &mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(card.events > 10_000, "{}", card.events);
        assert_eq!(card.by_action.iter().sum::<u64>(), card.events);
        let victims: u32 = card.attacks.iter().map(|a| a.1).sum();
        assert!(victims > 5, "{victims}");
        assert!(text.contains("scorecard:"));
        assert!(text.contains("FREEZE"), "some attack is frozen:\n{text}");
        // The simulated users answer the challenges, and what that changed is reported.
        let (passed, failed) = card.step_ups_answered;
        assert!(passed > 0 && failed > 0, "{passed} passed, {failed} failed");
        assert!(text.contains("step-ups answered:"), "{text}");
        let without = card.false_freezes_without_results.expect("measured");
        assert!(text.contains("had nobody answered the step-ups"), "{text}");
        assert!(
            without + 1 >= card.false_freezes.0,
            "{without} vs {:?}",
            card.false_freezes
        );
        // Owners who passed are not challenged again for the same evidence while it is trusted,
        // less often than when nobody answers.
        let (with, without) = card.rechallenged.expect("measured");
        assert!(with.challenged > 0, "{with:?} {without:?}");
        assert!(
            with.same_in_window <= without.same_in_window,
            "{with:?} {without:?}"
        );
        assert!(text.contains("after passing a step-up"), "{text}");
        // Warm-up first, then the live header, then decision lines: nothing before the header.
        let header = text.find("event time (UTC)").expect("header");
        assert!(text.find("warm-up:").unwrap() < header);
        assert!(
            !text[..header].contains("FREEZE"),
            "no live line before the header:\n{text}"
        );
    }

    #[test]
    fn the_traffic_goes_on_past_the_first_window() {
        let engine = Engine::new(Config::default());
        let (mut one, mut two) = (Vec::new(), Vec::new());
        let a = run(&engine, &opts(Some(1), None), &Shutdown::new(), &mut one).unwrap();
        let b = run(&engine, &opts(Some(2), None), &Shutdown::new(), &mut two).unwrap();
        assert!(
            b.events as f64 > 1.8 * a.events as f64,
            "a second window about doubles the traffic: {} then {}",
            a.events,
            b.events
        );
        let victims = |c: &Scorecard| c.attacks.iter().map(|a| a.1).sum::<u32>();
        assert!(
            victims(&b) > victims(&a),
            "the second window brings new attacks: {} then {}",
            victims(&a),
            victims(&b)
        );
        // Honest users stay honest-looking across the window boundary.
        assert!(
            b.false_freezes.0 <= a.false_freezes.0 + 2,
            "{:?} then {:?}",
            a.false_freezes,
            b.false_freezes
        );
    }

    #[test]
    fn a_stop_ends_the_demo_with_a_scorecard() {
        let engine = Engine::new(Config::default());
        let stop = Shutdown::new();
        stop.trigger();
        let mut out = Vec::new();
        let card = run(&engine, &opts(None, None), &stop, &mut out).unwrap();
        assert_eq!(card.events, 0);
        assert!(String::from_utf8(out).unwrap().contains("scorecard:"));
    }
}
