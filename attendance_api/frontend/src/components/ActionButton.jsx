// A button for an action that may be running or not available now. It is never `disabled`:
// a disabled button drops keyboard focus (to <body>), so after Enter on it the user would
// have to find their place again. It says so with aria-disabled (and aria-busy while the
// action runs) and ignores activation meanwhile.
export default function ActionButton({ busy = false, unavailable = false, onClick, className, children, ...rest }) {
  const inert = busy || unavailable;
  return (
    <button
      type="button"
      className={className}
      aria-disabled={inert ? 'true' : undefined}
      aria-busy={busy ? 'true' : undefined}
      onClick={(e) => { if (!inert) onClick(e); }}
      {...rest}
    >
      {children}
    </button>
  );
}
