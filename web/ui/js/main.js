// topotap web UI: wires the subscriber, the topology view and the side panels.

import { ApiError, gremlin, nodeIdsOf } from './api.js';
import { $, clear, gq, h, put } from './dom.js';
import { Graph, nameOf, relationsOf } from './graph.js';
import { AlertsPanel } from './panels/alerts.js';
import { CapturesPanel } from './panels/captures.js';
import { caretPre, ConsolePanel } from './panels/console.js';
import { LoginForm, logout, session, showUser } from './login.js';
import { InjectionsPanel } from './panels/injections.js';
import { NodePanel } from './panels/node.js';
import { legendEntries, shapePath } from './styles.js';
import { Subscriber } from './subscriber.js';
import { TimeTravel } from './timetravel.js';
import { TopologyView } from './topology.js';

const SUBGRAPH = /\.SubGraph\(\s*\)\s*$/;

class App {
  constructor() {
    this.graph = new Graph();
    this.synced = false;
    this.timeTravel = new TimeTravel(this);
    this.view = new TopologyView($('#topology'), this.graph, {
      onSelect: (id) => {
        this.nodePanel.show(id);
        if (id) this.showTab('node');
      },
      onHover: (id, x, y) => this.tooltip(id, x, y),
    });
    this.nodePanel = new NodePanel($('#tab-node'), this);
    this.console = new ConsolePanel($('#tab-console'), this);
    this.captures = new CapturesPanel($('#tab-captures'), this);
    this.injections = new InjectionsPanel($('#tab-inject'), this);
    this.alerts = new AlertsPanel($('#tab-alerts'), this);
    this.nodePanel.show(null);

    this.graph.onChange((kind, id) => {
      if (kind === 'node-updated' || kind === 'reset') this.nodePanel.refresh(this.view.selected);
      else if (kind === 'node-deleted' && this.nodePanel.related.has(id)) this.nodePanel.refresh(this.view.selected);
      else if (kind === 'edge' && this.view.selected) {
        // What the selected node owns or is wired to changed (a container in a namespace).
        const e = this.graph.edges.get(id);
        if (e && (e.Parent === this.view.selected || e.Child === this.view.selected)) this.nodePanel.refresh(this.view.selected);
      }
      this.scheduleCounts();
    });

    this.subscriber = new Subscriber({
      onSync: () => {},
      // While a past time is shown, the live graph's changes wait for the way back.
      onEvent: (type, obj) => !this.timeTravel.active && this.graph.apply(type, obj),
      onState: (state, info) => this.connectionState(state, info),
      onFilterError: (msg) => this.filterError(msg),
      onMessage: (msg) => this.otherMessage(msg),
    });
    // A SyncReply replaces the graph; keep the handler here so `synced` is set once.
    this.subscriber.h.onSync = (g) => {
      this.synced = true;
      if (this.timeTravel.active) return;
      this.graph.reset(g);
      this.updateEmptyHint();
    };

    this.bindTopbar();
    this.bindToolbar();
    this.bindSearch();
    this.bindTabs();
    this.buildLegend();

    const saved = localStorage.getItem('topotap.filter') || '';
    $('#filter').value = saved;
    this.subscriber.filter = this.normalizeFilter(saved);
    this.loginForm = new LoginForm($('#login'));
    window.addEventListener('topotap:unauthorized', (ev) => this.unauthorized(ev.detail));
    this.begin();
  }

  // ---- login (only when the server asks for it) -------------------------------------

  /** Logs in first if the API answers 401, then subscribes to the graph. */
  async begin(reason) {
    let s;
    try {
      s = await session();
    } catch {
      // Unreachable: the subscriber shows it and retries; a 401 later brings the form.
      s = { ok: true, user: null };
    }
    while (!s.ok) {
      await this.loginForm.show(reason || loginReason(s.reason));
      reason = '';
      s = await session();
    }
    this.user = s.user;
    showUser(s.user, () => this.logout());
    this.subscriber.start();
    if (!this.timeTravel.available) this.timeTravel.init();
  }

  /** A past graph is shown: the node panel follows the selected node into it. */
  pastShown() {
    this.updateEmptyHint();
    this.nodePanel.refresh(this.view.selected);
  }

