//! End-to-end stories: hand-written wallet lives replayed through the library (and the CLI),
//! checking the decisions, alerts, commands and dead letters a user of walletguard would see.

mod common;

use std::process::Command;

use common::*;
use serde_json::Value;

/// First day of every story's history: Monday 2026-03-02.
const START: Date = (2026, 3, 2);

/// The events of the account takeover that a test looks at.
struct Takeover {
    reset: String,
    login: String,
    bind: String,
    drains: [String; 3],
}

impl Takeover {
    fn ids(&self) -> Vec<&str> {
        let mut v = vec![self.reset.as_str(), self.login.as_str(), self.bind.as_str()];
        v.extend(self.drains.iter().map(String::as_str));
        v
    }
}

/// Five weeks of ordinary life in Shanghai for `u-lin`, then, at 03:02 Shanghai time, a
/// password reset from a never-seen device in Lagos, a login, a new card bound, and three
/// transfers to the new payee `mule-1` of 40%, 50% and all of what is left.
fn takeover_story() -> (Vec<String>, Takeover) {
    let mut s = Story::new("u-lin", 6_000.0, Actor::new("d-own", SHANGHAI), 7);
    s.live_in_shanghai(START, 36); // to Monday 2026-04-06
    s.lines();
    let night = (2026, 4, 7);
    s.actor = Actor::new("d-attacker", LAGOS);
    let t = local_ms(CST, night, 3, 2) + 14_000;
    let reset = s.security(t, "password_reset");
    let login = s.login(t + 3 * MIN + 21_000);
    let bind = s.plan(
        t + 6 * MIN + 5_000,
        "payment_method_bind",
        None,
        Some("card-tok-5f0e9a"),
    );
    let d1 = s.transfer(t + 9 * MIN, Amount::BalanceShare(0.4), "mule-1");
    let d2 = s.transfer(t + 11 * MIN + 30_000, Amount::BalanceShare(0.5), "mule-1");
    let d3 = s.transfer(t + 14 * MIN, Amount::BalanceShare(1.0), "mule-1");
    let lines = s.lines();
    assert_eq!(s.balance(), 0.0, "the takeover drains the wallet");
    (
        lines,
        Takeover {
            reset,
            login,
            bind,
            drains: [d1, d2, d3],
        },
    )
}

