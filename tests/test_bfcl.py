"""BFCL v4 loading: single-turn categories, schemas, the fixed split, multi-turn replay."""

from __future__ import annotations

import json
import re

import pytest

pytest.importorskip("bfcl_eval")

import jsonschema

from spec_tool_node import bfcl
from spec_tool_node.example_files import Example, tool_name


@pytest.fixture(scope="module")
def single_turn() -> dict[str, list[Example]]:
    return {name: bfcl.load_category(name) for name in bfcl.SINGLE_TURN_CATEGORIES}


@pytest.fixture(scope="module")
def base_0() -> list[Example]:
    return bfcl.load_multi_turn("multi_turn_base", ids=["multi_turn_base_0"])


def _walk(schema: object) -> list[dict]:
    """Every sub-schema (objects under properties/items/...), the schema itself first."""
    if not isinstance(schema, dict):
        return []
    out = [schema]
    for sub in (schema.get("properties") or {}).values():
        out.extend(_walk(sub))
    for key in ("items", "additionalProperties"):
        out.extend(_walk(schema.get(key)))
    return out


def test_categories_exclude_live_relevance() -> None:
    assert "live_relevance" not in bfcl.CATEGORIES
    assert set(bfcl.MULTI_TURN_CATEGORIES) <= set(bfcl.CATEGORIES)
    assert len(bfcl.CATEGORIES) == 14


def test_every_single_turn_category_loads(single_turn: dict[str, list[Example]]) -> None:
    for name, examples in single_turn.items():
        assert examples, name
        assert len({e.id for e in examples}) == len(examples), name
        for e in examples:
            assert e.meta == {"category": name, "source": "bfcl_v4"}
            assert e.messages and e.messages[-1]["role"] == "user"
            if name in bfcl.IRRELEVANCE_CATEGORIES:
                assert e.gold == "respond"
            else:
                assert isinstance(e.gold, list) and e.gold
                bound = {tool_name(t) for t in e.tools}
                for call in e.gold:
                    assert set(call) <= bound, e.id


def test_converted_schemas_are_valid_json_schema(single_turn: dict[str, list[Example]]) -> None:
    bfcl_only = {"dict", "float", "tuple", "any"}
    seen: set[str] = set()
    for examples in single_turn.values():
        for e in examples:
            for tool in e.tools:
                assert tool["type"] == "function"
                function = tool["function"]
                key = json.dumps(function, sort_keys=True)
                if key in seen:
                    continue
                seen.add(key)
                parameters = function["parameters"]
                assert parameters["type"] == "object"
                jsonschema.Draft202012Validator.check_schema(parameters)
                for sub in _walk(parameters):
                    assert sub.get("type") not in bfcl_only, function["name"]
                    assert "optional" not in sub


def test_convert_function_maps_types_at_every_level() -> None:
    doc = {
        "name": "geo.route",
        "description": "Plan a route.",
        "parameters": {
            "type": "dict",
            "properties": {
                "speed": {"type": "float", "description": "km/h", "optional": True},
                "start": {"type": "tuple", "items": {"type": "float"}},
                "stops": {
                    "type": "array",
                    "items": {"type": "dict", "properties": {"at": {"type": "any"}}},
                },
                "opts": {"type": "dict", "properties": {"fast": {"type": "boolean"}}},
            },
            "required": ["start"],
        },
        "response": {"type": "dict", "properties": {"km": {"type": "float"}}},
    }
    tool = bfcl.convert_function(doc)
    function = tool["function"]
    assert function["name"] == "geo.route"  # dots kept: BFCL matching uses the name
    assert function["description"].startswith("Plan a route.")
    assert "response field" in function["description"]
    assert "response" not in function
    p = function["parameters"]
    assert p["type"] == "object" and p["required"] == ["start"]
    assert p["properties"]["speed"] == {"type": "number", "description": "km/h"}
    assert p["properties"]["start"] == {"type": "array", "items": {"type": "number"}}
    assert p["properties"]["stops"]["items"]["type"] == "object"
    assert p["properties"]["stops"]["items"]["properties"]["at"] == {}
    assert p["properties"]["opts"]["properties"]["fast"] == {"type": "boolean"}
    assert doc["parameters"]["type"] == "dict"  # the input is not changed
    jsonschema.Draft202012Validator.check_schema(p)


def test_known_example_multiple_0(single_turn: dict[str, list[Example]]) -> None:
    (example,) = [e for e in single_turn["multiple"] if e.id == "multiple_0"]
    assert "triangle_properties.get" in {tool_name(t) for t in example.tools}
    (call,) = example.gold
    assert call["triangle_properties.get"]["side1"] == [5]
    assert call["triangle_properties.get"]["side3"] == [3]
    assert example.messages[0]["role"] == "user"
    assert "5 units" in example.messages[0]["content"]


