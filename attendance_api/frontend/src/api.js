// The one HTTP client: same-origin JSON calls with the bearer token, and SWR's fetcher.
// SWR keys are the API paths themselves (e.g. '/api/reports/dashboard'), so the realtime
// provider can say exactly which keys an event affects.

export class ApiError extends Error {
  constructor(status, body) {
    super((body && body.message) || `Request failed (${status})`);
    this.status = status;
    this.body = body;
  }
}

let currentToken = null;
let onUnauthenticated = () => {};

export function setToken(token) { currentToken = token; }
export function setUnauthenticatedHandler(fn) { onUnauthenticated = fn; }

export async function api(path, { method = 'GET', body, token = currentToken } = {}) {
  const headers = { Accept: 'application/json' };
  if (token) headers.Authorization = `Bearer ${token}`;
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  const response = await fetch(path, {
    method, headers, body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await response.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch { data = { message: text }; }
  // a 401 to a request that carried a token: the session ended; the body says why
  if (response.status === 401 && token) onUnauthenticated(data);
  if (!response.ok) throw new ApiError(response.status, data);
  return data;
}

export const fetcher = (path) => api(path);

/** Download a CSV endpoint (it needs the bearer header, so a plain link cannot do it). */
export async function downloadCsv(path, filename) {
  const response = await fetch(path, {
    headers: { Authorization: `Bearer ${currentToken}`, Accept: 'text/csv' },
  });
  if (!response.ok) {
    const data = await response.json().catch(() => null);
    if (response.status === 401) onUnauthenticated(data);
    throw new ApiError(response.status, data);
  }
  const blob = await response.blob();
  const url = URL.createObjectURL(blob);
  const link = document.createElement('a');
  link.href = url;
  link.download = filename;
  document.body.appendChild(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 1000);
}
