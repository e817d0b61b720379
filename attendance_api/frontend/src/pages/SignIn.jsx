import { useState } from 'react';
import { api } from '../api.js';

export default function SignIn({ onSignedIn, notice }) {
  const [email, setEmail] = useState('');
  const [password, setPassword] = useState('');
  const [error, setError] = useState(null);
  const [busy, setBusy] = useState(false);

  const submit = async (e) => {
    e.preventDefault();
    setBusy(true);
    setError(null);
    try {
      const data = await api('/api/auth/login', { method: 'POST', body: { email, password }, token: null });
      onSignedIn({ token: data.token, user: data.user });
    } catch (err) {
      const field = err.body?.errors && Object.values(err.body.errors)[0];
      setError((field && field[0]) || err.message);
    } finally {
      setBusy(false);
    }
  };

  return (
    <form className="card signin" onSubmit={submit} aria-labelledby="signin-title">
      <h1 id="signin-title">Sign in</h1>
      <p className="muted">Attendance: check in, take breaks, check out; admins watch the day live.</p>
      {notice && <p className="feedback notice" role="status" data-testid="signed-out-notice">{notice}</p>}
      <label htmlFor="email">Email</label>
      <input id="email" type="email" autoComplete="username" required value={email}
             onChange={(e) => setEmail(e.target.value)} aria-invalid={error ? 'true' : undefined} />
      <label htmlFor="password">Password</label>
      <input id="password" type="password" autoComplete="current-password" required value={password}
             onChange={(e) => setPassword(e.target.value)} aria-invalid={error ? 'true' : undefined} />
      {error && <p className="feedback error" role="alert">{error}</p>}
      <button type="submit" disabled={busy}>{busy ? 'Signing in…' : 'Sign in'}</button>
    </form>
  );
}
