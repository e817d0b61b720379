// The admin dashboard: the stats of dashboard.updated, today's attendance, who is on break,
// sessions with lock/unlock, employees with activate/deactivate and who of them is online
// now (from pusherd's presence webhooks, pushed as employee.updated / dashboard.updated), the
// admin's notifications.
import useSWR from 'swr';
import { KEYS, POLL, startsWith } from '../keys.js';
import { lastSeen, sessionWord, statusWord, time, wallTime } from '../format.js';
import { useAction } from '../components/useAction.js';
import ActionButton from '../components/ActionButton.jsx';
import Feedback from '../components/Feedback.jsx';
import Notifications from '../components/Notifications.jsx';

// three to a row on wide screens: who there is (and is online now), then today's arrivals
const STATS = [
  ['total_employees', 'Employees'],
  ['online_now', 'Online now'],
  ['active_sessions_count', 'Active sessions'],
  ['present_today', 'On time'],
  ['late_today', 'Late'],
  ['left_early_today', 'Left early'],
  ['absent_today', 'Absent'],
  ['pending_today', 'Not in yet'],
  ['attendance_rate', 'Attendance rate', (v) => `${v}%`],
];

export default function AdminDashboard() {
  const { data: stats, error } = useSWR(KEYS.dashboard, { refreshInterval: POLL.dashboard });
  const date = stats?.attendance_date;
  return (
    <div className="page">
      <h1>Dashboard{stats ? ` · ${stats.day_name} ${date}` : ''}</h1>
      {error && <p className="feedback error" role="alert">Could not load the dashboard: {error.message}</p>}
      <section aria-labelledby="stats-title">
        <h2 id="stats-title" className="visually-hidden">Today in numbers</h2>
        <dl className="stats" data-testid="stats">
          {STATS.map(([key, label, fmt]) => (
            <div key={key} className="stat" data-stat={key}>
              <dt>{label}</dt>
              <dd>{stats ? (fmt ? fmt(stats[key] ?? 0) : stats[key] ?? 0) : '…'}</dd>
            </div>
          ))}
        </dl>
      </section>
      {date && <TodayAttendance date={date} />}
      <div className="grid two">
        <Sessions />
        <Employees />
        <Notifications />
      </div>
    </div>
  );
}

