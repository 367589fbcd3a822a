//! The offline tools behind the subcommands other than `run`: each uses the engine, and some
//! the service, never the other way round.

pub mod calibrate;
pub mod cli;
pub mod compare;
pub mod demo;
pub mod eval;
pub mod loadgen;
pub mod mock;
pub mod replay;
pub mod sim;
pub mod tail;
