//! The order of the units: a dependency graph over them (what each needs created first, what
//! must be gone before each drop, from `pg_depend` on both sides), sorted topologically with a
//! phase per kind as the tie-break; then each unit settles in a script that runs after
//! everything it needs. Knows no kind's SQL.

use std::collections::{BTreeMap, BTreeSet};

use super::{Direction, Key, Op, Place, Planner, RELATION_KINDS, Step, Unit, key, s, split_member};
use crate::schema::catalog::Catalog;

/// The tie-break among units that are free to go: drops first, then creates in the order an
/// expert writes them.
fn phase(u: &Unit, to: &Catalog) -> u8 {
    if u.op == Op::Drop {
        return 0;
    }
    match u.key.0.as_str() {
        "schema" => 1,
        "extension" => 2,
        "collation" | "type" => 3,
        "function" | "procedure" | "aggregate" => 4,
        "sequence" => 5,
        "table" | "foreign table" => 6,
        "column" => 7,
        "sequence owned" => 8,
        "constraint" => {
            match Planner::meta(to, "constraint", &u.key.1).and_then(|m| s(m, "type")) {
                Some("f") => 11,
                _ => 9,
            }
        }
        "index" => 10,
        "view" | "materialized view" => 12,
        "trigger" => 13,
        "policy" => 14,
        "validate" => 15,
        "comment" => 16,
        "privileges" => 17,
        "owner" => 18,
        "default privileges" => 19,
        _ => 20,
    }
}

/// The object a unit is about, for units that are one part of another object's work.
fn base(k: &Key) -> Key {
    match k.0.as_str() {
        "column loosened" => key("column", &k.1),
        "sequence owned" => key("sequence", &k.1),
        "validate" => key("constraint", &k.1),
        _ => k.clone(),
    }
}

