//! The quality figures, computed from scored and labelled events in stream order. Pure: no
//! I/O, so hand-made cases test them exactly.
//!
//! Definitions (an *attack instance* is all label-1 events of one scenario on one account;
//! a *money-out* is a `payment`, `transfer`, `withdrawal` or `mobile_recharge` attempt, and
//! money amounts count successful money-outs only, since failed ones move nothing):
//!
//! - **recall**: share of instances with any non-`allow` decision on their events.
//! - **freeze recall** (freeze before the 2nd money-out): share of instances with a `freeze`
//!   on one of their events up to and including their 2nd money-out (their last event when
//!   they have fewer than two).
//! - **money saved**: attack money-out at or after the instance's first `freeze`, over the
//!   instance's total money-out; summed over instances before dividing.
//! - **detection delay**: for detected instances, attack events before the first non-`allow`
//!   one, and seconds from the instance's first event to it; the median is reported.
//! - **PR-AUC** (average precision) and **ROC-AUC**: every event, ranked by `score`, against
//!   its label; tied scores form one threshold.
//! - **alert precision**: share of non-`allow` decisions that are on attack events.
//! - **false-alert / false-freeze rate of benign users**: share of users without any attack
//!   event whose events got any non-`allow` / `freeze` decision.
//! - **per novelty kind**: an instance is one user's events labelled with the kind (users
//!   with an attack excluded); its rate is the share of instances with any non-`allow` /
//!   `freeze` decision on those events.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::engine::decision::Action;

/// One scored, labelled event.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rec {
    /// User index (any dense numbering).
    pub user: u32,
    /// Event time, epoch ms.
    pub ts_ms: i64,
    /// A money-out attempt (any status).
    pub money_out: bool,
    /// The amount of a successful money-out, else 0.
    pub out_amount: f64,
    /// Label 1.
    pub attack: bool,
    /// Scenario or novelty kind index (0 = none).
    pub scenario: u16,
    /// The decision's score.
    pub score: f32,
    /// The decision's action.
    pub action: Action,
}

/// Figures of one attack scenario (or of all attacks together).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ScenarioFigures {
    /// Scenario name (`all` for the total row).
    pub scenario: String,
    /// Attack instances.
    pub instances: u64,
    /// Instances with any non-allow decision.
    pub detected: u64,
    /// `detected / instances`.
    pub recall: Option<f64>,
    /// Instances frozen by their 2nd money-out.
    pub frozen_early: u64,
    /// `frozen_early / instances`.
    pub freeze_recall: Option<f64>,
    /// Successful attack money-out.
    pub money_out: f64,
    /// Of which at or after the first freeze.
    pub money_saved: f64,
    /// `money_saved / money_out`.
    pub money_saved_share: Option<f64>,
    /// Median attack events before the first alert, over detected instances.
    pub median_delay_events: Option<f64>,
    /// Median seconds from the first attack event to the first alert.
    pub median_delay_seconds: Option<f64>,
}

/// False-alarm figures of one benign novelty kind.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NoveltyFigures {
    /// The kind.
    pub kind: String,
    /// Users with events of this kind (and no attack).
    pub instances: u64,
    /// Of which with any non-allow decision on those events.
    pub alerted: u64,
    /// Of which with any freeze on those events.
    pub frozen: u64,
    /// `alerted / instances`.
    pub false_alert_rate: Option<f64>,
    /// `frozen / instances`.
    pub false_freeze_rate: Option<f64>,
}

/// Event- and user-level figures.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Overall {
    /// Scored events.
    pub events: u64,
    /// Of which label 1.
    pub attack_events: u64,
    /// Users with events.
    pub users: u64,
    /// Users with an attack event.
    pub attacked_users: u64,
    /// Users without.
    pub benign_users: u64,
    /// Average precision of `score` against the label.
    pub pr_auc: Option<f64>,
    /// Area under the ROC curve of `score`.
    pub roc_auc: Option<f64>,
    /// Non-allow decisions.
    pub alerts: u64,
    /// Of which on attack events.
    pub alerts_on_attacks: u64,
    /// `alerts_on_attacks / alerts`.
    pub alert_precision: Option<f64>,
    /// Freeze decisions.
    pub freezes: u64,
    /// Of which on attack events.
    pub freezes_on_attacks: u64,
    /// Benign users with any non-allow decision.
    pub benign_users_alerted: u64,
    /// `benign_users_alerted / benign_users`.
    pub false_alert_rate_benign_users: Option<f64>,
    /// Benign users with any freeze.
    pub benign_users_frozen: u64,
    /// `benign_users_frozen / benign_users`.
    pub false_freeze_rate_benign_users: Option<f64>,
}

