//! Ranking candidates by ETA, and suggesting swaps.
//!
//! **Ranking.** The spatial index yields available units of a kind nearest
//! first. The ranking score is the ETA (learned or default speed, see
//! `docs/eta.md`) plus a penalty for a stale fix; it is not monotone in
//! distance, so the walk goes on until the next unit's *lower bound* (its
//! distance at the fastest speed any bucket may give) cannot beat the k-th
//! best score. The result is the exact top-k by score, not "the k nearest,
//! re-sorted". A unit whose fix is older than `fix.exclude_after_s` is left
//! out and listed with the reason.
//!
//! **Home district** (`dispatch_policy = "home_district"`, the old way,
//! a baseline): the available units of the kind whose `home_district` is
//! the incident's district are ranked by the same score, nearest first by
//! a scan of the units (they are few, and the index knows no districts).
//! If they are fewer than asked for, the list is completed with the best
//! of the nearest-by-ETA ranking from elsewhere, after them, each reason
//! saying it is a neighbour's unit. Priority 1 takes the first units of the
//! list, so it follows the policy.
//!
//! **Swaps.** When a unit becomes available, the open incidents with an
//! assigned unit of the same kind still driving there (dispatched or en
//! route) are checked: if the new unit would arrive at least
//! `swap.min_gain_s` sooner than an assigned unit still at least
//! `swap.min_remaining_eta_s` away, a `dispatch.recommended` with `swap`
//! suggests it (the best gain over all incidents; the dispatcher decides).

use ioc_model::{
    Candidate, DispatchRecommendation, EventBody, ExcludedUnit, OutputEvent, SwapSuggestion,
    Timestamp, UnitKind, UnitStatus,
};
use std::collections::BTreeSet;

use ioc_router::{distance_m, hour_of_day, SpeedSource};

use crate::Engine;

/// Units walked at most per kind and recommendation: bounds the cost when
/// every nearby unit is stale or excluded.
const MAX_WALK: usize = 64;
/// Excluded units listed at most per kind.
const MAX_EXCLUDED_LISTED: usize = 3;

/// One ranked candidate.
#[derive(Debug, Clone)]
pub(crate) struct Ranked {
    pub unit_id: String,
    pub kind: UnitKind,
    pub distance_m: f64,
    pub eta_s: f64,
    /// ETA plus staleness penalty: what the ranking sorts by.
    pub score: f64,
    pub reason: String,
}

impl Ranked {
    pub(crate) fn candidate(&self) -> Candidate {
        Candidate {
            unit_id: self.unit_id.clone(),
            kind: self.kind,
            distance_m: self.distance_m.round(),
            eta_s: self.eta_s.round(),
            reason: self.reason.clone(),
        }
    }
}

fn describe(s: SpeedSource, default_kmh: f64, learned_kmh: Option<f64>) -> String {
    match (s, learned_kmh) {
        (SpeedSource::Learned { samples }, Some(v)) => {
            format!("learned {v:.0} km/h ({samples} samples)")
        }
        _ => format!("default {default_kmh:.0} km/h"),
    }
}

impl Engine {
    /// Seconds since the unit's last fix at `now` (None: never had one).
    fn fix_age_s(&self, last_fix: Option<Timestamp>, now: Timestamp) -> Option<f64> {
        last_fix.map(|t| ((now.unix_millis() - t.unix_millis()).max(0)) as f64 / 1000.0)
    }

    /// ETA in seconds of a unit of `kind` in `from_zone` to a point in
    /// `to_zone`, `distance_m` away, at the hour of `now`, with the speed
    /// sources.
    pub(crate) fn eta_of(
        &self,
        kind: UnitKind,
        distance_m: f64,
        from_zone: Option<usize>,
        to_zone: Option<usize>,
        now: Timestamp,
    ) -> (f64, SpeedSource, SpeedSource) {
        self.speeds.eta_s(
            &self.config.eta,
            kind,
            distance_m,
            from_zone,
            to_zone,
            hour_of_day(now.unix_millis()),
        )
    }

    /// The best `want` available units of `kind` for a scene, by score, and
    /// the nearer ones left out. See the module docs.
    pub(crate) fn rank(
        &self,
        kind: UnitKind,
        lat: f64,
        lon: f64,
        want: usize,
        now: Timestamp,
    ) -> (Vec<Ranked>, Vec<ExcludedUnit>) {
        let nearest = self
            .index
            .nearest_available_iter(kind, lat, lon)
            .map(|n| (n.unit_id, n.distance_m));
        let (mut best, excluded) = self.rank_among(nearest, kind, lat, lon, want, now);
        for (i, r) in best.iter_mut().enumerate() {
            r.reason = format!("#{} by eta: {}", i + 1, r.reason);
        }
        (best, excluded)
    }

