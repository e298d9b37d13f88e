//! Advisory lock keys: one stable 63-bit key per purpose and name, shared by every process that
//! must not run the same work at once (concurrent `init`s, migrators, verifies).

/// A stable 63-bit advisory lock key for a purpose and a name.
#[must_use]
pub fn key(purpose: &str, name: &str) -> i64 {
    use sha2::Digest as _;
    let digest = sha2::Sha256::digest(format!("aidock-provision:{purpose}:{name}").as_bytes());
    let mut bytes = [0u8; 8];
    bytes.copy_from_slice(&digest[..8]);
    i64::from_be_bytes(bytes) & i64::MAX
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