  /** Back from a past time: a fresh sync replaces the past graph (or the next reconnect does). */
  resumeLive() {
    const ws = this.subscriber.ws;
    if (ws && ws.readyState === WebSocket.OPEN) this.subscriber.sync();
    this.nodePanel.refresh(this.view.selected);
  }

  /** A call answered 401: the session ended (expired token, server restarted). */
  unauthorized(reason) {
    if (this.loginForm.shown) return;
    this.subscriber.stop();
    this.user = null;
    showUser(null);
    this.begin(loginReason(reason));
  }

  async logout() {
    this.subscriber.stop();
    try {
      await logout();
    } finally {
      this.user = null;
      showUser(null);
      this.synced = false;
      this.timeTravel.live();
      this.graph.reset({ Nodes: [], Edges: [] });
      this.begin('Logged out.');
    }
  }

  // ---- connection -------------------------------------------------------------------

  connectionState(state, info) {
    const conn = $('#conn');
    conn.dataset.state = state;
    const stage = $('#stage');
    const banner = $('#banner');
    clearInterval(this.countdown);
    if (state === 'live') {
      $('#conn-text').textContent = 'live';
      banner.classList.add('hidden');
      stage.classList.remove('stale');
      this.updateEmptyHint();
      return;
    }
    if (state === 'connecting') {
      $('#conn-text').textContent = 'connecting…';
      return;
    }
    if (state === 'idle') {
      // Logged out: nothing to reconnect to until the next login.
      $('#conn-text').textContent = 'logged out';
      banner.classList.add('hidden');
      return;
    }
    // A WebSocket refused for want of a login looks like any failed connection: ask the
    // API whether that is why (only when this server has logins at all).
    if (state === 'disconnected' && this.user && !this.loginForm.shown) {
      session()
        .then((s) => !s.ok && this.unauthorized(s.reason))
        .catch(() => {});
    }
    // Disconnected or reconnecting: what is shown may be out of date.
    $('#conn-text').textContent = state === 'reconnecting' ? 'reconnecting…' : 'disconnected';
    stage.classList.add('stale');
    banner.classList.remove('hidden');
    const text = $('#banner-text');
    const tick = () => {
      const left = Math.max(0, this.subscriber.nextRetryAt - Date.now());
      text.textContent = state === 'reconnecting' || left === 0 ? 'disconnected — reconnecting…' : `disconnected — reconnecting… (next attempt in ${(left / 1000).toFixed(1)} s)`;
    };
    tick();
    if (state === 'disconnected') this.countdown = setInterval(tick, 200);
  }

  otherMessage(msg) {
    // Skydive announces capture and injection changes in their own namespaces.
    if (msg.Namespace === 'OnDemandCaptureNotification' && this.activeTab === 'captures') this.captures.refresh();
    if (msg.Namespace === 'OnDemandPacketInjectionNotification' && this.activeTab === 'inject') this.injections.refresh();
    // Fired alerts reach every subscriber: kept in the Alerts tab's list whichever tab is open.
    if (msg.Namespace === 'Alert' && msg.Type === 'Alert') this.alerts.fired(msg.Obj);
  }

  // ---- filter and highlight ---------------------------------------------------------

  normalizeFilter(text) {
    const t = text.trim();
    if (!t) return '';
    return SUBGRAPH.test(t) ? t : `${t}.SubGraph()`;
  }

  filterError(msg) {
    this.showQueryError('Filter', msg, $('#filter').value.trim());
    // Nothing shown yet (e.g. a saved filter no longer valid): fall back to everything.
    if (!this.synced) {
      this.subscriber.setFilter('');
    }
  }

  showQueryError(label, message, query) {
    const bar = clear($('#query-errors'));
    bar.classList.remove('hidden');
    const err = new ApiError(400, message);
    const pos = err.position;
    put(
      bar,
      h('div', { class: 'qe-body' }, h('strong', null, `${label}: `), h('span', { class: 'qe-msg' }, message), pos && pos.line === 1 ? caretPre(query, Math.max(1, pos.column), `${label.toLowerCase()}-caret`) : null),
      h('button', { class: 'btn ghost small', type: 'button', onclick: () => bar.classList.add('hidden') }, 'Dismiss'),
    );
  }

  clearQueryError() {
    $('#query-errors').classList.add('hidden');
  }

