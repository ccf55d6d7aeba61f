// The topology view: the client graph, what is displayed of it (collapsed groups), the
// compound layout, the canvas and the pointer interactions (pan, zoom, select, expand).

import { nameOf, nodeLabels, visibleGraph } from './graph.js';
import { Layout } from './layout.js';
import { Renderer } from './render.js';
import { styleFor } from './styles.js';

const MIN_ZOOM = 0.02;
const MAX_ZOOM = 6;
const MAX_FIT_ZOOM = 1.6;
const FIT_PAD = 24;
const MAX_RADIUS = 16;

// First-placement order of a group's members: namespaces, then bridges, then the rest;
// interfaces: physical first, then by kind, each by name.
const RANK = { netns: 0, bridge: 1, ovsbridge: 2, host: 3, device: 0, vlan: 1, vxlan: 1, internal: 2, ovsport: 2, veth: 3 };

export class TopologyView {
  constructor(canvas, graph, { onSelect, onHover } = {}) {
    this.canvas = canvas;
    this.graph = graph;
    this.renderer = new Renderer(canvas);
    this.layout = new Layout();
    this.overrides = new Map(); // group id -> collapsed (bool), set by the user
    this.view = null;
    this.labels = new Map();
    this.labelsVersion = -1;
    this.selected = null;
    this.hover = null;
    this.highlight = null;
    this.dirty = true;
    this.autoFit = true;
    this.onSelect = onSelect || (() => {});
    this.onHover = onHover || (() => {});
    this.lastDrawMs = 0;
    this.lastFrameWork = 0;
    this.drawTimes = [];
    this.frameScheduled = false;
    this.lastInteraction = -Infinity;
    graph.onChange((kind, id) => {
      if (kind === 'node-deleted' && id === this.selected) {
        this.selected = null;
        this.onSelect(null);
      }
      this.invalidate();
    });
    this.bindPointer();
    new ResizeObserver(() => {
      this.renderer.resize();
      if (this.autoFit) this.fit(false);
      this.invalidate();
    }).observe(canvas);
    this.renderer.resize();
    this.invalidate();
  }

  /** Schedules a redraw (and a rebuild if the graph changed). */
  invalidate() {
    this.dirty = true;
    if (!this.frameScheduled) {
      this.frameScheduled = true;
      requestAnimationFrame(() => this.frame());
    }
  }

  /** Display labels (`ns/eth0` where a name is ambiguous), recomputed when the graph changed. */
  labelMap() {
    if (this.labelsVersion !== this.graph.version) {
      this.labels = nodeLabels(this.graph);
      this.labelsVersion = this.graph.version;
    }
    return this.labels;
  }

  labelOf(id) {
    return this.labelMap().get(id) ?? nameOf(this.graph.nodes.get(id)) ?? '';
  }

  rebuild() {
    const v = visibleGraph(this.graph, this.overrides);
    const labels = this.labelMap();
    const radius = new Map();
    const groups = new Set();
    const shown = new Set(v.nodes);
    // The group holding each displayed node (its ancestors are all expanded, or it would be hidden).
    const parentOf = new Map();
    for (const id of v.nodes) {
      const style = styleFor(this.graph.nodes.get(id)?.Metadata?.Type);
      const hidden = v.hidden.get(id) || 0;
      radius.set(id, Math.min(MAX_RADIUS, style.r + (hidden ? 3 : 0)));
      if (v.children.get(id)?.length) groups.add(id);
      const p = v.parent.get(id);
      if (p !== undefined && shown.has(p)) parentOf.set(id, p);
    }
    // Links other than ownership, veth peers first: they place the host end of a veth
    // beside its namespace.
    const links = new Map();
    const addLink = (a, b, first) => {
      let l = links.get(a);
      if (!l) links.set(a, (l = []));
      if (first) l.unshift(b);
      else l.push(b);
    };
    for (const e of this.graph.edges.values()) {
      if (e.Metadata?.RelationType === 'ownership') continue;
      const a = v.rep.get(e.Parent);
      const b = v.rep.get(e.Child);
      if (a === undefined || b === undefined || a === b) continue;
      const veth = e.Metadata?.Type === 'veth';
      addLink(a, b, veth);
      addLink(b, a, veth);
    }
    const keyOf = (id) => {
      const n = this.graph.nodes.get(id);
      const type = n?.Metadata?.Type;
      return `${RANK[type] ?? 5}\u0000${type ?? ''}\u0000${labels.get(id) ?? ''}`;
    };
    const aspect = this.renderer.width > 0 && this.renderer.height > 0 ? this.renderer.width / this.renderer.height : 1.6;
    this.layout.compute(v.nodes, parentOf, keyOf, links, aspect);
    // Containment shows ownership (and bridge membership): those edges are not drawn.
    const within = (inner, outer) => {
      for (let p = parentOf.get(inner), guard = 0; p !== undefined && guard < 64; p = parentOf.get(p), guard++) if (p === outer) return true;
      return false;
    };
    const edges = v.edges.filter((e) => (e.cls === 'ownership' ? !within(e.b, e.a) && !within(e.a, e.b) : parentOf.get(e.b) !== e.a && parentOf.get(e.a) !== e.b));
    this.view = { ...v, radius, groups, parentOf, drawnEdges: edges };
    this.structure = this.graph.structureVersion;
    if (this.selected && !this.graph.nodes.has(this.selected)) this.selected = null;
    if (this.autoFit) this.fit(false);
  }

