//! What must run: a pure function of (applied, available, target). No I/O here.

use std::collections::BTreeMap;

use super::source::Migration;

/// A row of the ledger, as far as planning cares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied {
    pub version: i64,
    pub name: String,
    pub checksum: String,
}

/// Where to go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// Apply pending migrations up to and including a version (`None`: head).
    Up(Option<i64>),
    /// Revert down to (not including) a version: everything above it is reverted.
    DownTo(i64),
    /// Revert the last N applied migrations.
    DownSteps(u32),
    /// Revert everything.
    Base,
}

/// Which way a script goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    Up,
    Down,
}

/// One script to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Step {
    pub version: i64,
    pub direction: Direction,
}

/// Something wrong with the ledger against the files.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Problem {
    #[error(
        "migration {version:04} `{name}` was edited after it was applied (checksum differs); restore `{file}` to its applied content and put the change in a new migration (`aidock-provision migrate new`)"
    )]
    Edited {
        version: i64,
        name: String,
        file: String,
    },
    #[error(
        "the database has migration {version:04} `{name}` applied, but this binary does not know it; the database is newer than these migration files: use a newer aidock-provision or the right --migrations-dir"
    )]
    Unknown { version: i64, name: String },
    #[error(
        "migration {version:04} `{name}` is pending but a later one ({later:04}) is already applied; migrations must apply in order: renumber `{file}` above {later:04}"
    )]
    Gap {
        version: i64,
        name: String,
        file: String,
        later: i64,
    },
    #[error(
        "there is no migration {missing:04} between {before:04} and {after:04} `{name}`: migrations are numbered without gaps, so nothing was applied; restore {missing:04}, or renumber `{file}` to {missing:04}"
    )]
    Missing {
        missing: i64,
        before: i64,
        after: i64,
        name: String,
        file: String,
    },
}

/// Why a plan cannot be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Problem(#[from] Problem),
    #[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"))]
    Problems(Vec<Problem>),
    #[error(
        "there is no migration {0:04} among the migration files; `aidock-provision migrate status` lists them"
    )]
    NoSuchVersion(i64),
    #[error(
        "the database is at {current:04}, above the requested {target:04}; use `aidock-provision migrate down --to {target}` to go back"
    )]
    Backwards { current: i64, target: i64 },
    #[error(
        "migration {version:04} `{name}` has no down script, so it cannot be reverted; add `{version:04}_{name}.down.sql`"
    )]
    NoDownScript { version: i64, name: String },
}

/// Every problem between the ledger and the files (for `status`; `plan` stops at the first).
#[must_use]
pub fn problems(applied: &[Applied], available: &[Migration]) -> Vec<Problem> {
    let files: BTreeMap<i64, &Migration> = available.iter().map(|m| (m.version, m)).collect();
    let mut out = Vec::new();
    for a in applied {
        match files.get(&a.version) {
            None => out.push(Problem::Unknown {
                version: a.version,
                name: a.name.clone(),
            }),
            Some(m) if m.up.checksum != a.checksum => out.push(Problem::Edited {
                version: a.version,
                name: m.name.clone(),
                file: m.up.file.clone(),
            }),
            Some(_) => {}
        }
    }
    // A hole in the numbering (0001 and 0003, no 0002): applying past it would make a 0002
    // added later an out-of-order migration that can never run.
    let mut versions: Vec<&Migration> = available.iter().collect();
    versions.sort_by_key(|m| m.version);
    for pair in versions.windows(2) {
        if pair[1].version > pair[0].version + 1 {
            out.push(Problem::Missing {
                missing: pair[0].version + 1,
                before: pair[0].version,
                after: pair[1].version,
                name: pair[1].name.clone(),
                file: pair[1].up.file.clone(),
            });
        }
    }
    // Gaps are measured against the newest applied migration we know; an unknown newer one is
    // reported as such, not as a gap under every pending file.
    let latest = applied
        .iter()
        .map(|a| a.version)
        .filter(|v| files.contains_key(v))
        .max();
    if let Some(latest) = latest {
        let applied_versions: Vec<i64> = applied.iter().map(|a| a.version).collect();
        for m in available {
            if m.version < latest && !applied_versions.contains(&m.version) {
                out.push(Problem::Gap {
                    version: m.version,
                    name: m.name.clone(),
                    file: m.up.file.clone(),
                    later: latest,
                });
            }
        }
    }
    out
}

