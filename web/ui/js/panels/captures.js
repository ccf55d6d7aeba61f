// Captures: create (POST /api/capture), list (GET, an object keyed by UUID, with the
// number of nodes capturing in Count), delete, and the flow table of one capture.
// A server without the endpoint (404) gets "not available on this server".

import { gremlin, nodeIdsOf, request } from '../api.js';
import { clear, fmtNumber, h, table } from '../dom.js';
import { FlowsView } from './flows.js';

const REFRESH_MS = 3000;
const MATCH_TTL_MS = 10000; // how long what a capture's query matched is reused
const NAMES_SHOWN = 3;
export const TARGET_TYPES = ['local', 'netflowv5', 'sflow', 'erspanv1', 'erspanv2', 'ipfix'];
// Capture types (the server's CAPTURE_TYPES); '' is the node's default.
export const CAPTURE_TYPES = ['pcap', 'afpacket', 'sflow', 'pcapsocket', 'ovssflow', 'ovsmirror'];

export class CapturesPanel {
  constructor(root, app) {
    this.root = root;
    this.app = app;
    this.available = null;
    this.timer = null;
    this.build();
  }

  build() {
    const f = (this.fields = {
      query: h('input', { id: 'cap-query', class: 'mono', placeholder: "G.V().Has('TID', '…')", required: true }),
      name: h('input', { id: 'cap-name', placeholder: 'optional' }),
      bpf: h('input', { id: 'cap-bpf', class: 'mono', placeholder: 'e.g. icmp or tcp port 80' }),
      type: select('cap-type', [['', 'default'], ...CAPTURE_TYPES.map((t) => [t, t])]),
      port: h('input', { id: 'cap-port', type: 'number', min: 0, max: 65535, placeholder: 'sflow: 6343' }),
      target: h('input', { id: 'cap-target', class: 'mono', placeholder: 'host:port' }),
      targetType: select('cap-target-type', TARGET_TYPES.map((t) => [t, t])),
      headerSize: h('input', { id: 'cap-header-size', type: 'number', min: 0, max: 4096, placeholder: '256' }),
      samplingRate: h('input', { id: 'cap-sampling', type: 'number', min: 0, placeholder: '1' }),
      pollingInterval: h('input', { id: 'cap-polling', type: 'number', min: 0, placeholder: '10' }),
    });
    this.matches = new Map(); // query -> {ids: Set | null, error, at}
    this.notice = h('div', { id: 'cap-notice', class: 'notice hidden' });
    this.warnings = h('div', { id: 'cap-warnings', class: 'notice hidden', role: 'status' });
    this.formError = h('div', { id: 'cap-error', class: 'error-box hidden' });
    this.form = h(
      'form',
      { id: 'capture-form', class: 'form', onsubmit: (ev) => { ev.preventDefault(); this.create(); } },
      field('Gremlin query', f.query, h('button', { type: 'button', class: 'btn small', onclick: () => this.useSelected() }, 'Selected node')),
      h('div', { class: 'grid2' }, field('Name', f.name), field('BPF filter', f.bpf)),
      h('div', { class: 'grid2' }, field('Capture type', f.type), field('Header size', f.headerSize)),
      h('div', { class: 'grid2' }, field('Target', f.target), field('Target type', f.targetType)),
      h('div', { class: 'grid2' }, field('Sampling rate', f.samplingRate), field('Polling interval (s)', f.pollingInterval)),
      h('div', { class: 'grid2' }, field('Port (sflow, pcapsocket)', f.port)),
      h('div', { class: 'row' }, h('button', { class: 'btn primary', type: 'submit', id: 'cap-create' }, 'Create capture')),
      this.formError,
      this.warnings,
    );
    this.list = h('div', { id: 'capture-list' });
    this.flowsRoot = h('div', { id: 'flows', class: 'flows hidden' });
    this.flows = new FlowsView(this.flowsRoot);
    this.root.append(this.notice, this.form, h('div', { class: 'sub-head' }, h('h3', null, 'Captures'), h('span', { class: 'spacer' }), h('button', { class: 'btn small', onclick: () => this.refresh() }, 'Refresh')), this.list, this.flowsRoot);
  }