/// Key events of the benign story, by episode.
struct Benign {
    episodes: Vec<(&'static str, Vec<String>)>,
}

/// Five weeks of ordinary life in Shanghai for `u-chen`, then four things an honest user does:
/// a trip to London (flight PVG → LHR, same phone, hotel network), a password reset from the
/// phone they always use, a new phone bound and then used at the usual shops, and one purchase
/// of eight times the usual amount at a shop never visited before.
fn benign_story() -> (Vec<String>, Benign) {
    let home = Actor::new("d-own", SHANGHAI);
    let mut s = Story::new("u-chen", 6_000.0, home.clone(), 11);
    s.live_in_shanghai(START, 35); // to Sunday 2026-04-05
    let mut episodes = Vec::new();

    // Monday 2026-04-06: coffee at home, a book at Pudong airport, flight at 11:30 CST,
    // landing at Heathrow at 16:40 BST (12 h 10 min later), then five days in London.
    let dep = (2026, 4, 6);
    s.login(local_ms(CST, dep, 7, 41));
    s.pay(local_ms(CST, dep, 8, 6), 27.5, COFFEE.0);
    s.actor = Actor::new("d-own", PVG_AIRPORT);
    s.login(local_ms(CST, dep, 10, 18));
    let airport = s.pay(local_ms(CST, dep, 10, 22), 86.0, "m-pvg-t1-bookshop");
    s.actor = Actor::new("d-own", LONDON);
    let landed = s.login(local_ms(BST, dep, 17, 52));
    let hex = s.pay(local_ms(BST, dep, 17, 58), 228.0, "m-heathrow-express");
    let dinner = s.pay(
        local_ms(BST, dep, 20, 31),
        196.0,
        "m-flat-iron-covent-garden",
    );
    for i in 1..=4 {
        s.london_day(add_days(dep, i));
    }
    // Saturday 2026-04-11: breakfast at Heathrow, flight at 12:05 BST, landing in Pudong
    // at 06:35 CST on Sunday (11 h 30 min).
    let back = (2026, 4, 11);
    s.login(local_ms(BST, back, 9, 38));
    let lhr = s.pay(local_ms(BST, back, 9, 44), 64.0, "m-lhr-t4-pret");
    s.actor = home;
    s.live_in_shanghai((2026, 4, 12), 3); // Sunday to Tuesday
    episodes.push((
        "travel Shanghai -> London -> Shanghai",
        vec![airport, landed, hex, dinner, lhr],
    ));

    // Tuesday 2026-04-14, 21:10: the owner resets the password from their own phone, then
    // spends as usual for five days.
    let reset_day = (2026, 4, 14);
    let reset = s.security(local_ms(CST, reset_day, 21, 10), "password_reset");
    let relogin = s.login(local_ms(CST, reset_day, 21, 12));
    s.live_in_shanghai((2026, 4, 15), 5); // Wednesday to Sunday
    episodes.push(("password reset from d-own", vec![reset, relogin]));

    // Sunday 2026-04-19, 21:03: a new phone is bound (its first event), logs in, and is used
    // from then on.
    let bind_day = (2026, 4, 19);
    s.actor = Actor::new("d-new", SHANGHAI);
    let bind = s.security(local_ms(CST, bind_day, 21, 3), "device_bind");
    let new_login = s.login(local_ms(CST, bind_day, 21, 5));
    s.live_in_shanghai((2026, 4, 20), 9); // to Tuesday 2026-04-28
    episodes.push(("new phone d-new bound", vec![bind, new_login]));

    // Saturday 2026-04-25, 15:10: one purchase of 8x the usual amount at a new shop.
    let big_day = (2026, 4, 25);
    let big_amount = (8.0 * s.mean_payment()).round();
    s.login(local_ms(CST, big_day, 15, 6));
    let big = s.pay(
        local_ms(CST, big_day, 15, 10),
        big_amount,
        "m-decathlon-jingan",
    );
    episodes.push(("8x purchase at a new shop", vec![big]));

    let lines = s.lines();
    (lines, Benign { episodes })
}

#[test]
fn account_takeover_story_ends_in_freeze_by_the_second_draining_transfer() {
    let (lines, ato) = takeover_story();
    let run = replay_lines(&lines);
    assert_eq!(
        run.summary.invalid, 0,
        "story lines must be valid: {:?}",
        run.dlq
    );
    assert_eq!(run.decisions.len(), lines.len());

    // A freeze during the normal weeks would be a false alarm, not a caught takeover, so the
    // first freeze must be one of the takeover's events up to the second draining transfer.
    let in_time: Vec<&str> = ato.ids()[..5].to_vec();
    let freezes = run.commands_of("freeze_account");
    let first = freezes.first().and_then(|c| c["event_id"].as_str());
    assert!(
        first.is_some_and(|id| in_time.contains(&id)),
        "expected a freeze_account on one of {in_time:?}, first freeze is on {first:?}\n\
         freeze commands: {freezes:#?}\n\
         takeover decisions:\n{}\nalerts before the takeover:\n{}",
        run.dump(&ato.ids()),
        run.dump(
            &run.decisions
                .iter()
                .filter(|d| d["action"] != "allow")
                .filter_map(|d| d["event_id"].as_str())
                .filter(|id| !ato.ids().contains(id))
                .collect::<Vec<_>>()
        ),
    );
}

#[test]
fn benign_story_is_never_frozen() {
    let (lines, benign) = benign_story();
    let run = replay_lines(&lines);
    assert_eq!(
        run.summary.invalid, 0,
        "story lines must be valid: {:?}",
        run.dlq
    );
    assert_eq!(run.decisions.len(), lines.len());

    let frozen: Vec<&Value> = run
        .decisions
        .iter()
        .filter(|d| d["action"] == "freeze")
        .collect();
    let freeze_commands = run.commands_of("freeze_account");
    let mut episodes = String::new();
    for (name, ids) in &benign.episodes {
        let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
        episodes.push_str(&format!("--- {name}\n{}", run.dump(&ids)));
    }
    assert!(
        frozen.is_empty() && freeze_commands.is_empty(),
        "a benign user was frozen: {} freeze decisions, {} freeze_account commands\n\
         every non-allow decision:\n{}\nkey events by episode:\n{episodes}",
        frozen.len(),
        freeze_commands.len(),
        run.dump_alerts(),
    );
}

/// An invalid line planted in an input.
struct BadLine {
    /// 1-based line number in the file: the dead letter's offset.
    lineno: i64,
    /// The bytes as written.
    raw: Vec<u8>,
    /// A word the dead letter's error must contain.
    word: &'static str,
}

/// A story's lines with invalid ones (and a blank one) planted between them.
struct Mixed {
    /// The file content.
    bytes: Vec<u8>,
    /// Event ids of the valid lines, in file order.
    valid_ids: Vec<String>,
    /// The invalid lines, in file order.
    bad: Vec<BadLine>,
}

fn with_invalid_lines(lines: &[String]) -> Mixed {
    let parse = |i: usize| serde_json::from_str::<Value>(&lines[i]).expect("valid line");
    let mut no_user = parse(1);
    no_user.as_object_mut().unwrap().remove("user_id");
    no_user["event_id"] = "ev-bad-no-user".into();
    let mut bad_type = parse(2);
    bad_type["type"] = "teleport".into();
    bad_type["event_id"] = "ev-bad-type".into();
    let mut negative = parse(3);
    negative["type"] = "payment".into();
    negative["amount"] = (-5.0).into();
    negative["counterparty"] = "m-canteen-88".into();
    negative["event_id"] = "ev-bad-amount".into();
    let mut no_offset = parse(4);
    no_offset["ts"] = "2026-03-04T12:00:00".into();
    no_offset["event_id"] = "ev-bad-ts".into();
    // (planted before valid line i, bytes, a word the error must contain)
    let plants: Vec<(usize, Vec<u8>, &'static str)> =
        vec![
        (2, br#"{"event_id":"ev-bad-json","user_id":"u-dlq","ts":"#.to_vec(), ""),
        (5, no_user.to_string().into_bytes(), "user_id"),
        (9, bad_type.to_string().into_bytes(), "type"),
        (14, negative.to_string().into_bytes(), "amount"),
        (20, no_offset.to_string().into_bytes(), "ts"),
        (
            27,
            b"{\"event_id\":\"ev-bad-utf8\",\"user_id\":\"u-dlq\",\"counterparty\":\"caf\xe9\"}"
                .to_vec(),
            "base64",
        ),
        // The very last line.
        (lines.len(), b"[1,2,3]".to_vec(), "JSON"),
    ];
    assert!(plants.iter().all(|p| p.0 <= lines.len()), "story too short");
    let mut m = Mixed {
        bytes: Vec::new(),
        valid_ids: Vec::new(),
        bad: Vec::new(),
    };
    let mut lineno = 0i64;
    let mut write = |m: &mut Mixed, raw: &[u8]| {
        m.bytes.extend_from_slice(raw);
        m.bytes.push(b'\n');
        lineno += 1;
        lineno
    };
    for i in 0..=lines.len() {
        for (_, raw, word) in plants.iter().filter(|p| p.0 == i) {
            let lineno = write(&mut m, raw);
            m.bad.push(BadLine {
                lineno,
                raw: raw.clone(),
                word,
            });
        }
        if i == 11 {
            // A blank line is skipped, not a dead letter, but still counts as a line.
            write(&mut m, b"   ");
        }
        if let Some(line) = lines.get(i) {
            write(&mut m, line.as_bytes());
            let v: Value = serde_json::from_str(line).expect("valid line");
            m.valid_ids.push(v["event_id"].as_str().unwrap().to_owned());
        }
    }
    m
}

/// Checks one dead-letter record against the line it came from.
fn check_dead_letter(rec: &Value, bad: &BadLine) {
    let BadLine { lineno, raw, word } = bad;
    for key in ["error", "topic", "partition", "offset", "payload"] {
        assert!(rec.get(key).is_some(), "dead letter lacks `{key}`: {rec}");
    }
    let error = rec["error"].as_str().unwrap_or("");
    assert!(
        error.contains(*word),
        "error should mention {word:?}: {rec}"
    );
    assert!(
        rec["topic"].is_string() && rec["partition"].is_i64(),
        "{rec}"
    );
    assert_eq!(rec["offset"], *lineno, "offset is the line number: {rec}");
    let payload = rec["payload"].as_str().unwrap_or("");
    match std::str::from_utf8(raw) {
        Ok(text) => assert_eq!(payload, text, "payload is the original line"),
        Err(_) => assert_eq!(
            payload,
            walletguard::engine::output::base64(raw),
            "base64 payload"
        ),
    }
}

#[test]
fn invalid_lines_go_to_the_dlq_and_replay_continues() {
    let mut s = Story::new("u-dlq", 3_000.0, Actor::new("d-own", SHANGHAI), 19);
    s.live_in_shanghai(START, 7);
    let lines = s.lines();
    let mixed = with_invalid_lines(&lines);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("mixed.jsonl");
    std::fs::write(&path, &mixed.bytes).unwrap();

    let run = replay_file(&path, NOW_MS);
    let (valid, invalid) = (mixed.valid_ids.len(), mixed.bad.len());
    assert_eq!(run.summary.invalid, invalid as u64);
    assert_eq!(run.summary.events, (valid + invalid) as u64);
    assert_eq!(run.dlq.len(), invalid, "{:#?}", run.dlq);
    for (rec, bad) in run.dlq.iter().zip(&mixed.bad) {
        check_dead_letter(rec, bad);
        assert_eq!(
            rec["topic"],
            format!("file:{}", path.display()),
            "file mode names the file as the topic"
        );
    }
    // Every valid line, including those after each bad one and the last, got its decision.
    let decided: Vec<&str> = run
        .decisions
        .iter()
        .map(|d| d["event_id"].as_str().unwrap())
        .collect();
    assert_eq!(decided, mixed.valid_ids);
}

/// Runs the walletguard binary with `args`, with no `WALLETGUARD_*` variables in its
/// environment.
fn walletguard(args: &[&std::ffi::OsStr]) -> std::process::Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_walletguard"));
    cmd.args(args);
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("WALLETGUARD_") {
            cmd.env_remove(k);
        }
    }
    cmd.env("RUST_LOG", "warn");
    cmd.output().expect("run walletguard")
}

#[test]
fn cli_replay_writes_every_output_end_to_end() {
    let (lines, _) = takeover_story();
    let mixed = with_invalid_lines(&lines);
    let dir = tempfile::tempdir().unwrap();
    let p = |name: &str| dir.path().join(name);
    std::fs::write(p("events.jsonl"), &mixed.bytes).unwrap();
    let config = config_path();
    let out = walletguard(&[
        "replay".as_ref(),
        "--input".as_ref(),
        p("events.jsonl").as_os_str(),
        "--decisions".as_ref(),
        p("decisions.jsonl").as_os_str(),
        "--alerts".as_ref(),
        p("alerts.jsonl").as_os_str(),
        "--commands".as_ref(),
        p("commands.jsonl").as_os_str(),
        "--dlq".as_ref(),
        p("dlq.jsonl").as_os_str(),
        "--config".as_ref(),
        config.as_os_str(),
    ]);
    assert!(
        out.status.success(),
        "replay failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    let decisions = read_jsonl(&p("decisions.jsonl"));
    assert_eq!(
        decisions.len(),
        mixed.valid_ids.len(),
        "one decision per valid line"
    );
    let non_allow = decisions.iter().filter(|d| d["action"] != "allow").count();
    let alerts = read_jsonl(&p("alerts.jsonl"));
    assert!(!alerts.is_empty(), "the takeover raises alerts");
    for a in &alerts {
        let action = a["action"].as_str().unwrap_or("");
        assert!(
            ["review", "step_up", "freeze"].contains(&action),
            "alert with action {action:?}: {a}"
        );
        for key in ["alert_id", "event_id", "user_id", "event_ts", "emitted_at"] {
            assert!(a[key].is_string(), "alert lacks `{key}`: {a}");
        }
    }
    assert_eq!(alerts.len(), non_allow, "one alert per non-allow decision");
    for c in read_jsonl(&p("commands.jsonl")) {
        let kind = c["command"].as_str().unwrap_or("");
        assert!(
            ["freeze_account", "require_step_up", "notify_user"].contains(&kind),
            "{c}"
        );
        // Only notify_user carries a message, and always one.
        assert_eq!(kind == "notify_user", c["message"].is_string(), "{c}");
    }
    let dlq = read_jsonl(&p("dlq.jsonl"));
    assert_eq!(dlq.len(), mixed.bad.len());
    for (rec, bad) in dlq.iter().zip(&mixed.bad) {
        check_dead_letter(rec, bad);
    }
}

#[test]
fn cli_check_config_names_the_wrong_key() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "[decision]\nfreez = 1\n").unwrap();
    let out = walletguard(&[
        "check-config".as_ref(),
        "--config".as_ref(),
        bad.as_os_str(),
    ]);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!out.status.success(), "bad config accepted: {text}");
    assert!(text.contains("decision.freez"), "key not named: {text}");

    let good = walletguard(&[
        "check-config".as_ref(),
        "--config".as_ref(),
        config_path().as_os_str(),
    ]);
    assert!(
        good.status.success(),
        "shipped config rejected: {}",
        String::from_utf8_lossy(&good.stderr)
    );
}

