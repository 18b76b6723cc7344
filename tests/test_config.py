"""The apps and plans file: the example loads, every kind of mistake is named with file, line
and path, all mistakes come out at once, and `release-bot check-config` says so with its exit code.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from bot.application.apps_file import ConfigError, load_config
from bot.core.apps import (
    AppConfig,
    BlueGreenConfig,
    BotConfig,
    ChannelRef,
    ErrorRateLimits,
    GatewayApiRouter,
    IstioRouter,
    LatencyLimits,
    MetricsConfig,
    NoRouter,
    QpsLimits,
    ReplicasRouter,
    UnknownApp,
    UnknownPlan,
    plan_refusal,
)
from bot.core.durations import format_duration, parse_duration
from bot.core.plan import DEFAULT_PLAN, Plan, Stage
from bot.core.verification import Verification

REPO = Path(__file__).resolve().parent.parent
EXAMPLE = REPO / "deploy" / "examples" / "apps.yaml"
MANY_MISTAKES = REPO / "tests" / "data" / "config-many-mistakes.yaml"

# One valid app; the mistake cases below change a line or two of it.
VALID_APP = """\
apps:
  shop-api:
    namespace: shop
    workload: shop-api
    slack_channel: "#releases"
    router:
      provider: istio
      virtual_service: shop-api
      destination_rule: shop-api
      host: shop-api
