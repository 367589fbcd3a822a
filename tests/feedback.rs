//! Feedback stories (contract v2): step-up results, analyst verdicts and unfreezes replayed
//! in order with the user's events, through the same replay path as every story. Each story
//! also runs without its feedback line, so that each assertion can fail.

mod common;

use common::*;
use serde_json::{json, Value};

/// First day of every story's history: Monday 2026-03-02.
const START: Date = (2026, 3, 2);
/// The day things happen: Tuesday 2026-04-07.
const DAY: Date = (2026, 4, 7);

/// A feedback line of `kind` for `user`, at `ms`, with `fields` added.
fn feedback(user: &str, id: &str, ms: i64, kind: &str, fields: Value) -> String {
    let mut o = json!({"event_id": id, "user_id": user, "ts": ms, "type": kind});
    if let (Some(o), Some(f)) = (o.as_object_mut(), fields.as_object()) {
        for (k, v) in f {
            o.insert(k.clone(), v.clone());
        }
    }
    o.to_string()
}

/// Five weeks of ordinary life for `user`, then, at 10:00 on [`DAY`], the owner's new phone
/// is bound in Shanghai and sends 3,000 CNY (about 40 times the usual payment) to a never-seen payee `p-landlord`.
/// Returns the story (its actor is the new phone), the lines so far and the transfer's id.
fn new_phone_story(user: &str, seed: u64) -> (Story, Vec<String>, String) {
    let mut s = Story::new(user, 20_000.0, Actor::new("d-own", SHANGHAI), seed);
    s.live_in_shanghai(START, 36);
    s.lines();
    s.actor = Actor::new("d-new-phone", SHANGHAI);
    let t = local_ms(CST, DAY, 10, 0);
    s.security(t, "device_bind");
    s.login(t + MIN);
    let first = s.transfer(t + 3 * MIN, Amount::Cents(300_000), "p-landlord");
    let lines = s.lines();
    (s, lines, first)
}

/// Appends `extra` to `lines` and the events the story plans next.
fn then(s: &mut Story, mut lines: Vec<String>, extra: &[String]) -> Vec<String> {
    lines.extend_from_slice(extra);
    let before = lines.len() - extra.len();
    let all = s.lines();
    lines.extend_from_slice(&all[before..]);
    lines
}

fn at_least_step_up(action: &str) -> bool {
    matches!(action, "step_up" | "freeze")
}

#[test]
fn a_new_phone_that_passed_its_step_up_is_not_challenged_again_for_the_same_payee() {
    let (mut s, lines, first) = new_phone_story("u-wang", 3);
    let t = local_ms(CST, DAY, 10, 0);
    let passed = feedback(
        "u-wang",
        "fb-1",
        t + 5 * MIN,
        "step_up_result",
        json!({"ref_event_id": first, "result": "passed", "device_id": "d-new-phone"}),
    );
    let second = s.transfer(t + 2 * HOUR, Amount::BalanceShare(0.5), "p-landlord");
    let with = then(&mut s, lines.clone(), std::slice::from_ref(&passed));
    let without: Vec<String> = with.iter().filter(|l| **l != passed).cloned().collect();

    let run = replay_lines(&with);
    let control = replay_lines(&without);
    assert!(
        at_least_step_up(run.action(&first)),
        "the new phone's first big transfer is challenged:\n{}",
        run.dump(&[&first])
    );
    assert!(
        at_least_step_up(control.action(&second)),
        "without the result, the second transfer is challenged again:\n{}",
        control.dump(&[&second])
    );
    assert!(
        !at_least_step_up(run.action(&second)),
        "after a passed step-up, the same phone and payee are not challenged again:\n{}",
        run.dump(&[&second])
    );
    assert_eq!(run.action("fb-1"), "allow");
    assert!(
        run.commands_of("freeze_account").is_empty(),
        "{}",
        run.dump(&[&first])
    );
}

