// Compound layout: hosts contain namespaces and bridges, which contain their interfaces,
// each drawn as a box. Deterministic and stable:
// - the children of a box keep the order in which they were first seen (sorted by kind
//   and name the first time), so a new node goes at the end and moves nothing else;
// - a box keeps the width it was given while its content still fits it reasonably;
// - both are remembered in localStorage by node ID, so a reload draws the same picture.
// An interface whose veth peer sits in a sibling box (the host end of a namespace's
// veth) is placed beside that box, so a link is a short line.
//
// Sizes are in world units; the renderer scales them.

export const CW = 96; // leaf cell width
export const CH = 50; // leaf cell height
export const ICON_Y = 19; // icon centre below the top of a leaf cell
export const LABEL_Y = 41; // label centre below the top of a leaf cell
export const HEADER = 28; // box title bar
export const PAD = 8; // inside a box, around its content
export const GAP = 12; // between boxes
const MIN_BOX_W = 140;
const ASPECT = 1.6; // target width / height of a box's content
const HYSTERESIS = 1.3; // a remembered width is kept while within this factor of the ideal
const STORE_KEY = 'topotap.layout.v1';
const STORE_MAX_GROUPS = 4000;

function loadMemory() {
  try {
    const m = JSON.parse(localStorage.getItem(STORE_KEY) || '{}');
    return m && typeof m === 'object' ? m : {};
  } catch {
    return {};
  }
}

export class Layout {
  constructor() {
    this.pos = new Map(); // displayed id -> {x, y}: centre of its icon
    this.boxes = new Map(); // expanded group id -> {x, y, w, h, depth}
    this.cells = new Map(); // leaf id -> {x, y, w, h}
    this.boxOrder = []; // expanded groups, parents before children
    this.bounds = null; // {x0, y0, x1, y1} of everything laid out
    this.memory = loadMemory(); // group id ('' for the top level) -> {o: [child ids], w}
    this.stale = false;
    this.saveTimer = null;
  }

  /** The layout is computed at once: nothing is ever still moving. */
  get running() {
    return false;
  }

  /** Asks for the layout to be computed again on the next frame. */
  reheat() {
    this.stale = true;
  }

  /** Forgets remembered orders and widths (the next compute starts from sorted order). */
  reset() {
    this.memory = {};
    try {
      localStorage.removeItem(STORE_KEY);
    } catch {
      /* storage unavailable: nothing remembered */
    }
  }