"""


def write_config(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "apps.yaml"
    path.write_text(text)
    return path


def problems_in(path: Path) -> list[str]:
    with pytest.raises(ConfigError) as raised:
        load_config(path)
    assert str(raised.value).startswith(f"{path}: {len(raised.value.problems)} problem")
    return raised.value.problems


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bot.entrypoints.cli", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


# ---------------------------------------------------------------- the example file


def test_example_file_loads_into_typed_objects() -> None:
    config = load_config(EXAMPLE)

    assert list(config.apps) == ["shop-api", "checkout", "image-resizer", "storefront", "ledger"]
    storefront = config.apps["storefront"]
    assert storefront.workload_kind == "Rollout"
    assert isinstance(storefront.router, NoRouter)
    assert list(config.plans) == ["default", "fast", "careful", "verified"]
    shop, checkout, resizer, _, ledger = (config.app(name) for name in config.apps)
    settings = ledger.bluegreen
    assert (settings.service, settings.preview_service_of("ledger")) == ("ledger", "ledger-green")
    assert (settings.approvals, settings.preview_checks) == (2, True)
    assert (settings.watch_window_s, settings.check_interval_s) == (1800, 30)
    assert (settings.retention_s, settings.scale_down_grace_s) == (86400, 3600)
    preview = settings.plan().stages[0]  # its Job runs against ledger-green before the approval
    assert preview.verification == Verification(job="smoke", timeout_s=300)
    assert sorted(ledger.verification.jobs) == ["smoke"]
    assert shop.bluegreen == BlueGreenConfig()  # none given: `<app>-green`, 30m, 1d, 1h

    assert shop.namespace == "shop"
    assert shop.workload == "shop-api"
    assert shop.container == "api"
    assert shop.router == IstioRouter(
        provider="istio",
        virtual_service="shop-api",
        destination_rule="shop-api",
        host="shop-api.shop.svc.cluster.local",
        route_index=0,
    )
    assert shop.slack_channel == ChannelRef("shop-releases")
    assert shop.plan == Plan(
        name="careful",
        stages=(
            Stage(weight=0, duration_s=1800, header_routed=True),
            Stage(weight=1, duration_s=3600),
            Stage(weight=10, duration_s=7200, needs_approval=True, approvals_needed=2),
            Stage(weight=100, duration_s=900),
        ),
    )
    assert shop.metrics.provider == "istio"
    assert shop.metrics.prometheus_url == "http://prometheus.monitoring:9090"
    assert (shop.metrics.interval_s, shop.metrics.window_s) == (60, 300)
    assert (shop.metrics.min_requests, shop.metrics.failure_limit) == (100, 1)
    assert shop.metrics.error_rate == ErrorRateLimits(max=0.05, max_above_stable=0.01)
    assert shop.metrics.p99_latency_ms == LatencyLimits(max=800, max_above_stable=200)
    assert shop.metrics.qps == QpsLimits(min=2)
    assert shop.metrics.snapshot_interval_s == 900
    assert shop.alert_mention == "<!subteam^S0SHOPONCALL>"
    assert shop.authorization.start == ("S0SHOPDEVS",)
    assert shop.authorization.approve == ("U0LEADONE", "U0LEADTWO")
    assert shop.authorization.promote == ("S0SHOPLEADS",)
    assert shop.authorization.channels == (ChannelRef("shop-releases"), ChannelRef("C0OPSROOM"))
    assert shop.authorization.four_eyes is True

    assert checkout.router == GatewayApiRouter(
        provider="gateway-api",
        http_route="checkout",
        stable_service="checkout",
        canary_service="checkout-canary",
        rule_index=0,
    )
    assert [stage.verification for stage in checkout.plan.stages] == [
        Verification(job="smoke", timeout_s=300, log_lines=20),
        Verification(job="load", timeout_s=900),
        None,
    ]
    assert checkout.verification.service_account == "checkout-tests"
    assert sorted(checkout.verification.jobs) == ["load", "smoke"]
    smoke = checkout.verification.jobs["smoke"]["template"]["spec"]["containers"][0]
    assert smoke["args"] == ["--target", "$(RELEASE_TARGET_URL)"]
    assert checkout.container is None
    assert checkout.metrics.error_rate.max == 0.01
    assert checkout.slack_channel.is_id

    assert resizer.router == ReplicasRouter(provider="replicas", service="image-resizer")
    assert resizer.plan == Plan(
        name="fast",
        stages=(
            Stage(weight=10, duration_s=300),
            Stage(weight=50, duration_s=600, needs_approval=True),
            Stage(weight=100, duration_s=0),  # appended: the promotion
        ),
    )
    assert resizer.metrics == MetricsConfig()


def test_check_config_cli_on_the_example_exits_zero_with_a_summary() -> None:
    result = run_cli("check-config", "deploy/examples/apps.yaml")

    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    lines = result.stdout.splitlines()
    assert lines[0] == "OK: 5 apps, 4 plans"
    assert (
        "  storefront: shop/storefront an Argo Rollout: its own steps, channel #shop-releases"
        in lines
    )
    assert "  shop-api: shop/shop-api via istio, plan careful, channel #shop-releases" in lines
    assert (
        "  checkout: payments/checkout via gateway-api, plan verified, channel C0PAYMENTS" in lines
    )
    assert (
        "  verified: 5 % after Job template smoke for 30m → 50 % after Job template load for 2h"
        " → 100 %" in lines
    )
    assert (
        "  default (built in): 0 % by header for 1h → 5 % for 2h → 50 % for 4h + approval → 100 %"
        in lines
    )
    assert "  fast: 10 % for 5m → 50 % for 10m + approval → 100 %" in lines


def test_check_config_cli_lists_every_problem_and_exits_one() -> None:
    result = run_cli("check-config", "tests/data/config-many-mistakes.yaml")

    assert result.returncode == 1
    assert result.stdout == ""
    assert "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    assert lines[0] == "tests/data/config-many-mistakes.yaml: 7 problems:"
    assert len(lines) == 8
    assert lines[5] == (
        "  tests/data/config-many-mistakes.yaml:21:7: apps.shop-api.router.provider: "
        "unknown provider 'linkerd'; expected one of 'replicas', 'istio', 'gateway-api', 'none'"
    )


def test_an_app_without_a_router_is_blue_green_only_and_check_config_says_so(
    tmp_path: Path,
) -> None:
    path = write_config(tmp_path, VALID_APP.partition("    router:")[0])

    assert load_config(path).apps["shop-api"].router == NoRouter(provider="none")
    result = run_cli("check-config", str(path))
    assert result.returncode == 0, result.stderr
    assert "  shop-api: shop/shop-api no router: blue-green only, channel #releases" in (
        result.stdout.splitlines()
    )


def test_check_config_cli_on_a_missing_file_is_a_clear_error() -> None:
    result = run_cli("check-config", "no/such/apps.yaml")

    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert result.stderr.splitlines() == [
        "no/such/apps.yaml: 1 problem:",
        "  no/such/apps.yaml: file not found",
    ]


# ---------------------------------------------------------------- mistakes, one at a time

MISTAKES = {
    "unknown field": (
        VALID_APP + "    colour: blue\n",
        "11:5: apps.shop-api.colour: unknown field",
    ),
    "misspelt field gets a suggestion": (
        VALID_APP + "    slack_chanel: C0123\n",
        "11:5: apps.shop-api.slack_chanel: unknown field (did you mean 'slack_channel'?)",
    ),
    "wrong provider": (
        VALID_APP.replace("provider: istio", "provider: linkerd"),
        "7:7: apps.shop-api.router.provider: unknown provider 'linkerd'; "
        "expected one of 'replicas', 'istio', 'gateway-api', 'none'",
    ),
    "missing provider": (
        VALID_APP.replace("      provider: istio\n", ""),
        "6:5: apps.shop-api.router.provider: required field is missing",
    ),
    "missing router field": (
        VALID_APP.replace("      host: shop-api\n", ""),
        "6:5: apps.shop-api.router.host: required field is missing",
    ),
    "field of another router": (
        VALID_APP + "      http_route: shop-api\n",
        "11:7: apps.shop-api.router.http_route: unknown field here "
        "(it belongs to another block or router provider)",
    ),
    "unknown plan": (
        VALID_APP + "    plan: fastest\n",
        "11:5: apps.shop-api.plan: unknown plan 'fastest'; known plans: default",
    ),
    "bad duration": (
        VALID_APP + "plans:\n  fast:\n    - weight: 10\n      duration: 2x\n",
        "14:7: plans.fast[0].duration: '2x' is not a duration: write a number with a unit "
        "(d, h, m, s), largest first, e.g. '90s', '30m', '1h', '2h30m'",
    ),
    "duration without a unit": (
        VALID_APP + "plans:\n  fast:\n    - weight: 10\n      duration: 300\n",
        "14:7: plans.fast[0].duration: a duration needs a unit, e.g. '90s', '30m', '1h'; got 300",
    ),
    "weight 150": (
        VALID_APP + "plans:\n  fast:\n    - weight: 150\n      duration: 1h\n",
        "13:7: plans.fast[0].weight: must be less than or equal to 100, got 150",
    ),
    "weight not a number": (
        VALID_APP + "plans:\n  fast:\n    - weight: 5%\n      duration: 1h\n",
        "13:7: plans.fast[0].weight: must be a valid integer, got '5%'",
    ),
    "decreasing weights": (
        VALID_APP + "plans:\n  slow:\n    - {weight: 50, duration: 1h}\n"
        "    - {weight: 20, duration: 1h}\n",
        "12:3: plans.slow: stage weights must not decrease: stage [1] has 20 % after 50 % "
        "in stage [0]",
    ),
    "a stage after 100": (
        VALID_APP + "plans:\n  slow:\n    - {weight: 100, duration: 1h}\n"
        "    - {weight: 100, duration: 1h}\n",
        "12:3: plans.slow: nothing may follow a 100 % stage, but stage [1] does",
    ),
    "empty plan": (
        VALID_APP + "plans:\n  slow: []\n",
        "12:3: plans.slow: a plan needs at least one stage",
    ),
    "header routing with public traffic": (
        VALID_APP + "plans:\n  slow:\n    - {weight: 5, duration: 1h, header_routed: true}\n",
        "13:7: plans.slow[0]: header_routed applies only to a 0 % stage (internal validation), "
        "this stage has weight 5",
    ),
    "redefining the built-in default plan": (
        VALID_APP + "plans:\n  default:\n    - {weight: 5, duration: 1h}\n",
        "12:3: plans.default: invalid name: the built-in plan 'default' cannot be redefined; "
        "define your plan under another name and set 'default_plan: <name>' to make apps use "
        "it by default",
    ),
    "unknown default_plan": (
        VALID_APP + "default_plan: fast\n",
        "11:1: default_plan: unknown plan 'fast'; known plans: default",
    ),
    "app name with capitals": (
        VALID_APP.replace("  shop-api:", "  Shop-API:"),
        "2:3: apps.Shop-API: invalid name: 'Shop-API' is not a valid name: lowercase letters, "
        "digits and '-', at most 63 characters",
    ),
    "bad channel": (
        VALID_APP.replace('"#releases"', '"#Releases"'),
        "5:5: apps.shop-api.slack_channel: '#Releases' is not a Slack channel ID (C0123ABCD) "
        "or name ('#releases', lowercase)",
    ),
    "plain-text mention": (
        VALID_APP + "    alert_mention: '@oncall'\n",
        "11:5: apps.shop-api.alert_mention: '@oncall' is not Slack mentions such as '<!here>', "
        "'<!subteam^S0123ABCD>' or '<@U0123ABCD>' ('' for none)",
    ),
    "user name instead of ID": (
        VALID_APP + "    authorization:\n      approve: [U0123ABCD, bob]\n",
        "12:28: apps.shop-api.authorization.approve[1]: 'bob' is not a Slack user ID (U0123ABCD) "
        "or user-group ID (S0123ABCD)",
    ),
    "rollback rights, no longer a setting": (
        VALID_APP + "    authorization:\n      rollback: [U0123ABCD]\n",
        "12:7: apps.shop-api.authorization.rollback: 'rollback' is no longer a setting: stopping "
        "harm is never gated, so anyone in the app's channels may roll back (and pause and "
        "resume); remove this line",
    ),
    "four_eyes not a boolean": (
        VALID_APP + "    authorization:\n      four_eyes: maybe\n",
        "12:7: apps.shop-api.authorization.four_eyes: must be a valid boolean, got 'maybe'",
    ),
    "four_eyes quoted": (
        VALID_APP + '    authorization:\n      four_eyes: "true"\n',
        "12:7: apps.shop-api.authorization.four_eyes: must be a boolean, got the text 'true': "
        "write true without quotes",
    ),
    "min_requests quoted": (
        VALID_APP + "    metrics:\n      min_requests: '5'\n",
        "12:7: apps.shop-api.metrics.min_requests: must be a number, got the text '5': "
        "write 5 without quotes",
    ),
    "error rate quoted": (
        VALID_APP + "    metrics:\n      error_rate: {max: '0.05'}\n",
        "12:20: apps.shop-api.metrics.error_rate.max: must be a number, got the text '0.05': "
        "write 0.05 without quotes",
    ),
    "a stage of no time": (
        VALID_APP + "plans:\n  fast:\n    - {weight: 10, duration: 0s}\n",
        "13:20: plans.fast[0].duration: a 10 % stage of 0s gives no metric check a chance to "
        "run: give it a duration such as '10m' (only the final 100 % stage, the promotion, or "
        "a stage held for approval may take 0s)",
    ),
    "error rate as a percentage": (
        VALID_APP + "    metrics:\n      error_rate: {max: 5}\n",
        "12:20: apps.shop-api.metrics.error_rate.max: must be a fraction between 0 and 1 "
        "(0.05 means 5 %), got 5",
    ),
    "latency block with no limit": (
        VALID_APP + "    metrics:\n      p99_latency_ms: {}\n",
        "12:7: apps.shop-api.metrics.p99_latency_ms: set 'max', 'max_above_stable' or both "
        "(or drop the block)",
    ),
    "zero check interval": (
        VALID_APP + "    metrics:\n      interval: 0s\n",
        "12:7: apps.shop-api.metrics.interval: must be longer than 0s, got '0s'",
    ),
    "zero snapshot interval": (
        VALID_APP + "    metrics:\n      snapshot_interval: 0s\n",
        "12:7: apps.shop-api.metrics.snapshot_interval: must be longer than 0s, got '0s'",
    ),
    "snapshot interval without a unit": (
        VALID_APP + "    metrics:\n      snapshot_interval: 900\n",
        "12:7: apps.shop-api.metrics.snapshot_interval: a duration needs a unit, "
        "e.g. '90s', '30m', '1h'; got 900",
    ),
    "qps block without a minimum": (
        VALID_APP + "    metrics:\n      qps: {}\n",
        "12:7: apps.shop-api.metrics.qps.min: required field is missing",
    ),
    "zero qps minimum": (
        VALID_APP + "    metrics:\n      qps: {min: 0}\n",
        "12:13: apps.shop-api.metrics.qps.min: must be greater than 0, got 0",
    ),
    "qps maximum besides the minimum": (
        VALID_APP + "    metrics:\n      qps: {min: 1, max: 500}\n",
        "12:21: apps.shop-api.metrics.qps.max: unknown field here (it belongs to another block "
        "or router provider)",
    ),
    "unknown metrics preset": (
        VALID_APP + "    metrics:\n      provider: datadog\n",
        "12:7: apps.shop-api.metrics.provider: must be 'generic' or 'istio', got 'datadog'",
    ),
    "prometheus URL without scheme": (
        VALID_APP + "    metrics:\n      prometheus_url: prometheus:9090\n",
        "12:7: apps.shop-api.metrics.prometheus_url: 'prometheus:9090' is not an http(s) URL "
        "such as 'http://prometheus:9090'",
    ),
    "same stable and canary Service": (
        VALID_APP.partition("    router:")[0] + "    router:\n      provider: gateway-api\n"
        "      http_route: shop\n      stable_service: shop\n      canary_service: shop\n",
        "6:5: apps.shop-api.router: stable_service and canary_service are both 'shop'",
    ),
    "two apps for one Deployment": (
        VALID_APP + VALID_APP.replace("apps:\n", "").replace("  shop-api:", "  shop-api-two:"),
        "13:5: apps.shop-api-two.workload: Deployment shop/shop-api already belongs to app "
        "'shop-api'; one Deployment, one app",
    ),
    "key written twice": (
        VALID_APP + "    namespace: other\n",
        "11:5: apps.shop-api.namespace: key written twice (first on line 3)",
    ),
    "no apps": (
        "apps: {}\n",
        "1:1: apps: no apps defined: describe at least one under 'apps:'",
    ),
    "apps not a mapping": (
        "apps:\n  - shop-api\n",
        "1:1: apps: must be a mapping ('key: value' lines), got ['shop-api']",
    ),
    "YAML syntax error": (
        VALID_APP.replace("namespace: shop", "namespace: [shop"),
        "4:13: YAML syntax error: while parsing a flow sequence on line 3, "
        "expected ',' or ']', but got ':'",
    ),
    "tab indentation": (
        VALID_APP.replace("    namespace", "\tnamespace"),
        "3:1: YAML syntax error: found character '\\t' that cannot start any token",
    ),
}


@pytest.mark.parametrize("text, expected", MISTAKES.values(), ids=MISTAKES.keys())
def test_each_mistake_is_named_with_file_line_and_path(
    tmp_path: Path, text: str, expected: str
) -> None:
    path = write_config(tmp_path, text)

    assert problems_in(path) == [f"{path}:{expected}"]


def test_the_valid_app_used_by_the_mistake_cases_loads(tmp_path: Path) -> None:
    assert list(load_config(write_config(tmp_path, VALID_APP)).apps) == ["shop-api"]


@pytest.mark.parametrize(
    "text, expected",
    [
        ("", "file is empty; expected 'apps:' (and optionally 'plans:')"),
        ("# only a comment\n", "file is empty; expected 'apps:' (and optionally 'plans:')"),
        ("- shop-api\n", "(top level): must be a mapping ('key: value' lines), got ['shop-api']"),
    ],
    ids=["empty", "comment only", "a list"],
)
def test_a_file_without_a_mapping_is_named(tmp_path: Path, text: str, expected: str) -> None:
    path = write_config(tmp_path, text)

    assert problems_in(path) == [f"{path}: {expected}"]


def test_missing_file_and_directory_are_clear_errors(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"

    assert problems_in(missing) == [f"{missing}: file not found"]
    # A directory is read for its *.yaml and *.yml files; one without any is named.
    assert problems_in(tmp_path) == [
        f"{tmp_path}: is a directory without any *.yaml or *.yml file in it"
    ]


def test_a_file_that_is_not_utf8_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "apps.yaml"
    path.write_bytes(b"apps:\n  \xff\xfe: {}\n")

    assert problems_in(path) == [f"{path}: not UTF-8 text (byte 8)"]


# ---------------------------------------------------------------- many mistakes at once


def test_several_mistakes_are_all_reported_at_once_in_file_order() -> None:
    problems = problems_in(MANY_MISTAKES)

    where = [problem.split(": ")[0].removeprefix(f"{MANY_MISTAKES}:") for problem in problems]
    paths = [problem.split(": ")[1] for problem in problems]
    assert where == ["5:7", "6:7", "8:3", "19:5", "21:7", "27:5", "32:7"]
    assert paths == [
        "plans.fast[0].duration",
        "plans.fast[1].weight",
        "plans.backwards",
        "apps.shop-api.plan",
        "apps.shop-api.router.provider",
        "apps.checkout.router.host",
        "apps.checkout.metrics.windw",
    ]
    assert problems[-1].endswith("unknown field (did you mean 'window'?)")


def test_an_app_naming_a_plan_with_its_own_mistakes_is_not_flagged_twice(tmp_path: Path) -> None:
    text = VALID_APP + "    plan: fast\nplans:\n  fast:\n    - {weight: 10, duration: soon}\n"
    path = write_config(tmp_path, text)

    problems = problems_in(path)

    assert len(problems) == 1
    assert problems[0].startswith(f"{path}:14:20: plans.fast[0].duration: 'soon' is not a duration")


def test_a_key_written_twice_points_at_the_copy_safe_load_keeps(tmp_path: Path) -> None:
    text = VALID_APP + "  shop-api:\n    namespace: shop\n"
    path = write_config(tmp_path, text)

    assert problems_in(path) == [
        f"{path}:11:3: apps.shop-api: key written twice (first on line 2)",
        f"{path}:11:3: apps.shop-api.workload: required field is missing",
        f"{path}:11:3: apps.shop-api.slack_channel: required field is missing",
    ]


# ---------------------------------------------------------------- plans


def load_with_plans(tmp_path: Path, plans_yaml: str) -> BotConfig:
    return load_config(write_config(tmp_path, VALID_APP + plans_yaml))


def test_the_built_in_default_plan_exists_without_a_plans_section(tmp_path: Path) -> None:
    config = load_with_plans(tmp_path, "")

    assert config.plans == {"default": DEFAULT_PLAN}
    assert config.app("shop-api").plan is DEFAULT_PLAN


def test_a_plan_below_100_gets_the_promotion_stage_appended(tmp_path: Path) -> None:
    config = load_with_plans(tmp_path, "plans:\n  quick:\n    - {weight: 20, duration: 2h30m}\n")

    assert config.plan("quick").stages == (
        Stage(weight=20, duration_s=9000),
        Stage(weight=100, duration_s=0),
    )


def test_a_plan_ending_at_100_is_kept_as_written(tmp_path: Path) -> None:
    plans = "plans:\n  quick:\n    - {weight: 0, duration: 0s, approval: true}\n" + (
        "    - {weight: 100, duration: 1d}\n"
    )
    config = load_with_plans(tmp_path, plans)

    assert config.plan("quick").stages == (
        Stage(weight=0, duration_s=0, needs_approval=True),
        Stage(weight=100, duration_s=86400),
    )


def test_default_plan_sets_the_plan_of_apps_that_name_none(tmp_path: Path) -> None:
    config = load_with_plans(
        tmp_path, "default_plan: quick\nplans:\n  quick:\n    - {weight: 20, duration: 1h}\n"
    )

    assert config.app("shop-api").plan.name == "quick"
    assert config.plan("default") is DEFAULT_PLAN


def test_unknown_plan_and_app_name_what_exists(tmp_path: Path) -> None:
    config = load_with_plans(tmp_path, "plans:\n  quick:\n    - {weight: 20, duration: 1h}\n")

    with pytest.raises(UnknownPlan, match=r"^unknown plan 'fastest'; known plans: default, quick$"):
        config.plan("fastest")
    with pytest.raises(UnknownApp, match=r"^unknown app 'shop'; known apps: shop-api$") as raised:
        config.app("shop")
    assert raised.value.known == ("shop-api",)


# ---------------------------------------------------------------- defaults and helpers


def test_an_app_with_only_required_fields_gets_the_documented_defaults(tmp_path: Path) -> None:
    app = load_config(write_config(tmp_path, VALID_APP)).app("shop-api")

    assert app == AppConfig(
        name="shop-api",
        namespace="shop",
        workload="shop-api",
        container=None,
        router=IstioRouter(
            provider="istio",
            virtual_service="shop-api",
            destination_rule="shop-api",
            host="shop-api",
            route_index=0,
        ),
        slack_channel=ChannelRef("releases"),
        plan=DEFAULT_PLAN,
        metrics=app.metrics,
        alert_mention="<!here>",
        authorization=app.authorization,
    )
    metrics = app.metrics
    assert (metrics.provider, metrics.prometheus_url) == ("generic", None)
    assert (metrics.interval_s, metrics.window_s) == (60, 300)
    assert (metrics.min_requests, metrics.failure_limit) == (50, 1)
    assert metrics.error_rate == ErrorRateLimits(max=0.05, max_above_stable=None)
    assert metrics.p99_latency_ms is None
    assert metrics.qps is None
    assert metrics.snapshot_interval_s == 900
    authorization = app.authorization
    assert (authorization.start, authorization.approve, authorization.promote) == ((), (), ())
    assert (authorization.channels, authorization.four_eyes) == ((), False)


def test_loaded_objects_are_immutable(tmp_path: Path) -> None:
    app = load_config(write_config(tmp_path, VALID_APP)).app("shop-api")

    with pytest.raises(ValueError, match="frozen"):
        app.namespace = "other"
    with pytest.raises(ValueError, match="frozen"):
        app.metrics.min_requests = 1


def test_top_level_x_keys_hold_anchors_for_merging(tmp_path: Path) -> None:
    text = """\
