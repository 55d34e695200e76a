"""The companion TUI's screens: enrolment, the home screen and its tabs, and the modal confirmations."""
