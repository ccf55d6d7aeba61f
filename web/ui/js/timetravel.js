// The time bar: the topology as it was at a past time T, loaded with `G.At(T)` over
// REST while live updates are paused, and back to the live WebSocket view.
//
// The slider runs from the start of the chosen span (at most the history's retention)
// to now; its right end is live. A past time stays that time: while it is shown, the
// thumb drifts left as now moves on. The bar is there only when the server keeps
// history (a History section in /api/status).

import { gremlinPast, isEdge, isGraph, isNode, request } from './api.js';
import { $, fmtTime, h } from './dom.js';

const SPANS = [
  { secs: 300, label: 'last 5 min' },
  { secs: 3600, label: 'last hour' },
  { secs: 6 * 3600, label: 'last 6 hours' },
  { secs: 24 * 3600, label: 'last 24 hours' },
];
const DEFAULT_SPAN = 3600;
// A dragged slider loads once it rests this long (and at once when released).
const DEBOUNCE_MS = 250;

export class TimeTravel {
  constructor(app) {
    this.app = app;
    this.available = false;
    this.at = null; // the time shown, ms since the epoch; null: live
    this.seq = 0; // load generation: an answer to a superseded load is dropped
    this.bar = $('#time-bar');
    this.slider = $('#time-slider');
    this.label = $('#time-label');
    this.spanSelect = $('#time-span');
    this.banner = $('#time-banner');
    this.slider.addEventListener('input', () => this.moved(false));
    this.slider.addEventListener('change', () => this.moved(true));
    this.spanSelect.addEventListener('change', () => this.setSpan(Number(this.spanSelect.value)));
    $('#time-live').addEventListener('click', () => this.live());
    $('#time-banner-live').addEventListener('click', () => this.live());
  }

  /** Whether a past time is shown (live updates are paused). */
  get active() {
    return this.at !== null;
  }

  /** Shows the bar if the server keeps history; its retention bounds the spans offered. */
  async init() {
    if (this.asking) return;
    this.asking = true;
    let status;
    try {
      status = await request('GET', '/api/status');
    } catch {
      return;
    } finally {
      this.asking = false;
    }
    const history = status?.History;
    if (!history || typeof history !== 'object') return;
    const keep = Number(history.RetentionSeconds) > 0 ? Number(history.RetentionSeconds) : DEFAULT_SPAN;
    let spans = SPANS.filter((s) => s.secs <= keep);
    if (!spans.length) spans = [{ secs: keep, label: `last ${keep} s` }];
    this.spanSelect.replaceChildren(...spans.map((s) => h('option', { value: String(s.secs) }, s.label)));
    const span = spans.some((s) => s.secs === DEFAULT_SPAN) ? DEFAULT_SPAN : spans[spans.length - 1].secs;
    this.spanSelect.value = String(span);
    this.setSpan(span);
    this.available = true;
    this.bar.classList.remove('hidden');
    this.app.nodePanel.refresh(this.app.view.selected);
  }

  setSpan(secs) {
    this.span = secs;
    this.slider.min = String(-secs);
    this.slider.max = '0';
    // About an hour of one-second steps for the arrow keys, coarser on longer spans.
    this.slider.step = String(Math.max(1, Math.round(secs / 3600)));
    this.place();
  }

  /** The slider moved: show its time once it rests (`now`: released, load at once). */
  moved(now) {
    const v = Number(this.slider.value);
    clearTimeout(this.debounce);
    if (v >= 0) {
      this.live();
      return;
    }
    const t = Date.now() + v * 1000;
    this.label.textContent = `Viewing the topology at ${describe(t)}`;
    if (now) this.show(t);
    else this.debounce = setTimeout(() => this.show(t), DEBOUNCE_MS);
  }

  /** The slider's thumb and label for the time shown. */
  place() {
    if (this.at === null) {
      this.slider.value = '0';
      this.label.textContent = 'live';
      return;
    }
    this.slider.value = String(Math.max(-this.span, Math.min(-1, Math.round((this.at - Date.now()) / 1000))));
    this.label.textContent = `Viewing the topology at ${describe(this.at)}`;
  }

