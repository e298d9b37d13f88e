//! Dev users for `seed --dev`: the fixed test accounts and N fake users (deterministic per RNG
//! seed), their passwords hashed on all cores (argon2id, or bcrypt for the backend). The usage
//! logs are `logs.rs`.

use std::collections::HashSet;

use anyhow::Context as _;
use argon2::{Algorithm, Argon2, Params, PasswordHasher as _, Version};
use fake::Fake as _;
use fake::faker::name::en::{FirstName, LastName};
use rand::{RngExt as _, SeedableRng as _};
use rand_chacha::ChaCha8Rng;
use tokio_postgres::Transaction;
use tokio_postgres::types::Type;

use super::files::Seeds;
use super::reference::Counts;
use crate::db::sql::Sql as _;

/// A user to insert.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewUser {
    pub username: String,
    pub email: String,
    pub password: String,
    pub role: String,
    pub department: String,
    pub superuser: bool,
    pub active: bool,
}

/// The fixed test accounts from `dev.toml`.
#[must_use]
pub fn accounts(seeds: &Seeds) -> Vec<NewUser> {
    seeds
        .dev
        .account
        .iter()
        .map(|a| NewUser {
            username: a.username.clone(),
            email: a.email.clone(),
            password: a.password.clone(),
            role: a.role.clone(),
            department: a.department.clone(),
            superuser: a.superuser,
            active: true,
        })
        .collect()
}

/// `n` fake users, the same for the same `rng_seed` (ChaCha8: stable across rand releases).
#[must_use]
pub fn fake_users(seeds: &Seeds, n: u32, rng_seed: u64) -> Vec<NewUser> {
    let mut rng = ChaCha8Rng::seed_from_u64(rng_seed);
    let mut taken: HashSet<String> = seeds
        .dev
        .account
        .iter()
        .map(|a| a.username.clone())
        .collect();
    let weights: Vec<(&String, u32)> = seeds
        .dev
        .fake_role_weights
        .iter()
        .map(|(r, w)| (r, *w))
        .collect();
    let total_weight: u32 = weights.iter().map(|(_, w)| w).sum::<u32>().max(1);
    let mut users = Vec::with_capacity(n as usize);
    for _ in 0..n {
        let first: String = FirstName().fake_with_rng(&mut rng);
        let last: String = LastName().fake_with_rng(&mut rng);
        let base: String = format!("{first}.{last}")
            .to_lowercase()
            .chars()
            .filter(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '.')
            .take(40)
            .collect();
        let mut username = base.clone();
        let mut suffix = 2;
        while !taken.insert(username.clone()) {
            username = format!("{base}{suffix}");
            suffix += 1;
        }
        let mut pick = rng.random_range(0..total_weight);
        let role = weights
            .iter()
            .find(|(_, w)| {
                if pick < *w {
                    true
                } else {
                    pick -= w;
                    false
                }
            })
            .map_or_else(|| "user".to_string(), |(r, _)| (*r).clone());
        let department = seeds.departments[rng.random_range(0..seeds.departments.len())]
            .name
            .clone();
        users.push(NewUser {
            email: format!("{username}@example.com"),
            username,
            password: seeds.dev.fake_user_password.clone(),
            role,
            department,
            superuser: false,
            active: rng.random_bool(0.9),
        });
    }
    users
}

/// argon2id cost parameters (`seed.argon2.*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ArgonParams {
    pub memory_kib: u32,
    pub iterations: u32,
    pub parallelism: u32,
}

/// The argon2id hasher for these parameters.
///
/// # Errors
/// Parameters argon2 refuses.
pub fn hasher(p: &ArgonParams) -> anyhow::Result<Argon2<'static>> {
    let params = Params::new(p.memory_kib, p.iterations, p.parallelism, None).map_err(|e| {
        crate::error::usage(format!(
            "seed.argon2 parameters (memory_kib {}, iterations {}, parallelism {}) are invalid: {e}",
            p.memory_kib, p.iterations, p.parallelism
        ))
    })?;
    Ok(Argon2::new(Algorithm::Argon2id, Version::V0x13, params))
}

/// How dev passwords are stored (`seed.password_scheme`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    /// PHC `$argon2id$...` (argon2-cffi verifies it).
    Argon2id,
    /// `$2b$12$...`, the only format the AI Dock backend's passlib context verifies.
    Bcrypt,
}

