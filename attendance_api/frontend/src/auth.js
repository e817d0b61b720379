// The signed-in user and token, kept in localStorage so a reload stays signed in.
const KEY = 'attendance_session';

export function loadSession() {
  try {
    const raw = localStorage.getItem(KEY);
    const parsed = raw ? JSON.parse(raw) : null;
    return parsed && parsed.token && parsed.user ? parsed : null;
  } catch {
    return null;
  }
}

export function saveSession(session) {
  if (session) localStorage.setItem(KEY, JSON.stringify(session));
  else localStorage.removeItem(KEY);
}