/// The `key` field of every record.
fn ids<'a>(records: &'a [Value], key: &str) -> Vec<&'a str> {
    records.iter().map(|r| r[key].as_str().unwrap()).collect()
}

#[test]
fn replaying_the_same_file_twice_gives_identical_decisions_and_ids() {
    let (mut lines, _) = takeover_story();
    lines.extend(benign_story().0);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("events.jsonl");
    write_lines(&path, &lines);

    let a = replay_file(&path, NOW_MS);
    let b = replay_file(&path, NOW_MS + 3_600_000);
    assert!(!a.alerts.is_empty() && !a.commands.is_empty());
    assert!(
        a.decisions_raw == b.decisions_raw,
        "decisions files differ between two replays"
    );
    assert_eq!(ids(&a.alerts, "alert_id"), ids(&b.alerts, "alert_id"));
    assert_eq!(
        ids(&a.commands, "command_id"),
        ids(&b.commands, "command_id")
    );
    assert_eq!(ids(&a.commands, "alert_id"), ids(&b.commands, "alert_id"));
    // The clock only stamps the outputs.
    assert_ne!(a.alerts[0]["emitted_at"], b.alerts[0]["emitted_at"]);
}

#[test]
fn a_repeated_event_id_is_learned_once() {
    // Four weeks of 20-300 CNY payments, then a 1,500 CNY purchase (unusual for this user)
    // and, a day later, a 1,400 CNY one. Learned once, the first big purchase leaves the second
    // still unusual; learned fifty times it would make it look normal.
    let mut s = Story::new("u-dup", 8_000.0, Actor::new("d-own", SHANGHAI), 23);
    s.live_in_shanghai(START, 28); // to Sunday 2026-03-29
    let history = s.lines();
    let big = s.pay(local_ms(CST, (2026, 3, 30), 19, 2), 1_500.0, HEMA.0);
    let follow = s.pay(local_ms(CST, (2026, 3, 31), 19, 14), 1_400.0, HEMA.0);
    let all = s.lines();
    let (big_line, follow_line) = (&all[all.len() - 2], &all[all.len() - 1]);
    assert!(big_line.contains(&big) && follow_line.contains(&follow));

    let mut once = history.clone();
    once.push(big_line.clone());
    once.push(follow_line.clone());
    let mut fifty = history.clone();
    fifty.extend(vec![big_line.clone(); 50]);
    fifty.push(follow_line.clone());

    let a = replay_lines(&once);
    let b = replay_lines(&fifty);
    assert_eq!(b.summary.duplicates, 49);
    assert_eq!(
        b.decisions.len(),
        fifty.len(),
        "duplicates still get decisions"
    );
    assert!(
        a.codes(&follow).contains(&"AMOUNT_OUTLIER"),
        "the follow-up must be unusual for this test to mean anything:\n{}",
        a.dump(&[&big, &follow])
    );
    assert_eq!(
        a.decision(&follow),
        b.decision(&follow),
        "the follow-up is judged differently after 49 duplicates\nonce:\n{}\nfifty:\n{}",
        a.dump(&[&big, &follow]),
        b.dump(&[&big, &follow])
    );
}

