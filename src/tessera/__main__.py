"""``python -m tessera`` runs the command-line interface."""

from tessera.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
