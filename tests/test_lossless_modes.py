"""Mode F (lossless), the speculative fallback and mode G (gate) through the real node.

The strong model is a tiny random Qwen2 taught one tool call, loaded in a real ``HFChatModel``:
continuing a draft is what only a local model can do, so it is the real thing here.
"""

from __future__ import annotations

import asyncio
import math
import threading
from typing import Any

import pytest
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage
from langchain_core.tools import tool
from langchain_core.utils.function_calling import convert_to_openai_tool
from langgraph.graph import START, StateGraph
from langgraph.prebuilt import ToolNode, tools_condition

from spec_tool_node.chat_models.hf import HFChatModel
from spec_tool_node.config import ACCEPTS_NOTHING, CascadeConfig
from spec_tool_node.costs import CallRecord, CostModel, TokenPrice
from spec_tool_node.errors import ConfigError
from spec_tool_node.node import SpecAgentState, SpeculativeActionNode
from spec_tool_node.verifiers.gate import argument_value_mask, gate_signal, value_logprobs
from tests.chat_models.test_speculative import qwen2
from tests.chat_models.test_watch import ANSWER, LONG_DRAFT, LockstepWatch, chat
from tests.conftest import CORPUS, make_tokenizer, teach
from tests.scripted import ScriptedChatModel, ScriptedVerifier, call

QUESTION = [HumanMessage("What's the weather in Paris in celsius?")]


@tool
def get_weather(city: str, unit: str = "celsius") -> str:
    """Current weather in a city."""
    return f"sunny in {city}"


@pytest.fixture(scope="module")
def strong() -> HFChatModel:
    """A tiny model taught to answer QUESTION with CORPUS[0]'s get_weather call."""
    tokenizer = make_tokenizer()
    model = qwen2(tokenizer, seed=4)
    chat = HFChatModel(model="tiny-strong", loaded=(model, tokenizer), max_new_tokens=48)
    tools = chat.bind_tools([get_weather]).kwargs["tools"]
    teach(model, tokenizer, chat._prompt(QUESTION, tools, None), CORPUS[0], steps=60)
    return chat


def decide_once(node: SpeculativeActionNode):
    out = node.invoke({"messages": QUESTION})
    return out["messages"][-1], out["spec_ledger"][-1]


def test_mode_f_refuses_a_strong_model_that_cannot_continue_a_draft():
    cheap, api = ScriptedChatModel(name="cheap"), ScriptedChatModel(name="api-strong")
    with pytest.raises(ConfigError, match=r"mode F \(lossless\).*vLLM.*speculative"):
        SpeculativeActionNode(
            proposer=cheap, strong=api, tools=[get_weather], config=CascadeConfig(mode="lossless")
        )


def test_mode_f_middleware_asks_for_the_strong_model_by_name():
    """The agent's own model is only seen at call time, so mode F's middleware needs strong=;
    the error says so instead of calling the (absent) strong model an API model."""
    from spec_tool_node.middleware import SpeculativeActionMiddleware

    with pytest.raises(ConfigError, match=r"mode F \(lossless\) needs strong=.*HFChatModel"):
        SpeculativeActionMiddleware(
            proposer=ScriptedChatModel(name="cheap"), config=CascadeConfig(mode="F")
        )


