// Alerts: create (POST /api/alert), list (GET, an object keyed by UUID, with the
// engine's State, Error, ActionError, LastFired and FireCount), delete, and the alerts
// fired since the page was opened (the WebSocket `Alert` namespace, which reaches every
// subscriber whatever its filter). A server without the endpoint (404) gets "not
// available on this server".

import { isEdge, isNode, request } from '../api.js';
import { clear, fmtNumber, fmtTime, h, table } from '../dom.js';
import { field, showError } from './captures.js';

const REFRESH_MS = 3000;
/** Firings kept in the list, newest first. */
export const FIRINGS_KEPT = 100;
const VALUE_CHARS = 160;
const NAMES_SHOWN = 4;

export class AlertsPanel {
  constructor(root, app) {
    this.root = root;
    this.app = app;
    this.available = null;
    this.timer = null;
    this.firings = []; // {at, uuid, name, value}, newest first
    this.unseen = 0;
    this.active = false;
    this.names = new Map(); // UUID -> Name, from the last listing
    this.build();
  }

  build() {
    const f = (this.fields = {
      name: h('input', { id: 'alert-name', placeholder: 'optional' }),
      expression: h('input', { id: 'alert-expression', class: 'mono', placeholder: "G.V().Has('Type', 'netns', 'Name', 'vm1')", required: true }),
      trigger: h('input', { id: 'alert-trigger', class: 'mono', placeholder: 'graph (on changes) or duration:10s' }),
      action: h('input', { id: 'alert-action', class: 'mono', placeholder: 'none, a webhook URL, or file://SCRIPT' }),
      description: h('input', { id: 'alert-description', placeholder: 'optional' }),
    });
    this.notice = h('div', { id: 'alert-notice', class: 'notice hidden' });
    this.formError = h('div', { id: 'alert-error', class: 'error-box hidden', role: 'alert' });
    this.form = h(
      'form',
      { id: 'alert-form', class: 'form', autocomplete: 'off', onsubmit: (ev) => { ev.preventDefault(); this.create(); } },
      field('Gremlin expression (fires when its result turns non-empty or changes)', f.expression),
      h('div', { class: 'grid2' }, field('Name', f.name), field('Trigger', f.trigger)),
      h('div', { class: 'grid2' }, field('Action', f.action), field('Description', f.description)),
      h('div', { class: 'row' }, h('button', { class: 'btn primary', type: 'submit', id: 'alert-create' }, 'Create alert')),
      this.formError,
    );
    this.list = h('div', { id: 'alert-list' });
    this.firedList = h('div', { id: 'alert-firings' });
    this.renderFirings();
    this.root.append(
      this.notice,
      this.form,
      h('div', { class: 'sub-head' }, h('h3', null, 'Alerts'), h('span', { class: 'spacer' }), h('button', { class: 'btn small', type: 'button', onclick: () => this.refresh() }, 'Refresh')),
      this.list,
      h('div', { class: 'sub-head' }, h('h3', null, 'Fired'), h('span', { class: 'spacer' }), h('button', { class: 'btn small', type: 'button', id: 'alert-firings-clear', onclick: () => this.clearFirings() }, 'Clear')),
      this.firedList,
    );
  }

  activate() {
    this.active = true;
    this.setUnseen(0);
    this.refresh();
    clearInterval(this.timer);
    this.timer = setInterval(() => this.refresh(), REFRESH_MS);
  }

  deactivate() {
    this.active = false;
    clearInterval(this.timer);
    this.timer = null;
  }

  /** The tab's count of firings not looked at yet. */
  setUnseen(n) {
    this.unseen = n;
    const tab = document.querySelector('.tab[data-tab="alerts"]');
    if (!tab) return;
    let badge = tab.querySelector('.badge');
    if (!n) {
      badge?.remove();
      return;
    }
    if (!badge) tab.append((badge = h('span', { class: 'badge', id: 'alert-badge' })));
    badge.textContent = n > 99 ? '99+' : String(n);
  }

  /** An `Alert` message from the WebSocket: {UUID, Name, Timestamp, ReasonData}. */
  fired(obj) {
    if (!obj || typeof obj !== 'object') return;
    const at = Date.parse(obj.Timestamp);
    this.firings.unshift({
      at: Number.isNaN(at) ? Date.now() : at,
      uuid: String(obj.UUID || ''),
      name: obj.Name || this.names.get(obj.UUID) || '',
      value: obj.ReasonData,
    });
    if (this.firings.length > FIRINGS_KEPT) this.firings.length = FIRINGS_KEPT;
    this.renderFirings();
    if (this.active) this.refresh();
    else this.setUnseen(this.unseen + 1);
  }

  clearFirings() {
    this.firings = [];
    this.renderFirings();
  }

  renderFirings() {
    clear(this.firedList).append(
      table(
        [
          { label: 'Time', value: (f) => h('span', { class: 'fired-time', title: new Date(f.at).toISOString() }, new Date(f.at).toLocaleTimeString()) },
          { label: 'Alert', value: (f) => h('span', { class: 'fired-name', title: f.uuid }, f.name || f.uuid.slice(0, 8)) },
          { label: 'Matched', value: (f) => this.valueCell(f.value) },
        ],
        this.firings,
        { empty: 'nothing fired since the page was opened' },
      ),
    );
  }

