// Builds Skydive-shaped topologies through topotap's REST API (POST /api/node, /api/edge).

let seq = 0;
const mac = (i) => `02:00:${[(i >> 24) & 255, (i >> 16) & 255, (i >> 8) & 255, i & 255].map((b) => b.toString(16).padStart(2, '0')).join(':')}`;

export class Topo {
  constructor(prefix) {
    this.prefix = prefix;
    this.nodes = [];
    this.edges = [];
  }

  node(name, type, extra = {}) {
    const id = `${this.prefix}-n${this.nodes.length}`;
    const md = { Name: name, Type: type, TID: `tid-${id}`, ...extra };
    if (type === 'netns' && !md.Path) md.Path = `/var/run/netns/${name}`;
    if (type === 'ovsport' && !md.UUID) md.UUID = `uuid-${id}`;
    this.nodes.push({ ID: id, Metadata: md, Host: this.prefix });
    return id;
  }

  intf(name, type, i) {
    seq++;
    return this.node(name, type, {
      MAC: mac(seq),
      MTU: 1500,
      State: 'UP',
      IfIndex: i,
      EncapType: 'ether',
      LinkFlags: ['UP', 'BROADCAST', 'MULTICAST'],
      IPV4: [`10.${(seq >> 8) & 255}.${seq & 255}.1/24`],
      Metric: { RxPackets: seq * 17, TxPackets: seq * 13, RxBytes: seq * 1400, TxBytes: seq * 1100, RxErrors: 0, TxErrors: 0, Start: 1700000000000, Last: 1700000060000 },
    });
  }

  edge(parent, child, rel, extra = {}) {
    const id = `${this.prefix}-e${this.edges.length}`;
    this.edges.push({ ID: id, Parent: parent, Child: child, Metadata: { RelationType: rel, ...extra }, Host: this.prefix });
    return id;
  }

  own(p, c) {
    return this.edge(p, c, 'ownership');
  }

  l2(p, c, extra) {
    return this.edge(p, c, 'layer2', extra);
  }
}

/** A small but varied host: namespaces, veth pairs, a Linux bridge, OVS, vlan, vxlan, tun. */
export function smallHost(prefix = 'demo') {
  const t = new Topo(prefix);
  const host = t.node(prefix, 'host', { Hostname: prefix, OS: 'linux', KernelVersion: '6.1.0' });
  const eth0 = t.intf('eth0', 'device', 2);
  t.own(host, eth0);
  const lo = t.intf('lo', 'device', 1);
  t.own(host, lo);
  const br = t.intf('br0', 'bridge', 3);
  t.own(host, br);
  const ovs = t.node('ovsbr0', 'ovsbridge', { UUID: `${prefix}-ovsbr0` });
  t.own(host, ovs);
  for (let i = 1; i <= 4; i++) {
    const ns = t.node(`vm${i}`, 'netns');
    t.own(host, ns);
    const inner = t.intf('eth0', 'veth', 2);
    t.own(ns, inner);
    const nslo = t.intf('lo', 'device', 1);
    t.own(ns, nslo);
    const outer = t.intf(`vm${i}-veth0`, 'veth', 10 + i);
    t.own(host, outer);
    t.l2(outer, inner, { Type: 'veth' });
    if (i <= 2) t.l2(br, outer);
    else {
      const port = t.node(`vm${i}-veth0`, 'ovsport');
      t.own(ovs, port);
      t.l2(ovs, port);
      t.l2(port, outer);
    }
  }
  const internalPort = t.node('ovsbr0', 'ovsport');
  t.own(ovs, internalPort);
  t.l2(ovs, internalPort);
  const internal = t.intf('ovsbr0', 'internal', 20);
  t.own(ovs, internal);
  t.l2(internalPort, internal);
  const vlan = t.intf('eth0.100', 'vlan', 21);
  t.own(host, vlan);
  t.l2(eth0, vlan, { Type: 'vlan' });
  const vx = t.intf('vxlan42', 'vxlan', 22);
  t.own(host, vx);
  const tun = t.intf('tun0', 'tun', 23);
  t.own(host, tun);
  return { topo: t, host };
}

/** About `n` nodes: one host, namespaces of 10 interfaces with their veth peers, bridges. */
export function bigHost(prefix, n = 2000) {
  const t = new Topo(prefix);
  const host = t.node(prefix, 'host');
  const bridges = [];
  for (let b = 0; b < 8; b++) {
    const br = t.intf(`br${b}`, 'bridge', 1000 + b);
    t.own(host, br);
    bridges.push(br);
  }
  let k = 0;
  while (t.nodes.length < n) {
    const ns = t.node(`ns${k}`, 'netns');
    t.own(host, ns);
    for (let j = 0; j < 9 && t.nodes.length < n - 1; j++) {
      const inner = t.intf(`eth${j}`, 'veth', 2 + j);
      t.own(ns, inner);
      const outer = t.intf(`v${k}-${j}`, 'veth', 100 + k * 10 + j);
      t.own(host, outer);
      t.l2(outer, inner, { Type: 'veth' });
      if (j === 0) t.l2(bridges[k % bridges.length], outer);
    }
    k++;
  }
  return { topo: t, host };
}

async function post(base, path, body) {
  const r = await fetch(base + path, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(body) });
  if (r.status !== 201 && r.status !== 200) throw new Error(`POST ${path} ${body.ID}: ${r.status} ${await r.text()}`);
}

async function pool(items, width, fn) {
  let i = 0;
  const workers = Array.from({ length: width }, async () => {
    while (i < items.length) {
      const item = items[i++];
      await fn(item);
    }
  });
  await Promise.all(workers);
}

/** Posts every node, then every edge, `width` requests at a time. */
export async function publish(base, topo, width = 16) {
  await pool(topo.nodes, width, (n) => post(base, '/api/node', n));
  await pool(topo.edges, width, (e) => post(base, '/api/edge', e));
}
