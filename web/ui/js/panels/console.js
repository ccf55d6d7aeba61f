// Gremlin console: a query, POST /api/topology, the result as a table or raw JSON;
// errors inline with a caret under the column the server names.

import { ApiError, gremlin, isEdge, isGraph, isNode, nodeIdsOf } from '../api.js';
import { clear, h, table } from '../dom.js';

const MAX_ROWS = 1000;
const MAX_JSON_CHARS = 400000;

export class ConsolePanel {
  constructor(root, app) {
    this.root = root;
    this.app = app;
    this.result = undefined;
    this.raw = false;
    this.build();
  }

  build() {
    const saved = localStorage.getItem('topotap.console') || "G.V().Has('Type', 'netns')";
    this.input = h('textarea', { id: 'console-query', class: 'mono', rows: 4, spellcheck: 'false', placeholder: "G.V().Has('Type', 'veth')" });
    this.input.value = saved;
    this.input.addEventListener('keydown', (ev) => {
      if (ev.key === 'Enter' && (ev.ctrlKey || ev.metaKey)) {
        ev.preventDefault();
        this.run();
      }
    });
    this.rawToggle = h('input', { type: 'checkbox', id: 'console-raw' });
    this.rawToggle.addEventListener('change', () => {
      this.raw = this.rawToggle.checked;
      this.renderResult();
    });
    this.status = h('span', { class: 'muted small', id: 'console-status' });
    this.error = h('div', { id: 'console-error', class: 'error-box hidden' });
    this.out = h('div', { id: 'console-result', class: 'console-result' });
    this.root.append(
      h('label', { class: 'field-label', for: 'console-query' }, 'Gremlin query'),
      this.input,
      h(
        'div',
        { class: 'row' },
        h('button', { class: 'btn primary', id: 'console-run', onclick: () => this.run() }, 'Run'),
        h('span', { class: 'muted small' }, 'Ctrl+Enter'),
        h('span', { class: 'spacer' }),
        h('label', { class: 'check' }, this.rawToggle, ' Raw JSON'),
        h('button', { class: 'btn', id: 'console-highlight', title: 'Highlight the nodes of this result in the graph', onclick: () => this.highlight() }, 'Highlight'),
      ),
      this.status,
      this.error,
      this.out,
    );
  }

  setQuery(q) {
    this.input.value = q;
    this.input.focus();
  }

  async run() {
    const q = this.input.value.trim();
    localStorage.setItem('topotap.console', this.input.value);
    this.error.classList.add('hidden');
    if (!q) {
      this.showError(new ApiError(400, 'empty query'), q);
      return;
    }
    this.status.textContent = 'running…';
    const t0 = performance.now();
    try {
      this.result = await gremlin(q);
      this.status.textContent = `${describe(this.result)} · ${Math.round(performance.now() - t0)} ms`;
      this.renderResult();
    } catch (e) {
      this.status.textContent = '';
      this.result = undefined;
      clear(this.out);
      this.showError(e, this.input.value);
    }
  }

  highlight() {
    if (this.result === undefined) return;
    this.app.view.setHighlight(nodeIdsOf(this.result));
  }

  showError(err, query) {
    const e = clear(this.error);
    e.classList.remove('hidden');
    e.append(h('div', { class: 'error-msg' }, err.status ? `${err.status}: ${err.message}` : err.message));
    const pos = err.position;
    if (pos) {
      const lines = query.split('\n');
      const col = Math.max(1, pos.column);
      e.append(caretPre(lines[pos.line - 1] ?? '', col, 'console-caret'));
      // Put the cursor where the server says the problem is.
      let offset = 0;
      for (let i = 0; i < pos.line - 1 && i < lines.length; i++) offset += lines[i].length + 1;
      offset += col - 1;
      this.input.focus();
      this.input.setSelectionRange(offset, Math.min(offset + 1, this.input.value.length));
    }
  }

  renderResult() {
    const out = clear(this.out);
    const r = this.result;
    if (r === undefined) return;
    if (this.raw) {
      let text = JSON.stringify(r, null, 2);
      if (text.length > MAX_JSON_CHARS) text = `${text.slice(0, MAX_JSON_CHARS)}\n… (truncated)`;
      out.append(h('pre', { class: 'json mono' }, text));
      return;
    }
    out.append(this.tableFor(r));
  }

  tableFor(r) {
    if (Array.isArray(r) && r.length && r.every(isNode)) return this.nodeTable(r);
    if (Array.isArray(r) && r.length && r.every(isEdge)) return this.edgeTable(r);
    if (Array.isArray(r) && r.length === 1 && isGraph(r[0])) {
      return h('div', null, h('div', { class: 'muted small' }, `subgraph: ${r[0].Nodes.length} nodes, ${r[0].Edges.length} edges`), this.nodeTable(r[0].Nodes));
    }
    if (Array.isArray(r) && r.length && r.every((p) => Array.isArray(p) && p.every(isNode))) {
      return table([{ label: 'Path', value: (p) => p.map((n) => n.Metadata?.Name ?? n.ID).join(' → ') }], r.slice(0, MAX_ROWS));
    }
    return h('pre', { class: 'json mono' }, JSON.stringify(r, null, 2));
  }

  nodeTable(nodes) {
    return h(
      'div',
      null,
      table(
        [
          { label: 'ID', value: (n) => h('span', { class: 'mono' }, n.ID) },
          { label: 'Name', value: (n) => n.Metadata?.Name ?? '' },
          { label: 'Type', value: (n) => n.Metadata?.Type ?? '' },
          { label: 'Host', value: (n) => n.Host ?? '' },
        ],
        nodes.slice(0, MAX_ROWS),
        { onRowClick: (n) => this.app.selectNode(n.ID), empty: 'no nodes' },
      ),
      nodes.length > MAX_ROWS ? h('div', { class: 'muted small' }, `first ${MAX_ROWS} of ${nodes.length}`) : null,
    );
  }

  edgeTable(edges) {
    const name = (id) => this.app.graph.nodes.get(id)?.Metadata?.Name ?? id.slice(0, 8);
    return table(
      [
        { label: 'ID', value: (e) => h('span', { class: 'mono' }, e.ID) },
        { label: 'Name', value: (e) => `${name(e.Parent)} → ${name(e.Child)}` },
        { label: 'Type', value: (e) => [e.Metadata?.RelationType, e.Metadata?.Type].filter(Boolean).join(' / ') },
        { label: 'Host', value: (e) => e.Host ?? '' },
      ],
      edges.slice(0, MAX_ROWS),
      { empty: 'no edges' },
    );
  }
}

function describe(r) {
  if (r === null) return 'null';
  if (Array.isArray(r)) {
    if (r.length === 1 && isGraph(r[0])) return `graph of ${r[0].Nodes.length} nodes`;
    return `${r.length} result${r.length === 1 ? '' : 's'}`;
  }
  return typeof r;
}

/** The query line with the character at `col` (1-based) marked and a caret under it. */
export function caretPre(line, col, id) {
  return h(
    'pre',
    { class: 'caret-view mono', id },
    h('span', null, line.slice(0, col - 1)),
    h('mark', null, line.slice(col - 1, col) || ' '),
    h('span', null, line.slice(col)),
    '\n',
    h('span', { class: 'caret' }, `${' '.repeat(col - 1)}^ column ${col}`),
  );
}