x-shared: &shared
  namespace: shop
  slack_channel: C0123ABCD
  router: {provider: gateway-api, http_route: shop, stable_service: shop, canary_service: canary}
apps:
  cart: {<<: *shared, workload: cart}
  search: {<<: *shared, workload: search}
"""
    config = load_config(write_config(tmp_path, text))

    assert [(app.namespace, app.workload) for app in config.apps.values()] == [
        ("shop", "cart"),
        ("shop", "search"),
    ]


@pytest.mark.parametrize(
    "text, seconds, shown",
    [
        ("1m30s", 90, "1m 30s"),
        ("30m", 1800, "30m"),
        ("1h", 3600, "1h"),
        ("2h30m", 9000, "2h 30m"),
        ("1d2h3m4s", 93784, "1d 2h 3m 4s"),
        ("0s", 0, "0s"),
    ],
)
def test_durations_parse_and_format_back(text: str, seconds: int, shown: str) -> None:
    assert parse_duration(text) == seconds
    assert format_duration(seconds) == shown
    assert parse_duration(shown) == seconds


def test_a_replicas_app_cannot_run_a_plan_with_a_header_routed_stage(tmp_path: Path) -> None:
    text = "apps:\n  cart:\n    namespace: shop\n    workload: cart\n    slack_channel: C0123ABCD\n"
    text += "    router: {provider: replicas}\n"

    with pytest.raises(ConfigError) as raised:
        load_config(write_config(tmp_path, text))

    assert "apps.cart.plan: plan 'default' has a header-routed stage, which router 'replicas' " in (
        str(raised.value)
    )
    config = load_config(write_config(tmp_path, text + "    plan: fast\n" + FAST_PLAN))
    app = config.app("cart")
    assert plan_refusal(app, app.plan) is None
    assert plan_refusal(app, DEFAULT_PLAN) == (
        "cart: plan 'default' has a header-routed stage, which router 'replicas' cannot run "
        "(it splits traffic by pod count only); use a plan without header_routed stages, or "
        "router istio or gateway-api"
    )


FAST_PLAN = "plans:\n  fast:\n    - {weight: 10, duration: 1m}\n"


def test_durations_may_use_any_amount_of_a_unit() -> None:
    assert (parse_duration("90s"), parse_duration("90m"), parse_duration(" 36h ")) == (
        90,
        5400,
        129600,
    )


@pytest.mark.parametrize("text", ["", "90", "1.5h", "30m1h", "1 h", "1hour", "-5m"])
def test_malformed_durations_are_refused_with_the_accepted_form(text: str) -> None:
    with pytest.raises(ValueError, match=r"is not a duration: write a number with a unit"):
        parse_duration(text)


def test_a_channel_matches_a_slack_payload_by_id_or_by_name() -> None:
    by_id, by_name = ChannelRef("C0123ABCD"), ChannelRef("releases")

    assert by_id.matches(channel_id="C0123ABCD", channel_name="anything")
    assert not by_id.matches(channel_id="C0999", channel_name="C0123ABCD")
    assert by_name.matches(channel_id="C0999", channel_name="releases")
    assert not by_name.matches(channel_id="releases", channel_name="ops")
    assert (str(by_id), str(by_name)) == ("C0123ABCD", "#releases")


VERIFIED_APP = """apps:
  cart:
    namespace: shop
    workload: cart
    slack_channel: C0123ABCD
    router: {provider: gateway-api, http_route: cart, stable_service: cart, canary_service: cc}
    plan: checked
