// Node panel: identity, actions, metadata tree, interface counters, captures and
// packet injections of the selected node.

import { clear, fmtBytes, fmtNumber, fmtTime, gq, h, table } from '../dom.js';
import { nameOf, relationsOf } from '../graph.js';
import { styleFor } from '../styles.js';
import { MetricChart } from './chart.js';

const METRIC_ORDER = ['RxPackets', 'TxPackets', 'RxBytes', 'TxBytes', 'RxErrors', 'TxErrors', 'RxDropped', 'TxDropped', 'Multicast', 'Collisions'];
// Always shown for a node with counters: a counter Skydive leaves out is zero.
const METRIC_ALWAYS = METRIC_ORDER.slice(0, 8);

export class NodePanel {
  constructor(root, app) {
    this.root = root;
    this.app = app;
    this.id = null;
    this.open = new Set(['']); // metadata tree paths the user opened
    this.chart = new MetricChart(app);
  }

  show(id) {
    if (id !== this.id) this.open = new Set(['']);
    this.id = id;
    this.chart.reset();
    this.render();
  }

  refresh(id) {
    if (id === this.id) this.render();
  }

  render() {
    const root = clear(this.root);
    const node = this.id && this.app.graph.nodes.get(this.id);
    if (!node) {
      root.append(
        h('div', { class: 'placeholder' }, h('p', null, 'Select a node in the graph to see its metadata, counters, captures and injections.'), h('p', { class: 'muted' }, 'Click a collapsed group (dashed ring) to expand it; double-click an open group to collapse it.')),
      );
      return;
    }
    const md = node.Metadata || {};
    const style = styleFor(md.Type);
    const view = this.app.view;
    const isGroup = view.isGroup(node.ID);
    root.append(
      h(
        'div',
        { class: 'node-head' },
        h('span', { class: 'swatch', style: `background:${style.color}` }),
        h('div', { class: 'node-title' }, h('div', { class: 'node-name', id: 'node-name' }, nameOf(node) || node.ID), h('div', { class: 'muted mono small' }, node.ID)),
        h('span', { class: 'chip' }, md.Type || 'untyped'),
      ),
      h(
        'dl',
        { class: 'facts', id: 'node-facts' },
        this.wiring(node),
        fact('Host', node.Host),
        fact('TID', md.TID),
        fact('State', md.State),
        fact('MAC', md.MAC),
        fact('IPv4', Array.isArray(md.IPV4) ? md.IPV4.join(', ') : md.IPV4),
        fact('IPv6', Array.isArray(md.IPV6) ? md.IPV6.join(', ') : md.IPV6),
        fact('MTU', md.MTU),
        fact('Updated', fmtTime(node.UpdatedAt)),
      ),
      h(
        'div',
        { class: 'actions' },
        isGroup && h('button', { class: 'btn', onclick: () => { view.toggle(node.ID); setTimeout(() => this.render(), 0); } }, view.isCollapsed(node.ID) ? 'Expand group' : 'Collapse group'),
        h('button', { class: 'btn', onclick: () => this.app.captureFor(node) }, 'Capture…'),
        h('button', { class: 'btn', onclick: () => this.app.injectFrom(node, 'src') }, 'Inject from'),
        h('button', { class: 'btn', onclick: () => this.app.injectFrom(node, 'dst') }, 'Inject to'),
        h('button', { class: 'btn', onclick: () => this.app.consoleQuery(`G.V(${gq(node.ID)})`) }, 'Query'),
      ),
    );
    root.append(section('Interface counters', metricsTable(md)));
    // Rates over time, from the history (when the server keeps one).
    if ((md.Metric || md.LastUpdateMetric) && this.app.timeTravel.available) {
      const at = this.app.timeTravel.at;
      root.append(section(at === null ? 'Rates over the last hour' : `Rates over the hour before ${new Date(at).toLocaleTimeString()}`, this.chart.update(node)));
    }
    root.append(section('Captures', capturesTable(md.Captures)));
    root.append(section('Packet injections', injectionsTable(md.PacketInjections)));
    root.append(section('Metadata', h('div', { class: 'tree mono' }, this.tree(md, ''))));
  }

  /** A button that selects and centres node `id`, named by its label. */
  link(id, suffix) {
    const label = this.app.view.labelOf(id);
    return h('button', { type: 'button', class: 'link', dataset: { node: id }, title: `show ${label}`, onclick: () => this.app.selectNode(id) }, label, suffix || null);
  }

