"""An Argo Rollout's strategy as a release plan (bot.core.argo) and the Argo kinds' transitions.

Pure: the Rollout specs are the dicts the apiserver sends; the machine runs with no I/O.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from bot.core.apps import AppSettings
from bot.core.argo import (
    FailedMeasurement,
    RolloutAbort,
    RolloutSpecError,
    rollout_plan,
)
from bot.core.machine import (
    ARGO_TRANSITIONS,
    CANARY_TRANSITIONS,
    Accepted,
    CanaryReady,
    Notify,
    RolloutAborted,
    RolloutMovedOn,
    RolloutObserved,
    StageTimerElapsed,
    start_release,
    transition,
)
from bot.core.plan import Plan, Stage
from bot.core.release import NoticeKind, Phase, Release, ReleaseKind

T0 = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)


def canary(*steps: dict[str, Any]) -> dict[str, Any]:
    return {"strategy": {"canary": {"steps": list(steps)}}}


def argo_release(plan: Plan, *, four_eyes: bool = False) -> Release:
    """A release of shop v2 (replacing v1) walking `plan`, an Argo Rollout's, just started."""
    return start_release(
        release_id="rel-argo",
        app="shop",
        version="v2",
        previous_version="v1",
        plan=plan,
        requested_by="U0ANA",
        channel="C0DEPLOYS",
        four_eyes=four_eyes,
        now=T0,
        kind=ReleaseKind.ARGO_CANARY,
    ).release


def test_canary_steps_fall_into_stages_at_their_pauses() -> None:
    planned = rollout_plan(
        canary(
            {"setHeaderRoute": {"name": "qa", "match": [{"headerName": "x-canary"}]}},
            {"pause": {"duration": "1h"}},
            {"setWeight": 20},
            {"pause": {"duration": 90}},
            {"setWeight": 50},
            {"analysis": {"templates": [{"templateName": "error-rate"}]}},
            {"pause": {}},
            {"setWeight": 80},
        )
    )
    assert planned.strategy == "canary"
    assert planned.plan.name == "argo-canary"
    assert planned.plan.stages == (
        Stage(weight=0, duration_s=3600, header_routed=True),
        Stage(weight=20, duration_s=90),
        Stage(weight=50, duration_s=0, needs_approval=True),
        Stage(weight=100, duration_s=0),
    )
    assert [(s.first_step, s.gate_step) for s in planned.stages] == [
        (0, 1),
        (2, 3),
        (4, 6),
        (7, None),
    ]
    # which stage each step belongs to, and past the last step: the last stage
    assert [planned.stage_of_step(step) for step in range(9)] == [0, 0, 1, 1, 2, 2, 2, 3, 3]


def test_a_canary_without_pauses_is_one_final_stage() -> None:
    planned = rollout_plan(canary({"setWeight": 10}, {"setWeight": 60}))
    assert planned.plan.stages == (Stage(weight=100, duration_s=0),)
    assert planned.stage_of_step(0) == 0


def test_blue_green_is_a_preview_then_the_switch() -> None:
    gated = rollout_plan(
        {"strategy": {"blueGreen": {"activeService": "shop", "autoPromotionEnabled": False}}}
    )
    assert gated.strategy == "blueGreen"
    assert gated.plan.stages == (
        Stage(weight=0, duration_s=0, needs_approval=True),
        Stage(weight=100, duration_s=0),
    )
    timed = rollout_plan(
        {"strategy": {"blueGreen": {"activeService": "shop", "autoPromotionSeconds": 300}}}
    )
    assert timed.plan.stages[0] == Stage(weight=0, duration_s=300)


@pytest.mark.parametrize(
    ("spec", "problem"),
    [
        ({"strategy": {}}, "neither canary nor blueGreen"),
        ({}, "neither canary nor blueGreen"),
        ({"strategy": {"blueGreen": {}}}, "no activeService"),
        (canary({"setWeight": 150}), "step 0: setWeight must be 0..100, got 150"),
        (canary({"setWeight": "ten"}), "setWeight must be 0..100, got 'ten'"),
        (canary({"pause": {"duration": "soon"}}), "step 0: pause duration 'soon'"),
        (
            canary({"setWeight": 50}, {"pause": {}}, {"setWeight": 10}, {"pause": {}}),
            "stage weights must not decrease, got [50, 10, 100]",
        ),
    ],
)
def test_a_strategy_that_makes_no_plan_says_why(spec: dict[str, Any], problem: str) -> None:
    with pytest.raises(RolloutSpecError, match=problem.replace("[", r"\[").replace("]", r"\]")):
        rollout_plan(spec)


def test_the_argo_table_is_the_canarys_plus_what_argo_reports() -> None:
    added = set(ARGO_TRANSITIONS) - set(CANARY_TRANSITIONS)
    assert set(CANARY_TRANSITIONS) <= set(ARGO_TRANSITIONS)
    assert {event for _, event in added} == {RolloutAborted, RolloutObserved, RolloutMovedOn}
    followed_in = {phase for phase, event in added if event is RolloutMovedOn}
    assert followed_in == {Phase.RUNNING, Phase.AWAITING_APPROVAL}
    aborted_in = {phase for phase, event in added if event is RolloutAborted}
    observed_in = {phase for phase, event in added if event is RolloutObserved}
    assert observed_in == aborted_in | {Phase.ROLLING_BACK}
    assert aborted_in == {
        Phase.STARTING,
        Phase.VERIFYING,
        Phase.RUNNING,
        Phase.AWAITING_APPROVAL,
        Phase.PAUSED,
        Phase.PROMOTING,
    }


