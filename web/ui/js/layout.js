// Force layout for the displayed graph, cheap enough for thousands of nodes: springs
// along edges, short-range repulsion through a uniform grid (O(n) per tick instead of
// O(n^2)), collision by radius and a weak pull to the centre. It runs a few ticks per
// animation frame within a time budget, so the page stays responsive while it settles.

const CELL = 90;
const REPULSION = 1600;
const GRAVITY = 0.004;
const DECAY = 0.55;
const ALPHA_MIN = 0.004;
const ALPHA_DECAY = 0.985;
const MAX_STEP = 40;

export class Layout {
  constructor() {
    this.pos = new Map(); // node id -> {x, y, vx, vy, fixed}
    this.alpha = 0;
    this.ids = [];
    this.radius = new Map();
    this.springs = [];
  }

  get running() {
    return this.alpha > ALPHA_MIN;
  }

  reheat(alpha = 1) {
    this.alpha = Math.max(this.alpha, alpha);
  }

  /**
   * Takes a new displayed graph. `anchor(id)` names where a node that has no position
   * yet should appear (its group parent or the group it was hidden in).
   */
  setGraph(ids, edges, radius, anchor) {
    this.ids = ids;
    this.radius = radius;
    const n = ids.length;
    let placed = 0;
    // New nodes go on a sunflower spiral around their anchor (golden-angle steps,
    // radius growing with the square root of the count): even density from the
    // start, so no grid cell is crowded and the first ticks are as cheap as the last.
    const slots = new Map();
    const rot = Math.random() * Math.PI * 2;
    const place = (id, ap, key) => {
      const i = slots.get(key) || 0;
      slots.set(key, i + 1);
      const r = (ap ? 42 : 0) + 30 * Math.sqrt(i + (ap ? 0 : 0.5));
      const ang = rot + i * 2.399963;
      this.pos.set(id, { x: (ap ? ap.x : 0) + Math.cos(ang) * r, y: (ap ? ap.y : 0) + Math.sin(ang) * r, vx: 0, vy: 0, fixed: false });
      placed++;
    };
    // Place parents before children so anchors have positions.
    let pending = ids.filter((id) => !this.pos.has(id));
    for (let pass = 0; pass < 6 && pending.length; pass++) {
      const later = [];
      for (const id of pending) {
        const a = anchor(id);
        const ap = a && this.pos.get(a);
        if (ap) place(id, ap, a);
        else if (!a || pass === 5) place(id, null, '');
        else later.push(id);
      }
      pending = later;
    }
    // Spring strength and bias as in d3-force: a hub (a host owning a thousand
    // interfaces) is pulled by each link in proportion to its degree, so the sum of
    // its springs cannot fling it away; the leaf end does most of the moving.
    const degree = new Map();
    for (const e of edges) {
      degree.set(e.a, (degree.get(e.a) || 0) + 1);
      degree.set(e.b, (degree.get(e.b) || 0) + 1);
    }
    this.springs = edges.map((e) => {
      const da = degree.get(e.a);
      const db = degree.get(e.b);
      return {
        a: e.a,
        b: e.b,
        len: e.cls === 'ownership' ? 55 : e.cls === 'layer2' ? 75 : 110,
        k: (e.cls === 'ownership' ? 0.6 : 0.9) / Math.min(da, db),
        bias: da / (da + db), // share of the correction applied to b
      };
    });
    if (placed) this.reheat(placed > n / 3 ? 1 : 0.5);
    return placed;
  }

  /** Moves positions of nodes no longer displayed out of the way of memory growth. */
  forget(keep) {
    for (const id of this.pos.keys()) if (!keep.has(id)) this.pos.delete(id);
  }

  /** Runs ticks for at most budgetMs; returns true if positions changed. */
  step(budgetMs) {
    if (!this.running || this.ids.length === 0) return false;
    const t0 = performance.now();
    let ticks = 0;
    do {
      this.tick();
      ticks++;
    } while (this.running && performance.now() - t0 < budgetMs && ticks < 50);
    return true;
  }

  tick() {
    const alpha = this.alpha;
    const ids = this.ids;
    const n = ids.length;
    const P = new Array(n);
    const R = new Float64Array(n);
    const grid = new Map();
    for (let i = 0; i < n; i++) {
      const p = this.pos.get(ids[i]);
      P[i] = p;
      R[i] = this.radius.get(ids[i]) || 7;
      const key = ((Math.floor(p.x / CELL) + 32768) << 16) | (Math.floor(p.y / CELL) + 32768);
      let cell = grid.get(key);
      if (!cell) grid.set(key, (cell = []));
      cell.push(i);
    }
    // Short-range repulsion and collision.
    for (let i = 0; i < n; i++) {
      const p = P[i];
      const cx = Math.floor(p.x / CELL);
      const cy = Math.floor(p.y / CELL);
      for (let dx = -1; dx <= 1; dx++) {
        for (let dy = -1; dy <= 1; dy++) {
          const cell = grid.get(((cx + dx + 32768) << 16) | (cy + dy + 32768));
          if (!cell) continue;
          // A crowded cell (a dragged pile) is sampled, bounding the cost of a tick.
          const stride = cell.length > 48 ? Math.ceil(cell.length / 48) : 1;
          for (let c = 0; c < cell.length; c += stride) {
            const j = cell[c];
            if (j <= i) continue;
            const q = P[j];
            let ddx = q.x - p.x;
            let ddy = q.y - p.y;
            let d2 = ddx * ddx + ddy * ddy;
            if (d2 === 0) {
              ddx = Math.random() - 0.5;
              ddy = Math.random() - 0.5;
              d2 = ddx * ddx + ddy * ddy;
            }
            if (d2 > CELL * CELL * 2) continue;
            const d = Math.sqrt(d2);
            let f = (REPULSION * alpha) / d2;
            const minD = R[i] + R[j] + 6;
            if (d < minD) f += ((minD - d) / d) * 0.5;
            f = Math.min(f, 8);
            const fx = (ddx / d) * f;
            const fy = (ddy / d) * f;
            p.vx -= fx;
            p.vy -= fy;
            q.vx += fx;
            q.vy += fy;
          }
        }
      }
    }
    // Springs.
    for (const s of this.springs) {
      const p = this.pos.get(s.a);
      const q = this.pos.get(s.b);
      if (!p || !q) continue;
      const dx = q.x + q.vx - p.x - p.vx;
      const dy = q.y + q.vy - p.y - p.vy;
      const d = Math.sqrt(dx * dx + dy * dy) || 1;
      const l = ((d - s.len) / d) * s.k * alpha;
      q.vx -= dx * l * s.bias;
      q.vy -= dy * l * s.bias;
      p.vx += dx * l * (1 - s.bias);
      p.vy += dy * l * (1 - s.bias);
    }
    // Gravity, integration.
    for (let i = 0; i < n; i++) {
      const p = P[i];
      if (p.fixed) {
        p.vx = p.vy = 0;
        continue;
      }
      p.vx -= p.x * GRAVITY * alpha;
      p.vy -= p.y * GRAVITY * alpha;
      p.vx *= DECAY;
      p.vy *= DECAY;
      // Bounded steps: no configuration can blow the layout up.
      const v2 = p.vx * p.vx + p.vy * p.vy;
      if (v2 > MAX_STEP * MAX_STEP) {
        const f = MAX_STEP / Math.sqrt(v2);
        p.vx *= f;
        p.vy *= f;
      }
      p.x += p.vx;
      p.y += p.vy;
    }
    this.alpha *= ALPHA_DECAY;
  }
}