  /** What an alert matched: node names as links, else the value as short JSON. */
  valueCell(value) {
    const items = Array.isArray(value) ? value : [value];
    if (items.length && items.every((v) => isNode(v) || isEdge(v))) {
      const nodes = items.filter(isNode);
      const shown = nodes.slice(0, NAMES_SHOWN).map((n) => {
        const label = n.Metadata?.Name || n.ID;
        const type = n.Metadata?.Type;
        // A node still in the graph can be shown; one gone meanwhile is just named.
        return this.app.graph.nodes.has(n.ID)
          ? h('button', { type: 'button', class: 'link', dataset: { node: n.ID }, title: `show ${label}`, onclick: () => this.app.selectNode(n.ID) }, label)
          : h('span', { title: n.ID }, label);
      }).flatMap((el, i) => (i ? [', ', el] : [el]));
      const edges = items.length - nodes.length;
      const rest = nodes.length - Math.min(nodes.length, NAMES_SHOWN);
      return h(
        'span',
        { class: 'fired-value' },
        shown,
        rest ? ` +${rest}` : null,
        edges ? h('span', { class: 'muted' }, `${nodes.length ? ', ' : ''}${edges} edge${edges > 1 ? 's' : ''}`) : null,
        nodes.length === 1 && nodes[0].Metadata?.Type ? h('span', { class: 'muted' }, ` (${nodes[0].Metadata.Type})`) : null,
      );
    }
    let text;
    try {
      text = JSON.stringify(value);
    } catch {
      text = String(value);
    }
    if (text === undefined) text = String(value);
    return h('span', { class: 'fired-value mono', title: text }, text.length > VALUE_CHARS ? `${text.slice(0, VALUE_CHARS)}…` : text);
  }

  setAvailable(yes, reason) {
    this.available = yes;
    this.notice.classList.toggle('hidden', yes);
    this.form.classList.toggle('disabled', !yes);
    this.form.querySelector('button[type="submit"]').disabled = !yes;
    if (!yes) clear(this.notice).append(h('strong', null, 'Alerts are not available on this server'), h('div', { class: 'muted small' }, reason));
  }

  async refresh() {
    let alerts;
    try {
      alerts = await request('GET', '/api/alert');
    } catch (e) {
      if (e.notAvailable) {
        this.deactivate();
        this.setAvailable(false, 'GET /api/alert answered 404: this topotap has no alert API.');
        clear(this.list).append(h('div', { class: 'empty' }, 'not available on this server'));
      } else {
        clear(this.list).append(h('div', { class: 'error-box' }, `cannot list alerts: ${e.message}`));
      }
      return;
    }
    if (this.available !== true) this.setAvailable(true);
    const rows = Object.entries(alerts || {})
      .map(([uuid, a]) => ({ ...a, UUID: a.UUID || uuid }))
      .sort((a, b) => String(a.CreateTime || '').localeCompare(String(b.CreateTime || '')) || a.UUID.localeCompare(b.UUID));
    this.names = new Map(rows.map((a) => [a.UUID, a.Name || '']));
    clear(this.list).append(
      h(
        'div',
        { class: 'table-wrap' },
        table(
          [
            { label: '', value: (a) => h('button', { class: 'btn small danger', type: 'button', onclick: () => this.remove(a.UUID) }, 'Delete') },
            {
              label: 'Alert',
              value: (a) =>
                h(
                  'div',
                  { class: 'cap-cell alert-cell', dataset: { uuid: a.UUID }, title: a.Description || '' },
                  h('div', { class: 'alert-name cap-name' }, a.Name || a.UUID.slice(0, 8)),
                  h('div', { class: 'mono small muted alert-expr' }, a.Expression || ''),
                  h('div', { class: 'small muted' }, [a.Trigger && a.Trigger !== 'graph' ? a.Trigger : 'on graph changes', a.Action ? `→ ${a.Action}` : null].filter(Boolean).join(' · ')),
                  a.Error ? h('div', { class: 'small error-text alert-err' }, `expression: ${a.Error}`) : null,
                  a.ActionError ? h('div', { class: 'small error-text alert-action-err' }, `action: ${a.ActionError}`) : null,
                ),
            },
            { label: 'State', value: (a) => h('span', { class: `state state-${a.State || 'pending'}` }, a.State || 'pending') },
            {
              label: 'Fired',
              class: 'num',
              value: (a) => h('div', { title: a.LastFired ? `last ${fmtTime(a.LastFired)}` : 'never fired' }, fmtNumber(a.FireCount ?? 0), a.LastFired ? h('div', { class: 'small muted' }, new Date(a.LastFired).toLocaleTimeString()) : null),
            },
          ],
          rows,
          { empty: 'no alert' },
        ),
      ),
    );
  }

  async create() {
    const f = this.fields;
    this.formError.classList.add('hidden');
    const body = { Expression: f.expression.value.trim() };
    for (const [k, el] of [['Name', f.name], ['Trigger', f.trigger], ['Action', f.action], ['Description', f.description]]) {
      if (el.value.trim()) body[k] = el.value.trim();
    }
    try {
      await request('POST', '/api/alert', body);
      f.name.value = '';
      f.description.value = '';
      await this.refresh();
    } catch (e) {
      showError(this.formError, e.notAvailable ? 'not available on this server (POST /api/alert answered 404)' : `${e.status || ''} ${e.message}`);
    }
  }

  async remove(uuid) {
    try {
      await request('DELETE', `/api/alert/${encodeURIComponent(uuid)}`);
    } catch (e) {
      showError(this.formError, `cannot delete alert: ${e.message}`);
    }
    await this.refresh();
  }
}