/// Edges `(a, b)`: unit `a` must run before unit `b`.
fn edges(p: &Planner) -> BTreeSet<(usize, usize)> {
    let units = &p.units;
    let mut by_key: BTreeMap<Key, Vec<usize>> = BTreeMap::new();
    for (i, u) in units.iter().enumerate() {
        by_key.entry(base(&u.key)).or_default().push(i);
    }
    let none = Vec::new();
    let units_of = |k: &Key| by_key.get(k).unwrap_or(&none);
    let mut edges: BTreeSet<(usize, usize)> = BTreeSet::new();
    let empty = BTreeSet::new();
    for (i, u) in units.iter().enumerate() {
        let base = base(&u.key);
        let same = units_of(&base).clone();
        if u.op == Op::Drop {
            // Before everything else done to the same object (a recreate, a tightening).
            for &j in &same {
                if j != i && units[j].op != Op::Drop {
                    edges.insert((i, j));
                }
            }
            // After whatever drops or loosens what depended on it (or on its columns).
            let mut covered = vec![base.clone()];
            // What uses a constraint's index uses the constraint.
            covered.extend(Planner::index_of_constraint(p.from, &base));
            if RELATION_KINDS.contains(&base.0.as_str()) {
                covered.extend(
                    Planner::columns_of(p.from, &base.1)
                        .into_iter()
                        .map(|(_, c)| key("column", &c)),
                );
            }
            if base.0 == "column" {
                // A parent's column goes with its copies in partitions and child tables.
                let (table, column) = split_member(&base.1);
                let mut tables = vec![table.to_string()];
                while let Some(t) = tables.pop() {
                    for child in Planner::children(p.from, &t) {
                        covered.push(key("column", &format!("{child}.{column}")));
                        tables.push(child);
                    }
                }
            }
            for (user, deps) in &p.from.deps {
                if covered.iter().any(|c| deps.contains(c)) {
                    // A user dropped with its table (a trigger, a column) is the table's drop.
                    let user = if by_key.contains_key(user) {
                        user.clone()
                    } else if let Some(member) = user
                        .1
                        .strip_prefix("domain ")
                        .filter(|_| user.0 == "constraint")
                    {
                        // A domain's constraint dropped with its domain is the domain's drop.
                        key("type", split_member(member).0)
                    } else if user.0 == "table" {
                        // A partition dropped with its parent (in another schema, say).
                        let mut t = user.clone();
                        for _ in 0..8 {
                            match Planner::parents(p.from, &t.1).first() {
                                Some(parent) if !by_key.contains_key(&t) => {
                                    t = key("table", parent);
                                }
                                _ => break,
                            }
                        }
                        t
                    } else if let Some(with) = p.dropped_with(user) {
                        // A partition's constraint dropped with its parent's constraint or
                        // the partitioned index.
                        with
                    } else {
                        Planner::owner_table(p.from, user)
                            .and_then(|t| Planner::relation_kind(p.from, &t).map(|k| key(k, &t)))
                            .unwrap_or_else(|| user.clone())
                    };
                    for &j in units_of(&user) {
                        if j != i && matches!(units[j].op, Op::Drop | Op::Alter) {
                            edges.insert((j, i));
                        }
                    }
                }
            }
            if let Some(t) = Planner::owner_table(p.from, &base) {
                for kind in RELATION_KINDS {
                    for &j in units_of(&key(kind, &t)) {
                        if units[j].op == Op::Drop && j != i {
                            edges.insert((i, j));
                        }
                    }
                }
            }
            continue;
        }
        // Creates and alters: after what they need.
        let mut needs: BTreeSet<Key> = p.to.deps.get(&base).unwrap_or(&empty).clone();
        needs.extend(u.needs.iter().cloned());
        if let Some(t) = Planner::owner_table(p.to, &base) {
            for kind in RELATION_KINDS {
                needs.insert(key(kind, &t));
            }
            needs.insert(key("column", &format!("{t}.")));
        }
        if base.0 == "column" || base.0 == "index" || base.0 == "constraint" {
            // Columns renamed in this plan come first.
            for new in p.renamed.keys() {
                if let Some(t) = Planner::owner_table(p.to, &base)
                    && split_member(&new.1).0 == t
                {
                    needs.insert(new.clone());
                }
            }
        }
        // A column made with its table is needed through the table's unit; a column a
        // partition or child inherits, through its parent's column (when that one is added).
        let needs: BTreeSet<Key> = needs
            .into_iter()
            .map(|mut d| {
                for _ in 0..8 {
                    if d.0 != "column" || by_key.contains_key(&d) {
                        return d;
                    }
                    let Some(t) = Planner::owner_table(p.to, &d) else {
                        return d;
                    };
                    let inherited = Planner::parent_columns(p.to, &t, split_member(&d.1).1)
                        .into_iter()
                        .next()
                        .map(|c| key("column", &c));
                    match inherited {
                        Some(c) if Planner::automatic(p.to, &d) && by_key.contains_key(&c) => {
                            return c;
                        }
                        Some(c) if Planner::automatic(p.to, &d) => d = c,
                        _ => return key(Planner::relation_kind(p.to, &t).unwrap_or("table"), &t),
                    }
                }
                d
            })
            .collect();
        for d in &needs {
            for &j in units_of(d) {
                if j != i && units[j].op != Op::Drop {
                    edges.insert((j, i));
                }
            }
        }
        for &j in &same {
            if j != i && units[j].op == Op::Create && u.op == Op::Alter {
                edges.insert((j, i));
            }
        }
        // What it takes over from goes first.
        for old in &u.after_drop_of {
            let old = match p.dropped_with(old) {
                Some(with) if !by_key.contains_key(old) => with,
                _ => old.clone(),
            };
            for &j in units_of(&old) {
                if units[j].op == Op::Drop && j != i {
                    edges.insert((j, i));
                }
            }
        }
        // What it says it stops using goes after it (a column with its table).
        for old in &u.stops_using {
            let mut gone = vec![old.clone()];
            if old.0 == "column"
                && let Some(t) = Planner::owner_table(p.from, old)
                && let Some(kind) = Planner::relation_kind(p.from, &t)
            {
                gone.push(key(kind, &t));
            }
            for g in &gone {
                for &j in units_of(g) {
                    if units[j].op == Op::Drop && j != i {
                        edges.insert((i, j));
                    }
                }
            }
        }
        if u.op == Op::Alter {
            // An alter that stops using something comes before that thing's drop.
            for d in p.from.deps.get(&base).unwrap_or(&empty) {
                for &j in units_of(d) {
                    if units[j].op == Op::Drop && j != i {
                        edges.insert((i, j));
                    }
                }
            }
        }
    }
    edges
}

