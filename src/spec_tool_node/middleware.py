"""``langchain.agents.create_agent`` middleware: the cascade around the model call, a tool gate.

    agent = create_agent(
        model=strong,  # the agent's own model is the strong one
        tools=tools,
        middleware=[
            SpeculativeActionMiddleware(proposer=cheap, verifier=verifier),
            SafetyGateMiddleware(policy),
        ],
    )

``SpeculativeActionMiddleware`` wraps the model call: the proposer runs through the same handler
(``handler(request.override(model=proposer))``), so tools, system prompt and the other middleware
apply to drafts exactly as to the strong call. ``SafetyGateMiddleware`` checks every tool call
right before it runs and answers a forbidden one with an error ``ToolMessage`` instead.
"""

from __future__ import annotations

import asyncio
import operator
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated, Any, Literal, NotRequired

from langchain.agents.middleware import AgentMiddleware, AgentState, ModelRequest, ModelResponse
from langchain.agents.middleware.types import ExtendedModelResponse
from langchain.tools.tool_node import ToolCallRequest
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, ToolMessage
from langgraph.types import Command, interrupt

from spec_tool_node.actions import ToolCall, ToolCallsAction, tool_schemas
from spec_tool_node.cascade import Cascade, can_continue, offers_drafts
from spec_tool_node.chat_models.watch import DraftWatch
from spec_tool_node.config import CascadeConfig
from spec_tool_node.costs import TurnRecord
from spec_tool_node.errors import ConfigError
from spec_tool_node.modes import MODES
from spec_tool_node.node import STREAM_KEY, load_policy, model_name
from spec_tool_node.safety import SafetyPolicy
from spec_tool_node.verifiers.base import Verifier
from spec_tool_node.verifiers.gate import gate_options
from spec_tool_node.verifiers.judge import ChatModelVerifier


class SpecMiddlewareState(AgentState):
    """Agent state plus the per-turn ledger."""

    spec_ledger: NotRequired[Annotated[list[TurnRecord], operator.add]]


def _message(response: Any) -> AIMessage:
    """The AIMessage inside whatever a model handler returned."""
    if isinstance(response, ExtendedModelResponse):
        response = response.model_response
    if isinstance(response, AIMessage):
        return response
    return next(m for m in reversed(response.result) if isinstance(m, AIMessage))


class _HandlerModels:
    """Model calls for one turn of the middleware, all through the agent's own handler."""

    def __init__(
        self, mw: SpeculativeActionMiddleware, request: ModelRequest, handler: Callable
    ) -> None:
        self.request, self.handler = request, handler
        self.proposer, self.strong = mw.proposer, mw.strong or request.model
        self.sample_kwargs = mw.config.sample_kwargs
        self.draft_kwargs = mw.draft_kwargs
        self.proposer_name, self.strong_name = model_name(self.proposer), model_name(self.strong)
        self.judge = mw.judge or ChatModelVerifier(self.strong)

    def _draft_request(self, sample: bool, watch: DraftWatch | None = None) -> ModelRequest:
        extra = self.sample_kwargs if sample else self.draft_kwargs
        settings = {**self.request.model_settings, **extra}
        if watch is not None and offers_drafts(self.proposer):
            settings["draft_watch"] = watch
        return self.request.override(model=self.proposer, model_settings=settings)

    def draft(self, sample: bool, watch: DraftWatch | None = None) -> AIMessage:
        return _message(self.handler(self._draft_request(sample, watch)))

    def act(self) -> AIMessage:
        return _message(self.handler(self.request.override(model=self.strong)))

    async def adraft(self, sample: bool, watch: DraftWatch | None = None) -> AIMessage:
        return _message(await self.handler(self._draft_request(sample, watch)))

    async def aact(self) -> AIMessage:
        return _message(await self.handler(self.request.override(model=self.strong)))

    def answer(self) -> AIMessage:
        return _message(self.handler(self.request.override(model=self.strong, tools=[])))

    async def aanswer(self) -> AIMessage:
        return _message(await self.handler(self.request.override(model=self.strong, tools=[])))

    def _conversation(self) -> list[BaseMessage]:
        system = [self.request.system_message] if self.request.system_message else []
        return [*system, *self.request.messages]

    def continue_draft(self, draft: AIMessage) -> AIMessage:
        """The strong model's own action, written only where ``draft`` is wrong: a direct call on
        the local model (it does not pass through the agent's model handler)."""
        return self.strong.continue_draft(self._conversation(), draft, list(self.request.tools))

    async def acontinue_draft(self, draft: AIMessage) -> AIMessage:
        return await asyncio.to_thread(self.continue_draft, draft)

    def prefill(self, watch: DraftWatch | None = None) -> int:
        """The strong model reads this turn's prompt ahead, beside the drafting (mode F), and
        reads the draft along in ``watch``."""
        prefill = getattr(self.strong, "prefill", None)
        if not prefill:
            return 0
        return prefill(self._conversation(), list(self.request.tools), watch=watch)

    async def aprefill(self, watch: DraftWatch | None = None) -> int:
        return await asyncio.to_thread(self.prefill, watch)

    def uncached_prompt(self) -> int | None:
        """The prompt tokens the strong model would read uncached, when it can tell (a local
        ``HFChatModel``); see ``CascadeConfig.max_uncached_prompt_tokens``."""
        count = getattr(self.strong, "uncached_prompt_tokens", None)
        return count(self._conversation(), list(self.request.tools)) if count else None


