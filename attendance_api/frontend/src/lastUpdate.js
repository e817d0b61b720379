// The time of the last data update (a fetch that succeeded or an event that arrived), shown by
// the connection-status indicator. A tiny external store so SWR's onSuccess can write it.
import { useSyncExternalStore } from 'react';

let value = null;
const listeners = new Set();

export function markUpdated() {
  value = new Date();
  listeners.forEach((fn) => fn());
}

export function resetUpdated() {
  value = null;
  listeners.forEach((fn) => fn());
}

export function useLastUpdate() {
  return useSyncExternalStore(
    (fn) => { listeners.add(fn); return () => listeners.delete(fn); },
    () => value,
  );
}
