// Display helpers: times in the browser's locale, statuses in words.
export const time = (iso) =>
  iso ? new Date(iso).toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' }) : '—';

export const clock = (date) =>
  date ? date.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit', second: '2-digit' }) : 'never';

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
