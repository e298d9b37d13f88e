//! The walk's own unit tests (each kind's generator is tested through them and the
//! integration suite).

use super::*;
use serde_json::json;

pub(super) fn cat(objects: &[(&str, &str, &str)], meta: &[(&str, &str, Value)]) -> Catalog {
    Catalog {
        objects: objects
            .iter()
            .map(|(k, n, d)| (key(k, n), (*d).to_string()))
            .collect(),
        meta: meta
            .iter()
            .map(|(k, n, v)| (key(k, n), v.clone()))
            .collect(),
        ..Catalog::default()
    }
}

#[test]
fn enum_values_are_added_in_place_in_a_script_of_their_own() {
    let t = |values: Value| json!({"typtype": "e", "values": values});
    let from = cat(
        &[("type", "state", "ENUM ('a', 'c')")],
        &[("type", "state", t(json!(["a", "c"])))],
    );
    let to = cat(
        &[("type", "state", "ENUM ('a', 'b', 'c', 'd')")],
        &[("type", "state", t(json!(["a", "b", "c", "d"])))],
    );
    let up = plan(&from, &to, "app", Direction::Up);
    assert_eq!(
        up.script(Place::Pre).expect("pre"),
        "ALTER TYPE state ADD VALUE IF NOT EXISTS 'd';\nALTER TYPE state ADD VALUE IF NOT EXISTS 'b' BEFORE 'c';"
    );
    assert!(up.script(Place::Main).is_none());
    let down = plan(&to, &from, "app", Direction::Down);
    let sql = down.script(Place::Pre).expect("down swaps the type");
    assert!(
        sql.contains("CREATE TYPE state AS ENUM ('a', 'c');"),
        "{sql}"
    );
    assert!(
        down.lossy.iter().any(|l| l.contains("'b', 'd'")),
        "{:?}",
        down.lossy
    );
}

#[test]
fn a_dropped_column_is_lossy_and_a_same_shaped_new_one_is_a_rename() {
    let col = |t: &str, n: &str, num: i64| {
        (
            "column",
            format!("{t}.{n}"),
            json!({"table": t, "name": n, "num": num, "type": "text", "notnull": false, "local": true}),
        )
    };
    let (a, b) = (col("users", "nick", 2), col("users", "nickname", 2));
    let from = cat(
        &[
            ("table", "users", "table"),
            ("column", "users.nick", "text NULL"),
        ],
        &[(a.0, &a.1, a.2.clone())],
    );
    let to = cat(
        &[
            ("table", "users", "table"),
            ("column", "users.nickname", "text NULL"),
        ],
        &[(b.0, &b.1, b.2.clone())],
    );
    let up = plan(&from, &to, "app", Direction::Up);
    assert_eq!(
        up.script(Place::Main).expect("main"),
        "ALTER TABLE users RENAME COLUMN nick TO nickname;"
    );
    assert!(up.lossy.is_empty(), "{:?}", up.lossy);
    assert!(up.notes.iter().any(|n| n.contains("guessed a rename")));
    let gone = cat(&[("table", "users", "table")], &[]);
    let up = plan(&from, &gone, "app", Direction::Up);
    assert_eq!(up.lossy, ["column users.nick is dropped with its values"]);
}

#[test]
fn a_key_that_is_not_a_name_is_never_written() {
    // As if description text had reached a key: a note, no SQL.
    let hostile = "k ON users IS NULL;RESET ROLE;ALTER ROLE app SUPERUSER;--";
    let to = cat(&[("schema", hostile, "")], &[]);
    let up = plan(&Catalog::default(), &to, "app", Direction::Up);
    assert!(up.steps.is_empty(), "{:?}", up.steps);
    assert!(
        up.notes
            .iter()
            .any(|n| n.contains("not one the catalog writes"))
    );
}
