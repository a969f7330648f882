"""Run Snakemake so that a crashed, killed or powered-off run resumes by itself (``make run``).

    python -m whylab.recover [snakemake arguments...]

1. A lock in ``.snakemake/locks`` is left by a run that died. It is removed (``snakemake
   --unlock``) only when no process is working in this directory: no Snakemake, no whylab job
   (a killed Snakemake can leave its jobs running), no other ``whylab.recover``. If one is, one
   line says which, and nothing is touched.
2. Snakemake then runs with ``--rerun-incomplete``: jobs a dead run left half-done are re-made.
   That is safe because every whylab step writes its outputs atomically (``whylab.files``): an
   output file is either whole or absent, never trusted half-written.
3. While it runs, beside Snakemake's own ``N of M steps (x%) done`` lines, one line every
   ``WHYLAB_RUNNING_EVERY`` seconds (default 30; 0: none) says which jobs are running and for
   how long, read from Snakemake's markers of the outputs it is making (``.snakemake/incomplete``,
   each named by its output's path in base64)::

       whylab: running 2 jobs: results/concepts/C07/measurements.json (1:05 min), ...

Processes are found through ``/proc`` (Linux) or psutil (elsewhere). A Snakemake started by
hand on another machine of a shared filesystem is invisible to both; a ``whylab.recover`` there
holds ``.snakemake/whylab-run.lock`` (an advisory file lock) and is seen through it.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import fcntl
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

RUN_LOCK = "whylab-run.lock"
# a Snakemake process (console script or ``-m snakemake``) or a whylab step (a rule's job)
_WORKER = re.compile(r"(?:^|[\s/])snakemake(?:\s|$)|-m\s+snakemake(?:\s|$)|-m\s+whylab(?:\s|$)")


@dataclass(frozen=True)
class Worker:
    pid: int
    command: str


def _proc_processes() -> Iterator[tuple[int, int, str, Path | None]]:
    """(pid, parent pid, command line, working directory) of every process /proc lets us read."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            raw = (entry / "cmdline").read_bytes()
            stat = (entry / "stat").read_text()
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        try:
            cwd: Path | None = Path(os.readlink(entry / "cwd"))
        except OSError:
            cwd = None
        yield int(entry.name), ppid, raw.replace(b"\0", b" ").decode(errors="replace").strip(), cwd


def _psutil_processes() -> Iterator[tuple[int, int, str, Path | None]]:
    import psutil

    for proc in psutil.process_iter(["pid", "ppid", "cmdline"]):
        try:
            cwd: Path | None = Path(proc.cwd())
        except (psutil.Error, OSError):
            cwd = None
        yield proc.info["pid"], proc.info["ppid"] or 0, " ".join(proc.info["cmdline"] or []), cwd


def _processes() -> list[tuple[int, int, str, Path | None]]:
    if Path("/proc/self/cmdline").exists():
        return list(_proc_processes())
    return list(_psutil_processes())


def workers_in(
    directory: Path, processes: Sequence[tuple[int, int, str, Path | None]] | None = None
) -> list[Worker]:
    """Snakemake processes and whylab jobs whose working directory is ``directory`` (not us)."""
    procs = list(_processes() if processes is None else processes)
    parent = {pid: ppid for pid, ppid, _, _ in procs}
    ours = {os.getpid()}
    pid = os.getpid()
    while pid in parent and parent[pid] not in ours and parent[pid] > 0:
        pid = parent[pid]
        ours.add(pid)
    target = directory.resolve()
    found = []
    for pid, _, command, cwd in procs:
        if pid in ours or cwd is None or not _WORKER.search(command):
            continue
        with contextlib.suppress(OSError):
            if cwd.resolve() == target:
                found.append(Worker(pid, command))
    return found


def _workdir(args: Sequence[str]) -> Path:
    """The directory Snakemake will work in: ``--directory``/``-d`` if given, else here."""
    for i, arg in enumerate(args):
        if arg in ("-d", "--directory") and i + 1 < len(args):
            return Path(args[i + 1])
        if arg.startswith("--directory="):
            return Path(arg.split("=", 1)[1])
    return Path.cwd()


def _stale_state(meta: Path) -> tuple[list[Path], int]:
    locks = sorted((meta / "locks").glob("*.lock")) if (meta / "locks").is_dir() else []
    incomplete = meta / "incomplete"
    n_incomplete = (
        sum(1 for p in incomplete.rglob("*") if p.is_file() and p.name != "migration_underway")
        if incomplete.is_dir()
        else 0
    )
    return locks, n_incomplete


def _say(message: str) -> None:
    print(f"whylab: {message}", file=sys.stderr, flush=True)


