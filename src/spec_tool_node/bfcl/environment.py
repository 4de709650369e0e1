"""BFCL's executable environment for one task, as a context manager that cleans up after itself.

BFCL keeps environment instances in a module global named after a model name and the task id;
every :class:`BFCLEnvironment` gets a private name and removes what it left there on exit.
"""

from __future__ import annotations

import keyword
import uuid
from collections.abc import Sequence
from types import TracebackType
from typing import Any

from spec_tool_node.bfcl.tasks import MultiTurnTask, multi_turn_modules


def call_string(name: str, arguments: dict[str, Any]) -> str | None:
    """A tool call as BFCL's python-call string (``convert_to_function_call``), or ``None``.

    ``None`` when ``name`` or an argument name is not a plain Python identifier: BFCL ``eval``s
    the string, so such a call is never built.
    """
    if not _identifier(name) or not all(_identifier(k) for k in arguments):
        return None
    return f"{name}({','.join(f'{k}={v!r}' for k, v in arguments.items())})"


def _identifier(text: Any) -> bool:
    return isinstance(text, str) and text.isidentifier() and not keyword.iskeyword(text)


def cleanup_namespace(prefix: str) -> None:
    """Remove the instances BFCL keeps under names starting with ``prefix``."""
    namespace = vars(multi_turn_modules()[0])
    for key in [k for k in namespace if k.startswith(prefix)]:
        del namespace[key]


class BFCLEnvironment:
    """The instances of one task's environment classes, loaded with its initial configuration.

    Use it as a context manager (``with BFCLEnvironment(task) as env:``), or call :meth:`close`.
    """

    def __init__(self, task: MultiTurnTask, label: str = "model") -> None:
        self.task = task
        self.name = f"spec_tool_node_{uuid.uuid4().hex}_{label}"
        self.instances: dict[str, Any] = {}
        self.execute([])  # instantiate and load the initial config now

    def __enter__(self) -> BFCLEnvironment:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def execute(self, calls: Sequence[str]) -> list[str]:
        """Run python-call strings in order; each result as BFCL's loop returns it."""
        results, self.instances = multi_turn_modules()[0].execute_multi_turn_func_call(
            list(calls),
            self.task.initial_config,
            self.task.involved_classes,
            self.name,
            self.task.id,
            long_context=self.task.long_context,
        )
        return results

    def call(self, name: str, arguments: dict[str, Any]) -> str:
        """Run one tool call; a call that cannot be built safely is an error result."""
        text = call_string(name, arguments)
        if text is None:
            bad = [k for k in arguments if not _identifier(k)]
            return f"Error during execution: invalid argument names {bad!r} for {name!r}"
        return self.execute([text])[0]

    def close(self) -> None:
        """Remove this environment's instances from BFCL's namespace."""
        cleanup_namespace(self.name)
