"""Tools, policies and a ReAct graph shared by the reliability tests.

The tools record what really ran in ``RAN`` (cleared by the autouse fixture in each module), so
a test states "this call never reached a tool" by looking there, not at the node's output.
"""

from __future__ import annotations

import asyncio
from typing import Any

from langchain_core.tools import tool
from langgraph.graph import START, StateGraph
from langgraph.prebuilt import ToolNode, tools_condition

from spec_tool_node.node import SpecAgentState, SpeculativeActionNode
from spec_tool_node.safety import SafetyPolicy

RAN: list[tuple[str, dict[str, Any]]] = []


@tool
def transfer_money(recipient: str, amount: str) -> str:
    """Send money; the amount is free text, as many real payment APIs take it."""
    RAN.append(("transfer_money", {"recipient": recipient, "amount": amount}))
    return "sent"


@tool
def delete_all_files(path: str) -> str:
    """Delete every file under a path."""
    RAN.append(("delete_all_files", {"path": path}))
    return "deleted"


@tool
def send_email(to: str, body: str) -> str:
    """Send an email."""
    RAN.append(("send_email", {"to": to, "body": body}))
    return "sent"


@tool
def get_weather(city: str) -> str:
    """Current weather in a city."""
    RAN.append(("get_weather", {"city": city}))
    return f"sunny in {city}"


TOOLS = [transfer_money, delete_all_files, send_email, get_weather]

LIMIT = SafetyPolicy.from_dict(
    [
        {
            "id": "over-limit",
            "tool": "transfer_money",
            "when": [{"arg": "amount", "op": "gt", "value": 1000}],
            "reason": "transfers over 1000 need approval",
        },
        {"id": "no-delete", "tool": "delete_*", "reason": "deleting is irreversible"},
    ]
)
"""The issue's rules: a limit on transfer_money and a glob on delete_*."""

OUTSIDE_MAIL = {
    "id": "outside-mail",
    "effect": "escalate",
    "tool": "send_email",
    "when": [{"arg": "to", "op": "regex", "value": r"^(?![^@]+@acme\.com$)"}],
    "reason": "email to an outside address",
}


def react_graph(node: SpeculativeActionNode, checkpointer: Any = None, tools: Any = TOOLS) -> Any:
    """The ReAct loop of LangGraph's docs with the node as its model node."""
    builder = StateGraph(SpecAgentState)
    builder.add_node("agent", node)
    builder.add_node("tools", ToolNode(tools))
    builder.add_edge(START, "agent")
    builder.add_conditional_edges("agent", tools_condition)
    builder.add_edge("tools", "agent")
    return builder.compile(checkpointer=checkpointer)


def invoke(graph: Any, state: Any, use_async: bool, config: Any = None) -> Any:
    """Run a compiled graph through its sync or its async driver."""
    return asyncio.run(graph.ainvoke(state, config)) if use_async else graph.invoke(state, config)
