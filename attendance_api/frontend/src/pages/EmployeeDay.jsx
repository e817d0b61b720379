// An employee's day: the current session, check-in, breaks with the remaining allowance,
// check-out, today's status, and notifications.
import useSWR from 'swr';
import { KEYS, POLL, startsWith } from '../keys.js';
import { duration, sessionWord, statusWord, time, wallTime } from '../format.js';
import { useAction } from '../components/useAction.js';
import ActionButton from '../components/ActionButton.jsx';
import Feedback from '../components/Feedback.jsx';
import Notifications from '../components/Notifications.jsx';

const mine = startsWith(KEYS.employeeDashboard, KEYS.breakStatus, '/api/attendance-records/my-records');

export default function EmployeeDay({ user }) {
  const dash = useSWR(KEYS.employeeDashboard, { refreshInterval: POLL.attendance });
  const brk = useSWR(KEYS.breakStatus, { refreshInterval: POLL.attendance });
  const { run, busy, message, feedbackRef } = useAction();
  const d = dash.data;
  const b = brk.data;
  const session = d?.active_session;
  const record = d?.today_record;
  const checkedIn = Boolean(record?.time_in);
  const checkedOut = Boolean(record?.time_out);

  // One button element for the day's attendance action (check in -> check out -> done) and one
  // for breaks (start <-> end): the element that had focus keeps it as its action changes.
  let attendance;
  if (!checkedIn) {
    attendance = {
      label: 'Check in', unavailable: !d?.can_confirm || !session,
      act: () => run(`/api/attendance-records/confirm/${session.id}`, { done: 'Checked in.', affects: mine }),
    };
  } else if (!checkedOut) {
    attendance = {
      label: 'Check out', unavailable: false,
      act: () => run(`/api/attendance-records/${record.id}/check-out`, { done: 'Checked out.', affects: mine }),
    };
  } else {
    attendance = { label: 'Checked out for today', unavailable: true, act: () => {} };
  }

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
              <dt>Shift</dt><dd>{session.schedule?.name} {wallTime(session.schedule?.time_in)}–{wallTime(session.schedule?.time_out)}</dd>
              <dt>Date</dt><dd>{session.date}</dd>
              <dt>Session</dt><dd>{sessionWord(session.status)}</dd>
            </dl>
          )}
          {d && !checkedIn && <p className="muted" id="checkin-hint">{d.check_in_message}</p>}
          {d && (
            <ActionButton className={checkedIn ? 'secondary' : undefined} busy={busy}
                          unavailable={attendance.unavailable} onClick={attendance.act}
                          aria-describedby={!checkedIn ? 'checkin-hint' : undefined}
                          data-testid="attendance-action">
              {attendance.label}
            </ActionButton>
          )}
          <Feedback ref={feedbackRef} message={message} />
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
              <ActionButton busy={busy} unavailable={!b.can_end_break && !b.can_start_break}
                            data-testid="break-action"
                            onClick={() => (b.can_end_break
                              ? run('/api/break/end', { done: 'Break ended.', affects: mine })
                              : run('/api/break/start', { body: { type: 'Regular' }, done: 'Break started.', affects: mine }))}>
                {b.can_end_break ? 'End break' : 'Start break'}
              </ActionButton>
            </>
          )}
        </section>

        <Notifications />
      </div>
    </div>
  );
}