#[test]
fn a_failed_step_up_freezes_the_account() {
    let (mut s, lines, first) = new_phone_story("u-zhao", 5);
    let t = local_ms(CST, DAY, 10, 0);
    let failed = feedback(
        "u-zhao",
        "fb-2",
        t + 5 * MIN,
        "step_up_result",
        json!({"ref_event_id": first, "result": "failed"}),
    );
    let lines = then(&mut s, lines, std::slice::from_ref(&failed));
    let run = replay_lines(&lines);
    assert!(at_least_step_up(run.action(&first)));
    let d = run.decision("fb-2");
    assert_eq!(d["action"], "freeze", "{d}");
    assert_eq!(d["reasons"][0]["code"], "STEP_UP_FAILED");
    let freezes = run.commands_of("freeze_account");
    assert!(
        freezes.iter().any(|c| c["event_id"] == "fb-2"),
        "{freezes:?}"
    );
}

#[test]
fn a_false_positive_verdict_mutes_the_same_evidence_but_not_a_different_payee() {
    let (mut s, lines, first) = new_phone_story("u-li", 7);
    let t = local_ms(CST, DAY, 10, 0);
    let verdict = feedback(
        "u-li",
        "fb-3",
        t + 30 * MIN,
        "case_verdict",
        json!({"ref_event_id": first, "verdict": "false_positive", "note": "tenant paying rent"}),
    );
    let same = s.transfer(t + 3 * HOUR, Amount::BalanceShare(0.5), "p-landlord");
    let other = s.transfer(t + 4 * HOUR, Amount::BalanceShare(0.8), "p-stranger");
    let with = then(&mut s, lines, std::slice::from_ref(&verdict));
    let without: Vec<String> = with.iter().filter(|l| **l != verdict).cloned().collect();
    let run = replay_lines(&with);
    let control = replay_lines(&without);
    assert_ne!(control.action(&same), "allow", "{}", control.dump(&[&same]));
    assert_eq!(run.action(&same), "allow", "{}", run.dump(&[&same]));
    // The muted detectors still show, marked.
    let reasons = run.decision(&same)["reasons"].as_array().cloned().unwrap();
    assert!(
        reasons.iter().any(|r| r["snoozed"] == true),
        "snoozed reasons listed: {reasons:?}"
    );
    assert!(
        run.alerts.iter().all(|a| a["event_id"] != same.as_str()),
        "no alert for the same evidence"
    );
    assert_ne!(
        run.action(&other),
        "allow",
        "a different payee is still alerted:\n{}",
        run.dump(&[&other])
    );
}

#[test]
fn confirmed_fraud_freezes_and_an_unfreeze_clears_the_cool_down() {
    let (mut s, lines, first) = new_phone_story("u-sun", 9);
    let t = local_ms(CST, DAY, 10, 0);
    let fraud = |id: &str, ms: i64| {
        feedback(
            "u-sun",
            id,
            ms,
            "case_verdict",
            json!({"ref_event_id": first, "verdict": "confirmed_fraud"}),
        )
    };
    let unfrozen = feedback(
        "u-sun",
        "fb-unfreeze",
        t + 2 * HOUR,
        "account_unfrozen",
        json!({}),
    );
    // Two confirmed-fraud verdicts an hour apart, inside the cool-down, with and without an
    // unfreeze between them.
    let (a, b) = (fraud("fb-a", t + HOUR), fraud("fb-b", t + 3 * HOUR));
    let with = then(&mut s, lines, &[a.clone(), unfrozen.clone(), b.clone()]);
    let without: Vec<String> = with.iter().filter(|l| **l != unfrozen).cloned().collect();
    let run = replay_lines(&with);
    let control = replay_lines(&without);
    for r in [&run, &control] {
        assert_eq!(r.action("fb-a"), "freeze");
        assert_eq!(r.decision("fb-a")["reasons"][0]["code"], "CONFIRMED_FRAUD");
        assert!(r
            .commands_of("freeze_account")
            .iter()
            .any(|c| c["event_id"] == "fb-a"));
    }
    let issued = |r: &Run| {
        r.commands_of("freeze_account")
            .iter()
            .any(|c| c["event_id"] == "fb-b")
    };
    assert!(!issued(&control), "cool-down: no second freeze_account");
    assert!(issued(&run), "after the unfreeze, a new freeze is issued");
}

