//! The seed files (`seeds/*.toml`): typed, validated, cross-checked. Read from the binary or from
//! `--seeds-dir`.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use anyhow::Context as _;
use serde::Deserialize;

use crate::error;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RolesFile {
    role: Vec<Role>,
}

/// A role row.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Role {
    pub name: String,
    pub description: Option<String>,
    pub permissions: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DepartmentsFile {
    department: Vec<Department>,
}

/// A department row.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Department {
    pub name: String,
    pub description: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct LlmFile {
    llm: Vec<Llm>,
}

/// An LLM configuration row.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Llm {
    pub provider: String,
    pub model_name: String,
    /// The environment variable holding the key; stored as `$NAME`.
    pub api_key_env: Option<String>,
    pub base_url: Option<String>,
    #[serde(default = "yes")]
    pub enabled: bool,
    #[serde(default)]
    pub dev_only: bool,
    pub config: toml::Table,
}

fn yes() -> bool {
    true
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct QuotasFile {
    templates: BTreeMap<String, i64>,
    departments: BTreeMap<String, String>,
}

/// Dev-only settings and accounts.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Dev {
    pub fake_user_password: String,
    pub fake_role_weights: BTreeMap<String, u32>,
    pub usage_days: u32,
    pub account: Vec<Account>,
}

/// A fixed test account.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Account {
    pub username: String,
    pub email: String,
    pub password: String,
    pub role: String,
    pub department: String,
    #[serde(default)]
    pub superuser: bool,
}

/// All seed data, validated.
#[derive(Debug, Clone)]
pub struct Seeds {
    pub roles: Vec<Role>,
    pub departments: Vec<Department>,
    pub llms: Vec<Llm>,
    /// Monthly token limit per department name.
    pub quota_limits: BTreeMap<String, i64>,
    pub dev: Dev,
}

fn parse<T: serde::de::DeserializeOwned>(
    files: &HashMap<String, String>,
    name: &str,
    origin: &str,
) -> anyhow::Result<T> {
    let text = files
        .get(name)
        .ok_or_else(|| error::usage(format!("seed file `{name}` is missing from {origin}")))?;
    toml::from_str(text).map_err(|e| {
        error::usage(format!(
            "seed file `{name}` in {origin} is invalid: {}",
            e.to_string().trim()
        ))
    })
}

impl Seeds {
    /// Parse and cross-check seed files given as (file name, text).
    ///
    /// # Errors
    /// Unknown fields, bad values, duplicates and dangling references, naming the file and entry.
    pub fn from_files(files: &HashMap<String, String>, origin: &str) -> anyhow::Result<Seeds> {
        let roles: RolesFile = parse(files, "roles.toml", origin)?;
        let departments: DepartmentsFile = parse(files, "departments.toml", origin)?;
        let llms: LlmFile = parse(files, "llm_configurations.toml", origin)?;
        let quotas: QuotasFile = parse(files, "quotas.toml", origin)?;
        let dev: Dev = parse(files, "dev.toml", origin)?;
        let bad = |file: &str, msg: String| {
            error::usage(format!("seed file `{file}` in {origin}: {msg}"))
        };

        unique(roles.role.iter().map(|r| r.name.clone()), "role")
            .map_err(|m| bad("roles.toml", m))?;
        unique(
            departments.department.iter().map(|d| d.name.clone()),
            "department",
        )
        .map_err(|m| bad("departments.toml", m))?;
        unique(
            llms.llm
                .iter()
                .map(|l| format!("{}/{}", l.provider, l.model_name)),
            "llm",
        )
        .map_err(|m| bad("llm_configurations.toml", m))?;
        for llm in &llms.llm {
            let entry = format!("{}/{}", llm.provider, llm.model_name);
            if llm.provider != llm.provider.to_lowercase() {
                return Err(bad(
                    "llm_configurations.toml",
                    format!("provider of `{entry}` must be lower-case"),
                ));
            }
            if let Some(var) = &llm.api_key_env
                && !(var
                    .chars()
                    .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
                    && var.starts_with(|c: char| c.is_ascii_uppercase()))
            {
                return Err(bad(
                    "llm_configurations.toml",
                    format!(
                        "api_key_env of `{entry}` must be an environment variable name like OPENAI_API_KEY (never a key itself)"
                    ),
                ));
            }
            for price in ["price_per_1k_prompt", "price_per_1k_completion"] {
                if !llm
                    .config
                    .get(price)
                    .is_some_and(|v| v.as_float().is_some_and(|f| f >= 0.0))
                {
                    return Err(bad(
                        "llm_configurations.toml",
                        format!("config of `{entry}` needs `{price}` as a non-negative number"),
                    ));
                }
            }
        }
        // Two test accounts with one username or email: the second would be dropped by the
        // database's unique index, yet its credentials printed.
        for (field, key) in [("username", 0usize), ("email", 1)] {
            let mut seen: HashMap<String, &str> = HashMap::new();
            for a in &dev.account {
                let value = if key == 0 { &a.username } else { &a.email };
                if let Some(first) = seen.insert(value.to_lowercase(), &a.username) {
                    return Err(bad(
                        "dev.toml",
                        format!(
                            "accounts `{first}` and `{}` have the same {field} `{value}`; each test account needs its own",
                            a.username
                        ),
                    ));
                }
            }
        }
        let mut quota_limits = BTreeMap::new();
        for (department, template) in &quotas.departments {
            if !departments.department.iter().any(|d| &d.name == department) {
                return Err(bad(
                    "quotas.toml",
                    format!(
                        "departments.{department} names a department that departments.toml does not define"
                    ),
                ));
            }
            let limit = quotas.templates.get(template).ok_or_else(|| {
                bad("quotas.toml", format!("departments.{department} uses template `{template}`, which [templates] does not define"))
            })?;
            if *limit < 0 {
                return Err(bad(
                    "quotas.toml",
                    format!("template `{template}` is negative"),
                ));
            }
            quota_limits.insert(department.clone(), *limit);
        }
        for account in &dev.account {
            if !roles.role.iter().any(|r| r.name == account.role) {
                return Err(bad(
                    "dev.toml",
                    format!(
                        "account `{}` names role `{}`, which roles.toml does not define",
                        account.username, account.role
                    ),
                ));
            }
            if !departments
                .department
                .iter()
                .any(|d| d.name == account.department)
            {
                return Err(bad(
                    "dev.toml",
                    format!(
                        "account `{}` names department `{}`, which departments.toml does not define",
                        account.username, account.department
                    ),
                ));
            }
        }
        for role in dev.fake_role_weights.keys() {
            if !roles.role.iter().any(|r| &r.name == role) {
                return Err(bad(
                    "dev.toml",
                    format!(
                        "fake_role_weights names role `{role}`, which roles.toml does not define"
                    ),
                ));
            }
        }
        Ok(Seeds {
            roles: roles.role,
            departments: departments.department,
            llms: llms.llm,
            quota_limits,
            dev,
        })
    }

