// The REST client: fetch with the token, JSON errors as readable messages, 401 -> back to login,
// and a live-events helper (SSE on /api/v1/events, falling back to polling when it is missing).

const KEY = "lxcloud.token";

export const token = {
  get: () => sessionStorage.getItem(KEY),
  set: (t) => sessionStorage.setItem(KEY, t),
  clear: () => sessionStorage.removeItem(KEY),
};

export class ApiError extends Error {
  constructor(status, code, message, details) {
    super(message);
    this.status = status;
    this.code = code;
    this.details = details || {};
  }
}

let onUnauthorized = () => {};
export function setUnauthorizedHandler(fn) {
  onUnauthorized = fn;
}

async function errorOf(resp) {
  let body = null;
  try {
    body = await resp.json();
  } catch {
    /* not JSON */
  }
  if (body && typeof body.error === "string") {
    return new ApiError(resp.status, body.code || "error", body.error, body.details);
  }
  if (body && body.detail) {
    const d = typeof body.detail === "string" ? body.detail : JSON.stringify(body.detail);
    return new ApiError(resp.status, "error", d);
  }
  return new ApiError(resp.status, "http_error", `${resp.status} ${resp.statusText || "error"}`);
}

/** request("GET", "/api/v1/instances") -> parsed JSON (or text for text/plain answers). */
export async function request(method, path, { body, query, tok, signal, raw } = {}) {
  const t = tok ?? token.get();
  let url = path;
  if (query) {
    const q = new URLSearchParams();
    for (const [k, v] of Object.entries(query)) if (v !== undefined && v !== null && v !== "") q.set(k, v);
    const s = q.toString();
    if (s) url += (url.includes("?") ? "&" : "?") + s;
  }
  const headers = { Accept: "application/json" };
  if (t) headers.Authorization = `Bearer ${t}`;
  let payload;
  if (body instanceof Blob || body instanceof ArrayBuffer) {
    payload = body;
    headers["Content-Type"] = "application/octet-stream";
  } else if (body !== undefined) {
    payload = JSON.stringify(body);
    headers["Content-Type"] = "application/json";
  }
  let resp;
  try {
    resp = await fetch(url, { method, headers, body: payload, signal });
  } catch (e) {
    if (e.name === "AbortError") throw e;
    throw new ApiError(0, "network", `cannot reach the cloud: ${e.message}`);
  }
  if (!resp.ok) {
    const err = await errorOf(resp);
    if (resp.status === 401 && tok === undefined) onUnauthorized(err);
    throw err;
  }
  if (raw) return resp;
  if (resp.status === 204) return null;
  const type = resp.headers.get("content-type") || "";
  return type.includes("json") ? resp.json() : resp.text();
}

export const api = {
  get: (path, opts) => request("GET", path, opts),
  post: (path, body, opts) => request("POST", path, { ...opts, body }),
  put: (path, body, opts) => request("PUT", path, { ...opts, body }),
  patch: (path, body, opts) => request("PATCH", path, { ...opts, body }),
  del: (path, opts) => request("DELETE", path, opts),
};

/** The websocket URL of an API path, the token in the query (a browser cannot set headers). */
export function wsUrl(path, query = {}) {
  const q = new URLSearchParams({ ...query, token: token.get() || "" });
  const proto = location.protocol === "https:" ? "wss:" : "ws:";
  return `${proto}//${location.host}${path}?${q}`;
}

/**
 * Live events: calls onEvent(event) for each event matching the filters
 * ({project, instance, type}); returns a function that stops. Uses SSE on /api/v1/events; if the
 * endpoint is missing (404) it polls every `pollMs` and calls onEvent(null) ("something may have
 * changed") so pages refetch.
 */
export function events(filters, onEvent, { pollMs = 5000 } = {}) {
  let stopped = false;
  let source = null;
  let timer = null;
  let retry = 1000;
  const poll = () => {
    if (stopped) return;
    onEvent(null);
    timer = setTimeout(poll, pollMs);
  };
  const open = async () => {
    if (stopped) return;
    // a cheap probe: an EventSource hides the status of a failed connection
    try {
      await request("GET", "/api/v1/events", { query: { ...filters, limit: 1 } });
    } catch (e) {
      if (e.status === 404) {
        timer = setTimeout(poll, pollMs);
        return;
      }
      if (e.status === 401) return;
      timer = setTimeout(open, retry);
      retry = Math.min(retry * 2, 30000);
      return;
    }
    const q = new URLSearchParams({ follow: "true", token: token.get() || "" });
    for (const [k, v] of Object.entries(filters || {})) if (v) q.set(k, v);
    source = new EventSource(`/api/v1/events?${q}`);
    const handle = (m) => {
      retry = 1000;
      try {
        onEvent(JSON.parse(m.data));
      } catch {
        /* a malformed event is skipped */
      }
    };
    source.onmessage = handle;
    // named events (event: TYPE) do not reach onmessage: listen to the known prefixes' types
    for (const t of EVENT_TYPES) source.addEventListener(t, handle);
    source.onerror = () => {
      // EventSource reconnects by itself (with Last-Event-ID) unless the server closed it for good
      if (source && source.readyState === EventSource.CLOSED) {
        source = null;
        timer = setTimeout(open, retry);
        retry = Math.min(retry * 2, 30000);
      }
    };
  };
  open();
  return () => {
    stopped = true;
    clearTimeout(timer);
    if (source) source.close();
  };
}

export const EVENT_TYPES = [
  "instance.created", "instance.state", "instance.deleted", "operation.started",
  "operation.finished", "instance.oom", "instance.limit", "reconciler.corrected",
];

/** Waits for an operation to end, calling onProgress(op) on each look (progress, message). */
export async function waitOperation(id, onProgress, { signal, waitSeconds = 1 } = {}) {
  // the server holds each look up to `wait` seconds and answers at once when the operation ends
  for (;;) {
    const op = await request("GET", `/api/v1/operations/${encodeURIComponent(id)}`,
      { signal, query: { wait: waitSeconds } });
    if (onProgress) onProgress(op);
    if (isDone(op)) return op;
  }
}

export const isDone = (op) => !!op && !["pending", "running", "queued"].includes(op.status);
