// Result of the last action: announced politely; errors as alerts.
export default function Feedback({ message }) {
  return (
    <p className={message?.error ? 'feedback error' : 'feedback'} role={message?.error ? 'alert' : 'status'} aria-live="polite">
      {message ? message.text : ''}
    </p>
  );
}