def test_an_abort_by_argos_analysis_alerts_the_channel_with_the_measurement() -> None:
    planned = rollout_plan(canary({"setWeight": 20}, {"pause": {"duration": 60}}))
    release = argo_release(planned.plan)
    running = transition(release, CanaryReady(), now=T0 + timedelta(seconds=20))
    assert isinstance(running, Accepted)
    abort = RolloutAbort(
        message='RolloutAborted: Metric "error-rate" assessed Failed due to failed (1) > '
        "failureLimit (0)",
        measurement=FailedMeasurement(
            run="shop-6b9d-2-1",
            metric="error-rate",
            value="[0.31]",
            condition="failure condition: result[0] > 0.05",
        ),
    )
    aborted = transition(
        running.release, RolloutAborted(abort=abort), now=T0 + timedelta(minutes=1)
    )
    assert isinstance(aborted, Accepted)
    assert aborted.release.phase is Phase.ROLLING_BACK
    assert aborted.release.outcome_by is None
    assert aborted.release.outcome_reason == "aborted by Argo Rollouts: error-rate measured [0.31]"
    alerts = [e for e in aborted.effects if isinstance(e, Notify)]
    assert [(a.kind, a.in_channel) for a in alerts] == [(NoticeKind.AUTO_ROLLBACK, True)]
    assert alerts[0].text == (
        "Argo Rollouts aborted shop v2 at stage 1/2 (20 %): analysis shop-6b9d-2-1 failed: "
        "error-rate measured [0.31] (failure condition: result[0] > 0.05); Argo says: "
        'RolloutAborted: Metric "error-rate" assessed Failed due to failed (1) > failureLimit (0).'
        " Its traffic goes back to stable v1"
    )
    # a native canary never hears of Argo: the same event is refused there
    native = running.release.evolve(kind=ReleaseKind.CANARY)
    assert not isinstance(transition(native, RolloutAborted(abort=abort), now=T0), Accepted)
    # and the Argo release's own stage timer still works as a canary's
    timer = transition(running.release, StageTimerElapsed(), now=T0 + timedelta(minutes=2))
    assert isinstance(timer, Accepted) and timer.release.stage_index == 1


def test_a_rollout_app_takes_no_router_and_starts_argo_kinds() -> None:
    rollout_app = {
        "namespace": "shop",
        "workload": "shop",
        "workload_kind": "Rollout",
        "slack_channel": "C0DEPLOYS",
    }
    app = AppSettings.model_validate(rollout_app)
    assert app.release_kind(ReleaseKind.CANARY) is ReleaseKind.ARGO_CANARY
    assert app.release_kind(ReleaseKind.BLUE_GREEN) is ReleaseKind.ARGO_BLUE_GREEN
    assert app.release_kind(ReleaseKind.ARGO_CANARY) is ReleaseKind.ARGO_CANARY
    with pytest.raises(ValueError, match="releases by its own canary or blueGreen strategy"):
        app.release_kind(ReleaseKind.HYBRID)
    routed = {**rollout_app, "router": {"provider": "replicas"}}
    with pytest.raises(ValueError, match="an Argo Rollout splits its traffic itself"):
        AppSettings.model_validate(routed)
    deployment_app = AppSettings.model_validate({**rollout_app, "workload_kind": "Deployment"})
    assert deployment_app.release_kind(ReleaseKind.HYBRID) is ReleaseKind.HYBRID


def test_a_release_follows_its_rollout_promoted_outside_the_bot() -> None:
    planned = rollout_plan(
        canary({"setWeight": 20}, {"pause": {}}, {"setWeight": 50}, {"pause": {}})
    )
    release = argo_release(planned.plan, four_eyes=True)
    running = transition(release, CanaryReady(), now=T0)
    assert isinstance(running, Accepted)
    waiting = transition(running.release, StageTimerElapsed(), now=T0)
    assert isinstance(waiting, Accepted) and waiting.release.phase is Phase.AWAITING_APPROVAL

    followed = transition(waiting.release, RolloutMovedOn(stage_index=1), now=T0)
    assert isinstance(followed, Accepted)
    assert (followed.release.phase, followed.release.stage_index) == (Phase.RUNNING, 1)
    assert followed.release.approvals == ()  # nobody approved here: nothing is recorded
    texts = [e.text for e in followed.effects if isinstance(e, Notify)]
    assert texts[0] == (
        "shop's Rollout moved on from stage 1/3 (20 %) to stage 2/3 (50 %) outside release-bot "
        "(promoted with kubectl or Argo's dashboard): the release follows it; release-bot's gates"
        " between were not asked"
    )
    behind = transition(followed.release, RolloutMovedOn(stage_index=1), now=T0)
    assert not isinstance(behind, Accepted)
    assert behind.reason == (
        "shop's Rollout is not ahead of its release: it is at stage 2, the release at "
        "stage 2/3 (50 %)"
    )
