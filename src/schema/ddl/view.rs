//! Views and materialized views: created from the server's `pg_get_viewdef`, re-made (drop and
//! create) when their definition changes or what they read is re-made.

use super::{Generator, Key, Op, Place, Planner, s, strings};

pub(super) struct Views;

impl Generator for Views {
    fn create(&self, p: &mut Planner, k: &Key) {
        let Some(name) = p.name(k) else { return };
        let m = Planner::meta_or_null(p.to, "rel", &k.1);
        let def = s(&m, "viewdef").unwrap_or("").trim().trim_end_matches(';');
        let options = strings(&m, "options");
        let with = if options.is_empty() {
            String::new()
        } else {
            format!(" WITH ({})", options.join(", "))
        };
        let sql = if k.0 == "view" {
            format!("CREATE VIEW {name}{with} AS\n{def};")
        } else {
            format!("CREATE MATERIALIZED VIEW {name}{with} AS\n{def}\nWITH DATA;")
        };
        p.unit(Op::Create, k, Place::Main, sql);
    }

    fn drop(&self, p: &mut Planner, k: &Key) {
        let Some(name) = p.name(k) else { return };
        let word = if k.0 == "view" {
            "VIEW"
        } else {
            "MATERIALIZED VIEW"
        };
        p.unit(Op::Drop, k, Place::Main, format!("DROP {word} {name};"));
    }
}
