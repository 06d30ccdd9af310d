"""The demo's jobs: corpus -> base training -> continuations (baseline / SSPS / oracle) -> evaluation.

Independent trainings run as parallel processes with one torch thread each: on 2 cores, two processes
with two threads each ran 2.7x slower per step than with one thread each (DEVELOPERS.md).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from ssps.errors import SSPSError
from ssps.train.log import log
from ssps.utils.files import atomic_write_text

PACKAGE = Path(__file__).resolve().parents[1]
CONFIGS = PACKAGE.parent / "configs"


@dataclass(frozen=True)
class Job:
    """One ``ssps train`` (or ``ssps chain``) process."""

    name: str
    config: str
    overrides: tuple[str, ...]
    after: tuple[str, ...] = ()  # jobs that must finish first
    threads: int = 1
    command: str = "train"  # or "chain": its result is OUT/chain.json, not a checkpoint


# What a finished job leaves for the jobs after it (``{name}`` in their overrides) and for evaluation.
RESULT_FILES = {"train": "latest.pt", "chain": "chain.json"}


def chain_rounds(chain_json: Path) -> dict:
    """A finished chain job's ``chain.json``: the model and the label quality of each round."""
    return json.loads(Path(chain_json).read_text())


@dataclass
class JobResult:
    name: str
    seconds: float
    checkpoint: Path
    log_file: Path
    extra: dict = field(default_factory=dict)


def ensure_corpus(corpus: Path, preset: str, workers: int) -> float:
    """Synthesise the corpus unless it is already there (cached); returns the seconds spent."""
    if (corpus / "corpus.json").is_file():
        return 0.0
    t0 = time.perf_counter()
    cmd = [
        sys.executable,
        "-m",
        "ssps",
        "data",
        "synth",
        str(corpus),
        "--preset",
        preset,
        "--workers",
        str(workers),
    ]
    log.info("synthesising the built-in corpus: %s", " ".join(cmd))
    if subprocess.run(cmd).returncode != 0:
        raise SSPSError(f"corpus synthesis failed ({' '.join(cmd)}); see the messages above")
    return time.perf_counter() - t0