    /// The seeds built into the binary.
    ///
    /// # Errors
    /// As [`Seeds::from_files`].
    pub fn embedded() -> anyhow::Result<Seeds> {
        let files = crate::embedded::SEEDS
            .iter()
            .map(|(n, t)| ((*n).to_string(), (*t).to_string()))
            .collect();
        Seeds::from_files(&files, "the built-in seeds")
    }

    /// The seeds in a directory.
    ///
    /// # Errors
    /// Unreadable files, or as [`Seeds::from_files`].
    pub fn from_dir(dir: &Path) -> anyhow::Result<Seeds> {
        let mut files = HashMap::new();
        let entries = std::fs::read_dir(dir).map_err(|e| {
            error::usage(format!(
                "cannot read the seeds directory `{}` (from seed.dir / --seeds-dir): {e}",
                dir.display()
            ))
        })?;
        for entry in entries {
            let entry = entry.with_context(|| format!("listing `{}`", dir.display()))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if Path::new(&name).extension().is_some_and(|e| e == "toml") {
                let text = std::fs::read_to_string(entry.path())
                    .with_context(|| format!("reading `{}`", entry.path().display()))?;
                files.insert(name, text);
            }
        }
        Seeds::from_files(&files, &format!("`{}`", dir.display()))
    }
}

fn unique(names: impl Iterator<Item = String>, what: &str) -> Result<(), String> {
    let mut seen = std::collections::HashSet::new();
    for name in names {
        if !seen.insert(name.clone()) {
            return Err(format!("{what} `{name}` is listed twice"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn builtin() -> HashMap<String, String> {
        crate::embedded::SEEDS
            .iter()
            .map(|(n, t)| ((*n).to_string(), (*t).to_string()))
            .collect()
    }

    #[test]
    fn the_built_in_seeds_are_valid() {
        let s = Seeds::embedded().expect("valid");
        assert_eq!(s.roles.len(), 4);
        assert_eq!(s.departments.len(), 6);
        assert_eq!(s.quota_limits["General"], 100_000);
        assert_eq!(s.dev.account.len(), 3);
    }

    #[test]
    fn errors_name_the_file_and_entry() {
        let mut files = builtin();
        files.insert(
            "quotas.toml".into(),
            "[templates]\nsmall = 1\n[departments]\nLegal = \"small\"\n".into(),
        );
        let err = Seeds::from_files(&files, "test")
            .expect_err("dangling")
            .to_string();
        assert!(
            err.contains("quotas.toml") && err.contains("Legal"),
            "{err}"
        );

        let mut files = builtin();
        files.insert(
            "roles.toml".into(),
            "[[role]]\nname = \"x\"\npermissions = []\ncolour = \"red\"\n".into(),
        );
        let err = Seeds::from_files(&files, "test")
            .expect_err("unknown field")
            .to_string();
        assert!(
            err.contains("roles.toml") && err.contains("colour"),
            "{err}"
        );

        let mut files = builtin();
        let llm = files["llm_configurations.toml"].replace(
            "api_key_env = \"OPENAI_API_KEY\"",
            "api_key_env = \"sk-live-123\"",
        );
        files.insert("llm_configurations.toml".into(), llm);
        let err = Seeds::from_files(&files, "test")
            .expect_err("raw key")
            .to_string();
        assert!(err.contains("never a key"), "{err}");
    }
}
