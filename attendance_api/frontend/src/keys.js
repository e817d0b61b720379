// SWR keys (API paths), polling intervals and the WebSocket's liveness timeouts.
//
// Polling is the fallback that keeps data right when the WebSocket is down: attendance every
// 30 s, the dashboard every 60 s, lists and reports every 120 s. The intervals can be
// overridden from the page URL for tests and demos only:
//   /?poll_attendance=2&poll_dashboard=2&poll_lists=600   (seconds, 0 = never)
//
// A connection that goes silent (the server process stopped, a dead network path) sends no
// close: the client notices only when a ping it sends after `activity` seconds without
// traffic gets no pong within `pong` seconds. 30 + 10 s keeps the worst case well inside the
// server's 120 s activity timeout (the client library's own defaults, 120 + 30 s, do not).
// Overridable for tests the same way: /?activity_timeout=4&pong_timeout=2

const DEFAULTS = { attendance: 30, dashboard: 60, lists: 120 };
const LIVENESS = { activity: 30, pong: 10 };

function readSeconds(defaults, param) {
  const params = new URLSearchParams(window.location.search);
  const out = {};
  for (const [name, seconds] of Object.entries(defaults)) {
    const raw = params.get(param(name));
    const value = raw === null ? NaN : Number(raw);
    out[name] = (Number.isFinite(value) && value >= 0 ? value : seconds) * 1000;
  }
  return out;
}

export const POLL = readSeconds(DEFAULTS, (name) => `poll_${name}`);
/** { activity, pong } in milliseconds, for the WebSocket client's activityTimeout/pongTimeout. */
export const LIVENESS_MS = readSeconds(LIVENESS, (name) => `${name}_timeout`);

export const KEYS = {
  employeeDashboard: '/api/reports/employee-dashboard',
  breakStatus: '/api/break/status',
  notifications: '/api/notifications',
  myRecords: '/api/attendance-records/my-records?per_page=10',
  dashboard: '/api/reports/dashboard',
  todayRecords: (date) => `/api/attendance-records?date=${date}&per_page=200`,
  sessions: '/api/attendance-sessions?per_page=20',
  employees: '/api/employees?per_page=200',
  daily: (date) => `/api/reports/daily/${date}?per_page=500`,
  personal: '/api/reports/personal?per_page=50',
};

export const startsWith = (...prefixes) => (key) =>
  typeof key === 'string' && prefixes.some((p) => key.startsWith(p));
