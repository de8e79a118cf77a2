//! The gateway's own projection of the current state ("picture"), built only
//! from `ioc.events`.
//!
//! The gateway is a stateless reader of the output log: any gateway replica
//! that read the same events holds the same picture, so snapshots agree
//! across replicas. Closed incidents and cleared alerts leave the picture;
//! the latest dispatch recommendation is kept per open incident.

use std::collections::BTreeMap;

use ioc_model::{
    mask_phone, AlertView, DispatchRecommendation, EventBody, IncidentView, OutputEvent, UnitView,
};
use serde_json::{json, Value};

/// Which part of the picture a reader may see.
#[derive(Debug, Clone, Copy)]
pub struct Scope<'a> {
    /// Only this district, when set.
    pub district: Option<&'a str>,
    /// Replace callers' numbers with [`mask_phone`].
    pub mask_callers: bool,
}

/// Current incidents, units, alerts and recommendations.
#[derive(Debug, Default)]
pub struct Picture {
    /// Open incidents by id (closed ones are removed).
    incidents: BTreeMap<String, IncidentView>,
    /// Every unit ever seen, by id.
    units: BTreeMap<String, UnitView>,
    /// Raised or acknowledged alerts by id (cleared ones are removed).
    alerts: BTreeMap<String, AlertView>,
    /// Latest recommendation per open incident.
    recommendations: BTreeMap<String, DispatchRecommendation>,
}

impl Picture {
    /// Applies one output event.
    pub fn apply(&mut self, ev: &OutputEvent) {
        match &ev.body {
            EventBody::IncidentOpened(i) | EventBody::IncidentUpdated(i) => {
                self.incidents.insert(i.incident_id.clone(), i.clone());
            }
            EventBody::IncidentClosed(i) => {
                self.incidents.remove(&i.incident_id);
                self.recommendations.remove(&i.incident_id);
            }
            EventBody::DispatchRecommended(r) => {
                if self.incidents.contains_key(&r.incident_id) {
                    self.recommendations
                        .insert(r.incident_id.clone(), r.clone());
                }
            }
            // The engine follows an assignment with incident and unit
            // updates; applying it here too keeps the picture right even if
            // those arrive later. Both operations are idempotent.
            EventBody::DispatchAssigned(a) => {
                if let Some(i) = self.incidents.get_mut(&a.incident_id) {
                    if !i.assigned_units.contains(&a.unit_id) {
                        i.assigned_units.push(a.unit_id.clone());
                    }
                }
            }
            EventBody::DispatchUnassigned(a) => {
                if let Some(i) = self.incidents.get_mut(&a.incident_id) {
                    i.assigned_units.retain(|u| *u != a.unit_id);
                }
            }
            EventBody::UnitUpdated(u) => {
                self.units.insert(u.unit_id.clone(), u.clone());
            }
            EventBody::AlertRaised(a) | EventBody::AlertAcknowledged(a) => {
                self.alerts.insert(a.alert_id.clone(), a.clone());
            }
            EventBody::AlertCleared(a) => {
                self.alerts.remove(&a.alert_id);
            }
            EventBody::CommandRejected(_) => {}
        }
    }

    /// An open incident by id.
    pub fn incident(&self, id: &str) -> Option<&IncidentView> {
        self.incidents.get(id)
    }

    /// A live alert by id.
    pub fn alert(&self, id: &str) -> Option<&AlertView> {
        self.alerts.get(id)
    }

    /// A unit by id.
    pub fn unit(&self, id: &str) -> Option<&UnitView> {
        self.units.get(id)
    }

    /// Open incidents in scope, most urgent first (priority, then age).
    pub fn incidents(&self, scope: Scope<'_>) -> Vec<IncidentView> {
        let mut out: Vec<IncidentView> = self
            .incidents
            .values()
            .filter(|i| in_scope(scope, i.district.as_deref()))
            .map(|i| {
                if scope.mask_callers {
                    masked_incident(i)
                } else {
                    i.clone()
                }
            })
            .collect();
        out.sort_by(|a, b| {
            (a.priority, a.opened_at, &a.incident_id).cmp(&(
                b.priority,
                b.opened_at,
                &b.incident_id,
            ))
        });
        out
    }

    /// Units in scope, by id.
    pub fn units(&self, scope: Scope<'_>) -> Vec<UnitView> {
        self.units
            .values()
            .filter(|u| in_scope(scope, u.district.as_deref()))
            .cloned()
            .collect()
    }

    /// Live alerts in scope, most severe first.
    pub fn alerts(&self, scope: Scope<'_>) -> Vec<AlertView> {
        let mut out: Vec<AlertView> = self
            .alerts
            .values()
            .filter(|a| in_scope(scope, a.district.as_deref()))
            .cloned()
            .collect();
        out.sort_by(|a, b| {
            (a.severity, a.raised_at, &a.alert_id).cmp(&(b.severity, b.raised_at, &b.alert_id))
        });
        out
    }

    /// Latest recommendations of the open incidents in scope.
    pub fn recommendations(&self, scope: Scope<'_>) -> Vec<DispatchRecommendation> {
        self.recommendations
            .values()
            .filter(|r| {
                self.incidents
                    .get(&r.incident_id)
                    .is_some_and(|i| in_scope(scope, i.district.as_deref()))
            })
            .cloned()
            .collect()
    }

    /// The full picture in scope, as sent in `city`, `dispatch` and
    /// `district:<id>` snapshots.
    pub fn snapshot(&self, scope: Scope<'_>) -> Value {
        json!({
            "incidents": self.incidents(scope),
            "units": self.units(scope),
            "alerts": self.alerts(scope),
            "recommendations": self.recommendations(scope),
        })
    }

