"""Collection: cached once, resumed after a kill, recomputed only where something is missing."""

from __future__ import annotations

import copy
import json

import pytest

from spec_tool_node.actions import action_from_message, canonical_text, tool_schemas
from spec_tool_node.cascade import call_record
from spec_tool_node.chat_models.hf import HFChatModel
from spec_tool_node.config import CascadeConfig
from spec_tool_node.costs import CostModel
from spec_tool_node.errors import ConfigError
from spec_tool_node.evaluation import (
    CacheMissingError,
    ModelKeys,
    collect,
    key_of,
    load_collection,
    model_key,
    simulate,
)
from spec_tool_node.evaluation.collector import Needs, draft_text, message_record, rebuild_message
from spec_tool_node.evaluation.simulator import replay
from spec_tool_node.example_files import Example
from spec_tool_node.verifiers import TrainedVerifier
from tests.conftest import make_model, make_tokenizer
from tests.evaluation.fakes import TOOLS, LookupChatModel, LookupVerifier, call

QUESTIONS = ["q1 weather in Paris?", "q2 weather in Rome?", "q3 weather in Oslo?"]
CONFIG = CascadeConfig(n_drafts=3)


def data() -> list[Example]:
    return [
        Example(id=f"ex{i}", tools=TOOLS, messages=[{"role": "user", "content": q}],
                gold=[{"get_weather": {"city": [q.split()[-1].rstrip("?")]}}])
        for i, q in enumerate(QUESTIONS)
    ]  # fmt: skip


def models():
    city = {q: q.split()[-1].rstrip("?") for q in QUESTIONS}
    proposer = LookupChatModel(
        name="cheap",
        table={q: {"greedy": call("get_weather", city=c), "samples": [call("get_weather", city="X")] * 9}
               for q, c in city.items()},
    )  # fmt: skip
    strong = LookupChatModel(
        name="strong",
        table={q: {"act": call("get_weather", city=c), "judge": "ACCEPT"} for q, c in city.items()},
    )
    return proposer, strong, LookupVerifier({}, default=0.7)


def run(cache, modes="ABCDE", config=CONFIG, **kwargs):
    proposer, strong, verifier = models()
    collection = collect(
        data(), cache, proposer=proposer, strong=strong, verifier=verifier, config=config,
        modes=modes, progress=False, **kwargs,
    )  # fmt: skip
    return collection, (proposer.calls, strong.calls, verifier.calls)


def test_one_file_per_role_and_model_and_a_rerun_calls_no_model(tmp_path):
    collection, calls = run(tmp_path)
    # per example: greedy + 2 samples; judge + act; verifier single + batch
    assert calls == (9, 6, 6)
    names = sorted(p.name for p in tmp_path.iterdir())
    cheap, strong, verifier = model_key("cheap"), model_key("strong"), model_key("LookupVerifier")
    assert names == sorted([
        f"proposer--{cheap}.jsonl", f"samples--{cheap}.jsonl", f"strong--{strong}.jsonl",
        f"judge--{strong}--on--{cheap}.jsonl", f"verifier--{verifier}--on--{cheap}.jsonl",
    ])  # fmt: skip
    record = collection["ex0"]
    assert record.draft["valid"] and record.draft["input_tokens"] == 10
    assert len(record.samples) == 2 and record.verifier["batch"]["p"] == [0.7, 0.7, 0.7]
    assert record.judge["p"] == [1.0] and record.strong["action"].startswith('{"tool_calls"')
    again, calls = run(tmp_path)
    assert calls == (0, 0, 0)
    assert again.records.keys() == collection.records.keys()


def test_a_killed_run_resumes_where_it_stopped(tmp_path):
    run(tmp_path, modes="B")
    path = ModelKeys(proposer=model_key("cheap")).path(tmp_path, "proposer")
    lines = path.read_text().splitlines(keepends=True)
    path.write_text(lines[0] + lines[1][:25])  # ex1's line was cut off mid-write
    collection, calls = run(tmp_path, modes="B")
    assert calls == (2, 0, 0)  # ex1 and ex2 again, ex0 kept
    assert sorted(json.loads(line)["id"] for line in path.read_text().splitlines()) == [
        "ex0", "ex1", "ex2",
    ]  # fmt: skip
    assert all(collection[f"ex{i}"].draft["valid"] for i in range(3))


def test_only_what_is_missing_is_computed(tmp_path):
    run(tmp_path, modes="D")
    _, calls = run(tmp_path, modes="DE")  # mode E adds samples and the batch scores
    assert calls == (6, 0, 3)
    _, calls = run(tmp_path, modes="DE", config=CascadeConfig(n_drafts=4))
    assert calls == (3, 0, 3)  # one more sample each, and the batch is scored again