  frame() {
    this.frameScheduled = false;
    const t0 = performance.now();
    if (!this.view || this.structure !== this.graph.structureVersion || this.needRebuild || this.layout.stale) {
      this.needRebuild = false;
      this.rebuild();
    }
    if (this.dirty) {
      this.dirty = false;
      const d0 = performance.now();
      this.renderer.draw(this.scene());
      this.lastDrawMs = performance.now() - d0;
      this.drawTimes.push(this.lastDrawMs);
      if (this.drawTimes.length > 240) this.drawTimes.shift();
    }
    this.lastFrameWork = performance.now() - t0;
  }

  scene() {
    const v = this.view;
    return {
      ids: v.nodes,
      pos: this.layout.pos,
      boxes: this.layout.boxes,
      boxOrder: this.layout.boxOrder,
      cells: this.layout.cells,
      radius: v.radius,
      nodeOf: (id) => this.graph.nodes.get(id),
      labelOf: (id) => this.labels.get(id) ?? id.slice(0, 8),
      // Inside the box of its namespace a node can go by its bare name.
      shortOf: (id) => {
        const owner = this.view.parentOf.get(id);
        const label = this.labels.get(id);
        if (owner === undefined || !label) return null;
        const prefix = `${nameOf(this.graph.nodes.get(owner))}/`;
        return label.startsWith(prefix) ? label.slice(prefix.length) : null;
      },
      edges: v.drawnEdges,
      hidden: v.hidden,
      collapsed: v.collapsed,
      groups: v.groups,
      selected: this.selected && v.rep.get(this.selected),
      hover: this.hover,
      highlight: this.highlightShown(),
    };
  }

  /** Highlighted IDs mapped to what is displayed (a hidden match lights its group). */
  highlightShown() {
    if (!this.highlight) return null;
    const out = new Set();
    for (const id of this.highlight) {
      const r = this.view.rep.get(id);
      if (r) out.add(r);
    }
    return out;
  }

  // ---- commands ---------------------------------------------------------------------

  setOverride(id, collapsed) {
    this.overrides.set(id, collapsed);
    this.needRebuild = true;
    this.invalidate();
  }

  isGroup(id) {
    return !!this.view?.children.get(id)?.length;
  }

  isCollapsed(id) {
    return !!this.view?.collapsed.has(id);
  }

  toggle(id) {
    if (this.isGroup(id)) this.setOverride(id, !this.isCollapsed(id));
  }

  /** Expands the groups hiding `id` so it is displayed. */
  reveal(id) {
    let changed = false;
    for (let p = this.view?.parent.get(id), guard = 0; p !== undefined && guard < 64; p = this.view.parent.get(p), guard++) {
      if (this.view.collapsed.has(p)) {
        this.overrides.set(p, false);
        changed = true;
      }
    }
    if (changed) {
      this.needRebuild = true;
      this.invalidate();
    }
    return changed;
  }

  /** Rebuilds now if anything asked for it (so positions are current). */
  settle() {
    if (!this.view || this.needRebuild || this.layout.stale || this.structure !== this.graph.structureVersion) {
      this.needRebuild = false;
      this.rebuild();
    }
  }

  expandAll() {
    for (const id of this.view?.children.keys() || []) this.overrides.set(id, false);
    this.needRebuild = true;
    this.autoFit = true;
    this.invalidate();
  }

