"""deploy/slack-app-manifest.yaml checked against the code, both ways, so the two cannot drift.

Run by pytest. What the code needs is collected by inspecting it, not by grep: the listeners
handlers.app.build_app registers (on a recording stand-in for Bolt's App), and the Web API
methods called on a WebClient anywhere in bot/ and handlers/ (an AST scan of
`client.<method>(...)` calls, each method resolved to the Web API methods slack_sdk's WebClient
sends for it). METHOD_SCOPES says which bot scope Slack documents for each Web API method; the
manifest must ask for exactly the scopes so needed, subscribe to exactly the events listened
to, declare every slash command registered, and enable interactivity when (and only when) the
code listens to buttons.

chat:write.public is never needed: the bot posts only in channels it was invited to (the
announcer's remedy for not_in_channel is to /invite it), so a manifest asking for it fails."""

from __future__ import annotations

import ast
import copy
import inspect
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from slack_sdk import WebClient
from slack_sdk.web import client as web_client_module

import handlers.app
from bot.entrypoints.server import SLACK_EVENTS_PATH
from handlers.actions import RELEASE_BUTTONS
from handlers.commands import COMMAND

REPO_ROOT = Path(__file__).resolve().parents[1]
MANIFEST = REPO_ROOT / "deploy/slack-app-manifest.yaml"
CODE_DIRS = ("bot", "handlers")

METHOD_SCOPES: dict[str, frozenset[str]] = {
    # Web API method -> the bot scopes Slack's method reference lists for a bot token.
    "auth.test": frozenset(),
    "chat.postMessage": frozenset({"chat:write"}),
    "chat.postEphemeral": frozenset({"chat:write"}),
    "chat.update": frozenset({"chat:write"}),
    "chat.delete": frozenset({"chat:write"}),
    "chat.getPermalink": frozenset(),
    "conversations.info": frozenset({"channels:read"}),
    "conversations.members": frozenset({"channels:read", "groups:read"}),
    "users.info": frozenset({"users:read"}),
    "usergroups.users.list": frozenset({"usergroups:read"}),
    "files.getUploadURLExternal": frozenset({"files:write"}),
    "files.completeUploadExternal": frozenset({"files:write"}),
    "views.open": frozenset(),
    "views.update": frozenset(),
    "views.publish": frozenset(),
    "reactions.add": frozenset({"reactions:write"}),
}
EVENT_SCOPES: dict[str, frozenset[str]] = {
    "app_mention": frozenset({"app_mentions:read"}),
    "app_home_opened": frozenset(),
    "subteam_members_changed": frozenset({"usergroups:read"}),
}
LISTENER_PARAMETER_METHODS = {"say": "chat.postMessage"}
"""Listener arguments through which Bolt calls the Web API for the listener."""
INTERACTIVE_KINDS = frozenset({"action", "block_action", "view", "shortcut", "options"})


# ---------------------------------------------------------------- what the code needs


@dataclass
class Listener:
    kind: str
    matcher: Any
    function: Callable[..., Any]


class RecordingApp:
    """Stands in for slack_bolt.App in handlers.app.build_app and records each listener; a kind
    of listener the checker does not know fails loudly instead of being skipped."""

    KINDS = frozenset({"command", "event", *INTERACTIVE_KINDS})
    IGNORED = frozenset({"use", "middleware", "error"})

    def __init__(self, **kwargs: Any) -> None:
        self.listeners: list[Listener] = []

    def __getattr__(self, kind: str) -> Callable[..., Any]:
        if kind in self.IGNORED:
            return lambda *args, **kwargs: lambda function: function
        if kind not in self.KINDS:
            raise AttributeError(f"build_app uses App.{kind}: teach tests/test_slack_manifest.py")

        def register(matcher: Any, *args: Any, **kwargs: Any) -> Callable[..., Any]:
            def decorator(function: Callable[..., Any]) -> Callable[..., Any]:
                self.listeners.append(Listener(kind, matcher, function))
                return function

            return decorator

        return register


@dataclass
class CodeFacts:
    commands: set[str] = field(default_factory=set)
    events: set[str] = field(default_factory=set)
    interactive: list[str] = field(default_factory=list)
    methods: dict[str, set[str]] = field(default_factory=dict)
    """Web API method -> where the code calls it (path:line)."""


def registered_listeners(monkeypatch: pytest.MonkeyPatch) -> list[Listener]:
    monkeypatch.setattr(handlers.app, "App", RecordingApp)
    app = handlers.app.build_app(client=WebClient(token="xoxb-unused"), service=None)
    assert isinstance(app, RecordingApp)
    return app.listeners


