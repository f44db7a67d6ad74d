//! The split of each API's cap among the live holders (pure: every holder runs it on the same
//! leases and arrives at the same shares, so no coordinator is needed).
//!
//! Fairness is max-min over groups first (an import run is one group however many chunks it has
//! running, so a run with ten children does not crowd out a CLI check), then max-min among a
//! group's holders. A holder that would raise its rate only takes what the others' published
//! grants leave under the cap: the others shrink to their fair shares on their own heartbeats,
//! and until then the sum of the rates in force never exceeds the cap.

use std::collections::BTreeMap;

use crate::{HolderId, Lease, Rates};

/// Max-min fair allocation of `caps` among `leases`, returning the grant of `me` for every API
/// in `caps` or in its demand.
///
/// Per API: the groups' demands (Σ of their holders') are water-filled up to the cap, then each
/// group's share is water-filled among its holders. `me` gets its fair share at once when that
/// does not raise its published grant; a raise (a newcomer's first grant, or a share freed by a
/// holder that left) is limited to the cap less the others' published grants, so joining never
/// overshoots, and it reaches the fair share on the next heartbeat. Alone, a holder gets its
/// whole demand up to the cap at once.
///
/// An API missing from `caps` has no account-wide budget here: `me` gets its demand. Negative or
/// non-finite numbers count as 0. When `me` has no lease in `leases` it gets 0 for every capped
/// API (it has published nothing the others could make room for).
pub fn allocate(caps: &Rates, leases: &[Lease], me: &HolderId) -> Rates {
    let Some(mine) = leases.iter().find(|l| &l.id == me) else {
        return caps.keys().map(|api| (api.clone(), 0.0)).collect();
    };
    let mut grants = Rates::new();
    for (api, demand) in &mine.demand {
        if !caps.contains_key(api) {
            grants.insert(api.clone(), sane(*demand));
        }
    }
    for (api, cap) in caps {
        grants.insert(api.clone(), grant_for(api, sane(*cap), leases, mine));
    }
    grants
}

/// `me`'s grant of one API.
fn grant_for(api: &str, cap: f64, leases: &[Lease], mine: &Lease) -> f64 {
    let fair = fair_share(api, cap, leases, &mine.id);
    let published = rate(&mine.granted, api);
    if fair <= published {
        return fair;
    }
    let others: f64 = leases
        .iter()
        .filter(|l| l.id != mine.id)
        .map(|l| rate(&l.granted, api))
        .sum();
    // Never below what is already published (it is in force), never above the fair share.
    (cap - others).min(fair).max(published)
}

/// `me`'s max-min fair share of `cap` (groups first, then holders within a group).
fn fair_share(api: &str, cap: f64, leases: &[Lease], me: &HolderId) -> f64 {
    // Group name -> (holder name -> demand); BTreeMaps keep the order, and so the float sums,
    // the same in every holder.
    let mut groups: BTreeMap<&str, BTreeMap<&str, f64>> = BTreeMap::new();
    for lease in leases {
        let demand = rate(&lease.demand, api);
        if demand > 0.0 {
            groups
                .entry(lease.id.group.as_str())
                .or_default()
                .insert(lease.id.holder.as_str(), demand);
        }
    }
    let Some(holders) = groups.get(me.group.as_str()) else {
        return 0.0;
    };
    if !holders.contains_key(me.holder.as_str()) {
        return 0.0;
    }
    let group_demands: Vec<(&str, f64)> = groups
        .iter()
        .map(|(name, holders)| (*name, holders.values().sum()))
        .collect();
    let group_share = water_fill(&group_demands, cap)
        .into_iter()
        .find(|(name, _)| *name == me.group)
        .map_or(0.0, |(_, share)| share);
    let holder_demands: Vec<(&str, f64)> = holders.iter().map(|(n, d)| (*n, *d)).collect();
    water_fill(&holder_demands, group_share)
        .into_iter()
        .find(|(name, _)| *name == me.holder)
        .map_or(0.0, |(_, share)| share)
}

