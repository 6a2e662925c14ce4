"""The one place that builds the Slack Web API clients from settings, and asks Slack whether the token works.

Every client is a `PooledWebClient` (bot.slack.connections): its calls reuse the process's
kept-alive connections to Slack. None retries a connection error: a call that may have reached
Slack (a card, an ephemeral) is never sent twice by the client; the outbox decides.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from slack_bolt import BoltContext
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError, SlackClientError
from slack_sdk.http_retry.builtin_handlers import RateLimitErrorRetryHandler
from slack_sdk.http_retry.request import HttpRequest
from slack_sdk.http_retry.response import HttpResponse
from slack_sdk.http_retry.state import RetryState

from bot.ops.checks import Check
from bot.ops.config import Settings
from bot.slack.connections import PooledWebClient

TIMEOUT = 10  # seconds, per Web API call
CARD_POST_TIMEOUT = 10  # seconds for each call posting a card at submission, off the ack path
MAX_RATE_LIMIT_WAIT = 10  # seconds a 429's Retry-After may ask for before a submission gives up


def web_client(settings: Settings) -> WebClient:
    """The bot's client: its token, Slack's address (a fake one in tests), a timeout, and retries when rate limited."""
    return PooledWebClient(token=settings.slack_bot_token, base_url=settings.slack_api_url, timeout=TIMEOUT,
                           retry_handlers=[RateLimitErrorRetryHandler(max_retry_count=2)])


def card_client(client: WebClient) -> WebClient:
    """`client` with a bound on each call and on rate-limit waits, for posting cards at submission."""
    return PooledWebClient(token=client.token, base_url=client.base_url, timeout=CARD_POST_TIMEOUT, ssl=client.ssl,
                           retry_handlers=[BoundedRateLimitRetry(max_wait=MAX_RATE_LIMIT_WAIT)])


def pooled_request_client(context: BoltContext, next_: Callable[[], None]) -> None:
    """Bolt middleware, run before authorization: each request's `client` on the pool.

    Bolt builds a plain `WebClient` for every request from the app's client (its token, address,
    timeout, retry handlers...), for its own `auth.test` and for the listeners; this builds the
    same on the process's kept-alive connections.
    """
    given = context.client
    context["client"] = PooledWebClient(
        token=given.token, base_url=given.base_url, timeout=given.timeout, ssl=given.ssl, proxy=given.proxy,
        headers=dict(given.headers), team_id=given.default_params.get("team_id"), logger=given.logger,
        retry_handlers=given.retry_handlers)
    next_()


class BoundedRateLimitRetry(RateLimitErrorRetryHandler):
    """Waits out a 429 once, unless Slack asks for longer than `max_wait` seconds."""

    def __init__(self, max_wait: float) -> None:
        super().__init__(max_retry_count=1)
        self.max_wait = max_wait

    def _can_retry(self, *, state: RetryState, request: HttpRequest, response: HttpResponse | None = None,
                   error: Exception | None = None) -> bool:
        if not super()._can_retry(state=state, request=request, response=response, error=error):
            return False
        assert response is not None
        wait = next((v[0] for k, v in response.headers.items() if k.lower() == "retry-after" and v), "1")
        return wait.isdigit() and int(wait) <= self.max_wait


@dataclass(frozen=True)
class Authenticated:
    user_id: str  # the bot's own user
    team_id: str


@dataclass(frozen=True)
class TokenRefused:
    error: str  # Slack's error code, e.g. invalid_auth


@dataclass(frozen=True)
class Unreachable:
    cause: str  # the exception's class name: no secret, no URL with a token


TokenStatus = Authenticated | TokenRefused | Unreachable


def token_status(settings: Settings) -> TokenStatus:
    """`auth.test` with the bot token: nothing is written anywhere."""
    try:
        answer = web_client(settings).auth_test()
    except SlackApiError as exc:
        return TokenRefused(str(exc.response.get("error")))
    except (SlackClientError, OSError) as exc:
        return Unreachable(type(exc).__name__)
    return Authenticated(str(answer.get("user_id")), str(answer.get("team_id")))


def check_slack(settings: Settings) -> Check:
    """The Slack line of `sms-bot check`."""
    match token_status(settings):
        case Authenticated(user_id=user, team_id=team):
            return Check("slack", True, f"auth.test ok: bot {user} in team {team}")
        case TokenRefused(error=error):
            return Check("slack", False, f"auth.test refused SLACK_BOT_TOKEN ({error})")
        case Unreachable(cause=cause):
            return Check("slack", False, f"cannot reach {settings.slack_api_url} ({cause})")
    raise AssertionError("unreachable")