def test_mode_f_action_is_mode_a_action_whatever_the_draft(strong):
    a_message, a_turn = decide_once(
        SpeculativeActionNode(strong=strong, tools=[get_weather], config=CascadeConfig(mode="A"))
    )
    assert a_turn.action.startswith('{"tool_calls": [{"arguments": {"city": "Paris"')

    # the strong model's own reply as the draft (a local proposer's raw text): kept whole
    same = HFChatModel(model="tiny-cheap", loaded=(strong.hf_model, strong.tokenizer))
    node = SpeculativeActionNode(
        proposer=same, strong=strong, tools=[get_weather], config=CascadeConfig(mode="F")
    )
    _, kept = decide_once(node)
    assert (kept.path, kept.action, kept.full_draft_kept) == ("accepted", a_turn.action, True)
    assert kept.kept_tokens == kept.draft_tokens > 0
    assert [c.purpose for c in kept.calls] == ["draft", "continue"]
    assert kept.calls[1].output_tokens == 0 and kept.calls[1].kept_tokens == kept.kept_tokens

    # a wrong draft from an API-like proposer: rendered with the template, partly rewritten
    wrong = ScriptedChatModel(name="cheap", script=[call("get_weather", city="Lyon")])
    node = SpeculativeActionNode(
        proposer=wrong, strong=strong, tools=[get_weather], config=CascadeConfig(mode="F")
    )
    message, fixed = decide_once(node)
    assert (fixed.path, fixed.action, fixed.full_draft_kept) == ("continued", a_turn.action, False)
    assert 0 < fixed.kept_tokens < fixed.draft_tokens
    assert message.tool_calls[0]["args"] == a_message.tool_calls[0]["args"]
    assert message.response_metadata["spec"]["kept_tokens"] == fixed.kept_tokens


@pytest.mark.parametrize("speculative", [True, False])
def test_rejected_draft_is_continued_by_the_strong_model(strong, speculative):
    """Mode D's fallback continues the rejected draft when the strong model can; the action is
    the strong model's own either way."""
    cheap = ScriptedChatModel(name="cheap", script=[call("get_weather", city="Lyon")])
    node = SpeculativeActionNode(
        proposer=cheap,
        strong=strong,
        verifier=ScriptedVerifier([0.1]),
        tools=[get_weather],
        config=CascadeConfig(mode="D", speculative_fallback=speculative),
    )
    _, turn = decide_once(node)
    assert turn.path == "fallback" and '"city": "Paris"' in turn.action
    assert turn.calls[-1].purpose == ("continue" if speculative else "act")
    assert (turn.kept_tokens is not None) == speculative


@pytest.mark.parametrize("speculative", [True, False])
def test_a_decision_that_accepts_nothing_drafts_only_for_a_continuation(strong, speculative):
    """Threshold above 1: the verifier is never asked. With the speculative fallback the draft
    is still written, for the strong model to continue; without it no draft is asked for."""
    cheap = ScriptedChatModel(name="cheap", script=[call("get_weather", city="Lyon")])
    verifier = ScriptedVerifier([1.0])
    config = CascadeConfig(mode="D", threshold=ACCEPTS_NOTHING, speculative_fallback=speculative)
    node = SpeculativeActionNode(
        proposer=cheap, strong=strong, verifier=verifier, tools=[get_weather], config=config
    )
    _, turn = decide_once(node)
    assert '"city": "Paris"' in turn.action and verifier.scored == []
    if speculative:
        assert (turn.path, [c.purpose for c in turn.calls]) == ("fallback", ["draft", "continue"])
        assert turn.reject_reason == "threshold: above 1, this kind of decision accepts no draft"
    else:
        assert (turn.path, [c.purpose for c in turn.calls]) == ("strong", ["act"])
        assert turn.reject_reason.endswith("and no fallback continues one: none was asked for")


@pytest.mark.parametrize("later", [None, False])
def test_later_decisions_may_act_without_a_draft(strong, later):
    """The first decision accepts the proposer's call; the later one accepts nothing. Its
    fallback continues a draft as the first decision's would (``None``: follow
    ``speculative_fallback``), or, with ``multi_turn_speculative_fallback`` off, the proposer is
    not asked and the strong model acts alone."""
    cheap = ScriptedChatModel(
        name="cheap", script=[call("get_weather", city="Paris"), call("get_weather", city="Rome")]
    )
    config = CascadeConfig(
        mode="D",
        threshold=0.5,
        multi_turn_threshold=ACCEPTS_NOTHING,
        multi_turn_speculative_fallback=later,
    )
    node = SpeculativeActionNode(
        proposer=cheap,
        strong=strong,
        verifier=ScriptedVerifier([0.9]),
        tools=[get_weather],
        config=config,
    )
    first, second, *_ = _agent_ledger(node)
    assert first.path == "accepted"
    purposes = [c.purpose for c in second.calls]
    if later is None:
        assert purposes[:2] == ["draft", "continue"]
    else:
        assert "draft" not in purposes and purposes[0] == "act"
        assert second.reject_reason.endswith("and no fallback continues one: none was asked for")
    assert CascadeConfig(speculative_fallback=False).continues_draft(multi_turn=True) is False
    assert config.continues_draft(multi_turn=False) is True


