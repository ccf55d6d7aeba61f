// Canvas renderer. Everything of one kind goes into one path and is filled or stroked
// once (edges by class, nodes by type), only what is on screen is drawn, and labels are
// drawn only when they can be read, so a frame of a few thousand nodes stays cheap.

import { shapePath, styleFor } from './styles.js';

const MAX_LABELS = 700;

function cssVar(name, fallback) {
  const v = getComputedStyle(document.documentElement).getPropertyValue(name).trim();
  return v || fallback;
}

export class Renderer {
  constructor(canvas) {
    this.canvas = canvas;
    this.ctx = canvas.getContext('2d', { alpha: false });
    this.t = { k: 1, x: 0, y: 0 };
    this.width = 0;
    this.height = 0;
    this.dpr = 1;
    this.sprites = new Map();
    this.readTheme();
  }

  readTheme() {
    this.theme = {
      bg: cssVar('--canvas-bg', '#101215'),
      grid: cssVar('--canvas-grid', '#171a1f'),
      ownership: cssVar('--edge-ownership', '#3a404a'),
      layer2: cssVar('--edge-layer2', '#7f8a99'),
      other: cssVar('--edge-other', '#5d6a7c'),
      label: cssVar('--canvas-label', '#c9ced6'),
      labelHalo: cssVar('--canvas-bg', '#101215'),
      accent: cssVar('--accent', '#4c8dff'),
      highlight: cssVar('--highlight', '#ffcc33'),
      nodeStroke: cssVar('--node-stroke', '#0c0d10'),
      badge: cssVar('--badge', '#2b3038'),
      badgeText: cssVar('--badge-text', '#e6e9ee'),
    };
  }

  /** A bitmap of a node shape of radius rPx device pixels (cached by type and size). */
  sprite(type, style, rPx) {
    const size = Math.max(1, Math.min(160, Math.round(rPx * 2) / 2));
    const key = `${type}|${size}`;
    let c = this.sprites.get(key);
    if (c) return c;
    if (this.sprites.size > 400) this.sprites.clear();
    const stroke = Math.max(0.75, Math.min(2 * this.dpr, size * 0.18));
    const dim = Math.ceil(size * 2.4 + stroke * 2 + 2);
    c = document.createElement('canvas');
    c.width = c.height = dim;
    const g = c.getContext('2d');
    g.beginPath();
    shapePath(g, style.shape, dim / 2, dim / 2, size);
    g.fillStyle = style.color;
    g.fill();
    if (size >= 3) {
      g.lineWidth = stroke;
      g.strokeStyle = this.theme.nodeStroke;
      g.stroke();
    }
    this.sprites.set(key, c);
    return c;
  }

  resize() {
    const rect = this.canvas.getBoundingClientRect();
    this.dpr = window.devicePixelRatio || 1;
    this.width = rect.width;
    this.height = rect.height;
    this.canvas.width = Math.max(1, Math.round(rect.width * this.dpr));
    this.canvas.height = Math.max(1, Math.round(rect.height * this.dpr));
  }

  toWorld(sx, sy) {
    return { x: (sx - this.t.x) / this.t.k, y: (sy - this.t.y) / this.t.k };
  }

