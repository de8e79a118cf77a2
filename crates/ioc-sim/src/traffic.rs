//! What the city reports: when calls and incident reports arrive (Poisson,
//! with a day/night curve), which line and category they are, who calls,
//! how long each kind of incident keeps a unit on scene, and the
//! deliberately broken messages that exercise the dead-letter queue.
//!
//! The numbers are plausible shapes, not statistics of Da Nang: 115 carries
//! most calls and most of them are medical, 113 is crime and traffic, 114 is
//! fire, rescue and flood; the city is quiet before dawn and busiest in the
//! evening.

use ioc_model::{Category, IncidentSource, Line, UnitKind};
use rand::Rng;

/// Local time offset of Da Nang (UTC+7, no daylight saving).
const LOCAL_OFFSET_MS: i64 = 7 * 3_600_000;

/// Relative activity per local hour, 00:00 to 23:00. Normalised to a mean
/// of 1 by [`diurnal_factor`], so the configured hourly rate is the daily mean.
const HOURLY_ACTIVITY: [f64; 24] = [
    0.55, 0.45, 0.40, 0.35, 0.35, 0.45, 0.70, 1.00, 1.15, 1.20, 1.20, 1.15, 1.05, 1.00, 1.05, 1.10,
    1.20, 1.35, 1.45, 1.50, 1.45, 1.30, 1.00, 0.75,
];

/// Expected extra calls per call-reported incident (repeat callers and
/// other witnesses): 20% get one more call, 5% two more.
pub(crate) const EXPECTED_REPEATS: f64 = 0.2 + 2.0 * 0.05;

fn mean_activity() -> f64 {
    HOURLY_ACTIVITY.iter().sum::<f64>() / 24.0
}

/// Rate multiplier at `t_ms` (mean 1 over a day), interpolated between hours
/// so the rate has no steps.
pub(crate) fn diurnal_factor(t_ms: i64) -> f64 {
    let local = (t_ms + LOCAL_OFFSET_MS).rem_euclid(86_400_000) as f64 / 3_600_000.0;
    let h = local.floor() as usize % 24;
    let f = local - local.floor();
    let v = HOURLY_ACTIVITY[h] * (1.0 - f) + HOURLY_ACTIVITY[(h + 1) % 24] * f;
    v / mean_activity()
}

fn max_diurnal_factor() -> f64 {
    HOURLY_ACTIVITY.iter().copied().fold(0.0, f64::max) / mean_activity()
}

/// Time of the next arrival after `from_ms` of a Poisson process whose rate
/// is `per_hour × diurnal_factor(t)`, by thinning (Lewis–Shedler): draw at
/// the peak rate, keep each candidate with probability rate(t) / peak.
/// `None` when the rate is zero.
pub(crate) fn next_arrival(rng: &mut impl Rng, from_ms: i64, per_hour: f64) -> Option<i64> {
    if !(per_hour.is_finite() && per_hour > 0.0) {
        return None;
    }
    let peak = max_diurnal_factor();
    let peak_per_ms = per_hour * peak / 3_600_000.0;
    let mut t = from_ms as f64;
    loop {
        let u: f64 = rng.gen_range(f64::MIN_POSITIVE..1.0);
        t += -u.ln() / peak_per_ms;
        if rng.gen::<f64>() * peak <= diurnal_factor(t as i64) {
            // Never the same millisecond: keeps arrivals strictly ordered.
            return Some((t.ceil() as i64).max(from_ms + 1));
        }
    }
}

/// Time of the next arrival of a constant-rate Poisson process.
pub(crate) fn next_uniform_arrival(rng: &mut impl Rng, from_ms: i64, per_hour: f64) -> Option<i64> {
    if !(per_hour.is_finite() && per_hour > 0.0) {
        return None;
    }
    let u: f64 = rng.gen_range(f64::MIN_POSITIVE..1.0);
    let dt = -u.ln() / (per_hour / 3_600_000.0);
    Some(from_ms + (dt.ceil() as i64).max(1))
}

fn pick<T: Copy>(rng: &mut impl Rng, table: &[(T, u32)]) -> T {
    let total: u32 = table.iter().map(|(_, w)| w).sum();
    let mut r = rng.gen_range(0..total);
    for (v, w) in table {
        if r < *w {
            return *v;
        }
        r -= w;
    }
    table[table.len() - 1].0
}

