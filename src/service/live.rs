//! The running engine of `walletguard run`, swapped whole by a config reload: the engine,
//! the loaded config it was built from (the reloader compares against it) and the
//! subscriptions' routes, compiled once per reload rather than per batch.

use std::sync::{Arc, RwLock};

use crate::engine::pipeline::Engine;
use crate::service::config::Config;
use crate::service::kafka::records::Route;

/// One config in force: what a reload replaces as a unit.
pub struct Live {
    /// The engine built from `config`.
    pub engine: Engine,
    /// The whole loaded config, service sections included.
    pub config: Config,
    /// `config.subscriptions`, compiled.
    pub routes: Vec<Route>,
}

impl Live {
    /// Builds the engine and the routes of a validated config.
    pub fn new(config: Config) -> Live {
        Live {
            engine: Engine::new(config.engine()),
            routes: Route::compile(&config.subscriptions),
            config,
        }
    }
}

/// The config in force, swappable at run time (config reload) while partition tasks read it
/// once per batch; and the shadow candidate beside it, if one is configured (see
/// [`crate::service::shadow`]).
pub struct LiveCell {
    live: RwLock<Arc<Live>>,
    shadow: RwLock<Option<Arc<Live>>>,
}

/// Reads a lock, poisoned or not: a writer only ever swaps a whole `Arc`.
fn read<T: Clone>(l: &RwLock<T>) -> T {
    match l.read() {
        Ok(g) => g.clone(),
        Err(p) => p.into_inner().clone(),
    }
}

fn write<T>(l: &RwLock<T>, v: T) {
    match l.write() {
        Ok(mut g) => *g = v,
        Err(p) => *p.into_inner() = v,
    }
}

impl LiveCell {
    /// Holds `live`, with no shadow candidate.
    pub fn new(live: Live) -> LiveCell {
        LiveCell {
            live: RwLock::new(Arc::new(live)),
            shadow: RwLock::new(None),
        }
    }

    /// The config in force now.
    pub fn get(&self) -> Arc<Live> {
        read(&self.live)
    }

    /// Replaces it; batches already started finish with the old one.
    pub fn replace(&self, live: Live) {
        write(&self.live, Arc::new(live));
    }

    /// The shadow candidate, if any.
    pub fn shadow(&self) -> Option<Arc<Live>> {
        read(&self.shadow)
    }

    /// Sets or clears the shadow candidate; partitions pick it up at their next batch.
    pub fn replace_shadow(&self, candidate: Option<Live>) {
        write(&self.shadow, candidate.map(Arc::new));
    }
}