def sdk_methods() -> dict[str, set[str]]:
    """WebClient method name -> the Web API methods it sends, read from slack_sdk's source
    (`self.api_call("chat.postMessage", ...)`, and helpers such as files_upload_v2 that call
    other WebClient methods)."""
    tree = ast.parse(inspect.getsource(web_client_module))
    (client_class,) = [
        node for node in tree.body if isinstance(node, ast.ClassDef) and node.name == "WebClient"
    ]
    direct: dict[str, set[str]] = {}
    calls: dict[str, set[str]] = {}
    for function in client_class.body:
        if not isinstance(function, ast.FunctionDef):
            continue
        direct[function.name], calls[function.name] = set(), set()
        for node in ast.walk(function):
            if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Attribute):
                continue
            receiver = node.func.value
            if not (isinstance(receiver, ast.Name) and receiver.id == "self"):
                continue
            if node.func.attr == "api_call" and node.args:
                first = node.args[0]
                if isinstance(first, ast.Constant) and isinstance(first.value, str):
                    direct[function.name].add(first.value)
            else:
                calls[function.name].add(node.func.attr)

    def resolve(name: str, seen: frozenset[str] = frozenset()) -> set[str]:
        found = set(direct.get(name, ()))
        for callee in calls.get(name, set()) - seen:
            found |= resolve(callee, seen | {name})
        return found

    return {name: resolved for name in direct if (resolved := resolve(name))}


def _is_web_client(receiver: ast.expr) -> bool:
    """`client`, `web_client`, `self._client`, `app.client`, ...: how the code names a WebClient."""
    name = receiver.id if isinstance(receiver, ast.Name) else getattr(receiver, "attr", "")
    return name.lstrip("_") in {"client", "web_client"}


def called_methods(sources: Iterable[tuple[str, str]]) -> dict[str, set[str]]:
    """Web API method -> where it is called, over (where, Python source) pairs."""
    methods = sdk_methods()
    found: dict[str, set[str]] = {}
    for where, source in sources:
        for node in ast.walk(ast.parse(source)):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
                continue
            if not _is_web_client(node.func.value) or node.func.attr not in methods:
                continue
            for method in methods[node.func.attr]:
                found.setdefault(method, set()).add(f"{where}:{node.lineno}")
    return found


def code_sources() -> list[tuple[str, str]]:
    paths = sorted(path for folder in CODE_DIRS for path in (REPO_ROOT / folder).rglob("*.py"))
    return [(str(path.relative_to(REPO_ROOT)), path.read_text()) for path in paths]


def collect_code_facts(monkeypatch: pytest.MonkeyPatch) -> CodeFacts:
    facts = CodeFacts(methods=called_methods(code_sources()))
    for listener in registered_listeners(monkeypatch):
        matcher = listener.matcher
        text = matcher.pattern if isinstance(matcher, re.Pattern) else str(matcher)
        if listener.kind == "command":
            facts.commands.add(text)
        elif listener.kind == "event":
            facts.events.add(text)
        else:
            facts.interactive.append(f"{listener.kind} {text}")
        for parameter in inspect.signature(listener.function).parameters:
            if parameter in LISTENER_PARAMETER_METHODS:
                method = LISTENER_PARAMETER_METHODS[parameter]
                facts.methods.setdefault(method, set()).add(f"listener {listener.function}")
    return facts


# ---------------------------------------------------------------- the checker


def manifest_drift(manifest: dict[str, Any], facts: CodeFacts) -> list[str]:
    """Every way the manifest and the code disagree, one sentence each; [] when they agree."""
    features = manifest.get("features") or {}
    settings = manifest.get("settings") or {}
    commands = {entry["command"]: entry for entry in features.get("slash_commands") or []}
    interactivity = settings.get("interactivity") or {}
    subscriptions = settings.get("event_subscriptions") or {}
    scopes = set(((manifest.get("oauth_config") or {}).get("scopes") or {}).get("bot") or [])
    return [
        *_both_ways("command", facts.commands, set(commands)),
        *_interactivity_drift(interactivity, facts),
        *_both_ways("event", facts.events, set(subscriptions.get("bot_events") or [])),
        *([] if settings.get("socket_mode_enabled") else _url_drift(commands, settings)),
        *_home_tab_drift(features, facts),
        *_scope_drift(scopes, facts),
    ]


