"""``SpeculativeActionNode``: the drop-in model node of a LangGraph ReAct loop.

    builder = StateGraph(SpecAgentState)
    builder.add_node("agent", SpeculativeActionNode(proposer=cheap, strong=strong,
                                                    verifier=verifier, tools=tools))
    builder.add_node("tools", ToolNode(tools))
    builder.add_conditional_edges("agent", tools_condition)

The node returns ``{"messages": [AIMessage], "spec_ledger": [TurnRecord]}``. The AIMessage carries
``usage_metadata`` (all model calls of the turn), ``response_metadata["model_name"]`` of the model
whose action won and ``response_metadata["spec"]`` (mode, path, p_accept, reject reason, cost,
savings). Every decision is also written to LangGraph's custom stream.
"""

from __future__ import annotations

import asyncio
import operator
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Annotated, Any

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, AnyMessage, BaseMessage, SystemMessage
from langchain_core.runnables import Runnable, RunnableConfig
from langchain_core.runnables.config import ensure_config, merge_configs
from langchain_core.tools import BaseTool
from langgraph.config import get_stream_writer
from langgraph.graph import MessagesState
from langgraph.types import StreamWriter, interrupt

from spec_tool_node.actions import tool_schemas
from spec_tool_node.bundle import Bundle
from spec_tool_node.cascade import Cascade, can_continue, offers_drafts
from spec_tool_node.chat_models.watch import DraftWatch
from spec_tool_node.config import CascadeConfig, ModelSpec
from spec_tool_node.costs import TurnRecord
from spec_tool_node.safety import SafetyPolicy
from spec_tool_node.verifiers.base import Verifier
from spec_tool_node.verifiers.gate import gate_options
from spec_tool_node.verifiers.judge import ChatModelVerifier

STREAM_KEY = "spec_tool_node"
"""Key of the decision events on LangGraph's custom stream."""


class SpecAgentState(MessagesState):
    """``MessagesState`` plus the per-turn ledger (appended to on every decision)."""

    spec_ledger: Annotated[list[TurnRecord], operator.add]


def model_name(model: Any) -> str:
    """A readable name for a chat model or verifier (``HFChatModel.model``,
    ``ChatOpenAI.model_name``, ..., else its class name): the ledger's model names and the
    evaluation cache's keys both come from it."""
    for attr in ("model", "model_name", "model_id", "name"):
        value = getattr(model, attr, None)
        if isinstance(value, str) and value:
            return value
    return type(model).__name__


def load_policy(safety: SafetyPolicy | str | Path | None, config: CascadeConfig) -> SafetyPolicy:
    """The policy object given, else the config's policy file, else allow-all."""
    if isinstance(safety, SafetyPolicy):
        return safety
    source = safety or config.safety
    return SafetyPolicy.from_file(source) if source else SafetyPolicy()


class _BoundModels:
    """Model calls for one turn of the node: bound models invoked with the node's config."""

    def __init__(
        self, node: SpeculativeActionNode, messages: list[BaseMessage], config: RunnableConfig
    ) -> None:
        self.node, self.messages, self.config = node, messages, config
        self.proposer_name = model_name(node.proposer) if node.proposer else ""
        self.strong_name = model_name(node.strong) if node.strong else ""
        self.judge = node.judge

    def _call(self, role: str, sample: bool = False) -> tuple[Runnable, RunnableConfig]:
        runnable = self.node._bound[f"{role}_sampled" if sample else role]
        config = merge_configs(
            self.config, {"tags": [f"{STREAM_KEY}:{role}"], "run_name": f"spec_{role}"}
        )
        return runnable, config

    def _offer(self, watch: DraftWatch | None) -> dict[str, Any]:
        """The call option that offers the draft to ``watch``, when the proposer can."""
        return {"draft_watch": watch} if watch and offers_drafts(self.node.proposer) else {}

    def draft(self, sample: bool, watch: DraftWatch | None = None) -> AIMessage:
        runnable, config = self._call("proposer", sample)
        return runnable.invoke(self.messages, config, **self._offer(watch))

    def act(self) -> AIMessage:
        runnable, config = self._call("strong")
        return runnable.invoke(self.messages, config)

    async def adraft(self, sample: bool, watch: DraftWatch | None = None) -> AIMessage:
        runnable, config = self._call("proposer", sample)
        return await runnable.ainvoke(self.messages, config, **self._offer(watch))

    async def aact(self) -> AIMessage:
        runnable, config = self._call("strong")
        return await runnable.ainvoke(self.messages, config)

    def answer(self) -> AIMessage:
        runnable, config = self._call("strong_answer")
        return runnable.invoke(self.messages, config)

    async def aanswer(self) -> AIMessage:
        runnable, config = self._call("strong_answer")
        return await runnable.ainvoke(self.messages, config)

    def continue_draft(self, draft: AIMessage) -> AIMessage:
        """The strong model's own action, written only where ``draft`` is wrong (a direct call
        on the local model: continuing is not a chat-model call LangChain knows)."""
        return self.node.strong.continue_draft(self.messages, draft, self.node.tool_list)

    async def acontinue_draft(self, draft: AIMessage) -> AIMessage:
        return await asyncio.to_thread(self.continue_draft, draft)

    def prefill(self, watch: DraftWatch | None = None) -> int:
        """The strong model reads this turn's prompt ahead, beside the drafting (mode F), and
        reads the draft along in ``watch``."""
        prefill = getattr(self.node.strong, "prefill", None)
        return prefill(self.messages, self.node.tool_list, watch=watch) if prefill else 0

    async def aprefill(self, watch: DraftWatch | None = None) -> int:
        return await asyncio.to_thread(self.prefill, watch)

    def uncached_prompt(self) -> int | None:
        """The prompt tokens the strong model would read uncached, when it can tell (a local
        ``HFChatModel``); see ``CascadeConfig.max_uncached_prompt_tokens``."""
        count = getattr(self.node.strong, "uncached_prompt_tokens", None)
        return count(self.messages, self.node.tool_list) if count else None