impl Scheme {
    /// `argon2id` or `bcrypt`.
    #[must_use]
    pub fn parse(text: &str) -> Option<Scheme> {
        match text {
            "argon2id" => Some(Scheme::Argon2id),
            "bcrypt" => Some(Scheme::Bcrypt),
            _ => None,
        }
    }

    /// The scheme a stored hash is in, if one of ours.
    #[must_use]
    pub fn of_hash(hash: &str) -> Option<Scheme> {
        if hash.starts_with("$argon2id$") {
            Some(Scheme::Argon2id)
        } else if hash.starts_with("$2b$") || hash.starts_with("$2a$") || hash.starts_with("$2y$") {
            Some(Scheme::Bcrypt)
        } else {
            None
        }
    }

    /// The setting's spelling.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Scheme::Argon2id => "argon2id",
            Scheme::Bcrypt => "bcrypt",
        }
    }
}

/// bcrypt's cost, as the AI Dock backend configures passlib (`bcrypt__rounds=12`).
pub const BCRYPT_COST: u32 = 12;

/// A password hasher for one scheme.
pub enum Hasher {
    Argon2(Argon2<'static>),
    Bcrypt { cost: u32 },
}

impl Hasher {
    /// The hasher for `scheme` (argon2id with `argon` parameters, bcrypt at [`BCRYPT_COST`]).
    ///
    /// # Errors
    /// argon2 parameters it refuses.
    pub fn new(scheme: Scheme, argon: &ArgonParams) -> anyhow::Result<Hasher> {
        Ok(match scheme {
            Scheme::Argon2id => Hasher::Argon2(hasher(argon)?),
            Scheme::Bcrypt => Hasher::Bcrypt { cost: BCRYPT_COST },
        })
    }

    fn hash(&self, password: &str, rng: &mut impl rand::Rng) -> anyhow::Result<String> {
        match self {
            Hasher::Argon2(argon) => {
                let mut salt = [0u8; 16];
                rng.fill_bytes(&mut salt);
                argon
                    .hash_password_with_salt(password.as_bytes(), &salt)
                    .map(|h| h.to_string())
                    .map_err(|e| anyhow::anyhow!("hashing a password: {e}"))
            }
            Hasher::Bcrypt { cost } => bcrypt::hash(password, *cost)
                .map_err(|e| anyhow::anyhow!("hashing a password with bcrypt: {e}")),
        }
    }
}

/// Hash every password on `threads` threads (PHC strings for argon2id, `$2b$` for bcrypt).
///
/// # Errors
/// A hashing failure.
pub fn hash_all(
    hasher: &Hasher,
    passwords: &[&str],
    threads: usize,
) -> anyhow::Result<Vec<String>> {
    let threads = threads.max(1);
    let chunk = passwords.len().div_ceil(threads).max(1);
    std::thread::scope(|scope| {
        let handles: Vec<_> = passwords
            .chunks(chunk)
            .map(|part| {
                scope.spawn(move || {
                    let mut rng = rand::rng();
                    part.iter()
                        .map(|p| hasher.hash(p, &mut rng))
                        .collect::<anyhow::Result<Vec<String>>>()
                })
            })
            .collect();
        let mut out = Vec::with_capacity(passwords.len());
        for h in handles {
            out.extend(h.join().expect("hashing threads do not panic")?);
        }
        Ok(out)
    })
}

/// What happens to a user that is there already (same username or email).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Existing {
    /// Kept as it is (`ON CONFLICT DO NOTHING`).
    Keep,
    /// Updated to the seed's values (`--overwrite`; by username).
    Overwrite,
    /// Kept, found by a join instead of the unique indexes, which a bulk load dropped for the
    /// length of the transaction (no one else can insert meanwhile: the drop locks the table).
    KeepUnindexed,
}