"""
SMOKE_TEMPLATE = "{template: {spec: {containers: [{name: smoke, image: curl}]}}}"


def test_a_stage_names_an_apps_job_template_or_an_inline_one(tmp_path: Path) -> None:
    text = (
        VERIFIED_APP
        + f"""    verification: {{service_account: cart-tests, jobs: {{smoke: {SMOKE_TEMPLATE}}}}}
plans:
  checked:
    - {{weight: 10, duration: 1m, verification: {{job: smoke, timeout: 2m, log_lines: 5}}}}
    - {{weight: 50, duration: 1m, verification: {{template: {SMOKE_TEMPLATE}}}}}
"""
    )
    app = load_config(write_config(tmp_path, text)).app("cart")

    template = {"template": {"spec": {"containers": [{"name": "smoke", "image": "curl"}]}}}
    assert [stage.verification for stage in app.plan.stages] == [
        Verification(job="smoke", timeout_s=120, log_lines=5),
        Verification(template=template, timeout_s=600, log_lines=20),
        None,
    ]
    assert app.verification.service_account == "cart-tests"
    assert app.verification.jobs == {"smoke": template}


def test_verification_mistakes_are_each_named_where_they_are(tmp_path: Path) -> None:
    text = (
        VERIFIED_APP
        + """    verification:
      jobs:
        smoke: {template: {spec: {serviceAccountName: root, containers: [{name: smoke}]}}}
        load: {activeDeadlineSeconds: 5, template: {spec: {containers: []}}}
