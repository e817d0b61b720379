// Reports: the daily report for admins (with a CSV export of a date range), the personal
// report for employees (with its CSV export).
import { useState } from 'react';
import useSWR from 'swr';
import { downloadCsv } from '../api.js';
import { KEYS, POLL } from '../keys.js';
import { statusWord, time, wallTime } from '../format.js';

// Summary keys in words, capitalised like every other label.
const summaryWord = (key) => {
  const word = statusWord(key);
  return word.charAt(0).toUpperCase() + word.slice(1).replace(/_/g, ' ');
};

export default function Reports({ user }) {
  return user.role === 'admin' ? <DailyReport /> : <PersonalReport />;
}

function Export({ path, filename, disabled = false, children }) {
  const [error, setError] = useState(null);
  return (
    <>
      <button type="button" className="secondary" aria-disabled={disabled ? 'true' : undefined} onClick={async () => {
        if (disabled) return;
        setError(null);
        try { await downloadCsv(path, filename); } catch (err) { setError(err.message); }
      }}>{children}</button>
      {error && <p className="feedback error" role="alert">{error}</p>}
    </>
  );
}

function DailyReport() {
  // "Today" is the organisation's attendance date (as the dashboard shows it), never the
  // browser's calendar date, which differs from it in another time zone or after midnight.
  const { data: dashboard } = useSWR(KEYS.dashboard, { refreshInterval: POLL.dashboard });
  const orgToday = dashboard?.attendance_date || '';
  const [picked, setDate] = useState(null);
  const [pickedFrom, setFrom] = useState(null);
  const [pickedTo, setTo] = useState(null);
  const date = picked ?? orgToday;
  const from = pickedFrom ?? (orgToday ? orgToday.slice(0, 8) + '01' : '');
  const to = pickedTo ?? orgToday;
  const { data, error } = useSWR(date ? KEYS.daily(date) : null, { refreshInterval: POLL.lists });
  const rows = data?.records?.data || [];
  return (
    <div className="page">
      <h1>Reports</h1>
      <section className="card" aria-labelledby="daily-title">
        <h2 id="daily-title">Daily report</h2>
        <label htmlFor="report-date">Day</label>
        <input id="report-date" type="date" value={date} onChange={(e) => setDate(e.target.value)} />
        {error && <p className="feedback error" role="alert">{error.message}</p>}
        {data && (
          <p className="badges" aria-label="Summary">
            {Object.entries(data.summary).map(([k, v]) => <span key={k} className="badge">{summaryWord(k)}: {v}</span>)}
          </p>
        )}
        <div className="table-wrap">
          <table>
            <caption className="visually-hidden">Daily report for {date}</caption>
            <thead><tr><th scope="col">Employee</th><th scope="col">Status</th><th scope="col">In – out</th><th scope="col">Hours</th></tr></thead>
            <tbody>
              {rows.map((r) => (
                <tr key={r.id}>
                  <th scope="row">{r.name}</th>
                  <td>{statusWord(r.status)}{r.late_duration ? ` ${r.late_duration}` : ''}{r.left_early ? ', left early' : ''}</td>
                  {/* in and out share a column (each unbroken) so all columns fit a phone's width */}
                  <td data-testid="in-out">{r.time_in
                    ? <><span className="nowrap">{wallTime(r.time_in)}</span> – <span className="nowrap">{wallTime(r.time_out)}</span></>
                    : '—'}</td>
                  <td>{r.hours_worked}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      </section>
      <section className="card" aria-labelledby="export-title">
        <h2 id="export-title">Export records (CSV)</h2>
        <div className="row">
          <span><label htmlFor="export-from">From</label>
            <input id="export-from" type="date" value={from} onChange={(e) => setFrom(e.target.value)} /></span>
          <span><label htmlFor="export-to">To</label>
            <input id="export-to" type="date" value={to} onChange={(e) => setTo(e.target.value)} /></span>
        </div>
        <Export disabled={!from || !to} path={`/api/reports/export/excel?start_date=${from}&end_date=${to}`} filename={`attendance_${from}_${to}.csv`}>
          Download CSV
        </Export>
      </section>
    </div>
  );
}

function PersonalReport() {
  const { data, error } = useSWR(KEYS.personal, { refreshInterval: POLL.lists });
  const rows = data?.records?.data || [];
  const stats = data?.stats;
  return (
    <div className="page">
      <h1>My attendance</h1>
      <section className="card" aria-labelledby="personal-title">
        <h2 id="personal-title">Records</h2>
        {error && <p className="feedback error" role="alert">{error.message}</p>}
        {stats && (
          <p className="badges">
            <span className="badge">On time: {stats.present}</span>
            <span className="badge">Late: {stats.late}</span>
            <span className="badge">Absent: {stats.absent}</span>
            <span className="badge">Rate: {stats.attendance_rate}%</span>
          </p>
        )}
        <div className="table-wrap">
          <table>
            <caption className="visually-hidden">My attendance records</caption>
            <thead><tr><th scope="col">Date</th><th scope="col">Status</th><th scope="col">In</th><th scope="col">Out</th></tr></thead>
            <tbody>
              {rows.map((r) => (
                <tr key={r.id}>
                  <th scope="row">{r.work_date}</th>
                  <td>{statusWord(r.status)}{r.left_early ? ', left early' : ''}</td>
                  <td>{time(r.time_in)}</td><td>{time(r.time_out)}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
        <Export path="/api/reports/personal/export" filename="my_attendance.csv">Download CSV</Export>
      </section>
    </div>
  );
}
