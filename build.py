#!/usr/bin/env python3
"""slipway's entry point: `python build.py <verb> [--env ENV] [--json]`. Everything lives in slipway/."""
import sys

from slipway.cli import main

if __name__ == "__main__":
    sys.exit(main())