  /** The query for the graph at `t`: the filter's, or the whole graph. */
  query(t) {
    const filter = this.app.subscriber.filter;
    const at = `G.At(${Math.round(t)}).`;
    if (filter && /^\s*G\s*\./.test(filter)) return filter.replace(/^\s*G\s*\./, at);
    return `${at}V().SubGraph()`;
  }

  /** Shows the topology as it was at `t` (ms since the epoch). */
  async show(t) {
    clearTimeout(this.debounce);
    this.at = t;
    const seq = ++this.seq;
    this.bar.dataset.state = 'loading';
    $('#stage').classList.add('past');
    this.banner.classList.remove('hidden');
    $('#time-banner-note').textContent = 'loading…';
    clearInterval(this.ticker);
    this.ticker = setInterval(() => this.place(), 1000);
    this.place();
    const q = this.query(t);
    let answer;
    try {
      answer = await gremlinPast(q);
    } catch (e) {
      if (seq !== this.seq) return;
      this.bar.dataset.state = 'error';
      $('#time-banner-note').textContent = 'could not load it';
      this.app.showQueryError('History', e.message, q);
      return;
    }
    if (seq !== this.seq) return;
    this.app.clearQueryError();
    this.app.graph.reset(graphOf(answer.result));
    this.bar.dataset.state = 'past';
    this.bar.dataset.loaded = String(t);
    const horizon = /horizon=(\d+)/.exec(answer.note);
    $('#time-banner-note').textContent = horizon ? `the history starts at ${fmtTime(Number(horizon[1]))}: older changes are gone` : 'live updates paused';
    this.app.pastShown();
  }

  /** Back to the live view: resynced from the WebSocket. */
  live() {
    clearTimeout(this.debounce);
    clearInterval(this.ticker);
    const was = this.active;
    this.at = null;
    this.seq++;
    this.place();
    this.bar.dataset.state = 'live';
    delete this.bar.dataset.loaded;
    $('#stage').classList.remove('past');
    this.banner.classList.add('hidden');
    if (was) this.app.resumeLive();
  }

  /** The filter changed while a past time is shown: load that time again with it. */
  refilter() {
    if (this.active) this.show(this.at);
  }

  /** A highlight query, at the time shown. */
  rewrite(q) {
    if (!this.active || !/^\s*G\s*\./.test(q)) return q;
    return q.replace(/^\s*G\s*\./, `G.At(${Math.round(this.at)}).`);
  }
}

/** {Nodes, Edges} of a query's answer: a graph, a list of graphs, or nodes and edges. */
export function graphOf(result) {
  const nodes = new Map();
  const edges = new Map();
  const walk = (v, depth) => {
    if (depth > 3 || v === null || typeof v !== 'object') return;
    if (isGraph(v)) {
      v.Nodes.forEach((n) => nodes.set(n.ID, n));
      v.Edges.forEach((e) => edges.set(e.ID, e));
    } else if (isNode(v)) nodes.set(v.ID, v);
    else if (isEdge(v)) edges.set(v.ID, v);
    else if (Array.isArray(v)) v.forEach((x) => walk(x, depth + 1));
  };
  walk(result, 0);
  return { Nodes: [...nodes.values()], Edges: [...edges.values()] };
}

/** "17:05:12 (12 min 5 s ago)". */
function describe(t) {
  const ago = Math.max(0, Math.round((Date.now() - t) / 1000));
  const parts = [];
  if (ago >= 3600) parts.push(`${Math.floor(ago / 3600)} h`);
  if (ago >= 60) parts.push(`${Math.floor((ago % 3600) / 60)} min`);
  if (ago < 3600) parts.push(`${ago % 60} s`);
  const day = new Date(t).toDateString() === new Date().toDateString();
  const when = day ? new Date(t).toLocaleTimeString() : new Date(t).toLocaleString();
  return `${when} (${parts.join(' ')} ago)`;
}
