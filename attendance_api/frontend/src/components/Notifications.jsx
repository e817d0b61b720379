// The signed-in user's notifications (employees and admins alike): the latest ten, unread
// first in weight, with "Mark all read". notification.created on the user's own channel
// revalidates it (realtime.jsx).
import useSWR from 'swr';
import { KEYS, POLL, startsWith } from '../keys.js';
import { time } from '../format.js';
import { useAction } from './useAction.js';
import ActionButton from './ActionButton.jsx';
import Feedback from './Feedback.jsx';

export default function Notifications() {
  const { data, error } = useSWR(KEYS.notifications, { refreshInterval: POLL.lists });
  const { run, busy, message, feedbackRef } = useAction();
  const list = Array.isArray(data) ? data : data?.data || [];
  const unread = list.filter((n) => !n.read_at).length;
  return (
    <section className="card" aria-labelledby="notes-title" data-testid="notifications">
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
      {list.length > 0 && (
        <ActionButton className="secondary" busy={busy} unavailable={unread === 0}
                      onClick={() => run('/api/notifications/read-all', { done: 'Marked as read.', affects: startsWith(KEYS.notifications) })}>
          Mark all read
        </ActionButton>
      )}
      <Feedback ref={feedbackRef} message={message} />
    </section>
  );
}
