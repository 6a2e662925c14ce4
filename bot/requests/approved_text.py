"""What approvers approved is what is sent: the message's text, checked again just before the POST.

A send goes to WhatCounts by message name, and anyone with access to WhatCounts can edit the
text behind that name after the card showed it. So the text is listed afresh (never from the
catalogue's cache) right before sending, and a change, a missing message or a check that
could not be made stops the send, unless the card itself said the text was unverified.
"""

from __future__ import annotations

from bot.store.models import SendRequest
from bot.whatcounts.client import SmsMessage


def send_time_problem(request: SendRequest, listed: list[SmsMessage] | None) -> str | None:
    """Why the request must not be sent as approved, given WhatCounts' listing now (None: could not list)."""
    name = request.message_name
    if listed is None:
        if not request.message_verified:
            return None  # the approvers were told that the text could not be verified
        return (f"Not sent: WhatCounts could not be asked for the current text of message “{name}” just "
                "before sending, so the bot could not make sure it is still the text the approvers saw. "
                "Request the send again.")
    texts = {m.text for m in listed if m.name == name}
    if not texts:
        return (f"Not sent: WhatCounts no longer has an SMS message named “{name}”: it was deleted or "
                "renamed after this was requested.")
    if request.message_verified and texts != {request.message_text}:
        return (f"Not sent: the text of message “{name}” was changed in WhatCounts after this was "
                "requested, so it is no longer the text the approvers saw. Request the send again to "
                "have the new text approved.")
    return None