def test_system_messages_are_kept_as_bfcl_gives_them(
    single_turn: dict[str, list[Example]],
) -> None:
    with_system = [e for e in single_turn["live_simple"] if e.messages[0]["role"] == "system"]
    assert with_system
    assert all(e.messages[0]["role"] != "system" for e in single_turn["simple_python"])


def test_split_rule() -> None:
    assert bfcl.split_of("live_simple_0-0-0") == "train"
    assert bfcl.split_of("live_irrelevance_12-3-1") == "train"
    assert bfcl.split_of("simple_python_3") == "heldout"
    assert bfcl.split_of("irrelevance_0") == "heldout"
    assert bfcl.split_of("multi_turn_base_2") == "train"
    assert bfcl.split_of("multi_turn_miss_param_3") == "heldout"
    assert bfcl.split_of("multi_turn_miss_func_12/turn1/step0") == "train"
    assert bfcl.split_of("multi_turn_long_context_13/turn0/step2") == "heldout"
    with pytest.raises(ValueError, match="no category"):
        bfcl.split_of("simple_java_1")


def test_heldout_has_no_live_and_no_even_multi_turn_ids() -> None:
    heldout = bfcl.load_split("heldout", limit_per_category=6)
    categories = {e.meta["category"] for e in heldout}
    assert set(bfcl.HELDOUT_SINGLE_TURN) <= categories
    assert set(bfcl.MULTI_TURN_CATEGORIES) <= categories
    for e in heldout:
        assert not e.id.startswith("live_"), e.id
        task = e.id.split("/")[0]
        if task.startswith("multi_turn_"):
            assert int(task.rsplit("_", 1)[1]) % 2 == 1, e.id
    per_task = {e.id.split("/")[0] for e in heldout if e.id.startswith("multi_turn_base")}
    assert len(per_task) == 6  # limit counts whole tasks for multi-turn categories


def test_train_split_is_live_and_even_multi_turn() -> None:
    train = bfcl.load_split(
        "train",
        categories=["live_simple", "simple_python", "multi_turn_miss_param"],
        limit_per_category=4,
    )
    assert {e.meta["category"] for e in train} == {"live_simple", "multi_turn_miss_param"}
    tasks = {e.meta["task_id"] for e in train if "task_id" in e.meta}
    assert tasks == {f"multi_turn_miss_param_{i}" for i in (0, 2, 4, 6)}


def test_multi_turn_replay_of_base_0(base_0: list[Example]) -> None:
    gt = bfcl.data.answers("multi_turn_base")["multi_turn_base_0"]
    assert gt[0][0] == "cd(folder='document')"
    assert len(base_0) == sum(len(t) for t in gt) + len(gt)
    assert [e.id for e in base_0][:4] == [
        "multi_turn_base_0/turn0/step0",
        "multi_turn_base_0/turn0/step1",
        "multi_turn_base_0/turn0/step2",
        "multi_turn_base_0/turn0/step3",
    ]
    first = base_0[0]
    assert first.gold == [{"cd": {"folder": ["document"]}}]
    assert first.messages == [
        {
            "role": "user",
            "content": "Move 'final_report.pdf' within document directory to 'temp' directory "
            "in document. Make sure to create the directory",
        }
    ]
    assert base_0[3].gold == "respond"  # the turn ends with an answer to the user
    # a positional argument is named from the environment's signature
    (sort_step,) = [e for e in base_0 if e.id == "multi_turn_base_0/turn2/step0"]
    assert sort_step.gold == [{"sort": {"file_name": ["final_report.pdf"]}}]
    for e in base_0:
        assert e.meta["task_id"] == "multi_turn_base_0"
        assert e.meta["category"] == "multi_turn_base" and e.meta["source"] == "bfcl_v4"
        assert {"cd", "ls", "grep", "post_tweet"} <= {tool_name(t) for t in e.tools}
        for tool in e.tools:
            jsonschema.Draft202012Validator.check_schema(tool["function"]["parameters"])


