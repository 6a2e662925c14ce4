"""The architecture, checked: the layers of `bot/`, and Slack known only at its edge.

`lint-imports` checks the contracts in pyproject.toml; each check is also shown to fail on a
copy of the code with a violation put in, so a contract that checks nothing cannot pass.
"""

from __future__ import annotations

import ast
import re
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"
EDGE = {"bot.slack", "bot.cli"}  # the only modules that may know Slack

# Slack's mrkdwn: mentions, channel links, special mentions and dates (<@U1>, <#C1>, <!here>,
# <!date^...>), code fences, and *bold* words.
MARKUP = re.compile(r"<[@#!]|```|(?<![\w*])\*[A-Za-z][^*\n]*\*(?![\w*])")


def lint_imports(cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(LINT_IMPORTS), "--no-logo", "--no-cache"], cwd=cwd, capture_output=True,
                          text=True, timeout=120, check=False)


def test_the_layers_and_the_slack_edge_hold() -> None:
    result = lint_imports(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Contracts: 2 kept, 0 broken." in result.stdout, result.stdout


def test_a_core_module_importing_slack_or_a_lower_layer_importing_a_higher_one_breaks_the_contracts(
        tmp_path: Path) -> None:
    shutil.copytree(ROOT / "bot", tmp_path / "bot", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    with (tmp_path / "bot" / "rules" / "grants.py").open("a") as grants:
        grants.write("\nimport slack_sdk  # noqa\n")
    with (tmp_path / "bot" / "store" / "audit.py").open("a") as audit:
        audit.write("\nfrom bot.requests import lifecycle  # noqa\n")

    result = lint_imports(tmp_path)
    assert result.returncode != 0, result.stdout
    assert "Contracts: 0 kept, 2 broken." in result.stdout, result.stdout
    assert "bot.rules.grants -> slack_sdk" in result.stdout
    assert "bot.store is not allowed to import bot.requests" in result.stdout


def test_every_package_but_the_edge_is_forbidden_slacks_packages() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    forbidden = next(c for c in config["contracts"] if c["id"] == "slack-edge")
    packages = {f"bot.{p.stem}" for p in (ROOT / "bot").iterdir()
                if (p.suffix == ".py" and p.stem != "__init__") or (p / "__init__.py").exists()}
    assert set(forbidden["source_modules"]) == packages - EDGE
    assert set(forbidden["forbidden_modules"]) == {"slack_bolt", "slack_sdk"}


def _strings(source: str) -> Iterator[tuple[int, str]]:
    """Every string the code builds, with its line; docstrings left out, f-string holes as `X`."""
    tree = ast.parse(source)
    docstrings = {id(node.body[0].value) for node in ast.walk(tree)
                  if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
                  and node.body and isinstance(node.body[0], ast.Expr)
                  and isinstance(node.body[0].value, ast.Constant)}
    inside_fstrings = {id(part) for node in ast.walk(tree) if isinstance(node, ast.JoinedStr) for part in node.values}
    for node in ast.walk(tree):
        if isinstance(node, ast.JoinedStr):
            yield node.lineno, "".join(str(p.value) if isinstance(p, ast.Constant) else "X" for p in node.values)
        elif (isinstance(node, ast.Constant) and isinstance(node.value, str)
              and id(node) not in docstrings and id(node) not in inside_fstrings):
            yield node.lineno, node.value


def slack_markup(source: str) -> list[tuple[int, str]]:
    return sorted((line, text) for line, text in _strings(source) if MARKUP.search(text))


def test_the_markup_finder_finds_what_slack_would_render() -> None:
    source = '''
"""A docstring may say <@U123> or *bold*."""
MENTION = f"<@{user}> approved"
LINK = "<#" + channel + ">"
WHEN = f"<!date^{stamp}^{{date_short}}|{text}>"
TITLE = f"*{label}*: ready"
FENCE = "```" + body + "```"
PLAIN = "every sender code (*), a * b, 5 * 3, `sms-bot grants`"
'''
    found = [line for line, _ in slack_markup(source)]
    assert found == [3, 4, 5, 6, 7, 7]


def test_only_the_slack_edge_writes_slack_markup() -> None:
    found = [f"{path.relative_to(ROOT)}:{line}: {text!r}"
             for path in sorted((ROOT / "bot").rglob("*.py")) if "slack" not in path.relative_to(ROOT / "bot").parts
             for line, text in slack_markup(path.read_text())]
    assert found == [], "Slack markup outside bot/slack (return data or plain words instead):\n" + "\n".join(found)
