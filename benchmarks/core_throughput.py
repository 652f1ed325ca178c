"""Wall and CPU time of `rtune eval core` against lm-evaluation-harness itself: same items, model, process.

Per task, both engines of `rtune.evals.core.run` evaluate the same first N items of our local copy
(lm-eval through its own task YAMLs over them, `rtune.evals.core.lm_eval_tasks`), one after the other
in this process, so they share its threads and the warm page cache; each time covers the whole run
(model load, prompts, scoring, result files), as a user waits for it. Both run today's lm-eval
protocol, so their per-item numbers must agree: the script checks prompts, predictions and
log-likelihoods. `--recompute` also times our scorer against recomputing the context for every
choice (lm-eval's HF path, in our code) on the same requests.

    python benchmarks/core_throughput.py --model gemma-3-270m --data-dir DATA --limit 300 \\
        --tasks arc_easy --out core_throughput.json
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path


def timed(function, *args, **kwargs):
    wall, cpu = time.perf_counter(), time.process_time()
    result = function(*args, **kwargs)
    return result, time.perf_counter() - wall, time.process_time() - cpu


def engine_run(engine: str, task: str, args, folder: Path) -> tuple[list[dict], float, float]:
    """(samples, wall s, CPU s) of one engine on one task."""
    from rtune.evals.core import CoreEvalSettings, run
    from rtune.evals.core.report import samples_path
    from rtune.io import read_jsonl

    out = folder / f"{engine}-{task}.json"
    settings = CoreEvalSettings(
        model=args.model,
        out=out,
        tasks=(task,),
        data_dir=args.data_dir,
        limit=args.mmlu_limit if task == "mmlu" else args.limit,
        batch_size=args.batch_size,
        chat_template=args.chat_template,
        engine=engine,
        protocol="lm-eval",
        device="cpu",
    )
    _, wall, cpu = timed(run, settings)
    return read_jsonl(samples_path(out)), wall, cpu


def recompute_row(task: str, samples: list[dict], args) -> dict:
    """Our scorer against a plain forward of context + choice per choice, on the requests the builtin run scored."""
    from rtune.evals.choice_scorer import ChoiceScorer, ScoreRequest, score_recompute
    from rtune.models import load_model

    model, tokenizer = load_model(args.model)
    requests = [ScoreRequest(s["context"], tuple(s["continuations"])) for s in samples]
    scorer = ChoiceScorer(model, tokenizer, batch_size=args.batch_size)
    _, wall, cpu = timed(scorer.score, requests)
    _, base_wall, base_cpu = timed(score_recompute, model, tokenizer, requests, args.batch_size)
    return {"recompute_wall_ratio": round(base_wall / wall, 2), "recompute_cpu_ratio": round(base_cpu / cpu, 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="gemma-3-270m")
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--tasks", default="arc_easy,arc_challenge,openbookqa,piqa,hellaswag,mmlu")
    parser.add_argument("--limit", type=int, default=100, help="first N items per task")
    parser.add_argument("--mmlu-limit", type=int, default=2, help="first N items per MMLU subject")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--chat-template", action="store_true", help="score through the chat template")
    parser.add_argument("--recompute", action="store_true", help="also time our scorer against recomputing")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    import torch

    from rtune.evals.core.lm_eval import agreement
    from rtune.models import prepare_model

    args.model = prepare_model(args.model)
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for task in args.tasks.split(","):
            ours, wall, cpu = engine_run("builtin", task, args, Path(folder))
            theirs, lm_wall, lm_cpu = engine_run("lm-eval", task, args, Path(folder))
            found = agreement(ours, theirs)["mmlu" if task == "mmlu" else task]
            row = {
                "task": task,
                "items": found.items,
                "ours_wall_s": round(wall, 1),
                "lm_eval_wall_s": round(lm_wall, 1),
                "ours_cpu_s": round(cpu, 1),
                "lm_eval_cpu_s": round(lm_cpu, 1),
                "wall_ratio": round(wall / lm_wall, 2),
                "cpu_ratio": round(cpu / lm_cpu, 2),
                "same_predictions": found.same_prediction == found.items,
                "same_prompts": found.same_prompt == found.items,
                "max_abs_logprob_diff": found.max_abs_delta,
            }
            if args.recompute:
                row |= recompute_row(task, [s for s in ours if "logprobs" in s], args)
            rows.append(row)
            print(
                f"{task:<14} {found.items:>4} items  ours {wall:7.1f} s wall {cpu:7.1f} s cpu  "
                f"lm-eval {lm_wall:7.1f} s wall {lm_cpu:7.1f} s cpu  "
                f"ours/lm-eval: x{row['wall_ratio']} wall, x{row['cpu_ratio']} cpu  "
                f"same predictions {row['same_predictions']}  max |Δlogprob| {found.max_abs_delta:.1e}",
                flush=True,
            )
    total = {key: sum(r[key] for r in rows) for key in ("ours_wall_s", "lm_eval_wall_s", "ours_cpu_s", "lm_eval_cpu_s")}
    summary = {
        "model": args.model,
        "chat_template": args.chat_template,
        "batch_size": args.batch_size,
        "torch_threads": torch.get_num_threads(),
        "load_average": os.getloadavg(),
        "tasks": rows,
        "wall_ratio": round(total["ours_wall_s"] / total["lm_eval_wall_s"], 2),
        "cpu_ratio": round(total["ours_cpu_s"] / total["lm_eval_cpu_s"], 2),
    }
    print(f"overall ours/lm-eval: x{summary['wall_ratio']} wall, x{summary['cpu_ratio']} cpu (below 1: ours faster)")
    if args.out:
        args.out.write_text(json.dumps(summary, indent=2) + "\n")


if __name__ == "__main__":
    main()