def _both_ways(what: str, in_code: set[str], in_manifest: set[str]) -> list[str]:
    return [
        *(
            f"the code registers {what} {name}, the manifest lacks it"
            for name in sorted(in_code - in_manifest)
        ),
        *(
            f"the manifest has {what} {name}, which no code registers"
            for name in sorted(in_manifest - in_code)
        ),
    ]


def _interactivity_drift(interactivity: dict[str, Any], facts: CodeFacts) -> list[str]:
    if facts.interactive and not interactivity.get("is_enabled"):
        return [f"the code listens to {facts.interactive}; enable interactivity"]
    if interactivity.get("is_enabled") and not facts.interactive:
        return ["interactivity is enabled but the code listens to no action"]
    return []


HOME_USES = ("event app_home_opened", "views.publish")


def _home_tab_drift(features: dict[str, Any], facts: CodeFacts) -> list[str]:
    """App Home needs its Home tab enabled, and an enabled tab needs code that publishes it."""
    uses = [
        use for use in HOME_USES if use.removeprefix("event ") in facts.events | set(facts.methods)
    ]
    enabled = bool((features.get("app_home") or {}).get("home_tab_enabled"))
    if uses and not enabled:
        return [f"the code uses {uses}; enable features.app_home.home_tab_enabled"]
    if enabled and not uses:
        return ["the Home tab is enabled but no code publishes a Home view"]
    return []


def _url_drift(commands: dict[str, Any], settings: dict[str, Any]) -> list[str]:
    """HTTP mode: every request URL must reach the path the bot serves Slack on."""
    urls = {f"command {name}": entry.get("url") for name, entry in commands.items()}
    for part in ("interactivity", "event_subscriptions"):
        if settings.get(part):
            urls[part] = settings[part].get("request_url")
    return [
        f"HTTP mode (socket_mode_enabled false): the {what} URL {url!r} must end with "
        f"{SLACK_EVENTS_PATH}, where the bot listens"
        for what, url in urls.items()
        if not str(url or "").endswith(SLACK_EVENTS_PATH)
    ]


def _scope_drift(scopes: set[str], facts: CodeFacts) -> list[str]:
    problems: list[str] = []
    needed: dict[str, list[str]] = {}
    if facts.commands:
        needed["commands"] = sorted(facts.commands)
    uses = [(method, sorted(where), METHOD_SCOPES) for method, where in facts.methods.items()]
    uses += [(event, [f"event {event}"], EVENT_SCOPES) for event in facts.events]
    for name, where, table in sorted(uses):
        if name not in table:
            problems.append(
                f"the code uses {name} ({', '.join(where)}): add the scopes Slack documents "
                "for it to tests/test_slack_manifest.py"
            )
            continue
        for scope in table[name]:
            needed.setdefault(scope, []).append(name if table is METHOD_SCOPES else where[0])
    problems += [
        f"the manifest lacks scope {scope}, needed by {needed[scope]}"
        for scope in sorted(needed.keys() - scopes)
    ]
    problems += [
        f"the manifest asks for scope {scope}, which no code needs"
        for scope in sorted(scopes - needed.keys())
    ]
    return problems


# ---------------------------------------------------------------- the tests


@pytest.fixture
def manifest() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(MANIFEST.read_text())
    return loaded


@pytest.fixture
def facts(monkeypatch: pytest.MonkeyPatch) -> CodeFacts:
    return collect_code_facts(monkeypatch)


def test_the_manifest_matches_the_code(manifest: dict[str, Any], facts: CodeFacts) -> None:
    assert manifest_drift(manifest, facts) == []


def test_the_code_facts_are_collected_from_the_code(facts: CodeFacts) -> None:
    assert facts.commands == {COMMAND}
    assert f"action {RELEASE_BUTTONS.pattern}" in facts.interactive
    assert {"auth.test", "chat.postMessage", "chat.update", "chat.getPermalink"} <= set(
        facts.methods
    )
    assert any(
        where.startswith("bot/slack/announcer.py:") for where in facts.methods["chat.update"]
    )
    assert any(
        where.startswith("bot/entrypoints/server.py:") for where in facts.methods["auth.test"]
    )


def test_a_command_the_code_does_not_register_is_drift(
    manifest: dict[str, Any], facts: CodeFacts
) -> None:
    drifted = copy.deepcopy(manifest)
    drifted["features"]["slash_commands"].append(
        {"command": "/deploy", "url": "https://release-bot.example.com/slack/events"}
    )

    assert manifest_drift(drifted, facts) == [
        "the manifest has command /deploy, which no code registers"
    ]