/// Max-min fair shares of `capacity` among `demands`: the smallest demands are met in full, and
/// the rest split what is left equally.
fn water_fill<'a>(demands: &[(&'a str, f64)], capacity: f64) -> Vec<(&'a str, f64)> {
    let mut order: Vec<(&'a str, f64)> = demands.to_vec();
    order.sort_by(|a, b| a.1.total_cmp(&b.1).then(a.0.cmp(b.0)));
    let mut left = capacity.max(0.0);
    let mut shares = Vec::with_capacity(order.len());
    let count = order.len();
    for (i, (name, demand)) in order.into_iter().enumerate() {
        let level = left / (count - i) as f64;
        let share = demand.min(level);
        left = (left - share).max(0.0);
        shares.push((name, share));
    }
    shares
}

/// A rate as a usable number: missing, negative or non-finite is 0.
fn rate(rates: &Rates, api: &str) -> f64 {
    rates.get(api).copied().map_or(0.0, sane)
}

fn sane(x: f64) -> f64 {
    if x.is_finite() && x > 0.0 { x } else { 0.0 }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const REGISTER: &str = "RegisterCertificateWithoutCA";
    const ATTACH: &str = "AttachThingPrincipal";

    fn id(group: &str, holder: &str) -> HolderId {
        HolderId {
            group: group.into(),
            holder: holder.into(),
        }
    }

    fn rates(pairs: &[(&str, f64)]) -> Rates {
        pairs.iter().map(|(k, v)| (k.to_string(), *v)).collect()
    }

    fn lease(group: &str, holder: &str, demand: f64, granted: f64) -> Lease {
        Lease {
            id: id(group, holder),
            demand: rates(&[(REGISTER, demand)]),
            granted: rates(&[(REGISTER, granted)]),
            expires_at: 100,
        }
    }

    fn caps(cap: f64) -> Rates {
        rates(&[(REGISTER, cap)])
    }

    fn grant(caps: &Rates, leases: &[Lease], group: &str, holder: &str) -> f64 {
        allocate(caps, leases, &id(group, holder))[REGISTER]
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-9
    }

    #[test]
    fn alone_takes_its_whole_demand_up_to_the_cap_at_once() {
        let leases = [lease("run-a", "chunk-00000", 100.0, 0.0)];
        assert!(close(
            grant(&caps(13.5), &leases, "run-a", "chunk-00000"),
            13.5
        ));
        let leases = [lease("run-a", "chunk-00000", 4.0, 0.0)];
        assert!(close(
            grant(&caps(13.5), &leases, "run-a", "chunk-00000"),
            4.0
        ));
    }

    #[test]
    fn two_equal_groups_split_the_cap() {
        let leases = [
            lease("run-a", "chunk-00000", 20.0, 5.0),
            lease("run-b", "chunk-00000", 20.0, 5.0),
        ];
        for group in ["run-a", "run-b"] {
            assert!(close(
                grant(&caps(10.0), &leases, group, "chunk-00000"),
                5.0
            ));
        }
    }

    #[test]
    fn a_small_demand_is_met_and_the_rest_goes_to_the_big_one() {
        let leases = [
            lease("run-a", "chunk-00000", 2.0, 2.0),
            lease("run-b", "chunk-00000", 20.0, 8.0),
        ];
        assert!(close(
            grant(&caps(10.0), &leases, "run-a", "chunk-00000"),
            2.0
        ));
        assert!(close(
            grant(&caps(10.0), &leases, "run-b", "chunk-00000"),
            8.0
        ));
    }

    #[test]
    fn groups_share_equally_however_many_holders_they_have() {
        // A run with three chunks against a CLI command: half each, the run's half in thirds.
        let leases = [
            lease("run-a", "chunk-00000", 10.0, 2.0),
            lease("run-a", "chunk-00001", 10.0, 2.0),
            lease("run-a", "chunk-00002", 10.0, 2.0),
            lease("cli-1", "cli", 10.0, 6.0),
        ];
        let cap = caps(12.0);
        for chunk in ["chunk-00000", "chunk-00001", "chunk-00002"] {
            assert!(close(grant(&cap, &leases, "run-a", chunk), 2.0));
        }
        assert!(close(grant(&cap, &leases, "cli-1", "cli"), 6.0));
    }

    #[test]
    fn within_a_group_a_small_holder_leaves_the_rest_to_the_others() {
        let leases = [
            lease("run-a", "chunk-00000", 1.0, 1.0),
            lease("run-a", "chunk-00001", 10.0, 4.5),
            lease("run-a", "chunk-00002", 10.0, 4.5),
        ];
        let cap = caps(10.0);
        assert!(close(grant(&cap, &leases, "run-a", "chunk-00000"), 1.0));
        assert!(close(grant(&cap, &leases, "run-a", "chunk-00001"), 4.5));
        assert!(close(grant(&cap, &leases, "run-a", "chunk-00002"), 4.5));
    }

    #[test]
    fn a_newcomer_takes_only_what_the_others_leave() {
        // run-a runs at the whole cap; run-b joins: nothing is free yet.
        let mut leases = vec![
            lease("run-a", "chunk-00000", 20.0, 10.0),
            lease("run-b", "chunk-00000", 20.0, 0.0),
        ];
        assert!(close(
            grant(&caps(10.0), &leases, "run-b", "chunk-00000"),
            0.0
        ));
        // run-a's next heartbeat shrinks it to its fair share at once...
        let a = grant(&caps(10.0), &leases, "run-a", "chunk-00000");
        assert!(close(a, 5.0));
        // ...and once it has published that, the newcomer takes the rest.
        leases[0].granted = rates(&[(REGISTER, a)]);
        assert!(close(
            grant(&caps(10.0), &leases, "run-b", "chunk-00000"),
            5.0
        ));
    }

    #[test]
    fn a_newcomer_with_some_room_takes_the_room_not_its_fair_share() {
        let leases = [
            lease("run-a", "chunk-00000", 20.0, 7.0),
            lease("run-b", "chunk-00000", 20.0, 0.0),
        ];
        assert!(close(
            grant(&caps(10.0), &leases, "run-b", "chunk-00000"),
            3.0
        ));
    }

    #[test]
    fn a_freed_share_is_taken_without_overshooting_the_others_published_grants() {
        // run-c left; run-a's fair share rises to 5 but run-b still publishes 5 of its old...
        let leases = [
            lease("run-a", "chunk-00000", 20.0, 3.0),
            lease("run-b", "chunk-00000", 20.0, 6.0),
        ];
        assert!(close(
            grant(&caps(10.0), &leases, "run-a", "chunk-00000"),
            4.0
        ));
        // ...and run-b drops to 5 on its own heartbeat.
        assert!(close(
            grant(&caps(10.0), &leases, "run-b", "chunk-00000"),
            5.0
        ));
    }

    #[test]
    fn caps_are_per_api_and_independent() {
        let two = rates(&[(REGISTER, 10.0), (ATTACH, 90.0)]);
        let a = Lease {
            id: id("run-a", "chunk-00000"),
            demand: rates(&[(REGISTER, 20.0), (ATTACH, 20.0)]),
            granted: rates(&[(REGISTER, 5.0), (ATTACH, 20.0)]),
            expires_at: 100,
        };
        // run-b only uses REGISTER.
        let b = lease("run-b", "chunk-00000", 20.0, 5.0);
        let grants = allocate(&two, &[a, b], &id("run-a", "chunk-00000"));
        assert!(close(grants[REGISTER], 5.0));
        assert!(close(grants[ATTACH], 20.0));
    }

    #[test]
    fn apis_without_a_cap_get_their_demand_and_capped_apis_without_demand_get_zero() {
        let a = Lease {
            id: id("cli-1", "cli"),
            demand: rates(&[("ListThings", 7.0)]),
            granted: Rates::new(),
            expires_at: 100,
        };
        let grants = allocate(&caps(10.0), &[a], &id("cli-1", "cli"));
        assert!(close(grants["ListThings"], 7.0));
        assert!(close(grants[REGISTER], 0.0));
    }

    #[test]
    fn a_holder_without_a_lease_gets_nothing() {
        let leases = [lease("run-a", "chunk-00000", 20.0, 5.0)];
        assert!(close(
            grant(&caps(10.0), &leases, "run-b", "chunk-00000"),
            0.0
        ));
    }

    #[test]
    fn bad_numbers_count_as_zero() {
        let leases = [
            lease("run-a", "chunk-00000", f64::NAN, f64::INFINITY),
            lease("run-b", "chunk-00000", 20.0, 0.0),
            lease("run-c", "chunk-00000", -3.0, -3.0),
        ];
        assert!(close(
            grant(&caps(10.0), &leases, "run-b", "chunk-00000"),
            10.0
        ));
        assert!(close(
            grant(&caps(f64::NAN), &leases, "run-b", "chunk-00000"),
            0.0
        ));
    }

    fn arb_leases() -> impl Strategy<Value = Vec<Lease>> {
        proptest::collection::vec((0usize..3, 0usize..3, 0.0f64..30.0, 0.0f64..30.0), 1..8)
            .prop_map(|rows| {
                let mut seen = std::collections::BTreeSet::new();
                rows.into_iter()
                    .filter(|(g, h, _, _)| seen.insert((*g, *h)))
                    .map(|(g, h, d, gr)| lease(&format!("g{g}"), &format!("h{h}"), d, gr))
                    .collect()
            })
    }

    proptest! {
        #[test]
        fn fair_shares_fit_the_cap_and_the_demands(leases in arb_leases(), cap in 0.0f64..40.0) {
            let mut total = 0.0;
            for l in &leases {
                let share = fair_share(REGISTER, cap, &leases, &l.id);
                prop_assert!(share <= rate(&l.demand, REGISTER) + 1e-9);
                total += share;
            }
            prop_assert!(total <= cap + 1e-9);
            // Nothing is wasted: either the cap is used up or every demand is met.
            let demand: f64 = leases.iter().map(|l| rate(&l.demand, REGISTER)).sum();
            prop_assert!((total - demand.min(cap)).abs() < 1e-6, "{total} vs {demand} / {cap}");
        }

        #[test]
        fn a_raise_never_overshoots(mut leases in arb_leases(), cap in 0.0f64..40.0) {
            // Scale the published grants so that they fit the cap, as they do once settled.
            let sum: f64 = leases.iter().map(|l| rate(&l.granted, REGISTER)).sum();
            if sum > cap {
                for l in &mut leases {
                    let scaled = rate(&l.granted, REGISTER) * cap / sum;
                    l.granted.insert(REGISTER.into(), scaled);
                }
            }
            let published: f64 = leases.iter().map(|l| rate(&l.granted, REGISTER)).sum();
            for l in &leases {
                let mine = grant(&caps(cap), &leases, &l.id.group, &l.id.holder);
                let others = published - rate(&l.granted, REGISTER);
                prop_assert!(others + mine <= cap + 1e-9, "{others} + {mine} > {cap}");
            }
        }
    }
}
