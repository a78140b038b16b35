"""Train the members of an ensemble side by side, one CPU core each, in one time budget.

    python scripts/train_ensemble.py out=DIR [members=default,sampling] [seconds=3480] \\
        [last=3] [seed=1] [key=value ...] [NAME.key=value ...]

On a CPU, a second thread speeds one training up far less than twice, so two one-thread runs
side by side, ensembled, are the better use of two cores: in an hour, 43.43 test BLEU against
42.09 for one of them alone (docs/RECIPES.md). Three stages, each a plain seq2seq command, so
every one can be rerun by hand:

1. One ``seq2seq.train`` per member, all at once, into ``DIR/NAME``: member ``i`` is pinned to
   the ``i``-th core this process may use, with ``seed+i`` and the cores divided among the
   members as ``trainer.num_threads`` (unless given). ``default`` is the default recipe;
   ``sampling`` adds subword sampling (``data.tokenizer.sampling=true``), which changes the
   training segmentations only, so the members share one tokenizer, as an ensemble must.
2. ``seq2seq.average`` of each member's last ``last`` step checkpoints.
3. ``seq2seq.evaluate`` on the validation split of three ensembles: of the members' averages,
   of their ``best.pt``, and of both (two checkpoints a member). The best of them on validation
   is the recipe's; the script prints the command that scores it on the test split, which is
   read once, for the ensemble chosen.

Every other ``key=value`` goes to every member (``+model=transformer`` unless ``+model=NAME``
is given); ``NAME.key=value`` goes to member ``NAME`` alone (``default.model.dropout=0.3``).
The budget is each member's ``trainer.max_time``; the script prints its wall time, start-ups,
averaging and the validation of the three included.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from stages import fail, run, split_args

MEMBERS = {"default": [], "sampling": ["data.tokenizer.sampling=true"]}
DEFAULTS = {"members": "default,sampling", "seconds": "3480", "last": "3", "seed": "1"}


def parse(argv: list[str]) -> tuple[dict, list[str]]:
    """The script's own settings (checked, ``own["extra"]``: each member's own overrides) and the
    overrides passed on to every member."""
    own, overrides = split_args(argv, DEFAULTS, "the folder for the members' runs")
    names = own["members"].split(",")
    unknown = [name for name in names if name not in MEMBERS]
    if unknown or len(set(names)) != len(names) or len(names) < 2:
        fail(f"members={own['members']}: two or more different names of {', '.join(MEMBERS)}")
    extra = {name: list(MEMBERS[name]) for name in names}
    for arg in list(overrides):
        prefix = arg[: len(arg) - len(arg.lstrip("+~"))]  # Hydra's + or ~ stays in front
        member, dot, rest = arg[len(prefix) :].partition(".")
        if dot and member in extra:
            extra[member].append(prefix + rest)
            overrides.remove(arg)
    try:
        settings = {"seconds": float(own["seconds"]), "last": int(own["last"]), "seed": int(own["seed"])}
    except ValueError:
        fail(f"seconds={own['seconds']} last={own['last']} seed={own['seed']}: all are numbers")
    if settings["seconds"] <= 0 or settings["last"] < 1:
        fail(f"seconds={own['seconds']} last={own['last']}: a positive budget, at least 1 checkpoint")
    return {"out": Path(own["out"]), "members": names, "extra": extra, **settings}, overrides


def cores() -> list[int]:
    """The cores this process may run on, in order (one per core where affinity is unknown)."""
    if hasattr(os, "sched_getaffinity"):
        return sorted(os.sched_getaffinity(0))
    return list(range(os.cpu_count() or 1))


def train_members(own: dict, overrides: list[str]) -> None:
    """Start every member's training at once, each on its own core; wait for all of them.

    A member that fails stops the others, and the script exits with its status; so does
    Ctrl-C or SIGTERM to the script (each member saves its ``last.pt`` as it stops)."""
    available = cores()
    threads = max(1, len(available) // len(own["members"]))
    procs = []
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    try:
        for i, name in enumerate(own["members"]):
            budget, folder = f"trainer.max_time={own['seconds']:.0f}", f"hydra.run.dir={own['out'] / name}"
            args = [
                "-m",
                "seq2seq.train",
                *overrides,
                *own["extra"][name],
                f"seed={own['seed'] + i}",
                budget,
                folder,
            ]
            if not any(arg.startswith("trainer.num_threads=") for arg in [*overrides, *own["extra"][name]]):
                args.append(f"trainer.num_threads={threads}")
            core = available[i % len(available)]
            pin = (lambda c=core: os.sched_setaffinity(0, {c})) if hasattr(os, "sched_setaffinity") else None
            print(f"$ python {' '.join(args)}   # core {core}", flush=True)
            procs.append(subprocess.Popen([sys.executable, *args], preexec_fn=pin))
        while procs:
            for proc in list(procs):
                status = proc.poll()
                if status is not None:
                    procs.remove(proc)
                if status:  # a member killed by signal N returns -N: exit as a shell would, 128 + N
                    sys.exit(status if status > 0 else 128 - status)
            time.sleep(1)
    finally:  # the members still training, when one failed or the script was stopped
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait()


def choose(out: Path, config: Path, ensembles: dict[str, list[str]]) -> str:
    """Score each ensemble on the validation split of a member's ``config`` into ``out``; the
    name of the best.

    A mixture of corpora (``data.corpora``) validates per direction: then no choice is made,
    and the ensemble of the averages is the recipe's."""
    from omegaconf import OmegaConf  # hydra's, installed with seq2seq

    data = OmegaConf.load(config).data
    if data.get("corpora"):
        print("data.corpora: score each direction of the ensemble with tgt_lang=, src=, ref=", flush=True)
        return "averages"
    valid = data.valid
    bleu = {}
    for name, checkpoints in ensembles.items():
        output = out / f"valid_{name}"
        run(["-m", "seq2seq.evaluate", f"checkpoint={','.join(checkpoints)}", f"src={valid.src}",
             f"ref={valid.tgt}", f"output={output}"])  # fmt: skip
        bleu[name] = json.loads(next(output.glob("*.metrics.json")).read_text())["bleu"]
    print("validation BLEU:", ", ".join(f"{name} {score}" for name, score in bleu.items()), flush=True)
    return max(bleu, key=bleu.get)


def main() -> None:
    own, overrides = parse(sys.argv[1:])
    start = time.monotonic()
    train_members(own, overrides)
    ensembles = {"averages": [], "best": [], "both": []}
    for name in own["members"]:
        checkpoints = own["out"] / name / "checkpoints"
        run(["-m", "seq2seq.average", f"checkpoints={checkpoints}", f"last={own['last']}"])
        average, best = str(checkpoints / f"average_last{own['last']}.pt"), str(checkpoints / "best.pt")
        ensembles["averages"].append(average)
        ensembles["best"].append(best)
        ensembles["both"] += [best, average]
    chosen = choose(own["out"], own["out"] / own["members"][0] / "config.yaml", ensembles)
    wall = time.monotonic() - start
    print(f"done in {wall:.0f} s of wall time; the chosen ensemble ({chosen}) on the test split:", flush=True)
    print(f"python -m seq2seq.evaluate checkpoint={','.join(ensembles[chosen])}", flush=True)


if __name__ == "__main__":
    main()