/// Line and category of a new emergency call.
pub(crate) fn call_kind(rng: &mut impl Rng) -> (Line, Category) {
    match pick(
        rng,
        &[
            (Line::Ambulance, 55),
            (Line::Police, 30),
            (Line::FireRescue, 15),
        ],
    ) {
        Line::Ambulance => (
            Line::Ambulance,
            pick(
                rng,
                &[(Category::Medical, 85), (Category::TrafficAccident, 15)],
            ),
        ),
        Line::Police => (
            Line::Police,
            pick(
                rng,
                &[
                    (Category::Crime, 50),
                    (Category::TrafficAccident, 40),
                    (Category::Other, 10),
                ],
            ),
        ),
        Line::FireRescue => (
            Line::FireRescue,
            pick(
                rng,
                &[
                    (Category::Fire, 55),
                    (Category::Rescue, 25),
                    (Category::Flood, 20),
                ],
            ),
        ),
    }
}

/// Source and category of a report from another system.
pub(crate) fn report_kind(rng: &mut impl Rng) -> (IncidentSource, Category) {
    let source = pick(
        rng,
        &[
            (IncidentSource::Camera, 40),
            (IncidentSource::Sensor, 25),
            (IncidentSource::CitizenApp, 35),
        ],
    );
    let category = match source {
        IncidentSource::Camera => pick(
            rng,
            &[
                (Category::TrafficAccident, 60),
                (Category::Crime, 15),
                (Category::Fire, 10),
                (Category::Other, 15),
            ],
        ),
        IncidentSource::Sensor => pick(rng, &[(Category::Flood, 60), (Category::Fire, 40)]),
        _ => pick(
            rng,
            &[
                (Category::Other, 30),
                (Category::TrafficAccident, 20),
                (Category::Flood, 15),
                (Category::Crime, 15),
                (Category::Medical, 10),
                (Category::Fire, 10),
            ],
        ),
    };
    (source, category)
}

/// Priority 1 (life-threatening) to 4 (minor); about 15% are priority 1.
pub(crate) fn priority(rng: &mut impl Rng) -> u8 {
    pick(rng, &[(1u8, 15), (2, 30), (3, 35), (4, 20)])
}

/// A Vietnamese mobile number, e.g. `0905123467`: a real carrier prefix
/// (Viettel, VinaPhone, MobiFone) and seven random digits.
pub(crate) fn phone_number(rng: &mut impl Rng) -> String {
    const PREFIXES: [&str; 16] = [
        "090", "093", "089", "070", "079", "077", "076", "078", "091", "094", "088", "096", "097",
        "098", "086", "035",
    ];
    let prefix = PREFIXES[rng.gen_range(0..PREFIXES.len())];
    format!("{prefix}{:07}", rng.gen_range(0..10_000_000u32))
}

/// A short operator note for a call, in Vietnamese as it would be typed.
pub(crate) fn call_note(category: Category, rng: &mut impl Rng) -> Option<String> {
    let notes: &[&str] = match category {
        Category::Medical => &[
            "người già khó thở",
            "ngất xỉu trên đường",
            "đau ngực dữ dội",
            "trẻ em sốt cao co giật",
            "chấn thương do ngã",
        ],
        Category::Fire => &[
            "cháy nhà dân",
            "khói bốc lên từ cửa hàng",
            "cháy xe máy",
            "cháy bãi cỏ",
        ],
        Category::TrafficAccident => &[
            "va chạm xe máy và ô tô",
            "tai nạn giao thông có người bị thương",
            "xe tải lật",
        ],
        Category::Crime => &[
            "cướp giật tài sản",
            "đánh nhau",
            "trộm cắp",
            "gây rối trật tự",
        ],
        Category::Flood => &[
            "nước ngập sâu",
            "ngập đường, xe chết máy",
            "nước dâng vào nhà",
        ],
        Category::Rescue => &["người mắc kẹt", "đuối nước", "cây đổ đè người"],
        Category::Other => &["tiếng ồn", "cần hỗ trợ", "vật cản trên đường"],
    };
    // Operators do not always type a note.
    if rng.gen_bool(0.7) {
        Some(notes[rng.gen_range(0..notes.len())].to_string())
    } else {
        None
    }
}

/// A description for a report from a camera, sensor or the citizen app.
pub(crate) fn report_description(source: IncidentSource, category: Category) -> String {
    let who = match source {
        IncidentSource::Camera => "camera AI",
        IncidentSource::Sensor => "sensor",
        IncidentSource::CitizenApp => "citizen app",
        IncidentSource::Police => "police",
        IncidentSource::Operator => "operator",
    };
    format!("{} detected by {who}", category.as_str().replace('_', " "))
}