plans:
  checked:
    - {weight: 10, duration: 1m, verification: {job: missing}}
    - {weight: 20, duration: 1m, verification: {}}
    - {weight: 30, duration: 1m, verification: {job: smoke, log_lines: 500, timeout: 0s}}
"""
    )
    problems = problems_in(write_config(tmp_path, text))

    assert any(
        ":10:9: apps.cart.verification.jobs.smoke: template.spec.containers[0] needs a 'name' "
        "and an 'image'; template.spec.serviceAccountName is set by the bot: the Job runs with "
        "the app's ServiceAccount" in problem
        for problem in problems
    ), problems
    assert any(
        "apps.cart.verification.jobs.load: needs 'template.spec.containers'" in p for p in problems
    ), problems
    assert any(
        "plans.checked[1].verification: name the Job with 'job: <template name>'" in p
        for p in problems
    ), problems
    assert any("plans.checked[2].verification.log_lines: must be less than" in p for p in problems)
    assert any("plans.checked[2].verification.timeout:" in p for p in problems), problems
    assert len(problems) == 5, problems  # the app's plan has mistakes: its Job names wait


def test_an_app_must_define_the_job_templates_its_plan_names(tmp_path: Path) -> None:
    text = (
        VERIFIED_APP
        + f"""    verification: {{jobs: {{smoke: {SMOKE_TEMPLATE}}}}}