def running_jobs(meta: Path, now: float | None = None) -> list[tuple[str, float]]:
    """(output path, seconds since its job started) for every output Snakemake marks as being
    made in ``meta/incomplete``, the longest-running first (a marker is written as its job starts)."""
    folder = meta / "incomplete"
    now = time.time() if now is None else now
    found: list[tuple[str, float]] = []
    with contextlib.suppress(OSError):
        for marker in folder.rglob("*"):
            # a long name is cut into folders named "@<part>" (snakemake.persistence)
            name = "".join(part.removeprefix("@") for part in marker.relative_to(folder).parts)
            try:
                if not marker.is_file():
                    continue
                path = base64.b64decode(name, altchars=b"-_", validate=True).decode()
                started = marker.stat().st_mtime
            except (binascii.Error, UnicodeDecodeError, OSError):
                continue  # not a marker (migration_underway, a file removed meanwhile)
            found.append((path, max(0.0, now - started)))
    return sorted(found, key=lambda job: -job[1])


def running_line(jobs: Sequence[tuple[str, float]], shown: int = 4) -> str:
    """One line naming the running jobs' outputs and how long each has run."""

    def age(seconds: float) -> str:
        return f"{seconds:.0f} s" if seconds < 60 else f"{int(seconds // 60)}:{int(seconds % 60):02d} min"

    listed = ", ".join(f"{path} ({age(seconds)})" for path, seconds in jobs[:shown])
    more = f", and {len(jobs) - shown} more" if len(jobs) > shown else ""
    return f"running {len(jobs)} job{'s' if len(jobs) != 1 else ''}: {listed}{more}"


def _watch(meta: Path, snakemake_pid: int, every_s: float) -> None:
    """In a forked child: the running-jobs line every ``every_s`` until Snakemake (our parent,
    exec'd in the process that forked us) exits."""
    last = time.monotonic()
    while os.getppid() == snakemake_pid:
        time.sleep(min(1.0, every_s))
        if time.monotonic() - last < every_s:
            continue
        last = time.monotonic()
        jobs = running_jobs(meta)
        if jobs and os.getppid() == snakemake_pid:
            _say(running_line(jobs))


def _start_watcher(meta: Path, run_lock: int) -> None:
    """Fork the watcher of ``_watch`` (POSIX); Snakemake is then exec'd in this process."""
    every_s = float(os.environ.get("WHYLAB_RUNNING_EVERY", "30") or 0)
    if every_s <= 0 or not hasattr(os, "fork"):
        return
    snakemake_pid = os.getpid()
    sys.stderr.flush()
    if os.fork() != 0:
        return
    try:  # the child: holds no lock, reads no stdin, prints to the run's stderr
        os.close(run_lock)
        with contextlib.suppress(OSError):
            os.close(0)
        _watch(meta, snakemake_pid, every_s)
    finally:
        os._exit(0)


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    workdir = _workdir(args)
    meta = workdir / ".snakemake"
    meta.mkdir(parents=True, exist_ok=True)

    # one whylab.recover per directory: held until Snakemake (exec'd below) exits
    fd = os.open(meta / RUN_LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "?"
        _say(f"another run is working in {workdir.resolve()} (pid {holder}); wait for it or stop it")
        return 1
    os.ftruncate(fd, 0)
    os.pwrite(fd, str(os.getpid()).encode(), 0)

    busy = workers_in(workdir)
    if busy:
        first = busy[0]
        more = f" and {len(busy) - 1} more" if len(busy) > 1 else ""
        _say(
            f"another Snakemake run is working in {workdir.resolve()} (pid {first.pid}: "
            f"{first.command[:80]}{more}); nothing touched: wait for it or stop it"
        )
        return 1

    locks, n_incomplete = _stale_state(meta)
    if locks:
        _say(
            f"a run that died left its lock ({len(locks)} file(s) in {meta / 'locks'}); no process "
            "works in this directory, so it is removed"
        )
        unlock = subprocess.run(
            [sys.executable, "-m", "snakemake", "--unlock", *args], capture_output=True, text=True
        )
        if unlock.returncode != 0:
            sys.stderr.write(unlock.stderr)
            return unlock.returncode
    if n_incomplete:
        _say(f"{n_incomplete} output(s) a dead run left half-done will be made again")

    os.set_inheritable(fd, True)  # Snakemake keeps the run lock until it exits
    command = [sys.executable, "-m", "snakemake", "--rerun-incomplete", *args]
    sys.stdout.flush()
    _start_watcher(meta, fd)
    os.execv(sys.executable, command)
    return 0  # not reached: execv replaces this process


if __name__ == "__main__":
    raise SystemExit(main())
