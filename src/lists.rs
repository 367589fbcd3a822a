//! Allow and block list entries: the records of the compacted topic `walletguard.lists`
//! (contract v2), keyed `<scope>:<kind>:<value>`.
//!
//! Pure: the pipeline produces entries (a confirmed fraud blocks its payee and a stranger's
//! device, see [`crate::feedback`]); the Kafka adapter publishes them.

use serde::{Deserialize, Serialize};

use crate::time::{format_rfc3339, EpochMs};

/// What an entry names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ListKind {
    /// A payee, merchant, phone number or card token.
    Counterparty,
    /// A device id.
    Device,
    /// An IP network (an address or a CIDR prefix).
    IpNetwork,
    /// A user id.
    User,
}

impl ListKind {
    /// Every kind, in wire order.
    pub const ALL: [ListKind; 4] = [
        ListKind::Counterparty,
        ListKind::Device,
        ListKind::IpNetwork,
        ListKind::User,
    ];

    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            ListKind::Counterparty => "counterparty",
            ListKind::Device => "device",
            ListKind::IpNetwork => "ip_network",
            ListKind::User => "user",
        }
    }
}

/// Which list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ListName {
    /// Strong evidence against whoever uses it.
    Block,
    /// Evidence of the owner.
    Allow,
}

/// One list entry as the contract writes it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListEntry {
    /// What `value` names.
    pub kind: ListKind,
    /// The id, as events carry it.
    pub value: String,
    /// `global`, or the `user_id` the entry applies to.
    pub scope: String,
    /// `block` or `allow`.
    pub list: ListName,
    /// Why, for people.
    #[serde(default)]
    pub reason: String,
    /// When it stops applying, RFC 3339; absent: never.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<String>,
}

impl ListEntry {
    /// A global block of `value` until `expires_ms`.
    pub fn global_block(kind: ListKind, value: &str, reason: &str, expires_ms: EpochMs) -> Self {
        ListEntry {
            kind,
            value: value.to_owned(),
            scope: "global".into(),
            list: ListName::Block,
            reason: reason.to_owned(),
            expires_at: Some(format_rfc3339(expires_ms)),
        }
    }

    /// The record key: `<scope>:<kind>:<value>`.
    pub fn key(&self) -> String {
        format!("{}:{}:{}", self.scope, self.kind.as_str(), self.value)
    }

    /// The record value (one JSON object).
    pub fn to_json(&self) -> Vec<u8> {
        // Plain strings and enums: serialising into a Vec cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_read_and_write_the_contract_example() {
        let text = r#"{"kind":"counterparty","value":"p-991","scope":"global","list":"block","reason":"confirmed mule","expires_at":"2027-03-01T00:00:00Z"}"#;
        let e: ListEntry = serde_json::from_str(text).unwrap();
        assert_eq!(e.key(), "global:counterparty:p-991");
        assert_eq!(e.list, ListName::Block);
        let again: ListEntry = serde_json::from_slice(&e.to_json()).unwrap();
        assert_eq!(again, e);
        let b = ListEntry::global_block(ListKind::Device, "d-1", "x", 1_800_000_000_000);
        assert_eq!(b.key(), "global:device:d-1");
        assert_eq!(b.expires_at.as_deref(), Some("2027-01-15T08:00:00.000Z"));
    }
}