@pytest.mark.parametrize("later", [None, False])
def test_mode_f_later_decisions_may_be_the_strong_models_alone(strong, later):
    """In mode F, ``multi_turn_speculative_fallback`` off asks no draft after the first decision:
    the strong model writes alone there, so every action is still mode A's."""
    script = [call("get_weather", city="Paris"), call("get_weather", city="Rome")]

    def run(mode: str) -> list:
        node = SpeculativeActionNode(
            proposer=ScriptedChatModel(name="cheap", script=list(script)),
            strong=strong,
            tools=[get_weather],
            config=CascadeConfig(mode=mode, multi_turn_speculative_fallback=later),
        )
        return _agent_ledger(node)

    lossless, always_strong = run("F"), run("A")
    assert [t.action for t in lossless] == [t.action for t in always_strong]
    first, second, *_ = lossless
    assert [c.purpose for c in first.calls] == ["draft", "continue"]
    purposes = [c.purpose for c in second.calls]
    if later is None:
        assert purposes[:2] == ["draft", "continue"]
    else:
        assert "draft" not in purposes and purposes[0] == "act" and second.path == "strong"
        assert second.reject_reason.startswith("later decision: multi_turn_speculative_fallback")
    assert CascadeConfig(mode="F", speculative_fallback=False).continues_draft(True, True)
    assert not CascadeConfig(multi_turn_speculative_fallback=False).continues_draft(True, True)


@pytest.mark.parametrize(("mode", "threshold"), [("F", 0.5), ("D", ACCEPTS_NOTHING), ("D", 0.5)])
def test_a_cold_prompt_is_not_drafted_for(strong, mode, threshold):
    """With ``max_uncached_prompt_tokens`` below the first prompt's length, the first decision
    (its prompt read cold) asks no draft; the second (its prompt mostly cached by the first)
    drafts and continues. The actions stay mode A's. In mode D the rule applies whether or not
    a draft could be accepted (here the verifier rejects every draft)."""
    script = [call("get_weather", city="Paris"), call("get_weather", city="Rome")]
    strong.clear_prefix_cache()
    cold = strong.uncached_prompt_tokens(QUESTION, [get_weather])

    def run(config: CascadeConfig) -> list:
        strong.clear_prefix_cache()
        node = SpeculativeActionNode(
            proposer=ScriptedChatModel(name="cheap", script=list(script)),
            strong=strong,
            verifier=ScriptedVerifier([0.0]),
            tools=[get_weather],
            config=config,
        )
        return _agent_ledger(node)

    ledger = run(CascadeConfig(mode=mode, threshold=threshold, max_uncached_prompt_tokens=cold - 1))
    first, second, *_ = ledger
    assert ([c.purpose for c in first.calls], first.path) == (["act"], "strong")
    assert first.reject_reason.startswith(f"cold prompt: the strong model would read {cold} ")
    drafted = [c.purpose for c in second.calls if c.purpose != "verify"]
    assert drafted[:2] == ["draft", "continue"]
    assert [t.action for t in ledger] == [t.action for t in run(CascadeConfig(mode="A"))]
    ledger = run(CascadeConfig(mode=mode, threshold=threshold, max_uncached_prompt_tokens=cold))
    assert [c.purpose for c in ledger[0].calls if c.purpose != "verify"] == ["draft", "continue"]