def test_models_with_other_adapters_do_not_share_a_cache():
    assert model_key("qwen", "/runs/a/adapter") != model_key("qwen", "/runs/b/adapter")
    assert model_key("qwen") != model_key("qwen", "/runs/a/adapter")
    assert model_key("/models/qwen2.5").startswith("qwen2.5-")


def test_a_local_adapter_is_keyed_by_its_content_not_its_path(tmp_path):
    """The same adapter in two checkouts shares its cache; one retrained in place does not
    read back the old scores; its documentation does not matter."""
    here, there = tmp_path / "here" / "verifier", tmp_path / "there" / "verifier"
    for folder in (here, there):
        (folder / "text").mkdir(parents=True)
        (folder / "probe.json").write_text('{"layers": [15]}')
        (folder / "text" / "head.safetensors").write_bytes(b"weights")
    key = model_key("qwen", str(here))
    assert model_key("qwen", str(there)) == key
    (there / "README.md").write_text("retrained on Tuesday")
    assert model_key("qwen", str(there)) == key
    (there / "text" / "head.safetensors").write_bytes(b"other weights")
    assert model_key("qwen", str(there)) != key
    assert model_key("qwen", str(here)) == key
    (here / "text" / "head.safetensors").rename(here / "head.safetensors")
    assert model_key("qwen", str(here)) != key  # where a file lies is part of the content


def test_a_model_with_float32_logits_does_not_share_the_bf16_cache():
    class Local:
        model, adapter, float32_logits = "qwen", None, False

    fp32 = Local()
    fp32.float32_logits = True
    assert key_of(Local()) == model_key("qwen")
    assert key_of(fp32) != key_of(Local())
    assert key_of(fp32).startswith("qwen-fp32logits-")


def test_a_missing_output_without_its_model_is_a_clear_error(tmp_path):
    proposer, _, _ = models()
    with pytest.raises(CacheMissingError, match=r"lacks strong outputs for 3 example\(s\)"):
        collect(data(), tmp_path, proposer=proposer, modes="A", progress=False,
                keys=ModelKeys(proposer="cheap", strong="strong"))  # fmt: skip
    with pytest.raises(CacheMissingError, match="the cache has no strong action"):
        collection = collect(data(), tmp_path, proposer=proposer, modes="B", progress=False)
        simulate(data(), collection, CONFIG, modes="A")


def test_errors_are_cached_and_retried_on_request(tmp_path):
    proposer, _, _ = models()
    proposer.table[QUESTIONS[0]]["greedy"] = RuntimeError("down")
    collect(data(), tmp_path, proposer=proposer, modes="B", progress=False)
    collection = load_collection(tmp_path, ModelKeys(proposer=key_of(proposer)))
    assert collection["ex0"].draft["exception"] == "error: RuntimeError: down"
    fixed, _, _ = models()
    collect(data(), tmp_path, proposer=fixed, modes="B", progress=False)
    assert fixed.calls == 0
    collection = collect(data(), tmp_path, proposer=fixed, modes="B", progress=False,
                         retry_errors=True)  # fmt: skip
    assert fixed.calls == 1 and collection["ex0"].draft["valid"]


def test_real_hf_models_and_trained_verifier_end_to_end(tmp_path):
    tokenizer = make_tokenizer()
    proposer = HFChatModel(model="tiny-cheap", loaded=(make_model(tokenizer, 0), tokenizer),
                           max_new_tokens=6)  # fmt: skip
    strong = HFChatModel(model="tiny-strong", loaded=(make_model(tokenizer, 1), tokenizer),
                         max_new_tokens=6)  # fmt: skip
    verifier = TrainedVerifier(loaded=(make_model(tokenizer, 2), tokenizer), name="tiny-verifier")
    examples = data()[:2]
    collection = collect(
        examples, tmp_path, proposer=proposer, strong=strong, verifier=verifier,
        config=CONFIG, hidden_layers=(1,), progress=False,
    )  # fmt: skip
    for ex in examples:
        c = collection[ex.id]
        assert c.draft["mean_logprob"] < 0 and len(c.draft["hidden_states"]["1"]) == 64
        rebuilt = rebuild_message(c.draft).response_metadata["hidden_states"]
        assert rebuilt == c.draft["hidden_states"]  # replay reads what the live gate reads
        assert 0 < c.draft["output_tokens"] <= 6 and c.draft["wall_s"] > 0
        assert len(c.samples) == 2 and all(s["output_tokens"] <= 6 for s in c.samples)
        assert c.strong["model_name"] == "tiny-strong"
        if c.draft["valid"]:
            (p,) = c.verifier["single"]["p"]
            assert 0.0 <= p <= 1.0 and c.verifier["single"]["records"][0]["role"] == "verifier"
            assert c.judge["p"][0] in (0.0, 1.0)
    simulation = simulate(examples, collection, CONFIG, thresholds=[0.5])
    assert all(len(simulation.results[m]) == 2 for m in "ABCDE")
    before = load_collection(
        tmp_path, ModelKeys(key_of(proposer), key_of(strong), key_of(verifier))
    )
    assert before.records.keys() == collection.records.keys()