    /// The old way (see the module docs): the available units of `kind`
    /// from the incident's `district` first, by score; then, if they are
    /// fewer than `want`, the best of the others by score.
    pub(crate) fn rank_home_district(
        &self,
        kind: UnitKind,
        lat: f64,
        lon: f64,
        district: Option<&str>,
        want: usize,
        now: Timestamp,
    ) -> (Vec<Ranked>, Vec<ExcludedUnit>) {
        let Some(district) = district else {
            // No district at the scene, so no home station: nearest by ETA.
            let (mut best, excluded) = self.rank(kind, lat, lon, want, now);
            for r in &mut best {
                r.reason = format!("scene outside every district, {}", r.reason);
            }
            return (best, excluded);
        };
        let mut home: Vec<(&str, f64)> = self
            .units
            .values()
            .filter(|u| {
                u.view.kind == kind
                    && u.view.status == UnitStatus::Available
                    && u.view.home_district.as_deref() == Some(district)
            })
            .filter_map(|u| {
                let p = u.view.position?;
                Some((u.view.unit_id.as_str(), distance_m(lat, lon, p.lat, p.lon)))
            })
            .collect();
        home.sort_by(|a, b| a.1.total_cmp(&b.1).then_with(|| a.0.cmp(b.0)));
        let (mut best, mut excluded) = self.rank_among(home.into_iter(), kind, lat, lon, want, now);
        for (i, r) in best.iter_mut().enumerate() {
            r.reason = format!("#{} home district {district}: {}", i + 1, r.reason);
        }
        if best.len() < want {
            let nearest = self
                .index
                .nearest_available_iter(kind, lat, lon)
                .map(|n| (n.unit_id, n.distance_m));
            let (others, left_out) = self.rank_among(nearest, kind, lat, lon, want, now);
            let taken: BTreeSet<String> = best.iter().map(|r| r.unit_id.clone()).collect();
            let room = want - best.len();
            for mut r in others
                .into_iter()
                .filter(|r| !taken.contains(&r.unit_id))
                .take(room)
            {
                r.reason = format!(
                    "#{} neighbour (no free {} of {district} left), by eta: {}",
                    best.len() + 1,
                    kind.as_str(),
                    r.reason
                );
                best.push(r);
            }
            for x in left_out {
                if excluded.len() < MAX_EXCLUDED_LISTED
                    && !excluded.iter().any(|e| e.unit_id == x.unit_id)
                {
                    excluded.push(x);
                }
            }
        }
        (best, excluded)
    }

    /// The exact top `want` by score of the units `nearest_first` yields
    /// (unit id, distance in metres, in non-decreasing distance), walking
    /// only as far as a unit could still beat the `want`-th score; reasons
    /// without a rank prefix.
    fn rank_among<'a>(
        &'a self,
        nearest_first: impl Iterator<Item = (&'a str, f64)>,
        kind: UnitKind,
        lat: f64,
        lon: f64,
        want: usize,
        now: Timestamp,
    ) -> (Vec<Ranked>, Vec<ExcludedUnit>) {
        let to_zone = self.zones.zone_index_at(lat, lon);
        let hour = hour_of_day(now.unix_millis());
        let v_max = self.speeds.max_speed_mps(&self.config.eta, kind, hour);
        let detour = self.config.eta.detour_factor;
        let fix = &self.config.fix;
        let mut best: Vec<Ranked> = Vec::with_capacity(want + 1);
        let mut excluded = Vec::new();
        for (walked, (n_unit_id, n_distance_m)) in nearest_first.enumerate() {
            if walked >= MAX_WALK {
                break;
            }
            if best.len() >= want
                && best
                    .last()
                    .is_some_and(|w| n_distance_m * detour / v_max >= w.score)
            {
                break;
            }
            let Some(u) = self.units.get(n_unit_id) else {
                continue;
            };
            let age = self
                .fix_age_s(u.view.last_fix, now)
                .unwrap_or(f64::INFINITY);
            if age > fix.exclude_after_s as f64 {
                if excluded.len() < MAX_EXCLUDED_LISTED {
                    excluded.push(ExcludedUnit {
                        unit_id: n_unit_id.to_string(),
                        kind,
                        distance_m: n_distance_m.round(),
                        reason: format!(
                            "last fix {:.0} min ago (over {} min): position unreliable",
                            age / 60.0,
                            fix.exclude_after_s / 60
                        ),
                    });
                }
                continue;
            }
            let (eta, s_from, s_to) = self.eta_of(kind, n_distance_m, u.zone, to_zone, now);
            let stale_min = (age - fix.stale_after_s as f64).max(0.0) / 60.0;
            let penalty = if age > fix.stale_after_s as f64 {
                fix.stale_penalty_s_per_min * stale_min.max(1.0 / 60.0)
            } else {
                0.0
            };
            let default_kmh = self.config.eta.speed_mps(kind) * 3.6;
            let learned = |z: Option<usize>| self.speeds.learned_kmh(kind, z, hour).map(|(v, _)| v);
            let speed = if s_from == s_to && u.zone == to_zone {
                describe(s_from, default_kmh, learned(u.zone))
            } else {
                format!(
                    "{} from, {} at the scene",
                    describe(s_from, default_kmh, learned(u.zone)),
                    describe(s_to, default_kmh, learned(to_zone))
                )
            };
            let mut reason = format!(
                "{} {:.1} km, eta at {speed}",
                kind.as_str(),
                n_distance_m / 1000.0
            );
            if penalty > 0.0 {
                reason.push_str(&format!(
                    "; stale fix {:.0} min ago, ranked down {:.0} s",
                    age / 60.0,
                    penalty
                ));
            }
            let r = Ranked {
                unit_id: n_unit_id.to_string(),
                kind,
                distance_m: n_distance_m,
                eta_s: eta,
                score: eta + penalty,
                reason,
            };
            let at = best
                .iter()
                .position(|b| (r.score, &r.unit_id) < (b.score, &b.unit_id))
                .unwrap_or(best.len());
            if at < want {
                best.insert(at, r);
                best.truncate(want);
            }
        }
        (best, excluded)
    }