def _stream_writer() -> StreamWriter:
    """The graph's custom-stream writer; outside a graph run (``node.invoke`` called directly)
    there is no stream, so the events are dropped."""
    try:
        return get_stream_writer()
    except (RuntimeError, KeyError, AttributeError):  # no graph runtime in the current context
        return lambda _event: None


class SpeculativeActionNode(Runnable[dict[str, Any] | list[AnyMessage], dict[str, Any]]):
    """A LangGraph node that picks the agent's next action speculatively.

    Args:
        proposer: the cheap chat model that drafts actions (not needed in mode A).
        strong: the strong chat model, called only when a draft is rejected (not needed in B).
        tools: the tools the agent may call (as given to ``ToolNode``): drafts are validated
            against their schemas and they are bound to both models.
        verifier: scores drafts in modes D and E (e.g. ``ProbeVerifier``). In mode G it is
            optional: a probe trained on the proposer's ``drafting`` pooling scores each draft
            from the proposer's own drafting pass (no model call); without one, G reads the
            log-probs of the draft's argument values.
        config: the :class:`CascadeConfig` (mode, threshold, drafts, cost model, policy file).
        safety: a :class:`SafetyPolicy` or the path of a policy file; defaults to the config's.
            When a rule escalates to a person (``escalate_to: human``), the node pauses the
            graph with ``interrupt()`` and resumes on ``Command(resume={"decisions": [...]})``
            (approve, edit or reject, as ``HumanInTheLoopMiddleware``); that needs a
            checkpointer, and the models' calls are kept with it so a resume never repeats them.
        system_prompt: prepended to the conversation for every model call.
        name: the node's run name.
        messages_key: the state key holding the conversation.

    Raises:
        ConfigError: the mode needs a model or verifier that was not given; in mode G, the
            verifier cannot read this proposer's drafting pass.
    """

    def __init__(
        self,
        *,
        proposer: BaseChatModel | None = None,
        strong: BaseChatModel | None = None,
        tools: Sequence[BaseTool | Callable | dict[str, Any]] = (),
        verifier: Verifier | None = None,
        config: CascadeConfig | None = None,
        safety: SafetyPolicy | str | Path | None = None,
        system_prompt: str | None = None,
        name: str = "agent",
        messages_key: str = "messages",
    ) -> None:
        self.name = name
        self.config = config or CascadeConfig()
        self.proposer, self.strong, self.verifier = proposer, strong, verifier
        self.judge = ChatModelVerifier(strong) if strong is not None else None
        self.tools = tool_schemas(tools)
        self.system_prompt = system_prompt
        self.messages_key = messages_key
        self.cascade = Cascade(
            self.config,
            verifier=verifier,
            policy=load_policy(safety, self.config),
            has_strong=strong is not None,
            has_proposer=proposer is not None,
            can_continue=strong is not None and can_continue(strong),
        )
        tool_list = [{"type": "function", "function": f} for f in self.tools.values()]
        self.tool_list = tool_list
        self._bound: dict[str, Runnable] = {}
        if proposer is not None:
            self._bound["proposer"] = proposer.bind_tools(tool_list) if tool_list else proposer
            if self.cascade.spec.scorer == "gate":  # the gate reads the drafting pass
                self._bound["proposer"] = self._bound["proposer"].bind(
                    **gate_options(proposer, verifier)
                )
            self._bound["proposer_sampled"] = self._bound["proposer"].bind(
                **self.config.sample_kwargs
            )
        if strong is not None:
            self._bound["strong"] = strong.bind_tools(tool_list) if tool_list else strong
            self._bound["strong_answer"] = strong  # tools hidden: answer from the results

    @classmethod
    def from_pretrained(
        cls,
        directory: str | Path,
        *,
        tools: Sequence[BaseTool | Callable | dict[str, Any]],
        **kwargs: Any,
    ) -> SpeculativeActionNode:
        """Build the node from a bundle folder (config, adapters): local models, trained verifier.

        A model spec with a ``base_url`` is called on its server (see ``spec-tool-node
        serve-config``) instead of being loaded. Extra keyword arguments (``safety``,
        ``system_prompt``, ...) go to the constructor.
        """
        from spec_tool_node.chat_models.parsed import openai_compatible  # no torch, no client yet

        config = Bundle.from_pretrained(directory).config

        def chat(spec: ModelSpec | None) -> BaseChatModel | None:
            if spec is None:
                return None
            if spec.base_url:
                return openai_compatible(spec.base_url, spec.model)
            from spec_tool_node.chat_models.hf import HFChatModel  # local models need torch

            return HFChatModel(model=spec.model, adapter=spec.adapter)

        verifier: Verifier | None = None
        if config.verifier and config.verifier.base_url:
            from spec_tool_node.verifiers.served import ServedVerifier

            spec = config.verifier
            verifier = ServedVerifier(openai_compatible(spec.base_url, spec.model))
        elif config.verifier:  # a probe folder or a LoRA adapter
            from spec_tool_node.verifiers.probe import load_verifier

            verifier = load_verifier(
                config.verifier.model,
                config.verifier.adapter,
                max_length=config.verifier.max_length,
            )
        return cls(
            proposer=chat(config.proposer),
            strong=chat(config.strong),
            verifier=verifier,
            tools=tools,
            config=config,
            **kwargs,
        )

    def _messages(self, state: dict[str, Any] | list[AnyMessage]) -> list[BaseMessage]:
        messages = state if isinstance(state, list) else state[self.messages_key]
        if self.system_prompt:
            return [SystemMessage(self.system_prompt), *messages]
        return list(messages)

    def _output(self, message: AIMessage, turn: TurnRecord, writer: StreamWriter) -> dict[str, Any]:
        writer({STREAM_KEY: turn.model_dump()})
        return {self.messages_key: [message], "spec_ledger": [turn]}

    @staticmethod
    def _turn_index(state: dict[str, Any] | list[AnyMessage]) -> int | None:
        """This turn's place in the trajectory (the ledger's length), for error messages."""
        return len(state.get("spec_ledger") or []) if isinstance(state, dict) else None

    def invoke(
        self,
        input: dict[str, Any] | list[AnyMessage],
        config: RunnableConfig | None = None,
        **kwargs: Any,
    ) -> dict[str, Any]:
        """One turn, run directly (no run of its own is traced: the graph traces the node)."""
        return self._func(input, ensure_config(config), _stream_writer())

    async def ainvoke(
        self,
        input: dict[str, Any] | list[AnyMessage],
        config: RunnableConfig | None = None,
        **kwargs: Any,
    ) -> dict[str, Any]:
        return await self._afunc(input, ensure_config(config), _stream_writer())

    def _func(
        self, state: dict[str, Any], config: RunnableConfig, writer: StreamWriter
    ) -> dict[str, Any]:
        messages = self._messages(state)
        models, index = _BoundModels(self, messages, config), self._turn_index(state)
        if not self.cascade.policy.asks_humans:
            message, turn = self.cascade.run(models, messages, self.tools, turn_index=index)
            return self._output(message, turn, writer)
        message, turn = self.cascade.run_durably(models, messages, self.tools, turn_index=index)
        message, turn = self.cascade.review(message, turn, interrupt, self.tools)
        return self._output(message, turn, writer)

    async def _afunc(
        self, state: dict[str, Any], config: RunnableConfig, writer: StreamWriter
    ) -> dict[str, Any]:
        messages = self._messages(state)
        models, index = _BoundModels(self, messages, config), self._turn_index(state)
        if not self.cascade.policy.asks_humans:
            message, turn = await self.cascade.arun(models, messages, self.tools, turn_index=index)
            return self._output(message, turn, writer)
        message, turn = await self.cascade.arun_durably(
            models, messages, self.tools, turn_index=index
        )
        message, turn = self.cascade.review(message, turn, interrupt, self.tools)
        return self._output(message, turn, writer)
