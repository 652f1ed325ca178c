"""Items/s of `rtune eval core`'s scorer against recomputing the context for every choice, same run, same scores.

The baseline is the plain path lm-eval's HF backend takes: one forward of context + choice per
choice, logits at every position. Ours runs each context once, keeps logits of its last position
only, and scores all choices on the cached prefix. Both score the same requests in the same
process, one after the other; the script checks they agree (log-probabilities and predictions)
and reports items/s by wall clock and by CPU time (the fairer figure on a shared machine).

    python benchmarks/core_throughput.py --model gemma-3-270m --data-dir ../shared/data \\
        --hellaswag 40 --mmlu 20 --out core_throughput.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path


def timed(function, *args):
    wall, cpu = time.perf_counter(), time.process_time()
    result = function(*args)
    return result, time.perf_counter() - wall, time.process_time() - cpu


def mmlu_slice(items, n: int):
    """The first question of each subject, up to n: every subject's prompt length, not one subject's."""
    firsts = {}
    for item in items:
        firsts.setdefault(item.subject, item)
    return list(firsts.values())[:n]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="gemma-3-270m")
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--hellaswag", type=int, default=40, help="HellaSwag items (first N)")
    parser.add_argument("--mmlu", type=int, default=20, help="MMLU items (first item of the first N subjects)")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--chat-template", action="store_true",
                        help="score through the chat template (default: plain prompts)")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()

    import torch

    from rtune.evals.choice_scorer import ChoiceScorer, score_recompute
    from rtune.evals.core.multiple_choice import mc_outcome
    from rtune.evals.core.prompts import mc_request, prompt_style
    from rtune.evals.core.tasks import MC_TASKS
    from rtune.models import load_model

    model, tokenizer = load_model(args.model)
    style = prompt_style(tokenizer, args.chat_template)
    sets = {"hellaswag": MC_TASKS["hellaswag"].load(args.data_dir)[: args.hellaswag],
            "mmlu": mmlu_slice(MC_TASKS["mmlu"].load(args.data_dir), args.mmlu)}
    scorer = ChoiceScorer(model, tokenizer, batch_size=args.batch_size)
    rows = []
    for name, items in sets.items():
        if not items:
            continue
        task = MC_TASKS[name]
        requests = [mc_request(item, [], task.description(item.subject), style) for item in items]
        scorer.score(requests[:2]), score_recompute(model, tokenizer, requests[:2], args.batch_size)  # warm-up
        fast, fast_wall, fast_cpu = timed(scorer.score, requests)
        slow, slow_wall, slow_cpu = timed(score_recompute, model, tokenizer, requests, args.batch_size)
        diff = max(abs(a.logprob - b.logprob)
                   for fa, sa in zip(fast, slow, strict=True) for a, b in zip(fa, sa, strict=True))
        same = all(mc_outcome(item, fa) == mc_outcome(item, sa)
                   for item, fa, sa in zip(items, fast, slow, strict=True))
        rows.append({"task": name, "items": len(items), "choices": sum(len(i.choices) for i in items),
                     "ours_wall_s": round(fast_wall, 2), "baseline_wall_s": round(slow_wall, 2),
                     "ours_cpu_s": round(fast_cpu, 2), "baseline_cpu_s": round(slow_cpu, 2),
                     "ours_items_per_s": round(len(items) / fast_wall, 3),
                     "baseline_items_per_s": round(len(items) / slow_wall, 3),
                     "speedup_wall": round(slow_wall / fast_wall, 2), "speedup_cpu": round(slow_cpu / fast_cpu, 2),
                     "max_abs_logprob_diff": diff, "same_predictions": same})
    total = {key: sum(r[key] for r in rows)
             for key in ("items", "ours_wall_s", "baseline_wall_s", "ours_cpu_s", "baseline_cpu_s")}
    summary = {"model": args.model, "chat_template": style.chat, "batch_size": args.batch_size,
               "torch_threads": torch.get_num_threads(),
               "tasks": rows, "speedup_wall": round(total["baseline_wall_s"] / total["ours_wall_s"], 2),
               "speedup_cpu": round(total["baseline_cpu_s"] / total["ours_cpu_s"], 2),
               "ours_items_per_s": round(total["items"] / total["ours_wall_s"], 3),
               "baseline_items_per_s": round(total["items"] / total["baseline_wall_s"], 3)}
    for r in rows:
        print(f"{r['task']:<10} {r['items']:>4} items  ours {r['ours_items_per_s']:.3f} items/s  "
              f"baseline {r['baseline_items_per_s']:.3f} items/s  x{r['speedup_wall']} wall, x{r['speedup_cpu']} cpu  "
              f"max |Δlogprob| {r['max_abs_logprob_diff']:.1e}  same predictions: {r['same_predictions']}")
    print(f"overall: x{summary['speedup_wall']} wall, x{summary['speedup_cpu']} cpu "
          f"({summary['ours_items_per_s']} vs {summary['baseline_items_per_s']} items/s)")
    if args.out:
        args.out.write_text(json.dumps(summary, indent=2) + "\n")


if __name__ == "__main__":
    main()