def test_a_cold_prompt_is_not_drafted_for_on_the_async_path(strong):
    strong.clear_prefix_cache()
    cold = strong.uncached_prompt_tokens(QUESTION, [get_weather])
    node = SpeculativeActionNode(
        proposer=ScriptedChatModel(name="cheap", script=[call("get_weather", city="Paris")]),
        strong=strong,
        tools=[get_weather],
        config=CascadeConfig(mode="F", max_uncached_prompt_tokens=cold - 1),
    )
    turn = asyncio.run(node.ainvoke({"messages": QUESTION}))["spec_ledger"][-1]
    assert ([c.purpose for c in turn.calls], turn.path) == (["act"], "strong")


def test_a_strong_model_that_cannot_tell_its_cache_is_drafted_for(strong, monkeypatch, caplog):
    """The count only saves a draft's cost: when asking for it fails, the proposer drafts and
    the turn goes on as without the limit."""

    def broken(*args: Any, **kwargs: Any) -> int:
        raise RuntimeError("tokenizer gone")

    monkeypatch.setattr(type(strong), "uncached_prompt_tokens", broken)
    node = SpeculativeActionNode(
        proposer=ScriptedChatModel(name="cheap", script=[call("get_weather", city="Paris")]),
        strong=strong,
        tools=[get_weather],
        config=CascadeConfig(mode="F", max_uncached_prompt_tokens=0),
    )
    _, turn = decide_once(node)
    assert [c.purpose for c in turn.calls] == ["draft", "continue"]
    assert "could not tell how much of the prompt" in caplog.text


def test_an_open_decision_skips_a_cold_prompt_too(strong):
    """Where the verifier may accept the draft (mode D, threshold at most 1), a draft pays on a
    cold prompt only when it is accepted and right: above the limit the proposer and the
    verifier are not asked, and the strong model acts alone, as in mode A."""

    def turn(limit: int | None):
        strong.clear_prefix_cache()
        node = SpeculativeActionNode(
            proposer=ScriptedChatModel(name="cheap", script=[call("get_weather", city="Paris")]),
            strong=strong,
            verifier=ScriptedVerifier([0.9]),
            tools=[get_weather],
            config=CascadeConfig(mode="D", max_uncached_prompt_tokens=limit),
        )
        return decide_once(node)[1]

    cold = turn(0)
    assert (cold.path, [c.purpose for c in cold.calls]) == ("strong", ["act"])
    assert cold.reject_reason.startswith("cold prompt: the strong model would read ")
    drafted = turn(None)
    assert (drafted.path, [c.purpose for c in drafted.calls]) == ("accepted", ["draft", "verify"])


def _agent_ledger(node: SpeculativeActionNode) -> list:
    """The ledger of a ReAct graph's run on QUESTION: one entry per decision."""
    builder = StateGraph(SpecAgentState)
    builder.add_node("agent", node)
    builder.add_node("tools", ToolNode([get_weather]))
    builder.add_edge(START, "agent")
    builder.add_conditional_edges("agent", tools_condition)
    builder.add_edge("tools", "agent")
    return builder.compile().invoke({"messages": QUESTION})["spec_ledger"]


def _with_logprobs(message: AIMessage, text: str, value_logprob: float) -> AIMessage:
    """A draft carrying per-token log-probs: -0.01 for syntax, ``value_logprob`` for values."""
    tokens = [text[i : i + 3] for i in range(0, len(text), 3)]
    mask = argument_value_mask(text)
    logprobs = [
        {"token": t, "logprob": value_logprob if any(mask[i * 3 : i * 3 + 3]) else -0.01}
        for i, t in enumerate(tokens)
    ]
    return message.model_copy(update={"response_metadata": {"logprobs": {"content": logprobs}}})


@pytest.mark.parametrize(("value_logprob", "path"), [(-0.05, "accepted"), (-2.0, "fallback")])
def test_mode_g_gates_on_the_argument_values_only(value_logprob, path):
    text = '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Lyon"}}\n</tool_call>'
    draft = _with_logprobs(call("get_weather", city="Lyon"), text, value_logprob)
    cheap = ScriptedChatModel(name="cheap", script=[draft])
    api = ScriptedChatModel(name="strong", script=[call("get_weather", city="Paris")])
    node = SpeculativeActionNode(
        proposer=cheap,
        strong=api,
        tools=[get_weather],
        config=CascadeConfig(mode="gate", gate_threshold=0.9),
    )
    _, turn = decide_once(node)
    assert turn.path == path
    assert turn.p_accept == pytest.approx(math.exp(value_logprob))
    assert cheap.kwargs_seen[0]["logprobs"] is True  # asked for the drafting pass's log-probs
    assert [c.purpose for c in turn.calls] == ["draft"] + (["act"] if path == "fallback" else [])


