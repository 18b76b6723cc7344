"""The apps file split in several (one per team), and cross-field problems reported with the
field ones: run by pytest, against bot.application.apps_file and `release-bot check-config`."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.application.apps_file import ConfigError, load_config
from tests.test_config import VALID_APP, run_cli

SHOP = VALID_APP  # app shop-api (istio), at lines 2-10
CART = """\
apps:
  cart:
    namespace: cart
    workload: cart
    slack_channel: C0CART
    plan: careful
    router: {provider: replicas}
"""
PLANS = """\
default_plan: careful
plans:
  careful:
    - {weight: 10, duration: 30m}
"""


def write(directory: Path, name: str, text: str) -> Path:
    path = directory / name
    path.write_text(text)
    return path


def problems(*paths: Path) -> list[str]:
    with pytest.raises(ConfigError) as raised:
        load_config(*paths)
    return raised.value.problems


def test_several_files_make_one_config_with_plans_shared_across_them(tmp_path: Path) -> None:
    shop, cart = write(tmp_path, "shop.yaml", SHOP), write(tmp_path, "cart.yaml", CART)
    plans = write(tmp_path, "plans.yaml", PLANS)  # no apps: a file of shared plans

    config = load_config(shop, cart, plans)

    assert list(config.apps) == ["shop-api", "cart"]
    assert list(config.plans) == ["default", "careful"]
    # cart names the plan of another file; shop-api names none and gets default_plan's.
    assert config.app("cart").plan is config.plan("careful")
    assert config.app("shop-api").plan is config.plan("careful")
    assert config.source == f"{shop}, {cart}, {plans}"


def test_a_directory_means_its_yaml_files_in_name_order(tmp_path: Path) -> None:
    write(tmp_path, "b-shop.yml", SHOP)
    write(tmp_path, "a-cart.yaml", CART)
    write(tmp_path, "c-plans.yaml", PLANS)
    write(tmp_path, "notes.txt", "not: yaml: at all")

    assert list(load_config(tmp_path).apps) == ["cart", "shop-api"]


def test_one_file_alone_still_needs_its_apps(tmp_path: Path) -> None:
    plans = write(tmp_path, "plans.yaml", PLANS)

    assert problems(plans) == [f"{plans}: apps: required field is missing"]


def test_a_name_defined_in_two_files_names_both_places(tmp_path: Path) -> None:
    first = write(
        tmp_path, "a.yaml", SHOP + "plans:\n  careful:\n    - {weight: 5, duration: 1h}\n"
    )
    second = write(tmp_path, "b.yaml", "\n" + SHOP.replace("shop-api\n", "shop-two\n") + PLANS)

    assert problems(first, second) == [
        f"{second}:3:3: apps.shop-api: app 'shop-api' is defined twice: also in {first}:2:3; "
        "app names must be unique across the files",
        f"{second}:14:3: plans.careful: plan 'careful' is defined twice: also in {first}:12:3; "
        "plan names must be unique across the files",
    ]


def test_default_plan_may_be_set_in_one_file_only(tmp_path: Path) -> None:
    first = write(tmp_path, "a.yaml", SHOP + PLANS)
    second = write(tmp_path, "b.yaml", CART + "default_plan: careful\n")

    assert problems(first, second) == [
        f"{second}:8:1: default_plan: also set in {first}:11:1; set default_plan in one file only"
    ]


def test_each_file_keeps_its_own_positions_and_every_file_is_checked(tmp_path: Path) -> None:
    shop = write(tmp_path, "shop.yaml", SHOP + "    colour: blue\n")
    missing = tmp_path / "gone.yaml"
    cart = write(tmp_path, "cart.yaml", CART.replace("C0CART", "'#Cart'") + PLANS)

    found = problems(shop, missing, cart)

    assert found == [
        f"{shop}:11:5: apps.shop-api.colour: unknown field",
        f"{missing}: file not found",
        f"{cart}:5:5: apps.cart.slack_channel: '#Cart' is not a Slack channel ID (C0123ABCD) "
        "or name ('#releases', lowercase)",
    ]


def test_a_deployment_shared_across_files_is_named(tmp_path: Path) -> None:
    shop = write(tmp_path, "shop.yaml", SHOP)
    other = write(tmp_path, "other.yaml", SHOP.replace("  shop-api:", "  storefront:"))

    assert problems(shop, other) == [
        f"{other}:4:5: apps.storefront.workload: Deployment shop/shop-api already belongs to app "
        f"'shop-api' (in {shop}); one Deployment, one app"
    ]


def test_cross_field_problems_come_out_with_the_field_problems(tmp_path: Path) -> None:
    text = (
        CART.replace("    plan: careful\n", "")  # replicas router on the header-routed default
        + SHOP.removeprefix("apps:\n")
        + SHOP.removeprefix("apps:\n").replace("  shop-api:", "  storefront:")  # same Deployment
        + "  broken:\n    namespace: Shop\n"  # field problems in another app...
        + "plans:\n  slow:\n    - {weight: 5, duration: soon}\n"  # ...and in a plan
    )
    path = write(tmp_path, "apps.yaml", text)

    found = [problem.removeprefix(f"{path}:") for problem in problems(path)]

    assert [problem.split(": ")[1] for problem in found] == [
        "apps.cart.plan",
        "apps.storefront.workload",
        "apps.broken.workload",
        "apps.broken.slack_channel",
        "apps.broken.namespace",
        "plans.slow[0].duration",
    ]
    assert "plan 'default' has a header-routed stage" in found[0]
    assert "already belongs to app 'shop-api'; one Deployment, one app" in found[1]


def test_check_config_takes_several_files_and_directories(tmp_path: Path) -> None:
    teams = tmp_path / "teams"
    teams.mkdir()
    write(teams, "cart.yaml", CART)
    plans = write(tmp_path, "plans.yaml", PLANS)

    result = run_cli("check-config", str(teams), str(plans))

    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[:3] == ["OK: 1 app, 2 plans", "apps:", (
        "  cart: cart/cart via replicas, plan careful, channel C0CART"
    )]  # fmt: skip

    broken = write(tmp_path, "broken.yaml", CART.replace("cart:\n    namespace", "x:\n    ns"))
    result = run_cli("check-config", str(teams), str(plans), str(broken))

    assert result.returncode == 1
    assert result.stderr.splitlines()[0] == f"{teams}, {plans}, {broken}: 2 problems:"
