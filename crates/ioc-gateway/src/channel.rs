//! Websocket channels: names, who may subscribe, and which events each one
//! carries.
//!
//! A channel is a filtered view of the global `seq` order of `ioc.events`.
//! Routing is a pure function of the event so that publish can look up at
//! most three channels per event instead of scanning every client.

use std::collections::HashSet;

use ioc_model::{EventBody, OutputEvent};

use crate::auth::{Claims, Role};

/// Longest district id we accept in a channel name; longer ones cannot be
/// zone ids and would only cost memory.
const MAX_DISTRICT_LEN: usize = 128;

/// A subscribable channel.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Channel {
    /// Every event but unit positions, callers masked (IOC wall screen).
    City,
    /// Same as city with callers visible (dispatcher console).
    Dispatch,
    /// Every event of one district, unit updates included.
    District(String),
    /// Unit updates only.
    Units,
}

/// Why a subscription was refused; maps to the `code` of an error frame.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChannelError {
    #[error("unknown channel {0:?}: expected city, dispatch, units or district:<zone id>")]
    Unknown(String),
    #[error("role {role} may not subscribe to {channel}")]
    Forbidden { role: &'static str, channel: String },
}

impl ChannelError {
    /// The `code` field of the error frame.
    pub fn code(&self) -> &'static str {
        match self {
            ChannelError::Unknown(_) => "unknown_channel",
            ChannelError::Forbidden { .. } => "forbidden",
        }
    }
}

impl Channel {
    /// Parses a channel name. `zones` is the set of known zone ids; when it
    /// is empty (no zones loaded) any well-formed district id is accepted.
    pub fn parse(name: &str, zones: &HashSet<String>) -> Result<Channel, ChannelError> {
        match name {
            "city" => Ok(Channel::City),
            "dispatch" => Ok(Channel::Dispatch),
            "units" => Ok(Channel::Units),
            _ => {
                let id = name
                    .strip_prefix("district:")
                    .filter(|id| {
                        !id.is_empty()
                            && id.len() <= MAX_DISTRICT_LEN
                            && !id.chars().any(char::is_control)
                    })
                    .ok_or_else(|| ChannelError::Unknown(truncate(name)))?;
                if !zones.is_empty() && !zones.contains(id) {
                    return Err(ChannelError::Unknown(truncate(name)));
                }
                Ok(Channel::District(id.to_string()))
            }
        }
    }

    /// The wire name (`city`, `district:hai_chau`, ...).
    pub fn name(&self) -> String {
        match self {
            Channel::City => "city".into(),
            Channel::Dispatch => "dispatch".into(),
            Channel::Units => "units".into(),
            Channel::District(id) => format!("district:{id}"),
        }
    }

    /// Bounded metric label.
    pub fn kind(&self) -> &'static str {
        match self {
            Channel::City => "city",
            Channel::Dispatch => "dispatch",
            Channel::District(_) => "district",
            Channel::Units => "units",
        }
    }

    /// Whether callers' phone numbers are masked on this channel: everywhere
    /// but the dispatcher's console.
    pub fn masks_callers(&self) -> bool {
        *self != Channel::Dispatch
    }

    /// Checks that `claims` may subscribe.
    pub fn authorize(&self, claims: &Claims) -> Result<(), ChannelError> {
        let allowed = match (self, claims.role) {
            (Channel::City | Channel::Units, Role::Ioc | Role::Dispatcher) => true,
            (Channel::Dispatch, Role::Dispatcher) => true,
            (Channel::District(_), Role::Ioc | Role::Dispatcher) => true,
            (Channel::District(id), Role::District) => claims.district.as_deref() == Some(id),
            _ => false,
        };
        if allowed {
            Ok(())
        } else {
            Err(ChannelError::Forbidden {
                role: claims.role.as_str(),
                channel: self.name(),
            })
        }
    }

    /// Whether `ev` belongs on this channel. `left` is the district a
    /// `unit.updated` event's unit left (see [`Channel::routes`]).
    pub fn carries(&self, ev: &OutputEvent, left: Option<&str>) -> bool {
        let is_unit = matches!(ev.body, EventBody::UnitUpdated(_));
        match self {
            Channel::City | Channel::Dispatch => !is_unit,
            Channel::Units => is_unit,
            Channel::District(id) => {
                ev.district.as_deref() == Some(id.as_str()) || left == Some(id.as_str())
            }
        }
    }

    /// The channels `ev` is routed to (at most three lookups per event).
    ///
    /// `left` is the district a `unit.updated` event's unit was in before
    /// this event, when that is not the event's district: the unit moved
    /// out. That district's channel gets this one update too, so its screen
    /// can drop the unit (its snapshot no longer holds it), and nothing
    /// else of the unit's new district.
    pub fn routes(ev: &OutputEvent, left: Option<&str>) -> Vec<Channel> {
        let mut out = Vec::with_capacity(3);
        let is_unit = matches!(ev.body, EventBody::UnitUpdated(_));
        if is_unit {
            out.push(Channel::Units);
        } else {
            out.push(Channel::City);
            out.push(Channel::Dispatch);
        }
        if let Some(d) = &ev.district {
            out.push(Channel::District(d.clone()));
        }
        if let Some(left) = left.filter(|l| is_unit && ev.district.as_deref() != Some(*l)) {
            out.push(Channel::District(left.to_string()));
        }
        out
    }
}

