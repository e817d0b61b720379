"""Webhooks (spec §14): transitions in, signed POSTs out, off the hot path.

* :mod:`~pusherd.webhooks.events` (pure): a transition as a webhook event, the flap guard,
  the request body and the retry schedule.
* :mod:`~pusherd.webhooks.store`: where accepted events wait until delivered (the
  :class:`~pusherd.webhooks.store.WebhookStore` seam; a journal file or memory).
* :mod:`~pusherd.webhooks.client`: one HTTP/1.1 POST with a deadline.
* :mod:`~pusherd.webhooks.sender`: the transition listener and the delivery lanes.
"""