  /**
   * scene: {ids, pos, radius, nodeOf(id), edges, hidden (Map), collapsed (Set),
   *         groups (Set of ids with members), selected, hover, highlight (Set|null)}
   */
  draw(scene) {
    const { ctx, t, dpr, theme } = this;
    ctx.setTransform(1, 0, 0, 1, 0, 0);
    ctx.fillStyle = theme.bg;
    ctx.fillRect(0, 0, this.canvas.width, this.canvas.height);
    ctx.setTransform(dpr * t.k, 0, 0, dpr * t.k, dpr * t.x, dpr * t.y);

    const pad = 40 / t.k;
    const x0 = -t.x / t.k - pad;
    const y0 = -t.y / t.k - pad;
    const x1 = (this.width - t.x) / t.k + pad;
    const y1 = (this.height - t.y) / t.k + pad;
    const { pos, radius } = scene;
    const inView = (p) => p.x >= x0 && p.x <= x1 && p.y >= y0 && p.y <= y1;
    const hl = scene.highlight;
    const dim = hl && hl.size > 0;

    // Edges, one path per class.
    const px = 1 / t.k;
    const paths = { ownership: new Path2D(), layer2: new Path2D(), other: new Path2D(), hl: new Path2D() };
    for (const e of scene.edges) {
      const p = pos.get(e.a);
      const q = pos.get(e.b);
      if (!p || !q) continue;
      if ((p.x < x0 && q.x < x0) || (p.x > x1 && q.x > x1) || (p.y < y0 && q.y < y0) || (p.y > y1 && q.y > y1)) continue;
      const path = dim && hl.has(e.a) && hl.has(e.b) ? paths.hl : paths[e.cls];
      path.moveTo(p.x, p.y);
      path.lineTo(q.x, q.y);
    }
    ctx.globalAlpha = dim ? 0.35 : 1;
    ctx.lineWidth = 1 * px;
    ctx.strokeStyle = theme.ownership;
    ctx.stroke(paths.ownership);
    // Widths of one device pixel or less take Skia's hairline path; wider strokes of
    // thousands of segments cost tens of milliseconds in a software canvas, so links
    // get their weight only when few are on screen.
    ctx.lineWidth = (scene.edges.length > 800 ? 1 : 1.6) * px;
    ctx.strokeStyle = theme.layer2;
    ctx.stroke(paths.layer2);
    ctx.setLineDash([4 * px, 3 * px]);
    ctx.strokeStyle = theme.other;
    ctx.stroke(paths.other);
    ctx.setLineDash([]);
    ctx.globalAlpha = 1;
    if (dim) {
      ctx.lineWidth = 2 * px;
      ctx.strokeStyle = theme.highlight;
      ctx.stroke(paths.hl);
    }

    // Nodes: one pre-rendered sprite per type and on-screen size, copied with
    // drawImage. Filling one huge path of thousands of shapes is far slower in a
    // software-rasterised canvas than blitting small bitmaps.
    const visible = [];
    ctx.setTransform(1, 0, 0, 1, 0, 0);
    const scale = t.k * dpr;
    for (const id of scene.ids) {
      const p = pos.get(id);
      if (!p || !inView(p)) continue;
      const type = scene.nodeOf(id)?.Metadata?.Type;
      const style = styleFor(type);
      const r = radius.get(id) || style.r;
      const sprite = this.sprite(type, style, r * scale);
      ctx.globalAlpha = dim && !hl.has(id) ? 0.25 : 1;
      ctx.drawImage(sprite, Math.round((p.x * t.k + t.x) * dpr - sprite.width / 2), Math.round((p.y * t.k + t.y) * dpr - sprite.height / 2));
      visible.push(id);
    }
    ctx.globalAlpha = 1;
    ctx.setTransform(dpr * t.k, 0, 0, dpr * t.k, dpr * t.x, dpr * t.y);

    // Groups: a ring; collapsed ones get a dashed ring and a member count.
    const ringSolid = new Path2D();
    const ringDashed = new Path2D();
    const badges = [];
    for (const id of visible) {
      if (!scene.groups.has(id)) continue;
      const p = pos.get(id);
      const r = (radius.get(id) || 10) + 4;
      const collapsed = scene.collapsed.has(id);
      const ring = collapsed ? ringDashed : ringSolid;
      ring.moveTo(p.x + r, p.y);
      ring.arc(p.x, p.y, r, 0, Math.PI * 2);
      if (collapsed) badges.push([p, r, scene.hidden.get(id) || 0]);
    }
    ctx.lineWidth = 1.2 * px;
    ctx.strokeStyle = theme.layer2;
    ctx.stroke(ringSolid);
    ctx.setLineDash([3 * px, 2.5 * px]);
    ctx.lineWidth = 1.6 * px;
    ctx.strokeStyle = theme.label;
    ctx.stroke(ringDashed);
    ctx.setLineDash([]);

    // Highlight halos, hover and selection.
    if (dim) {
      const halo = new Path2D();
      for (const id of visible) {
        if (!hl.has(id)) continue;
        const p = pos.get(id);
        const r = (radius.get(id) || 7) + 7;
        halo.moveTo(p.x + r, p.y);
        halo.arc(p.x, p.y, r, 0, Math.PI * 2);
      }
      ctx.lineWidth = 2.5 * px;
      ctx.strokeStyle = theme.highlight;
      ctx.stroke(halo);
    }
    for (const [id, color, w] of [
      [scene.hover, theme.label, 1.5],
      [scene.selected, theme.accent, 3],
    ]) {
      const p = id && pos.get(id);
      if (!p) continue;
      const r = (radius.get(id) || 7) + 9;
      ctx.beginPath();
      ctx.arc(p.x, p.y, r, 0, Math.PI * 2);
      ctx.lineWidth = w * px;
      ctx.strokeStyle = color;
      ctx.stroke();
    }

    // Screen-space text: badges and labels.
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.textBaseline = 'middle';
    ctx.textAlign = 'center';
    ctx.font = '600 10px system-ui, sans-serif';
    for (const [p, r, count] of badges) {
      const sx = p.x * t.k + t.x + r * t.k * 0.75;
      const sy = p.y * t.k + t.y - r * t.k * 0.75;
      const text = `+${count}`;
      const w = ctx.measureText(text).width + 8;
      ctx.fillStyle = theme.accent;
      ctx.beginPath();
      ctx.roundRect(sx - w / 2, sy - 8, w, 16, 8);
      ctx.fill();
      ctx.fillStyle = '#fff';
      ctx.fillText(text, sx, sy + 0.5);
    }

    const bigOnly = t.k < 0.55;
    if (t.k >= 0.25) {
      ctx.font = '11px system-ui, sans-serif';
      ctx.lineWidth = 3;
      ctx.lineJoin = 'round';
      ctx.strokeStyle = theme.labelHalo;
      let drawn = 0;
      const order = [];
      const first = new Set();
      // Selected, highlighted and group nodes are labelled first.
      for (const id of visible) {
        const important = id === scene.selected || (dim && hl.has(id)) || scene.groups.has(id);
        if (important) {
          order.push(id);
          first.add(id);
        }
      }
      if (!bigOnly) {
        for (const id of visible) {
          if (order.length >= MAX_LABELS) break;
          if (!first.has(id)) order.push(id);
        }
      }
      // Labels that would overlap one already drawn are skipped (a coarse occupancy
      // grid in screen space), so a dense view stays readable.
      const taken = new Set();
      const CW = 24;
      const CH = 13;
      for (const id of order) {
        if (drawn >= MAX_LABELS) break;
        const p = pos.get(id);
        const node = scene.nodeOf(id);
        const name = String(node?.Metadata?.Name ?? id.slice(0, 8));
        const r = radius.get(id) || 7;
        const sx = p.x * t.k + t.x;
        const sy = p.y * t.k + t.y + r * t.k + 9;
        const half = name.length * 3.1 + 2;
        const cx0 = Math.floor((sx - half) / CW);
        const cx1 = Math.floor((sx + half) / CW);
        const cy = Math.floor(sy / CH);
        let free = true;
        for (let cx = cx0; cx <= cx1 && free; cx++) if (taken.has(cx * 65536 + cy)) free = false;
        if (!free) continue;
        for (let cx = cx0; cx <= cx1; cx++) taken.add(cx * 65536 + cy);
        ctx.globalAlpha = dim && !hl.has(id) ? 0.4 : 1;
        ctx.strokeText(name, sx, sy);
        ctx.fillStyle = theme.label;
        ctx.fillText(name, sx, sy);
        drawn++;
      }
      ctx.globalAlpha = 1;
    }
  }
}
