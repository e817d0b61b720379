// Result of the last action: announced politely; errors as alerts. Focusable from script only
// (tabIndex -1), so useAction can move focus here when the control that had it is gone.
import { forwardRef } from 'react';

const Feedback = forwardRef(function Feedback({ message }, ref) {
  return (
    <p ref={ref} tabIndex={-1} className={message?.error ? 'feedback error' : 'feedback'}
       role={message?.error ? 'alert' : 'status'} aria-live="polite">
      {message ? message.text : ''}
    </p>
  );
});

export default Feedback;
