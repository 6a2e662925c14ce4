"""The one place that builds the Slack Web API client from settings, and asks Slack whether the token works."""

from __future__ import annotations

from dataclasses import dataclass

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError, SlackClientError
from slack_sdk.http_retry.builtin_handlers import RateLimitErrorRetryHandler

from bot.ops.checks import Check
from bot.ops.config import Settings

TIMEOUT = 10  # seconds, per Web API call


def web_client(settings: Settings) -> WebClient:
    """The bot's client: its token, Slack's address (a fake one in tests), a timeout, and retries when rate limited."""
    return WebClient(token=settings.slack_bot_token, base_url=settings.slack_api_url, timeout=TIMEOUT,
                     retry_handlers=[RateLimitErrorRetryHandler(max_retry_count=2)])


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