  async runHighlight() {
    const q = $('#highlight').value.trim();
    if (!q) {
      this.view.setHighlight(null);
      return;
    }
    try {
      const result = await gremlin(this.timeTravel.rewrite(q));
      const ids = nodeIdsOf(result);
      this.view.setHighlight(ids);
      // Bring what was found into view, clear of the bars around the canvas.
      if (ids.size) this.view.fitTo(ids);
      this.clearQueryError();
      $('#counts').dataset.highlight = String(ids.size);
      this.updateCounts();
      if (ids.size === 0) this.showQueryError('Highlight', 'the query matched no node', q);
    } catch (e) {
      this.view.setHighlight(null);
      this.showQueryError('Highlight', e.message, q);
    }
  }

  bindTopbar() {
    $('#filter-form').addEventListener('submit', (ev) => {
      ev.preventDefault();
      const text = $('#filter').value;
      localStorage.setItem('topotap.filter', text.trim());
      this.clearQueryError();
      this.view.autoFit = true;
      this.subscriber.setFilter(this.normalizeFilter(text));
      this.timeTravel.refilter();
    });
    $('#highlight-form').addEventListener('submit', (ev) => {
      ev.preventDefault();
      this.runHighlight();
    });
    $('#highlight-clear').addEventListener('click', () => {
      $('#highlight').value = '';
      delete $('#counts').dataset.highlight;
      this.view.setHighlight(null);
      this.clearQueryError();
      this.updateCounts();
    });
    $('#banner-retry').addEventListener('click', () => this.subscriber.retryNow());
  }

  bindToolbar() {
    $('#zoom-in').addEventListener('click', () => this.view.zoomBy(1.3));
    $('#zoom-out').addEventListener('click', () => this.view.zoomBy(1 / 1.3));
    $('#zoom-fit').addEventListener('click', () => this.view.fit());
    $('#expand-all').addEventListener('click', () => this.view.expandAll());
    $('#collapse-all').addEventListener('click', () => this.view.collapseAll());
    window.addEventListener('keydown', (ev) => {
      if (ev.target instanceof HTMLInputElement || ev.target instanceof HTMLTextAreaElement) return;
      if (ev.key === '+' || ev.key === '=') this.view.zoomBy(1.2);
      else if (ev.key === '-') this.view.zoomBy(1 / 1.2);
      else if (ev.key === '0' || ev.key === 'f') this.view.fit();
      else if (ev.key === 'Escape') this.view.select(null);
      else if (ev.key === '/') {
        ev.preventDefault();
        $('#search').focus();
        $('#search').select();
      }
    });
  }

  bindTabs() {
    for (const b of document.querySelectorAll('.tab')) b.addEventListener('click', () => this.showTab(b.dataset.tab));
    this.activeTab = 'node';
  }

  showTab(name) {
    if (this.activeTab === name) return;
    for (const b of document.querySelectorAll('.tab')) b.classList.toggle('active', b.dataset.tab === name);
    for (const p of document.querySelectorAll('.tab-panel')) p.classList.toggle('hidden', p.id !== `tab-${name}`);
    const panels = { captures: this.captures, inject: this.injections, alerts: this.alerts };
    panels[this.activeTab]?.deactivate();
    this.activeTab = name;
    panels[name]?.activate();
  }

  buildLegend() {
    const legend = $('#legend');
    const folded = localStorage.getItem('topotap.legend') === 'folded';
    legend.classList.toggle('folded', folded);
    const title = h('div', { class: 'legend-title', id: 'legend-toggle', title: 'Show or hide the legend' }, h('span', null, 'Legend'), h('span', { class: 'muted' }, folded ? '▸' : '▾'));
    title.addEventListener('click', () => {
      const now = legend.classList.toggle('folded');
      title.lastChild.textContent = now ? '▸' : '▾';
      localStorage.setItem('topotap.legend', now ? 'folded' : 'open');
    });
    legend.append(title);
    for (const [label, style] of legendEntries()) {
      const c = h('canvas', { width: 28, height: 28 });
      const ctx = c.getContext('2d');
      ctx.scale(2, 2);
      ctx.beginPath();
      shapePath(ctx, style.shape, 7, 7, 5);
      ctx.fillStyle = style.color;
      ctx.fill();
      legend.append(h('div', { class: 'legend-row' }, c, h('span', null, label)));
    }
    legend.append(
      h('div', { class: 'legend-sep' }),
      h('div', { class: 'legend-row' }, h('span', { class: 'line l2' }), h('span', null, 'layer2')),
      h('div', { class: 'legend-row' }, h('span', { class: 'box' }), h('span', null, 'ownership (box)')),
      h('div', { class: 'legend-row' }, h('span', { class: 'ring' }), h('span', null, 'collapsed group')),
    );
  }