  activate() {
    this.refresh();
    clearInterval(this.timer);
    this.timer = setInterval(() => this.refresh(), REFRESH_MS);
  }

  deactivate() {
    clearInterval(this.timer);
    this.timer = null;
  }

  useSelected() {
    const node = this.app.selectedNode();
    if (node) this.fields.query.value = this.app.nodeQuery(node);
  }

  prefill(node) {
    this.fields.query.value = this.app.nodeQuery(node);
    if (!this.fields.name.value) this.fields.name.value = `${this.app.view.labelOf(node.ID)} capture`;
  }

  setAvailable(yes, reason) {
    this.available = yes;
    this.notice.classList.toggle('hidden', yes);
    this.form.classList.toggle('disabled', !yes);
    // Fields stay editable; only sending is off.
    this.form.querySelector('button[type="submit"]').disabled = !yes;
    if (!yes) clear(this.notice).append(h('strong', null, 'Captures are not available on this server'), h('div', { class: 'muted small' }, reason));
  }

  async refresh() {
    let caps;
    try {
      caps = await request('GET', '/api/capture');
    } catch (e) {
      if (e.notAvailable) {
        // Not polled again until the tab is opened again: no stream of 404s.
        this.deactivate();
        this.setAvailable(false, 'GET /api/capture answered 404: this topotap has no capture API.');
        clear(this.list).append(h('div', { class: 'empty' }, 'not available on this server'));
      } else {
        clear(this.list).append(h('div', { class: 'error-box' }, `cannot list captures: ${e.message}`));
      }
      return;
    }
    if (this.available !== true) this.setAvailable(true);
    const rows = Object.entries(caps || {}).map(([uuid, c]) => ({ ...c, UUID: c.UUID || uuid }));
    const states = this.nodeStates();
    await this.resolveMatches(rows.map((c) => c.GremlinQuery).filter(Boolean));
    clear(this.list).append(
      h(
        'div',
        { class: 'table-wrap' },
        table(
          [
            {
              label: '',
              value: (c) =>
                h('span', { class: 'row-actions stacked' }, h('button', { class: 'btn small', onclick: () => this.flows.show(c.UUID, c.Name || c.UUID.slice(0, 8)) }, 'Flows'), h('button', { class: 'btn small danger', onclick: () => this.remove(c.UUID) }, 'Delete')),
            },
            {
              label: 'Capture',
              value: (c) =>
                h(
                  'div',
                  { class: 'cap-cell', title: c.GremlinQuery || '' },
                  h('div', { class: 'cap-name' }, c.Name || c.UUID.slice(0, 8)),
                  this.matchedCell(c.GremlinQuery),
                  h('div', { class: 'small muted' }, [c.Type || 'default', c.BPFFilter ? `bpf: ${c.BPFFilter}` : null, c.Target ? `${c.TargetType || 'local'} → ${c.Target}` : c.TargetType || 'local'].filter(Boolean).join(' · ')),
                ),
            },
            { label: 'State', value: (c) => stateOf(c, states.get(c.UUID)) },
            { label: 'Count', value: (c) => fmtNumber(c.Count ?? 0), class: 'num' },
          ],
          rows,
          { empty: 'no capture' },
        ),
      ),
    );
  }

  /** Runs each capture's query (cached a few seconds) to name the nodes it matches. */
  async resolveMatches(queries) {
    const now = Date.now();
    const todo = [...new Set(queries)].filter((q) => !(this.matches.get(q)?.at > now - MATCH_TTL_MS));
    await Promise.all(
      todo.slice(0, 32).map(async (q) => {
        try {
          this.matches.set(q, { ids: nodeIdsOf(await gremlin(q)), at: Date.now() });
        } catch (e) {
          this.matches.set(q, { ids: null, error: e.message, at: Date.now() });
        }
      }),
    );
  }

