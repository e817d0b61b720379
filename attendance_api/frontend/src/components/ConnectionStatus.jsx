// The connection-status indicator: connected / connecting / unavailable (or realtime off),
// with the time of the last update. Clicking it refreshes everything on the page.
import { useRealtime } from '../realtime.jsx';
import { useLastUpdate } from '../lastUpdate.js';
import { clock } from '../format.js';

const LABELS = {
  connected: 'Live',
  connecting: 'Connecting…',
  unavailable: 'Offline, polling',
  off: 'Realtime off, polling',
};

export default function ConnectionStatus() {
  const { status, refreshAll } = useRealtime();
  const last = useLastUpdate();
  return (
    <button
      type="button"
      className={`connection connection-${status}`}
      data-status={status}
      onClick={refreshAll}
      title="Refresh everything now"
      aria-label={`Connection: ${LABELS[status]}. Last update ${clock(last)}. Refresh now`}
    >
      <span className="dot" aria-hidden="true" />
      <span className="connection-label">{LABELS[status]}</span>
      <span className="connection-time">updated {clock(last)}</span>
    </button>
  );
}
