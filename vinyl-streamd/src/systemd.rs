//! systemd integration: readiness, watchdog and stopping notifications
//! (no-ops when not started by systemd).

use crate::status::Status;
use sd_notify::NotifyState;
use std::sync::Arc;

/// The encoder is considered alive while it produced a frame this recently.
const ALIVE_MS: u64 = 2000;

/// Tells systemd the service is ready.
pub fn ready() {
    if let Err(e) = sd_notify::notify(&[NotifyState::Ready]) {
        tracing::warn!("sd_notify READY: {e}");
    }
}

/// Tells systemd the service is stopping.
pub fn stopping() {
    let _ = sd_notify::notify(&[NotifyState::Stopping]);
}

/// Pings the watchdog at half its interval, but only while the encoder is
/// producing frames: a wedged pipeline gets restarted by systemd.
pub async fn watchdog(status: Arc<Status>) {
    let Some(interval) = sd_notify::watchdog_enabled() else {
        return;
    };
    let mut tick = tokio::time::interval(interval / 2);
    loop {
        tick.tick().await;
        if status.encoder_idle_ms() < ALIVE_MS {
            let _ = sd_notify::notify(&[NotifyState::Watchdog]);
        } else {
            tracing::error!("encoder stalled; withholding watchdog ping");
        }
    }
}