  /** "on vm1/eth0, vm2/eth0 +3": the names of what a capture's query matches. */
  matchedCell(query) {
    const m = query && this.matches.get(query);
    if (!m) return h('div', { class: 'mono small muted ellipsis' }, query || '');
    if (!m.ids) return h('div', { class: 'small cap-match error-text' }, `query error: ${m.error}`);
    if (!m.ids.size) return h('div', { class: 'small cap-match warn-text' }, 'matches no node');
    const names = [...m.ids].map((id) => this.app.view.labelOf(id)).sort((a, b) => a.localeCompare(b, 'en', { numeric: true }));
    const shown = names.slice(0, NAMES_SHOWN).join(', ');
    return h('div', { class: 'small cap-match', title: names.join('\n') }, `on ${shown}${names.length > NAMES_SHOWN ? ` +${names.length - NAMES_SHOWN}` : ''}`);
  }

  /** The Warnings of a creation answer, whatever their shape (list, text, object). */
  showWarnings(resp) {
    const w = resp && typeof resp === 'object' ? resp.Warnings : undefined;
    const list = w === undefined || w === null ? [] : Array.isArray(w) ? w : [w];
    const lines = list.filter((x) => x !== null && x !== undefined && x !== '').map((x) => (typeof x === 'string' ? x : JSON.stringify(x)));
    this.warnings.classList.toggle('hidden', !lines.length);
    clear(this.warnings);
    if (lines.length) this.warnings.append(h('strong', null, 'Created, with warnings'), h('ul', { class: 'warn-list' }, lines.map((l) => h('li', null, l))));
  }

  /** Per capture UUID, what the nodes' Captures metadata says: {active, errors[]}. */
  nodeStates() {
    const out = new Map();
    for (const n of this.app.graph.nodes.values()) {
      const caps = n.Metadata?.Captures;
      if (!Array.isArray(caps)) continue;
      for (const c of caps) {
        if (!c?.ID) continue;
        let st = out.get(c.ID);
        if (!st) out.set(c.ID, (st = { active: 0, errors: [] }));
        if (c.State === 'active') st.active++;
        else if (c.State === 'error') st.errors.push(`${n.Metadata?.Name ?? n.ID}: ${c.Error || 'error'}`);
      }
    }
    return out;
  }

  async create() {
    const f = this.fields;
    this.formError.classList.add('hidden');
    const body = { GremlinQuery: f.query.value.trim() };
    if (f.name.value.trim()) body.Name = f.name.value.trim();
    if (f.bpf.value.trim()) body.BPFFilter = f.bpf.value.trim();
    if (f.type.value) body.Type = f.type.value;
    if (f.target.value.trim()) body.Target = f.target.value.trim();
    body.TargetType = f.targetType.value;
    for (const [k, el] of [['HeaderSize', f.headerSize], ['SamplingRate', f.samplingRate], ['PollingInterval', f.pollingInterval], ['Port', f.port]]) {
      if (el.value !== '') body[k] = Number(el.value);
    }
    this.showWarnings(null);
    try {
      const created = await request('POST', '/api/capture', body);
      this.showWarnings(created);
      f.name.value = '';
      await this.refresh();
    } catch (e) {
      showError(this.formError, e.notAvailable ? 'not available on this server (POST /api/capture answered 404)' : `${e.status || ''} ${e.message}`);
    }
  }

  async remove(uuid) {
    try {
      await request('DELETE', `/api/capture/${encodeURIComponent(uuid)}`);
      if (this.flows.captureId === uuid) this.flows.hide();
    } catch (e) {
      showError(this.formError, `cannot delete capture: ${e.message}`);
    }
    await this.refresh();
  }
}

function stateOf(c, st) {
  // The resource has no state of its own: it is active where nodes capture for it.
  let state = 'waiting';
  let title = 'no node matched by the query is capturing yet';
  if (st?.errors.length) {
    state = 'error';
    title = st.errors.join('\n');
  } else if ((st?.active || 0) > 0 || c.Count > 0) {
    state = 'active';
    title = `capturing on ${Math.max(st?.active || 0, c.Count || 0)} node(s)`;
  }
  return h('span', { class: `state state-${state}`, title }, state);
}

export function select(id, options) {
  return h('select', { id }, options.map(([v, label]) => h('option', { value: v }, label)));
}

export function field(label, input, extra) {
  return h('label', { class: 'field' }, h('span', { class: 'field-label' }, label), extra ? h('span', { class: 'with-btn' }, input, extra) : input);
}

export function showError(el, msg) {
  clear(el).append(msg);
  el.classList.remove('hidden');
}
