"""Run independent stages side by side, each in its own process (`rtune run --jobs N`).

On a CPU, N one-thread processes finish more work than one N-thread process (the small models of
the CPU recipes do not keep N threads busy), and on a multi-GPU host each job can hold a device. A
stage starts as soon as every stage it depends on is done; its output goes to `stage.log` in its
folder, and this process prints one line when it starts and one when it ends. Processes are forked:
the stages, plugins included, need no pickling, and this process never runs a model itself. A
failing stage lets the others finish (their work is kept) and then stops the run with its message.
"""

from __future__ import annotations

import multiprocessing
import os
import time
import traceback
from multiprocessing.connection import wait

from rich.console import Console

from rtune.errors import RtuneError
from rtune.pipeline.plan import Plan, announce, blocked, run_stage, said_done

LOG_FILE = "stage.log"


def threads_per_job(jobs: int) -> int:
    """This machine's usable cores shared out between the jobs (at least one thread each)."""
    return max(1, len(os.sched_getaffinity(0)) // jobs)


def _child(plan: Plan, key: str, env, threads: int, pipe) -> None:
    """One stage in a forked process; everything it prints (progress, library warnings) goes to its log."""
    import sys

    import torch

    torch.set_num_threads(threads)
    log = plan.folder(key).with_name(plan.folder(key).name + f".{LOG_FILE}")
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "w") as stream:
        sys.stdout.flush(), sys.stderr.flush()
        os.dup2(stream.fileno(), 1)
        os.dup2(stream.fileno(), 2)
        sys.stdout = sys.stderr = stream
        try:
            run_stage(plan, key, env, Console(stderr=True, width=120, soft_wrap=True))
            message = None
        except KeyboardInterrupt:
            message = "interrupted"
        except RtuneError as exc:
            message = f"{exc} (its log: {log})"
        except BaseException:
            traceback.print_exc()
            message = f"{traceback.format_exc()}(its log: {log})"
        sys.stdout.flush(), sys.stderr.flush()
    if message is None and plan.folder(key).is_dir():
        os.replace(log, plan.folder(key) / LOG_FILE)
    pipe.send(message)


def execute_parallel(plan: Plan, keys: list[str], env, console: Console, title: str, jobs: int) -> dict[str, str]:
    """`plan.execute` with up to `jobs` stages at a time; returns each stage's outcome."""
    context = multiprocessing.get_context("fork")
    threads = threads_per_job(jobs)
    todo, outcome = announce(plan, keys, console, title)
    pending, running, failures = list(todo), {}, []
    while True:
        for key in list(pending):
            if failures or len(running) >= jobs:
                break
            deps = plan.stages[key].deps
            if any(d in running or d in pending for d in deps):
                continue
            pending.remove(key)
            if blocked(plan, key, console):
                outcome[key] = "waiting"
                continue
            receiver, sender = context.Pipe(duplex=False)
            process = context.Process(target=_child, args=(plan, key, env, threads, sender), name=key)
            process.start()
            sender.close()
            running[key] = (process, receiver, time.time())
            console.print(f"[cyan]start[/cyan] {key} ({threads} thread{'s' * (threads > 1)})")
        if not running:
            break
        try:
            ready = wait([receiver for _, receiver, _ in running.values()])
        except KeyboardInterrupt:
            _stop(running)
            raise
        for key in [k for k, (_, receiver, _) in running.items() if receiver in ready]:
            process, receiver, started = running.pop(key)
            try:
                message = receiver.recv()
            except EOFError:
                message = f"its process died (exit code {process.exitcode})"
            process.join()
            if message == "interrupted":
                _stop(running)
                raise KeyboardInterrupt
            if message is None:
                outcome[key] = "done"
                said_done(plan, key, started, console)
            else:
                failures.append(f"{key}: {message}")
                console.print(f"[red]failed[/red] {key}")
    outcome.update({key: "waiting" for key in pending})
    if failures:
        raise RtuneError("stage failed: " + "; ".join(failures))
    return outcome


def _stop(running: dict) -> None:
    """After Ctrl-C (which every job gets too): give each job a moment to save and leave, then end it."""
    for process, _, _ in running.values():
        process.join(timeout=30)
        if process.is_alive():
            process.terminate()