  collapseAll() {
    for (const id of this.view?.children.keys() || []) {
      const type = this.graph.nodes.get(id)?.Metadata?.Type;
      // Keep hosts open: collapsing everything into one host node shows nothing.
      this.overrides.set(id, type !== 'host');
    }
    this.needRebuild = true;
    this.autoFit = true;
    this.invalidate();
  }

  /** Selects a node; `center` brings it to the middle of the view, readable. */
  select(id, { center = false } = {}) {
    this.selected = id;
    if (id) this.reveal(id);
    if (center && id) {
      this.settle();
      const p = this.layout.pos.get(this.view.rep.get(id));
      if (p) {
        this.autoFit = false;
        const t = this.renderer.t;
        if (t.k < 1) t.k = 1;
        this.centerOn(p.x, p.y);
      }
    }
    this.onSelect(id);
    this.invalidate();
  }

  setHighlight(ids) {
    this.highlight = ids && ids.size ? ids : null;
    this.invalidate();
  }

  zoomBy(factor, sx = this.renderer.width / 2, sy = this.renderer.height / 2) {
    const t = this.renderer.t;
    this.lastInteraction = performance.now();
    const k = Math.min(MAX_ZOOM, Math.max(MIN_ZOOM, t.k * factor));
    t.x = sx - ((sx - t.x) * k) / t.k;
    t.y = sy - ((sy - t.y) * k) / t.k;
    t.k = k;
    this.invalidate();
  }

  panBy(dx, dy) {
    this.lastInteraction = performance.now();
    this.renderer.t.x += dx;
    this.renderer.t.y += dy;
    this.invalidate();
  }

  centerOn(x, y) {
    const t = this.renderer.t;
    t.x = this.renderer.width / 2 - x * t.k;
    t.y = this.renderer.height / 2 - y * t.k;
    this.invalidate();
  }

  /** Fits the whole displayed graph in the canvas. */
  fit(userAction = true) {
    if (userAction) {
      this.autoFit = false;
      this.settle();
    }
    const b = this.layout.bounds;
    if (!b || !this.view?.nodes.length) return;
    this.fitRect(b.x0, b.y0, b.x1, b.y1, 2);
  }

  /** Fits the displayed nodes standing for `ids` (e.g. the highlighted ones). */
  fitTo(ids) {
    this.settle();
    let x0 = Infinity;
    let y0 = Infinity;
    let x1 = -Infinity;
    let y1 = -Infinity;
    for (const id of ids) {
      const r = this.layout.rectOf(this.view.rep.get(id));
      if (!r) continue;
      x0 = Math.min(x0, r.x);
      y0 = Math.min(y0, r.y);
      x1 = Math.max(x1, r.x + r.w);
      y1 = Math.max(y1, r.y + r.h);
    }
    if (x0 === Infinity) return;
    this.autoFit = false;
    this.fitRect(x0, y0, x1, y1, MAX_FIT_ZOOM);
  }

  fitRect(x0, y0, x1, y1, maxK) {
    const w = this.renderer.width;
    const h = this.renderer.height;
    if (w <= 0 || h <= 0) return;
    const k = Math.min(maxK, Math.max(MIN_ZOOM, Math.min((w - 2 * FIT_PAD) / (x1 - x0 || 1), (h - 2 * FIT_PAD) / (y1 - y0 || 1))));
    const t = this.renderer.t;
    t.k = k;
    t.x = w / 2 - ((x0 + x1) / 2) * k;
    t.y = h / 2 - ((y0 + y1) / 2) * k;
    this.invalidate();
  }

  /** The displayed node under screen point (sx, sy), or null: a leaf's cell, a box's title bar. */
  pick(sx, sy) {
    if (!this.view) return null;
    const w = this.renderer.toWorld(sx, sy);
    for (const [id, c] of this.layout.cells) {
      if (w.x >= c.x && w.x < c.x + c.w && w.y >= c.y && w.y < c.y + c.h) return id;
    }
    let best = null;
    let bestDepth = -1;
    for (const [id, b] of this.layout.boxes) {
      if (w.x >= b.x && w.x < b.x + b.w && w.y >= b.y && w.y < b.y + 28 && b.depth > bestDepth) {
        best = id;
        bestDepth = b.depth;
      }
    }
    return best;
  }

