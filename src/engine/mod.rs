//! The pure engine: wire bytes in, decisions, alerts and commands out. Nothing here imports
//! Kafka, tokio, HTTP or metrics, and time comes in as an argument.

pub mod baseline;
pub mod bytes;
pub mod decision;
pub mod detect;
pub mod event;
pub mod feedback;
pub mod lists;
pub mod notify;
pub mod output;
pub mod pipeline;
pub mod time;
pub mod unit;
pub mod validate;