  /**
   * ids: displayed node ids; parentOf: Map id -> displayed group holding it;
   * keyOf(id): sort key for first placement; links: Map id -> [displayed ids it is
   * linked to, veth peers first]; aspect: width/height wanted for the top level.
   */
  compute(ids, parentOf, keyOf, links, aspect = ASPECT) {
    this.stale = false;
    const kids = new Map();
    const roots = [];
    for (const id of ids) {
      const p = parentOf.get(id);
      if (p === undefined) roots.push(id);
      else {
        let l = kids.get(p);
        if (!l) kids.set(p, (l = []));
        l.push(id);
      }
    }
    const isBox = (id) => kids.has(id);
    const depthOf = new Map();

    // Children in remembered order, new ones after them in sorted order.
    const ordered = (gid, list) => {
      const mem = this.memory[gid];
      const present = new Set(list);
      const known = mem && Array.isArray(mem.o) ? mem.o.filter((id) => present.has(id)) : [];
      const seen = new Set(known);
      const fresh = list.filter((id) => !seen.has(id)).sort((a, b) => cmp(keyOf(a), keyOf(b)) || cmp(a, b));
      const out = known.concat(fresh);
      this.memory[gid] = { o: out, w: mem?.w };
      return out;
    };

    // Satellites: a leaf linked into a sibling box is drawn beside that box.
    const sibling = (gid, other) => {
      let x = other;
      for (let guard = 0; guard < 32 && x !== undefined; guard++) {
        const p = parentOf.get(x);
        if (p === gid) return x;
        x = p;
      }
      return undefined;
    };

    const size = new Map(); // id -> {w, h} of a box (content + frame) or leaf
    const plans = new Map(); // group id ('' = top) -> placement plan of its content

    const planContent = (gid, list, wantAspect) => {
      const order = ordered(gid, list);
      const boxes = [];
      const leaves = [];
      const sats = new Map(); // box id -> [leaf ids]
      for (const id of order) {
        if (isBox(id)) {
          boxes.push(id);
          continue;
        }
        let host;
        for (const o of links.get(id) || []) {
          const s = o === undefined ? undefined : sibling(gid, o);
          if (s !== undefined && s !== id && isBox(s)) {
            host = s;
            break;
          }
        }
        if (host !== undefined) {
          let l = sats.get(host);
          if (!l) sats.set(host, (l = []));
          l.push(id);
        } else leaves.push(id);
      }
      // Each box with its satellites is one item.
      const items = boxes.map((id) => {
        const b = size.get(id);
        const s = sats.get(id) || [];
        const perCol = Math.max(1, Math.floor(b.h / CH));
        const satCols = s.length ? Math.ceil(s.length / perCol) : 0;
        const satRows = satCols ? Math.ceil(s.length / satCols) : 0;
        return { id, sats: s, satCols, satRows, w: b.w + satCols * CW + (satCols ? 4 : 0), h: Math.max(b.h, satRows * CH) };
      });
      let area = leaves.length * CW * CH;
      let maxW = leaves.length ? CW : 0;
      for (const it of items) {
        area += (it.w + GAP) * (it.h + GAP);
        maxW = Math.max(maxW, it.w);
      }
      let ideal = Math.max(maxW, Math.sqrt(area * wantAspect));
      if (!items.length && leaves.length) {
        const cols = leaves.length <= 3 ? leaves.length : Math.max(1, Math.round(ideal / CW));
        ideal = cols * CW;
      }
      const mem = this.memory[gid];
      let W = ideal;
      if (mem.w && mem.w >= maxW && mem.w <= ideal * HYSTERESIS && mem.w >= ideal / HYSTERESIS) W = mem.w;
      mem.w = Math.ceil(W);
      // Shelf packing of the boxes, then the loose leaves in a grid under them.
      const placed = [];
      let x = 0;
      let y = 0;
      let rowH = 0;
      let usedW = 0;
      for (const it of items) {
        if (x > 0 && x + it.w > W) {
          x = 0;
          y += rowH + GAP;
          rowH = 0;
        }
        placed.push({ it, x, y });
        x += it.w + GAP;
        usedW = Math.max(usedW, x - GAP);
        rowH = Math.max(rowH, it.h);
      }
      if (items.length) y += rowH + (leaves.length ? GAP : 0);
      const cols = Math.max(1, Math.min(leaves.length, Math.floor((Math.max(W, usedW) + 1e-6) / CW)));
      const grid = leaves.map((id, i) => ({ id, x: (i % cols) * CW, y: y + Math.floor(i / cols) * CH }));
      if (leaves.length) usedW = Math.max(usedW, cols * CW);
      const h = y + (leaves.length ? Math.ceil(leaves.length / cols) * CH : items.length ? -GAP : 0);
      plans.set(gid, { placed, grid });
      return { w: usedW, h: Math.max(0, h) };
    };

    // Sizes bottom-up (deepest groups first).
    const post = [];
    const visit = (id, depth) => {
      depthOf.set(id, depth);
      for (const c of kids.get(id) || []) visit(c, depth + 1);
      post.push(id);
    };
    for (const r of roots) visit(r, 0);
    for (const id of post) {
      if (!isBox(id)) {
        size.set(id, { w: CW, h: CH });
        continue;
      }
      const c = planContent(id, kids.get(id), ASPECT);
      size.set(id, { w: Math.max(MIN_BOX_W, c.w + 2 * PAD), h: c.h + HEADER + 2 * PAD });
    }
    const top = planContent('', roots, aspect);

    // Positions top-down.
    this.pos = new Map();
    this.boxes = new Map();
    this.cells = new Map();
    this.boxOrder = [];
    const leafAt = (id, x, y) => {
      this.cells.set(id, { x, y, w: CW, h: CH });
      this.pos.set(id, { x: x + CW / 2, y: y + ICON_Y });
    };
    const placeContent = (gid, ox, oy) => {
      const plan = plans.get(gid);
      for (const { it, x, y } of plan.placed) {
        // Satellites left of their box, the box right of them.
        it.sats.forEach((sid, i) => {
          const col = Math.floor(i / it.satRows);
          const row = i % it.satRows;
          leafAt(sid, ox + x + col * CW, oy + y + row * CH);
        });
        placeBox(it.id, ox + x + it.satCols * CW + (it.satCols ? 4 : 0), oy + y);
      }
      for (const { id, x, y } of plan.grid) leafAt(id, ox + x, oy + y);
    };
    const placeBox = (id, x, y) => {
      const s = size.get(id);
      this.boxes.set(id, { x, y, w: s.w, h: s.h, depth: depthOf.get(id) || 0 });
      this.boxOrder.push(id);
      this.pos.set(id, { x: x + 16, y: y + HEADER / 2 });
      placeContent(id, x + PAD, y + HEADER + PAD);
    };
    placeContent('', 0, 0);
    this.bounds = { x0: 0, y0: 0, x1: Math.max(top.w, 1), y1: Math.max(top.h, 1) };
    this.scheduleSave();
  }

  /** World rectangle of a displayed node: its box, or its leaf cell. */
  rectOf(id) {
    return this.boxes.get(id) || this.cells.get(id) || null;
  }

  scheduleSave() {
    clearTimeout(this.saveTimer);
    this.saveTimer = setTimeout(() => this.save(), 400);
  }

  save() {
    const keys = Object.keys(this.memory);
    if (keys.length > STORE_MAX_GROUPS) {
      // Keep what is displayed now; drop the oldest of the rest.
      const keep = new Set(['', ...this.boxes.keys()]);
      for (const k of keys) if (!keep.has(k) && Object.keys(this.memory).length > STORE_MAX_GROUPS) delete this.memory[k];
    }
    try {
      localStorage.setItem(STORE_KEY, JSON.stringify(this.memory));
    } catch {
      /* quota or storage off: the layout is still deterministic, only not remembered */
    }
  }
}

// Natural order: ns2 before ns10.
const collator = new Intl.Collator('en', { numeric: true });

function cmp(a, b) {
  return collator.compare(a, b);
}
