// The realtime provider: one Echo connection (broadcaster 'reverb') per signed-in user,
// configured from GET /api/realtime/config and authorised at /broadcasting/auth with the bearer
// token. It subscribes by role and revalidates exactly the SWR keys each event affects; it
// exposes the connection status for the indicator. What an event could have changed before
// its channel's subscription succeeded is never delivered, so each subscription, when it
// succeeds (the first time and after every reconnect), revalidates the keys its events affect,
// and a connection that comes back revalidates everything.
// An employee.updated on the user's own channel that says the account is no longer active
// ends the session at once (`onAccountEnded`), instead of at the next request.
// Every signed-in page also joins the presence channel `presence-online` (Echo's join('online'),
// authorised at /broadcasting/auth as the user): that membership is how the API learns who is
// online (pusherd's member_added / member_removed webhooks). Signing out leaves it with the
// other channels; the admin dashboard shows the result through employee.updated and
// dashboard.updated, not through this channel's own member list (the API's view is the one
// with the flap-suppression grace applied, and the one polling sees).
import { createContext, useCallback, useContext, useEffect, useRef, useState } from 'react';
import { useSWRConfig } from 'swr';
import Echo from 'laravel-echo';
import Pusher from 'pusher-js';
import { api } from './api.js';
import { KEYS, LIVENESS_MS, startsWith } from './keys.js';
import { markUpdated } from './lastUpdate.js';

/** The presence channel every signed-in page joins (`presence-online` on the wire). */
const PRESENCE = 'online';

const RealtimeContext = createContext({ status: 'off', refreshAll: () => {} });

export const useRealtime = () => useContext(RealtimeContext);

// Echo's connectionStatus() is connected | connecting | failed | disconnected; the indicator
// speaks of connected | connecting | unavailable.
const STATUS = { connected: 'connected', connecting: 'connecting', failed: 'unavailable' };

/** Which cached keys each event makes stale (by channel kind and event name). */
function subscriptions(user) {
  const adminLists = startsWith(
    '/api/attendance-records?', '/api/attendance-sessions', '/api/reports/daily/', '/api/employees?',
  );
  const own = startsWith(
    KEYS.employeeDashboard, KEYS.breakStatus, '/api/attendance-records/my-records',
    '/api/reports/personal',
  );
  const list = [
    { channel: 'attendance', event: 'attendance.updated', keys: adminLists },
    { channel: 'attendance', event: 'break.updated', keys: startsWith('/api/attendance-records?') },
    {
      channel: 'sessions', event: 'session.updated',
      keys: startsWith('/api/attendance-sessions', KEYS.employeeDashboard),
    },
    { channel: `private-user.${user.id}`, event: 'attendance.updated', keys: own },
    {
      channel: `private-user.${user.id}`, event: 'break.updated',
      keys: startsWith(KEYS.breakStatus, KEYS.employeeDashboard),
    },
    {
      channel: `private-user.${user.id}`, event: 'notification.created',
      keys: startsWith(KEYS.notifications),
    },
    { channel: `private-user.${user.id}`, event: 'employee.updated', account: true },
  ];
  if (user.role === 'admin') {
    // The event carries the whole dashboard object: it becomes the cached value, no fetch.
    list.push({ channel: 'private-admin.dashboard', event: 'dashboard.updated', stats: true });
    // A presence change (who is online) comes with its own dashboard.updated: only the list.
    const employees = startsWith('/api/employees?');
    const employeesAndStats = startsWith('/api/employees?', KEYS.dashboard);
    list.push({
      channel: 'private-admin.employees', event: 'employee.updated',
      keys: (payload) => (payload?.action === 'presence' ? employees : employeesAndStats),
      byPayload: true,
    });
  }
  return list;
}

export function RealtimeProvider({ user, token, onAccountEnded, children }) {
  const { mutate } = useSWRConfig();
  const [status, setStatus] = useState('connecting');
  const echoRef = useRef(null);

  const refreshAll = useCallback(() => mutate(() => true), [mutate]);
  const accountEnded = useRef(onAccountEnded);
  accountEnded.current = onAccountEnded;

  useEffect(() => {
    let cancelled = false;
    let unbind = () => {};
    let lost = false;
    (async () => {
      let config;
      try {
        config = await api('/api/realtime/config');
      } catch {
        config = { enabled: false };
      }
      if (cancelled) return;
      if (!config.enabled) {
        setStatus('off');
        return;
      }
      const echo = new Echo({
        broadcaster: 'reverb',
        Pusher,
        key: config.key,
        wsHost: config.wsHost,
        wsPort: config.wsPort,
        wssPort: config.wsPort,
        forceTLS: config.scheme === 'https',
        enabledTransports: ['ws', 'wss'],
        activityTimeout: LIVENESS_MS.activity,
        pongTimeout: LIVENESS_MS.pong,
        authEndpoint: config.authEndpoint,
        bearerToken: token,
        // a fresh object: Echo writes the Authorization header into it
        auth: { headers: { Accept: 'application/json' } },
      });
      echoRef.current = echo;
      unbind = echo.connector.onConnectionChange((raw) => {
        const next = STATUS[raw] || 'connecting';
        setStatus(next);
        if (next !== 'connected') {
          lost = true;
        } else if (lost) {
          lost = false;
          mutate(() => true);
        }
      });
      const watched = new Set();
      for (const sub of subscriptions(user)) {
        const isPrivate = sub.channel.startsWith('private-');
        const channel = isPrivate
          ? echo.private(sub.channel.slice('private-'.length))
          : echo.channel(sub.channel);
        channel.listen(`.${sub.event}`, (payload) => {
          if (sub.account) {
            if (payload && payload.id === user.id && payload.is_active === false) {
              accountEnded.current?.('Your account has been deactivated.');
            }
            return;
          }
          markUpdated();
          if (sub.stats) {
            if (payload && payload.stats) mutate(KEYS.dashboard, payload.stats, { revalidate: false });
            return;
          }
          mutate(sub.byPayload ? sub.keys(payload) : sub.keys);
        });
        if (!sub.account) {
          channel.subscribed(() => {
            if (cancelled) return;
            mutate(sub.stats ? KEYS.dashboard : sub.byPayload ? sub.keys({}) : sub.keys);
          });
        }
        if (isPrivate && !watched.has(sub.channel)) {
          watched.add(sub.channel);
          // A refused channel is not the user's problem: polling still covers the data.
          channel.error((err) => console.warn('realtime: subscription refused', sub.channel, err?.status));
        }
      }
      // Being here is what counts: nothing to listen to on the presence channel itself.
      echo.join(PRESENCE).error((err) => console.warn('realtime: presence refused', err?.status));
    })();
    return () => {
      cancelled = true;
      unbind();
      const echo = echoRef.current;
      echoRef.current = null;
      if (echo) {
        echo.leaveAllChannels();
        // pusher-js sends on the next tick: close after the unsubscribes have gone out
        setTimeout(() => echo.disconnect(), 0);
      }
    };
  }, [token, user, mutate]);

  return (
    <RealtimeContext.Provider value={{ status, refreshAll }}>{children}</RealtimeContext.Provider>
  );
}
