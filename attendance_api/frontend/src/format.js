// Display helpers: instants in the organisation's time zone (the one its schedules are written
// in) and its time format (time_format "24h" | "12h"), both from GET /api/settings, so every
// time on every page reads alike whatever the browser's locale; statuses in words.
let timeZone; // undefined: the browser's own, until the settings arrive
let hour12 = false; // the setting's default is 24h

export function setTimeFormat(name) {
  hour12 = name === '12h';
}

export function setTimeZone(name) {
  try {
    new Intl.DateTimeFormat([], { timeZone: name });
    timeZone = name;
  } catch {
    timeZone = undefined; // an unknown zone name: keep the browser's
  }
}

// 'en-GB' / 'en-US' with an explicit hourCycle: "18:05" or "6:05 PM", never the browser's mix
const options = (extra) => ({
  hour: hour12 ? 'numeric' : '2-digit', minute: '2-digit', hourCycle: hour12 ? 'h12' : 'h23', timeZone, ...extra,
});
const locale = () => (hour12 ? 'en-US' : 'en-GB');

/** An ISO instant as a wall-clock time of the organisation. */
export const time = (iso) => (iso ? new Date(iso).toLocaleTimeString(locale(), options()) : '—');

/** A wall-clock "HH:MM[:SS]" (as schedules and the daily report give it) in the same format. */
export const wallTime = (hhmm) => {
  const match = /^(\d{1,2}):(\d{2})/.exec(hhmm || '');
  if (!match) return hhmm || '—';
  const [h, m] = [Number(match[1]), match[2]];
  if (!hour12) return `${String(h).padStart(2, '0')}:${m}`;
  return `${h % 12 || 12}:${m} ${h < 12 ? 'AM' : 'PM'}`;
};

// the organisation's calendar date of an instant, as YYYY-MM-DD ('en-CA' writes dates so)
const orgDate = (date) => date.toLocaleDateString('en-CA', { timeZone });

/** When a user was last present: the time if it was today (organisation time), otherwise
 * the day and the time ("28 Nov, 18:05"). */
export const lastSeen = (iso, now = new Date()) => {
  if (!iso) return null;
  const date = new Date(iso);
  if (orgDate(date) === orgDate(now)) return time(iso);
  const day = date.toLocaleDateString(locale(), { day: 'numeric', month: 'short', timeZone });
  return `${day}, ${time(iso)}`;
};

export const clock = (date) =>
  date ? date.toLocaleTimeString(locale(), options({ second: '2-digit' })) : 'never';

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
