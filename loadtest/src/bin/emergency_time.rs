//! `emergency_time`: what ranking by ETA buys the city, in seconds.
//!
//! Replays the same simulated Da Nang day (same seed, same calls, same
//! fleet) once per dispatch policy of the engine — `nearest_eta` (ours) and
//! `home_district` (the old way: the unit of the incident's own district
//! station, a neighbour's only when none is free) — and reports the
//! call-to-scene time of each: mean, p50, p90, and the incidents no unit
//! reached.
//!
//! Offline and in-process: no Kafka, no clock. A [`Simulator`] and an
//! [`Engine`] are looped directly, one step of sim time at a time: every
//! message the simulator emits is decoded with [`decode_input`] (as ingest
//! does) and applied to the engine, the engine's output events go back to
//! [`Simulator::observe`], and the engine is ticked with the sim clock. The
//! simulated dispatcher assigns the recommended units of priorities 2-4
//! after its `dispatch_delay_s`; priority 1 is auto-assigned by the engine.
//! Both are deterministic, so the same flags give the same numbers.
//!
//! Incidents count if they opened within `--hours` of the start; the replay
//! then runs `--drain-hours` more so that late incidents can be reached (the
//! city goes on calling meanwhile, under the same policy). An incident
//! counts as priority 1 if it ever had priority 1 (a third call raises it).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Context};
use clap::Parser;
use ioc_engine::{DispatchPolicy, Engine, EngineConfig};
use ioc_model::{decode_input, EventBody, OutputEvent, Timestamp};
use ioc_router::Zones;
use ioc_sim::{SimConfig, Simulator};
use serde_json::{json, Value};

#[derive(Debug, Parser)]
#[command(
    name = "emergency_time",
    about = "Call-to-scene time of a simulated day under each dispatch policy"
)]
struct Args {
    /// Seed of the simulated day.
    #[arg(long, default_value_t = SimConfig::default().seed)]
    seed: u64,
    /// Hours of calls that count.
    #[arg(long, default_value_t = 24.0)]
    hours: f64,
    /// Hours replayed after them, so that late incidents can be reached.
    #[arg(long, default_value_t = 1.0)]
    drain_hours: f64,
    /// Start of the day (RFC 3339). Default: midnight in Da Nang (UTC+7).
    #[arg(long, default_value = "2026-11-22T17:00:00Z")]
    start: String,
    /// Sim time per step, milliseconds.
    #[arg(long, default_value_t = 1000)]
    step_ms: i64,
    #[arg(long, default_value_t = SimConfig::default().ambulances)]
    ambulances: u32,
    #[arg(long, default_value_t = SimConfig::default().fire_engines)]
    fire_engines: u32,
    #[arg(long, default_value_t = SimConfig::default().police)]
    police: u32,
    #[arg(long, default_value_t = SimConfig::default().rescue)]
    rescue: u32,
    /// Mean emergency calls per hour (repeat calls included).
    #[arg(long, default_value_t = SimConfig::default().calls_per_hour)]
    calls_per_hour: f64,
    /// Mean incident reports per hour (cameras, sensors, citizen app).
    #[arg(long, default_value_t = SimConfig::default().incident_reports_per_hour)]
    incident_reports_per_hour: f64,
    /// Seconds the simulated dispatcher takes on priorities 2-4.
    #[arg(long, default_value_t = SimConfig::default().dispatch_delay_s)]
    dispatch_delay_s: f64,
    /// Only this policy (default: both).
    #[arg(long)]
    policy: Option<DispatchPolicy>,
    /// District polygons.
    #[arg(long, default_value = "data/danang/districts.geojson")]
    zones: PathBuf,
    /// Also write the JSON report here.
    #[arg(long)]
    report: Option<PathBuf>,
}

/// Mean and percentiles of call-to-scene times, seconds.
#[derive(Debug, Clone, PartialEq)]
struct Summary {
    /// Incidents that count (opened within the day).
    incidents: usize,
    /// ... of which a unit reached.
    reached: usize,
    mean_s: f64,
    p50_s: f64,
    p90_s: f64,
    max_s: f64,
}

