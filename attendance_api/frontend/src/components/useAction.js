// Run one API action at a time, report its outcome, and revalidate what it changed.
// Keyboard focus: action buttons stay focusable (ActionButton), and when the control that had
// focus is gone after the action (e.g. the last action of the day), focus moves to the
// outcome message (`feedbackRef`, given to <Feedback>) instead of falling to <body>.
import { useEffect, useRef, useState } from 'react';
import { useSWRConfig } from 'swr';
import { api } from '../api.js';

export function useAction() {
  const { mutate } = useSWRConfig();
  const [busy, setBusy] = useState(false);
  const [message, setMessage] = useState(null);
  const [finished, setFinished] = useState(0);
  const feedbackRef = useRef(null);
  const hadFocus = useRef(false);

  useEffect(() => {
    if (!finished || !hadFocus.current) return;
    hadFocus.current = false;
    const active = document.activeElement;
    if ((!active || active === document.body) && feedbackRef.current) feedbackRef.current.focus();
  }, [finished]);

  const run = async (path, { method = 'POST', body, done, affects }) => {
    hadFocus.current = document.activeElement !== document.body;
    setBusy(true);
    try {
      const data = await api(path, { method, body });
      setMessage({ text: done || data?.message || 'Done.' });
      if (affects) await mutate(affects);
      return data;
    } catch (err) {
      setMessage({ text: err.message, error: true });
      return null;
    } finally {
      setBusy(false);
      setFinished((n) => n + 1);
    }
  };
  return { run, busy, message, feedbackRef };
}
