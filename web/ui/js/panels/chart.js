// The node panel's metric chart: an interface's receive and transmit rates over the
// hour before the time shown, from `G.Context(t, 3600)...Metrics()`: one sample per
// revision of the node in that hour, each its counters over one sampling interval
// (`LastUpdateMetric`, Start to Last). Drawn with uPlot (web/ui/vendor/uplot).

import uPlot from '../../vendor/uplot/uPlot.esm.js';
import { gremlin } from '../api.js';
import { clear, fmtNumber, gq, h } from '../dom.js';

export const WINDOW_SECS = 3600;
// After a live update of the node, wait this long before asking: the history writes in
// batches.
const REFRESH_DELAY_MS = 1500;
const HEIGHT = 150;

const UNITS = {
  Bytes: { label: 'bytes/s', fmt: fmtByteRate },
  Packets: { label: 'packets/s', fmt: fmtPacketRate },
};

export class MetricChart {
  constructor(app) {
    this.app = app;
    this.unit = 'Bytes';
    this.key = '';
    this.seq = 0;
    this.samples = [];
    this.plot = null;
    const select = h(
      'select',
      { id: 'metric-unit', 'aria-label': 'chart unit', onchange: () => ((this.unit = select.value), this.draw()) },
      Object.entries(UNITS).map(([k, u]) => h('option', { value: k }, u.label)),
    );
    this.status = h('span', { class: 'muted small', id: 'metric-status' });
    this.box = h('div', { class: 'chart-box' });
    this.el = h('div', { class: 'metric-chart', id: 'metric-chart', dataset: { points: '0' } }, h('div', { class: 'chart-bar' }, select, this.status), this.box);
  }

  /** Forgets what was loaded: the next update() loads again. */
  reset() {
    this.key = '';
  }

  /**
   * The chart element for `node` at the time shown; loads its samples when the node or
   * the time changed, and again after a live update of its counters.
   */
  update(node) {
    const at = this.app.timeTravel.at;
    const key = `${node.ID}@${at ?? 'live'}`;
    const md = node.Metadata || {};
    const last = md.LastUpdateMetric?.Last ?? md.Metric?.Last ?? 0;
    if (key !== this.key) {
      this.key = key;
      this.last = last;
      clearTimeout(this.timer);
      this.samples = [];
      this.destroy();
      this.el.dataset.points = '0';
      this.status.textContent = 'loading…';
      this.load(node.ID, at);
    } else if (at === null && last !== this.last) {
      this.last = last;
      clearTimeout(this.timer);
      this.timer = setTimeout(() => this.load(node.ID, null), REFRESH_DELAY_MS);
    }
    return this.el;
  }

  async load(id, at) {
    const seq = ++this.seq;
    const t = at === null ? "'NOW'" : String(Math.round(at));
    const q = `G.Context(${t}, ${WINDOW_SECS}).V().Has('@ID', ${gq(id)}).Metrics()`;
    let result;
    try {
      result = await gremlin(q);
    } catch (e) {
      if (seq !== this.seq) return;
      this.status.textContent = `no chart: ${e.message}`;
      return;
    }
    if (seq !== this.seq) return;
    const series = Array.isArray(result) ? result.find((s) => s && Array.isArray(s[id])) : null;
    this.samples = series ? series[id] : [];
    this.end = at ?? Date.now();
    this.draw();
  }

  destroy() {
    this.plot?.destroy();
    this.plot = null;
    clear(this.box);
  }

  draw() {
    const unit = UNITS[this.unit];
    const data = rates(this.samples, this.unit);
    this.destroy();
    this.el.dataset.points = String(data[0].length);
    if (!data[0].length) {
      this.status.textContent = 'no samples in this hour';
      return;
    }
    this.status.textContent = `${data[0].length} sample${data[0].length === 1 ? '' : 's'}`;
    const css = getComputedStyle(document.documentElement);
    const color = (name, fallback) => css.getPropertyValue(name).trim() || fallback;
    const muted = color('--muted', '#8a929e');
    const grid = color('--border', '#2a2f37');
    const end = (this.end ?? Date.now()) / 1000;
    const axis = { stroke: muted, grid: { stroke: grid, width: 1 }, ticks: { stroke: grid, width: 1 }, font: '10px system-ui, sans-serif' };
    const opts = {
      width: Math.max(200, this.box.clientWidth || this.el.clientWidth || 300),
      height: HEIGHT,
      scales: {
        x: { time: true, range: () => [end - WINDOW_SECS, end] },
        // Rates from zero, so that a quiet interface does not look busy.
        y: { range: (u, min, max) => [0, max > 0 ? max * 1.1 : 1] },
      },
      series: [
        {},
        { label: `Rx ${unit.label}`, stroke: color('--accent', '#4c8dff'), width: 1.5, value: (u, v) => (v == null ? '—' : unit.fmt(v)) },
        { label: `Tx ${unit.label}`, stroke: color('--ok', '#3fb68b'), width: 1.5, value: (u, v) => (v == null ? '—' : unit.fmt(v)) },
      ],
      axes: [axis, { ...axis, size: 64, values: (u, splits) => splits.map((v) => unit.fmt(v)) }],
      legend: { live: true },
    };
    this.plot = new uPlot(opts, data, this.box);
  }
}

/** [times (s), rx rates, tx rates] of samples with a positive interval, in time order. */
export function rates(samples, unit) {
  const xs = [];
  const rx = [];
  const tx = [];
  const sorted = [...(samples || [])].filter((s) => s && typeof s === 'object').sort((a, b) => (a.Last ?? 0) - (b.Last ?? 0));
  for (const s of sorted) {
    const secs = ((s.Last ?? 0) - (s.Start ?? 0)) / 1000;
    if (!(secs > 0)) continue;
    xs.push(s.Last / 1000);
    rx.push((Number(s[`Rx${unit}`]) || 0) / secs);
    tx.push((Number(s[`Tx${unit}`]) || 0) / secs);
  }
  return [xs, rx, tx];
}

function fmtByteRate(v) {
  const units = ['B/s', 'KiB/s', 'MiB/s', 'GiB/s'];
  let i = 0;
  let x = v;
  while (Math.abs(x) >= 1024 && i < units.length - 1) {
    x /= 1024;
    i++;
  }
  return `${x >= 100 || x === 0 ? x.toFixed(0) : x.toFixed(1)} ${units[i]}`;
}

function fmtPacketRate(v) {
  return `${v >= 100 ? fmtNumber(Math.round(v)) : v.toFixed(v >= 10 ? 1 : 2)} pkt/s`;
}
