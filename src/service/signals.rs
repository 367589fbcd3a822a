//! Unix signals for the binary's commands: each handler runs on one small thread of its own,
//! so a signal is acted on even while every worker is busy or blocked.

use std::sync::Arc;

use tokio::signal::unix::SignalKind;

/// What to do when a signal arrives.
pub type Handler = Arc<dyn Fn() + Send + Sync>;

/// Runs each handler whenever its signal arrives, on a thread named `name`.
pub fn on_signals(name: &str, handlers: Vec<(SignalKind, Handler)>) -> std::io::Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    std::thread::Builder::new()
        .name(name.into())
        .spawn(move || {
            rt.block_on(async move {
                let mut tasks = Vec::new();
                for (kind, f) in handlers {
                    let Ok(mut sig) = tokio::signal::unix::signal(kind) else {
                        return;
                    };
                    tasks.push(tokio::spawn(async move {
                        while sig.recv().await.is_some() {
                            f();
                        }
                    }));
                }
                for t in tasks {
                    let _ = t.await;
                }
            })
        })?;
    Ok(())
}

/// Runs `stop` on SIGINT and SIGTERM, and `hup` on SIGHUP.
pub fn on_stop_and_hup(
    stop: impl Fn() + Send + Sync + 'static,
    hup: impl Fn() + Send + Sync + 'static,
) -> std::io::Result<()> {
    let stop: Handler = Arc::new(stop);
    on_signals(
        "wg-signals",
        vec![
            (SignalKind::terminate(), stop.clone()),
            (SignalKind::interrupt(), stop),
            (SignalKind::hangup(), Arc::new(hup)),
        ],
    )
}

/// A latch triggered by SIGINT or SIGTERM.
pub fn stop_latch() -> std::io::Result<crate::service::shutdown::Shutdown> {
    let stop = crate::service::shutdown::Shutdown::new();
    let flag = stop.clone();
    on_stop(move || {
        flag.trigger();
    })?;
    Ok(stop)
}

/// Runs `stop` on SIGINT and SIGTERM.
pub fn on_stop(stop: impl Fn() + Send + Sync + 'static) -> std::io::Result<()> {
    on_stop_and_hup(stop, || {})
}
