"""Data files of OCRDesk (icon, desktop entry, AppStream metainfo, the result view's page and
its vendored KaTeX), installed as `ocrdesk.resources`. `RESOURCES` is the one place that says
where they are, in a checkout, a wheel install and the PyInstaller bundle alike."""

from pathlib import Path

RESOURCES = Path(__file__).resolve().parent
