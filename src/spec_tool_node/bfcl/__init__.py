"""BFCL v4 as data and as live environments (the ``bfcl`` extra; ``bfcl-eval`` with ``--no-deps``).

- :mod:`~spec_tool_node.bfcl.data`: reading the data, schema conversion, the fixed split,
  single-turn examples;
- :mod:`~spec_tool_node.bfcl.tasks`: multi-turn tasks (one type for examples and trajectories);
- :mod:`~spec_tool_node.bfcl.environment`: a task's executable environment (a context manager);
- :mod:`~spec_tool_node.bfcl.replay`: multi-turn ground truth replayed into decision examples;
- :mod:`~spec_tool_node.bfcl.datasets`: whole categories and the split;
- :mod:`~spec_tool_node.bfcl.matching`: BFCL's checker for one action;
- :mod:`~spec_tool_node.bfcl.trajectories`: multi-turn tasks run live as LangGraph agents.

Only evaluation, training and the command line import this package; the node, the middleware
and the cascade never do. Nothing here imports ``bfcl_eval`` before it is needed.
"""

from spec_tool_node.bfcl.data import (
    ADDED_FUNCTIONS_PROMPT,
    BFCL_INSTALL_HINT,
    CATEGORIES,
    HELDOUT_SINGLE_TURN,
    IRRELEVANCE_CATEGORIES,
    MULTI_TURN_CATEGORIES,
    SINGLE_TURN_CATEGORIES,
    SOURCE,
    TRAIN_SINGLE_TURN,
    BFCLDataError,
    BFCLNotInstalledError,
    Split,
    convert_function,
    convert_schema,
    data_dir,
    split_of,
)
from spec_tool_node.bfcl.datasets import load_category, load_split
from spec_tool_node.bfcl.replay import load_multi_turn, parse_call
from spec_tool_node.bfcl.tasks import MultiTurnTask, heldout_task_ids, load_task

__all__ = [
    "ADDED_FUNCTIONS_PROMPT",
    "BFCL_INSTALL_HINT",
    "CATEGORIES",
    "HELDOUT_SINGLE_TURN",
    "IRRELEVANCE_CATEGORIES",
    "MULTI_TURN_CATEGORIES",
    "SINGLE_TURN_CATEGORIES",
    "SOURCE",
    "TRAIN_SINGLE_TURN",
    "BFCLDataError",
    "BFCLNotInstalledError",
    "MultiTurnTask",
    "Split",
    "convert_function",
    "convert_schema",
    "data_dir",
    "heldout_task_ids",
    "load_category",
    "load_multi_turn",
    "load_split",
    "load_task",
    "parse_call",
    "split_of",
]
