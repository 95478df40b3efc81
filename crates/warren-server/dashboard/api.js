// The API client: the token (in session storage, never in a URL), JSON requests, and the API's
// wire errors turned into ApiError with their reason code and hint.

const TOKEN_KEY = "warren.token";

export function token() {
  return sessionStorage.getItem(TOKEN_KEY);
}

export function setToken(value) {
  if (value) sessionStorage.setItem(TOKEN_KEY, value);
  else sessionStorage.removeItem(TOKEN_KEY);
}

/** A failure as the API reports it (`{"error": {...}}`), or a connection that did not answer. */
export class ApiError extends Error {
  constructor({ status, reason_code, message, hint, retryable }) {
    super(message);
    this.status = status;
    this.reason_code = reason_code;
    this.hint = hint || null;
    this.retryable = !!retryable;
  }

  get unreachable() {
    return this.reason_code === "server_unreachable";
  }
}

function unreachable(e) {
  return new ApiError({
    status: 0,
    reason_code: "server_unreachable",
    message: `the server did not answer (${e.message || e})`,
    hint: "check that `warren serve` runs; the page retries on its own",
    retryable: true,
  });
}

// Listeners told whether the server answers (any answer) or not.
const reachability = new Set();
export function onReachability(listener) {
  reachability.add(listener);
  return () => reachability.delete(listener);
}
export function reached(ok) {
  for (const l of reachability) l(ok);
}

// Listeners told when the token is refused (401), so the page can ask for another.
const refusals = new Set();
export function onUnauthorized(listener) {
  refusals.add(listener);
}

export async function errorFrom(response) {
  let body = null;
  try {
    body = await response.json();
  } catch {
    // Not JSON: a proxy's page, say.
  }
  const e = body && body.error;
  if (e && e.reason_code) return new ApiError({ status: response.status, ...e });
  return new ApiError({
    status: response.status,
    reason_code: "internal",
    message: `the server answered ${response.status} ${response.statusText}`,
  });
}

/** Sends a request with the token; answers the parsed JSON (or the Response, when `raw`). */
export async function request(method, path, { body, signal, raw, headers, tokenOverride } = {}) {
  const h = { ...(headers || {}) };
  const t = tokenOverride ?? token();
  if (t) h.authorization = `Bearer ${t}`;
  if (body !== undefined) h["content-type"] = "application/json";
  let response;
  try {
    response = await fetch(path, {
      method,
      headers: h,
      body: body === undefined ? undefined : JSON.stringify(body),
      signal,
      cache: "no-store",
    });
  } catch (e) {
    if (e.name === "AbortError") throw e;
    reached(false);
    throw unreachable(e);
  }
  reached(true);
  if (!response.ok) {
    const error = await errorFrom(response);
    if (response.status === 401 && !tokenOverride) for (const l of refusals) l(error);
    throw error;
  }
  if (raw) return response;
  return response.json();
}

export const get = (path, opts) => request("GET", path, opts);
export const post = (path, body, opts) => request("POST", path, { ...opts, body });
export const del = (path, opts) => request("DELETE", path, opts);

/** `/v1/sandboxes/NAME/...` with the name escaped. */
export function sandboxPath(name, rest = "") {
  return `/v1/sandboxes/${encodeURIComponent(name)}${rest}`;
}

/** The JSON records of an NDJSON response body, one per line, as they arrive. */
export async function* ndjson(response) {
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += value;
    let nl;
    while ((nl = buffer.indexOf("\n")) >= 0) {
      const line = buffer.slice(0, nl).trim();
      buffer = buffer.slice(nl + 1);
      if (line) yield JSON.parse(line);
    }
  }
}
