//! Owners: `ALTER <target> OWNER TO role`. An owner entry never disappears alone (it goes with
//! its object), and new objects belong to the role that runs the migration already.

use super::target::{object_of, target};
use super::{Generator, Key, Op, Place, Planner};
use crate::db::ident::Ident;

pub(super) struct Owners;

impl Generator for Owners {
    fn create(&self, p: &mut Planner, k: &Key) {
        let role = p.to.objects[k].clone();
        if role != p.role {
            write(p, k, &role);
        }
    }

    fn drop(&self, _p: &mut Planner, _k: &Key) {}

    fn alter(&self, p: &mut Planner, k: &Key) {
        let role = p.to.objects[k].clone();
        write(p, k, &role);
    }
}

/// Give the object of owner entry `k` to `role` (a role name as `pg_roles` holds it).
pub(super) fn write(p: &mut Planner, k: &Key, role: &str) {
    let Some((object, on)) =
        object_of(p.to, "owner", &k.1).and_then(|o| Some((o.clone(), target(p.to, &o, "owner")?)))
    else {
        p.note(format!(
            "the owner of {} is not written by the tool: change it by hand",
            k.1
        ));
        return;
    };
    p.unit(
        Op::Alter,
        k,
        Place::Main,
        format!("ALTER {on} OWNER TO {};", Ident::new(role)),
    )
    .needing(vec![object]);
}
