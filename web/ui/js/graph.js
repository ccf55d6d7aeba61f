// The client-side graph: nodes and edges as received from the subscriber, plus the
// grouping used for collapse/expand.
//
// A node's group parent is its ownership parent (host -> netns -> interfaces,
// ovsbridge -> ovsport), except that a Linux bridge member is grouped under its bridge
// (layer2 edge bridge -> member without a Type), so a bridge collapses with its ports.

const COLLAPSE_CHILDREN = 12; // on a big graph, a netns/bridge with more direct members starts collapsed
const COLLAPSE_HOST_CHILDREN = 40; // hosts start collapsed only when there are several
export const BIG_GRAPH = 300; // nodes: from here on, big groups start collapsed

export class Graph {
  constructor() {
    this.nodes = new Map(); // id -> node JSON
    this.edges = new Map(); // id -> edge JSON
    this.incident = new Map(); // node id -> Set(edge id)
    this.version = 0;
    this.structureVersion = 0; // bumps on add/delete and edge changes, not metadata-only
    this.listeners = new Set();
  }

  onChange(fn) {
    this.listeners.add(fn);
  }

  emit(kind, id) {
    this.version++;
    for (const fn of this.listeners) fn(kind, id);
  }

  reset({ Nodes = [], Edges = [] }) {
    this.nodes.clear();
    this.edges.clear();
    this.incident.clear();
    for (const n of Nodes || []) this.nodes.set(n.ID, n);
    for (const e of Edges || []) this.putEdge(e);
    this.structureVersion++;
    this.emit('reset');
  }

  putEdge(e) {
    this.edges.set(e.ID, e);
    for (const end of [e.Parent, e.Child]) {
      let s = this.incident.get(end);
      if (!s) this.incident.set(end, (s = new Set()));
      s.add(e.ID);
    }
  }

  dropEdge(id) {
    const e = this.edges.get(id);
    if (!e) return;
    this.edges.delete(id);
    for (const end of [e.Parent, e.Child]) this.incident.get(end)?.delete(id);
  }

  apply(type, obj) {
    if (!obj || typeof obj.ID !== 'string') return;
    switch (type) {
      case 'NodeAdded':
      case 'NodeUpdated': {
        const had = this.nodes.has(obj.ID);
        this.nodes.set(obj.ID, obj);
        if (!had) this.structureVersion++;
        this.emit(had ? 'node-updated' : 'node-added', obj.ID);
        break;
      }
      case 'NodeDeleted': {
        this.nodes.delete(obj.ID);
        for (const eid of [...(this.incident.get(obj.ID) || [])]) this.dropEdge(eid);
        this.incident.delete(obj.ID);
        this.structureVersion++;
        this.emit('node-deleted', obj.ID);
        break;
      }
      case 'EdgeAdded':
      case 'EdgeUpdated': {
        const old = this.edges.get(obj.ID);
        if (old) this.dropEdge(obj.ID);
        this.putEdge(obj);
        this.structureVersion++;
        this.emit('edge', obj.ID);
        break;
      }
      case 'EdgeDeleted':
        this.dropEdge(obj.ID);
        this.structureVersion++;
        this.emit('edge', obj.ID);
        break;
      default:
    }
  }

  /** Group parent of every node that has one: Map child -> parent. */
  groupParents() {
    const parent = new Map();
    const bridgeOf = new Map();
    for (const e of this.edges.values()) {
      if (!this.nodes.has(e.Parent) || !this.nodes.has(e.Child)) continue;
      const rel = e.Metadata?.RelationType;
      if (rel === 'ownership') {
        if (!parent.has(e.Child)) parent.set(e.Child, e.Parent);
      } else if (rel === 'layer2' && !e.Metadata?.Type && this.nodes.get(e.Parent).Metadata?.Type === 'bridge') {
        bridgeOf.set(e.Child, e.Parent);
      }
    }
    for (const [child, bridge] of bridgeOf) {
      if (child !== bridge && parent.get(bridge) !== child) parent.set(child, bridge);
    }
    return parent;
  }
}

/**
 * The graph as displayed: collapsed groups stand for their members. Returns
 * { nodes: [id], rep: Map(id -> displayed id), hidden: Map(group -> count),
 *   children: Map(group -> [child]), edges: [{a, b, cls, count}] }.
 */