    /// A unit just became available: suggest it in place of an assigned
    /// unit of its kind that is still far away, if that gains enough.
    pub(crate) fn suggest_swap(
        &mut self,
        unit_id: &str,
        ts: Timestamp,
        out: &mut Vec<OutputEvent>,
    ) {
        if !self.config.swap.enabled {
            return;
        }
        let Some(u) = self.units.get(unit_id) else {
            return;
        };
        let (Some(pos), UnitStatus::Available) = (u.view.position, u.view.status) else {
            return;
        };
        let fresh = self
            .fix_age_s(u.view.last_fix, ts)
            .is_some_and(|a| a <= self.config.fix.stale_after_s as f64);
        if !fresh {
            return;
        }
        let kind = u.view.kind;
        let swap = &self.config.swap;
        // (gain, incident, replaced unit, replaced eta, new eta, new distance)
        let mut best: Option<(f64, String, String, f64, f64, f64)> = None;
        for (id, inc) in &self.incidents {
            let scene = inc.view.location;
            let to_zone = self.zones.zone_index_at(scene.lat, scene.lon);
            let d_new = distance_m(pos.lat, pos.lon, scene.lat, scene.lon);
            let (eta_new, _, _) = self.eta_of(kind, d_new, u.zone, to_zone, ts);
            for assigned in &inc.view.assigned_units {
                let Some(a) = self.units.get(assigned) else {
                    continue;
                };
                if a.view.kind != kind
                    || !matches!(a.view.status, UnitStatus::Dispatched | UnitStatus::EnRoute)
                {
                    continue;
                }
                let Some(ap) = a.view.position else {
                    continue;
                };
                let d_old = distance_m(ap.lat, ap.lon, scene.lat, scene.lon);
                let (eta_old, _, _) = self.eta_of(kind, d_old, a.zone, to_zone, ts);
                let gain = eta_old - eta_new;
                if eta_old >= swap.min_remaining_eta_s
                    && gain >= swap.min_gain_s
                    && best.as_ref().is_none_or(|b| gain > b.0)
                {
                    best = Some((gain, id.clone(), assigned.clone(), eta_old, eta_new, d_new));
                }
            }
        }
        let Some((gain, incident_id, replace, eta_old, eta_new, d_new)) = best else {
            return;
        };
        let Some(inc) = self.incidents.get(&incident_id) else {
            return;
        };
        let rec = DispatchRecommendation {
            incident_id: incident_id.clone(),
            priority: inc.view.priority,
            category: inc.view.category,
            needs: Vec::new(),
            candidates: vec![Candidate {
                unit_id: unit_id.to_string(),
                kind,
                distance_m: d_new.round(),
                eta_s: eta_new.round(),
                reason: format!(
                    "just became available: eta {:.0} s against {:.0} s for {replace} still en route, {:.0} s sooner",
                    eta_new, eta_old, gain
                ),
            }],
            auto_assign: false,
            unfilled: Vec::new(),
            excluded: Vec::new(),
            swap: Some(SwapSuggestion {
                replace_unit_id: replace,
                with_unit_id: unit_id.to_string(),
                replace_eta_s: eta_old.round(),
                with_eta_s: eta_new.round(),
                eta_gain_s: eta_old.round() - eta_new.round(),
            }),
        };
        let district = inc.view.district.clone();
        self.stats.swap_suggestions += 1;
        self.emit(out, ts, district, EventBody::DispatchRecommended(rec));
    }
}