class SpeculativeActionMiddleware(AgentMiddleware[SpecMiddlewareState, Any, Any]):
    """Speculative action selection for ``create_agent``.

    Args:
        proposer: the cheap chat model that drafts actions.
        verifier: scores drafts in modes D and E; in mode G, optionally a probe on the
            proposer's drafting pass (see ``SpeculativeActionNode``).
        strong: the strong model; defaults to the agent's own model.
        config: the :class:`CascadeConfig`.
        safety: a :class:`SafetyPolicy` or policy file checked on the chosen action. A rule
            that escalates to a person pauses the agent with ``interrupt()`` as the node does
            (needs a checkpointer; resume with ``Command(resume={"decisions": [...]})``).
    """

    state_schema = SpecMiddlewareState

    def __init__(
        self,
        *,
        proposer: BaseChatModel | None = None,
        verifier: Verifier | None = None,
        strong: BaseChatModel | None = None,
        config: CascadeConfig | None = None,
        safety: SafetyPolicy | str | Path | None = None,
    ) -> None:
        super().__init__()
        self.config = config or CascadeConfig()
        if strong is None and MODES[self.config.mode].scorer == "lossless":
            raise ConfigError(
                f"mode {self.config.mode} (lossless) needs strong=: the model that continues "
                "the drafts must be a local HFChatModel known when the middleware is built, and "
                "the agent's own model is only seen at call time. Pass the agent's model as "
                "strong= as well (create_agent(model=strong, middleware=["
                "SpeculativeActionMiddleware(proposer=..., strong=strong, ...)]))"
            )
        self.proposer, self.strong, self.verifier = proposer, strong, verifier
        self.judge = ChatModelVerifier(strong) if strong is not None else None
        self.cascade = Cascade(  # the strong model defaults to the agent's own
            self.config,
            verifier=verifier,
            policy=load_policy(safety, self.config),
            has_proposer=proposer is not None,
            can_continue=strong is not None and can_continue(strong),
        )
        gate = self.cascade.spec.scorer == "gate"  # the gate reads the drafting pass
        self.draft_kwargs = gate_options(proposer, verifier) if gate else {}

    @staticmethod
    def _context(request: ModelRequest) -> tuple[list[BaseMessage], dict[str, dict[str, Any]]]:
        system: list[BaseMessage] = [request.system_message] if request.system_message else []
        return [*system, *request.messages], tool_schemas(request.tools)

    @staticmethod
    def _response(
        request: ModelRequest, message: AIMessage, turn: TurnRecord
    ) -> ExtendedModelResponse:
        writer = getattr(request.runtime, "stream_writer", None)
        if writer is not None:
            writer({STREAM_KEY: turn.model_dump()})
        return ExtendedModelResponse(
            model_response=ModelResponse(result=[message]),
            command=Command(update={"spec_ledger": [turn]}),
        )

    @staticmethod
    def _turn_index(request: ModelRequest) -> int:
        """This turn's place in the trajectory (the ledger's length), for error messages."""
        return len(request.state.get("spec_ledger") or [])

    def wrap_model_call(
        self, request: ModelRequest, handler: Callable[[ModelRequest], ModelResponse]
    ) -> ExtendedModelResponse:
        context, tools = self._context(request)
        models, index = _HandlerModels(self, request, handler), self._turn_index(request)
        if not self.cascade.policy.asks_humans:
            message, turn = self.cascade.run(models, context, tools, turn_index=index)
            return self._response(request, message, turn)
        message, turn = self.cascade.run_durably(models, context, tools, turn_index=index)
        message, turn = self.cascade.review(message, turn, interrupt, tools)
        return self._response(request, message, turn)

    async def awrap_model_call(
        self, request: ModelRequest, handler: Callable[[ModelRequest], Awaitable[ModelResponse]]
    ) -> ExtendedModelResponse:
        context, tools = self._context(request)
        models, index = _HandlerModels(self, request, handler), self._turn_index(request)
        if not self.cascade.policy.asks_humans:
            message, turn = await self.cascade.arun(models, context, tools, turn_index=index)
            return self._response(request, message, turn)
        message, turn = await self.cascade.arun_durably(models, context, tools, turn_index=index)
        message, turn = self.cascade.review(message, turn, interrupt, tools)
        return self._response(request, message, turn)