/// Insert users (by username; existing ones kept, or updated with `overwrite`).
///
/// # Errors
/// A failing statement.
pub async fn insert_users(
    tx: &Transaction<'_>,
    users: &[NewUser],
    hashes: &[String],
    existing: Existing,
) -> anyhow::Result<Counts> {
    let usernames: Vec<&str> = users.iter().map(|u| u.username.as_str()).collect();
    let emails: Vec<&str> = users.iter().map(|u| u.email.as_str()).collect();
    let roles: Vec<&str> = users.iter().map(|u| u.role.as_str()).collect();
    let departments: Vec<&str> = users.iter().map(|u| u.department.as_str()).collect();
    let superusers: Vec<bool> = users.iter().map(|u| u.superuser).collect();
    let active: Vec<bool> = users.iter().map(|u| u.active).collect();
    // Sorted, concurrent seeds take the unique-index locks in one order (no deadlock); with the
    // indexes dropped the table is locked whole, and the sort would only cost.
    let (filter, order, conflict) = match existing {
        Existing::Overwrite => (
            "",
            "ORDER BY u.username",
            "ON CONFLICT (username) DO UPDATE SET email = EXCLUDED.email, hashed_password = EXCLUDED.hashed_password, \
             role_id = EXCLUDED.role_id, department_id = EXCLUDED.department_id, is_superuser = EXCLUDED.is_superuser, \
             is_active = EXCLUDED.is_active RETURNING (xmax = 0)",
        ),
        // Any conflict (username or email) keeps the existing account.
        Existing::Keep => (
            "",
            "ORDER BY u.username",
            "ON CONFLICT DO NOTHING RETURNING true",
        ),
        Existing::KeepUnindexed => (
            "WHERE NOT EXISTS (SELECT 1 FROM users x WHERE x.username = u.username) \
               AND NOT EXISTS (SELECT 1 FROM users x WHERE x.email = u.email)",
            "",
            "RETURNING true",
        ),
    };
    let sql = format!(
        "INSERT INTO users (username, email, hashed_password, role_id, department_id, is_superuser, is_active) \
         SELECT u.username, u.email, u.hash, r.id, d.id, u.su, u.active \
         FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::bool[], $7::bool[]) \
              u(username, email, hash, role, dept, su, active) \
         JOIN roles r ON r.name = u.role JOIN departments d ON d.name = u.dept \
         {filter} {order} {conflict}"
    );
    let rows = tx
        .rows(
            &sql,
            &[
                (&usernames, Type::TEXT_ARRAY),
                (&emails, Type::TEXT_ARRAY),
                (&hashes, Type::TEXT_ARRAY),
                (&roles, Type::TEXT_ARRAY),
                (&departments, Type::TEXT_ARRAY),
                (&superusers, Type::BOOL_ARRAY),
                (&active, Type::BOOL_ARRAY),
            ],
        )
        .await
        .map_err(|e| anyhow::anyhow!(crate::db::describe_error(&e)))
        .context("inserting users")?;
    let inserted = rows.iter().filter(|r| r.get::<_, bool>(0)).count() as u64;
    let updated = rows.len() as u64 - inserted;
    Ok(Counts {
        inserted,
        updated,
        kept: users.len() as u64 - inserted - updated,
        removed: 0,
    })
}

/// Give `users` (already there, kept) a hash of `scheme` where theirs is of another: the scheme
/// was chosen (`seed.password_scheme`), and an account whose hash the backend would verify with
/// another scheme is not what the run reports. Returns how many were rehashed.
///
/// # Errors
/// A failing statement.
pub async fn rehash_other_schemes(
    tx: &Transaction<'_>,
    users: &[NewUser],
    hashes: &[String],
    scheme: Scheme,
) -> anyhow::Result<u64> {
    let usernames: Vec<&str> = users.iter().map(|u| u.username.as_str()).collect();
    let emails: Vec<&str> = users.iter().map(|u| u.email.as_str()).collect();
    let prefixes: &[&str] = match scheme {
        Scheme::Argon2id => &["$argon2id$"],
        Scheme::Bcrypt => &["$2b$", "$2a$", "$2y$"],
    };
    let prefixes: Vec<&str> = prefixes.to_vec();
    tx.exec(
        "UPDATE users SET hashed_password = u.hash \
         FROM unnest($1::text[], $2::text[], $3::text[]) u(username, email, hash) \
         WHERE users.username = u.username AND users.email = u.email \
           AND NOT EXISTS (SELECT 1 FROM unnest($4::text[]) p WHERE starts_with(users.hashed_password, p))",
        &[
            (&usernames, Type::TEXT_ARRAY),
            (&emails, Type::TEXT_ARRAY),
            (&hashes, Type::TEXT_ARRAY),
            (&prefixes, Type::TEXT_ARRAY),
        ],
    )
    .await
    .context("rehashing accounts stored in another scheme")
}