/// The units as ordered steps.
pub(super) fn order(p: &mut Planner) -> Vec<Step> {
    let n = p.units.len();
    let edges = edges(p);
    settle_places(&mut p.units, p.direction, &edges);
    // Kahn's algorithm, lowest (phase, position) first; a cycle is broken at its lowest node.
    let mut indegree = vec![0usize; n];
    let mut out: Vec<Vec<usize>> = vec![Vec::new(); n];
    for &(a, b) in &edges {
        if a != b {
            indegree[b] += 1;
            out[a].push(b);
        }
    }
    // Within a phase, new columns go in the desired schema's order (their attnum), not by name.
    let phases: Vec<(u8, i64)> = p
        .units
        .iter()
        .map(|u| {
            let within = if u.op == Op::Create && u.key.0 == "column" {
                Planner::meta(p.to, "column", &u.key.1)
                    .and_then(|m| m["num"].as_i64())
                    .unwrap_or(0)
            } else {
                0
            };
            (phase(u, p.to), within)
        })
        .collect();
    let mut ready: BTreeSet<((u8, i64), usize)> = (0..n)
        .filter(|&i| indegree[i] == 0)
        .map(|i| (phases[i], i))
        .collect();
    let mut done = vec![false; n];
    let mut order = Vec::with_capacity(n);
    while order.len() < n {
        let next = match ready.pop_first() {
            Some((_, i)) => i,
            None => (0..n)
                .filter(|&i| !done[i])
                .min_by_key(|&i| (phases[i], i))
                .unwrap_or(0),
        };
        if done[next] {
            continue;
        }
        done[next] = true;
        order.push(next);
        for &m in &out[next] {
            indegree[m] = indegree[m].saturating_sub(1);
            if indegree[m] == 0 && !done[m] {
                ready.insert((phases[m], m));
            }
        }
    }
    order
        .into_iter()
        .map(|i| {
            let u = &p.units[i];
            Step {
                action: u.op,
                place: u.place,
                object: format!("{} {}", u.key.0, u.key.1),
                sql: u.sql.clone(),
                lossy: u.lossy.clone(),
                check: u.check.clone(),
                removes: u.op == Op::Drop
                    && base(&u.key) == u.key
                    && !p.to.objects.contains_key(&u.key),
            }
        })
        .collect()
}

/// A script may only need what ran before it: up runs pre, main, post; down runs post, main,
/// pre. Units that would need a later script move into the main one (an index a new foreign key
/// needs is built inside the transaction, not concurrently after it).
fn settle_places(units: &mut [Unit], direction: Direction, edges: &BTreeSet<(usize, usize)>) {
    loop {
        let mut moved = false;
        for &(a, b) in edges {
            let (pa, pb) = (units[a].place, units[b].place);
            let wrong = match direction {
                Direction::Up => pa > pb,
                Direction::Down => {
                    (pa == Place::Main && pb == Place::Post)
                        || (pa == Place::Pre && pb != Place::Pre)
                }
            };
            if wrong {
                let fix = match direction {
                    Direction::Up if pa == Place::Post => a,
                    Direction::Up => b,
                    Direction::Down if pb == Place::Post => b,
                    Direction::Down => a,
                };
                let u = &mut units[fix];
                u.place = Place::Main;
                if let Some(sql) = u.in_transaction.take() {
                    u.sql = sql;
                }
                moved = true;
            }
        }
        if !moved {
            break;
        }
    }
}
