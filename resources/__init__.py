"""Data files of OCRDesk (icon, desktop entry, AppStream metainfo, the result view's page and
its vendored KaTeX), shipped as a package so that they sit beside `engine` and `gui` in a wheel.
No code lives here."""
