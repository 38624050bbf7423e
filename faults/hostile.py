"""Run a generated corpus of bad inputs and faults through the CLI, the upload path, the run store and its workers.

Every case ends in one of four ways, and the script prints how many of each:
- **handled**: a clear error, i.e. exit code 2 (CLI) or a ``ValueError`` (API) with a one-line message naming
  the flag where the case is a bad flag value; for a fault (a killed worker, identical uploads at once), the
  right state (the run shown failed within 2 s, every upload succeeding with one folder);
- **unclear error**: refused, but the message is not one line or does not name the flag;
- **traceback**: any other exception, or a traceback on stderr;
- **wrong state**: a bad value was accepted, or the refusal left something wrong behind (a file written or a
  staging folder left, a damaged store rewritten, a file outside GENREG_HOME touched, a dead run shown alive).

Run from the repository root: ``python -m faults.hostile`` (about 3 minutes on 2 CPU cores, most of it the
locked-store case, which waits out SQLite's 20 s busy timeout, and the worker cases). Exit code 1 unless
only clear errors were seen.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import os
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import time
import traceback
import zipfile
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image

from genreg_core.cli.main import main
from genreg_core.config import DataConfig, TrainConfig
from genreg_core.data.uploads import extract_zip
from genreg_core.diffusion.model import DEFAULT_GENERATOR_DIR
from genreg_core.runs.store import RunSpec, RunStore
from genreg_core.runs.worker import execute_run, launch_run
from tests.archives import make_zip, patch_headers, png, png_claiming, upload_at_once
from tests.hostile_files import BROKEN_GENERATORS, FOREIGN_FORMATS, broken_generator, foreign_image

KINDS = ("handled", "unclear error", "traceback", "wrong state")  # handled: a clear error, or the right state
Check = Callable[[], str | None]  # a post-condition: None when the state is right, else what is wrong


# ---------------------------------------------------------------- running one case


def run_cli(args: list[str], flag: str | None = None, check: Check | None = None) -> tuple[str, str]:
    """Run ``genreg ARGS`` in this process and classify the outcome."""
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            code = main(args)
    except BaseException:  # noqa: BLE001 - anything escaping main is a traceback
        return "traceback", traceback.format_exc(limit=2).splitlines()[-1]
    text = err.getvalue()
    lines = [line for line in text.splitlines() if "error:" in line]
    if "Traceback" in text:
        return "traceback", text.strip().splitlines()[-1]
    if code != 2:
        return "wrong state", f"exit code {code}"
    problem = check() if check else None
    if problem:
        return "wrong state", problem
    if len(lines) != 1 or (flag and flag not in lines[0]):
        return "unclear error", " | ".join(lines) or text.strip()[-200:]
    return "handled", lines[0]


def run_api(fn: Callable[[], object], check: Check | None = None) -> tuple[str, str]:
    """Call ``fn`` expecting a one-line ``ValueError``."""
    try:
        fn()
    except ValueError as exc:
        problem = check() if check else None
        if problem:
            return "wrong state", problem
        return ("handled" if "\n" not in str(exc) else "unclear error"), str(exc)
    except BaseException:  # noqa: BLE001
        return "traceback", traceback.format_exc(limit=2).splitlines()[-1]
    return "wrong state", "accepted"


# ---------------------------------------------------------------- generated inputs


def image_folder(root: Path, classes, n: int, mode="L", size=8, extra: dict[str, bytes] | None = None) -> Path:
    for c in classes:
        (root / c).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            Image.new(mode, (size, size), 10 * i).save(root / c / f"{i}.png")
    for name, payload in (extra or {}).items():
        (root / name).write_bytes(payload)
    return root


def generator_copy(root: Path, name: str, metadata: str | None = None, weights: bytes | None = None) -> Path:
    folder = root / name
    shutil.copytree(DEFAULT_GENERATOR_DIR, folder)
    if metadata is not None:
        (folder / "genreg.json").write_text(metadata)
    if weights is not None:
        (folder / "unet" / "diffusion_pytorch_model.safetensors").write_bytes(weights)
    return folder


# ---------------------------------------------------------------- the corpus


def run_cli_writing_nothing(args: list[str], flag: str, folder: Path) -> tuple[str, str]:
    """:func:`run_cli`, and nothing may appear in ``folder``."""
    before = set(os.listdir(folder))
    return run_cli(args, flag, lambda: f"wrote {sorted(set(os.listdir(folder)) - before)}"
                   if set(os.listdir(folder)) - before else None)


def flag_cases(work: Path) -> list[tuple[str, Callable[[], tuple[str, str]]]]:
    """Bad numbers, choices and paths on every command, each refused before any work."""
    (work / "afile").write_text("x")
    bad_ints = ["0", "-1", "1000000000", "1e9", "abc", ""]
    table = {
        ("sample", "--per-class"): ["0", "-1", "1000000000", "2.5", "x"],
        ("sample", "--image-size"): ["0", "-16", "100000", "x"],
        ("sample", "--guidance"): ["inf", "-inf", "nan", "-1", "1e9", "x"],
        ("sample", "--seed"): ["-1", str(2**70), "x"],
        ("sample", "--split-seed"): ["-1", str(2**64)],
        ("sample", "--sampler-steps"): ["0", "-3", "10000000"],
        ("sample", "--out"): ["missing/x.npz", ".", "afile/x.npz"],
        ("sample", "--dataset"): ["imagenet", ""],
        ("sample", "--data-root"): ["bad\udcffroot"],
        ("reconstruct", "--n"): bad_ints,
        ("reconstruct", "--t"): ["-1", "1000000000", "x"],
        ("features", "--n"): bad_ints,
        ("features", "--k"): ["0", "-1", "1000000"],
        ("features", "--t"): ["-1", "x"],
        ("sweep", "--n"): bad_ints,
        ("sweep", "--t"): ["-5", "1000000000"],
        ("train-generator", "--steps"): ["0", "-1", "1000000000000"],
        ("train-generator", "--batch-size"): ["0", "-1", "1000000000"],
        ("train-generator", "--out"): ["afile", "missing/deeper/g"],
        ("train-features", "--epochs"): ["0", "-1", "1000000000"],
        ("train-features", "--out"): ["afile", "missing/deeper/f"],
        ("train", "--epochs"): ["0", "1000000000"],
        ("train", "--per-class"): ["0", "-5", "some", "1000000000000"],
        ("train", "--seed"): ["-1", str(2**70)],
        ("train", "--max-concurrent"): ["0", "1000"],
        ("runs", "--out"): ["runs.txt", "missing/runs.csv"],
    }
    required = {"sample": ["--per-class", "1", "--out", "x.npz"], "reconstruct": ["--t", "5", "--n", "2", "--out",
                "x.npz"], "features": [], "sweep": [], "train-generator": ["--out", "g"],
                "train-features": ["--out", "f"], "train": ["--method", "ce"], "runs": ["export"]}
    cases = []
    for (command, flag), values in table.items():
        for value in values:
            base = dict(zip(required[command][::2], required[command][1::2])) if command != "runs" else {}
            base[flag] = value
            args = [command] + (["export"] if command == "runs" else [])
            args += [a for k, v in base.items() for a in (k, v)]
            cases.append((f"{command} {flag} {value!r}", lambda a=args, f=flag: run_cli_writing_nothing(a, f, work)))
    return cases


def data_and_model_cases(work: Path) -> list[tuple[str, Callable[[], tuple[str, str]]]]:
    """Broken image folders and generator folders, each reported with its path."""
    (work / "empty").mkdir()
    (work / "emptyclass" / "b").mkdir(parents=True)
    folders = {
        "missing root": work / "no_such_folder",
        "root is a file": work / "afile",
        "no class folders": work / "empty",
        "one class": image_folder(work / "one", ["a"], 5),
        "empty class": image_folder(work / "emptyclass", ["a"], 5),
        "non-image file": image_folder(work / "txt", "ab", 5, extra={"a/readme.txt": b"hi"}),
        "corrupt png": image_folder(work / "corrupt", "ab", 5, extra={"a/bad.png": b"\x89PNG broken"}),
        "10,000² png": image_folder(work / "huge1", "ab", 5, extra={"a/huge.png": png_claiming(10_000, 10_000)}),
        "20,000² png": image_folder(work / "huge2", "ab", 5, extra={"a/huge.png": png_claiming(20_000, 20_000)}),
        "too few per class for the split": image_folder(work / "few", [str(c) for c in range(10)], 3),
        "RGB vs a grayscale generator": image_folder(work / "rgb", [str(c) for c in range(10)], 5, mode="RGB"),
        "2 classes vs a 10-class generator": image_folder(work / "two", "ab", 5),
    }
    cases = []
    for name, root in folders.items():
        args = ["features", "--dataset", "imagefolder", "--data-root", str(root), "--n", "2"]
        cases.append((f"data: {name}", lambda a=args: run_cli(a)))
    few = ["train-generator", "--dataset", "imagefolder", "--data-root", str(work / "few"), "--out", "g_few"]
    cases.append(("train-generator on too few per class", lambda: run_cli(
        few, check=lambda: "wrote g_few" if (work / "g_few").exists() else None)))
    size = ["features", "--dataset", "imagefolder", "--data-root", str(work / "two"), "--image-size", "32"]
    cases.append(("data: size mismatch", lambda: run_cli(size)))
    gens = {
        "relative ./missing": "./no_such_model", "relative a/b/c": "a/b/c", "bare name": "no_such_model",
        "parent ../missing": "../no_such_model", "a file": str(work / "afile"), "an empty folder": str(work / "empty"),
        "genreg.json a list": str(generator_copy(work, "g_list", "[1, 2]")),
        "genreg.json a string": str(generator_copy(work, "g_str", '"x"')),
        "genreg.json broken": str(generator_copy(work, "g_broken", "{oops")),
        "null_class 99": str(generator_copy(work, "g_null99", json.dumps({"null_class": 99}))),
        "null_class -1": str(generator_copy(work, "g_nullneg", json.dumps({"null_class": -1}))),
        "null_class a string": str(generator_copy(work, "g_nullstr", json.dumps({"null_class": "10"}))),
        "class_names not a list": str(generator_copy(work, "g_names", json.dumps({"class_names": "abc"}))),
        "corrupt safetensors": str(generator_copy(work, "g_weights", None, b"\x00" * 100)),
    }
    for fmt in FOREIGN_FORMATS:
        for name in ("e.png", "e.jpg"):
            folders[f"{fmt} behind {name}"] = image_folder(work / f"foreign_{fmt}_{name}", "ab", 5,
                                                           extra={f"a/{name}": foreign_image(fmt)})
            cases.append((f"data: {fmt} behind {name}", lambda r=folders[f"{fmt} behind {name}"]: run_cli(
                ["features", "--dataset", "imagefolder", "--data-root", str(r), "--n", "2"])))
    for name, make in untrusted_entries(work).items():
        cases.append((f"data: {name}", lambda r=make: run_cli(
            ["features", "--dataset", "imagefolder", "--data-root", str(r), "--n", "2"])))
    for kind in BROKEN_GENERATORS:
        gens[kind] = str(broken_generator(work, kind))
    for name, source in gens.items():
        args = ["sample", "--per-class", "1", "--guidance", "2", "--generator", source, "--out", "x_gen.npz"]
        cases.append((f"generator: {name}", lambda a=args: run_cli(
            a, check=lambda: "wrote x_gen.npz" if (work / "x_gen.npz").exists() else None)))
    for args in (["features", "--source", "mgr"], ["features", "--source", "folder"],
                 ["features", "--source", "reconstruct"], ["features", "--source", "folder", "--folder", "nope"],
                 ["reconstruct", "--t", "5000", "--n", "2", "--out", "x_t.npz"],
                 ["reconstruct", "--t", "5", "--n", "5000", "--out", "x_t.npz"], ["train", "--method", "nope"]):
        cases.append((" ".join(args), lambda a=args: run_cli(a)))
    return cases


def untrusted_entries(work: Path) -> dict[str, Path]:
    """Data folders with a link out of the root, a link to /proc, a FIFO, a folder and a link loop named .png."""
    roots = {name: image_folder(work / f"entries_{i}", "ab", 5) for i, name in enumerate(
        ("class folder linked outside", "class folder linked to /proc/self", "FIFO named .png", "folder named .png",
         "symlink loop named .png"))}
    (roots["class folder linked outside"] / "c").symlink_to(work / "one" / "a")
    (roots["class folder linked to /proc/self"] / "p").symlink_to("/proc/self")
    os.mkfifo(roots["FIFO named .png"] / "a" / "f.png")
    (roots["folder named .png"] / "a" / "x.png").mkdir()
    (roots["symlink loop named .png"] / "a" / "loop.png").symlink_to("loop.png")
    return roots


def store_cases(work: Path) -> list[tuple[str, Callable[[], tuple[str, str]]]]:
    """Damaged, misplaced and locked stores; hostile run ids through the CLI and the API."""
    cases = []
    commands = [["runs", "list"], ["runs", "show", "0" * 32], ["runs", "export", "--out", "r.csv"],
                ["runs", "stop", "0" * 32], ["runs", "delete", "0" * 32],
                ["train", "--method", "ce", "--preset", "tiny", "--epochs", "1"]]
    for fault in ("random bytes", "SQLite header + garbage", "a folder"):
        home = work / f"home_{fault.split()[0].lower()}"
        home.mkdir()
        db = home / "mlflow.db"
        if fault == "a folder":
            db.mkdir()
        else:
            db.write_bytes(os.urandom(4096) if fault == "random bytes" else b"SQLite format 3\x00" + os.urandom(8000))
        check = unchanged(db)
        for args in commands:
            cases.append((f"store {fault}: {' '.join(args[:2])}", lambda a=args, h=home, c=check: with_home(
                h, lambda: run_cli(a, check=c))))
    (work / "home_file").write_text("not a folder")
    for args in commands:
        cases.append((f"GENREG_HOME a file: {' '.join(args[:2])}", lambda a=args: with_home(
            work / "home_file", lambda: run_cli(a))))
    good = work / "home_good"
    store = RunStore(good)
    run_id = store.create_run(RunSpec(TrainConfig.tiny("ce"), DataConfig(), None, "cpu"))
    outside = good.parent / "outside"
    for bad_id in ("../../outside", str(outside), "..", "", "A" * 32, "0" * 31 + "/", "f" * 32):
        for name in ("request_stop", "delete_run", "load_snapshots", "load_spec", "summary"):
            cases.append((f"run id {bad_id!r}: {name}", lambda n=name, i=bad_id: run_api(
                lambda: getattr(store, n)(i), check=lambda i=i: outside_touched(good, outside, i))))
        for action in ("show", "stop", "delete"):
            cases.append((f"runs {action} {bad_id!r}", lambda a=action, i=bad_id: with_home(
                good, lambda: run_cli(["runs", a, i], check=lambda: outside_touched(good, outside, i)))))
        cases.append((f"features --source mgr --run {bad_id!r}", lambda i=bad_id: with_home(
            good, lambda: run_cli(["features", "--source", "mgr", "--run", i], "--run"))))
    cases.append(("locked store: runs show", lambda: locked_store(store, run_id)))
    return cases


def unchanged(db: Path) -> Check:
    """A check that ``db`` (a file, or a folder standing in for one) is exactly as it was."""
    snapshot = db.read_bytes() if db.is_file() else None
    return lambda: "the store was changed" if (db.read_bytes() if db.is_file() else None) != snapshot else None


def with_home(home: Path, fn: Callable[[], tuple[str, str]]) -> tuple[str, str]:
    old = os.environ.get("GENREG_HOME")
    os.environ["GENREG_HOME"] = str(home)
    try:
        return fn()
    finally:
        os.environ["GENREG_HOME"] = old if old is not None else ""


def outside_touched(home: Path, outside: Path, run_id: str) -> str | None:
    if outside.exists():
        return f"wrote {outside}"
    if len(run_id) == 32 and (home / "runs" / run_id).exists():
        return f"created a folder for the unknown run {run_id}"
    return None


def locked_store(store: RunStore, run_id: str) -> tuple[str, str]:
    code = ("import sqlite3, sys, time; c = sqlite3.connect(sys.argv[1], isolation_level=None); "
            "c.execute('BEGIN EXCLUSIVE'); print('locked', flush=True); time.sleep(120)")
    holder = subprocess.Popen([sys.executable, "-c", code, str(store.db_path)], stdout=subprocess.PIPE, text=True)
    try:
        holder.stdout.readline()
        return with_home(store.home, lambda: run_cli(["runs", "show", run_id], check=None))
    finally:
        holder.kill()
        holder.wait()


def upload_cases(work: Path) -> list[tuple[str, Callable[[], tuple[str, str]]]]:
    """Hostile zips through the real extraction function; nothing may be left under uploads/."""
    rng = np.random.default_rng(0)
    ok = {"a/0.png": png(), "b/0.png": png()}
    stored = make_zip({"a/0.png": png(), "b/0.bin": b"\x89PNG" + bytes(range(256)) * 8}, zipfile.ZIP_STORED)
    crc = bytearray(stored)
    crc[stored.find(bytes(range(256))) + 100] ^= 0xFF
    archives = {
        "zip bomb (256 MiB of zeros)": make_zip({"a/zeros.png": bytes(256 * 2**20)}),
        "bad CRC": bytes(crc),
        "encrypted flag": patch_headers(make_zip(ok), 6, b"\x01"),
        "compression method 99": patch_headers(make_zip(ok), 8, struct.pack("<H", 99)),
        "lying sizes": patch_headers(make_zip({"a/x.png": rng.bytes(2**20), "b/y.png": png()}, zipfile.ZIP_STORED),
                                     22, struct.pack("<I", 1000)),
        "../ traversal": make_zip({**ok, "../evil.png": png()}),
        "nested traversal": make_zip({**ok, "a/../../evil.png": png()}),
        "absolute path": make_zip({**ok, "/tmp/genreg-evil.png": png()}),
        "empty bytes": b"",
        "not a zip": b"hello world",
        "truncated header": b"PK\x03\x04" + bytes(40),
        "no members": make_zip({}),
        "10,000² png": make_zip({**ok, "a/huge.png": png_claiming(10_000, 10_000)}),
        "20,000² png": make_zip({**ok, "a/huge.png": png_claiming(20_000, 20_000)}),
        "50,001 members (limit 50,000)": make_zip({f"a/{i}.txt": b"" for i in range(50_001)}, zipfile.ZIP_STORED),
        **{f"{fmt} behind a/e.png": make_zip({**ok, "a/e.png": foreign_image(fmt)}) for fmt in FOREIGN_FORMATS},
        "a directory declaring 600 MB": patch_headers(make_zip({"a/x.bin": rng.bytes(1000), "b/y.png": png()},
                                                               zipfile.ZIP_STORED), 22, struct.pack("<I", 600 << 20)),
    }
    cases = []
    for name, data in archives.items():
        home = work / f"up_{len(cases)}"
        cases.append((f"upload: {name}", lambda d=data, h=home: run_api(
            lambda: extract_zip(d, h), check=lambda: leftovers(h))))
    cases.append(("upload: 8 identical uploads at once", lambda: concurrent_uploads(work / "up_same")))
    cases.append(("upload: staging folder left by a killed upload", lambda: stale_staging(work / "up_stale")))
    return cases


def leftovers(home: Path) -> str | None:
    uploads = home / "uploads"
    left = sorted(os.listdir(uploads)) if uploads.exists() else []
    if Path("/tmp/genreg-evil.png").exists():
        return "wrote /tmp/genreg-evil.png"
    return f"left {left} under uploads/" if left else None


def stale_staging(home: Path) -> tuple[str, str]:
    """A staging folder two hours old (its upload's process was killed) must be gone after the next upload."""
    stale = home / "uploads" / ".staging-killed"
    (stale / "a").mkdir(parents=True)
    (stale / "a" / "0.png").write_bytes(png())
    os.utime(stale, (time.time() - 7200, time.time() - 7200))
    extract_zip(make_zip({"a/0.png": png(), "b/0.png": png()}), home)
    return ("wrong state", "stale staging folder kept") if stale.exists() else ("handled", "stale staging removed")


def concurrent_uploads(home: Path) -> tuple[str, str]:
    data = make_zip({f"{c}/{i}.png": png(value=i) for c in "ab" for i in range(20)})
    results, errors = upload_at_once(data, home, 8)
    if errors:
        return "traceback", repr(errors[0])
    left = os.listdir(home / "uploads")
    if len(set(results)) != 1 or len(left) != 1:
        return "wrong state", f"{len(set(results))} results, {left} under uploads/"
    return "handled", "all 8 succeeded with one folder"  # the right outcome for a valid upload


def worker_cases(work: Path) -> list[tuple[str, Callable[[], tuple[str, str]]]]:
    """Real worker processes: killed, zombie, dying at start, failing to start, unreadable config."""
    store = RunStore(work / "home_workers")
    spec = RunSpec(dataclasses.replace(TrainConfig.tiny("ce"), epochs=10_000), DataConfig(), None, "cpu")
    return [
        ("worker: kill -9 while running", lambda: killed_worker(store, spec)),
        ("worker: zombie pid", lambda: zombie_worker(store, spec)),
        ("worker: pid reused by another live process", lambda: reused_pid(store, spec)),
        ("worker: exits before recording", lambda: dying_worker(store, spec)),
        ("worker: data root not valid UTF-8", lambda: run_api(
            lambda: launch_run(store, dataclasses.replace(spec, data=DataConfig("imagefolder", "/d/caf\udce9"))),
            check=lambda: newest_not_failed(store))),
        ("worker: cannot be started", lambda: unstartable_worker(store, spec)),
        ("worker: unreadable config", lambda: unreadable_config(store, spec)),
    ]


def newest_not_failed(store: RunStore) -> str | None:
    run = store.list_runs()[0]
    return None if run.status == "failed" and run.error else f"the run is {run.status}"


def killed_worker(store: RunStore, spec: RunSpec) -> tuple[str, str]:
    run_id = launch_run(store, spec, max_concurrent=8)
    deadline = time.time() + 180
    while store.summary(run_id).status != "running" and time.time() < deadline:
        time.sleep(0.5)
    os.kill(int(store.get_run(run_id).data.tags["genreg.pid"]), signal.SIGKILL)
    killed = time.time()
    while store.summary(run_id).status == "running" and time.time() - killed < 10:
        time.sleep(0.1)
    elapsed, status = time.time() - killed, store.summary(run_id).status
    if status != "failed" or elapsed > 2:
        return "wrong state", f"{status} after {elapsed:.1f} s"
    return "handled", f"failed {elapsed:.2f} s after kill -9"


def zombie_worker(store: RunStore, spec: RunSpec) -> tuple[str, str]:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    try:
        while Path(f"/proc/{child.pid}/stat").read_text().rsplit(")", 1)[-1].split()[0] != "Z":
            time.sleep(0.05)
        run_id = store.create_run(spec)
        store.client.set_tag(run_id, "genreg.pid", str(child.pid))
        store.client.update_run(run_id, "RUNNING")
        status = store.summary(run_id).status
        return ("handled", "failed") if status == "failed" else ("wrong state", status)
    finally:
        child.wait()


def reused_pid(store: RunStore, spec: RunSpec) -> tuple[str, str]:
    """A run whose recorded worker pid now belongs to another live process (same number, later start time)."""
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        run_id = store.create_run(spec)
        store.record_worker(run_id, other.pid)
        start = store.get_run(run_id).data.tags.get("genreg.pid_start")
        if start is None:
            return "wrong state", "no start time recorded"
        store.client.set_tag(run_id, "genreg.pid_start", str(int(start) - 1))  # the worker started earlier
        store.client.update_run(run_id, "RUNNING")
        status = store.summary(run_id).status
        return ("handled", "failed") if status == "failed" else ("wrong state", status)
    finally:
        other.kill()
        other.wait()


def dying_worker(store: RunStore, spec: RunSpec) -> tuple[str, str]:
    executable, sys.executable = sys.executable, "/bin/false"
    try:
        run_id = launch_run(store, spec)
    finally:
        sys.executable = executable
    time.sleep(1.0)
    summary = store.summary(run_id)
    return ("handled", summary.error) if summary.status == "failed" else ("wrong state", summary.status)


def unstartable_worker(store: RunStore, spec: RunSpec) -> tuple[str, str]:
    executable, sys.executable = sys.executable, "/no/such/python"
    try:
        return run_api(lambda: launch_run(store, spec), check=lambda: newest_not_failed(store))
    finally:
        sys.executable = executable


def unreadable_config(store: RunStore, spec: RunSpec) -> tuple[str, str]:
    run_id = store.create_run(spec)
    (store.run_dir(run_id) / "run_config.json").write_text("{truncated")
    try:
        execute_run(store, run_id)
    except ValueError:
        pass
    summary = store.summary(run_id)
    return ("handled", summary.error) if summary.status == "failed" else ("wrong state", summary.status)


def main_bench() -> int:
    work = Path(tempfile.mkdtemp(prefix="genreg-hostile-"))
    cwd = os.getcwd()
    os.environ["GENREG_HOME"] = str(work / "home")
    os.chdir(work)
    counts, bad = Counter(), []
    try:
        cases = (flag_cases(work) + data_and_model_cases(work) + store_cases(work) + upload_cases(work)
                 + worker_cases(work))
        for i, (name, case) in enumerate(cases, 1):
            kind, detail = case()
            counts[kind] += 1
            if kind != "handled":
                bad.append(f"{kind}: {name}: {detail}")
            print(f"[{i:3d}/{len(cases)}] {kind:<13} {name}: {detail[:150]}", file=sys.stderr, flush=True)
    finally:
        os.chdir(cwd)
        shutil.rmtree(work, ignore_errors=True)
    print("\n".join(bad))
    print(f"{sum(counts.values())} bad inputs and faults: " + ", ".join(f"{counts[k]} {k}" for k in KINDS))
    return 0 if sum(counts.values()) == counts["handled"] else 1


if __name__ == "__main__":
    raise SystemExit(main_bench())
