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
    this.related = new Set(); // other nodes whose metadata the panel shows (a namespace's containers)
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
    this.related.clear();
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
    const container = this.containerSection(node);
    if (container) root.append(container);
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

  /**
   * A container's facts: its own `Container` metadata, or for a network namespace named
   * after a container, that of the container node(s) it owns.
   */
  containerSection(node) {
    const md = node.Metadata || {};
    let found = [];
    if (md.Container && typeof md.Container === 'object') found = [{ id: null, c: md.Container }];
    else if (md.Type === 'netns') {
      const g = this.app.graph;
      for (const eid of g.incident.get(node.ID) || []) {
        const e = g.edges.get(eid);
        if (!e || e.Parent !== node.ID || e.Metadata?.RelationType !== 'ownership') continue;
        const child = g.nodes.get(e.Child);
        const c = child?.Metadata?.Container;
        if (child?.Metadata?.Type === 'container' && c && typeof c === 'object') found.push({ id: child.ID, c });
      }
      found.sort((a, b) => String(a.c.Name ?? '').localeCompare(String(b.c.Name ?? '')));
      for (const f of found) this.related.add(f.id);
    }
    if (!found.length) return null;
    return h(
      'section',
      { class: 'sub', id: 'node-container' },
      h('h3', null, found.length > 1 ? `Containers (${found.length})` : 'Container'),
      found.map(({ id, c }) => containerFacts(c, id && ((label) => h('button', { type: 'button', class: 'link', dataset: { node: id }, title: 'show the container node', onclick: () => this.app.selectNode(id) }, label)))),
    );
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

/** Container IDs are long hashes: the first 12 characters, as Docker shows them. */
const CONTAINER_ID_SHOWN = 12;

/** `link(label)`, when given, makes the name a link to the container's node. */
function containerFacts(c, link) {
  const id = c.ID === undefined || c.ID === null ? '' : String(c.ID);
  const pod = c.PodName ? (c.PodNamespace ? `${c.PodNamespace}/${c.PodName}` : String(c.PodName)) : c.PodNamespace ? `${c.PodNamespace}/—` : '';
  const labels = c.Labels && typeof c.Labels === 'object' ? Object.entries(c.Labels).sort(([a], [b]) => a.localeCompare(b)) : [];
  return h(
    'div',
    { class: 'container-facts', dataset: { container: id } },
    h(
      'dl',
      { class: 'facts' },
      // Seen from its namespace, the name leads to the container's node.
      c.Name !== undefined && c.Name !== null ? [h('dt', null, 'Name'), h('dd', { class: 'mono container-name' }, link ? link(String(c.Name)) : String(c.Name))] : null,
      id ? [h('dt', null, 'ID'), h('dd', { class: 'mono container-id', title: id }, id.length > CONTAINER_ID_SHOWN ? `${id.slice(0, CONTAINER_ID_SHOWN)}…` : id)] : null,
      fact('Image', c.Image),
      fact('Runtime', c.Runtime),
      fact('Status', c.Status),
      fact('PID', c.InitProcessPID),
      pod ? [h('dt', null, 'Pod'), h('dd', { class: 'mono container-pod' }, pod)] : null,
    ),
    labels.length
      ? h(
          'details',
          { class: 'container-labels', open: labels.length <= 8 },
          h('summary', { class: 'muted small' }, `Labels (${labels.length})`),
          table(
            [
              { label: 'Label', value: ([k]) => h('span', { class: 'mono' }, k) },
              { label: 'Value', value: ([, v]) => h('span', { class: 'mono' }, typeof v === 'string' ? v : JSON.stringify(v)) },
            ],
            labels,
          ),
        )
      : null,
  );
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
