// Packet injection: create (POST /api/injectpacket), list, delete. Source and
// destination come from selected nodes; 404 means "not available on this server".

import { request } from '../api.js';
import { clear, fmtNumber, h, table } from '../dom.js';
import { field, select, showError } from './captures.js';

const REFRESH_MS = 3000;

export class InjectionsPanel {
  constructor(root, app) {
    this.root = root;
    this.app = app;
    this.available = null;
    this.timer = null;
    this.build();
  }

  build() {
    const f = (this.fields = {
      src: h('input', { id: 'inj-src', class: 'mono', placeholder: 'source node (Gremlin)', required: true }),
      dst: h('input', { id: 'inj-dst', class: 'mono', placeholder: 'destination node (Gremlin, optional)' }),
      type: select('inj-type', ['icmp4', 'icmp6', 'tcp4', 'tcp6', 'udp4', 'udp6'].map((t) => [t, t])),
      srcIP: h('input', { id: 'inj-src-ip', class: 'mono', placeholder: 'auto' }),
      dstIP: h('input', { id: 'inj-dst-ip', class: 'mono', placeholder: 'auto' }),
      srcPort: h('input', { id: 'inj-src-port', type: 'number', min: 0, max: 65535, placeholder: 'auto' }),
      dstPort: h('input', { id: 'inj-dst-port', type: 'number', min: 0, max: 65535, placeholder: 'auto' }),
      count: h('input', { id: 'inj-count', type: 'number', min: 1, value: '5' }),
      interval: h('input', { id: 'inj-interval', type: 'number', min: 0, value: '1000' }),
      ttl: h('input', { id: 'inj-ttl', type: 'number', min: 1, max: 255, value: '64' }),
      payload: h('input', { id: 'inj-payload', class: 'mono', placeholder: 'random 56 bytes' }),
    });
    this.notice = h('div', { id: 'inj-notice', class: 'notice hidden' });
    this.formError = h('div', { id: 'inj-error', class: 'error-box hidden' });
    this.form = h(
      'form',
      { id: 'inject-form', class: 'form', onsubmit: (ev) => { ev.preventDefault(); this.create(); } },
      field('Source', f.src, h('button', { type: 'button', class: 'btn small', onclick: () => this.useSelected('src') }, 'Selected node')),
      field('Destination', f.dst, h('button', { type: 'button', class: 'btn small', onclick: () => this.useSelected('dst') }, 'Selected node')),
      h('div', { class: 'grid3' }, field('Type', f.type), field('Count', f.count), field('Interval (ms)', f.interval)),
      h('div', { class: 'grid2' }, field('Source IP', f.srcIP), field('Destination IP', f.dstIP)),
      h('div', { class: 'grid3' }, field('Source port', f.srcPort), field('Dest. port', f.dstPort), field('TTL', f.ttl)),
      field('Payload', f.payload),
      h('div', { class: 'row' }, h('button', { class: 'btn primary', type: 'submit', id: 'inj-create' }, 'Inject packets')),
      this.formError,
    );
    this.list = h('div', { id: 'injection-list' });
    this.root.append(this.notice, this.form, h('div', { class: 'sub-head' }, h('h3', null, 'Injections'), h('span', { class: 'spacer' }), h('button', { class: 'btn small', onclick: () => this.refresh() }, 'Refresh')), this.list);
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

  useSelected(which) {
    const node = this.app.selectedNode();
    if (node) this.setEnd(which, node);
  }

  setEnd(which, node) {
    this.fields[which].value = this.app.nodeQuery(node);
  }

  setAvailable(yes, reason) {
    this.available = yes;
    this.notice.classList.toggle('hidden', yes);
    this.form.classList.toggle('disabled', !yes);
    // Fields stay editable; only sending is off.
    this.form.querySelector('button[type="submit"]').disabled = !yes;
    if (!yes) clear(this.notice).append(h('strong', null, 'Packet injection is not available on this server'), h('div', { class: 'muted small' }, reason));
  }

  async refresh() {
    let list;
    try {
      list = await request('GET', '/api/injectpacket');
    } catch (e) {
      if (e.notAvailable) {
        // Not polled again until the tab is opened again: no stream of 404s.
        this.deactivate();
        this.setAvailable(false, 'GET /api/injectpacket answered 404: this topotap has no injection API.');
        clear(this.list).append(h('div', { class: 'empty' }, 'not available on this server'));
      } else {
        clear(this.list).append(h('div', { class: 'error-box' }, `cannot list injections: ${e.message}`));
      }
      return;
    }
    if (this.available !== true) this.setAvailable(true);
    const rows = Object.entries(list || {}).map(([uuid, c]) => ({ ...c, UUID: c.UUID || uuid }));
    clear(this.list).append(
      h('div', { class: 'table-wrap' }, table(
        [
          { label: '', value: (c) => h('button', { class: 'btn small danger', onclick: () => this.remove(c.UUID) }, 'Delete') },
          { label: 'Source', value: (c) => h('span', { class: 'mono ellipsis', title: c.Src }, c.Src || '') },
          { label: 'Destination', value: (c) => h('span', { class: 'mono ellipsis', title: c.Dst || c.DstIP }, c.Dst || c.DstIP || '') },
          { label: 'Type', value: (c) => c.Type || '' },
          { label: 'Count', value: (c) => fmtNumber(c.Count ?? 0), class: 'num' },
        ],
        rows,
        { empty: 'no injection' },
      )),
    );
  }

  async create() {
    const f = this.fields;
    this.formError.classList.add('hidden');
    const num = (el, dflt) => (el.value === '' ? dflt : Number(el.value));
    const body = {
      Src: f.src.value.trim(),
      Dst: f.dst.value.trim(),
      SrcIP: f.srcIP.value.trim(),
      DstIP: f.dstIP.value.trim(),
      SrcPort: num(f.srcPort, 0),
      DstPort: num(f.dstPort, 0),
      Type: f.type.value,
      Count: num(f.count, 1),
      Interval: num(f.interval, 0),
      TTL: num(f.ttl, 64),
      Payload: f.payload.value,
      Mode: 'unique',
    };
    // As Skydive's UI: the resource lives as long as the injection takes, plus 5 s.
    const ttl = body.Interval * body.Count + 5000;
    try {
      await request('POST', '/api/injectpacket', body, { 'X-Resource-TTL': `${ttl}ms` });
      await this.refresh();
    } catch (e) {
      showError(this.formError, e.notAvailable ? 'not available on this server (POST /api/injectpacket answered 404)' : `${e.status || ''} ${e.message}`);
    }
  }

  async remove(uuid) {
    try {
      await request('DELETE', `/api/injectpacket/${encodeURIComponent(uuid)}`);
    } catch (e) {
      showError(this.formError, `cannot delete injection: ${e.message}`);
    }
    await this.refresh();
  }
}
