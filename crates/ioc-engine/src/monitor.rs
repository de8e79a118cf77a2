//! Alerts from the state of the city rather than from one input: stale GPS
//! of on-duty units, call surges, coverage gaps.
//!
//! They are checked on a timer of *event time* (`alerts.check_every_s`,
//! whenever the engine's clock crosses a multiple of it, from an input or a
//! tick), never per ping and never from a wall clock, so replays raise the
//! same alerts at the same points. A call-surge alert is raised at once by
//! the call that makes the surge; it clears on the timer when fewer than
//! `surge_calls` calls remain within radius and window of its centre.
//!
//! * `stale_gps:<unit>`: a dispatched, en-route or on-scene unit sent no
//!   ping for `gps_stale_after_s` since its last fix or since it went on
//!   duty, whichever is later. Cleared by its next ping or when it goes off
//!   duty.
//! * `surge:<call>`: `surge_calls` calls within `surge_radius_m` of the
//!   call within `surge_window_s`, and no surge alert open near it already.
//! * `coverage:<zone>:<kind>`: no available unit of the kind within
//!   `coverage_radius_m` of the zone's representative point for
//!   `coverage_grace_s`; kinds the fleet has no located unit of are not
//!   watched. Offshore zones are not watched. One kNN query per zone and
//!   kind per check: 8 zones × 4 kinds here, a few µs.

use ioc_model::{AlertKind, AlertStatus, AlertView, GeoPoint, OutputEvent, Timestamp, UnitKind};
use ioc_router::distance_m;

use crate::{Engine, RecentCall};

impl Engine {
    /// Runs the checks if the clock crossed the next check time.
    pub(crate) fn maybe_check(&mut self, out: &mut Vec<OutputEvent>) {
        let now = self.clock.unix_millis();
        if now < self.next_check_ms {
            return;
        }
        self.next_check_ms = next_check_after(now, self.config.alerts.check_every_s);
        self.check_stale_gps(out);
        self.check_surges_ended(out);
        self.check_coverage(out);
    }

    fn check_stale_gps(&mut self, out: &mut Vec<OutputEvent>) {
        let after_ms = secs_ms(self.config.alerts.gps_stale_after_s);
        if after_ms == 0 {
            return;
        }
        let now = self.clock.unix_millis();
        let mut due = Vec::new();
        for (id, u) in &self.units {
            if u.gps_alert || !u.view.status.is_committed() {
                continue;
            }
            let since = match (u.view.last_fix, u.on_duty_since) {
                (Some(f), Some(d)) => f.max(d),
                (Some(f), None) => f,
                (None, Some(d)) => d,
                (None, None) => continue,
            };
            if now - since.unix_millis() >= after_ms {
                due.push((id.clone(), since));
            }
        }
        for (id, since) in due {
            let Some(u) = self.units.get_mut(&id) else {
                continue;
            };
            u.gps_alert = true;
            let v = &u.view;
            let alert = AlertView {
                alert_id: format!("stale_gps:{id}"),
                kind: AlertKind::StaleGps,
                status: AlertStatus::Raised,
                severity: 2,
                district: v.district.clone(),
                incident_id: v.incident_id.clone(),
                unit_id: Some(id.clone()),
                message: format!(
                    "{} {id} is {} and sent no position for {} s",
                    v.kind.as_str(),
                    v.status.as_str(),
                    self.config.alerts.gps_stale_after_s
                ),
                raised_at: since.plus_millis(after_ms),
                acknowledged_by: None,
            };
            self.raise_alert(alert, out);
        }
    }

    /// The unit pinged or went off duty: its stale-GPS alert, if any, clears.
    pub(crate) fn clear_stale_gps(
        &mut self,
        unit_id: &str,
        ts: Timestamp,
        out: &mut Vec<OutputEvent>,
    ) {
        if let Some(u) = self.units.get_mut(unit_id) {
            if u.gps_alert {
                u.gps_alert = false;
                self.clear_alert(&format!("stale_gps:{unit_id}"), ts, out);
            }
        }
    }

    /// Calls within the surge radius of a point inside the window ending now.
    fn calls_near(&self, lat: f64, lon: f64, now_ms: i64) -> usize {
        let window = secs_ms(self.config.alerts.surge_window_s);
        let r = self.config.alerts.surge_radius_m;
        self.recent_calls
            .iter()
            .filter(|c| (now_ms - c.ms).abs() <= window)
            .filter(|c| distance_m(lat, lon, c.lat, c.lon) <= r)
            .count()
    }

