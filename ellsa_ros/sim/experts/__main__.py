"""`python -m ellsa_ros.sim.experts --suite S --tasks 0-9 --episodes 50 --out FILE.json`

Measures the scripted expert's success on each task over its first N init states, without
rendering. Resumable: run it again with the same --out to finish an interrupted run.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from tqdm import tqdm


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ellsa_ros.sim.experts", description=__doc__.splitlines()[2])
    parser.add_argument("--suite", required=True, help="libero_spatial or libero_object")
    parser.add_argument("--tasks", default="all", help='task ids: "0-9", "0,3,5", "all"')
    parser.add_argument("--episodes", type=int, default=50, help="init states per task, from index 0")
    parser.add_argument("--out", type=Path, required=True, help="results JSON (resumed if it exists)")
    parser.add_argument("--max-steps", type=int, default=None, help="step limit; default: the suite's")
    args = parser.parse_args(argv)

    from ellsa_ros.sim.env import LiberoEnv, LiberoEnvConfig
    from ellsa_ros.sim.experts import expert_for
    from ellsa_ros.sim.experts.evaluate import evaluate, load_results, summarize
    from ellsa_ros.sim.suites import init_states, parse_task_ids

    try:
        expert = expert_for(args.suite)
        tasks = parse_task_ids(args.tasks, args.suite)
        available = min(len(init_states(args.suite, t)) for t in tasks)
        if not 1 <= args.episodes <= available:
            raise ValueError(f"--episodes must be in 1-{available} (init states per task), got {args.episodes}")
        already = {(e.task_id, e.init_state) for e in load_results(args.out, args.suite)}
    except ValueError as error:
        parser.error(str(error))
    total = sum((t, i) not in already for t in tasks for i in range(args.episodes))
    bar = tqdm(total=total, desc=f"{args.suite} expert", unit="ep", file=sys.stderr)
    successes = [0, 0]

    def on_episode(episode) -> None:
        successes[0] += int(episode.success)
        successes[1] += 1
        bar.set_postfix(task=episode.task_id, success=f"{successes[0]}/{successes[1]}")
        bar.update()

    def make_env(task_id: int) -> LiberoEnv:
        return LiberoEnv(LiberoEnvConfig(suite=args.suite, task_id=task_id, cameras=False, max_steps=args.max_steps))

    results = evaluate(args.suite, tasks, args.episodes, args.out, make_env, expert, on_episode)
    bar.close()
    table = summarize([e for e in results if e.task_id in tasks and e.init_state < args.episodes])
    print(f"{'task':>4}  {'success':>9}  rate", file=sys.stderr)
    for task_id, row in table.items():
        print(f"{task_id:>4}  {row['successes']:>4}/{row['episodes']:<4}  {row['success_rate']:.2f}", file=sys.stderr)
    print(f"results: {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