def test_mode_e_fallback_replays_the_continuation_of_its_best_draft(tmp_path):
    """Mode E's speculative fallback continues its best-scored draft, which may be a sample: with
    ``continue_fallbacks`` the replay reads that draft's continuation by its text and says so
    when the cache lacks it; without, every fallback is the strong action from scratch, whatever
    the cache holds (one price for every example of a simulation)."""
    collection, _ = run(tmp_path, modes="ADE")
    ex = data()[0]
    c = collection[ex.id]
    c.verifier["batch"]["p"] = [0.1, 0.3, 0.2]  # the first sample is best; all are rejected
    c.verifier["single"]["p"] = [0.1]  # mode D rejects the greedy draft
    config = CONFIG.model_copy(update={"mode": "E", "threshold": 0.5})

    plain = replay(ex, c, config)
    assert plain.path == "fallback" and plain.calls[-1] == "strong:act"

    c.continued = {**c.strong, "of": draft_text(c.draft)}  # the greedy draft's alone
    with pytest.raises(CacheMissingError, match=r"continuation of this draft .*continue_fallb"):
        replay(ex, c, config, continue_fallbacks=True)

    tools = tool_schemas(TOOLS)
    continued = message_record(call("get_weather", city="Paris"), tools, wall_s=1.0,
                               model_name="strong")  # fmt: skip
    c.continuations[draft_text(c.samples[0])] = continued
    result = replay(ex, c, config, continue_fallbacks=True)
    assert (result.path, result.calls[-1]) == ("fallback", "strong:continue")
    assert result.action == continued["action"] and result.correct
    for mode in "DE":  # a cache holding continuations changes nothing without the setting
        plain = replay(ex, c, config.model_copy(update={"mode": mode}))
        assert plain.calls[-1] == "strong:act"


def test_continue_fallbacks_collects_the_continuation_each_fallback_reads(tmp_path):
    """With ``continue_fallbacks``, the cache holds the strong model's continuation of the
    draft each speculative fallback continues: the greedy draft for mode D, the best-scored
    draft for mode E (here a sample). They load back, a rerun needs no model, and each replayed
    fallback continues its draft to the strong model's own action (lossless)."""
    proposer, _, _ = models()
    tokenizer = make_tokenizer()
    strong = HFChatModel(model="tiny-strong", loaded=(make_model(tokenizer, 1), tokenizer),
                         max_new_tokens=8)  # fmt: skip
    x = canonical_text(action_from_message(call("get_weather", city="X")))
    verifier = LookupVerifier({x: 0.4}, default=0.2)  # the samples beat the greedy draft
    examples = data()[:2]
    options = {"config": CONFIG, "modes": "ADE", "continue_fallbacks": True, "progress": False}
    collection = collect(examples, tmp_path, proposer=proposer, strong=strong,
                         verifier=verifier, **options)  # fmt: skip
    keys = ModelKeys(key_of(proposer), key_of(strong), key_of(verifier))
    again = collect(examples, tmp_path, keys=keys, **options)  # complete: no model given
    for ex in examples:
        c = again[ex.id]
        assert c.continued["of"] == draft_text(c.draft)  # mode D's
        assert list(c.continuations) == [draft_text(c.samples[0])]  # mode E's
        assert c.continuations == collection[ex.id].continuations
    simulation = simulate(
        examples, again, CONFIG, thresholds=[0.5], modes="ADE", continue_fallbacks=True
    )
    for mode in "DE":
        for result, a in zip(simulation.results[mode], simulation.results["A"], strict=True):
            assert (result.path, result.calls[-1]) == ("fallback", "strong:continue")
            assert result.action == a.action
    assert not Needs.of("ADE", 3).continued and not Needs.of("ADE", 3).continued_best


