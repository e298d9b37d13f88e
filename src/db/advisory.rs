//! Advisory locks: one stable 63-bit key per purpose and name, shared by every process that must
//! not run the same work at once (concurrent `init`s, migrators, verifies, template builds), and
//! [`Holder`], a lock held across work that cannot share one transaction (`CREATE DATABASE`,
//! another connection's statements) without any session state: a transaction-level lock in a
//! transaction kept open on a connection of its own. A pooler pins that transaction to one server
//! session and frees it with the transaction, so the lock never outlives the run on a pooled
//! server connection, as a session lock would; a killed run's lock goes when its connection does.

use std::time::{Duration, Instant};

use anyhow::Context as _;
use tokio_postgres::{Client, SimpleQueryMessage};

use super::Target;

/// A stable 63-bit advisory lock key for a purpose and a name.
#[must_use]
pub fn key(purpose: &str, name: &str) -> i64 {
    use sha2::Digest as _;
    let digest = sha2::Sha256::digest(format!("aidock-provision:{purpose}:{name}").as_bytes());
    let mut bytes = [0u8; 8];
    bytes.copy_from_slice(&digest[..8]);
    i64::from_be_bytes(bytes) & i64::MAX
}

/// A lock held by an open transaction on a connection of its own; released by [`Holder::release`]
/// or when dropped (the connection closes and the server ends the transaction).
pub struct Holder {
    client: Client,
}

/// Whether a simple query's first value is `t`.
fn first_is_true(messages: &[SimpleQueryMessage]) -> bool {
    messages
        .iter()
        .any(|m| matches!(m, SimpleQueryMessage::Row(r) if r.get(0) == Some("t")))
}

impl Holder {
    /// Take `key` (shared or exclusive), polling in short transactions until `wait` is over;
    /// `what` names the lock in the error.
    ///
    /// # Errors
    /// Connecting; the wait running out (the message says what to do).
    pub async fn acquire(
        target: &Target,
        key: i64,
        shared: bool,
        wait: Duration,
        what: &str,
    ) -> anyhow::Result<Holder> {
        Self::acquire_all(target, &[(key, shared)], wait, what).await
    }

    /// Take every `(key, shared)` of `keys` at once, or none (one transaction per attempt, so a
    /// run waiting for the second never sits on the first); otherwise as [`Holder::acquire`].
    ///
    /// # Errors
    /// As [`Holder::acquire`].
    pub async fn acquire_all(
        target: &Target,
        keys: &[(i64, bool)],
        wait: Duration,
        what: &str,
    ) -> anyhow::Result<Holder> {
        Self::take_all(target.connect().await?, keys, wait, what).await
    }

    /// [`Holder::acquire_all`] on a connection of its own opened beforehand (e.g. at the same
    /// time as the run's main connection).
    ///
    /// # Errors
    /// As [`Holder::acquire`].
    pub async fn take_all(
        client: Client,
        keys: &[(i64, bool)],
        wait: Duration,
        what: &str,
    ) -> anyhow::Result<Holder> {
        let tries: Vec<String> = keys
            .iter()
            .map(|&(key, shared)| {
                if shared {
                    format!("pg_try_advisory_xact_lock_shared({key})")
                } else {
                    format!("pg_try_advisory_xact_lock({key})")
                }
            })
            .collect();
        // The transaction sits idle while the work goes on elsewhere: no idle timeout for it.
        // AND stops at the first lock refused; the ROLLBACK below frees the ones taken before it.
        let attempt = format!(
            "BEGIN; SET LOCAL idle_in_transaction_session_timeout = 0; SELECT {}",
            tries.join(" AND ")
        );
        let deadline = Instant::now() + wait;
        loop {
            let messages = client
                .simple_query(&attempt)
                .await
                .map_err(|e| anyhow::anyhow!(super::describe_error(&e)))
                .with_context(|| format!("taking the {what}"))?;
            if first_is_true(&messages) {
                return Ok(Holder { client });
            }
            client
                .batch_execute("ROLLBACK")
                .await
                .with_context(|| format!("polling the {what}"))?;
            if Instant::now() >= deadline {
                anyhow::bail!(
                    "another aidock-provision run held the {what} for more than {wait:?}; wait for it to finish, or raise migrate.wait_timeout"
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// End the transaction, and with it the lock.
    pub async fn release(self) {
        let _ = self.client.batch_execute("COMMIT").await;
    }
}

/// Whether nobody holds `key` right now (checked in a transaction of its own, ended at once).
///
/// # Errors
/// The query failing.
pub async fn is_free(client: &Client, key: i64) -> anyhow::Result<bool> {
    let messages = client
        .simple_query(&format!(
            "BEGIN; SELECT pg_try_advisory_xact_lock({key}); ROLLBACK"
        ))
        .await
        .map_err(|e| anyhow::anyhow!(super::describe_error(&e)))
        .context("checking an advisory lock")?;
    Ok(first_is_true(&messages))
}

#[cfg(test)]
mod tests {
    #[test]
    fn keys_are_stable_positive_and_distinct() {
        assert_eq!(super::key("init", "aidock"), super::key("init", "aidock"));
        assert_ne!(
            super::key("init", "aidock"),
            super::key("migrate", "aidock")
        );
        assert!(super::key("verify", "x") >= 0);
    }
}
