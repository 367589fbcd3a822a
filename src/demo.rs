//! `walletguard demo`: simulated wallet traffic with hidden attacks, scored live by the real
//! pipeline, with the interesting decisions printed as they happen and a scorecard at the end.
//!
//! Every event goes through the same path as production input: the simulator writes its JSON
//! line, [`Engine::process_bytes`] parses and scores it. The simulator's labels are used only
//! to annotate the printed lines and the scorecard, never by the pipeline.

use std::collections::HashMap;
use std::io::{self, Write};
use std::time::{Duration, Instant};

use crate::decision::Action;
use crate::pipeline::{CommandKind, Engine};
use crate::sim::{Scenario, SimEvent, SimParams, Simulator};
use crate::time::format_rfc3339;

/// How the demo runs.
#[derive(Debug, Clone)]
pub struct DemoOptions {
    /// Simulation size and seed.
    pub sim: SimParams,
    /// Simulated events per second of wall time; 0 = as fast as possible.
    pub rate: u64,
    /// Stop after this much wall time.
    pub duration: Option<Duration>,
    /// Print `review` decisions too (not only step-ups and freezes).
    pub show_reviews: bool,
    /// ANSI colours.
    pub color: bool,
}

/// What the demo saw, per label kind.
#[derive(Debug, Default, Clone)]
pub struct Scorecard {
    /// Events scored.
    pub events: u64,
    /// Decisions by action, indexed like [`Action::ALL`].
    pub by_action: [u64; 4],
    /// Per attack scenario: (users attacked, users alerted on an attack event, users frozen
    /// during the attack, attack money out, attack money out at or after the freeze).
    pub attacks: Vec<(Scenario, u32, u32, u32, f64, f64)>,
    /// Users without any attack who got a `freeze_account`, and all such users.
    pub false_freezes: (u32, u32),
    /// Wall time, seconds.
    pub seconds: f64,
}

/// What the demo saw of one user.
#[derive(Default)]
pub(crate) struct UserTrack {
    attack: Option<Scenario>,
    alerted: bool,
    frozen: bool,
    out_total: f64,
    out_after_freeze: f64,
    benign_frozen: bool,
}

pub(crate) fn paint(color: bool, code: &str, s: &str) -> String {
    if color {
        format!("\x1b[{code}m{s}\x1b[0m")
    } else {
        s.to_owned()
    }
}