@pytest.mark.parametrize("modes, fallbacks", [("ADE", True), ("AF", False)])
def test_continuations_from_a_strong_model_that_cannot_continue_fail_before_any_call(
    tmp_path, modes, fallbacks
):
    """An API strong model has no ``continue_draft``: asking it for continuations is a
    configuration error named up front, not a failed call recorded for every example."""
    proposer, strong, verifier = models()
    with pytest.raises(ConfigError, match="'strong' cannot continue a draft: that needs a local"):
        collect(data(), tmp_path, proposer=proposer, strong=strong, verifier=verifier,
                config=CONFIG, modes=modes, continue_fallbacks=fallbacks,
                progress=False)  # fmt: skip
    assert proposer.calls == strong.calls == 0 and not list(tmp_path.iterdir())


def test_mode_f_collects_the_strong_continuation_of_each_greedy_draft(tmp_path):
    """Mode F needs the strong model's continuation of the greedy draft: collected once (a rerun
    calls nothing), kept with the draft it checked, and recomputed when that draft changes. The
    continuation's action is the strong model's own, so F simulates to A's accuracy."""
    tokenizer = make_tokenizer()

    def chat(name: str, seed: int) -> HFChatModel:
        return HFChatModel(model=name, loaded=(make_model(tokenizer, seed), tokenizer),
                           max_new_tokens=8)  # fmt: skip

    proposer, strong = chat("tiny-cheap", 0), chat("tiny-strong", 1)
    examples = data()[:2]
    collection = collect(examples, tmp_path, proposer=proposer, strong=strong, modes="AF",
                         progress=False)  # fmt: skip
    keys = ModelKeys(key_of(proposer), key_of(strong))
    assert keys.path(tmp_path, "continued").exists()
    for ex in examples:
        c = collection[ex.id]
        assert c.continued["of"] == c.draft["raw_text"] + (c.draft.get("end_text") or "")
        assert c.continued["message"] == c.strong["message"]  # lossless: the strong reply
        assert set(c.continued["lossless"]) >= {"kept_tokens", "full_draft_kept"}
    again = collect(examples, tmp_path, keys=keys, modes="AF", progress=False)
    assert again["ex0"].continued == collection["ex0"].continued  # no model given, none needed
    simulation = simulate(examples, again, CascadeConfig(), thresholds=[0.5], modes="AF")
    assert [r.correct for r in simulation.results["F"]] == [
        r.correct for r in simulation.results["A"]
    ]
    # a limit below every prompt's uncached tokens: F asks no draft, and is A
    cold = CascadeConfig(max_uncached_prompt_tokens=0)
    alone = simulate(examples, again, cold, thresholds=[0.5], modes="AF").results
    assert [(r.path, r.calls) for r in alone["F"]] == [("strong", ["strong:act"])] * 2
    assert [r.cost for r in alone["F"]] == [r.cost for r in alone["A"]]
    assert alone["F"][0].reject_reason.startswith("cold prompt: the strong model would read")
    # the collection ran the action first, so its continuation found the prompt cached; a live
    # continuation reads what the action had to read, and the replay prices it that way
    collected = copy.deepcopy(again["ex0"])
    act, cont = collected.strong, collected.continued
    assert cont.get("cached_tokens", 0) > act.get("cached_tokens", 0)
    # as if the strong model had kept 6 of the draft's tokens and written the last 2 itself
    cont["lossless"].update(checked_tokens=7, kept_tokens=6)
    cont.update(input_tokens=cont["input_tokens"] + 7, output_tokens=2)
    cost_model = CostModel(prefill_weight=0.05)
    f = replay(examples[0], collected, CascadeConfig(mode="F", cost_model=cost_model))
    recorded = call_record("strong", "s", "continue", rebuild_message(cont), 0.0)
    live = recorded.model_copy(update={"cached_tokens": act.get("cached_tokens", 0)})
    assert f.cost == pytest.approx(cost_model.cheap + cost_model.cost(live))
    assert cost_model.cost(live) > cost_model.cost(recorded) + 0.1  # reading the prompt: dearer

    # a changed draft makes its continuation stale
    lines = keys.path(tmp_path, "proposer").read_text().splitlines()
    first = json.loads(lines[0])
    first["draft"]["raw_text"] += " more"
    keys.path(tmp_path, "proposer").write_text("\n".join([json.dumps(first), *lines[1:]]) + "\n")
    with pytest.raises(CacheMissingError, match="continued"):
        collect(examples, tmp_path, keys=keys, modes="AF", progress=False)