def test_argument_value_mask_marks_values_not_keys_or_syntax():
    text = (
        '```json\n{"name": "f", "arguments": {"a": 10, "b": "x\\"y", "c": [1, {"k": true}]}}\n```'
    )
    marked = "".join(c if m else "_" for c, m in zip(text, argument_value_mask(text), strict=True))
    assert marked.replace("_", " ").split() == ["10", '"x\\"y"', "[1", "{", "true}]"]
    assert value_logprobs(["ab", "c"], [-1.0, -2.0]) == []
    assert gate_signal(AIMessage("hi")) is None


def test_continuation_is_priced_by_the_work_it_did():
    """Per call with a prefill weight: read tokens at the weight, decoding steps at 1, relative
    to writing the same action from scratch; per token, input and output as they were."""
    continued = CallRecord(
        role="strong",
        model="s",
        purpose="continue",
        input_tokens=200 + 40,  # prompt + checked draft
        output_tokens=11,  # written after keeping 30 of the 40 draft tokens
        checked_tokens=40,
        kept_tokens=30,
    )
    share = (0.05 * 240 + 10) / (0.05 * 200 + 40)  # output 41 tokens: 40 steps from scratch
    assert CostModel(prefill_weight=0.05).cost(continued) == pytest.approx(share)
    assert CostModel().cost(continued) == 1.0  # no weight: a strong call is a strong call
    # 150 of the prompt's tokens came from a prefix cache: neither way reads them
    cached = continued.model_copy(update={"cached_tokens": 150})
    share = (0.05 * 90 + 10) / (0.05 * 50 + 40)
    assert CostModel(prefill_weight=0.05).cost(cached) == pytest.approx(share)
    prices = {r: TokenPrice(input=1.0, output=4.0) for r in ("strong", "cheap", "verifier")}
    tokens = CostModel(basis="tokens", prices=prices)
    assert tokens.cost(continued) == pytest.approx((240 + 4 * 11) / 1e6)
    assert tokens.baseline([continued]) == pytest.approx((200 + 4 * 41) / 1e6)


def test_mode_f_when_the_proposer_fails_the_strong_model_writes_alone(strong):
    broken = ScriptedChatModel(name="cheap", script=[RuntimeError("proposer down")])
    node = SpeculativeActionNode(
        proposer=broken, strong=strong, tools=[get_weather], config=CascadeConfig(mode="F")
    )
    _, turn = decide_once(node)
    assert (turn.path, turn.kept_tokens) == ("fallback", None)
    assert "proposer down" in turn.reject_reason and '"city": "Paris"' in turn.action
    assert [c.purpose for c in turn.calls] == ["draft", "act"]


class _MeetingProposer(ScriptedChatModel):
    """A proposer whose draft waits at ``barrier``: a turn that is not drafting while the strong
    model reads ahead never gets past it."""

    barrier: Any = None

    def _generate(self, messages: Any, stop: Any = None, run_manager: Any = None, **kwargs: Any):
        self.barrier.wait()
        return super()._generate(messages, stop, run_manager, **kwargs)


