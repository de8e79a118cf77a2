//! A unit's movement in time: a timed polyline it drives at a speed per leg.
//!
//! Positions are a pure function of time, so a ping at any instant is
//! computed, not integrated: no drift, no dependence on how often the
//! simulator is advanced.

use crate::land::LatLon;

/// Where a unit is and how it moves: waypoints with the time it passes each.
#[derive(Debug, Clone)]
pub(crate) struct Motion {
    points: Vec<LatLon>,
    /// Unix milliseconds at which each point is reached; same length as `points`.
    times: Vec<i64>,
    /// Speed on each leg, km/h; one shorter than `points`.
    speeds_kmh: Vec<f64>,
}

/// A unit's fix at one instant.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Fix {
    pub at: LatLon,
    pub speed_kmh: f64,
    pub heading_deg: f64,
}

impl Motion {
    /// Standing still at `at`.
    pub(crate) fn parked(at: LatLon, since_ms: i64) -> Self {
        Self {
            points: vec![at],
            times: vec![since_ms],
            speeds_kmh: Vec::new(),
        }
    }

    /// Driving the waypoints from `start_ms`, leg `i` at `speeds_kmh[i]`.
    pub(crate) fn drive(points: Vec<LatLon>, start_ms: i64, speeds_kmh: Vec<f64>) -> Self {
        debug_assert_eq!(points.len(), speeds_kmh.len() + 1);
        let mut times = Vec::with_capacity(points.len());
        let mut t = start_ms as f64;
        times.push(start_ms);
        for (w, v) in points.windows(2).zip(&speeds_kmh) {
            let secs = w[0].distance_m(w[1]) / (v.max(1.0) / 3.6);
            t += secs * 1000.0;
            times.push(t.round() as i64);
        }
        Self {
            points,
            times,
            speeds_kmh,
        }
    }

    /// When the last waypoint is reached.
    pub(crate) fn end_ms(&self) -> i64 {
        self.times.last().copied().unwrap_or(0)
    }

    /// Position, speed and heading at `t_ms`. Before the start it is at the
    /// first point, after the end it stands at the last, speed 0.
    pub(crate) fn fix_at(&self, t_ms: i64) -> Fix {
        let n = self.points.len();
        if n == 1 || t_ms >= self.times[n - 1] {
            let heading = if n >= 2 {
                self.points[n - 2].bearing_deg(self.points[n - 1])
            } else {
                0.0
            };
            return Fix {
                at: self.points[n - 1],
                speed_kmh: 0.0,
                heading_deg: heading,
            };
        }
        if t_ms <= self.times[0] {
            return Fix {
                at: self.points[0],
                speed_kmh: 0.0,
                heading_deg: self.points[0].bearing_deg(self.points[1]),
            };
        }
        // Leg i runs from times[i] to times[i + 1].
        let i = self.times.partition_point(|&t| t <= t_ms) - 1;
        let (t0, t1) = (self.times[i], self.times[i + 1]);
        let f = if t1 > t0 {
            (t_ms - t0) as f64 / (t1 - t0) as f64
        } else {
            1.0
        };
        let (a, b) = (self.points[i], self.points[i + 1]);
        Fix {
            at: a.lerp(b, f),
            speed_kmh: self.speeds_kmh[i],
            heading_deg: a.bearing_deg(b),
        }
    }

    /// The start of the leg driven at `t_ms`: a waypoint of the route, which
    /// (unlike an arbitrary point on a leg) is known to connect to the grid.
    pub(crate) fn leg_start_at(&self, t_ms: i64) -> LatLon {
        let i = self.times.partition_point(|&t| t <= t_ms);
        self.points[i.saturating_sub(1).min(self.points.len() - 1)]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drives_at_the_leg_speed_and_stops_at_the_end() {
        let a = LatLon::new(16.05, 108.2);
        let b = a.offset_m(0.0, 1000.0);
        let m = Motion::drive(vec![a, b], 0, vec![36.0]);
        // 1000 m at 10 m/s.
        assert_eq!(m.end_ms(), 100_000);
        let mid = m.fix_at(50_000);
        assert!((mid.at.distance_m(a) - 500.0).abs() < 1.0);
        assert_eq!(mid.speed_kmh, 36.0);
        assert!((mid.heading_deg - 90.0).abs() < 0.1);
        let end = m.fix_at(200_000);
        assert_eq!(end.at, b);
        assert_eq!(end.speed_kmh, 0.0);
        assert_eq!(Motion::parked(a, 0).fix_at(5).at, a);
    }
}