/// The steps to reach `target`, in order.
///
/// # Errors
/// Any [`Problem`] (up refuses to run past one), an unknown target version, a target below
/// the current version, or a missing down script.
pub fn plan(
    applied: &[Applied],
    available: &[Migration],
    target: Target,
) -> Result<Vec<Step>, Error> {
    let found = problems(applied, available);
    let current = applied.iter().map(|a| a.version).max();
    match target {
        Target::Up(to) => {
            if found.len() == 1 {
                return Err(found.into_iter().next().expect("one").into());
            }
            if !found.is_empty() {
                return Err(Error::Problems(found));
            }
            if let Some(to) = to {
                if !available.iter().any(|m| m.version == to) {
                    return Err(Error::NoSuchVersion(to));
                }
                if let Some(current) = current.filter(|c| *c > to) {
                    return Err(Error::Backwards {
                        current,
                        target: to,
                    });
                }
            }
            Ok(available
                .iter()
                .filter(|m| current.is_none_or(|c| m.version > c))
                .filter(|m| to.is_none_or(|t| m.version <= t))
                .map(|m| Step {
                    version: m.version,
                    direction: Direction::Up,
                })
                .collect())
        }
        Target::DownTo(_) | Target::DownSteps(_) | Target::Base => {
            if let Target::DownTo(to) = target
                && to != 0
                && !available.iter().any(|m| m.version == to)
            {
                return Err(Error::NoSuchVersion(to));
            }
            let mut versions: Vec<i64> = applied.iter().map(|a| a.version).collect();
            versions.sort_unstable_by(|a, b| b.cmp(a));
            let chosen: Vec<i64> = match target {
                Target::DownTo(to) => versions.into_iter().filter(|v| *v > to).collect(),
                Target::DownSteps(n) => versions.into_iter().take(n as usize).collect(),
                _ => versions,
            };
            let mut steps = Vec::new();
            for version in chosen {
                // Reverting needs the file, and the file must be what was applied.
                if let Some(p) = found.iter().find(|p| match p {
                    Problem::Edited { version: v, .. } | Problem::Unknown { version: v, .. } => {
                        *v == version
                    }
                    Problem::Gap { .. } | Problem::Missing { .. } => false,
                }) {
                    return Err(p.clone().into());
                }
                let m = available
                    .iter()
                    .find(|m| m.version == version)
                    .expect("known: unknown versions were reported above");
                if m.down.is_none() {
                    return Err(Error::NoDownScript {
                        version,
                        name: m.name.clone(),
                    });
                }
                steps.push(Step {
                    version,
                    direction: Direction::Down,
                });
            }
            Ok(steps)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::migrate::source::from_files;

    fn available(versions: &[i64]) -> Vec<Migration> {
        let files: Vec<(String, String)> = versions
            .iter()
            .flat_map(|v| {
                [
                    (format!("{v:04}_m{v}.up.sql"), format!("up {v}")),
                    (format!("{v:04}_m{v}.down.sql"), format!("down {v}")),
                ]
            })
            .collect();
        from_files(files.iter().map(|(n, t)| (n.as_str(), t.clone())), "test").expect("valid")
    }

    fn applied(available: &[Migration], versions: &[i64]) -> Vec<Applied> {
        versions
            .iter()
            .map(|v| {
                let m = available.iter().find(|m| m.version == *v).expect("known");
                Applied {
                    version: *v,
                    name: m.name.clone(),
                    checksum: m.up.checksum.clone(),
                }
            })
            .collect()
    }

    fn ups(steps: &[Step]) -> Vec<i64> {
        assert!(steps.iter().all(|s| s.direction == Direction::Up));
        steps.iter().map(|s| s.version).collect()
    }

    fn downs(steps: &[Step]) -> Vec<i64> {
        assert!(steps.iter().all(|s| s.direction == Direction::Down));
        steps.iter().map(|s| s.version).collect()
    }

    #[test]
    fn pending_up_to_head_or_target() {
        let av = available(&[1, 2, 3]);
        assert_eq!(
            ups(&plan(&[], &av, Target::Up(None)).expect("plan")),
            [1, 2, 3]
        );
        let ap = applied(&av, &[1]);
        assert_eq!(
            ups(&plan(&ap, &av, Target::Up(None)).expect("plan")),
            [2, 3]
        );
        assert_eq!(
            ups(&plan(&ap, &av, Target::Up(Some(2))).expect("plan")),
            [2]
        );
        let all = applied(&av, &[1, 2, 3]);
        assert!(plan(&all, &av, Target::Up(None)).expect("plan").is_empty());
        assert_eq!(
            plan(&all, &av, Target::Up(Some(1))),
            Err(Error::Backwards {
                current: 3,
                target: 1
            })
        );
        assert_eq!(
            plan(&[], &av, Target::Up(Some(9))),
            Err(Error::NoSuchVersion(9))
        );
    }

    #[test]
    fn edited_unknown_and_gaps_are_refused_by_up() {
        let av = available(&[1, 2, 3]);
        let mut ap = applied(&av, &[1, 2]);
        ap[0].checksum = "0".repeat(64);
        assert!(matches!(
            plan(&ap, &av, Target::Up(None)),
            Err(Error::Problem(Problem::Edited { version: 1, .. }))
        ));

        let mut ap = applied(&av, &[1]);
        ap.push(Applied {
            version: 7,
            name: "future".into(),
            checksum: "x".into(),
        });
        assert!(matches!(
            plan(&ap, &av, Target::Up(None)),
            Err(Error::Problem(Problem::Unknown { version: 7, .. }))
        ));

        let ap = applied(&av, &[1, 3]);
        assert!(matches!(
            plan(&ap, &av, Target::Up(None)),
            Err(Error::Problem(Problem::Gap {
                version: 2,
                later: 3,
                ..
            }))
        ));
        assert_eq!(problems(&ap, &av).len(), 1);
    }

    #[test]
    fn down_targets() {
        let av = available(&[1, 2, 3]);
        let ap = applied(&av, &[1, 2, 3]);
        assert_eq!(
            downs(&plan(&ap, &av, Target::DownSteps(1)).expect("plan")),
            [3]
        );
        assert_eq!(
            downs(&plan(&ap, &av, Target::DownTo(1)).expect("plan")),
            [3, 2]
        );
        assert_eq!(
            downs(&plan(&ap, &av, Target::Base).expect("plan")),
            [3, 2, 1]
        );
        assert_eq!(
            downs(&plan(&ap, &av, Target::DownTo(0)).expect("plan")),
            [3, 2, 1]
        );
        assert!(plan(&[], &av, Target::Base).expect("plan").is_empty());
        assert_eq!(
            plan(&ap, &av, Target::DownTo(8)),
            Err(Error::NoSuchVersion(8))
        );
    }

    #[test]
    fn down_refuses_an_edited_script_and_a_missing_down_file() {
        let av = available(&[1, 2]);
        let mut ap = applied(&av, &[1, 2]);
        ap[1].checksum = "0".repeat(64);
        assert!(matches!(
            plan(&ap, &av, Target::DownSteps(1)),
            Err(Error::Problem(Problem::Edited { version: 2, .. }))
        ));
        // Reverting only the untouched one below is not possible without passing 2 first,
        // but DownSteps(1) from a clean state is fine:
        let ap = applied(&av, &[1, 2]);
        let mut no_down = av.clone();
        no_down[1].down = None;
        assert_eq!(
            plan(&ap, &no_down, Target::DownSteps(1)),
            Err(Error::NoDownScript {
                version: 2,
                name: "m2".into()
            })
        );
    }

    #[test]
    fn duplicates_are_refused_when_reading_files() {
        let err = from_files(
            [
                ("0001_a.up.sql", String::new()),
                ("0001_b.up.sql", String::new()),
            ],
            "test",
        )
        .expect_err("duplicate");
        assert!(err.to_string().contains("appears twice"));
    }

    #[test]
    fn a_hole_in_the_numbering_is_refused_before_anything_runs() {
        let files = available(&[1, 3]);
        let err = plan(&[], &files, Target::Up(None)).expect_err("a hole");
        assert!(
            err.to_string()
                .contains("no migration 0002 between 0001 and 0003"),
            "{err}"
        );
        let err = plan(&applied(&files, &[1]), &files, Target::Up(None)).expect_err("still");
        assert!(
            err.to_string().contains("renumber `0003_m3.up.sql`"),
            "{err}"
        );
    }
}