def test_a_command_the_manifest_lacks_is_drift(manifest: dict[str, Any], facts: CodeFacts) -> None:
    facts.commands.add("/rollout")

    assert manifest_drift(manifest, facts) == [
        "the code registers command /rollout, the manifest lacks it"
    ]


def test_a_scope_no_code_needs_is_drift(manifest: dict[str, Any], facts: CodeFacts) -> None:
    drifted = copy.deepcopy(manifest)
    drifted["oauth_config"]["scopes"]["bot"] += ["chat:write.public", "users:read"]

    assert manifest_drift(drifted, facts) == [
        "the manifest asks for scope chat:write.public, which no code needs",
        "the manifest asks for scope users:read, which no code needs",
    ]


def test_a_scope_a_called_method_needs_is_drift_when_missing(
    manifest: dict[str, Any], facts: CodeFacts
) -> None:
    scanned = called_methods(
        [("snippet.py", "def f(self, client):\n    self._client.users_info(user='U1')\n"
          "    client.reactions_add(channel='C1', name='eyes', timestamp='1.2')\n")]
    )  # fmt: skip
    assert scanned == {"users.info": {"snippet.py:2"}, "reactions.add": {"snippet.py:3"}}
    facts.methods.update(scanned)

    assert manifest_drift(manifest, facts) == [
        "the manifest lacks scope reactions:write, needed by ['reactions.add']",
        "the manifest lacks scope users:read, needed by ['users.info']",
    ]


def test_the_chart_upload_needs_files_write(facts: CodeFacts) -> None:
    """files_upload_v2 is its two Web API methods (the upload in between is a plain POST)."""
    assert {"files.getUploadURLExternal", "files.completeUploadExternal"} <= facts.methods.keys()


def test_a_method_without_a_known_scope_is_drift(
    manifest: dict[str, Any], facts: CodeFacts
) -> None:
    facts.methods["admin.users.remove"] = {"bot/somewhere.py:1"}

    (problem,) = manifest_drift(manifest, facts)
    assert problem.startswith("the code uses admin.users.remove (bot/somewhere.py:1)")


def test_buttons_need_interactivity(manifest: dict[str, Any], facts: CodeFacts) -> None:
    drifted = copy.deepcopy(manifest)
    drifted["settings"]["interactivity"]["is_enabled"] = False

    (problem,) = manifest_drift(drifted, facts)
    assert problem.startswith("the code listens to [")
    assert "'action home.start_form'" in problem and "'view release.start_form'" in problem
    assert "release\\\\.approve" in problem  # the buttons' pattern, as the list's repr shows it


def test_events_subscribed_and_listened_to_must_match(
    manifest: dict[str, Any], facts: CodeFacts
) -> None:
    drifted = copy.deepcopy(manifest)
    subscribed = manifest["settings"].get("event_subscriptions", {}).get("bot_events", [])
    drifted["settings"]["event_subscriptions"] = {
        "request_url": "https://release-bot.example.com/slack/events",
        "bot_events": [*subscribed, "member_joined_channel"],
    }
    assert manifest_drift(drifted, facts) == [
        "the manifest has event member_joined_channel, which no code registers"
    ]

    facts.events.add("app_mention")
    assert manifest_drift(manifest, facts) == [
        "the code registers event app_mention, the manifest lacks it",
        "the manifest lacks scope app_mentions:read, needed by ['event app_mention']",
    ]


def test_app_home_needs_the_home_tab(manifest: dict[str, Any], facts: CodeFacts) -> None:
    assert "app_home_opened" in facts.events
    assert any(where.startswith("bot/slack/home.py:") for where in facts.methods["views.publish"])
    drifted = copy.deepcopy(manifest)
    drifted["features"]["app_home"]["home_tab_enabled"] = False

    assert manifest_drift(drifted, facts) == [
        "the code uses ['event app_home_opened', 'views.publish']; "
        "enable features.app_home.home_tab_enabled"
    ]


def test_http_mode_urls_must_reach_the_bots_events_path(
    manifest: dict[str, Any], facts: CodeFacts
) -> None:
    drifted = copy.deepcopy(manifest)
    drifted["settings"]["interactivity"]["request_url"] = "https://release-bot.example.com/"
    assert len(manifest_drift(drifted, facts)) == 1

    drifted["settings"]["socket_mode_enabled"] = True  # Socket Mode needs no public URL
    assert manifest_drift(drifted, facts) == []