    /// A call came in: remember it and raise a surge alert if it makes one.
    pub(crate) fn note_call(
        &mut self,
        call_id: &str,
        ts: Timestamp,
        lat: f64,
        lon: f64,
        out: &mut Vec<OutputEvent>,
    ) {
        let n = self.config.alerts.surge_calls;
        if n == 0 {
            return;
        }
        let window = secs_ms(self.config.alerts.surge_window_s);
        let horizon = self.clock.unix_millis().max(ts.unix_millis()) - window;
        self.recent_calls.retain(|c| c.ms >= horizon);
        self.recent_calls.push(RecentCall {
            call_id: call_id.to_string(),
            ms: ts.unix_millis(),
            lat,
            lon,
        });
        let count = self.calls_near(lat, lon, ts.unix_millis());
        let r = self.config.alerts.surge_radius_m;
        if count < n
            || self
                .surges
                .values()
                .any(|c| distance_m(lat, lon, c.lat, c.lon) <= r)
        {
            return;
        }
        let alert_id = format!("surge:{call_id}");
        self.surges.insert(alert_id.clone(), GeoPoint { lat, lon });
        let alert = AlertView {
            alert_id,
            kind: AlertKind::CallSurge,
            status: AlertStatus::Raised,
            severity: 2,
            district: self.zones.zone_id_at(lat, lon),
            incident_id: None,
            unit_id: None,
            message: format!(
                "{count} calls within {r:.0} m in {} min (around call {call_id})",
                self.config.alerts.surge_window_s / 60
            ),
            raised_at: ts,
            acknowledged_by: None,
        };
        self.raise_alert(alert, out);
    }

    fn check_surges_ended(&mut self, out: &mut Vec<OutputEvent>) {
        if self.surges.is_empty() {
            return;
        }
        let now = self.clock.unix_millis();
        let window = secs_ms(self.config.alerts.surge_window_s);
        self.recent_calls.retain(|c| c.ms >= now - window);
        let n = self.config.alerts.surge_calls;
        let ended: Vec<String> = self
            .surges
            .iter()
            .filter(|(_, c)| n == 0 || self.calls_near(c.lat, c.lon, now) < n)
            .map(|(id, _)| id.clone())
            .collect();
        for id in ended {
            self.surges.remove(&id);
            self.clear_alert(&id, self.clock, out);
        }
    }

    fn check_coverage(&mut self, out: &mut Vec<OutputEvent>) {
        let policy = &self.config.alerts;
        if policy.coverage_kinds.is_empty() && self.gap_since.is_empty() {
            return;
        }
        let now = self.clock;
        let mut fleet = [false; 4];
        for u in self.units.values() {
            if u.view.position.is_some() {
                fleet[kind_slot(u.view.kind)] = true;
            }
        }
        let mut raise = Vec::new();
        let mut clear = Vec::new();
        for (zi, zone) in self.zones.iter().enumerate() {
            if zone.offshore {
                continue;
            }
            let (lat, lon) = (zone.representative.y(), zone.representative.x());
            for kind in UnitKind::ALL {
                let key = (zi, kind);
                let watched = policy.coverage_kinds.contains(&kind) && fleet[kind_slot(kind)];
                let nearest = if watched {
                    self.index
                        .nearest_available(kind, lat, lon, 1)
                        .first()
                        .map(|n| n.distance_m)
                } else {
                    None
                };
                let covered = !watched || nearest.is_some_and(|d| d <= policy.coverage_radius_m);
                let alert_id = format!("coverage:{}:{}", zone.id, kind.as_str());
                if covered {
                    self.gap_since.remove(&key);
                    clear.push(alert_id);
                    continue;
                }
                let since = *self.gap_since.entry(key).or_insert(now.unix_millis());
                if now.unix_millis() - since < secs_ms(policy.coverage_grace_s)
                    || self.alerts.contains_key(&alert_id)
                {
                    continue;
                }
                let nearest = match nearest {
                    Some(d) => format!("nearest {:.1} km", d / 1000.0),
                    None => "none available".to_string(),
                };
                raise.push(AlertView {
                    alert_id,
                    kind: AlertKind::CoverageGap,
                    status: AlertStatus::Raised,
                    severity: 2,
                    district: Some(zone.id.clone()),
                    incident_id: None,
                    unit_id: None,
                    message: format!(
                        "no available {} within {:.0} km of {} ({nearest})",
                        kind.as_str(),
                        policy.coverage_radius_m / 1000.0,
                        zone.name
                    ),
                    raised_at: now,
                    acknowledged_by: None,
                });
            }
        }
        for id in clear {
            if self.alerts.contains_key(&id) {
                self.clear_alert(&id, now, out);
            }
        }
        for a in raise {
            self.raise_alert(a, out);
        }
    }
}

fn kind_slot(kind: UnitKind) -> usize {
    UnitKind::ALL.iter().position(|k| *k == kind).unwrap_or(0)
}

pub(crate) fn secs_ms(s: u64) -> i64 {
    i64::try_from(s.saturating_mul(1000)).unwrap_or(i64::MAX)
}

/// The first multiple of the check period strictly after `now_ms`. The same
/// rule after a restore gives the same schedule.
pub(crate) fn next_check_after(now_ms: i64, every_s: u64) -> i64 {
    let p = secs_ms(every_s.max(1));
    (now_ms.div_euclid(p) + 1).saturating_mul(p)
}
