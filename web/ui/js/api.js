// HTTP calls to the Skydive-compatible API. Errors are thrown as ApiError with the
// server's one-line reason; a 404 on a resource endpoint means "not on this server".

export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }

  /** {line, column} of the error in the query, or null. */
  get position() {
    // Parse errors say "line L, column C: ..."; evaluation errors "... at column C: ...".
    const m = /line (\d+), column (\d+)/.exec(this.message);
    if (m) return { line: Number(m[1]), column: Number(m[2]) };
    const c = /\bcolumn (\d+)/.exec(this.message);
    return c ? { line: 1, column: Number(c[1]) } : null;
  }

  get notAvailable() {
    return this.status === 404;
  }
}

export async function request(method, path, body, headers = {}) {
  return (await exchange(method, path, body, headers)).data;
}

/** As request(), with the answer's headers: {data, headers}. */
export async function exchange(method, path, body, headers = {}) {
  let resp;
  try {
    resp = await fetch(path, {
      method,
      headers: { Accept: 'application/json', ...(body !== undefined ? { 'Content-Type': 'application/json' } : {}), ...headers },
      body: body !== undefined ? JSON.stringify(body) : undefined,
      cache: 'no-store',
    });
  } catch (e) {
    throw new ApiError(0, `cannot reach the server: ${e.message}`);
  }
  const text = await resp.text();
  if (resp.status === 401) {
    // Not logged in (any more): main.js shows the login form.
    window.dispatchEvent(new CustomEvent('topotap:unauthorized', { detail: text.trim() }));
  }
  if (!resp.ok) {
    throw new ApiError(resp.status, text.trim() || `${resp.status} ${resp.statusText}`);
  }
  if (!text) return { data: null, headers: resp.headers };
  try {
    return { data: JSON.parse(text), headers: resp.headers };
  } catch (e) {
    throw new ApiError(resp.status, `invalid JSON from server: ${e.message}`);
  }
}

/** POST /api/topology: the query's JSON result (null for an empty query). */
export function gremlin(query) {
  return request('POST', '/api/topology', { GremlinQuery: query });
}

/**
 * POST /api/topology of a query about the past: {result, note}, `note` the server's
 * X-Topotap-History header (set when the time is before what the history keeps).
 */
export async function gremlinPast(query) {
  const { data, headers } = await exchange('POST', '/api/topology', { GremlinQuery: query });
  return { result: data, note: headers.get('X-Topotap-History') || '' };
}

export const isNode = (v) => v && typeof v === 'object' && typeof v.ID === 'string' && v.Metadata && !('Parent' in v);
export const isEdge = (v) => v && typeof v === 'object' && typeof v.ID === 'string' && 'Parent' in v && 'Child' in v;
export const isGraph = (v) => v && typeof v === 'object' && Array.isArray(v.Nodes) && Array.isArray(v.Edges);

/** Every node ID found in a query result (node lists, graphs, paths). */
export function nodeIdsOf(result) {
  const ids = new Set();
  const walk = (v, depth) => {
    if (depth > 4 || v === null || typeof v !== 'object') return;
    if (isNode(v)) ids.add(v.ID);
    else if (isGraph(v)) v.Nodes.forEach((n) => ids.add(n.ID));
    else if (Array.isArray(v)) v.forEach((x) => walk(x, depth + 1));
  };
  walk(result, 0);
  return ids;
}
