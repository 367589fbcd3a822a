//! [`Shutdown`]: one cloneable "stop now" signal shared by everything a service runs.
//!
//! Why one type (as mini-redis has): a plain flag can be polled but not awaited, and a
//! `Notify` can be awaited but forgets a notification nobody was waiting for. The consumer
//! thread polls between `poll` calls, while the HTTP server, the reloader and the demo await;
//! a watch channel gives both, and a trigger before anyone waits is never lost.

use std::sync::Arc;

use tokio::sync::watch;

/// A latch, set once and never cleared. Clones share it.
#[derive(Debug, Clone)]
pub struct Shutdown {
    tx: Arc<watch::Sender<bool>>,
}

impl Default for Shutdown {
    fn default() -> Self {
        Shutdown::new()
    }
}

impl Shutdown {
    /// A latch not yet triggered.
    pub fn new() -> Shutdown {
        Shutdown {
            tx: Arc::new(watch::Sender::new(false)),
        }
    }

    /// Sets the latch. Returns true for the call that set it (false if it was already set),
    /// so a signal handler can tell a second Ctrl-C from the first.
    pub fn trigger(&self) -> bool {
        !self.tx.send_replace(true)
    }

    /// Whether the latch is set (cheap; for loops that poll).
    pub fn is_triggered(&self) -> bool {
        *self.tx.borrow()
    }

    /// Resolves once the latch is set (at once if it already is).
    pub async fn wait(&self) {
        let mut rx = self.tx.subscribe();
        // Only fails when the sender is gone, which `self` prevents.
        let _ = rx.wait_for(|set| *set).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_trigger_before_the_wait_is_not_lost() {
        let s = Shutdown::new();
        assert!(!s.is_triggered());
        let c = s.clone();
        assert!(c.trigger(), "the first trigger sets it");
        assert!(!s.trigger(), "a second one reports it was set");
        assert!(s.is_triggered());
        tokio::time::timeout(std::time::Duration::from_secs(1), s.wait())
            .await
            .expect("wait returns at once once triggered");
    }

    #[tokio::test]
    async fn waiters_wake_on_trigger() {
        let s = Shutdown::new();
        let waiters: Vec<_> = (0..3)
            .map(|_| {
                let s = s.clone();
                tokio::spawn(async move { s.wait().await })
            })
            .collect();
        tokio::task::yield_now().await;
        assert!(waiters.iter().all(|w| !w.is_finished()));
        s.trigger();
        for w in waiters {
            tokio::time::timeout(std::time::Duration::from_secs(1), w)
                .await
                .expect("woken")
                .expect("join");
        }
    }
}
