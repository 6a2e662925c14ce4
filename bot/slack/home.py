"""The Home tab: drawn from `bot.requests.overview` and published when opened or when a request it shows changes.

Its Approve and Reject buttons are the card's own (same action_ids and values), so a click here
goes through the same listener, rules and card update as a click on the card.
"""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import urljoin

from slack_bolt import App
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError, SlackClientError
from slack_sdk.models.blocks import (
    ActionsBlock,
    Block,
    ContextBlock,
    DividerBlock,
    HeaderBlock,
    MarkdownTextObject,
    SectionBlock,
)
from slack_sdk.models.views import View

from bot.ops.work import BackgroundWork
from bot.requests.lifecycle import Lifecycle
from bot.requests.overview import Capped, CodeToday, Overview, overview, people_involved
from bot.requests.reading import RequestView
from bot.rules.grants import scope_name
from bot.slack import blocks
from bot.slack.database_down import DATABASE_DOWN, DATABASE_ERRORS
from bot.slack.mrkdwn import USER_ID, escape, local_time, mention
from bot.store.models import Role, SendRequest, State

log = logging.getLogger(__name__)

MAX_BLOCKS = 100  # Slack's limit for a Home view


def archives(client: WebClient) -> str:
    """Where message links begin: https://slack.com/archives (GovSlack: slack-gov.com), from the API's address.

    Slack sends such a link on to the message in the reader's own workspace.
    """
    return urljoin(client.base_url, "/archives")


def card_link(request: SendRequest, base: str) -> str:
    """A link to the request's card, built from its channel and timestamp (no Slack call)."""
    return f"{base}/{request.channel_id}/p{request.card_ts.replace('.', '')}"


def home_view(o: Overview, base: str) -> dict[str, Any]:
    """`base`: see `archives`."""
    shown: list[Block] = [HeaderBlock(text="Waiting for my approval")]
    for view in o.waiting.items:
        shown += [SectionBlock(text=_summary(view.request)), *_decision(view)]
    shown += _more(o.waiting, "Nothing is waiting for your approval.")
    shown += [DividerBlock(), HeaderBlock(text="My recent requests")]
    shown += [SectionBlock(text=f"{_summary(r)}\n*{r.state}* · <{card_link(r, base)}|see the card>")
              for r in o.recent.items]
    shown += _more(o.recent, "You have not requested any sends yet.")
    shown += [DividerBlock(), HeaderBlock(text="My roles"), SectionBlock(text=_roles(o))]
    if o.is_admin:
        shown += [DividerBlock(), HeaderBlock(text="Sender codes I administer")]
        shown += [SectionBlock(text=_code(c)) for c in o.codes.items]
        shown += _more(o.codes, "No sender code you administer is registered.")
        shown += [DividerBlock(), HeaderBlock(text="Outcome unknown")]
        shown += [SectionBlock(text=f"{_summary(r)}\n<{card_link(r, base)}|see the card>") for r in o.unknown.items]
        shown += _more(o.unknown, "No send has an unknown outcome.")
        shown += [DividerBlock(), HeaderBlock(text="Scheduled sends")]
        shown += [SectionBlock(text=f"{_summary(r)}\n<{card_link(r, base)}|see the card> to withdraw it")
                  for r in o.scheduled.items]
        shown += _more(o.scheduled, "No approved send is waiting for its time.")
    assert len(shown) <= MAX_BLOCKS, len(shown)
    return View(type="home", blocks=shown).to_dict()


def notice_view(text: str) -> dict[str, Any]:
    return View(type="home", blocks=[SectionBlock(text=escape(text))]).to_dict()


def _summary(r: SendRequest) -> str:
    group = escape(r.group_name) if r.group_name else "all contacts"
    text = (f"*{escape(r.campaign_name)}*: message *{escape(r.message_name)}* to {group} of sender code "
            f"{r.sender_code}, requested by {mention(r.requester_id)} {local_time(r.created_at)} "
            f"(request `{r.id}`)")
    if r.send_at and r.state in (State.PENDING, State.SCHEDULED):
        text += f" · to be sent {local_time(r.send_at)}"
    return blocks.fit(text, blocks.SECTION_TEXT - 200)


