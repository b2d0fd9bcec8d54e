"""The installed package holds the product only: a wheel built from the checkout carries
``hotline_bridge`` (with its catalog data) and nothing of the lab, tests or sandbox tooling."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_the_wheel_holds_the_product_and_no_lab_or_sandbox_code(tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(tmp_path), str(ROOT)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    (wheel,) = tmp_path.glob("hotline_bridge-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    tops = {n.split("/", 1)[0] for n in names}
    assert tops == {"hotline_bridge", wheel.name.split("-py")[0] + ".dist-info"}, tops
    assert "hotline_bridge/catalog/matters.toml" in names  # package data travels
    assert "hotline_bridge/runtime/app.py" in names
    forbidden = ("lab", "drill", "sandbox", "sipp", "demo", "bench")
    assert [n for n in names if any(f in n.lower() for f in forbidden)] == []
