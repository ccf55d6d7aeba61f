// A few DOM helpers: no framework, just elements.

/**
 * h('div', {class: 'x', onclick: fn}, child, ...) -> HTMLElement.
 * Children may be strings, nodes, arrays, null/undefined/false (skipped).
 */
export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  if (attrs) {
    for (const [k, v] of Object.entries(attrs)) {
      if (v === undefined || v === null || v === false) continue;
      if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
      else if (k === 'class') el.className = v;
      else if (k === 'dataset') Object.assign(el.dataset, v);
      else if (k === 'value' || k === 'checked' || k === 'selected' || k === 'disabled') el[k] = v;
      else el.setAttribute(k, v === true ? '' : String(v));
    }
  }
  append(el, children);
  return el;
}

/**
 * Appends children as h() does: null, undefined and false are skipped (the DOM's own
 * append would show them as the text "null").
 */
export function put(el, ...children) {
  append(el, children);
  return el;
}

function append(el, children) {
  for (const c of children) {
    if (c === undefined || c === null || c === false) continue;
    if (Array.isArray(c)) append(el, c);
    else el.append(c instanceof Node ? c : String(c));
  }
}

export function $(sel, root = document) {
  return root.querySelector(sel);
}

export function clear(el) {
  while (el.firstChild) el.removeChild(el.firstChild);
  return el;
}

export function fmtNumber(v) {
  if (typeof v !== 'number') return String(v);
  return Number.isInteger(v) ? v.toLocaleString('en-US') : v.toLocaleString('en-US', { maximumFractionDigits: 3 });
}

export function fmtBytes(v) {
  if (typeof v !== 'number') return String(v ?? '');
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  let x = v;
  while (Math.abs(x) >= 1024 && i < units.length - 1) {
    x /= 1024;
    i++;
  }
  return i === 0 ? `${x} B` : `${x.toFixed(1)} ${units[i]}`;
}

export function fmtTime(ms) {
  if (typeof ms !== 'number' || ms <= 0) return '';
  return new Date(ms).toLocaleString();
}

/** The Gremlin string literal for s (single-quoted, escaped). */
export function gq(s) {
  return `'${String(s).replace(/\\/g, '\\\\').replace(/'/g, "\\'")}'`;
}

/** A simple table: columns [{label, value: row => cell, class?}], rows. */
export function table(columns, rows, { onRowClick, empty = 'nothing' } = {}) {
  if (!rows.length) return h('div', { class: 'empty' }, empty);
  columns = columns.filter(Boolean);
  return h(
    'table',
    { class: 'grid' },
    h('thead', null, h('tr', null, columns.map((c) => h('th', { class: c.class }, c.label)))),
    h(
      'tbody',
      null,
      rows.map((r) =>
        h(
          'tr',
          { class: onRowClick ? 'clickable' : null, onclick: onRowClick ? () => onRowClick(r) : null },
          columns.map((c) => {
            const v = c.value(r);
            return h('td', { class: c.class, title: typeof v === 'string' ? v : null }, v);
          }),
        ),
      ),
    ),
  );
}