APPROVERS_BUTTONS = (blocks.APPROVE, blocks.APPROVE_WITH_NOTE, blocks.REJECT)


def _decision(view: RequestView) -> list[Block]:
    """The card's own buttons for an approver: Approve, Approve with note, Reject (Cancel is the
    requester's and Withdraw the admins', on the card)."""
    for block in blocks.card(view):
        if block.get("block_id") == "decision":
            elements = [e for e in block["elements"] if e.get("action_id") in APPROVERS_BUTTONS]
            return [ActionsBlock(block_id="decision", elements=elements)]
    return []


def _more(capped: Capped[Any], empty: str) -> list[Block]:
    if capped.more:
        return [ContextBlock(elements=[MarkdownTextObject(text=f"and {capped.more} more")])]
    if not capped.items:
        return [ContextBlock(elements=[MarkdownTextObject(text=empty)])]
    return []


ROLE_WORDS = {Role.REQUESTER: "Request sends", Role.APPROVER: "Approve sends", Role.ADMIN: "Administer"}


def _roles(o: Overview) -> str:
    lines = [f"{ROLE_WORDS[role]}: {', '.join(scope_name(s) for s in sorted(o.roles[role]))}"
             for role in Role if o.roles.get(role)]
    return "\n".join(lines) or "You hold no role yet: ask an admin of a sender code for one."


def _code(c: CodeToday) -> str:
    rules = c.rules
    label = f" ({escape(rules.label)})" if rules.label else ""
    cap = (f"{c.sends_today} of {rules.daily_cap} sends today" if rules.daily_cap
           else f"{c.sends_today} sends today, no cap")
    quiet = (f"quiet hours {rules.quiet_hours}: " + ("*in effect now*" if c.quiet_now else "not in effect now")
             if rules.quiet_hours else "no quiet hours")
    return f"*{rules.code}*{label} · {blocks.approvals_needed(rules)} · {cap} · {quiet}"


class HomePublisher:
    """Publishes a person's Home tab; off the acknowledgement path (an event listener, the card publisher)."""

    def __init__(self, client: WebClient, lifecycle: Lifecycle) -> None:
        self.client = client
        self.lifecycle = lifecycle  # its sessions, its clock (the database's) and its dry-run mode
        self.archives = archives(client)

    def publish(self, user_id: str) -> None:
        try:
            life = self.lifecycle
            view = home_view(overview(life.sessions, user_id, clock=life.clock, dry_run=life.dry_run), self.archives)
        except DATABASE_ERRORS:
            log.warning("Home tab of %s: the database could not be reached", user_id)
            view = notice_view(DATABASE_DOWN)
        try:
            self.client.views_publish(user_id=user_id, view=view)
        except (SlackApiError, SlackClientError, OSError) as exc:
            error = exc.response.get("error") if isinstance(exc, SlackApiError) else type(exc).__name__
            log.warning("Home tab of %s not published: %s", user_id, error)

    def request_changed(self, view: RequestView) -> None:
        """Republish the Home tab of everyone the request concerns."""
        try:
            people = people_involved(self.lifecycle.sessions, view)
        except DATABASE_ERRORS:
            log.warning("request %s: Home tabs not refreshed: the database could not be reached", view.request.id)
            return
        for user_id in sorted(people):
            if USER_ID.fullmatch(user_id):
                self.publish(user_id)


def register(app: App, homes: HomePublisher, after_ack: BackgroundWork) -> None:
    @app.event("app_home_opened")
    def home_opened(event: dict[str, Any]) -> None:
        if event.get("tab", "home") == "home" and event.get("user"):
            after_ack.submit(homes.publish, str(event["user"]))