class SafetyGateMiddleware(AgentMiddleware):
    """Checks every tool call right before it runs; a forbidden one never runs.

    The tool gets an error ``ToolMessage`` naming the rule instead, so the model sees why.

    Args:
        policy: a :class:`SafetyPolicy` or the path of a policy file.
        escalate: what an ``escalate`` rule means at tool time, where there is no stronger model
            left to ask: ``"block"`` (default) or ``"allow"``. A rule that escalates to a person
            is always refused here: the person is asked before the tool node, by
            :class:`SpeculativeActionMiddleware` (or LangChain's ``HumanInTheLoopMiddleware``).
    """

    def __init__(
        self, policy: SafetyPolicy | str | Path, *, escalate: Literal["block", "allow"] = "block"
    ) -> None:
        super().__init__()
        self.policy = policy if isinstance(policy, SafetyPolicy) else SafetyPolicy.from_file(policy)
        self.escalate = escalate

    def _refusal(self, request: ToolCallRequest) -> ToolMessage | None:
        call = request.tool_call
        decision = self.policy.bind(_messages(request.state)).check(
            ToolCallsAction(calls=[ToolCall(name=call["name"], arguments=call["args"])])
        )
        if decision.effect == "allow" or (
            decision.escalate_to == "strong" and self.escalate == "allow"
        ):
            return None
        return ToolMessage(
            content=f"BLOCKED by safety rule {decision.rule}: {decision.reason} (tool not run)",
            tool_call_id=call["id"],
            name=call["name"],
            status="error",
        )

    def wrap_tool_call(
        self, request: ToolCallRequest, handler: Callable[[ToolCallRequest], ToolMessage | Command]
    ) -> ToolMessage | Command:
        return self._refusal(request) or handler(request)

    async def awrap_tool_call(
        self,
        request: ToolCallRequest,
        handler: Callable[[ToolCallRequest], Awaitable[ToolMessage | Command]],
    ) -> ToolMessage | Command:
        return self._refusal(request) or await handler(request)


def _messages(state: Any) -> list[Any]:
    """The conversation in a tool node's state (a dict, a list of messages or a model)."""
    if isinstance(state, list):
        return state
    if isinstance(state, dict):
        messages = state.get("messages")
    else:
        messages = getattr(state, "messages", None)
    return list(messages) if isinstance(messages, list | tuple) else []
