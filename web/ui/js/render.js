// Canvas renderer. Group boxes first, then everything of one kind in one path filled or
// stroked once (edges by class), nodes as cached sprites, only what is on screen, and
// labels only where they can be read without overlapping another, so a frame of a few
// thousand nodes stays cheap and readable.

import { CW, HEADER, LABEL_Y } from './layout.js';
import { shapePath, styleFor } from './styles.js';

const MAX_LABELS = 700;
const LONG_EDGE = 500; // world units

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
    this.widths = new Map();
    this.textSprites = new Map();
    this.labelRects = [];
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

  /**
   * A bitmap of a label with its halo, in device pixels (cached): thousands of
   * strokeText/fillText calls a frame cost far more in a software canvas than copies.
   */
  textSprite(text, bold) {
    const key = `${bold ? 1 : 0}|${text}`;
    let c = this.textSprites.get(key);
    if (c) return c;
    if (this.textSprites.size > 4000) this.textSprites.clear();
    const font = bold ? '600 11px system-ui, sans-serif' : '11px system-ui, sans-serif';
    this.ctx.font = font;
    const w = this.textWidth(text);
    const dpr = this.dpr;
    c = document.createElement('canvas');
    c.width = Math.ceil((w + 6) * dpr);
    c.height = Math.ceil(18 * dpr);
    const g = c.getContext('2d');
    g.scale(dpr, dpr);
    g.font = font;
    g.textBaseline = 'middle';
    g.textAlign = 'left';
    g.lineWidth = 3;
    g.lineJoin = 'round';
    g.strokeStyle = this.theme.labelHalo;
    g.strokeText(text, 3, 9);
    g.fillStyle = this.theme.label;
    g.fillText(text, 3, 9);
    this.textSprites.set(key, c);
    return c;
  }

  resize() {
    this.textSprites.clear();
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

  /** Width in px of `text` in the current font (cached per font). */
  textWidth(text) {
    const key = `${this.ctx.font}|${text}`;
    let w = this.widths.get(key);
    if (w === undefined) {
      if (this.widths.size > 20000) this.widths.clear();
      w = this.ctx.measureText(text).width;
      this.widths.set(key, w);
    }
    return w;
  }

  /** `text` cut with an ellipsis to at most maxW px (current font), or '' if nothing fits. */
  fitText(text, maxW) {
    if (this.textWidth(text) <= maxW) return text;
    if (maxW < 18) return '';
    let lo = 1;
    let hi = text.length - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if (this.textWidth(`${text.slice(0, mid)}…`) <= maxW) lo = mid;
      else hi = mid - 1;
    }
    return lo >= 2 ? `${text.slice(0, lo)}…` : '';
  }

  /**
   * scene: {ids, pos, boxes (Map id -> {x,y,w,h,depth}), boxOrder, cells, radius,
   *         nodeOf(id), labelOf(id), edges, hidden (Map), collapsed (Set),
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
    const rectInView = (b) => b.x <= x1 && b.x + b.w >= x0 && b.y <= y1 && b.y + b.h >= y0;
    const hl = scene.highlight;
    const dim = hl && hl.size > 0;
    const px = 1 / t.k;

    // Boxes, parents first: a tinted body, a stronger title bar, a border of the type's
    // colour. One path per depth, colour and fading, filled or stroked once.
    const shownBoxes = [];
    const layers = new Map(); // `${depth}|${color}|${faded}` -> {depth, color, faded, host, rects: Path2D, heads: Path2D}
    const hlBorder = new Path2D();
    for (const id of scene.boxOrder) {
      const b = scene.boxes.get(id);
      if (!b || !rectInView(b)) continue;
      shownBoxes.push(id);
      const type = scene.nodeOf(id)?.Metadata?.Type;
      const color = styleFor(type).color;
      const faded = !!dim && !hl.has(id);
      const key = `${b.depth}|${color}|${faded}|${type === 'host'}`;
      let l = layers.get(key);
      if (!l) layers.set(key, (l = { depth: b.depth, color, faded, host: type === 'host', rects: new Path2D(), heads: new Path2D() }));
      l.rects.rect(b.x, b.y, b.w, b.h);
      if (b.h * t.k > 6) l.heads.rect(b.x, b.y, b.w, Math.min(b.h, HEADER));
      if (dim && hl.has(id)) hlBorder.rect(b.x, b.y, b.w, b.h);
    }
    const ordered = [...layers.values()].sort((a, b) => a.depth - b.depth);
    for (const l of ordered) {
      ctx.fillStyle = l.color;
      ctx.globalAlpha = l.faded || l.host ? 0.05 : 0.1;
      ctx.fill(l.rects);
      ctx.globalAlpha = l.faded ? 0.08 : 0.2;
      ctx.fill(l.heads);
      ctx.globalAlpha = l.faded ? 0.25 : 0.75;
      ctx.lineWidth = px;
      ctx.strokeStyle = l.color;
      ctx.stroke(l.rects);
    }
    ctx.globalAlpha = 1;
    if (dim) {
      ctx.lineWidth = 2.5 * px;
      ctx.strokeStyle = theme.highlight;
      ctx.stroke(hlBorder);
    }

    // Edges, one path per class (ownership is shown by containment and not passed here).
    const paths = { ownership: new Path2D(), layer2: new Path2D(), other: new Path2D(), far: new Path2D(), hl: new Path2D() };
    for (const e of scene.edges) {
      const p = pos.get(e.a);
      const q = pos.get(e.b);
      if (!p || !q) continue;
      if ((p.x < x0 && q.x < x0) || (p.x > x1 && q.x > x1) || (p.y < y0 && q.y < y0) || (p.y > y1 && q.y > y1)) continue;
      // Long links (to a bridge across the host) are drawn fainter than short ones.
      const far = (p.x - q.x) ** 2 + (p.y - q.y) ** 2 > LONG_EDGE * LONG_EDGE;
      const path = dim && hl.has(e.a) && hl.has(e.b) ? paths.hl : far ? paths.far : paths[e.cls];
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
    ctx.globalAlpha = dim ? 0.15 : 0.3;
    ctx.lineWidth = 1 * px;
    ctx.strokeStyle = theme.layer2;
    ctx.stroke(paths.far);
    ctx.globalAlpha = 1;
    if (dim) {
      ctx.lineWidth = 2 * px;
      ctx.strokeStyle = theme.highlight;
      ctx.stroke(paths.hl);
    }

    // Nodes: one pre-rendered sprite per type and on-screen size, copied with
    // drawImage. Filling one huge path of thousands of shapes is far slower in a
    // software-rasterised canvas than blitting small bitmaps. A group's icon sits in
    // its title bar, smaller.
    const visible = [];
    ctx.setTransform(1, 0, 0, 1, 0, 0);
    const scale = t.k * dpr;
    for (const id of scene.ids) {
      const p = pos.get(id);
      if (!p || !inView(p)) continue;
      const type = scene.nodeOf(id)?.Metadata?.Type;
      const style = styleFor(type);
      const r = scene.boxes.has(id) ? 8 : radius.get(id) || style.r;
      const sprite = this.sprite(type, style, r * scale);
      ctx.globalAlpha = dim && !hl.has(id) ? 0.25 : 1;
      ctx.drawImage(sprite, Math.round((p.x * t.k + t.x) * dpr - sprite.width / 2), Math.round((p.y * t.k + t.y) * dpr - sprite.height / 2));
      visible.push(id);
    }
    ctx.globalAlpha = 1;
    ctx.setTransform(dpr * t.k, 0, 0, dpr * t.k, dpr * t.x, dpr * t.y);

    // Collapsed groups: a dashed ring and a member count.
    const ringDashed = new Path2D();
    const badges = [];
    for (const id of visible) {
      if (!scene.collapsed.has(id)) continue;
      const p = pos.get(id);
      const r = (radius.get(id) || 10) + 4;
      ringDashed.moveTo(p.x + r, p.y);
      ringDashed.arc(p.x, p.y, r, 0, Math.PI * 2);
      badges.push([p, r, scene.hidden.get(id) || 0]);
    }
    ctx.setLineDash([3 * px, 2.5 * px]);
    ctx.lineWidth = 1.6 * px;
    ctx.strokeStyle = theme.label;
    ctx.stroke(ringDashed);
    ctx.setLineDash([]);

    // Highlight halos, hover and selection.
    const ringOf = (id, extra) => {
      const b = scene.boxes.get(id);
      const p = pos.get(id);
      if (b) return (path) => path.rect(b.x - extra / 2, b.y - extra / 2, b.w + extra, b.h + extra);
      const r = (radius.get(id) || 7) + extra;
      return (path) => {
        path.moveTo(p.x + r, p.y);
        path.arc(p.x, p.y, r, 0, Math.PI * 2);
      };
    };
    if (dim) {
      const halo = new Path2D();
      for (const id of visible) if (hl.has(id) && !scene.boxes.has(id)) ringOf(id, 7)(halo);
      ctx.lineWidth = 2.5 * px;
      ctx.strokeStyle = theme.highlight;
      ctx.stroke(halo);
    }
    for (const [id, color, w] of [
      [scene.hover, theme.label, 1.5],
      [scene.selected, theme.accent, 3],
    ]) {
      if (!id || !pos.get(id)) continue;
      const path = new Path2D();
      ringOf(id, scene.boxes.has(id) ? 6 : 9)(path);
      ctx.lineWidth = w * px;
      ctx.strokeStyle = color;
      ctx.stroke(path);
    }

    // Screen-space text: badges, then labels. Labels never overlap: each is placed only
    // if its rectangle is free (a grid of buckets of placed rectangles), in order of
    // importance: the selection, highlighted nodes, group titles, then interfaces, whose
    // labels appear only when their cell is wide enough on screen to hold them.
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.textBaseline = 'middle';
    ctx.textAlign = 'center';
    ctx.font = '600 10px system-ui, sans-serif';
    const placedRects = [];
    const buckets = new Map();
    const BW = 64;
    const BH = 32;
    const free = (r) => {
      for (let bx = Math.floor(r.x / BW); bx <= Math.floor((r.x + r.w) / BW); bx++) {
        for (let by = Math.floor(r.y / BH); by <= Math.floor((r.y + r.h) / BH); by++) {
          for (const o of buckets.get(bx * 65536 + by) || []) {
            if (r.x < o.x + o.w && o.x < r.x + r.w && r.y < o.y + o.h && o.y < r.y + r.h) return false;
          }
        }
      }
      return true;
    };
    const take = (r) => {
      placedRects.push(r);
      for (let bx = Math.floor(r.x / BW); bx <= Math.floor((r.x + r.w) / BW); bx++) {
        for (let by = Math.floor(r.y / BH); by <= Math.floor((r.y + r.h) / BH); by++) {
          const key = bx * 65536 + by;
          let l = buckets.get(key);
          if (!l) buckets.set(key, (l = []));
          l.push(r);
        }
      }
    };
    for (const [p, r, count] of badges) {
      const sx = p.x * t.k + t.x + r * t.k * 0.75;
      const sy = p.y * t.k + t.y - r * t.k * 0.75;
      const text = `+${count}`;
      const w = this.textWidth(text) + 8;
      ctx.fillStyle = theme.accent;
      ctx.beginPath();
      ctx.roundRect(sx - w / 2, sy - 8, w, 16, 8);
      ctx.fill();
      ctx.fillStyle = '#fff';
      ctx.fillText(text, sx, sy + 0.5);
    }

    const LABEL_H = 14;
    const labels = [];
    const leafRoom = CW * t.k - 6;
    const want = (id, bold) => {
      const b = scene.boxes.get(id);
      const full = scene.labelOf(id);
      if (b) {
        const bx = b.x * t.k + t.x;
        const by = b.y * t.k + t.y;
        const bw = b.w * t.k;
        const bh = b.h * t.k;
        if (HEADER * t.k >= 12) {
          // In the title bar, right of the icon.
          const room = bw - 30 * t.k - 6;
          return { full, room, x: bx + 28 * t.k, y: by + (HEADER * t.k) / 2, align: 'left', bold: true };
        }
        // A big box names itself in its top-left corner, a small one in its middle.
        if (bh >= 80 && bw >= 80) return { full, room: bw - 8, x: bx + 4, y: by + LABEL_H / 2 + 2, align: 'left', bold: true };
        if (bw >= 24 && bh >= LABEL_H + 2) return { full, room: bw - 4, x: bx + bw / 2, y: by + bh / 2, align: 'center', bold: true };
        return null;
      }
      const p = pos.get(id);
      const c = scene.cells.get(id);
      const room = c ? leafRoom : 120;
      if (room < 24 && !bold) return null;
      const r = radius.get(id) || 7;
      return { full, room: Math.max(room, bold ? 90 : 0), x: p.x * t.k + t.x, y: c ? (c.y + LABEL_Y) * t.k + t.y : p.y * t.k + t.y + r * t.k + 9, align: 'center', bold };
    };
    const order = [];
    const seen = new Set();
    const push = (id, bold) => {
      if (!seen.has(id)) {
        seen.add(id);
        order.push([id, bold]);
      }
    };
    if (scene.selected && pos.has(scene.selected)) push(scene.selected, true);
    if (dim) for (const id of visible) if (hl.has(id)) push(id, true);
    for (const id of shownBoxes) push(id, false);
    for (const id of visible) if (scene.collapsed.has(id)) push(id, false);
    if (t.k >= 0.35) for (const id of visible) push(id, false);
    // Labels are copied as bitmaps in device pixels.
    ctx.setTransform(1, 0, 0, 1, 0, 0);
    for (const [id, bold] of order) {
      if (labels.length >= MAX_LABELS) break;
      const l = want(id, bold);
      if (!l) continue;
      ctx.font = l.bold ? '600 11px system-ui, sans-serif' : '11px system-ui, sans-serif';
      let text = this.fitText(l.full, l.room);
      if (text !== l.full) {
        const short = scene.shortOf(id);
        if (short) text = this.fitText(short, l.room);
      }
      if (!text) continue;
      const w = this.textWidth(text);
      const rect = { x: l.align === 'left' ? l.x : l.x - w / 2, y: l.y - LABEL_H / 2, w, h: LABEL_H, text, id };
      if (rect.x + w < 0 || rect.x > this.width || rect.y + LABEL_H < 0 || rect.y > this.height) continue;
      if (!free(rect)) continue;
      take(rect);
      labels.push(rect);
      const sprite = this.textSprite(text, l.bold);
      ctx.globalAlpha = dim && !hl.has(id) ? 0.4 : 1;
      ctx.drawImage(sprite, Math.round((rect.x - 3) * dpr), Math.round((l.y - 9) * dpr));
    }
    ctx.globalAlpha = 1;
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    // What was labelled, in CSS pixels of the canvas: read by the browser tests.
    this.labelRects = labels;
  }
}