def test_multi_turn_messages_pair_calls_with_real_results(base_0: list[Example]) -> None:
    last = base_0[-1].messages
    assert [m["role"] for m in last].count("user") == 4
    calls = [m for m in last if m["role"] == "assistant"]
    results = [m for m in last if m["role"] == "tool"]
    assert len(calls) == len(results) == 10
    for i, m in enumerate(last):
        if m["role"] != "assistant":
            continue
        (call,) = m["tool_calls"]
        assert call["type"] == "function"
        assert isinstance(call["function"]["arguments"], str)
        json.loads(call["function"]["arguments"])
        reply = last[i + 1]
        assert reply["role"] == "tool" and reply["tool_call_id"] == call["id"]
    ids = [m["tool_calls"][0]["id"] for m in calls]
    assert len(set(ids)) == len(ids)
    by_call = {
        m["tool_calls"][0]["function"]["name"] + m["tool_calls"][0]["function"]["arguments"]: r
        for m, r in zip(calls, results, strict=True)
    }
    assert json.loads(by_call['cd{"folder": "document"}']["content"]) == {
        "current_working_directory": "document"
    }
    grep = json.loads(next(r for k, r in by_call.items() if k.startswith("grep"))["content"])
    assert any("budget analysis" in line for line in grep["matching_lines"])
    diff = next(r for k, r in by_call.items() if k.startswith("diff"))
    assert "Year203" in diff["content"]  # the moved file really is there
    # each step sees exactly the calls before it
    for e in base_0:
        step = int(e.id.rsplit("step", 1)[1])
        turn_messages = e.messages[
            max(i for i, m in enumerate(e.messages) if m["role"] == "user") :
        ]
        assert sum(m["role"] == "assistant" for m in turn_messages) == step


def test_ls_result_is_the_real_listing() -> None:
    examples = bfcl.load_multi_turn("multi_turn_base", ids=[1])
    assert examples[0].gold == [{"ls": {"a": [True]}}]
    result = examples[1].messages[-1]
    assert result["role"] == "tool"
    assert json.loads(result["content"]) == {"current_directory_content": ["workspace"]}


def test_replay_is_repeatable(base_0: list[Example]) -> None:
    again = bfcl.load_multi_turn("multi_turn_base", ids=[0])
    assert [e.model_dump() for e in again] == [e.model_dump() for e in base_0]


def test_miss_func_adds_the_held_out_function_later() -> None:
    examples = bfcl.load_multi_turn("multi_turn_miss_func", ids=[1])
    task = {t["id"]: t for t in bfcl.data.entries("multi_turn_miss_func")}["multi_turn_miss_func_1"]
    ((turn, names),) = task["missed_function"].items()
    added_at = int(turn)
    for e in examples:
        t = e.meta["turn"]
        bound = {tool_name(tool) for tool in e.tools}
        assert set(names) <= bound if t >= added_at else not set(names) & bound, e.id
    first_added = next(e for e in examples if e.meta["turn"] == added_at)
    assert first_added.meta["functions_added"] == names
    user_turns = [m for m in first_added.messages if m["role"] == "user"]
    assert user_turns[-1]["content"] == bfcl.ADDED_FUNCTIONS_PROMPT
    before = [e for e in examples if e.meta["turn"] == added_at - 1]
    assert [e.gold for e in before] == ["respond"]  # the function is missing: answer the user


def test_miss_param_turn_without_calls_is_one_respond_step() -> None:
    examples = bfcl.load_multi_turn("multi_turn_miss_param", ids=["multi_turn_miss_param_2"])
    turn0 = [e for e in examples if e.meta["turn"] == 0]
    assert [e.gold for e in turn0] == ["respond"]


def test_unknown_category_lists_the_known_ones() -> None:
    with pytest.raises(ValueError) as info:
        bfcl.load_category("simple_rust")
    message = str(info.value)
    for name in bfcl.CATEGORIES:
        assert name in message
    with pytest.raises(ValueError, match="live_relevance"):
        bfcl.load_category("live_relevance")
    with pytest.raises(ValueError, match="multi-turn"):
        bfcl.load_multi_turn("simple_python")
    with pytest.raises(ValueError, match="unknown multi_turn_base task ids"):
        bfcl.load_multi_turn("multi_turn_base", ids=["multi_turn_base_9999"])


def test_missing_package_names_the_install_command(monkeypatch: pytest.MonkeyPatch) -> None:
    def missing(name: str):
        raise ModuleNotFoundError(f"No module named {name!r}", name=name)

    monkeypatch.setattr(bfcl.data.importlib.resources, "files", missing)
    with pytest.raises(bfcl.BFCLNotInstalledError, match=re.escape(bfcl.BFCL_INSTALL_HINT)):
        bfcl.data_dir()


def test_parse_call() -> None:
    assert bfcl.parse_call("cd(folder='document')") == ("cd", {"folder": "document"})
    assert bfcl.parse_call("mean([1, 2.5])", ["numbers"]) == ("mean", {"numbers": [1, 2.5]})
    assert bfcl.parse_call("f(p=(1, 2), q={'a': (3,)})") == ("f", {"p": [1, 2], "q": {"a": [3]}})
    with pytest.raises(ValueError, match="non-literal"):
        bfcl.parse_call("f(x=g(1))")
    with pytest.raises(ValueError, match="positional"):
        bfcl.parse_call("f(1)")
