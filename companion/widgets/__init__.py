"""The companion TUI's widgets: small, reusable, told what to show by attributes, reporting by messages."""