/// Everything [`compute`] finds.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Figures {
    /// Event- and user-level figures.
    pub overall: Overall,
    /// One row per attack scenario (by name), then `all`.
    pub scenarios: Vec<ScenarioFigures>,
    /// One row per benign novelty kind (by name).
    pub novelties: Vec<NoveltyFigures>,
}

/// Points of the PR curve `(recall, precision)` and ROC curve `(fpr, tpr)`, one per distinct
/// score threshold, highest threshold first.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Curves {
    /// `(recall, precision)`.
    pub pr: Vec<(f64, f64)>,
    /// `(false-positive rate, true-positive rate)`, from `(0, 0)` to `(1, 1)`.
    pub roc: Vec<(f64, f64)>,
}

fn ratio(a: u64, b: u64) -> Option<f64> {
    (b > 0).then(|| a as f64 / b as f64)
}

/// The median of `v` (sorted in place); `None` when empty.
pub(crate) fn median(v: &mut [f64]) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    Some(if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    })
}

#[derive(Default)]
struct Acc {
    instances: u64,
    detected: u64,
    frozen_early: u64,
    money_out: f64,
    money_saved: f64,
    delays_ev: Vec<f64>,
    delays_s: Vec<f64>,
}

impl Acc {
    fn add(&mut self, recs: &[Rec], idx: &[usize]) {
        self.instances += 1;
        let first_alert = idx.iter().position(|&i| recs[i].action != Action::Allow);
        if let Some(p) = first_alert {
            self.detected += 1;
            self.delays_ev.push(p as f64);
            self.delays_s
                .push((recs[idx[p]].ts_ms - recs[idx[0]].ts_ms) as f64 / 1000.0);
        }
        // Last position that still counts as "before the 2nd money-out".
        let outs: Vec<usize> = (0..idx.len()).filter(|&p| recs[idx[p]].money_out).collect();
        let cutoff = outs
            .get(1)
            .or(outs.last())
            .copied()
            .unwrap_or(idx.len() - 1);
        if idx[..=cutoff]
            .iter()
            .any(|&i| recs[i].action == Action::Freeze)
        {
            self.frozen_early += 1;
        }
        let first_freeze = idx.iter().position(|&i| recs[i].action == Action::Freeze);
        for (p, &i) in idx.iter().enumerate() {
            self.money_out += recs[i].out_amount;
            if first_freeze.is_some_and(|f| p >= f) {
                self.money_saved += recs[i].out_amount;
            }
        }
    }

    fn figures(mut self, name: &str) -> ScenarioFigures {
        ScenarioFigures {
            scenario: name.to_owned(),
            instances: self.instances,
            detected: self.detected,
            recall: ratio(self.detected, self.instances),
            frozen_early: self.frozen_early,
            freeze_recall: ratio(self.frozen_early, self.instances),
            money_out: self.money_out,
            money_saved: self.money_saved,
            money_saved_share: (self.money_out > 0.0).then(|| self.money_saved / self.money_out),
            median_delay_events: median(&mut self.delays_ev),
            median_delay_seconds: median(&mut self.delays_s),
        }
    }
}

