"""One trajectory in its own process, checkpointed to SQLite, for the checkpoint-and-resume test.

    python -m tests.reliability.checkpoint_child first  DB LOG HANG   # blocks a transfer, then
                                                                      # hangs at HANG (killed there)
    python -m tests.reliability.checkpoint_child resume DB LOG        # continues the thread

Models and tools are deterministic and write one line to LOG per *completed* call, so the parent
can compare what really completed with what the ledger counts. HANG is where the first run stops
making progress (``tool``: inside get_weather; ``model``: inside the proposer's answer after the
tool result) after writing ``LOG.hung``; the parent kills the process there. ``resume`` prints the
final state as JSON.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, ToolMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from langchain_core.tools import tool
from langgraph.checkpoint.sqlite import SqliteSaver
from langgraph.graph import START, StateGraph
from langgraph.prebuilt import ToolNode, tools_condition

from spec_tool_node.config import CascadeConfig
from spec_tool_node.costs import CallRecord
from spec_tool_node.node import SpecAgentState, SpeculativeActionNode
from spec_tool_node.safety import SafetyPolicy
from spec_tool_node.verifiers.base import Verdict, Verifier

THREAD = {"configurable": {"thread_id": "trajectory-1"}}
LOG = Path()
HANG = ""


def log(**entry: Any) -> None:
    with LOG.open("a", encoding="utf-8") as f:
        f.write(json.dumps(entry) + "\n")


def hang(where: str) -> None:
    if where == HANG:
        LOG.with_suffix(".hung").write_text(where)
        time.sleep(3600)


@tool
def transfer_money(recipient: str, amount: str) -> str:
    """Send money."""
    log(tool="transfer_money", recipient=recipient, amount=amount)
    return "sent"


@tool
def get_weather(city: str) -> str:
    """Current weather in a city."""
    hang("tool")
    log(tool="get_weather", city=city)
    return f"sunny in {city}"


class LoggedModel(BaseChatModel):
    """Pays when asked to pay, looks the weather up when asked, answers after a tool result."""

    name: str

    @property
    def _llm_type(self) -> str:
        return "logged"

    def bind_tools(self, tools: Any, **kwargs: Any) -> Any:
        return self.bind(tools=tools, **kwargs)

    def _generate(self, messages: list[BaseMessage], *args: Any, **kwargs: Any) -> ChatResult:
        last = messages[-1]
        if isinstance(last, ToolMessage):
            if self.name == "cheap":
                hang("model")
            reply = AIMessage("It is sunny in Paris.")
        elif isinstance(last, HumanMessage) and "pay" in str(last.content):
            args = {"recipient": "bob", "amount": "5,000"}
            reply = AIMessage("", tool_calls=[{"name": "transfer_money", "args": args, "id": "p"}])
        else:
            args = {"city": "Paris"}
            reply = AIMessage("", tool_calls=[{"name": "get_weather", "args": args, "id": "w"}])
        reply.usage_metadata = {"input_tokens": len(messages), "output_tokens": 1,
                                "total_tokens": len(messages) + 1}  # fmt: skip
        reply.response_metadata = {"model_name": self.name}
        log(model=self.name, messages=len(messages))
        return ChatResult(generations=[ChatGeneration(message=reply)])


class ConfidentVerifier(Verifier):
    """Accepts every draft (the gate, not the verifier, is what stops the transfer)."""

    def score_batch(self, context: Any, tools: Any, drafts: Any) -> list[Verdict]:
        log(model="verifier", messages=len(context))
        record = CallRecord(role="verifier", model="verifier", purpose="verify")
        return [Verdict(0.9, record) for _ in drafts]


POLICY = SafetyPolicy.from_dict(
    [
        {
            "id": "over-limit",
            "tool": "transfer_money",
            "when": [{"arg": "amount", "op": "gt", "value": 1000}],
            "reason": "transfers over 1000 need approval",
        }
    ]
)


def graph(saver: SqliteSaver) -> Any:
    node = SpeculativeActionNode(
        proposer=LoggedModel(name="cheap"),
        strong=LoggedModel(name="strong"),
        verifier=ConfidentVerifier(),
        tools=[transfer_money, get_weather],
        config=CascadeConfig(mode="D"),
        safety=POLICY,
    )
    builder = StateGraph(SpecAgentState)
    builder.add_node("agent", node)
    builder.add_node("tools", ToolNode([transfer_money, get_weather]))
    builder.add_edge(START, "agent")
    builder.add_conditional_edges("agent", tools_condition)
    builder.add_edge("tools", "agent")
    return builder.compile(checkpointer=saver)


def main(phase: str, db: str, log_path: str, where: str = "") -> None:
    global LOG, HANG
    LOG, HANG = Path(log_path), where
    with SqliteSaver.from_conn_string(db) as saver:
        g = graph(saver)
        # durability="sync": each step's checkpoint is on disk before the next step starts. The
        # default ("async") writes it while the next step runs, so a crash in that step can lose
        # the finished step's writes and repeat its model calls (seen under a loaded CPU).
        if phase == "first":
            question = {"messages": [HumanMessage("pay bob 5,000 dollars")]}
            g.invoke(question, THREAD, durability="sync")
            question = {"messages": [HumanMessage("and the weather in Paris?")]}
            g.invoke(question, THREAD, durability="sync")
            return
        state = g.invoke(None, THREAD, durability="sync")
        print(
            json.dumps(
                {
                    "ledger": [t.model_dump(mode="json") for t in state["spec_ledger"]],
                    "messages": [[m.type, m.content] for m in state["messages"]],
                }
            )
        )


if __name__ == "__main__":
    main(*sys.argv[1:])