impl Summary {
    /// `times`: call-to-scene of the reached incidents; `incidents`: all
    /// incidents that count, reached or not. Percentiles are nearest-rank
    /// (an actual observed time, no interpolation); NaN when none reached.
    fn of(incidents: usize, times: &[f64]) -> Self {
        let mut sorted = times.to_vec();
        sorted.sort_by(f64::total_cmp);
        let n = sorted.len();
        let rank = |p: f64| {
            if n == 0 {
                f64::NAN
            } else {
                let i = ((p / 100.0 * n as f64).ceil() as usize).clamp(1, n) - 1;
                sorted[i]
            }
        };
        Self {
            incidents,
            reached: n,
            mean_s: if n == 0 {
                f64::NAN
            } else {
                sorted.iter().sum::<f64>() / n as f64
            },
            p50_s: rank(50.0),
            p90_s: rank(90.0),
            max_s: rank(100.0),
        }
    }

    fn unreached(&self) -> usize {
        self.incidents - self.reached
    }

    fn to_json(&self) -> Value {
        let r = |v: f64| {
            if v.is_finite() {
                json!((v * 10.0).round() / 10.0)
            } else {
                Value::Null
            }
        };
        json!({
            "incidents": self.incidents,
            "reached": self.reached,
            "never_reached": self.unreached(),
            "mean_s": r(self.mean_s),
            "p50_s": r(self.p50_s),
            "p90_s": r(self.p90_s),
            "max_s": r(self.max_s),
        })
    }
}

/// The result of one replay.
#[derive(Debug, Clone, PartialEq)]
struct Outcome {
    policy: DispatchPolicy,
    all: Summary,
    p1: Summary,
    /// Units assigned, and of those, how many from a station outside the
    /// incident's district.
    assignments: u64,
    cross_district: u64,
    /// Inputs that failed to decode or that the engine refused.
    dead_letters: u64,
    /// Inputs applied.
    inputs: u64,
    /// Wall time of the replay, seconds (not part of equality in spirit:
    /// compare the other fields).
    wall_s: f64,
}

/// What the replay needs to know about one incident.
#[derive(Debug, Default)]
struct Seen {
    opened_ms: i64,
    district: Option<String>,
    ever_p1: bool,
}

/// Replays `hours` (+ `drain_hours`) of the simulated day under `policy`.
fn replay(
    sim_config: &SimConfig,
    policy: DispatchPolicy,
    zones: &Arc<Zones>,
    start: Timestamp,
    hours: f64,
    drain_hours: f64,
    step_ms: i64,
) -> Outcome {
    let wall = Instant::now();
    let engine_config = EngineConfig {
        dispatch_policy: policy,
        ..EngineConfig::default()
    };
    let mut engine = Engine::new(engine_config, Arc::clone(zones), 0);
    let mut sim = Simulator::new(sim_config.clone(), zones, start);
    let day_end_ms = start.unix_millis() + (hours * 3_600_000.0) as i64;
    let end_ms = day_end_ms + (drain_hours * 3_600_000.0) as i64;

    let mut incidents: BTreeMap<String, Seen> = BTreeMap::new();
    let mut home_of: BTreeMap<String, Option<String>> = BTreeMap::new();
    let (mut assignments, mut cross_district, mut dead_letters, mut inputs) = (0u64, 0, 0, 0);
    let mut note = |ev: &OutputEvent| match &ev.body {
        EventBody::IncidentOpened(v) | EventBody::IncidentUpdated(v) => {
            let seen = incidents.entry(v.incident_id.clone()).or_default();
            seen.opened_ms = v.opened_at.unix_millis();
            seen.district.clone_from(&v.district);
            seen.ever_p1 |= v.priority == 1;
        }
        EventBody::UnitUpdated(u) => {
            home_of
                .entry(u.unit_id.clone())
                .or_insert_with(|| u.home_district.clone());
        }
        EventBody::DispatchAssigned(a) => {
            assignments += 1;
            let home = home_of.get(&a.unit_id).cloned().flatten();
            let district = incidents
                .get(&a.incident_id)
                .and_then(|i| i.district.clone());
            if home.is_none() || home != district {
                cross_district += 1;
            }
        }
        _ => {}
    };

    let mut now = start;
    let mut batch = sim.start();
    loop {
        for msg in batch {
            inputs += 1;
            let applied = decode_input(msg.kind, &msg.payload, now)
                .ok()
                .and_then(|input| engine.apply(&input).ok());
            let Some(events) = applied else {
                dead_letters += 1;
                continue;
            };
            for ev in &events {
                note(ev);
                sim.observe(ev);
            }
        }
        for ev in &engine.tick(now) {
            note(ev);
            sim.observe(ev);
        }
        if now.unix_millis() >= end_ms {
            break;
        }
        now = now.plus_millis(step_ms);
        batch = sim.advance(now);
    }

    let reached = sim.call_to_scene_by_incident();
    let counted: Vec<(&String, &Seen)> = incidents
        .iter()
        .filter(|(_, s)| s.opened_ms < day_end_ms)
        .collect();
    let times = |p1_only: bool| -> (usize, Vec<f64>) {
        let subset: Vec<&&String> = counted
            .iter()
            .filter(|(_, s)| !p1_only || s.ever_p1)
            .map(|(id, _)| id)
            .collect();
        let t = subset
            .iter()
            .filter_map(|id| reached.get(**id).copied())
            .collect();
        (subset.len(), t)
    };
    let (n_all, t_all) = times(false);
    let (n_p1, t_p1) = times(true);
    Outcome {
        policy,
        all: Summary::of(n_all, &t_all),
        p1: Summary::of(n_p1, &t_p1),
        assignments,
        cross_district,
        dead_letters,
        inputs,
        wall_s: wall.elapsed().as_secs_f64(),
    }
}