#[test]
fn malformed_feedback_is_a_dead_letter_and_unknown_references_are_harmless() {
    let (mut s, lines, _) = new_phone_story("u-qian", 11);
    let t = local_ms(CST, DAY, 10, 0);
    let bad = [
        feedback(
            "u-qian",
            "fb-x1",
            t + HOUR,
            "step_up_result",
            json!({"result": "passed"}),
        ),
        feedback(
            "u-qian",
            "fb-x2",
            t + HOUR,
            "step_up_result",
            json!({"ref_event_id": "e", "result": "maybe"}),
        ),
        feedback(
            "u-qian",
            "fb-x3",
            t + HOUR,
            "case_verdict",
            json!({"ref_event_id": "e"}),
        ),
        feedback(
            "u-qian",
            "fb-x4",
            t + HOUR,
            "case_verdict",
            json!({"ref_event_id": "e", "verdict": "false_positive", "note": "n".repeat(300)}),
        ),
    ];
    let unknown = feedback(
        "u-qian",
        "fb-ok",
        t + HOUR,
        "case_verdict",
        json!({"ref_event_id": "never-seen", "verdict": "false_positive"}),
    );
    let mut extra = bad.to_vec();
    extra.push(unknown);
    let lines = then(&mut s, lines, &extra);
    let run = replay_lines(&lines);
    let errors: Vec<&str> = run.dlq.iter().filter_map(|d| d["error"].as_str()).collect();
    assert_eq!(errors.len(), 4, "{errors:?}");
    assert!(errors[0].contains("ref_event_id"), "{errors:?}");
    assert!(errors[1].contains("result"), "{errors:?}");
    assert!(errors[2].contains("verdict"), "{errors:?}");
    assert!(errors[3].contains("note"), "{errors:?}");
    assert_eq!(run.action("fb-ok"), "allow");
}

/// Ordinary life for `user`, paying nobody new.
fn ordinary(user: &str, seed: u64) -> (Story, Vec<String>) {
    let mut s = Story::new(
        user,
        20_000.0,
        Actor::new(&format!("d-{user}"), SHANGHAI),
        seed,
    );
    s.live_in_shanghai(START, 36);
    let lines = s.lines();
    (s, lines)
}

