"""Save bench_offline.py's synthetic pages as PNG files, the CLI's input for the GPU benchmark."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / ".gpu" / "tools"))
from bench_offline import make_pages

out = Path(sys.argv[1])
count = int(sys.argv[2]) if len(sys.argv) > 2 else 64
out.mkdir(parents=True, exist_ok=True)
for i, page in enumerate(make_pages(count)):
    page.save(out / f"page{i:03d}.png")
print(f"{count} pages in {out}")