plans:
  checked:
    - {{weight: 10, duration: 1m, verification: {{job: load}}}}
  other:
    - {{weight: 10, duration: 1m, verification: {{job: smoke}}}}
"""
    )
    problems = problems_in(write_config(tmp_path, text))

    assert problems == [
        f"{tmp_path / 'apps.yaml'}:7:5: apps.cart.plan: plan 'checked' runs verification Job "
        "template(s) load, which the app does not define under verification.jobs (it defines: "
        "smoke)"
    ]
    fixed = load_config(write_config(tmp_path, text.replace("job: load", "job: smoke")))
    app = fixed.app("cart")
    assert plan_refusal(app, fixed.plan("other")) is None
    loaded = Plan(
        "loaded", (Stage(weight=10, duration_s=60, verification=Verification(job="load")),)
    )
    assert plan_refusal(app, loaded) == (  # `--plan loaded` at start
        "cart: plan 'loaded' runs verification Job template(s) load, which the app does not "
        "define under verification.jobs (it defines: smoke)"
    )


def test_a_blue_green_preview_may_name_a_job_which_hybrid_runs_too(tmp_path: Path) -> None:
    text = (
        VERIFIED_APP
        + f"""    verification: {{jobs: {{smoke: {SMOKE_TEMPLATE}}}}}
    bluegreen: {{verification: {{job: smoke, timeout: 3m, log_lines: 7}}}}