/// Computes every figure. `recs` must be in stream (time) order; `names[i]` names scenario
/// index `i` (index 0, the empty name, is ordinary traffic).
pub fn compute(recs: &[Rec], names: &[String]) -> (Figures, Curves) {
    let name = |i: u16| names.get(i as usize).map(String::as_str).unwrap_or("?");
    let n_users = recs.iter().map(|r| r.user as usize + 1).max().unwrap_or(0);
    // Per user: 1 present, 2 attacked, 4 alerted, 8 frozen.
    let mut flags = vec![0u8; n_users];
    let mut attacks: BTreeMap<(u16, u32), Vec<usize>> = BTreeMap::new();
    let mut novelty: BTreeMap<(u16, u32), (bool, bool)> = BTreeMap::new();
    let mut ov = Overall {
        events: recs.len() as u64,
        attack_events: 0,
        users: 0,
        attacked_users: 0,
        benign_users: 0,
        pr_auc: None,
        roc_auc: None,
        alerts: 0,
        alerts_on_attacks: 0,
        alert_precision: None,
        freezes: 0,
        freezes_on_attacks: 0,
        benign_users_alerted: 0,
        false_alert_rate_benign_users: None,
        benign_users_frozen: 0,
        false_freeze_rate_benign_users: None,
    };
    for (i, r) in recs.iter().enumerate() {
        let f = &mut flags[r.user as usize];
        *f |= 1;
        let alert = r.action != Action::Allow;
        let freeze = r.action == Action::Freeze;
        *f |= (alert as u8) << 2 | (freeze as u8) << 3;
        ov.alerts += alert as u64;
        ov.freezes += freeze as u64;
        if r.attack {
            *f |= 2;
            ov.attack_events += 1;
            ov.alerts_on_attacks += alert as u64;
            ov.freezes_on_attacks += freeze as u64;
            attacks.entry((r.scenario, r.user)).or_default().push(i);
        } else if r.scenario != 0 {
            let e = novelty.entry((r.scenario, r.user)).or_default();
            e.0 |= alert;
            e.1 |= freeze;
        }
    }
    for f in &flags {
        if f & 1 == 0 {
            continue;
        }
        ov.users += 1;
        if f & 2 != 0 {
            ov.attacked_users += 1;
        } else {
            ov.benign_users += 1;
            ov.benign_users_alerted += (f & 4 != 0) as u64;
            ov.benign_users_frozen += (f & 8 != 0) as u64;
        }
    }
    ov.alert_precision = ratio(ov.alerts_on_attacks, ov.alerts);
    ov.false_alert_rate_benign_users = ratio(ov.benign_users_alerted, ov.benign_users);
    ov.false_freeze_rate_benign_users = ratio(ov.benign_users_frozen, ov.benign_users);

    let mut scenarios = Vec::new();
    let mut all = Acc::default();
    let mut cur: Option<(u16, Acc)> = None;
    for ((s, _), idx) in &attacks {
        if cur.as_ref().is_some_and(|c| c.0 != *s) {
            if let Some((cs, acc)) = cur.take() {
                scenarios.push(acc.figures(name(cs)));
            }
        }
        cur.get_or_insert_with(|| (*s, Acc::default()))
            .1
            .add(recs, idx);
        all.add(recs, idx);
    }
    if let Some((cs, acc)) = cur {
        scenarios.push(acc.figures(name(cs)));
    }
    scenarios.sort_by(|a, b| a.scenario.cmp(&b.scenario));
    scenarios.push(all.figures("all"));

    let mut novelties: BTreeMap<&str, NoveltyFigures> = BTreeMap::new();
    for ((s, u), (alerted, frozen)) in &novelty {
        if flags[*u as usize] & 2 != 0 {
            continue;
        }
        let n = novelties.entry(name(*s)).or_insert_with(|| NoveltyFigures {
            kind: name(*s).to_owned(),
            instances: 0,
            alerted: 0,
            frozen: 0,
            false_alert_rate: None,
            false_freeze_rate: None,
        });
        n.instances += 1;
        n.alerted += *alerted as u64;
        n.frozen += *frozen as u64;
    }
    let novelties = novelties
        .into_values()
        .map(|mut n| {
            n.false_alert_rate = ratio(n.alerted, n.instances);
            n.false_freeze_rate = ratio(n.frozen, n.instances);
            n
        })
        .collect();

    let curves = curves(recs);
    let (pr_auc, roc_auc) = aucs(recs);
    ov.pr_auc = pr_auc;
    ov.roc_auc = roc_auc;
    (
        Figures {
            overall: ov,
            scenarios,
            novelties,
        },
        curves,
    )
}

/// Scores descending, grouped into thresholds: `(true positives, false positives)` added at
/// each distinct score.
fn threshold_groups(recs: &[Rec]) -> Vec<(u64, u64)> {
    score_groups(recs.iter().map(|r| (r.score as f64, r.attack)).collect())
}

/// `(score, positive)` pairs, scores descending, grouped into thresholds: `(positives,
/// negatives)` at each distinct score.
pub(crate) fn score_groups(mut v: Vec<(f64, bool)>) -> Vec<(u64, u64)> {
    v.sort_unstable_by(|a, b| b.0.total_cmp(&a.0));
    let mut groups: Vec<(u64, u64)> = Vec::new();
    let mut last: Option<f64> = None;
    for (s, a) in v {
        if last != Some(s) {
            groups.push((0, 0));
            last = Some(s);
        }
        if let Some(g) = groups.last_mut() {
            if a {
                g.0 += 1;
            } else {
                g.1 += 1;
            }
        }
    }
    groups
}

