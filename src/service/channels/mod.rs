//! The channels that carry alerts to subscribers besides the subscription topics themselves:
//! signed webhooks and the live stream.

pub mod alert_stream;
pub mod webhooks;
