// Run one API action at a time, report its outcome, and revalidate what it changed.
import { useState } from 'react';
import { useSWRConfig } from 'swr';
import { api } from '../api.js';

export function useAction() {
  const { mutate } = useSWRConfig();
  const [busy, setBusy] = useState(false);
  const [message, setMessage] = useState(null);
  const run = async (path, { method = 'POST', body, done, affects }) => {
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
    }
  };
  return { run, busy, message };
}