fn load_zones(path: &Path) -> anyhow::Result<Zones> {
    // Run from the repository root or from `loadtest/`.
    let fallback = Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(path);
    let path = if path.exists() || path.is_absolute() {
        path.to_path_buf()
    } else {
        fallback
    };
    Zones::load(&path).with_context(|| format!("loading zones from {}", path.display()))
}

fn fmt_s(v: f64) -> String {
    if v.is_finite() {
        format!("{v:.0}")
    } else {
        "-".into()
    }
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if !(args.hours.is_finite() && args.hours > 0.0 && args.hours <= 24.0 * 30.0) {
        bail!("--hours must be within (0, 720], got {}", args.hours);
    }
    if !(args.drain_hours.is_finite() && (0.0..=48.0).contains(&args.drain_hours)) {
        bail!(
            "--drain-hours must be within 0..=48, got {}",
            args.drain_hours
        );
    }
    if !(1..=60_000).contains(&args.step_ms) {
        bail!("--step-ms must be within 1..=60000, got {}", args.step_ms);
    }
    let start = Timestamp::parse(&args.start)
        .map_err(anyhow::Error::msg)
        .context("--start must be an RFC 3339 time")?;
    let sim_config = SimConfig {
        seed: args.seed,
        ambulances: args.ambulances,
        fire_engines: args.fire_engines,
        police: args.police,
        rescue: args.rescue,
        calls_per_hour: args.calls_per_hour,
        incident_reports_per_hour: args.incident_reports_per_hour,
        dispatch_delay_s: args.dispatch_delay_s,
        ..SimConfig::default()
    };
    sim_config
        .validate()
        .context("invalid simulator settings")?;
    let zones = Arc::new(load_zones(&args.zones)?);
    let policies: Vec<DispatchPolicy> = match args.policy {
        Some(p) => vec![p],
        None => DispatchPolicy::ALL.to_vec(),
    };

    let mut outcomes = Vec::new();
    for policy in policies {
        eprintln!(
            "replaying {} h (+{} h drain) under {policy} ...",
            args.hours, args.drain_hours
        );
        let o = replay(
            &sim_config,
            policy,
            &zones,
            start,
            args.hours,
            args.drain_hours,
            args.step_ms,
        );
        eprintln!(
            "  {} inputs applied, {} dead-lettered, {:.1} s",
            o.inputs, o.dead_letters, o.wall_s
        );
        outcomes.push(o);
    }

    println!(
        "\nseed {}, {} h from {}, fleet {} ambulances / {} fire engines / {} police / {} rescue, {} calls/h, dispatcher {} s\n",
        args.seed,
        args.hours,
        start,
        args.ambulances,
        args.fire_engines,
        args.police,
        args.rescue,
        args.calls_per_hour,
        args.dispatch_delay_s
    );
    println!(
        "| policy | incidents | mean (s) | p50 (s) | p90 (s) | never reached | P1 incidents | P1 mean (s) | P1 p50 (s) | P1 p90 (s) | P1 never reached | units from another district |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|");
    for o in &outcomes {
        println!(
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} of {} |",
            o.policy,
            o.all.incidents,
            fmt_s(o.all.mean_s),
            fmt_s(o.all.p50_s),
            fmt_s(o.all.p90_s),
            o.all.unreached(),
            o.p1.incidents,
            fmt_s(o.p1.mean_s),
            fmt_s(o.p1.p50_s),
            fmt_s(o.p1.p90_s),
            o.p1.unreached(),
            o.cross_district,
            o.assignments
        );
    }
    let report = json!({
        "seed": args.seed,
        "hours": args.hours,
        "drain_hours": args.drain_hours,
        "start": start.to_rfc3339(),
        "step_ms": args.step_ms,
        "fleet": {
            "ambulances": args.ambulances,
            "fire_engines": args.fire_engines,
            "police": args.police,
            "rescue": args.rescue,
        },
        "calls_per_hour": args.calls_per_hour,
        "incident_reports_per_hour": args.incident_reports_per_hour,
        "dispatch_delay_s": args.dispatch_delay_s,
        "policies": outcomes.iter().map(|o| json!({
            "policy": o.policy.as_str(),
            "all": o.all.to_json(),
            "priority_1": o.p1.to_json(),
            "assignments": o.assignments,
            "assignments_from_another_district": o.cross_district,
            "inputs": o.inputs,
            "dead_letters": o.dead_letters,
            "wall_s": (o.wall_s * 10.0).round() / 10.0,
        })).collect::<Vec<_>>(),
    });
    let text = serde_json::to_string_pretty(&report)?;
    println!("\n{text}");
    if let Some(path) = &args.report {
        std::fs::write(path, &text).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_nearest_rank_and_unreached_incidents_are_counted() {
        let times: Vec<f64> = (1..=10).rev().map(|s| s as f64 * 60.0).collect();
        let s = Summary::of(12, &times);
        assert_eq!(s.reached, 10);
        assert_eq!(s.unreached(), 2);
        assert_eq!(s.mean_s, 330.0);
        assert_eq!(s.p50_s, 300.0);
        assert_eq!(s.p90_s, 540.0);
        assert_eq!(s.max_s, 600.0);
        let one = Summary::of(1, &[42.0]);
        assert_eq!((one.p50_s, one.p90_s), (42.0, 42.0));
        let none = Summary::of(3, &[]);
        assert!(none.mean_s.is_nan() && none.p90_s.is_nan());
        assert_eq!(none.to_json()["p90_s"], Value::Null);
    }

    #[test]
    fn the_same_seed_gives_the_same_numbers() {
        let zones = Arc::new(load_zones(Path::new("data/danang/districts.geojson")).unwrap());
        let config = SimConfig {
            calls_per_hour: 240.0,
            ..SimConfig::default()
        };
        let start = Timestamp::parse("2026-11-23T01:00:00Z").unwrap();
        let run = |p| {
            let mut o = replay(&config, p, &zones, start, 1.0, 0.5, 1000);
            o.wall_s = 0.0;
            o
        };
        let ours = run(DispatchPolicy::NearestEta);
        assert!(ours.all.incidents > 0 && ours.all.reached > 0, "{ours:?}");
        assert_eq!(ours, run(DispatchPolicy::NearestEta));
        let old = run(DispatchPolicy::HomeDistrict);
        assert_eq!(old, run(DispatchPolicy::HomeDistrict));
        // Same day either way: the calls do not depend on the policy.
        assert_eq!(ours.all.incidents, old.all.incidents);
    }
}
