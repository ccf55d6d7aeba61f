// Flow table of one capture: G.Flows().Has('CaptureID', <uuid>), refreshed every 2 s
// while it is shown.

import { gremlin } from '../api.js';
import { clear, fmtBytes, fmtNumber, gq, h, table } from '../dom.js';

const REFRESH_MS = 2000;

export class FlowsView {
  constructor(root) {
    this.root = root;
    this.captureId = null;
    this.timer = null;
    this.busy = false;
  }

  show(captureId, label) {
    this.stop();
    this.captureId = captureId;
    this.label = label;
    this.root.classList.remove('hidden');
    clear(this.root).append(
      h('div', { class: 'sub-head' }, h('h3', null, `Flows of ${label}`), h('span', { class: 'spacer' }), h('span', { class: 'muted small', id: 'flows-status' }, 'loading…'), h('button', { class: 'btn small', onclick: () => this.hide() }, 'Close')),
      h('div', { class: 'mono small muted query-line' }, this.query()),
      (this.body = h('div', { id: 'flows-body' })),
    );
    this.refresh();
    this.timer = setInterval(() => this.refresh(), REFRESH_MS);
  }

  query() {
    return `G.Flows().Has('CaptureID', ${gq(this.captureId)})`;
  }

  hide() {
    this.stop();
    this.captureId = null;
    clear(this.root).classList.add('hidden');
  }

  stop() {
    clearInterval(this.timer);
    this.timer = null;
  }

  async refresh() {
    if (this.busy || !this.captureId) return;
    this.busy = true;
    const status = this.root.querySelector('#flows-status');
    try {
      const flows = await gremlin(this.query());
      const list = Array.isArray(flows) ? flows : [];
      clear(this.body).append(h('div', { class: 'table-wrap' }, flowTable(list)));
      if (status) status.textContent = `${list.length} flow${list.length === 1 ? '' : 's'} · ${new Date().toLocaleTimeString()}`;
    } catch (e) {
      clear(this.body).append(h('div', { class: 'error-box' }, e.status === 400 && /Flows/.test(e.message) ? `flows are not available on this server: ${e.message}` : e.message));
      if (status) status.textContent = 'error';
    } finally {
      this.busy = false;
    }
  }
}

function ep(layer, side) {
  const v = layer?.[side];
  return v === undefined || v === null ? '' : String(v);
}

export function flowTable(flows) {
  return table(
    [
      { label: 'LayersPath', value: (f) => f.LayersPath || f.Application || '' },
      { label: 'Network A', value: (f) => ep(f.Network, 'A'), class: 'mono' },
      { label: 'Network B', value: (f) => ep(f.Network, 'B'), class: 'mono' },
      { label: 'Transport A', value: (f) => ep(f.Transport, 'A'), class: 'mono num' },
      { label: 'Transport B', value: (f) => ep(f.Transport, 'B'), class: 'mono num' },
      { label: 'AB pkts', value: (f) => fmtNumber(f.Metric?.ABPackets ?? 0), class: 'num' },
      { label: 'AB bytes', value: (f) => fmtBytes(f.Metric?.ABBytes ?? 0), class: 'num' },
      { label: 'BA pkts', value: (f) => fmtNumber(f.Metric?.BAPackets ?? 0), class: 'num' },
      { label: 'BA bytes', value: (f) => fmtBytes(f.Metric?.BABytes ?? 0), class: 'num' },
    ],
    flows,
    { empty: 'no flow yet' },
  );
}
