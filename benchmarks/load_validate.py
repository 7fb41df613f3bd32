"""Benchmark: load and validate a large, realistic project with `load_project`.

Generates a project of N flows (default 500: a few shared helper flows that are only called,
the rest user flows of 6-12 steps mixing described `collect`s with rejections, `action`/utter
steps, `set_slots`, `if`/`then`/`else` branching with inline steps, a `call` to a helper and a
closing `link`), about two slots per flow (categorical, float, bool, compared in conditions) and
one response per collected slot. Then times `load_project` over several runs.

    .venv/bin/python benchmarks/load_validate.py [--flows 500] [--runs 5] [--out DIR] [--profile]

Results go to benchmarks/results/load_validate.json.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import platform
import pstats
import random
import statistics
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from voicecalm.project import Project, ProjectError, load_project  # noqa: E402

RESULTS = REPO / "benchmarks" / "results" / "load_validate.json"
HELPER_FLOWS = 10
FLOWS_PER_FILE = 10
CATEGORIES = ("bronze", "silver", "gold", "platinum")
TOPICS = (
    "card", "loan", "mortgage", "savings goal", "insurance claim", "direct debit", "standing order",
    "overdraft", "travel notice", "statement", "payee", "pension", "investment", "address", "alert",
)
VERBS = ("open", "close", "change", "review", "dispute", "renew", "pause", "report", "upgrade", "cancel")


def _flow_id(index: int) -> str:
    return f"flow_{index:04d}"


def _dump(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=100), encoding="utf-8")


class _Generator:
    def __init__(self, flows: int, seed: int) -> None:
        self.rng = random.Random(seed)
        self.helpers = min(HELPER_FLOWS, max(1, flows // 50))
        self.user_flows = flows - self.helpers
        self.slots: dict[str, dict[str, Any]] = {}
        self.responses: dict[str, list[dict[str, Any]]] = {}
        self.actions: list[str] = []

    # --- domain pieces --------------------------------------------------------------------

    def slot(self, name: str, definition: dict[str, Any], question: str | None) -> str:
        self.slots[name] = definition
        if question is not None:
            self.responses[f"utter_ask_{name}"] = [{"text": question}]
        return name

    def response(self, name: str, *texts: str, condition: str | None = None) -> str:
        variations: list[dict[str, Any]] = []
        if condition is not None:
            variations.append({"text": texts[0] + " (conditional)", "condition": condition})
        variations.extend({"text": text} for text in texts)
        self.responses[name] = variations
        return name

    # --- flows ----------------------------------------------------------------------------

    def helper(self, index: int) -> tuple[str, dict[str, Any]]:
        flow_id = f"helper_{index:02d}"
        code = self.slot(
            f"{flow_id}_code", {"type": "text", "mappings": [{"type": "from_llm"}]}, f"Please give your code {index}."
        )
        verified = self.slot(f"{flow_id}_verified", {"type": "bool", "initial_value": False, "mappings": [{"type": "controlled"}]}, None)
        action = f"action_verify_{flow_id}"
        self.actions.append(action)
        done = self.response(f"utter_{flow_id}_done", "Thanks, you are verified.")
        steps = [
            {"id": "check", "noop": True, "next": [{"if": f"slots.{verified}", "then": "END"}, {"else": "ask_code"}]},
            {"id": "ask_code", "collect": code, "description": f"the customer's verification code {index}, digits only"},
            {"id": "verify", "action": action},
            {"id": "done", "action": done},
        ]
        return flow_id, {
            "name": f"helper {index}",
            "description": f"Shared verification step {index}; only called by other flows.",
            "if": False,
            "steps": steps,
        }

    def user_flow(self, index: int) -> tuple[str, dict[str, Any]]:
        rng = self.rng
        flow_id = _flow_id(index)
        topic, verb = rng.choice(TOPICS), rng.choice(VERBS)
        tier = self.slot(
            f"{flow_id}_tier",
            {"type": "categorical", "values": list(CATEGORIES), "mappings": [{"type": "from_llm"}]},
            f"Which tier should the {topic} have?",
        )
        numeric = index % 2 == 0
        if numeric:
            second = self.slot(
                f"{flow_id}_amount",
                {"type": "float", "min_value": 0.0, "max_value": 100000.0, "mappings": [{"type": "from_llm"}]},
                f"What amount should I use for the {topic}?",
            )
            check = f"slots.{second} > {rng.randint(100, 5000)}"
        else:
            second = self.slot(
                f"{flow_id}_confirmed", {"type": "bool", "mappings": [{"type": "from_llm"}]}, f"Shall I {verb} the {topic}?"
            )
            check = f"slots.{second} is true"
        custom_action = f"action_{verb.replace(' ', '_')}_{flow_id}"
        self.actions.append(custom_action)
        intro = self.response(f"utter_{flow_id}_intro", f"Let's {verb} your {topic}.", f"Okay, {verb} {topic}.")
        big = self.response(
            f"utter_{flow_id}_big", f"That is a big {topic} change.", condition=f"slots.{tier} = '{CATEGORIES[2]}'"
        )
        done = self.response(f"utter_{flow_id}_done", f"Your {topic} is sorted.")
        too_low = self.response(f"utter_{flow_id}_rejected", "That value does not work here.")

        second_step: dict[str, Any] = {
            "id": "ask_second",
            "collect": second,
            "description": f"{'the amount in US dollars, a number' if numeric else 'true if the customer agrees'}",
        }
        if numeric:
            second_step["rejections"] = [{"if": f"slots.{second} < 1", "utter": too_low}]
        else:
            second_step["ask_before_filling"] = True
        steps: list[dict[str, Any]] = [{"id": "intro", "action": intro}] if rng.random() < 0.7 else []
        steps += [
            {"id": "verify", "call": f"helper_{index % self.helpers:02d}", "description": "verify the caller first"},
            {
                "id": "ask_tier",
                "collect": tier,
                "description": f"the {topic} tier, one of {', '.join(CATEGORIES)}",
                "rejections": [{"if": f"slots.{tier} = '{CATEGORIES[0]}'", "utter": too_low}],
            },
            second_step,
        ]
        for extra in range(rng.randint(0, 2)):  # 9-12 steps in all, 3 of them inline
            steps.append(
                rng.choice((
                    {"id": f"extra_{extra}", "action": intro},
                    {"id": f"extra_{extra}", "action": custom_action},
                    {"id": f"extra_{extra}", "set_slots": [{tier: rng.choice(CATEGORIES)}], "description": "default tier"},
                ))
            )
        steps.append(
            {
                "id": "decide",
                "noop": True,
                "next": [
                    {
                        "if": f"slots.{tier} = '{CATEGORIES[2]}' and {check}",
                        "then": [
                            {"id": "warn_big", "action": big},
                            {"id": "upgrade", "set_slots": [{tier: CATEGORIES[3]}], "next": "execute"},
                        ],
                    },
                    {"if": f"slots.{tier} = '{CATEGORIES[0]}' or not slots.{tier}", "then": [{"id": "stop", "action": done, "next": "END"}]},
                    {"else": "execute"},
                ],
            }
        )
        steps.append({"id": "execute", "action": custom_action})
        steps.append({"id": "next_topic", "link": _flow_id((index + 1) % self.user_flows), "description": "carry on"})
        flow: dict[str, Any] = {
            "name": f"{verb} {topic} {index}",
            "description": f"{verb.capitalize()} the customer's {topic} ({index}); asks for the tier and details.",
            "steps": steps,
        }
        if index % 7 == 0:
            flow["if"] = f"slots.helper_{index % self.helpers:02d}_verified or slots.{tier} != '{CATEGORIES[1]}'"
        if index % 5 == 0:
            flow["persisted_slots"] = [tier]
        return flow_id, flow

    # --- files ----------------------------------------------------------------------------

    def write(self, root: Path) -> None:
        """One flow file and one domain file per chunk of flows, as a team would split them."""
        makers = [lambda i=i: self.helper(i) for i in range(self.helpers)]
        makers += [lambda i=i: self.user_flow(i) for i in range(self.user_flows)]
        for part, start in enumerate(range(0, len(makers), FLOWS_PER_FILE)):
            self.slots, self.responses, self.actions = {}, {}, []
            chunk = dict(make() for make in makers[start:start + FLOWS_PER_FILE])
            _dump(root / "data" / f"flows_{part:03d}.yml", {"version": "3.1", "flows": chunk})
            _dump(
                root / "domain" / f"part_{part:03d}.yml",
                {"version": "3.1", "actions": self.actions, "slots": self.slots, "responses": self.responses},
            )
        _dump(
            root / "config.yml",
            {
                "recipe": "default.v1",
                "language": "en",
                "assistant_id": "benchmark",
                "pipeline": [{"name": "CompactLLMCommandGenerator", "flow_retrieval": {"active": True}}],
                "policies": [{"name": "FlowPolicy"}, {"name": "EnterpriseSearchPolicy"}],
            },
        )


def generate(root: Path, flows: int = 500, seed: int = 7) -> None:
    _Generator(flows, seed).write(root)


def _count_steps(project: Project) -> int:
    return sum(len(flow.steps) for flow in project.flows.values())


def _load_checked(root: Path) -> Project:
    try:
        return load_project(root)
    except ProjectError as error:  # the generator is broken, not the loader
        raise SystemExit(f"generated project does not load:\n{error}") from error


def _profile(root: Path, top: int) -> str:
    profiler = cProfile.Profile()
    profiler.enable()
    load_project(root)
    profiler.disable()
    out = io.StringIO()
    stats = pstats.Stats(profiler, stream=out)
    stats.sort_stats("cumulative").print_stats(top)
    out.write("\n--- by own time ---\n")
    stats.sort_stats("tottime").print_stats(top)
    return out.getvalue()


def run(root: Path, runs: int) -> dict[str, Any]:
    project = _load_checked(root)  # warm-up (imports, caches), and the generated project must be valid
    assert not [w for w in project.warnings], "\n".join(map(str, project.warnings))
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        load_project(root)
        times.append(time.perf_counter() - start)
    user_flows = [flow for flow in project.flows.values() if not flow.is_pattern]
    return {
        "benchmark": "load_validate",
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "machine": platform.machine(),
        "runs": runs,
        "seconds": {"min": min(times), "median": statistics.median(times), "max": max(times), "all": times},
        "flows": len(project.flows),
        "user_flows": len(user_flows),
        "steps": _count_steps(project),
        "user_flow_steps": sum(len(flow.steps) for flow in user_flows),
        "slots": len(project.domain.slots),
        "responses": len(project.domain.responses),
        "files": sum(1 for p in root.rglob("*.yml")),
        "bytes": sum(p.stat().st_size for p in root.rglob("*.yml")),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--flows", type=int, default=500, help="number of flows to generate (default 500)")
    parser.add_argument("--runs", type=int, default=5, help="timed load_project runs (default 5)")
    parser.add_argument("--out", type=Path, help="write the project here (kept) instead of a temp dir")
    parser.add_argument("--seed", type=int, default=7, help="random seed of the generator")
    parser.add_argument("--profile", action="store_true", help="also print a cProfile of one load")
    parser.add_argument("--results", type=Path, default=RESULTS, help="where to write the JSON results")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="vc_bench_") as tmp:
        root = args.out if args.out is not None else Path(tmp) / "project"
        root.mkdir(parents=True, exist_ok=True)
        started = time.perf_counter()
        generate(root, args.flows, args.seed)
        generated = time.perf_counter() - started
        result = run(root, args.runs)
        result["generate_seconds"] = generated
        seconds = result["seconds"]
        print(
            f"load_project over {result['runs']} runs: min {seconds['min']:.3f} s, "
            f"median {seconds['median']:.3f} s, max {seconds['max']:.3f} s"
        )
        print(
            f"{result['flows']} flows ({result['user_flows']} project flows), {result['steps']} steps "
            f"({result['user_flow_steps']} in project flows), {result['slots']} slots, "
            f"{result['responses']} responses, {result['files']} files, {result['bytes'] / 1e6:.1f} MB"
        )
        if args.profile:
            print(_profile(root, 30))
    args.results.parent.mkdir(parents=True, exist_ok=True)
    args.results.write_text(json.dumps(result, indent=2) + "\n")
    print(f"results written to {args.results}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
