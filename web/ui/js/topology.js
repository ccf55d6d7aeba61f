// The topology view: the client graph, what is displayed of it (collapsed groups), the
// layout, the canvas and the pointer interactions (pan, zoom, drag, select, expand).

import { visibleGraph } from './graph.js';
import { Layout } from './layout.js';
import { Renderer } from './render.js';
import { styleFor } from './styles.js';

const MIN_ZOOM = 0.05;
const MAX_ZOOM = 6;
const LAYOUT_BUDGET_MS = 8;
// While the user pans or zooms, the layout yields most of the frame to drawing.
const LAYOUT_BUDGET_INTERACTIVE_MS = 2;
const INTERACTION_WINDOW_MS = 300;

export class TopologyView {
  constructor(canvas, graph, { onSelect, onHover } = {}) {
    this.canvas = canvas;
    this.graph = graph;
    this.renderer = new Renderer(canvas);
    this.layout = new Layout();
    this.overrides = new Map(); // group id -> collapsed (bool), set by the user
    this.view = null;
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
      if (kind === 'reset') this.autoFit = this.autoFit || this.layout.pos.size === 0;
      if (kind === 'node-deleted' && id === this.selected) {
        this.selected = null;
        this.onSelect(null);
      }
      this.invalidate();
    });
    this.bindPointer();
    new ResizeObserver(() => {
      this.renderer.resize();
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

  rebuild() {
    const prevRep = this.view?.rep;
    const v = visibleGraph(this.graph, this.overrides);
    const radius = new Map();
    const groups = new Set();
    for (const id of v.nodes) {
      const style = styleFor(this.graph.nodes.get(id)?.Metadata?.Type);
      const hidden = v.hidden.get(id) || 0;
      radius.set(id, style.r + (hidden ? Math.min(16, 2.2 * Math.sqrt(hidden)) : 0));
      if (v.children.get(id)?.length) groups.add(id);
    }
    const neighbour = new Map();
    for (const e of v.edges) {
      if (!neighbour.has(e.a)) neighbour.set(e.a, e.b);
      if (!neighbour.has(e.b)) neighbour.set(e.b, e.a);
    }
    const anchor = (id) => {
      const was = prevRep?.get(id);
      if (was && was !== id && this.layout.pos.has(was)) return was;
      const p = v.parent.get(id);
      if (p !== undefined) return v.rep.get(p);
      return neighbour.get(id);
    };
    // Nodes that reappear after a collapse start again from their group.
    if (prevRep) {
      for (const id of v.nodes) {
        const was = prevRep.get(id);
        if (was && was !== id) this.layout.pos.delete(id);
      }
    }
    this.layout.setGraph(v.nodes, v.edges, radius, anchor);
    this.layout.forget(new Set(v.nodes));
    this.view = { ...v, radius, groups };
    this.structure = this.graph.structureVersion;
    if (this.selected && !this.graph.nodes.has(this.selected)) this.selected = null;
  }

  frame() {
    this.frameScheduled = false;
    const t0 = performance.now();
    if (!this.view || this.structure !== this.graph.structureVersion || this.needRebuild) {
      this.needRebuild = false;
      this.rebuild();
    }
    const interacting = t0 - this.lastInteraction < INTERACTION_WINDOW_MS;
    const moved = this.layout.step(interacting ? LAYOUT_BUDGET_INTERACTIVE_MS : LAYOUT_BUDGET_MS);
    if (moved && this.autoFit) this.fit(false);
    if (this.dirty || moved) {
      this.dirty = false;
      const d0 = performance.now();
      this.renderer.draw(this.scene());
      this.lastDrawMs = performance.now() - d0;
      this.drawTimes.push(this.lastDrawMs);
      if (this.drawTimes.length > 240) this.drawTimes.shift();
    }
    this.lastFrameWork = performance.now() - t0;
    // One loop only: invalidate() during this frame may already have asked for the next.
    if (this.layout.running) {
      if (!this.frameScheduled) {
        this.frameScheduled = true;
        requestAnimationFrame(() => this.frame());
      }
    } else if (this.autoFit && moved) {
      this.autoFit = false;
    }
  }

  scene() {
    const v = this.view;
    return {
      ids: v.nodes,
      pos: this.layout.pos,
      radius: v.radius,
      nodeOf: (id) => this.graph.nodes.get(id),
      edges: v.edges,
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
    this.layout.reheat(0.4);
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
      this.layout.reheat(0.4);
      this.invalidate();
    }
  }

  expandAll() {
    for (const id of this.view?.children.keys() || []) this.overrides.set(id, false);
    this.needRebuild = true;
    this.layout.reheat(0.8);
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
    this.layout.reheat(0.8);
    this.autoFit = true;
    this.invalidate();
  }

  select(id, { center = false } = {}) {
    this.selected = id;
    if (id) this.reveal(id);
    if (center && id) {
      const rebuiltFirst = () => {
        const p = this.layout.pos.get(this.view.rep.get(id));
        if (p) this.centerOn(p.x, p.y);
      };
      if (this.needRebuild) requestAnimationFrame(rebuiltFirst);
      else rebuiltFirst();
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

  /** Fits the displayed graph in the canvas. */
  fit(userAction = true) {
    if (userAction) this.autoFit = false;
    const ids = this.view?.nodes || [];
    if (!ids.length) return;
    let x0 = Infinity;
    let y0 = Infinity;
    let x1 = -Infinity;
    let y1 = -Infinity;
    for (const id of ids) {
      const p = this.layout.pos.get(id);
      if (!p) continue;
      x0 = Math.min(x0, p.x);
      y0 = Math.min(y0, p.y);
      x1 = Math.max(x1, p.x);
      y1 = Math.max(y1, p.y);
    }
    const w = this.renderer.width;
    const h = this.renderer.height;
    const pad = 60;
    const k = Math.min(2, Math.max(MIN_ZOOM, Math.min((w - 2 * pad) / (x1 - x0 || 1), (h - 2 * pad) / (y1 - y0 || 1))));
    const t = this.renderer.t;
    t.k = k;
    t.x = w / 2 - ((x0 + x1) / 2) * k;
    t.y = h / 2 - ((y0 + y1) / 2) * k;
    this.invalidate();
  }

  /** The displayed node under screen point (sx, sy), or null. */
  pick(sx, sy) {
    if (!this.view) return null;
    const w = this.renderer.toWorld(sx, sy);
    const slack = 4 / this.renderer.t.k;
    let best = null;
    let bestD = Infinity;
    for (const id of this.view.nodes) {
      const p = this.layout.pos.get(id);
      if (!p) continue;
      const r = (this.view.radius.get(id) || 7) + slack;
      const d = (p.x - w.x) ** 2 + (p.y - w.y) ** 2;
      if (d <= r * r && d < bestD) {
        best = id;
        bestD = d;
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
      if (drag.node) {
        const p = this.layout.pos.get(drag.node);
        if (p) {
          p.x += dx / this.renderer.t.k;
          p.y += dy / this.renderer.t.k;
          p.fixed = true;
          this.layout.reheat(0.15);
        }
        this.invalidate();
      } else {
        c.style.cursor = 'grabbing';
        this.panBy(dx, dy);
      }
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
      const id = this.pick(ev.offsetX, ev.offsetY);
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
