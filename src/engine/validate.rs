//! Value rules shared by every config section, and the error they raise.
//!
//! A leaf module: each section's owner (a detector, the decision, the baseline) validates its
//! own table with these, and [`crate::service::config`] turns an [`Invalid`] into a
//! [`ConfigError::Invalid`](crate::service::config::ConfigError::Invalid) naming the same key. Why not
//! in `config`: the sections live with their modules, and those must not depend on the
//! loader that assembles them.

/// A value that breaks a rule: the dotted key and the rule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("config key `{key}`: {msg}")]
pub struct Invalid {
    /// Dotted path of the key.
    pub key: String,
    /// The rule that was broken.
    pub msg: String,
}

/// Result of a section's validation.
pub type Checked = Result<(), Invalid>;

/// An [`Invalid`] for `key`.
pub fn invalid(key: &str, msg: impl Into<String>) -> Invalid {
    Invalid {
        key: key.to_owned(),
        msg: msg.into(),
    }
}

/// `v` must be a finite number > 0.
pub fn positive(key: &str, v: f64) -> Checked {
    if v.is_finite() && v > 0.0 {
        Ok(())
    } else {
        Err(invalid(
            key,
            format!("must be a finite number > 0, got {v}"),
        ))
    }
}

/// `v` must be a finite number ≥ 0.
pub fn nonneg(key: &str, v: f64) -> Checked {
    if v.is_finite() && v >= 0.0 {
        Ok(())
    } else {
        Err(invalid(
            key,
            format!("must be a finite number ≥ 0, got {v}"),
        ))
    }
}

/// `v` must lie within 0..=1.
pub fn unit(key: &str, v: f64) -> Checked {
    if (0.0..=1.0).contains(&v) {
        Ok(())
    } else {
        Err(invalid(key, format!("must be within 0..=1, got {v}")))
    }
}

/// `v` must be a finite number ≥ 1 (a count threshold).
pub fn count(key: &str, v: f64) -> Checked {
    if v.is_finite() && v >= 1.0 {
        Ok(())
    } else {
        Err(invalid(
            key,
            format!("must be a finite number ≥ 1, got {v}"),
        ))
    }
}
