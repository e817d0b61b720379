// A minimal path router: the server answers every page path with index.html.
import { useEffect, useState } from 'react';

export function navigate(path, { replace = false } = {}) {
  if (window.location.pathname === path) return;
  const url = path + window.location.search; // keep the documented query knobs
  if (replace) window.history.replaceState(null, '', url);
  else window.history.pushState(null, '', url);
  window.dispatchEvent(new PopStateEvent('popstate'));
}

export function usePath() {
  const [path, setPath] = useState(window.location.pathname);
  useEffect(() => {
    const update = () => setPath(window.location.pathname);
    window.addEventListener('popstate', update);
    return () => window.removeEventListener('popstate', update);
  }, []);
  return path;
}
