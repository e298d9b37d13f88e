//! Comments: `COMMENT ON <target> IS '...'`, the target built from the commented object's key
//! (never from description text), the text as a literal.

use super::target::{object_of, target};
use super::{Generator, Key, Op, Place, Planner};
use crate::db::quote_literal;

pub(super) struct Comments;

impl Generator for Comments {
    fn create(&self, p: &mut Planner, k: &Key) {
        let text = p.to.objects[k].clone();
        write(p, k, Some(&text));
    }

    fn drop(&self, p: &mut Planner, k: &Key) {
        write(p, k, None);
    }

    fn alter(&self, p: &mut Planner, k: &Key) {
        self.create(p, k);
    }
}

/// Set (`Some`) or remove (`None`) the comment `k`.
pub(super) fn write(p: &mut Planner, k: &Key, text: Option<&str>) {
    let cat = p.holder(k);
    let Some((object, on)) = object_of(cat, "comment", &k.1)
        .and_then(|o| Some((o.clone(), target(cat, &o, "comment")?)))
    else {
        p.note(format!(
            "comment on {} is not written by the tool: add it by hand",
            k.1
        ));
        return;
    };
    let value = text.map_or("NULL".to_string(), quote_literal);
    let op = if text.is_some() { Op::Create } else { Op::Drop };
    p.unit(op, k, Place::Main, format!("COMMENT ON {on} IS {value};"))
        .needing(vec![object]);
}