@pytest.mark.parametrize("run", ["invoke", "ainvoke"])
def test_mode_f_reads_the_prompt_ahead_while_the_proposer_drafts(strong, monkeypatch, run):
    """The strong model's prefill runs beside the draft (both wait for each other at a barrier),
    its cache and its first token serve the check, the action is A's, and the ledger prices the
    same work as a check that read the prompt itself."""
    barrier = threading.Barrier(2, timeout=10)
    prefill = HFChatModel.prefill

    def meeting(self, *args, **kwargs):
        barrier.wait()
        return prefill(self, *args, **kwargs)

    def turn_of(config: CascadeConfig):
        proposer = _MeetingProposer(name="cheap", script=[call("get_weather", city="Lyon")])
        proposer.barrier = barrier if config.prefill_ahead else threading.Barrier(1)
        node = SpeculativeActionNode(
            proposer=proposer, strong=strong, tools=[get_weather], config=config
        )
        strong.clear_prefix_cache()
        out = (
            asyncio.run(node.ainvoke({"messages": QUESTION}))
            if run == "ainvoke"
            else (node.invoke({"messages": QUESTION}))
        )
        return out["spec_ledger"][-1]

    continue_draft, reads = HFChatModel.continue_draft, []

    def reading(self, *args, **kwargs):
        message = continue_draft(self, *args, **kwargs)
        reads.append(message.usage_metadata["input_token_details"]["cache_read"])
        return message

    monkeypatch.setattr(HFChatModel, "continue_draft", reading)
    monkeypatch.setattr(HFChatModel, "prefill", meeting)
    ahead = turn_of(CascadeConfig(mode="F", cost_model=CostModel(prefill_weight=0.05)))
    monkeypatch.setattr(HFChatModel, "prefill", prefill)
    alone = turn_of(
        CascadeConfig(mode="F", cost_model=CostModel(prefill_weight=0.05), prefill_ahead=False)
    )
    assert ahead.action == alone.action and '"city": "Paris"' in ahead.action
    prompt = strong._prompt(QUESTION, strong.bind_tools([get_weather]).kwargs["tools"], None)
    # the check read nothing of the prompt again: it started from the token the read-ahead chose
    assert reads == [len(strong.tokenizer(prompt, add_special_tokens=False).input_ids), 0]
    check, check_alone = ahead.calls[-1], alone.calls[-1]
    assert check.purpose == check_alone.purpose == "continue"
    assert check.cached_tokens == check_alone.cached_tokens == 0
    assert check.input_tokens == check_alone.input_tokens
    assert ahead.cost == pytest.approx(alone.cost)


def test_a_failed_read_ahead_leaves_the_turn_as_it_was(strong, monkeypatch, caplog):
    def broken(self, *args, **kwargs):
        raise RuntimeError("out of memory")

    monkeypatch.setattr(HFChatModel, "prefill", broken)
    cheap = ScriptedChatModel(name="cheap", script=[call("get_weather", city="Lyon")])
    node = SpeculativeActionNode(
        proposer=cheap, strong=strong, tools=[get_weather], config=CascadeConfig(mode="F")
    )
    _, turn = decide_once(node)
    assert turn.path == "continued" and '"city": "Paris"' in turn.action
    assert "read-ahead of the prompt failed" in caplog.text


def test_only_mode_f_reads_ahead(strong, monkeypatch):
    """A verifier that accepts would leave a read-ahead unused: modes D, E, G never read ahead."""
    seen = []
    monkeypatch.setattr(HFChatModel, "prefill", lambda self, *a, **k: seen.append(a) or 0)
    cheap = ScriptedChatModel(name="cheap", script=[call("get_weather", city="Lyon")])
    node = SpeculativeActionNode(
        proposer=cheap,
        strong=strong,
        verifier=ScriptedVerifier([0.1]),
        tools=[get_weather],
        config=CascadeConfig(mode="D"),
    )
    _, turn = decide_once(node)
    assert turn.calls[-1].purpose == "continue" and seen == []


