// The provisioned Grafana dashboard and the Prometheus/compose wiring agree
// with the metric names the code emits (crates/*/metrics_names.rs,
// telemetry.rs): no panel can silently show "no data" because of a typo.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { repoRoot } from './helpers.mjs';

const read = (p) => readFileSync(join(repoRoot, p), 'utf8');

function emittedMetricNames() {
  const src = read('crates/ioc-ingest/src/metrics_names.rs') + read('crates/ioc-gateway/src/telemetry.rs');
  return new Set([...src.matchAll(/pub const \w+: &str = "([a-z_]+)";/g)].map((m) => m[1]));
}

test('every metric of the Grafana dashboard is emitted by the code', () => {
  const dash = JSON.parse(read('dashboards/grafana/dashboards/ioc.json'));
  const names = emittedMetricNames();
  assert.ok(names.size > 10, 'metric name constants found');
  const exprs = dash.panels.flatMap((p) => (p.targets || []).map((t) => t.expr));
  assert.ok(exprs.length >= 15, 'dashboard has panels with queries');
  const used = new Set();
  for (const e of exprs) {
    for (const m of e.matchAll(/\b((?:ioc|gateway)_[a-z_]+)/g)) used.add(m[1].replace(/_(bucket|sum|count)$/, ''));
  }
  const unknown = [...used].filter((n) => !names.has(n));
  assert.deepEqual(unknown, [], 'unknown metric names in ioc.json');
  // The panels the issue asks for.
  for (const want of ['ioc_ingest_messages_total', 'ioc_dlq_messages_total', 'ioc_engine_apply_seconds', 'ioc_events_produced_total',
    'ioc_processor_last_seq', 'ioc_broker_stale', 'gateway_ws_connections', 'gateway_ws_messages_out_total',
    'gateway_ws_slow_disconnects_total', 'gateway_auth_failures_total', 'ioc_engine_recommendations_total']) {
    assert.ok(used.has(want), `dashboard shows ${want}`);
  }
  const uids = new Set(dash.panels.filter((p) => p.datasource).map((p) => p.datasource.uid));
  assert.deepEqual([...uids], ['prometheus']);
});

test('provisioning, Prometheus and compose point at each other', () => {
  const ds = read('dashboards/grafana/provisioning/datasources/prometheus.yml');
  assert.match(ds, /uid: prometheus/);
  assert.match(ds, /url: http:\/\/prometheus:9090/);
  const prov = read('dashboards/grafana/provisioning/dashboards/ioc.yml');
  const compose = read('docker-compose.yml');
  const path = prov.match(/path: (\S+)/)[1];
  assert.ok(compose.includes(`./dashboards/grafana/dashboards:${path}`), 'compose mounts the dashboards where the provider reads them');
  assert.ok(compose.includes('./dashboards/grafana/provisioning:/etc/grafana/provisioning'));
  const prom = read('deploy/prometheus/prometheus.yml');
  assert.match(prom, /targets: \["ioc:8080"\]/);
  assert.match(compose, /\n  ioc:\n/);
  const docker = read('Dockerfile');
  assert.match(docker, /node build\.mjs/, 'the image builds the screens');
  assert.match(docker, /dashboards\/dist/);
});