    /// The `units` channel snapshot.
    pub fn units_snapshot(&self) -> Value {
        json!({ "units": self.units(Scope { district: None, mask_callers: true }) })
    }
}

fn in_scope(scope: Scope<'_>, district: Option<&str>) -> bool {
    scope.district.is_none() || scope.district == district
}

/// A copy of an incident with the caller's number masked.
pub fn masked_incident(i: &IncidentView) -> IncidentView {
    let mut i = i.clone();
    i.caller = i.caller.as_deref().map(mask_phone);
    i
}

/// Whether an event carries a caller's number (only incident events do).
pub fn has_caller(ev: &OutputEvent) -> bool {
    match &ev.body {
        EventBody::IncidentOpened(i)
        | EventBody::IncidentUpdated(i)
        | EventBody::IncidentClosed(i) => i.caller.is_some(),
        _ => false,
    }
}

/// A copy of an event with the caller's number masked.
pub fn masked_event(ev: &OutputEvent) -> OutputEvent {
    let mut ev = ev.clone();
    match &mut ev.body {
        EventBody::IncidentOpened(i)
        | EventBody::IncidentUpdated(i)
        | EventBody::IncidentClosed(i) => {
            i.caller = i.caller.as_deref().map(mask_phone);
        }
        _ => {}
    }
    ev
}

#[cfg(test)]
pub(crate) mod fixtures {
    //! Small event builders shared by unit tests.
    use ioc_model::{
        AlertKind, AlertStatus, AlertView, Category, GeoPoint, IncidentStatus, IncidentView,
        Timestamp, UnitKind, UnitStatus, UnitView,
    };

    pub fn incident(id: &str, district: &str, caller: Option<&str>) -> IncidentView {
        IncidentView {
            incident_id: id.into(),
            status: IncidentStatus::Open,
            category: Category::Medical,
            priority: 2,
            location: GeoPoint {
                lat: 16.06,
                lon: 108.22,
            },
            district: Some(district.into()),
            opened_at: Timestamp::from_unix_millis(1_700_000_000_000),
            updated_at: Timestamp::from_unix_millis(1_700_000_000_000),
            source: "call:115".into(),
            call_count: 1,
            caller: caller.map(Into::into),
            line: None,
            description: None,
            assigned_units: vec![],
            correlation: None,
            assign_deadline: Timestamp::from_unix_millis(1_700_000_600_000),
            closed_at: None,
        }
    }

    pub fn unit(id: &str, district: &str) -> UnitView {
        UnitView {
            unit_id: id.into(),
            kind: UnitKind::Ambulance,
            status: UnitStatus::Available,
            position: Some(GeoPoint {
                lat: 16.07,
                lon: 108.21,
            }),
            district: Some(district.into()),
            station: None,
            home_district: None,
            incident_id: None,
            speed_kmh: None,
            heading_deg: None,
            last_fix: None,
        }
    }

    pub fn alert(id: &str, district: &str) -> AlertView {
        AlertView {
            alert_id: id.into(),
            kind: AlertKind::IncidentOpened,
            status: AlertStatus::Raised,
            severity: 2,
            district: Some(district.into()),
            incident_id: None,
            unit_id: None,
            message: "incident opened".into(),
            raised_at: Timestamp::from_unix_millis(1_700_000_000_000),
            acknowledged_by: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::fixtures::*;
    use super::*;
    use ioc_model::Timestamp;

    fn ev(seq: u64, district: &str, body: EventBody) -> OutputEvent {
        OutputEvent {
            seq,
            ts: Timestamp::from_unix_millis(1_700_000_000_000),
            district: Some(district.into()),
            body,
        }
    }

    const ALL: Scope<'static> = Scope {
        district: None,
        mask_callers: false,
    };

    #[test]
    fn closed_incidents_and_cleared_alerts_leave_the_picture() {
        let mut p = Picture::default();
        let i = incident("i1", "hai_chau", Some("0905123467"));
        p.apply(&ev(1, "hai_chau", EventBody::IncidentOpened(i.clone())));
        p.apply(&ev(
            2,
            "hai_chau",
            EventBody::AlertRaised(alert("a1", "hai_chau")),
        ));
        assert_eq!(p.incidents(ALL).len(), 1);
        assert_eq!(p.alerts(ALL).len(), 1);
        p.apply(&ev(3, "hai_chau", EventBody::IncidentClosed(i)));
        p.apply(&ev(
            4,
            "hai_chau",
            EventBody::AlertCleared(alert("a1", "hai_chau")),
        ));
        assert!(p.incidents(ALL).is_empty());
        assert!(p.alerts(ALL).is_empty());
    }

    #[test]
    fn scope_filters_district_and_masks_callers() {
        let mut p = Picture::default();
        p.apply(&ev(
            1,
            "hai_chau",
            EventBody::IncidentOpened(incident("i1", "hai_chau", Some("0905123467"))),
        ));
        p.apply(&ev(
            2,
            "son_tra",
            EventBody::IncidentOpened(incident("i2", "son_tra", None)),
        ));
        p.apply(&ev(
            3,
            "son_tra",
            EventBody::UnitUpdated(unit("u1", "son_tra")),
        ));
        let scope = Scope {
            district: Some("hai_chau"),
            mask_callers: true,
        };
        let inc = p.incidents(scope);
        assert_eq!(inc.len(), 1);
        assert_eq!(inc[0].caller.as_deref(), Some("********67"));
        assert!(p.units(scope).is_empty());
        assert_eq!(
            p.incidents(ALL)[0].caller.as_deref(),
            Some("0905123467"),
            "dispatch scope keeps the number"
        );
        let snap = p.snapshot(scope);
        assert!(!snap.to_string().contains("0905"));
    }
}