function TodayAttendance({ date }) {
  const { data } = useSWR(KEYS.todayRecords(date), { refreshInterval: POLL.attendance });
  const rows = data?.data || [];
  const onBreak = rows.filter((r) => r.is_on_break && !r.time_out);
  return (
    <div className="grid two">
      <section className="card" aria-labelledby="today-list-title">
        <h2 id="today-list-title">Today’s attendance <span className="count">{rows.length}</span></h2>
        <div className="table-wrap">
          <table data-testid="today-attendance">
            <caption className="visually-hidden">Attendance records for {date}</caption>
            <thead><tr><th scope="col">Employee</th><th scope="col">Status</th><th scope="col">In</th><th scope="col">Out</th></tr></thead>
            <tbody>
              {rows.length === 0 && <tr><td colSpan={4} className="muted">Nobody has checked in yet.</td></tr>}
              {rows.map((r) => (
                <tr key={r.id}>
                  <th scope="row">{r.user?.full_name}</th>
                  <td>
                    <span className={`badge badge-${r.status}`}>{statusWord(r.status)}{r.status === 'late' && r.minutes_late ? ` ${r.minutes_late}m` : ''}</span>
                    {r.left_early && <span className="badge badge-left_early">Left early</span>}
                  </td>
                  <td>{time(r.time_in)}</td>
                  <td>{time(r.time_out)}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      </section>
      <section className="card" aria-labelledby="break-list-title">
        <h2 id="break-list-title">On break now <span className="count">{onBreak.length}</span></h2>
        {onBreak.length === 0 ? <p className="muted">Nobody is on a break.</p> : (
          <ul className="plain" data-testid="on-break">
            {onBreak.map((r) => <li key={r.id}>{r.user?.full_name} <span className="muted">since {time(r.break_start)}</span></li>)}
          </ul>
        )}
      </section>
    </div>
  );
}

function Sessions() {
  const { data } = useSWR(KEYS.sessions, { refreshInterval: POLL.lists });
  const { run, busy, message, feedbackRef } = useAction();
  const rows = data?.data || [];
  const affects = startsWith('/api/attendance-sessions', KEYS.dashboard, '/api/attendance-records?');
  return (
    <section className="card" aria-labelledby="sessions-title">
      <h2 id="sessions-title">Sessions</h2>
      <div className="table-wrap">
        <table data-testid="sessions" className="compact">
          <caption className="visually-hidden">Attendance sessions, newest first; In is employees checked in of those expected</caption>
          <thead><tr><th scope="col" className="wide-only">Date</th><th scope="col">Shift</th><th scope="col">Status</th><th scope="col"><abbr title="Checked in of expected">In</abbr></th><th scope="col"><span className="visually-hidden">Action</span></th></tr></thead>
          <tbody>
            {rows.map((s) => {
              const label = `${s.schedule?.name || 'session'} on ${s.date}`;
              const locked = s.status === 'locked';
              return (
                <tr key={s.id} data-session-id={s.id}>
                  <td className="nowrap wide-only">{s.date}</td>
                  <th scope="row">
                    {s.schedule?.name} <span className="muted nowrap">{wallTime(s.schedule?.time_in)}–{wallTime(s.schedule?.time_out)}</span>
                    {/* at phone width the Date column is hidden: the date goes under the shift */}
                    <span className="narrow-only muted nowrap">{s.date}</span>
                  </th>
                  <td>{sessionWord(s.status)}</td>
                  <td className="nowrap" data-testid="session-in">{s.confirmed_count ?? 0}/{s.expected_count ?? s.total_employees_count ?? 0}</td>
                  <td>
                    {s.status !== 'completed' && (
                      // one element whether it locks or unlocks: focus stays on it
                      <ActionButton className="small secondary" busy={busy}
                                    aria-label={`${locked ? 'Unlock' : 'Lock'} ${label}`}
                                    onClick={() => (locked
                                      ? run(`/api/attendance-sessions/${s.id}/unlock`, { method: 'PATCH', done: `Unlocked ${label}.`, affects })
                                      : run(`/api/attendance-sessions/${s.id}/lock`, { method: 'PATCH', body: {}, done: `Locked ${label}.`, affects }))}>
                        {locked ? 'Unlock' : 'Lock'}
                      </ActionButton>
                    )}
                  </td>
                </tr>
              );
            })}
          </tbody>
        </table>
      </div>
      <Feedback ref={feedbackRef} message={message} />
    </section>
  );
}

function Employees() {
  const { data } = useSWR(KEYS.employees, { refreshInterval: POLL.lists });
  const { run, busy, message, feedbackRef } = useAction();
  const rows = data?.data || [];
  return (
    <section className="card" aria-labelledby="employees-title">
      <h2 id="employees-title">Employees</h2>
      <div className="table-wrap">
        <table data-testid="employees">
          <caption className="visually-hidden">Employees, whether they are online now (or when they were last seen), and their account status</caption>
          <thead><tr><th scope="col">Name</th><th scope="col" className="wide-only">Position</th><th scope="col">Online</th><th scope="col">Account</th><th scope="col"><span className="visually-hidden">Action</span></th></tr></thead>
          <tbody>
            {rows.map((u) => {
              const name = `${u.first_name} ${u.last_name}`;
              const active = u.status === 'active';
              return (
                <tr key={u.id}>
                  <th scope="row" className="name">{name}</th>
                  <td className="wide-only">{u.position || '—'}</td>
                  <td><Presence user={u} /></td>
                  <td><span className={`badge badge-${u.status}`}>{statusWord(u.status)}</span></td>
                  <td>
                    <ActionButton className="small secondary" busy={busy}
                                  aria-label={`${active ? 'Deactivate' : 'Activate'} ${name}`}
                                  onClick={() => run(`/api/employees/${u.id}/toggle-status`, { method: 'PATCH', done: `${name} ${active ? 'deactivated' : 'activated'}.`, affects: startsWith('/api/employees?', KEYS.dashboard) })}>
                      {active ? 'Deactivate' : 'Activate'}
                    </ActionButton>
                  </td>
                </tr>
              );
            })}
          </tbody>
        </table>
      </div>
      <Feedback ref={feedbackRef} message={message} />
    </section>
  );
}

/** An employee's presence: a dot and "Online", or when they were last seen. The words carry
 * the meaning (the dot is decoration), so screen readers and colour-blind readers get it. */
function Presence({ user }) {
  const online = Boolean(user.online_now);
  const seen = lastSeen(user.last_presence_at);
  return (
    <span className={`presence ${online ? 'presence-online' : 'presence-offline'}`}
          data-testid="presence" data-online={online ? 'true' : 'false'}>
      <span className="dot" aria-hidden="true" />
      {/* one text box beside the dot, so that "Last seen 18:05" wraps as text does */}
      <span>
        {online ? 'Online' : (
          <>
            <span className="visually-hidden">Offline, </span>
            {seen ? <>Last seen <time dateTime={user.last_presence_at}>{seen}</time></> : 'Not seen yet'}
          </>
        )}
      </span>
    </span>
  );
}