  /** The expanded group whose box is under screen point (sx, sy), deepest first. */
  boxAt(sx, sy) {
    const w = this.renderer.toWorld(sx, sy);
    let best = null;
    let bestDepth = -1;
    for (const [id, b] of this.layout.boxes) {
      if (w.x >= b.x && w.x < b.x + b.w && w.y >= b.y && w.y < b.y + b.h && b.depth > bestDepth) {
        best = id;
        bestDepth = b.depth;
      }
    }
    return best;
  }

  bindPointer() {
    const c = this.canvas;
    let drag = null;
    c.addEventListener('pointerdown', (ev) => {
      c.setPointerCapture(ev.pointerId);
      const node = this.pick(ev.offsetX, ev.offsetY);
      drag = { x: ev.offsetX, y: ev.offsetY, node, moved: false };
    });
    c.addEventListener('pointermove', (ev) => {
      if (!drag) {
        const id = this.pick(ev.offsetX, ev.offsetY);
        if (id !== this.hover) {
          this.hover = id;
          c.style.cursor = id ? 'pointer' : 'grab';
          this.onHover(id, ev.offsetX, ev.offsetY);
          this.invalidate();
        } else if (id) this.onHover(id, ev.offsetX, ev.offsetY);
        return;
      }
      const dx = ev.offsetX - drag.x;
      const dy = ev.offsetY - drag.y;
      if (!drag.moved && Math.abs(dx) + Math.abs(dy) < 3) return;
      drag.moved = true;
      this.autoFit = false;
      // The layout is computed, not dragged: any drag pans.
      c.style.cursor = 'grabbing';
      this.panBy(dx, dy);
      drag.x = ev.offsetX;
      drag.y = ev.offsetY;
    });
    const end = (ev) => {
      if (!drag) return;
      const d = drag;
      drag = null;
      c.style.cursor = 'grab';
      if (d.moved || ev.type === 'pointercancel') return;
      if (d.node) {
        if (this.isCollapsed(d.node)) this.setOverride(d.node, false);
        this.select(d.node);
      } else {
        this.select(null);
      }
    };
    c.addEventListener('pointerup', end);
    c.addEventListener('pointercancel', end);
    c.addEventListener('dblclick', (ev) => {
      const id = this.pick(ev.offsetX, ev.offsetY) || this.boxAt(ev.offsetX, ev.offsetY);
      if (id && this.isGroup(id) && !this.isCollapsed(id)) this.setOverride(id, true);
    });
    c.addEventListener(
      'wheel',
      (ev) => {
        ev.preventDefault();
        this.autoFit = false;
        const factor = Math.exp(-ev.deltaY * (ev.deltaMode === 1 ? 0.05 : 0.0015));
        this.zoomBy(factor, ev.offsetX, ev.offsetY);
      },
      { passive: false },
    );
    c.addEventListener('pointerleave', () => {
      if (this.hover) {
        this.hover = null;
        this.onHover(null);
        this.invalidate();
      }
    });
  }

  /**
   * Responsiveness probe: n frames of programmatic zoom and pan, one per animation
   * frame. Resolves to frame-interval and draw-time statistics in milliseconds.
   */
  benchFrames(n = 20) {
    return new Promise((resolve) => {
      const stamps = [];
      const draws = [];
      const works = [];
      let i = 0;
      const step = (ts) => {
        stamps.push(ts);
        if (i > 0) {
          draws.push(this.lastDrawMs);
          works.push(this.lastFrameWork);
        }
        if (i === n) {
          const frames = stamps.slice(1).map((t, j) => t - stamps[j]);
          const mean = (a) => a.reduce((s, x) => s + x, 0) / (a.length || 1);
          resolve({
            frames: frames.length,
            meanFrameMs: mean(frames),
            maxFrameMs: Math.max(...frames),
            meanDrawMs: mean(draws),
            maxDrawMs: Math.max(...draws),
            meanWorkMs: mean(works),
            nodesDisplayed: this.view?.nodes.length || 0,
            edgesDisplayed: this.view?.edges.length || 0,
          });
          return;
        }
        if (i % 2 === 0) this.zoomBy(i % 4 === 0 ? 1.12 : 1 / 1.1);
        else this.panBy(i % 4 === 1 ? 23 : -17, i % 4 === 1 ? -11 : 13);
        i++;
        requestAnimationFrame(step);
      };
      requestAnimationFrame(step);
    });
  }
}
