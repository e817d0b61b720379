// The application shell: who is signed in, the SWR cache (one per signed-in session, dropped
// on sign-out), the realtime provider, the header with the connection status, and the pages.
import { useCallback, useEffect, useMemo, useState } from 'react';
import { SWRConfig } from 'swr';
import { api, fetcher, setToken, setUnauthenticatedHandler } from './api.js';
import { loadSession, saveSession } from './auth.js';
import { markUpdated, resetUpdated } from './lastUpdate.js';
import { setTimeFormat, setTimeZone } from './format.js';
import { RealtimeProvider } from './realtime.jsx';
import { navigate, usePath } from './router.js';
import ConnectionStatus from './components/ConnectionStatus.jsx';
import SignIn from './pages/SignIn.jsx';
import EmployeeDay from './pages/EmployeeDay.jsx';
import AdminDashboard from './pages/AdminDashboard.jsx';
import Reports from './pages/Reports.jsx';

const home = (user) => (user.role === 'admin' ? '/admin' : '/employee');
// the pages each role has; any other path redirects to the role's home before anything renders
const pagesOf = (user) => ['/reports', home(user)];

export default function App() {
  const [session, setSession] = useState(() => {
    const saved = loadSession();
    setToken(saved ? saved.token : null);
    return saved;
  });
  const path = usePath();
  const [, setZoneReady] = useState(false);
  // why the last session ended, when the user did not sign out themselves
  const [notice, setNotice] = useState(null);

  useEffect(() => {
    // public settings: the organisation's time zone, for showing times as its schedules do
    api('/api/settings', { token: null })
      .then((settings) => {
        setTimeZone(settings.timezone);
        setTimeFormat(settings.time_format);
        setZoneReady(true);
      })
      .catch(() => {});
  }, []);

  const signIn = useCallback((next) => {
    setNotice(null);
    saveSession(next);
    setToken(next.token);
    setSession(next);
    navigate(home(next.user), { replace: true });
  }, []);

  const signOut = useCallback(async (callApi = true, why = null) => {
    const token = session?.token;
    setNotice(why);
    saveSession(null);
    setToken(null);
    setSession(null);
    resetUpdated();
    navigate('/', { replace: true });
    if (callApi && token) {
      try { await api('/api/auth/logout', { method: 'POST', token }); } catch { /* already gone */ }
    }
  }, [session]);

  useEffect(() => {
    setUnauthenticatedHandler((body) => signOut(false, (body && body.message) || 'Your session has ended. Please sign in again.'));
  }, [signOut]);
  const accountEnded = useCallback((why) => signOut(false, why), [signOut]);

  const routed = session && pagesOf(session.user).includes(path);
  useEffect(() => {
    if (!session && path !== '/') navigate('/', { replace: true });
    if (session && !routed) navigate(home(session.user), { replace: true });
  }, [session, path, routed]);

  // One cache per signed-in session: signing out (or in as someone else) starts empty.
  const swr = useMemo(() => ({
    fetcher,
    provider: () => new Map(),
    revalidateOnFocus: false, // realtime + reconnect revalidation + polling cover it
    dedupingInterval: 500,
    onSuccess: markUpdated,
  }), [session?.token]); // eslint-disable-line react-hooks/exhaustive-deps

  if (!session) {
    return (
      <main id="main" className="signin-page">
        <SignIn onSignedIn={signIn} notice={notice} />
      </main>
    );
  }
  // not one of the role's pages (e.g. '/' just after signing in): render nothing, so no other
  // page mounts and fetches, until the redirect above lands
  if (!routed) return null;
  const { user, token } = session;
  let page;
  if (path === '/reports') page = <Reports user={user} />;
  else if (user.role === 'admin') page = <AdminDashboard />;
  else page = <EmployeeDay user={user} />;

  return (
    <SWRConfig key={token} value={swr}>
      <RealtimeProvider user={user} token={token} onAccountEnded={accountEnded}>
        <a className="skip" href="#main">Skip to content</a>
        <header className="topbar">
          <span className="brand">Attendance</span>
          <nav aria-label="Main">
            <ul>
              <li><NavLink to={home(user)} path={path}>{user.role === 'admin' ? 'Dashboard' : 'My day'}</NavLink></li>
              <li><NavLink to="/reports" path={path}>Reports</NavLink></li>
            </ul>
          </nav>
          <ConnectionStatus />
          <span className="who" aria-label="Signed in as">{user.first_name} {user.last_name}</span>
          <button type="button" className="secondary" onClick={() => signOut(true)}>Sign out</button>
        </header>
        <main id="main" tabIndex={-1}>{page}</main>
      </RealtimeProvider>
    </SWRConfig>
  );
}

function NavLink({ to, path, children }) {
  return (
    <a
      href={to}
      aria-current={path === to ? 'page' : undefined}
      onClick={(e) => { e.preventDefault(); navigate(to); }}
    >
      {children}
    </a>
  );
}