  /** Where the node sits and what it is wired to: namespace, veth peer, bridge, ports. */
  wiring(node) {
    const g = this.app.graph;
    const rel = relationsOf(g, node.ID);
    const byLabel = (a, b) => this.app.view.labelOf(a).localeCompare(this.app.view.labelOf(b), 'en', { numeric: true });
    rel.peers.sort(byLabel);
    rel.ports.sort(byLabel);
    const typeOf = (id) => g.nodes.get(id)?.Metadata?.Type;
    const rows = [];
    const row = (label, ids, id) => {
      if (!ids.length) return;
      const dd = h('dd', { id }, ...ids.flatMap((x, i) => (i ? [', ', x] : [x])));
      rows.push(h('dt', null, label), dd);
    };
    if (rel.owner) {
      const t = typeOf(rel.owner);
      row(t === 'netns' ? 'Namespace' : t === 'host' ? 'Namespace' : 'In', [this.link(rel.owner, t === 'host' ? ' (root)' : null)], 'node-owner');
    }
    row('Peer', rel.peers.map((id) => this.link(id)), 'node-peer');
    // A port of an OVS bridge names the bridge, through the port.
    const bridges = rel.bridges.map((id) => {
      if (typeOf(id) !== 'ovsport') return this.link(id);
      const owner = relationsOf(g, id).owner;
      return owner && typeOf(owner) === 'ovsbridge' ? [this.link(owner), h('span', { class: 'muted' }, ' port '), this.link(id)] : this.link(id);
    });
    row('Bridge', bridges, 'node-bridge');
    const type = typeOf(node.ID);
    if (type === 'bridge' || type === 'ovsbridge') {
      if (rel.ports.length) row(`Ports (${rel.ports.length})`, rel.ports.map((id) => this.link(id)), 'node-ports');
      else rows.push(h('dt', null, 'Ports'), h('dd', { id: 'node-ports', class: 'muted' }, 'none'));
    }
    return rows;
  }

  tree(value, path) {
    if (value === null || typeof value !== 'object') return leaf(value);
    const entries = Array.isArray(value) ? value.map((v, i) => [String(i), v]) : Object.entries(value).sort(([a], [b]) => a.localeCompare(b));
    return h(
      'ul',
      null,
      entries.map(([k, v]) => {
        const p = `${path}/${k}`;
        if (v !== null && typeof v === 'object') {
          const size = Array.isArray(v) ? `[${v.length}]` : `{${Object.keys(v).length}}`;
          const details = h('details', { open: this.open.has(p) }, h('summary', null, h('span', { class: 'key' }, k), ' ', h('span', { class: 'muted' }, size)), this.tree(v, p));
          details.addEventListener('toggle', () => (details.open ? this.open.add(p) : this.open.delete(p)));
          return h('li', null, details);
        }
        return h('li', null, h('span', { class: 'key' }, k), ': ', leaf(v));
      }),
    );
  }
}

function fact(label, value) {
  if (value === undefined || value === null || value === '') return null;
  return [h('dt', null, label), h('dd', { class: 'mono' }, String(value))];
}

function leaf(v) {
  // An empty value reads as a dash, never as "null" or "undefined".
  if (v === null || v === undefined) return h('span', { class: 'v-null' }, '—');
  return h('span', { class: `v-${typeof v}` }, typeof v === 'string' ? `"${v}"` : String(v));
}

function section(title, body) {
  return h('section', { class: 'sub' }, h('h3', null, title), body);
}

function metricsTable(md) {
  const m = md.Metric;
  const last = md.LastUpdateMetric;
  if (!m && !last) return h('div', { class: 'empty' }, 'no counters on this node');
  const keys = new Set([...METRIC_ALWAYS, ...Object.keys(m || {}), ...Object.keys(last || {})]);
  ['Start', 'Last'].forEach((k) => keys.delete(k));
  const ordered = [...METRIC_ORDER.filter((k) => keys.has(k)), ...[...keys].filter((k) => !METRIC_ORDER.includes(k)).sort()];
  // Skydive leaves zero counters out: absent reads 0.
  const fmt = (k, v) => {
    const n = typeof v === 'number' ? v : 0;
    return k.endsWith('Bytes') ? fmtBytes(n) : fmtNumber(n);
  };
  return h(
    'div',
    null,
    table(
      [
        { label: 'Counter', value: (k) => k },
        { label: 'Total', value: (k) => fmt(k, m?.[k]), class: 'num' },
        last ? { label: 'Last update', value: (k) => fmt(k, last[k]), class: 'num' } : null,
      ],
      ordered,
      { empty: 'no counters' },
    ),
    m?.Last ? h('div', { class: 'muted small' }, `as of ${fmtTime(m.Last)}`) : null,
  );
}

function capturesTable(list) {
  if (!Array.isArray(list) || !list.length) return h('div', { class: 'empty' }, 'no capture on this node');
  return table(
    [
      { label: 'ID', value: (c) => h('span', { class: 'mono' }, String(c.ID || '').slice(0, 8)) },
      { label: 'State', value: (c) => h('span', { class: `state state-${c.State}` }, c.State || '') },
      { label: 'Type', value: (c) => c.Type || 'default' },
      { label: 'BPF', value: (c) => c.BPFFilter || '' },
      { label: 'Received', value: (c) => fmtNumber(c.PacketsReceived ?? 0), class: 'num' },
      { label: 'Dropped', value: (c) => fmtNumber((c.PacketsDropped ?? 0) + (c.PacketsIfDropped ?? 0)), class: 'num' },
    ],
    list,
  );
}

function injectionsTable(list) {
  if (!Array.isArray(list) || !list.length) return h('div', { class: 'empty' }, 'no injection from this node');
  return table(
    [
      { label: 'ID', value: (c) => h('span', { class: 'mono' }, String(c.ID || '').slice(0, 8)) },
      { label: 'State', value: (c) => c.State || '' },
      { label: 'Type', value: (c) => c.Type || '' },
      { label: 'To', value: (c) => c.DstIP || '' },
      { label: 'Sent', value: (c) => fmtNumber(c.PacketCount ?? 0), class: 'num' },
      { label: 'Count', value: (c) => fmtNumber(c.Count ?? 0), class: 'num' },
    ],
    list,
  );
}
