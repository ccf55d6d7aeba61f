// Node appearance by Metadata.Type, and the legend built from it.

/** Shapes the renderer knows: circle, square, diamond, hexagon, triangle. */
const STYLES = {
  host: { color: '#6b8afd', shape: 'square', r: 16, group: 'host' },
  netns: { color: '#b07cf0', shape: 'hexagon', r: 13, group: 'netns' },
  container: { color: '#3fa7d6', shape: 'square', r: 9, group: 'container' },
  veth: { color: '#34b8a6', shape: 'circle', r: 7, group: 'veth' },
  device: { color: '#9aa4b1', shape: 'circle', r: 7, group: 'device' },
  bridge: { color: '#eda04a', shape: 'diamond', r: 11, group: 'bridge' },
  vlan: { color: '#86c46a', shape: 'circle', r: 7, group: 'vlan / vxlan' },
  vxlan: { color: '#5ab4e6', shape: 'circle', r: 7, group: 'vlan / vxlan' },
  tun: { color: '#d2b450', shape: 'circle', r: 7, group: 'tun / tap' },
  tap: { color: '#d2b450', shape: 'circle', r: 7, group: 'tun / tap' },
  tuntap: { color: '#d2b450', shape: 'circle', r: 7, group: 'tun / tap' },
  ovsbridge: { color: '#ec6a8c', shape: 'diamond', r: 12, group: 'ovsbridge' },
  ovsport: { color: '#e8a0b6', shape: 'square', r: 7, group: 'ovsport' },
  internal: { color: '#c79af2', shape: 'triangle', r: 7, group: 'internal / patch' },
  patch: { color: '#c79af2', shape: 'triangle', r: 7, group: 'internal / patch' },
  openvswitch: { color: '#8f96a3', shape: 'circle', r: 6, group: 'other' },
};
const OTHER = { color: '#7d8590', shape: 'circle', r: 6, group: 'other' };

export function styleFor(type) {
  return STYLES[type] || OTHER;
}

/** Legend rows in display order: [label, style]. */
export function legendEntries() {
  const seen = new Map();
  for (const s of [...Object.values(STYLES), OTHER]) {
    if (!seen.has(s.group)) seen.set(s.group, s);
  }
  return [...seen.entries()];
}

/** Edge classes: ownership (structure), layer2 (links), anything else. */
export function edgeClass(relationType) {
  if (relationType === 'ownership') return 'ownership';
  if (relationType === 'layer2') return 'layer2';
  return 'other';
}

/** Draws a shape centred at (x, y) into a path (a CanvasRenderingContext2D or Path2D). */
export function shapePath(p, shape, x, y, r) {
  switch (shape) {
    case 'square': {
      const s = r * 0.88;
      p.moveTo(x - s, y - s);
      p.lineTo(x + s, y - s);
      p.lineTo(x + s, y + s);
      p.lineTo(x - s, y + s);
      p.closePath();
      break;
    }
    case 'diamond':
      p.moveTo(x, y - r * 1.15);
      p.lineTo(x + r * 1.15, y);
      p.lineTo(x, y + r * 1.15);
      p.lineTo(x - r * 1.15, y);
      p.closePath();
      break;
    case 'hexagon':
      for (let i = 0; i < 6; i++) {
        const a = Math.PI / 6 + (i * Math.PI) / 3;
        const px = x + r * Math.cos(a);
        const py = y + r * Math.sin(a);
        if (i === 0) p.moveTo(px, py);
        else p.lineTo(px, py);
      }
      p.closePath();
      break;
    case 'triangle':
      p.moveTo(x, y - r * 1.1);
      p.lineTo(x + r, y + r * 0.75);
      p.lineTo(x - r, y + r * 0.75);
      p.closePath();
      break;
    default:
      p.moveTo(x + r, y);
      p.arc(x, y, r, 0, Math.PI * 2);
  }
}
