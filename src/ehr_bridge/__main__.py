"""`python -m ehr_bridge` runs the CLI (what the daemon's process supervisor may call)."""

from ehr_bridge.cli.app import main

main()
