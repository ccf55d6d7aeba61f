// The /ws/subscriber client: sync with a Gremlin filter, then live events.
//
// Reconnects after a drop with exponential backoff: 500 ms doubling up to 10 s, with
// "equal jitter" (half the delay fixed, half random) so many browsers do not come back
// in lockstep. One socket and at most one pending timer at any time, so a flapping
// server never causes a reconnect storm. The attempt counter resets only once a
// SyncReply has been received, not merely on open.

export const BACKOFF_MIN_MS = 500;
export const BACKOFF_MAX_MS = 10000;

const GRAPH_EVENTS = new Set(['NodeAdded', 'NodeUpdated', 'NodeDeleted', 'EdgeAdded', 'EdgeUpdated', 'EdgeDeleted']);

/** Delay before reconnect attempt `n` (0-based), jittered. */
export function backoffDelay(n, random = Math.random) {
  const base = Math.min(BACKOFF_MAX_MS, BACKOFF_MIN_MS * 2 ** Math.min(n, 16));
  return Math.round(base / 2 + random() * (base / 2));
}

function uuid() {
  if (crypto.randomUUID) return crypto.randomUUID();
  return 'xxxxxxxx-xxxx-4xxx-yxxx-xxxxxxxxxxxx'.replace(/[xy]/g, (c) => {
    const r = (Math.random() * 16) | 0;
    return (c === 'x' ? r : (r & 0x3) | 0x8).toString(16);
  });
}

export class Subscriber {
  /**
   * handlers: onSync({Nodes, Edges}), onEvent(type, obj), onState(state, info),
   * onFilterError(message), onMessage(msg) for other namespaces.
   */
  constructor(handlers) {
    this.h = handlers;
    this.filter = '';
    this.hostId = `webui-${uuid().slice(0, 8)}`;
    this.ws = null;
    this.timer = null;
    this.attempt = 0;
    this.state = 'idle';
    this.pendingSync = null;
    this.nextRetryAt = 0;
    this.connects = 0;
  }

  url() {
    const proto = location.protocol === 'https:' ? 'wss:' : 'ws:';
    const q = new URLSearchParams({ 'x-client-type': 'webui', 'x-host-id': this.hostId });
    return `${proto}//${location.host}/ws/subscriber?${q}`;
  }

  start() {
    this.connect();
  }

  setState(state, info = {}) {
    this.state = state;
    this.h.onState?.(state, info);
  }

  connect() {
    clearTimeout(this.timer);
    this.timer = null;
    if (this.ws) return;
    this.connects++;
    this.setState(this.attempt === 0 && this.connects === 1 ? 'connecting' : 'reconnecting', { attempt: this.attempt });
    let ws;
    try {
      ws = new WebSocket(this.url());
    } catch (e) {
      this.scheduleReconnect(`cannot open WebSocket: ${e.message}`);
      return;
    }
    this.ws = ws;
    ws.onopen = () => this.sync();
    ws.onmessage = (ev) => this.onMessage(ev.data);
    ws.onclose = (ev) => {
      if (this.ws !== ws) return;
      this.ws = null;
      this.pendingSync = null;
      this.scheduleReconnect(ev.reason || `connection closed (code ${ev.code})`);
    };
    // Errors are always followed by close; the close handler reconnects.
    ws.onerror = () => {};
  }

  scheduleReconnect(reason) {
    if (this.timer) return;
    const delay = backoffDelay(this.attempt);
    this.attempt++;
    this.nextRetryAt = Date.now() + delay;
    this.setState('disconnected', { reason, delay, attempt: this.attempt });
    this.timer = setTimeout(() => {
      this.timer = null;
      this.connect();
    }, delay);
  }

  /** Closes the socket and stops reconnecting (logged out); start() begins again. */
  stop() {
    clearTimeout(this.timer);
    this.timer = null;
    const ws = this.ws;
    this.ws = null;
    this.pendingSync = null;
    this.attempt = 0;
    this.connects = 0;
    if (ws) ws.close();
    this.setState('idle', {});
  }

  /** Reconnect now instead of waiting for the timer (user action). */
  retryNow() {
    if (this.ws) return;
    this.connect();
  }

  /** Changes the subscription filter: '' means the whole graph. */
  setFilter(filter) {
    this.filter = filter;
    if (this.ws && this.ws.readyState === WebSocket.OPEN) this.sync();
  }

  sync() {
    const id = uuid();
    this.pendingSync = id;
    this.ws.send(
      JSON.stringify({ Namespace: 'Graph', Type: 'SyncRequest', UUID: id, Obj: { GremlinFilter: this.filter } }),
    );
  }

  onMessage(data) {
    let msg;
    try {
      msg = JSON.parse(data);
    } catch (e) {
      console.warn('topotap: unparsable WebSocket message', e);
      return;
    }
    if (msg.Namespace !== 'Graph') {
      this.h.onMessage?.(msg);
      return;
    }
    if (msg.Type === 'SyncReply') {
      // A reply to an older request (the filter changed since) is superseded.
      if (this.pendingSync && msg.UUID && msg.UUID !== this.pendingSync) return;
      this.pendingSync = null;
      if (msg.Status && msg.Status !== 200) {
        this.h.onFilterError?.(typeof msg.Obj === 'string' ? msg.Obj : JSON.stringify(msg.Obj));
        if (this.state !== 'live') {
          this.attempt = 0;
          this.setState('live', {});
        }
        return;
      }
      this.attempt = 0;
      this.h.onSync?.(msg.Obj || { Nodes: [], Edges: [] });
      this.setState('live', {});
      return;
    }
    if (this.pendingSync) return; // events of the previous filter
    if (GRAPH_EVENTS.has(msg.Type)) this.h.onEvent?.(msg.Type, msg.Obj);
  }
}
