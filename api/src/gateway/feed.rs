//! Background work of the gateway: the change feed (other instances' revocations), `last_used_at`
//! flushing, and keeping the in-memory state bounded.

use std::sync::Arc;
use std::time::Duration;

use chrono::TimeDelta;
use gsp_gateway_storage::repo::audit;
use gsp_gateway_storage::{StorageError, to_db};

use crate::state::AppState;
use crate::tokens::JWT_PURPOSE;

/// Applies one change made anywhere (this instance included) to the view; true when keys must be reloaded.
fn apply(state: &AppState, change: &audit::Change) -> bool {
    match change.action.as_str() {
        "access.enabled" | "access.disabled" => {
            if let Some(gstin) = &change.gstin {
                state.view.forget_taxpayer(gstin);
            }
        }
        "session.revoked" | "session.logged_out" | "refresh_token.reused" => {
            if let Some(id) = &change.session_id {
                state.view.session_revoked(id);
            }
        }
        "session.refreshed" => {
            // A dialect refresh replaces the auth token: the old one must stop working everywhere.
            if let Some(id) = &change.session_id {
                state.view.forget_dialect_tokens(id);
            }
        }
        "gsp.disabled" | "gsp.enabled" | "gsp.secret_rotated" | "gsp.status_cd_changed" => {
            if let Some(client_id) = &change.gsp_client_id {
                state.view.client_changed(client_id);
            }
        }
        "keys.rotated" => return true,
        crate::gstn::rsa_key::ROTATED_ACTION => return true,
        _ => {}
    }
    false
}

/// Reloads the signing keys from the database.
pub async fn reload_keys(state: &AppState) -> Result<(), StorageError> {
    let now = state.clock.now();
    let rows = state
        .db
        .run(move |conn| gsp_gateway_storage::repo::keys::live(conn, JWT_PURPOSE, to_db(now)))
        .await?;
    state.keys.replace(&rows);
    state.claims.clear();
    Ok(())
}

/// Polls the change feed forever at the configured interval.
pub async fn follow_changes(state: Arc<AppState>) {
    let interval = Duration::from_millis(state.settings.change_feed_interval_ms.max(10));
    let mut last = loop {
        match state.db.run(audit::head).await {
            Ok(head) => break head,
            Err(e) => {
                tracing::warn!(error = %e, "change feed cannot start yet");
                tokio::time::sleep(interval * 4).await;
            }
        }
    };
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        let after = last;
        match state
            .db
            .run(move |conn| audit::changes_since(conn, after, 1000))
            .await
        {
            Ok(changes) => {
                let mut keys_changed = false;
                for change in &changes {
                    keys_changed |= apply(&state, change);
                    last = change.id;
                }
                state.view.set_feed_position(last);
                if let Some(newest) = changes.last() {
                    let lag = state.clock.now() - gsp_gateway_storage::from_db(newest.at);
                    crate::metrics::set_change_feed_lag(lag.num_milliseconds().max(0) as f64 / 1000.0);
                }
                if keys_changed {
                    if let Err(e) = reload_keys(&state).await {
                        tracing::warn!(error = %e, "key reload failed");
                    }
                    if let Err(e) = crate::gstn::reload(&state).await {
                        tracing::warn!(error = %e, "GSTN key reload failed");
                    }
                }
            }
            Err(e) => tracing::debug!(error = %e, "change feed poll failed"),
        }
    }
}

/// Runs [`housekeep`] every 15 seconds.
pub async fn housekeeping(state: Arc<AppState>) {
    let mut ticker = tokio::time::interval(Duration::from_secs(15));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        housekeep(&state).await;
    }
}

/// One pass: flushes session usage, evicts ended sessions, expired tokens and idle limiter keys,
/// deletes expired OTP inbox messages (the code in them is dead) and counts the active sessions.
pub async fn housekeep(state: &AppState) {
    let now = state.clock.now();
    if let Err(e) = state.view.flush_usage(&state.db, now).await {
        tracing::debug!(error = %e, "session usage flush failed");
    }
    state.view.evict_ended(now - TimeDelta::minutes(1));
    state.claims.evict_expired(now);
    state.limits.retain_recent();
    let at = to_db(now);
    if let Err(e) = state
        .db
        .run(move |conn| gsp_gateway_storage::repo::otp::purge_expired_inbox(conn, at))
        .await
    {
        tracing::debug!(error = %e, "expired OTP messages not purged");
    }
    match state
        .db
        .run(move |conn| gsp_gateway_storage::repo::sessions::count_all_active(conn, at))
        .await
    {
        Ok(active) => crate::metrics::set_active_sessions(active.max(0) as u64),
        Err(e) => tracing::debug!(error = %e, "active session count failed"),
    }
}