plans:
  checked:
    - {{weight: 10, duration: 1m}}
"""
    )
    app = load_config(write_config(tmp_path, text)).app("cart")

    smoke = Verification(job="smoke", timeout_s=180, log_lines=7)
    preview, watch = app.bluegreen.plan().stages
    assert (preview.verification, watch.verification) == (smoke, None)
    hybrid = app.bluegreen.hybrid_plan(app.plan).stages
    assert [stage.verification for stage in hybrid] == [smoke, None, None]
    assert BlueGreenConfig().plan().stages[0].verification is None  # none unless named


def test_a_blue_green_preview_job_is_checked_like_a_stage_s(tmp_path: Path) -> None:
    text = (
        VERIFIED_APP
        + f"""    verification: {{jobs: {{smoke: {SMOKE_TEMPLATE}}}}}
    bluegreen: {{verification: {{job: load}}}}
plans:
  checked:
    - {{weight: 10, duration: 1m}}
"""
    )
    problems = problems_in(write_config(tmp_path, text))
    assert problems == [
        f"{tmp_path / 'apps.yaml'}:9:17: apps.cart.bluegreen.verification: plan 'blue-green' runs "
        "verification Job template(s) load, which the app does not define under "
        "verification.jobs (it defines: smoke)"
    ]
    neither = text.replace("{verification: {job: load}}", "{verification: {timeout: 1m}}")
    assert any(
        "apps.cart.bluegreen.verification: name the Job with 'job: <template name>'" in p
        for p in problems_in(write_config(tmp_path, neither))
    )