/// Keeps error messages short when a client sends a huge channel name.
fn truncate(s: &str) -> String {
    s.chars().take(64).collect()
}

/// Zone ids (`properties.id`) of a GeoJSON FeatureCollection.
pub fn zone_ids(zones: &serde_json::Value) -> HashSet<String> {
    zones["features"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|f| f["properties"]["id"].as_str().map(str::to_string))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(role: Role, district: Option<&str>) -> Claims {
        Claims {
            sub: "t".into(),
            role,
            district: district.map(Into::into),
            exp: u64::MAX,
        }
    }

    #[test]
    fn parses_names_and_checks_zones() {
        let zones: HashSet<String> = ["hai_chau".to_string()].into();
        assert_eq!(Channel::parse("city", &zones), Ok(Channel::City));
        assert_eq!(
            Channel::parse("district:hai_chau", &zones),
            Ok(Channel::District("hai_chau".into()))
        );
        assert_eq!(
            Channel::parse("district:nowhere", &zones)
                .unwrap_err()
                .code(),
            "unknown_channel"
        );
        assert!(Channel::parse("district:", &HashSet::new()).is_err());
        assert!(Channel::parse("weather", &zones).is_err());
        assert!(Channel::parse("district:anything", &HashSet::new()).is_ok());
    }

    #[test]
    fn roles_see_only_their_channels() {
        let ioc = claims(Role::Ioc, None);
        let disp = claims(Role::Dispatcher, None);
        let dist = claims(Role::District, Some("hai_chau"));
        assert!(Channel::City.authorize(&ioc).is_ok());
        assert!(Channel::Dispatch.authorize(&ioc).is_err());
        assert!(Channel::Dispatch.authorize(&disp).is_ok());
        assert!(Channel::City.authorize(&dist).is_err());
        assert!(Channel::Units.authorize(&dist).is_err());
        assert!(Channel::District("hai_chau".into())
            .authorize(&dist)
            .is_ok());
        let err = Channel::District("son_tra".into())
            .authorize(&dist)
            .unwrap_err();
        assert_eq!(err.code(), "forbidden");
    }

    #[test]
    fn a_unit_update_also_goes_to_the_district_it_left() {
        use crate::picture::fixtures::{alert, unit};
        use ioc_model::Timestamp;
        let ev = |district: Option<&str>, body| OutputEvent {
            seq: 1,
            ts: Timestamp::from_unix_millis(0),
            district: district.map(Into::into),
            body,
        };
        let d = |id: &str| Channel::District(id.into());
        let moved = ev(Some("b"), EventBody::UnitUpdated(unit("u1", "b")));
        assert_eq!(
            Channel::routes(&moved, Some("a")),
            vec![Channel::Units, d("b"), d("a")]
        );
        assert_eq!(
            Channel::routes(&moved, Some("b")),
            vec![Channel::Units, d("b")],
            "staying put is no move"
        );
        assert_eq!(Channel::routes(&moved, None), vec![Channel::Units, d("b")]);
        let outside = ev(None, EventBody::UnitUpdated(unit("u1", "b")));
        assert_eq!(
            Channel::routes(&outside, Some("a")),
            vec![Channel::Units, d("a")]
        );
        // Only unit updates leave a district.
        let raised = ev(Some("b"), EventBody::AlertRaised(alert("x", "b")));
        assert_eq!(Channel::routes(&raised, Some("a")).len(), 3);
        assert!(d("a").carries(&moved, Some("a")));
        assert!(!d("a").carries(&moved, None));
        assert!(!d("c").carries(&moved, Some("a")));
    }

    #[test]
    fn extracts_zone_ids() {
        let v = serde_json::json!({"type":"FeatureCollection","features":[
            {"type":"Feature","properties":{"id":"a"}},{"type":"Feature","properties":{}}]});
        assert_eq!(zone_ids(&v), ["a".to_string()].into());
        assert!(zone_ids(&serde_json::json!({})).is_empty());
    }
}
