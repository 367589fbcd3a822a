//! The labels file: which events are attacks, and which belong to a benign novelty.
//!
//! # Format
//!
//! CSV (RFC 4180, optionally gzip-compressed), with a header row and one row per event:
//!
//! ```text
//! event_id,user_id,label,scenario
//! e-0000042-000017,u-0000042,0,
//! e-0000042-000018,u-0000042,0,travel
//! e-0000042-000019,u-0000042,1,account_takeover
//! ```
//!
//! - `event_id`, `user_id`: as in the events (CONTRACT.md). `user_id` is the account the event
//!   belongs to, which for an attack is the victim's.
//! - `label`: `1` for an attacker's event, `0` otherwise.
//! - `scenario`: for label 1 the attack scenario name (all events of one scenario on one
//!   account form one attack instance); for label 0 the benign novelty kind for events caused
//!   by it (the simulator writes `travel`, `new_phone`, `big_purchase`, `owner_reset`,
//!   `family_recharge`, `own_card_withdrawal`, `salary`, `rent` and `family_remittance`; any
//!   other name is accepted), and empty for ordinary events.
//!
//! Every event to evaluate needs a row; rows for events absent from the events file are
//! ignored. An `event_id` may appear in one row only.

use std::collections::HashMap;
use std::path::Path;

use super::EvalError;
use crate::tools::replay::open_input;

/// The header row (the writer is [`crate::tools::sim::labels::LabelWriter`]).
pub use crate::tools::sim::labels::HEADER;

/// Scenario name given to label-1 rows whose `scenario` is empty.
pub const UNNAMED_ATTACK: &str = "unnamed_attack";

/// What a row says about one event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry {
    /// Index into [`Labels::users`].
    pub user: u32,
    /// Whether the event is an attacker's.
    pub attack: bool,
    /// Index into [`Labels::scenarios`] (0 is the empty name: ordinary).
    pub scenario: u16,
    /// Line of the row in the file (the header is line 1).
    pub line: u64,
}

/// A labels file in memory.
#[derive(Debug, Default)]
pub struct Labels {
    /// Rows by `event_id`.
    pub by_event: HashMap<Box<str>, Entry>,
    /// User ids, interned.
    pub users: Vec<Box<str>>,
    /// Scenario names, interned; index 0 is `""`.
    pub scenarios: Vec<String>,
}

impl Labels {
    /// The row of `event_id`.
    pub fn get(&self, event_id: &str) -> Option<&Entry> {
        self.by_event.get(event_id)
    }
}

/// Reads a labels file (plain or gzip). Errors name the file and line.
pub fn read_labels(path: &Path) -> Result<Labels, EvalError> {
    let (reader, _) = open_input(path)?;
    let file = path.display().to_string();
    let err = |line: u64, msg: String| EvalError::Labels {
        path: file.clone(),
        line,
        msg,
    };
    let mut rd = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(reader);
    let mut labels = Labels {
        scenarios: vec![String::new()],
        ..Labels::default()
    };
    let mut users: HashMap<Box<str>, u32> = HashMap::new();
    let mut scen: HashMap<String, u16> = HashMap::new();
    scen.insert(String::new(), 0);
    let mut rec = csv::ByteRecord::new();
    let mut first = true;
    loop {
        let more = rd.read_byte_record(&mut rec).map_err(|e| {
            let line = e.position().map(|p| p.line()).unwrap_or(0);
            err(line, format!("not valid CSV: {e}"))
        })?;
        if !more {
            break;
        }
        let line = rec.position().map(|p| p.line()).unwrap_or(0);
        if first {
            first = false;
            let got: Vec<&[u8]> = rec.iter().take(4).collect();
            let want: Vec<&[u8]> = HEADER.iter().map(|h| h.as_bytes()).collect();
            if got != want {
                return Err(err(
                    line,
                    format!("the header must be `{}`", HEADER.join(",")),
                ));
            }
            continue;
        }
        if rec.len() == 1 && rec.get(0).is_some_and(|f| f.is_empty()) {
            continue;
        }
        if rec.len() < 4 {
            return Err(err(line, format!("expected 4 fields, found {}", rec.len())));
        }
        let field = |i: usize, name: &str| -> Result<&str, EvalError> {
            std::str::from_utf8(rec.get(i).unwrap_or_default())
                .map_err(|_| err(line, format!("`{name}` is not UTF-8")))
        };
        let event_id = field(0, "event_id")?;
        let user_id = field(1, "user_id")?;
        let label = field(2, "label")?;
        let mut scenario = field(3, "scenario")?;
        if event_id.is_empty() {
            return Err(err(line, "`event_id` is empty".into()));
        }
        if user_id.is_empty() {
            return Err(err(line, "`user_id` is empty".into()));
        }
        let attack = match label.trim() {
            "0" => false,
            "1" => true,
            other => {
                return Err(err(
                    line,
                    format!("`label` must be 0 or 1, found {other:?}"),
                ))
            }
        };
        if attack && scenario.is_empty() {
            scenario = UNNAMED_ATTACK;
        }
        let n_users = users.len() as u32;
        let user = *users.entry(user_id.into()).or_insert_with(|| {
            labels.users.push(user_id.into());
            n_users
        });
        let scenario = match scen.get(scenario) {
            Some(i) => *i,
            None => {
                let i = u16::try_from(labels.scenarios.len())
                    .map_err(|_| err(line, "more than 65535 scenario names".into()))?;
                scen.insert(scenario.to_owned(), i);
                labels.scenarios.push(scenario.to_owned());
                i
            }
        };
        let entry = Entry {
            user,
            attack,
            scenario,
            line,
        };
        if let Some(prev) = labels.by_event.insert(event_id.into(), entry) {
            return Err(err(
                line,
                format!(
                    "event_id {event_id:?} already has a row at line {}",
                    prev.line
                ),
            ));
        }
    }
    if first {
        return Err(err(1, "the file is empty (no header)".into()));
    }
    Ok(labels)
}