/// Remove the fake users an earlier run made that these flags do not (`--users 30` then
/// `--users 10`: 20), with their usage logs (refresh tokens go with them): the dataset follows
/// the flags. Only rows still in the generated form (username and `username@example.com`) go.
///
/// # Errors
/// A failing statement.
pub async fn remove_other_fake_users(
    tx: &Transaction<'_>,
    earlier: &[NewUser],
    now: &[NewUser],
    accounts: &[NewUser],
) -> anyhow::Result<u64> {
    let keep: HashSet<&str> = now
        .iter()
        .chain(accounts)
        .map(|u| u.username.as_str())
        .collect();
    let gone: Vec<&str> = earlier
        .iter()
        .map(|u| u.username.as_str())
        .filter(|u| !keep.contains(u))
        .collect();
    if gone.is_empty() {
        return Ok(0);
    }
    tx.exec(
        "DELETE FROM usage_logs WHERE user_id IN \
         (SELECT id FROM users WHERE username = ANY($1::text[]) AND email = username || '@example.com')",
        &[(&gone, Type::TEXT_ARRAY)],
    )
    .await
    .context("removing the usage logs of fake users these flags do not make")?;
    tx.exec(
        "DELETE FROM users WHERE username = ANY($1::text[]) AND email = username || '@example.com'",
        &[(&gone, Type::TEXT_ARRAY)],
    )
    .await
    .context("removing fake users these flags do not make")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fake_users_are_deterministic_and_unique() {
        let seeds = Seeds::embedded().expect("seeds");
        let a = fake_users(&seeds, 300, 7);
        let b = fake_users(&seeds, 300, 7);
        assert_eq!(a, b);
        assert_ne!(a, fake_users(&seeds, 300, 8));
        let names: HashSet<&str> = a.iter().map(|u| u.username.as_str()).collect();
        assert_eq!(names.len(), 300);
        assert!(!names.contains("admin"));
        assert!(a.iter().all(|u| u.email.ends_with("@example.com")));
    }

    #[test]
    fn hashes_are_argon2id_phc_strings_that_verify() {
        use argon2::PasswordVerifier as _;
        let params = ArgonParams {
            memory_kib: 1024,
            iterations: 1,
            parallelism: 1,
        };
        let h = hasher(&params).expect("params");
        let hashes = hash_all(
            &Hasher::new(Scheme::Argon2id, &params).expect("params"),
            &["one", "two", "three"],
            2,
        )
        .expect("hash");
        assert_eq!(hashes.len(), 3);
        assert!(hashes[0].starts_with("$argon2id$v=19$m=1024,t=1,p=1$"));
        assert!(h.verify_password(b"two", hashes[1].as_str()).is_ok());
        assert!(h.verify_password(b"one", hashes[1].as_str()).is_err());
    }

    #[test]
    fn bad_argon2_parameters_are_usage_errors() {
        let err = hasher(&ArgonParams {
            memory_kib: 1,
            iterations: 0,
            parallelism: 1,
        })
        .expect_err("refused");
        assert_eq!(crate::error::exit_code(&err), 2);
        assert!(err.to_string().contains("seed.argon2"), "{err}");
    }

    #[test]
    fn bcrypt_hashes_are_2b_at_cost_12_and_verify() {
        let params = ArgonParams {
            memory_kib: 1024,
            iterations: 1,
            parallelism: 1,
        };
        let hashes = hash_all(
            &Hasher::new(Scheme::Bcrypt, &params).expect("bcrypt"),
            &["AdminPassword123"],
            1,
        )
        .expect("hash");
        assert!(hashes[0].starts_with("$2b$12$"), "{}", hashes[0]);
        assert!(bcrypt::verify("AdminPassword123", &hashes[0]).expect("verify"));
        assert!(!bcrypt::verify("wrong", &hashes[0]).expect("verify"));
        assert_eq!(Scheme::of_hash(&hashes[0]), Some(Scheme::Bcrypt));
        assert_eq!(
            Scheme::of_hash("$argon2id$v=19$m=1"),
            Some(Scheme::Argon2id)
        );
        assert_eq!(Scheme::of_hash("plain"), None);
    }
}
