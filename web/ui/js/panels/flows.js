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

/** "10.0.0.1:80" (or "[fe80::1]:80"), or the bare address when there is no port. */
function endpoint(f, side) {
  const addr = ep(f.Network, side) || ep(f.Link, side);
  const port = ep(f.Transport, side);
  if (!port) return addr;
  return addr.includes(':') ? `[${addr}]:${port}` : `${addr}:${port}`;
}

/** The protocol of a flow: its last layer ("TCP" of "Ethernet/IPv4/TCP"). */
function protocol(f) {
  const path = String(f.LayersPath || f.Application || '');
  return f.Application || path.split('/').pop() || '';
}

const two = (a, b) => h('div', { class: 'two' }, h('div', null, a), h('div', { class: 'muted' }, b));

/** Compact enough for the side panel: one column per question, the two directions stacked. */
export function flowTable(flows) {
  return table(
    [
      { label: 'Proto', value: (f) => h('span', { title: String(f.LayersPath || '') }, protocol(f)) },
      { label: 'A → B', value: (f) => two(endpoint(f, 'A'), `→ ${endpoint(f, 'B')}`), class: 'mono addr' },
      { label: 'Packets', value: (f) => two(`→ ${fmtNumber(f.Metric?.ABPackets ?? 0)}`, `← ${fmtNumber(f.Metric?.BAPackets ?? 0)}`), class: 'num' },
      { label: 'Bytes', value: (f) => two(`→ ${fmtBytes(f.Metric?.ABBytes ?? 0)}`, `← ${fmtBytes(f.Metric?.BABytes ?? 0)}`), class: 'num' },
    ],
    flows,
    { empty: 'no flow yet' },
  );
}