/// How long units stay on scene, seconds: medical ~15 min, fire ~40 min,
/// flood the longest.
pub(crate) fn service_time_s(category: Category, rng: &mut impl Rng) -> f64 {
    let (lo, hi) = match category {
        Category::Medical => (10.0, 22.0),
        Category::Fire => (28.0, 55.0),
        Category::TrafficAccident => (15.0, 35.0),
        Category::Crime => (18.0, 45.0),
        Category::Flood => (35.0, 80.0),
        Category::Rescue => (30.0, 65.0),
        Category::Other => (8.0, 25.0),
    };
    rng.gen_range(lo..hi) * 60.0
}

/// Seconds from assignment to wheels rolling (crew to vehicle).
pub(crate) fn turnout_s(kind: UnitKind, rng: &mut impl Rng) -> f64 {
    match kind {
        UnitKind::Ambulance => rng.gen_range(30.0..75.0),
        UnitKind::FireEngine => rng.gen_range(45.0..100.0),
        UnitKind::Police => rng.gen_range(15.0..45.0),
        UnitKind::Rescue => rng.gen_range(45.0..100.0),
    }
}

/// Speed range on one leg, km/h: urban driving, or lights and sirens.
pub(crate) fn speed_range_kmh(kind: UnitKind, emergency: bool, patrol: bool) -> (f64, f64) {
    match (kind, emergency) {
        (UnitKind::Police, false) if patrol => (18.0, 30.0),
        (UnitKind::Ambulance, false) => (32.0, 42.0),
        (UnitKind::FireEngine, false) => (28.0, 38.0),
        (UnitKind::Police, false) => (30.0, 42.0),
        (UnitKind::Rescue, false) => (30.0, 40.0),
        (UnitKind::Ambulance, true) => (48.0, 65.0),
        (UnitKind::FireEngine, true) => (40.0, 55.0),
        (UnitKind::Police, true) => (50.0, 68.0),
        (UnitKind::Rescue, true) => (42.0, 55.0),
    }
}

/// Units per station: ambulances and police share posts three to a
/// station, fire engines and rescue trucks two.
pub(crate) fn units_per_station(kind: UnitKind) -> u32 {
    match kind {
        UnitKind::Ambulance | UnitKind::Police => 3,
        UnitKind::FireEngine | UnitKind::Rescue => 2,
    }
}

/// Short prefix for ids of units and stations of a kind.
pub(crate) fn kind_prefix(kind: UnitKind) -> &'static str {
    match kind {
        UnitKind::Ambulance => "amb",
        UnitKind::FireEngine => "fire",
        UnitKind::Police => "pol",
        UnitKind::Rescue => "res",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    #[test]
    fn diurnal_curve_has_mean_one_and_busy_evenings() {
        let day: f64 = (0..1440).map(|m| diurnal_factor(m * 60_000)).sum::<f64>() / 1440.0;
        assert!((day - 1.0).abs() < 0.01, "{day}");
        // 19:00 local = 12:00 UTC; 04:00 local = 21:00 UTC.
        assert!(diurnal_factor(12 * 3_600_000) > 2.0 * diurnal_factor(21 * 3_600_000));
    }

    #[test]
    fn phone_numbers_look_vietnamese() {
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        for _ in 0..100 {
            let n = phone_number(&mut rng);
            assert_eq!(n.len(), 10, "{n}");
            assert!(n.starts_with('0') && n.chars().all(|c| c.is_ascii_digit()));
        }
    }

    #[test]
    fn about_fifteen_percent_are_priority_one() {
        let mut rng = ChaCha8Rng::seed_from_u64(4);
        let p1 = (0..10_000).filter(|_| priority(&mut rng) == 1).count();
        assert!((1200..1800).contains(&p1), "{p1}");
    }

    #[test]
    fn thinned_arrivals_match_the_rate() {
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        let (mut t, mut n) = (0i64, 0);
        while let Some(next) = next_arrival(&mut rng, t, 60.0) {
            if next > 10 * 86_400_000 {
                break;
            }
            t = next;
            n += 1;
        }
        // 60/h over 10 days = 14400.
        assert!((13_800..15_000).contains(&n), "{n}");
        assert_eq!(next_arrival(&mut rng, 0, 0.0), None);
    }
}