/// `(average precision, ROC AUC)`; `None` when a class is absent.
fn aucs(recs: &[Rec]) -> (Option<f64>, Option<f64>) {
    group_aucs(&threshold_groups(recs))
}

/// `(average precision, ROC AUC)` of [`score_groups`]; `None` when a class is absent.
pub(crate) fn group_aucs(groups: &[(u64, u64)]) -> (Option<f64>, Option<f64>) {
    let p: u64 = groups.iter().map(|g| g.0).sum();
    let n: u64 = groups.iter().map(|g| g.1).sum();
    if p == 0 {
        return (None, None);
    }
    let (mut tp, mut fp) = (0u64, 0u64);
    let (mut ap, mut auc) = (0.0, 0.0);
    for &(gp, gn) in groups {
        let (tp0, fp0) = (tp, fp);
        tp += gp;
        fp += gn;
        ap += (gp as f64 / p as f64) * (tp as f64 / (tp + fp) as f64);
        if n > 0 {
            // Trapezoid: ties count half.
            auc += (fp - fp0) as f64 / n as f64 * (tp + tp0) as f64 / 2.0 / p as f64;
        }
    }
    (Some(ap), (n > 0).then_some(auc))
}

fn curves(recs: &[Rec]) -> Curves {
    let groups = threshold_groups(recs);
    let p: u64 = groups.iter().map(|g| g.0).sum();
    let n: u64 = groups.iter().map(|g| g.1).sum();
    let mut c = Curves::default();
    if p == 0 || n == 0 {
        return c;
    }
    c.roc.push((0.0, 0.0));
    let (mut tp, mut fp) = (0u64, 0u64);
    for (gp, gn) in groups {
        tp += gp;
        fp += gn;
        c.roc.push((fp as f64 / n as f64, tp as f64 / p as f64));
        c.pr.push((tp as f64 / p as f64, tp as f64 / (tp + fp) as f64));
    }
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(user: u32, t: i64, out: f64, attack: bool, sc: u16, score: f32, a: Action) -> Rec {
        Rec {
            user,
            ts_ms: t * 1000,
            money_out: out > 0.0,
            out_amount: out,
            attack,
            scenario: sc,
            score,
            action: a,
        }
    }

    #[test]
    fn auc_of_a_perfect_and_a_useless_ranking() {
        let names = vec![String::new(), "x".into()];
        let r = vec![
            rec(0, 1, 0.0, false, 0, 0.1, Action::Allow),
            rec(0, 2, 0.0, true, 1, 0.9, Action::Freeze),
            rec(1, 3, 0.0, false, 0, 0.2, Action::Allow),
        ];
        let (f, c) = compute(&r, &names);
        assert_eq!(f.overall.roc_auc, Some(1.0));
        assert_eq!(f.overall.pr_auc, Some(1.0));
        assert_eq!(c.roc.first(), Some(&(0.0, 0.0)));
        assert_eq!(c.roc.last(), Some(&(1.0, 1.0)));
        let tied: Vec<Rec> = r.iter().map(|x| Rec { score: 0.5, ..*x }).collect();
        let (f, _) = compute(&tied, &names);
        assert_eq!(f.overall.roc_auc, Some(0.5));
        assert!((f.overall.pr_auc.unwrap() - 1.0 / 3.0).abs() < 1e-12);
    }

    #[test]
    fn freeze_window_and_money_saved() {
        let names = vec![String::new(), "ato".into()];
        // Attack: login, out 100, out 300, out 600. Freeze on the 3rd money-out only.
        let r = vec![
            rec(0, 0, 0.0, true, 1, 0.1, Action::Allow),
            rec(0, 10, 100.0, true, 1, 0.6, Action::Review),
            rec(0, 20, 300.0, true, 1, 0.7, Action::StepUp),
            rec(0, 30, 600.0, true, 1, 0.95, Action::Freeze),
        ];
        let (f, _) = compute(&r, &names);
        let s = &f.scenarios[0];
        assert_eq!(s.scenario, "ato");
        assert_eq!((s.instances, s.detected, s.frozen_early), (1, 1, 0));
        assert_eq!(s.money_saved_share, Some(0.6));
        assert_eq!(s.median_delay_events, Some(1.0));
        assert_eq!(s.median_delay_seconds, Some(10.0));
        assert_eq!(f.scenarios[1].scenario, "all");
        assert_eq!(f.overall.alert_precision, Some(1.0));
    }
}