  // ---- status line and hints --------------------------------------------------------

  scheduleCounts() {
    if (this.countsPending) return;
    this.countsPending = true;
    setTimeout(() => {
      this.countsPending = false;
      this.updateCounts();
      this.updateEmptyHint();
    }, 150);
  }

  updateCounts() {
    const el = $('#counts');
    const shown = this.view.view?.nodes.length;
    const hl = el.dataset.highlight;
    el.textContent = `${this.graph.nodes.size} nodes · ${this.graph.edges.size} edges${shown !== undefined && shown !== this.graph.nodes.size ? ` · ${shown} shown` : ''}${hl !== undefined ? ` · ${hl} highlighted` : ''}`;
  }

  updateEmptyHint() {
    const hint = $('#empty-hint');
    const empty = this.synced && this.graph.nodes.size === 0;
    hint.classList.toggle('hidden', !empty);
    if (empty) {
      clear(hint).append(
        h('strong', null, this.subscriber.filter ? 'Nothing matches the filter' : 'The graph is empty'),
        h('div', { class: 'muted' }, this.subscriber.filter ? this.subscriber.filter : 'Run topotap with its probes, or create nodes with POST /api/node.'),
      );
    }
  }

  tooltip(id, x, y) {
    const tip = $('#tooltip');
    const node = id && this.graph.nodes.get(id);
    if (!node) {
      tip.classList.add('hidden');
      return;
    }
    const md = node.Metadata || {};
    const hidden = this.view.view?.hidden.get(id);
    const owner = relationsOf(this.graph, id).owner;
    const ownerNode = owner && this.graph.nodes.get(owner);
    const addrs = [...list(md.IPV4), ...list(md.IPV6)];
    put(
      clear(tip),
      h('strong', null, this.view.labelOf(id)),
      md.Type ? h('span', { class: 'muted' }, ` ${md.Type}`) : null,
      ownerNode ? h('div', { class: 'muted small' }, `in ${ownerNode.Metadata?.Type ?? 'node'} ${this.view.labelOf(owner)}`) : null,
      addrs.length ? h('div', { class: 'mono small' }, addrs.join(', ')) : null,
      md.State ? h('div', { class: 'small' }, `state ${md.State}`) : null,
      hidden ? h('div', { class: 'muted small' }, `${hidden} members hidden — click to expand`) : null,
    );
    tip.style.left = `${x + 14}px`;
    tip.style.top = `${y + 14}px`;
    tip.classList.remove('hidden');
  }

  // ---- cross-panel actions ----------------------------------------------------------

  selectedNode() {
    return this.view.selected ? this.graph.nodes.get(this.view.selected) : null;
  }

  /** Skydive's way to name one node in a capture query: by TID, else by ID. */
  nodeQuery(node) {
    const tid = node.Metadata?.TID;
    return tid ? `G.V().Has('TID', ${gq(tid)})` : `G.V(${gq(node.ID)})`;
  }

  selectNode(id) {
    this.view.select(id, { center: true });
  }

  // ---- search: a node by name, address or MAC --------------------------------------