#[test]
fn a_user_with_two_prior_events_is_not_frozen_or_stepped_up_for_an_ordinary_payment() {
    let day = (2026, 4, 20);
    // (CNY, shop, local time): coffee, a snack, dinner somewhere new, late groceries.
    let ordinary = [
        (25.0, COFFEE.0, (8, 10)),
        (68.0, FAMILYMART.0, (12, 40)),
        (120.0, "m-jiajia-tangbao", (19, 20)),
        (260.0, HEMA.0, (22, 30)),
    ];
    let mut failures = String::new();
    for first in ["top_up", "login"] {
        for (amount, shop, (h, m)) in ordinary {
            let mut s = Story::new("u-fresh", 800.0, Actor::new("d-fresh", SHANGHAI), 29);
            if first == "top_up" {
                s.top_up(local_ms(CST, day, 7, 20), 600.0, "card-tok-icbc");
            } else {
                s.login(local_ms(CST, day, 7, 20));
            }
            s.pay(local_ms(CST, day, 7, 55), 38.0, FAMILYMART.0);
            let ev = s.pay(local_ms(CST, day, h, m), amount, shop);
            let run = replay_lines(&s.lines());
            assert_eq!(run.decisions.len(), 3);
            let action = run.action(&ev);
            let commanded = run.commands.iter().any(|c| c["event_id"] == ev.as_str());
            if action == "step_up" || action == "freeze" || commanded {
                failures.push_str(&format!(
                    "after {first} + payment, {amount} at {shop}:\n{}",
                    run.dump(&[&ev])
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{failures}");
}

/// Five weeks of ordinary life for `u-zhao`, then, from the owner's own phone at home and at
/// ordinary hours, 400 CNY every day or two to `p-new-acquaintance`, a payee never paid before:
/// no single transfer is unusual, but together they become a large part of a month's spending.
#[test]
fn a_new_payee_paid_again_and_again_is_flagged_but_not_frozen() {
    let mut s = Story::new("u-zhao", 6_000.0, Actor::new("d-own", SHANGHAI), 13);
    s.live_in_shanghai(START, 35);
    let mut drains = Vec::new();
    for (i, day) in [0i64, 2, 3, 5].iter().enumerate() {
        let date = add_days((2026, 4, 6), *day);
        let t = local_ms(CST, date, 20, 10 + i as u32);
        drains.push(s.transfer(t, Amount::Cents(40_000), "p-new-acquaintance"));
    }
    let lines = s.lines();
    let run = replay_lines(&lines);
    assert_eq!(run.summary.invalid, 0);
    let ids: Vec<&str> = drains.iter().map(String::as_str).collect();
    let flagged = ids.iter().position(|id| run.action(id) != "allow");
    assert!(
        flagged.is_some_and(|i| i <= 2),
        "expected an alert by the third transfer to the new payee\n{}",
        run.dump(&ids)
    );
    let codes = run.codes(ids[flagged.unwrap()]);
    assert!(codes.contains(&"PAYEE_BUILDUP"), "{codes:?}");
    assert!(
        run.commands_of("freeze_account").is_empty(),
        "a repeated payee alone must not freeze\n{}",
        run.dump_alerts()
    );
}

/// A data centre in Frankfurt: where card-testing bots run.
const FRANKFURT_DC: Place = Place {
    lat: 50.11,
    lon: 8.68,
    net: "185.220.101",
    offset_min: 60,
};

/// Five weeks of ordinary life for `u-sun`, then a bot signs in from a never-seen device in a
/// data centre, binds a card and starts paying 0.01–3 CNY at shops `u-sun` never paid: the
/// account is frozen by the second tiny payment.
#[test]
fn card_testing_by_a_stranger_is_frozen_by_the_second_tiny_payment() {
    let mut s = Story::new("u-sun", 6_000.0, Actor::new("d-own", SHANGHAI), 17);
    s.live_in_shanghai(START, 35);
    s.actor = Actor::new("d-bot", FRANKFURT_DC);
    let t = local_ms(CST, (2026, 4, 6), 14, 3);
    let login = s.login(t);
    let bind = s.plan(t + 40_000, "payment_method_bind", None, Some("card-x"));
    let mut tiny = Vec::new();
    for (i, cents) in [1i64, 100, 299, 1].iter().enumerate() {
        let shop = format!("shop-online-{i}");
        tiny.push(s.plan(
            t + 60_000 + i as i64 * 35_000,
            "payment",
            Some(Amount::Cents(*cents)),
            Some(&shop),
        ));
    }
    let lines = s.lines();
    let run = replay_lines(&lines);
    assert_eq!(run.summary.invalid, 0);
    let mut ids = vec![login.as_str(), bind.as_str()];
    ids.extend(tiny.iter().map(String::as_str));
    let frozen = ids.iter().position(|id| run.action(id) == "freeze");
    assert!(
        frozen.is_some_and(|i| i <= 3),
        "expected a freeze by the second tiny payment\n{}",
        run.dump(&ids)
    );
}

/// `u-chen` pays about 40 CNY, fifty times over seven weeks, at a handful of shops, from her
/// own phone at home and at ordinary hours; then, from the same phone, the same place and an
/// ordinary hour, pays 400 at a shop she has used before. Nothing says the actor is not the
/// owner, but ten times her habit is the stake a two-factor check is for: `step_up`, not
/// `freeze`. The same 400 from a never-seen device in another country is a `freeze`.
#[test]
fn fifty_payments_of_about_40_then_400_steps_up_and_a_stranger_is_frozen() {
    let shops = [COFFEE.0, CANTEEN.0, FAMILYMART.0, HEMA.0];
    let history = |s: &mut Story| {
        let mut rng = Rng::new(41);
        for i in 0..50i64 {
            let day = add_days(START, i);
            let (h, m) = (8 + rng.range(0, 12) as u32, rng.range(0, 59) as u32);
            let amount = 40.0 * (1.0 + rng.jitter(0.2));
            s.pay(local_ms(CST, day, h, m), amount, shops[(i % 4) as usize]);
        }
    };
    let big_day = add_days(START, 51);
    let mut own = Story::new("u-chen", 20_000.0, Actor::new("d-chen", SHANGHAI), 41);
    history(&mut own);
    let ev = own.pay(local_ms(CST, big_day, 14, 5), 400.0, HEMA.0);
    let run = replay_lines(&own.lines());
    assert_eq!(run.action(&ev), "step_up", "{}", run.dump(&[&ev]));

    let mut stolen = Story::new("u-chen", 20_000.0, Actor::new("d-chen", SHANGHAI), 41);
    history(&mut stolen);
    stolen.actor = Actor::new("d-unknown", LAGOS);
    let login = stolen.login(local_ms(CST, big_day, 3, 0));
    let ev = stolen.pay(local_ms(CST, big_day, 3, 10), 400.0, "m-electronics-lagos");
    let run = replay_lines(&stolen.lines());
    assert_eq!(run.action(&ev), "freeze", "{}", run.dump(&[&login, &ev]));
}

/// A card used every day or two for about 40 (anywhere from 20 to 60), always from the owner's
/// phone in Shanghai. Then, over one evening, seven payments of four to five times that, an
/// hour apart, at shops never used before, still from the same phone (the thief holds it,
/// or knows the card). Each alone is within what a variable spender sometimes does; the run
/// is not: the first is not `HABIT_RUN`, the third is, and by the seventh the run alone asks
/// for a two-factor check. Nothing says the actor is a stranger, so nothing is frozen.
#[test]
fn a_card_used_again_and_again_above_its_habit_is_stepped_up_by_the_run() {
    let shops = [COFFEE.0, CANTEEN.0, FAMILYMART.0, HEMA.0];
    let mut s = Story::new("u-lin", 50_000.0, Actor::new("d-lin", SHANGHAI), 7);
    let mut rng = Rng::new(7);
    for i in 0..60i64 {
        let day = add_days(START, i);
        let (h, m) = (9 + rng.range(0, 10) as u32, rng.range(0, 59) as u32);
        let amount = (40.0 * (1.0 + rng.jitter(0.5))).max(5.0);
        s.pay(local_ms(CST, day, h, m), amount, shops[(i % 4) as usize]);
    }
    let day = add_days(START, 61);
    let spree: Vec<String> = [170.0, 185.0, 160.0, 195.0, 175.0, 190.0, 180.0]
        .iter()
        .enumerate()
        .map(|(k, a)| {
            s.pay(
                local_ms(CST, day, 16 + k as u32, 10),
                *a,
                &format!("m-new-{k}"),
            )
        })
        .collect();
    let run = replay_lines(&s.lines());
    let ids: Vec<&str> = spree.iter().map(String::as_str).collect();
    assert!(
        !run.codes(ids[0]).contains(&"HABIT_RUN"),
        "{}",
        run.dump(&ids)
    );
    assert!(
        run.codes(ids[2]).contains(&"HABIT_RUN"),
        "{}",
        run.dump(&ids)
    );
    assert_eq!(run.action(ids[6]), "step_up", "{}", run.dump(&ids));
    assert!(
        ids.iter().all(|id| run.action(id) != "freeze"),
        "{}",
        run.dump(&ids)
    );
}