export function visibleGraph(graph, overrides) {
  const parent = graph.groupParents();
  const children = new Map();
  for (const [c, p] of parent) {
    let l = children.get(p);
    if (!l) children.set(p, (l = []));
    l.push(c);
  }
  let hosts = 0;
  for (const n of graph.nodes.values()) if (n.Metadata?.Type === 'host') hosts++;

  const big = graph.nodes.size > BIG_GRAPH;
  const isCollapsed = (id) => {
    const kids = children.get(id);
    if (!kids || kids.length === 0) return false;
    if (overrides.has(id)) return overrides.get(id);
    if (!big) return false;
    const type = graph.nodes.get(id)?.Metadata?.Type;
    if (type === 'host') return hosts > 1 && kids.length > COLLAPSE_HOST_CHILDREN;
    return kids.length > COLLAPSE_CHILDREN;
  };

  const rep = new Map();
  const hidden = new Map();
  const collapsed = new Set();
  // Walk down from the roots; anything below a collapsed group is shown as that group.
  const stack = [];
  for (const id of graph.nodes.keys()) if (!parent.has(id)) stack.push([id, null]);
  while (stack.length) {
    const [id, hiddenBy] = stack.pop();
    if (rep.has(id)) continue;
    rep.set(id, hiddenBy || id);
    if (hiddenBy) hidden.set(hiddenBy, (hidden.get(hiddenBy) || 0) + 1);
    let below = hiddenBy;
    if (!hiddenBy && isCollapsed(id)) {
      below = id;
      collapsed.add(id);
    }
    for (const c of children.get(id) || []) stack.push([c, below]);
  }
  // Nodes only reachable through an ownership cycle: shown as themselves.
  for (const id of graph.nodes.keys()) if (!rep.has(id)) rep.set(id, id);

  const nodes = [];
  for (const [id, r] of rep) if (id === r) nodes.push(id);

  const agg = new Map();
  for (const e of graph.edges.values()) {
    const a = rep.get(e.Parent);
    const b = rep.get(e.Child);
    if (a === undefined || b === undefined || a === b) continue;
    const key = a < b ? `${a}\u0000${b}` : `${b}\u0000${a}`;
    const rel = e.Metadata?.RelationType;
    const cls = rel === 'ownership' ? 'ownership' : rel === 'layer2' ? 'layer2' : 'other';
    let v = agg.get(key);
    if (!v) agg.set(key, (v = { a, b, cls, count: 0, ids: [] }));
    v.count++;
    if (v.ids.length < 8) v.ids.push(e.ID);
    // A pair linked both ways (ovsbridge -> ovsport) is drawn as a link.
    if (cls === 'layer2' || (cls === 'other' && v.cls === 'ownership')) v.cls = cls;
  }
  return { nodes, rep, hidden, children, collapsed, parent, edges: [...agg.values()] };
}

/** The node's name as text ('' when it has none). */
export function nameOf(node) {
  const n = node?.Metadata?.Name;
  return n === undefined || n === null ? '' : String(n);
}

/** Ownership parent of every node: Map child -> parent (the namespace or host it lives in). */
export function ownerParents(graph) {
  const owner = new Map();
  for (const e of graph.edges.values()) {
    if (e.Metadata?.RelationType !== 'ownership') continue;
    if (!graph.nodes.has(e.Parent) || !graph.nodes.has(e.Child)) continue;
    if (!owner.has(e.Child)) owner.set(e.Child, e.Parent);
  }
  return owner;
}

/**
 * A readable label for every node: its name, or `ns/name` when another node has the
 * same name (four `eth0` become `vm1/eth0`, `vm2/eth0`...), or a short ID when unnamed.
 */
export function nodeLabels(graph) {
  const owner = ownerParents(graph);
  const count = new Map();
  for (const n of graph.nodes.values()) {
    const name = nameOf(n);
    if (name) count.set(name, (count.get(name) || 0) + 1);
  }
  const labels = new Map();
  const again = new Map();
  for (const [id, n] of graph.nodes) {
    const name = nameOf(n);
    if (!name) {
      labels.set(id, id.slice(0, 8));
      continue;
    }
    const up = owner.get(id);
    const upName = up !== undefined ? nameOf(graph.nodes.get(up)) : '';
    const label = count.get(name) > 1 && upName ? `${upName}/${name}` : name;
    labels.set(id, label);
    again.set(label, (again.get(label) || 0) + 1);
  }
  // Still ambiguous (an OVS port and its internal interface in the same bridge): add the type.
  for (const [id, label] of labels) {
    const type = graph.nodes.get(id)?.Metadata?.Type;
    if (again.get(label) > 1 && type) labels.set(id, `${label} (${type})`);
  }
  return labels;
}

/**
 * How an interface is wired: its namespace (or host), veth peer, the bridge it is a
 * port of, and, for a bridge, its ports. IDs only; the caller names them.
 */
export function relationsOf(graph, id) {
  const out = { owner: null, peers: [], bridges: [], ports: [], links: [] };
  const typeOf = (nid) => graph.nodes.get(nid)?.Metadata?.Type;
  const me = typeOf(id);
  for (const eid of graph.incident.get(id) || []) {
    const e = graph.edges.get(eid);
    if (!e) continue;
    const other = e.Parent === id ? e.Child : e.Parent;
    if (!graph.nodes.has(other) || other === id) continue;
    const rel = e.Metadata?.RelationType;
    const kind = e.Metadata?.Type;
    if (rel === 'ownership') {
      if (e.Child === id && !out.owner) out.owner = other;
      else if (e.Parent === id && me === 'ovsbridge' && typeOf(other) === 'ovsport' && !out.ports.includes(other)) out.ports.push(other);
      continue;
    }
    if (rel !== 'layer2') {
      out.links.push(other);
      continue;
    }
    const otherType = typeOf(other);
    if (kind === 'veth') out.peers.push(other);
    else if (!kind && me === 'bridge' && e.Parent === id) out.ports.push(other);
    else if (!kind && otherType === 'bridge' && e.Child === id) out.bridges.push(other);
    else if (otherType === 'ovsport' && me !== 'ovsbridge') {
      // An interface attached to an OVS port: its bridge is the port's owner.
      out.bridges.push(other);
    } else if (me === 'ovsport' && otherType === 'ovsbridge') out.bridges.push(other);
    else if (me === 'ovsbridge' && otherType === 'ovsport') {
      if (!out.ports.includes(other)) out.ports.push(other);
    } else out.links.push(other);
  }
  return out;
}
