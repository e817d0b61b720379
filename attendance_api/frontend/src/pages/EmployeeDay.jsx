// An employee's day: the current session, check-in, breaks with the remaining allowance,
// check-out, today's status, and notifications.
import useSWR from 'swr';
import { KEYS, POLL, startsWith } from '../keys.js';
import { duration, sessionWord, statusWord, time } from '../format.js';
import { useAction } from '../components/useAction.js';
import Feedback from '../components/Feedback.jsx';

const mine = startsWith(KEYS.employeeDashboard, KEYS.breakStatus, '/api/attendance-records/my-records');

export default function EmployeeDay({ user }) {
  const dash = useSWR(KEYS.employeeDashboard, { refreshInterval: POLL.attendance });
  const brk = useSWR(KEYS.breakStatus, { refreshInterval: POLL.attendance });
  const { run, busy, message } = useAction();
  const d = dash.data;
  const b = brk.data;
  const session = d?.active_session;
  const record = d?.today_record;
  const checkedIn = Boolean(record?.time_in);
  const checkedOut = Boolean(record?.time_out);

  return (
    <div className="page">
      <h1>Good day, {user.first_name}</h1>
      {dash.error && <p className="feedback error" role="alert">Could not load your day: {dash.error.message}</p>}
      <div className="grid two">
        <section className="card" aria-labelledby="session-title">
          <h2 id="session-title">Current session</h2>
          {!d && <p aria-busy="true">Loading…</p>}
          {d && !session && <p>No session today{d.is_weekend ? ' (weekend)' : ''}.</p>}
          {session && (
            <dl className="facts">
              <dt>Shift</dt><dd>{session.schedule?.name} {session.schedule?.time_in?.slice(0, 5)}–{session.schedule?.time_out?.slice(0, 5)}</dd>
              <dt>Date</dt><dd>{session.date}</dd>
              <dt>Session</dt><dd>{sessionWord(session.status)}</dd>
            </dl>
          )}
          {d && !checkedIn && (
            <>
              <p className="muted" id="checkin-hint">{d.check_in_message}</p>
              <button type="button" disabled={busy || !d.can_confirm || !session} aria-describedby="checkin-hint"
                      onClick={() => run(`/api/attendance-records/confirm/${session.id}`, { done: 'Checked in.', affects: mine })}>
                Check in
              </button>
            </>
          )}
          {checkedIn && !checkedOut && (
            <button type="button" className="secondary" disabled={busy}
                    onClick={() => run(`/api/attendance-records/${record.id}/check-out`, { done: 'Checked out.', affects: mine })}>
              Check out
            </button>
          )}
          <Feedback message={message} />
        </section>

        <section className="card" aria-labelledby="today-title">
          <h2 id="today-title">Today’s status</h2>
          {!record && <p>Not checked in yet.</p>}
          {record && (
            <>
              <p className="badges">
                <span className={`badge badge-${record.status}`}>{statusWord(record.status)}{record.status === 'late' && record.minutes_late ? ` (${record.minutes_late} min)` : ''}</span>
                {record.left_early && <span className="badge badge-left_early">Left early</span>}
              </p>
              <dl className="facts">
                <dt>Checked in</dt><dd>{time(record.time_in)}</dd>
                <dt>Checked out</dt><dd>{time(record.time_out)}</dd>
                <dt>Hours worked</dt><dd>{record.hours_worked ?? '—'}</dd>
              </dl>
            </>
          )}
        </section>

        <section className="card" aria-labelledby="break-title">
          <h2 id="break-title">Breaks</h2>
          {!b && <p aria-busy="true">Loading…</p>}
          {b && (
            <>
              <p>{b.break_message}</p>
              <p><strong>Remaining allowance:</strong> <span data-testid="break-remaining">{duration(b.break_remaining_seconds)}</span> of {b.break_window?.max_minutes} min</p>
              {b.can_end_break ? (
                <button type="button" disabled={busy}
                        onClick={() => run('/api/break/end', { done: 'Break ended.', affects: mine })}>End break</button>
              ) : (
                <button type="button" disabled={busy || !b.can_start_break}
                        onClick={() => run('/api/break/start', { body: { type: 'Regular' }, done: 'Break started.', affects: mine })}>Start break</button>
              )}
            </>
          )}
        </section>

        <Notifications />
      </div>
    </div>
  );
}

function Notifications() {
  const { data, error } = useSWR(KEYS.notifications, { refreshInterval: POLL.lists });
  const { run, busy } = useAction();
  const list = Array.isArray(data) ? data : data?.data || [];
  const unread = list.filter((n) => !n.read_at).length;
  return (
    <section className="card" aria-labelledby="notes-title">
      <h2 id="notes-title">Notifications {unread > 0 && <span className="count" aria-label={`${unread} unread`}>{unread}</span>}</h2>
      {error && <p className="muted">Notifications are unavailable right now.</p>}
      {list.length === 0 && !error && <p className="muted">Nothing new.</p>}
      <ul className="notes">
        {list.slice(0, 10).map((n) => (
          <li key={n.id} className={n.read_at ? 'read' : 'unread'}>
            <span>{n.data?.message || n.data?.title || n.type}</span>
            <time dateTime={n.created_at}>{time(n.created_at)}</time>
          </li>
        ))}
      </ul>
      {unread > 0 && (
        <button type="button" className="secondary" disabled={busy}
                onClick={() => run('/api/notifications/read-all', { done: 'Marked as read.', affects: startsWith(KEYS.notifications) })}>
          Mark all read
        </button>
      )}
    </section>
  );
}