def test_mode_f_middleware_reads_the_prompt_ahead(strong, monkeypatch):
    """Through create_agent: the middleware's strong model reads each turn's prompt ahead, with
    the agent's system prompt, as its check does."""
    from langchain.agents import create_agent

    from spec_tool_node.middleware import SpeculativeActionMiddleware

    prefill, prompts = HFChatModel.prefill, []

    def spy(self, messages, tools=None, **kwargs):
        prompts.append(self._prompt(messages, [convert_to_openai_tool(t) for t in tools], None))
        return prefill(self, messages, tools, **kwargs)

    monkeypatch.setattr(HFChatModel, "prefill", spy)
    cheap = ScriptedChatModel(
        name="cheap", script=[call("get_weather", city="Lyon"), AIMessage("Sunny.")]
    )
    middleware = SpeculativeActionMiddleware(
        proposer=cheap, strong=strong, config=CascadeConfig(mode="F")
    )
    agent = create_agent(
        model=strong, tools=[get_weather], middleware=[middleware], system_prompt="Be brief."
    )
    out = agent.invoke({"messages": QUESTION}, {"recursion_limit": 8})
    first = out["spec_ledger"][0]
    assert first.path == "continued" and '"city": "Paris"' in first.action
    assert len(prompts) == len(out["spec_ledger"]) and "Be brief." in prompts[0]


def test_mode_f_middleware_skips_a_cold_prompt(strong):
    """Through create_agent: the count the limit reads is the middleware's own prompt (with the
    agent's system prompt); the first decision, read cold, asks no draft."""
    from langchain.agents import create_agent

    from spec_tool_node.middleware import SpeculativeActionMiddleware

    strong.clear_prefix_cache()
    system = "Be brief."
    cold = strong.uncached_prompt_tokens([SystemMessage(system), *QUESTION], [get_weather])
    assert cold > strong.uncached_prompt_tokens(QUESTION, [get_weather])
    cheap = ScriptedChatModel(name="cheap", script=[AIMessage("Sunny.")])
    config = CascadeConfig(mode="F", max_uncached_prompt_tokens=cold - 1)
    middleware = SpeculativeActionMiddleware(proposer=cheap, strong=strong, config=config)
    agent = create_agent(
        model=strong, tools=[get_weather], middleware=[middleware], system_prompt=system
    )
    first = agent.invoke({"messages": QUESTION}, {"recursion_limit": 8})["spec_ledger"][0]
    assert ([c.purpose for c in first.calls], first.path) == (["act"], "strong")
    assert first.reject_reason.startswith(f"cold prompt: the strong model would read {cold} ")


@pytest.mark.parametrize("run", ["invoke", "ainvoke"])
def test_mode_f_stops_a_draft_the_strong_model_will_not_keep(monkeypatch, run):
    """Mode F through the node: the strong model reads the prose draft along, the proposer stops
    where the two part, the action is mode A's, and the ledger counts the draft tokens read
    along as checked by the strong model."""
    tools = [convert_to_openai_tool(get_weather)]
    strong = chat(ANSWER, seed=5, name="tiny-strong", tools=tools)
    proposer = chat(LONG_DRAFT, seed=6, name="tiny-cheap", tools=tools)
    watches: list[LockstepWatch] = []
    monkeypatch.setattr(
        "spec_tool_node.cascade.DraftWatch", lambda: watches.append(LockstepWatch()) or watches[-1]
    )
    prefill = HFChatModel.prefill

    def reading(self, *args, watch=None, **kwargs):
        try:
            return prefill(self, *args, watch=watch, **kwargs)
        finally:
            watch.leave()

    monkeypatch.setattr(HFChatModel, "prefill", reading)

    def turn(mode: str):
        node = SpeculativeActionNode(
            proposer=proposer, strong=strong, tools=[get_weather], config=CascadeConfig(mode=mode)
        )
        strong.clear_prefix_cache()
        state = {"messages": QUESTION}
        out = asyncio.run(node.ainvoke(state)) if run == "ainvoke" else node.invoke(state)
        return out["spec_ledger"][-1]

    a, f = turn("A"), turn("F")
    assert a.action == f.action == '{"respond": "' + ANSWER + '"}'
    draft, check = f.calls
    assert (draft.purpose, check.purpose) == ("draft", "continue")
    assert draft.output_tokens < len(proposer.tokenizer(LONG_DRAFT).input_ids) // 2
    assert watches[0].stopped and watches[0].read_tokens > 0
    assert check.checked_tokens >= watches[0].read_tokens
    assert f.draft_tokens == draft.output_tokens and 0 < f.kept_tokens < f.draft_tokens
