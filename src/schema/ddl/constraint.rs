//! Constraints of tables and domains, from the server's `pg_get_constraintdef`. A foreign key or
//! check added to a table that exists is added `NOT VALID` and validated in the script after the
//! transaction (no full scan under ACCESS EXCLUSIVE); a change is a re-make.

use super::{Check, Direction, Generator, Key, Op, Place, Planner, key, s};

pub(super) struct Constraints;

impl Generator for Constraints {
    fn create(&self, p: &mut Planner, k: &Key) {
        let def = p.to.objects[k].clone();
        let Some(member) = p.member(k) else { return };
        let (of, con) = (&member.of, &member.name);
        if k.1.starts_with("domain ") {
            p.unit(
                Op::Create,
                k,
                Place::Main,
                format!("ALTER DOMAIN {of} ADD CONSTRAINT {con} {def};"),
            );
            return;
        }
        let table = Planner::meta(p.to, "constraint", &k.1)
            .and_then(|m| s(m, "on"))
            .unwrap_or_default()
            .to_string();
        let kind = Planner::meta(p.to, "constraint", &k.1)
            .and_then(|m| s(m, "type"))
            .unwrap_or_default()
            .to_string();
        let existing = !p.table_is_new(&table) && !Planner::is_partitioned(p.to, &table);
        let check = existing.then(|| Check::Constraint {
            table: of.clone(),
            def: def.clone(),
            rows: p.converted_rows(&table, of),
        });
        if p.direction == Direction::Up
            && !p.options.one_transaction
            && existing
            && matches!(kind.as_str(), "f" | "c")
            && !def.ends_with("NOT VALID")
        {
            // Added without a full-table scan under ACCESS EXCLUSIVE; checked afterwards.
            p.unit(
                Op::Create,
                k,
                Place::Main,
                format!("ALTER TABLE {of} ADD CONSTRAINT {con} {def} NOT VALID;"),
            );
            let unit = p
                .unit(
                    Op::Create,
                    &key("validate", &k.1),
                    Place::Post,
                    format!("ALTER TABLE {of} VALIDATE CONSTRAINT {con};"),
                )
                .needing(vec![k.clone()]);
            if let Some(c) = check {
                unit.check(c);
            }
        } else {
            let unit = p.unit(
                Op::Create,
                k,
                Place::Main,
                format!("ALTER TABLE {of} ADD CONSTRAINT {con} {def};"),
            );
            if let Some(c) = check {
                unit.check(c);
            }
        }
    }

    fn drop(&self, p: &mut Planner, k: &Key) {
        let Some(member) = p.member(k) else { return };
        let word = if k.1.starts_with("domain ") {
            "DOMAIN"
        } else {
            "TABLE"
        };
        p.unit(
            Op::Drop,
            k,
            Place::Main,
            format!(
                "ALTER {word} {} DROP CONSTRAINT {};",
                member.of, member.name
            ),
        );
    }
}