def code_version() -> str:
    """sha256 over the source files that shape training, and the shipped configs: a run made by other code
    is stale. Evaluation and the demo's own report code are left out (they do not change a trained model)."""
    h = hashlib.sha256()
    sources = [p for p in PACKAGE.rglob("*.py") if p.relative_to(PACKAGE).parts[0] not in ("demo", "eval")]
    for path in sorted([*sources, *CONFIGS.rglob("*.yaml")]):
        h.update(str(path.relative_to(PACKAGE.parent)).encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()


def _resolved(job: Job, overrides: list[str]) -> dict:
    from ssps.config import load_config, to_dict

    if job.command == "chain":
        from ssps.pseudo.chain import load_chain_config

        return to_dict(load_chain_config(job.config, overrides))
    return to_dict(load_config(job.config, [*overrides, f"train.threads={job.threads}"]))


def _without_threads(config: dict | None) -> dict | None:
    """A resolved config less ``train.threads``: a runtime setting, so a job started with one thread may
    be resumed with two."""
    if config is None:
        return None
    return {**config, "train": {k: v for k, v in config.get("train", {}).items() if k != "threads"}}


def _comparable(
    config: dict | None, command: list[str] | None = None, out: Path | None = None
) -> dict | None:
    """A recorded training config as this code resolves it, for comparison: less ``train.threads``, keys
    added since at their defaults (a new option defaults to the old behaviour), and paths inside the demo
    folder (``--out``'s parent in ``command``, or ``out``) relative to it, so that a copied or moved demo
    folder keeps its jobs. A config this code cannot read (a key removed since) compares unequal: None."""
    from ssps.config import config_from_dict, to_dict
    from ssps.errors import ConfigError

    if config is None:
        return None
    if command is not None and "--out" in command[:-1]:
        out = Path(command[command.index("--out") + 1]).parent
    if "features" in config:  # a training job (a chain job's config is its own type)
        try:
            config = to_dict(config_from_dict(config))
        except ConfigError:
            return None
    prefix = f"{out}/" if out is not None else None

    def portable(v):
        if isinstance(v, dict):
            return {k: portable(x) for k, x in v.items()}
        if isinstance(v, list):
            return [portable(x) for x in v]
        if prefix and isinstance(v, str) and v.startswith(prefix):
            return "{out}/" + v[len(prefix) :]
        return v

    return _without_threads(portable(config))


def _reusable(
    run_dir: Path, resolved: dict, code: str, any_finished: bool = False, same_config: bool = False
) -> str:
    """'done' (finished with this config and code), 'resume' (interrupted, same), 'stale' or 'new'.

    ``any_finished``: a finished job counts as done whatever config or code made it (exploratory sweeps;
    its job.json still records both). ``same_config``: a finished job made by this resolved config counts
    as done whatever code version made it (after a change that leaves training alone).
    """
    finished = (run_dir / "done.json").is_file()
    if any_finished and finished:
        return "done"
    info = run_dir / "job.json"
    if not info.is_file():
        return "stale" if any(run_dir.iterdir()) else "new"
    job = json.loads(info.read_text())
    if _comparable(job.get("config"), job.get("command")) != _comparable(resolved, out=run_dir.parent):
        return "stale"
    if job.get("code") != code:
        return "done" if same_config and finished else "stale"
    return "done" if finished else "resume"


def run_jobs(
    jobs: list[Job],
    out: Path,
    slots: int = 2,
    reuse_any_finished: bool = False,
    reuse_same_config: bool = False,
) -> dict[str, JobResult]:
    """Run ``jobs`` in dependency order with at most ``slots`` threads busy.

    A job folder is reused only when its resolved config and the code version (:func:`code_version`)
    match: finished jobs are kept, interrupted ones resumed. A folder made by another config or other code
    is moved aside to ``NAME.stale`` (replacing an older one) and the job is trained again.
    ``reuse_any_finished`` keeps every finished job, ``reuse_same_config`` every finished job of the same
    resolved config (see :func:`_reusable`).
    """
    code = code_version()
    done: dict[str, JobResult] = {}
    running: dict[str, tuple[subprocess.Popen, float, Job]] = {}
    pending = list(jobs)
    while pending or running:
        busy = sum(job.threads for _, _, job in running.values())
        for job in list(pending):
            if all(dep in done for dep in job.after) and busy + job.threads <= slots:
                pending.remove(job)
                run_dir = out / job.name
                overrides = [
                    o.format(**{k: str(v.checkpoint) for k, v in done.items()}) for o in job.overrides
                ]
                resolved = _resolved(job, overrides)
                state = (
                    _reusable(run_dir, resolved, code, reuse_any_finished, reuse_same_config)
                    if run_dir.is_dir()
                    else "new"
                )
                result = run_dir / RESULT_FILES[job.command]
                if state == "done":
                    info = json.loads((run_dir / "done.json").read_text())
                    done[job.name] = JobResult(job.name, info["seconds"], result, run_dir / "stdout.log")
                    continue
                if state == "stale":
                    stale = out / f"{job.name}.stale"
                    shutil.rmtree(stale, ignore_errors=True)
                    run_dir.rename(stale)
                    log.warning("%s was made by another config or code version: moved to %s", run_dir, stale)
                threads = [f"train.threads={job.threads}"] if job.command == "train" else []
                cmd = [sys.executable, "-m", "ssps", job.command, job.config, *overrides, *threads]
                cmd += ["--out", str(run_dir)]
                # A chain continues by itself: finished steps are skipped, a cut training resumes.
                if job.command == "train" and state == "resume" and (run_dir / "latest.pt").is_file():
                    cmd.append("--resume")
                run_dir.mkdir(parents=True, exist_ok=True)
                atomic_write_text(
                    run_dir / "job.json",
                    json.dumps({"config": resolved, "code": code, "command": cmd}) + "\n",
                )
                env = {**os.environ, "OMP_NUM_THREADS": str(job.threads), "MKL_NUM_THREADS": str(job.threads)}
                stdout = open(run_dir / "stdout.log", "a")
                log.info("start %s (%d thread%s)", job.name, job.threads, "s" if job.threads > 1 else "")
                proc = subprocess.Popen(cmd, stdout=stdout, stderr=subprocess.STDOUT, env=env)
                running[job.name] = (proc, time.perf_counter(), job)
                busy += job.threads
        time.sleep(0.5)
        for name, (proc, t0, job) in list(running.items()):
            if proc.poll() is None:
                continue
            del running[name]
            run_dir = out / name
            if proc.returncode != 0:
                for other, _, _ in running.values():
                    other.terminate()
                tail = (run_dir / "stdout.log").read_text().splitlines()[-5:]
                raise SSPSError(f"training job {name} failed (exit {proc.returncode}): {' | '.join(tail)}")
            seconds = time.perf_counter() - t0
            atomic_write_text(run_dir / "done.json", json.dumps({"seconds": seconds}) + "\n")
            log.info("done %s in %.0f s", name, seconds)
            result = run_dir / RESULT_FILES[job.command]
            done[name] = JobResult(name, seconds, result, run_dir / "stdout.log")
    return done