#[test]
fn a_confirmed_mule_is_blocked_for_a_user_on_another_partition() {
    // Two emulated partitions, and two users that land on different ones.
    let (a, b) = ("u-zhao", "u-wu");
    assert_ne!(
        walletguard::tools::replay::kafka_partition(a.as_bytes(), 2),
        walletguard::tools::replay::kafka_partition(b.as_bytes(), 2),
        "the story needs the users on different partitions"
    );
    let (mut sa, la) = ordinary(a, 21);
    let (mut sb, lb) = ordinary(b, 22);
    // A's account is taken over and pays the mule; an analyst confirms it.
    sa.actor = Actor::new("d-thief", SHANGHAI);
    let t = local_ms(CST, DAY, 10, 0);
    sa.login(t);
    let stolen = sa.transfer(t + 2 * MIN, Amount::Cents(80_000), "p-mule-77");
    let attack = sa.lines()[la.len()..].to_vec();
    let verdict = feedback(
        a,
        "fb-mule",
        t + HOUR,
        "case_verdict",
        json!({"ref_event_id": stolen, "verdict": "confirmed_fraud"}),
    );
    // Later that day B, from B's own phone, sends a modest amount to the same account.
    let paid = sb.transfer(t + 3 * HOUR, Amount::Cents(20_000), "p-mule-77");
    let b_then = sb.lines()[lb.len()..].to_vec();

    let mut with = la.clone();
    with.extend(lb.iter().cloned());
    with.extend(attack.iter().cloned());
    with.push(verdict.clone());
    with.extend(b_then.iter().cloned());
    let without: Vec<String> = with.iter().filter(|l| **l != verdict).cloned().collect();
    let dir = tempfile::tempdir().expect("tempdir");
    let (fw, fo) = (
        dir.path().join("with.jsonl"),
        dir.path().join("without.jsonl"),
    );
    write_lines(&fw, &with);
    write_lines(&fo, &without);
    let run = replay_file_with(&fw, NOW_MS, 2, Default::default());
    let control = replay_file_with(&fo, NOW_MS, 2, Default::default());

    assert_eq!(run.lists.len(), 1, "the mule is published: {:?}", run.lists);
    assert_eq!(run.lists[0]["kind"], "counterparty");
    assert_eq!(run.lists[0]["value"], "p-mule-77");
    assert_ne!(
        control.action(&paid),
        "freeze",
        "without the verdict B's payment is B's own business:\n{}",
        control.dump(&[&paid])
    );
    assert_eq!(run.action(&paid), "freeze", "{}", run.dump(&[&paid]));
    assert_eq!(run.decision(&paid)["reasons"][0]["code"], "BLOCKLISTED");

    // The same block from a lists file (what another instance published) does the same, and
    // an expired or user-scoped entry for someone else does nothing.
    let list = |line: &str| {
        let p = dir.path().join("lists.jsonl");
        std::fs::write(&p, line).expect("write lists");
        std::sync::Arc::new(walletguard::tools::replay::load_lists(&p).expect("lists file"))
    };
    let block = r#"{"kind":"counterparty","value":"p-mule-77","scope":"global","list":"block"}"#;
    let from_file = replay_file_with(&fo, NOW_MS, 2, list(block));
    assert_eq!(from_file.action(&paid), "freeze");
    let expired = r#"{"kind":"counterparty","value":"p-mule-77","scope":"global","list":"block","expires_at":"2026-04-01T00:00:00Z"}"#;
    assert_ne!(
        replay_file_with(&fo, NOW_MS, 2, list(expired)).action(&paid),
        "freeze"
    );
    let scoped = r#"{"kind":"counterparty","value":"p-mule-77","scope":"u-zhao","list":"block"}"#;
    assert_ne!(
        replay_file_with(&fo, NOW_MS, 2, list(scoped)).action(&paid),
        "freeze"
    );
}

#[test]
fn an_allowed_device_counts_as_the_owners() {
    // The new-phone story: its first big transfer is challenged, unless an operator allowed the
    // phone for this user beforehand.
    let (_, lines, first) = new_phone_story("u-li", 5);
    let dir = tempfile::tempdir().expect("tempdir");
    let input = dir.path().join("events.jsonl");
    write_lines(&input, &lines);
    let lists = dir.path().join("lists.jsonl");
    std::fs::write(
        &lists,
        "# allowed after a call to the bank\n{\"kind\":\"device\",\"value\":\"d-new-phone\",\"scope\":\"u-li\",\"list\":\"allow\"}\n",
    )
    .expect("write");
    let table = std::sync::Arc::new(walletguard::tools::replay::load_lists(&lists).expect("lists"));
    let control = replay_file_with(&input, NOW_MS, 1, Default::default());
    let run = replay_file_with(&input, NOW_MS, 1, table);
    assert!(
        at_least_step_up(control.action(&first)),
        "{}",
        control.dump(&[&first])
    );
    let codes: Vec<&str> = run.decision(&first)["reasons"]
        .as_array()
        .map(|r| r.iter().filter_map(|x| x["code"].as_str()).collect())
        .unwrap_or_default();
    assert!(!codes.contains(&"NEW_DEVICE"), "{codes:?}");
    assert_ne!(run.action(&first), "freeze", "{}", run.dump(&[&first]));

    // A malformed lists file is an error that names the line.
    std::fs::write(&lists, "{\"kind\":\"device\"}\n").expect("write");
    let err = walletguard::tools::replay::load_lists(&lists).expect_err("malformed");
    assert!(err.to_string().contains(":1:"), "{err}");
}

