"""The cost ledger: pricing bases, per-turn baselines and savings, and trajectory summaries."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from spec_tool_node.costs import (
    ROLES,
    CallRecord,
    CostModel,
    TokenPrice,
    TurnRecord,
    format_table,
    summarize,
)

PRICES = {
    "strong": TokenPrice(input=1.0, output=4.0),
    "cheap": TokenPrice(input=0.1, output=0.4),
    "verifier": TokenPrice(input=0.05, output=0.0),
}


def call(
    role: str, purpose: str, tokens: tuple[int, int] = (0, 0), wall_s: float = 0.0
) -> CallRecord:
    return CallRecord(
        role=role,
        model=f"{role}-model",
        purpose=purpose,
        input_tokens=tokens[0],
        output_tokens=tokens[1],
        wall_s=wall_s,
    )


def test_defaults_are_the_seed_studys() -> None:
    model = CostModel()
    assert (model.strong, model.cheap, model.verifier) == (1.0, 0.15, 0.05)
    assert model.basis == "calls"
    assert model.prices is None
    assert ROLES == ("strong", "cheap", "verifier")


def test_calls_basis_ignores_tokens_and_time() -> None:
    model = CostModel(cheap=0.2)
    assert model.cost(call("strong", "act", (5000, 500), 9.0)) == 1.0
    assert model.cost(call("cheap", "draft", (5000, 500), 9.0)) == 0.2
    assert model.cost(call("verifier", "verify")) == 0.05


def test_tokens_basis_prices_per_million_tokens() -> None:
    model = CostModel(basis="tokens", prices=PRICES)
    assert model.cost(call("cheap", "draft", (1000, 200))) == pytest.approx(180e-6)
    assert model.cost(call("strong", "act", (1_000_000, 1_000_000))) == pytest.approx(5.0)
    assert model.cost(call("verifier", "verify", (2000, 1))) == pytest.approx(100e-6)


def test_wall_basis_costs_seconds() -> None:
    model = CostModel(basis="wall", strong_wall_s=2.0)
    assert model.cost(call("cheap", "draft", (1000, 200), 0.75)) == 0.75


def test_cost_ignores_a_recorded_cost_and_priced_fills_it() -> None:
    model = CostModel()
    record = call("cheap", "draft").model_copy(update={"cost": 99.0})
    assert model.cost(record) == 0.15
    assert model.priced(call("strong", "act")).cost == 1.0


@pytest.mark.parametrize("field", ["strong", "cheap", "verifier"])
def test_negative_unit_cost_is_rejected(field: str) -> None:
    with pytest.raises(ValidationError, match=field):
        CostModel(**{field: -0.1})


def test_zero_cost_is_allowed() -> None:
    assert CostModel(verifier=0.0).verifier == 0.0


def test_negative_token_price_is_rejected() -> None:
    with pytest.raises(ValidationError, match="greater than or equal to 0"):
        TokenPrice(input=-1.0, output=0.0)


def test_tokens_basis_needs_every_price() -> None:
    with pytest.raises(ValidationError, match="missing: strong, cheap, verifier"):
        CostModel(basis="tokens")
    with pytest.raises(ValidationError, match="missing: verifier"):
        CostModel(basis="tokens", prices={"strong": PRICES["strong"], "cheap": PRICES["cheap"]})


def test_wall_basis_needs_a_strong_estimate() -> None:
    with pytest.raises(ValidationError, match="strong_wall_s"):
        CostModel(basis="wall")


@pytest.mark.parametrize(
    "fields",
    [
        {"basis": "dollars"},
        {"stronk": 1.0},
        {"prices": {"oracle": {"input": 1.0, "output": 1.0}}},
        {"prices": {"strong": {"input": 1.0}}},
    ],
)
def test_cost_model_rejects_bad_fields(fields: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        CostModel(**fields)


def test_call_record_rejects_negative_counts() -> None:
    with pytest.raises(ValidationError):
        call("cheap", "draft", (-1, 0))
    with pytest.raises(ValidationError):
        call("cheap", "draft", wall_s=-0.5)
    with pytest.raises(ValidationError):
        call("oracle", "draft")


def test_cost_model_round_trips_as_json() -> None:
    model = CostModel(basis="tokens", prices=PRICES, strong=2.0)
    assert CostModel.model_validate_json(model.model_dump_json()) == model


def test_turn_record_savings() -> None:
    turn = TurnRecord(mode="D", path="fallback", action="{}", cost=1.2, baseline_cost=1.0)
    assert turn.savings == pytest.approx(-0.2)
    assert turn.model_dump()["savings"] == pytest.approx(-0.2)
    assert TurnRecord.model_validate_json(turn.model_dump_json()) == turn


def test_calls_basis_baseline_is_one_strong_call() -> None:
    model = CostModel(strong=3.0)
    assert model.baseline([]) == 3.0
    assert model.baseline([call("strong", "act"), call("strong", "act")]) == 3.0


def test_tokens_baseline_uses_the_strong_action_when_there_is_one() -> None:
    model = CostModel(basis="tokens", prices=PRICES)
    calls = [call("cheap", "draft", (1000, 200)), call("strong", "act", (1000, 300))]
    assert model.baseline(calls) == pytest.approx(2200e-6)


def test_tokens_baseline_estimates_from_the_draft() -> None:
    # a strong *judge* call (mode C) is not the counterfactual action: the draft's counts are used
    model = CostModel(basis="tokens", prices=PRICES)
    calls = [call("cheap", "draft", (1000, 200)), call("strong", "judge", (1300, 1))]
    assert model.baseline(calls) == pytest.approx(1800e-6)
    assert model.baseline([call("verifier", "verify", (10, 0))]) == 0.0


def test_wall_baseline() -> None:
    model = CostModel(basis="wall", strong_wall_s=2.0)
    assert model.baseline([call("cheap", "draft", wall_s=0.4)]) == 2.0
    assert (
        model.baseline([call("cheap", "draft", wall_s=0.4), call("strong", "act", wall_s=3.5)])
        == 3.5
    )


def test_turn_prices_calls_and_fills_totals() -> None:
    model = CostModel()
    turn = model.turn(
        [call("cheap", "draft", wall_s=0.5), call("verifier", "verify", wall_s=0.1)],
        mode="D",
        path="accepted",
        action='{"respond": "hi"}',
        p_accept=0.9,
        winner="cheap",
    )
    assert [c.cost for c in turn.calls] == [0.15, 0.05]
    assert turn.cost == pytest.approx(0.2)
    assert turn.baseline_cost == 1.0
    assert turn.savings == pytest.approx(0.8)
    assert turn.wall_s == pytest.approx(0.6)
    assert model.turn([], mode="A", path="strong", action="{}", wall_s=7.0).wall_s == 7.0


def trajectory() -> list[TurnRecord]:
    model = CostModel()
    return [
        model.turn(
            [call("cheap", "draft", (100, 20), 0.5), call("verifier", "verify", (120, 0), 0.05)],
            mode="D",
            path="accepted",
            action="a0",
            p_accept=0.91,
            winner="cheap",
        ),
        model.turn(
            [
                call("cheap", "draft", (100, 25), 0.6),
                call("verifier", "verify", (125, 0), 0.05),
                call("strong", "act", (100, 20), 2.0),
            ],
            mode="D",
            path="fallback",
            action="a1",
            p_accept=0.12,
            reject_reason="below threshold",
            winner="strong",
        ),
        model.turn(
            [call("cheap", "draft", (80, 10), 0.4), call("verifier", "verify", (90, 0), 0.05)],
            mode="D",
            path="blocked",
            action="a2",
            p_accept=None,
            winner="cheap",
            safety="block",
            rule="no-delete",
        ),
    ]


def test_a_turn_repriced_under_its_own_model_is_unchanged() -> None:
    for turn in trajectory():
        assert CostModel().repriced(turn) == turn


def test_a_turn_repriced_under_other_prices_keeps_everything_but_its_costs() -> None:
    turn = trajectory()[1]
    dearer = CostModel(cheap=0.3, verifier=0.1, strong=2.0)
    again = dearer.repriced(turn)
    assert [c.cost for c in again.calls] == [0.3, 0.1, 2.0]
    assert again.cost == pytest.approx(2.4) and again.baseline_cost == 2.0
    assert again.savings == pytest.approx(-0.4)
    unpriced = {"calls", "cost", "baseline_cost", "savings"}
    assert again.model_dump(exclude=unpriced) == turn.model_dump(exclude=unpriced)
    assert [c.input_tokens for c in again.calls] == [c.input_tokens for c in turn.calls]
    tokens = CostModel(basis="tokens", prices=PRICES).repriced(turn)
    assert tokens.baseline_cost == pytest.approx((100 * 1.0 + 20 * 4.0) / 1e6)


def test_summarize_three_turns() -> None:
    summary = summarize(trajectory())
    assert summary.turns == 3
    assert summary.cost == pytest.approx(1.6)
    assert summary.baseline_cost == pytest.approx(3.0)
    assert summary.savings == pytest.approx(1.4)
    assert summary.relative_cost == pytest.approx(1.6 / 3.0)
    assert summary.accept_rate == pytest.approx(1 / 3)
    assert summary.wall_s == pytest.approx(3.65)
    assert summary.by_role["cheap"] == pytest.approx(
        {"calls": 3, "cost": 0.45, "input_tokens": 280, "output_tokens": 55, "wall_s": 1.5}
    )
    assert summary.by_role["verifier"] == pytest.approx(
        {"calls": 3, "cost": 0.15, "input_tokens": 335, "output_tokens": 0, "wall_s": 0.15}
    )
    assert summary.by_role["strong"] == pytest.approx(
        {"calls": 1, "cost": 1.0, "input_tokens": 100, "output_tokens": 20, "wall_s": 2.0}
    )


def test_summarize_nothing() -> None:
    summary = summarize([])
    assert (summary.turns, summary.cost, summary.relative_cost, summary.accept_rate) == (0, 0, 0, 0)
    assert set(summary.by_role) == set(ROLES)
    assert all(usage["calls"] == 0 for usage in summary.by_role.values())


def test_format_table() -> None:
    table = format_table(trajectory())
    lines = table.splitlines()
    assert lines[0].split() == [
        "turn", "mode", "path", "p_accept", "winner", "cost", "baseline", "savings"
    ]  # fmt: skip
    assert lines[2].split() == ["0", "D", "accepted", "0.91", "cheap", "0.2", "1", "0.8"]
    assert lines[3].split() == ["1", "D", "fallback", "0.12", "strong", "1.2", "1", "-0.2"]
    assert lines[4].split() == ["2", "D", "blocked", "-", "cheap", "0.2", "1", "0.8"]
    assert lines[6].split() == ["total", "33%", "accepted", "1.6", "3", "1.4"]
    assert lines[7] == "relative cost 0.533 of always-strong"
    assert len({len(line) for line in lines[:7]}) == 1  # columns line up


def test_format_table_of_no_turns() -> None:
    assert "total" in format_table([])