  /** Nodes matching `text`, best first: exact name or address, then prefix, then substring. */
  findNodes(text, limit = 12) {
    const q = text.trim().toLowerCase();
    if (!q) return [];
    const hits = [];
    for (const [id, n] of this.graph.nodes) {
      const md = n.Metadata || {};
      const label = this.view.labelOf(id);
      const names = [label.toLowerCase(), nameOf(n).toLowerCase()];
      const addrs = [...list(md.IPV4), ...list(md.IPV6)].map((a) => String(a).toLowerCase());
      const bare = addrs.map((a) => a.split('/')[0]);
      const mac = typeof md.MAC === 'string' ? md.MAC.toLowerCase() : '';
      let score = -1;
      let extra = '';
      if (names.includes(q)) score = 0;
      else if (bare.includes(q) || addrs.includes(q) || mac === q) score = 0;
      else if (names.some((x) => x.startsWith(q))) score = 1;
      else if (bare.some((a) => a.startsWith(q)) || (mac && mac.startsWith(q))) score = 1;
      else if (names.some((x) => x.includes(q))) score = 2;
      else if (addrs.some((a) => a.includes(q)) || (mac && mac.includes(q)) || id.toLowerCase() === q) score = 2;
      if (score < 0) continue;
      const matchedAddr = addrs.find((a) => a.includes(q)) || (mac.includes(q) ? mac : '');
      extra = [md.Type, matchedAddr || addrs[0]].filter(Boolean).join(' · ');
      hits.push({ id, label, extra, score });
    }
    hits.sort((a, b) => a.score - b.score || a.label.localeCompare(b.label) || a.id.localeCompare(b.id));
    return hits.slice(0, limit);
  }

  bindSearch() {
    const input = $('#search');
    const results = $('#search-results');
    const status = $('#search-status');
    let hits = [];
    const hide = () => {
      results.classList.add('hidden');
      input.setAttribute('aria-expanded', 'false');
    };
    const go = (hit) => {
      hide();
      input.value = hit.label;
      status.textContent = `${hit.label}${hit.extra ? ` (${hit.extra})` : ''}`;
      this.selectNode(hit.id);
    };
    const show = () => {
      hits = this.findNodes(input.value);
      clear(results);
      if (!input.value.trim()) {
        status.textContent = '';
        hide();
        return;
      }
      status.textContent = hits.length ? `${hits.length}${hits.length === 12 ? '+' : ''} found` : 'no node matches';
      if (!hits.length) {
        hide();
        return;
      }
      results.append(
        ...hits.map((hit, i) =>
          h(
            'li',
            { role: 'option', id: `search-hit-${i}` },
            h(
              'button',
              { type: 'button', class: 'search-hit', dataset: { id: hit.id }, onclick: () => go(hit) },
              h('span', { class: 'hit-name' }, hit.label),
              hit.extra ? h('span', { class: 'hit-extra' }, hit.extra) : null,
            ),
          ),
        ),
      );
      results.classList.remove('hidden');
      input.setAttribute('aria-expanded', 'true');
    };
    input.addEventListener('input', show);
    input.addEventListener('focus', () => input.value.trim() && show());
    input.addEventListener('keydown', (ev) => {
      if (ev.key === 'ArrowDown' && hits.length) {
        ev.preventDefault();
        results.querySelector('button')?.focus();
      } else if (ev.key === 'Escape') hide();
    });
    results.addEventListener('keydown', (ev) => {
      const buttons = [...results.querySelectorAll('button')];
      const i = buttons.indexOf(document.activeElement);
      if (ev.key === 'ArrowDown' && i < buttons.length - 1) buttons[i + 1].focus();
      else if (ev.key === 'ArrowUp') (i > 0 ? buttons[i - 1] : input).focus();
      else if (ev.key === 'Escape') {
        hide();
        input.focus();
      } else return;
      ev.preventDefault();
    });
    $('#search-form').addEventListener('submit', (ev) => {
      ev.preventDefault();
      hits = this.findNodes(input.value);
      if (hits.length) go(hits[0]);
      else status.textContent = input.value.trim() ? 'no node matches' : '';
    });
    document.addEventListener('pointerdown', (ev) => {
      if (!$('#search-form').contains(ev.target)) hide();
    });
  }

  captureFor(node) {
    this.showTab('captures');
    this.captures.prefill(node);
  }

  injectFrom(node, which) {
    this.showTab('inject');
    this.injections.setEnd(which, node);
  }

  consoleQuery(q) {
    this.showTab('console');
    this.console.setQuery(q);
    this.console.run();
  }
}

/** A metadata value as a list (absent or null: empty). */
function list(v) {
  if (v === undefined || v === null) return [];
  return Array.isArray(v) ? v.filter((x) => x !== null && x !== undefined) : [v];
}

/** What the login form says about a 401's reason (the first one needs no explanation). */
function loginReason(reason) {
  return !reason || reason.startsWith('authentication required') ? '' : reason;
}

const app = new App();
// For the browser tests and for poking around from the devtools console.
window.topotap = { app, graph: app.graph, view: app.view, subscriber: app.subscriber };
