"""A bundle's README: the card's nested sections stay readable."""

from __future__ import annotations

from spec_tool_node.bundle import render_card
from spec_tool_node.config import CascadeConfig, ModelSpec


def test_the_card_renders_nested_sections_as_nested_lists():
    config = CascadeConfig(
        mode="F",
        threshold=0.26,
        multi_turn_threshold=0.46,
        verifier=ModelSpec(model="qwen", adapter="adapters/verifier"),
    )
    card = {
        "rebuild": "python benchmarks/default_bundle.py",
        "verifier": {"layers": [15], "held-out AUROC": {"overall": 0.874, "multiple": 0.767}},
    }
    text = render_card(config, card)
    assert "Mode F, threshold 0.26 (later in a conversation: 0.46)." in text
    assert "- verifier: `qwen` + adapter `adapters/verifier`" in text
    assert "## rebuild\n\npython benchmarks/default_bundle.py\n" in text
    assert "- layers: [15]\n- held-out AUROC:\n  - overall: 0.874\n  - multiple: 0.767\n" in text
    assert "{" not in text
    assert render_card(CascadeConfig(mode="A"), {}).startswith(
        "# spec-tool-node bundle\n\nMode A, threshold 0.5.\n"
    )
