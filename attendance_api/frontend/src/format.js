// Display helpers: instants in the organisation's time zone (the one its schedules are written
// in, from GET /api/settings), statuses in words.
let timeZone; // undefined: the browser's own, until the settings arrive

export function setTimeZone(name) {
  try {
    new Intl.DateTimeFormat([], { timeZone: name });
    timeZone = name;
  } catch {
    timeZone = undefined; // an unknown zone name: keep the browser's
  }
}

export const time = (iso) =>
  iso ? new Date(iso).toLocaleTimeString([], { hour: '2-digit', minute: '2-digit', timeZone }) : '—';

export const clock = (date) =>
  date ? date.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit', second: '2-digit', timeZone }) : 'never';

export const duration = (seconds) => {
  const s = Math.max(0, Math.round(seconds || 0));
  const m = Math.floor(s / 60);
  return `${m}:${String(s % 60).padStart(2, '0')}`;
};

const WORDS = {
  present: 'On time', late: 'Late', absent: 'Absent', excused: 'Excused', pending: 'Not checked in',
  optional: 'Optional', active: 'Active', inactive: 'Inactive', locked: 'Locked',
  completed: 'Completed',
};
export const statusWord = (status) => WORDS[status] || status || '—';

const SESSION_WORDS = { pending: 'Not started', active: 'Open', locked: 'Locked', completed: 'Completed' };
export const sessionWord = (status) => SESSION_WORDS[status] || status || '—';