#[test]
fn the_owner_is_notified_of_a_new_device_once_per_window_and_never_beside_a_freeze() {
    let (mut s, lines) = ordinary("u-feng", 31);
    s.actor = Actor::new("d-tablet", SHANGHAI);
    let t = local_ms(CST, DAY, 9, 0);
    let first = s.login(t);
    // Another never-seen device ten minutes later: inside the window, no second notice.
    s.actor = Actor::new("d-laptop", SHANGHAI);
    let again = s.login(t + 10 * MIN);
    // A third one hours later: a new notice.
    s.actor = Actor::new("d-phone-2", SHANGHAI);
    let later = s.login(t + 3 * HOUR);
    let all = s.lines();
    let _ = lines;
    let run = replay_lines(&all);
    let notices: Vec<&Value> = run.commands_of("notify_user");
    let ids: Vec<&str> = notices
        .iter()
        .filter_map(|c| c["event_id"].as_str())
        .collect();
    assert!(
        ids.contains(&first.as_str()),
        "{ids:?}\n{}",
        run.dump(&[&first])
    );
    assert!(!ids.contains(&again.as_str()), "rate-limited: {ids:?}");
    assert!(ids.contains(&later.as_str()), "after the window: {ids:?}");
    let n = notices
        .iter()
        .find(|c| c["event_id"] == first.as_str())
        .expect("notice");
    let msg = n["message"].as_str().unwrap_or("");
    assert!(msg.contains("new device") && msg.contains("09:00"), "{msg}");
    assert!(!msg.contains("u-feng"), "no ids in the message: {msg}");
    // Every event has at most one command, and a frozen event never gets a notice.
    for c in &run.commands {
        let id = c["event_id"].as_str().unwrap_or("");
        assert_eq!(
            run.commands.iter().filter(|x| x["event_id"] == id).count(),
            1
        );
        if c["command"] == "notify_user" {
            assert!(["allow", "review"].contains(&run.action(id)), "{c}");
        }
    }
}

#[test]
fn a_new_place_is_news_only_far_from_where_the_owner_was() {
    // The owner's own phone at the airport, 35 km from home, in a geo cell it never used: no
    // notice (an owner moving about their city crosses cells all the time). Two days later
    // the same phone in London: the owner hears of it.
    let (mut s, _) = ordinary("u-qian", 33);
    let own = s.actor.device.clone();
    s.actor = Actor::new(&own, PVG_AIRPORT);
    let t = local_ms(CST, DAY, 9, 0);
    let airport = s.login(t);
    s.actor = Actor::new(&own, LONDON);
    let london = s.login(t + 2 * 24 * HOUR);
    let run = replay_lines(&s.lines());
    let ids: Vec<&str> = run
        .commands_of("notify_user")
        .iter()
        .filter_map(|c| c["event_id"].as_str())
        .collect();
    assert!(
        !ids.contains(&airport.as_str()),
        "{ids:?}\n{}",
        run.dump(&[&airport])
    );
    assert!(
        ids.contains(&london.as_str()),
        "{ids:?}\n{}",
        run.dump(&[&london])
    );
    let msg = run
        .commands_of("notify_user")
        .iter()
        .find(|c| c["event_id"] == london.as_str())
        .and_then(|c| c["message"].as_str().map(str::to_owned))
        .unwrap_or_default();
    assert!(
        msg.contains("new location") && msg.contains("51.5"),
        "{msg}"
    );
}
