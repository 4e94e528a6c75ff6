"""The results report a run ends with: its typed model, how it is built from a recorded run, and its
Markdown and HTML renderings."""
