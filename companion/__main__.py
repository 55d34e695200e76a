"""`python -m companion …`: what `vouchsim companion …` runs."""

from companion.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