/// Runs the demo, printing to `out`. Returns the scorecard (also printed).
pub fn run(engine: &Engine, opts: &DemoOptions, out: &mut dyn Write) -> io::Result<Scorecard> {
    let sim = Simulator::new(&opts.sim).map_err(|e| io::Error::other(e.to_string()))?;
    let mut state = engine.new_state();
    let mut users: HashMap<u32, UserTrack> = HashMap::new();
    let mut card = Scorecard::default();
    let mut line = Vec::with_capacity(512);
    let started = Instant::now();
    let c = opts.color;

    writeln!(
        out,
        "{} {} users, {} days, seed {}; attacks and honest novelties are hidden in the traffic",
        paint(c, "1", "walletguard demo:"),
        opts.sim.users,
        opts.sim.days,
        opts.sim.seed
    )?;
    writeln!(out, "{}", header_line(c))?;

    for ev in sim {
        if let Some(d) = opts.duration {
            if started.elapsed() >= d {
                writeln!(out, "(stopped after {:?})", d)?;
                break;
            }
        }
        if opts.rate > 0 {
            // Pace against wall time so the stream reads like live traffic.
            let due = Duration::from_secs_f64(card.events as f64 / opts.rate as f64);
            if let Some(wait) = due.checked_sub(started.elapsed()) {
                std::thread::sleep(wait);
            }
        }
        line.clear();
        ev.write_json(&mut line);
        let now = crate::time::now_ms();
        let Ok((_event, outcome)) = engine.process_bytes(&mut state, &line, now) else {
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

        let show = action >= Action::StepUp || (opts.show_reviews && action == Action::Review);
        if show {
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
    card.seconds = started.elapsed().as_secs_f64();
    summarize(&mut card, &users);
    print_scorecard(&card, c, out)?;
    Ok(card)
}

/// The header of the live decision lines.
pub(crate) fn header_line(c: bool) -> String {
    paint(c, "2", "event time (UTC)        action   score  user       event            top reasons                      [truth]")
}

/// One live line: a decision on a simulated event, with the simulator's truth beside it.
pub(crate) fn decision_line(
    c: bool,
    ev: &SimEvent,
    action: Action,
    score: f64,
    reasons: &[&str],
    freeze_cmd: bool,
) -> String {
    let (label, color) = match action {
        Action::Freeze => ("FREEZE ", "1;31"),
        Action::StepUp => ("STEP-UP", "33"),
        _ => ("review ", "36"),
    };
    let truth = if ev.scenario.is_attack() {
        paint(c, "1;35", &format!("attack: {}", ev.scenario.as_str()))
    } else if ev.scenario != Scenario::None {
        paint(c, "32", &format!("honest {}", ev.scenario.as_str()))
    } else {
        paint(c, "2", "ordinary")
    };
    let amount = ev
        .amount_cents
        .map(|a| format!("{} {:.2}", ev.kind.as_str(), a as f64 / 100.0))
        .unwrap_or_else(|| ev.kind.as_str().to_owned());
    let mut ts = format_rfc3339(ev.ts_ms);
    ts.truncate(19);
    format!(
        "{}  {}  {:.2}  {:<9}  {:<15}  {:<32} [{}]{}",
        ts,
        paint(c, color, label),
        score,
        ev.user_id(),
        truncate(&amount, 15),
        truncate(&reasons.join(","), 32),
        truth,
        if freeze_cmd {
            paint(c, "1;31", "  → freeze_account")
        } else {
            String::new()
        }
    )
}

/// Per-user tracking of what the demo saw.
pub(crate) type Users = HashMap<u32, UserTrack>;

pub(crate) fn track(
    users: &mut HashMap<u32, UserTrack>,
    ev: &SimEvent,
    action: Action,
    cmd: Option<CommandKind>,
) {
    let u = users.entry(ev.user).or_default();
    if ev.scenario.is_attack() {
        u.attack = Some(ev.scenario);
        if action != Action::Allow {
            u.alerted = true;
        }
        // Money out of the attack that left before the freeze is lost; from it on, saved.
        // Only successful money out counts, as in `walletguard eval`.
        let moved = ev.kind.is_money_out() && ev.failure.is_none();
        if moved {
            let amount = ev.amount_cents.unwrap_or(0) as f64 / 100.0;
            u.out_total += amount;
            if u.frozen {
                u.out_after_freeze += amount;
            }
        }
        if cmd == Some(CommandKind::FreezeAccount) && !u.frozen {
            u.frozen = true;
            if moved {
                // The freeze happens on this event: it is stopped too.
                u.out_after_freeze += ev.amount_cents.unwrap_or(0) as f64 / 100.0;
            }
        }
    } else if cmd == Some(CommandKind::FreezeAccount) && u.attack.is_none() {
        u.benign_frozen = true;
    }
}

pub(crate) fn summarize(card: &mut Scorecard, users: &HashMap<u32, UserTrack>) {
    for sc in Scenario::ATTACKS {
        let mut row = (sc, 0, 0, 0, 0.0, 0.0);
        for u in users.values().filter(|u| u.attack == Some(sc)) {
            row.1 += 1;
            row.2 += u.alerted as u32;
            row.3 += u.frozen as u32;
            row.4 += u.out_total;
            row.5 += u.out_after_freeze;
        }
        card.attacks.push(row);
    }
    let honest: Vec<&UserTrack> = users.values().filter(|u| u.attack.is_none()).collect();
    card.false_freezes = (
        honest.iter().filter(|u| u.benign_frozen).count() as u32,
        honest.len() as u32,
    );
}

pub(crate) fn print_scorecard(card: &Scorecard, c: bool, out: &mut dyn Write) -> io::Result<()> {
    writeln!(out)?;
    writeln!(
        out,
        "{} {} events in {:.1} s ({:.0}/s): allow {}, review {}, step_up {}, freeze {}",
        paint(c, "1", "scorecard:"),
        card.events,
        card.seconds,
        card.events as f64 / card.seconds.max(1e-9),
        card.by_action[0],
        card.by_action[1],
        card.by_action[2],
        card.by_action[3]
    )?;
    writeln!(
        out,
        "  {:<18} {:>7} {:>8} {:>7} {:>12}",
        "attack", "victims", "alerted", "frozen", "money saved"
    )?;
    let (mut total, mut saved) = (0.0, 0.0);
    for (sc, n, alerted, frozen, money, after) in &card.attacks {
        total += money;
        saved += after;
        let pct = if *money > 0.0 {
            format!("{:.0}%", 100.0 * after / money)
        } else {
            "-".into()
        };
        writeln!(
            out,
            "  {:<18} {:>7} {:>8} {:>7} {:>12}",
            sc.as_str(),
            n,
            alerted,
            frozen,
            pct
        )?;
    }
    if total > 0.0 {
        writeln!(
            out,
            "  money saved by freezes overall: {:.0}% of {:.2} CNY the attackers moved or would have",
            100.0 * saved / total,
            total
        )?;
    }
    writeln!(
        out,
        "  honest users frozen: {} of {} ({:.3}%)",
        card.false_freezes.0,
        card.false_freezes.1,
        100.0 * card.false_freezes.0 as f64 / card.false_freezes.1.max(1) as f64
    )?;
    writeln!(
        out,
        "  full quality report: walletguard simulate … && walletguard eval … (see README)"
    )?;
    Ok(())
}

fn truncate(s: &str, n: usize) -> &str {
    match s.char_indices().nth(n) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    #[test]
    fn demo_scores_a_small_world_and_reports_attacks() {
        let engine = Engine::new(Config::default());
        let opts = DemoOptions {
            sim: SimParams {
                users: 300,
                days: 25,
                seed: 3,
                attack_rate: 0.1,
                ..SimParams::default()
            },
            rate: 0,
            duration: None,
            show_reviews: false,
            color: false,
        };
        let mut out = Vec::new();
        let card = run(&engine, &opts, &mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(card.events > 10_000, "{}", card.events);
        assert_eq!(card.by_action.iter().sum::<u64>(), card.events);
        let victims: u32 = card.attacks.iter().map(|a| a.1).sum();
        assert!(victims > 5, "{victims}");
        assert!(text.contains("scorecard:"));
        assert!(text.contains("FREEZE"), "some attack is frozen:\n{text}");
    }
}
