//! Renders [`Report`]s: the stdout table, `report.md`, and (through serde) `report.json`.

use std::fmt::Write as _;

use serde::Serialize;

use super::figures::Figures;

/// Where the figures came from.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Sources {
    /// Events file.
    pub events: String,
    /// Labels file.
    pub labels: String,
    /// Decisions file, when decisions were read instead of computed.
    pub decisions: Option<String>,
    /// Config file used for the pipeline (`null`: built-in defaults, or decisions mode).
    pub config: Option<String>,
}

/// The evaluation report (`report.json`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    /// Sources.
    pub inputs: Sources,
    /// Lines of the events file that were not valid events (skipped).
    pub invalid_events: u64,
    /// The figures.
    #[serde(flatten)]
    pub figures: Figures,
}

/// A share as a percentage with `decimals` digits, or `-` when there is none: the one
/// formatting of shares in every report (eval, worlds, metamorphic, compare, calibrate).
pub fn pct(v: Option<f64>, decimals: usize) -> String {
    v.map(|x| format!("{:.decimals$}%", x * 100.0))
        .unwrap_or_else(|| "-".into())
}

fn num(v: Option<f64>, prec: usize) -> String {
    v.map(|x| format!("{x:.prec$}"))
        .unwrap_or_else(|| "-".into())
}

impl Report {
    /// The readable table printed on stdout.
    pub fn table(&self) -> String {
        let f = &self.figures;
        let o = &f.overall;
        let mut s = String::new();
        let _ = writeln!(
            s,
            "{:<20} {:>5} {:>8} {:>11} {:>8} {:>10} {:>10}",
            "scenario", "n", "recall", "freeze<2nd", "saved", "delay(ev)", "delay(s)"
        );
        for r in &f.scenarios {
            let _ = writeln!(
                s,
                "{:<20} {:>5} {:>8} {:>11} {:>8} {:>10} {:>10}",
                r.scenario,
                r.instances,
                pct(r.recall, 1),
                pct(r.freeze_recall, 1),
                pct(r.money_saved_share, 1),
                num(r.median_delay_events, 1),
                num(r.median_delay_seconds, 0),
            );
        }
        let _ = writeln!(s);
        let _ = writeln!(
            s,
            "{:<20} {:>5} {:>12} {:>13}",
            "benign novelty", "n", "false-alert", "false-freeze"
        );
        for r in &f.novelties {
            let _ = writeln!(
                s,
                "{:<20} {:>5} {:>12} {:>13}",
                r.kind,
                r.instances,
                pct(r.false_alert_rate, 1),
                pct(r.false_freeze_rate, 1)
            );
        }
        let _ = writeln!(s);
        let _ = writeln!(
            s,
            "events {} ({} attack, {} invalid skipped); users {} ({} attacked, {} benign)",
            o.events,
            o.attack_events,
            self.invalid_events,
            o.users,
            o.attacked_users,
            o.benign_users
        );
        let _ = writeln!(
            s,
            "PR-AUC {}  ROC-AUC {}",
            num(o.pr_auc, 4),
            num(o.roc_auc, 4)
        );
        let _ = writeln!(
            s,
            "alerts {} (precision {}), freezes {} ({} on attack events)",
            o.alerts,
            pct(o.alert_precision, 1),
            o.freezes,
            o.freezes_on_attacks
        );
        let _ = write!(
            s,
            "benign users: false-alert {} ({}), false-freeze {} ({})",
            pct(o.false_alert_rate_benign_users, 2),
            o.benign_users_alerted,
            pct(o.false_freeze_rate_benign_users, 2),
            o.benign_users_frozen
        );
        s
    }

    /// `report.md`: the same figures as Markdown tables, with the curve images.
    pub fn markdown(&self) -> String {
        let f = &self.figures;
        let o = &f.overall;
        let i = &self.inputs;
        let mut s = String::from("# walletguard evaluation\n\n");
        let _ = writeln!(s, "- events: `{}`", i.events);
        let _ = writeln!(s, "- labels: `{}`", i.labels);
        match (&i.decisions, &i.config) {
            (Some(d), _) => {
                let _ = writeln!(s, "- decisions read from `{d}`");
            }
            (None, Some(c)) => {
                let _ = writeln!(s, "- decisions computed by the pipeline with config `{c}`");
            }
            (None, None) => {
                let _ = writeln!(
                    s,
                    "- decisions computed by the pipeline with the built-in defaults"
                );
            }
        }
        s.push_str("\n## Attacks\n\n");
        s.push_str("| scenario | instances | recall | freeze before 2nd money-out | money saved | median delay (events) | median delay (s) |\n");
        s.push_str("|---|---:|---:|---:|---:|---:|---:|\n");
        for r in &f.scenarios {
            let _ = writeln!(
                s,
                "| {} | {} | {} | {} | {} | {} | {} |",
                r.scenario,
                r.instances,
                pct(r.recall, 1),
                pct(r.freeze_recall, 1),
                pct(r.money_saved_share, 1),
                num(r.median_delay_events, 1),
                num(r.median_delay_seconds, 0)
            );
        }
        s.push_str("\n## Benign novelties\n\n| kind | users | false alert | false freeze |\n|---|---:|---:|---:|\n");
        for r in &f.novelties {
            let _ = writeln!(
                s,
                "| {} | {} | {} | {} |",
                r.kind,
                r.instances,
                pct(r.false_alert_rate, 1),
                pct(r.false_freeze_rate, 1)
            );
        }
        s.push_str("\n## Overall\n\n| figure | value |\n|---|---:|\n");
        let rows = [
            ("events", o.events.to_string()),
            ("attack events", o.attack_events.to_string()),
            ("invalid events skipped", self.invalid_events.to_string()),
            (
                "users (attacked / benign)",
                format!("{} ({} / {})", o.users, o.attacked_users, o.benign_users),
            ),
            ("event PR-AUC (average precision)", num(o.pr_auc, 4)),
            ("event ROC-AUC", num(o.roc_auc, 4)),
            ("alerts", o.alerts.to_string()),
            ("alert precision", pct(o.alert_precision, 1)),
            (
                "freezes (on attack events)",
                format!("{} ({})", o.freezes, o.freezes_on_attacks),
            ),
            (
                "benign users alerted",
                format!(
                    "{} ({})",
                    pct(o.false_alert_rate_benign_users, 2),
                    o.benign_users_alerted
                ),
            ),
            (
                "benign users frozen",
                format!(
                    "{} ({})",
                    pct(o.false_freeze_rate_benign_users, 2),
                    o.benign_users_frozen
                ),
            ),
        ];
        for (k, v) in rows {
            let _ = writeln!(s, "| {k} | {v} |");
        }
        s.push_str("\n## Curves\n\n![PR curve](pr.png)\n\n![ROC curve](roc.png)\n\n");
        s.push_str("Definitions: see the `walletguard::tools::eval::figures` module docs.\n");
        s
    }
}
