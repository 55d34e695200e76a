"""`python -m vouchsim.companion …`: what `vouchsim companion …` runs."""

from vouchsim.companion.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
